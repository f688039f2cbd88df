// LibTorch front end of the engine: the ops registered as torch.ops.rmsnorm.*
// (TORCH_LIBRARY(rmsnorm, m)), callable from C++ too. Each is differentiable
// through autograd with the engine's own backward kernels (fused_add_rms_norm,
// an in-place inference op, is not).
#pragma once

#include <string>

#include <ATen/ATen.h>

namespace rmsnorm::torch {

// y = x / r * weight + bias over the trailing `normalized_shape` dimensions.
// eps_placement: "inside" (r = sqrt(mean(x^2) + eps)) or "outside"
// (r = sqrt(mean(x^2)) + eps); p < 1 is pRMSNorm (first ceil(n p) elements).
at::Tensor rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const c10::optional<at::Tensor>& weight,
                    const c10::optional<at::Tensor>& bias, double eps, double p, c10::string_view eps_placement);

at::Tensor layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                      const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps);

// vLLM semantics, in place: residual += input; input = rms_norm(residual) * weight
// over the last dimension, eps inside. Both tensors contiguous, same shape and dtype.
void fused_add_rms_norm(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double eps);

}  // namespace rmsnorm::torch
