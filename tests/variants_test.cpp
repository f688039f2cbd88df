// SPEC section 7's output variants, on every SIMD target: the weight offset
// (gain o + g) and the rounding order of 16-bit outputs (single, or
// before_weight as Hugging Face's LlamaRMSNorm and PyTorch's F.rms_norm).
// The rounding tests hold the engine bit for bit to the published formulas,
// written here from the formulas and evaluated in float64 with each of their
// roundings applied, not to the engine's own code.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include "rmsnorm/rmsnorm.h"
#include "rmsnorm/scalar_types.hpp"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

class Variants : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, Variants, every_target(), target_name);

NormOptions with_offset(NormOptions o, double offset) {
  o.weight_offset = offset;
  return o;
}

NormOptions with_rounding(NormOptions o, Rounding rounding) {
  o.rounding = rounding;
  return o;
}

std::string describe(const NormOptions& o, DType dtype, DType param_dtype, int64_t rows, int64_t n) {
  return std::string(o.kind == NormKind::kLayerNorm ? "LayerNorm" : "RMSNorm") + " p=" + std::to_string(o.p) +
         (o.eps_placement == EpsPlacement::kOutside ? " outside" : "") + " offset=" + std::to_string(o.weight_offset) +
         " " + dtype_name(dtype) + " (weight " + dtype_name(param_dtype) + ") " + std::to_string(rows) + "x" +
         std::to_string(n);
}

// ------------------------------------------------------------------ offset
// Against the reference, forward and backward, for every dtype and norm, with
// Gemma-like weights around 0 (the gain is then about 1).
TEST_P(Variants, WeightOffsetMatchesTheReference) {
  const std::vector<std::pair<int64_t, int64_t>> shapes{{1, 1}, {3, 7}, {5, 33}, {2, 250}, {9, 1031}};
  for (DType dtype : all_dtypes()) {
    for (DType param_dtype : {dtype, DType::kFloat32}) {
      for (const NormOptions& base : {rms(), rms(0.25), rms(1.0, EpsPlacement::kOutside), layer_norm()}) {
        for (double offset : {1.0, -0.5}) {
          for (const auto& [rows, n] : shapes) {
            const NormOptions o = with_offset(base, offset);
            SCOPED_TRACE(describe(o, dtype, param_dtype, rows, n));
            const TypedMatrix x = random_matrix(dtype, rows, n, n + 3);
            const TypedVector weight = random_vector(param_dtype, n, 0.0, 0.2);
            const TypedMatrix y = forward_of(o, x, weight);
            const reference::ForwardResult want = reference::forward(o, x.values(), weight.values, {});
            // LayerNorm's 16-bit outputs where x - mean cancels are measured
            // against their terms, as in forward_test: |xhat| + 1 (the mean's
            // own rounding) times the gain.
            reference::Matrix magnitude = want.y;
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t c = 0; c < n; ++c) {
                const double xhat = std::fabs(x.get(r, c) - want.mean[r]) * want.inv_rms[r] + 1.0;
                magnitude.at(r, c) = xhat * std::fabs(offset + weight.values[c]);
              }
            ASSERT_EQ(compare_rows(y, want.y, o.kind == NormKind::kLayerNorm ? &magnitude : nullptr), "");
            const TypedMatrix dy = random_matrix(dtype, rows, n, n);
            const Gradients g = backward_of(o, x, dy, weight);
            ASSERT_EQ(check_backward_outputs(o, x, dy, weight, g.dx, g.dweight.data(), param_dtype, nullptr), "");
          }
        }
      }
    }
  }
}

