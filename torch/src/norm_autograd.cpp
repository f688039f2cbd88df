// The Autograd kernels of torch.ops.rmsnorm.*: each forward op records an
// autograd Function whose backward calls the matching backward op through the
// dispatcher (so it runs on whatever backend holds the tensors). The ops that
// cannot be differentiated say so: the backward ops record a node that raises
// if a second derivative is asked for, and the out= and in-place forms refuse
// inputs that require grad, as PyTorch's own out= ops do.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/library.h>

#include <array>
#include <string>
#include <tuple>
#include <vector>

#include "norm_layout.hpp"

namespace rmsnorm::torch {
namespace {

using ::torch::autograd::AutogradContext;
using ::torch::autograd::tensor_list;
using Mask = std::array<bool, 3>;
using Pair = std::tuple<at::Tensor, at::Tensor>;
using Triple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using OptionalTensor = c10::optional<at::Tensor>;

// The typed handle of torch.ops.rmsnorm.<name>, looked up once per call site.
template <class Signature>
c10::TypedOperatorHandle<Signature> op(const char* name, const char* overload = "") {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).typed<Signature>();
}

using RmsForward = Pair(const at::Tensor&, at::IntArrayRef, const OptionalTensor&, const OptionalTensor&, double, double,
                        c10::string_view, double, c10::string_view);
using RmsBackward = Triple(const at::Tensor&, const at::Tensor&, at::IntArrayRef, const OptionalTensor&,
                           const OptionalTensor&, const at::Tensor&, double, double, c10::string_view, double, Mask);
using LnForward = Triple(const at::Tensor&, at::IntArrayRef, const OptionalTensor&, const OptionalTensor&, double, double,
                         c10::string_view);
using LnBackward = Triple(const at::Tensor&, const at::Tensor&, at::IntArrayRef, const OptionalTensor&,
                          const OptionalTensor&, const at::Tensor&, const at::Tensor&, double, double, Mask);
using AddForward = Triple(const at::Tensor&, const at::Tensor&, at::IntArrayRef, const OptionalTensor&,
                          const OptionalTensor&, double, double, c10::string_view, double, c10::string_view);
using AddBackward = Triple(const at::Tensor&, const OptionalTensor&, const at::Tensor&, at::IntArrayRef,
                           const OptionalTensor&, const OptionalTensor&, const at::Tensor&, double, double,
                           c10::string_view, double, Mask);
using GatedForward = Pair(const at::Tensor&, const OptionalTensor&, const OptionalTensor&, int64_t, c10::string_view,
                          double, c10::string_view, double);
using GatedBackward = Triple(const at::Tensor&, const at::Tensor&, const OptionalTensor&, const OptionalTensor&,
                             const at::Tensor&, int64_t, c10::string_view, double, c10::string_view, double, Mask);

OptionalTensor optional_of(const at::Tensor& t) { return t.defined() ? OptionalTensor(t) : c10::nullopt; }

// AutogradContext::needs_input_grad counts the tensor arguments that were
// given: an absent optional takes no index. Index of the i-th optional among
// `given`, after `before` tensors that are always present.
size_t input_index(size_t before, std::initializer_list<bool> given_before) {
  size_t index = before;
  for (bool g : given_before) index += g ? 1 : 0;
  return index;
}

// ---------------------------------------------------------------- no double backward

// The backward ops are not themselves differentiable. Under create_graph=True
// their results pass through this node, which records `source` as their
// input, so that differentiating them again is an error rather than a
// gradient that silently has no graph (a gradient penalty would lose its
// term). As Python's @once_differentiable does, the error comes only when a
// second derivative is actually asked for.
struct NoDoubleBackward : public ::torch::autograd::Function<NoDoubleBackward> {
  // `gradients` are all defined (LibTorch 1.13 cannot record undefined outputs).
  static tensor_list forward(AutogradContext* /*ctx*/, tensor_list gradients, const at::Tensor& /*source*/) {
    tensor_list out;
    for (const at::Tensor& g : gradients) out.push_back(g.clone());
    return out;
  }
  static tensor_list backward(AutogradContext* /*ctx*/, tensor_list /*grad_outputs*/) {
    TORCH_CHECK(false,
                "rmsnorm: double backward (the gradient of a gradient of an rmsnorm op) is not implemented; the "
                "first backward works with create_graph=True, but its result cannot be differentiated again. Use "
                "torch.nn.functional ops for gradient penalties.");
    return {};
  }
};

// Runs a backward op below autograd; with grad mode on and a differentiable
// input, its defined results are recorded through NoDoubleBackward.
template <class Call>
Triple backward_without_graph(std::initializer_list<const at::Tensor*> inputs, Call&& call) {
  Triple out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = call();
  }
  if (!at::GradMode::is_enabled()) return out;
  const at::Tensor* source = nullptr;
  for (const at::Tensor* t : inputs)
    if (t->defined() && t->requires_grad() && !source) source = t;
  if (!source) return out;
  std::array<at::Tensor*, 3> results{&std::get<0>(out), &std::get<1>(out), &std::get<2>(out)};
  tensor_list defined;
  for (at::Tensor* r : results)
    if (r->defined()) defined.push_back(*r);
  const tensor_list recorded = NoDoubleBackward::apply(defined, *source);
  size_t next = 0;
  for (at::Tensor* r : results)
    if (r->defined()) *r = recorded[next++];
  return out;
}

