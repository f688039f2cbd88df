// `rmsnorm reproduce`'s parts: the data loaders on the files the Debian
// packages ship, every model's forward/backward shapes for every variant, the
// implementation settings' agreement, the norm timer, and the estimator study.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "tools/reproduce/datasets.hpp"
#include "tools/reproduce/estimator.hpp"
#include "tools/reproduce/models.hpp"
#include "tools/reproduce/trainer.hpp"
#include "tests/test_support.hpp"

namespace rmsnorm::reproduce {
namespace {

TEST(Datasets, FortunesCorpusIsRealText) {
  const CharCorpus corpus = load_fortunes();
  EXPECT_GT(corpus.train.size(0), 1000000) << "fortunes ships about 2.6 MB of text";
  EXPECT_GT(corpus.valid.size(0), 100000);
  EXPECT_GE(corpus.vocab(), 60);
  EXPECT_LE(corpus.vocab(), 256);
  EXPECT_GE(corpus.train.min().item<int64_t>(), 0);
  EXPECT_LT(corpus.train.max().item<int64_t>(), corpus.vocab());
  // The separator lines are gone: no "\n%\n" in the decoded text's first 100k characters.
  std::string head;
  for (int64_t i = 0; i < 100000; ++i) head += corpus.alphabet[corpus.train[i].item<int64_t>()];
  EXPECT_EQ(head.find("\n%\n"), std::string::npos);
  EXPECT_NE(head.find(' '), std::string::npos);
}

TEST(Datasets, FashionMnistHasTheStandardSplit) {
  const FashionMnist data = load_fashion_mnist();
  EXPECT_EQ(data.train.images.sizes(), (std::vector<int64_t>{60000, 28, 28}));
  EXPECT_EQ(data.test.images.sizes(), (std::vector<int64_t>{10000, 28, 28}));
  EXPECT_EQ(data.train.labels.size(0), 60000);
  EXPECT_GE(data.train.images.min().item<float>(), 0.0f);
  EXPECT_LE(data.train.images.max().item<float>(), 1.0f);
  // Ten balanced classes: 6000 training images each.
  const auto counts = ::torch::bincount(data.train.labels);
  ASSERT_EQ(counts.size(0), 10);
  EXPECT_TRUE(counts.eq(6000).all().item<bool>());
}

TEST(Datasets, BadIdxFileIsAClearError) {
  const std::string path = ::testing::TempDir() + "/not-idx";
  std::ofstream(path) << "this is not an idx file at all";
  try {
    load_idx(path, path);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic number"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

Context fused_context() { return std::make_shared<NormContext>(); }

// Fresh random inputs each run, reproducible: LibTorch's generator starts from
// the run's seed (printed; RMSNORM_TEST_SEED=<seed> re-runs a test's inputs).
void seed_torch() { ::torch::manual_seed(rmsnorm::testing::run_seed()); }

TEST(Models, GruLanguageModelShapesAndGradients) {
  seed_torch();
  for (Variant v : task_variants(Task::kGruLanguageModel)) {
    SCOPED_TRACE(variant_name(v));
    GruLanguageModel model(v, 0.0625, fused_context(), 50, 16, 32);
    const auto tokens = ::torch::randint(0, 50, {3, 7}, ::torch::kLong);
    const auto logits = model(tokens);
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 7, 50}));
    logits.sum().backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_TRUE(::torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    }
    // The norms add parameters only when there is a norm.
    const bool has_norm_weight = model->named_parameters().contains("norm_x_rz.weight");
    EXPECT_EQ(has_norm_weight, v != Variant::kNone);
  }
}

TEST(Models, TransformerLanguageModelShapesAndCausality) {
  seed_torch();
  for (Variant v : task_variants(Task::kTransformerLanguageModel)) {
    SCOPED_TRACE(variant_name(v));
    TransformerLanguageModel model(v, 0.0625, fused_context(), 40, 16, 32, 4, 2);
    auto tokens = ::torch::randint(0, 40, {2, 16}, ::torch::kLong);
    const auto logits = model(tokens);
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 16, 40}));
    // Changing the last token must not change earlier positions' outputs.
    auto changed = tokens.clone();
    changed.index_put_({0, 15}, (tokens[0][15].item<int64_t>() + 1) % 40);
    const auto again = model(changed);
    EXPECT_TRUE(::torch::allclose(logits.narrow(1, 0, 15), again.narrow(1, 0, 15), 1e-5, 1e-6));
    logits.sum().backward();
    EXPECT_TRUE(model->named_parameters()["embed.weight"].grad().defined());
  }
}

