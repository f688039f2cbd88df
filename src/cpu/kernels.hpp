// The CPU kernels' internal interface. The functions here dispatch at run time
// to the best Highway target (src/cpu/forward.cpp, src/cpu/backward.cpp) or run
// the scalar wide-precision slow path (src/cpu/slow_path.cpp). Threading lives
// in src/cpu/engine.cpp; none of these start threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "src/cpu/accumulator.hpp"
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
  double coef_limit;   // gradient coefficients: 0, or 1/limit <= |coef| <= limit
  // Scales of the parameters and of the incoming gradient: every nonzero |g|,
  // and a row's sum of |gy|, within [1/limit, limit], so that inv_r * g,
  // gy * inv_r and gy * x stay normal numbers.
  double scale_limit;
};

inline FastRange fast_range(bool double_arithmetic) {
  if (double_arithmetic) {
    return {std::ldexp(1.0, 400), std::ldexp(1.0, -900), std::ldexp(1.0, -400), std::ldexp(1.0, 900),
            std::ldexp(1.0, 300)};
  }
  // With |g| and sum |gy| within 2^+-40, |dy| <= 2^80; with |x / r| <= 2^40
  // past k (and <= sqrt(k) before), dweight's terms dy * x / r stay below
  // 2^120 and their 32-row float chunks below float's 2^128.
  return {std::ldexp(1.0, 50), std::ldexp(1.0, -100), std::ldexp(1.0, -30), std::ldexp(1.0, 100),
          std::ldexp(1.0, 40)};
}

// LayerNorm's mean as an unevaluated sum hi + lo of doubles: the row's pivot
// (its first element, from which every block sums the deviations) plus the
// mean deviation, renormalized (TwoSum) so that hi is the double nearest the
// mean. The kernels subtract it as hi + lo (SplitShift), so x - mean is not
// limited by the rounding of the mean to float, or to double for double data.
struct RowMean {
  double hi = 0.0, lo = 0.0;
  // Double arithmetic only: the last correction, deviations / n, fell below
  // DBL_MIN and was rounded there, so hi + lo is not the mean (corrected_mean).
  bool inexact = false;
};

inline RowMean row_mean(double pivot, double deviation_sum, int64_t n) {
  const double d = deviation_sum / static_cast<double>(n);
  const double sum = pivot + d;
  const double d_part = sum - pivot;
  return {sum, (pivot - (sum - d_part)) + (d - d_part)};
}

// The shift the second pass really subtracts: the mean split into the
// arithmetic type as SplitShift (simd-inl.h) splits it. For float it is not
// hi + lo when the mean lies near or below float's subnormal grid.
inline RowMean arithmetic_shift(const RowMean& m, bool double_arithmetic) {
  if (double_arithmetic) return m;
  const float hi = static_cast<float>(m.hi);
  const float lo = static_cast<float>((m.hi - static_cast<double>(hi)) + m.lo);
  return {static_cast<double>(hi), static_cast<double>(lo)};
}

// The corrected two-pass result: the shift moved by deviations / n (the sum of
// x - shift over the row, which is 0 for an exact mean), and the sum of squared
// deviations from the moved mean, sum (x - m)^2 - deviations^2 / n.
// Relative to the shift actually subtracted: correcting the double mean by
// deviations measured from its float rounding moved a subnormal row's mean by
// half a subnormal step, onto the float grid, and the row then took the fast
// path with x - mean off by that much (found by the fuzzer: x = [6.9e-41, 0]).
// For double arithmetic a correction that falls below DBL_MIN is rounded on
// the subnormal grid, where no hi + lo records the rounding; the mean is then
// marked inexact. A row of [1.5e-323, 0, ..., 0] (n = 38) has the mean
// 3.9e-325, which is 0 in double, and took the fast path as if 0 were exact,
// off by 16% with eps = 4.7e-62 (found by fuzzing).
inline RowMean corrected_mean(const RowMean& m, double deviations, int64_t n, bool double_arithmetic) {
  const RowMean shift = arithmetic_shift(m, double_arithmetic);
  const double total = shift.lo * static_cast<double>(n) + deviations;
  RowMean corrected = row_mean(shift.hi, total, n);
  if (double_arithmetic) {
    const double d = total / static_cast<double>(n);
    corrected.inexact = total != 0 && std::fabs(d) < std::numeric_limits<double>::min() && d * static_cast<double>(n) != total;
  }
  return corrected;
}
// Not finite (so the row takes the wide path) where the squares or the
// correction overflowed: std::max(0.0, NaN) would have made it 0.
inline double corrected_squares(double squares, double deviations, int64_t n) {
  const double correction = deviations * (deviations / static_cast<double>(n));
  if (!std::isfinite(correction)) return std::numeric_limits<double>::quiet_NaN();
  const double corrected = squares - correction;
  return corrected > 0 ? corrected : corrected <= 0 ? 0.0 : corrected;
}

