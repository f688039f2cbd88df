// torch.ops.rmsnorm.*: the schemas, and the user-facing ops composed of them.
//
// Each norm is a pair of ops with full schemas, <norm>_forward (returning what
// backward needs) and <norm>_backward, with kernels for CPU (CUDA in CUDA
// builds) and Meta in norm_kernels.cpp and for Autograd in norm_autograd.cpp.
// The user-facing rms_norm, layer_norm, add_rms_norm and gated_rms_norm are
// CompositeImplicitAutograd: they call the forward op through the dispatcher
// and return its outputs, so every PyTorch tool that follows the dispatcher
// (meta tensors, tracing, autograd) sees the pair.
#include "rmsnorm/torch/ops.hpp"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <tuple>

#include "norm_layout.hpp"
#include "op_support.hpp"

namespace rmsnorm::torch {
namespace {

using OptionalTensor = c10::optional<at::Tensor>;

template <class Signature>
c10::TypedOperatorHandle<Signature> op(const char* name, const char* overload = "") {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).typed<Signature>();
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                    const OptionalTensor& bias, c10::optional<double> eps, double p, c10::string_view eps_placement,
                    double weight_offset, c10::string_view rounding) {
  static const auto forward = op<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, at::IntArrayRef, const OptionalTensor&, const OptionalTensor&, double, double,
      c10::string_view, double, c10::string_view)>("rmsnorm::rms_norm_forward");
  return std::get<0>(forward.call(input, normalized_shape, weight, bias, eps.value_or(default_rms_eps(input)), p,
                                  eps_placement, weight_offset, rounding));
}

at::Tensor layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                      const OptionalTensor& bias, double eps, double weight_offset, c10::string_view rounding) {
  static const auto forward =
      op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, at::IntArrayRef, const OptionalTensor&,
                                                        const OptionalTensor&, double, double, c10::string_view)>(
          "rmsnorm::layer_norm_forward");
  return std::get<0>(forward.call(input, normalized_shape, weight, bias, eps, weight_offset, rounding));
}

std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual,
                                                at::IntArrayRef normalized_shape, const OptionalTensor& weight,
                                                const OptionalTensor& bias, c10::optional<double> eps, double p,
                                                c10::string_view eps_placement, double weight_offset,
                                                c10::string_view rounding) {
  static const auto forward = op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, at::IntArrayRef, const OptionalTensor&, const OptionalTensor&, double,
      double, c10::string_view, double, c10::string_view)>("rmsnorm::add_rms_norm_forward");
  auto [y, h, inv_rms] = forward.call(input, residual, normalized_shape, weight, bias,
                                      eps.value_or(default_rms_eps(input)), p, eps_placement, weight_offset, rounding);
  return {y, h};
}

at::Tensor gated_rms_norm(const at::Tensor& input, const OptionalTensor& z, const OptionalTensor& weight,
                          int64_t group_size, c10::string_view gate, c10::optional<double> eps,
                          c10::string_view eps_placement, double weight_offset) {
  static const auto forward =
      op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const OptionalTensor&, const OptionalTensor&, int64_t,
                                            c10::string_view, double, c10::string_view, double)>(
          "rmsnorm::gated_rms_norm_forward");
  return std::get<0>(forward.call(input, z, weight, group_size, gate, eps.value_or(default_rms_eps(input)),
                                  eps_placement, weight_offset));
}

void fused_add_rms_norm(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double eps) {
  static const auto fused =
      op<void(at::Tensor&, at::Tensor&, const at::Tensor&, double)>("rmsnorm::fused_add_rms_norm");
  fused.call(input, residual, weight, eps);
}

}  // namespace rmsnorm::torch