// ---------------------------------------------------------------- RMSNorm

struct RmsNormFunction : public ::torch::autograd::Function<RmsNormFunction> {
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& input, std::vector<int64_t> normalized_shape,
                             const OptionalTensor& weight, const OptionalTensor& bias, double eps, double p,
                             std::string eps_placement, double weight_offset, std::string rounding) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto forward_op = op<RmsForward>("rmsnorm::rms_norm_forward");
    auto [y, inv_rms] =
        forward_op.call(input, normalized_shape, weight, bias, eps, p, eps_placement, weight_offset, rounding);
    ctx->save_for_backward({input, weight.value_or(at::Tensor()), bias.value_or(at::Tensor()), inv_rms});
    ctx->saved_data["normalized_shape"] = normalized_shape;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["p"] = p;
    ctx->saved_data["eps_placement"] = eps_placement;
    ctx->saved_data["weight_offset"] = weight_offset;
    ctx->mark_non_differentiable({inv_rms});
    // Backward takes undefined gradients as zeros itself: no zero tensors made per call.
    ctx->set_materialize_grads(false);
    return {y, inv_rms};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1], &bias = saved[2], &inv_rms = saved[3];
    const size_t weight_index = 1, bias_index = input_index(1, {weight.defined()});
    const Mask mask{ctx->needs_input_grad(0), weight.defined() && ctx->needs_input_grad(weight_index),
                    bias.defined() && ctx->needs_input_grad(bias_index)};
    tensor_list out(9);
    if (!grads[0].defined()) return out;
    static const auto backward_op = op<RmsBackward>("rmsnorm::rms_norm_backward");
    const auto shape = ctx->saved_data["normalized_shape"].toIntVector();
    auto [dx, dweight, dbias] =
        backward_op.call(grads[0], input, shape, optional_of(weight), optional_of(bias), inv_rms,
                         ctx->saved_data["eps"].toDouble(), ctx->saved_data["p"].toDouble(),
                         ctx->saved_data["eps_placement"].toStringRef(), ctx->saved_data["weight_offset"].toDouble(), mask);
    out[0] = dx;
    out[2] = dweight;
    out[3] = dbias;
    return out;
  }
};

Pair rms_norm_forward_autograd(const at::Tensor& input, at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                               const OptionalTensor& bias, double eps, double p, c10::string_view eps_placement,
                               double weight_offset, c10::string_view rounding) {
  const tensor_list out =
      RmsNormFunction::apply(input, normalized_shape.vec(), optional_of(weight.value_or(at::Tensor())),
                             optional_of(bias.value_or(at::Tensor())), eps, p, std::string(eps_placement), weight_offset,
                             std::string(rounding));
  return {out[0], out[1]};
}

Triple rms_norm_backward_autograd(const at::Tensor& grad_y, const at::Tensor& input, at::IntArrayRef normalized_shape,
                                  const OptionalTensor& weight, const OptionalTensor& bias, const at::Tensor& inv_rms,
                                  double eps, double p, c10::string_view eps_placement, double weight_offset, Mask mask) {
  static const auto backward_op = op<RmsBackward>("rmsnorm::rms_norm_backward");
  const at::Tensor w = weight.value_or(at::Tensor());
  return backward_without_graph({&grad_y, &input, &w}, [&] {
    return backward_op.call(grad_y, input, normalized_shape, weight, bias, inv_rms, eps, p, eps_placement,
                            weight_offset, mask);
  });
}

