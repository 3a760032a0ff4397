"""Synthetic NLB datasets with known firing rates, in the layout of the real DANDI files.

One generator per family, chosen by `spec.generator` and deterministic from the seed in
`spec.generator_args`: `maze` (MC_Maze look-alike, `maze.py`), `area2` (Area2_Bump look-alike,
`area2.py`), `chaotic_rnn` and `chaotic_rnn_inputs` (the LFADS papers' chaotic RNN,
`chaotic_rnn.py`) and `lorenz` (the Lorenz attractor, `lorenz.py`); the last two share the
trial layout of `systems.py`. What they share is in `common.py`; the ground truth each writes beside
its NWB files is described in `data/truth.py`.

A dataset's folder (`synthetic/<name>/` in the data directory) is complete or absent: it is built
in a temporary folder beside it and renamed into place whole, with `manifest.json` written last
(generator, generator version, seed and sizes, every file). `ensure_generated` never replaces a
complete dataset made with other settings; a dataset made by another generator version
(`GENERATOR_VERSIONS`) is regenerated with its own settings.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ...core.atomic import write_text_atomic
from ...core.spec import DatasetSpec, ExpectedCounts
from ...data.nwb_write import write_nlb_nwb
from ...data.paths import TRUTH_FILE, DatasetFiles, data_dir, dataset_files
from ...data.truth import write_truth
from . import area2, chaotic_rnn, lorenz, maze
from .common import GeneratedDataset, SyntheticDataError, generator_counts
from .rsg import VERSION as RSG_VERSION
from .rsg import generate_rsg
from .rtt import VERSION as RTT_VERSION
from .rtt import generate_rtt

GENERATORS: dict[str, Callable[[DatasetSpec, int], GeneratedDataset]] = {
    "maze": maze.generate_maze,
    "area2": area2.generate_area2,
    "chaotic_rnn": chaotic_rnn.generate_chaotic_rnn,
    "chaotic_rnn_inputs": chaotic_rnn.generate_chaotic_rnn_inputs,
    "lorenz": lorenz.generate_lorenz,
    "rtt": generate_rtt,
    "rsg": generate_rsg,
}
# Each generator module's VERSION: a dataset made by another version of its generator is
# regenerated (with its own settings) when it is next used. A generator's version rises whenever
# the data it makes from the same seed changes.
GENERATOR_VERSIONS: dict[str, int] = {
    "maze": maze.VERSION,
    "area2": area2.VERSION,
    "chaotic_rnn": chaotic_rnn.VERSION,
    "chaotic_rnn_inputs": chaotic_rnn.VERSION,
    "lorenz": lorenz.VERSION,
    "rtt": RTT_VERSION,
    "rsg": RSG_VERSION,
}
_GENERATOR_ARGS = {"maze": {"size", "seed"}, "area2": {"seed"}, "chaotic_rnn": {"size", "seed"},
                   "chaotic_rnn_inputs": {"size", "seed"}, "lorenz": {"size", "seed"}}
_GENERATOR_ARGS.update({"rtt": {"size", "seed"}, "rsg": {"size", "seed"}})
MANIFEST_FILE = "manifest.json"
# What the true rates score, computed from the finished dataset (scoring/ceilings.py) and kept in
# its folder; the folder of a regenerated dataset starts without it.
CEILINGS_FILE = "ceilings.json"

log = logging.getLogger(__name__)

__all__ = ["CEILINGS_FILE", "GENERATORS", "GENERATOR_VERSIONS", "MANIFEST_FILE", "Manifest", "SyntheticDataError",
           "dataset_folder", "ensure_generated", "generate", "read_manifest"]


@dataclass(frozen=True)
class Manifest:
    """What made a synthetic dataset's folder, written last into it (`manifest.json`): the
    generator, its version, its arguments (seed, size), the unit and trial counts it was asked
    for, and every file of the folder with its size, so a complete dataset can be told from an
    incomplete or altered one."""

    dataset: str
    generator: str
    generator_version: int
    generator_args: dict[str, int | float | str]
    expected: dict[str, int | None]
    files: dict[str, int]

    @property
    def seed(self) -> object:
        return self.generator_args.get("seed", 0)

    def settings(self, *, seed: bool = True) -> tuple[object, ...]:
        """Everything that determines the data but the version (and, with seed=False, the seed)."""
        args = sorted((key, value) for key, value in self.generator_args.items() if seed or key != "seed")
        return (self.generator, args, sorted(self.expected.items()))


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
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SyntheticDataError(f"dataset {spec.name!r}: seed must be a non-negative integer, got {seed!r}")
    if spec.folder is None:
        raise SyntheticDataError(f"dataset {spec.name!r} has no data folder to be generated into")
    for asset in (spec.train, spec.test):
        relative = Path(asset.path)
        if relative.is_absolute() or ".." in relative.parts:
            raise SyntheticDataError(f"dataset {spec.name!r}: {asset.path} must lie inside its folder")
    return seed


def dataset_folder(spec: DatasetSpec, root: str | Path | None = None) -> Path:
    """The folder that holds all of a synthetic dataset: its NWB files, truth, manifest."""
    if spec.folder is None:
        raise SyntheticDataError(f"dataset {spec.name!r} has no data folder")
    return data_dir(root) / spec.folder


def _manifest_for(spec: DatasetSpec, files: dict[str, int]) -> Manifest:
    assert spec.generator is not None
    return Manifest(
        dataset=spec.name, generator=spec.generator, generator_version=GENERATOR_VERSIONS[spec.generator],
        generator_args=dict(spec.generator_args), expected=asdict(spec.expected), files=files,
    )


def read_manifest(spec: DatasetSpec, root: str | Path | None = None) -> Manifest | None:
    """The manifest of a complete synthetic dataset; None if the folder is absent, has no
    readable manifest, or lacks a file the manifest lists (or holds it at another size)."""
    folder = dataset_folder(spec, root)
    try:
        raw = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        manifest = Manifest(**{f.name: raw[f.name] for f in fields(Manifest)})
        sizes = {str(name): int(size) for name, size in manifest.files.items()}
        if not (isinstance(manifest.generator, str) and isinstance(manifest.generator_version, int)
                and isinstance(manifest.generator_args, dict) and isinstance(manifest.expected, dict)):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for name, size in sizes.items():
        path = folder / name
        if ".." in Path(name).parts or not path.is_file() or path.stat().st_size != size:
            return None
    return manifest


def _describe(manifest: Manifest) -> str:
    args = ", ".join(f"{key} {value}" for key, value in sorted(manifest.generator_args.items()))
    return f"made by generator {manifest.generator!r} version {manifest.generator_version} with {args}"


def generate(spec: DatasetSpec, root: str | Path | None = None, *, overwrite: bool = False) -> DatasetFiles:
    """Generate a synthetic dataset: train and test NWB files, truth file and manifest.

    The dataset is complete or absent: everything is written into a temporary folder beside the
    dataset's folder, which is renamed into place whole once the manifest is written. An
    existing dataset is replaced only with `overwrite`; an interrupted run leaves only its
    temporary folder, which the next run removes."""
    seed = _check_spec(spec)
    folder = dataset_folder(spec, root)
    if folder.exists() and not overwrite:
        manifest = read_manifest(spec, root)
        state = (f"already exists ({_describe(manifest)})" if manifest is not None
                 else f"exists but is incomplete or from an older version (no complete {MANIFEST_FILE})")
        raise SyntheticDataError(f"dataset {spec.name!r} in {folder} {state}; regenerate it with --overwrite")
    assert spec.generator is not None
    dataset = GENERATORS[spec.generator](spec, seed)
    try:
        with _new_folder(folder, overwrite=overwrite) as building:
            _write_dataset(spec, dataset, building)
    except FileExistsError:
        # Another process made the dataset meanwhile: as good as ours if made the same way.
        made = read_manifest(spec, root)
        if made is None or made.settings() != _manifest_for(spec, {}).settings():
            raise SyntheticDataError(f"dataset {spec.name!r} in {folder} was made by another process meanwhile, "
                                     "with other settings; regenerate it with --overwrite") from None
    return dataset_files(spec, root)


def _write_dataset(spec: DatasetSpec, dataset: GeneratedDataset, folder: Path) -> None:
    """Every file of the dataset into `folder`, the manifest last. Files that belong to the
    dataset and are computed from it (the ceilings of the scores) are written here too, before
    the manifest, so that they appear with the rest or not at all."""
    assert spec.generator is not None
    write_nlb_nwb(folder / spec.train.path, session=dataset.session, arrays=dataset.arrays,
                  units=dataset.train_units, trials=dataset.train_trials, behavior=dataset.behavior)
    write_nlb_nwb(folder / spec.test.path, session=dataset.session, arrays=dataset.arrays,
                  units=dataset.test_units, trials=dataset.test_trials)
    write_truth(folder / TRUTH_FILE, dataset=spec.name, generator=spec.generator,
                generator_args=dict(spec.generator_args), train=dataset.train_truth, test=dataset.test_truth)
    files = {path.relative_to(folder).as_posix(): path.stat().st_size
             for path in sorted(folder.rglob("*")) if path.is_file()}
    write_text_atomic(folder / MANIFEST_FILE, json.dumps(asdict(_manifest_for(spec, files)), indent=2) + "\n")


_BUILDING = ".building-"
_REPLACED = ".replaced-"


@contextmanager
def _new_folder(folder: Path, *, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside `folder`, renamed to `folder` when the block ends normally
    (replacing what was there if `overwrite`, else FileExistsError if `folder` appeared
    meanwhile) and removed when it raises. The process holds a lock on it while
    it builds, so that the leftovers of killed runs (unlocked) can be told from another
    process's work in progress and removed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}{_BUILDING}"))
    handle = os.open(building, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield building
        os.chmod(building, 0o777 & ~_umask())
        if folder.exists() and overwrite:
            # Two renames: the old dataset steps aside, the new one takes its name. Killed in
            # between, the dataset is absent (never half made) and the next run regenerates it.
            aside = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}{_REPLACED}"))
            os.replace(folder, aside)
            os.replace(building, folder)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            try:
                os.replace(building, folder)
            except OSError as err:
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise FileExistsError(errno.EEXIST, "made meanwhile", str(folder)) from None
                raise
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    finally:
        os.close(handle)


def _remove_leftovers(folder: Path) -> None:
    """Remove temporary folders of `folder` left by killed runs (those no process has locked)."""
    prefixes = (f".{folder.name}{_BUILDING}", f".{folder.name}{_REPLACED}")
    for stale in folder.parent.iterdir():
        if not stale.name.startswith(prefixes) or not stale.is_dir():
            continue
        try:
            handle = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # another process is building it
        else:
            shutil.rmtree(stale, ignore_errors=True)
        finally:
            os.close(handle)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_generated(spec: DatasetSpec, root: str | Path | None = None) -> DatasetFiles:
    """The dataset's files, generated first when the dataset is absent or incomplete.

    A complete dataset is never replaced by other settings: one made with another seed is used
    as it is (with a warning naming its seed); one made with other counts or arguments is an
    error asking for `nlb-suite synth NAME --overwrite`. One made by another version of its
    generator is regenerated with its own settings (seed included)."""
    _check_spec(spec)
    folder = dataset_folder(spec, root)
    if not folder.exists():
        return generate(spec, root)
    manifest = read_manifest(spec, root)
    wanted = _manifest_for(spec, {})
    if manifest is None:
        log.warning("synthetic dataset %r in %s is incomplete or from an older version (no complete %s); "
                    "generating it again", spec.name, folder, MANIFEST_FILE)
        return generate(spec, root, overwrite=True)
    if manifest.settings(seed=False) != wanted.settings(seed=False):
        raise SyntheticDataError(
            f"synthetic dataset {spec.name!r} in {folder} was {_describe(manifest)} and counts "
            f"{_counts(manifest.expected)}, not as its definition asks ({_describe(wanted)}, counts "
            f"{_counts(wanted.expected)}); regenerate it with `nlb-suite synth {spec.name} --overwrite`"
        )
    if manifest.generator_version != wanted.generator_version:
        log.warning("synthetic dataset %r in %s was %s; generating it again with version %d and the same settings",
                    spec.name, folder, _describe(manifest), wanted.generator_version)
        return generate(replace(spec, generator_args=tuple(manifest.generator_args.items())), root, overwrite=True)
    if manifest.seed != wanted.seed:
        log.warning("synthetic dataset %r in %s was made with seed %s (its definition's seed is %s); using it as "
                    "it is. `nlb-suite synth %s --overwrite` regenerates it with seed %s",
                    spec.name, folder, manifest.seed, wanted.seed, spec.name, wanted.seed)
    return dataset_files(spec, root)


def _counts(expected: dict[str, int | None]) -> str:
    names = [f.name for f in fields(ExpectedCounts)]
    return "/".join(str(expected.get(name)) for name in names)
