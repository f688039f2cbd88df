// The backward kernels: per row, the statistics (saved or recomputed), the
// gradient sums (one pass over x and dy, from memory), then dx and the row's
// dweight/dbias terms (a second pass, from cache). SPEC section 3, in the form
//   dx_j = a * (gy_j + shift) - (x_j - mean) * coef * [j < k].
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/cpu/backward.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/cpu/dispatch.hpp"
#include "src/cpu/dtype_dispatch.hpp"
#include "src/cpu/flags.hpp"
#include "src/cpu/kernels.hpp"
#include "src/cpu/simd-inl.h"
#include "src/cpu/statistics-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rmsnorm::cpu::HWY_NAMESPACE {

// gy = dy * g[column + i] when there is a weight.
template <bool kWeight, class D, typename TW>
HWY_INLINE hn::VFromD<D> ScaleByWeight(D d, hn::VFromD<D> dy, const TW* HWY_RESTRICT g, int64_t i, size_t tail) {
  if constexpr (kWeight) return hn::Mul(dy, tail ? LoadTail(d, g + i, tail) : LoadAs(d, g + i));
  return dy;
}

// The GradientSums of one block. For LayerNorm x is taken relative to the
// pivot (the stored mean). Zero-padded tail lanes contribute exactly 0.
// kDyMagnitude: also sum |dy| (dweight asked for, with a weight).
// prefetch (may be null): the same columns of another row, asked for as the
// loop goes (see BackwardRowsT).
template <typename T, typename TW, bool kCentered, bool kWeight, bool kDyMagnitude>
HWY_INLINE GradientSums BlockGradientSums(const T* HWY_RESTRICT x, const T* HWY_RESTRICT dy, const TW* HWY_RESTRICT g,
                               int64_t column, int64_t count, double pivot, const T* prefetch) {
  using A = Arith<T>;
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto shift = hn::Set(d, static_cast<A>(pivot));  // the stored mean: exact in A
  auto gy0 = hn::Zero(d), gy1 = hn::Zero(d), dot0 = hn::Zero(d), dot1 = hn::Zero(d);
  auto mag0 = hn::Zero(d), mag1 = hn::Zero(d), dev0 = hn::Zero(d), dev1 = hn::Zero(d);
  auto dy_mag = hn::Zero(d);
  auto accumulate = [&](auto& gy_acc, auto& dot_acc, auto& mag_acc, auto& dev_acc, auto xv, auto dyv, int64_t i,
                        size_t tail) {
    if constexpr (kDyMagnitude) dy_mag = hn::Add(dy_mag, hn::Abs(dyv));
    const auto gy = ScaleByWeight<kWeight>(d, dyv, g, column + i, tail);
    if constexpr (kCentered) {
      xv = hn::Sub(xv, shift);
      if (tail) xv = hn::IfThenElseZero(hn::FirstN(d, tail), xv);  // padded lanes stay 0
      gy_acc = hn::Add(gy_acc, gy);
      dev_acc = hn::Add(dev_acc, xv);
    }
    dot_acc = hn::MulAdd(gy, xv, dot_acc);
    mag_acc = hn::Add(mag_acc, hn::Abs(gy));
  };
  int64_t i = 0;
  for (; i + 2 * N <= count; i += 2 * N) {
    if (prefetch) PrefetchBytes(prefetch + i, 2 * N * sizeof(T));
    accumulate(gy0, dot0, mag0, dev0, LoadAs(d, x + i), LoadAs(d, dy + i), i, 0);
    accumulate(gy1, dot1, mag1, dev1, LoadAs(d, x + i + N), LoadAs(d, dy + i + N), i + N, 0);
  }
  for (; i + N <= count; i += N) accumulate(gy0, dot0, mag0, dev0, LoadAs(d, x + i), LoadAs(d, dy + i), i, 0);
  if (i < count) {
    const size_t remaining = static_cast<size_t>(count - i);
    accumulate(gy1, dot1, mag1, dev1, LoadTail(d, x + i, remaining), LoadTail(d, dy + i, remaining), i, remaining);
  }
  auto total = [&](auto a, auto b) { return static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(a, b)))); };
  GradientSums sums;
  sums.dot = total(dot0, dot1);
  sums.gy_magnitude = total(mag0, mag1);
  if constexpr (kDyMagnitude) sums.dy_magnitude = total(dy_mag, hn::Zero(d));
  if constexpr (kCentered) {
    sums.sum_gy = total(gy0, gy1);
    sums.deviations = total(dev0, dev1);
  }
  return sums;
}

