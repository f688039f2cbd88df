// The three models of `rmsnorm reproduce`, each built with one normalization
// variant, so that the variants differ in nothing else: same layers, same
// initialization (same seed), same data order.
#pragma once

#include <string>

#include <torch/torch.h>

namespace rmsnorm::reproduce {

enum class Variant { kNone, kLayerNorm, kRMSNorm, kPartialRMSNorm };

const char* variant_name(Variant v);  // "none", "LayerNorm", "RMSNorm", "pRMSNorm (p=6.25%)"
const char* variant_key(Variant v);   // "none", "layernorm", "rmsnorm", "prmsnorm"

// One normalization layer over the last dimension, computed by our engine's
// PyTorch ops: LayerNorm (gain + bias), RMSNorm (gain), pRMSNorm p = 6.25%
// (gain), or the identity.
class NormImpl : public ::torch::nn::Module {
 public:
  NormImpl(Variant variant, int64_t size);
  ::torch::Tensor forward(const ::torch::Tensor& x);

 private:
  Variant variant_;
  int64_t size_;
  ::torch::Tensor weight_, bias_;
};
TORCH_MODULE(Norm);

// A character-level language model whose GRU cell normalizes the W x and U h
// pre-activations separately (as the paper does in RNNSearch):
//   r, z = sigmoid(N_x(W_rz x) + N_h(U_rz h))
//   c    = tanh(N_x'(W_c x) + r * N_h'(U_c h))
//   h'   = (1 - z) * c + z * h
class GruLanguageModelImpl : public ::torch::nn::Module {
 public:
  GruLanguageModelImpl(Variant variant, int64_t vocab, int64_t embed, int64_t hidden);
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
  TransformerLanguageModelImpl(Variant variant, int64_t vocab, int64_t context, int64_t width, int64_t heads,
                               int64_t layers);
  ::torch::Tensor forward(const ::torch::Tensor& tokens);

 private:
  int64_t width_, heads_;
  ::torch::nn::Embedding embed_{nullptr}, position_{nullptr};
  ::torch::nn::ModuleList attention_norms_, qkv_, projections_, mlp_norms_, mlp_in_, mlp_out_;
  Norm final_norm_{nullptr};
  ::torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(TransformerLanguageModel);

// An image classifier: a multi-layer perceptron with a norm after each hidden
// linear layer (Linear -> Norm -> ReLU), on 28x28 images.
class MlpClassifierImpl : public ::torch::nn::Module {
 public:
  MlpClassifierImpl(Variant variant, int64_t inputs, int64_t hidden, int64_t layers, int64_t classes);
  ::torch::Tensor forward(const ::torch::Tensor& images);

 private:
  ::torch::nn::ModuleList linears_, norms_;
  ::torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(MlpClassifier);

}  // namespace rmsnorm::reproduce
