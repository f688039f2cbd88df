// Per-target SIMD helpers shared by the kernel families: converting loads and
// stores between storage types and the arithmetic type, masked tails, block
// sums and non-temporal output. Included once per Highway target.
//
// Highway 1.0.3's float->bfloat16 DemoteTo truncates and its emulated
// float->float16 DemoteTo (SSE4 and below) truncates too; SPEC section 4 needs
// round-to-nearest-even everywhere, so the narrowing conversions are our own,
// identical on every target.

#if defined(RMSNORM_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef RMSNORM_SIMD_INL_H_
#undef RMSNORM_SIMD_INL_H_
#else
#define RMSNORM_SIMD_INL_H_
#endif

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace rmsnorm::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The arithmetic type for a storage type: float, or double for double data.
template <typename T>
struct ArithmeticOf {
  using type = float;
};
template <>
struct ArithmeticOf<double> {
  using type = double;
};
template <typename T>
using Arith = typename ArithmeticOf<T>::type;

// ---------------------------------------------------------------- narrowing

// float -> bfloat16, round to nearest even, the bfloat16 pattern in the high
// 16 bits of each 32-bit lane (the low 16 are left over from the rounding).
// Adding 0x7FFF plus the lowest kept bit carries into the kept bits exactly
// when round-to-nearest-even rounds up; infinity stays infinity, and the
// largest floats round to it as they should. kMayBeNaN: NaN becomes a quiet
// NaN with its payload's high bits. Without it a NaN lane's result is
// unspecified (the add can carry a NaN into infinity): for callers that know
// their values are not NaN, and it saves a compare and a select per vector.
template <bool kMayBeNaN, class DF>
HWY_INLINE auto BFloat16HighBits(DF /* tag */, hn::VFromD<DF> v) {
  const hn::RebindToUnsigned<DF> du32;
  const auto bits = hn::BitCast(du32, v);
  const auto lowest_kept_bit = hn::And(hn::ShiftRight<16>(bits), hn::Set(du32, 1u));
  const auto rounded = hn::Add(bits, hn::Add(hn::Set(du32, 0x7FFFu), lowest_kept_bit));
  if constexpr (!kMayBeNaN) return rounded;
  const auto quiet_nan = hn::Or(bits, hn::Set(du32, 0x00400000u));
  return hn::IfThenElse(hn::RebindMask(du32, hn::IsNaN(v)), quiet_nan, rounded);
}

// As BFloat16HighBits, the pattern in the low 16 bits of each 32-bit lane.
template <class DF>
HWY_INLINE auto BFloat16Bits(DF df, hn::VFromD<DF> v) {
  return hn::ShiftRight<16>(BFloat16HighBits</*kMayBeNaN=*/true>(df, v));
}

template <class DF>
HWY_INLINE auto DemoteToBFloat16(DF df, hn::VFromD<DF> v) {
  const hn::RebindToSigned<DF> di32;
  const hn::Rebind<uint16_t, DF> du16;
  const hn::Rebind<hwy::bfloat16_t, DF> dbf16;
  return hn::BitCast(dbf16, hn::DemoteTo(du16, hn::BitCast(di32, BFloat16Bits(df, v))));
}