// The GradientSums of columns [c0, c1) of a row (one block) for the row
// loop's flags; |dy| is summed when dweight is asked for with a weight.
template <typename T, typename TW, bool kCentered, bool kWeight>
HWY_INLINE GradientSums BlockGradientSumsOf(const BackwardPlan& p, const T* x, const T* dy, int64_t c0, int64_t c1,
                                            double pivot, const T* prefetch) {
  const auto* g = static_cast<const TW*>(p.weight);
  const T* block_prefetch = prefetch ? prefetch + c0 : nullptr;
  GradientSums sums =
      kWeight && p.want_dweight
          ? BlockGradientSums<T, TW, kCentered, kWeight, true>(x + c0, dy + c0, g, c0, c1 - c0, pivot, block_prefetch)
          : BlockGradientSums<T, TW, kCentered, kWeight, false>(x + c0, dy + c0, g, c0, c1 - c0, pivot, block_prefetch);
  // pRMSNorm: the statistic never saw the elements past k (the block is in
  // cache now). Summed from the vector that holds k, its lanes before k left
  // out, so that the vectors stay aligned with the row and k costs no tail.
  const int64_t past_k = std::max(c0, p.norm.k);
  if (!kCentered && past_k < c1) {
    const int64_t lanes = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<Arith<T>>()));
    const int64_t start = past_k - (past_k - c0) % lanes;
    sums.x_magnitude_past_k = BlockSum<SumOf::kMagnitudes>(x + start, c1 - start, -1, past_k - start);
  }
  return sums;
}

// The same, the flags resolved at run time (the block-split path).
template <typename T, typename TW>
GradientSums BlockGradientSumsFor(const BackwardPlan& p, const T* x, const T* dy, int64_t c0, int64_t c1,
                                  double pivot) {
  return with_flags(
      [&](auto centered, auto weight) {
        return BlockGradientSumsOf<T, TW, flag_v<decltype(centered)>, flag_v<decltype(weight)>>(p, x, dy, c0, c1, pivot,
                                                                                              nullptr);
      },
      p.norm.centered, p.weight != nullptr);
}

// dx[i] for i < count, and the dweight/dbias terms into the chunk at column + i.
// The statistic's term (coef) applies to i < coef_end only (pRMSNorm's first
// k); the vector that holds k takes it in its lanes before k, so that k does
// not split the row into spans with tails of their own.
// kStream: full vectors of dx go out with non-temporal stores (dx vector-aligned,
// T the arithmetic type). dy is loaded before dx is stored: dx may be dy.
// kAddGradient: dx += dh_out[i] before the one rounding (the fused residual
// form, SPEC section 8); dh_out is loaded before dx is stored, so dx may be it.
// next (may be null, as may next.dh_out): the same columns of the next row's
// dy and dh_out, asked for a cache line at a time as the loop goes.
template <typename T>
struct NextRowGradients {
  const T* dy = nullptr;
  const T* dh_out = nullptr;
  NextRowGradients at(int64_t i) const { return {dy ? dy + i : nullptr, dh_out ? dh_out + i : nullptr}; }
};

template <typename T, typename TW, bool kCentered, bool kWeight, bool kAccumulate, bool kAddGradient,
          bool kStream = false>
