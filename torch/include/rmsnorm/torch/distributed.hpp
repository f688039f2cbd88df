// Tensor parallelism from C++ (SPEC section 9): norms over a hidden dimension
// split across the ranks of a c10d process group (gloo on CPU). Each rank holds
// its columns of every row and its slice of the weight; the float64 row sums
// are all-gathered and added in rank order, so every rank applies bitwise the
// same statistic. The Python twin is rmsnorm.distributed.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

namespace rmsnorm::torch {

// Widths of an even split: the first global_hidden % world_size ranks hold one more column.
std::vector<int64_t> even_split(int64_t global_hidden, int64_t world_size);

// The norm of rows whose columns [column_begin, column_begin + x.size(-1))
// of global_n are on this rank; differentiable (backward all-gathers too).
at::Tensor sharded_norm(const at::Tensor& x, int64_t global_n, int64_t column_begin,
                        const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                        bool layer_norm, double eps, double p, const std::string& eps_placement, double weight_offset,
                        const c10::intrusive_ptr<c10d::ProcessGroup>& group);

struct ShardedNormOptions {
  ShardedNormOptions(int64_t global_hidden, c10::intrusive_ptr<c10d::ProcessGroup> group);
  TORCH_ARG(int64_t, global_hidden);
  TORCH_ARG(c10::intrusive_ptr<c10d::ProcessGroup>, group);
  TORCH_ARG(int64_t, local_hidden) = 0;  // 0: this rank's width in an even split
  TORCH_ARG(bool, layer_norm) = false;
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(double, p) = 1.0;
  TORCH_ARG(std::string, eps_placement) = "inside";
  TORCH_ARG(double, weight_offset) = 0.0;
  TORCH_ARG(bool, bias) = false;  // LayerNorm's bias
};

// RMSNorm / pRMSNorm (or LayerNorm with options.layer_norm(true)) over this
// rank's columns. The constructor all-gathers every rank's width: widths that
// do not add up to global_hidden are the same error on every rank.
class ShardedNormImpl : public ::torch::nn::Module {
 public:
  explicit ShardedNormImpl(ShardedNormOptions options);
  at::Tensor forward(const at::Tensor& x);

  ShardedNormOptions options;
  int64_t column_begin = 0;
  at::Tensor weight, bias;
};
// What TORCH_MODULE(ShardedNorm) expands to, spelled with ::torch (modules.hpp says why).
class ShardedNorm : public ::torch::nn::ModuleHolder<ShardedNormImpl> {
 public:
  using ::torch::nn::ModuleHolder<ShardedNormImpl>::ModuleHolder;
};

}  // namespace rmsnorm::torch
