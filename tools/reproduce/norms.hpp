// The normalization layer of `rmsnorm reproduce`, in every variant the paper
// compares and in three implementation settings:
//   framework  composed from LibTorch tensor ops, as the paper's TensorFlow /
//              Theano / PyTorch code was (LayerNorm: mean, subtract, variance,
//              rsqrt, scale, shift; RMSNorm: pow, mean, rsqrt, scale;
//              pRMSNorm: the same on a slice of the first k columns);
//   native     what a PyTorch user has: at::layer_norm, and for RMSNorm the
//              op sequence PyTorch's own F.rms_norm runs on CPU (its
//              rms_norm_symint in aten/src/ATen/native/layer_norm.cpp),
//              adapted to a slice for pRMSNorm and to F.normalize's form for
//              L2-Norm;
//   fused      this project's ops (torch.ops.rmsnorm.*).
// The three settings of one variant compute the same function (the tests
// hold them to SPEC's tolerances), so a model may switch setting from one
// step to the next; the trainer does, to time all three on the same model.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace rmsnorm::reproduce {

enum class Variant { kNone, kLayerNorm, kRMSNorm, kPartialRMSNorm, kL2Norm };
enum class Setting { kFramework, kNative, kFused };

constexpr Setting kSettings[] = {Setting::kFramework, Setting::kNative, Setting::kFused};

const char* variant_name(Variant v);  // "none", "LayerNorm", "RMSNorm", "pRMSNorm", "L2-Norm"
const char* variant_key(Variant v);   // "none", "layernorm", "rmsnorm", "prmsnorm", "l2norm"
const char* setting_key(Setting s);   // "framework", "native", "fused"

// The p values the estimator study measures r_k / r_n at.
constexpr double kStudiedP[] = {0.0625, 0.125, 0.25, 0.5};

// Per norm site, per studied p: every row's r_k / r_n (no eps: the ratio of
// the partial RMS to the full one), collected while a probe is attached.
struct EstimatorProbe {
  std::map<std::string, std::vector<std::vector<double>>> ratios;  // site -> [p index] -> rows
  void record(const std::string& site, const ::torch::Tensor& rows);  // rows: (count, n)
};

// What every norm of one model shares: the setting in use, the per-step
// timer, and an optional probe.
class NormContext {
 public:
  Setting setting = Setting::kFused;
  bool timing = false;             // time forward calls and backward (through hooks)
  EstimatorProbe* probe = nullptr;

  void reset_step();
  double step_seconds() const { return forward_seconds_ + backward_seconds_; }
  double forward_seconds() const { return forward_seconds_; }
  double backward_seconds() const { return backward_seconds_; }

  // Called by Norm. Backward time is the union of the intervals from "the
  // gradient of a norm's output is ready" to "the gradient of its input is
  // ready", so two norms whose backward overlap are not counted twice.
  void add_forward(double seconds) { forward_seconds_ += seconds; }
  void backward_enter();
  void backward_leave();

 private:
  using Clock = std::chrono::steady_clock;
  double forward_seconds_ = 0, backward_seconds_ = 0;
  int open_backward_ = 0;
  Clock::time_point backward_start_;
};

// One normalization over the trailing dimensions `shape` of its input.
// LayerNorm has a gain and a bias, the RMS variants a gain (as in the paper).
// pRMSNorm uses the first k = ceil(n p) elements of each row.
class NormImpl : public ::torch::nn::Module {
 public:
  NormImpl(Variant variant, std::vector<int64_t> shape, double p, std::shared_ptr<NormContext> context,
           std::string site);
  ::torch::Tensor forward(const ::torch::Tensor& x);
  // The norm in a given setting, untimed (what forward runs).
  ::torch::Tensor compute(const ::torch::Tensor& x, Setting setting) const;

 private:
  Variant variant_;
  std::vector<int64_t> shape_;
  int64_t n_ = 1, k_ = 1;
  double p_;
  std::shared_ptr<NormContext> context_;
  std::string site_;
  ::torch::Tensor weight_, bias_;
};
TORCH_MODULE(Norm);

}  // namespace rmsnorm::reproduce
