"""The controller + generator unroll of LFADS as one autograd function with a hand-written
backward pass.

This loop is the one part of LFADS that must step through time in Python (the controller reads
the previous step's factors). Left to autograd it records ~30 graph nodes per step and computes
every weight gradient as a small per-step matrix product. Here the forward pass runs without a
graph, writing each step's gates into preallocated time-major buffers; the backward pass walks
back through time propagating only the state gradients, and computes every weight gradient
afterwards as one large matrix product over all steps: about 3x faster than autograd here.
The two time loops run in C++ (unroll.cpp, built on first use by native.py) where a compiler is
found, step for step the same operations as `_forward_steps` and `_backward_steps` below, which
stay the reference and the fallback. In C++ they run without Python's lock, so on a CPU with two
or more threads each half of the batch runs its loop on its own thread at once; in Python the
halves would take turns between small operations. Measured at the benchmark configurations
(forward + backward of this function, median wall ms, everything else on the machine stopped):
mc_maze 20 ms (batch 256, 45 steps, generator 200) 265 in Python and 248 in C++ on one thread,
147 and 145 on two; mc_maze_small 5 ms (batch 64, 180 steps, generator 100) 159 and 133 on one
thread, 139 and 109 on two. At mc_maze the loop is bound by its matrix products, which already
split well over two threads; at mc_maze_small by the many small operations.
`unroll_autograd` is the same recurrence written plainly for autograd, for debugging and for
trying new features (the `unroll = "autograd"` setting of LFADS); `tests/test_lfads_unroll.py`
checks the two against each other and the hand-written backward with gradcheck.

Shapes: S steps, B trials, C controller units, G generator units, F factors, U inferred inputs.
The GRUs use torch's gate layout (reset, update, new); all tensors are time-major.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .native import unroll_extension
from .threads import concurrently

T = TypeVar("T")


@dataclass
class UnrollWeights:
    con_fac: Tensor  # (3C, F) controller input weights acting on the fed-back factors
    con_hh: Tensor  # (3C, C)
    con_hh_bias: Tensor  # (3C,)
    co: Tensor  # (2U, C) controller state -> inferred-input mean and log-variance
    co_bias: Tensor  # (2U,)
    gen_ih: Tensor  # (3G, U)
    gen_ih_bias: Tensor  # (3G,)
    gen_hh: Tensor  # (3G, G)
    gen_hh_bias: Tensor  # (3G,)
    fac: Tensor  # (F, G) row-normalised generator -> factors map


@dataclass
class UnrollOutput:
    factors: Tensor  # (S, B, F)
    co_params: Tensor  # (S, B, 2U) inferred-input posterior mean and log-variance
    inputs: Tensor  # (S, B, U) inferred inputs: mean + exp(logvar / 2) * noise


@dataclass
class UnrollInputs:
    """con_input_gates (S, B, 3C): the controller's input-gate pre-activations from the CI
    encoding (bias included); con_h0 (B, C), gen_h0 (B, G): initial states, already inside the
    clip; noise (S, B, U): standard normal draws (zeros give the posterior means); gen_keep
    (S+1, B, G) and factor_keep (S, B, F): scaled dropout masks on the generator states (the
    initial one first) and on the factors fed back to the controller, or None without dropout."""

    con_input_gates: Tensor
    con_h0: Tensor
    gen_h0: Tensor
    noise: Tensor
    gen_keep: Tensor | None
    factor_keep: Tensor | None


def unroll(inputs: UnrollInputs, weights: UnrollWeights, autograd: bool = False) -> UnrollOutput:
    """Run controller and generator for S steps; `autograd` takes the plain recurrence instead of
    the hand-written backward pass (same numbers, about 3x slower to train)."""
    if autograd:
        return unroll_autograd(inputs, weights)
    arguments = _tensors(inputs) + _tensors(weights)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in arguments):
        factors, co_params, u = _Unroll.apply(*arguments)
    else:  # no backward pass to come: keep one step of history, not all of them
        factors, co_params, u, _ = _forward(inputs, weights, keep_history=False)
    return UnrollOutput(factors, co_params, u)


def _tensors(values: Any) -> tuple[Any, ...]:
    """A dataclass's fields in order (autograd functions and the C++ loops take positional
    tensors)."""
    return tuple(getattr(values, item.name) for item in fields(values))


def unroll_autograd(inputs: UnrollInputs, weights: UnrollWeights) -> UnrollOutput:
    """The same recurrence written plainly, differentiated by autograd."""
    x, w = inputs, weights

    def gru(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
        gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
        r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
        return (1 - z) * n + z * h

    con_h, gen_h = x.con_h0, x.gen_h0
    factor = _masked(gen_h, x.gen_keep, 0) @ w.fac.t()
    factors, params, inputs_used = [], [], []
    for t in range(x.con_input_gates.shape[0]):
        gi = x.con_input_gates[t] + _masked(factor, x.factor_keep, t) @ w.con_fac.t()
        con_h = gru(gi, F.linear(con_h, w.con_hh, w.con_hh_bias), con_h)
        p = F.linear(con_h, w.co, w.co_bias)
        mean, logvar = p.chunk(2, dim=1)
        u = mean + torch.exp(0.5 * logvar) * x.noise[t]
        gen_h = gru(F.linear(u, w.gen_ih, w.gen_ih_bias), F.linear(gen_h, w.gen_hh, w.gen_hh_bias), gen_h)
        factor = _masked(gen_h, x.gen_keep, t + 1) @ w.fac.t()
        factors.append(factor)
        params.append(p)
        inputs_used.append(u)
    return UnrollOutput(torch.stack(factors), torch.stack(params), torch.stack(inputs_used))


@dataclass
class _History:
    """Per-step values the backward pass needs. Without a backward pass to come, one slot (two
    for the states) is reused at every step, so memory does not grow with the number of steps."""

    con_states: Tensor  # (S + 1, B, C)
    gen_states: Tensor  # (S + 1, B, G)
    con_gates: Tensor  # (S, B, 3C) gate activations (reset, update, new)
    con_hidden_new: Tensor  # (S, B, C) candidate's hidden-side pre-activation W_hn h + b_hn
    gen_gates: Tensor  # (S, B, 3G)
    gen_hidden_new: Tensor  # (S, B, G)
    feedback: Tensor  # (S, B, F) factors as fed to the controller (after dropout)
    co_std: Tensor  # (S, B, U)
    kept: bool

    @classmethod
    def allocate(cls, like: Tensor, steps: int, batch: int, con_dim: int, gen_dim: int, fac_dim: int, co_dim: int,
                 keep: bool) -> "_History":
        slots = steps if keep else 1
        new = like.new_empty
        return cls(
            con_states=new(slots + 1, batch, con_dim), gen_states=new(slots + 1, batch, gen_dim),
            con_gates=new(slots, batch, 3 * con_dim), con_hidden_new=new(slots, batch, con_dim),
            gen_gates=new(slots, batch, 3 * gen_dim), gen_hidden_new=new(slots, batch, gen_dim),
            feedback=new(slots, batch, fac_dim), co_std=new(slots, batch, co_dim), kept=keep,
        )

    def step(self, t: int) -> int:
        return t if self.kept else 0

    def state(self, t: int) -> int:
        return t if self.kept else t % 2


@dataclass
class _StepGrads:
    """The backward loop's gradients, all (S, B, ...): of the outputs on the way in (the factors
    and the inferred-input parameters, which leave holding the totals through the recurrence, and
    the inferred inputs, or None), and of every step's gate pre-activations on the way out."""

    factors: Tensor  # (S, B, F)
    co_params: Tensor  # (S, B, 2U)
    inputs: Tensor | None  # (S, B, U)
    con_gates: Tensor  # (S, B, 3C) input side (equal to the hidden side's for reset and update)
    con_hidden_new: Tensor  # (S, B, C) hidden side's candidate third
    gen_gates: Tensor  # (S, B, 3G)
    gen_hidden_new: Tensor  # (S, B, G)


