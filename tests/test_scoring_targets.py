"""Eval-target files: nlb_tools' layout, round trip, atomic writes, clear errors; the
`nlb-suite targets` command."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scoring_cases import CaseShape, make_case

from nlb_suite.cli import main
from nlb_suite.core.arrays import EvalTargets
from nlb_suite.scoring import (
    TargetsFileError,
    evaluate,
    read_targets,
    targets_from_dict,
    targets_io,
    targets_to_dict,
    write_targets,
)


def test_layout_is_nlb_tools_save_to_h5(tmp_path: Path) -> None:
    case = make_case(np.random.default_rng(0), CaseShape(n_masks=2, nan_spikes=True))
    path = write_targets(tmp_path / "t.h5", {"area2_bump": case.targets})
    with h5py.File(path, "r") as file:
        group = file["area2_bump"]
        assert sorted(group) == sorted(["eval_spikes_heldout", "eval_spikes_heldin_forward",
                                        "eval_spikes_heldout_forward", "train_behavior", "eval_behavior",
                                        "train_decode_mask", "eval_decode_mask", "psth", "eval_cond_idx",
                                        "train_cond_idx"])
        assert group["eval_spikes_heldout"].dtype == np.float32
        assert group["eval_spikes_heldout"].compression == "gzip"
        assert group["train_decode_mask"].dtype == bool
        assert h5py.check_vlen_dtype(group["eval_cond_idx"].dtype) == np.dtype("int32")
        assert group["eval_cond_idx"].shape == (len(case.targets.eval_cond_idx or []),)


def test_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cases = {"mc_maze": make_case(rng, CaseShape(nan_spikes=True)).targets,
             "mc_maze_20": make_case(rng, CaseShape(), bin_ms=20).targets}
    groups = read_targets(write_targets(tmp_path / "sub" / "targets.h5", cases))
    assert list(groups) == ["mc_maze", "mc_maze_20"]
    back = targets_from_dict(groups["mc_maze"], "mc_maze", 5)
    original = cases["mc_maze"]
    np.testing.assert_array_equal(back.eval_spikes_heldout, original.eval_spikes_heldout.astype(np.float32))
    np.testing.assert_array_equal(back.psth, original.psth.astype(np.float32))
    assert back.train_decode_mask is None
    for name in ("eval_cond_idx", "train_cond_idx"):
        ours, theirs = getattr(back, name), getattr(original, name)
        assert len(ours) == len(theirs)
        for read, written in zip(ours, theirs):
            np.testing.assert_array_equal(read, written)


def test_file_and_in_memory_targets_score_alike(tmp_path: Path) -> None:
    case = make_case(np.random.default_rng(2), CaseShape())
    path = write_targets(tmp_path / "t.h5", {"mc_maze": case.targets})
    from_file = evaluate(path, {"mc_maze": case.rates.arrays()})
    from_memory = evaluate(read_targets(path), {"mc_maze": case.rates.arrays()})
    assert from_file == from_memory


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    path = write_targets(tmp_path / "t.h5", {"mc_maze": make_case(rng, CaseShape()).targets})
    before = path.read_bytes()

    def fail_on_second_group(targets: EvalTargets) -> dict[str, np.ndarray]:
        if targets.dataset == "second":
            raise RuntimeError("disk full")
        return targets_to_dict(targets)

    monkeypatch.setattr(targets_io, "targets_to_dict", fail_on_second_group)
    with pytest.raises(RuntimeError, match="disk full"):
        write_targets(path, {"mc_maze": make_case(rng, CaseShape()).targets,
                             "other": make_case(rng, CaseShape(), dataset="second").targets})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.h5"]


def test_not_target_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TargetsFileError, match="not found"):
        read_targets(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(TargetsFileError, match="text.h5: not an HDF5 file"):
        read_targets(text)
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(TargetsFileError, match="holds no groups"):
        read_targets(empty)
    submission = tmp_path / "submission.h5"
    with h5py.File(submission, "w") as file:
        file["mc_maze/eval_rates_heldout"] = np.ones((2, 3, 4))
    with pytest.raises(TargetsFileError, match=r"group 'mc_maze' has no 'eval_spikes_heldout' \(it holds \['eval_rates_heldout'\]\)"):
        read_targets(submission)
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as file:
        file["eval_spikes_heldout"] = np.ones((2, 3, 4))
    with pytest.raises(TargetsFileError, match="'eval_spikes_heldout' is a dataset"):
        read_targets(flat)
    with pytest.raises(TargetsFileError, match="lack"):
        targets_from_dict({"eval_spikes_heldout": np.ones((2, 3, 4))}, "mc_maze", 5)


def test_targets_command_writes_the_val_targets(synthetic_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "targets.h5"
    assert main(["targets", "synth_area2", "--bin", "20", "--data-dir", str(synthetic_root), "-o", str(out)]) == 0
    assert "group 'synth_area2_20'" in capsys.readouterr().out
    groups = read_targets(out)
    assert list(groups) == ["synth_area2_20"]
    group = groups["synth_area2_20"]
    assert group["eval_spikes_heldout"].shape[1:] == (30, 16)  # 600 ms / 20 ms, 16 held-out units
    assert group["eval_decode_mask"].shape[1] == 2


def test_targets_command_reports_bad_requests(synthetic_root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "targets.h5")
    assert main(["targets", "synth_maze_small", "--bin", "10", "--data-dir", str(synthetic_root), "-o", out]) == 2
    assert "bin sizes [5, 20]" in capsys.readouterr().err
    # Real test files hold no held-out spikes; only synthetic datasets have test-phase targets.
    assert main(["targets", "mc_maze_small", "--phase", "test", "--data-dir", str(synthetic_root), "-o", out]) == 2
    assert "test-phase targets" in capsys.readouterr().err
    assert main(["targets", "synth_maze_small", "--phase", "test", "--data-dir", str(synthetic_root), "-o", out]) == 0
    assert read_targets(out)["synth_maze_small"]["eval_spikes_heldout"].shape == (100, 140, 35)


def test_average_rates_is_the_mean_of_its_members():
    from nlb_suite.core.arrays import RATE_ARRAYS, Rates, RatesShapeError, average_rates

    rng = np.random.default_rng(3)
    shapes = {name: (4, 5, 3) for name in RATE_ARRAYS}
    members = [Rates(**{n: rng.random(s).astype(np.float32) for n, s in shapes.items()}) for _ in range(3)]
    mean = average_rates(members)
    for name in RATE_ARRAYS:
        want = np.mean([getattr(m, name).astype(np.float64) for m in members], axis=0)
        np.testing.assert_allclose(getattr(mean, name), want, rtol=1e-6)
        assert getattr(mean, name).dtype == np.float32
    with pytest.raises(RatesShapeError):
        average_rates([])
    odd = Rates(**{n: np.zeros((4, 6, 3), np.float32) for n in RATE_ARRAYS})
    with pytest.raises(RatesShapeError, match="disagree"):
        average_rates([members[0], odd])