TEST(Models, CnnClassifierShapesAndGradients) {
  seed_torch();
  for (Variant v : task_variants(Task::kImageClassifier)) {
    SCOPED_TRACE(variant_name(v));
    CnnClassifier model(v, 0.125, fused_context(), 4, 10);
    const auto logits = model(::torch::rand({5, 28, 28}));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{5, 10}));
    logits.sum().backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_TRUE(::torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    }
    // A norm over each example's whole feature map: a gain per element of (channels, 28, 28).
    if (v != Variant::kNone) EXPECT_EQ(model->named_parameters()["norms.0.weight"].sizes(), (std::vector<int64_t>{4, 28, 28}));
  }
}

// The three implementation settings of each variant compute the same function:
// forward values and every gradient agree within float32 rounding (SPEC
// section 4: float32 results within a few ulp of the reference, here
// against each other, on rows of magnitude ~1 after normalization).
TEST(Settings, EveryVariantComputesTheSameFunctionInEverySetting) {
  seed_torch();
  // (n = 1 is left out: there every gradient is a cancellation to ~0, whose
  // rounding residue has no scale to be measured against.)
  const std::vector<std::vector<int64_t>> shapes = {{7}, {100}, {257}, {3, 5, 7}};
  for (Variant v : {Variant::kLayerNorm, Variant::kRMSNorm, Variant::kPartialRMSNorm, Variant::kL2Norm}) {
    for (const auto& shape : shapes) {
      SCOPED_TRACE(std::string(variant_name(v)) + " over " + ::testing::PrintToString(shape));
      Norm norm(v, shape, 0.125, fused_context(), "test");
      {
        ::torch::NoGradGuard no_grad;  // a gain and bias that are not ones and zeros
        for (auto& p : norm->parameters()) p.copy_(::torch::randn(p.sizes()) * 0.5 + 1);
      }
      std::vector<int64_t> input_shape = {11};
      input_shape.insert(input_shape.end(), shape.begin(), shape.end());
      const auto x = (::torch::randn(input_shape) * 3 + 0.5).requires_grad_();
      const auto dy = ::torch::randn(input_shape);
      std::vector<::torch::Tensor> reference;
      for (Setting setting : kSettings) {
        SCOPED_TRACE(setting_key(setting));
        for (auto& p : norm->parameters()) p.mutable_grad() = ::torch::Tensor();
        x.mutable_grad() = ::torch::Tensor();
        const auto y = norm->compute(x, setting);
        ASSERT_EQ(y.sizes(), x.sizes());
        y.backward(dy);
        std::vector<::torch::Tensor> results = {y.detach(), x.grad()};
        for (auto& p : norm->parameters()) results.push_back(p.grad());
        if (reference.empty()) {
          reference = results;
          continue;
        }
        for (size_t i = 0; i < results.size(); ++i) {
          SCOPED_TRACE(i == 0 ? "y" : i == 1 ? "dx" : "dparameter");
          const double scale = reference[i].abs().max().item<double>() + 1e-30;
          const double error = (results[i] - reference[i]).abs().max().item<double>();
          // n up to 257 terms summed in different orders: ~1e-6 of the largest value.
          EXPECT_LE(error, 2e-5 * scale) << "max |diff| " << error << " against max " << scale;
        }
      }
    }
  }
}

