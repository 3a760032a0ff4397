"""Tuning studies (`nlb_suite.tuning`, `pipeline/tune.py`): bad input refused before Ray starts,
the LFADS member's exploit step, the objective's data, and tiny studies on a local Ray (two CPUs,
started here): a PBT study that is interrupted and resumed, exploits and perturbs, whose best
configuration reproduces the best member, and whose ensemble is the mean of its members; a
random search whose best configuration refits to the same score."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from lfads_testing import SyntheticTrials, one_torch_thread, rotation_dataset  # noqa: F401  # fixture

from nlb_suite.core.arrays import RATE_ARRAYS
from nlb_suite.models.base import make_model
from nlb_suite.tuning.cluster import Cluster, ClusterError, chosen_address, ray_session
from nlb_suite.tuning.space import Dimension, SearchSpaceError, StudyPlan, StudySettings, read_plan
from nlb_suite.tuning.validation import validation_scores, validation_split

ray = pytest.importorskip("ray")

TINY_LFADS = dict(ic_enc_dim=8, ci_enc_dim=4, con_dim=4, co_dim=1, ic_dim=4, gen_dim=8, fac_dim=4, batch_size=16,
                  n_samples=2, kl_increase_epoch=1, l2_increase_epoch=1, log_every=0, lr_patience=100000,
                  patience=100000, threads=1)


# --- the plan: bad input ---------------------------------------------------------------------

def _baselines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, text: str) -> None:
    (tmp_path / f"{model}.toml").write_text(text)
    monkeypatch.setenv("NLB_SUITE_BASELINES", str(tmp_path))


@pytest.mark.parametrize("space, words", [
    ("kern_sd = { low = 10.0, high = 100.0 }", "'kern_sd' is not a hyperparameter of model 'smoothing'"),
    ("kern_sd_ms = { low = 100.0, high = 10.0 }", "low 100.0 > high 10.0"),
    ("alpha = { low = 0.0, high = 1.0, log = true }", "a log range needs low > 0"),
    ("alpha = { low = -1.0, high = 1.0 }", "reaches a value the model refuses"),
    ("alpha = { lo = 0.1, high = 1.0 }", "unknown key(s) ['lo']"),
    ("alpha = { low = 0.1, high = 1.0, init = 2.0 }", "alpha.init must be a number within [0.1, 1.0]"),
])
def test_bad_search_space_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space: str, words: str) -> None:
    _baselines(tmp_path, monkeypatch, "smoothing", f"[search]\nmethod = \"random\"\n[search.space]\n{space}\n")
    with pytest.raises(SearchSpaceError) as err:
        read_plan("smoothing", "synth_maze", 5)
    assert words in str(err.value) and "smoothing.toml" in str(err.value)


def test_bad_study_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _baselines(tmp_path, monkeypatch, "smoothing", "[search]\npopulaton = 4\n[search.space]\nalpha = { low = 0.1, high = 1.0 }\n")
    with pytest.raises(SearchSpaceError, match=r"unknown study setting\(s\) \['populaton'\]"):
        read_plan("smoothing", "synth_maze", 5)
    _baselines(tmp_path, monkeypatch, "smoothing", "[default]\nalpha = 0.1\n")
    with pytest.raises(SearchSpaceError, match=r"no \[search\] table"):
        read_plan("smoothing", "synth_maze", 5)


def test_pbt_only_searches_what_can_change_while_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nlb_suite.pipeline.tune import check_study_model

    _baselines(tmp_path, monkeypatch, "lfads", "[search]\nmethod = \"pbt\"\n[search.space]\n"
                                               "gen_dim = { low = 8, high = 64, integer = true }\n")
    with pytest.raises(SearchSpaceError, match=r"\['gen_dim'\] cannot change while LFADS trains"):
        check_study_model(read_plan("lfads", "synth_maze", 5))


def test_shipped_tables_make_plans() -> None:
    lfads = read_plan("lfads", "synth_maze", 5)
    assert lfads.settings.method == "pbt" and lfads.settings.population == 8
    lr = lfads.dimension("lr")
    assert (lr.low, lr.high, lr.init, lr.log) == (1e-5, 2e-2, 1e-2, True)  # small data: the scaled rate
    assert lfads.dimension("cd_rate").init == 0.5 and lfads.dimension("dropout").init is None
    assert lfads.base["max_epochs"] == lfads.settings.epochs
    real_plan = read_plan("lfads", "mc_maze", 5)
    real = real_plan.settings
    assert (real.population, real.perturbation_interval, real.burn_in) == (20, 25, 105)
    lr = real_plan.dimension("lr")  # the dataset's own entry replaces the whole dimension, lfads-torch's
    assert (lr.low, lr.high, lr.init, lr.explore) == (1e-5, 5e-3, 4e-3, 0.3)
    assert real_plan.dimension("cd_rate").init == 0.5
    for model in ("smoothing", "gpfa", "kalman", "ndt", "stndt"):
        assert read_plan(model, "synth_maze", 5).settings.method == "random"


def test_unreachable_or_malformed_address_is_refused_quickly() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, then close
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ClusterError, match="no Ray cluster answers there.*ray start --head"):
        with ray_session(f"ray://127.0.0.1:{port}", None):
            pass
    with pytest.raises(ClusterError, match="expected auto, local, HOST:PORT or ray://HOST:PORT"):
        chosen_address("ray://nowhere")
    assert not ray.is_initialized()


# --- pieces without Ray ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def rotation() -> SyntheticTrials:
    return rotation_dataset(n_train=40, n_eval=8, n_bins=12, n_forward=3, n_heldin=8, n_heldout=3)


def test_objective_never_reads_eval_trials(rotation: SyntheticTrials) -> None:
    """Validation comes from training trials: changing every eval-trial array changes nothing."""
    from nlb_suite.models.lfads.member import Member

    poisoned = replace(rotation.tensors, eval_spikes_heldin=np.full_like(rotation.tensors.eval_spikes_heldin, 7.0))
    split, split_poisoned = validation_split(rotation.tensors, 0.25, 0), validation_split(poisoned, 0.25, 0)
    np.testing.assert_array_equal(split.tensors.eval_spikes_heldin, split_poisoned.tensors.eval_spikes_heldin)
    assert set(split.valid_index) <= set(range(rotation.tensors.n_train))
    runs = [Member(TINY_LFADS | {"max_epochs": 2}, tensors).train(2) for tensors in (rotation.tensors, poisoned)]
    assert runs[0] == runs[1]


def test_member_exploit_takes_weights_and_optimiser_then_its_own_hyperparameters(rotation: SyntheticTrials,
                                                                                  tmp_path: Path) -> None:
    from nlb_suite.models.lfads.member import Member

    winner = Member(TINY_LFADS | {"max_epochs": 6, "lr": 0.01}, rotation.tensors)
    loser = Member(TINY_LFADS | {"max_epochs": 6, "lr": 0.001, "seed": 1}, rotation.tensors)
    winner.train(2), loser.train(2)
    winner.save(tmp_path)
    loser.load(tmp_path)
    loser.set_hyperparameters({"lr": 0.012, "dropout": 0.2, "kl_ic_scale": 3e-4})
    for name, weight in winner.setup.trainer.network.state_dict().items():
        assert np.array_equal(weight.numpy(), loser.setup.trainer.network.state_dict()[name].numpy()), name
    assert loser.epoch == 2 and loser.setup.trainer.state.history == winner.setup.trainer.state.history
    optimizer = loser.setup.trainer.optimizer
    assert optimizer.param_groups[0]["lr"] == 0.012 and optimizer.state  # AdamW moments came along
    assert loser.setup.trainer.network.encoder.dropout_rate == 0.2 and loser.estimator.config.kl_ic_scale == 3e-4
    with pytest.raises(Exception, match="cannot change while training"):
        loser.set_hyperparameters({"gen_dim": 4})


# --- studies on a local Ray -------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray() -> Iterator[Cluster]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield Cluster(None, 2)
    finally:
        ray.shutdown()


def _pbt_plan(population: int = 2) -> StudyPlan:
    space = (Dimension("lr", 1e-3, 2e-2, log=True), Dimension("dropout", 0.0, 0.4), Dimension("cd_rate", 0.05, 0.5))
    settings = StudySettings(method="pbt", population=population, epochs=6, perturbation_interval=2, burn_in=2,
                             explore=0.3, patience_rounds=10)
    return StudyPlan("lfads", "rotation", 5, TINY_LFADS | {"max_epochs": 6}, space, settings, "test")


@pytest.mark.slow
def test_pbt_study_interrupted_resumed_exploits_and_reproduces(rotation: SyntheticTrials, local_ray: Cluster,
                                                               tmp_path: Path) -> None:
    from nlb_suite.models.lfads import LFADS
    from nlb_suite.pipeline.tune import _best_config, ensemble_rates, read_best_config, write_best_config
    from nlb_suite.tuning.study import StudyError, run_study

    plan, folder, lines = _pbt_plan(), tmp_path / "study", []

    def interrupt_after_first_round(line: str) -> None:
        lines.append(line)
        if len(lines) == 1:
            # Ray Tune saves its state and returns; the members have 4 epochs left, time enough
            # for Ray to see the signal before they finish.
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(StudyError, match="interrupted.*--resume"):
        run_study(plan, rotation.tensors, folder, local_ray, on_round=interrupt_after_first_round)
    with pytest.raises(StudyError, match="already there.*--resume"):
        run_study(plan, rotation.tensors, folder, local_ray)
    study = run_study(plan, rotation.tensors, folder, local_ray, resume=True, on_round=lines.append)
    assert [t.metrics["epoch"] for t in study.trials] == [6, 6]
    assert lines[0].startswith("round   1  epoch    2") and "lr " in lines[0] and len(lines) >= 2

    # Exploits happened (Ray's policy log), and each perturbed value stays in its range.
    policies = [json.loads(line) for line in (folder / "pbt_global.txt").read_text().splitlines()]
    assert policies and all(p[5]["lr"] != p[4]["lr"] for p in policies)
    for trial in study.trials:
        for dim in plan.space:
            assert dim.low <= trial.config[dim.name] <= dim.high

    # best.toml reproduces the best member: its selected loss and the same rates twice.
    best = _best_config(plan, "rotation", "val", 5, study.best, folder, "best")
    path = write_best_config(folder / "best.toml", best, "test")
    config = read_best_config(path)
    assert config.hyperparameters == best.hyperparameters and config.checkpoint == folder / "best"
    rates = []
    for _ in range(2):
        model = LFADS(**config.hyperparameters)
        model.use_checkpoints(config.checkpoint, resume=True)
        model.fit(rotation.tensors)
        assert model.history_[model.best_epoch_].valid_loss_smoothed == study.best.score
        rates.append(model.predict(rotation.tensors))
    for name in RATE_ARRAYS:
        np.testing.assert_array_equal(getattr(rates[0], name), getattr(rates[1], name))

    # The ensemble of two is the mean of the two members' rates, unless the second holds the
    # first's weights (a loser that never beat what it copied: this tiny study often ends so);
    # then it is passed over and the ensemble is the best member alone.
    result = ensemble_rates(plan, study, folder, 2, rotation.tensors)
    second = LFADS(**_best_config(plan, "rotation", "val", 5, study.trials[1], folder, "member1").hyperparameters)
    second.use_checkpoints(folder / "member1", resume=True)
    other = second.fit(rotation.tensors).predict(rotation.tensors)
    copy = all(np.array_equal(getattr(other, name), getattr(rates[0], name)) for name in RATE_ARRAYS)
    expected = [study.trials[0].trial_id] + ([] if copy else [study.trials[1].trial_id])
    assert [t.trial_id for t in result.members] == expected
    for name in RATE_ARRAYS:
        mean = (getattr(rates[0], name).astype(np.float64) + getattr(other, name)) / 2
        np.testing.assert_allclose(getattr(result.rates, name), mean, rtol=1e-6)


@pytest.mark.slow
def test_random_search_best_configuration_refits_to_its_score(rotation: SyntheticTrials, local_ray: Cluster,
                                                              tmp_path: Path) -> None:
    from nlb_suite.tuning.study import run_study

    # alpha starts (and, without PBT, stays) at its init in every trial; kern_sd_ms is drawn.
    space = (Dimension("kern_sd_ms", 10.0, 100.0, log=True), Dimension("alpha", 1e-3, 1.0, log=True, init=0.01))
    settings = StudySettings(method="random", population=2, samples=3, validation_fraction=0.25)
    plan = StudyPlan("smoothing", "rotation", 5, make_model("smoothing").get_params(), space, settings, "test")
    lines: list[str] = []
    study = run_study(plan, rotation.tensors, tmp_path / "study", local_ray, on_round=lines.append)
    assert len(study.trials) == 3 and len(lines) == 3
    assert [t.config["alpha"] for t in study.trials] == [0.01] * 3
    assert len({t.config["kern_sd_ms"] for t in study.trials}) == 3
    scores = [t.score for t in study.trials]
    assert scores == sorted(scores, reverse=True)
    split = validation_split(rotation.tensors, 0.25, 0)
    refit = make_model("smoothing", **(plan.base | study.best.config)).fit(split.tensors)
    assert validation_scores(refit.predict(split.tensors), split)["co_bps"] == study.best.score
    stored = json.loads((tmp_path / "study" / "trials.json").read_text())
    assert [row["score"] for row in stored] == scores

    # The report's figure of the study draws from the folder alone.
    from nlb_suite.outputs.studies import read_rounds, read_study
    from nlb_suite.report.figures import study_figure

    rounds = read_rounds(tmp_path / "study")
    assert [r.best for r in rounds] == sorted(r.best for r in rounds) and rounds[-1].best == study.best.score
    assert study_figure(rounds, read_study(tmp_path / "study")["space"], minimize=False).startswith(b"\x89PNG")


def test_untuned_lfads_scales_what_nobody_set(rotation: SyntheticTrials) -> None:
    from nlb_suite.models.lfads import LFADS, LFADSConfig

    small = LFADSConfig(scale_to_data=True, gen_dim=12).scaled_to(n_train=200, n_steps=40, n_units=30)
    assert small.gen_dim == 12  # set explicitly: kept
    assert small.ic_dim == 66 and small.fac_dim == 10 and small.batch_size == 64 and small.max_epochs == 1000
    assert small.lr == 1e-2  # 3 batches an epoch: the synthetic tables' rate
    large = LFADSConfig(scale_to_data=True).scaled_to(n_train=2000, n_steps=140, n_units=137)
    assert (large.gen_dim, large.fac_dim, large.max_epochs, large.kl_increase_epoch) == (100, 23, 100, 12)
    assert large.lr == 4e-3  # 28 batches an epoch: lfads-torch's rate
    assert LFADSConfig().scaled_to(2000, 140, 137) == LFADSConfig()  # off unless asked for
    model = LFADS(scale_to_data=True, max_epochs=2, n_samples=2, co_dim=0, log_every=0)
    rates = model.fit(rotation.tensors).predict(rotation.tensors)
    assert model.fitted_config_.gen_dim == 32 and model.network_.readout.in_features == model.fitted_config_.fac_dim
    assert model.fitted_params()["gen_dim"] == 32 and model.get_params()["gen_dim"] == 100
    assert rates.eval_rates_heldout.shape == (8, 12, 3)


# --- ASHA: early stopping for models trained in epochs -----------------------------------------

TINY_NDT = dict(n_layers=1, ff_dim=16, batch_size=16, max_epochs=6, patience=6, lr=5e-3, warmup_fraction=0.1,
                log_every=0)


@pytest.mark.parametrize("model", ["ndt", "lfads"])
def test_an_epoch_callback_that_predicts_leaves_the_training_alone(rotation: SyntheticTrials, model: str) -> None:
    # ASHA's trials predict after every epoch; the fit must come out exactly as without it.
    settings = TINY_NDT if model == "ndt" else TINY_LFADS | {"max_epochs": 4}
    plain = make_model(model, **settings).fit(rotation.tensors).predict(rotation.tensors)
    watched, seen = make_model(model, **settings), []
    watched.on_epoch(lambda epoch: seen.append((epoch, watched.predict(rotation.tensors).eval_rates_heldout)))
    rates = watched.fit(rotation.tensors).predict(rotation.tensors)
    assert [epoch for epoch, _ in seen] == list(range(len(seen))) and len(seen) >= 4
    assert not np.array_equal(seen[0][1], seen[-1][1])  # each epoch's own weights
    for name in RATE_ARRAYS:
        np.testing.assert_array_equal(getattr(rates, name), getattr(plain, name))


def test_asha_is_configured_from_the_table_and_refused_where_it_cannot_work(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.schedulers import ASHAScheduler

    from nlb_suite.pipeline.tune import check_study_model
    from nlb_suite.tuning.study import _tune_config

    plan = read_plan("ndt", "synth_maze", 5)
    assert plan.settings.scheduler == "asha"
    config = _tune_config(plan, minimize=False, concurrent=2)
    assert isinstance(config.scheduler, ASHAScheduler)
    assert config.scheduler._max_t == plan.base["max_epochs"] + 1 and config.scheduler._reduction_factor == 3
    check_study_model(plan)
    _baselines(tmp_path, monkeypatch, "gpfa", "[search]\nmethod = \"random\"\nscheduler = \"asha\"\n"
                                              "[search.space]\nlatent_dim = { low = 2, high = 8, integer = true }\n")
    with pytest.raises(SearchSpaceError, match="'gpfa' does not train in epochs"):
        check_study_model(read_plan("gpfa", "synth_maze", 5))
    _baselines(tmp_path, monkeypatch, "lfads", "[search]\nmethod = \"pbt\"\nscheduler = \"asha\"\n"
                                               "[search.space]\nlr = { low = 1e-3, high = 1e-2 }\n")
    with pytest.raises(SearchSpaceError, match="scheduler 'asha' is for a random search"):
        read_plan("lfads", "synth_maze", 5)


@pytest.mark.slow
def test_asha_study_reports_every_epoch_and_writes_each_trial_once(rotation: SyntheticTrials, local_ray: Cluster,
                                                                   tmp_path: Path) -> None:
    from nlb_suite.tuning.study import run_study

    space = (Dimension("lr", 1e-4, 1e-2, log=True), Dimension("dropout", 0.0, 0.5))
    settings = StudySettings(method="random", population=2, samples=4, validation_fraction=0.25, scheduler="asha",
                             grace_epochs=1, reduction_factor=2)
    plan = StudyPlan("ndt", "rotation", 5, make_model("ndt", **TINY_NDT).get_params(), space, settings, "test")
    lines: list[str] = []
    study = run_study(plan, rotation.tensors, tmp_path / "study", local_ray, on_round=lines.append)
    assert len(study.trials) == 4 and len(lines) == 4  # one line per trial, not per epoch
    for trial in study.trials:
        # epochs reported as the trial trained: the fitted model's report one past its last epoch,
        # unless ASHA stopped it at a rung
        assert 1 <= trial.metrics["epoch"] <= TINY_NDT["max_epochs"] + 1
    finished = [t for t in study.trials if t.metrics["epoch"] == TINY_NDT["max_epochs"] + 1]
    assert finished  # the best at every rung goes on to the end
    split = validation_split(rotation.tensors, 0.25, 0)
    best = max(finished, key=lambda t: t.score)
    refit = make_model("ndt", **(plan.base | best.config)).fit(split.tensors)
    assert validation_scores(refit.predict(split.tensors), split)["co_bps"] == best.score


def test_a_study_ensemble_passes_over_copies_of_a_better_trial(rotation: SyntheticTrials, tmp_path: Path) -> None:
    # PBT's losers copy the winners' weights; members that never beat them hold the same model.
    # Two trials with one configuration stand for that here (a random search refits them).
    from nlb_suite.pipeline.tune import ensemble_rates
    from nlb_suite.tuning.study import StudyResult, TrialSummary

    space = (Dimension("kern_sd_ms", 10.0, 100.0),)
    plan = StudyPlan("smoothing", "rotation", 5, make_model("smoothing").get_params(), space,
                     StudySettings(method="random"), "test")
    trials = [TrialSummary(name, {"kern_sd_ms": sd}, {}, score, None, "")
              for name, sd, score in (("a", 30.0, 0.3), ("copy of a", 30.0, 0.3), ("b", 60.0, 0.2), ("c", 90.0, 0.1))]
    result = ensemble_rates(plan, StudyResult(tmp_path, trials, False, 0.0), tmp_path, 2, rotation.tensors)
    assert [t.trial_id for t in result.members] == ["a", "b"]
    first, second = (make_model("smoothing", kern_sd_ms=sd).fit(rotation.tensors).predict(rotation.tensors)
                     for sd in (30.0, 60.0))
    np.testing.assert_allclose(result.rates.eval_rates_heldout,
                               (first.eval_rates_heldout.astype(np.float64) + second.eval_rates_heldout) / 2, rtol=1e-6)


@pytest.mark.slow
def test_a_study_on_a_users_dataset_records_its_best_and_ensemble(local_ray: Cluster, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`tune` end to end on a dataset described by the user's TOML file, given by a relative path:
    best.toml names that file absolutely, so the best run, the ensemble and a rerun of best.toml
    from another folder all find the data (a study on the Yu 2009 data once ran for 24 minutes
    and then failed here, looking the dataset up by its name among the built-in ones)."""
    from nlb_suite.datasets.toml_spec import spec_to_toml
    from nlb_suite.datasets.trial_arrays import write_trial_arrays
    from nlb_suite.pipeline.tune import eval_best, read_best_config, run_tune

    spikes = np.random.default_rng(0).poisson(0.05, (40, 6, 300)).astype(np.uint8)
    spec = write_trial_arrays(tmp_path / "data", "mine", spikes, np.arange(40) % 4, heldout_units=[1, 4],
                              align_ms=50, window_ms=(0, 200), forward_ms=40, seed=1)
    (tmp_path / "data" / "mine.toml").write_text(spec_to_toml(spec))
    monkeypatch.chdir(tmp_path)
    options = dict(submissions_dir=tmp_path / "subs", results=tmp_path / "results.jsonl", n_boot=10)
    run = run_tune("data/mine.toml", "smoothing", settings={"samples": 3}, ensemble=2,
                   studies_dir=tmp_path / "runs", **options)
    best = read_best_config(run.best_config)
    assert best.dataset == str((tmp_path / "data" / "mine.toml").resolve())
    assert run.best.scores is not None and run.ensemble is not None and run.ensemble.scores is not None
    assert run.ensemble.model == "smoothing-ensemble2"
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [row["dataset"] for row in rows] == ["mine", "mine"]
    monkeypatch.chdir(tmp_path / "runs")
    rerun = eval_best(best, submissions_dir=tmp_path / "again", results=tmp_path / "again.jsonl", n_boot=10)
    assert rerun.scores is not None and rerun.scores.co_bps == run.best.scores.co_bps
