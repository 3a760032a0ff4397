"""The IC and CI encoders run side by side on two threads: the same outputs and gradients as one
after the other, the thread count restored, and a whole LFADS training step unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nlb_suite.models.lfads.config import LFADSConfig
from nlb_suite.models.lfads.modules import BidirectionalEncoder
from nlb_suite.models.lfads.network import LFADSNetwork
from nlb_suite.models.lfads.side_by_side import side_by_side
from nlb_suite.models.lfads.train import Batch, Trainer


@pytest.fixture
def threads():
    """Run with `n` intra-op threads, restoring the session's count afterwards."""
    before = torch.get_num_threads()

    def use(n: int) -> None:
        torch.set_num_threads(n)

    yield use
    torch.set_num_threads(before)


def _encoders() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return BidirectionalEncoder(7, 5), BidirectionalEncoder(7, 3), torch.poisson(torch.full((4, 11, 7), 0.5))


def _grads(modules: tuple[nn.Module, ...]) -> list[torch.Tensor]:
    return [p.grad.clone() for m in modules for p in m.parameters()]


def test_outputs_and_gradients_equal_one_after_the_other(threads):
    first, second, x = _encoders()
    first_seq, second_seq = copy.deepcopy(first), copy.deepcopy(second)
    threads(1)  # one after the other, one thread: what each side runs with
    (out_a, fin_a), (out_b, fin_b) = first_seq(x), second_seq(x)
    (fin_a.square().sum() + out_b.sum() + fin_b.sum()).backward()
    threads(2)
    (out_c, fin_c), (out_d, fin_d) = side_by_side(first, second, x)
    assert torch.get_num_threads() == 2
    (fin_c.square().sum() + out_d.sum() + fin_d.sum()).backward()
    for got, want in zip((out_c, fin_c, out_d, fin_d), (out_a, fin_a, out_b, fin_b)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for got, want in zip(_grads((first, second)), _grads((first_seq, second_seq))):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # An output left out of the loss (the IC encoder's per-step outputs) is still in the graph; its
    # gradient arrives as None and its inner backward skips it.
    assert out_c.grad_fn is not None


def test_without_gradients_no_graph_is_built(threads):
    first, second, x = _encoders()
    threads(2)
    with torch.no_grad():
        (out, _), (ci, _) = side_by_side(first, second, x)
    assert out.grad_fn is None and ci.grad_fn is None and torch.get_num_threads() == 2
    threads(1)
    with torch.no_grad():
        torch.testing.assert_close(first(x)[0], out, rtol=0, atol=0)


def test_an_input_that_requires_a_gradient_is_refused(threads):
    first, second, x = _encoders()
    threads(2)
    with pytest.raises(ValueError, match="must not require a gradient"):
        side_by_side(first, second, x.requires_grad_())


def test_a_training_step_is_the_same_on_one_thread_and_two(threads):
    """The whole LFADS step (dropout, sampling, unroll, AdamW): the encoders side by side on two
    threads against one after the other on one; only the unroll's products, which use both
    threads, may round differently."""
    cfg = LFADSConfig(ic_enc_dim=8, ci_enc_dim=6, con_dim=6, co_dim=2, ic_dim=4, gen_dim=10, fac_dim=5,
                      batch_size=8, dropout=0.2, cd_rate=0.3)
    target = torch.poisson(torch.full((8, 12, 9), 0.4))
    observed = torch.ones_like(target, dtype=torch.bool)
    batch = Batch(target, observed, observed)
    weights = []
    for n in (1, 2):
        threads(n)
        torch.manual_seed(3)
        net = LFADSNetwork(cfg, 6, 9)
        trainer = Trainer(net, cfg, n_heldin=6, n_bins=10, identity={})
        trainer._train_step(batch, kl_ramp=0.5, l2_ramp=0.5)
        weights.append([p.detach().clone() for p in net.parameters()])
    for one, two in zip(*weights):
        torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-6)
