// The forward kernels: per row, the statistic (one pass over the row, from
// memory), then the output (a second pass, from cache), optionally preceded by
// the fused residual add. Compiled once per Highway target; the best target
// the CPU supports is chosen at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/cpu/forward.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <cstring>
#include <limits>
#include <utility>

#include "hwy/highway.h"
#include "src/cpu/dispatch.hpp"
#include "src/cpu/dtype_dispatch.hpp"
#include "src/cpu/flags.hpp"
#include "src/cpu/kernels.hpp"
#include "src/cpu/simd-inl.h"
#include "src/cpu/statistics-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rmsnorm::cpu::HWY_NAMESPACE {

// residual[i] = round(residual[i] + x[i]) for i < count; the same columns of
// `prefetch` (may be null) are asked for, a line per line of x.
template <typename T>
void AddResidual(const T* HWY_RESTRICT x, T* HWY_RESTRICT residual, int64_t count, const T* prefetch = nullptr) {
  const hn::ScalableTag<Arith<T>> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= count; i += N) {
    PrefetchLineAt(prefetch, i);
    StoreAs(d, hn::Add(LoadAs(d, x + i), LoadAs(d, residual + i)), residual + i);
  }
  if (i < count) {
    const size_t remaining = static_cast<size_t>(count - i);
    StoreTail(d, hn::Add(LoadTail(d, x + i, remaining), LoadTail(d, residual + i, remaining)), residual + i,
              remaining);
  }
}

// y = (x - mean) * inv_r * g[i] + b[i], as the flags say. (x - mean) * inv_r
// is formed as (x - hi) * inv_r - lo * inv_r, one FMA (lo_inv_r = lo * inv_r).
// With a weight the order is x * (inv_r * g): for the weights the engine lets
// through here (WeightInRange), inv_r * g is a normal number, so only the last
// rounding can underflow or overflow, and it does so exactly when the true
// result does. (x * inv_r) * g lost elements far below the row's RMS whose
// weight is large (x * inv_r underflowed first).
// g and b are indexed only when present (offsetting a null pointer is
// undefined behaviour).
// TNormalized: Rounding::kBeforeWeight's order for 16-bit data, t = (x - mean)
// * inv_r rounded to TNormalized first, then t * g + b (SPEC section 7); the
// arithmetic type itself for the single rounding.
// kFinite: v and the result are not NaN (FiniteOutputs), so the rounding to
// TNormalized may skip its NaN handling.
template <bool kCentered, bool kWeight, bool kBias, typename TNormalized, bool kFinite, class D, class V, typename TW>
HWY_INLINE V Normalize(D d, V v, V mean, V lo_inv_r, V inv_r, const TW* HWY_RESTRICT g, const TW* HWY_RESTRICT b, int64_t i,
                       size_t tail) {
  if constexpr (!std::is_same_v<TNormalized, hn::TFromD<D>>) {
    V t = kCentered ? hn::MulSub(hn::Sub(v, mean), inv_r, lo_inv_r) : hn::Mul(v, inv_r);
    t = RoundThrough<TNormalized, !kFinite>(d, t);
    if constexpr (kWeight) {
      const V gv = tail ? LoadTail(d, g + i, tail) : LoadAs(d, g + i);
      if constexpr (kBias) return hn::MulAdd(t, gv, tail ? LoadTail(d, b + i, tail) : LoadAs(d, b + i));
      return hn::Mul(t, gv);
    } else if constexpr (kBias) {
      return hn::Add(t, tail ? LoadTail(d, b + i, tail) : LoadAs(d, b + i));
    }
    return t;
  } else if constexpr (kWeight) {
    const V gv = tail ? LoadTail(d, g + i, tail) : LoadAs(d, g + i);
    const V scale = hn::Mul(inv_r, gv);
    if constexpr (kCentered) {
      v = hn::MulSub(hn::Sub(v, mean), scale, hn::Mul(lo_inv_r, gv));
      if constexpr (kBias) return hn::Add(v, tail ? LoadTail(d, b + i, tail) : LoadAs(d, b + i));
      return v;
    } else if constexpr (kBias) {
      return hn::MulAdd(v, scale, tail ? LoadTail(d, b + i, tail) : LoadAs(d, b + i));
    } else {
      return hn::Mul(v, scale);
    }
  } else {
    if constexpr (kCentered) {
      v = hn::MulSub(hn::Sub(v, mean), inv_r, lo_inv_r);
    } else if constexpr (kBias) {
      return hn::MulAdd(v, inv_r, tail ? LoadTail(d, b + i, tail) : LoadAs(d, b + i));
    } else {
      return hn::Mul(v, inv_r);
    }
    if constexpr (kBias) return hn::Add(v, tail ? LoadTail(d, b + i, tail) : LoadAs(d, b + i));
    return v;
  }
}

// Stores v at p (kStream: non-temporal, p vector-aligned and T the arithmetic type).
template <bool kStream, class D, typename T>
HWY_INLINE void StoreOut(D d, hn::VFromD<D> v, T* HWY_RESTRICT p) {
  if constexpr (kStream && std::is_same_v<T, hn::TFromD<D>>) {
    hn::Stream(v, d, p);
  } else {
    StoreAs(d, v, p);
  }
}

// y[i] for i < count from x[i], with parameters g[column + i], b[column + i].
// kFinite: no output can be NaN (FiniteOutputs), so a 16-bit store may skip
// its NaN handling. also: told of the columns the loop reads, as BlockSum's
// (TwoVectors for the unrolled loop's pair), to look at the parameters'
// same elements in the same pass (WriteFirstRowCheckingWeightInOutput).
template <typename T, typename TW, bool kCentered, bool kWeight, bool kBias, bool kRoundFirst, bool kFinite,
          bool kStream = false, class Also = VisitNothing>
