"""The hand-written backward pass of the controller + generator unroll against autograd."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)

from nlb_suite.models.lfads.unroll import UnrollWeights, unroll

STEPS, BATCH, CON, GEN, FAC, CO = 5, 3, 4, 6, 3, 2


def _inputs(dropout: bool, dtype=torch.float64) -> dict:
    torch.manual_seed(0)

    def rand(*shape, scale=0.5):
        return (scale * torch.randn(*shape, dtype=dtype)).requires_grad_()

    keep = (lambda *shape: (torch.rand(*shape, dtype=dtype) > 0.3).to(dtype) / 0.7) if dropout else (lambda *s: None)
    return dict(
        con_input_gates=rand(STEPS, BATCH, 3 * CON), con_h0=rand(BATCH, CON), gen_h0=rand(BATCH, GEN),
        noise=torch.randn(STEPS, BATCH, CO, dtype=dtype), gen_keep=keep(STEPS + 1, BATCH, GEN),
        factor_keep=keep(STEPS, BATCH, FAC),
        weights=UnrollWeights(
            con_fac=rand(3 * CON, FAC), con_hh=rand(3 * CON, CON), con_hh_bias=rand(3 * CON), co=rand(2 * CO, CON),
            co_bias=rand(2 * CO), gen_ih=rand(3 * GEN, CO), gen_ih_bias=rand(3 * GEN), gen_hh=rand(3 * GEN, GEN),
            gen_hh_bias=rand(3 * GEN), fac=rand(FAC, GEN),
        ),
    )


def _autograd_reference(con_input_gates, con_h0, gen_h0, noise, gen_keep, factor_keep, weights):
    """The same recurrence written plainly, differentiated by autograd."""
    w = weights

    def gru(gi, gh, h):
        gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
        r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
        return (1 - z) * n + z * h

    def keep(mask, index, x):
        return x if mask is None else x * mask[index]

    con_h, gen_h = con_h0, gen_h0
    factor = keep(gen_keep, 0, gen_h) @ w.fac.t()
    factors, params, inputs = [], [], []
    for t in range(con_input_gates.shape[0]):
        gi = con_input_gates[t] + keep(factor_keep, t, factor) @ w.con_fac.t()
        con_h = gru(gi, F.linear(con_h, w.con_hh, w.con_hh_bias), con_h)
        p = F.linear(con_h, w.co, w.co_bias)
        mean, logvar = p.chunk(2, dim=1)
        u = mean + torch.exp(0.5 * logvar) * noise[t]
        gen_h = gru(F.linear(u, w.gen_ih, w.gen_ih_bias), F.linear(gen_h, w.gen_hh, w.gen_hh_bias), gen_h)
        factor = keep(gen_keep, t + 1, gen_h) @ w.fac.t()
        factors.append(factor), params.append(p), inputs.append(u)
    return torch.stack(factors), torch.stack(params), torch.stack(inputs)


def _differentiable(inputs: dict) -> list[torch.Tensor]:
    w = inputs["weights"]
    return [inputs["con_input_gates"], inputs["con_h0"], inputs["gen_h0"],
            *(getattr(w, name) for name in w.__dataclass_fields__)]


def test_unroll_forward_and_gradients_match_autograd():
    for dropout in (True, False):
        inputs = _inputs(dropout)
        fast = unroll(**inputs)
        factors, params, us = _autograd_reference(**inputs)
        torch.testing.assert_close(fast.factors, factors)
        torch.testing.assert_close(fast.co_params, params)
        torch.testing.assert_close(fast.inputs, us)

        torch.manual_seed(1)
        weights = [torch.randn_like(x) for x in (factors, params, us)]
        leaves = _differentiable(inputs)
        loss_fast = sum((w * y).sum() for w, y in zip(weights, (fast.factors, fast.co_params, fast.inputs)))
        loss_reference = sum((w * y).sum() for w, y in zip(weights, (factors, params, us)))
        for got, expected in zip(torch.autograd.grad(loss_fast, leaves), torch.autograd.grad(loss_reference, leaves)):
            torch.testing.assert_close(got, expected)


def test_unroll_passes_gradcheck():
    inputs = _inputs(dropout=True)
    leaves = _differentiable(inputs)
    names = list(inputs["weights"].__dataclass_fields__)

    def function(con_input_gates, con_h0, gen_h0, *weights):
        out = unroll(con_input_gates, con_h0, gen_h0, inputs["noise"], inputs["gen_keep"], inputs["factor_keep"],
                     UnrollWeights(**dict(zip(names, weights))))
        return out.factors, out.co_params, out.inputs

    assert torch.autograd.gradcheck(function, leaves)


def test_unroll_only_needs_the_outputs_that_are_used():
    inputs = _inputs(dropout=False)
    out = unroll(**inputs)
    out.factors.sum().backward()  # co_params and inputs get no gradient from the loss
    assert inputs["weights"].co.grad is not None and inputs["con_h0"].grad.abs().sum() > 0


def test_unroll_without_gradients_keeps_no_history_and_gives_the_same_outputs():
    inputs = _inputs(dropout=True)
    with_graph = unroll(**inputs)
    with torch.no_grad():
        without = unroll(**inputs)
    assert with_graph.factors.grad_fn is not None and without.factors.grad_fn is None
    for name in ("factors", "co_params", "inputs"):
        torch.testing.assert_close(getattr(without, name), getattr(with_graph, name), rtol=0, atol=0)
