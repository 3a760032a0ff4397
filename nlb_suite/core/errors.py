"""Expected failures: bad input, missing data, bad configuration. The CLI prints their message
(no traceback) and exits with status 2; anything else is a bug and keeps its traceback."""


class NlbSuiteError(Exception):
    """Base class of the errors a user can cause and fix."""


class ScoringError(NlbSuiteError, ValueError):
    """Predictions or targets that cannot be scored: shapes that do not match, NaN or negative
    rates where spikes were observed, missing arrays."""