HWY_INLINE void ApplySpan(const T* HWY_RESTRICT x, T* HWY_RESTRICT y, const TW* HWY_RESTRICT g, const TW* HWY_RESTRICT b,
               int64_t column, int64_t count, const RowStatistics& st, const T* prefetch = nullptr,
               Also&& also = Also()) {
  using A = Arith<T>;
  using TN = std::conditional_t<kRoundFirst, T, A>;
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const double inv_r_value = st.inv_r;
  const SplitShift<A> split(st.mean, st.mean_lo);
  const auto mean = hn::Set(d, split.hi);
  const auto inv_r = hn::Set(d, static_cast<A>(inv_r_value));
  const double lo_inv_r = static_cast<double>(split.lo) * static_cast<double>(static_cast<A>(inv_r_value));
  const auto mean_lo = hn::Set(d, static_cast<A>(lo_inv_r));
  // A copy for the loop, written back after it: the caller's, reached through
  // a reference, went to memory and back every vector (y's stores may alias it).
  std::remove_reference_t<Also> seen = also;
  int64_t i = 0;
  for (; i + 2 * N <= count; i += 2 * N) {
    if (prefetch) PrefetchBytes(prefetch + i, 2 * N * sizeof(T));
    seen.TwoVectors(column + i);
    const auto v0 = Normalize<kCentered, kWeight, kBias, TN, kFinite>(d, LoadAs(d, x + i), mean, mean_lo, inv_r, g, b, column + i, 0);
    const auto v1 =
        Normalize<kCentered, kWeight, kBias, TN, kFinite>(d, LoadAs(d, x + i + N), mean, mean_lo, inv_r, g, b, column + i + N, 0);
    if constexpr (kStream && std::is_same_v<T, A>) {
      StoreOut<kStream>(d, v0, y + i);
      StoreOut<kStream>(d, v1, y + i + N);
    } else {
      StorePairAs<!kFinite>(d, v0, v1, y + i);
    }
  }
  for (; i + N <= count; i += N) {
    seen.Vector(column + i);
    StoreOut<kStream>(d, Normalize<kCentered, kWeight, kBias, TN, kFinite>(d, LoadAs(d, x + i), mean, mean_lo, inv_r, g, b, column + i, 0),
                      y + i);
  }
  if (i < count) {
    const size_t remaining = static_cast<size_t>(count - i);
    seen.Tail(column + i, remaining);
    const auto v = Normalize<kCentered, kWeight, kBias, TN, kFinite>(d, LoadTail(d, x + i, remaining), mean, mean_lo, inv_r, g, b,
                                                        column + i, remaining);
    StoreTail(d, v, y + i, remaining);
  }
  also = seen;
}

// Writes y[column_begin, column_end) of one row; with streaming, tile by tile,
// each tile going through L1 and out with non-temporal stores. The same
// columns of `next` (may be null: the next row's x, or its residual in the
// fused form) are asked for as the row goes. Calls whose matrices fit in a
// core's own cache do not prefetch (plan.prefetch_rows): there the hardware
// prefetcher keeps up, and the prefetch loop cost 9% of a 32x4096 call.
template <typename T, typename TW, bool kCentered, bool kWeight, bool kBias, bool kRoundFirst, bool kFinite,
          class Also = VisitNothing>
HWY_INLINE void ApplyColumnsBody(const ForwardPlan& p, const T* HWY_RESTRICT src, T* HWY_RESTRICT y,
                                 int64_t column_begin, int64_t column_end, const RowStatistics& st, const T* next,
                                 Also&& also) {
  const auto* g = static_cast<const TW*>(p.weight);
  const auto* b = static_cast<const TW*>(p.bias);
  // The few elements up to y's next vector boundary first, with ordinary
  // stores: a vector store that straddles two cache lines costs two, and a
  // malloc'd buffer, or any row whose length is not a multiple of the vector,
  // is misaligned (a 16-byte offset made 64x512 calls 17% slower). float and
  // double output then streams straight from registers; 16-bit outputs go
  // through the tile.
  const bool element_aligned = reinterpret_cast<uintptr_t>(y) % sizeof(T) == 0;
  if (element_aligned) {
    const int64_t head = ElementsToVectorBoundary(y + column_begin, column_end - column_begin);
    if (head > 0) {
      ApplySpan<T, TW, kCentered, kWeight, kBias, kRoundFirst, kFinite>(src + column_begin, y + column_begin, g, b, column_begin,
                                                               head, st, nullptr, also);
    }
    column_begin += head;
  }
  // A caller with a visitor never streams (WriteFirstRowCheckingWeightInOutput):
  // the streaming loops are not built for it.
  constexpr bool kVisits = !std::is_same_v<std::remove_cv_t<std::remove_reference_t<Also>>, VisitNothing>;
  if (kVisits || !p.stream_output) {
    ApplySpan<T, TW, kCentered, kWeight, kBias, kRoundFirst, kFinite>(src + column_begin, y + column_begin, g, b, column_begin,
                                                             column_end - column_begin, st,
                                                             next ? next + column_begin : nullptr, also);
    return;
  }
  if constexpr (!kVisits) {
    constexpr int64_t kTile = kStreamTileBytes / static_cast<int64_t>(sizeof(T));
    const bool direct = std::is_same_v<T, Arith<T>> && element_aligned;
    alignas(64) T tile[kTile];
    for (int64_t c = column_begin; c < column_end; c += kTile) {
      const int64_t count = std::min(kTile, column_end - c);
      const size_t bytes = static_cast<size_t>(count) * sizeof(T);
      if (direct) {
        ApplySpan<T, TW, kCentered, kWeight, kBias, kRoundFirst, kFinite, true>(src + c, y + c, g, b, c, count, st,
                                                                                next ? next + c : nullptr);
        continue;
      }
      if (next) PrefetchBytes(next + c, bytes);
      ApplySpan<T, TW, kCentered, kWeight, kBias, kRoundFirst, kFinite>(src + c, tile, g, b, c, count, st);
      StreamBytes(y + c, tile, bytes);
    }
  }
}

