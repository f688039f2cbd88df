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

// The statistics of a whole row, in blocks (see RowSum).
template <typename T>
RowStatistics RowStatisticsOf(const NormParams& p, const T* HWY_RESTRICT src) {
  constexpr bool kDouble = std::is_same_v<T, double>;
  if (p.centered) {
    const double pivot = FirstElement(src);
    const RowMean mean = row_mean(pivot, RowSum<SumOf::kValues>(src, 0, p.n, pivot), p.n);
    const bool finite = std::isfinite(mean.hi) && std::isfinite(mean.lo);
    const double squares = finite ? RowSum<SumOf::kSquaredDeviations>(src, 0, p.n, mean.hi, mean.lo) : mean.hi;
    return finalize_statistics(p, mean, squares, true, kDouble);
  }
  const double squares = RowSum<SumOf::kSquares>(src, 0, p.k, 0.0);
  const bool rest_finite = p.k == p.n || RowSum<SumOf::kZeroProducts>(src, p.k, p.n, 0.0) == 0.0;
  return finalize_statistics(p, RowMean{}, squares, rest_finite, kDouble);
}

}  // namespace rmsnorm::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // RMSNORM_STATISTICS_INL_H_