// float -> float16, round to nearest even, overflow to infinity, subnormals
// rounded correctly. The rounding is done by one float addition that aligns the
// value to the float16 grid of its binade (the technique of M. Dukhan's FP16
// library, github.com/Maratyszcza/FP16): adding 2^(e+15-127+...) leaves exactly
// the bits float16 keeps, rounded by the FPU.
// The float16 pattern in the low 16 bits of each 32-bit lane.
template <class DF>
HWY_INLINE auto Float16Bits(DF df, hn::VFromD<DF> v) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::RebindToSigned<DF> di32;
  const auto bits = hn::BitCast(du32, v);
  const auto sign = hn::ShiftRight<16>(hn::And(bits, hn::Set(du32, 0x80000000u)));
  // |v| * 2^112 * 2^-110: overflows to infinity exactly when float16 would.
  auto magnitude = hn::Mul(hn::Mul(hn::Abs(v), hn::Set(df, 5.192296858534828e+33f)),  // 2^112
                           hn::Set(df, 7.703719777548943e-34f));                        // 2^-110
  // The float exponent, clamped below so float16 subnormals share one grid.
  auto exponent = hn::BitCast(di32, hn::And(hn::ShiftRight<23>(bits), hn::Set(du32, 0xFFu)));
  exponent = hn::Max(exponent, hn::Set(di32, 0x71));
  const auto aligner = hn::BitCast(df, hn::ShiftLeft<23>(hn::Add(exponent, hn::Set(di32, 15))));
  magnitude = hn::Add(aligner, magnitude);
  const auto aligned = hn::BitCast(du32, magnitude);
  const auto exponent_bits = hn::And(hn::ShiftRight<13>(aligned), hn::Set(du32, 0x7C00u));
  const auto mantissa_bits = hn::And(aligned, hn::Set(du32, 0x0FFFu));
  auto result = hn::Add(exponent_bits, mantissa_bits);
  result = hn::IfThenElse(hn::RebindMask(du32, hn::IsNaN(v)), hn::Set(du32, 0x7E00u), result);
  return hn::Or(result, sign);
}

template <class DF>
HWY_INLINE auto DemoteToFloat16(DF df, hn::VFromD<DF> v) {
  const hn::RebindToSigned<DF> di32;
  const hn::Rebind<uint16_t, DF> du16;
  const hn::Rebind<hwy::float16_t, DF> df16;
  return hn::BitCast(df16, hn::DemoteTo(du16, hn::BitCast(di32, Float16Bits(df, v))));
}

// ---------------------------------------------------------------- widening

// Targets without F16C (SSE4 and below, and the portable ones) widen float16
// in software; Highway 1.0.3's emulation there turns NaN and infinity into
// finite numbers, so these targets use ours.
inline constexpr bool kSoftwareFloat16 =
    HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_EMU128 || HWY_TARGET == HWY_SCALAR;

// float16 -> float, exact for every pattern: the exponent and mantissa moved
// into float's position and multiplied by 2^112 (which rebiases the exponent
// and turns float16 subnormals into the float normals they equal); exponent 31
// becomes 255, keeping infinities and NaN payloads.
// `bits`: float16 patterns in the low 16 bits of 32-bit lanes.
template <class DF>
HWY_INLINE hn::VFromD<DF> Float16BitsToFloat(DF df, hn::VFromD<hn::RebindToUnsigned<DF>> bits) {
  const hn::RebindToUnsigned<DF> du32;
  const auto sign = hn::ShiftLeft<16>(hn::And(bits, hn::Set(du32, 0x8000u)));
  const auto moved = hn::ShiftLeft<13>(hn::And(bits, hn::Set(du32, 0x7FFFu)));
  const auto finite = hn::BitCast(du32, hn::Mul(hn::BitCast(df, moved), hn::Set(df, 0x1.0p112f)));
  const auto exponent = hn::And(bits, hn::Set(du32, 0x7C00u));
  const auto special = hn::Or(moved, hn::Set(du32, 0x7F800000u));
  const auto magnitude = hn::IfThenElse(hn::Eq(exponent, hn::Set(du32, 0x7C00u)), special, finite);
  return hn::BitCast(df, hn::Or(magnitude, sign));
}

template <class DF>
HWY_INLINE hn::VFromD<DF> PromoteFromFloat16(DF df, const hwy::float16_t* HWY_RESTRICT p) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint16_t, DF> du16;
  return Float16BitsToFloat(df, hn::PromoteTo(du32, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p))));
}

