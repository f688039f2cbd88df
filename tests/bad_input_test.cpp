// SPEC section 5: every rejected argument gives an error naming it, and no
// output is written.
#include <cmath>
#include <functional>

#include "rmsnorm/rmsnorm.h"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

constexpr int64_t kRows = 4, kN = 8;

struct Buffers {
  std::vector<float> x = std::vector<float>(kRows * kN, 1.5f);
  std::vector<float> y = std::vector<float>(kRows * kN + 64, -7.0f);  // room for overlap cases
  std::vector<float> weight = std::vector<float>(kN, 1.0f);
  std::vector<float> stats = std::vector<float>(kRows, -7.0f);
  ForwardArgs args() {
    ForwardArgs a;
    a.rows = kRows;
    a.n = kN;
    a.x = {x.data(), DType::kFloat32, kN};
    a.y = {y.data(), DType::kFloat32, kN};
    a.weight = {weight.data(), DType::kFloat32};
    a.saved = {stats.data(), nullptr};
    return a;
  }
  bool untouched() const {
    for (float v : y)
      if (v != -7.0f) return false;
    for (float v : stats)
      if (v != -7.0f) return false;
    return true;
  }
};

// Expects forward to throw an Error whose message contains `expected`.
void expect_rejected(const std::function<void(NormOptions&, ForwardArgs&, Buffers&)>& corrupt, const std::string& expected) {
  Buffers buffers;
  NormOptions options;
  ForwardArgs args = buffers.args();
  corrupt(options, args, buffers);
  try {
    forward(options, args);
    ADD_FAILURE() << "accepted; expected an error mentioning '" << expected << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << "message: " << e.what();
  }
  EXPECT_TRUE(buffers.untouched()) << "an output was written before the error (" << expected << ")";
}

TEST(BadInput, ForwardRejectsEachBadArgument) {
  expect_rejected([](auto&, auto& a, auto&) { a.n = 0; }, "n: expected >= 1");
  expect_rejected([](auto&, auto& a, auto&) { a.rows = -1; }, "rows: expected >= 0");
  expect_rejected([](auto& o, auto&, auto&) { o.p = 0; }, "options.p");
  expect_rejected([](auto& o, auto&, auto&) { o.p = 1.5; }, "options.p");
  expect_rejected([](auto& o, auto&, auto&) { o.p = NAN; }, "options.p");
  expect_rejected([](auto& o, auto&, auto&) { o.eps = -1e-5; }, "options.eps");
  expect_rejected([](auto& o, auto&, auto&) { o.eps = INFINITY; }, "options.eps");
  expect_rejected([](auto& o, auto&, auto&) { o.eps = NAN; }, "options.eps");
  expect_rejected([](auto& o, auto&, auto&) { o.num_threads = -2; }, "options.num_threads");
  expect_rejected([](auto& o, auto&, auto&) { o.kind = static_cast<NormKind>(7); }, "options.kind");
  expect_rejected([](auto& o, auto&, auto&) { o.eps_placement = static_cast<EpsPlacement>(9); }, "options.eps_placement");
  expect_rejected([](auto& o, auto&, auto&) { o.kind = NormKind::kLayerNorm; o.p = 0.5; }, "LayerNorm has no partial form");
  expect_rejected([](auto& o, auto&, auto&) { o.kind = NormKind::kLayerNorm; o.eps_placement = EpsPlacement::kOutside; },
                  "LayerNorm uses sqrt(var + eps)");
  expect_rejected([](auto&, auto& a, auto&) { a.x.data = nullptr; }, "x: null pointer");
  expect_rejected([](auto&, auto& a, auto&) { a.y.data = nullptr; }, "y: null pointer");
  expect_rejected([](auto&, auto& a, auto&) { a.x.row_stride = kN - 1; }, "x.row_stride: expected >= n");
  expect_rejected([](auto&, auto& a, auto&) { a.y.row_stride = 3; }, "y.row_stride");
  expect_rejected([](auto&, auto& a, auto&) { a.y.dtype = DType::kFloat64; }, "y.dtype: expected x's dtype");
  expect_rejected([](auto&, auto& a, auto&) { a.x.dtype = static_cast<DType>(12); }, "x.dtype");
  expect_rejected([](auto&, auto& a, auto&) { a.weight.dtype = DType::kBFloat16; }, "weight.dtype: expected float32 or the data's dtype");
  expect_rejected([](auto&, auto& a, auto& b) { a.bias = {b.weight.data(), DType::kFloat64}; }, "bias.dtype");
  // Overlaps: y over part of x, y over the weight, statistics over y.
  expect_rejected([](auto&, auto& a, auto& b) { a.x.data = b.y.data() + 3; }, "overlap");
  expect_rejected([](auto&, auto& a, auto& b) { a.weight.data = b.y.data() + 5; }, "overlap");
  expect_rejected([](auto&, auto& a, auto& b) { a.saved.inv_rms = b.x.data(); }, "overlap");
  expect_rejected([](auto&, auto& a, auto& b) { a.x = {b.y.data(), DType::kFloat32, kN + 1}; }, "overlap");
}

