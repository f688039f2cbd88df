// Backward against the float64 reference (dx, dweight, dbias) on every target,
// finite differences in float64 for every variant, and saved statistics
// against recomputed ones.
#include <cmath>

#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

// One gtest instance per compiled SIMD target (TargetTest sets the target).
class BackwardOnEveryTarget : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, BackwardOnEveryTarget, every_target(), target_name);

struct Variant {
  NormKind kind;
  EpsPlacement placement;
  double p;
  bool weight;
};

std::vector<Variant> all_variants() {
  std::vector<Variant> v;
  for (bool w : {false, true}) {
    v.push_back({NormKind::kLayerNorm, EpsPlacement::kInside, 1.0, w});
    for (EpsPlacement placement : {EpsPlacement::kInside, EpsPlacement::kOutside})
      for (double p : {1.0, 0.5, 0.0625}) v.push_back({NormKind::kRMSNorm, placement, p, w});
  }
  return v;
}

NormOptions options_of(const Variant& v) {
  NormOptions o;
  o.kind = v.kind;
  o.eps_placement = v.placement;
  o.p = v.p;
  o.eps = 1e-5;
  return o;
}

std::string describe(const Variant& v, DType dtype, int64_t rows, int64_t n) {
  return std::string(v.kind == NormKind::kLayerNorm ? "LayerNorm" : "RMSNorm") +
         (v.placement == EpsPlacement::kInside ? " inside" : " outside") + " p=" + std::to_string(v.p) +
         (v.weight ? " +weight " : " ") + dtype_name(dtype) + " " + std::to_string(rows) + "x" + std::to_string(n);
}

struct BackwardOutputs {
  TypedMatrix dx;
  std::vector<unsigned char> dweight, dbias;
};

BackwardOutputs run_backward(const NormOptions& o, const TypedMatrix& x, const TypedMatrix& dy,
                             const TypedVector& weight, const void* inv_rms, const void* mean) {
  BackwardOutputs out;
  out.dx = make_matrix(x.dtype, x.rows, x.n, x.n + 2);
  out.dweight.resize(static_cast<size_t>(x.n) * 8);
  out.dbias.resize(static_cast<size_t>(x.n) * 4);
  BackwardArgs a = backward_inputs(x, dy, weight, inv_rms, mean);
  a.dx = {out.dx.data(), x.dtype, x.n + 2};
  if (weight.data()) a.dweight = {out.dweight.data(), weight.dtype};
  a.dbias = {out.dbias.data(), DType::kFloat32};
  backward(o, a);
  return out;
}

void check_backward(const Variant& v, DType dtype, int64_t rows, int64_t n, bool use_saved) {
  SCOPED_TRACE(describe(v, dtype, rows, n) + (use_saved ? " saved statistics" : " recomputed statistics"));
  const NormOptions o = options_of(v);
  const DType param_dtype = rows % 2 ? DType::kFloat32 : dtype;
  const TypedMatrix x = random_matrix(dtype, rows, n, n + 1);  // mean-zero: see forward_test.cpp
  const TypedMatrix dy = random_matrix(dtype, rows, n, n + 3);
  const TypedVector weight = v.weight ? random_vector(param_dtype, n, 1.0, 0.5) : empty_vector(param_dtype);
  std::vector<unsigned char> inv_rms(static_cast<size_t>(rows) * 8), mean(static_cast<size_t>(rows) * 8);
  if (use_saved) {
    TypedMatrix y = make_matrix(dtype, rows, n, n);
    ForwardArgs f;
    f.rows = rows;
    f.n = n;
    f.x = {x.data(), dtype, x.stride};
    f.y = {y.data(), dtype, n};
    f.weight = {weight.data(), param_dtype};
    f.saved = {inv_rms.data(), mean.data()};
    forward(o, f);
  }
  const BackwardOutputs got = run_backward(o, x, dy, weight, use_saved ? inv_rms.data() : nullptr,
                                           use_saved ? mean.data() : nullptr);
  ASSERT_EQ(check_backward_outputs(o, x, dy, weight, got.dx, v.weight ? got.dweight.data() : nullptr, param_dtype,
                                   got.dbias.data()),
            "");
}