// v rounded to the storage type T (round to nearest even, as StoreAs) and
// widened back, without leaving the registers: Rounding::kBeforeWeight rounds
// the normalized value to the data's dtype before the weight multiplies it.
// The identity for float and double. kMayBeNaN: as BFloat16HighBits.
template <typename T, bool kMayBeNaN = true, class D>
HWY_INLINE hn::VFromD<D> RoundThroughInline(D d, hn::VFromD<D> v) {
  if constexpr (std::is_same_v<T, hwy::bfloat16_t>) {
    const hn::RebindToUnsigned<D> du32;
    return hn::BitCast(d, hn::And(BFloat16HighBits<kMayBeNaN>(d, v), hn::Set(du32, 0xFFFF0000u)));
  } else if constexpr (std::is_same_v<T, hwy::float16_t>) {
    return Float16BitsToFloat(d, Float16Bits(d, v));
  } else {
    return v;
  }
}

// ---------------------------------------------------------------- load/store

// Loads Lanes(d) elements of a 16-bit type T, widened to d's type (float).
template <class D, typename T>
HWY_INLINE hn::VFromD<D> LoadWidened(D d, const T* HWY_RESTRICT p) {
  if constexpr (std::is_same_v<T, hwy::float16_t> && kSoftwareFloat16) {
    return PromoteFromFloat16(d, p);
  } else {
    return hn::PromoteTo(d, hn::LoadU(hn::Rebind<T, D>(), p));
  }
}

// Stores v rounded to the 16-bit type T.
template <class D, typename T>
HWY_INLINE void StoreNarrowed(D d, hn::VFromD<D> v, T* HWY_RESTRICT p) {
  if constexpr (std::is_same_v<T, hwy::bfloat16_t>) {
    hn::StoreU(DemoteToBFloat16(d, v), hn::Rebind<T, D>(), p);
  } else {
    static_assert(std::is_same_v<T, hwy::float16_t>, "unsupported storage type");
    hn::StoreU(DemoteToFloat16(d, v), hn::Rebind<T, D>(), p);
  }
}

// On the emulated targets every vector operation is a loop over lanes, and
// the 16-bit conversions, inlined at each of their uses in every flag
// combination, took most of the compile time of forward.cpp and backward.cpp
// under the sanitizers (EMU128 was 230 s of backward.cpp's 340 s of
// optimization, float16 the most). There they are calls: the same operations
// in the same order, so the same results. EMU128 is the fallback for CPUs
// without SSE4, and not tuned for speed.
inline constexpr bool kConversionsOutOfLine = HWY_TARGET == HWY_EMU128 || HWY_TARGET == HWY_SCALAR;

template <class D, typename T>
HWY_NOINLINE hn::VFromD<D> LoadWidenedCall(D d, const T* HWY_RESTRICT p) {
  return LoadWidened(d, p);
}

template <class D, typename T>
HWY_NOINLINE void StoreNarrowedCall(D d, hn::VFromD<D> v, T* HWY_RESTRICT p) {
  StoreNarrowed(d, v, p);
}

// Loads Lanes(d) elements of T and returns them in d's type (float or double).
template <class D, typename T>
HWY_INLINE hn::VFromD<D> LoadAs(D d, const T* HWY_RESTRICT p) {
  using A = hn::TFromD<D>;
  if constexpr (std::is_same_v<T, A>) {
    return hn::LoadU(d, p);
  } else if constexpr (kConversionsOutOfLine) {
    return LoadWidenedCall(d, p);
  } else {
    return LoadWidened(d, p);
  }
}

template <class D, typename T>
HWY_INLINE void StoreAs(D d, hn::VFromD<D> v, T* HWY_RESTRICT p) {
  using A = hn::TFromD<D>;
  if constexpr (std::is_same_v<T, A>) {
    hn::StoreU(v, d, p);
  } else if constexpr (kConversionsOutOfLine) {
    StoreNarrowedCall(d, v, p);
  } else {
    StoreNarrowed(d, v, p);
  }
}

