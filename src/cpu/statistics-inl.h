// Per-target: the statistics of a row (mean, 1/r), computed the same way by
// forward and by backward when backward is given no saved statistics, so both
// see bitwise the same values.

#if defined(RMSNORM_STATISTICS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef RMSNORM_STATISTICS_INL_H_
#undef RMSNORM_STATISTICS_INL_H_
#else
#define RMSNORM_STATISTICS_INL_H_
#endif

#include "src/cpu/kernels.hpp"
#include "src/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rmsnorm::cpu::HWY_NAMESPACE {

// The statistics of a whole row, in blocks (see RowSum). Inlined: returned
// from a call, the struct went through memory in narrow stores that the
// caller read back in one wide load, which cannot be forwarded from them and
// waited for the stores, and so for the row's whole chain of division and
// square root, before the next row's sums could start (41% of a 32x256 call).
template <typename T>
HWY_INLINE RowStatistics RowStatisticsOf(const NormParams& p, const T* HWY_RESTRICT src) {
  constexpr bool kDouble = std::is_same_v<T, double>;
  if (p.centered) {
    // One pass around the pivot; a second around the mean only where the
    // first cannot be trusted (one_pass_spread).
    const double pivot = VectorPivot(src, p.n);
    CenteredSums shifted;
    for (int64_t b = 0; b < p.n; b += kBlockElements) {  // blocks in order, as the split path adds them
      const CenteredSums block = BlockShiftedSums(src + b, std::min(p.n, b + kBlockElements) - b, pivot);
      shifted.squares += block.squares;
      shifted.deviations += block.deviations;
    }
    const RowMean mean = row_mean(pivot, shifted.deviations, p.n);
    const double spread = one_pass_spread(shifted.deviations, shifted.squares, p.n, kDouble);
    if (!std::isnan(spread)) return finalize_statistics(p, mean, spread, kDouble);
    const bool finite = std::isfinite(mean.hi) && std::isfinite(mean.lo);
    if (!finite) return finalize_statistics(p, mean, mean.hi, kDouble);
    CenteredSums sums;
    for (int64_t b = 0; b < p.n; b += kBlockElements) {  // blocks in order, as the split path adds them
      const CenteredSums block = BlockCenteredSums(src + b, std::min(p.n, b + kBlockElements) - b, mean.hi, mean.lo);
      sums.squares += block.squares;
      sums.deviations += block.deviations;
    }
    return finalize_statistics(p, corrected_mean(mean, sums.deviations, p.n, kDouble),
                               corrected_squares(sums.squares, sums.deviations, p.n), kDouble);
  }
  // pRMSNorm reads its first k elements only (SPEC section 4).
  // (The rest of the row may be read, masked, to finish the last vector.)
  return finalize_statistics(p, RowMean{}, RowSum<SumOf::kSquares>(src, 0, p.k, p.n), kDouble);
}

}  // namespace rmsnorm::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // RMSNORM_STATISTICS_INL_H_
