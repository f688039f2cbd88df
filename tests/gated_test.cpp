// SPEC section 10: grouped RMSNorm and the gate silu(z) before or after the
// norm, forward and backward, on every SIMD target, against the reference.
#include <cmath>
#include <cstring>

#include "rmsnorm/rmsnorm.h"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

class Gated : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, Gated, every_target(), target_name);

const char* gate_name(Gate gate) {
  return gate == Gate::kNone ? "no gate" : gate == Gate::kBeforeNorm ? "gate before" : "gate after";
}

struct GatedCase {
  NormOptions options;
  Gate gate = Gate::kNone;
  int64_t group_size = 0;
};

std::string describe(const GatedCase& k, DType dtype, int64_t rows, int64_t n) {
  return std::string(gate_name(k.gate)) + " group_size " + std::to_string(k.group_size) +
         (k.options.eps_placement == EpsPlacement::kOutside ? " eps outside" : "") + " offset " +
         std::to_string(k.options.weight_offset) + " " + dtype_name(dtype) + " " + std::to_string(rows) + "x" +
         std::to_string(n);
}

struct GatedOutputs {
  TypedMatrix y, dx, dz;
  std::vector<unsigned char> inv_rms, dweight;
};

GatedOutputs run(const GatedCase& k, const TypedMatrix& x, const TypedMatrix& z, const TypedMatrix& dy,
                 const TypedVector& weight, bool saved = true) {
  const int64_t rows = x.rows, n = x.n, m = k.group_size == 0 ? n : k.group_size;
  GatedOutputs out{make_matrix(x.dtype, rows, n, n + 1), make_matrix(x.dtype, rows, n, n), make_matrix(x.dtype, rows, n, n + 2),
                   std::vector<unsigned char>(static_cast<size_t>(rows * (n / m)) * 8, 0xEE),
                   std::vector<unsigned char>(static_cast<size_t>(n) * 8, 0xEE)};
  GatedForwardArgs f;
  f.rows = rows;
  f.n = n;
  f.group_size = k.group_size;
  f.gate = k.gate;
  f.x = {x.data(), x.dtype, x.stride};
  f.z = {z.data(), z.dtype, z.stride};
  f.y = {out.y.data(), x.dtype, out.y.stride};
  f.weight = {weight.data(), weight.dtype};
  f.saved = {out.inv_rms.data(), nullptr};
  gated_forward(k.options, f);

  GatedBackwardArgs b;
  b.rows = rows;
  b.n = n;
  b.group_size = k.group_size;
  b.gate = k.gate;
  b.x = f.x;
  b.z = f.z;
  b.dy = {dy.data(), dy.dtype, dy.stride};
  b.weight = f.weight;
  if (saved) b.saved = {out.inv_rms.data(), nullptr};
  b.dx = {out.dx.data(), x.dtype, out.dx.stride};
  b.dz = {out.dz.data(), x.dtype, out.dz.stride};
  if (weight.data()) b.dweight = {out.dweight.data(), weight.dtype};
  gated_backward(k.options, b);
  return out;
}

