#include "tools/reproduce/norms.hpp"

#include <cmath>
#include <stdexcept>

#include "rmsnorm/rmsnorm.hpp"
#include "rmsnorm/torch/ops.hpp"

namespace rmsnorm::reproduce {
namespace {

constexpr double kEps = 1e-5;  // inside the square root, for every variant and setting

}  // namespace

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::kNone:
      return "none";
    case Variant::kLayerNorm:
      return "LayerNorm";
    case Variant::kRMSNorm:
      return "RMSNorm";
    case Variant::kPartialRMSNorm:
      return "pRMSNorm";
    case Variant::kL2Norm:
      return "L2-Norm";
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
    case Variant::kL2Norm:
      return "l2norm";
  }
  return "?";
}

const char* setting_key(Setting s) {
  switch (s) {
    case Setting::kFramework:
      return "framework";
    case Setting::kNative:
      return "native";
    case Setting::kFused:
      return "fused";
  }
  return "?";
}

void EstimatorProbe::record(const std::string& site, const ::torch::Tensor& rows) {
  const auto squares = rows.detach().to(::torch::kDouble).pow(2);
  const auto full = squares.mean(-1);
  const auto nonzero = full.gt(0);
  auto& per_p = ratios[site];
  per_p.resize(std::size(kStudiedP));
  for (size_t i = 0; i < std::size(kStudiedP); ++i) {
    const int64_t k = rmsnorm::partial_count(rows.size(-1), kStudiedP[i]);
    const auto ratio = (squares.narrow(-1, 0, k).mean(-1) / full).sqrt().masked_select(nonzero).contiguous();
    const double* data = ratio.data_ptr<double>();
    per_p[i].insert(per_p[i].end(), data, data + ratio.numel());
  }
}

void NormContext::reset_step() {
  forward_seconds_ = backward_seconds_ = 0;
  open_backward_ = 0;
}

void NormContext::backward_enter() {
  if (open_backward_++ == 0) backward_start_ = Clock::now();
}

void NormContext::backward_leave() {
  if (open_backward_ == 0) return;  // a hook without its pair (not expected): ignore rather than count garbage
  if (--open_backward_ == 0) backward_seconds_ += std::chrono::duration<double>(Clock::now() - backward_start_).count();
}

NormImpl::NormImpl(Variant variant, std::vector<int64_t> shape, double p, std::shared_ptr<NormContext> context,
                   std::string site)
    : variant_(variant), shape_(std::move(shape)), p_(p), context_(std::move(context)), site_(std::move(site)) {
  if (shape_.empty()) throw std::invalid_argument("Norm: shape must name at least one dimension");
  for (int64_t d : shape_) n_ *= d;
  k_ = rmsnorm::partial_count(n_, p_);
  if (variant_ == Variant::kNone) return;
  weight_ = register_parameter("weight", ::torch::ones(shape_));
  if (variant_ == Variant::kLayerNorm) bias_ = register_parameter("bias", ::torch::zeros(shape_));
}

::torch::Tensor NormImpl::compute(const ::torch::Tensor& x, Setting setting) const {
  if (variant_ == Variant::kNone) return x;
  if (setting == Setting::kFused) {
    switch (variant_) {
      case Variant::kLayerNorm:
        return rmsnorm::torch::layer_norm(x, shape_, weight_, bias_, kEps);
      case Variant::kRMSNorm:
        return rmsnorm::torch::rms_norm(x, shape_, weight_, c10::nullopt, kEps, 1.0, "inside");
      case Variant::kPartialRMSNorm:
        return rmsnorm::torch::rms_norm(x, shape_, weight_, c10::nullopt, kEps, p_, "inside");
      case Variant::kL2Norm:
        // x / sqrt(sum x^2 + eps) = x / (sqrt(n) sqrt(mean x^2 + eps / n)): RMSNorm with eps / n
        // and the gain divided by sqrt(n).
        return rmsnorm::torch::rms_norm(x, shape_, weight_ * (1.0 / std::sqrt(static_cast<double>(n_))),
                                        c10::nullopt, kEps / static_cast<double>(n_), 1.0, "inside");
      case Variant::kNone:
        break;
    }
    return x;
  }
  // Tensor-op forms work on rows of n: the trailing dimensions flattened.
  const auto rows = x.flatten(x.dim() - static_cast<int64_t>(shape_.size()));
  const auto weight = weight_.flatten();
  ::torch::Tensor y;
  if (setting == Setting::kNative) {
    switch (variant_) {
      case Variant::kLayerNorm:
        return at::layer_norm(x, shape_, weight_, bias_, kEps);
      case Variant::kRMSNorm:
      case Variant::kPartialRMSNorm: {
        // F.rms_norm's CPU sequence; pRMSNorm takes its statistic from a slice.
        const auto source = variant_ == Variant::kRMSNorm ? rows : rows.narrow(-1, 0, k_);
        const auto inverse = at::rsqrt(at::pow(source, 2).mean(-1, /*keepdim=*/true).add_(kEps));
        y = rows.mul(inverse).type_as(rows).mul(weight);
        break;
      }
      case Variant::kL2Norm:
        y = ::torch::nn::functional::normalize(
                rows, ::torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(std::sqrt(kEps))) *
            weight;
        break;
      case Variant::kNone:
        return x;
    }
  } else {  // framework: the paper's op-by-op composition
    switch (variant_) {
      case Variant::kLayerNorm: {
        const auto mean = rows.mean(-1, /*keepdim=*/true);
        const auto centred = rows - mean;
        const auto variance = centred.pow(2).mean(-1, /*keepdim=*/true);
        y = centred * ::torch::rsqrt(variance + kEps) * weight + bias_.flatten();
        break;
      }
      case Variant::kRMSNorm:
        y = rows * ::torch::rsqrt(rows.pow(2).mean(-1, /*keepdim=*/true) + kEps) * weight;
        break;
      case Variant::kPartialRMSNorm:
        y = rows * ::torch::rsqrt(rows.narrow(-1, 0, k_).pow(2).mean(-1, /*keepdim=*/true) + kEps) * weight;
        break;
      case Variant::kL2Norm:
        y = rows * ::torch::rsqrt(rows.pow(2).sum(-1, /*keepdim=*/true) + kEps) * weight;
        break;
      case Variant::kNone:
        return x;
    }
  }
  return y.view(x.sizes());
}

::torch::Tensor NormImpl::forward(const ::torch::Tensor& x) {
  if (variant_ == Variant::kNone) return x;
  if (context_->probe != nullptr) {
    context_->probe->record(site_, x.detach().flatten(x.dim() - static_cast<int64_t>(shape_.size())).reshape({-1, n_}));
  }
  if (!context_->timing) return compute(x, context_->setting);
  const auto start = std::chrono::steady_clock::now();
  auto y = compute(x, context_->setting);
  if (y.requires_grad() && x.requires_grad()) {
    // The gradient of y is ready when y's node is about to run (the norm's
    // backward begins); the gradient of x is complete when every use of x
    // has run, the norm's last node included (it ends).
    std::shared_ptr<NormContext> context = context_;
    y.register_hook([context](const ::torch::Tensor&) { context->backward_enter(); });
    x.register_hook([context](const ::torch::Tensor&) { context->backward_leave(); });
  }
  context_->add_forward(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return y;
}

}  // namespace rmsnorm::reproduce