// LayerNorm in one pass: from S1 = sum (x - pivot) and S2 = sum (x - pivot)^2
// over the row, sum (x - mean)^2 = S2 - S1^2 / n. That subtraction cancels
// n d^2 (d = mean - pivot), so S2's rounding is amplified by 1 + n d^2 /
// spread. The pivot is the mean of the row's first vector (VectorPivot),
// almost always well inside the row's spread; where it is not (n d^2 above a
// quarter of the spread: amplification at most 1.25, against the two-pass
// algorithm's 1), or the spread is near underflow, or anything overflowed,
// this answers NaN and the caller takes the corrected two-pass route around
// the mean pivot + S1 / n. A second pass over the row saved: a quarter of a
// cache-resident LayerNorm call.
inline double one_pass_spread(double s1, double s2, int64_t n, bool double_arithmetic) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double cancelled = s1 * (s1 / static_cast<double>(n));
  const double spread = s2 - cancelled;
  if (!std::isfinite(s2) || !std::isfinite(cancelled) || !(cancelled <= 0.25 * spread)) return nan;
  // Far above the squares that could have underflowed (finalize_statistics' tiny_sum).
  if (!(spread >= fast_range(double_arithmetic).tiny_sum * 0x1p20 * static_cast<double>(n))) return nan;
  return spread;
}

// Backward pivots on the mean as forward saves it (in the statistics dtype),
// also when it recomputes it, and corrects it exactly from its own pass over x
// (finalize_gradient), so both give bitwise the same gradients and neither is
// limited by the stored mean's rounding.
inline RowStatistics with_saved_mean(RowStatistics st, bool double_arithmetic) {
  const double sum = st.mean + st.mean_lo;
  st.mean = double_arithmetic ? sum : static_cast<double>(static_cast<float>(sum));
  st.mean_lo = 0.0;
  return st;
}

// s = sqrt(ms) for the "outside" gradient. It is derived from the rounded
// 1/r, exactly as backward derives it from a saved 1/r, so that saved and
// recomputed statistics give bitwise the same gradients; only where eps is
// most of r (r - eps would cancel) is it taken from the sum itself, and then
// backward recomputes rather than use the saved value.
inline bool outside_s_cancels(double eps, double inv_r) { return eps * inv_r > 0.5; }
inline double outside_s(double eps, double inv_r, double exact_s) {
  return outside_s_cancels(eps, inv_r) ? exact_s : std::max(0.0, 1.0 / inv_r - eps);
}

// From a row's sum of squares over its first k elements (RMSNorm) or its sum of
// squared deviations from `mean` over n (LayerNorm). pRMSNorm's elements past k
// take no part (SPEC section 4): forward forms y_j = x_j * (1/r * g_j) from
// them, one rounding, so any value there, NaN and Inf included, gives its own
// element what IEEE arithmetic gives it. Backward checks their range itself
// (GradientSums::x_magnitude_past_k).
inline RowStatistics finalize_statistics(const NormParams& p, const RowMean& mean, double sum_squares,
                                         bool double_arithmetic) {
  const FastRange range = fast_range(double_arithmetic);
  RowStatistics st;
  st.mean = mean.hi;
  st.mean_lo = mean.lo;
  const double ms = sum_squares / static_cast<double>(p.centered ? p.n : p.k);
  const double r = p.eps_outside ? std::sqrt(ms) + p.eps : std::sqrt(ms + p.eps);
  // Rounded to the arithmetic type here, so that statistics saved by forward
  // and statistics recomputed by backward are the same numbers.
  st.inv_r = double_arithmetic ? 1.0 / r : static_cast<double>(static_cast<float>(1.0 / r));
  if (p.eps_outside) st.s = outside_s(p.eps, st.inv_r, std::sqrt(ms));
  // A sum of squares this small may hold squares that underflowed. eps hides
  // that in r when it is large enough, but the "outside" gradient divides by
  // s = sqrt(ms) itself, so such rows go to the wide path there.
  // LayerNorm likewise when its deviations are that small and the mean is not
  // exact in the arithmetic type: the mean's low part then lies below the
  // type's subnormal grid, and x - mean loses its relative accuracy (found by
  // the fuzzer: x = [3.9e-41, 0, 0]). All-equal rows (zeros) keep the fast path.
  // For double arithmetic the same happens on double's own subnormal grid, and
  // there mean.lo cannot show it: the division deviations / n rounds by up to
  // half a subnormal step that no hi + lo records (fuzzer: x = [1.47e-312, 0,
  // ..., 0], eps 1e-20). That matters only for a spread near that grid, where
  // the sum of squares is below DBL_MIN; a zero mean is exact.
  const bool exact_mean =
      mean.lo == 0.0 && !mean.inexact && (double_arithmetic ? mean.hi == 0.0 || sum_squares >= std::numeric_limits<double>::min()
                                           : static_cast<double>(static_cast<float>(mean.hi)) == mean.hi);
  const bool tiny = sum_squares < range.tiny_sum &&
                    (p.eps < range.tiny_eps || p.eps_outside || (p.centered && !exact_mean));
  st.fast = std::isfinite(sum_squares) && std::isfinite(mean.hi) && std::isfinite(mean.lo) &&
            st.inv_r <= range.inv_r_limit && st.inv_r >= 1.0 / range.inv_r_limit && !tiny;
  return st;
}

