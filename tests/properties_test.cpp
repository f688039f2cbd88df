// SPEC section 4's properties: invariances, p = 1 is RMSNorm bit for bit,
// thread-count independence, NaN/Inf isolation, overflow and underflow rows,
// and the kernels' own bfloat16/float16 rounding.
#include <cmath>
#include <limits>

#include "rmsnorm/scalar_types.hpp"
#include "src/cpu/kernels.hpp"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

// One gtest instance per compiled SIMD target (TargetTest sets the target).
class ConversionsOnEveryTarget : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, ConversionsOnEveryTarget, every_target(), target_name);
class PropertiesOnEveryTarget : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, PropertiesOnEveryTarget, every_target(), target_name);

TypedMatrix run_forward(const NormOptions& o, const TypedMatrix& x, const TypedVector* weight = nullptr) {
  return forward_of(o, x, weight ? *weight : empty_vector(x.dtype));
}

TypedMatrix scaled(const TypedMatrix& x, double a, double shift = 0.0) {
  TypedMatrix out = make_matrix(x.dtype, x.rows, x.n, x.stride);
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < x.n; ++c) out.set(r, c, a * x.get(r, c) + shift);
  return out;
}

double max_difference(const TypedMatrix& a, const TypedMatrix& b) {
  double worst = 0;
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t c = 0; c < a.n; ++c) worst = std::max(worst, std::fabs(a.get(r, c) - b.get(r, c)));
  return worst;
}

TEST(Properties, ScaleInvariance) {
  NormOptions o;
  o.eps = 0;  // exactly invariant without eps
  const TypedMatrix x = random_matrix(DType::kFloat64, 4, 257, 257);
  for (NormKind kind : {NormKind::kRMSNorm, NormKind::kLayerNorm}) {
    o.kind = kind;
    const TypedMatrix y = run_forward(o, x);
    for (double a : {1e-200, 1e-3, 0.5, 7.25, 1e3, 1e200}) {
      EXPECT_LT(max_difference(run_forward(o, scaled(x, a)), y), 1e-13) << "scale " << a;
    }
  }
}

TEST(Properties, InvariantToScalingTheWeightMatrix) {
  // RMSNorm(W x) == RMSNorm((a W) x): the re-scaling invariance of the paper.
  const int64_t in = 31, out = 65;
  const TypedMatrix w = random_matrix(DType::kFloat64, out, in, in);
  const TypedMatrix v = random_matrix(DType::kFloat64, 1, in, in);
  auto project = [&](double a) {
    TypedMatrix z = make_matrix(DType::kFloat64, 1, out, out);
    for (int64_t i = 0; i < out; ++i) {
      double s = 0;
      for (int64_t j = 0; j < in; ++j) s += a * w.get(i, j) * v.get(0, j);
      z.set(0, i, s);
    }
    return z;
  };
  NormOptions o;
  o.eps = 0;
  const TypedMatrix base = run_forward(o, project(1.0));
  for (double a : {0.01, 3.0, 1e6}) EXPECT_LT(max_difference(run_forward(o, project(a)), base), 1e-12) << a;
}

TEST(Properties, ShiftInvarianceOnlyForLayerNorm) {
  NormOptions o;
  const TypedMatrix x = random_matrix(DType::kFloat64, 3, 100, 100);
  const TypedMatrix shifted = scaled(x, 1.0, 5.0 * std::fabs(x.get(0, 0)) + 1.0);
  o.kind = NormKind::kLayerNorm;
  EXPECT_LT(max_difference(run_forward(o, shifted), run_forward(o, x)), 1e-9);
  o.kind = NormKind::kRMSNorm;
  EXPECT_GT(max_difference(run_forward(o, shifted), run_forward(o, x)), 0.1);
}

TEST(Properties, FullPartialIsRMSNormBitwise) {
  for (DType dtype : all_dtypes()) {
    const TypedMatrix x = random_matrix(dtype, 9, 17, 17);
    NormOptions rms;
    NormOptions partial = rms;
    partial.p = 0.99;  // ceil(17 * 0.99) = 17: every element
    EXPECT_EQ(run_forward(partial, x).bytes, run_forward(rms, x).bytes) << dtype_name(dtype);
  }
}

TEST(Properties, ForwardBitwiseIdenticalForOneAndTwoThreads) {
  for (DType dtype : all_dtypes()) {
    for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 1 << 20}, {3, 65537}, {64, 4097}, {1000, 127}}) {
      for (NormKind kind : {NormKind::kRMSNorm, NormKind::kLayerNorm}) {
        const TypedMatrix x = random_matrix(dtype, rows, n, n, kind == NormKind::kLayerNorm ? 1.0 : 0.0);
        NormOptions o;
        o.kind = kind;
        o.num_threads = 1;
        const TypedMatrix one = run_forward(o, x);
        o.num_threads = 2;
        EXPECT_EQ(run_forward(o, x).bytes, one.bytes) << dtype_name(dtype) << " " << rows << "x" << n;
      }
    }
  }
}

