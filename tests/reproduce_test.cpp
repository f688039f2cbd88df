// `rmsnorm reproduce`'s parts: the data loaders on the files the Debian
// packages ship, and every model's forward/backward shapes for every variant.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "tools/reproduce/datasets.hpp"
#include "tools/reproduce/models.hpp"

namespace rmsnorm::reproduce {
namespace {

const Variant kVariants[] = {Variant::kNone, Variant::kLayerNorm, Variant::kRMSNorm, Variant::kPartialRMSNorm};

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

TEST(Models, GruLanguageModelShapesAndGradients) {
  for (Variant v : kVariants) {
    SCOPED_TRACE(variant_name(v));
    GruLanguageModel model(v, 50, 16, 32);
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
  for (Variant v : kVariants) {
    SCOPED_TRACE(variant_name(v));
    TransformerLanguageModel model(v, 40, 16, 32, 4, 2);
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

TEST(Models, MlpClassifierShapes) {
  for (Variant v : kVariants) {
    SCOPED_TRACE(variant_name(v));
    MlpClassifier model(v, 28 * 28, 64, 2, 10);
    const auto logits = model(::torch::rand({5, 28, 28}));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{5, 10}));
    logits.sum().backward();
    EXPECT_TRUE(model->named_parameters()["out.weight"].grad().defined());
  }
}

}  // namespace
}  // namespace rmsnorm::reproduce
