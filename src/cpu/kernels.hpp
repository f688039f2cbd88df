// The CPU kernels' internal interface. The functions here dispatch at run time
// to the best Highway target (src/cpu/forward.cpp, src/cpu/backward.cpp) or run
// the scalar wide-precision slow path (src/cpu/slow_path.cpp). Threading lives
// in src/cpu/engine.cpp; none of these start threads.
#pragma once

#include <cmath>
#include <cstdint>

#include "src/cpu/plan.hpp"

namespace rmsnorm::cpu {

// ------------------------------------------------------------------ finalize
// Range limits of the fast path, per arithmetic type. A row whose 1/r falls
// outside [2^-kInvRLimit, 2^kInvRLimit], whose sums are not finite, or whose
// sum of squares may have lost precision to underflow, goes to the slow path
// (wide precision, scalar). Ordinary rows never come near these limits.
struct FastRange {
  double inv_r_limit;  // fast when 2^-limit <= 1/r <= 2^limit
  double tiny_sum;     // a sum of squares below this may hold underflowed squares...
  double tiny_eps;     // ...which matters only when eps cannot hide it
  double coef_limit;   // gradient coefficients must stay well inside the type's range
};

inline FastRange fast_range(bool double_arithmetic) {
  if (double_arithmetic) return {std::ldexp(1.0, 400), std::ldexp(1.0, -900), std::ldexp(1.0, -400), std::ldexp(1.0, 900)};
  return {std::ldexp(1.0, 50), std::ldexp(1.0, -100), std::ldexp(1.0, -30), std::ldexp(1.0, 100)};
}

// The LayerNorm shift, kept in double: the kernels subtract it as hi + lo
// (SplitShift), so x - mean is not limited by the mean's float rounding. The
// saved statistic is rounded to the statistics dtype when it is stored.
inline double row_mean(double sum, int64_t n) { return sum / static_cast<double>(n); }

// Backward uses the mean as forward saves it (in the statistics dtype), also
// when it recomputes it, so that both give bitwise the same gradients.
inline RowStatistics with_saved_mean(RowStatistics st, bool double_arithmetic) {
  if (!double_arithmetic) st.mean = static_cast<double>(static_cast<float>(st.mean));
  return st;
}

// From a row's sum of squares over its first k elements (RMSNorm) or its sum of
// squared deviations from `mean` over n (LayerNorm), and whether the rest of the
// row was finite.
inline RowStatistics finalize_statistics(const NormParams& p, double mean, double sum_squares, bool rest_finite,
                                         bool double_arithmetic) {
  const FastRange range = fast_range(double_arithmetic);
  RowStatistics st;
  st.mean = mean;
  const double ms = sum_squares / static_cast<double>(p.centered ? p.n : p.k);
  st.s = std::sqrt(ms);
  const double r = p.eps_outside ? st.s + p.eps : std::sqrt(ms + p.eps);
  // Rounded to the arithmetic type here, so that statistics saved by forward
  // and statistics recomputed by backward are the same numbers.
  st.inv_r = double_arithmetic ? 1.0 / r : static_cast<double>(static_cast<float>(1.0 / r));
  st.fast = rest_finite && std::isfinite(sum_squares) && std::isfinite(mean) && st.inv_r <= range.inv_r_limit &&
            st.inv_r >= 1.0 / range.inv_r_limit && !(sum_squares < range.tiny_sum && p.eps < range.tiny_eps);
  return st;
}

// RMSNorm: `dot` = sum_i gy_i x_i. LayerNorm: `sum_gy` and `dot` = sum_i gy_i (x_i - mean).
inline RowGradient finalize_gradient(const NormParams& p, const RowStatistics& st, double sum_gy, double dot,
                                     bool double_arithmetic) {
  const FastRange range = fast_range(double_arithmetic);
  RowGradient g;
  const double inv_r = st.inv_r;
  g.a = inv_r;
  if (p.centered) {
    // dx = (1/r) (gy - mean(gy)) - (x - mean) (1/r^3) mean(gy (x - mean)): gy - mean(gy)
    // is formed first, as in the reference, so that it cancels exactly when it should.
    const double n = static_cast<double>(p.n);
    g.shift = -sum_gy / n;
    g.coef = inv_r * inv_r * inv_r * dot / n;
  } else if (!p.eps_outside) {
    g.coef = dot * inv_r * inv_r * inv_r / static_cast<double>(p.k);
  } else {
    g.coef = st.s == 0.0 ? 0.0 : dot * inv_r * inv_r / (static_cast<double>(p.k) * st.s);
  }
  g.fast = st.fast && std::isfinite(dot) && std::isfinite(sum_gy) && std::fabs(g.coef) <= range.coef_limit &&
           std::fabs(g.shift) <= range.coef_limit;
  return g;
}

// ------------------------------------------------------------------ forward
// Rows [row_begin, row_end), each one whole: statistics, then the output.
void forward_rows(const ForwardPlan& plan, int64_t row_begin, int64_t row_end);

// For rows too long to give to one thread: phase 1 forms block partial sums
// (and performs the fused residual add) for the blocks [block_begin, block_end)
// of one row; `pass` 0 sums what RMSNorm needs (squares over [0,k), and zero
// products over [k,n)) or LayerNorm's values; pass 1 LayerNorm's squared
// deviations from `mean`. Writes one double per block.
void forward_block_sums(const ForwardPlan& plan, int64_t row, int64_t block_begin, int64_t block_end, int pass,
                        double mean, double* sums, double* zero_products);
// Phase 2: writes y[row, column_begin..column_end) from the row's statistics.
void forward_columns(const ForwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                     const RowStatistics& st);

// ------------------------------------------------------------------ backward
void backward_rows(const BackwardPlan& plan, int64_t row_begin, int64_t row_end, GradAccumulator& acc);

// Block partial sums of one row for the gradient: RMSNorm dot = sum gy x;
// LayerNorm sum gy and dot = sum gy (x - mean).
void backward_block_sums(const BackwardPlan& plan, int64_t row, int64_t block_begin, int64_t block_end,
                         double mean, double* sum_gy, double* dot);
// Statistics of one row for backward: from the saved values when given, else
// recomputed exactly as forward computes them.
RowStatistics backward_row_statistics(const BackwardPlan& plan, int64_t row);
// Writes dx[row, column_begin..column_end) and adds the row's dweight/dbias terms
// for those columns into acc's chunk.
void backward_columns(const BackwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                      const RowStatistics& st, const RowGradient& g, GradAccumulator& acc);

// Adds acc's chunk into its totals over [column_begin, column_end) and clears it.
void flush_chunk(const GradAccumulator& acc, bool double_arithmetic, int64_t column_begin, int64_t column_end);

// ------------------------------------------------------------------ slow path
// Scalar, in long double, for the rows the fast path hands over: non-finite
// rows, rows whose squares overflow or underflow, extreme scales. `source` is
// the row to normalize (x, or the already updated residual).
void slow_forward_row(const ForwardPlan& plan, int64_t row, const void* source, int64_t column_begin,
                      int64_t column_end);
void slow_backward_row(const BackwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                       GradAccumulator& acc);

// ------------------------------------------------------------------ misc
// Converts float values to dtype (bf16/f16 with the kernels' own rounding);
// exposed for the conversion tests.
void convert_from_float(DType dtype, const float* in, void* out, int64_t count);

}  // namespace rmsnorm::cpu
