// Forward (and fused residual forward) against the float64 reference on fresh
// random inputs: every dtype, both eps placements, p in {1, 0.5, 0.0625, 1/n},
// with and without weight and bias, awkward n and rows, strides > n, on every
// SIMD target.
#include <cmath>
#include <cstring>
#include <limits>

#include "rmsnorm/scalar_types.hpp"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

// One gtest instance per compiled SIMD target (TargetTest sets the target).
class ForwardOnEveryTarget : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, ForwardOnEveryTarget, every_target(), target_name);
class FusedAddOnEveryTarget : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, FusedAddOnEveryTarget, every_target(), target_name);

struct Config {
  NormKind kind;
  EpsPlacement placement;
  double p;  // < 0 means 1/n
  bool weight, bias;
};

std::vector<Config> all_configs() {
  std::vector<Config> configs;
  for (bool w : {false, true})
    for (bool b : {false, true}) {
      configs.push_back({NormKind::kLayerNorm, EpsPlacement::kInside, 1.0, w, b});
      for (EpsPlacement placement : {EpsPlacement::kInside, EpsPlacement::kOutside})
        for (double p : {1.0, 0.5, 0.0625, -1.0}) configs.push_back({NormKind::kRMSNorm, placement, p, w, b});
    }
  return configs;
}

NormOptions options_for(const Config& config, int64_t n) {
  NormOptions o;
  o.kind = config.kind;
  o.eps_placement = config.placement;
  o.p = config.p < 0 ? 1.0 / static_cast<double>(n) : config.p;
  o.eps = 1e-5;
  return o;
}

std::string name_of(const Config& c, DType dtype, int64_t rows, int64_t n, int64_t stride) {
  std::string s = c.kind == NormKind::kLayerNorm ? "LayerNorm" : "RMSNorm";
  s += c.placement == EpsPlacement::kInside ? " inside" : " outside";
  s += " p=" + (c.p < 0 ? std::string("1/n") : std::to_string(c.p));
  s += c.weight ? " +weight" : "";
  s += c.bias ? " +bias" : "";
  return s + " " + dtype_name(dtype) + " " + std::to_string(rows) + "x" + std::to_string(n) + " stride " +
         std::to_string(stride);
}

const std::vector<int64_t> kSizes = {1, 2, 3, 7, 15, 16, 17, 31, 33, 127, 4095, 4097, 65537, 1 << 20};
const std::vector<int64_t> kRows = {1, 2, 3, 64, 1000};