// ApplyColumnsBody as a call of its own: inlined into every flag combination
// of the row loop, the output pass made the sanitizer build of this file take
// tens of minutes, for a few ns per row (WriteRow inlines the one combination
// short rows use most).
template <typename T, typename TW, bool kCentered, bool kWeight, bool kBias, bool kRoundFirst, bool kFinite,
          class Also = VisitNothing>
void ApplyColumns(const ForwardPlan& p, const T* HWY_RESTRICT src, T* HWY_RESTRICT y, int64_t column_begin,
                  int64_t column_end, const RowStatistics& st, const T* next, Also&& also = Also()) {
  ApplyColumnsBody<T, TW, kCentered, kWeight, kBias, kRoundFirst, kFinite>(p, src, y, column_begin, column_end, st,
                                                                           next, std::forward<Also>(also));
}

// Whether no output in columns [0, column_end) of a fast-path row can be NaN:
// its statistics are finite, so every x the sum covered (columns below k) is
// finite, and |x / r| <= sqrt(k); the weight is in range (|g| <= 2^40), so
// x * (1/r * g), and LayerNorm's centered form, are finite; a finite bias
// (ForwardPlan::bias_finite) added to it gives a finite sum or an infinity,
// never NaN. Past k, x was not summed and may be NaN.
inline bool FiniteOutputs(const ForwardPlan& p, int64_t column_end) {
  return (!p.bias || p.bias_finite) && column_end <= p.norm.k;
}

// ApplyColumns with kFinite = FiniteOutputs for bfloat16 output, whose store
// then skips its NaN handling; other types keep one instantiation.
template <typename T, typename TW, bool kCentered, bool kWeight, bool kBias, bool kRoundFirst>
HWY_INLINE void ApplyColumnsChecked(const ForwardPlan& p, const T* HWY_RESTRICT src, T* HWY_RESTRICT y,
                                    int64_t column_begin, int64_t column_end, const RowStatistics& st, const T* next) {
  if constexpr (std::is_same_v<T, hwy::bfloat16_t>) {
    if (FiniteOutputs(p, column_end)) {
      ApplyColumns<T, TW, kCentered, kWeight, kBias, kRoundFirst, true>(p, src, y, column_begin, column_end, st, next);
      return;
    }
  }
  ApplyColumns<T, TW, kCentered, kWeight, kBias, kRoundFirst, false>(p, src, y, column_begin, column_end, st, next);
}

// Picks the instantiation for the plan's flags.
template <typename T, typename TW>
void ApplyColumnsFor(const ForwardPlan& p, const T* src, T* y, int64_t c0, int64_t c1, const RowStatistics& st,
                     const T* next = nullptr) {
  with_flags(
      [&](auto centered, auto weight, auto bias, auto round_first) {
        constexpr bool kWeight = flag_v<decltype(weight)>, kBias = flag_v<decltype(bias)>;
        // Only 16-bit data with a parameter to apply after the rounding has a
        // second order: the others share the single-rounding instantiation.
        constexpr bool kRoundFirst = flag_v<decltype(round_first)> && !std::is_same_v<T, Arith<T>> && (kWeight || kBias);
        ApplyColumnsChecked<T, TW, flag_v<decltype(centered)>, kWeight, kBias, kRoundFirst>(p, src, y, c0, c1, st, next);
      },
      p.norm.centered, p.weight != nullptr, p.bias != nullptr, p.round_before_weight);
}

// Without FMA (SSE4 and the portable targets) y = x (1/r g) + b rounds the
// product before the bias is added. Past pRMSNorm's k, x is not bounded by r,
// and the product can overflow where its sum with the bias does not (fuzzer:
// bfloat16, x = 2.8e38 past k = 1, product -4.4e38, bias +3.4e38, exact
// -9.9e37; FMA targets round once and were right). Whether a product of
// columns [c0, c1) past k overflows the arithmetic type.
template <typename T, typename TW>
bool ProductOverflowsPastK(const ForwardPlan& p, const T* HWY_RESTRICT x, int64_t c0, int64_t c1, double inv_r_value) {
  using A = Arith<T>;
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto inv_r = hn::Set(d, static_cast<A>(inv_r_value));
  const auto* g = static_cast<const TW*>(p.weight);
  auto largest = hn::Zero(d);
  auto visit = [&](hn::VFromD<decltype(d)> v, hn::VFromD<decltype(d)> scale) {
    const auto product = hn::Abs(hn::Mul(v, scale));
    largest = hn::Max(largest, hn::IfThenZeroElse(hn::IsNaN(product), product));  // NaN propagates alike
  };
  int64_t i = std::max(c0, p.norm.k);
  for (; i + N <= c1; i += N) visit(LoadAs(d, x + i), g ? hn::Mul(inv_r, LoadAs(d, g + i)) : inv_r);
  if (i < c1) {
    const size_t remaining = static_cast<size_t>(c1 - i);
    visit(LoadTail(d, x + i, remaining), g ? hn::Mul(inv_r, LoadTail(d, g + i, remaining)) : inv_r);
  }
  return hn::GetLane(hn::MaxOfLanes(d, largest)) > std::numeric_limits<A>::max();
}

// The fast statistics for the wide path's apply (x / r in long double).
WideRowStatistics WideFromFast(const RowStatistics& st) {
  WideRowStatistics wide;
  wide.mean = static_cast<long double>(st.mean) + st.mean_lo;
  wide.r = 1.0L / static_cast<long double>(st.inv_r);
  return wide;
}

// Whether columns [c0, c1) of this row must be applied in the wide path
// (see ProductOverflowsPastK): never on targets with FMA.
template <typename T, typename TW>
bool ApplyNeedsWidePath(const ForwardPlan& p, const T* x, int64_t c0, int64_t c1, const RowStatistics& st) {
  if constexpr (HWY_NATIVE_FMA) {
    return false;
  } else {
    return p.bias && p.norm.k < c1 && ProductOverflowsPastK<T, TW>(p, x, c0, c1, st.inv_r);
  }
}