// Stores v0 then v1, 2 * Lanes(d) elements, rounded to T as StoreAs does.
// bfloat16 takes the high halves of both vectors' lanes in one permute and
// stores them at once, where StoreAs packs, permutes and stores each vector
// (on AVX-512 a vpermt2w and a 64-byte store for two vectors, against two
// vpackusdw, two vpermq and two 32-byte stores). kMayBeNaN: as
// BFloat16HighBits; the caller passes false only when neither vector can hold
// a NaN.
template <bool kMayBeNaN = true, class D, typename T>
HWY_INLINE void StorePairAs(D d, hn::VFromD<D> v0, hn::VFromD<D> v1, T* HWY_RESTRICT p) {
#if HWY_TARGET != HWY_SCALAR  // (which has no ConcatOdd; and conversions out of line)
  if constexpr (std::is_same_v<T, hwy::bfloat16_t> && !kConversionsOutOfLine) {
    const hn::Repartition<uint16_t, D> du16;
    const auto low = hn::BitCast(du16, BFloat16HighBits<kMayBeNaN>(d, v0));
    const auto high = hn::BitCast(du16, BFloat16HighBits<kMayBeNaN>(d, v1));
    hn::StoreU(hn::ConcatOdd(du16, high, low), du16, reinterpret_cast<uint16_t*>(p));
    return;
  }
#endif
  StoreAs(d, v0, p);
  StoreAs(d, v1, p + hn::Lanes(d));
}

template <typename T, class D>
HWY_NOINLINE hn::VFromD<D> RoundThroughCall(D d, hn::VFromD<D> v) {
  return RoundThroughInline<T>(d, v);
}

// RoundThroughInline, a call on the emulated targets (kConversionsOutOfLine),
// which always handle NaN.
template <typename T, bool kMayBeNaN = true, class D>
HWY_INLINE hn::VFromD<D> RoundThrough(D d, hn::VFromD<D> v) {
  if constexpr (kConversionsOutOfLine && !std::is_same_v<T, hn::TFromD<D>>) {
    return RoundThroughCall<T>(d, v);
  } else {
    return RoundThroughInline<T, kMayBeNaN>(d, v);
  }
}

// The largest number of lanes any target has for A, for stack buffers.
template <typename A>
constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);

// Loads count < Lanes(d) elements; the remaining lanes are zero.
template <class D, typename T>
HWY_INLINE hn::VFromD<D> LoadTail(D d, const T* HWY_RESTRICT p, size_t count) {
  alignas(64) T buffer[kMaxLanes<hn::TFromD<D>>] = {};
  std::memcpy(buffer, p, count * sizeof(T));
  return LoadAs(d, buffer);
}

template <class D, typename T>
HWY_INLINE void StoreTail(D d, hn::VFromD<D> v, T* HWY_RESTRICT p, size_t count) {
  alignas(64) T buffer[kMaxLanes<hn::TFromD<D>>];
  StoreAs(d, v, buffer);
  std::memcpy(p, buffer, count * sizeof(T));
}

// ---------------------------------------------------------------- centering

// A double-double shift m + m_lo as hi + lo in the arithmetic type A. x - m is
// formed as (x - hi) - lo: rounding m to float alone would move every centered
// value by up to |m| * 2^-24, which is large against the row's spread when
// |mean| >> spread (LayerNorm of rows like 1000 + noise); for double data the
// mean is carried as two doubles for the same reason.
template <typename A>
struct SplitShift {
  A hi, lo;
  explicit SplitShift(double m, double m_lo = 0.0)
      : hi(static_cast<A>(m)), lo(static_cast<A>((m - static_cast<double>(static_cast<A>(m))) + m_lo)) {}
};

template <class V>
HWY_INLINE V Center(V v, V hi, V lo) {
  return hn::Sub(hn::Sub(v, hi), lo);
}

// ---------------------------------------------------------------- block sums

// (LayerNorm's sums have their own loops, BlockShiftedSums and
// BlockCenteredSums, which sum squares and deviations together.)
enum class SumOf { kSquares, kMagnitudes };

// One term of a sum, added to acc.
template <SumOf kWhat, class V>
HWY_INLINE V AddTerm(V acc, V v) {
  if constexpr (kWhat == SumOf::kSquares) {
    return hn::MulAdd(v, v, acc);
  } else {
    // Sum of |x|: NaN or infinite when an element is, and otherwise the
    // stretch's scale (pRMSNorm's elements past k, for the range check).
    return hn::Add(acc, hn::Abs(v));
  }
}