void check_case(const GatedCase& k, DType dtype, int64_t rows, int64_t n, bool with_weight = true) {
  SCOPED_TRACE(describe(k, dtype, rows, n));
  const TypedMatrix x = random_matrix(dtype, rows, n, n + 3);
  const TypedMatrix z = random_matrix(dtype, rows, n, n + 5);
  const TypedMatrix dy = random_matrix(dtype, rows, n, n);
  const TypedVector weight = with_weight ? random_vector(dtype, n, 1.0, 0.5) : empty_vector(dtype);
  const GatedOutputs out = run(k, x, z, dy, weight);
  const reference::Matrix xv = x.values(), zv = z.values(), dyv = dy.values();
  const reference::GatedForwardResult want = reference::gated_forward(k.options, xv, zv, k.gate, k.group_size, weight.values);
  ASSERT_EQ(compare_rows(out.y, want.y), "") << "y";
  const DType stats = statistics_dtype(dtype);
  for (size_t i = 0; i < want.inv_rms.size(); ++i) {
    const double tol = stats == DType::kFloat64 ? 1e-13 : float32_tolerance(n);
    ASSERT_NEAR(to_double(stats, out.inv_rms.data(), static_cast<int64_t>(i)), want.inv_rms[i], tol * want.inv_rms[i])
        << "saved 1/r of group " << i;
  }
  const reference::GatedBackwardResult grad =
      reference::gated_backward(k.options, xv, zv, dyv, k.gate, k.group_size, weight.values);
  const GatedTerms terms = gated_terms(k.options, k.gate, k.group_size, xv, zv, dyv, weight.values);
  ASSERT_EQ(compare_rows(out.dx, grad.dx, &terms.dx), "") << "dx";
  if (k.gate != Gate::kNone) ASSERT_EQ(compare_rows(out.dz, grad.dz, &terms.dz), "") << "dz";
  if (with_weight) {
    ASSERT_EQ(compare_sum(dtype, out.dweight.data(), grad.dweight, terms.dweight, rows, n), "") << "dweight";
  }
}

TEST_P(Gated, MatchesTheReference) {
  const int64_t n = 448;  // 7 x 64
  for (DType dtype : all_dtypes()) {
    for (Gate gate : {Gate::kNone, Gate::kBeforeNorm, Gate::kAfterNorm}) {
      for (int64_t m : {int64_t{1}, int64_t{7}, int64_t{64}, n, int64_t{0}}) {
        check_case({rms(), gate, m}, dtype, 3, n);
      }
      check_case({rms(1.0, EpsPlacement::kOutside), gate, 7}, dtype, 3, n);
      NormOptions gemma = rms();
      gemma.weight_offset = 1.0;
      check_case({gemma, gate, 64}, dtype, 2, n);
      check_case({rms(), gate, 5}, dtype, 2, 35, /*with_weight=*/false);
    }
  }
}

// Long groups (several 4096-element blocks), many rows on two threads.
TEST_P(Gated, LongGroupsAndThreads) {
  NormOptions two = rms();
  two.num_threads = 2;
  check_case({two, Gate::kBeforeNorm, 2 * 4096 + 3}, DType::kFloat32, 2, 2 * (2 * 4096 + 3));
  check_case({two, Gate::kAfterNorm, 96}, DType::kBFloat16, 200, 384);
}

// Saved and recomputed statistics give bitwise the same gradients.
TEST_P(Gated, SavedAndRecomputedStatisticsAgree) {
  for (Gate gate : {Gate::kNone, Gate::kBeforeNorm, Gate::kAfterNorm}) {
    for (const NormOptions& o : {rms(), rms(1.0, EpsPlacement::kOutside, 0.5)}) {
      const GatedCase k{o, gate, 8};
      const TypedMatrix x = random_matrix(DType::kFloat32, 4, 40, 40);
      const TypedMatrix z = random_matrix(DType::kFloat32, 4, 40, 40);
      const TypedMatrix dy = random_matrix(DType::kFloat32, 4, 40, 40);
      const TypedVector weight = random_vector(DType::kFloat32, 40, 1.0, 0.5);
      const GatedOutputs saved = run(k, x, z, dy, weight, true), recomputed = run(k, x, z, dy, weight, false);
      EXPECT_EQ(saved.dx.bytes, recomputed.dx.bytes) << gate_name(gate);
      EXPECT_EQ(saved.dz.bytes, recomputed.dz.bytes) << gate_name(gate);
      EXPECT_EQ(saved.dweight, recomputed.dweight) << gate_name(gate);
    }
  }
}