template <typename T>
void SaveStatistics(const ForwardPlan& p, int64_t row, const RowStatistics& st) {
  using A = Arith<T>;
  if (p.saved_inv_rms) static_cast<A*>(p.saved_inv_rms)[row] = static_cast<A>(st.inv_r);
  if (p.saved_mean) static_cast<A*>(p.saved_mean)[row] = static_cast<A>(st.mean + st.mean_lo);
}

// Rows this short (in bytes of x) are worked on in groups: the statistics of
// the group's rows first, then their outputs. A statistic ends in a chain of
// dependent operations (the sum's reduction, a division, a square root and a
// division, in double) that the row's own output pass waits for, too short to
// hide it; the chains of a group's rows are independent and overlap. The
// group (at most 16 KiB of x) is still in L1 when its outputs are written.
// (Two variants measured no better on 32x256-2048x768 and were not kept:
// computing the next group's statistics before writing this group's outputs,
// 3-17% slower; and the divisions and square roots of a group in one set of
// vector instructions, within noise.)
inline constexpr int64_t kGroupedRowBytes = 4096;
inline constexpr int64_t kRowGroup = 4;

// The largest |g| and the smallest nonzero |g| of the vectors given to it, for
// the weight check: whether every |g| is at most `limit` and every nonzero |g|
// at least 1 / limit. Kept in integers (for non-negative floats the order of
// the bit patterns is the order of the values): per vector an And, a Max and a
// Sub/Min. Zeros are harmless and pass (bits - 1 wraps them to the largest
// pattern). NaN's patterns lie above infinity's, so a NaN weight fails the
// check and the call takes the exact slow path, where NaN propagates as IEEE
// says.
template <typename A>
class MagnitudeRange {
  using D = hn::ScalableTag<A>;
  using DU = hn::RebindToUnsigned<D>;
  using U = hn::TFromD<DU>;
  using VU = hn::VFromD<DU>;

 public:
  // Written out: gcc gave the implicit constructor no target attributes.
  HWY_INLINE MagnitudeRange() : largest_(hn::Zero(DU())), smallest_(hn::Set(DU(), ~U{0})) {}

  HWY_INLINE void Add(hn::VFromD<D> v) {
    const DU du;
    const auto bits = hn::And(hn::BitCast(du, v), hn::Set(du, static_cast<U>(~U{0} >> 1)));
    largest_ = hn::Max(largest_, bits);
    smallest_ = hn::Min(smallest_, hn::Sub(bits, hn::Set(du, U{1})));
  }
  HWY_INLINE void Merge(const MagnitudeRange& other) {
    largest_ = hn::Max(largest_, other.largest_);
    smallest_ = hn::Min(smallest_, other.smallest_);
  }
  bool Within(A limit) const {
    const DU du;
    const U max_bits = hn::GetLane(hn::MaxOfLanes(du, largest_));
    const U min_bits_minus_one = hn::GetLane(hn::MinOfLanes(du, smallest_));
    const bool all_zero = min_bits_minus_one == ~U{0};
    return max_bits <= BitsOf(limit) && (all_zero || min_bits_minus_one + 1 >= BitsOf(1 / limit));
  }

 private:
  static U BitsOf(A value) {
    U bits;
    std::memcpy(&bits, &value, sizeof(bits));
    return bits;
  }
  VU largest_;
  VU smallest_;  // of bits - 1
};

// The limit WeightInRangeT checks against, in the arithmetic type A of the
// check (double for float64 weights, else float).
template <typename A>
A WeightLimit(DType param_dtype, bool double_arithmetic) {
  // Every finite float is within double's limit, but not float's infinity:
  // float64 LayerNorm gave x * (1/r * inf) - lo * inf = NaN where IEEE gives
  // +-inf (fuzzer). Below 1/FLT_MAX, rare, slow and exact.
  if (param_dtype == DType::kFloat32 && double_arithmetic) return std::numeric_limits<float>::max();
  // float16's finite range, 2^-24 .. 65504, is within the limit, but not its
  // infinity: x * (1/r * inf) - lo * inf gave NaN where IEEE gives +-inf.
  return static_cast<A>(fast_range(double_arithmetic).scale_limit);
}

// The row to normalize: x, or in the fused form the residual after
// residual += x, during which the x `group` rows on is asked for
// (plan.prefetch_rows).
template <typename T>
HWY_INLINE const T* SourceRow(const ForwardPlan& p, int64_t row, int64_t group, int64_t row_end) {
  const T* x = row_pointer<T>(p.x, row, p.x_stride);
  if (!p.residual) return x;
  const T* next_x = p.prefetch_rows && row + group < row_end ? row_pointer<T>(p.x, row + group, p.x_stride) : nullptr;
  T* residual = row_pointer<T>(p.residual, row, p.residual_stride);
  AddResidual(x, residual, p.norm.n, next_x);
  return residual;
}

// The statistics of rows [first, first + count) (after the fused residual add,
// asking for the row `group` rows on during it), written into sources[b] and
// stats[b]. One function per data type, not per flag combination: inlined into
// every instantiation of the row loop, the statistics (LayerNorm's above all)
// made the sanitizer build of this file take tens of minutes. The results go
// straight to the caller's arrays, whose fields it reads one at a time: a
// returned struct was copied in a wide load that waited on the callee's
// narrow stores (a store-forwarding stall that serialized rows).
template <typename T>
HWY_NOINLINE void GroupStatistics(const ForwardPlan& p, int64_t first, int64_t count, int64_t group, int64_t row_end,
                                  const T** sources, RowStatistics* stats) {
  for (int64_t b = 0; b < count; ++b) {
    sources[b] = SourceRow<T>(p, first + b, group, row_end);
    stats[b] = RowStatisticsOf(p.norm, sources[b]);
  }
}