// The sum over x[0, count) of one kind of term, count <= kBlockElements.
// Four accumulators hide the FMA latency; their order is fixed per target.
// readable: how many elements from x may be read (>= count). A tail that lies
// within them is loaded as a whole vector, its lanes past count masked, rather
// than copied through a stack buffer: pRMSNorm's k rarely falls on a vector
// boundary, and at n = 128, k = 8 that copy made its statistic dearer than
// RMSNorm's whole row. The sum is the same either way. skip: lanes of the
// first vector to leave out (the sum is over x[skip, count)), skip < lanes.
// also: told of every vector the loop reads (its first element's index; four
// (or, in other loops, two) at once in the unrolled loop, whose four accumulators it may mirror; the
// lanes of a tail), to look at another array's same elements in the same pass
// (the forward's weight check, WeightRangeVisitor in forward.cpp).
struct VisitNothing {
  HWY_INLINE void Vector(int64_t /* i */) {}
  HWY_INLINE void TwoVectors(int64_t /* i */) {}
  HWY_INLINE void FourVectors(int64_t /* i */) {}
  HWY_INLINE void Tail(int64_t /* i */, size_t /* remaining */) {}
};

template <SumOf kWhat, typename T, class Also = VisitNothing>
HWY_INLINE double BlockSum(const T* HWY_RESTRICT x, int64_t count, int64_t readable = -1, int64_t skip = 0,
                           Also&& also = Also()) {
  using A = Arith<T>;
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  if (skip > 0 && count >= N) {
    const auto term = AddTerm<kWhat>(hn::Zero(d), LoadAs(d, x));
    s2 = hn::IfThenZeroElse(hn::FirstN(d, static_cast<size_t>(skip)), term);
    also.Vector(0);
    i = N;
  }
  for (; i + 4 * N <= count; i += 4 * N) {
    s0 = AddTerm<kWhat>(s0, LoadAs(d, x + i));
    s1 = AddTerm<kWhat>(s1, LoadAs(d, x + i + N));
    s2 = AddTerm<kWhat>(s2, LoadAs(d, x + i + 2 * N));
    s3 = AddTerm<kWhat>(s3, LoadAs(d, x + i + 3 * N));
    also.FourVectors(i);
  }
  for (; i + N <= count; i += N) {
    s0 = AddTerm<kWhat>(s0, LoadAs(d, x + i));
    also.Vector(i);
  }
  if (i < count) {
    const size_t remaining = static_cast<size_t>(count - i);
    also.Tail(i, remaining);
    const bool whole_vector = i + N <= std::max(readable, count);
    const auto term = AddTerm<kWhat>(hn::Zero(d), whole_vector ? LoadAs(d, x + i) : LoadTail(d, x + i, remaining));
    auto kept = hn::FirstN(d, remaining);
    if (i == 0 && skip > 0) kept = hn::AndNot(hn::FirstN(d, static_cast<size_t>(skip)), kept);
    s1 = hn::Add(s1, hn::IfThenElseZero(kept, term));
  }
  const auto total = hn::Add(hn::Add(s0, s1), hn::Add(s2, s3));
  return static_cast<double>(hn::GetLane(hn::SumOfLanes(d, total)));
}

// LayerNorm's second pass over one block: the sums of (x - m)^2 and of
// (x - m) for the first estimate m = hi + lo of the mean. The second corrects
// the mean (corrected two-pass algorithm): the first estimate, summed from the
// row's first element, can be off by float rounding of |x - x0| when x0 lies
// far from the rest.
struct CenteredSums {
  double squares = 0.0, deviations = 0.0;
};

