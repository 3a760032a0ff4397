"""Published NLB'21 results, shown beside the suite's own runs and labelled as not run here.

These are data copied from the sources named in each row (collected in the project's reference
notes, `nlb_reference.md`: the 'Reference numbers' table and the test-phase leaderboard, and
`published_results.md`: every row of Le & Shlizerman 2022's test-phase tables and the secondary
co-bps figures). Metric names follow nlb_tools' `evaluate()` ("co-bps", "vel R2", "psth R2",
"fp-bps", "tp corr"); a metric a source does not report is simply absent.
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
)

# Le & Shlizerman 2022 (STNDT, NeurIPS; arXiv 2206.04727), Tables 1-2: the test phase at 5 ms.
# fp-bps "-" there (GPFA, smoothing) is absent here.
_STNDT_PAPER = "Le & Shlizerman 2022 (STNDT), arXiv 2206.04727, Tables 1-2"
_CO, _VEL, _PSTH, _FP = "co-bps", "vel R2", "psth R2", "fp-bps"
_PAPER_TABLES: dict[str, tuple[tuple[str, tuple[float | None, ...]], ...]] = {
    "mc_maze": (
        ("GPFA", (0.1872, 0.6399, 0.5150, None)),
        ("Smoothing", (0.2109, 0.6238, 0.1853, None)),
        ("SLDS", (0.2249, 0.7947, 0.5330, 1.1579)),  # fp-bps as printed; likely a typo
        ("MINT", (0.3304, 0.9121, 0.7496, 0.2076)),
        ("AutoLFADS", (0.3364, 0.9097, 0.6360, 0.2349)),
        ("iLQR-VAE", (0.3559, 0.8840, 0.6062, 0.1480)),
        ("AESMTE1 (NDT)", (0.3599, 0.9105, 0.6641, 0.2470)),
        ("AESMTE3 (NDT ensemble)", (0.3676, 0.9114, 0.6683, 0.2589)),
        ("STNDT", (0.3691, 0.8985, 0.6567, 0.2505)),
        ("STNDT ensemble", (0.3862, 0.9095, 0.6693, 0.2686)),
    ),
    "area2_bump": (
        ("GPFA", (0.1680, 0.5975, 0.5289, None)),
        ("Smoothing", (0.1544, 0.5736, 0.2084, None)),
        ("SLDS", (0.1960, 0.7385, 0.5740, 0.0242)),
        ("MINT", (0.2735, 0.8877, 0.9135, 0.1483)),
        ("AutoLFADS", (0.2569, 0.8492, 0.6318, 0.1505)),
        ("AESMTE1", (0.2801, 0.8675, 0.6367, 0.1523)),
        ("AESMTE3", (0.2860, 0.8999, 0.7109, 0.1603)),
        ("STNDT", (0.2818, 0.8766, 0.6454, 0.1357)),
        ("STNDT ensemble", (0.2898, 0.8913, 0.7368, 0.1476)),
    ),
}


def _paper_rows() -> tuple[PublishedResult, ...]:
    return tuple(
        PublishedResult(dataset=dataset, phase="test", bin_ms=5, method=method,
                        metrics={key: value for key, value in zip((_CO, _VEL, _PSTH, _FP), values) if value is not None},
                        source=_STNDT_PAPER)
        for dataset, rows in _PAPER_TABLES.items() for method, values in rows
    )


# The same tables' MC_RTT and DMFC_RSG figures: the best value of each metric (one row per
# method that holds it) and MINT's rows.
_BEST = f"{_STNDT_PAPER}, best value of the metric"
_OTHER_DATASETS: tuple[PublishedResult, ...] = (
    PublishedResult("mc_rtt", "test", 5, "STNDT ensemble", {_CO: 0.2095}, _BEST),
    PublishedResult("mc_rtt", "test", 5, "AESMTE1", {_VEL: 0.6627}, _BEST),
    PublishedResult("mc_rtt", "test", 5, "AESMTE3", {_FP: 0.1344}, _BEST),
    PublishedResult("mc_rtt", "test", 5, "MINT", {_CO: 0.1676, _VEL: 0.5953, _FP: 0.1012}, _STNDT_PAPER),
    PublishedResult("dmfc_rsg", "test", 5, "MINT", {_CO: 0.1821, "tp corr": -0.6929, _PSTH: 0.7013, _FP: 0.1650},
                    _STNDT_PAPER),
)

# co-bps quoted by third-party repositories from the frozen EvalAI leaderboard, not checked
# against a paper.
_SECONDARY = "NLB'21 test-phase leaderboard (secondary source, co-bps only)"
_SECONDARY_ROWS: tuple[PublishedResult, ...] = tuple(
    PublishedResult("mc_maze", "test", bin_ms, method, {_CO: value}, _SECONDARY)
    for bin_ms, method, value in (
        (5, "NDT (organisers' baseline)", 0.3229), (5, "S5", 0.3823), (5, "DLFM", 0.3779), (5, "SSLFADS", 0.3748),
        (5, "NDT-L", 0.3536), (5, "AutoLFADS (Kubeflow)", 0.3510),
        (20, "LangevinFlow", 0.3650), (20, "NDT", 0.3597), (20, "AutoLFADS", 0.3554),
    )
)

PUBLISHED_RESULTS = PUBLISHED_RESULTS + _paper_rows() + _OTHER_DATASETS + _SECONDARY_ROWS


def published_results(dataset: str, phase: Phase, bin_ms: int) -> list[PublishedResult]:
    return [r for r in PUBLISHED_RESULTS if (r.dataset, r.phase, r.bin_ms) == (dataset, phase, bin_ms)]
