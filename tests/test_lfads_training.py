"""LFADS training: coordinated dropout, ramps, checkpoints, resume, hyperparameter checks, and a
tiny model that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lfads_testing import one_torch_thread, rotation_dataset  # noqa: F401  (autouse fixture)

from nlb_suite.models.base import ModelError, make_model
from nlb_suite.models.lfads import LFADS
from nlb_suite.models.lfads.augment import block_gradients, coordinated_dropout
from nlb_suite.models.lfads.train import Batch, Trainer, ramp
from nlb_suite.models.torch_support import load_checkpoint, save_checkpoint
from nlb_suite.scoring.metrics import bits_per_spike

TINY = dict(ic_enc_dim=16, ci_enc_dim=8, con_dim=8, co_dim=2, ic_dim=8, gen_dim=16, fac_dim=4, batch_size=16,
            dropout=0.05, lr=1e-2, kl_increase_epoch=4, l2_increase_epoch=4, log_every=0, n_samples=8)


def test_coordinated_dropout_trains_held_in_units_only_through_dropped_entries():
    torch.manual_seed(0)
    batch, bins, forward, heldin, heldout = 3, 6, 2, 5, 2
    spikes = torch.poisson(torch.full((batch, bins, heldin), 2.0))
    dropout = coordinated_dropout(spikes, rate=0.4)
    dropped = dropout.gradient_mask
    assert 0 < dropped.float().mean() < 1
    assert (dropout.inputs[dropped] == 0).all()
    torch.testing.assert_close(dropout.inputs[~dropped], spikes[~dropped] / 0.6)

    nll = torch.rand(batch, bins + forward, heldin + heldout, requires_grad=True)
    blocked = block_gradients(nll, dropped)
    torch.testing.assert_close(blocked, nll)  # the loss value counts every entry
    blocked.sum().backward()
    flows = nll.grad != 0
    assert torch.equal(flows[:, :bins, :heldin], dropped)
    assert flows[:, :, heldin:].all() and flows[:, bins:, :].all()

    everything = coordinated_dropout(spikes, rate=0.0)
    assert everything.gradient_mask.all() and torch.equal(everything.inputs, spikes)


def test_sample_validation_entries_never_reach_the_encoder():
    torch.manual_seed(1)
    target = torch.poisson(torch.full((4, 7, 5), 2.0))
    observed = torch.ones_like(target, dtype=torch.bool)
    trained = observed.clone()
    held_back = torch.rand(4, 5, 3) < 0.25
    trained[:, :5, :3] &= ~held_back
    inputs = Batch(target, observed, trained).encoder_input(n_bins=5, n_heldin=3, sv_rate=0.25)
    assert inputs.shape == (4, 5, 3) and (inputs[held_back] == 0).all()
    torch.testing.assert_close(inputs[~held_back], target[:, :5, :3][~held_back] / 0.75)

    data = rotation_dataset(n_train=20, n_eval=4, n_bins=10, n_forward=3, seed=3)
    model = LFADS(**TINY, sv_rate=0.2, max_epochs=3).fit(data.tensors)
    assert all(np.isfinite(r.valid_loss) for r in model.history_)


def test_ramps_rise_linearly_after_their_start():
    assert [ramp(epoch, start=2, increase=4) for epoch in range(8)] == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert ramp(0, start=0, increase=0) == 1.0 and ramp(2, start=3, increase=0) == 0.0


def test_checkpoints_are_plain_tensors_written_atomically(tmp_path):
    payload = {"weights": {"w": torch.arange(4.0)}, "config": {"gen_dim": 8, "name": "x"}, "epoch": 3,
               "rng": torch.get_rng_state(), "history": [{"loss": float("nan")}]}
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, payload)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    loaded = torch.load(path, weights_only=True, map_location="cpu")
    assert torch.equal(loaded["weights"]["w"], payload["weights"]["w"]) and loaded["epoch"] == 3
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="broken.pt"):
        load_checkpoint(tmp_path / "broken.pt", "LFADS")


def _weights(model: LFADS) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.network_.state_dict().items()}


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    data = rotation_dataset(n_train=24, n_eval=4, n_bins=10, n_forward=3, seed=1)
    settings = dict(TINY, kl_increase_epoch=1, l2_increase_epoch=1, patience=50, max_epochs=4)
    straight = LFADS(**settings).fit(data.tensors)

    # A run interrupted after two of its four epochs.
    epoch = Trainer._epoch

    def interrupted(self, *args):
        if self.state.epoch == 2:
            raise KeyboardInterrupt
        return epoch(self, *args)

    first = LFADS(**settings)
    first.use_checkpoints(tmp_path, resume=False)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            first.fit(data.tensors)
    last = load_checkpoint(tmp_path / "last.pt", "LFADS")
    assert last["epoch"] == 2 and set(last) >= {"weights", "identity", "optimizer", "scheduler", "rng"}
    assert last["identity"]["hyperparameters"] == LFADS(**settings).config.hyperparameters()

    resumed = LFADS(**settings)
    resumed.use_checkpoints(tmp_path, resume=True)
    resumed.fit(data.tensors)
    assert [r.train_loss for r in resumed.history_] == [r.train_loss for r in straight.history_]
    assert resumed.best_epoch_ == straight.best_epoch_
    for name, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[name], value, rtol=0, atol=0)
    best = load_checkpoint(tmp_path / "best.pt", "LFADS")
    assert best["epoch"] == straight.best_epoch_
    for name, value in best["weights"].items():
        torch.testing.assert_close(value, _weights(straight)[name], rtol=0, atol=0)

    changed = LFADS(**dict(settings, gen_dim=12, lr=0.05))
    changed.use_checkpoints(tmp_path, resume=True)
    with pytest.raises(ModelError, match=r"gen_dim: 16 there, 12 now; lr: 0.01 there, 0.05 now"):
        changed.fit(data.tensors)


def test_tiny_model_beats_the_mean_rate_null_on_held_out_units():
    data = rotation_dataset(seed=0)
    model = make_model("lfads", **TINY, max_epochs=25, patience=10)
    rates = model.fit(data.tensors).predict(data.tensors)
    rates.check_shapes(data.tensors.sizes)
    assert set(rates.latents) >= {"train_factors", "eval_factors", "eval_inputs"}
    assert rates.latents["eval_factors"].shape == (16, 20, 4) and rates.latents["eval_inputs"].shape == (16, 20, 2)
    assert all(np.isfinite(a).all() and (a >= 0).all() for a in rates.arrays().values())

    bins, heldin = data.tensors.n_bins, data.tensors.n_heldin
    spikes = data.eval_spikes[:, :bins, heldin:]
    model_bps = bits_per_spike(rates.eval_rates_heldout, spikes)
    truth_bps = bits_per_spike(data.eval_rates[:, :bins, heldin:], spikes)
    assert model_bps > 0.25 * truth_bps > 0  # the mean-rate null scores 0 by construction
    curves = model.history_
    assert len(curves) >= 10 and curves[-1].train_loss < curves[0].train_loss


def test_missing_data_are_masked_out_of_training():
    """NaN entries are left out, not read as silence: the same data with those entries set to 0
    train differently, and the losses stay finite."""
    data = rotation_dataset(n_train=20, n_eval=4, n_bins=10, n_forward=3, seed=2)
    zeros = rotation_dataset(n_train=20, n_eval=4, n_bins=10, n_forward=3, seed=2)
    for tensors, value in ((data.tensors, np.nan), (zeros.tensors, 0.0)):
        tensors.train_spikes_heldout[:, :4] = value
        tensors.train_spikes_heldin[3:6, 2:5, :3] = value
    masked = LFADS(**TINY, max_epochs=3).fit(data.tensors)
    silent = LFADS(**TINY, max_epochs=3).fit(zeros.tensors)
    assert all(np.isfinite(r.train_loss) and np.isfinite(r.valid_loss) for r in masked.history_)
    assert masked.history_[0].train_recon != silent.history_[0].train_recon
    # With the held-out units' first bins unobserved in every training trial, nothing there was
    # fitted to zero: the model predicts clearly more there than a model fitted to the zeros
    # (a model that read NaN as 0 would predict the same in both).
    rates, zero_rates = masked.predict(data.tensors), silent.predict(zeros.tensors)
    assert rates.train_rates_heldout[:, :4].mean() > 1.3 * zero_rates.train_rates_heldout[:, :4].mean()


@pytest.mark.parametrize("bad, message", [  # the contract test checks every lower bound
    (dict(dropout=1.0), "dropout"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(co_dim=4, con_dim=0), "controller"),
    (dict(device="tpu"), "device"),
    (dict(unroll="compiled"), "unroll"),
])
def test_bad_hyperparameters_fail_at_construction(bad, message):
    with pytest.raises(ModelError, match=message):
        make_model("lfads", **bad)


def test_predict_needs_a_fit_on_the_same_shapes():
    data = rotation_dataset(n_train=10, n_eval=3, n_bins=8, n_forward=2)
    model = LFADS(**TINY, max_epochs=1).fit(data.tensors)
    other = rotation_dataset(n_train=10, n_eval=3, n_bins=9, n_forward=2)
    with pytest.raises(ModelError, match="fitted on"):
        model.predict(other.tensors)
