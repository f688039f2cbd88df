// What one call asks for, after validation, in any backend's terms: the norm,
// plain pointers, strides and flags. The front ends (src/api/) build these;
// the CPU engine (src/cpu/plan.hpp) and the CUDA launcher (src/cuda/) each add
// what only they need. Nothing here depends on a device or on the CPU's caches.
#pragma once

#include <cstdint>

#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::calls {

struct NormParams {
  bool centered = false;     // LayerNorm: subtract the mean
  bool eps_outside = false;  // r = sqrt(ms) + eps
  double eps = 0.0;
  int64_t n = 0;
  int64_t k = 0;  // elements that estimate the statistic (n unless pRMSNorm)
};

struct ForwardCall {
  NormParams norm;
  int64_t rows = 0;
  DType dtype = DType::kFloat32;        // x, y, residual
  DType param_dtype = DType::kFloat32;  // weight, bias
  const void* x = nullptr;
  int64_t x_stride = 0;      // elements
  void* residual = nullptr;  // fused add: residual += x, then normalize residual
  int64_t residual_stride = 0;
  void* y = nullptr;
  int64_t y_stride = 0;
  const void* weight = nullptr;
  const void* bias = nullptr;
  // The gain is weight_offset + g (SPEC section 7).
  double weight_offset = 0.0;
  // 16-bit data, Rounding::kBeforeWeight: (x - mean) / r is rounded to the
  // data's dtype before the weight and bias apply. Always false for float32
  // and float64 data.
  bool round_before_weight = false;
  void* saved_inv_rms = nullptr;  // statistics_dtype(dtype)
  void* saved_mean = nullptr;
};

struct BackwardCall {
  NormParams norm;
  int64_t rows = 0;
  DType dtype = DType::kFloat32;        // x, dy, dx
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
  double weight_offset = 0.0;  // the gradient's gain is weight_offset + g
  const void* saved_inv_rms = nullptr;
  const void* saved_mean = nullptr;
  bool want_dweight = false;
  bool want_dbias = false;
};

// Gated and grouped RMSNorm (SPEC section 10), beside a ForwardCall or
// BackwardCall whose norm is the whole row's (n, k = n).
struct Gating {
  int64_t group_size = 0;  // m, dividing norm.n
  Gate gate = Gate::kNone;
  const void* z = nullptr;  // the gate, the call's dtype
  int64_t z_stride = 0;
  void* dz = nullptr;  // backward: the gate's gradient
  int64_t dz_stride = 0;
};

}  // namespace rmsnorm::calls
