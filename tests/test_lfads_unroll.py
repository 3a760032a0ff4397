"""The hand-written backward pass of the controller + generator unroll against autograd."""

from __future__ import annotations

from dataclasses import fields

import torch
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)

from nlb_suite.models.lfads.unroll import UnrollInputs, UnrollWeights, unroll

STEPS, BATCH, CON, GEN, FAC, CO = 5, 3, 4, 6, 3, 2


def _inputs(dropout: bool, dtype=torch.float64) -> tuple[UnrollInputs, UnrollWeights]:
    torch.manual_seed(0)

    def rand(*shape, scale=0.5):
        return (scale * torch.randn(*shape, dtype=dtype)).requires_grad_()

    keep = (lambda *shape: (torch.rand(*shape, dtype=dtype) > 0.3).to(dtype) / 0.7) if dropout else (lambda *s: None)
    inputs = UnrollInputs(
        con_input_gates=rand(STEPS, BATCH, 3 * CON), con_h0=rand(BATCH, CON), gen_h0=rand(BATCH, GEN),
        noise=torch.randn(STEPS, BATCH, CO, dtype=dtype), gen_keep=keep(STEPS + 1, BATCH, GEN),
        factor_keep=keep(STEPS, BATCH, FAC))
    weights = UnrollWeights(
        con_fac=rand(3 * CON, FAC), con_hh=rand(3 * CON, CON), con_hh_bias=rand(3 * CON), co=rand(2 * CO, CON),
        co_bias=rand(2 * CO), gen_ih=rand(3 * GEN, CO), gen_ih_bias=rand(3 * GEN), gen_hh=rand(3 * GEN, GEN),
        gen_hh_bias=rand(3 * GEN), fac=rand(FAC, GEN))
    return inputs, weights


def _differentiable(inputs: UnrollInputs, weights: UnrollWeights) -> list[torch.Tensor]:
    return [inputs.con_input_gates, inputs.con_h0, inputs.gen_h0, *(getattr(weights, f.name) for f in fields(weights))]


def test_unroll_forward_and_gradients_match_autograd():
    for dropout in (True, False):
        inputs, weights = _inputs(dropout)
        fast = unroll(inputs, weights)
        reference = unroll(inputs, weights, autograd=True)
        for name in ("factors", "co_params", "inputs"):
            torch.testing.assert_close(getattr(fast, name), getattr(reference, name))
        torch.manual_seed(1)
        outputs = ("factors", "co_params", "inputs")
        scales = [torch.randn_like(getattr(reference, name)) for name in outputs]
        leaves = _differentiable(inputs, weights)

        def loss(out):
            return sum((w * getattr(out, name)).sum() for w, name in zip(scales, outputs))

        for got, expected in zip(torch.autograd.grad(loss(fast), leaves), torch.autograd.grad(loss(reference), leaves)):
            torch.testing.assert_close(got, expected)


def test_unroll_passes_gradcheck():
    inputs, weights = _inputs(dropout=True)
    leaves = _differentiable(inputs, weights)
    names = [f.name for f in fields(weights)]

    def function(con_input_gates, con_h0, gen_h0, *values):
        x = UnrollInputs(con_input_gates, con_h0, gen_h0, inputs.noise, inputs.gen_keep, inputs.factor_keep)
        out = unroll(x, UnrollWeights(**dict(zip(names, values))))
        return out.factors, out.co_params, out.inputs

    assert torch.autograd.gradcheck(function, leaves)


def test_unroll_only_needs_the_outputs_that_are_used():
    inputs, weights = _inputs(dropout=False)
    out = unroll(inputs, weights)
    out.factors.sum().backward()  # co_params and inputs get no gradient from the loss
    assert weights.co.grad is not None and inputs.con_h0.grad.abs().sum() > 0


def test_unroll_without_gradients_keeps_no_history_and_gives_the_same_outputs():
    inputs, weights = _inputs(dropout=True)
    with_graph = unroll(inputs, weights)
    with torch.no_grad():
        without = unroll(inputs, weights)
    assert with_graph.factors.grad_fn is not None and without.factors.grad_fn is None
    for name in ("factors", "co_params", "inputs"):
        torch.testing.assert_close(getattr(without, name), getattr(with_graph, name), rtol=0, atol=0)