TEST(Settings, TrainingStepRecordsTheNormsOwnTimeInEverySetting) {
  seed_torch();
  for (Setting setting : kSettings) {
    SCOPED_TRACE(setting_key(setting));
    auto context = fused_context();
    GruLanguageModel model(Variant::kRMSNorm, 0.0625, context, 30, 8, 16);
    context->setting = setting;
    context->timing = true;
    context->reset_step();
    model(::torch::randint(0, 30, {2, 5}, ::torch::kLong)).sum().backward();
    EXPECT_GT(context->forward_seconds(), 0);
    EXPECT_GT(context->backward_seconds(), 0) << "the backward hooks never closed an interval";
    context->reset_step();
    EXPECT_EQ(context->step_seconds(), 0);
  }
}

TEST(Estimator, RatioOfKnownRows) {
  // Row of 16: the first element 4, the rest 1. k = 1, 2, 4, 8 for the studied p.
  auto row = ::torch::ones({1, 16}, ::torch::kDouble);
  row[0][0] = 4;
  EstimatorProbe probe;
  probe.record("site", row);
  const double full = (16.0 + 15.0) / 16.0;
  const double expected[] = {std::sqrt(16.0 / full), std::sqrt((16.0 + 1) / 2 / full), std::sqrt((16.0 + 3) / 4 / full),
                             std::sqrt((16.0 + 7) / 8 / full)};
  ASSERT_EQ(probe.ratios["site"].size(), std::size(kStudiedP));
  for (size_t i = 0; i < std::size(kStudiedP); ++i) {
    ASSERT_EQ(probe.ratios["site"][i].size(), 1u);
    EXPECT_NEAR(probe.ratios["site"][i][0], expected[i], 1e-12) << "p = " << kStudiedP[i];
  }
  // An all-zero row has no ratio: skipped, not NaN.
  probe.record("zero", ::torch::zeros({2, 16}, ::torch::kDouble));
  EXPECT_TRUE(probe.ratios["zero"][0].empty());
}

TEST(Estimator, QuantilesInterpolateBetweenOrderStatistics) {
  std::vector<double> values;
  for (int i = 100; i >= 0; --i) values.push_back(0.5 + i * 0.01);  // 0.5 .. 1.5, unsorted
  const RatioSummary s = summarize_ratios(0.25, values);
  ASSERT_EQ(s.quantiles.size(), std::size(kQuantileLevels));
  for (size_t i = 0; i < std::size(kQuantileLevels); ++i) EXPECT_NEAR(s.quantiles[i], 0.5 + kQuantileLevels[i], 1e-12);
  EXPECT_EQ(s.rows, 101);
  EXPECT_NEAR(s.within_10_percent, 21.0 / 101.0, 1e-12);  // 0.90, 0.91, ..., 1.10
}

TEST(Estimator, SyntheticOutliersBiasTheFirstKEstimate) {
  const auto cases = synthetic_study(512, 200, rmsnorm::testing::run_seed());
  ASSERT_EQ(cases.size(), 4u);
  for (const RatioSummary& r : cases[0].by_p) EXPECT_NEAR(r.quantiles[3], 1.0, 0.05) << "no outliers, p = " << r.p;
  // Six channels at 50x past every k: the estimate misses them and is far too small.
  for (const RatioSummary& r : cases[1].by_p) EXPECT_LT(r.quantiles[6], 0.5) << "outliers past k, p = " << r.p;
  // The same channels first: far too large, less so as k grows.
  for (size_t i = 0; i < cases[2].by_p.size(); ++i) {
    EXPECT_GT(cases[2].by_p[i].quantiles[0], 1.2) << "outliers first, p = " << cases[2].by_p[i].p;
    if (i > 0) EXPECT_LT(cases[2].by_p[i].quantiles[3], cases[2].by_p[i - 1].quantiles[3]);
  }
}

}  // namespace
}  // namespace rmsnorm::reproduce