// ---------------------------------------------------------------- LayerNorm

struct LayerNormFunction : public ::torch::autograd::Function<LayerNormFunction> {
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& input, std::vector<int64_t> normalized_shape,
                             const OptionalTensor& weight, const OptionalTensor& bias, double eps, double weight_offset,
                             std::string rounding) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto forward_op = op<LnForward>("rmsnorm::layer_norm_forward");
    auto [y, mean, inv_rms] = forward_op.call(input, normalized_shape, weight, bias, eps, weight_offset, rounding);
    ctx->save_for_backward({input, weight.value_or(at::Tensor()), bias.value_or(at::Tensor()), mean, inv_rms});
    ctx->saved_data["normalized_shape"] = normalized_shape;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["weight_offset"] = weight_offset;
    ctx->mark_non_differentiable({mean, inv_rms});
    // Backward takes undefined gradients as zeros itself: no zero tensors made per call.
    ctx->set_materialize_grads(false);
    return {y, mean, inv_rms};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3], &inv_rms = saved[4];
    const size_t weight_index = 1, bias_index = input_index(1, {weight.defined()});
    const Mask mask{ctx->needs_input_grad(0), weight.defined() && ctx->needs_input_grad(weight_index),
                    bias.defined() && ctx->needs_input_grad(bias_index)};
    tensor_list out(7);
    if (!grads[0].defined()) return out;
    static const auto backward_op = op<LnBackward>("rmsnorm::layer_norm_backward");
    const auto shape = ctx->saved_data["normalized_shape"].toIntVector();
    auto [dx, dweight, dbias] =
        backward_op.call(grads[0], input, shape, optional_of(weight), optional_of(bias), mean, inv_rms,
                         ctx->saved_data["eps"].toDouble(), ctx->saved_data["weight_offset"].toDouble(), mask);
    out[0] = dx;
    out[2] = dweight;
    out[3] = dbias;
    return out;
  }
};

Triple layer_norm_forward_autograd(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                   const OptionalTensor& weight, const OptionalTensor& bias, double eps,
                                   double weight_offset, c10::string_view rounding) {
  const tensor_list out =
      LayerNormFunction::apply(input, normalized_shape.vec(), optional_of(weight.value_or(at::Tensor())),
                               optional_of(bias.value_or(at::Tensor())), eps, weight_offset, std::string(rounding));
  return {out[0], out[1], out[2]};
}

Triple layer_norm_backward_autograd(const at::Tensor& grad_y, const at::Tensor& input, at::IntArrayRef normalized_shape,
                                    const OptionalTensor& weight, const OptionalTensor& bias, const at::Tensor& mean,
                                    const at::Tensor& inv_rms, double eps, double weight_offset, Mask mask) {
  static const auto backward_op = op<LnBackward>("rmsnorm::layer_norm_backward");
  const at::Tensor w = weight.value_or(at::Tensor());
  return backward_without_graph({&grad_y, &input, &w}, [&] {
    return backward_op.call(grad_y, input, normalized_shape, weight, bias, mean, inv_rms, eps, weight_offset, mask);
  });
}

// ---------------------------------------------------------------- fused residual add

