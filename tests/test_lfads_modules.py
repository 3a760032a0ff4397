"""LFADS network pieces: the fast recurrent paths equal a plain clipped-GRU-cell loop, the CI lag
hides the current bin from the controller, and shapes hold through the whole network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)

from nlb_suite.models.lfads.config import LFADSConfig
from nlb_suite.models.lfads.modules import CELL_CLIP, BidirectionalEncoder, Decoder
from nlb_suite.models.lfads.network import LFADSNetwork


def clipped_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, clip: float | None = CELL_CLIP):
    """The textbook clipped GRU cell (torch gate layout), clamping after every step."""
    gi_r, gi_z, gi_n = F.linear(x, w_ih, b_ih).chunk(3, dim=1)
    gh_r, gh_z, gh_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
    n = torch.tanh(gi_n + r * gh_n)
    h = (1 - z) * n + z * h
    return h if clip is None else h.clamp(-clip, clip)


def clipped_gru_loop(x, h0, w_ih, w_hh, b_ih, b_hh):
    h = h0.clamp(-CELL_CLIP, CELL_CLIP)
    states = []
    for t in range(x.shape[1]):
        h = clipped_gru_cell(x[:, t], h, w_ih, w_hh, b_ih, b_hh)
        states.append(h)
    return torch.stack(states, dim=1)


def test_gru_state_never_leaves_the_clip_once_the_initial_state_is_inside():
    torch.manual_seed(0)
    size = 8
    w_ih, w_hh = 4 * torch.randn(3 * size, 3), 4 * torch.randn(3 * size, size)
    b_ih, b_hh = 4 * torch.randn(3 * size), 4 * torch.randn(3 * size)
    h = torch.full((16, size), CELL_CLIP) * torch.sign(torch.randn(16, size))
    for _ in range(200):
        h = clipped_gru_cell(10 * torch.randn(16, 3), h, w_ih, w_hh, b_ih, b_hh, clip=None)
        assert h.abs().max() <= CELL_CLIP + 1e-6


def test_fused_bidirectional_encoder_equals_clipped_cell_loop():
    torch.manual_seed(1)
    encoder = BidirectionalEncoder(input_size=6, hidden_size=5)
    with torch.no_grad():
        encoder.h0.copy_(7.0 * torch.randn(2, 1, 5))  # beyond the clip: the clamp must act on it
        for weight in encoder.gru.parameters():
            weight.mul_(3.0)
    x = torch.randn(4, 9, 6)
    outputs, final = encoder(x)
    gru = encoder.gru
    h0 = encoder.h0.expand(-1, 4, -1)
    forward = clipped_gru_loop(x, h0[0], gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    backward = clipped_gru_loop(x.flip(1), h0[1], gru.weight_ih_l0_reverse, gru.weight_hh_l0_reverse,
                                gru.bias_ih_l0_reverse, gru.bias_hh_l0_reverse).flip(1)
    torch.testing.assert_close(outputs, torch.cat([forward, backward], dim=2), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(final, torch.cat([forward[:, -1], backward[:, 0]], dim=1), atol=1e-6, rtol=1e-5)


def test_uncontrolled_generator_equals_clipped_cell_loop():
    torch.manual_seed(2)
    decoder = Decoder(ic_dim=3, gen_dim=6, fac_dim=2, ci_dim=0, con_dim=0, co_dim=0, dropout=0.0).eval()
    g0 = 4.0 * torch.randn(5, 3)
    out = decoder(g0, None, n_steps=11, input_noise=None)
    gen = decoder.generator
    states = clipped_gru_loop(torch.zeros(5, 11, 1), decoder.ic_to_g0(g0), gen.weight_ih_l0, gen.weight_hh_l0,
                              gen.bias_ih_l0, gen.bias_hh_l0)
    torch.testing.assert_close(out.factors, decoder.factor_map(states), atol=1e-6, rtol=1e-5)
    assert out.inputs is None and out.co_mean is None


def test_controller_generator_unroll_equals_clipped_cell_loop():
    torch.manual_seed(3)
    ci_dim, fac_dim, co_dim, steps, batch = 4, 3, 2, 12, 5
    decoder = Decoder(ic_dim=3, gen_dim=6, fac_dim=fac_dim, ci_dim=ci_dim, con_dim=5, co_dim=co_dim,
                      dropout=0.0).eval()
    with torch.no_grad():
        decoder.controller_h0.fill_(6.0)
    g0, ci = 3.0 * torch.randn(batch, 3), torch.randn(batch, steps - 4, ci_dim)  # 4 forward steps
    noise = torch.randn(batch, steps, co_dim)
    out = decoder(g0, ci, steps, noise)

    con, gen = decoder.controller, decoder.generator
    ci = F.pad(ci, (0, 0, 0, 4))
    con_h = decoder.controller_h0.clamp(-CELL_CLIP, CELL_CLIP).expand(batch, -1)
    gen_h = decoder.ic_to_g0(g0).clamp(-CELL_CLIP, CELL_CLIP)
    factor = decoder.factor_map(gen_h)
    factors, means, inputs = [], [], []
    for t in range(steps):
        con_h = clipped_gru_cell(torch.cat([ci[:, t], factor], dim=1), con_h, con.weight_ih, con.weight_hh,
                                 con.bias_ih, con.bias_hh)
        mean, logvar = decoder.co_linear(con_h).chunk(2, dim=1)
        u = mean + torch.exp(0.5 * logvar) * noise[:, t]
        gen_h = clipped_gru_cell(u, gen_h, gen.weight_ih_l0, gen.weight_hh_l0, gen.bias_ih_l0, gen.bias_hh_l0)
        factor = decoder.factor_map(gen_h)
        factors.append(factor), means.append(mean), inputs.append(u)
    torch.testing.assert_close(out.factors, torch.stack(factors, dim=1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.co_mean, torch.stack(means, dim=1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.inputs, torch.stack(inputs, dim=1), atol=1e-5, rtol=1e-4)

    means_only = decoder(g0, ci[:, : steps - 4], steps, None)
    torch.testing.assert_close(means_only.inputs, means_only.co_mean)


def test_controller_input_gradients_over_the_forward_bins_match_a_plain_loop():
    """The controller's input gates over the forward bins are its input bias alone (no product
    over the zero CI there): the gradients of that bias, of the CI weights and of the CI must be
    those of a loop that feeds zeros."""
    torch.manual_seed(4)
    ci_dim, fac_dim, co_dim, steps, batch, forward = 4, 3, 2, 10, 5, 3
    decoder = Decoder(ic_dim=3, gen_dim=6, fac_dim=fac_dim, ci_dim=ci_dim, con_dim=5, co_dim=co_dim,
                      dropout=0.0).eval()
    g0 = 2.0 * torch.randn(batch, 3)
    ci = torch.randn(batch, steps - forward, ci_dim, requires_grad=True)
    noise = torch.randn(batch, steps, co_dim)
    con, gen = decoder.controller, decoder.generator
    leaves = [ci, con.bias_ih, con.weight_ih, decoder.ic_to_g0.weight]

    out = decoder(g0, ci, steps, noise)
    scale = torch.randn_like(out.factors)
    got = torch.autograd.grad((scale * out.factors).sum(), leaves)

    padded = F.pad(ci, (0, 0, 0, forward))
    con_h = decoder.controller_h0.clamp(-CELL_CLIP, CELL_CLIP).expand(batch, -1)
    gen_h = decoder.ic_to_g0(g0).clamp(-CELL_CLIP, CELL_CLIP)
    factor, factors = decoder.factor_map(gen_h), []
    for t in range(steps):
        con_h = clipped_gru_cell(torch.cat([padded[:, t], factor], dim=1), con_h, con.weight_ih, con.weight_hh,
                                 con.bias_ih, con.bias_hh)
        mean, logvar = decoder.co_linear(con_h).chunk(2, dim=1)
        u = mean + torch.exp(0.5 * logvar) * noise[:, t]
        gen_h = clipped_gru_cell(u, gen_h, gen.weight_ih_l0, gen.weight_hh_l0, gen.bias_ih_l0, gen.bias_hh_l0)
        factor = decoder.factor_map(gen_h)
        factors.append(factor)
    expected = torch.autograd.grad((scale * torch.stack(factors, dim=1)).sum(), leaves)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def _network(co_dim: int = 2, dropout: float = 0.0) -> LFADSNetwork:
    config = LFADSConfig(ic_enc_dim=6, ci_enc_dim=5, ci_lag=2, con_dim=4, co_dim=co_dim, ic_dim=3, gen_dim=8,
                         fac_dim=3, dropout=dropout)
    return LFADSNetwork(config, n_input=7, n_output=10)


def test_shapes_through_the_network_including_forward_bins():
    torch.manual_seed(4)
    spikes = torch.poisson(torch.full((6, 15, 7), 0.5))
    for co_dim in (2, 0):
        network = _network(co_dim, dropout=0.2)
        for sample in (True, False):
            out = network(spikes, n_steps=15 + 4, sample=sample)
            assert out.log_rates.shape == (6, 19, 10)
            assert out.factors.shape == (6, 19, 3)
            assert out.ic_mean.shape == out.ic_std.shape == (6, 3)
            if co_dim:
                assert out.inputs.shape == out.co_mean.shape == out.co_std.shape == (6, 19, 2)
                assert (out.co_std > 0).all()
            else:
                assert out.inputs is None and network.co_prior is None
        out.log_rates.sum().backward()
        assert all(p.grad is not None for name, p in network.named_parameters()
                   if not name.startswith(("ic_prior", "co_prior")))


def test_controller_never_sees_the_current_bin():
    torch.manual_seed(5)
    network = _network().eval()
    spikes = torch.poisson(torch.full((2, 12, 7), 0.5)).requires_grad_()
    controller_input = network.encoder(spikes).controller_input
    for t in range(12):
        (grad,) = torch.autograd.grad(controller_input[:, t].sum(), spikes, retain_graph=True)
        lag = network.encoder.ci_lag
        seen = grad.abs().sum(dim=(0, 2)) > 0
        assert not seen[max(0, t - lag + 1): t + lag].any(), f"step {t} sees bins it should not"
        assert seen.any() or t < lag or t >= 12 - lag
