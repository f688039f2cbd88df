// The sharded phases' kernels (sharded_ops.cpp), for the C++ tensor-parallel
// norm (distributed.cpp) as well as torch.ops.rmsnorm.shard_*. Tensors are
// 2-D [rows, local columns]; sums are float64 [rows, 3].
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace rmsnorm::torch {

at::Tensor shard_forward_sums(const at::Tensor& input, int64_t global_n, int64_t column_begin, int64_t round,
                              const c10::optional<at::Tensor>& reduced0, bool layer_norm, double eps, double p,
                              c10::string_view eps_placement);

// (y, inv_rms, mean)
std::tuple<at::Tensor, at::Tensor, at::Tensor> shard_forward_apply(
    const at::Tensor& input, int64_t global_n, int64_t column_begin, const at::Tensor& reduced0,
    const c10::optional<at::Tensor>& reduced1, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, bool layer_norm, double eps, double p, c10::string_view eps_placement,
    double weight_offset);

at::Tensor shard_backward_sums(const at::Tensor& input, const at::Tensor& grad, int64_t global_n, int64_t column_begin,
                               const c10::optional<at::Tensor>& weight, const at::Tensor& inv_rms,
                               const at::Tensor& mean, bool layer_norm, double eps, double p,
                               c10::string_view eps_placement, double weight_offset);

// (dx, dweight, dbias); dweight / dbias undefined unless asked for.
std::tuple<at::Tensor, at::Tensor, at::Tensor> shard_backward_apply(
    const at::Tensor& input, const at::Tensor& grad, int64_t global_n, int64_t column_begin,
    const c10::optional<at::Tensor>& weight, const at::Tensor& inv_rms, const at::Tensor& mean,
    const at::Tensor& reduced, bool layer_norm, double eps, double p, c10::string_view eps_placement,
    double weight_offset, bool weight_grad, bool bias_grad);

}  // namespace rmsnorm::torch