struct AddRmsNormFunction : public ::torch::autograd::Function<AddRmsNormFunction> {
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& residual,
                             std::vector<int64_t> normalized_shape, const OptionalTensor& weight,
                             const OptionalTensor& bias, double eps, double p, std::string eps_placement,
                             double weight_offset, std::string rounding) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto forward_op = op<AddForward>("rmsnorm::add_rms_norm_forward");
    auto [y, h, inv_rms] = forward_op.call(input, residual, normalized_shape, weight, bias, eps, p, eps_placement,
                                           weight_offset, rounding);
    ctx->save_for_backward({h, weight.value_or(at::Tensor()), bias.value_or(at::Tensor()), inv_rms});
    ctx->saved_data["normalized_shape"] = normalized_shape;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["p"] = p;
    ctx->saved_data["eps_placement"] = eps_placement;
    ctx->saved_data["weight_offset"] = weight_offset;
    ctx->mark_non_differentiable({inv_rms});
    // Backward takes undefined gradients as zeros itself: no zero tensors made per call.
    ctx->set_materialize_grads(false);
    return {y, h, inv_rms};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &h = saved[0], &weight = saved[1], &bias = saved[2], &inv_rms = saved[3];
    const size_t weight_index = 2, bias_index = input_index(2, {weight.defined()});
    const bool want_input = ctx->needs_input_grad(0) || ctx->needs_input_grad(1);
    const Mask mask{want_input, weight.defined() && ctx->needs_input_grad(weight_index),
                    bias.defined() && ctx->needs_input_grad(bias_index)};
    tensor_list out(10);
    if (!grads[0].defined() && !grads[1].defined()) return out;
    // Only h used downstream: y's gradient is zero.
    const at::Tensor grad_y = grads[0].defined() ? grads[0] : at::zeros_like(h);
    static const auto backward_op = op<AddBackward>("rmsnorm::add_rms_norm_backward");
    const auto shape = ctx->saved_data["normalized_shape"].toIntVector();
    auto [dh, dweight, dbias] = backward_op.call(
        grad_y, optional_of(grads[1]), h, shape, optional_of(weight), optional_of(bias), inv_rms,
        ctx->saved_data["eps"].toDouble(), ctx->saved_data["p"].toDouble(),
        ctx->saved_data["eps_placement"].toStringRef(), ctx->saved_data["weight_offset"].toDouble(), mask);
    // h = input + residual: both receive dh.
    if (ctx->needs_input_grad(0)) out[0] = dh;
    if (ctx->needs_input_grad(1)) out[1] = dh;
    out[3] = dweight;
    out[4] = dbias;
    return out;
  }
};

Triple add_rms_norm_forward_autograd(const at::Tensor& input, const at::Tensor& residual,
                                     at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                                     const OptionalTensor& bias, double eps, double p, c10::string_view eps_placement,
                                     double weight_offset, c10::string_view rounding) {
  const tensor_list out = AddRmsNormFunction::apply(
      input, residual, normalized_shape.vec(), optional_of(weight.value_or(at::Tensor())),
      optional_of(bias.value_or(at::Tensor())), eps, p, std::string(eps_placement), weight_offset, std::string(rounding));
  return {out[0], out[1], out[2]};
}

Triple add_rms_norm_backward_autograd(const at::Tensor& grad_y, const OptionalTensor& grad_h, const at::Tensor& h,
                                      at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                                      const OptionalTensor& bias, const at::Tensor& inv_rms, double eps, double p,
                                      c10::string_view eps_placement, double weight_offset, Mask mask) {
  static const auto backward_op = op<AddBackward>("rmsnorm::add_rms_norm_backward");
  const at::Tensor w = weight.value_or(at::Tensor()), gh = grad_h.value_or(at::Tensor());
  return backward_without_graph({&grad_y, &gh, &h, &w}, [&] {
    return backward_op.call(grad_y, grad_h, h, normalized_shape, weight, bias, inv_rms, eps, p, eps_placement,
                            weight_offset, mask);
  });
}

// ---------------------------------------------------------------- gated and grouped RMSNorm