TEST(BadInput, InterleavedRowsWithTheSameStrideAreNotAnOverlap) {
  // x in the first half of each 2n-wide row, y in the second half: legal.
  std::vector<float> both(kRows * 2 * kN, 2.0f);
  ForwardArgs a;
  a.rows = kRows;
  a.n = kN;
  a.x = {both.data(), DType::kFloat32, 2 * kN};
  a.y = {both.data() + kN, DType::kFloat32, 2 * kN};
  EXPECT_NO_THROW(forward(NormOptions{}, a));
  EXPECT_NEAR(both[kN], 1.0f, 1e-4f);
}

TEST(BadInput, BackwardRejectsEachBadArgument) {
  std::vector<float> x(kRows * kN, 1.0f), dy(kRows * kN, 1.0f), dx(kRows * kN, -7.0f), w(kN, 1.0f), dw(kN, -7.0f);
  auto args = [&] {
    BackwardArgs a;
    a.rows = kRows;
    a.n = kN;
    a.x = {x.data(), DType::kFloat32, kN};
    a.dy = {dy.data(), DType::kFloat32, kN};
    a.dx = {dx.data(), DType::kFloat32, kN};
    a.weight = {w.data(), DType::kFloat32};
    a.dweight = {dw.data(), DType::kFloat32};
    return a;
  };
  auto expect = [&](const std::function<void(BackwardArgs&)>& corrupt, const std::string& expected) {
    BackwardArgs a = args();
    corrupt(a);
    try {
      backward(NormOptions{}, a);
      ADD_FAILURE() << "accepted; expected '" << expected << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    for (float v : dx) ASSERT_EQ(v, -7.0f) << expected;
    for (float v : dw) ASSERT_EQ(v, -7.0f) << expected;
  };
  expect([](auto& a) { a.dy.data = nullptr; }, "dy: null pointer");
  expect([](auto& a) { a.dy.dtype = DType::kFloat16; }, "dy.dtype");
  expect([](auto& a) { a.dx.row_stride = 2; }, "dx.row_stride");
  expect([](auto& a) { a.weight.data = nullptr; }, "dweight: requested, but there is no weight");
  expect([](auto& a) { a.dweight.dtype = DType::kFloat64; }, "dweight.dtype");
  expect([&](auto& a) { a.dx.data = x.data(); }, "overlap");
  expect([&](auto& a) { a.dweight.data = w.data(); }, "overlap");
  expect([](auto& a) { a.n = -3; }, "n: expected >= 1");
}

TEST(BadInput, FusedAddRejectsAliasedResidual) {
  std::vector<float> x(kRows * kN, 1.0f), residual(kRows * kN, 2.0f), y(kRows * kN, -7.0f);
  FusedAddArgs a;
  a.rows = kRows;
  a.n = kN;
  a.x = {x.data(), DType::kFloat32, kN};
  a.residual = {residual.data(), DType::kFloat32, kN};
  a.y = {residual.data(), DType::kFloat32, kN};
  EXPECT_THROW(fused_add_forward(NormOptions{}, a), Error);
  a.y = {y.data(), DType::kFloat32, kN};
  a.residual = {x.data(), DType::kFloat32, kN};
  EXPECT_THROW(fused_add_forward(NormOptions{}, a), Error);
  for (float v : y) ASSERT_EQ(v, -7.0f);
  for (float v : x) ASSERT_EQ(v, 1.0f);
  // y == x is the vLLM in-place form and is accepted.
  a.residual = {residual.data(), DType::kFloat32, kN};
  a.y = {x.data(), DType::kFloat32, kN};
  EXPECT_NO_THROW(fused_add_forward(NormOptions{}, a));
  EXPECT_EQ(residual[0], 3.0f);
}

TEST(BadInput, CApiReportsStatusAndMessage) {
  std::vector<float> x(kRows * kN, 1.0f), y(kRows * kN, -7.0f);
  rmsnorm_options o = rmsnorm_default_options();
  o.p = 2.0;
  EXPECT_EQ(rmsnorm_forward(&o, kRows, kN, RMSNORM_FLOAT32, x.data(), kN, y.data(), kN, nullptr, nullptr,
                            RMSNORM_FLOAT32, nullptr, nullptr),
            RMSNORM_INVALID_ARGUMENT);
  EXPECT_NE(std::string(rmsnorm_last_error()).find("options.p"), std::string::npos) << rmsnorm_last_error();
  for (float v : y) ASSERT_EQ(v, -7.0f);
  EXPECT_EQ(rmsnorm_forward(nullptr, kRows, kN, RMSNORM_FLOAT32, x.data(), kN, y.data(), kN, nullptr, nullptr,
                            RMSNORM_FLOAT32, nullptr, nullptr),
            RMSNORM_INVALID_ARGUMENT);
  o = rmsnorm_default_options();
  EXPECT_EQ(rmsnorm_forward(&o, kRows, kN, RMSNORM_FLOAT32, x.data(), kN, y.data(), kN, nullptr, nullptr,
                            RMSNORM_FLOAT32, nullptr, nullptr),
            RMSNORM_OK);
  EXPECT_STREQ(rmsnorm_last_error(), "");
  EXPECT_NEAR(y[0], 1.0f, 1e-4f);
  EXPECT_STRNE(rmsnorm_simd_target(), "");
}

TEST(BadInput, UnknownSimdTargetIsRejected) {
  EXPECT_THROW(set_simd_target("AVX9000"), Error);
  EXPECT_NO_THROW(set_simd_target("best"));
}

}  // namespace
}  // namespace rmsnorm::testing