// Central differences in float64 of L = sum dy * y through gated_forward: dx,
// dz and dweight.
TEST_P(Gated, FiniteDifferencesInFloat64) {
  const int64_t rows = 2, n = 12;
  for (Gate gate : {Gate::kNone, Gate::kBeforeNorm, Gate::kAfterNorm}) {
    for (const GatedCase& k : {GatedCase{rms(), gate, 4}, GatedCase{rms(1.0, EpsPlacement::kOutside), gate, 12},
                               GatedCase{rms(), gate, 1}}) {
      SCOPED_TRACE(describe(k, DType::kFloat64, rows, n));
      // Values of order 1 (random_matrix spreads rows over decades, and a
      // difference quotient of a row of 1e3 against a gate step of 1e-6 is
      // mostly rounding): the derivative is what is checked here; scales are
      // covered against the reference above.
      auto unit_matrix = [&](double spread) {
        std::normal_distribution<double> normal(0.0, spread);
        std::vector<double> values(static_cast<size_t>(rows * n));
        for (double& v : values) v = normal(rng());
        return matrix_of(DType::kFloat64, rows, n, values);
      };
      const TypedMatrix x = unit_matrix(1.0), z = unit_matrix(2.0), dy = unit_matrix(1.0);
      const TypedVector weight = random_vector(DType::kFloat64, n, 1.0, 0.5);
      auto loss = [&](const TypedMatrix& xs, const TypedMatrix& zs, const TypedVector& w) {
        TypedMatrix y = make_matrix(DType::kFloat64, rows, n, n);
        GatedForwardArgs f;
        f.rows = rows;
        f.n = n;
        f.group_size = k.group_size;
        f.gate = k.gate;
        f.x = {xs.data(), DType::kFloat64, n};
        f.z = {zs.data(), DType::kFloat64, n};
        f.y = {y.data(), DType::kFloat64, n};
        f.weight = {w.data(), DType::kFloat64};
        gated_forward(k.options, f);
        long double total = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < n; ++c) total += static_cast<long double>(dy.get(r, c)) * y.get(r, c);
        return total;
      };
      const GatedOutputs out = run(k, x, z, dy, weight);
      auto numeric = [&](const TypedMatrix& m, int64_t r, int64_t c, bool is_z) {
        const double step = 1e-6 * std::max(1.0, std::fabs(m.get(r, c)));
        TypedMatrix plus = m, minus = m;
        plus.set(r, c, m.get(r, c) + step);
        minus.set(r, c, m.get(r, c) - step);
        const long double difference = is_z ? loss(x, plus, weight) - loss(x, minus, weight)
                                            : loss(plus, z, weight) - loss(minus, z, weight);
        return static_cast<double>(difference / (2 * step));
      };
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < n; ++c) {
          const double dx = numeric(x, r, c, false);
          EXPECT_NEAR(out.dx.get(r, c), dx, 1e-5 * (1 + std::fabs(dx))) << "dx row " << r << " column " << c;
          if (gate == Gate::kNone) continue;
          const double dz = numeric(z, r, c, true);
          EXPECT_NEAR(out.dz.get(r, c), dz, 1e-5 * (1 + std::fabs(dz))) << "dz row " << r << " column " << c;
        }
      std::vector<double> dweight(static_cast<size_t>(n));
      std::memcpy(dweight.data(), out.dweight.data(), dweight.size() * sizeof(double));
      for (int64_t c = 0; c < n; ++c) {
        const double step = 1e-6;
        std::vector<double> plus = weight.values, minus = weight.values;
        plus[c] += step;
        minus[c] -= step;
        const double numeric_dw = static_cast<double>(
            (loss(x, z, vector_of(DType::kFloat64, plus)) - loss(x, z, vector_of(DType::kFloat64, minus))) / (2 * step));
        EXPECT_NEAR(dweight[c], numeric_dw, 1e-5 * (1 + std::fabs(numeric_dw))) << "dweight column " << c;
      }
    }
  }
}