// Tells two MagnitudeRanges of the weight's elements that a sum's loop reads
// of its row (BlockSum's `also`). Two, alternating in the unrolled loop: one
// chain of four Max and four Min per iteration made the fused pass slower on
// AVX-512 than the two passes it replaced.
template <typename TW>
struct WeightRangeVisitor {
  const TW* HWY_RESTRICT g;
  MagnitudeRange<float>& range;
  MagnitudeRange<float>& other;
  HWY_INLINE void Vector(int64_t i) { range.Add(LoadAs(hn::ScalableTag<float>(), g + i)); }
  HWY_INLINE void FourVectors(int64_t i) {
    const hn::ScalableTag<float> d;
    const int64_t N = static_cast<int64_t>(hn::Lanes(d));
    range.Add(LoadAs(d, g + i));
    other.Add(LoadAs(d, g + i + N));
    range.Add(LoadAs(d, g + i + 2 * N));
    other.Add(LoadAs(d, g + i + 3 * N));
  }
  HWY_INLINE void Tail(int64_t i, size_t remaining) { range.Add(LoadTail(hn::ScalableTag<float>(), g + i, remaining)); }
};

// WeightRangeVisitor's check holding its range itself, for a loop that
// copies its visitor into registers (ApplySpan). One range, not two: the
// output loop's stores leave time for a chain of two Max and two Min per
// iteration, and with two ranges (four vectors) gcc kept the copy in memory
// on AVX2 (1x8192 float32 forward 1.7x slower).
template <typename TW>
struct WeightRangeInPass {
  const TW* HWY_RESTRICT g;
  MagnitudeRange<float> range;
  HWY_INLINE void Vector(int64_t i) { range.Add(LoadAs(hn::ScalableTag<float>(), g + i)); }
  HWY_INLINE void TwoVectors(int64_t i) {
    const hn::ScalableTag<float> d;
    range.Add(LoadAs(d, g + i));
    range.Add(LoadAs(d, g + i + static_cast<int64_t>(hn::Lanes(d))));
  }
  HWY_INLINE void Tail(int64_t i, size_t remaining) { range.Add(LoadTail(hn::ScalableTag<float>(), g + i, remaining)); }
  bool Within(float limit) const { return range.Within(limit); }
};

// GroupStatistics for one row of RMSNorm over the whole row (k = n, float
// arithmetic), with the weight check (WeightInRangeT) in the same pass, and
// its answer returned: a one-row call used to read the weight in a pass of its
// own before it (16% of a 1x4096 call's samples). The row's sum of squares is
// RowStatisticsOf's, the same terms in the same order, so the statistics are
// the same bit for bit.
template <typename T, typename TW>
HWY_NOINLINE bool RowStatisticsCheckingWeight(const ForwardPlan& p, int64_t row, int64_t group, int64_t row_end,
                                              const T** source, RowStatistics* stats) {
  static_assert(std::is_same_v<Arith<T>, float>, "float arithmetic only");
  const T* src = SourceRow<T>(p, row, group, row_end);
  MagnitudeRange<float> range, other;
  const double sum = RowSum<SumOf::kSquares>(src, 0, p.norm.k, p.norm.n,
                                             WeightRangeVisitor<TW>{static_cast<const TW*>(p.weight), range, other});
  range.Merge(other);
  *source = src;
  *stats = finalize_statistics(p.norm, RowMean{}, sum, /*double_arithmetic=*/false);
  return range.Within(WeightLimit<float>(p.param_dtype, /*double_arithmetic=*/false));
}

// The input `group` rows on (its residual in the fused form, else x), asked
// for during this row's output pass when the plan says so (prefetch_rows);
// else null.
template <typename T>
HWY_INLINE const T* NextSource(const ForwardPlan& p, int64_t row, int64_t group, int64_t row_end) {
  if (!p.prefetch_rows || row + group >= row_end) return nullptr;
  return p.residual ? row_pointer<T>(static_cast<const void*>(p.residual), row + group, p.residual_stride)
                    : row_pointer<T>(p.x, row + group, p.x_stride);
}

// One row's output from its statistics: on the fast path, or on the exact
// slow path when the statistics or the weight (weight_in_range) say so.
template <typename T, typename TW, bool kCentered, bool kWeight, bool kBias, bool kRoundFirst>
HWY_INLINE void WriteRow(const ForwardPlan& p, int64_t row, const T* src, const RowStatistics& st, bool weight_in_range,
                         int64_t group, int64_t row_end) {
  const int64_t n = p.norm.n;
  if (!st.fast || !weight_in_range) {
    slow_forward_row(p, row, src, 0, n);
    return;
  }
  if (ApplyNeedsWidePath<T, TW>(p, src, 0, n, st)) {
    slow_forward_apply(p, row, src, 0, n, WideFromFast(st));
    return;
  }
  SaveStatistics<T>(p, row, st);
  T* y = row_pointer<T>(p.y, row, p.y_stride);
  const T* next = NextSource<T>(p, row, group, row_end);
  // Inlined for float32 RMSNorm with a float32 weight only, the rows that
  // short calls run most: 3-9% of a 32x64 to 64x512 call was the call and its
  // set-up (AVX3 and AVX2). Every combination inlined made the sanitizer
  // build of this file too slow for CI (ApplyColumns).
  constexpr bool kInlined =
      std::is_same_v<T, float> && std::is_same_v<TW, float> && !kCentered && kWeight && !kBias && !kRoundFirst;
  if constexpr (kInlined) {
    ApplyColumnsBody<T, TW, kCentered, kWeight, kBias, kRoundFirst, /*kFinite=*/false>(p, src, y, 0, n, st, next,
                                                                                       VisitNothing());
  } else {
    ApplyColumnsChecked<T, TW, kCentered, kWeight, kBias, kRoundFirst>(p, src, y, 0, n, st, next);
  }
}