// The offset is added in float32 (SPEC section 7): a call with offset o and
// weight g gives bitwise what a call with the float32 weight o + g gives,
// forward (with a bias) and backward's dx.
TEST_P(Variants, AnOffsetIsTheWeightPlusTheOffsetInFloat32) {
  const int64_t rows = 6, n = 77;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    for (const NormOptions& base : {rms(), layer_norm()}) {
      SCOPED_TRACE(describe(base, dtype, dtype, rows, n));
      const TypedMatrix x = random_matrix(dtype, rows, n, n);
      const TypedMatrix dy = random_matrix(dtype, rows, n, n);
      const TypedVector weight = random_vector(dtype, n, 0.0, 0.3);
      const TypedVector bias = random_vector(dtype, n, 0.0, 0.3);
      std::vector<float> gain(n), bias32(n);
      for (int64_t c = 0; c < n; ++c) {
        gain[c] = 1.0f + static_cast<float>(weight.values[c]);
        bias32[c] = static_cast<float>(bias.values[c]);
      }
      TypedMatrix y_offset = make_matrix(dtype, rows, n, n), y_added = make_matrix(dtype, rows, n, n);
      ForwardArgs a;
      a.rows = rows;
      a.n = n;
      a.x = {x.data(), dtype, n};
      a.y = {y_offset.data(), dtype, n};
      a.weight = {weight.data(), dtype};
      a.bias = {bias.data(), dtype};
      forward(with_offset(base, 1.0), a);
      a.y = {y_added.data(), dtype, n};
      a.weight = {gain.data(), DType::kFloat32};
      a.bias = {bias32.data(), DType::kFloat32};
      forward(base, a);
      ASSERT_EQ(y_offset.bytes, y_added.bytes);

      TypedVector gain_vector;
      gain_vector.dtype = DType::kFloat32;
      gain_vector.bytes.resize(n * sizeof(float));
      std::memcpy(gain_vector.bytes.data(), gain.data(), gain_vector.bytes.size());
      gain_vector.values.assign(gain.begin(), gain.end());
      const Gradients with_offset_gradients = backward_of(with_offset(base, 1.0), x, dy, weight);
      const Gradients added_gradients = backward_of(base, x, dy, gain_vector);
      ASSERT_EQ(with_offset_gradients.dx.bytes, added_gradients.dx.bytes);
    }
  }
}

// A gain o + g beyond float32's range (the fuzzer: o = -1.24e37, g = -3.29e38)
// is no reason to lose an output that is in range: the weight fails the fast
// path's range check, and the slow path forms o + g exactly, forward and
// backward (before, it read the folded float32 gain, -inf, and gave -inf).
TEST_P(Variants, AGainBeyondFloat32IsFormedExactlyOnTheSlowPath) {
  const NormOptions o = with_offset(rms(), -3e38);
  const TypedMatrix x = matrix_of(DType::kFloat32, 1, 3, {1, 1e-10, -2e-10});
  const TypedVector weight = vector_of(DType::kFloat32, {1, -1e38, 2});
  const TypedMatrix y = forward_of(o, x, weight);
  const reference::Matrix want = reference::forward(o, x.values(), weight.values, {}).y;
  for (int64_t c = 1; c < 3; ++c) {  // column 0 overflows truly: -3e38 * sqrt(3)
    ASSERT_TRUE(std::isfinite(want.at(0, c)));
    EXPECT_NEAR(y.get(0, c), want.at(0, c), 1e-6 * std::fabs(want.at(0, c))) << "column " << c;
  }
  EXPECT_TRUE(std::isinf(y.get(0, 0)));
  const TypedMatrix dy = matrix_of(DType::kFloat32, 1, 3, {0, 1e-20, 0});
  const Gradients g = backward_of(o, x, dy, weight);
  const reference::Matrix dx = reference::backward(o, x.values(), dy.values(), weight.values).dx;
  for (int64_t c = 0; c < 3; ++c) {
    ASSERT_TRUE(std::isfinite(dx.at(0, c)));
    EXPECT_NEAR(g.dx.get(0, c), dx.at(0, c), 1e-6 * std::fabs(dx.at(0, c)) + 1e-30) << "dx column " << c;
  }
}

// ------------------------------------------------------------------ rounding
struct RoundingCase {
  NormOptions options;
  DType dtype, param_dtype;
  bool bias;
};