// A NaN among a group's statistic elements makes that group NaN and no other;
// a NaN gate after the norm reaches its own element only; groups beyond
// float's squares go to the wide path and stay accurate.
TEST_P(Gated, NonFiniteAndExtremeGroups) {
  const int64_t rows = 3, n = 24, m = 8;
  for (Gate gate : {Gate::kNone, Gate::kBeforeNorm, Gate::kAfterNorm}) {
    NormOptions o = rms();
    o.eps = 0;
    const GatedCase k{o, gate, m};
    SCOPED_TRACE(describe(k, DType::kFloat32, rows, n));
    TypedMatrix x = random_matrix(DType::kFloat32, rows, n, n);
    TypedMatrix z = random_matrix(DType::kFloat32, rows, n, n);
    x.set(0, 10, NAN);  // group 1 of row 0
    z.set(1, 3, NAN);   // group 0 of row 1: a statistic element only with the gate before
    for (int64_t c = 16; c < 24; ++c) x.set(2, c, 1e30 * (1 + 0.1 * c));  // group 2 of row 2
    const TypedMatrix dy = random_matrix(DType::kFloat32, rows, n, n);
    const TypedVector weight = random_vector(DType::kFloat32, n, 1.0, 0.5);
    const GatedOutputs out = run(k, x, z, dy, weight);
    for (int64_t c = 0; c < n; ++c) {
      EXPECT_EQ(std::isnan(out.y.get(0, c)), c >= 8 && c < 16) << "row 0 column " << c;
      EXPECT_EQ(std::isnan(out.dx.get(0, c)), c >= 8 && c < 16) << "row 0 column " << c;
      const bool z_poisons_group = gate == Gate::kBeforeNorm && c < 8;
      const bool z_reaches_element = gate == Gate::kAfterNorm && c == 3;
      EXPECT_EQ(std::isnan(out.y.get(1, c)), z_poisons_group || z_reaches_element) << "row 1 column " << c;
      if (gate != Gate::kNone) {
        // dz_3 of the NaN gate is NaN; after the norm it also enters the
        // group's sum gy u, so the group's dx is NaN.
        EXPECT_EQ(std::isnan(out.dx.get(1, c)), c < 8) << "row 1 column " << c;
      }
    }
    const reference::GatedForwardResult want = reference::gated_forward(o, x.values(), z.values(), gate, m, weight.values);
    const reference::GatedBackwardResult grad =
        reference::gated_backward(o, x.values(), z.values(), dy.values(), gate, m, weight.values);
    const GatedTerms terms = gated_terms(k.options, k.gate, k.group_size, x.values(), z.values(), dy.values(), weight.values);
    for (int64_t c = 16; c < 24; ++c) {
      EXPECT_NEAR(out.y.get(2, c), want.y.at(2, c), 1e-6 * std::fabs(want.y.at(2, c)) + 1e-30) << "column " << c;
      // dx ~ silu(z) / r with r ~ 1e30 lies near or below float's subnormals:
      // a float32 output holds it to its smallest step, 2^-149.
      EXPECT_NEAR(out.dx.get(2, c), grad.dx.at(2, c), 1e-5 * terms.dx.at(2, c) + std::ldexp(1.0, -149))
          << "column " << c;
    }
  }
}

// dweight terms on float's subnormal grid (found by the fresh-clone CI run):
// u / r = silu(-100) / r ~ 3e-42, times dy, is 10.4 units of 2^-149 per row.
// A float chunk rounded each row's term to 10 units, and the float32 dweight
// of two rows came out 20 where the exact 20.8 rounds to 21.
TEST_P(Gated, DweightOfSubnormalTermsIsRoundedOnce) {
  const NormOptions o = rms();
  const GatedCase k{o, Gate::kBeforeNorm, 2};
  const TypedMatrix x = matrix_of(DType::kFloat32, 2, 2, {1, 1, 1, 1});
  const TypedMatrix z = matrix_of(DType::kFloat32, 2, 2, {-100, 2, -100, 2});
  const TypedVector weight = vector_of(DType::kFloat32, {1, 1});
  // dy0 such that dy0 * u0 / r is 10.4 units of 2^-149.
  const double u_hat = reference::gated_forward(o, x.values(), z.values(), Gate::kBeforeNorm, 2, {}).y.at(0, 0);
  const double dy0 = 10.4 * std::ldexp(1.0, -149) / u_hat;
  const TypedMatrix dy = matrix_of(DType::kFloat32, 2, 2, {dy0, 1, dy0, 1});
  const GatedOutputs out = run(k, x, z, dy, weight);
  const reference::GatedBackwardResult want =
      reference::gated_backward(o, x.values(), z.values(), dy.values(), Gate::kBeforeNorm, 2, weight.values);
  float dweight0 = 0;
  std::memcpy(&dweight0, out.dweight.data(), sizeof dweight0);
  EXPECT_EQ(dweight0, static_cast<float>(want.dweight[0])) << "reference " << want.dweight[0];
}

