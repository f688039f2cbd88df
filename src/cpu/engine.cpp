// How work is shared among threads. Two shapes of work:
//  - many rows: each thread takes a contiguous range of whole rows (ggml's
//    ith-of-nth split), and, in backward, sums dweight/dbias privately; the
//    private sums are added in thread order at the end;
//  - fewer rows than threads, rows of at least two blocks: the block partial
//    sums of every row are shared among threads, then the columns are.
// Either way every row statistic is the same sum of the same blocks in the same
// order, so forward output does not depend on the thread count.
#include "src/cpu/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "rmsnorm/scalar_types.hpp"
#include "src/cpu/cache_sizes.hpp"
#include "src/cpu/dispatch.hpp"
#include "src/cpu/engine_internal.hpp"
#include "src/cpu/kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rmsnorm::cpu {

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int thread_count_in_team() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

namespace {

// Below this much work per thread, starting a thread costs more than it
// saves: whole rows per thread pay off from about 4096 elements and 4 rows
// (64x512 float32 forward, 2 threads: 5.7 -> 3.8 us; 32x256: 2.1 -> 1.9 us;
// but 3x4096 backward with dweight took 4.7 us on one thread and 7.8 us on
// two, each thread clearing, flushing and merging its own n-long dweight
// sums), sharing the blocks of fewer rows than threads (split_rows) from
// 32768 elements (a 1x8192 call took 1.6 us on one thread, 2.6 us split over
// two).
constexpr int64_t kMinElementsPerRowThread = 4096;
constexpr int64_t kMinRowsPerThread = 4;
constexpr int64_t kMinElementsPerSplitThread = 32768;

// Columns [begin, end) of thread t of nt, in multiples of 64 elements so that
// two threads never write the same cache line.
std::pair<int64_t, int64_t> column_range(int64_t n, int t, int nt) {
  const int64_t per = ((n + nt - 1) / nt + 63) / 64 * 64;
  return {std::min(n, per * t), std::min(n, per * (t + 1))};
}

bool split_rows(int64_t rows, int64_t n, int threads) { return threads > 1 && rows < threads && block_count(n) >= 2; }

// Fills sums[row * nb + b] for every row and block, in parallel.
template <class BlockFn>
void parallel_blocks(int threads, int64_t rows, int64_t nb, BlockFn&& fn) {
  const int64_t total = rows * nb;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < total; ++i) fn(i / nb, i % nb);
}

// The statistics of every row from block sums shared among threads; the same
// sums in the same order as RowStatisticsOf (src/cpu/statistics-inl.h).
std::vector<RowStatistics> split_statistics(const StatisticsSource& plan, int threads) {
  const int64_t rows = plan.rows, n = plan.norm.n, nb = block_count(n);
  const bool dbl = plan.dtype == DType::kFloat64;
  const bool centered = plan.norm.centered;
  std::vector<double> sums(static_cast<size_t>(rows * nb)), deviations(sums.size());
  // LayerNorm's pass 0 sums around each row's pivot, known before any block's
  // residual add has written the row.
  std::vector<double> pivots(static_cast<size_t>(rows));
  if (centered) {
    for (int64_t row = 0; row < rows; ++row) pivots[row] = forward_row_pivot(plan, row);
  }
  parallel_blocks(threads, rows, nb, [&](int64_t row, int64_t b) {
    forward_block_sums(plan, row, b, b + 1, 0, RowMean{pivots[row], 0.0}, &sums[row * nb], &deviations[row * nb]);
  });
  std::vector<RowStatistics> stats(static_cast<size_t>(rows));
  if (!centered) {
    for (int64_t row = 0; row < rows; ++row) {
      stats[row] = finalize_statistics(plan.norm, RowMean{}, ordered_sum(&sums[row * nb], nb), dbl);
    }
    return stats;
  }
  // As RowStatisticsOf (src/cpu/statistics-inl.h): the one-pass statistics,
  // else a second pass around the mean, the same sums in the same order.
  auto finite = [](const RowMean& m) { return std::isfinite(m.hi) && std::isfinite(m.lo); };
  // A row's block squares and deviations, added together in block order, as RowStatisticsOf.
  auto row_totals = [&](int64_t row, double& squares, double& deviation_sum) {
    squares = deviation_sum = 0.0;
    for (int64_t b = 0; b < nb; ++b) {
      squares += sums[row * nb + b];
      deviation_sum += deviations[row * nb + b];
    }
  };
  std::vector<RowMean> means(static_cast<size_t>(rows));
  std::vector<char> second_pass(static_cast<size_t>(rows), 0);
  for (int64_t row = 0; row < rows; ++row) {
    double squares, deviation_sum;
    row_totals(row, squares, deviation_sum);
    means[row] = row_mean(pivots[row], deviation_sum, n);
    const double spread = one_pass_spread(deviation_sum, squares, n, dbl);
    if (!std::isnan(spread)) {
      stats[row] = finalize_statistics(plan.norm, means[row], spread, dbl);
    } else if (!finite(means[row])) {
      stats[row] = finalize_statistics(plan.norm, means[row], means[row].hi, dbl);
    } else {
      second_pass[row] = 1;
    }
  }
  parallel_blocks(threads, rows, nb, [&](int64_t row, int64_t b) {
    if (second_pass[row]) forward_block_sums(plan, row, b, b + 1, 1, means[row], &sums[row * nb], &deviations[row * nb]);
  });
  for (int64_t row = 0; row < rows; ++row) {
    if (!second_pass[row]) continue;
    double squares, deviation_sum;
    row_totals(row, squares, deviation_sum);
    stats[row] = finalize_statistics(plan.norm, corrected_mean(means[row], deviation_sum, n, dbl),
                                     corrected_squares(squares, deviation_sum, n), dbl);
  }
  return stats;
}