// The first row of a call whose plan left the weight check to the rows
// (weight_checked_by_rows), checking it in the statistics pass (RMSNorm; see
// WriteFirstRowCheckingWeightInOutput); returns whether the weight is in
// range. Apart from the loop below, whose code it would otherwise share (the
// loop was 5% slower on 32x256 pRMSNorm calls).
template <typename T, typename TW, bool kCentered, bool kWeight, bool kBias, bool kRoundFirst>
HWY_NOINLINE bool WriteFirstRowCheckingWeight(const ForwardPlan& p, int64_t row, int64_t group, int64_t row_end) {
  const T* src;
  RowStatistics st;
  const bool weight_in_range = RowStatisticsCheckingWeight<T, TW>(p, row, group, row_end, &src, &st);
  WriteRow<T, TW, kCentered, kWeight, kBias, kRoundFirst>(p, row, src, st, weight_in_range, group, row_end);
  return weight_in_range;
}

bool WeightInRangeImpl(const void* g, DType param_dtype, int64_t n, bool double_arithmetic);

// The first row of a call whose plan has the weight checked in the output
// pass (weight_checked_in_output); returns whether the weight is in range.
// The check rides on the output pass, which reads every g_j anyway: for
// pRMSNorm, whose statistic reads k elements, a pass of its own over g was a
// quarter of a 1x4096 call; for RMSNorm, checking in the statistics pass
// (WriteFirstRowCheckingWeight) read g twice, and a 1x8192 float32 row, whose
// x, g and y do not fit in L1 together, was 27% slower (where they do fit,
// 1x4096 on a 48 KiB L1, the statistics pass is the cheaper place, by 5%).
// The output is written before the answer is known; a weight out of range
// then has the row rewritten by the exact slow path,
// from its input, which must therefore not be the output's own memory. In
// place (and when streaming, whose stores should not be made twice) the check
// comes first: in the statistics pass for k = n, else in a pass of its own.
// The check is WeightInRangeT's, over the same elements, so the same answer.
template <typename T, typename TW>
HWY_NOINLINE bool WriteFirstRowCheckingWeightInOutput(const ForwardPlan& p, int64_t row, int64_t group,
                                                      int64_t row_end) {
  constexpr bool kCentered = false, kWeight = true, kBias = false, kRoundFirst = false;
  const int64_t n = p.norm.n;
  T* y = row_pointer<T>(p.y, row, p.y_stride);
  const bool input_kept =
      y != row_pointer<T>(p.x, row, p.x_stride) &&
      (!p.residual || y != row_pointer<T>(static_cast<const void*>(p.residual), row, p.residual_stride));
  if ((!input_kept || p.stream_output) && p.norm.k == n) {
    return WriteFirstRowCheckingWeight<T, TW, kCentered, kWeight, kBias, kRoundFirst>(p, row, group, row_end);
  }
  const T* src;
  RowStatistics st;
  GroupStatistics<T>(p, row, 1, group, row_end, &src, &st);
  if (!input_kept || p.stream_output || !st.fast) {
    const bool in_range = WeightInRangeImpl(p.weight, p.param_dtype, n, /*double_arithmetic=*/false);
    WriteRow<T, TW, kCentered, kWeight, kBias, kRoundFirst>(p, row, src, st, in_range, group, row_end);
    return in_range;
  }
  // Without ApplyColumnsChecked's bfloat16 NaN-free store (one row; one
  // instantiation fewer to build).
  WeightRangeInPass<TW> check{static_cast<const TW*>(p.weight), {}};
  ApplyColumns<T, TW, kCentered, kWeight, kBias, kRoundFirst, /*kFinite=*/false>(
      p, src, y, 0, n, st, NextSource<T>(p, row, group, row_end), check);
  const bool in_range = check.Within(WeightLimit<float>(p.param_dtype, /*double_arithmetic=*/false));
  if (in_range) {
    SaveStatistics<T>(p, row, st);
  } else {
    slow_forward_row(p, row, src, 0, n);
  }
  return in_range;
}

// The rows of one call for one combination of flags (the flags used to be
// resolved once per row).
template <typename T, typename TW, bool kCentered, bool kWeight, bool kBias, bool kRoundFirst>
void ForwardRowsFlagged(const ForwardPlan& p, int64_t row_begin, int64_t row_end) {
  const int64_t n = p.norm.n;
  const int64_t group = n * static_cast<int64_t>(sizeof(T)) <= kGroupedRowBytes ? kRowGroup : 1;
  bool weight_in_range = p.weight_in_range;
  int64_t first = row_begin;
  if constexpr (kWeight && !kCentered && std::is_same_v<Arith<T>, float>) {
    if (p.weight_checked_by_rows && first < row_end) {
      const auto in_statistics = [&] {
        return WriteFirstRowCheckingWeight<T, TW, kCentered, kWeight, kBias, kRoundFirst>(p, first, group, row_end);
      };
      // The output pass is built only where the plan can ask for it (no bias,
      // no rounding before the weight) and for the weight types a call can
      // have (float32, or the data's own; dispatch_types instantiates every
      // pair): each instantiation lengthens the sanitizer build of this
      // file, CI's longest step.
      if constexpr (!kBias && !kRoundFirst && (std::is_same_v<TW, float> || std::is_same_v<TW, T>)) {
        weight_in_range = p.weight_checked_in_output
                              ? WriteFirstRowCheckingWeightInOutput<T, TW>(p, first, group, row_end)
                              : in_statistics();
      } else {
        weight_in_range = in_statistics();
      }
      ++first;
    }
  }
  for (; first < row_end; first += group) {
    const int64_t count = std::min(group, row_end - first);
    const T* sources[kRowGroup];
    RowStatistics stats[kRowGroup];
    GroupStatistics<T>(p, first, count, group, row_end, sources, stats);
    for (int64_t b = 0; b < count; ++b) {
      WriteRow<T, TW, kCentered, kWeight, kBias, kRoundFirst>(p, first + b, sources[b], stats[b], weight_in_range, group,
                                                              row_end);
    }
  }
  if (p.stream_output) hwy::FlushStream();
}

