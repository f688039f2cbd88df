// What a CPU kernel needs to know about one call, after validation: plain
// pointers, strides and flags. Nothing in here knows about the public API's
// structs, so kernels and front ends can change independently.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rmsnorm/rmsnorm.hpp"
#include "src/calls/calls.hpp"

namespace rmsnorm::cpu {

// Rows are processed in blocks of this many elements: every partial sum is
// formed per block and blocks are added in order, so results do not depend on
// how rows or blocks are shared among threads.
inline constexpr int64_t kBlockElements = 4096;

inline int64_t block_count(int64_t n) { return (n + kBlockElements - 1) / kBlockElements; }

using calls::NormParams;

// A call as the CPU engine runs it: the call, and what the engine decides for
// it before any kernel runs (run_forward / run_backward in engine.cpp).
// With a weight offset, `weight` (and `bias`, in the same type) hold the gain
// offset + g formed in the arithmetic type, which is all the kernels read; the
// slow path forms offset + g exactly from `unfolded_weight` instead, so a gain
// that overflows float32 (|offset + g| > FLT_MAX, which also fails the range
// check) is still right there.
struct UnfoldedWeight {
  const void* unfolded_weight = nullptr;
  DType unfolded_dtype = DType::kFloat32;
};

struct ForwardPlan : calls::ForwardCall, UnfoldedWeight {
  bool stream_output = false;  // write y with non-temporal stores (output larger than the last-level cache)
  // Ask for the next row's inputs while working on this one: when streaming,
  // and when a matrix is larger than a core's own cache, where the hardware
  // prefetcher alone left a 2048x768 float32 fused forward 27% slower.
  bool prefetch_rows = false;
  // Every nonzero |weight| lies within FastRange's scale_limit, so inv_r * g
  // stays a normal number. Otherwise every row takes the wide slow path.
  bool weight_in_range = true;
  // weight_in_range is not known yet: the row loop checks the weight in its
  // first row (float arithmetic, on the row path), in the same pass as the
  // row's sum of squares. pRMSNorm with a bias (whose answer includes the
  // bias's) or with 16-bit data rounded before the weight is checked before
  // the loop.
  bool weight_checked_by_rows = false;
  // ...in the first row's output pass instead (no bias; pRMSNorm, and RMSNorm
  // rows whose x, weight and y together overflow L1), except where the output
  // may not be written first (forward.cpp, WriteFirstRowCheckingWeightInOutput).
  bool weight_checked_in_output = false;
  // Every bias element is finite (checked only where it pays: bfloat16 output
  // of several rows, whose stores then skip their NaN handling; FiniteOutputs
  // in forward.cpp). false when unchecked.
  bool bias_finite = false;
  size_t simd_index = 0;  // every kernel of the call runs this target (dispatch.hpp)
};

struct BackwardPlan : calls::BackwardCall, UnfoldedWeight {
  bool stream_output = false;  // also: prefetch the next row's inputs (backward.cpp says why not sooner)
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
