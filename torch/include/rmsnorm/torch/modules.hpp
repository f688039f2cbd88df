// LibTorch modules over the engine's ops, in LibTorch's own style (options
// struct with TORCH_ARG, reset()/reset_parameters(), registered parameters):
//   rmsnorm::torch::RMSNorm norm(rmsnorm::torch::RMSNormOptions({768}).eps(1e-6));
//   auto y = norm(x);
#pragma once

#include <string>
#include <vector>

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace rmsnorm::torch {

struct RMSNormOptions {
  /* implicit */ RMSNormOptions(std::vector<int64_t> normalized_shape);
  TORCH_ARG(std::vector<int64_t>, normalized_shape);
  // nullopt: the machine epsilon of the input's dtype, as torch.nn.RMSNorm does.
  TORCH_ARG(c10::optional<double>, eps) = c10::nullopt;
  TORCH_ARG(bool, elementwise_affine) = true;
  TORCH_ARG(double, p) = 1.0;                     // < 1: pRMSNorm
  TORCH_ARG(std::string, eps_placement) = "inside";  // or "outside" (the paper authors' code)
  TORCH_ARG(bool, bias) = false;
  TORCH_ARG(double, weight_offset) = 0.0;         // the gain is weight_offset + weight (Gemma: 1)
  TORCH_ARG(std::string, rounding) = "single";    // or "before_weight" (Llama; SPEC section 7)
};

class RMSNormImpl : public ::torch::nn::Cloneable<RMSNormImpl> {
 public:
  explicit RMSNormImpl(RMSNormOptions options);
  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  ::torch::Tensor forward(const ::torch::Tensor& input);

  RMSNormOptions options;
  ::torch::Tensor weight;  // undefined without elementwise_affine
  ::torch::Tensor bias;    // undefined unless options.bias()
};
// What TORCH_MODULE(RMSNorm) expands to, spelled with ::torch because the
// macro's unqualified `torch::` would name this namespace.
class RMSNorm : public ::torch::nn::ModuleHolder<RMSNormImpl> {
 public:
  using ::torch::nn::ModuleHolder<RMSNormImpl>::ModuleHolder;
  using Impl = RMSNormImpl;
};

struct LayerNormOptions {
  /* implicit */ LayerNormOptions(std::vector<int64_t> normalized_shape);
  TORCH_ARG(std::vector<int64_t>, normalized_shape);
  TORCH_ARG(double, eps) = 1e-5;
  TORCH_ARG(bool, elementwise_affine) = true;
  TORCH_ARG(bool, bias) = true;
};

class LayerNormImpl : public ::torch::nn::Cloneable<LayerNormImpl> {
 public:
  explicit LayerNormImpl(LayerNormOptions options);
  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  ::torch::Tensor forward(const ::torch::Tensor& input);

  LayerNormOptions options;
  ::torch::Tensor weight;
  ::torch::Tensor bias;
};
class LayerNorm : public ::torch::nn::ModuleHolder<LayerNormImpl> {
 public:
  using ::torch::nn::ModuleHolder<LayerNormImpl>::ModuleHolder;
  using Impl = LayerNormImpl;
};

}  // namespace rmsnorm::torch
