// SPEC section 8: the fused residual add's backward, dh = norm_backward(dy) +
// dh_out, the gradient of both x and the old residual, on every SIMD target.
#include <cmath>
#include <cstring>
#include <functional>

#include "rmsnorm/rmsnorm.h"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

class FusedResidual : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, FusedResidual, every_target(), target_name);

struct FusedGradients {
  TypedMatrix dh;
  std::vector<unsigned char> dweight = std::vector<unsigned char>(8 * 4096 * 4);
  std::vector<float> dbias = std::vector<float>(4 * 4096 * 4);
};

// One fused_add_backward call from h (the stored residual), dy and dh_out
// (when it holds rows), with dweight and dbias when there is a weight.
FusedGradients fused_backward_of(const NormOptions& o, const TypedMatrix& h, const TypedMatrix& dy,
                                 const TypedMatrix* dh_out, const TypedVector& weight) {
  FusedGradients g{make_matrix(h.dtype, h.rows, h.n, h.n)};
  g.dweight.resize(static_cast<size_t>(h.n) * 8);
  g.dbias.resize(static_cast<size_t>(h.n));
  FusedAddBackwardArgs a;
  a.rows = h.rows;
  a.n = h.n;
  a.h = {h.data(), h.dtype, h.stride};
  a.dy = {dy.data(), dy.dtype, dy.stride};
  if (dh_out) a.dh_out = {dh_out->data(), dh_out->dtype, dh_out->stride};
  a.weight = {weight.data(), weight.dtype};
  a.dh = {g.dh.data(), h.dtype, h.n};
  if (weight.data()) a.dweight = {g.dweight.data(), weight.dtype};
  a.dbias = {g.dbias.data(), DType::kFloat32};
  fused_add_backward(o, a);
  return g;
}

std::string name_of(const NormOptions& o, DType dtype, int64_t rows, int64_t n, bool dh_out) {
  return std::string(o.kind == NormKind::kLayerNorm ? "LayerNorm" : "RMSNorm") + " p=" + std::to_string(o.p) + " " +
         dtype_name(dtype) + " " + std::to_string(rows) + "x" + std::to_string(n) +
         (dh_out ? " with dh_out" : " without dh_out");
}

// dh against the reference's dx + dh_out (measured against the terms of both),
// and dweight/dbias bitwise equal to backward()'s: the same sums.
void check_against_reference(const NormOptions& o, DType dtype, int64_t rows, int64_t n, int64_t stride) {
  for (bool with_dh_out : {false, true}) {
    SCOPED_TRACE(name_of(o, dtype, rows, n, with_dh_out));
    const TypedMatrix h = random_matrix(dtype, rows, n, stride);
    const TypedMatrix dy = random_matrix(dtype, rows, n, stride);
    const TypedMatrix dh_out = random_matrix(dtype, rows, n, stride + 1);
    const TypedVector weight = random_vector(dtype, n, 1.0, 0.5);
    const FusedGradients g = fused_backward_of(o, h, dy, with_dh_out ? &dh_out : nullptr, weight);

    const reference::Matrix hv = h.values(), dyv = dy.values();
    const reference::BackwardResult want = reference::backward(o, hv, dyv, weight.values);
    const reference::ForwardResult fw = reference::forward(o, hv, {}, {});
    reference::Matrix expected = want.dx;
    reference::Matrix magnitude = gradient_magnitude(hv, dyv, weight.values, fw);
    if (with_dh_out) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < n; ++c) {
          expected.at(r, c) += dh_out.get(r, c);
          magnitude.at(r, c) += std::fabs(dh_out.get(r, c));
        }
    }
    ASSERT_EQ(compare_rows(g.dh, expected, &magnitude), "");

    // Without dh_out the fused backward is the plain one, bit for bit.
    Gradients plain{make_matrix(dtype, rows, n, n), std::vector<unsigned char>(static_cast<size_t>(n) * 8)};
    std::vector<float> plain_dbias(static_cast<size_t>(n));
    BackwardArgs a = backward_inputs(h, dy, weight);
    a.dx = {plain.dx.data(), dtype, n};
    a.dweight = {plain.dweight.data(), dtype};
    a.dbias = {plain_dbias.data(), DType::kFloat32};
    backward(o, a);
    if (!with_dh_out) ASSERT_EQ(g.dh.bytes, plain.dx.bytes);
    ASSERT_EQ(0, std::memcmp(g.dweight.data(), plain.dweight.data(), static_cast<size_t>(n) * dtype_size(dtype)));
    ASSERT_EQ(0, std::memcmp(g.dbias.data(), plain_dbias.data(), static_cast<size_t>(n) * sizeof(float)));
  }
}