const void* forward_source_row(const ForwardPlan& plan, int64_t row) {
  const int64_t esize = static_cast<int64_t>(dtype_size(plan.dtype));
  if (plan.residual) return static_cast<const char*>(plan.residual) + row * plan.residual_stride * esize;
  return static_cast<const char*>(plan.x) + row * plan.x_stride * esize;
}

// Scratch memory reused across calls by the calling thread, so that small
// repeated calls do not pay for allocation.
std::vector<unsigned char>& workspace(size_t bytes) {
  thread_local std::vector<unsigned char> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer;
}

// A nonzero weight offset folded into the parameters (SPEC section 7): the
// gain offset + g formed once per call in the arithmetic type (float, or double
// for float64 data), and the bias converted beside it, since the kernels read
// weight and bias as one type. n elements per call, against rows x n for the
// norm; the kernels never see an offset, so it costs nothing when it is 0.
// 16-bit parameters of calls with at least kRowsPayingForAParameterPass rows
// go the same way with no offset: widened to float once per call (exactly),
// every row's passes load float parameters instead of widening them again per
// vector (a shuffle and a shift each on AVX2 and AVX-512). The kernels are
// those of float32 parameters with 16-bit data; the results are the same bits.
// (A pass over n parameters costs about what the rows save on a few rows; one
// row does not pay for it.)
inline constexpr int64_t kRowsPayingForAParameterPass = 4;

struct Parameters {
  const void* weight;
  const void* bias;
  DType dtype;
};

Parameters with_offset_folded(DType data_dtype, DType param_dtype, const void* weight, const void* bias,
                              double offset, int64_t n, int64_t rows) {
  const bool sixteen_bit = param_dtype == DType::kBFloat16 || param_dtype == DType::kFloat16;
  const bool widen = sixteen_bit && rows >= kRowsPayingForAParameterPass;
  if (!weight || (offset == 0 && !widen)) return {weight, bias, param_dtype};
  thread_local std::vector<unsigned char> buffer;  // not workspace(): backward uses that at the same time
  if (data_dtype == DType::kFloat64) {
    buffer.resize(static_cast<size_t>(2 * n) * sizeof(double));
    auto* gain = reinterpret_cast<double*>(buffer.data());
    auto widen = [&](const void* v, double* out) {
      for (int64_t c = 0; c < n; ++c) {
        out[c] = param_dtype == DType::kFloat64 ? static_cast<const double*>(v)[c]
                                                : static_cast<double>(static_cast<const float*>(v)[c]);
      }
    };
    widen(weight, gain);
    for (int64_t c = 0; c < n; ++c) gain[c] += offset;
    if (bias) widen(bias, gain + n);
    return {gain, bias ? gain + n : nullptr, DType::kFloat64};
  }
  buffer.resize(static_cast<size_t>(2 * n) * sizeof(float));
  auto* gain = reinterpret_cast<float*>(buffer.data());
  convert_to_float(param_dtype, weight, gain, n);
  const auto offset_value = static_cast<float>(offset);
  // (Not with offset 0: -0 + 0 is +0, and a zero weight's sign reaches y.)
  if (offset != 0) {
    for (int64_t c = 0; c < n; ++c) gain[c] += offset_value;  // in float32, as Gemma's 1.0 + weight.float()
  }
  if (bias) convert_to_float(param_dtype, bias, gain + n, n);
  return {gain, bias ? gain + n : nullptr, DType::kFloat32};
}