struct GatedRmsNormFunction : public ::torch::autograd::Function<GatedRmsNormFunction> {
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& input, const OptionalTensor& z,
                             const OptionalTensor& weight, int64_t group_size, std::string gate, double eps,
                             std::string eps_placement, double weight_offset) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto forward_op = op<GatedForward>("rmsnorm::gated_rms_norm_forward");
    auto [y, inv_rms] = forward_op.call(input, z, weight, group_size, gate, eps, eps_placement, weight_offset);
    ctx->save_for_backward({input, z.value_or(at::Tensor()), weight.value_or(at::Tensor()), inv_rms});
    ctx->saved_data["group_size"] = group_size;
    ctx->saved_data["gate"] = gate;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["eps_placement"] = eps_placement;
    ctx->saved_data["weight_offset"] = weight_offset;
    ctx->mark_non_differentiable({inv_rms});
    // Backward takes undefined gradients as zeros itself: no zero tensors made per call.
    ctx->set_materialize_grads(false);
    return {y, inv_rms};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &z = saved[1], &weight = saved[2], &inv_rms = saved[3];
    const size_t z_index = 1, weight_index = input_index(1, {z.defined()});
    const Mask mask{ctx->needs_input_grad(0), z.defined() && ctx->needs_input_grad(z_index),
                    weight.defined() && ctx->needs_input_grad(weight_index)};
    tensor_list out(8);
    if (!grads[0].defined()) return out;
    static const auto backward_op = op<GatedBackward>("rmsnorm::gated_rms_norm_backward");
    auto [dx, dz, dweight] = backward_op.call(
        grads[0], input, optional_of(z), optional_of(weight), inv_rms, ctx->saved_data["group_size"].toInt(),
        ctx->saved_data["gate"].toStringRef(), ctx->saved_data["eps"].toDouble(),
        ctx->saved_data["eps_placement"].toStringRef(), ctx->saved_data["weight_offset"].toDouble(), mask);
    out[0] = dx;
    out[1] = dz;
    out[2] = dweight;
    return out;
  }
};

Pair gated_rms_norm_forward_autograd(const at::Tensor& input, const OptionalTensor& z, const OptionalTensor& weight,
                                     int64_t group_size, c10::string_view gate, double eps,
                                     c10::string_view eps_placement, double weight_offset) {
  const tensor_list out = GatedRmsNormFunction::apply(input, optional_of(z.value_or(at::Tensor())),
                                                      optional_of(weight.value_or(at::Tensor())), group_size,
                                                      std::string(gate), eps, std::string(eps_placement), weight_offset);
  return {out[0], out[1]};
}

Triple gated_rms_norm_backward_autograd(const at::Tensor& grad_y, const at::Tensor& input, const OptionalTensor& z,
                                        const OptionalTensor& weight, const at::Tensor& inv_rms, int64_t group_size,
                                        c10::string_view gate, double eps, c10::string_view eps_placement,
                                        double weight_offset, Mask mask) {
  static const auto backward_op = op<GatedBackward>("rmsnorm::gated_rms_norm_backward");
  const at::Tensor zt = z.value_or(at::Tensor()), w = weight.value_or(at::Tensor());
  return backward_without_graph({&grad_y, &input, &zt, &w}, [&] {
    return backward_op.call(grad_y, input, z, weight, inv_rms, group_size, gate, eps, eps_placement, weight_offset,
                            mask);
  });
}

// ---------------------------------------------------------------- inference-only forms

// out=, in-place and vLLM's in-place fused add record no gradient: with grad
// mode on and an input that requires grad they raise, as PyTorch's own out=
// ops do; otherwise they run below autograd and bump the written tensors'
// version counters (what the ADInplaceOrView kernel of a native op does).
void refuse_grad(const char* op_name, std::initializer_list<const at::Tensor*> inputs) {
  if (!at::GradMode::is_enabled()) return;
  for (const at::Tensor* t : inputs) {
    TORCH_CHECK(!(t->defined() && t->requires_grad()), "rmsnorm: ", op_name,
                " is an inference form and records no gradient, but an input requires grad; call it under "
                "torch.no_grad() or use the differentiable op (rms_norm, layer_norm, add_rms_norm)");
  }
}

at::Tensor& rms_norm_out_autograd(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                  const OptionalTensor& weight, const OptionalTensor& bias, c10::optional<double> eps,
                                  double p, c10::string_view eps_placement, double weight_offset,
                                  c10::string_view rounding, at::Tensor& out) {
  const at::Tensor w = weight.value_or(at::Tensor()), b = bias.value_or(at::Tensor());
  refuse_grad("rms_norm(out=...)", {&input, &w, &b, &out});
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto out_op = op<at::Tensor&(const at::Tensor&, at::IntArrayRef, const OptionalTensor&,
                                              const OptionalTensor&, c10::optional<double>, double, c10::string_view,
                                              double, c10::string_view, at::Tensor&)>("rmsnorm::rms_norm", "out");
    out_op.call(input, normalized_shape, weight, bias, eps, p, eps_placement, weight_offset, rounding, out);
  }
  ::torch::autograd::increment_version(out);
  return out;
}