TEST_P(FusedResidual, BackwardIsTheNormsBackwardPlusDhOut) {
  for (DType dtype : all_dtypes()) {
    for (const NormOptions& o : {rms(), rms(0.25), rms(0.5, EpsPlacement::kOutside), layer_norm()}) {
      for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{300}}) check_against_reference(o, dtype, 5, n, n + 2);
    }
  }
}

// The paths other shapes take: streamed outputs, one long row shared by two
// threads (block-parallel sums, then columns), and slow-path rows.
TEST_P(FusedResidual, StreamedSplitAndSlowPathRows) {
  {
    ForceStreaming streaming;
    for (DType dtype : all_dtypes()) check_against_reference(rms(), dtype, 3, 1000, 1003);
  }
  NormOptions two_threads = layer_norm();
  two_threads.num_threads = 2;
  check_against_reference(two_threads, DType::kFloat32, 1, 3 * 4096 + 5, 3 * 4096 + 5);
  NormOptions rms_two_threads = rms(0.5);
  rms_two_threads.num_threads = 2;
  check_against_reference(rms_two_threads, DType::kBFloat16, 1, 2 * 4096 + 77, 2 * 4096 + 77);

  // Row 0 is far beyond float's squares (slow path), row 1 holds a NaN: its dh
  // is NaN whatever dh_out holds, and row 2 is ordinary.
  const int64_t n = 9;
  TypedMatrix h = random_matrix(DType::kFloat32, 3, n, n);
  for (int64_t c = 0; c < n; ++c) h.set(0, c, 1e30 * (c + 1));
  h.set(1, 4, NAN);
  const TypedMatrix dy = random_matrix(DType::kFloat32, 3, n, n);
  const TypedMatrix dh_out = random_matrix(DType::kFloat32, 3, n, n);
  const TypedVector weight = random_vector(DType::kFloat32, n, 1.0, 0.5);
  const FusedGradients g = fused_backward_of(rms(), h, dy, &dh_out, weight);
  const reference::BackwardResult want = reference::backward(rms(), h.values(), dy.values(), weight.values);
  for (int64_t c = 0; c < n; ++c) {
    const double expected = want.dx.at(0, c) + dh_out.get(0, c);
    EXPECT_NEAR(g.dh.get(0, c), expected, 1e-6 * (std::fabs(want.dx.at(0, c)) + std::fabs(dh_out.get(0, c))))
        << "slow-path row, column " << c;
    EXPECT_TRUE(std::isnan(g.dh.get(1, c))) << "NaN row, column " << c;
    EXPECT_TRUE(std::isfinite(g.dh.get(2, c))) << "ordinary row, column " << c;
  }
}

