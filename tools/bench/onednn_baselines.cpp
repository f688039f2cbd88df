// oneDNN's layer normalization (forward_training + backward with scale and
// shift), over the shared workspace's buffers (user-memory, no copies).
#include <omp.h>

#include <dnnl.hpp>

#include "tools/bench/implementation.hpp"

namespace rmsnorm::bench {


namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

class OneDnnLayerNorm : public Implementation {
 public:
  std::string key() const override { return "onednn.layer_norm"; }
  std::string name() const override { return "oneDNN layer normalization"; }
  std::string family() const override { return "onednn"; }
  Math math() const override {
    Math m;
    m.options.kind = NormKind::kLayerNorm;
    m.bias = true;
    return m;
  }
  std::string unsupported(const Problem& p) const override {
    if (p.dtype != DType::kFloat32 && p.dtype != DType::kBFloat16) return "oneDNN 2.6: float32 and bfloat16 only";
    try {
      Problem tiny = p;
      tiny.shape = {2, 8};
      Workspace ws(tiny);
      OneDnnLayerNorm probe;
      probe.prepare(ws);
    } catch (const dnnl::error& e) {
      return std::string("oneDNN: ") + e.what();
    }
    return "";
  }
  void prepare(Workspace& ws) override {
    ws_ = &ws;
    const Problem& p = ws.problem;
    const dt type = p.dtype == DType::kBFloat16 ? dt::bf16 : dt::f32;
    const dnnl::memory::desc data({p.shape.rows, p.shape.n}, type, tag::ab);
    const dnnl::memory::desc params({p.shape.n}, dt::f32, tag::a);
    const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    const bool backward = p.direction == Direction::kForwardBackward;
    const auto prop = backward ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    const dnnl::layer_normalization_forward::primitive_desc fwd_pd(
        dnnl::layer_normalization_forward::desc(prop, data, static_cast<float>(p.eps), flags), engine_);
    forward_ = dnnl::layer_normalization_forward(fwd_pd);
    src_ = dnnl::memory(data, engine_, ws.x.data());
    dst_ = dnnl::memory(data, engine_, ws.y.data());
    scale_ = dnnl::memory(params, engine_, ws.weight.data());
    shift_ = dnnl::memory(params, engine_, ws.bias.data());
    forward_args_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DST, dst_}, {DNNL_ARG_SCALE, scale_}, {DNNL_ARG_SHIFT, shift_}};
    if (!backward) return;
    mean_ = dnnl::memory(fwd_pd.mean_desc(), engine_);
    variance_ = dnnl::memory(fwd_pd.variance_desc(), engine_);
    forward_args_[DNNL_ARG_MEAN] = mean_;
    forward_args_[DNNL_ARG_VARIANCE] = variance_;
    const dnnl::layer_normalization_backward::primitive_desc bwd_pd(
        dnnl::layer_normalization_backward::desc(dnnl::prop_kind::backward, data, data, static_cast<float>(p.eps),
                                                 flags),
        engine_, fwd_pd);
    backward_ = dnnl::layer_normalization_backward(bwd_pd);
    diff_dst_ = dnnl::memory(data, engine_, ws.dy.data());
    diff_src_ = dnnl::memory(data, engine_, ws.dx.data());
    diff_scale_ = dnnl::memory(params, engine_, ws.dweight.data());
    diff_shift_ = dnnl::memory(params, engine_, ws.dbias.data());
    backward_args_ = {{DNNL_ARG_SRC, src_},           {DNNL_ARG_MEAN, mean_},
                      {DNNL_ARG_VARIANCE, variance_}, {DNNL_ARG_DIFF_DST, diff_dst_},
                      {DNNL_ARG_SCALE, scale_},       {DNNL_ARG_SHIFT, shift_},
                      {DNNL_ARG_DIFF_SRC, diff_src_},
                      {DNNL_ARG_DIFF_SCALE, diff_scale_}, {DNNL_ARG_DIFF_SHIFT, diff_shift_}};
  }
  void run() override {
    omp_set_num_threads(ws_->problem.threads);  // oneDNN's OpenMP runtime uses the default team size
    forward_.execute(stream_, forward_args_);
    if (ws_->problem.direction == Direction::kForwardBackward) backward_.execute(stream_, backward_args_);
    stream_.wait();
  }
  double bytes() const override {
    const Problem& p = ws_->problem;
    return p.direction == Direction::kForward ? traffic(p, 2, 2) : traffic(p, 5, 4);
  }
  Outputs outputs(const std::vector<int64_t>& rows, bool with_dweight) const override {
    return workspace_outputs(*ws_, rows, with_dweight);
  }
  void release() override {
    forward_ = {};
    backward_ = {};
    forward_args_.clear();
    backward_args_.clear();
  }

 private:
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  Workspace* ws_ = nullptr;
  dnnl::layer_normalization_forward forward_;
  dnnl::layer_normalization_backward backward_;
  dnnl::memory src_, dst_, scale_, shift_, mean_, variance_, diff_dst_, diff_src_, diff_scale_, diff_shift_;
  std::unordered_map<int, dnnl::memory> forward_args_, backward_args_;
};

}  // namespace

ImplementationList make_onednn_implementations() {
  ImplementationList list;
  list.push_back(std::make_unique<OneDnnLayerNorm>());
  return list;
}

namespace {
std::string& isa_cap() {
  static std::string cap;
  return cap;
}
}  // namespace

std::string cap_onednn_isa(const std::string& simd_target) {
  dnnl::cpu_isa isa;
  std::string name;
  if (simd_target == "AVX2") {
    isa = dnnl::cpu_isa::avx2;
    name = "avx2";
  } else if (simd_target == "SSE4") {
    isa = dnnl::cpu_isa::sse41;
    name = "sse41";
  } else {
    return "";
  }
  // Fails once oneDNN has dispatched (too late to cap), or in a oneDNN built
  // without the cap: then the run says no cap.
  if (dnnl::set_max_cpu_isa(isa) != dnnl::status::success) return "";
  isa_cap() = name;
  return name;
}

std::string onednn_isa_cap() { return isa_cap(); }

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace rmsnorm::bench
