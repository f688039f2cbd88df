#include "rmsnorm/torch/modules.hpp"

#include <limits>

#include <torch/torch.h>

#include "rmsnorm/torch/ops.hpp"

namespace rmsnorm::torch {

RMSNormOptions::RMSNormOptions(std::vector<int64_t> normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}

RMSNormImpl::RMSNormImpl(RMSNormOptions options_) : options(std::move(options_)) { reset(); }

void RMSNormImpl::reset() {
  if (options.elementwise_affine()) {
    weight = register_parameter("weight", ::torch::empty(options.normalized_shape()));
    if (options.bias()) bias = register_parameter("bias", ::torch::empty(options.normalized_shape()));
  }
  reset_parameters();
}

void RMSNormImpl::reset_parameters() {
  ::torch::NoGradGuard no_grad;
  if (weight.defined()) weight.fill_(1.0);
  if (bias.defined()) bias.zero_();
}

void RMSNormImpl::pretty_print(std::ostream& stream) const {
  stream << "rmsnorm::torch::RMSNorm(" << ::torch::IntArrayRef(options.normalized_shape());
  stream << ", eps=";
  if (options.eps()) {
    stream << *options.eps();
  } else {
    stream << "None";
  }
  stream << ", elementwise_affine=" << (options.elementwise_affine() ? "True" : "False") << ", p=" << options.p()
         << ", eps_placement=" << options.eps_placement();
  if (options.weight_offset() != 0) stream << ", weight_offset=" << options.weight_offset();
  if (options.rounding() != "single") stream << ", rounding=" << options.rounding();
  stream << ")";
}

::torch::Tensor RMSNormImpl::forward(const ::torch::Tensor& input) {
  double eps = 0;
  if (options.eps()) {
    eps = *options.eps();
  } else {
    switch (input.scalar_type()) {  // torch.finfo(input.dtype).eps
      case at::kDouble:
        eps = std::numeric_limits<double>::epsilon();
        break;
      case at::kHalf:
        eps = 0.0009765625;  // 2^-10
        break;
      case at::kBFloat16:
        eps = 0.0078125;  // 2^-7
        break;
      default:
        eps = std::numeric_limits<float>::epsilon();
    }
  }
  return rmsnorm::torch::rms_norm(input, options.normalized_shape(), weight.defined() ? c10::optional<at::Tensor>(weight) : c10::nullopt,
                  bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt, eps, options.p(),
                  options.eps_placement(), options.weight_offset(), options.rounding());
}

LayerNormOptions::LayerNormOptions(std::vector<int64_t> normalized_shape)
    : normalized_shape_(std::move(normalized_shape)) {}

LayerNormImpl::LayerNormImpl(LayerNormOptions options_) : options(std::move(options_)) { reset(); }

void LayerNormImpl::reset() {
  if (options.elementwise_affine()) {
    weight = register_parameter("weight", ::torch::empty(options.normalized_shape()));
    if (options.bias()) bias = register_parameter("bias", ::torch::empty(options.normalized_shape()));
  }
  reset_parameters();
}

void LayerNormImpl::reset_parameters() {
  ::torch::NoGradGuard no_grad;
  if (weight.defined()) weight.fill_(1.0);
  if (bias.defined()) bias.zero_();
}

void LayerNormImpl::pretty_print(std::ostream& stream) const {
  stream << "rmsnorm::torch::LayerNorm(" << ::torch::IntArrayRef(options.normalized_shape()) << ", eps=" << options.eps()
         << ", elementwise_affine=" << (options.elementwise_affine() ? "True" : "False") << ")";
}

::torch::Tensor LayerNormImpl::forward(const ::torch::Tensor& input) {
  return rmsnorm::torch::layer_norm(input, options.normalized_shape(),
                    weight.defined() ? c10::optional<at::Tensor>(weight) : c10::nullopt,
                    bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt, options.eps());
}

}  // namespace rmsnorm::torch