TEST(Properties, WeightGradientRepeatsBitwise) {
  const int64_t rows = 777, n = 300;
  const TypedMatrix x = random_matrix(DType::kFloat32, rows, n, n);
  const TypedMatrix dy = random_matrix(DType::kFloat32, rows, n, n);
  const TypedVector weight = random_vector(DType::kFloat32, n, 1.0, 0.3);
  for (int threads : {1, 2}) {
    std::vector<float> first;
    for (int run = 0; run < 3; ++run) {
      NormOptions o;
      o.num_threads = threads;
      TypedMatrix dx = make_matrix(DType::kFloat32, rows, n, n);
      std::vector<float> dweight(n);
      BackwardArgs a;
      a.rows = rows;
      a.n = n;
      a.x = {x.data(), DType::kFloat32, n};
      a.dy = {dy.data(), DType::kFloat32, n};
      a.weight = {weight.data(), DType::kFloat32};
      a.dx = {dx.data(), DType::kFloat32, n};
      a.dweight = {dweight.data(), DType::kFloat32};
      backward(o, a);
      if (run == 0) first = dweight;
      EXPECT_EQ(dweight, first) << threads << " threads, run " << run;
    }
  }
}

// SPEC section 4: NaN or Inf among a row's statistic elements (all n, or
// pRMSNorm's first k) makes that row NaN and nothing else; past k it reaches
// its own output element only, by IEEE arithmetic (here x / r: the same
// infinity, or NaN).
TEST(Properties, NonFiniteValuesPoisonOnlyTheirRow) {
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(), INFINITY, -INFINITY};
  for (DType dtype : all_dtypes()) {
    for (NormKind kind : {NormKind::kRMSNorm, NormKind::kLayerNorm}) {
      for (double p : {1.0, 0.0625}) {
        if (kind == NormKind::kLayerNorm && p != 1.0) continue;
        NormOptions o;
        o.kind = kind;
        o.p = p;
        const int64_t rows = 6, n = 5000;
        const int64_t statistic_count = kind == NormKind::kLayerNorm ? n : partial_count(n, p);
        const TypedMatrix clean = random_matrix(dtype, rows, n, n);
        const TypedMatrix clean_y = run_forward(o, clean);
        struct Special {
          int64_t row, column;
          double value;
        };
        // Inside the first k, past k for pRMSNorm (at the row's end and middle).
        const Special placed[] = {{1, 3, specials[0]}, {3, n - 2, specials[1]}, {4, n / 2, specials[2]}};
        TypedMatrix dirty = clean;
        for (const Special& s : placed) dirty.set(s.row, s.column, s.value);
        const TypedMatrix y = run_forward(o, dirty);
        for (int64_t r = 0; r < rows; ++r) {
          const Special* special = nullptr;
          for (const Special& s : placed) special = s.row == r ? &s : special;
          const bool poisoned = special && special->column < statistic_count;
          for (int64_t c = 0; c < n; ++c) {
            const std::string where = std::string(dtype_name(dtype)) + " p " + std::to_string(p) + " row " +
                                      std::to_string(r) + " col " + std::to_string(c);
            if (poisoned) {
              ASSERT_TRUE(std::isnan(y.get(r, c))) << where;
            } else if (special && special->column == c) {
              if (std::isnan(special->value)) {
                ASSERT_TRUE(std::isnan(y.get(r, c))) << where;
              } else {
                ASSERT_EQ(y.get(r, c), special->value) << where;
              }
            } else {
              ASSERT_EQ(y.get(r, c), clean_y.get(r, c)) << where;
            }
          }
        }
      }
    }
  }
}

TEST_P(PropertiesOnEveryTarget, OverflowAndUnderflowRowsAreStillRight) {
  for (NormKind kind : {NormKind::kRMSNorm, NormKind::kLayerNorm}) {
    NormOptions o;
    o.kind = kind;
    o.eps = 0;
    const int64_t n = 4097;
    TypedMatrix x = random_matrix(DType::kFloat32, 4, n, n);
    for (int64_t c = 0; c < n; ++c) {
      x.set(0, c, std::ldexp(x.get(0, c) / 8, 128) / std::pow(10.0, 3));  // |x| near FLT_MAX
      x.set(1, c, std::ldexp(x.get(1, c), -140));                         // subnormal floats
      x.set(2, c, c % 2 ? 3e38 : -1e-30);                                 // mixed, overflowing
    }
    const reference::ForwardResult want = reference::forward(o, x.values(), {}, {});
    ASSERT_EQ(compare_rows(run_forward(o, x), want.y), "") << (kind == NormKind::kLayerNorm ? "LayerNorm" : "RMSNorm");
    // And their gradients.
    // dx ~ dy / r: scale dy with x so that the true dx is a finite float.
    TypedMatrix dy = random_matrix(DType::kFloat32, 4, n, n);
    for (int64_t c = 0; c < n; ++c) {
      dy.set(0, c, std::ldexp(dy.get(0, c), 100));
      dy.set(1, c, std::ldexp(dy.get(1, c), -140));
      dy.set(2, c, std::ldexp(dy.get(2, c), 100));
    }
    TypedMatrix dx = make_matrix(DType::kFloat32, 4, n, n);
    BackwardArgs a;
    a.rows = 4;
    a.n = n;
    a.x = {x.data(), DType::kFloat32, n};
    a.dy = {dy.data(), DType::kFloat32, n};
    a.dx = {dx.data(), DType::kFloat32, n};
    backward(o, a);
    const reference::BackwardResult grad = reference::backward(o, x.values(), dy.values(), {});
    ASSERT_EQ(compare_rows(dx, grad.dx), "");
  }
}

