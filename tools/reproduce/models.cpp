#include "tools/reproduce/models.hpp"

#include "rmsnorm/torch/ops.hpp"

namespace rmsnorm::reproduce {

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::kNone:
      return "none";
    case Variant::kLayerNorm:
      return "LayerNorm";
    case Variant::kRMSNorm:
      return "RMSNorm";
    case Variant::kPartialRMSNorm:
      return "pRMSNorm (p=6.25%)";
  }
  return "?";
}

const char* variant_key(Variant v) {
  switch (v) {
    case Variant::kNone:
      return "none";
    case Variant::kLayerNorm:
      return "layernorm";
    case Variant::kRMSNorm:
      return "rmsnorm";
    case Variant::kPartialRMSNorm:
      return "prmsnorm";
  }
  return "?";
}

NormImpl::NormImpl(Variant variant, int64_t size) : variant_(variant), size_(size) {
  if (variant == Variant::kNone) return;
  weight_ = register_parameter("weight", ::torch::ones({size}));
  if (variant == Variant::kLayerNorm) bias_ = register_parameter("bias", ::torch::zeros({size}));
}

::torch::Tensor NormImpl::forward(const ::torch::Tensor& x) {
  constexpr double kEps = 1e-5;
  switch (variant_) {
    case Variant::kNone:
      return x;
    case Variant::kLayerNorm:
      return rmsnorm::torch::layer_norm(x, {size_}, weight_, bias_, kEps);
    case Variant::kRMSNorm:
      return rmsnorm::torch::rms_norm(x, {size_}, weight_, c10::nullopt, kEps, 1.0, "inside");
    case Variant::kPartialRMSNorm:
      return rmsnorm::torch::rms_norm(x, {size_}, weight_, c10::nullopt, kEps, 0.0625, "inside");
  }
  return x;
}

GruLanguageModelImpl::GruLanguageModelImpl(Variant variant, int64_t vocab, int64_t embed, int64_t hidden)
    : hidden_(hidden) {
  embed_ = register_module("embed", ::torch::nn::Embedding(vocab, embed));
  // One matrix for the three input pre-activations, one for the three recurrent ones.
  wx_ = register_module("wx", ::torch::nn::Linear(embed, 3 * hidden));
  uh_ = register_module("uh", ::torch::nn::Linear(::torch::nn::LinearOptions(hidden, 3 * hidden).bias(false)));
  norm_x_rz_ = register_module("norm_x_rz", Norm(variant, 2 * hidden));
  norm_h_rz_ = register_module("norm_h_rz", Norm(variant, 2 * hidden));
  norm_x_c_ = register_module("norm_x_c", Norm(variant, hidden));
  norm_h_c_ = register_module("norm_h_c", Norm(variant, hidden));
  out_ = register_module("out", ::torch::nn::Linear(hidden, vocab));
}

::torch::Tensor GruLanguageModelImpl::forward(const ::torch::Tensor& tokens) {
  const int64_t batch = tokens.size(0), time = tokens.size(1);
  // All input pre-activations at once (they do not depend on h), normalized per step.
  const auto wx = wx_(embed_(tokens));  // (batch, time, 3 hidden)
  const auto wx_rz = norm_x_rz_(wx.narrow(2, 0, 2 * hidden_));
  const auto wx_c = norm_x_c_(wx.narrow(2, 2 * hidden_, hidden_));
  auto h = ::torch::zeros({batch, hidden_}, wx.options());
  std::vector<::torch::Tensor> outputs;
  outputs.reserve(time);
  for (int64_t t = 0; t < time; ++t) {
    const auto uh = uh_(h);
    const auto gates = ::torch::sigmoid(wx_rz.select(1, t) + norm_h_rz_(uh.narrow(1, 0, 2 * hidden_)));
    const auto r = gates.narrow(1, 0, hidden_), z = gates.narrow(1, hidden_, hidden_);
    const auto c = ::torch::tanh(wx_c.select(1, t) + r * norm_h_c_(uh.narrow(1, 2 * hidden_, hidden_)));
    h = (1 - z) * c + z * h;
    outputs.push_back(h);
  }
  return out_(::torch::stack(outputs, 1));
}