// dh may replace dy or dh_out in place (same stride): the same bits as into a
// separate buffer.
TEST_P(FusedResidual, InPlaceOverDyOrDhOut) {
  const int64_t rows = 4, n = 45;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    const TypedMatrix h = random_matrix(dtype, rows, n, n);
    const TypedMatrix dy = random_matrix(dtype, rows, n, n);
    const TypedMatrix dh_out = random_matrix(dtype, rows, n, n);
    const TypedVector weight = random_vector(dtype, n, 1.0, 0.5);
    const FusedGradients separate = fused_backward_of(rms(), h, dy, &dh_out, weight);
    for (int into = 0; into < 2; ++into) {
      TypedMatrix dy_copy = dy, dh_out_copy = dh_out;
      TypedMatrix& target = into == 0 ? dy_copy : dh_out_copy;
      FusedAddBackwardArgs a;
      a.rows = rows;
      a.n = n;
      a.h = {h.data(), dtype, n};
      a.dy = {dy_copy.data(), dtype, n};
      a.dh_out = {dh_out_copy.data(), dtype, n};
      a.weight = {weight.data(), dtype};
      a.dh = {target.data(), dtype, n};
      fused_add_backward(rms(), a);
      EXPECT_EQ(target.bytes, separate.dh.bytes) << (into == 0 ? "dh over dy" : "dh over dh_out") << ", "
                                                 << dtype_name(dtype);
    }
  }
}

// Central differences in float64 of L = sum dy * y(h) + sum dh_out * h with
// h = x + residual: dL/dx_j = dL/dresidual_j = dh_j.
TEST_P(FusedResidual, FiniteDifferencesInFloat64) {
  const int64_t rows = 2, n = 9;
  for (NormOptions o : {rms(), rms(0.5, EpsPlacement::kOutside), layer_norm()}) {
    o.weight_offset = 0.5;  // the gain 0.5 + g reaches the gradient too
    for (bool with_dh_out : {false, true}) {
      SCOPED_TRACE(name_of(o, DType::kFloat64, rows, n, with_dh_out));
      const TypedMatrix x = random_matrix(DType::kFloat64, rows, n, n);
      const TypedMatrix residual = random_matrix(DType::kFloat64, rows, n, n);
      const TypedMatrix dy = random_matrix(DType::kFloat64, rows, n, n);
      const TypedMatrix dh_out = random_matrix(DType::kFloat64, rows, n, n);
      const TypedVector weight = random_vector(DType::kFloat64, n, 0.5, 0.3);
      auto loss = [&](const TypedMatrix& x_in) {
        const FusedOutputs f = fused_add_of(o, x_in, residual, weight);
        long double total = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < n; ++c) {
            total += static_cast<long double>(dy.get(r, c)) * f.y.get(r, c);
            if (with_dh_out) total += static_cast<long double>(dh_out.get(r, c)) * f.h.get(r, c);
          }
        return total;
      };
      TypedMatrix h = residual;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < n; ++c) h.set(r, c, x.get(r, c) + residual.get(r, c));
      const FusedGradients g = fused_backward_of(o, h, dy, with_dh_out ? &dh_out : nullptr, weight);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < n; ++c) {
          const double step = 1e-6 * std::max(1.0, std::fabs(x.get(r, c)));
          TypedMatrix plus = x, minus = x;
          plus.set(r, c, x.get(r, c) + step);
          minus.set(r, c, x.get(r, c) - step);
          const double numeric = static_cast<double>((loss(plus) - loss(minus)) / (2 * step));
          EXPECT_NEAR(g.dh.get(r, c), numeric, 1e-5 * (1 + std::fabs(numeric))) << "row " << r << " column " << c;
        }
    }
  }
}