// Runs one forward and checks it; the parameter dtype alternates between
// float32 and the data's own dtype.
void check_forward(const Config& config, DType dtype, int64_t rows, int64_t n, int64_t stride, bool fused) {
  SCOPED_TRACE(name_of(config, dtype, rows, n, stride) + (fused ? " fused" : ""));
  const NormOptions options = options_for(config, n);
  const DType param_dtype = (n + rows) % 2 ? DType::kFloat32 : dtype;
  // Rows alternate between mean zero and a mean 8 times their spread, where
  // LayerNorm's x - mean must not lose the mean's low bits.
  const double offset = (n + rows) % 3 == 0 ? 8.0 : 0.0;
  TypedMatrix x = random_matrix(dtype, rows, n, stride, offset);
  const TypedVector weight = config.weight ? random_vector(param_dtype, n, 1.0, 0.5) : empty_vector(param_dtype);
  const TypedVector bias = config.bias ? random_vector(param_dtype, n, 0.0, 1.0) : empty_vector(param_dtype);
  TypedMatrix y = make_matrix(dtype, rows, n, stride + 1);
  std::vector<unsigned char> inv_rms(static_cast<size_t>(rows) * 8), mean(static_cast<size_t>(rows) * 8);

  reference::Matrix source = x.values();
  if (fused) {
    TypedMatrix residual = random_matrix(dtype, rows, n, stride + 3);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) source.at(r, c) = x.get(r, c) + residual.get(r, c);
    // The residual is rounded to its dtype before it is normalized.
    TypedMatrix rounded = make_matrix(dtype, rows, n, n);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) rounded.set(r, c, source.at(r, c));
    source = rounded.values();
    FusedAddArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data(), dtype, stride};
    a.residual = {residual.data(), dtype, stride + 3};
    a.y = {y.data(), dtype, stride + 1};
    a.weight = {weight.data(), param_dtype};
    a.bias = {bias.data(), param_dtype};
    a.saved = {inv_rms.data(), mean.data()};
    fused_add_forward(options, a);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) ASSERT_EQ(residual.get(r, c), source.at(r, c)) << "residual " << r << "," << c;
  } else {
    ForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data(), dtype, stride};
    a.y = {y.data(), dtype, stride + 1};
    a.weight = {weight.data(), param_dtype};
    a.bias = {bias.data(), param_dtype};
    a.saved = {inv_rms.data(), mean.data()};
    forward(options, a);
  }
  const reference::ForwardResult want = reference::forward(options, source, weight.values, bias.values);
  // Outputs can cancel to near 0, and then are measured against the size of
  // their terms: with a bias, |xhat| |g| + |b|; for LayerNorm's 16-bit
  // elements, whose x - mean can cancel too, the mean's own float32 rounding
  // (relative to the row's spread, ~1 in xhat units) is one more term. Float32
  // and float64 LayerNorm outputs without bias meet SPEC's bound against the
  // output itself.
  const bool centered = config.kind == NormKind::kLayerNorm;
  const bool sixteen_bit = dtype == DType::kBFloat16 || dtype == DType::kFloat16;
  reference::Matrix magnitude = want.y;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) {
      const double g = config.weight ? std::fabs(weight.values[c]) : 1.0;
      const double xhat = std::fabs(source.at(r, c) - want.mean[r]) * want.inv_rms[r] + (centered ? 1.0 : 0.0);
      magnitude.at(r, c) = xhat * g + (config.bias ? std::fabs(bias.values[c]) : 0.0);
    }
  const bool use_magnitude = config.bias || (centered && sixteen_bit);
  const std::string problem = compare_rows(y, want.y, use_magnitude ? &magnitude : nullptr);
  ASSERT_EQ(problem, "");
  // The saved statistics: 1/r and the mean, in the statistics dtype.
  const DType stats = statistics_dtype(dtype);
  for (int64_t r = 0; r < rows; ++r) {
    const double tol = stats == DType::kFloat64 ? 1e-13 : float32_tolerance(n);  // a float32 output
    EXPECT_NEAR(to_double(stats, inv_rms.data(), r), want.inv_rms[r], tol * want.inv_rms[r]) << "row " << r;
    if (config.kind == NormKind::kLayerNorm) {
      const double scale = std::sqrt(1.0 / (want.inv_rms[r] * want.inv_rms[r]) + want.mean[r] * want.mean[r]);
      EXPECT_NEAR(to_double(stats, mean.data(), r), want.mean[r], tol * scale) << "row " << r;
    }
  }
  // Nothing outside the rows was written.
  for (int64_t r = 0; r + 1 < rows; ++r) {
    for (size_t b = 0; b < dtype_size(dtype); ++b) {
      ASSERT_EQ(y.bytes[((r * (stride + 1)) + n) * dtype_size(dtype) + b], 0xA5) << "padding after row " << r;
    }
  }
}

