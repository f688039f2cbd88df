// LibTorch baselines: at::layer_norm (forward) with at::native_layer_norm /
// at::native_layer_norm_backward (forward+backward), and RMSNorm written with
// tensor ops as HuggingFace's LlamaRMSNorm does, differentiated by autograd.
// They read the shared workspace's inputs without copying (from_blob) and
// allocate their outputs per call, as a PyTorch user's code does.
#include <torch/torch.h>

#include <optional>

#include "tools/bench/implementation.hpp"

namespace rmsnorm::bench {
namespace {

at::ScalarType scalar_type(DType d) {
  switch (d) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kFloat64:
      return at::kDouble;
    case DType::kBFloat16:
      return at::kBFloat16;
    case DType::kFloat16:
      return at::kHalf;
  }
  return at::kFloat;
}

std::vector<double> rows_as_double(const at::Tensor& t, const std::vector<int64_t>& rows) {
  const at::Tensor index = at::tensor(rows, at::kLong);
  const at::Tensor picked = t.index_select(0, index).to(at::kDouble).contiguous();
  const double* p = picked.data_ptr<double>();
  return std::vector<double>(p, p + picked.numel());
}

class TorchBaseline : public Implementation {
 public:
  enum class Kind { kLayerNorm, kHuggingFaceRMSNorm };
  explicit TorchBaseline(Kind kind) : kind_(kind) {}
  std::string key() const override {
    return kind_ == Kind::kLayerNorm ? "libtorch.layer_norm" : "libtorch.hf_rmsnorm";
  }
  std::string name() const override {
    return kind_ == Kind::kLayerNorm ? "LibTorch at::layer_norm" : "LibTorch HF-style RMSNorm";
  }
  std::string family() const override { return "libtorch"; }
  Math math() const override {
    Math m;
    if (kind_ == Kind::kLayerNorm) {
      m.options.kind = NormKind::kLayerNorm;
      m.bias = true;
    }
    return m;
  }
  std::string unsupported(const Problem& p) const override {
    if (kind_ == Kind::kHuggingFaceRMSNorm && p.dtype == DType::kFloat64) {
      return "LlamaRMSNorm computes in float32 whatever the input dtype: not a float64 implementation";
    }
    // Ask LibTorch itself: some kernels lack some dtypes on the CPU.
    try {
      Problem tiny = p;
      tiny.shape = {2, 8};
      tiny.threads = 1;
      Workspace ws(tiny);
      TorchBaseline probe(kind_);
      probe.prepare(ws);
      probe.run();
    } catch (const std::exception& e) {
      std::string what = e.what();
      return "LibTorch: " + what.substr(0, what.find('\n'));
    }
    return "";
  }
  void prepare(Workspace& ws) override {
    ws_ = &ws;
    at::set_num_threads(ws.problem.threads);
    const auto type = scalar_type(ws.problem.dtype);
    const int64_t rows = ws.problem.shape.rows, n = ws.problem.shape.n;
    x_ = at::from_blob(ws.x.data(), {rows, n}, at::TensorOptions().dtype(type));
    if (ws.dy.data()) dy_ = at::from_blob(ws.dy.data(), {rows, n}, at::TensorOptions().dtype(type));
    // Parameters in the model's dtype, as an nn.Module in that dtype holds them.
    weight_ = at::from_blob(ws.weight.data(), {n}, at::kFloat).to(type);
    bias_ = at::from_blob(ws.bias.data(), {n}, at::kFloat).to(type);
  }
  void run() override {
    const bool backward = ws_->problem.direction == Direction::kForwardBackward;
    const int64_t n = ws_->problem.shape.n;
    const double eps = ws_->problem.eps;
    if (kind_ == Kind::kLayerNorm) {
      if (!backward) {
        y_ = at::layer_norm(x_, {n}, weight_, bias_, eps);
        return;
      }
      at::Tensor mean, rstd;
      std::tie(y_, mean, rstd) = at::native_layer_norm(x_, {n}, weight_, bias_, eps);
      std::tie(dx_, dweight_, std::ignore) =
          at::native_layer_norm_backward(dy_, x_, {n}, mean, rstd, weight_, bias_, {true, true, true});
      return;
    }
    // HuggingFace LlamaRMSNorm.forward, in C++.
    at::Tensor x = backward ? x_.detach().requires_grad_(true) : x_;
    at::Tensor w = backward ? weight_.detach().requires_grad_(true) : weight_;
    {
      std::optional<torch::NoGradGuard> no_grad;
      if (!backward) no_grad.emplace();
      const at::Tensor hidden = x.to(at::kFloat);
      const at::Tensor variance = hidden.pow(2).mean(-1, true);
      y_ = w * (hidden * at::rsqrt(variance + eps)).to(x.scalar_type());
    }
    if (!backward) return;
    const auto grads = torch::autograd::grad({y_}, {x, w}, {dy_});
    dx_ = grads[0];
    dweight_ = grads[1];
  }
  double bytes() const override {
    const Problem& p = ws_->problem;
    const int vectors = kind_ == Kind::kLayerNorm ? 2 : 1;
    return p.direction == Direction::kForward ? traffic(p, 2, vectors) : traffic(p, 5, 2 * vectors);
  }
  Outputs outputs(const std::vector<int64_t>& rows, bool with_dweight) const override {
    Outputs o;
    o.y = rows_as_double(y_.detach(), rows);
    if (ws_->problem.direction == Direction::kForwardBackward) {
      o.dx = rows_as_double(dx_, rows);
      if (with_dweight) {
        const at::Tensor dw = dweight_.to(at::kDouble).contiguous();
        o.dweight.assign(dw.data_ptr<double>(), dw.data_ptr<double>() + dw.numel());
      }
    }
    return o;
  }
  void release() override { x_ = dy_ = weight_ = bias_ = y_ = dx_ = dweight_ = at::Tensor(); }

 private:
  Kind kind_;
  Workspace* ws_ = nullptr;
  at::Tensor x_, dy_, weight_, bias_, y_, dx_, dweight_;
};

}  // namespace

ImplementationList make_torch_implementations() {
  ImplementationList list;
  list.push_back(std::make_unique<TorchBaseline>(TorchBaseline::Kind::kLayerNorm));
  list.push_back(std::make_unique<TorchBaseline>(TorchBaseline::Kind::kHuggingFaceRMSNorm));
  return list;
}

std::string torch_version() { return TORCH_VERSION; }

}  // namespace rmsnorm::bench