@dataclass
class _StartGrads:
    """What the backward loop returns for its trials: the gradients at the initial controller
    and generator states, and the gradient reaching the initial factor through the controller."""

    con_h0: Tensor  # (B, C)
    gen_h0: Tensor  # (B, G)
    first_factor: Tensor  # (B, F)


_Block = TypeVar("_Block", UnrollInputs, UnrollOutput, _History, _StepGrads)


def _rows(values: _Block, lo: int, hi: int) -> _Block:
    """The same values for trials lo..hi-1 only: views of the batch dimension (1 of the time-major
    tensors, 0 of the initial states)."""
    def part(x: Any) -> Any:
        if not isinstance(x, Tensor):
            return x
        return x[lo:hi] if x.dim() == 2 else x[:, lo:hi]
    return replace(values, **{item.name: part(getattr(values, item.name)) for item in fields(values)})


def _by_blocks(task: Callable[[int, int], T], batch: int, split: bool) -> list[T]:
    """task(0, batch), or with `split` task on each half of the batch at once on two threads."""
    if not split or batch < 2:
        return [task(0, batch)]
    half = batch // 2
    return list(concurrently(lambda: task(0, half), lambda: task(half, batch), torch.is_grad_enabled()))


def _split(like: Tensor, native: Any | None) -> bool:
    """Whether the loops run on two halves of the batch at once: in C++ only (Python's loops
    hold the interpreter's lock between their small operations, so the halves would take turns),
    on a CPU with two or more intra-op threads."""
    return native is not None and like.device.type == "cpu" and torch.get_num_threads() >= 2


