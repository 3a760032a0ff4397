"""The inferred-inputs claim (claims.py, claim 4; the LFADS paper's test on the chaotic RNN with
input pulses): the ROC AUC against sklearn's, and the claim on a small synth_chaotic_rnn_inputs
for inputs that follow the pulses (holds) and inputs that ignore them (does not)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nlb_suite.core.spec import ExpectedCounts
from nlb_suite.datasets import get_spec
from nlb_suite.datasets.synthetic import generate
from nlb_suite.outputs.results import RunRecord
from nlb_suite.report.analysis import detection_auc, input_response
from nlb_suite.report.claims import DETECTION_AUC_HOLDS, INPUT_RESPONSE_MS, measure_claims
from nlb_suite.report.loading import RunOutputs, View
from nlb_suite.report.tables import TableKey
from nlb_suite.report.views import INPUTS_KEY, input_event, inputs_around_event
from nlb_suite.tensors import make_targets, make_tensors

DATASET = "synth_chaotic_rnn_inputs"
BIN_MS = 5


def test_detection_auc_is_sklearns() -> None:
    rng = np.random.default_rng(0)
    with_event = np.round(rng.normal(1.0, 1.0, 30), 1)  # rounded: ties between the groups
    without = np.round(rng.normal(0.0, 1.0, 40), 1)
    labels = np.r_[np.ones(30), np.zeros(40)]
    scores = np.r_[with_event, without]
    assert float(detection_auc(with_event, without)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # Resampling weights act as sklearn's sample weights.
    weights_with, weights_without = rng.integers(0, 3, (5, 30)).astype(float), rng.integers(0, 3, (5, 40)).astype(float)
    resampled = detection_auc(with_event, without, weights_with, weights_without)
    for b in range(5):
        expected = roc_auc_score(labels, scores, sample_weight=np.r_[weights_with[b], weights_without[b]])
        assert resampled[b] == pytest.approx(expected, abs=1e-12)


@pytest.fixture(scope="module")
def view(tmp_path_factory: pytest.TempPathFactory) -> View:
    """A small synth_chaotic_rnn_inputs (60 trials, 15 of them eval) with two made-up runs:
    'follows' has inputs that jump at each pulse and decay; 'ignores' has noise only."""
    spec = dataclasses.replace(get_spec(DATASET), expected=ExpectedCounts(14, 5, 45, 15, 60, 10))
    root = tmp_path_factory.mktemp("pulses")
    generate(spec, root)
    tensors = make_tensors(spec, "val", BIN_MS, root)
    trials = tensors.eval_trials
    pulse_ms = (trials["pulse_time"].to_numpy(float) - trials[spec.align_field].to_numpy(float)) * 1000
    pulse_bin = np.floor((pulse_ms - spec.window_ms[0]) / BIN_MS)
    lag = np.arange(tensors.n_bins)[None, :] - pulse_bin[:, None]
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 0.1, (tensors.n_eval, tensors.n_bins, 2))
    follows = noise + np.where(lag >= 0, np.exp(-lag / 5.0), 0.0)[..., None]  # NaN pulse: no jump
    rates = {
        "train_rates_heldin": np.full((tensors.n_train, tensors.n_bins, tensors.n_heldin), 0.1),
        "train_rates_heldout": np.full((tensors.n_train, tensors.n_bins, tensors.n_heldout), 0.1),
        "eval_rates_heldin": np.full((tensors.n_eval, tensors.n_bins, tensors.n_heldin), 0.1),
        "eval_rates_heldout": np.full((tensors.n_eval, tensors.n_bins, tensors.n_heldout), 0.1),
    }
    runs = [RunOutputs(name, RunRecord(DATASET, "val", BIN_MS, "lfads", {"name": name}, {}), rates,
                       {INPUTS_KEY: inputs.astype(np.float32)})
            for name, inputs in (("follows", follows), ("ignores", noise))]
    return View(TableKey(DATASET, "val", BIN_MS), [run.record for run in runs], runs, spec=spec, tensors=tensors,
                targets=make_targets(spec, "val", BIN_MS, root))


def test_pulses_are_found_in_the_eval_trials(view: View) -> None:
    event = input_event(view)
    assert event.name == "pulse"
    assert event.with_event.sum() >= 3 and event.without.sum() >= 3
    assert not (event.with_event & event.without).any()
    around = inputs_around_event(view)
    follows = around.runs[0]  # a jump of 1 at the pulse's bin, noise (sd 0.1) before it
    before, zero = around.lags_ms < 0, int(np.flatnonzero(around.lags_ms == 0)[0])
    assert np.nanmean(np.abs(follows.at_event[:, before])) < 0.2
    assert np.nanmean(follows.at_event[:, zero]) > 0.8


def test_inputs_claim_is_the_direct_auc_and_says_whether_it_holds(view: View) -> None:
    claims = measure_claims(view)
    rows = {row.model: row for row in claims.rows if row.claim == 4}
    assert set(rows) == {"follows", "ignores"}
    event = input_event(view)
    lags = np.arange(INPUT_RESPONSE_MS[0] // BIN_MS, INPUT_RESPONSE_MS[1] // BIN_MS)
    pseudo = np.resize(event.event_bins, int(event.without.sum()))
    for run in view.runs:
        inputs = run.latents[INPUTS_KEY].astype(np.float64)
        scores = np.r_[input_response(inputs[event.with_event], event.event_bins, lags),
                       input_response(inputs[event.without], pseudo, lags)]
        labels = np.r_[np.ones(event.with_event.sum()), np.zeros(event.without.sum())]
        row = rows[run.label]
        assert row.value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert row.interval.low <= row.value <= row.interval.high
    assert rows["follows"].value == 1.0 and rows["follows"].holds
    assert rows["ignores"].value < DETECTION_AUC_HOLDS and not rows["ignores"].holds
    assert any("claim 1 not measured" in note for note in claims.notes)  # no smoothing run here


def test_no_event_field_is_a_note(view: View) -> None:
    assert view.tensors is not None
    trials = view.tensors.eval_trials.drop(columns=["pulse_time"])
    claims = measure_claims(dataclasses.replace(view, tensors=dataclasses.replace(view.tensors, eval_trials=trials)))
    assert not [row for row in claims.rows if row.claim == 4]
    assert any(note.startswith("claim 4 not measured: the trials have none of bump_time, pulse_time")
               for note in claims.notes)