TEST_P(BackwardOnEveryTarget, MatchesReference) {
  const std::vector<Variant> variants = all_variants();
  // Each target starts the rotation elsewhere, so that across targets every
  // configuration still meets the large sizes.
  size_t rotation = std::hash<std::string>{}(GetParam());
  for (DType dtype : all_dtypes()) {
    for (int64_t n : {1, 2, 3, 7, 16, 17, 33, 127, 4095, 4097, 65537}) {
      for (int64_t rows : {1, 3, 64, 1000}) {
        if (rows * n > (int64_t{1} << 20)) continue;
        const bool small = rows * n <= 2048;
        for (size_t i = 0; i < (small ? variants.size() : 2); ++i) {
          const Variant& v = variants[small ? i : rotation++ % variants.size()];
          check_backward(v, dtype, rows, n, (i + rows) % 2 == 0);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

// dweight and dbias are summed per thread in a chunk that is flushed every 32
// rows into double totals; a call that never flushes writes from the chunk
// (or accumulates straight into a float32 output), and a row that takes the
// wide path adds into the totals directly. Row counts around the chunk,
// parameters in float32 and in the data's dtype, 1 and 2 threads, with and
// without a row whose sum of squares overflows the arithmetic type (none for
// float16, whose range cannot overflow float32's).
TEST_P(BackwardOnEveryTarget, WeightGradientsWhateverTheirAccumulation) {
  const int64_t n = 37;
  for (DType dtype : all_dtypes()) {
    for (DType param_dtype : {DType::kFloat32, dtype}) {
      for (int64_t rows : {1, 2, 31, 32, 33, 70}) {
        for (int threads : {1, 2}) {
          for (bool wide_row : {false, true}) {
            if (wide_row && dtype == DType::kFloat16) continue;
            SCOPED_TRACE(std::string(dtype_name(dtype)) + " params " + dtype_name(param_dtype) + " rows " +
                         std::to_string(rows) + " threads " + std::to_string(threads) +
                         (wide_row ? " with a wide row" : ""));
            NormOptions o = rms();
            o.num_threads = threads;
            TypedMatrix x = random_matrix(dtype, rows, n, n);
            if (wide_row) {
              const double huge = dtype == DType::kFloat64 ? 1e200 : 1e30;
              for (int64_t c = 0; c < n; ++c) x.set(rows / 2, c, x.get(rows / 2, c) * huge);
            }
            const TypedMatrix dy = random_matrix(dtype, rows, n, n);
            const TypedVector weight = random_vector(param_dtype, n, 1.0, 0.5);
            const BackwardOutputs got = run_backward(o, x, dy, weight, nullptr, nullptr);
            ASSERT_EQ(check_backward_outputs(o, x, dy, weight, got.dx, got.dweight.data(), param_dtype,
                                             got.dbias.data()),
                      "");
          }
        }
      }
    }
  }
}

// dx through the non-temporal paths (see Forward.StreamedOutputsMatchReference).
TEST_P(BackwardOnEveryTarget, StreamedOutputsMatchReference) {
  const ForceStreaming streaming;
  const std::vector<Variant> variants = all_variants();
  // Each target starts the rotation elsewhere, so that across targets every
  // configuration still meets the large sizes.
  size_t rotation = std::hash<std::string>{}(GetParam());
  for (DType dtype : all_dtypes()) {
    for (int64_t n : {1, 17, 4097}) {
      for (int64_t rows : {1, 3, 64}) {
        check_backward(variants[rotation++ % variants.size()], dtype, rows, n, rows % 2 == 0);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(Backward, LongRowsSplitAcrossThreads) {
  // Fewer rows than threads, long rows: blocks and columns are shared by threads.
  for (const Variant& v : all_variants()) {
    NormOptions o = options_of(v);
    o.num_threads = 2;
    const int64_t rows = 1, n = 1 << 17;
    const TypedMatrix x = random_matrix(DType::kFloat32, rows, n, n);
    const TypedMatrix dy = random_matrix(DType::kFloat32, rows, n, n);
    const TypedVector weight = v.weight ? random_vector(DType::kFloat32, n, 1.0, 0.5) : empty_vector(DType::kFloat32);
    const BackwardOutputs got = run_backward(o, x, dy, weight, nullptr, nullptr);
    const reference::BackwardResult want = reference::backward(o, x.values(), dy.values(), weight.values);
    ASSERT_EQ(compare_rows(got.dx, want.dx), "") << describe(v, DType::kFloat32, rows, n);
  }
}

// Central differences of L = sum(y * probe) in float64 against the analytic
// gradients, for every variant, with and without weight and bias.
TEST(Backward, FiniteDifferencesFloat64) {
  const int64_t rows = 3, n = 11;
  for (const Variant& v : all_variants()) {
    const NormOptions o = options_of(v);
    SCOPED_TRACE(describe(v, DType::kFloat64, rows, n));
    // Unit-scale data, elements kept away from 0: central differences with
    // h = 1e-6 then have truncation and roundoff errors far below 1e-6.
    TypedMatrix x = make_matrix(DType::kFloat64, rows, n, n), probe = make_matrix(DType::kFloat64, rows, n, n);
    std::uniform_real_distribution<double> magnitude(0.3, 2.0);
    std::bernoulli_distribution negative(0.5);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        x.set(r, c, (negative(rng()) ? -1 : 1) * magnitude(rng()));
        probe.set(r, c, (negative(rng()) ? -1 : 1) * magnitude(rng()));
      }
    const TypedVector weight = v.weight ? random_vector(DType::kFloat64, n, 1.0, 0.5) : empty_vector(DType::kFloat64);
    const TypedVector bias = random_vector(DType::kFloat64, n, 0.0, 1.0);
    auto loss = [&](const TypedMatrix& input, const TypedVector& w, const TypedVector& b) {
      TypedMatrix y = make_matrix(DType::kFloat64, rows, n, n);
      ForwardArgs a;
      a.rows = rows;
      a.n = n;
      a.x = {input.data(), DType::kFloat64, n};
      a.y = {y.data(), DType::kFloat64, n};
      a.weight = {w.data(), DType::kFloat64};
      a.bias = {b.data(), DType::kFloat64};
      forward(o, a);
      long double total = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < n; ++c) total += y.get(r, c) * probe.get(r, c);
      return static_cast<double>(total);
    };
    const BackwardOutputs got = run_backward(o, x, probe, weight, nullptr, nullptr);
    const double h = 1e-6;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        TypedMatrix plus = x, minus = x;
        plus.set(r, c, x.get(r, c) + h);
        minus.set(r, c, x.get(r, c) - h);
        const double step = plus.get(r, c) - minus.get(r, c);
        const double numeric = (loss(plus, weight, bias) - loss(minus, weight, bias)) / step;
        EXPECT_NEAR(got.dx.get(r, c), numeric, 1e-6 * (1 + std::fabs(numeric))) << "dx " << r << "," << c;
      }
    auto vector_check = [&](TypedVector base, bool is_weight, const std::vector<unsigned char>& analytic, DType dt) {
      for (int64_t c = 0; c < n; ++c) {
        TypedVector plus = base, minus = base;
        auto* p = reinterpret_cast<double*>(plus.bytes.data());
        auto* m = reinterpret_cast<double*>(minus.bytes.data());
        p[c] += h;
        m[c] -= h;
        const double numeric = is_weight ? (loss(x, plus, bias) - loss(x, minus, bias)) / (2 * h)
                                         : (loss(x, weight, plus) - loss(x, weight, minus)) / (2 * h);
        EXPECT_NEAR(to_double(dt, analytic.data(), c), numeric, 1e-6 * (1 + std::fabs(numeric)))
            << (is_weight ? "dweight " : "dbias ") << c;
      }
    };
    if (v.weight) vector_check(weight, true, got.dweight, DType::kFloat64);
    vector_check(bias, false, got.dbias, DType::kFloat32);
  }
}

TEST(Backward, SavedAndRecomputedStatisticsAgree) {
  for (const Variant& v : all_variants()) {
    for (DType dtype : all_dtypes()) {
      const NormOptions o = options_of(v);
      const int64_t rows = 7, n = 1000;
      const TypedMatrix x = random_matrix(dtype, rows, n, n);
      const TypedMatrix dy = random_matrix(dtype, rows, n, n);
      const TypedVector weight = v.weight ? random_vector(dtype, n, 1.0, 0.5) : empty_vector(dtype);
      std::vector<unsigned char> inv_rms(rows * 8), mean(rows * 8);
      TypedMatrix y = make_matrix(dtype, rows, n, n);
      ForwardArgs f;
      f.rows = rows;
      f.n = n;
      f.x = {x.data(), dtype, n};
      f.y = {y.data(), dtype, n};
      f.weight = {weight.data(), dtype};
      f.saved = {inv_rms.data(), mean.data()};
      forward(o, f);
      const BackwardOutputs saved = run_backward(o, x, dy, weight, inv_rms.data(), mean.data());
      const BackwardOutputs fresh = run_backward(o, x, dy, weight, nullptr, nullptr);
      // The same statistics bit for bit, for every placement ("outside" derives
      // s from the rounded 1/r on both paths): the same results bit for bit.
      // Before, "outside" compared within 1 ulp and failed at random where dx
      // cancels (s from sqrt(ms) on one path, from 1/r - eps on the other).
      ASSERT_EQ(saved.dx.bytes, fresh.dx.bytes) << describe(v, dtype, rows, n);
      ASSERT_EQ(saved.dweight, fresh.dweight) << describe(v, dtype, rows, n);
    }
  }
}

}  // namespace
}  // namespace rmsnorm::testing
