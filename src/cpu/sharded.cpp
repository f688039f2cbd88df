// SPEC section 9: the phases of a norm over rows split across processes. The
// sums run the same block kernels as the unsharded engine, in the arithmetic
// type, and fall back to long double for a row whose sums overflowed or may
// have lost precision to underflow, so what a shard contributes is as
// accurate as the unsharded statistic. The apply phases turn the all-reduced
// sums into the row statistics with the same finalize_* functions as the
// unsharded engine and run the same column kernels, or the wide path.
// Rows are shared among threads in contiguous ranges; each row's sums are
// added in block order, so the sums do not depend on the thread count.
#include <cmath>
#include <limits>
#include <vector>

#include "rmsnorm/scalar_types.hpp"
#include "src/cpu/dtype_dispatch.hpp"
#include "src/cpu/engine.hpp"
#include "src/cpu/engine_internal.hpp"
#include "src/cpu/kernels.hpp"

namespace rmsnorm::cpu {
namespace {

constexpr long double kNaN = std::numeric_limits<long double>::quiet_NaN();

const void* row_of(const void* base, DType dtype, int64_t row, int64_t stride) {
  return row_pointer<char>(base, row, stride * static_cast<int64_t>(dtype_size(dtype)));
}

// Runs body(row_begin, row_end) on each thread's contiguous range of rows.
template <class Body>
void for_row_ranges(int threads, int64_t rows, Body&& body) {
  if (threads == 1) return body(0, rows);
#pragma omp parallel num_threads(threads)
  {
    const int t = thread_index(), nt = thread_count_in_team();
    body(rows * t / nt, rows * (t + 1) / nt);
  }
}

// The sums a shard's row contributes, from the block kernels; `blocks` and
// `deviations` are scratch of block_count(n) doubles.
struct ShardRowSums {
  const StatisticsSource& source;
  std::vector<double> blocks, deviations;
  bool dbl;
  FastRange range;

  explicit ShardRowSums(const StatisticsSource& s)
      : source(s),
        blocks(static_cast<size_t>(block_count(s.norm.n))),
        deviations(blocks.size()),
        dbl(s.dtype == DType::kFloat64),
        range(fast_range(dbl)) {}

  const void* row(int64_t r) const { return row_of(source.x, source.dtype, r, source.x_stride); }
  int64_t block_total() const { return static_cast<int64_t>(blocks.size()); }

  // sum x^2 over the shard's columns below k.
  double squares(int64_t r) {
    if (source.norm.k == 0) return 0.0;
    forward_block_sums(source, r, 0, block_total(), 0, RowMean{}, blocks.data(), deviations.data());
    const double fast = ordered_sum(blocks.data(), block_total());
    // Squares that overflowed the arithmetic type, or a sum small enough to
    // hold squares that underflowed it: again, exactly, in long double.
    if (std::isfinite(fast) && fast >= range.tiny_sum) return fast;
    return static_cast<double>(slow_row_sum(source.dtype, row(r), source.norm.k, 0, 2));
  }

  // sum x, from the row's pivot (the mean of its first vector) as the
  // unsharded LayerNorm sums it. Pass 0 also forms the squares around the
  // pivot (into `blocks`), unused here.
  double values(int64_t r) {
    const double pivot = forward_row_pivot(source, r);
    forward_block_sums(source, r, 0, block_total(), 0, RowMean{pivot, 0}, blocks.data(), deviations.data());
    const double fast = pivot * static_cast<double>(source.norm.n) + ordered_sum(deviations.data(), block_total());
    if (std::isfinite(fast)) return fast;
    return static_cast<double>(slow_row_sum(source.dtype, row(r), source.norm.n, 0, 1));
  }

