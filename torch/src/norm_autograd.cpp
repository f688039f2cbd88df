// The Autograd kernels of torch.ops.rmsnorm.*: each forward op records a
// graph node whose backward calls the matching backward op through the
// dispatcher (so it runs on whatever backend holds the tensors). The ops that
// cannot be differentiated say so: the backward ops record a node that raises
// if a second derivative is asked for, and the out= and in-place forms refuse
// inputs that require grad, as PyTorch's own out= ops do.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <array>
#include <memory>
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

// ---------------------------------------------------------------- graph nodes

// Each differentiable forward op records one node, written as PyTorch's own
// generated nodes are: typed members and SavedVariables. An autograd
// Function (CppNode) kept its scalars in a string-keyed map of IValues and
// copied its arguments into vectors and strings on every call, a measurable
// part of a small call's overhead. The node's edges are the op's tensor
// inputs in order (absent optionals give empty edges), so output i of apply()
// is the gradient of input i.
using ::torch::autograd::Node;
using ::torch::autograd::SavedVariable;
using ::torch::autograd::variable_list;

// The node for an op's inputs, or null when no gradient is recorded (grad
// mode off, or no input requires grad).
template <class NodeT, class... Inputs>
std::shared_ptr<NodeT> make_node(const Inputs&... inputs) {
  if (!::torch::autograd::compute_requires_grad(inputs...)) return nullptr;
  std::shared_ptr<NodeT> node(new NodeT(), ::torch::autograd::deleteNode);
  node->set_next_edges(::torch::autograd::collect_next_edges(inputs...));
  return node;
}

// Gradients flow into the op's differentiable outputs, in order; the
// statistics it also returns stay outside the graph.
void record_outputs(const std::shared_ptr<Node>& node, std::initializer_list<at::Tensor*> differentiable) {
  for (at::Tensor* t : differentiable) ::torch::autograd::set_history(*t, node);
}

SavedVariable save_input(const OptionalTensor& t) { return SavedVariable(t.value_or(at::Tensor()), false); }

// The weight, the bias and the per-row 1/r every RMSNorm and LayerNorm node keeps.
struct SavedParameters {
  SavedVariable weight, bias, inv_rms;
  void save(const OptionalTensor& w, const OptionalTensor& b, const at::Tensor& inv) {
    weight = save_input(w);
    bias = save_input(b);
    inv_rms = SavedVariable(inv, false);
  }
  void release() {
    weight.reset_data();
    bias.reset_data();
    inv_rms.reset_data();
  }
};

// RMSNorm's scalar arguments, which its backward op takes again (the RMSNorm
// and the fused-add nodes).
struct RmsArguments {
  std::vector<int64_t> normalized_shape;
  double eps = 0, p = 1, weight_offset = 0;
  std::string eps_placement;
  void save(at::IntArrayRef shape, double eps_value, double p_value, c10::string_view placement, double offset) {
    normalized_shape = shape.vec();
    eps = eps_value;
    p = p_value;
    eps_placement = std::string(placement);
    weight_offset = offset;
  }
};

// ---------------------------------------------------------------- RMSNorm

struct RmsNormBackward : public Node {
  SavedVariable input;
  SavedParameters params;
  RmsArguments args;

  variable_list apply(variable_list&& grads) override {
    variable_list out(3);  // input, weight, bias
    if (!grads[0].defined()) return out;
    const at::Tensor x = input.unpack(), w = params.weight.unpack(), b = params.bias.unpack();
    const Mask mask{task_should_compute_output(0), w.defined() && task_should_compute_output(1),
                    b.defined() && task_should_compute_output(2)};
    static const auto backward_op = op<RmsBackward>("rmsnorm::rms_norm_backward");
    auto [dx, dweight, dbias] =
        backward_op.call(grads[0], x, args.normalized_shape, optional_of(w), optional_of(b), params.inv_rms.unpack(),
                         args.eps, args.p, args.eps_placement, args.weight_offset, mask);
    out[0] = std::move(dx);
    out[1] = std::move(dweight);
    out[2] = std::move(dbias);
    return out;
  }
  void release_variables() override {
    input.reset_data();
    params.release();
  }
  std::string name() const override { return "rmsnorm::RmsNormBackward"; }
};