template <typename T>
HWY_INLINE CenteredSums BlockCenteredSums(const T* HWY_RESTRICT x, int64_t count, double hi_value, double lo_value) {
  using A = Arith<T>;
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const SplitShift<A> split(hi_value, lo_value);
  const auto hi = hn::Set(d, split.hi), lo = hn::Set(d, split.lo);
  auto sq0 = hn::Zero(d), sq1 = hn::Zero(d), dev0 = hn::Zero(d), dev1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= count; i += 2 * N) {
    const auto c0 = Center(LoadAs(d, x + i), hi, lo), c1 = Center(LoadAs(d, x + i + N), hi, lo);
    sq0 = hn::MulAdd(c0, c0, sq0);
    sq1 = hn::MulAdd(c1, c1, sq1);
    dev0 = hn::Add(dev0, c0);
    dev1 = hn::Add(dev1, c1);
  }
  for (; i + N <= count; i += N) {
    const auto c = Center(LoadAs(d, x + i), hi, lo);
    sq0 = hn::MulAdd(c, c, sq0);
    dev0 = hn::Add(dev0, c);
  }
  if (i < count) {
    const size_t remaining = static_cast<size_t>(count - i);
    const auto c = hn::IfThenElseZero(hn::FirstN(d, remaining), Center(LoadTail(d, x + i, remaining), hi, lo));
    sq1 = hn::MulAdd(c, c, sq1);
    dev1 = hn::Add(dev1, c);
  }
  CenteredSums sums;
  sums.squares = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(sq0, sq1))));
  sums.deviations = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(dev0, dev1))));
  return sums;
}

// LayerNorm's one pass over a block: the sums of (x - pivot)^2 and of
// x - pivot (one_pass_spread). The pivot is a value of the arithmetic type,
// so x - pivot is one rounding. Four chains of each: the FMA latency, not the
// loads, bounded the two-chain loop on rows in cache.
template <typename T>
HWY_INLINE CenteredSums BlockShiftedSums(const T* HWY_RESTRICT x, int64_t count, double pivot_value) {
  using A = Arith<T>;
  const hn::ScalableTag<A> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto pivot = hn::Set(d, static_cast<A>(pivot_value));
  auto sq0 = hn::Zero(d), sq1 = hn::Zero(d), sq2 = hn::Zero(d), sq3 = hn::Zero(d);
  auto dev0 = hn::Zero(d), dev1 = hn::Zero(d), dev2 = hn::Zero(d), dev3 = hn::Zero(d);
  auto add = [&](auto& sq, auto& dev, hn::VFromD<decltype(d)> c) {
    sq = hn::MulAdd(c, c, sq);
    dev = hn::Add(dev, c);
  };
  int64_t i = 0;
  for (; i + 4 * N <= count; i += 4 * N) {
    add(sq0, dev0, hn::Sub(LoadAs(d, x + i), pivot));
    add(sq1, dev1, hn::Sub(LoadAs(d, x + i + N), pivot));
    add(sq2, dev2, hn::Sub(LoadAs(d, x + i + 2 * N), pivot));
    add(sq3, dev3, hn::Sub(LoadAs(d, x + i + 3 * N), pivot));
  }
  for (; i + N <= count; i += N) add(sq0, dev0, hn::Sub(LoadAs(d, x + i), pivot));
  if (i < count) {
    const size_t remaining = static_cast<size_t>(count - i);
    add(sq1, dev1, hn::IfThenElseZero(hn::FirstN(d, remaining), hn::Sub(LoadTail(d, x + i, remaining), pivot)));
  }
  CenteredSums sums;
  sums.squares = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(sq0, sq1), hn::Add(sq2, sq3)))));
  sums.deviations =
      static_cast<double>(hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(dev0, dev1), hn::Add(dev2, dev3)))));
  return sums;
}

// The sum over [begin, end) in blocks of kBlockElements aligned to the row start,
// added in order: the same value however the blocks are shared among threads.
// readable_end: the row's elements that may be read to finish a tail (BlockSum).
// also: as BlockSum's, told of element indices from the row's start.
template <SumOf kWhat, typename T, class Also = VisitNothing>
HWY_INLINE double RowSum(const T* HWY_RESTRICT row, int64_t begin, int64_t end, int64_t readable_end = -1,
                         Also&& also = Also()) {
  double total = 0.0;
  for (int64_t b = begin; b < end; b += kBlockElements) {
    const int64_t count = std::min(end, b + kBlockElements) - b;
    struct FromRowStart {
      Also& also;
      int64_t b;
      HWY_INLINE void Vector(int64_t i) { also.Vector(b + i); }
      HWY_INLINE void FourVectors(int64_t i) { also.FourVectors(b + i); }
      HWY_INLINE void Tail(int64_t i, size_t remaining) { also.Tail(b + i, remaining); }
    };
    total += BlockSum<kWhat>(row + b, count, std::max(readable_end, end) - b, 0, FromRowStart{also, b});
  }
  return total;
}

