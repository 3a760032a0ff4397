"""Expected failures: bad input, missing data, bad configuration. The CLI prints their message
(no traceback) and exits with status 2; anything else is a bug and keeps its traceback."""


class NlbSuiteError(Exception):
    """Base class of the errors a user can cause and fix."""