void BackwardSpan(const T* HWY_RESTRICT x, const T* HWY_RESTRICT dy, const T* dh_out, T* HWY_RESTRICT dx,
                  const TW* HWY_RESTRICT g, Arith<T>* HWY_RESTRICT chunk_dweight, Arith<T>* HWY_RESTRICT chunk_dbias,
                  int64_t column, int64_t count, const RowStatistics& st, const RowGradient& grad, double coef_value,
                  int64_t coef_end, NextRowGradients<T> next = {}) {
  using A = Arith<T>;
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const SplitShift<A> split(st.mean, grad.mean_lo);
  const auto mean = hn::Set(d, split.hi), mean_lo = hn::Set(d, split.lo);
  const auto inv_r = hn::Set(d, static_cast<A>(st.inv_r));
  const auto a = hn::Set(d, static_cast<A>(grad.a));
  const auto coef = hn::Set(d, static_cast<A>(coef_value));
  const auto shift = hn::Set(d, static_cast<A>(grad.shift));
  const auto no_coef = hn::Zero(d);
  // kWhole: the whole span lies before k (RMSNorm, LayerNorm, pRMSNorm's
  // first vectors), and the loop carries no per-vector choice.
  auto run = [&](auto whole) {
  constexpr bool kWhole = decltype(whole)::value;
  auto one = [&](int64_t i, size_t tail) {
    const auto dyv = tail ? LoadTail(d, dy + i, tail) : LoadAs(d, dy + i);
    auto xv = tail ? LoadTail(d, x + i, tail) : LoadAs(d, x + i);
    if constexpr (kCentered) xv = Center(xv, mean, mean_lo);
    const auto gy = ScaleByWeight<kWeight>(d, dyv, g, column + i, tail);
    const auto coef_here = kWhole || i + N <= coef_end ? coef
                           : i >= coef_end             ? no_coef
                                                       : hn::IfThenElseZero(hn::FirstN(d, static_cast<size_t>(coef_end - i)), coef);
    auto dxv = hn::NegMulAdd(xv, coef_here, hn::Mul(a, hn::Add(gy, shift)));
    if constexpr (kAddGradient) dxv = hn::Add(dxv, tail ? LoadTail(d, dh_out + i, tail) : LoadAs(d, dh_out + i));
    if (tail) {
      StoreTail(d, dxv, dx + i, tail);
    } else if constexpr (kStream && std::is_same_v<T, A>) {
      hn::Stream(dxv, d, dx + i);
    } else {
      StoreAs(d, dxv, dx + i);
    }
    // Only the sums that were asked for: each is a load and a store of a
    // row-length chunk per row, as much traffic as dx itself.
    if constexpr (kAccumulate) {
      if (chunk_dweight) {
        A* dw = chunk_dweight + column + i;
        const auto dw_new = hn::MulAdd(dyv, hn::Mul(xv, inv_r), tail ? LoadTail(d, dw, tail) : hn::LoadU(d, dw));
        if (tail) {
          StoreTail(d, dw_new, dw, tail);
        } else {
          hn::StoreU(dw_new, d, dw);
        }
      }
      if (chunk_dbias) {
        A* db = chunk_dbias + column + i;
        const auto db_new = hn::Add(dyv, tail ? LoadTail(d, db, tail) : hn::LoadU(d, db));
        if (tail) {
          StoreTail(d, db_new, db, tail);
        } else {
          hn::StoreU(db_new, d, db);
        }
      }
    }
  };
  int64_t i = 0;
  if (next.dy) {
    for (; i + N <= count; i += N) {
      PrefetchLineAt(next.dy, i);
      PrefetchLineAt(next.dh_out, i);
      one(i, 0);
    }
  }
  for (; i + N <= count; i += N) one(i, 0);
  if (i < count) one(i, static_cast<size_t>(count - i));
  };
  if (coef_end >= count) {
    run(std::true_type{});
  } else {
    run(std::false_type{});
  }
}