def _forward(x: UnrollInputs, w: UnrollWeights, keep_history: bool) -> tuple[Tensor, Tensor, Tensor, _History]:
    steps, batch, _ = x.con_input_gates.shape
    con_dim, gen_dim, co_dim, fac_dim = x.con_h0.shape[1], x.gen_h0.shape[1], x.noise.shape[2], w.fac.shape[0]
    h = _History.allocate(x.con_input_gates, steps, batch, con_dim, gen_dim, fac_dim, co_dim, keep_history)
    new = x.con_input_gates.new_empty
    out = UnrollOutput(factors=new(steps, batch, fac_dim), co_params=new(steps, batch, 2 * co_dim),
                       inputs=new(steps, batch, co_dim))
    h.con_states[0], h.gen_states[0] = x.con_h0, x.gen_h0
    native = unroll_extension()

    def block(lo: int, hi: int) -> None:
        xs, hs, outs = _rows(x, lo, hi), _rows(h, lo, hi), _rows(out, lo, hi)
        if native is None:
            _forward_steps(xs, w, hs, outs)
        else:
            native.forward_steps(xs.con_input_gates, xs.noise, xs.gen_keep, xs.factor_keep, *_tensors(w),
                                 *_tensors(hs)[:-1], *_tensors(outs), hs.kept)

    _by_blocks(block, batch, _split(x.con_input_gates, native))
    return out.factors, out.co_params, out.inputs, h


def _forward_steps(x: UnrollInputs, w: UnrollWeights, h: _History, out: UnrollOutput) -> None:
    """The forward time loop over the trials of `x` (unroll.cpp's `forward_steps` in Python): the
    initial states are in the history already; writes the rest of it and the outputs."""
    con_input_gates, noise, gen_keep, factor_keep = x.con_input_gates, x.noise, x.gen_keep, x.factor_keep
    steps, batch, _ = con_input_gates.shape
    con_dim, gen_dim, co_dim = h.con_states.shape[2], h.gen_states.shape[2], noise.shape[2]
    # The full hidden-side products W_hh h + b_hh go to scratch buffers reused at every step.
    con_hidden, gen_hidden = con_input_gates.new_empty(batch, 3 * con_dim), con_input_gates.new_empty(batch, 3 * gen_dim)
    w_con_fac_t, w_con_hh_t, w_co_t = w.con_fac.t(), w.con_hh.t(), w.co.t()
    w_gen_ih_t, w_gen_hh_t, w_fac_t = w.gen_ih.t(), w.gen_hh.t(), w.fac.t()
    b_con_hh, b_co, b_gen_ih, b_gen_hh = w.con_hh_bias, w.co_bias, w.gen_ih_bias, w.gen_hh_bias

    factor = _masked(h.gen_states[0], gen_keep, 0) @ w_fac_t
    for t in range(steps):
        s, now, after = h.step(t), h.state(t), h.state(t + 1)
        if factor_keep is None:
            h.feedback[s] = factor
        else:
            torch.mul(factor, factor_keep[t], out=h.feedback[s])
        torch.addmm(con_input_gates[t], h.feedback[s], w_con_fac_t, out=h.con_gates[s])
        torch.addmm(b_con_hh, h.con_states[now], w_con_hh_t, out=con_hidden)
        _gru_forward(h.con_gates[s], con_hidden, h.con_states[now], h.con_states[after], h.con_hidden_new[s])
        params = torch.addmm(b_co, h.con_states[after], w_co_t, out=out.co_params[t])
        torch.exp(params[:, co_dim:].mul(0.5), out=h.co_std[s])
        torch.addcmul(params[:, :co_dim], h.co_std[s], noise[t], out=out.inputs[t])
        torch.addmm(b_gen_ih, out.inputs[t], w_gen_ih_t, out=h.gen_gates[s])
        torch.addmm(b_gen_hh, h.gen_states[now], w_gen_hh_t, out=gen_hidden)
        _gru_forward(h.gen_gates[s], gen_hidden, h.gen_states[now], h.gen_states[after], h.gen_hidden_new[s])
        factor = torch.mm(_masked(h.gen_states[after], gen_keep, t + 1), w_fac_t, out=out.factors[t])


