"""Published NLB'21 results, shown beside the suite's own runs and labelled as not run here.

These are data copied from the sources named in each row (collected in the project's reference
notes, `nlb_reference.md`: the 'Reference numbers' table and the test-phase leaderboard). Metric
names follow nlb_tools' `evaluate()` ("co-bps", "vel R2", "psth R2", "fp-bps"); a metric a source
does not report is simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.arrays import Phase

PUBLISHED_LABEL = "published, not run here"


@dataclass(frozen=True)
class PublishedResult:
    """One method's published scores on one dataset, phase and bin size, with where they come from."""

    dataset: str
    phase: Phase
    bin_ms: int
    method: str
    metrics: dict[str, float]
    source: str


_LEADERBOARD_SOURCE = "NLB'21 test-phase leaderboard, MC_Maze 5 ms (secondary sources)"

PUBLISHED_RESULTS: tuple[PublishedResult, ...] = (
    PublishedResult(
        dataset="mc_maze_large", phase="val", bin_ms=5, method="smoothing 40 ms + Poisson GLM",
        metrics={"co-bps": 0.2251, "vel R2": 0.5419, "psth R2": -1.6420},
        source="nlb_tools basic_example notebook",
    ),
    PublishedResult(
        dataset="mc_maze_large", phase="val", bin_ms=5, method="GPFA, 20 latents",
        metrics={"co-bps": 0.2286, "vel R2": 0.5843, "psth R2": 0.1881},
        source="nlb_tools gpfa_example notebook",
    ),
    PublishedResult(
        dataset="mc_maze_small", phase="val", bin_ms=5, method="SLDS",
        metrics={"co-bps": 0.1533, "vel R2": 0.6514, "psth R2": 0.2186, "fp-bps": -2.7199},
        source="nlb_tools slds_example notebook",
    ),
    PublishedResult(
        dataset="mc_maze_large", phase="val", bin_ms=5, method="GRU, coordinated dropout",
        metrics={"co-bps": 0.3212, "vel R2": 0.8568, "psth R2": 0.5743, "fp-bps": 0.1807},
        source="NLB workshop walkthrough",
    ),
    PublishedResult(
        dataset="mc_maze_large", phase="val", bin_ms=5, method="smoothing 50 ms + closed-form ridge on log rates",
        metrics={"co-bps": 0.1528, "vel R2": 0.5224, "psth R2": 0.3871},
        source="nlb_tools test_nlb.py (asserted to 1e-4)",
    ),
    PublishedResult(
        dataset="mc_maze", phase="test", bin_ms=5, method="STNDT ensemble",
        metrics={"co-bps": 0.3862},
        source=_LEADERBOARD_SOURCE,
    ),
    PublishedResult(
        dataset="mc_maze", phase="test", bin_ms=5, method="AutoLFADS",
        metrics={"co-bps": 0.3364},
        source=_LEADERBOARD_SOURCE,
    ),
    PublishedResult(
        dataset="mc_maze", phase="test", bin_ms=5, method="AutoLFADS (later run)",
        metrics={"co-bps": 0.3510},
        source=_LEADERBOARD_SOURCE,
    ),
    PublishedResult(
        dataset="mc_maze", phase="test", bin_ms=5, method="NDT",
        metrics={"co-bps": 0.3229},
        source=_LEADERBOARD_SOURCE,
    ),
    PublishedResult(
        dataset="mc_maze", phase="test", bin_ms=5, method="MINT",
        metrics={"co-bps": 0.330},
        source=_LEADERBOARD_SOURCE,
    ),
)


def published_results(dataset: str, phase: Phase, bin_ms: int) -> list[PublishedResult]:
    return [r for r in PUBLISHED_RESULTS if (r.dataset, r.phase, r.bin_ms) == (dataset, phase, bin_ms)]
