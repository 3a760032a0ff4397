// The time loops of the LFADS controller + generator unroll (unroll.py) in C++.
//
// Step for step the same ATen operations as unroll.py's Python loops (`_forward_steps` and
// `_backward_steps`, which stay the reference and the fallback where no compiler is found), on
// a block of trials: every tensor argument is a view of the whole batch's time-major buffers
// restricted to rows [lo, hi) of the batch, so each step's (rows, features) slice is contiguous.
// The loops run without Python's lock (the call guard below), which lets two threads each run
// half of the batch at once; in Python they would take turns between small operations.
// Trials do not interact inside the loops (the weight gradients are taken afterwards over the
// whole batch, in unroll.py), so a block's numbers do not depend on how the batch was split.

#include <torch/extension.h>

#include <tuple>

using torch::Tensor;
using OptionalTensor = c10::optional<Tensor>;

namespace {

Tensor masked(const Tensor& x, const OptionalTensor& keep, int64_t index) {
  return keep.has_value() ? x * keep->select(0, index) : x;
}

// One GRU step from the gate pre-activations (input side in `gates`, hidden side in `hidden`),
// in place: `gates` ends with the activations (reset, update, new), `hidden_new` with the hidden
// side's candidate pre-activation, `out` with the next state.
void gru_forward(const Tensor& gates, const Tensor& hidden, const Tensor& h, Tensor out, Tensor hidden_new) {
  const int64_t size = h.size(1);
  auto reset_update = gates.narrow(1, 0, 2 * size);
  reset_update.add_(hidden.narrow(1, 0, 2 * size)).sigmoid_();
  hidden_new.copy_(hidden.narrow(1, 2 * size, size));
  auto next = gates.narrow(1, 2 * size, size);
  next.addcmul_(reset_update.narrow(1, 0, size), hidden_new).tanh_();
  at::sub_out(out, h, next);
  out.mul_(reset_update.narrow(1, size, size)).add_(next);
}

// Backward through one GRU step from state h given the gradient d_h at the next state: writes
// the input-side gate gradients into `d_gates` and the hidden side's candidate gradient into
// `d_hidden_new`, returns the gradient at h.
Tensor gru_backward(const Tensor& d_h, const Tensor& h, const Tensor& gates, const Tensor& hidden_new,
                    const Tensor& w_hh, Tensor d_gates, Tensor d_hidden_new) {
  const int64_t size = h.size(1);
  auto reset = gates.narrow(1, 0, size), update = gates.narrow(1, size, size);
  auto next = gates.narrow(1, 2 * size, size);
  auto d_reset = d_gates.narrow(1, 0, size), d_update = d_gates.narrow(1, size, size);
  auto d_next = d_gates.narrow(1, 2 * size, size);
  at::mul_out(d_next, d_h * (1.0 - update), 1.0 - next * next);
  at::mul_out(d_update, d_h * (h - next), update * (1.0 - update));
  at::mul_out(d_reset, d_next * hidden_new, reset * (1.0 - reset));
  at::mul_out(d_hidden_new, d_next, reset);
  auto d_h_prev = at::addmm(d_h * update, d_gates.narrow(1, 0, 2 * size), w_hh.narrow(0, 0, 2 * size));
  return d_h_prev.addmm_(d_hidden_new, w_hh.narrow(0, 2 * size, size));
}

}  // namespace

// unroll.py's `_forward_steps` for one block of trials. The initial states are already in
// con_states[0] and gen_states[0]; `kept` false means one history slot (two for the states)
// reused at every step, for a forward pass with no backward pass to come.
void forward_steps(const Tensor& con_input_gates, const Tensor& noise, const OptionalTensor& gen_keep,
                   const OptionalTensor& factor_keep, const Tensor& w_con_fac, const Tensor& w_con_hh,
                   const Tensor& b_con_hh, const Tensor& w_co, const Tensor& b_co, const Tensor& w_gen_ih,
                   const Tensor& b_gen_ih, const Tensor& w_gen_hh, const Tensor& b_gen_hh, const Tensor& w_fac,
                   const Tensor& con_states, const Tensor& gen_states, const Tensor& con_gates,
                   const Tensor& con_hidden_new, const Tensor& gen_gates, const Tensor& gen_hidden_new,
                   const Tensor& feedback, const Tensor& co_std, const Tensor& factors, const Tensor& co_params,
                   const Tensor& inputs, bool kept) {
  torch::NoGradGuard no_grad;
  const int64_t steps = con_input_gates.size(0), rows = con_input_gates.size(1);
  const int64_t con_dim = con_states.size(2), gen_dim = gen_states.size(2), co_dim = noise.size(2);
  auto w_con_fac_t = w_con_fac.t(), w_con_hh_t = w_con_hh.t(), w_co_t = w_co.t();
  auto w_gen_ih_t = w_gen_ih.t(), w_gen_hh_t = w_gen_hh.t(), w_fac_t = w_fac.t();
  auto con_hidden = con_states.new_empty({rows, 3 * con_dim});
  auto gen_hidden = gen_states.new_empty({rows, 3 * gen_dim});
  auto factor = at::mm(masked(gen_states.select(0, 0), gen_keep, 0), w_fac_t);
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t s = kept ? t : 0, now = kept ? t : t % 2, after = kept ? t + 1 : (t + 1) % 2;
    auto fed = feedback.select(0, s), con_g = con_gates.select(0, s), gen_g = gen_gates.select(0, s);
    auto con_h = con_states.select(0, now), con_next = con_states.select(0, after);
    auto gen_h = gen_states.select(0, now), gen_next = gen_states.select(0, after);
    auto std_t = co_std.select(0, s), params = co_params.select(0, t), u = inputs.select(0, t);
    if (factor_keep.has_value()) {
      at::mul_out(fed, factor, factor_keep->select(0, t));
    } else {
      fed.copy_(factor);
    }
    at::addmm_out(con_g, con_input_gates.select(0, t), fed, w_con_fac_t);
    at::addmm_out(con_hidden, b_con_hh, con_h, w_con_hh_t);
    gru_forward(con_g, con_hidden, con_h, con_next, con_hidden_new.select(0, s));
    at::addmm_out(params, b_co, con_next, w_co_t);
    at::exp_out(std_t, params.narrow(1, co_dim, co_dim).mul(0.5));
    at::addcmul_out(u, params.narrow(1, 0, co_dim), std_t, noise.select(0, t));
    at::addmm_out(gen_g, b_gen_ih, u, w_gen_ih_t);
    at::addmm_out(gen_hidden, b_gen_hh, gen_h, w_gen_hh_t);
    gru_forward(gen_g, gen_hidden, gen_h, gen_next, gen_hidden_new.select(0, s));
    auto out = factors.select(0, t);
    at::mm_out(out, masked(gen_next, gen_keep, t + 1), w_fac_t);
    factor = out;
  }
}

