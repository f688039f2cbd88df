// What a CPU kernel needs to know about one call, after validation: plain
// pointers, strides and flags. Nothing in here knows about the public API's
// structs, so kernels and front ends can change independently.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::cpu {

// Rows are processed in blocks of this many elements: every partial sum is
// formed per block and blocks are added in order, so results do not depend on
// how rows or blocks are shared among threads.
inline constexpr int64_t kBlockElements = 4096;

inline int64_t block_count(int64_t n) { return (n + kBlockElements - 1) / kBlockElements; }

struct NormParams {
  bool centered = false;     // LayerNorm: subtract the mean
  bool eps_outside = false;  // r = sqrt(ms) + eps
  double eps = 0.0;
  int64_t n = 0;
  int64_t k = 0;  // elements that estimate the statistic (n unless pRMSNorm)
};

struct ForwardPlan {
  NormParams norm;
  int64_t rows = 0;
  DType dtype = DType::kFloat32;   // x, y, residual
  DType param_dtype = DType::kFloat32;  // weight, bias
  const void* x = nullptr;
  int64_t x_stride = 0;  // elements
  void* residual = nullptr;  // fused add: residual += x, then normalize residual
  int64_t residual_stride = 0;
  void* y = nullptr;
  int64_t y_stride = 0;
  const void* weight = nullptr;
  const void* bias = nullptr;
  // The gain is weight_offset + g. The engine folds a nonzero offset into a
  // copy of the parameters in the arithmetic type before the kernels run, so
  // the kernels only ever see an offset of 0.
  double weight_offset = 0.0;
  // 16-bit data, Rounding::kBeforeWeight: (x - mean) / r is rounded to the
  // data's dtype before the weight and bias apply. Always false for float32
  // and float64 data.
  bool round_before_weight = false;
  void* saved_inv_rms = nullptr;  // statistics_dtype(dtype)
  void* saved_mean = nullptr;
  bool stream_output = false;  // write y with non-temporal stores
  // Set by the engine: every nonzero |weight| lies within FastRange's
  // scale_limit, so inv_r * g stays a normal number. Otherwise every row
  // takes the wide slow path.
  bool weight_in_range = true;
  size_t simd_index = 0;  // set by the engine: every kernel of the call runs this target (dispatch.hpp)
};

struct BackwardPlan {
  NormParams norm;
  int64_t rows = 0;
  DType dtype = DType::kFloat32;  // x, dy, dx
  DType param_dtype = DType::kFloat32;  // weight
  const void* x = nullptr;
  int64_t x_stride = 0;
  const void* dy = nullptr;
  int64_t dy_stride = 0;
  void* dx = nullptr;
  int64_t dx_stride = 0;
  // The fused residual form's backward (SPEC section 8): dx = norm_backward(dy)
  // + dh_out, one rounding; null when absent. dx may alias it exactly.
  const void* dh_out = nullptr;
  int64_t dh_out_stride = 0;
  const void* weight = nullptr;
  double weight_offset = 0.0;  // as in ForwardPlan; the gradient's gain is weight_offset + g
  const void* saved_inv_rms = nullptr;
  const void* saved_mean = nullptr;
  bool want_dweight = false;
  bool want_dbias = false;
  bool stream_output = false;
  bool weight_in_range = true;  // as in ForwardPlan
  size_t simd_index = 0;
};

// The rows a statistic is computed from, for the block-parallel statistics of
// long rows (forward, and backward when it recomputes them): x, or with the
// fused add residual + x, which the first pass writes back into residual.
struct StatisticsSource {
  NormParams norm;
  int64_t rows = 0;
  DType dtype = DType::kFloat32;
  DType param_dtype = DType::kFloat32;
  const void* x = nullptr;
  int64_t x_stride = 0;
  void* residual = nullptr;
  int64_t residual_stride = 0;
  size_t simd_index = 0;
};

inline StatisticsSource statistics_source(const ForwardPlan& p) {
  return {p.norm, p.rows, p.dtype, p.param_dtype, p.x, p.x_stride, p.residual, p.residual_stride, p.simd_index};
}
inline StatisticsSource statistics_source(const BackwardPlan& p) {
  return {p.norm, p.rows, p.dtype, p.param_dtype, p.x, p.x_stride, nullptr, 0, p.simd_index};
}

// The statistics of one row, in double; produced from block sums by finalize_*.
struct RowStatistics {
  double mean = 0.0;     // LayerNorm shift, mean + mean_lo; 0 for RMSNorm
  double mean_lo = 0.0;
  double inv_r = 0.0;    // 1 / r
  double s = 0.0;        // sqrt(ms), for the "outside" gradient
  bool fast = true;      // false: the row needs the wide-precision slow path
};

// Per-row gradient coefficients: dx_j = a * (gy_j + shift) - (x_j - mean) * coef[j < k].
struct RowGradient {
  double a = 0.0;
  double coef = 0.0;
  double shift = 0.0;
  bool fast = true;
  double mean_lo = 0.0;  // LayerNorm: the mean is the statistics' (pivot) mean + mean_lo
};

}  // namespace rmsnorm::cpu
