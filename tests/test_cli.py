"""The command line: a light parser, one spelling of each option, plug-ins, user data end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from nlb_suite.cli import build_parser, main
from nlb_suite.outputs.results import read_records


def test_building_the_parser_loads_no_heavy_library() -> None:
    code = ("import sys; from nlb_suite.cli import build_parser; build_parser(); "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'pynwb', 'scipy', 'sklearn', 'pandas', 'matplotlib', 'h5py', 'numpy'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


@pytest.mark.parametrize("command", ["eval", "targets", "synth", "fetch", "validate", "score"])
def test_every_command_names_datasets_with_the_same_option(command: str) -> None:
    parser = build_parser()
    extra = {"eval": ["--model", "gpfa"], "validate": ["file.h5"], "score": ["file.h5"]}.get(command, [])
    args = parser.parse_args([command, *extra, "--dataset", "synth_maze_small"])
    assert args.datasets == ["synth_maze_small"]


def test_bin_is_checked_the_same_way_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["eval", "--model", "gpfa"], ["targets"], ["validate", "f.h5"], ["score", "f.h5"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--bin", "-5"])
        assert "must be positive" in capsys.readouterr().err


def test_models_lists_the_entry_points_without_importing_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert {"smoothing", "gpfa", "kalman", "lfads"} <= set(capsys.readouterr().out.split())
    assert main(["models", "--model", "kalman"]) == 0
    assert "latent_dim = 16" in capsys.readouterr().out


def test_a_plugin_model_runs_from_the_command_line(synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "my_models.py").write_text('''
import numpy as np
from nlb_suite.core.arrays import Rates
from nlb_suite.models.base import register_model


@register_model("flat")
class Flat:
    def __init__(self, level: float = 0.1) -> None:
        self.level = level

    def fit(self, tensors):
        return self

    def predict(self, tensors):
        def fill(trials, bins, units):
            return np.full((trials, bins, units), self.level, dtype=np.float32)
        s = tensors.sizes
        return Rates(fill(s.n_train, s.n_bins, s.n_heldin), fill(s.n_train, s.n_bins, s.n_heldout),
                     fill(s.n_eval, s.n_bins, s.n_heldin), fill(s.n_eval, s.n_bins, s.n_heldout),
                     fill(s.n_eval, s.n_forward, s.n_heldin), fill(s.n_eval, s.n_forward, s.n_heldout))
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    results = tmp_path / "results.jsonl"
    assert main(["eval", "--plugin", "my_models", "--model", "flat", "--dataset", "synth_maze_small", "--bin", "20",
                 "--data-dir", str(synthetic_root), "--out", str(tmp_path), "--results", str(results),
                 "--n-boot", "10", "--set", "level=0.2"]) == 0
    (record,) = read_records(results)
    assert record.model == "flat" and record.hyperparameters == {"level": 0.2}
    assert main(["eval", "--plugin", "no_such_module", "--model", "flat"]) == 2
    assert "--plugin no_such_module: cannot import it" in capsys.readouterr().err


def test_score_from_a_datasets_files_equals_scoring_its_target_file(
        synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data-dir", str(synthetic_root)]
    assert main(["eval", "--model", "smoothing", "--dataset", "synth_maze_small", "--bin", "20", "--out", str(tmp_path),
                 "--results", str(tmp_path / "r.jsonl"), "--n-boot", "10", *common]) == 0
    submission = tmp_path / "synth_maze_small_val_20ms_smoothing.h5"
    targets = tmp_path / "targets.h5"
    assert main(["targets", "synth_maze_small", "--bin", "20", "--out", str(targets), *common]) == 0
    capsys.readouterr()
    assert main(["score", str(submission), "--targets", str(targets), "--json", *common]) == 0
    from_file = capsys.readouterr().out
    assert main(["score", str(submission), "--dataset", "synth_maze_small", "--bin", "20", "--json", *common]) == 0
    # Target files store float32, as nlb_tools' save_to_h5 does: equal to that precision.
    (direct,), (via_file,) = json.loads(capsys.readouterr().out), json.loads(from_file)
    for group, metrics in via_file.items():
        assert direct[group] == pytest.approx(metrics, rel=1e-7)
    assert main(["score", str(submission), "--targets", str(targets), "--dataset", "synth_maze_small", *common]) == 2
    assert "one way" in capsys.readouterr().err


def test_imported_trials_with_behaviour_give_vel_r2_and_report_figures(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A user's reaching data with hand velocity: import-trials -> eval (vel R2) -> report, whose
    figures find the dataset through the spec stored in the record (not a built-in name)."""
    rng = np.random.default_rng(0)
    n_trials, n_units, n_ms = 84, 24, 400
    conditions = np.repeat(np.arange(4), n_trials // 4)
    angle = conditions[:, None] * np.pi / 2 + np.linspace(0, np.pi, n_ms)[None, :]
    velocity = np.stack([np.cos(angle), np.sin(angle)], axis=2) * 100.0
    tuning = rng.normal(size=(2, n_units))
    rates = np.exp(np.log(0.02) + 0.5 * np.einsum("tmc,cu->tum", velocity / 100.0, tuning))
    spikes = rng.poisson(rates)
    source = tmp_path / "reach.npz"
    np.savez(source, spikes=spikes, conditions=conditions, behavior=velocity)
    out = tmp_path / "reach"
    assert main(["import-trials", str(source), "--name", "reach", "--out", str(out), "--window", "0", "300",
                 "--forward-ms", "100", "--behavior-field", "behavior", "--behavior-unit", "mm/s"]) == 0
    assert "behaviour hand_vel (2 channels)" in capsys.readouterr().out
    results = tmp_path / "results.jsonl"
    assert main(["eval", "--model", "smoothing", "--dataset", str(out / "reach.toml"), "--bin", "20",
                 "--out", str(tmp_path / "subs"), "--results", str(results), "--n-boot", "10"]) == 0
    (record,) = read_records(results)
    assert record.metrics["vel R2"] > 0.5 and record.spec is not None and record.spec["name"] == "reach"
    (out / "reach.toml").unlink()  # the report must not need it
    assert main(["report", "--html", "--results", str(results), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "PSTHs per condition." in page and "Behaviour: decoded hand velocity." in page
    with h5py.File(out / "reach_train.nwb", "r") as f:
        assert f["processing/behavior/hand_vel/data"].shape == (int(f["intervals/trials/stop_time"][-1] * 1000), 2)


def test_a_dataset_name_that_leaves_its_folder_is_refused_before_any_file(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "x.npz"
    np.savez(source, spikes=np.zeros((10, 4, 100), int), conditions=np.zeros(10, int))
    assert main(["import-trials", str(source), "--name", "../escape", "--out", str(tmp_path / "o"),
                 "--window", "0", "50"]) == 2
    assert "dataset name '../escape' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "escape_train.nwb").exists() and not (tmp_path / "o").exists()