TEST(GatedBadInput, EachBadArgumentIsRejectedAndNothingWritten) {
  const int64_t rows = 2, n = 12;
  std::vector<float> x(rows * n, 1.0f), z(rows * n, 0.5f), w(n, 0.5f), y(rows * n, -7.0f), dx(rows * n, -7.0f),
      dz(rows * n, -7.0f), inv_rms(rows * 4, -7.0f);
  std::vector<double> zd(rows * n, 0.5);
  auto forward_args = [&](int64_t m, Gate gate) {
    GatedForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.group_size = m;
    a.gate = gate;
    a.x = {x.data(), DType::kFloat32, n};
    a.z = {z.data(), DType::kFloat32, n};
    a.y = {y.data(), DType::kFloat32, n};
    a.weight = {w.data(), DType::kFloat32};
    a.saved = {inv_rms.data(), nullptr};
    return a;
  };
  auto backward_args = [&](Gate gate) {
    GatedBackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.group_size = 3;
    a.gate = gate;
    a.x = {x.data(), DType::kFloat32, n};
    a.z = {z.data(), DType::kFloat32, n};
    a.dy = {x.data(), DType::kFloat32, n};
    a.dx = {dx.data(), DType::kFloat32, n};
    a.dz = {dz.data(), DType::kFloat32, n};
    return a;
  };
  auto expect_rejected = [&](const std::function<void()>& call, const std::string& expected) {
    EXPECT_EQ(rejection_problem(call, expected), "");
    for (const std::vector<float>* out : {&y, &dx, &dz, &inv_rms}) {
      for (float v : *out) ASSERT_EQ(v, -7.0f) << "an output was written before the error";
    }
  };
  expect_rejected([&] { gated_forward(rms(), forward_args(5, Gate::kNone)); },
                  "group_size: expected a divisor of n = 12 (or 0 for one group), got 5");
  expect_rejected([&] { gated_forward(rms(), forward_args(-3, Gate::kNone)); }, "group_size: expected a divisor");
  expect_rejected([&] { gated_forward(rms(), forward_args(3, static_cast<Gate>(9))); },
                  "gate: expected none, before_norm or after_norm, got value 9");
  expect_rejected(
      [&] {
        GatedForwardArgs a = forward_args(3, Gate::kAfterNorm);
        a.z.data = nullptr;
        gated_forward(rms(), a);
      },
      "z: null pointer, but the gate is on");
  expect_rejected(
      [&] {
        GatedForwardArgs a = forward_args(3, Gate::kBeforeNorm);
        a.z = {zd.data(), DType::kFloat64, n};
        gated_forward(rms(), a);
      },
      "z.dtype: expected x's dtype (float32), got float64");
  expect_rejected(
      [&] {
        GatedForwardArgs a = forward_args(3, Gate::kBeforeNorm);
        a.z = {z.data(), DType::kFloat32, n - 1};
        gated_forward(rms(), a);
      },
      "z.row_stride: expected >= n = 12");
  expect_rejected([&] { gated_forward(layer_norm(), forward_args(3, Gate::kNone)); }, "options.kind: gated and grouped");
  expect_rejected([&] { gated_forward(rms(0.5), forward_args(3, Gate::kNone)); }, "options.p: gated and grouped");
  NormOptions llama = rms();
  llama.rounding = Rounding::kBeforeWeight;
  expect_rejected([&] { gated_forward(llama, forward_args(3, Gate::kNone)); }, "options.rounding: gated and grouped");
  expect_rejected(
      [&] {
        GatedForwardArgs a = forward_args(3, Gate::kNone);
        a.saved.mean = y.data();
        gated_forward(rms(), a);
      },
      "saved.mean: expected null");
  expect_rejected(
      [&] {
        GatedForwardArgs a = forward_args(3, Gate::kAfterNorm);
        a.y = {z.data(), DType::kFloat32, n};
        gated_forward(rms(), a);
      },
      "y and z overlap");
  expect_rejected(
      [&] {
        GatedBackwardArgs a = backward_args(Gate::kBeforeNorm);
        a.dz.data = nullptr;
        gated_backward(rms(), a);
      },
      "dz: null pointer, but the gate is on");
  expect_rejected(
      [&] {
        GatedBackwardArgs a = backward_args(Gate::kAfterNorm);
        a.dz = {dx.data(), DType::kFloat32, n};
        gated_backward(rms(), a);
      },
      "dz and dx overlap");
  expect_rejected(
      [&] {
        GatedBackwardArgs a = backward_args(Gate::kAfterNorm);
        a.dz = {z.data(), DType::kFloat32, n};
        gated_backward(rms(), a);
      },
      "dz and z overlap");

  rmsnorm_options c = rmsnorm_default_options();
  EXPECT_EQ(rmsnorm_gated_forward(&c, rows, n, 3, static_cast<rmsnorm_gate>(3), RMSNORM_FLOAT32, x.data(), n,
                                  z.data(), n, y.data(), n, w.data(), RMSNORM_FLOAT32, nullptr),
            RMSNORM_INVALID_ARGUMENT);
  EXPECT_NE(std::string(rmsnorm_last_error()).find("gate: expected RMSNORM_GATE_NONE"), std::string::npos)
      << rmsnorm_last_error();
  for (float v : y) ASSERT_EQ(v, -7.0f);
}

