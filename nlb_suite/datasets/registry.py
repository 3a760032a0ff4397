"""The built-in datasets: the seven NLB'21 datasets on DANDI and the synthetic ones made here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.spec import Asset, DatasetSpec, ExpectedCounts, SpecError, spec_from_dict
from .toml_spec import load_spec_toml

_MAZE_ALIGN = "move_onset_time"
_MAZE_WINDOW_MS = (-250, 450)
_MAZE_PSTH = ("trial_type", "trial_version")


def _maze(name: str, dandiset: str, version: str, session: str, train: tuple[int, str, str],
          test: tuple[int, str, str], lag: int, kern: int, counts: ExpectedCounts,
          scaling_key: str | None, description: str) -> DatasetSpec:
    stem = f"sub-Jenkins/sub-Jenkins_ses-{session}"
    return DatasetSpec(
        name=name, description=description, source="dandi", dandiset=dandiset, version=version,
        folder=dandiset,
        train=Asset(f"{stem}_desc-train_behavior+ecephys.nwb", *train),
        test=Asset(f"{stem}_desc-test_ecephys.nwb", *test),
        behavior_field="hand_vel", behavior_lag_ms=lag, psth_conditions=_MAZE_PSTH,
        psth_kern_sd_ms=kern, scaling_key=scaling_key, expected=counts, align_field=_MAZE_ALIGN, window_ms=_MAZE_WINDOW_MS,
    )


MC_MAZE = _maze(
    "mc_maze", "000128", "0.220113.0400", "full",
    (690612247, "a27f84f9c31f077011062fd99a6ced199fdf19e656151f056c3c6244a408a3c4",
     "26e85f09-39b7-480f-b337-278a8f034007"),
    (3392688, "ad802feb85beb41660550ee9820ad42e9e591dd61c10d401d1cf2eab3ab5de10",
     "1bd112a4-5ec5-4033-ac30-d88e70e993d9"),
    lag=100, kern=70, scaling_key=None,
    counts=ExpectedCounts(137, 45, 1721, 574, 2295, 574),
    description="Jenkins, M1 + PMd, delayed reaches around maze barriers (108 conditions)",
)
MC_MAZE_LARGE = _maze(
    "mc_maze_large", "000138", "0.220113.0407", "large",
    (148590536, "1188ddf5b822dd9ac49afb8916f4b42a85867613cf7f169d0b04a1d1aeecd700",
     "e67b57b2-e9ad-4d95-b9e3-1262997360dc"),
    (802352, "c65e12e9f484653ec8d85b265fc7e0e93789fd5f760c6adddd54759ac48974f1",
     "f42a7bd1-71f4-4972-84a7-2cd1dfbed8a1"),
    lag=120, kern=50, scaling_key="[500]",
    counts=ExpectedCounts(122, 40, 375, 125, 500, 100),
    description="MC_Maze scaling: 500 training trials, 27 conditions",
)
MC_MAZE_MEDIUM = _maze(
    "mc_maze_medium", "000139", "0.220113.0408", "medium",
    (76604764, "3852799f85f662f1cacadb0d758ba8fa0dc6cca318f46c9b131978adf1baffb6",
     "7ef450a8-8684-42e2-8598-cd38ca2b2e50"),
    (695928, "4021be45ae55f3a8278d1dd6c1237a13d0f3972bed9bc2e543360403118a4a99",
     "ac554f8e-7008-4030-9640-6f1cf838a23c"),
    lag=120, kern=50, scaling_key="[250]",
    counts=ExpectedCounts(114, 38, 188, 62, 250, 100),
    description="MC_Maze scaling: 250 training trials, 27 conditions",
)
MC_MAZE_SMALL = _maze(
    "mc_maze_small", "000140", "0.220113.0408", "small",
    (29207528, "dcaf3a524e2b2f65f163ee3b07789b8474bdfc6ca66098bc542ab93dff489884",
     "7821971e-c6a4-4568-8773-1bfa205c13f8"),
    (689312, "ca8a0bef5f189eafb9db1961d617e065cb461360718fde1c16a538922a6fa5fe",
     "544a660e-a173-46f3-985a-60fd67e6ae1f"),
    lag=120, kern=50, scaling_key="[100]",
    counts=ExpectedCounts(107, 35, 75, 25, 100, 100),
    description="MC_Maze scaling: 100 training trials, 27 conditions",
)
AREA2_BUMP = DatasetSpec(
    name="area2_bump", source="dandi", dandiset="000127", version="0.220113.0359", folder="000127",
    description="Han, somatosensory area 2, centre-out reaches with unexpected bumps (16 conditions)",
    train=Asset("sub-Han/sub-Han_desc-train_behavior+ecephys.nwb", 1822876234,
                "639b1a03ab813f96fec76681110a1634942476badc0fd4c93d406c24701f5db2",
                "ded26b6c-418d-43f5-8a37-dfd072c2dbd4"),
    test=Asset("sub-Han/sub-Han_desc-test_ecephys.nwb", 492576,
               "adde1de7bb83d36d93d0a524ccf4ac77cdf370ec826c3acc1d2fc16a21237617",
               "f907b288-a9b4-4c6e-9d66-6812f306e253"),
    align_field="move_onset_time", window_ms=(-100, 500), behavior_field="hand_vel",
    behavior_lag_ms=-20, psth_conditions=("cond_dir", "ctr_hold_bump"), psth_kern_sd_ms=40,
    decode_mask_field="ctr_hold_bump", eval_allow_overlap=True,
    expected=ExpectedCounts(49, 16, 272, 92, 364, 98),
)

# MC_RTT and DMFC_RSG as nlb_tools 0.0.4's PARAMS define them (make_tensors.py). Unit and trial
# counts are not pinned here (ExpectedCounts left open): they were not checked against the files.
MC_RTT = DatasetSpec(
    name="mc_rtt", source="dandi", dandiset="000129", version="0.241017.1444", folder="000129",
    description="Indy, M1, self-paced reaches to random targets (continuous; no repeated conditions)",
    train=Asset("sub-Indy/sub-Indy_desc-train_behavior+ecephys.nwb", 49764168,
                "2f78db62bd4d68b9bc737444f72bc2dfe475d7390dd7a54848aaf6a6a6ba8da5",
                "2ae6bf3c-788b-4ece-8c01-4b4a5680b25b"),
    test=Asset("sub-Indy/sub-Indy_desc-test_ecephys.nwb", 1201344,
               "7d5e2125fa3afc0fc170b0c867a920f85fabe0f1a751da5dcb49351ccd943add",
               "648a7418-98e8-4413-ba97-3772dd325ecc"),
    align_field="start_time", window_ms=(0, 600), behavior_field="finger_vel", behavior_lag_ms=140,
    allow_overlap=True, eval_allow_overlap=True,
)
DMFC_RSG = DatasetSpec(
    name="dmfc_rsg", source="dandi", dandiset="000130", version="0.220113.0407", folder="000130",
    description="Haydn, DMFC, ready-set-go time interval reproduction (eye/hand, 2 directions, 2 priors)",
    train=Asset("sub-Haydn/sub-Haydn_desc-train_ecephys.nwb", 14119912,
                "6212aaee2c978d1cd53fbfb433d11f418ed27cd83017b8b2befa4a1d7add5198",
                "c90cbccc-31a5-4815-88e6-822d8c5ca68c"),
    test=Asset("sub-Haydn/sub-Haydn_desc-test_ecephys.nwb", 1553584,
               "4b4e9118d833876a9643dd38df1d3d0c53737811720705e5cfad50d6de0bec3a",
               "a2c3ced1-2869-4483-aa19-8815c2d18c91"),
    align_field="go_time", window_ms=(-1500, 0), behavior_field=None,
    behavior_columns=("is_eye", "theta", "is_short", "ts", "tp"), outlier_field="is_outlier",
    eval_segment=("set_time", "go_time"), jitter_field="tp", jitter_max_ms=300,
    psth_conditions=("is_eye", "theta", "is_short", "ts"), psth_kern_sd_ms=70, allow_overlap=True,
)

# Synthetic sizes mirror the real sessions: (held-in, held-out, train, val, test) trials and units.
SYNTH_MAZE_SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "small": (107, 35, 75, 25, 100),
    "medium": (114, 38, 188, 62, 100),
    "large": (122, 40, 375, 125, 100),
    "full": (137, 45, 1721, 574, 574),
}


def _synth_maze(size: str, seed: int = 0) -> DatasetSpec:
    heldin, heldout, n_train, n_val, n_test = SYNTH_MAZE_SIZES[size]
    name = "synth_maze" if size == "medium" else f"synth_maze_{size}"
    folder = f"synthetic/{name}"
    return DatasetSpec(
        name=name, source="synthetic", folder=folder,
        description=f"synthetic MC_Maze ({size} size): rotational latent dynamics, known true rates",
        train=Asset(f"sub-Synth/sub-Synth_ses-{size}_desc-train_behavior+ecephys.nwb"),
        test=Asset(f"sub-Synth/sub-Synth_ses-{size}_desc-test_ecephys.nwb"),
        behavior_field="hand_vel", behavior_lag_ms=120, psth_conditions=_MAZE_PSTH,
        psth_kern_sd_ms=50, expected=ExpectedCounts(heldin, heldout, n_train, n_val, n_train + n_val, n_test),
        generator="maze", generator_args=(("size", size), ("seed", seed)), align_field=_MAZE_ALIGN, window_ms=_MAZE_WINDOW_MS,
    )


SYNTH_AREA2 = DatasetSpec(
    name="synth_area2", source="synthetic", folder="synthetic/synth_area2",
    description="synthetic Area2_Bump: 8 directions x active/passive, bumps as unpredictable inputs",
    train=Asset("sub-Synth/sub-Synth_desc-train_behavior+ecephys.nwb"),
    test=Asset("sub-Synth/sub-Synth_desc-test_ecephys.nwb"),
    align_field="move_onset_time", window_ms=(-100, 500), behavior_field="hand_vel",
    behavior_lag_ms=-20, psth_conditions=("cond_dir", "ctr_hold_bump"), psth_kern_sd_ms=40,
    decode_mask_field="ctr_hold_bump", eval_allow_overlap=True,
    expected=ExpectedCounts(49, 16, 272, 92, 364, 98),
    generator="area2", generator_args=(("seed", 0),),
)

# The LFADS papers' systems (datasets/synthetic/chaotic_rnn.py, lorenz.py): trials start at an
# initial condition, `onset_time` is 100 ms later, and the conditions are initial-condition
# clusters. Sizes as the mazes'. The PSTH kernel is the one under which the true rates' PSTH R2
# is highest (val, 5 ms, default size): chaotic RNN 20 ms (0.708 / 0.753 / 0.713 / 0.483 at
# 10 / 20 / 30 / 50 ms; its dynamics are fast), Lorenz 30 ms (0.780 / 0.802 / 0.797 at 20 / 30 / 50).
_CHAOTIC_PSTH_KERN_SD_MS = 20
_LORENZ_PSTH_KERN_SD_MS = 30


def _synth_system(name: str, generator: str, size: str, kern_sd_ms: int, description: str) -> DatasetSpec:
    heldin, heldout, n_train, n_val, n_test = SYNTH_MAZE_SIZES[size]
    return DatasetSpec(
        name=name, source="synthetic", folder=f"synthetic/{name}", description=description,
        train=Asset(f"sub-Synth/sub-Synth_ses-{size}_desc-train_behavior+ecephys.nwb"),
        test=Asset(f"sub-Synth/sub-Synth_ses-{size}_desc-test_ecephys.nwb"),
        align_field="onset_time", window_ms=(0, 700), behavior_field="hand_vel", behavior_lag_ms=100,
        psth_conditions=("condition",), psth_kern_sd_ms=kern_sd_ms,
        expected=ExpectedCounts(heldin, heldout, n_train, n_val, n_train + n_val, n_test),
        generator=generator, generator_args=(("size", size), ("seed", 0)),
    )


_CHAOTIC = "chaotic RNN of the LFADS paper (N=50, gamma=2.5, tau=25 ms), 25 initial-condition clusters"
_LORENZ = "Lorenz attractor (sigma=10, rho=28, beta=8/3), log-linear readout, 25 initial-condition clusters"
SYNTH_SYSTEMS = (
    _synth_system("synth_chaotic_rnn", "chaotic_rnn", "medium", _CHAOTIC_PSTH_KERN_SD_MS, f"synthetic {_CHAOTIC}"),
    _synth_system("synth_chaotic_rnn_small", "chaotic_rnn", "small", _CHAOTIC_PSTH_KERN_SD_MS,
                  f"synthetic {_CHAOTIC} (small size)"),
    _synth_system("synth_chaotic_rnn_inputs", "chaotic_rnn_inputs", "medium", _CHAOTIC_PSTH_KERN_SD_MS,
                  f"synthetic {_CHAOTIC}, unpredictable input pulses on half the trials"),
    _synth_system("synth_lorenz", "lorenz", "medium", _LORENZ_PSTH_KERN_SD_MS, f"synthetic {_LORENZ}"),
    _synth_system("synth_lorenz_small", "lorenz", "small", _LORENZ_PSTH_KERN_SD_MS,
                  f"synthetic {_LORENZ} (small size)"),
)

# Look-alikes of MC_RTT and DMFC_RSG (datasets/synthetic/rtt.py, rsg.py), same definitions.
# Sizes (held-in, held-out units; train, val, test trials) are this suite's choice, near the real
# sessions' orders of magnitude; the small sizes keep tests fast.
SYNTH_RTT_SIZES: dict[str, tuple[int, int, int, int, int]] = {"small": (40, 12, 120, 40, 40),
                                                              "medium": (98, 32, 810, 270, 272)}
SYNTH_RSG_SIZES: dict[str, tuple[int, int, int, int, int]] = {"small": (30, 10, 160, 60, 40),
                                                              "medium": (40, 14, 700, 300, 200)}


def _look_alike(real: DatasetSpec, stem: str, size: str, sizes: tuple[int, int, int, int, int], train_file: str,
                description: str) -> DatasetSpec:
    """A synthetic dataset with `real`'s tensor definition, generated by generator `stem`."""
    heldin, heldout, n_train, n_val, n_test = sizes
    name = f"synth_{stem}" if size == "medium" else f"synth_{stem}_{size}"
    return replace(
        real, name=name, source="synthetic", dandiset=None, version=None, folder=f"synthetic/{name}",
        description=f"synthetic {real.name.upper()} ({size} size): {description}",
        train=Asset(f"sub-Synth/sub-Synth_ses-{size}_desc-{train_file}.nwb"),
        test=Asset(f"sub-Synth/sub-Synth_ses-{size}_desc-test_ecephys.nwb"),
        expected=ExpectedCounts(heldin, heldout, n_train, n_val, n_train + n_val, n_test),
        generator=stem, generator_args=(("size", size), ("seed", 0)),
    )