TEST_P(ConversionsOnEveryTarget, KernelRoundingMatchesScalar) {
  // A wide sample of float bit patterns, all exponents, specials included.
  std::vector<float> in;
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFull; bits += 0x10001 * 7) in.push_back(float_from_bits(static_cast<uint32_t>(bits)));
  for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 5.96e-8f, 2.98e-8f, 3.4e38f, INFINITY, -INFINITY, NAN})
    in.push_back(f);
  std::vector<uint16_t> out(in.size());
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    cpu::convert_from_float(dtype, in.data(), out.data(), static_cast<int64_t>(in.size()));
    for (size_t i = 0; i < in.size(); ++i) {
      const uint16_t want = dtype == DType::kBFloat16 ? float_to_bfloat16(in[i]) : float_to_float16(in[i]);
      if (std::isnan(in[i])) {
        const float back = dtype == DType::kBFloat16 ? bfloat16_to_float(out[i]) : float16_to_float(out[i]);
        ASSERT_TRUE(std::isnan(back)) << dtype_name(dtype) << " NaN lost";
      } else {
        ASSERT_EQ(out[i], want) << dtype_name(dtype) << " of " << in[i] << " (bits " << float_bits(in[i]) << ")";
      }
    }
  }
}

TEST(Conversions, ScalarRoundingIsCorrectlyRounded) {
  // float16: 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even (1).
  EXPECT_EQ(double_to_float16(1.0 + std::ldexp(1.0, -11)), 0x3C00);
  EXPECT_EQ(double_to_float16(1.0 + 3 * std::ldexp(1.0, -11)), 0x3C02);
  EXPECT_EQ(double_to_float16(65520.0), 0x7C00);
  EXPECT_EQ(double_to_float16(65519.0), 0x7BFF);
  EXPECT_EQ(double_to_float16(std::ldexp(1.0, -24)), 0x0001);
  EXPECT_EQ(double_to_float16(std::ldexp(1.0, -25)), 0x0000);  // tie to even (0)
  EXPECT_EQ(double_to_float16(-2.0), 0xC000);
  EXPECT_EQ(float16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(float_to_bfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);  // tie to even
  EXPECT_EQ(float_to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  // A double just above a bfloat16 tie must round up, not fall into the tie.
  EXPECT_EQ(double_to_bfloat16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40)), 0x3F81);
}

// The one scalar store rounds long double values once: through the nearest
// double first, 1 + 2^-24 + 2^-60 would land on float's tie and round to even
// (down), where the value itself lies above the tie. Likewise for bf16/f16,
// which the slow path's results used to reach through a double.
TEST(ScalarStore, LongDoubleIsRoundedOnce) {
  const long double tiny = std::ldexp(1.0L, -60);
  struct Case {
    DType dtype;
    int bits;  // fraction bits of the format
  };
  for (const Case& k : {Case{DType::kFloat32, 23}, Case{DType::kBFloat16, 7}, Case{DType::kFloat16, 10}}) {
    const long double half_ulp = std::ldexp(1.0L, -k.bits - 1);
    EXPECT_EQ(rounded_to(k.dtype, 1 + half_ulp + tiny), static_cast<double>(1 + 2 * half_ulp)) << dtype_name(k.dtype);
    EXPECT_EQ(rounded_to(k.dtype, 1 + half_ulp - tiny), 1.0) << dtype_name(k.dtype);
    EXPECT_EQ(rounded_to(k.dtype, -(1 + half_ulp + tiny)), -static_cast<double>(1 + 2 * half_ulp)) << dtype_name(k.dtype);
    EXPECT_EQ(rounded_to(k.dtype, 1 + half_ulp), 1.0) << "a true tie rounds to even, " << dtype_name(k.dtype);
  }
  EXPECT_EQ(round_to_odd(1.0L), 1.0);
  EXPECT_TRUE(std::isnan(rounded_to(DType::kBFloat16, std::numeric_limits<long double>::quiet_NaN())));
  EXPECT_EQ(rounded_to(DType::kFloat16, 65520.0L), std::numeric_limits<double>::infinity());
  EXPECT_EQ(rounded_to(DType::kFloat64, 1 + tiny / 2), 1.0);
}

}  // namespace
}  // namespace rmsnorm::testing