template <typename T, typename TW>
void ForwardRowsT(const ForwardPlan& p, int64_t row_begin, int64_t row_end) {
  with_flags(
      [&](auto centered, auto weight, auto bias, auto round_first) {
        constexpr bool kWeight = flag_v<decltype(weight)>, kBias = flag_v<decltype(bias)>;
        constexpr bool kRoundFirst = flag_v<decltype(round_first)> && !std::is_same_v<T, Arith<T>> && (kWeight || kBias);
        ForwardRowsFlagged<T, TW, flag_v<decltype(centered)>, kWeight, kBias, kRoundFirst>(p, row_begin, row_end);
      },
      p.norm.centered, p.weight != nullptr, p.bias != nullptr, p.round_before_weight);
}

void ForwardRowsImpl(const ForwardPlan& p, int64_t row_begin, int64_t row_end) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    ForwardRowsT<decltype(t), decltype(tw)>(p, row_begin, row_end);
  });
}

template <typename T>
void ForwardBlockSumsT(const StatisticsSource& p, int64_t row, int64_t block_begin, int64_t block_end, int pass,
                       const RowMean& shift, double* sums, double* deviations) {
  const NormParams& norm = p.norm;
  const T* src = row_pointer<T>(p.x, row, p.x_stride);
  T* residual = p.residual ? row_pointer<T>(p.residual, row, p.residual_stride) : nullptr;
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int64_t c0 = b * kBlockElements, c1 = std::min(norm.n, c0 + kBlockElements);
    if (residual && pass == 0) AddResidual(src + c0, residual + c0, c1 - c0);
    const T* block_source = residual ? residual : src;
    if (norm.centered) {
      if (pass == 0) {  // the one-pass sums around the pivot
        const CenteredSums shifted = BlockShiftedSums(block_source + c0, c1 - c0, shift.hi);
        sums[b] = shifted.squares;
        deviations[b] = shifted.deviations;
      } else {
        const CenteredSums centered = BlockCenteredSums(block_source + c0, c1 - c0, shift.hi, shift.lo);
        sums[b] = centered.squares;
        deviations[b] = centered.deviations;  // LayerNorm's pass 1: the mean's correction
      }
      continue;
    }
    const int64_t split = std::clamp(norm.k, c0, c1);
    // The block itself may be read past k (its residual add is done); the next
    // one may not (another thread may be adding it).
    sums[b] = split > c0 ? BlockSum<SumOf::kSquares>(block_source + c0, split - c0, c1 - c0) : 0.0;
    deviations[b] = 0.0;
  }
}

void ForwardBlockSumsImpl(const StatisticsSource& p, int64_t row, int64_t block_begin, int64_t block_end, int pass,
                          const RowMean& shift, double* sums, double* deviations) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto) {
    ForwardBlockSumsT<decltype(t)>(p, row, block_begin, block_end, pass, shift, sums, deviations);
  });
}

// The row's pivot (VectorPivot) as RowStatisticsOf sees the row: after the
// residual add, rounded to T by the same vector code (AddResidual on the
// first vector, into a scratch copy: the residual itself is written later,
// block by block).
double ForwardRowPivotImpl(const StatisticsSource& p, int64_t row) {
  double pivot = 0.0;
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto) {
    using T = decltype(t);
    const T* x = row_pointer<T>(p.x, row, p.x_stride);
    if (!p.residual) {
      pivot = VectorPivot(x, p.norm.n);
      return;
    }
    const int64_t count = std::min<int64_t>(p.norm.n, static_cast<int64_t>(kMaxLanes<Arith<T>>));
    T first[kMaxLanes<Arith<T>>];
    std::memcpy(first, row_pointer<T>(static_cast<const void*>(p.residual), row, p.residual_stride),
                static_cast<size_t>(count) * sizeof(T));
    AddResidual(x, first, count);
    pivot = VectorPivot(first, count);
  });
  return pivot;
}

void ForwardColumnsImpl(const ForwardPlan& p, int64_t row, int64_t column_begin, int64_t column_end,
                        const RowStatistics& st) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    const T* src = p.residual ? row_pointer<T>(static_cast<const void*>(p.residual), row, p.residual_stride)
                              : row_pointer<T>(p.x, row, p.x_stride);
    if (ApplyNeedsWidePath<T, decltype(tw)>(p, src, column_begin, column_end, st)) {
      slow_forward_apply(p, row, src, column_begin, column_end, WideFromFast(st));
      return;
    }
    if (column_begin == 0) SaveStatistics<T>(p, row, st);
    ApplyColumnsFor<T, decltype(tw)>(p, src, row_pointer<T>(p.y, row, p.y_stride), column_begin, column_end, st);
    if (p.stream_output) hwy::FlushStream();
  });
}

void ConvertFromFloatImpl(DType dtype, const float* in, void* out, int64_t count) {
  const hn::ScalableTag<float> d;
  auto convert = [&](auto* typed_out) {
    const int64_t N = static_cast<int64_t>(hn::Lanes(d));
    int64_t i = 0;
    // In pairs as the forward's output pass stores (StorePairAs), so that
    // the conversion tests check that store too.
    for (; i + 2 * N <= count; i += 2 * N) StorePairAs(d, hn::LoadU(d, in + i), hn::LoadU(d, in + i + N), typed_out + i);
    for (; i + N <= count; i += N) StoreAs(d, hn::LoadU(d, in + i), typed_out + i);
    if (i < count) StoreTail(d, LoadTail(d, in + i, count - i), typed_out + i, count - i);
  };
  if (dtype == DType::kBFloat16) convert(static_cast<hwy::bfloat16_t*>(out));
  if (dtype == DType::kFloat16) convert(static_cast<hwy::float16_t*>(out));
  if (dtype == DType::kFloat32) convert(static_cast<float*>(out));
}