def _synth_rtt(size: str) -> DatasetSpec:
    return _look_alike(MC_RTT, "rtt", size, SYNTH_RTT_SIZES[size], "train_behavior+ecephys",
                       "continuous random-target reaching, finger velocity")


def _synth_rsg(size: str) -> DatasetSpec:
    return _look_alike(DMFC_RSG, "rsg", size, SYNTH_RSG_SIZES[size], "train_ecephys",
                       "produced interval set by a latent ramp's speed")


BUILTIN: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        MC_MAZE, MC_MAZE_LARGE, MC_MAZE_MEDIUM, MC_MAZE_SMALL, AREA2_BUMP, MC_RTT, DMFC_RSG,
        _synth_maze("medium"), _synth_maze("small"), _synth_maze("large"), _synth_maze("full"),
        SYNTH_AREA2, *SYNTH_SYSTEMS,
        _synth_rtt("medium"), _synth_rtt("small"), _synth_rsg("medium"), _synth_rsg("small"),
    )
}

DEFAULT_DATASET = "synth_maze"


def get_spec(name_or_path: str | Path) -> DatasetSpec:
    """A built-in dataset by name, or a user's dataset from a `.toml` file."""
    text = str(name_or_path)
    if text.endswith(".toml"):
        return load_spec_toml(text)
    try:
        return BUILTIN[text]
    except KeyError:
        raise SpecError(
            f"unknown dataset {text!r}; known datasets: {', '.join(BUILTIN)} "
            "(or give a path to a dataset .toml file)"
        ) from None


def recorded_spec(name: str, stored: Mapping[str, Any] | None) -> DatasetSpec:
    """The dataset of a results record: the spec the record keeps (a user's dataset, which has
    no name to look up), else the built-in one of that name."""
    return spec_from_dict(stored) if stored is not None else get_spec(name)
