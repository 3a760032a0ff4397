"""The hand-written backward pass of the controller + generator unroll against autograd, and its
time loops in C++ against the same loops in Python."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)

from nlb_suite.models.lfads import native
from nlb_suite.models.lfads import unroll as unroll_module
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


# The time loops in C++ (unroll.cpp) against the same loops in Python, which stay the reference
# and the fallback where no compiler is found.

@pytest.fixture
def loops(monkeypatch):
    """use("python") runs the Python loops, use("native") the C++ ones (skipped where the
    extension cannot be built here)."""
    built = native.unroll_extension()

    def use(which: str) -> None:
        if which == "native" and built is None:
            pytest.skip("the C++ unroll cannot be built here (no compiler?)")
        monkeypatch.setattr(native, "_loaded", [built if which == "native" else None])

    return use


def _run(inputs: UnrollInputs, weights: UnrollWeights) -> list[torch.Tensor]:
    out = unroll(inputs, weights)
    torch.manual_seed(1)
    names = ("factors", "co_params", "inputs")
    loss = sum((torch.randn_like(getattr(out, n)) * getattr(out, n)).sum() for n in names)
    return [getattr(out, n).detach() for n in names] + list(torch.autograd.grad(loss, _differentiable(inputs, weights)))


@pytest.mark.parametrize("dropout", [True, False])
def test_the_cpp_loops_equal_the_python_loops(loops, dropout):
    inputs, weights = _inputs(dropout)
    loops("python")
    expected = _run(inputs, weights)
    loops("native")
    for got, want in zip(_run(inputs, weights), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # the same operations in the same order


@pytest.mark.parametrize("dropout", [True, False])
def test_two_threads_split_the_batch_with_the_same_results(loops, dropout):
    loops("native")
    inputs, weights = _inputs(dropout)
    one = _run(inputs, weights)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert unroll_module._split(inputs.con_input_gates, native.unroll_extension())
        two = _run(inputs, weights)
        with torch.no_grad():
            no_history = unroll(inputs, weights)
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    for got, want in zip(two, one):
        # Trials do not meet inside the loops; the matrix products of half a batch may round in
        # another order than the whole batch's.
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(no_history.factors, one[0], rtol=1e-12, atol=1e-12)


def test_a_failed_build_falls_back_to_the_python_loops_and_says_so(monkeypatch, caplog, tmp_path):
    import torch.utils.cpp_extension as cpp_extension

    def no_compiler(**_: object) -> None:
        raise RuntimeError("Error building extension 'nlb_suite_unroll': g++: command not found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setenv("NLB_SUITE_EXTENSIONS", str(tmp_path))
    monkeypatch.setattr(native, "_loaded", [])
    with caplog.at_level("WARNING", logger=native.__name__):
        assert native.unroll_extension() is None
        assert native.unroll_extension() is None  # tried once per process
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "g++: command not found" in message and str(tmp_path) in message and "NLB_SUITE_NATIVE=0" in message
    inputs, weights = _inputs(dropout=True)
    reference = unroll(inputs, weights, autograd=True)
    torch.testing.assert_close(unroll(inputs, weights).factors, reference.factors)


def test_native_off_by_environment(monkeypatch):
    monkeypatch.setenv("NLB_SUITE_NATIVE", "0")
    monkeypatch.setattr(native, "_loaded", [])
    assert native.unroll_extension() is None
