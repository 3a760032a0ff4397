"""Submission files in the EvalAI format of NLB'21, and their validation.

A submission is an HDF5 file with one group per dataset and bin size (`mc_maze`, `mc_maze_20`,
`area2_bump`, `synth_maze`, ...), each holding a model's rates in spikes/bin, shaped
(trials, bins, units):

    train_rates_heldin, train_rates_heldout, eval_rates_heldin, eval_rates_heldout   required
    eval_rates_heldin_forward, eval_rates_heldout_forward                             optional

The three scaled mazes share one file, so writing into an existing file adds or replaces groups
and keeps the others.

What counts: only plain HDF5 datasets of a numeric dtype, stored in the file itself, one level
down (file -> group -> dataset). Everything else is reported as what it is and never followed:
external links (a name pointing into another file) and soft links, dangling or not; datasets
whose bytes live in other files (external storage, virtual datasets); nested groups, committed
datatypes and datasets of a non-numeric dtype (strings, compounds, references); arrays larger
than `MAX_ARRAY_BYTES`. So a submission is scored on its own bytes, never on another file's.

Validation policy (one list of `Problem`s, each naming group, array and trials):
- every expected group is present; with `allow_extra_groups=False` no other group is;
- the four required arrays are present, the forward pair is both present or both absent, and no
  array has an unknown name (a typo would otherwise silently drop a metric);
- shapes are 3-d and match the expected trials, bins and units; dimensions the expectation leaves
  open must still agree between the arrays of one group;
- dtype: float32 or float64 (the scorer reads either as float64, exactly as stored); float16 is
  refused because its 3 significant digits change the scores, extended precision because other
  readers cannot load it, and integer or boolean arrays because rates are not counts;
- values: no NaN, no infinity, no negative rate (zero is allowed: the scorer treats it as 1e-9).
  This is stricter than nlb_tools, which ignores a NaN rate where the spikes are unobserved: a
  model predicts every entry, and a NaN usually means a bug upstream.

`suspicious_values` adds what is valid but almost surely a mistake: an array whose every rate is
zero. `nlb-suite validate` reports it; scoring keeps nlb_tools' number (zeros scored as 1e-9).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..core.arrays import Phase, Rates
from ..core.atomic import atomic_path
from ..core.errors import NlbSuiteError
from ..core.spec import DatasetSpec
from ..core.writable import check_file

REQUIRED_ARRAYS = ("train_rates_heldin", "train_rates_heldout", "eval_rates_heldin", "eval_rates_heldout")
FORWARD_ARRAYS = ("eval_rates_heldin_forward", "eval_rates_heldout_forward")
SUBMISSION_ARRAYS = REQUIRED_ARRAYS + FORWARD_ARRAYS
ACCEPTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Trial indices listed in one message before the rest is summarised as a count.
MAX_LISTED_TRIALS = 10
# The largest array read from a submission: MC_Maze's largest is under 200 MB in float32. A
# declared shape far beyond it (a hostile or damaged file) is refused before it is allocated.
MAX_ARRAY_BYTES = 4 << 30

SubmissionArrays = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a submission. `group` / `array` are None for file-level problems."""

    message: str
    group: str | None = None
    array: str | None = None

    def __str__(self) -> str:
        where = []
        if self.group is not None:
            where.append(f"group {self.group!r}")
        if self.array is not None:
            where.append(f"array {self.array!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class SubmissionError(NlbSuiteError, ValueError):
    """A submission file cannot be read or does not fit what it is scored against."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: invalid submission ({len(problems)} problem(s)):\n{listing}")


# Axis names of each array, used both to build expected shapes and to explain a mismatch.
_AXES: dict[str, tuple[str, str, str]] = {
    "train_rates_heldin": ("n_train", "n_bins", "n_heldin"),
    "train_rates_heldout": ("n_train", "n_bins", "n_heldout"),
    "eval_rates_heldin": ("n_eval", "n_bins", "n_heldin"),
    "eval_rates_heldout": ("n_eval", "n_bins", "n_heldout"),
    "eval_rates_heldin_forward": ("n_eval", "n_forward_bins", "n_heldin"),
    "eval_rates_heldout_forward": ("n_eval", "n_forward_bins", "n_heldout"),
}
_AXIS_WORDS = {
    "n_train": "train trials", "n_eval": "eval trials", "n_bins": "bins",
    "n_forward_bins": "forward bins", "n_heldin": "held-in units", "n_heldout": "held-out units",
}


@dataclass(frozen=True)
class ExpectedShapes:
    """The sizes one submission group must have. None leaves a size open (not known beforehand);
    open sizes must still agree between the group's arrays."""

    n_train: int | None
    n_eval: int | None
    n_bins: int | None
    n_forward_bins: int | None
    n_heldin: int | None
    n_heldout: int | None

    @classmethod
    def from_spec(cls, spec: DatasetSpec, phase: Phase, bin_ms: int) -> ExpectedShapes:
        """Sizes from a dataset's specification: trial and unit counts of the phase, bins of the
        trial window and the forward window at `bin_ms`."""
        spec.check_bin(bin_ms)
        counts = spec.expected
        n_train, n_eval = (
            (counts.val_train_trials, counts.val_eval_trials)
            if phase == "val"
            else (counts.test_train_trials, counts.test_eval_trials)
        )
        return cls(
            n_train=n_train, n_eval=n_eval, n_bins=spec.n_bins(bin_ms),
            n_forward_bins=spec.n_forward_bins(bin_ms),
            n_heldin=counts.heldin_units, n_heldout=counts.heldout_units,
        )

    @classmethod
    def from_targets(cls, target_arrays: Mapping[str, np.ndarray]) -> ExpectedShapes:
        """Sizes from one group of an eval-target file (NLB layout): eval trials, bins and held-out
        units from `eval_spikes_heldout`, train trials from `train_behavior`, held-in units and
        forward bins from `eval_spikes_heldin_forward` (or from `psth`, which holds all units)."""
        heldout = target_arrays["eval_spikes_heldout"]
        n_eval, n_bins, n_heldout = (int(size) for size in heldout.shape)
        n_train = None
        for name in ("train_behavior", "train_decode_mask"):
            if name in target_arrays:
                n_train = int(target_arrays[name].shape[0])
                break
        n_heldin = n_forward = None
        if "eval_spikes_heldin_forward" in target_arrays:
            _, n_forward, n_heldin = (int(size) for size in target_arrays["eval_spikes_heldin_forward"].shape)
        elif "psth" in target_arrays:
            n_heldin = int(target_arrays["psth"].shape[2]) - n_heldout
        return cls(n_train=n_train, n_eval=n_eval, n_bins=n_bins, n_forward_bins=n_forward,
                   n_heldin=n_heldin, n_heldout=n_heldout)


def expected_for_dataset(spec: DatasetSpec, phase: Phase, bin_ms: int) -> dict[str, ExpectedShapes]:
    """The one group a submission for `spec` at `bin_ms` must hold, keyed by its group name."""
    return {spec.result_name(bin_ms): ExpectedShapes.from_spec(spec, phase, bin_ms)}


def expected_from_targets(targets: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, ExpectedShapes]:
    """Expected shapes of every group of an eval-target file that holds `eval_spikes_heldout`."""
    return {
        group: ExpectedShapes.from_targets(arrays)
        for group, arrays in targets.items()
        if "eval_spikes_heldout" in arrays
    }


def _check_group_name(path: Path, name: str) -> None:
    if not name or "/" in name:
        raise SubmissionError(str(path), [Problem(f"invalid group name {name!r} (empty or containing '/')")])


def _write_rates(group: h5py.Group, rates: Rates) -> None:
    for name, values in rates.arrays().items():
        group.create_dataset(name, data=np.asarray(values, dtype=np.float32))


def write_submission(path: str | Path, groups: Mapping[str, Rates]) -> Path:
    """Write `groups` (group name -> rates) as float32 into the submission file at `path`.

    Groups already in the file and not named in `groups` are kept; named ones are replaced. The
    new file is built beside the old one and moved into place, so a crash leaves either the old
    or the new file, never a mixture.
    """
    path = Path(path)
    kept = _kept_groups(path, groups)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as out:
        for name, arrays in kept.items():
            group = out.create_group(name)
            for array_name, values in arrays.items():
                group.create_dataset(array_name, data=values)
        for name, rates in groups.items():
            _write_rates(out.create_group(name), rates)
    return path


def check_writable(path: str | Path, groups: Collection[str]) -> Path:
    """`path` if `write_submission(path, ...)` with these group names would succeed as far as
    can be known before the rates exist: the names are safe, the path is a file in a writable
    folder, and an existing file there can be extended. Run before a model fits; writes nothing."""
    path = Path(path)
    check_file(path, "the submission")
    _kept_groups(path, groups)
    return path


def _kept_groups(path: Path, groups: Collection[str]) -> SubmissionArrays:
    """The groups of the file at `path` (if any) that writing `groups` keeps, read as values."""
    for name in groups:
        _check_group_name(path, name)
    if not path.exists():
        return {}
    # The other groups are carried over as values, through the same reader as validation,
    # so links or foreign storage in an old file are refused rather than copied along.
    try:
        old, problems = _read_with_problems(path)
    except SubmissionError as err:  # not a readable HDF5 file
        old, problems = {}, err.problems
    problems = [p for p in problems if p.group not in groups]
    if problems:
        raise SubmissionError(str(path), problems + [Problem(
            "the existing file cannot be extended; move it away or write to another file")])
    return {name: arrays for name, arrays in old.items() if name not in groups}


def _open(path: Path) -> h5py.File:
    if path.is_dir():
        raise SubmissionError(str(path), [Problem("is a folder, not a submission file")])
    if not path.is_file():
        raise SubmissionError(str(path), [Problem("file not found")])
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise SubmissionError(str(path), [Problem(f"not a readable HDF5 file ({err})")]) from None


def _read_with_problems(path: Path) -> tuple[SubmissionArrays, list[Problem]]:
    """Every plain numeric array of every group, plus the layout problems found while reading
    (top-level datasets, links, nested groups, foreign storage, non-numeric or oversized
    datasets), which `validate_submission` reports alongside the rest. Links are inspected with
    `getlink` and never followed."""
    arrays: SubmissionArrays = {}
    problems: list[Problem] = []
    with _open(path) as file:
        try:
            for group_name in list(file):
                problem = _link_problem(file, group_name)
                if problem:
                    problems.append(Problem(problem, group_name))
                    continue
                group = file[group_name]
                if not isinstance(group, h5py.Group):
                    problems.append(Problem(f"top-level dataset {group_name!r}; rates belong in a group per dataset"))
                    continue
                arrays[group_name] = {}
                for array_name in list(group):
                    problem = _link_problem(group, array_name) or _item_problem(group[array_name])
                    if problem:
                        problems.append(Problem(problem, group_name, array_name))
                        continue
                    try:
                        arrays[group_name][array_name] = group[array_name][()]
                    except (OSError, ValueError, TypeError, RuntimeError) as err:
                        problems.append(Problem(f"cannot be read ({err}); the file may be damaged",
                                                group_name, array_name))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
            raise SubmissionError(str(path), [Problem(f"damaged HDF5 file ({err})")]) from None
    return arrays, problems


def _link_problem(parent: h5py.Group, name: str) -> str | None:
    """What is wrong with the link `name` in `parent`, if it is not a plain (hard) link."""
    try:
        link = parent.get(name, getlink=True)
    except (OSError, KeyError, TypeError, RuntimeError) as err:
        return f"a link of a kind that cannot be inspected ({err}); only plain datasets count"
    if isinstance(link, h5py.HardLink):
        return None
    if isinstance(link, h5py.ExternalLink):
        return (f"external link to {link.path!r} in file {link.filename!r}: refused, a submission must "
                "hold its own arrays")
    if isinstance(link, h5py.SoftLink):
        if _hard_path_exists(parent, link.path) is False:
            return f"dangling soft link to {link.path!r} (nothing is there); store the array itself"
        return f"soft link to {link.path!r}: refused, only plain datasets count; store the array itself"
    return f"a link of unknown kind ({type(link).__name__}); only plain datasets count"


def _hard_path_exists(parent: h5py.Group, path: str) -> bool | None:
    """Whether `path` (absolute, or relative to `parent`) names an object through hard links
    only; None when the way there passes another soft or external link (not followed)."""
    node: object = parent.file if path.startswith("/") else parent
    parts = [part for part in path.split("/") if part]
    for depth, part in enumerate(parts):
        if not isinstance(node, h5py.Group) or part not in list(node):
            return False
        if not isinstance(node.get(part, getlink=True), h5py.HardLink):
            return None
        child = node[part]
        if depth < len(parts) - 1 and not isinstance(child, h5py.Group):
            return False
        node = child
    return True


def _item_problem(item: object) -> str | None:
    """Why an object inside a group does not count as an array, if it does not."""
    if isinstance(item, h5py.Group):
        return "unexpected nested group; only plain datasets count"
    if not isinstance(item, h5py.Dataset):
        return f"not a dataset ({type(item).__name__}); only plain datasets count"
    if item.dtype.kind not in "biuf":
        return f"dtype {item.dtype} is not numeric; only numeric datasets count"
    if item.is_virtual:
        return ("virtual dataset (its values are mapped from other datasets or files): refused, a submission "
                "must hold its own arrays")
    if item.external:
        files = ", ".join(repr(entry[0]) for entry in item.external)
        return f"its bytes are stored in external file(s) {files}: refused, a submission must hold its own arrays"
    size = int(np.prod(item.shape, dtype=np.float64) * item.dtype.itemsize) if item.shape else item.dtype.itemsize
    if size > MAX_ARRAY_BYTES:
        return f"shape {item.shape} of dtype {item.dtype} ({size / 2**30:.1f} GiB) is far larger than any NLB array"
    return None


def read_submission(path: str | Path) -> SubmissionArrays:
    """All arrays of a submission file: group name -> array name -> array."""
    path = Path(path)
    arrays, problems = _read_with_problems(path)
    if problems:
        raise SubmissionError(str(path), problems)
    return arrays


def _trial_list(mask: np.ndarray) -> str:
    """'trials 0, 5, 7' for the first axis of a 3-d mask (a shorter summary past MAX_LISTED_TRIALS)."""
    trials = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    listed = ", ".join(str(t) for t in trials[:MAX_LISTED_TRIALS])
    more = f" and {len(trials) - MAX_LISTED_TRIALS} more" if len(trials) > MAX_LISTED_TRIALS else ""
    word = "trial" if len(trials) == 1 else "trials"
    return f"{word} {listed}{more}"


def _value_problems(group: str, name: str, values: np.ndarray) -> list[Problem]:
    problems = []
    nan = np.isnan(values)
    if nan.any():
        problems.append(Problem(f"{int(nan.sum())} NaN value(s) in {_trial_list(nan)}", group, name))
    infinite = np.isinf(values)
    if infinite.any():
        problems.append(Problem(f"{int(infinite.sum())} infinite value(s) in {_trial_list(infinite)}", group, name))
    negative = np.isfinite(values) & (values < 0)  # -inf is already reported as infinite
    if negative.any():
        problems.append(Problem(
            f"{int(negative.sum())} negative rate(s) (minimum {float(values[negative].min()):.6g}) "
            f"in {_trial_list(negative)}", group, name,
        ))
    return problems


def _validate_group(group: str, arrays: Mapping[str, np.ndarray], expected: ExpectedShapes) -> list[Problem]:
    problems: list[Problem] = []
    for name in sorted(set(arrays) - set(SUBMISSION_ARRAYS)):
        problems.append(Problem(f"unknown array name; expected {', '.join(SUBMISSION_ARRAYS)}", group, name))
    for name in REQUIRED_ARRAYS:
        if name not in arrays:
            problems.append(Problem("required array is missing", group, name))
    forward_present = [name for name in FORWARD_ARRAYS if name in arrays]
    if len(forward_present) == 1:
        missing = next(name for name in FORWARD_ARRAYS if name not in arrays)
        problems.append(Problem(f"missing while {forward_present[0]!r} is present (give both or neither)",
                                group, missing))

    # Open sizes take the value of the first array that shows them, so the arrays must agree.
    sizes: dict[str, int | None] = {axis: getattr(expected, axis) for axis in _AXIS_WORDS}
    for name in SUBMISSION_ARRAYS:
        if name not in arrays:
            continue
        values = np.asarray(arrays[name])
        axes = _AXES[name]
        if values.ndim != 3:
            problems.append(Problem(
                f"{values.ndim}-d array of shape {values.shape}; expected 3-d "
                f"({', '.join(_AXIS_WORDS[a] for a in axes)})", group, name))
            continue
        for axis, size in zip(axes, values.shape):
            if sizes[axis] is None:
                sizes[axis] = int(size)
        want = tuple(sizes[axis] for axis in axes)
        if values.shape != want:
            wrong = "; ".join(
                f"{got} {_AXIS_WORDS[axis]}, expected {need}"
                for axis, got, need in zip(axes, values.shape, want) if got != need
            )
            problems.append(Problem(f"shape {values.shape}, expected {want}: {wrong}", group, name))
        if values.dtype not in ACCEPTED_DTYPES:
            if values.dtype.kind != "f":
                why = "rates must be floating point"
            elif values.dtype.itemsize < 4:
                why = "too imprecise for scoring"
            else:
                why = "extended precision is not portable in HDF5"
            problems.append(Problem(f"dtype {values.dtype}, expected float32 or float64 ({why})", group, name))
            if values.dtype.kind not in "fiub":
                continue
        problems.extend(_value_problems(group, name, values))
    return problems


def _validate_arrays(
    arrays: SubmissionArrays, expected: Mapping[str, ExpectedShapes], allow_extra_groups: bool,
) -> list[Problem]:
    if not arrays:
        return [Problem("the submission holds no groups")]
    problems: list[Problem] = []
    present = ", ".join(repr(group) for group in arrays)
    for group in expected:
        if group not in arrays:
            problems.append(Problem(f"missing group; the submission holds {present}", group))
    if not allow_extra_groups:
        wanted = ", ".join(repr(group) for group in expected) or "none"
        for group in arrays:
            if group not in expected:
                problems.append(Problem(f"unexpected group; expected {wanted}", group))
    for group, shapes in expected.items():
        if group in arrays:
            problems.extend(_validate_group(group, arrays[group], shapes))
    return problems


def validate_submission(
    submission: str | Path | Mapping[str, Mapping[str, np.ndarray]],
    expected: Mapping[str, ExpectedShapes],
    allow_extra_groups: bool = False,
) -> list[Problem]:
    """Every problem of a submission (a file or its arrays) against the expected groups and shapes;
    an empty list means it is valid. See the module docstring for the policy."""
    if not isinstance(submission, (str, Path)):
        arrays = {group: dict(group_arrays) for group, group_arrays in submission.items()}
        return _validate_arrays(arrays, expected, allow_extra_groups)
    try:
        arrays, layout_problems = _read_with_problems(Path(submission))
    except SubmissionError as err:
        return err.problems
    return layout_problems + _validate_arrays(arrays, expected, allow_extra_groups)


def suspicious_values(arrays: Mapping[str, Mapping[str, np.ndarray]]) -> list[Problem]:
    """Problems of valid-looking arrays that are almost surely a mistake: every rate zero. The
    scorer (like nlb_tools) scores such an array with zeros replaced by 1e-9, a co-bps far below
    zero, so `nlb-suite validate` flags it while scoring keeps nlb_tools' number."""
    problems = []
    for group, group_arrays in arrays.items():
        for name in SUBMISSION_ARRAYS:
            values = group_arrays.get(name)
            if values is None or values.size == 0 or values.dtype.kind not in "biuf":
                continue
            if not np.any(values):
                problems.append(Problem(
                    "every rate is zero; the scorer would replace each by 1e-9 (co-bps far below 0): "
                    "is this really the model's output?", group, name))
    return problems


def require_valid_submission(
    path: str | Path, expected: Mapping[str, ExpectedShapes], allow_extra_groups: bool = False,
) -> SubmissionArrays:
    """The arrays of a submission file, or a SubmissionError listing every problem."""
    arrays, problems = _read_with_problems(Path(path))
    problems += _validate_arrays(arrays, expected, allow_extra_groups)
    if problems:
        raise SubmissionError(str(path), problems)
    return arrays


def checked_against_targets(submission: str | Path, targets: Mapping[str, Mapping[str, np.ndarray]],
                            targets_label: str) -> SubmissionArrays:
    """The submission's arrays, refused (SubmissionError) unless every group has targets and fits
    their shapes. Target groups the submission lacks are not scored, as in nlb_tools."""
    arrays = read_submission(submission)
    available = expected_from_targets(targets)
    listing = ", ".join(repr(group) for group in available) or "none"
    problems = [
        Problem(f"no targets for this group in {targets_label} (it has {listing})", group)
        for group in arrays if group not in available
    ]
    common = {group: shapes for group, shapes in available.items() if group in arrays}
    problems += validate_submission(arrays, common, allow_extra_groups=True)
    if problems:
        raise SubmissionError(str(submission), problems)
    return arrays