// unroll.py's `_backward_steps` for one block of trials: walks back through time writing every
// step's gate gradients; d_factor_total and d_params arrive holding the outputs' gradients and
// leave holding the totals. Returns the gradients at the initial controller and generator
// states and the gradient reaching the initial factor through the controller's first step.
std::tuple<Tensor, Tensor, Tensor> backward_steps(
    const Tensor& d_factor_total, const Tensor& d_params, const OptionalTensor& d_inputs, const Tensor& noise,
    const OptionalTensor& gen_keep, const OptionalTensor& factor_keep, const Tensor& w_con_fac,
    const Tensor& w_con_hh, const Tensor& w_co, const Tensor& w_gen_ih, const Tensor& w_gen_hh,
    const Tensor& w_fac, const Tensor& con_states, const Tensor& gen_states, const Tensor& con_gates,
    const Tensor& con_hidden_new, const Tensor& gen_gates, const Tensor& gen_hidden_new, const Tensor& co_std,
    const Tensor& d_con_gates, const Tensor& d_con_hidden_new, const Tensor& d_gen_gates,
    const Tensor& d_gen_hidden_new) {
  torch::NoGradGuard no_grad;
  const int64_t steps = co_std.size(0), rows = co_std.size(1), co_dim = co_std.size(2);
  auto d_con_h = con_states.new_zeros({rows, con_states.size(2)});
  auto d_gen_h = gen_states.new_zeros({rows, gen_states.size(2)});
  Tensor d_next_factor;
  for (int64_t t = steps - 1; t >= 0; --t) {
    auto d_factor = d_factor_total.select(0, t);
    if (d_next_factor.defined()) {
      d_factor.add_(d_next_factor);
    }
    d_gen_h.add_(masked(at::mm(d_factor, w_fac), gen_keep, t + 1));
    d_gen_h = gru_backward(d_gen_h, gen_states.select(0, t), gen_gates.select(0, t), gen_hidden_new.select(0, t),
                           w_gen_hh, d_gen_gates.select(0, t), d_gen_hidden_new.select(0, t));
    auto d_u = at::mm(d_gen_gates.select(0, t), w_gen_ih);
    if (d_inputs.has_value()) {
      d_u.add_(d_inputs->select(0, t));
    }
    auto d_p = d_params.select(0, t);
    d_p.narrow(1, 0, co_dim).add_(d_u);
    d_p.narrow(1, co_dim, co_dim).add_(0.5 * d_u * noise.select(0, t) * co_std.select(0, t));
    d_con_h.addmm_(d_p, w_co);
    d_con_h = gru_backward(d_con_h, con_states.select(0, t), con_gates.select(0, t), con_hidden_new.select(0, t),
                           w_con_hh, d_con_gates.select(0, t), d_con_hidden_new.select(0, t));
    d_next_factor = at::mm(d_con_gates.select(0, t), w_con_fac);
    if (factor_keep.has_value()) {
      d_next_factor.mul_(factor_keep->select(0, t));
    }
  }
  TORCH_CHECK(d_next_factor.defined(), "the unroll has at least one step");
  auto d_gen_h0 = d_gen_h + masked(at::mm(d_next_factor, w_fac), gen_keep, 0);
  return {d_con_h, d_gen_h0, d_next_factor};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_steps", &forward_steps, py::call_guard<py::gil_scoped_release>());
  m.def("backward_steps", &backward_steps, py::call_guard<py::gil_scoped_release>());
}
