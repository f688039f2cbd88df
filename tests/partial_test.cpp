// pRMSNorm's statistic reads only the first k elements of a row (SPEC section
// 4): whatever lies past k, NaN, Inf or values far beyond the row's RMS,
// reaches its own output by IEEE arithmetic and nothing else, and backward
// (which reads the whole row for c = sum gy x) still meets the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

class PartialStatistic : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, PartialStatistic, every_target(), target_name);

// Values past k far above the first k: the statistic does not see them, and
// y = x * (1/r * g) is formed with one rounding, on the fast path.
TEST_P(PartialStatistic, HugeValuesPastKAreNormalizedAndDifferentiated) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat64}) {
    // 1e30 past k against ~1 before it: within float's range after dividing by r.
    const double huge = dtype == DType::kFloat64 ? 1e290 : 1e30;
    for (int64_t n : {16, 100, 4099}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " n = " + std::to_string(n));
      const NormOptions o = rms(0.0625);
      const int64_t k = partial_count(n, o.p);
      TypedMatrix x = random_matrix(dtype, 3, n, n);
      for (int64_t r = 0; r < 3; ++r) {
        for (int64_t c = 0; c < n; ++c) x.set(r, c, c < k ? 1.0 + 0.01 * c : huge * (c % 3 ? 1 : -1) * (1 + 0.001 * c));
      }
      const TypedVector weight = random_vector(dtype, n, 1.0, 0.5);
      std::vector<double> inv_rms(3);
      const TypedMatrix y = forward_of(o, x, weight, inv_rms.data());
      ASSERT_EQ(compare_rows(y, reference::forward(o, x.values(), weight.values, {}).y), "");
      // Gradients of the same rows, with the statistic saved and recomputed:
      // dweight's terms dy * x / r are ~huge, far from dy.
      TypedMatrix dy = random_matrix(dtype, 3, n, n);
      for (int64_t c = 0; c < n; ++c) dy.set(0, c, dy.get(0, c) / huge);  // row 0: dx small, dweight ~1
      for (const void* saved : {static_cast<const void*>(inv_rms.data()), static_cast<const void*>(nullptr)}) {
        const Gradients g = backward_of(o, x, dy, weight, saved);
        ASSERT_EQ(check_backward_outputs(o, x, dy, weight, g.dx, g.dweight.data(), weight.dtype, nullptr), "")
            << (saved ? "saved statistics" : "recomputed statistics");
      }
    }
  }
}

// A NaN or Inf past k: forward gives it to its own element alone; backward's
// c = sum gy x runs over the whole row, so that row's dx is NaN, while the
// statistic stays finite and dweight is non-finite in that column only.
TEST_P(PartialStatistic, NonFiniteValuesPastKReachOnlyTheirOwnElements) {
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(), INFINITY, -INFINITY};
  for (DType dtype : all_dtypes()) {
    for (double special : specials) {
      const int64_t n = 37;
      const NormOptions o = rms(0.25);
      const int64_t k = partial_count(n, o.p);
      // Right after k, in the vector whose lanes before k the statistic
      // reads (the lanes past k are loaded and masked), and far past it.
      for (int64_t column : {k, k + 1, n - 5}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " special " + std::to_string(special) + " at column " +
                   std::to_string(column) + ", k = " + std::to_string(k));
      const TypedMatrix clean = random_matrix(dtype, 2, n, n);
      TypedMatrix x = clean;
      x.set(0, column, special);
      const TypedVector weight = vector_of(dtype, std::vector<double>(static_cast<size_t>(n), 1.5));
      const TypedMatrix y = forward_of(o, x, weight);
      const TypedMatrix clean_y = forward_of(o, clean, weight);
      for (int64_t c = 0; c < n; ++c) {
        if (c == column) {
          if (std::isnan(special)) {
            ASSERT_TRUE(std::isnan(y.get(0, c)));
          } else {
            ASSERT_EQ(y.get(0, c), special) << "x / r * 1.5 keeps the infinity";
          }
        } else {
          ASSERT_EQ(y.get(0, c), clean_y.get(0, c)) << "column " << c << " (k = " << k << ")";
        }
      }
      ASSERT_TRUE(same_bits(y, 1, clean_y, 1));
      const TypedMatrix dy = random_matrix(dtype, 2, n, n);
      const Gradients g = backward_of(o, x, dy, weight);
      const Gradients clean_g = backward_of(o, row_of(clean, 1), row_of(dy, 1), weight);
      for (int64_t c = 0; c < n; ++c) ASSERT_TRUE(std::isnan(g.dx.get(0, c))) << "dx column " << c;
      ASSERT_TRUE(same_bits(g.dx, 1, clean_g.dx, 0));
      for (int64_t c = 0; c < n; ++c) {
        const double dw = to_double(dtype, g.dweight.data(), c);
        ASSERT_EQ(std::isfinite(dw), c != column) << "dweight column " << c << ": " << dw;
      }
      }
    }
  }
}

}  // namespace
}  // namespace rmsnorm::testing