at::Tensor& rms_norm_inplace_autograd(at::Tensor& input, at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                                      const OptionalTensor& bias, c10::optional<double> eps, double p,
                                      c10::string_view eps_placement, double weight_offset, c10::string_view rounding) {
  const at::Tensor w = weight.value_or(at::Tensor()), b = bias.value_or(at::Tensor());
  refuse_grad("rms_norm_", {&input, &w, &b});
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto inplace_op =
        op<at::Tensor&(at::Tensor&, at::IntArrayRef, const OptionalTensor&, const OptionalTensor&,
                       c10::optional<double>, double, c10::string_view, double, c10::string_view)>("rmsnorm::rms_norm_");
    inplace_op.call(input, normalized_shape, weight, bias, eps, p, eps_placement, weight_offset, rounding);
  }
  ::torch::autograd::increment_version(input);
  return input;
}

at::Tensor& layer_norm_out_autograd(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                    const OptionalTensor& weight, const OptionalTensor& bias, double eps,
                                    double weight_offset, c10::string_view rounding, at::Tensor& out) {
  const at::Tensor w = weight.value_or(at::Tensor()), b = bias.value_or(at::Tensor());
  refuse_grad("layer_norm(out=...)", {&input, &w, &b, &out});
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto out_op = op<at::Tensor&(const at::Tensor&, at::IntArrayRef, const OptionalTensor&,
                                              const OptionalTensor&, double, double, c10::string_view, at::Tensor&)>(
        "rmsnorm::layer_norm", "out");
    out_op.call(input, normalized_shape, weight, bias, eps, weight_offset, rounding, out);
  }
  ::torch::autograd::increment_version(out);
  return out;
}

at::Tensor& layer_norm_inplace_autograd(at::Tensor& input, at::IntArrayRef normalized_shape,
                                        const OptionalTensor& weight, const OptionalTensor& bias, double eps,
                                        double weight_offset, c10::string_view rounding) {
  const at::Tensor w = weight.value_or(at::Tensor()), b = bias.value_or(at::Tensor());
  refuse_grad("layer_norm_", {&input, &w, &b});
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto inplace_op = op<at::Tensor&(at::Tensor&, at::IntArrayRef, const OptionalTensor&,
                                                  const OptionalTensor&, double, double, c10::string_view)>(
        "rmsnorm::layer_norm_");
    inplace_op.call(input, normalized_shape, weight, bias, eps, weight_offset, rounding);
  }
  ::torch::autograd::increment_version(input);
  return input;
}

void fused_add_rms_norm_autograd(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double eps) {
  refuse_grad("fused_add_rms_norm", {&input, &residual, &weight});
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto fused_op =
        op<void(at::Tensor&, at::Tensor&, const at::Tensor&, double)>("rmsnorm::fused_add_rms_norm");
    fused_op.call(input, residual, weight, eps);
  }
  ::torch::autograd::increment_version(input);
  ::torch::autograd::increment_version(residual);
}

}  // namespace
}  // namespace rmsnorm::torch

TORCH_LIBRARY_IMPL(rmsnorm, Autograd, m) {
  namespace rt = rmsnorm::torch;
  m.impl("rms_norm_forward", &rt::rms_norm_forward_autograd);
  m.impl("rms_norm_backward", &rt::rms_norm_backward_autograd);
  m.impl("layer_norm_forward", &rt::layer_norm_forward_autograd);
  m.impl("layer_norm_backward", &rt::layer_norm_backward_autograd);
  m.impl("add_rms_norm_forward", &rt::add_rms_norm_forward_autograd);
  m.impl("add_rms_norm_backward", &rt::add_rms_norm_backward_autograd);
  m.impl("gated_rms_norm_forward", &rt::gated_rms_norm_forward_autograd);
  m.impl("gated_rms_norm_backward", &rt::gated_rms_norm_backward_autograd);
  m.impl("rms_norm.out", &rt::rms_norm_out_autograd);
  m.impl("rms_norm_", &rt::rms_norm_inplace_autograd);
  m.impl("layer_norm.out", &rt::layer_norm_out_autograd);
  m.impl("layer_norm_", &rt::layer_norm_inplace_autograd);
  m.impl("fused_add_rms_norm", &rt::fused_add_rms_norm_autograd);
}