TEST(FusedResidualBadInput, EachBadArgumentIsNamedAndNothingWritten) {
  const int64_t rows = 2, n = 6;
  std::vector<float> h(rows * n, 1.5f), dy(rows * n, 0.5f), dh_out(rows * n, 0.25f), weight(n, 1.0f);
  std::vector<float> dh(rows * n + 16, -7.0f), dweight(n, -7.0f);
  std::vector<uint16_t> dh_out16(rows * n, 0);
  auto args = [&] {
    FusedAddBackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.h = {h.data(), DType::kFloat32, n};
    a.dy = {dy.data(), DType::kFloat32, n};
    a.dh_out = {dh_out.data(), DType::kFloat32, n};
    a.weight = {weight.data(), DType::kFloat32};
    a.dh = {dh.data(), DType::kFloat32, n};
    a.dweight = {dweight.data(), DType::kFloat32};
    return a;
  };
  auto expect_rejected = [&](const std::function<void(FusedAddBackwardArgs&)>& corrupt, const std::string& expected) {
    FusedAddBackwardArgs a = args();
    corrupt(a);
    try {
      fused_add_backward(rms(), a);
      ADD_FAILURE() << "accepted; expected an error mentioning '" << expected << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    for (float v : dh) ASSERT_EQ(v, -7.0f) << "dh written before the error (" << expected << ")";
    for (float v : dweight) ASSERT_EQ(v, -7.0f) << "dweight written before the error (" << expected << ")";
  };
  expect_rejected([&](auto& a) { a.dh_out = {dh_out16.data(), DType::kBFloat16, n}; },
                  "dh_out.dtype: expected h's dtype (float32), got bfloat16");
  expect_rejected([&](auto& a) { a.dh_out.row_stride = n - 1; }, "dh_out.row_stride: expected >= n");
  expect_rejected([&](auto& a) { a.h.row_stride = 2; }, "h.row_stride: expected >= n");
  expect_rejected([&](auto& a) { a.dh.dtype = DType::kFloat64; }, "dh.dtype: expected h's dtype");
  expect_rejected([&](auto& a) { a.dweight = {dh_out.data() + 2, DType::kFloat32}; }, "dweight and dh_out overlap");
  expect_rejected([&](auto& a) { a.dh = {dh_out.data() + 1, DType::kFloat32, n}; }, "dh and dh_out overlap");
  expect_rejected([&](auto& a) { a.dh = {h.data(), DType::kFloat32, n}; }, "dh and h overlap");

  // The C API: a status and the same message.
  const rmsnorm_options o = rmsnorm_default_options();
  EXPECT_EQ(rmsnorm_fused_add_backward(&o, rows, n, RMSNORM_FLOAT32, h.data(), n, dy.data(), n, dh_out.data(), n - 1,
                                       weight.data(), RMSNORM_FLOAT32, nullptr, nullptr, dh.data(), n, nullptr,
                                       nullptr),
            RMSNORM_INVALID_ARGUMENT);
  EXPECT_NE(std::string(rmsnorm_last_error()).find("dh_out.row_stride"), std::string::npos) << rmsnorm_last_error();
  for (float v : dh) ASSERT_EQ(v, -7.0f);
}

// The C entry point gives the C++ one's bits.
TEST(FusedResidualCApi, SameBitsAsTheCppApi) {
  const int64_t rows = 3, n = 50;
  const TypedMatrix h = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedMatrix dy = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedMatrix dh_out = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedVector weight = random_vector(DType::kBFloat16, n, 1.0, 0.5);
  const FusedGradients want = fused_backward_of(rms(), h, dy, &dh_out, weight);
  TypedMatrix dh = make_matrix(DType::kBFloat16, rows, n, n);
  std::vector<uint16_t> dweight(n);
  std::vector<float> dbias(n);
  rmsnorm_options o = rmsnorm_default_options();
  ASSERT_EQ(rmsnorm_fused_add_backward(&o, rows, n, RMSNORM_BFLOAT16, h.data(), n, dy.data(), n, dh_out.data(), n,
                                       weight.data(), RMSNORM_BFLOAT16, nullptr, nullptr, dh.data(), n, dweight.data(),
                                       dbias.data()),
            RMSNORM_OK)
      << rmsnorm_last_error();
  EXPECT_EQ(dh.bytes, want.dh.bytes);
  EXPECT_EQ(0, std::memcmp(dweight.data(), want.dweight.data(), n * sizeof(uint16_t)));
  EXPECT_EQ(0, std::memcmp(dbias.data(), want.dbias.data(), n * sizeof(float)));
}

}  // namespace
}  // namespace rmsnorm::testing
