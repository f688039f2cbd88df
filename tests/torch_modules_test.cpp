// The LibTorch modules from C++: parameters registered and initialized as
// LibTorch's own modules do, forward equal to the formula, and autograd
// through the engine's backward equal to LibTorch's layer_norm gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "rmsnorm/torch/modules.hpp"
#include "rmsnorm/torch/ops.hpp"

namespace {

TEST(TorchModules, RMSNormParametersAndForward) {
  rmsnorm::torch::RMSNorm norm(rmsnorm::torch::RMSNormOptions({16}).eps(1e-6));
  const auto params = norm->named_parameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_TRUE(params.contains("weight"));
  EXPECT_TRUE(torch::equal(norm->weight, torch::ones({16})));

  const auto x = torch::randn({4, 3, 16}, torch::kFloat64);
  norm->to(torch::kFloat64);
  const auto expected = x / torch::sqrt(x.pow(2).mean(-1, true) + 1e-6);
  EXPECT_TRUE(torch::allclose(norm(x), expected, 1e-13, 1e-13));
}

TEST(TorchModules, RMSNormDefaultEpsIsTheDtypeEpsilon) {
  rmsnorm::torch::RMSNorm norm(std::vector<int64_t>{8});
  const auto x = torch::full({2, 8}, 1e-5, torch::kFloat32);
  const double eps = std::numeric_limits<float>::epsilon();
  const auto expected = x / std::sqrt(1e-10 + eps);
  EXPECT_TRUE(torch::allclose(norm(x), expected, 1e-5, 1e-7));
}

TEST(TorchModules, PartialRMSNormUsesTheLeadingElements) {
  rmsnorm::torch::RMSNorm norm(rmsnorm::torch::RMSNormOptions({8}).p(0.25).eps(0.0).elementwise_affine(false));
  EXPECT_EQ(norm->named_parameters().size(), 0u);
  const auto x = torch::arange(1, 9, torch::kFloat64).reshape({1, 8});
  const double r = std::sqrt((1.0 + 4.0) / 2.0);  // k = ceil(8 * 0.25) = 2
  EXPECT_TRUE(torch::allclose(norm(x), x / r, 1e-14, 1e-14));
}

// Gemma's gain (1 + weight) and Llama's rounding from C++, through the same ops
// as Python: the offset against the formula in float64; before_weight against
// round(round(x / r) * w) in bfloat16, where the two orders differ somewhere.
TEST(TorchModules, WeightOffsetAndRoundingOrder) {
  rmsnorm::torch::RMSNorm gemma(rmsnorm::torch::RMSNormOptions({16}).eps(1e-6).weight_offset(1.0));
  gemma->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    gemma->weight.copy_(torch::linspace(-0.5, 0.5, 16, torch::kFloat64));
  }
  const auto x = torch::randn({4, 16}, torch::kFloat64);
  const auto expected = x / torch::sqrt(x.pow(2).mean(-1, true) + 1e-6) * (1.0 + gemma->weight);
  EXPECT_TRUE(torch::allclose(gemma(x), expected, 1e-13, 1e-13));

  const auto xb = (3 * torch::randn({64, 256})).to(torch::kBFloat16);
  const auto wb = (1 + 0.1 * torch::randn({256})).to(torch::kBFloat16);
  const auto before = rmsnorm::torch::rms_norm(xb, {256}, wb, c10::nullopt, 1e-6, 1.0, "inside", 0.0, "before_weight");
  const auto single = rmsnorm::torch::rms_norm(xb, {256}, wb, c10::nullopt, 1e-6, 1.0, "inside", 0.0, "single");
  const auto xd = xb.to(torch::kFloat64);
  const auto t = (xd / torch::sqrt(xd.pow(2).mean(-1, true) + 1e-6)).to(torch::kBFloat16);
  const auto reference = (t.to(torch::kFloat32) * wb.to(torch::kFloat32)).to(torch::kBFloat16);
  // Equal but for elements near a rounding boundary of x / r (SPEC section 7).
  EXPECT_LT((before != reference).sum().item<int64_t>(), 64 * 256 / 100);
  EXPECT_GT((before != single).sum().item<int64_t>(), 64 * 256 / 100);
  EXPECT_THROW(rmsnorm::torch::rms_norm(xb, {256}, wb, c10::nullopt, 1e-6, 1.0, "inside", 0.0, "twice"), c10::Error);
}

TEST(TorchModules, LayerNormMatchesLibTorchForwardAndBackward) {
  rmsnorm::torch::LayerNorm ours(rmsnorm::torch::LayerNormOptions({2, 6}).eps(1e-5));
  torch::nn::LayerNorm theirs(torch::nn::LayerNormOptions({2, 6}).eps(1e-5));
  ours->to(torch::kFloat64);
  theirs->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    const auto w = torch::rand({2, 6}, torch::kFloat64) + 0.5;
    const auto b = torch::randn({2, 6}, torch::kFloat64);
    ours->weight.copy_(w);
    ours->bias.copy_(b);
    theirs->weight.copy_(w);
    theirs->bias.copy_(b);
  }
  const auto x = torch::randn({5, 2, 6}, torch::kFloat64).requires_grad_();
  const auto dy = torch::randn({5, 2, 6}, torch::kFloat64);
  const auto y_ours = ours(x);
  const auto y_theirs = theirs(x);
  EXPECT_TRUE(torch::allclose(y_ours, y_theirs, 1e-12, 1e-12));
  const auto g_ours = torch::autograd::grad({y_ours}, {x, ours->weight, ours->bias}, {dy});
  const auto g_theirs = torch::autograd::grad({y_theirs}, {x, theirs->weight, theirs->bias}, {dy});
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(g_ours[i], g_theirs[i], 1e-11, 1e-11)) << "gradient " << i;
}

TEST(TorchModules, BadShapeIsAnError) {
  rmsnorm::torch::RMSNorm norm(std::vector<int64_t>{8});
  try {
    norm(torch::randn({3, 7}));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("trailing dimensions"), std::string::npos) << e.what();
  }
}

}  // namespace