// The C API gives the C++ API's bits.
TEST(GatedCApi, GivesTheCppApisBits) {
  const int64_t rows = 3, n = 30, m = 10;
  const TypedMatrix x = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedMatrix z = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedMatrix dy = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedVector weight = random_vector(DType::kFloat32, n, 1.0, 0.5);
  for (Gate gate : {Gate::kBeforeNorm, Gate::kAfterNorm}) {
    const GatedOutputs cpp = run({rms(), gate, m}, x, z, dy, weight);
    TypedMatrix y = make_matrix(DType::kBFloat16, rows, n, n + 1), dx = make_matrix(DType::kBFloat16, rows, n, n),
                dz = make_matrix(DType::kBFloat16, rows, n, n + 2);
    std::vector<unsigned char> inv_rms(cpp.inv_rms.size(), 0xEE), dweight(cpp.dweight.size(), 0xEE);
    rmsnorm_options o = rmsnorm_default_options();
    const auto c_gate = static_cast<rmsnorm_gate>(static_cast<int>(gate));
    ASSERT_EQ(rmsnorm_gated_forward(&o, rows, n, m, c_gate, RMSNORM_BFLOAT16, x.data(), x.stride, z.data(), z.stride,
                                    y.data(), y.stride, weight.data(), RMSNORM_FLOAT32, inv_rms.data()),
              RMSNORM_OK)
        << rmsnorm_last_error();
    ASSERT_EQ(rmsnorm_gated_backward(&o, rows, n, m, c_gate, RMSNORM_BFLOAT16, x.data(), x.stride, z.data(), z.stride,
                                     dy.data(), dy.stride, weight.data(), RMSNORM_FLOAT32, inv_rms.data(), dx.data(),
                                     dx.stride, dz.data(), dz.stride, dweight.data()),
              RMSNORM_OK)
        << rmsnorm_last_error();
    EXPECT_EQ(y.bytes, cpp.y.bytes) << gate_name(gate);
    EXPECT_EQ(dx.bytes, cpp.dx.bytes) << gate_name(gate);
    EXPECT_EQ(dz.bytes, cpp.dz.bytes) << gate_name(gate);
    EXPECT_EQ(inv_rms, cpp.inv_rms) << gate_name(gate);
    EXPECT_EQ(dweight, cpp.dweight) << gate_name(gate);
  }
}

}  // namespace
}  // namespace rmsnorm::testing
