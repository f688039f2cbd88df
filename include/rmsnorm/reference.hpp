// The double-precision reference: SPEC.md written out literally, one row at a
// time, with no attempt at speed. Every fast path is tested against it, and
// anyone can use it to check a result.
//
// Conventions the reference fixes (and the fast paths follow):
//  - a row whose x holds a NaN or an infinity gives NaN in every element of that
//    row's y (forward) or dx (backward), and a NaN statistic; a non-finite dy
//    likewise makes that row's dx all NaN;
//  - sums of squares are formed in long double (x86: 64-bit mantissa and a
//    15-bit exponent), so no finite float or double input overflows or
//    underflows them; everything else is double.
#pragma once

#include <cstdint>
#include <vector>

#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::reference {

// A row-major rows x n matrix of doubles (no stride: the reference is simple).
struct Matrix {
  int64_t rows = 0;
  int64_t n = 0;
  std::vector<double> values;  // rows * n
  double& at(int64_t r, int64_t c) { return values[static_cast<size_t>(r * n + c)]; }
  double at(int64_t r, int64_t c) const { return values[static_cast<size_t>(r * n + c)]; }
};

struct ForwardResult {
  Matrix y;
  std::vector<double> inv_rms;  // 1 / r per row
  std::vector<double> mean;     // per row (0 for RMSNorm)
};

// weight / bias: empty means absent. The gain is options.weight_offset +
// weight. data_dtype matters only for options.rounding = kBeforeWeight with
// 16-bit data, where (x - mean) / r is rounded to it before the gain applies;
// y itself is returned unrounded.
ForwardResult forward(const NormOptions& options, const Matrix& x, const std::vector<double>& weight,
                      const std::vector<double>& bias, DType data_dtype = DType::kFloat64);

struct BackwardResult {
  Matrix dx;
  std::vector<double> dweight;  // empty when weight was absent
  std::vector<double> dbias;
};

BackwardResult backward(const NormOptions& options, const Matrix& x, const Matrix& dy,
                        const std::vector<double>& weight);

// SPEC section 10, literally: groups of group_size (0: n) columns, silu(z)
// before or after the norm (z is ignored for Gate::kNone). A group whose
// statistic elements hold a NaN or an infinity gives NaN in all of its y.
struct GatedForwardResult {
  Matrix y;
  std::vector<double> inv_rms;  // rows x groups
};
GatedForwardResult gated_forward(const NormOptions& options, const Matrix& x, const Matrix& z, Gate gate,
                                 int64_t group_size, const std::vector<double>& weight);

struct GatedBackwardResult {
  Matrix dx, dz;
  std::vector<double> dweight;  // empty when weight was absent
};
GatedBackwardResult gated_backward(const NormOptions& options, const Matrix& x, const Matrix& z, const Matrix& dy,
                                   Gate gate, int64_t group_size, const std::vector<double>& weight);

}  // namespace rmsnorm::reference