// A row's sums for the gradient (one pass over x and dy), gy = dy * g:
// `dot` = sum gy (x - pivot) (pivot 0 for RMSNorm, the stored mean for
// LayerNorm), `sum_gy` and `deviations` = sum (x - pivot) for LayerNorm, and
// `gy_magnitude` = sum |gy|, the row's gradient scale for the range check (a
// sum of squares would underflow to 0 for gradients that are not 0), and for
// pRMSNorm `x_magnitude_past_k` = sum |x| over [k, n), which must be small
// enough against r that dweight's terms dy * x / r stay in range, and, when
// dweight is asked for with a weight, `dy_magnitude` = sum |dy|: sum |gy|
// bounds dy only where g is not 0, and a zero weight with a huge dy overflowed
// the float chunk of dweight (found by the fuzzer).
struct GradientSums {
  double sum_gy = 0.0, dot = 0.0, gy_magnitude = 0.0, deviations = 0.0, x_magnitude_past_k = 0.0, dy_magnitude = 0.0;
  GradientSums& operator+=(const GradientSums& o) {
    x_magnitude_past_k += o.x_magnitude_past_k;
    dy_magnitude += o.dy_magnitude;
    sum_gy += o.sum_gy;
    dot += o.dot;
    gy_magnitude += o.gy_magnitude;
    deviations += o.deviations;
    return *this;
  }
};

// In long double, before the coefficient is rounded to double: a coefficient
// of 1.7e-325 became 0 there and passed as "0 is fine", so a float64
// LayerNorm row (n = 2, x = [-1.4e86, 3.8e117]) lost its statistic term and
// dx was gy / 2r where it is 0 (found by fuzzing).
template <typename Wide>
inline bool coefficient_in_range(Wide c, double limit) {
  return c == 0 || (std::fabs(c) >= Wide{1} / limit && std::fabs(c) <= limit);
}