  // sum (x - m)^2 and sum (x - m), m as the kernels subtract it
  // (arithmetic_shift: float hi + lo for float arithmetic).
  void centered(int64_t r, double m, double* out) {
    const RowMean shift{m, 0.0};
    forward_block_sums(source, r, 0, block_total(), 1, shift, blocks.data(), deviations.data());
    double squares = 0.0, deviation_sum = 0.0;
    for (int64_t b = 0; b < block_total(); ++b) {  // together, in block order, as RowStatisticsOf
      squares += blocks[b];
      deviation_sum += deviations[b];
    }
    if (!std::isfinite(squares) || !std::isfinite(deviation_sum) || squares < range.tiny_sum) {
      const RowMean subtracted = arithmetic_shift(shift, dbl);
      const long double wide_shift = static_cast<long double>(subtracted.hi) + subtracted.lo;
      squares = static_cast<double>(slow_row_sum(source.dtype, row(r), source.norm.n, wide_shift, 2));
      deviation_sum = static_cast<double>(slow_row_sum(source.dtype, row(r), source.norm.n, wide_shift, 1));
    }
    out[0] = squares;
    out[1] = deviation_sum;
  }
};

// LayerNorm's mean and centered squares from the all-reduced sums: m from
// round 0, corrected by round 1's deviations from it.
struct CenteredStatistic {
  RowMean mean;
  double squares;
};

CenteredStatistic centered_statistic(const NormParams& global, double sum, const double* round1, bool dbl) {
  const RowMean m{sum / static_cast<double>(global.n), 0.0};
  return {corrected_mean(m, round1[1], global.n, dbl), corrected_squares(round1[0], round1[1], global.n)};
}

// RMSNorm's statistics in long double, for the wide path.
WideRowStatistics wide_rms_statistics(const NormParams& global, double squares) {
  if (!std::isfinite(squares)) return {kNaN, kNaN, kNaN};
  WideRowStatistics st;
  const long double ms = static_cast<long double>(squares) / static_cast<long double>(global.k);
  st.s = std::sqrt(ms);
  st.r = global.eps_outside ? st.s + global.eps : std::sqrt(ms + global.eps);
  return st;
}

// LayerNorm's in long double from the sums themselves: the mean is the shift
// the kernels subtracted plus deviations / n, which in double can round on the
// subnormal grid (a float64 row of [1.5e-323, 0, ...] has the mean 3.9e-325).
WideRowStatistics wide_centered_statistics(const NormParams& global, double sum, const double* round1, bool dbl) {
  const RowMean m{sum / static_cast<double>(global.n), 0.0};
  if (!std::isfinite(m.hi) || !std::isfinite(round1[0]) || !std::isfinite(round1[1])) return {kNaN, kNaN, kNaN};
  const RowMean shift = arithmetic_shift(m, dbl);
  const long double n = static_cast<long double>(global.n);
  const long double deviations = round1[1];
  const long double squares = std::max(0.0L, static_cast<long double>(round1[0]) - deviations * deviations / n);
  WideRowStatistics st;
  st.mean = static_cast<long double>(shift.hi) + shift.lo + deviations / n;
  st.s = std::sqrt(squares / n);
  st.r = std::sqrt(squares / n + global.eps);
  return st;
}

// The statistics backward reads from forward's saved values. For eps
// "outside", s = sqrt(ms) comes from r - eps, or where that cancels from the
// all-reduced squares.
RowStatistics saved_statistics(const BackwardPlan& plan, const NormParams& global, int64_t row, double squares) {
  const DType stats = statistics_dtype(plan.dtype);
  const bool dbl = plan.dtype == DType::kFloat64;
  RowStatistics st;
  st.inv_r = static_cast<double>(load_element(stats, plan.saved_inv_rms, row));
  st.mean = global.centered ? static_cast<double>(load_element(stats, plan.saved_mean, row)) : 0.0;
  if (global.eps_outside && !global.centered) {
    st.s = outside_s(global.eps, st.inv_r, std::sqrt(squares / static_cast<double>(global.k)));
  }
  const double limit = fast_range(dbl).inv_r_limit;
  st.fast = std::isfinite(st.mean) && st.inv_r <= limit && st.inv_r >= 1.0 / limit && std::isfinite(st.s);
  return st;
}

// A row's gradient sums over the shard's columns, from the block kernels.
GradientSums fast_gradient_sums(const BackwardPlan& plan, int64_t row, double pivot, std::vector<GradientSums>& blocks) {
  backward_block_sums(plan, row, 0, static_cast<int64_t>(blocks.size()), pivot, blocks.data());
  GradientSums total;
  for (const GradientSums& b : blocks) total += b;  // block order
  return total;
}

}  // namespace

void run_shard_forward_sums(const calls::ForwardCall& call, const NormParams& global, int round,
                            const double* reduced_round0, double* sums, int threads) {
  const ForwardPlan plan = forward_plan_for(call);
  const StatisticsSource source = statistics_source(plan);
  for_row_ranges(threads, call.rows, [&](int64_t begin, int64_t end) {
    ShardRowSums row_sums(source);
    for (int64_t row = begin; row < end; ++row) {
      double* out = sums + row * kShardSumsPerRow;
      out[0] = out[1] = out[2] = 0.0;
      if (!global.centered) {
        out[0] = row_sums.squares(row);
      } else if (round == 0) {
        out[0] = row_sums.values(row);
      } else {
        const double m = reduced_round0[row * kShardSumsPerRow] / static_cast<double>(global.n);
        if (std::isfinite(m)) {
          row_sums.centered(row, m, out);
        } else {
          out[0] = out[1] = m;  // the row is poisoned already; keep it so
        }
      }
    }
  });
}

void run_shard_forward_apply(const calls::ForwardCall& call, const NormParams& global, const double* reduced_round0,
                             const double* reduced_round1, int threads) {
  const ForwardPlan plan = forward_plan_for(call);
  const bool dbl = plan.dtype == DType::kFloat64;
  for_row_ranges(threads, call.rows, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const double sum = reduced_round0[row * kShardSumsPerRow];  // of squares (RMSNorm) or of x (LayerNorm)
      const double* round1 = global.centered ? reduced_round1 + row * kShardSumsPerRow : nullptr;
      CenteredStatistic c{RowMean{}, sum};
      if (global.centered) c = centered_statistic(global, sum, round1, dbl);
      const RowStatistics st = finalize_statistics(global, c.mean, c.squares, dbl);
      if (st.fast && plan.weight_in_range) {
        forward_columns(plan, row, 0, call.norm.n, st);
        continue;
      }
      // The wide path's statistics, formed only for the rows that take it.
      const WideRowStatistics wide =
          global.centered ? wide_centered_statistics(global, sum, round1, dbl) : wide_rms_statistics(global, sum);
      slow_forward_apply(plan, row, row_of(plan.x, plan.dtype, row, plan.x_stride), 0, call.norm.n, wide);
    }
  });
}

