"""Users' datasets: a small TOML file with the fields of `DatasetSpec`, read and written here."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from ..core.atomic import write_text_atomic
from ..core.spec import Asset, DatasetSpec, ExpectedCounts, Role, SpecError

_TOML_SCALARS = {
    "name", "description", "align_field", "behavior_field", "behavior_lag_ms", "psth_kern_sd_ms",
    "decode_mask_field", "forward_ms", "eval_allow_overlap", "scaling_key",
}


def load_spec_toml(path: str | Path) -> DatasetSpec:
    """Read a user's dataset description.

    Example (paths relative to the TOML file)::

        name = "my_reach"
        description = "PMd during delayed reaches"
        train = "data/my_reach_train.nwb"
        test = "data/my_reach_test.nwb"
        align_field = "move_onset_time"
        window_ms = [-250, 450]
        bin_sizes = [5, 20]
        behavior_field = "hand_vel"
        behavior_lag_ms = 100
        psth_conditions = ["trial_type", "trial_version"]
        psth_kern_sd_ms = 50
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"dataset spec file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML ({err})") from None
    known = {f.name for f in fields(DatasetSpec)} | {"expected"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
    missing = [key for key in ("name", "train", "test", "align_field", "window_ms") if key not in raw]
    if missing:
        raise SpecError(f"{path}: missing required keys {missing}")
    base = path.parent

    def asset(value: object, role: Role) -> Asset:
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, dict) or "path" not in value:
            raise SpecError(f"{path}: `{role}` must be a path or a table with a `path` key")
        file_path = Path(value["path"]).expanduser()
        if not file_path.is_absolute():
            file_path = (base / file_path).resolve()
        return Asset(path=str(file_path), size=value.get("size"), sha256=value.get("sha256"))

    kwargs: dict[str, object] = {k: raw[k] for k in _TOML_SCALARS if k in raw}
    # TOML has no null: an empty string says "this dataset has no behaviour / no decode masks".
    for key in ("behavior_field", "decode_mask_field", "scaling_key"):
        if kwargs.get(key) == "":
            kwargs[key] = None
    kwargs.setdefault("description", f"user dataset from {path.name}")
    try:
        kwargs["window_ms"] = (int(raw["window_ms"][0]), int(raw["window_ms"][1]))
        if "bin_sizes" in raw:
            kwargs["bin_sizes"] = tuple(int(b) for b in raw["bin_sizes"])
        if "psth_conditions" in raw:
            kwargs["psth_conditions"] = tuple(str(c) for c in raw["psth_conditions"])
        if "expected" in raw:
            kwargs["expected"] = ExpectedCounts(**raw["expected"])
        return DatasetSpec(
            source="user", train=asset(raw["train"], "train"), test=asset(raw["test"], "test"), **kwargs
        )
    except (TypeError, IndexError, ValueError) as err:
        raise SpecError(f"{path}: {err}") from None


def spec_to_toml(spec: DatasetSpec) -> str:
    """The TOML text that `load_spec_toml` reads back into `spec` (a user dataset: absolute paths)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (tuple, list)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"name = {value(spec.name)}",
        f"description = {value(spec.description)}",
        f"train = {value(spec.train.path)}",
        f"test = {value(spec.test.path)}",
        f"align_field = {value(spec.align_field)}",
        f"window_ms = {value(list(spec.window_ms))}",
        f"forward_ms = {spec.forward_ms}",
        f"bin_sizes = {value(list(spec.bin_sizes))}",
        f"behavior_field = {value(spec.behavior_field or '')}",
        f"behavior_lag_ms = {spec.behavior_lag_ms}",
        f"psth_conditions = {value(list(spec.psth_conditions))}",
        f"psth_kern_sd_ms = {spec.psth_kern_sd_ms}",
        f"decode_mask_field = {value(spec.decode_mask_field or '')}",
        f"eval_allow_overlap = {value(spec.eval_allow_overlap)}",
    ]
    counts = {f.name: getattr(spec.expected, f.name) for f in fields(ExpectedCounts)}
    lines += ["", "[expected]"] + [f"{k} = {v}" for k, v in counts.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_spec_toml(spec: DatasetSpec, path: str | Path) -> Path:
    """Write `spec` as a dataset TOML file (atomically), usable as `--dataset path`."""
    return write_text_atomic(path, spec_to_toml(spec))