// The whole weight in one pass of its own (two independent chains).
template <typename TW, typename A>
bool WeightInRangeT(const TW* HWY_RESTRICT g, int64_t n, A limit) {
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  MagnitudeRange<A> range0, range1;
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    range0.Add(LoadAs(d, g + i));
    range1.Add(LoadAs(d, g + i + N));
  }
  for (; i + N <= n; i += N) range0.Add(LoadAs(d, g + i));
  if (i < n) range1.Add(LoadTail(d, g + i, static_cast<size_t>(n - i)));  // zero-padded
  range0.Merge(range1);
  return range0.Within(limit);
}

bool WeightInRangeImpl(const void* g, DType param_dtype, int64_t n, bool double_arithmetic) {
  switch (param_dtype) {
    case DType::kFloat32:
      return WeightInRangeT(static_cast<const float*>(g), n, WeightLimit<float>(param_dtype, double_arithmetic));
    case DType::kBFloat16:
      return WeightInRangeT(static_cast<const hwy::bfloat16_t*>(g), n, WeightLimit<float>(param_dtype, double_arithmetic));
    case DType::kFloat16:
      return WeightInRangeT(static_cast<const hwy::float16_t*>(g), n, WeightLimit<float>(param_dtype, double_arithmetic));
    case DType::kFloat64:
      return WeightInRangeT(static_cast<const double*>(g), n, WeightLimit<double>(param_dtype, double_arithmetic));
  }
  return false;
}

// Whether every value is finite, checked in the values' own float or double
// type. NaN and subnormal values answer false (WeightInRangeT): a rare slow
// call, exact.
bool ParametersFiniteImpl(const void* v, DType dtype, int64_t n) {
  switch (dtype) {
    case DType::kFloat32:
      return WeightInRangeT(static_cast<const float*>(v), n, std::numeric_limits<float>::max());
    case DType::kBFloat16:
      return WeightInRangeT(static_cast<const hwy::bfloat16_t*>(v), n, std::numeric_limits<float>::max());
    case DType::kFloat16:
      return WeightInRangeT(static_cast<const hwy::float16_t*>(v), n, std::numeric_limits<float>::max());
    case DType::kFloat64:
      return WeightInRangeT(static_cast<const double*>(v), n, std::numeric_limits<double>::max());
  }
  return false;
}

void ConvertToFloatImpl(DType dtype, const void* in, float* out, int64_t count) {
  const hn::ScalableTag<float> d;
  auto convert = [&](const auto* typed_in) {
    const int64_t N = static_cast<int64_t>(hn::Lanes(d));
    int64_t i = 0;
    for (; i + N <= count; i += N) hn::StoreU(LoadAs(d, typed_in + i), d, out + i);
    if (i < count) StoreTail(d, LoadTail(d, typed_in + i, count - i), out + i, count - i);
  };
  if (dtype == DType::kBFloat16) convert(static_cast<const hwy::bfloat16_t*>(in));
  if (dtype == DType::kFloat16) convert(static_cast<const hwy::float16_t*>(in));
  if (dtype == DType::kFloat32) convert(static_cast<const float*>(in));
}

}  // namespace rmsnorm::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rmsnorm::cpu {

HWY_EXPORT(ForwardRowsImpl);
HWY_EXPORT(ForwardBlockSumsImpl);
HWY_EXPORT(ForwardRowPivotImpl);
HWY_EXPORT(ForwardColumnsImpl);
HWY_EXPORT(ConvertFromFloatImpl);
HWY_EXPORT(ConvertToFloatImpl);
HWY_EXPORT(WeightInRangeImpl);
HWY_EXPORT(ParametersFiniteImpl);

bool parameters_finite(size_t simd_index, const void* values, DType dtype, int64_t n) {
  return RMSNORM_DISPATCH(ParametersFiniteImpl, simd_index)(values, dtype, n);
}

bool weight_in_range(size_t simd_index, const void* weight, DType param_dtype, int64_t n, bool double_arithmetic) {
  return RMSNORM_DISPATCH(WeightInRangeImpl, simd_index)(weight, param_dtype, n, double_arithmetic);
}

void forward_rows(const ForwardPlan& plan, int64_t row_begin, int64_t row_end) {
  RMSNORM_DISPATCH(ForwardRowsImpl, plan.simd_index)(plan, row_begin, row_end);
}

void forward_block_sums(const StatisticsSource& plan, int64_t row, int64_t block_begin, int64_t block_end, int pass,
                        const RowMean& shift, double* sums, double* deviations) {
  RMSNORM_DISPATCH(ForwardBlockSumsImpl, plan.simd_index)(plan, row, block_begin, block_end, pass, shift, sums,
                                                          deviations);
}

double forward_row_pivot(const StatisticsSource& plan, int64_t row) {
  return RMSNORM_DISPATCH(ForwardRowPivotImpl, plan.simd_index)(plan, row);
}

void forward_columns(const ForwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                     const RowStatistics& st) {
  RMSNORM_DISPATCH(ForwardColumnsImpl, plan.simd_index)(plan, row, column_begin, column_end, st);
}

void convert_from_float(DType dtype, const float* in, void* out, int64_t count) {
  RMSNORM_DISPATCH(ConvertFromFloatImpl, dispatch_index())(dtype, in, out, count);
}

void convert_to_float(DType dtype, const void* in, float* out, int64_t count) {
  RMSNORM_DISPATCH(ConvertToFloatImpl, dispatch_index())(dtype, in, out, count);
}

}  // namespace rmsnorm::cpu
#endif  // HWY_ONCE