void run_shard_backward_sums(const calls::BackwardCall& call, const NormParams& global, double* sums, int threads) {
  const BackwardPlan plan = backward_plan_for(call);
  const StatisticsSource source = statistics_source(plan);
  const bool dbl = plan.dtype == DType::kFloat64;
  const FastRange range = fast_range(dbl);
  for_row_ranges(threads, call.rows, [&](int64_t begin, int64_t end) {
    ShardRowSums row_sums(source);
    std::vector<GradientSums> blocks(static_cast<size_t>(block_count(call.norm.n)));
    for (int64_t row = begin; row < end; ++row) {
      double* out = sums + row * kShardSumsPerRow;
      out[0] = out[1] = out[2] = 0.0;
      const RowStatistics st = saved_statistics(plan, global, row, 0.0);
      const GradientSums fast = fast_gradient_sums(plan, row, st.mean, blocks);
      // gy x formed in the arithmetic type: overflowed, or (with 1/r or gy
      // outside the fast range) possibly underflowed; then in long double.
      const bool in_range = st.fast && std::isfinite(fast.dot) && std::isfinite(fast.sum_gy) &&
                            std::isfinite(fast.deviations) &&
                            (fast.gy_magnitude == 0.0 || (fast.gy_magnitude >= 1 / range.scale_limit &&
                                                          fast.gy_magnitude <= range.scale_limit));
      double dot = fast.dot, sum_gy = fast.sum_gy, deviations = fast.deviations;
      if (!in_range) {
        const WideGradientSums wide = slow_gradient_sums(plan, row, st.mean);
        dot = static_cast<double>(wide.dot);
        sum_gy = static_cast<double>(wide.sum_gy);
        deviations = static_cast<double>(wide.deviations);
      }
      out[0] = dot;
      if (global.centered) {
        out[1] = sum_gy;
        out[2] = deviations;
      } else if (global.eps_outside) {
        out[1] = row_sums.squares(row);
      }
    }
  });
}

void run_shard_backward_apply(const calls::BackwardCall& call, const NormParams& global, const double* reduced,
                              int threads, const Vector& dweight, const Vector& dbias) {
  const BackwardPlan plan = backward_plan_for(call);
  const int64_t n = call.norm.n;
  const bool dbl = plan.dtype == DType::kFloat64;
  const bool accumulate = plan.want_dweight || plan.want_dbias;
  const Accumulators accumulators(n, dbl, threads, dweight, dbias);
  for_row_ranges(threads, call.rows, [&](int64_t begin, int64_t end) {
    GradAccumulator acc = accumulators.at(thread_index());
    std::vector<GradientSums> blocks(static_cast<size_t>(block_count(n)));
    for (int64_t row = begin; row < end; ++row) {
      const double* r = reduced + row * kShardSumsPerRow;
      const RowStatistics st = saved_statistics(plan, global, row, r[1]);
      // The shard's own sums give the range checks of its columns; the
      // statistic's sums are the global ones.
      GradientSums sums = fast_gradient_sums(plan, row, st.mean, blocks);
      sums.dot = r[0];
      sums.sum_gy = global.centered ? r[1] : 0.0;
      sums.deviations = global.centered ? r[2] : 0.0;
      const RowGradient g = finalize_gradient(global, st, sums, dbl);
      if (st.fast && g.fast && plan.weight_in_range) {
        backward_columns(plan, row, 0, n, st, g, acc);
      } else {
        WideGradient wide;
        wide.inv_r = st.inv_r;
        wide.s = st.s;
        wide.sum_gy = sums.sum_gy;
        if (global.centered) {
          // The saved mean was the pivot: the true mean is pivot + deviations / n.
          const long double delta = static_cast<long double>(sums.deviations) / global.n;
          wide.mean = st.mean + delta;
          wide.dot = sums.dot - delta * sums.sum_gy;
        } else {
          wide.dot = sums.dot;
        }
        slow_backward_apply(plan, global, row, 0, n, wide, acc);
      }
      if (accumulate && ++acc.rows_in_chunk == kRowsPerChunk) {
        flush_chunk(acc, dbl, 0, n);
        acc.rows_in_chunk = 0;
      }
    }
  });
  accumulators.write(dweight, dbias);  // flushes each thread's last rows
}

}  // namespace rmsnorm::cpu