TransformerLanguageModelImpl::TransformerLanguageModelImpl(Variant variant, int64_t vocab, int64_t context,
                                                           int64_t width, int64_t heads, int64_t layers)
    : width_(width), heads_(heads) {
  embed_ = register_module("embed", ::torch::nn::Embedding(vocab, width));
  position_ = register_module("position", ::torch::nn::Embedding(context, width));
  attention_norms_ = register_module("attention_norms", ::torch::nn::ModuleList());
  qkv_ = register_module("qkv", ::torch::nn::ModuleList());
  projections_ = register_module("projections", ::torch::nn::ModuleList());
  mlp_norms_ = register_module("mlp_norms", ::torch::nn::ModuleList());
  mlp_in_ = register_module("mlp_in", ::torch::nn::ModuleList());
  mlp_out_ = register_module("mlp_out", ::torch::nn::ModuleList());
  for (int64_t l = 0; l < layers; ++l) {
    attention_norms_->push_back(Norm(variant, width));
    qkv_->push_back(::torch::nn::Linear(width, 3 * width));
    projections_->push_back(::torch::nn::Linear(width, width));
    mlp_norms_->push_back(Norm(variant, width));
    mlp_in_->push_back(::torch::nn::Linear(width, 4 * width));
    mlp_out_->push_back(::torch::nn::Linear(4 * width, width));
  }
  final_norm_ = register_module("final_norm", Norm(variant, width));
  out_ = register_module("out", ::torch::nn::Linear(width, vocab));
}

::torch::Tensor TransformerLanguageModelImpl::forward(const ::torch::Tensor& tokens) {
  const int64_t batch = tokens.size(0), time = tokens.size(1), head_width = width_ / heads_;
  auto x = embed_(tokens) + position_(::torch::arange(time, tokens.options()));
  const auto causal = ::torch::ones({time, time}, ::torch::kBool).triu(1);
  for (size_t l = 0; l < qkv_->size(); ++l) {
    auto qkv = qkv_[l]->as<::torch::nn::Linear>()->forward(attention_norms_[l]->as<Norm>()->forward(x));
    qkv = qkv.view({batch, time, 3, heads_, head_width}).permute({2, 0, 3, 1, 4});  // (3, b, heads, t, hw)
    auto scores = ::torch::matmul(qkv[0], qkv[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(head_width));
    scores = scores.masked_fill(causal, -std::numeric_limits<float>::infinity());
    auto attended = ::torch::matmul(::torch::softmax(scores, -1), qkv[2]).transpose(1, 2).reshape({batch, time, width_});
    x = x + projections_[l]->as<::torch::nn::Linear>()->forward(attended);
    auto hidden = mlp_in_[l]->as<::torch::nn::Linear>()->forward(mlp_norms_[l]->as<Norm>()->forward(x));
    x = x + mlp_out_[l]->as<::torch::nn::Linear>()->forward(::torch::gelu(hidden));
  }
  return out_(final_norm_(x));
}

MlpClassifierImpl::MlpClassifierImpl(Variant variant, int64_t inputs, int64_t hidden, int64_t layers,
                                     int64_t classes) {
  linears_ = register_module("linears", ::torch::nn::ModuleList());
  norms_ = register_module("norms", ::torch::nn::ModuleList());
  for (int64_t l = 0; l < layers; ++l) {
    linears_->push_back(::torch::nn::Linear(l == 0 ? inputs : hidden, hidden));
    norms_->push_back(Norm(variant, hidden));
  }
  out_ = register_module("out", ::torch::nn::Linear(hidden, classes));
}

::torch::Tensor MlpClassifierImpl::forward(const ::torch::Tensor& images) {
  auto x = images.flatten(1);
  for (size_t l = 0; l < linears_->size(); ++l) {
    x = ::torch::relu(norms_[l]->as<Norm>()->forward(linears_[l]->as<::torch::nn::Linear>()->forward(x)));
  }
  return out_(x);
}

}  // namespace rmsnorm::reproduce