// The coefficients of dx_j = a * (gy_j + shift) - (x_j - mean) * coef [j < k].
// Formed in a type wide enough that products of extreme statistics neither
// underflow nor overflow before the range check; a row whose coefficients or
// gradients fall outside the arithmetic type's comfortable range goes to the
// wide path. For double data that is long double. For float arithmetic double
// is: 1/r lies within 2^+-50 on the fast path and the sums are of float terms
// (below 2^180 in magnitude), so no product here leaves double's normal range
// (|coef| stays within 2^-400..2^330); long double's x87 code took 8% of a
// 32x256 backward.
template <typename Wide>
inline RowGradient finalize_gradient_in(const NormParams& p, const RowStatistics& st, const GradientSums& sums,
                                        bool double_arithmetic) {
  const FastRange range = fast_range(double_arithmetic);
  RowGradient g;
  const Wide inv_r = st.inv_r;
  g.a = st.inv_r;
  Wide dot = sums.dot, coef = 0;
  if (p.centered) {
    // The stored mean was a pivot: the true mean is pivot + deviations / n,
    // and sum gy (x - mean) = dot - (deviations / n) sum gy.
    const Wide n = static_cast<Wide>(p.n);
    const Wide delta = sums.deviations / n;
    g.mean_lo = static_cast<double>(delta);
    dot -= delta * sums.sum_gy;
    // dx = (1/r) (gy - mean(gy)) - (x - mean) (1/r^3) mean(gy (x - mean)): gy - mean(gy)
    // is formed first, as in the reference, so that it cancels exactly when it should.
    g.shift = static_cast<double>(-sums.sum_gy / n);
    coef = inv_r * inv_r * inv_r * dot / n;
  } else if (!p.eps_outside) {
    coef = dot * inv_r * inv_r * inv_r / static_cast<Wide>(p.k);
  } else {
    coef = st.s == 0.0 ? 0 : dot * inv_r * inv_r / (static_cast<Wide>(p.k) * st.s);
  }
  g.coef = static_cast<double>(coef);
  // 0 only when every gy is 0 (a sum of non-negative floats): dx is then 0.
  const bool gy_in_range = sums.gy_magnitude == 0.0 || (sums.gy_magnitude >= 1 / range.scale_limit &&
                                                        sums.gy_magnitude <= range.scale_limit);
  const bool past_k_in_range = sums.x_magnitude_past_k * st.inv_r <= range.scale_limit;  // false for NaN
  // What a weight within scale_limit and sum |gy| within scale_limit allow dy
  // anyway, so only rows with zero (or no) weights can fail it.
  const double dy_limit = range.scale_limit * range.scale_limit;
  const bool dy_in_range = sums.dy_magnitude == 0.0 || (sums.dy_magnitude >= 1 / dy_limit && sums.dy_magnitude <= dy_limit);
  g.fast = st.fast && past_k_in_range && dy_in_range && std::isfinite(static_cast<double>(dot)) && std::isfinite(sums.sum_gy) &&
           std::isfinite(sums.deviations) && gy_in_range && coefficient_in_range(coef, range.coef_limit) &&
           std::fabs(g.shift) <= range.coef_limit;
  return g;
}

inline RowGradient finalize_gradient(const NormParams& p, const RowStatistics& st, const GradientSums& sums,
                                     bool double_arithmetic) {
  return double_arithmetic ? finalize_gradient_in<long double>(p, st, sums, true)
                           : finalize_gradient_in<double>(p, st, sums, false);
}

// Whether every nonzero |g_i| of the weight (n values of param_dtype) lies in
// fast_range(double_arithmetic).scale_limit; NaN and infinity fail (the exact
// slow path propagates them as IEEE says). One vector pass, once per call,
// unless the forward row loop makes the check itself (weight_checked_by_rows).
bool weight_in_range(size_t simd_index, const void* weight, DType param_dtype, int64_t n, bool double_arithmetic);
// Whether n values of dtype are all finite (NaN included) and none subnormal.
bool parameters_finite(size_t simd_index, const void* values, DType dtype, int64_t n);

// ------------------------------------------------------------------ forward
// Rows [row_begin, row_end), each one whole: statistics, then the output.
void forward_rows(const ForwardPlan& plan, int64_t row_begin, int64_t row_end);

// For rows too long to give to one thread: phase 1 forms block partial sums
// (and performs the fused residual add) for the blocks [block_begin, block_end)
// of one row; `pass` 0 sums what RMSNorm needs (squares over [0,k)) or
// LayerNorm's values; pass 1 LayerNorm's squared
// deviations from `mean`. Writes one double per block.
// LayerNorm's pass 0 sums (x - pivot)^2 into `sums` and x - pivot into
// `deviations`, pivot = shift.hi (forward_row_pivot): the one-pass sums
// (one_pass_spread); pass 1 writes the squared deviations from `shift` into
// `sums` and the deviations (corrected_mean) into `deviations`. RMSNorm writes
// 0 there, and reads no block past k.
void forward_block_sums(const StatisticsSource& source, int64_t row, int64_t block_begin, int64_t block_end, int pass,
                        const RowMean& shift, double* sums, double* deviations);
// The pivot of a row's LayerNorm sums: the mean of its first vector
// (VectorPivot), after the fused residual add when there is one (computed
// without writing it, before the add).
double forward_row_pivot(const StatisticsSource& source, int64_t row);
// Phase 2: writes y[row, column_begin..column_end) from the row's statistics.
void forward_columns(const ForwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                     const RowStatistics& st);

// ------------------------------------------------------------------ backward
void backward_rows(const BackwardPlan& plan, int64_t row_begin, int64_t row_end, GradAccumulator& acc);