// dx[row, c0..c1) tile by tile (streamed when asked); the statistic's term
// stops at k inside the spans (BackwardSpan). The same columns of the next
// row's dy and dh_out (`next`, may be null) are prefetched as the spans go.
template <typename T, typename TW, bool kCentered, bool kWeight, bool kAccumulate, bool kAddGradient>
void BackwardColumnsT(const BackwardPlan& p, const T* x, const T* dy, const T* dh_out, T* dx, int64_t c0, int64_t c1,
                      const RowStatistics& st, const RowGradient& grad, GradAccumulator& acc,
                      NextRowGradients<T> next) {
  using A = Arith<T>;
  const auto* g = static_cast<const TW*>(p.weight);
  auto* chunk_dw = p.want_dweight ? static_cast<A*>(acc.chunk_dweight) : nullptr;
  auto* chunk_db = p.want_dbias ? static_cast<A*>(acc.chunk_dbias) : nullptr;
  constexpr int64_t kTile = kStreamTileBytes / static_cast<int64_t>(sizeof(T));
  alignas(64) T tile[kTile];  // 16-bit outputs when streaming
  // float/double dx streams from registers, after a short head that brings
  // each segment to a vector boundary (as in forward.cpp's ApplyColumns).
  const bool direct = p.stream_output && std::is_same_v<T, A> && reinterpret_cast<uintptr_t>(dx) % sizeof(T) == 0;
  for (int64_t c = c0; c < c1;) {
    // Up to the end or the next tile boundary, whichever comes first.
    const int64_t end = std::min(c1, c + kTile);
    const size_t bytes = static_cast<size_t>(end - c) * sizeof(T);
    const double coef = grad.coef;
    // Elements [column, column + count) carry the statistic's term below k.
    auto coef_end = [&](int64_t column, int64_t count) { return std::clamp<int64_t>(p.norm.k - column, 0, count); };
    // dh_out's column i, formed only when there is one (offsetting a null
    // pointer is undefined behaviour; UBSan found it).
    auto dh_out_at = [&](int64_t i) -> const T* {
      if constexpr (kAddGradient) return dh_out + i;
      return nullptr;
    };
    if (direct) {
      const int64_t head = ElementsToVectorBoundary(dx + c, end - c);
      BackwardSpan<T, TW, kCentered, kWeight, kAccumulate, kAddGradient>(
          x + c, dy + c, dh_out_at(c), dx + c, g, chunk_dw, chunk_db, c, head, st, grad, coef, coef_end(c, head));
      BackwardSpan<T, TW, kCentered, kWeight, kAccumulate, kAddGradient, true>(
          x + c + head, dy + c + head, dh_out_at(c + head), dx + c + head, g, chunk_dw, chunk_db, c + head,
          end - c - head, st, grad, coef, coef_end(c + head, end - c - head), next.at(c + head));
      c = end;
      continue;
    }
    T* out = p.stream_output ? tile : dx + c;
    BackwardSpan<T, TW, kCentered, kWeight, kAccumulate, kAddGradient>(x + c, dy + c, dh_out_at(c), out, g, chunk_dw,
                                                                       chunk_db, c, end - c, st, grad, coef,
                                                                       coef_end(c, end - c), next.at(c));
    if (p.stream_output) StreamBytes(dx + c, tile, bytes);
    c = end;
  }
}

// Row `row`'s columns [c0, c1): its pointers, and the instantiation for the plan's flags.
template <typename T, typename TW>
void BackwardColumnsFor(const BackwardPlan& p, int64_t row, int64_t c0, int64_t c1, const RowStatistics& st,
                        const RowGradient& grad, GradAccumulator& acc, NextRowGradients<T> next = {}) {
  const T* x = row_pointer<T>(p.x, row, p.x_stride);
  const T* dy = row_pointer<T>(p.dy, row, p.dy_stride);
  const T* dh_out = p.dh_out ? row_pointer<T>(p.dh_out, row, p.dh_out_stride) : nullptr;
  T* dx = row_pointer<T>(p.dx, row, p.dx_stride);
  with_flags(
      [&](auto centered, auto weight, auto accumulate, auto add_gradient) {
        BackwardColumnsT<T, TW, flag_v<decltype(centered)>, flag_v<decltype(weight)>, flag_v<decltype(accumulate)>,
                         flag_v<decltype(add_gradient)>>(p, x, dy, dh_out, dx, c0, c1, st, grad, acc, next);
      },
      p.norm.centered, p.weight != nullptr, p.want_dweight || p.want_dbias, dh_out != nullptr);
}

// The statistics backward uses: the saved ones when all that the norm needs
// were given, else recomputed exactly as forward does.
template <typename T>
HWY_INLINE RowStatistics BackwardStatisticsT(const BackwardPlan& p, int64_t row) {
  using A = Arith<T>;
  constexpr bool kDouble = std::is_same_v<T, double>;
  const NormParams& norm = p.norm;
  const bool saved = p.saved_inv_rms && (!norm.centered || p.saved_mean);
  if (saved) {
    RowStatistics st;
    st.inv_r = static_cast<const A*>(p.saved_inv_rms)[row];
    st.mean = norm.centered ? static_cast<double>(static_cast<const A*>(p.saved_mean)[row]) : 0.0;
    const double limit = fast_range(kDouble).inv_r_limit;
    st.fast = std::isfinite(st.mean) && st.inv_r <= limit && st.inv_r >= 1.0 / limit;
    // "outside": s = r - eps as finalize_statistics derives it, unless eps is
    // so large a part of r that the subtraction would cancel; then recompute.
    const bool cancels = norm.eps_outside && outside_s_cancels(norm.eps, st.inv_r);
    if (norm.eps_outside && !cancels) st.s = outside_s(norm.eps, st.inv_r, 0.0);
    if (!cancels || !st.fast) return st;
  }
  return with_saved_mean(RowStatisticsOf(norm, row_pointer<T>(p.x, row, p.x_stride)), kDouble);
}