Pair rms_norm_forward_autograd(const at::Tensor& input, at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                               const OptionalTensor& bias, double eps, double p, c10::string_view eps_placement,
                               double weight_offset, c10::string_view rounding) {
  const auto node = make_node<RmsNormBackward>(input, weight, bias);
  static const auto forward_op = op<RmsForward>("rmsnorm::rms_norm_forward");
  Pair out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = forward_op.call(input, normalized_shape, weight, bias, eps, p, eps_placement, weight_offset, rounding);
  }
  if (node) {
    record_outputs(node, {&std::get<0>(out)});
    node->input = SavedVariable(input, false);
    node->params.save(weight, bias, std::get<1>(out));
    node->args.save(normalized_shape, eps, p, eps_placement, weight_offset);
  }
  return out;
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

struct LayerNormBackward : public Node {
  SavedVariable input, mean;
  SavedParameters params;
  std::vector<int64_t> normalized_shape;
  double eps = 0, weight_offset = 0;

  variable_list apply(variable_list&& grads) override {
    variable_list out(3);  // input, weight, bias
    if (!grads[0].defined()) return out;
    const at::Tensor x = input.unpack(), w = params.weight.unpack(), b = params.bias.unpack();
    const Mask mask{task_should_compute_output(0), w.defined() && task_should_compute_output(1),
                    b.defined() && task_should_compute_output(2)};
    static const auto backward_op = op<LnBackward>("rmsnorm::layer_norm_backward");
    auto [dx, dweight, dbias] = backward_op.call(grads[0], x, normalized_shape, optional_of(w), optional_of(b),
                                                 mean.unpack(), params.inv_rms.unpack(), eps, weight_offset, mask);
    out[0] = std::move(dx);
    out[1] = std::move(dweight);
    out[2] = std::move(dbias);
    return out;
  }
  void release_variables() override {
    input.reset_data();
    mean.reset_data();
    params.release();
  }
  std::string name() const override { return "rmsnorm::LayerNormBackward"; }
};

Triple layer_norm_forward_autograd(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                   const OptionalTensor& weight, const OptionalTensor& bias, double eps,
                                   double weight_offset, c10::string_view rounding) {
  const auto node = make_node<LayerNormBackward>(input, weight, bias);
  static const auto forward_op = op<LnForward>("rmsnorm::layer_norm_forward");
  Triple out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = forward_op.call(input, normalized_shape, weight, bias, eps, weight_offset, rounding);
  }
  if (node) {
    record_outputs(node, {&std::get<0>(out)});
    node->input = SavedVariable(input, false);
    node->mean = SavedVariable(std::get<1>(out), false);
    node->params.save(weight, bias, std::get<2>(out));
    node->normalized_shape = normalized_shape.vec();
    node->eps = eps;
    node->weight_offset = weight_offset;
  }
  return out;
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

struct AddRmsNormBackward : public Node {
  SavedVariable h;
  SavedParameters params;
  RmsArguments args;

