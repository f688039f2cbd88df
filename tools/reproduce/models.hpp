// The three models of `rmsnorm reproduce`, each built with one normalization
// variant, so that the variants differ in nothing else: same layers, same
// initialization (same seed), same data order.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "tools/reproduce/norms.hpp"

namespace rmsnorm::reproduce {

// Every model takes its variant, pRMSNorm's p, and the context its norms
// share (the setting in use, the timer, the estimator probe).
using Context = std::shared_ptr<NormContext>;

// A character-level language model whose GRU cell normalizes the W x and U h
// pre-activations separately (as the paper does in RNNSearch):
//   r, z = sigmoid(N_x(W_rz x) + N_h(U_rz h))
//   c    = tanh(N_x'(W_c x) + r * N_h'(U_c h))
//   h'   = (1 - z) * c + z * h
class GruLanguageModelImpl : public ::torch::nn::Module {
 public:
  GruLanguageModelImpl(Variant variant, double p, const Context& context, int64_t vocab, int64_t embed,
                       int64_t hidden);
  // tokens: (batch, time) int64 -> logits (batch, time, vocab)
  ::torch::Tensor forward(const ::torch::Tensor& tokens);

 private:
  int64_t hidden_;
  ::torch::nn::Embedding embed_{nullptr};
  ::torch::nn::Linear wx_{nullptr}, uh_{nullptr}, out_{nullptr};
  Norm norm_x_rz_{nullptr}, norm_h_rz_{nullptr}, norm_x_c_{nullptr}, norm_h_c_{nullptr};
};
TORCH_MODULE(GruLanguageModel);

// A small pre-norm Transformer language model (causal self-attention + MLP,
// each preceded by a norm; a final norm before the output layer).
class TransformerLanguageModelImpl : public ::torch::nn::Module {
 public:
  TransformerLanguageModelImpl(Variant variant, double p, const Context& context, int64_t vocab, int64_t length,
                               int64_t width, int64_t heads, int64_t layers);
  ::torch::Tensor forward(const ::torch::Tensor& tokens);

 private:
  int64_t width_, heads_;
  ::torch::nn::Embedding embed_{nullptr}, position_{nullptr};
  ::torch::nn::ModuleList attention_norms_, qkv_, projections_, mlp_norms_, mlp_in_, mlp_out_;
  Norm final_norm_{nullptr};
  ::torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(TransformerLanguageModel);

// An image classifier standing in for the paper's ConvPool-CNN-C (Table 10),
// at a size 2 cores train in minutes: four 3x3 convolutions in two blocks
// (channels c, c, 2c, 2c; 2x2 max-pooling after each block), a 1x1
// convolution to the 10 classes and global average pooling. Each
// convolution's output is normalized over the whole feature map of an
// example (channels x height x width, one row per example, a gain per
// element), as layer normalization defines it for convolutions (Ba et al.);
// then ReLU. pRMSNorm's first k elements are the first channels' maps.
class CnnClassifierImpl : public ::torch::nn::Module {
 public:
  CnnClassifierImpl(Variant variant, double p, const Context& context, int64_t channels, int64_t classes);
  ::torch::Tensor forward(const ::torch::Tensor& images);  // (batch, 28, 28) -> (batch, classes)

 private:
  ::torch::nn::ModuleList convolutions_, norms_;
  ::torch::nn::Conv2d classify_{nullptr};
};
TORCH_MODULE(CnnClassifier);

}  // namespace rmsnorm::reproduce