def _backward_steps(d: _StepGrads, x: UnrollInputs, w: UnrollWeights, h: _History) -> _StartGrads:
    """The backward time loop over the trials of `h` (unroll.cpp's `backward_steps` in Python):
    propagates the state gradients back through time and writes every step's gate gradients."""
    steps, batch, co_dim = h.co_std.shape
    noise, gen_keep, factor_keep = x.noise, x.gen_keep, x.factor_keep
    d_con_h, d_gen_h = h.con_states.new_zeros(batch, h.con_states.shape[2]), h.gen_states.new_zeros(batch, h.gen_states.shape[2])
    d_next_factor = None  # gradient reaching factor t through the controller at step t + 1
    for t in range(steps - 1, -1, -1):
        if d_next_factor is not None:
            d.factors[t] += d_next_factor
        d_gen_h += _masked(d.factors[t] @ w.fac, gen_keep, t + 1)
        d_gen_h = _gru_backward(d_gen_h, h.gen_states[t], h.gen_gates[t], h.gen_hidden_new[t], w.gen_hh,
                                d.gen_gates[t], d.gen_hidden_new[t])
        d_u = d.gen_gates[t] @ w.gen_ih
        if d.inputs is not None:
            d_u += d.inputs[t]
        d.co_params[t, :, :co_dim] += d_u
        d.co_params[t, :, co_dim:] += 0.5 * d_u * noise[t] * h.co_std[t]
        d_con_h.addmm_(d.co_params[t], w.co)
        d_con_h = _gru_backward(d_con_h, h.con_states[t], h.con_gates[t], h.con_hidden_new[t], w.con_hh,
                                d.con_gates[t], d.con_hidden_new[t])
        d_next_factor = d.con_gates[t] @ w.con_fac
        if factor_keep is not None:
            d_next_factor *= factor_keep[t]
    assert d_next_factor is not None, "the unroll has at least one step"
    # The initial factor (from the initial generator state) fed the controller's first step.
    return _StartGrads(d_con_h, d_gen_h + _masked(d_next_factor @ w.fac, gen_keep, 0), d_next_factor)


class _Unroll(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, *tensors: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        n_inputs = len(fields(UnrollInputs))
        x, w = UnrollInputs(*tensors[:n_inputs]), UnrollWeights(*tensors[n_inputs:])  # type: ignore[arg-type]
        factors, co_params, inputs, h = _forward(x, w, keep_history=True)
        ctx.save_for_backward(x.noise, x.gen_keep, x.factor_keep, *_tensors(w), *_tensors(h)[:-1], inputs)
        return factors, co_params, inputs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_factors: Tensor | None, d_co_params: Tensor | None,
                 d_inputs: Tensor | None) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        n_weights, history = len(fields(UnrollWeights)), [f.name for f in fields(_History) if f.name != "kept"]
        noise, gen_keep, factor_keep = saved[:3]
        w = UnrollWeights(*saved[3: 3 + n_weights])
        stored: dict[str, Any] = dict(zip(history, saved[3 + n_weights:]))
        h = _History(**stored, kept=True)
        inputs = saved[-1]
        steps, batch, co_dim = inputs.shape
        d = _StepGrads(
            factors=d_factors.clone() if d_factors is not None else torch.zeros_like(h.feedback),
            co_params=d_co_params.clone() if d_co_params is not None else inputs.new_zeros(steps, batch, 2 * co_dim),
            inputs=d_inputs, con_gates=torch.empty_like(h.con_gates), con_hidden_new=torch.empty_like(h.con_hidden_new),
            gen_gates=torch.empty_like(h.gen_gates), gen_hidden_new=torch.empty_like(h.gen_hidden_new))
        # Only the per-trial quantities the loop reads; the initial states are in the history.
        x = UnrollInputs(con_input_gates=h.con_gates, con_h0=h.con_states[0], gen_h0=h.gen_states[0], noise=noise,
                         gen_keep=gen_keep, factor_keep=factor_keep)
        native = unroll_extension()

        def block(lo: int, hi: int) -> _StartGrads:
            ds, xs, hs = _rows(d, lo, hi), _rows(x, lo, hi), _rows(h, lo, hi)
            if native is None:
                return _backward_steps(ds, xs, w, hs)
            return _StartGrads(*native.backward_steps(
                ds.factors, ds.co_params, ds.inputs, xs.noise, xs.gen_keep, xs.factor_keep, w.con_fac, w.con_hh, w.co,
                w.gen_ih, w.gen_hh, w.fac, hs.con_states, hs.gen_states, hs.con_gates, hs.con_hidden_new,
                hs.gen_gates, hs.gen_hidden_new, hs.co_std, ds.con_gates, ds.con_hidden_new, ds.gen_gates,
                ds.gen_hidden_new))

        blocks = _by_blocks(block, batch, _split(inputs, native))
        start = _StartGrads(*(torch.cat([getattr(b, item.name) for b in blocks]) for item in fields(_StartGrads)))

        # The weight gradients over all steps and trials, each as one product.
        dropped_states = h.gen_states if gen_keep is None else h.gen_states * gen_keep
        d_w_fac = _flat(d.factors).t() @ _flat(dropped_states[1:]) + start.first_factor.t() @ dropped_states[0]
        d_w_con_hh, d_b_con_hh = _hidden_weight_grads(d.con_gates, d.con_hidden_new, h.con_states[:-1])
        d_w_gen_hh, d_b_gen_hh = _hidden_weight_grads(d.gen_gates, d.gen_hidden_new, h.gen_states[:-1])
        return (
            d.con_gates, start.con_h0, start.gen_h0, None, None, None,
            _flat(d.con_gates).t() @ _flat(h.feedback), d_w_con_hh, d_b_con_hh,
            _flat(d.co_params).t() @ _flat(h.con_states[1:]), _flat(d.co_params).sum(0),
            _flat(d.gen_gates).t() @ _flat(inputs), _flat(d.gen_gates).sum(0), d_w_gen_hh, d_b_gen_hh,
            d_w_fac,
        )