TEST_P(ForwardOnEveryTarget, MatchesReference) {
  const std::vector<Config> configs = all_configs();
  // Each target starts the rotation elsewhere, so that across targets every
  // configuration still meets the large sizes.
  size_t rotation = std::hash<std::string>{}(GetParam());
  for (DType dtype : all_dtypes()) {
    for (int64_t n : kSizes) {
      for (int64_t rows : kRows) {
        // (Under the sanitizers up to 2^20 elements: the 2^21 calls were most
        // of the test's 45-53 s per target there.)
        if (rows * n > (kSanitized ? int64_t{1} << 20 : int64_t{1} << 21)) continue;
        const int64_t stride = n + (rows % 3 == 0 ? 5 : 0);
        // Small problems run every configuration; large ones a rotating few,
        // so that across sizes and targets every configuration still runs.
        const bool small = rows * n <= 4096;
        for (size_t i = 0; i < (small ? configs.size() : 3); ++i) {
          const Config& config = configs[small ? i : (rotation++ % configs.size())];
          check_forward(config, dtype, rows, n, stride, false);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_P(FusedAddOnEveryTarget, MatchesReference) {
  const std::vector<Config> configs = all_configs();
  // Each target starts the rotation elsewhere, so that across targets every
  // configuration still meets the large sizes.
  size_t rotation = std::hash<std::string>{}(GetParam());
  for (DType dtype : all_dtypes()) {
    for (int64_t n : {1, 17, 4097, 65537}) {
      for (int64_t rows : {1, 3, 64}) {
        if (rows * n > (int64_t{1} << 20)) continue;
        check_forward(configs[rotation++ % configs.size()], dtype, rows, n, n, true);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

// Rows whose mean is 1000 times their spread: the row mean and x - mean must
// keep the bits a float32 mean would lose (SPEC's bound against the output).
TEST_P(ForwardOnEveryTarget, LayerNormOfRowsWithALargeMean) {
  for (int64_t n : {2, 17, 4097, 65537}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const int64_t rows = 3;
    TypedMatrix x = make_matrix(DType::kFloat32, rows, n, n);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) x.set(r, c, 1000.0 * (r + 1) + normal(rng()));
    TypedMatrix y = make_matrix(DType::kFloat32, rows, n, n);
    NormOptions options;
    options.kind = NormKind::kLayerNorm;
    ForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data(), DType::kFloat32, n};
    a.y = {y.data(), DType::kFloat32, n};
    forward(options, a);
    const reference::ForwardResult want = reference::forward(options, x.values(), {}, {});
    ASSERT_EQ(compare_rows(y, want.y, nullptr), "");
  }
}

// LayerNorm's statistics come from one pass around a pivot (the mean of the
// row's first vector) unless that pivot lies far outside the row's spread;
// then a second pass around the mean follows. Rows of both kinds, against the
// reference, and bitwise the same for 1 and 2 threads (2 threads split a
// single long row's blocks between them), with and without the fused
// residual add (whose pivot is taken before the add is written).
TEST_P(ForwardOnEveryTarget, LayerNormWhetherOrNotItsFirstElementsAreTypical) {
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int64_t n : {2, 17, 4097, 3 * 4096 + 5}) {
    for (int64_t rows : {1, 3}) {
      for (bool atypical : {false, true}) {
        for (bool fused : {false, true}) {
          SCOPED_TRACE("n = " + std::to_string(n) + ", rows = " + std::to_string(rows) +
                       (atypical ? ", first elements 500 sd off" : "") + (fused ? ", fused add" : ""));
          TypedMatrix x = make_matrix(DType::kFloat32, rows, n, n), residual = make_matrix(DType::kFloat32, rows, n, n);
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < n; ++c) {
              const bool head = atypical && c < 16 && c < n - 1;  // the row's last element stays typical
              x.set(r, c, 3.0 + (head ? 500.0 : normal(rng())));
              residual.set(r, c, fused ? normal(rng()) : 0.0);
            }
          }
          NormOptions options = layer_norm();
          std::vector<std::vector<unsigned char>> outputs;
          for (int threads : {1, 2}) {
            options.num_threads = threads;
            const TypedVector no_weight = empty_vector(DType::kFloat32);
            TypedMatrix y, h = x;
            if (fused) {
              FusedOutputs f = fused_add_of(options, x, residual, no_weight);
              y = std::move(f.y);
              h = std::move(f.h);
            } else {
              y = forward_of(options, x, no_weight);
            }
            const reference::ForwardResult want = reference::forward(options, h.values(), {}, {});
            ASSERT_EQ(compare_rows(y, want.y, nullptr), "") << threads << " thread(s)";
            outputs.push_back(y.bytes);
          }
          EXPECT_EQ(outputs[0], outputs[1]) << "1 and 2 threads differ";
        }
      }
    }
  }
}

// The non-temporal paths (outputs larger than the last-level cache) on small
// inputs: float/double straight from registers, 16-bit types through the
// tile, and y rows that start off a vector boundary (y's stride is n + 1).
TEST_P(ForwardOnEveryTarget, StreamedOutputsMatchReference) {
  const ForceStreaming streaming;
  const std::vector<Config> configs = all_configs();
  // Each target starts the rotation elsewhere, so that across targets every
  // configuration still meets the large sizes.
  size_t rotation = std::hash<std::string>{}(GetParam());
  for (DType dtype : all_dtypes()) {
    for (int64_t n : {1, 3, 17, 100, 4097}) {
      for (int64_t rows : {1, 3, 64}) {
        for (int i = 0; i < 3; ++i) {
          check_forward(configs[rotation++ % configs.size()], dtype, rows, n, n, false);
          if (::testing::Test::HasFatalFailure()) return;
        }
        check_forward(configs[rotation++ % configs.size()], dtype, rows, n, n + 2, true);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(Forward, InPlaceEqualsOutOfPlace) {
  for (DType dtype : all_dtypes()) {
    TypedMatrix x = random_matrix(dtype, 5, 300, 310);
    TypedMatrix y = make_matrix(dtype, 5, 300, 310);
    NormOptions o;
    ForwardArgs a;
    a.rows = 5;
    a.n = 300;
    a.x = {x.data(), dtype, 310};
    a.y = {y.data(), dtype, 310};
    forward(o, a);
    a.y = {x.data(), dtype, 310};
    forward(o, a);
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < 300; ++c) ASSERT_EQ(x.get(r, c), y.get(r, c));
  }
}

// RMSNorm calls on the row path check the weight's range in their first row's
// statistics pass (forward.cpp, RowStatisticsCheckingWeight) instead of a pass
// of its own. A weight out of the fast range anywhere (a block's first
// vector, its middle, its last element, the second block of 4096) must still
// send the call to the exact path: here 1/r * g overflows, the rows' RMS being
// below 1, and x * (1/r g) would give inf where the exact result is finite.
// Every row holds the same values, and row 0's statistics come from that pass
// while the others' come from the ordinary one: their outputs must agree to
// the bit, in range or not.
// A bfloat16 output is the float32 arithmetic's result rounded once to
// nearest even (SPEC section 4): the same call on the same values as float32
// data must give, rounded by the scalar float_to_bfloat16, the same bits. This
// covers the output stores: two vectors at a time, and without the NaN check
// where no output can be NaN (no bias, k = n), the single vectors and the
// tail, with rows whose outputs are subnormal (rounded, not flushed) and
// weights from 2^-40 to 2^40 (the fast path's range).
TEST_P(ForwardOnEveryTarget, BFloat16OutputIsTheFloat32OutputRoundedOnce) {
  struct Case {
    const char* name;
    NormOptions options;
    bool weight, bias;
  };
  const Case cases[] = {{"RMSNorm + weight", rms(), true, false},     {"RMSNorm", rms(), false, false},
                        {"RMSNorm + weight + bias", rms(), true, true}, {"pRMSNorm p=0.5 + weight", rms(0.5), true, false},
                        {"LayerNorm + weight", layer_norm(), true, false}, {"LayerNorm + weight + bias", layer_norm(), true, true}};
  std::uniform_real_distribution<double> uniform(-2.0, 2.0), one_to_two(1.0, 2.0), exponent(-39.0, 38.0);
  for (const Case& c : cases) {
    for (int64_t n : {1, 7, 33, 64, 100, 257, 512, 1000, 4100, 4112}) {
      const int64_t rows = 5;
      SCOPED_TRACE(std::string(c.name) + " " + std::to_string(rows) + "x" + std::to_string(n));
      std::vector<double> x_values(static_cast<size_t>(rows * n)), w(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      for (double& v : x_values) v = uniform(rng());
      // Row 1: one element 2^100 times the others, whose outputs then reach
      // float's subnormals where a small weight multiplies them.
      for (int64_t i = 0; i < n; ++i) x_values[static_cast<size_t>(n + i)] *= std::ldexp(1.0, -100);
      x_values[static_cast<size_t>(n)] = 3.0;
      // |weight| within [2^-39, 2^39]: a call with one outside 2^-40 .. 2^40
      // takes the exact slow path, rounded once from its wide result, where
      // the float32 call's rounding then rounds a second time.
      for (double& v : w) v = std::copysign(std::ldexp(one_to_two(rng()), static_cast<int>(exponent(rng()))), uniform(rng()));
      for (double& v : b) v = uniform(rng());
      // Row 2, when n is a multiple of 16: nine of every sixteen elements
      // +-3, the others +-5, so that with eps = 0 the RMS is exactly 4 and
      // y = x g / 4 holds up to 11 significant bits: bfloat16 ties (to even),
      // which random rows rarely give.
      const bool ties_row = n % 16 == 0;
      if (ties_row) {
        for (int64_t i = 0; i < n; ++i) x_values[static_cast<size_t>(2 * n + i)] = (i % 16 < 9 ? 3.0 : 5.0) * (i % 3 ? 1 : -1);
      }
      NormOptions o = c.options;
      o.num_threads = 1;
      o.eps = 0.0;
      TypedMatrix y[2];
      const DType dtypes[2] = {DType::kBFloat16, DType::kFloat32};
      for (int k = 0; k < 2; ++k) {
        const TypedMatrix x = matrix_of(DType::kBFloat16, rows, n, x_values);  // the values bfloat16 holds
        const TypedMatrix typed_x = matrix_of(dtypes[k], rows, n, x.values().values);
        const TypedVector weight = vector_of(DType::kBFloat16, w), bias = vector_of(DType::kBFloat16, b);
        y[k] = forward_with_bias_of(o, typed_x, c.weight ? vector_of(dtypes[k], weight.values) : empty_vector(dtypes[k]),
                                    c.bias ? vector_of(dtypes[k], bias.values) : empty_vector(dtypes[k]));
      }
      const auto* bits = static_cast<const uint16_t*>(y[0].data());
      const auto* wide = static_cast<const float*>(y[1].data());
      bool subnormal_seen = false;
      int64_t ties = 0;
      for (int64_t i = 0; i < rows * n; ++i) {
        ASSERT_EQ(bits[i], float_to_bfloat16(wide[i])) << "element " << i << ": float32 gives " << wide[i];
        subnormal_seen |= wide[i] != 0 && std::fabs(wide[i]) < std::numeric_limits<float>::min();
        ties += (float_bits(wide[i]) & 0xFFFFu) == 0x8000u;
      }
      if (ties_row && c.weight && !c.bias && c.options.kind == NormKind::kRMSNorm && c.options.p == 1.0) {
        EXPECT_GT(ties, n / 16) << "too few bfloat16 ties to test rounding to even";
      }
      // (LayerNorm's centering and a bias move row 1's outputs away from 0.)
      const bool expect_subnormals = n >= 1000 && c.weight && !c.bias && c.options.kind == NormKind::kRMSNorm;
      if (expect_subnormals) EXPECT_TRUE(subnormal_seen) << "no subnormal output: the case does not test them";
    }
  }
}

// A NaN or infinite bias element reaches its column in every row, as IEEE
// arithmetic says: the bfloat16 store skips its NaN check only where the bias
// was found finite (ForwardPlan::bias_finite), which a call of 4 rows or more
// checks. With one row the bias is not checked and the store keeps the check.
// The float32 bias's NaN has every mantissa bit set: without the check, the
// store's rounding would carry it into -0.
TEST_P(ForwardOnEveryTarget, ANonFiniteBiasReachesItsColumn) {
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  const std::pair<DType, DType> cases[] = {
      {DType::kBFloat16, DType::kBFloat16}, {DType::kBFloat16, DType::kFloat32}, {DType::kFloat32, DType::kFloat32}};
  for (const auto& [dtype, param_dtype] : cases) {
    for (NormOptions o : {rms(), layer_norm()}) {
      for (int64_t rows : {1, 5}) {
        const int64_t n = 100;
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " data, " + dtype_name(param_dtype) + " parameters," +
                     (o.kind == NormKind::kLayerNorm ? " LayerNorm " : " RMSNorm ") + std::to_string(rows) + " rows");
        std::vector<double> x_values(static_cast<size_t>(rows * n)), w(static_cast<size_t>(n)), b(static_cast<size_t>(n));
        for (double& v : x_values) v = uniform(rng());
        for (double& v : w) v = 1.0 + 0.5 * uniform(rng());
        for (double& v : b) v = uniform(rng());
        b[7] = std::numeric_limits<double>::quiet_NaN();
        b[40] = std::numeric_limits<double>::infinity();
        b[41] = -std::numeric_limits<double>::infinity();
        const TypedMatrix x = matrix_of(dtype, rows, n, x_values);
        const TypedVector weight = vector_of(param_dtype, w);
        TypedVector bias = vector_of(param_dtype, b);
        if (param_dtype == DType::kFloat32) {
          const uint32_t all_ones_nan = 0x7FFFFFFFu;
          std::memcpy(bias.bytes.data() + 7 * sizeof(float), &all_ones_nan, sizeof(float));
        }
        o.num_threads = 1;
        const TypedMatrix y = forward_with_bias_of(o, x, weight, bias);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < n; ++c) {
            const double got = y.get(r, c);
            if (c == 7) {
              ASSERT_TRUE(std::isnan(got)) << "row " << r << ": " << got;
            } else if (c == 40 || c == 41) {
              ASSERT_EQ(got, c == 40 ? INFINITY : -INFINITY) << "row " << r;
            } else {
              ASSERT_TRUE(std::isfinite(got)) << "row " << r << ", column " << c << ": " << got;
            }
          }
        }
      }
    }
  }
}

// The row loop checks the weight in its first row: RMSNorm in the statistics
// pass, pRMSNorm in the output pass, which it then rewrites on the exact slow
// path when the weight is out of range (or checks first when the output is
// the input's own memory). Either way every row must come out as the
// reference says, with the first row's saved statistic.
TEST_P(ForwardOnEveryTarget, RowsFindAWeightOutOfRangeAnywhere) {
  const std::pair<DType, DType> cases[] = {
      {DType::kFloat32, DType::kFloat32}, {DType::kBFloat16, DType::kFloat32}, {DType::kBFloat16, DType::kBFloat16}};
  std::uniform_real_distribution<double> uniform(-0.5, 0.5), around_one(0.5, 1.5);
  for (const auto& [dtype, weight_dtype] : cases) {
    for (double p : {1.0, 0.0625}) {
      for (int64_t n : {37, 4100, 9000}) {
        std::vector<int64_t> positions = {0, n / 2 + 1, n - 1};
        if (n > 4096 + 5) positions.push_back(4096 + 5);
        for (int64_t huge_at : positions) {
          for (bool in_range : {true, false}) {
            for (int64_t rows : {1, 3}) {
              for (bool in_place : {false, true}) {
                SCOPED_TRACE(std::string(dtype_name(dtype)) + " data, " + dtype_name(weight_dtype) + " weight, p " +
                             std::to_string(p) + ", " + std::to_string(rows) + "x" + std::to_string(n) +
                             (in_place ? " in place" : "") + ", weight " +
                             (in_range ? "in range" : "3e38 at " + std::to_string(huge_at)));
                std::vector<double> row(static_cast<size_t>(n));
                for (double& v : row) v = uniform(rng());
                row[static_cast<size_t>(huge_at)] = 1e-10;
                std::vector<double> x_values;
                for (int64_t r = 0; r < rows; ++r) x_values.insert(x_values.end(), row.begin(), row.end());
                std::vector<double> w(static_cast<size_t>(n));
                for (double& v : w) v = around_one(rng());
                if (!in_range) w[static_cast<size_t>(huge_at)] = 3e38;
                const TypedMatrix x = matrix_of(dtype, rows, n, x_values);
                const TypedVector weight = vector_of(weight_dtype, w);
                const NormOptions o = [&] {
                  NormOptions options = rms(p);
                  options.num_threads = 1;
                  return options;
                }();
                std::vector<float> inv_rms(static_cast<size_t>(rows), -1.0f);
                TypedMatrix y = x;
                if (in_place) {
                  ForwardArgs a;
                  a.rows = rows;
                  a.n = n;
                  a.x = {y.data(), dtype, y.stride};
                  a.y = {y.data(), dtype, y.stride};
                  a.weight = {weight.data(), weight.dtype};
                  a.saved = {inv_rms.data(), nullptr};
                  forward(o, a);
                } else {
                  y = forward_of(o, x, weight, inv_rms.data());
                }
                const reference::ForwardResult expected = reference::forward(o, x.values(), weight.values, {});
                ASSERT_EQ(compare_rows(y, expected.y), "");
                ASSERT_TRUE(std::isfinite(y.get(0, huge_at))) << y.get(0, huge_at);
                for (int64_t r = 0; r < rows; ++r) {
                  const double want = expected.inv_rms[static_cast<size_t>(r)];
                  EXPECT_NEAR(inv_rms[static_cast<size_t>(r)], want, want * float32_tolerance(n)) << "row " << r;
                }
                for (int64_t r = 1; r < rows; ++r) {
                  for (int64_t c = 0; c < n; ++c) {
                    ASSERT_EQ(y.get(r, c), y.get(0, c)) << "row " << r << " column " << c;
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace rmsnorm::testing