// y from one engine call with the case's parameters.
TypedMatrix engine_output(const RoundingCase& k, const TypedMatrix& x, const TypedVector& weight,
                          const TypedVector& bias) {
  TypedMatrix y = make_matrix(k.dtype, x.rows, x.n, x.n);
  ForwardArgs a;
  a.rows = x.rows;
  a.n = x.n;
  a.x = {x.data(), k.dtype, x.stride};
  a.y = {y.data(), k.dtype, x.n};
  a.weight = {weight.data(), k.param_dtype};
  if (k.bias) a.bias = {bias.data(), k.param_dtype};
  forward(k.options, a);
  return y;
}

TEST_P(Variants, EachRoundingOrderIsItsPublishedFormulaBitForBit) {
  const int64_t rows = 24;
  int64_t orders_differ = 0, compared = 0;
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    for (DType param_dtype : {dtype, DType::kFloat32}) {
      for (Rounding rounding : {Rounding::kSingle, Rounding::kBeforeWeight}) {
        // Llama (RMSNorm, eps 1e-6, no bias) and a LayerNorm with a bias.
        NormOptions llama = with_rounding(rms(1.0, EpsPlacement::kInside, 1e-6), rounding);
        NormOptions ln = with_rounding(layer_norm(), rounding);
        for (const RoundingCase& k : {RoundingCase{llama, dtype, param_dtype, false},
                                      RoundingCase{ln, dtype, param_dtype, true}}) {
          for (int64_t n : {int64_t{1}, int64_t{71}, int64_t{1000}}) {
            SCOPED_TRACE(describe(k.options, dtype, param_dtype, rows, n) +
                         (rounding == Rounding::kSingle ? " single" : " before_weight"));
            TypedMatrix x = random_matrix(dtype, rows, n, n + 1);
            // One bfloat16 row whose squares overflow float: the wide slow path.
            if (dtype == DType::kBFloat16) {
              for (int64_t c = 0; c < n; ++c) x.set(3, c, x.get(3, c) * 1e30 / (1e-3 + std::fabs(x.get(3, 0))));
            }
            const TypedVector weight = random_vector(param_dtype, n, 1.0, 0.4);
            const TypedVector bias = random_vector(param_dtype, n, 0.0, 0.5);
            const TypedMatrix y = engine_output(k, x, weight, bias);
            RoundingCase other = k;
            other.options.rounding = rounding == Rounding::kSingle ? Rounding::kBeforeWeight : Rounding::kSingle;
            const TypedMatrix y_other = engine_output(other, x, weight, bias);
            for (int64_t r = 0; r < rows; ++r) {
              std::vector<double> row(static_cast<size_t>(n));
              for (int64_t c = 0; c < n; ++c) row[c] = x.get(r, c);
              for (int64_t c = 0; c < n; ++c) {
                const Accepted want =
                    formula_outputs(k.options, dtype, row, c, weight.values[c], k.bias ? bias.values[c] : 0.0);
                ASSERT_TRUE(want.contains(y.get(r, c))) << "row " << r << " column " << c << ": got " << y.get(r, c)
                                                        << ", the formula allows [" << want.lo << ", " << want.hi << "]";
                ++compared;
                orders_differ += y.get(r, c) != y_other.get(r, c);
              }
            }
          }
        }
      }
    }
  }
  // SPEC section 7: the two orders differ in a sizeable fraction of outputs;
  // if they never did, the option would not be reaching the kernels.
  std::printf("single and before_weight differ in %lld of %lld outputs\n", static_cast<long long>(orders_differ),
              static_cast<long long>(compared));
  EXPECT_GT(orders_differ, compared / 100) << orders_differ << " of " << compared << " outputs differ";
}

// float32 and float64 data have one order: before_weight gives the same bits.
TEST_P(Variants, WideDataIgnoresTheRoundingOrder) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    const TypedMatrix x = random_matrix(dtype, 5, 301, 301);
    const TypedVector weight = random_vector(dtype, 301, 1.0, 0.5);
    const TypedMatrix single = forward_of(rms(), x, weight);
    const TypedMatrix before = forward_of(with_rounding(rms(), Rounding::kBeforeWeight), x, weight);
    EXPECT_EQ(single.bytes, before.bytes) << dtype_name(dtype);
  }
}