  variable_list apply(variable_list&& grads) override {
    variable_list out(4);  // input, residual, weight, bias
    if (!grads[0].defined() && !grads[1].defined()) return out;
    const at::Tensor hv = h.unpack(shared_from_this()), w = params.weight.unpack(), b = params.bias.unpack();
    const bool want_input = task_should_compute_output(0) || task_should_compute_output(1);
    const Mask mask{want_input, w.defined() && task_should_compute_output(2),
                    b.defined() && task_should_compute_output(3)};
    // Only h used downstream: y's gradient is zero.
    const at::Tensor grad_y = grads[0].defined() ? grads[0] : at::zeros_like(hv);
    static const auto backward_op = op<AddBackward>("rmsnorm::add_rms_norm_backward");
    auto [dh, dweight, dbias] =
        backward_op.call(grad_y, optional_of(grads[1]), hv, args.normalized_shape, optional_of(w), optional_of(b),
                         params.inv_rms.unpack(), args.eps, args.p, args.eps_placement, args.weight_offset, mask);
    // h = input + residual: both receive dh.
    if (task_should_compute_output(0)) out[0] = dh;
    if (task_should_compute_output(1)) out[1] = dh;
    out[2] = std::move(dweight);
    out[3] = std::move(dbias);
    return out;
  }
  void release_variables() override {
    h.reset_data();
    params.release();
  }
  std::string name() const override { return "rmsnorm::AddRmsNormBackward"; }
};

Triple add_rms_norm_forward_autograd(const at::Tensor& input, const at::Tensor& residual,
                                     at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                                     const OptionalTensor& bias, double eps, double p, c10::string_view eps_placement,
                                     double weight_offset, c10::string_view rounding) {
  const auto node = make_node<AddRmsNormBackward>(input, residual, weight, bias);
  static const auto forward_op = op<AddForward>("rmsnorm::add_rms_norm_forward");
  Triple out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = forward_op.call(input, residual, normalized_shape, weight, bias, eps, p, eps_placement, weight_offset,
                          rounding);
  }
  if (node) {
    record_outputs(node, {&std::get<0>(out), &std::get<1>(out)});
    node->h = SavedVariable(std::get<1>(out), true);  // an output of this node: saved without a reference cycle
    node->params.save(weight, bias, std::get<2>(out));
    node->args.save(normalized_shape, eps, p, eps_placement, weight_offset);
  }
  return out;
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

struct GatedRmsNormBackward : public Node {
  SavedVariable input, z, weight, inv_rms;
  int64_t group_size = 0;
  std::string gate, eps_placement;
  double eps = 0, weight_offset = 0;

  variable_list apply(variable_list&& grads) override {
    variable_list out(3);  // input, z, weight
    if (!grads[0].defined()) return out;
    const at::Tensor x = input.unpack(), zv = z.unpack(), w = weight.unpack();
    const Mask mask{task_should_compute_output(0), zv.defined() && task_should_compute_output(1),
                    w.defined() && task_should_compute_output(2)};
    static const auto backward_op = op<GatedBackward>("rmsnorm::gated_rms_norm_backward");
    auto [dx, dz, dweight] = backward_op.call(grads[0], x, optional_of(zv), optional_of(w), inv_rms.unpack(),
                                              group_size, gate, eps, eps_placement, weight_offset, mask);
    out[0] = std::move(dx);
    out[1] = std::move(dz);
    out[2] = std::move(dweight);
    return out;
  }
  void release_variables() override {
    input.reset_data();
    z.reset_data();
    weight.reset_data();
    inv_rms.reset_data();
  }
  std::string name() const override { return "rmsnorm::GatedRmsNormBackward"; }
};

Pair gated_rms_norm_forward_autograd(const at::Tensor& input, const OptionalTensor& z, const OptionalTensor& weight,
                                     int64_t group_size, c10::string_view gate, double eps,
                                     c10::string_view eps_placement, double weight_offset) {
  const auto node = make_node<GatedRmsNormBackward>(input, z, weight);
  static const auto forward_op = op<GatedForward>("rmsnorm::gated_rms_norm_forward");
  Pair out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = forward_op.call(input, z, weight, group_size, gate, eps, eps_placement, weight_offset);
  }
  if (node) {
    record_outputs(node, {&std::get<0>(out)});
    node->input = SavedVariable(input, false);
    node->z = save_input(z);
    node->weight = save_input(weight);
    node->inv_rms = SavedVariable(std::get<1>(out), false);
    node->group_size = group_size;
    node->gate = std::string(gate);
    node->eps = eps;
    node->eps_placement = std::string(eps_placement);
    node->weight_offset = weight_offset;
  }
  return out;
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
