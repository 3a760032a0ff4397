"""NDT and STNDT: shapes, masking, the context window, the contrastive term, checkpoints and
resume. (That a tiny configuration beats the mean-rate null is the model contract's test, run for
both models with the settings in tests/test_model_contract.py.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)
from simulated_tensors import simulate

from nlb_suite.models.base import ModelError, make_model
from nlb_suite.models.ndt import NDTConfig, STNDTConfig
from nlb_suite.models.ndt.masking import (
    counted_entries,
    mask_span,
    masked_bins,
    masked_loss,
    nt_xent,
    replace_masked,
)
from nlb_suite.models.ndt.network import NDTNetwork, band_mask
from nlb_suite.models.ndt.train import schedule
from nlb_suite.models.torch_support import load_checkpoint

TINY = {"n_layers": 1, "ff_dim": 16, "batch_size": 16, "max_epochs": 6, "patience": 6, "lr": 5e-3,
        "warmup_fraction": 0.1, "log_every": 0}


@pytest.mark.parametrize("config", [NDTConfig(n_heads=2), STNDTConfig(n_heads=2),
                                    NDTConfig(embedding="linear", hidden_dim=12, n_heads=3)])
def test_shapes_over_bins_and_forward_bins(config: NDTConfig) -> None:
    n_in, n_out, steps = 7, 10, 13  # 7 units do not divide into 2 heads: width rounds up to 8
    network = NDTNetwork(config, n_in, n_out, steps)
    log_rates, states = network(torch.rand(5, steps, n_in))
    assert log_rates.shape == (5, steps, n_out)
    assert states.shape == (5, steps, 12 if config.embedding == "linear" else 8)


def test_loss_counts_masked_held_in_bins_and_every_held_out_and_forward_entry() -> None:
    n_bins, n_forward, n_heldin, n_heldout = 6, 3, 4, 2
    observed = torch.ones(2, n_bins + n_forward, n_heldin + n_heldout, dtype=torch.bool)
    observed[1, 2, 0] = False  # unobserved entries never count
    masked = torch.zeros(2, n_bins, dtype=torch.bool)
    masked[0, 1] = masked[1, 2] = masked[1, 4] = True
    counted = counted_entries(observed, masked, n_bins, n_heldin)
    assert counted[:, :, n_heldin:].sum() == 2 * (n_bins + n_forward) * n_heldout  # held-out: always
    assert counted[:, n_bins:, :].all()  # forward bins: always, every unit
    assert counted[0, 1, :n_heldin].all() and counted[1, 4, :n_heldin].all()
    assert counted[1, 2, 1:n_heldin].all() and not counted[1, 2, 0]
    assert counted[:, :n_bins, :n_heldin].sum() == 3 * n_heldin - 1  # nothing else of the held-in window
    # The loss sees only counted entries: changing the others changes neither it nor its gradient.
    log_rates = torch.randn(observed.shape, requires_grad=True)
    target = torch.poisson(torch.full(observed.shape, 2.0))
    loss = masked_loss(log_rates, target, counted)
    loss.backward()
    assert log_rates.grad is not None
    assert (log_rates.grad[~counted] == 0).all() and (log_rates.grad[counted] != 0).all()
    other = target.clone()
    other[~counted] += 5
    assert masked_loss(log_rates, other, counted) == loss


def test_masked_spans_cover_the_ratio_and_replacement_leaves_other_bins_alone() -> None:
    generator = torch.Generator().manual_seed(0)
    for span in (1, 4):
        masked = masked_bins(400, 100, 0.25, span, generator)
        assert 0.2 < masked.float().mean() < 0.3
    runs = masked_bins(1, 2000, 0.2, 5, generator)[0].int()
    starts = torch.nonzero(torch.diff(runs, prepend=torch.zeros(1, dtype=torch.int32)) == 1).flatten()
    ends = torch.nonzero(torch.diff(runs, append=torch.zeros(1, dtype=torch.int32)) == -1).flatten()
    inside = ends < 1999  # a span that starts near the end is cut by it
    assert ((ends - starts + 1)[inside] >= 5).all()  # spans are at least `span` long (overlapping ones merge)
    inputs = torch.poisson(torch.full((30, 20, 6), 1.5))
    masked = masked_bins(30, 20, 0.3, 1, generator)
    zeroed = replace_masked(inputs, masked, 1.0, 0.0, generator)
    assert (zeroed[masked] == 0).all() and torch.equal(zeroed[~masked], inputs[~masked])
    randomised = replace_masked(inputs, masked, 0.0, 1.0, generator)
    assert torch.equal(randomised[~masked], inputs[~masked]) and not torch.equal(randomised[masked], inputs[masked])
    assert mask_span(7, 0.1, 0.2, 0.4) == 1 and mask_span(7, 0.3, 0.2, 0.4) == 4 and mask_span(7, 0.5, 0.2, 0.4) == 7


@pytest.mark.parametrize("n_layers", [1, 2])
def test_context_window_limits_attention(n_layers: int) -> None:
    backward, forward, steps, s = 2, 3, 24, 12
    torch.manual_seed(0)
    config = NDTConfig(n_layers=n_layers, n_heads=1, ff_dim=8, context_backward=backward, context_forward=forward)
    network = NDTNetwork(config, 4, 5, steps).eval()
    inputs = torch.rand(1, steps, 4)
    changed = inputs.clone()
    changed[0, s, 0] += 3.0  # one unit: a shift of every channel alike would vanish in the layer norms
    with torch.no_grad():
        difference = (network(changed)[0] - network(inputs)[0]).abs().amax(dim=2)[0]
    # Bin t sees bins t - backward .. t + forward, so a change at s reaches s - forward .. s + backward
    # in one layer, n_layers times as far in several.
    reach = (torch.arange(steps) >= s - n_layers * forward) & (torch.arange(steps) <= s + n_layers * backward)
    assert (difference[~reach] == 0).all()
    assert (difference[reach] > 0).all()
    mask = band_mask(steps, backward, forward)
    assert mask is not None and mask[10].nonzero().flatten().tolist() == list(range(8, 14))
    assert band_mask(steps, -1, -1) is None


def test_nt_xent_against_a_direct_computation() -> None:
    torch.manual_seed(1)
    first, second, temperature = torch.randn(5, 3), torch.randn(5, 3), 0.5
    views = [*first, *second]
    total = 0.0
    for i, anchor in enumerate(views):
        positive = (i + 5) % 10
        similarities = [float(torch.cosine_similarity(anchor, other, dim=0)) / temperature for other in views]
        denominator = sum(np.exp(similarities[k]) for k in range(10) if k != i)
        total += -np.log(np.exp(similarities[positive]) / denominator)
    assert float(nt_xent(first, second, temperature)) == pytest.approx(total / 10, rel=1e-5)


def test_warm_up_then_cosine() -> None:
    assert schedule(0, 100, 10) == pytest.approx(0.1)
    assert schedule(9, 100, 10) == pytest.approx(1.0)
    assert schedule(55, 100, 10) == pytest.approx(0.5)
    assert schedule(100, 100, 10) == pytest.approx(0.0)


@pytest.mark.parametrize("name", ["ndt", "stndt"])
def test_checkpoint_round_trip_and_resume_equal_to_an_uninterrupted_run(name: str, tmp_path: Path) -> None:
    tensors = simulate(n_train=40, n_eval=10, n_bins=16, n_forward=4, seed=3).tensors
    whole = make_model(name, **TINY)
    whole.use_checkpoints(tmp_path / "whole", resume=False)
    whole.fit(tensors)
    saved = load_checkpoint(tmp_path / "whole" / "last.pt", "NDT")
    assert saved["epoch"] == TINY["max_epochs"] and saved["identity"]["hyperparameters"] == whole.config.hyperparameters()
    best = load_checkpoint(tmp_path / "whole" / "best.pt", "NDT")
    assert set(best["weights"]) == set(whole.network_.state_dict())

    interrupted = make_model(name, **TINY)
    interrupted.use_checkpoints(tmp_path / "parts", resume=False)
    interrupted.fit(tensors, until_epoch=3)
    resumed = make_model(name, **TINY)
    resumed.use_checkpoints(tmp_path / "parts", resume=True)
    resumed.fit(tensors)
    assert [row.valid_loss for row in resumed.history_] == [row.valid_loss for row in whole.history_]
    np.testing.assert_array_equal(resumed.predict(tensors).eval_rates_heldout, whole.predict(tensors).eval_rates_heldout)
    assert set(resumed.training_curves()) >= {"epoch", "train_loss", "valid_loss", "valid_co_bps"}

    other = make_model(name, **{**TINY, "lr": 1e-3})
    other.use_checkpoints(tmp_path / "parts", resume=True)
    with pytest.raises(ModelError, match="lr"):
        other.fit(tensors)


def test_latents_are_the_last_layer_states_over_the_trial_window() -> None:
    tensors = simulate(n_train=30, n_eval=8, n_bins=12, n_forward=3, seed=4).tensors
    rates = make_model("ndt", **TINY).fit(tensors).predict(tensors)
    width = tensors.n_heldin + tensors.n_heldin % 2  # rounded up to the 2 heads
    assert rates.latents["eval_latents"].shape == (8, 12, width)
    assert rates.latents["train_latents"].shape == (30, 12, width)
    assert rates.eval_rates_heldout_forward.shape == (8, 3, tensors.n_heldout)


def test_held_in_rates_of_a_bin_never_see_its_own_spikes() -> None:
    # Held-in rates come from masked passes (the loss trained masked bins only): changing a
    # bin's held-in spikes leaves that bin's held-in rates alone; the held-out rates, from the
    # unmasked pass, see the change.
    tensors = simulate(n_train=30, n_eval=8, n_bins=12, n_forward=3, seed=4).tensors
    model = make_model("ndt", **TINY).fit(tensors)
    rates = model.predict(tensors)
    changed = tensors.eval_spikes_heldin.copy()
    changed[2, 5] += 3.0
    again = model.predict(replace(tensors, eval_spikes_heldin=changed))
    np.testing.assert_array_equal(again.eval_rates_heldin[2, 5], rates.eval_rates_heldin[2, 5])
    assert not np.array_equal(again.eval_rates_heldin[2, 6], rates.eval_rates_heldin[2, 6])
    assert not np.array_equal(again.eval_rates_heldout[2, 5], rates.eval_rates_heldout[2, 5])
    np.testing.assert_array_equal(again.eval_rates_heldin[3], rates.eval_rates_heldin[3])  # other trials


def test_explicit_attention_equals_sdpa_without_dropout() -> None:
    from nlb_suite.models.ndt.network import attention

    torch.manual_seed(2)
    query, key, value = (torch.randn(3, 2, 11, 5) for _ in range(3))
    mask = band_mask(11, 2, 4)
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    torch.manual_seed(0)
    # dropout 1e-12 takes the explicit path and drops (almost surely) nothing
    explicit = attention(query, key, value, mask, 1e-12)
    torch.testing.assert_close(explicit, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attention(query, key, value, mask, 0.0), expected)


def test_a_gated_stndt_starts_as_ndt_and_learns_its_spatial_scale() -> None:
    torch.manual_seed(0)
    n_in, n_out, steps = 6, 8, 10
    sizes = dict(n_heads=2, n_layers=2, ff_dim=8, dropout=0.0, dropout_attention=0.0, dropout_embedding=0.0,
                 dropout_rates=0.0)
    gated = NDTNetwork(STNDTConfig(gate_spatial=True, **sizes), n_in, n_out, steps)
    plain = NDTNetwork(NDTConfig(**sizes), n_in, n_out, steps)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "spatial" not in k and "unit_position" not in k})
    spikes = torch.poisson(torch.full((3, steps, n_in), 0.5))
    log_rates, _ = gated(spikes)
    torch.testing.assert_close(log_rates, plain(spikes)[0], rtol=0, atol=0)
    log_rates.sum().backward()
    scales = [layer.spatial_scale for layer in gated.layers]
    assert all(s is not None and s.grad is not None and s.grad.abs() > 0 for s in scales)
    ungated = NDTNetwork(STNDTConfig(**sizes), n_in, n_out, steps)
    assert all(layer.spatial_scale is None for layer in ungated.layers)