// Block partial sums of one row for the gradient: RMSNorm dot = sum gy x;
// LayerNorm sum gy and dot = sum gy (x - mean).
void backward_block_sums(const BackwardPlan& plan, int64_t row, int64_t block_begin, int64_t block_end,
                         double pivot, GradientSums* sums);
// Statistics of one row for backward: from the saved values when given, else
// recomputed exactly as forward computes them.
RowStatistics backward_row_statistics(const BackwardPlan& plan, int64_t row);
// Writes dx[row, column_begin..column_end) and adds the row's dweight/dbias terms
// for those columns into acc's chunk.
void backward_columns(const BackwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                      const RowStatistics& st, const RowGradient& g, GradAccumulator& acc);


// ------------------------------------------------------------------ slow path
// Scalar, in long double, for the rows the fast path hands over: non-finite
// rows, rows whose squares overflow or underflow, extreme scales. `source` is
// the row to normalize (x, or the already updated residual).
void slow_forward_row(const ForwardPlan& plan, int64_t row, const void* source, int64_t column_begin,
                      int64_t column_end);
void slow_backward_row(const BackwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                       GradAccumulator& acc);

// A row's statistics in long double: y = (x - mean) / r; s = sqrt(ms) for the
// "outside" gradient. NaN r (and mean) poisons the row.
struct WideRowStatistics {
  long double mean = 0, r = std::numeric_limits<long double>::quiet_NaN(), s = 0;
};
// Writes y[row, column_begin..column_end) (and the saved statistics when
// column_begin is 0) from given statistics: slow_forward_row's second half,
// also used by the sharded forward, whose statistics come from all shards.
void slow_forward_apply(const ForwardPlan& plan, int64_t row, const void* source, int64_t column_begin,
                        int64_t column_end, const WideRowStatistics& st);

// ------------------------------------------------------------------ slow path, sharded rows (SPEC section 9)
// sum over [0, count) of (x_c - shift)^power (power 1 or 2) of one row of
// `dtype` values, in long double: the shard sums of rows whose fast sums
// overflowed or underflowed the arithmetic type.
long double slow_row_sum(DType dtype, const void* row, int64_t count, long double shift, int power);

// A row's gradient sums in long double: dot = sum gy (x - pivot), sum_gy, and
// deviations = sum (x - pivot), over the plan's columns (gy = dy * gain).
struct WideGradientSums {
  long double dot = 0, sum_gy = 0, deviations = 0;
};
WideGradientSums slow_gradient_sums(const BackwardPlan& plan, int64_t row, long double pivot);

// dx[row, column_begin..column_end) and the row's dweight/dbias terms from the
// statistics and the all-reduced sums of the whole row (`global`): mean is the
// true mean, dot = sum gy (x - mean) and sum_gy over the global row. The
// plan's norm is the shard's (its k counts the shard's columns in the statistic).
struct WideGradient {
  long double inv_r = 0, mean = 0, s = 0, dot = 0, sum_gy = 0;
};
void slow_backward_apply(const BackwardPlan& plan, const NormParams& global, int64_t row, int64_t column_begin,
                         int64_t column_end, const WideGradient& g, GradAccumulator& acc);

// ------------------------------------------------------------------ gated and grouped (SPEC section 10)
// src/cpu/gated.cpp: whole rows, group by group; groups whose statistics or
// gradients leave the fast range go to the slow_gated_* functions.
void gated_forward_rows(const ForwardPlan& plan, const calls::Gating& gating, int64_t row_begin, int64_t row_end);
void gated_backward_rows(const BackwardPlan& plan, const calls::Gating& gating, int64_t row_begin, int64_t row_end,
                         GradAccumulator& acc);
// One group of one row in long double (src/cpu/slow_path.cpp).
void slow_gated_forward_group(const ForwardPlan& plan, const calls::Gating& gating, int64_t row, int64_t group);
void slow_gated_backward_group(const BackwardPlan& plan, const calls::Gating& gating, int64_t row, int64_t group,
                               GradAccumulator& acc);

// ------------------------------------------------------------------ misc
// Converts float values to dtype (bf16/f16 with the kernels' own rounding);
// exposed for the conversion tests.
void convert_from_float(DType dtype, const float* in, void* out, int64_t count);
// The kernels' widening loads of dtype values to float (exact), for the same tests.
void convert_to_float(DType dtype, const void* in, float* out, int64_t count);

}  // namespace rmsnorm::cpu
