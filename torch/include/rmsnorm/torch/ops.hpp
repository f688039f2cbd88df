// LibTorch front end of the engine: the ops registered as torch.ops.rmsnorm.*
// (TORCH_LIBRARY(rmsnorm, m)), callable from C++ too. Each goes through the
// dispatcher and is differentiable with the engine's own backward kernels
// (fused_add_rms_norm, an in-place inference op, is not).
#pragma once

#include <string>
#include <tuple>

#include <ATen/ATen.h>

namespace rmsnorm::torch {

// y = x / r * (weight_offset + weight) + bias over the trailing
// `normalized_shape` dimensions. eps: nullopt is the input dtype's machine
// epsilon. eps_placement: "inside" (r = sqrt(mean(x^2) + eps)) or "outside"
// (r = sqrt(mean(x^2)) + eps); p < 1 is pRMSNorm (first ceil(n p) elements).
// rounding: "single" or "before_weight" (16-bit data, SPEC section 7).
at::Tensor rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const c10::optional<at::Tensor>& weight,
                    const c10::optional<at::Tensor>& bias, c10::optional<double> eps, double p = 1.0,
                    c10::string_view eps_placement = "inside", double weight_offset = 0.0,
                    c10::string_view rounding = "single");

at::Tensor layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                      const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps = 1e-5,
                      double weight_offset = 0.0, c10::string_view rounding = "single");

// The training form of the fused residual add (SPEC section 8): h = input +
// residual (rounded to their dtype), y = rms_norm(h). Returns (y, h);
// differentiable in input, residual, weight and bias. residual is not modified.
std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual,
                                                at::IntArrayRef normalized_shape,
                                                const c10::optional<at::Tensor>& weight,
                                                const c10::optional<at::Tensor>& bias, c10::optional<double> eps,
                                                double p = 1.0, c10::string_view eps_placement = "inside",
                                                double weight_offset = 0.0, c10::string_view rounding = "single");

// Gated and grouped RMSNorm over the last dimension (SPEC section 10), CPU
// tensors: groups of group_size columns (0: the whole row), gate "none",
// "before" (norm(x * silu(z))) or "after" (norm(x) * silu(z)).
at::Tensor gated_rms_norm(const at::Tensor& input, const c10::optional<at::Tensor>& z,
                          const c10::optional<at::Tensor>& weight, int64_t group_size, c10::string_view gate,
                          c10::optional<double> eps, c10::string_view eps_placement = "inside",
                          double weight_offset = 0.0);

// vLLM semantics, in place: residual += input; input = rms_norm(residual) * weight
// over the last dimension, eps inside. Both tensors contiguous, same shape and
// dtype. An inference op: it raises if an input requires grad under grad mode.
void fused_add_rms_norm(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double eps);

}  // namespace rmsnorm::torch
