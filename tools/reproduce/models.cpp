#include "tools/reproduce/models.hpp"

#include <cmath>
#include <limits>

namespace rmsnorm::reproduce {
namespace {

std::string fmt_site(const char* name, int64_t layer) { return std::string(name) + std::to_string(layer); }

}  // namespace


GruLanguageModelImpl::GruLanguageModelImpl(Variant variant, double p, const Context& context, int64_t vocab,
                                           int64_t embed, int64_t hidden)
    : hidden_(hidden) {
  embed_ = register_module("embed", ::torch::nn::Embedding(vocab, embed));
  // One matrix for the three input pre-activations, one for the three recurrent ones.
  wx_ = register_module("wx", ::torch::nn::Linear(embed, 3 * hidden));
  uh_ = register_module("uh", ::torch::nn::Linear(::torch::nn::LinearOptions(hidden, 3 * hidden).bias(false)));
  norm_x_rz_ = register_module("norm_x_rz", Norm(variant, std::vector<int64_t>{2 * hidden}, p, context, "norm_x_rz"));
  norm_h_rz_ = register_module("norm_h_rz", Norm(variant, std::vector<int64_t>{2 * hidden}, p, context, "norm_h_rz"));
  norm_x_c_ = register_module("norm_x_c", Norm(variant, std::vector<int64_t>{hidden}, p, context, "norm_x_c"));
  norm_h_c_ = register_module("norm_h_c", Norm(variant, std::vector<int64_t>{hidden}, p, context, "norm_h_c"));
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

TransformerLanguageModelImpl::TransformerLanguageModelImpl(Variant variant, double p, const Context& context,
                                                           int64_t vocab, int64_t length, int64_t width, int64_t heads,
                                                           int64_t layers)
    : width_(width), heads_(heads) {
  embed_ = register_module("embed", ::torch::nn::Embedding(vocab, width));
  position_ = register_module("position", ::torch::nn::Embedding(length, width));
  attention_norms_ = register_module("attention_norms", ::torch::nn::ModuleList());
  qkv_ = register_module("qkv", ::torch::nn::ModuleList());
  projections_ = register_module("projections", ::torch::nn::ModuleList());
  mlp_norms_ = register_module("mlp_norms", ::torch::nn::ModuleList());
  mlp_in_ = register_module("mlp_in", ::torch::nn::ModuleList());
  mlp_out_ = register_module("mlp_out", ::torch::nn::ModuleList());
  for (int64_t l = 0; l < layers; ++l) {
    attention_norms_->push_back(Norm(variant, std::vector<int64_t>{width}, p, context, fmt_site("attention_norm", l)));
    qkv_->push_back(::torch::nn::Linear(width, 3 * width));
    projections_->push_back(::torch::nn::Linear(width, width));
    mlp_norms_->push_back(Norm(variant, std::vector<int64_t>{width}, p, context, fmt_site("mlp_norm", l)));
    mlp_in_->push_back(::torch::nn::Linear(width, 4 * width));
    mlp_out_->push_back(::torch::nn::Linear(4 * width, width));
  }
  final_norm_ = register_module("final_norm", Norm(variant, std::vector<int64_t>{width}, p, context, "final_norm"));
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

CnnClassifierImpl::CnnClassifierImpl(Variant variant, double p, const Context& context, int64_t channels,
                                     int64_t classes) {
  convolutions_ = register_module("convolutions", ::torch::nn::ModuleList());
  norms_ = register_module("norms", ::torch::nn::ModuleList());
  // (input channels, output channels, side of the map it produces)
  const int64_t layers[4][3] = {{1, channels, 28}, {channels, channels, 28}, {channels, 2 * channels, 14},
                                {2 * channels, 2 * channels, 14}};
  for (int l = 0; l < 4; ++l) {
    const auto [in, out, side] = layers[l];
    convolutions_->push_back(::torch::nn::Conv2d(::torch::nn::Conv2dOptions(in, out, 3).padding(1)));
    norms_->push_back(Norm(variant, std::vector<int64_t>{out, side, side}, p, context, fmt_site("conv_norm", l)));
  }
  classify_ = register_module("classify", ::torch::nn::Conv2d(::torch::nn::Conv2dOptions(2 * channels, classes, 1)));
}

::torch::Tensor CnnClassifierImpl::forward(const ::torch::Tensor& images) {
  auto x = images.unsqueeze(1);
  for (size_t l = 0; l < convolutions_->size(); ++l) {
    x = ::torch::relu(norms_[l]->as<Norm>()->forward(convolutions_[l]->as<::torch::nn::Conv2d>()->forward(x)));
    if (l % 2 == 1) x = ::torch::max_pool2d(x, 2);
  }
  return classify_(x).mean({2, 3});
}

}  // namespace rmsnorm::reproduce