// The mean of a row's first vector (its first min(n, lanes) elements) in the
// arithmetic type: LayerNorm's pivot (one_pass_spread). For a row whose first
// elements are typical of it, it lies well inside the row's spread.
template <typename T>
HWY_INLINE double VectorPivot(const T* HWY_RESTRICT row, int64_t n) {
  using A = Arith<T>;
  const hn::ScalableTag<A> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t count = std::min(n, lanes);
  const auto v = count == lanes ? LoadAs(d, row) : LoadTail(d, row, static_cast<size_t>(count));
  return static_cast<double>(hn::GetLane(hn::SumOfLanes(d, v)) / static_cast<A>(count));
}

// ---------------------------------------------------------------- streaming

// Copies bytes to dst with non-temporal stores where dst is vector-aligned,
// so that a large output does not first read every destination line.
HWY_INLINE void StreamBytes(void* HWY_RESTRICT dst_void, const void* HWY_RESTRICT src_void, size_t bytes) {
  const hn::ScalableTag<uint8_t> d8;
  const size_t N = hn::Lanes(d8);
  auto* dst = static_cast<uint8_t*>(dst_void);
  const auto* src = static_cast<const uint8_t*>(src_void);
  const size_t misalignment = reinterpret_cast<uintptr_t>(dst) % N;
  size_t head = misalignment == 0 ? 0 : std::min(bytes, N - misalignment);
  std::memcpy(dst, src, head);
  size_t i = head;
  for (; i + N <= bytes; i += N) hn::Stream(hn::LoadU(d8, src + i), d8, dst + i);
  std::memcpy(dst + i, src + i, bytes - i);
}

// Asks for [p, p + bytes) to be brought into cache, one request per line. The
// kernels call it for the next row while they write the current one, so the
// next row's reads overlap this row's writes; without it a single thread
// alternates between reading and writing and reaches ~70% of copy bandwidth.
HWY_INLINE void PrefetchBytes(const void* p, size_t bytes) {
  if (p == nullptr) return;
  const auto* bytes_ptr = static_cast<const char*>(p);
  for (size_t i = 0; i < bytes; i += 64) __builtin_prefetch(bytes_ptr + i, 0, 2);
}

// Inside a loop over elements i of a row, asks for the line of p + i whenever
// i begins another 64 bytes: one request per line, however many elements a
// vector holds. p may be null (and is then not offset: that is undefined).
template <typename T>
HWY_INLINE void PrefetchLineAt(const T* p, int64_t i) {
  if (p != nullptr && (i * static_cast<int64_t>(sizeof(T))) % 64 == 0) __builtin_prefetch(p + i, 0, 2);
}

// How many of the `limit` elements from p lie before p's next vector boundary
// (0 when p is on one): the head written with ordinary stores before a span
// is streamed from registers. p must be element-aligned.
template <typename T>
HWY_INLINE int64_t ElementsToVectorBoundary(const T* p, int64_t limit) {
  const size_t vector_bytes = hn::Lanes(hn::ScalableTag<T>()) * sizeof(T);
  const size_t misalignment = reinterpret_cast<uintptr_t>(p) % vector_bytes;
  if (misalignment == 0) return 0;
  return std::min<int64_t>(limit, static_cast<int64_t>((vector_bytes - misalignment) / sizeof(T)));
}

// Elements per tile when streaming: the tile stays in L1 between the kernel's
// store and the non-temporal copy.
inline constexpr int64_t kStreamTileBytes = 8192;

}  // namespace rmsnorm::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // RMSNORM_SIMD_INL_H_
