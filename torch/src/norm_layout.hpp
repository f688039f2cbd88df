// What the norm ops check before touching data, shared by the kernels that
// compute (CPU, CUDA) and the Meta kernels that only infer shapes, so that a
// bad call fails the same way on a meta tensor as on a real one.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <vector>

#include "op_support.hpp"

namespace rmsnorm::torch {

// input viewed as rows x n: n the product of normalized_shape, `leading` the
// input's other (leading) dimensions, which are also the statistics' shape.
struct NormLayout {
  int64_t rows = 0;
  int64_t n = 0;
  std::vector<int64_t> leading;
};

inline bool present(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// Checks normalized_shape against input's trailing dimensions and the
// parameters' shapes, dtypes and devices. Reads no data.
inline NormLayout norm_layout(const at::Tensor& input, at::IntArrayRef normalized_shape,
                              const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(!normalized_shape.empty(), "rmsnorm: normalized_shape must name at least one dimension");
  const int64_t dims = static_cast<int64_t>(normalized_shape.size());
  TORCH_CHECK(input.dim() >= dims, "rmsnorm: normalized_shape ", normalized_shape, " has more dimensions than input ",
              input.sizes());
  const auto trailing = input.sizes().slice(input.dim() - dims);
  TORCH_CHECK(trailing == normalized_shape, "rmsnorm: normalized_shape ", normalized_shape,
              " must equal the input's trailing dimensions, got input of shape ", input.sizes());
  engine_dtype(input, "input");
  for (const auto* param : {&weight, &bias}) {
    if (!present(*param)) continue;
    const char* name = param == &weight ? "weight" : "bias";
    const at::Tensor& t = **param;
    TORCH_CHECK(t.sizes() == normalized_shape, "rmsnorm: ", name, " must have shape normalized_shape ",
                normalized_shape, ", got ", t.sizes());
    TORCH_CHECK(t.device() == input.device(), "rmsnorm: ", name, " is on ", t.device(), ", input on ", input.device());
    engine_dtype(t, name);
  }
  NormLayout layout;
  layout.leading = input.sizes().slice(0, input.dim() - dims).vec();
  layout.n = 1;
  for (int64_t d : normalized_shape) layout.n *= d;
  layout.rows = 1;
  for (int64_t d : layout.leading) layout.rows *= d;
  return layout;
}

// The scalar arguments every norm op takes, checked as the engine checks them
// (Meta kernels never reach the engine).
inline void check_settings(double eps, double p, double weight_offset, bool has_weight) {
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, "rmsnorm: eps must be finite and >= 0, got ", eps);
  TORCH_CHECK(p > 0 && p <= 1, "rmsnorm: p must be in (0, 1], got ", p);
  TORCH_CHECK(std::isfinite(weight_offset), "rmsnorm: weight_offset must be finite, got ", weight_offset);
  TORCH_CHECK(weight_offset == 0 || has_weight, "rmsnorm: weight_offset ", weight_offset,
              " needs a weight (the gain is weight_offset + weight)");
}

// The statistics a forward op returns: one value per row, shaped like the
// input's leading dimensions (times `per_row` groups for grouped norms).
inline at::Tensor empty_statistics(const at::Tensor& input, const NormLayout& layout, int64_t per_row = 1) {
  std::vector<int64_t> shape = layout.leading;
  if (per_row != 1) shape.push_back(per_row);
  return at::empty(shape, input.options().dtype(statistics_type(input.scalar_type())));
}

// A gradient argument must match what it is the gradient of.
inline void check_like(const at::Tensor& grad, const at::Tensor& of, const char* grad_name, const char* of_name) {
  TORCH_CHECK(grad.sizes() == of.sizes(), "rmsnorm: ", grad_name, " must have ", of_name, "'s shape ", of.sizes(),
              ", got ", grad.sizes());
  TORCH_CHECK(grad.device() == of.device(), "rmsnorm: ", grad_name, " is on ", grad.device(), ", ", of_name, " on ",
              of.device());
}

// Saved statistics must be what the forward op returned for these rows.
inline void check_statistics(const at::Tensor& stats, const at::Tensor& input, int64_t count, const char* name) {
  const at::ScalarType type = statistics_type(input.scalar_type());
  TORCH_CHECK(stats.scalar_type() == type && stats.numel() == count, "rmsnorm: ", name,
              " must be the forward op's saved ", type, " statistics (", count, " values), got ", stats.scalar_type(),
              " with ", stats.numel(), " values");
  TORCH_CHECK(stats.device() == input.device(), "rmsnorm: ", name, " is on ", stats.device(), ", input on ",
              input.device());
}

}  // namespace rmsnorm::torch