def _flat(x: Tensor) -> Tensor:
    """(steps, batch, features) -> (steps * batch, features): weight gradients sum over both."""
    return x.reshape(-1, x.shape[-1])


def _hidden_weight_grads(d_gates: Tensor, d_hidden_new: Tensor, states: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of W_hh and b_hh over all steps, from the input-side gate gradients (equal to
    the hidden side's for reset and update) and the hidden side's candidate third."""
    size = d_hidden_new.shape[-1]
    d_reset_update, d_new = _flat(d_gates[..., : 2 * size]), _flat(d_hidden_new)
    weight = torch.cat([d_reset_update.t() @ _flat(states), d_new.t() @ _flat(states)])
    return weight, torch.cat([d_reset_update.sum(0), d_new.sum(0)])


def _masked(x: Tensor, keep: Tensor | None, index: int) -> Tensor:
    return x if keep is None else x * keep[index]


def _gru_forward(gates: Tensor, hidden: Tensor, h: Tensor, out: Tensor, hidden_new: Tensor) -> None:
    """One GRU step from the gate pre-activations (input side in `gates`, hidden side in
    `hidden`), in place: on return `gates` holds the activations (reset, update, new),
    `hidden_new` the hidden side's candidate pre-activation, `out` the next state."""
    size = h.shape[1]
    reset_update = gates[:, : 2 * size]
    reset_update += hidden[:, : 2 * size]
    reset_update.sigmoid_()
    hidden_new.copy_(hidden[:, 2 * size:])
    new = gates[:, 2 * size:]
    new.addcmul_(reset_update[:, :size], hidden_new).tanh_()
    torch.sub(h, new, out=out)
    out.mul_(reset_update[:, size:]).add_(new)


def _gru_backward(d_h: Tensor, h: Tensor, gates: Tensor, hidden_new: Tensor, w_hh: Tensor, d_gates: Tensor,
                  d_hidden_new: Tensor) -> Tensor:
    """Backward through one GRU step from state h, given the gradient d_h at the next state.
    `gates` holds the step's activations (reset, update, new), `hidden_new` the candidate's
    hidden-side pre-activation (W_hn h + b_hn). Writes the gradients of the input-side
    pre-activations into `d_gates` and of the hidden-side candidate into `d_hidden_new`;
    returns the gradient at h."""
    size = h.shape[1]
    reset, update, new = gates[:, :size], gates[:, size: 2 * size], gates[:, 2 * size:]
    # d new_pre = d_h (1 - z)(1 - n^2);  d z_pre = d_h (h - n) z (1 - z);  d r_pre = d new_pre (W_hn h + b_hn) r (1 - r)
    d_new, d_update, d_reset = d_gates[:, 2 * size:], d_gates[:, size: 2 * size], d_gates[:, :size]
    torch.mul(d_h * (1.0 - update), 1.0 - new * new, out=d_new)
    torch.mul(d_h * (h - new), update * (1.0 - update), out=d_update)
    torch.mul(d_new * hidden_new, reset * (1.0 - reset), out=d_reset)
    torch.mul(d_new, reset, out=d_hidden_new)
    d_h_prev = torch.addmm(d_h * update, d_gates[:, : 2 * size], w_hh[: 2 * size])
    return d_h_prev.addmm_(d_hidden_new, w_hh[2 * size:])
