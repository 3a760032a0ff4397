"""Two recurrent encoders run at once on two CPU threads, forward and backward.

LFADS reads the same spikes with two bidirectional GRUs (the IC and the CI encoder). Each is one
`nn.GRU` call whose time loop runs in C++ without Python's lock, and the two do not depend on
each other, so on a CPU with two or more threads they can run side by side, one thread each,
instead of one after the other with both threads splitting every small per-step product. The
autograd engine would run their backward passes one after the other on one thread; here each
encoder's graph is built inside `_SideBySide.forward` and walked inside its backward, one
encoder per thread, as `torch.utils.checkpoint`'s reentrant variant walks an inner graph, and
the parameters' gradients are handed back to autograd (the parameters are inputs of the
function), so `loss.backward()` and `torch.autograd.grad` see them as usual.

Measured at the benchmark configurations (benchmarks/bench_lfads.py; 2 threads; both encoders
forward + backward, median wall ms of 8 steps): mc_maze_small 5 ms (batch 64, 140 bins, 100 and
80 units) 278 one after the other on 1 thread, 297 on 2, 192 side by side; mc_maze 20 ms (batch
256, 35 bins, 64 units each) 142, 133 and 112.

Each side runs with one intra-op thread, so its numbers are those of a one-thread run of that
encoder: the same numbers whatever the machine's thread count, and the same as running the two
one after the other on one thread (tests/test_lfads_side_by_side.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .threads import concurrently

Outputs = tuple[Tensor, Tensor]


def side_by_side(first: nn.Module, second: nn.Module, x: Tensor) -> tuple[Outputs, Outputs]:
    """`(first(x), second(x))` for two modules that each return two tensors, computed at once
    on two threads where that can help (a CPU tensor and at least two intra-op threads), one
    after the other otherwise. `x` must not require a gradient (it is data)."""
    if x.device.type != "cpu" or torch.get_num_threads() < 2:
        return first(x), second(x)
    if x.requires_grad:
        raise ValueError("side_by_side: the input must not require a gradient (the encoders read data)")
    grad = torch.is_grad_enabled()
    if not (grad and any(p.requires_grad for m in (first, second) for p in m.parameters())):
        return concurrently(lambda: first(x), lambda: second(x), grad)
    flat = _SideBySide.apply(first, second, x, *first.parameters(), *second.parameters())
    return (flat[0], flat[1]), (flat[2], flat[3])


class _SideBySide(torch.autograd.Function):
    """Outputs: both modules' two tensors. Inputs: the modules, `x` and every parameter of both
    modules, so that their gradients come back through autograd as any other's do."""

    @staticmethod
    def forward(ctx: Any, first: nn.Module, second: nn.Module, x: Tensor, *parameters: Tensor) -> tuple[Tensor, ...]:
        with torch.enable_grad():
            out_first, out_second = concurrently(lambda: first(x), lambda: second(x), True)
        n_first = len(list(first.parameters()))
        ctx.inner = ((out_first, parameters[:n_first]), (out_second, parameters[n_first:]))
        return tuple(t.detach() for t in (*out_first, *out_second))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        (out_first, params_first), (out_second, params_second) = ctx.inner
        del ctx.inner  # each inner graph is walked once
        grads_first, grads_second = concurrently(lambda: _walk(out_first, grads[:2], params_first),
                                                 lambda: _walk(out_second, grads[2:], params_second), True)
        return (None, None, None, *grads_first, *grads_second)


def _walk(outputs: Outputs, output_grads: tuple[Tensor | None, ...],
          parameters: tuple[Tensor, ...]) -> tuple[Tensor | None, ...]:
    """One module's inner graph, backward: its parameters' gradients (None where unused)."""
    pairs = [(o, g) for o, g in zip(outputs, output_grads) if g is not None and o.requires_grad]
    wanted = [p for p in parameters if p.requires_grad]
    if not pairs or not wanted:
        return tuple(None for _ in parameters)
    found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True))
    return tuple(next(found) if p.requires_grad else None for p in parameters)