// The gradient sums of a whole row and its coefficients, for the flags of the
// row loop (kCentered, kWeight); |dy| is summed when dweight is asked for.
template <typename T, typename TW, bool kCentered, bool kWeight>
HWY_INLINE RowGradient RowGradientOf(const BackwardPlan& p, const T* x, const T* dy, const RowStatistics& st,
                                     const T* next_x) {
  GradientSums sums;
  for (int64_t c0 = 0; c0 < p.norm.n; c0 += kBlockElements) {
    sums += BlockGradientSumsOf<T, TW, kCentered, kWeight>(p, x, dy, c0, std::min(p.norm.n, c0 + kBlockElements), st.mean,
                                                           next_x);
  }
  return finalize_gradient(p.norm, st, sums, std::is_same_v<T, double>);
}

// A row's statistics and gradient coefficients, written into *st and *grad
// (grad->fast false when the row takes the slow path). One function per data
// and parameter type, not per flag combination of the row loop: inlined
// there, the sums (LayerNorm's statistics above all) made the sanitizer build
// of this file take tens of minutes. Written through pointers and read back a
// field at a time: a returned struct was copied in a wide load that waited on
// the callee's narrow stores (see forward.cpp's GroupStatistics).
template <typename T, typename TW>
HWY_NOINLINE void RowGradientInto(const BackwardPlan& p, int64_t row, const T* x, const T* dy, const T* next_x,
                                  RowStatistics* st, RowGradient* grad) {
  *st = BackwardStatisticsT<T>(p, row);
  grad->fast = false;
  if (!st->fast) return;
  with_flags(
      [&](auto centered, auto weight) {
        *grad = RowGradientOf<T, TW, flag_v<decltype(centered)>, flag_v<decltype(weight)>>(p, x, dy, *st, next_x);
      },
      p.norm.centered, p.weight != nullptr);
}

// The rows of one call for one combination of flags, with the dx pass called
// directly for those flags (as ForwardRowsFlagged: the flags used to be
// resolved twice per row).
template <typename T, typename TW, bool kCentered, bool kWeight, bool kAccumulate, bool kAddGradient>
void BackwardRowsFlagged(const BackwardPlan& p, int64_t row_begin, int64_t row_end, GradAccumulator& acc) {
  const int64_t n = p.norm.n;
  for (int64_t row = row_begin; row < row_end; ++row) {
    // Streaming from memory, the next row's inputs are asked for while this
    // row is worked on, spread over both passes so that memory stays busy
    // throughout: x during the sums, dy and dh_out during dx. (Asked for in
    // bursts during the dx pass only, as before, backward ran at 55-65% of
    // the copy rate at 4096x8192.) From the last-level cache the hardware
    // prefetcher does better: prefetching there made 2048x768 and 512x1024
    // backward with dweight 27-35% slower, unlike forward (ForwardPlan).
    const bool prefetch = p.stream_output && row + 1 < row_end;
    const T* next_x = prefetch ? row_pointer<T>(p.x, row + 1, p.x_stride) : nullptr;
    NextRowGradients<T> next;
    if (prefetch) {
      next.dy = row_pointer<T>(p.dy, row + 1, p.dy_stride);
      next.dh_out = kAddGradient ? row_pointer<T>(p.dh_out, row + 1, p.dh_out_stride) : nullptr;
    }
    const T* x = row_pointer<T>(p.x, row, p.x_stride);
    const T* dy = row_pointer<T>(p.dy, row, p.dy_stride);
    RowStatistics st;
    RowGradient grad;
    RowGradientInto<T, TW>(p, row, x, dy, next_x, &st, &grad);
    if (grad.fast && p.weight_in_range) {
      const T* dh_out = kAddGradient ? row_pointer<T>(p.dh_out, row, p.dh_out_stride) : nullptr;
      BackwardColumnsT<T, TW, kCentered, kWeight, kAccumulate, kAddGradient>(
          p, x, dy, dh_out, row_pointer<T>(p.dx, row, p.dx_stride), 0, n, st, grad, acc, next);
    } else {
      slow_backward_row(p, row, 0, n, acc);
    }
    if (kAccumulate && ++acc.rows_in_chunk == kRowsPerChunk) {
      flush_chunk(acc, std::is_same_v<T, double>, 0, n);
      acc.rows_in_chunk = 0;
    }
  }
  if (p.stream_output) hwy::FlushStream();
}