// ------------------------------------------------------------------ bad input
TEST(VariantsBadInput, EachBadOptionIsRejectedAndNothingWritten) {
  const int64_t rows = 2, n = 5;
  std::vector<float> x(rows * n, 1.0f), w(n, 0.5f), y(rows * n, -7.0f), dx(rows * n, -7.0f);
  auto forward_with = [&](NormOptions o, bool weight) {
    ForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data(), DType::kFloat32, n};
    a.y = {y.data(), DType::kFloat32, n};
    if (weight) a.weight = {w.data(), DType::kFloat32};
    forward(o, a);
  };
  auto backward_with = [&](NormOptions o) {
    BackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data(), DType::kFloat32, n};
    a.dy = {x.data(), DType::kFloat32, n};
    a.dx = {dx.data(), DType::kFloat32, n};
    backward(o, a);
  };
  auto expect_error = [&](const std::function<void()>& call, const std::string& expected) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected an error mentioning '" << expected << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    for (float v : y) ASSERT_EQ(v, -7.0f) << "y written before the error";
    for (float v : dx) ASSERT_EQ(v, -7.0f) << "dx written before the error";
  };
  expect_error([&] { forward_with(with_offset(rms(), NAN), true); }, "options.weight_offset: expected a finite value");
  expect_error([&] { forward_with(with_offset(rms(), INFINITY), true); }, "options.weight_offset");
  expect_error([&] { forward_with(with_offset(rms(), 1.0), false); }, "options.weight_offset: 1.000000 needs a weight");
  expect_error([&] { backward_with(with_offset(rms(), 1.0)); }, "needs a weight");
  expect_error([&] { forward_with(with_offset(rms(), 1e300), true); }, "options.weight_offset: expected a value within float32's range");
  expect_error([&] { forward_with(with_rounding(rms(), static_cast<Rounding>(7)), true); },
               "options.rounding: expected single or before_weight, got value 7");

  rmsnorm_options c = rmsnorm_default_options();
  EXPECT_EQ(c.weight_offset, 0.0);
  EXPECT_EQ(c.rounding, RMSNORM_ROUNDING_SINGLE);
  c.rounding = static_cast<rmsnorm_rounding>(5);
  EXPECT_EQ(rmsnorm_forward(&c, rows, n, RMSNORM_FLOAT32, x.data(), n, y.data(), n, w.data(), nullptr,
                            RMSNORM_FLOAT32, nullptr, nullptr),
            RMSNORM_INVALID_ARGUMENT);
  EXPECT_NE(std::string(rmsnorm_last_error()).find("options.rounding"), std::string::npos) << rmsnorm_last_error();
  for (float v : y) ASSERT_EQ(v, -7.0f);
}

// The C API carries both options through: the same bits as the C++ API.
TEST(VariantsCApi, OffsetAndRoundingReachTheEngine) {
  const int64_t rows = 3, n = 40;
  const TypedMatrix x = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedVector weight = random_vector(DType::kBFloat16, n, 0.0, 0.3);
  NormOptions o = with_rounding(with_offset(rms(), 1.0), Rounding::kBeforeWeight);
  const TypedMatrix want = forward_of(o, x, weight);
  rmsnorm_options c = rmsnorm_default_options();
  c.eps = o.eps;
  c.weight_offset = 1.0;
  c.rounding = RMSNORM_ROUNDING_BEFORE_WEIGHT;
  TypedMatrix y = make_matrix(DType::kBFloat16, rows, n, n);
  ASSERT_EQ(rmsnorm_forward(&c, rows, n, RMSNORM_BFLOAT16, x.data(), n, y.data(), n, weight.data(), nullptr,
                            RMSNORM_BFLOAT16, nullptr, nullptr),
            RMSNORM_OK)
      << rmsnorm_last_error();
  EXPECT_EQ(y.bytes, want.bytes);
  const TypedMatrix single = forward_of(with_offset(rms(), 1.0), x, weight);
  EXPECT_NE(y.bytes, single.bytes) << "before_weight gave single rounding's bits on every one of " << rows * n
                                   << " outputs";
}

}  // namespace
}  // namespace rmsnorm::testing