TORCH_LIBRARY(rmsnorm, m) {
  // The user-facing ops. eps=None: the input dtype's machine epsilon, as
  // torch.nn.functional.rms_norm. rounding: "single" or "before_weight" (SPEC
  // section 7); eps_placement: "inside" or "outside"; gate: "none", "before"
  // or "after" (SPEC section 10).
  m.def("rms_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float? eps=None, "
        "float p=1.0, str eps_placement=\"inside\", float weight_offset=0.0, str rounding=\"single\") -> Tensor");
  m.def("layer_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, "
        "float weight_offset=0.0, str rounding=\"single\") -> Tensor");
  m.def("add_rms_norm(Tensor input, Tensor residual, int[] normalized_shape, Tensor? weight=None, "
        "Tensor? bias=None, float? eps=None, float p=1.0, str eps_placement=\"inside\", float weight_offset=0.0, "
        "str rounding=\"single\") -> (Tensor y, Tensor h)");
  m.def("gated_rms_norm(Tensor input, Tensor? z=None, Tensor? weight=None, int group_size=0, str gate=\"none\", "
        "float? eps=None, str eps_placement=\"inside\", float weight_offset=0.0) -> Tensor");

  // Inference forms: out= and in place (no gradient; they raise under grad).
  m.def("rms_norm.out(Tensor input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, "
        "float? eps=None, float p=1.0, str eps_placement=\"inside\", float weight_offset=0.0, "
        "str rounding=\"single\", *, Tensor(a!) out) -> Tensor(a!)");
  m.def("rms_norm_(Tensor(a!) input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, "
        "float? eps=None, float p=1.0, str eps_placement=\"inside\", float weight_offset=0.0, "
        "str rounding=\"single\") -> Tensor(a!)");
  m.def("layer_norm.out(Tensor input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, "
        "float eps=1e-05, float weight_offset=0.0, str rounding=\"single\", *, Tensor(a!) out) -> Tensor(a!)");
  m.def("layer_norm_(Tensor(a!) input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, "
        "float eps=1e-05, float weight_offset=0.0, str rounding=\"single\") -> Tensor(a!)");
  // vLLM's: residual += input; input = rms_norm(residual) * weight, in place.
  m.def("fused_add_rms_norm(Tensor(a!) input, Tensor(b!) residual, Tensor weight, float eps) -> ()");

  // The forward/backward pairs. Statistics have the input's leading shape
  // ([*leading, groups] for the gated op), float32 (float64 for float64
  // data). output_mask says which gradients to return; the others are None.
  m.def("rms_norm_forward(Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, float eps, float p, "
        "str eps_placement, float weight_offset, str rounding) -> (Tensor y, Tensor inv_rms)");
  m.def("rms_norm_backward(Tensor grad_y, Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, "
        "Tensor inv_rms, float eps, float p, str eps_placement, float weight_offset, bool[3] output_mask) "
        "-> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");
  m.def("layer_norm_forward(Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, float eps, "
        "float weight_offset, str rounding) -> (Tensor y, Tensor mean, Tensor inv_rms)");
  m.def("layer_norm_backward(Tensor grad_y, Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, "
        "Tensor mean, Tensor inv_rms, float eps, float weight_offset, bool[3] output_mask) "
        "-> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");
  m.def("add_rms_norm_forward(Tensor input, Tensor residual, int[] normalized_shape, Tensor? weight, Tensor? bias, "
        "float eps, float p, str eps_placement, float weight_offset, str rounding) "
        "-> (Tensor y, Tensor h, Tensor inv_rms)");
  m.def("add_rms_norm_backward(Tensor grad_y, Tensor? grad_h, Tensor h, int[] normalized_shape, Tensor? weight, "
        "Tensor? bias, Tensor inv_rms, float eps, float p, str eps_placement, float weight_offset, "
        "bool[3] output_mask) -> (Tensor grad_h_in, Tensor grad_weight, Tensor grad_bias)");
  m.def("gated_rms_norm_forward(Tensor input, Tensor? z, Tensor? weight, int group_size, str gate, float eps, "
        "str eps_placement, float weight_offset) -> (Tensor y, Tensor inv_rms)");
  m.def("gated_rms_norm_backward(Tensor grad_y, Tensor input, Tensor? z, Tensor? weight, Tensor inv_rms, "
        "int group_size, str gate, float eps, str eps_placement, float weight_offset, bool[3] output_mask) "
        "-> (Tensor grad_input, Tensor grad_z, Tensor grad_weight)");
}

TORCH_LIBRARY_IMPL(rmsnorm, CompositeImplicitAutograd, m) {
  m.impl("rms_norm", &rmsnorm::torch::rms_norm);
  m.impl("layer_norm", &rmsnorm::torch::layer_norm);
  m.impl("add_rms_norm", &rmsnorm::torch::add_rms_norm);
  m.impl("gated_rms_norm", &rmsnorm::torch::gated_rms_norm);
}
