"""score(): the same point estimates as evaluate(), bootstrap resamples that equal brute-force
recomputation on explicitly resampled trials, ground-truth metrics, errors."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
from scoring_cases import CaseShape, make_case

from nlb_suite.scoring import Scores, ScoringError, evaluate, score, targets_to_dict
from nlb_suite.scoring.bootstrap import psth_r2_samples, rate_r2_samples, trial_resamples, velocity_r2_samples
from nlb_suite.scoring.metrics import bits_per_spike, decode_velocity, poisson_stats, psth_conditions, psth_r2, rate_r2
from nlb_suite.scoring.r2 import r2_score


def test_point_estimates_are_evaluate_numbers() -> None:
    case = make_case(np.random.default_rng(1), CaseShape(n_masks=2, nan_spikes=True, nan_behavior=True))
    scores = score(case.rates, case.targets, n_boot=0)
    official = evaluate({"area2_bump": targets_to_dict(case.targets)}, {"area2_bump": case.rates.arrays()})
    assert scores.official() == official[0]["area2_bump_split"]
    assert scores.ci == {}


def test_intervals_cover_estimates_and_follow_the_seed() -> None:
    case = make_case(np.random.default_rng(2), CaseShape(n_eval=40))
    first = score(case.rates, case.targets, true_rates=case.true_rates, n_boot=300, seed=4)
    again = score(case.rates, case.targets, true_rates=case.true_rates, n_boot=300, seed=4)
    other = score(case.rates, case.targets, true_rates=case.true_rates, n_boot=300, seed=5)
    assert set(first.ci) == set(Scores.METRICS) - {"tp_corr"}  # per-bin behaviour: vel R2, no tp corr
    for name, interval in first.ci.items():
        assert interval.low < getattr(first, name) < interval.high, name
    assert first.ci == again.ci
    assert first.ci != other.ci


def test_resampled_values_equal_brute_force_recomputation() -> None:
    case = make_case(np.random.default_rng(3), CaseShape(n_masks=2, nan_spikes=True, nan_behavior=True))
    targets, rates = case.targets, case.rates
    eval_rates = np.concatenate([rates.eval_rates_heldin, rates.eval_rates_heldout], axis=-1)
    true_eval = np.concatenate([case.true_rates.eval_rates_heldin, case.true_rates.eval_rates_heldout], axis=-1)
    train_rates = np.concatenate([rates.train_rates_heldin, rates.train_rates_heldout], axis=-1)
    counts = trial_resamples(len(eval_rates), 5, np.random.default_rng(0))
    decoders = decode_velocity(train_rates, targets.train_behavior, eval_rates, targets.eval_behavior,
                               targets.train_decode_mask, targets.eval_decode_mask)

    co_bps = poisson_stats(rates.eval_rates_heldout, targets.eval_spikes_heldout).bits_per_spike(counts)
    vel_r2 = velocity_r2_samples(decoders, counts)
    rate = rate_r2_samples(eval_rates, true_eval, counts)
    for row, weights in enumerate(counts.astype(int)):
        drawn = np.repeat(np.arange(len(weights)), weights)
        assert co_bps[row] == pytest.approx(bits_per_spike(rates.eval_rates_heldout[drawn],
                                                           targets.eval_spikes_heldout[drawn]), abs=1e-10)
        assert rate[row] == pytest.approx(rate_r2(eval_rates[drawn], true_eval[drawn]), abs=1e-10)
        per_mask = []
        for decoder in decoders:  # the fitted decoders stay; their eval rows are resampled by trial
            rows = np.concatenate([np.flatnonzero(decoder.eval_trial == trial) for trial in drawn])
            per_mask.append(r2_score(decoder.eval_behavior[rows], decoder.eval_prediction[rows]))
        assert vel_r2[row] == pytest.approx(np.mean(per_mask), abs=1e-10)

    conditions = psth_conditions(targets.psth, targets.eval_cond_idx)
    psth = psth_r2_samples(targets.psth, eval_rates, conditions, 4, np.random.default_rng(8))
    rng = np.random.default_rng(8)  # same draws, in the same order: per condition, 4 resamples
    drawn_per_condition = [trial_resamples(len(c.eval_trials), 4, rng).astype(int) for c in conditions]
    for row in range(4):
        resampled_idx = [np.repeat(c.eval_trials, w[row]) for c, w in zip(conditions, drawn_per_condition)]
        assert psth[row] == pytest.approx(psth_r2(targets.psth, eval_rates, resampled_idx), abs=1e-10)


def test_true_rates_give_rate_r2_one_and_the_ceiling() -> None:
    case = make_case(np.random.default_rng(4), CaseShape())
    truth = case.true_rates
    perfect = replace(case.rates, eval_rates_heldin=truth.eval_rates_heldin, eval_rates_heldout=truth.eval_rates_heldout)
    scores = score(perfect, case.targets, true_rates=truth, n_boot=50)
    assert scores.rate_r2 == 1.0
    assert scores.co_bps == scores.co_bps_ceiling
    model = score(case.rates, case.targets, true_rates=truth, n_boot=0)
    assert model.co_bps < model.co_bps_ceiling
    assert model.rate_r2 is not None and model.rate_r2 < 1.0


def test_per_unit_co_bps_pool_to_co_bps() -> None:
    case = make_case(np.random.default_rng(5), CaseShape(nan_spikes=True))
    scores = score(case.rates, case.targets, n_boot=0)
    unit_spikes = np.nansum(case.targets.eval_spikes_heldout, axis=(0, 1))
    assert np.sum(scores.co_bps_per_unit * unit_spikes) / unit_spikes.sum() == pytest.approx(scores.co_bps, abs=1e-12)


def test_silent_unit_has_no_per_unit_value_and_serialises_as_null() -> None:
    case = make_case(np.random.default_rng(5), CaseShape())
    spikes = case.targets.eval_spikes_heldout.copy()
    spikes[..., 0] = 0.0
    scores = score(case.rates, replace(case.targets, eval_spikes_heldout=spikes), n_boot=20)
    assert np.isnan(scores.co_bps_per_unit[0]) and np.isfinite(scores.co_bps_per_unit[1:]).all()
    as_json = json.loads(json.dumps(scores.to_dict()))
    assert as_json["co_bps_per_unit"][0] is None
    assert as_json["co_bps"] == scores.co_bps
    assert as_json["ci"]["co_bps"] == [scores.ci["co_bps"].low, scores.ci["co_bps"].high]
    assert as_json["rate_r2"] is None and "rate_r2" not in as_json["ci"]


def test_missing_targets_give_none() -> None:
    case = make_case(np.random.default_rng(6), CaseShape())
    bare = replace(case.targets, train_behavior=None, eval_behavior=None, psth=None, eval_cond_idx=None)
    scores = score(case.rates, bare, n_boot=10)
    assert scores.vel_r2 is None and scores.psth_r2 is None
    assert set(scores.official()) == {"co-bps", "fp-bps"}


def test_zero_rates_are_floored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    case = make_case(np.random.default_rng(7), CaseShape())
    rates = case.rates.eval_rates_heldout.copy()
    rates[0, 0, 0] = 0.0
    with caplog.at_level(logging.WARNING):
        zero = bits_per_spike(rates, case.targets.eval_spikes_heldout)
    assert "zero rate predictions" in caplog.text
    rates[0, 0, 0] = 1e-9
    assert zero == bits_per_spike(rates, case.targets.eval_spikes_heldout)


@pytest.mark.parametrize("bad_value, message", [(-0.1, "negative rate"), (np.nan, "NaN rate"),
                                                (np.inf, "infinite rate")])
def test_bad_rates_are_refused_naming_the_group(bad_value: float, message: str) -> None:
    case = make_case(np.random.default_rng(8), CaseShape())
    arrays = case.rates.arrays()
    arrays["eval_rates_heldout"] = arrays["eval_rates_heldout"].copy()
    arrays["eval_rates_heldout"][1, 2, 0] = bad_value
    with pytest.raises(ScoringError, match=f"group 'mc_maze'.*{message}"):
        evaluate({"mc_maze": targets_to_dict(case.targets)}, {"mc_maze": arrays})


def test_rates_where_spikes_are_unobserved_do_not_count() -> None:
    case = make_case(np.random.default_rng(9), CaseShape())
    spikes = case.targets.eval_spikes_heldout.copy()
    rates = case.rates.eval_rates_heldout.copy()
    spikes[0, :3, 1] = np.nan
    expected = bits_per_spike(rates, spikes)
    rates[0, :3, 1] = np.nan
    assert bits_per_spike(rates, spikes) == expected


def test_shape_mismatch_names_the_array() -> None:
    case = make_case(np.random.default_rng(10), CaseShape())
    short = replace(case.rates, eval_rates_heldout=case.rates.eval_rates_heldout[:, :-1])
    with pytest.raises(ScoringError, match=r"eval_rates_heldout has shape \(16, 11, 4\), the targets need \(16, 12, 4\)"):
        score(short, case.targets)


def test_unreadable_sources_are_refused(tmp_path) -> None:
    not_hdf5 = tmp_path / "submission.h5"
    not_hdf5.write_text("not hdf5")
    with pytest.raises(ScoringError, match="targets file not found"):
        evaluate(tmp_path / "missing.h5", {})
    with pytest.raises(ScoringError, match="cannot read it as an HDF5 submission file"):
        evaluate({}, not_hdf5)


def test_r2_intervals_never_pass_one() -> None:
    from nlb_suite.scoring.bootstrap import bias_corrected_interval

    samples = np.array([0.2, 0.9, 0.95, 0.99, 0.3])
    interval = bias_corrected_interval(samples, estimate=0.98, upper=1.0)
    assert interval.high == 1.0 and interval.low < 0.98
    unbounded = bias_corrected_interval(samples, estimate=0.98)
    assert unbounded.high > 1.0