template <typename T, typename TW>
void BackwardRowsT(const BackwardPlan& p, int64_t row_begin, int64_t row_end, GradAccumulator& acc) {
  with_flags(
      [&](auto centered, auto weight, auto accumulate, auto add_gradient) {
        BackwardRowsFlagged<T, TW, flag_v<decltype(centered)>, flag_v<decltype(weight)>, flag_v<decltype(accumulate)>,
                            flag_v<decltype(add_gradient)>>(p, row_begin, row_end, acc);
      },
      p.norm.centered, p.weight != nullptr, p.want_dweight || p.want_dbias, p.dh_out != nullptr);
}

void BackwardRowsImpl(const BackwardPlan& p, int64_t row_begin, int64_t row_end, GradAccumulator& acc) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    BackwardRowsT<decltype(t), decltype(tw)>(p, row_begin, row_end, acc);
  });
}

void BackwardBlockSumsImpl(const BackwardPlan& p, int64_t row, int64_t block_begin, int64_t block_end, double pivot,
                           GradientSums* sums) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    const T* x = row_pointer<T>(p.x, row, p.x_stride);
    const T* dy = row_pointer<T>(p.dy, row, p.dy_stride);
    for (int64_t b = block_begin; b < block_end; ++b) {
      const int64_t c0 = b * kBlockElements;
      sums[b] = BlockGradientSumsFor<T, decltype(tw)>(p, x, dy, c0, std::min(p.norm.n, c0 + kBlockElements), pivot);
    }
  });
}

RowStatistics BackwardRowStatisticsImpl(const BackwardPlan& p, int64_t row) {
  RowStatistics st;
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto) { st = BackwardStatisticsT<decltype(t)>(p, row); });
  return st;
}

void BackwardColumnsImpl(const BackwardPlan& p, int64_t row, int64_t c0, int64_t c1, const RowStatistics& st,
                         const RowGradient& grad, GradAccumulator& acc) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    BackwardColumnsFor<decltype(t), decltype(tw)>(p, row, c0, c1, st, grad, acc);
    if (p.stream_output) hwy::FlushStream();
  });
}

}  // namespace rmsnorm::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rmsnorm::cpu {

HWY_EXPORT(BackwardRowsImpl);
HWY_EXPORT(BackwardBlockSumsImpl);
HWY_EXPORT(BackwardRowStatisticsImpl);
HWY_EXPORT(BackwardColumnsImpl);

void backward_rows(const BackwardPlan& plan, int64_t row_begin, int64_t row_end, GradAccumulator& acc) {
  RMSNORM_DISPATCH(BackwardRowsImpl, plan.simd_index)(plan, row_begin, row_end, acc);
}

void backward_block_sums(const BackwardPlan& plan, int64_t row, int64_t block_begin, int64_t block_end,
                         double pivot, GradientSums* sums) {
  RMSNORM_DISPATCH(BackwardBlockSumsImpl, plan.simd_index)(plan, row, block_begin, block_end, pivot, sums);
}

RowStatistics backward_row_statistics(const BackwardPlan& plan, int64_t row) {
  return RMSNORM_DISPATCH(BackwardRowStatisticsImpl, plan.simd_index)(plan, row);
}

void backward_columns(const BackwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                      const RowStatistics& st, const RowGradient& g, GradAccumulator& acc) {
  RMSNORM_DISPATCH(BackwardColumnsImpl, plan.simd_index)(plan, row, column_begin, column_end, st, g, acc);
}

}  // namespace rmsnorm::cpu
#endif  // HWY_ONCE
