"""Hyperparameter files: layering, overrides, and bad configurations failing before any work."""

import pytest

from nlb_suite.datasets.registry import BUILTIN
from nlb_suite.models.base import ModelError
from nlb_suite.models.config import baselines_dir, configured_model, load_hyperparameters

LAYERED = """
[default]
kern_sd_ms = 30.0
alpha = 0.5

[toy]
kern_sd_ms = 45.0

[toy.bin20]
alpha = 0.2
"""


@pytest.fixture
def baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("NLB_SUITE_BASELINES", str(tmp_path))
    return tmp_path


def test_layers_default_dataset_and_bin_tables(baselines):
    (baselines / "smoothing.toml").write_text(LAYERED)
    at_5 = load_hyperparameters("smoothing", "toy", 5)
    at_20 = load_hyperparameters("smoothing", "toy", 20)
    other = load_hyperparameters("smoothing", "other", 20)
    assert (at_5["kern_sd_ms"], at_5["alpha"]) == (45.0, 0.5)
    assert (at_20["kern_sd_ms"], at_20["alpha"]) == (45.0, 0.2)
    assert (other["kern_sd_ms"], other["alpha"]) == (30.0, 0.5)
    assert at_5["log_offset"] == 1e-4  # constructor default where no table sets it


def test_model_without_a_file_gets_constructor_defaults(baselines):
    assert load_hyperparameters("kalman", "toy", 5) == {
        "latent_dim": 16, "n_iter": 200, "tolerance": 1e-6, "transform": "sqrt",
        "readout_alpha": 0.01}


def test_string_overrides_take_the_type_of_the_default(baselines):
    (baselines / "smoothing.toml").write_text(LAYERED)
    values = load_hyperparameters("smoothing", "toy", 5, [
        "kern_sd_ms=40", "sweep=true", "seed=3", "alpha_grid=[0.1, 1.0]", "validation_fraction = 0.3"])
    assert values["kern_sd_ms"] == 40.0 and isinstance(values["kern_sd_ms"], float)
    assert values["sweep"] is True and values["seed"] == 3
    assert values["alpha_grid"] == [0.1, 1.0] and values["validation_fraction"] == 0.3
    assert load_hyperparameters("kalman", "toy", 5, ["transform=counts"])["transform"] == "counts"
    assert load_hyperparameters("kalman", "toy", 5, {"latent_dim": 3})["latent_dim"] == 3


@pytest.mark.parametrize("override, message", [
    ("kern_sd_ms=wide", "not a valid float"), ("seed=1.5", "not a valid int"),
    ("sweep=maybe", "not a valid bool"), ("kern_sd_ms", "key=value"),
    ("bandwidth=3", "no such hyperparameter"),
])
def test_bad_overrides(baselines, override, message):
    with pytest.raises(ModelError, match=message):
        load_hyperparameters("smoothing", "toy", 5, [override])


@pytest.mark.parametrize("text, message", [
    ("[toy]\nbandwidth = 3\n", r"\[toy\] sets 'bandwidth'"),
    ("[default]\nlatent_dim = 3\n", r"\[default\] sets 'latent_dim'"),
    ("[toy.bin20]\nwidth = 3\n", r"\[toy.bin20\] sets 'width'"),
    ("alpha = 0.1\n", "must be inside a table"),
    ("[toy.fast]\nalpha = 0.1\n", "not a bin table"),
    ("[toy\nalpha = 0.1\n", "cannot read"),
])
def test_bad_files_name_the_file_and_the_key(baselines, text, message):
    (baselines / "smoothing.toml").write_text(text)
    with pytest.raises(ModelError, match=message) as caught:
        load_hyperparameters("smoothing", "toy", 20)
    assert "smoothing.toml" in str(caught.value)


def test_out_of_range_value_fails_when_the_model_is_built(baselines):
    (baselines / "smoothing.toml").write_text("[toy]\nkern_sd_ms = -5.0\n")
    with pytest.raises(ModelError, match=r"kern_sd_ms must be a number in \(0, inf\).*smoothing.toml"):
        configured_model("smoothing", "toy", 5)
    with pytest.raises(ModelError, match="latent_dim"):
        configured_model("kalman", "toy", 5, ["latent_dim=0"])


def test_unknown_model(baselines):
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_hyperparameters("nope", "toy", 5)


def test_env_override_and_repository_default(monkeypatch, tmp_path):
    monkeypatch.setenv("NLB_SUITE_BASELINES", str(tmp_path))
    assert baselines_dir() == tmp_path
    monkeypatch.delenv("NLB_SUITE_BASELINES")
    assert baselines_dir().name == "baselines" and (baselines_dir() / "smoothing.toml").is_file()


@pytest.mark.parametrize("model", ["smoothing", "kalman"])
def test_shipped_files_build_a_model_for_every_builtin_dataset(monkeypatch, model):
    monkeypatch.delenv("NLB_SUITE_BASELINES", raising=False)
    for dataset in BUILTIN:
        for bin_ms in (5, 20):
            configured_model(model, dataset, bin_ms)


def test_shipped_smoothing_values_are_the_benchmark_authors(monkeypatch):
    monkeypatch.delenv("NLB_SUITE_BASELINES", raising=False)
    expected = {"mc_maze": (50, 0.01), "area2_bump": (30, 0.01), "mc_maze_large": (40, 0.1),
                "mc_maze_medium": (60, 0.1), "mc_maze_small": (60, 0.1)}
    for dataset, (kern_sd_ms, alpha) in expected.items():
        values = load_hyperparameters("smoothing", dataset, 5)
        assert (values["kern_sd_ms"], values["alpha"]) == (kern_sd_ms, alpha), dataset
