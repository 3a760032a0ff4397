"""Synthetic NLB datasets with known firing rates, in the layout of the real DANDI files.

One generator per family, chosen by `spec.generator` and deterministic from the seed in
`spec.generator_args`: `maze` (MC_Maze look-alike, `maze.py`), `area2` (Area2_Bump look-alike,
`area2.py`), `chaotic_rnn` and `chaotic_rnn_inputs` (the LFADS papers' chaotic RNN,
`chaotic_rnn.py`) and `lorenz` (the Lorenz attractor, `lorenz.py`); the last two share the
trial layout of `systems.py`. What they share is in `common.py`; the ground truth each writes beside
its NWB files is described in `data/truth.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...core.spec import DatasetSpec
from ...data.nwb_write import write_nlb_nwb
from ...data.paths import DatasetFiles, dataset_files, truth_path
from ...data.truth import write_truth
from . import area2, chaotic_rnn, lorenz, maze
from .common import GeneratedDataset, SyntheticDataError, generator_counts

GENERATORS: dict[str, Callable[[DatasetSpec, int], GeneratedDataset]] = {
    "maze": maze.generate_maze,
    "area2": area2.generate_area2,
    "chaotic_rnn": chaotic_rnn.generate_chaotic_rnn,
    "chaotic_rnn_inputs": chaotic_rnn.generate_chaotic_rnn_inputs,
    "lorenz": lorenz.generate_lorenz,
}
# Each generator module's VERSION: files made by another version of a generator are stale.
GENERATOR_VERSIONS: dict[str, int] = {
    "maze": maze.VERSION,
    "area2": area2.VERSION,
    "chaotic_rnn": chaotic_rnn.VERSION,
    "chaotic_rnn_inputs": chaotic_rnn.VERSION,
    "lorenz": lorenz.VERSION,
}
_GENERATOR_ARGS = {"maze": {"size", "seed"}, "area2": {"seed"}, "chaotic_rnn": {"size", "seed"},
                   "chaotic_rnn_inputs": {"size", "seed"}, "lorenz": {"size", "seed"}}

# What the true rates score, kept beside the truth file by `nlb-suite datasets` and `synth`
# (commands/datasets.py); a regenerated dataset's old ceilings are removed with its truth file.
CEILINGS_FILE = "ceilings.json"

__all__ = ["CEILINGS_FILE", "GENERATORS", "GENERATOR_VERSIONS", "SyntheticDataError", "ensure_generated", "generate"]


def _check_spec(spec: DatasetSpec) -> int:
    """The seed of a generatable spec, or an error saying what is wrong with it."""
    if spec.source != "synthetic" or spec.generator is None:
        raise SyntheticDataError(f"dataset {spec.name!r} is not synthetic (source {spec.source!r})")
    if spec.generator not in GENERATORS:
        raise SyntheticDataError(
            f"dataset {spec.name!r}: unknown generator {spec.generator!r}; known: {', '.join(GENERATORS)}"
        )
    args = dict(spec.generator_args)
    unknown = sorted(set(args) - _GENERATOR_ARGS[spec.generator])
    if unknown:
        raise SyntheticDataError(f"dataset {spec.name!r}: generator {spec.generator!r} takes no argument(s) {unknown}")
    generator_counts(spec)
    seed = args.get("seed", 0)
    if not isinstance(seed, int) or seed < 0:
        raise SyntheticDataError(f"dataset {spec.name!r}: seed must be a non-negative integer, got {seed!r}")
    return seed


def _truth_file(spec: DatasetSpec, root: str | Path | None) -> Path:
    path = truth_path(spec, root)
    if path is None:
        raise SyntheticDataError(f"dataset {spec.name!r} has no data folder for its truth file")
    return path


def generate(spec: DatasetSpec, root: str | Path | None = None, *, overwrite: bool = False) -> DatasetFiles:
    """Generate a synthetic dataset's train and test NWB files and its truth file."""
    seed = _check_spec(spec)
    files = dataset_files(spec, root)
    truth = _truth_file(spec, root)
    existing = [p for p in (files.train, files.test, truth) if p.exists()]
    if existing and not overwrite:
        raise SyntheticDataError(
            f"dataset {spec.name!r} already exists ({existing[0]}); regenerate it with --overwrite"
        )
    assert spec.generator is not None
    dataset = GENERATORS[spec.generator](spec, seed)
    # The truth file goes last and is removed first: its presence marks a complete dataset.
    truth.unlink(missing_ok=True)
    (truth.parent / CEILINGS_FILE).unlink(missing_ok=True)
    write_nlb_nwb(files.train, session=dataset.session, arrays=dataset.arrays, units=dataset.train_units,
                  trials=dataset.train_trials, behavior=dataset.behavior)
    write_nlb_nwb(files.test, session=dataset.session, arrays=dataset.arrays, units=dataset.test_units,
                  trials=dataset.test_trials)
    write_truth(truth, dataset=spec.name, generator=spec.generator, generator_args=dict(spec.generator_args),
                train=dataset.train_truth, test=dataset.test_truth)
    return files


def ensure_generated(spec: DatasetSpec, root: str | Path | None = None) -> DatasetFiles:
    """The dataset's files, generated first if the train file, test file or truth file is missing."""
    files = dataset_files(spec, root)
    if all(p.is_file() for p in (files.train, files.test, _truth_file(spec, root))):
        return files
    return generate(spec, root, overwrite=True)