// values rounded once into out: what store_element does for a double (which
// is its own round_to_odd), in a loop per dtype; store_element's per-element
// switch and long double took microseconds on a 4096-column dweight.
void write_vector(const Vector& out, const double* values, int64_t n) {
  switch (out.dtype) {
    case DType::kFloat32:
      for (int64_t c = 0; c < n; ++c) static_cast<float*>(out.data)[c] = static_cast<float>(values[c]);
      return;
    case DType::kBFloat16:
      for (int64_t c = 0; c < n; ++c) static_cast<uint16_t*>(out.data)[c] = double_to_bfloat16(values[c]);
      return;
    case DType::kFloat16:
      for (int64_t c = 0; c < n; ++c) static_cast<uint16_t*>(out.data)[c] = double_to_float16(values[c]);
      return;
    case DType::kFloat64:
      std::memcpy(out.data, values, static_cast<size_t>(n) * sizeof(double));
      return;
  }
}

// A chunk (float, or double for float64 data) rounded once into out. A float
// rounded to bfloat16 or float16 is the double of the same value rounded, so
// this equals write_vector of the chunk's exact double total.
void write_chunk(const Vector& out, const void* chunk, bool double_arithmetic, int64_t n) {
  if (double_arithmetic) return write_vector(out, static_cast<const double*>(chunk), n);
  if (out.dtype == DType::kFloat32) {
    std::memcpy(out.data, chunk, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  convert_from_float(out.dtype, static_cast<const float*>(chunk), out.data, n);
}

}  // namespace

int64_t last_level_cache_bytes() { return cache_sizes().last_level_bytes; }

namespace {
std::atomic<int64_t> stream_threshold_override{-1};
}  // namespace

int64_t stream_threshold_bytes() {
  const int64_t forced = stream_threshold_override.load(std::memory_order_relaxed);
  if (forced >= 0) return forced;
  static const int64_t bytes = [] {
    const char* env = std::getenv("RMSNORM_STREAM_THRESHOLD_BYTES");
    return env ? static_cast<int64_t>(std::strtoll(env, nullptr, 10)) : last_level_cache_bytes();
  }();
  return bytes;
}

void set_stream_threshold_override(int64_t bytes) { stream_threshold_override.store(bytes, std::memory_order_relaxed); }

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int threads_for(int requested, int64_t rows, int64_t n) {
  const int wanted = requested > 0 ? requested : max_threads();
  const int64_t elements = rows * n;
  const int64_t whole_rows = std::min(rows / kMinRowsPerThread, elements / kMinElementsPerRowThread);
  const int64_t by_work = std::max<int64_t>({1, whole_rows, elements / kMinElementsPerSplitThread});
  return static_cast<int>(std::min<int64_t>(wanted, by_work));
}

namespace {

// rows_check_weight (forward): the call runs on the row path, whose loop can
// check the weight in its first row's statistics pass (ForwardPlan).
template <class Plan, class Call>
Plan plan_for(const Call& call, const void* bias, bool rows_check_weight = false) {
  Plan plan;
  static_cast<Call&>(plan) = call;
  const int64_t rows = call.rows, n = call.norm.n;
  // In double (a threshold, not an exact size; long double's x87 code was a
  // measurable part of a one-row call): rows * n * size can exceed int64.
  const double matrix_bytes = static_cast<double>(rows) * static_cast<double>(n) * static_cast<double>(dtype_size(plan.dtype));
  plan.stream_output = matrix_bytes > stream_threshold_bytes();
  if constexpr (std::is_same_v<Plan, ForwardPlan>) {
    plan.prefetch_rows = plan.stream_output || matrix_bytes > cache_sizes().core_bytes;
  }
  plan.simd_index = dispatch_index();
  if (rows == 0) return plan;
  plan.unfolded_weight = plan.weight;
  plan.unfolded_dtype = plan.param_dtype;
  const Parameters parameters = with_offset_folded(plan.dtype, plan.param_dtype, plan.weight, bias, plan.weight_offset, n, rows);
  plan.weight = parameters.weight;
  plan.param_dtype = parameters.dtype;
  if constexpr (std::is_same_v<Plan, ForwardPlan>) plan.bias = parameters.bias;
  bool checked_by_rows = false;
  if constexpr (std::is_same_v<Plan, ForwardPlan>) {
    // pRMSNorm (k < n) can be checked only in the output pass, which is not
    // built with a bias (whose own check the answer includes, below) or for
    // 16-bit data rounded before the weight (forward.cpp).
    const bool sixteen_bit = plan.dtype == DType::kBFloat16 || plan.dtype == DType::kFloat16;
    const bool output_pass_checks = !plan.bias && !(plan.round_before_weight && sixteen_bit);
    checked_by_rows = rows_check_weight && plan.weight && !call.norm.centered && plan.dtype != DType::kFloat64 &&
                      (call.norm.k == n || output_pass_checks);
    plan.weight_checked_by_rows = checked_by_rows;
    const int64_t row_bytes = n * static_cast<int64_t>(2 * dtype_size(plan.dtype) + dtype_size(plan.param_dtype));
    plan.weight_checked_in_output =
        checked_by_rows && output_pass_checks && (call.norm.k < n || row_bytes > cache_sizes().l1_data_bytes);
    // Until the row loop's check says otherwise: a loop that did not make it
    // would send every row to the exact slow path, not skip the check.
    if (checked_by_rows) plan.weight_in_range = false;
  }
  if (plan.weight && !checked_by_rows) {
    plan.weight_in_range = weight_in_range(plan.simd_index, plan.weight, plan.param_dtype, n, plan.dtype == DType::kFloat64);
  }
  if constexpr (std::is_same_v<Plan, ForwardPlan>) {
    // pRMSNorm's elements past k are not bounded by r: x (1/r g) can overflow
    // there, and without FMA (SSE4, the portable target) -inf + an infinite
    // bias gave NaN where the exact sum is +inf (found by fuzzing). An
    // infinite bias sends such calls to the wide path. With a finite one the
    // forward kernels check, on those targets, whether a product past k
    // overflows, and apply such columns in the wide path (ApplyNeedsWidePath).
    // A bfloat16 output's store skips its NaN check where the bias is
    // finite (FiniteOutputs), for a pass over the bias.
    const bool check_bias =
        plan.bias && (call.norm.k < n || (plan.dtype == DType::kBFloat16 && rows >= kRowsPayingForAParameterPass));
    if (check_bias) plan.bias_finite = parameters_finite(plan.simd_index, plan.bias, plan.param_dtype, n);
    if (plan.bias && call.norm.k < n) plan.weight_in_range = plan.weight_in_range && plan.bias_finite;
  }
  return plan;
}

// The chunks are skewed off 4 KiB boundaries (kSkew) so that they do not
// alias the x/dy/dx rows the kernel streams beside them (4K aliasing
// stalled the accumulating loads).
constexpr size_t kSkew = 320;

}  // namespace

ForwardPlan forward_plan_for(const calls::ForwardCall& call, bool rows_check_weight) {
  return plan_for<ForwardPlan>(call, call.bias, rows_check_weight);
}
BackwardPlan backward_plan_for(const calls::BackwardCall& call) { return plan_for<BackwardPlan>(call, nullptr); }

Accumulators::Accumulators(int64_t n, bool double_arithmetic, int count, const Vector& dweight, const Vector& dbias,
                           Sharing sharing)
    : n_(n),
      arith_size_(double_arithmetic ? sizeof(double) : sizeof(float)),
      count_(count),
      per_accumulator_(dweight.data || dbias.data
                           ? static_cast<size_t>(n) * (2 * arith_size_ + 2 * sizeof(double)) + 3 * kSkew
                           : 0),
      want_dweight_(dweight.data != nullptr),
      want_dbias_(dbias.data != nullptr),
      sharing_(sharing) {
  const DType chunk_dtype = double_arithmetic ? DType::kFloat64 : DType::kFloat32;
  if (sharing_ == kOnePerThread && count_ == 1) {
    if (dweight.data && dweight.dtype == chunk_dtype) direct_dweight_ = dweight.data;
    if (dbias.data && dbias.dtype == chunk_dtype) direct_dbias_ = dbias.data;
  }
  std::vector<unsigned char>& scratch = workspace(per_accumulator_ * count_ + static_cast<size_t>(count_));
  base_ = scratch.data();
  totals_zeroed_ = reinterpret_cast<bool*>(base_ + per_accumulator_ * count_);
  // Only the wanted chunks: a one-row call with dweight spent more time
  // clearing scratch than computing. The totals wait for their first use.
  const size_t chunk = static_cast<size_t>(n_) * arith_size_;
  for (int i = 0; i < count_ && per_accumulator_ > 0; ++i) {
    totals_zeroed_[i] = false;
    const GradAccumulator acc = at(i);
    if (want_dweight_) std::memset(acc.chunk_dweight, 0, chunk);
    if (want_dbias_) std::memset(acc.chunk_dbias, 0, chunk);
    if (sharing_ == kSharedByColumns) ensure_totals(acc);  // threads would race to zero them
  }
}

GradAccumulator Accumulators::at(int i) const {
  GradAccumulator acc;
  if (per_accumulator_ == 0) return acc;
  unsigned char* base = base_ + per_accumulator_ * i;
  acc.total_dweight = reinterpret_cast<double*>(base);
  acc.total_dbias = acc.total_dweight + n_;
  acc.chunk_dweight = reinterpret_cast<unsigned char*>(acc.total_dbias + n_) + kSkew;
  acc.chunk_dbias = static_cast<unsigned char*>(acc.chunk_dweight) + n_ * arith_size_ + kSkew;
  if (direct_dweight_) acc.chunk_dweight = direct_dweight_;
  if (direct_dbias_) acc.chunk_dbias = direct_dbias_;
  acc.want_dweight = want_dweight_;
  acc.want_dbias = want_dbias_;
  acc.totals_zeroed = totals_zeroed_ + i;
  acc.n = n_;
  return acc;
}

void Accumulators::write(const Vector& dweight, const Vector& dbias) const {
  if (per_accumulator_ == 0) return;
  const bool dbl = arith_size_ == sizeof(double);
  const GradAccumulator first = at(0);
  if (sharing_ == kOnePerThread && count_ == 1 && !*first.totals_zeroed) {
    if (want_dweight_ && dweight.data && !direct_dweight_) write_chunk(dweight, first.chunk_dweight, dbl, n_);
    if (want_dbias_ && dbias.data && !direct_dbias_) write_chunk(dbias, first.chunk_dbias, dbl, n_);
    return;
  }
  if (sharing_ == kOnePerThread) {
    for (int i = 0; i < count_; ++i) flush_chunk(at(i), dbl, 0, n_);
  }
  // Thread order, fixed: deterministic for a given thread count.
  auto add_in_order = [&](double* __restrict__ into, auto total_of) {
    for (int i = 1; i < count_; ++i) {
      const double* __restrict__ other = total_of(at(i));
      for (int64_t c = 0; c < n_; ++c) into[c] += other[c];
    }
  };
  if (want_dweight_ && dweight.data) {
    add_in_order(first.total_dweight, [](const GradAccumulator& a) { return a.total_dweight; });
    write_vector(dweight, first.total_dweight, n_);
  }
  if (want_dbias_ && dbias.data) {
    add_in_order(first.total_dbias, [](const GradAccumulator& a) { return a.total_dbias; });
    write_vector(dbias, first.total_dbias, n_);
  }
}

void run_forward(const calls::ForwardCall& call, int threads) {
  const int64_t rows = call.rows, n = call.norm.n;
  if (rows == 0) return;
  const bool split = split_rows(rows, n, threads);
  const ForwardPlan plan = forward_plan_for(call, /*rows_check_weight=*/!split);
  if (!split) {
    if (threads == 1) return forward_rows(plan, 0, rows);
#pragma omp parallel num_threads(threads)
    {
      const int t = thread_index(), nt = thread_count_in_team();
      forward_rows(plan, rows * t / nt, rows * (t + 1) / nt);
    }
    return;
  }
  std::vector<RowStatistics> stats = split_statistics(statistics_source(plan), threads);
  for (RowStatistics& st : stats) st.fast = st.fast && plan.weight_in_range;
  for (int64_t row = 0; row < rows; ++row) {
    if (!stats[row].fast) slow_forward_row(plan, row, forward_source_row(plan, row), 0, n);
  }
#pragma omp parallel num_threads(threads)
  {
    const auto [c0, c1] = column_range(n, thread_index(), thread_count_in_team());
    for (int64_t row = 0; row < rows && c0 < c1; ++row) {
      if (stats[row].fast) forward_columns(plan, row, c0, c1, stats[row]);
    }
  }
}

void run_backward(const calls::BackwardCall& call, int threads, const Vector& dweight, const Vector& dbias) {
  const int64_t rows = call.rows, n = call.norm.n;
  const BackwardPlan plan = backward_plan_for(call);
  const bool accumulate = plan.want_dweight || plan.want_dbias;
  const bool dbl = plan.dtype == DType::kFloat64;
  const bool split = split_rows(rows, n, threads);
  // One accumulator per thread (row split) or one shared by column (block split).
  const Accumulators accumulators(n, dbl, split ? 1 : threads, dweight, dbias,
                                  split ? Accumulators::kSharedByColumns : Accumulators::kOnePerThread);
  auto make_accumulator = [&](int i) { return accumulators.at(i); };

  if (rows > 0 && !split) {
    if (threads == 1) {
      GradAccumulator acc = make_accumulator(0);
      backward_rows(plan, 0, rows, acc);  // its last rows stay in the chunk: accumulators.write flushes them
    } else {
#pragma omp parallel num_threads(threads)
      {
        const int t = thread_index(), nt = thread_count_in_team();
        GradAccumulator acc = make_accumulator(t);
        backward_rows(plan, rows * t / nt, rows * (t + 1) / nt, acc);
      }
    }
  } else if (rows > 0) {
    const int64_t nb = block_count(n);
    std::vector<RowStatistics> stats;
    if (plan.saved_inv_rms && (!plan.norm.centered || plan.saved_mean)) {
      for (int64_t row = 0; row < rows; ++row) stats.push_back(backward_row_statistics(plan, row));
    } else {
      stats = split_statistics(statistics_source(plan), threads);
      for (RowStatistics& st : stats) st = with_saved_mean(st, dbl);
    }
    std::vector<GradientSums> sums(static_cast<size_t>(rows * nb));
    parallel_blocks(threads, rows, nb, [&](int64_t row, int64_t b) {
      if (stats[row].fast) backward_block_sums(plan, row, b, b + 1, stats[row].mean, &sums[row * nb]);
    });
    std::vector<RowGradient> grads(static_cast<size_t>(rows));
    for (int64_t row = 0; row < rows; ++row) {
      if (!stats[row].fast) continue;
      GradientSums total;
      for (int64_t b = 0; b < nb; ++b) total += sums[row * nb + b];  // block order, as backward_rows adds them
      grads[row] = finalize_gradient(plan.norm, stats[row], total, dbl);
    }
#pragma omp parallel num_threads(threads)
    {
      const auto [c0, c1] = column_range(n, thread_index(), thread_count_in_team());
      GradAccumulator acc = make_accumulator(0);  // shared buffers; this thread owns columns [c0, c1)
      for (int64_t row = 0; row < rows && c0 < c1; ++row) {
        if (stats[row].fast && grads[row].fast && plan.weight_in_range) {
          backward_columns(plan, row, c0, c1, stats[row], grads[row], acc);
        } else {
          slow_backward_row(plan, row, c0, c1, acc);
        }
        if (accumulate && ++acc.rows_in_chunk == kRowsPerChunk) {
          flush_chunk(acc, dbl, c0, c1);
          acc.rows_in_chunk = 0;
        }
      }
      if (accumulate && c0 < c1) flush_chunk(acc, dbl, c0, c1);
    }
  }

  accumulators.write(dweight, dbias);
}

}  // namespace rmsnorm::cpu
