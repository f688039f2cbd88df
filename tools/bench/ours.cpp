// Our kernels as benchmark implementations: thin wrappers over the public API.
#include <cstring>

#include "tools/bench/implementation.hpp"

namespace rmsnorm::bench {

double traffic(const Problem& p, int matrices, int vectors) {
  return static_cast<double>(matrices) * static_cast<double>(p.matrix_bytes()) +
         static_cast<double>(vectors) * static_cast<double>(p.shape.n) * sizeof(float);
}

// Reads rows of a workspace matrix into doubles.
std::vector<double> read_rows(DType dtype, const void* base, int64_t n, const std::vector<int64_t>& rows) {
  std::vector<double> out;
  out.reserve(rows.size() * static_cast<size_t>(n));
  for (int64_t r : rows)
    for (int64_t c = 0; c < n; ++c) out.push_back(element(dtype, base, n, r, c));
  return out;
}

Outputs workspace_outputs(const Workspace& ws, const std::vector<int64_t>& rows, bool with_dweight) {
  const Problem& p = ws.problem;
  Outputs o;
  o.y = read_rows(p.dtype, ws.y.data(), p.shape.n, rows);
  if (p.direction == Direction::kForwardBackward) {
    o.dx = read_rows(p.dtype, ws.dx.data(), p.shape.n, rows);
    if (with_dweight) o.dweight.assign(ws.dweight.begin(), ws.dweight.end());
  }
  return o;
}

namespace {

class Ours : public Implementation {
 public:
  Ours(std::string key, std::string name, Math math) : key_(std::move(key)), name_(std::move(name)), math_(math) {}
  std::string key() const override { return key_; }
  std::string name() const override { return name_; }
  std::string family() const override { return "ours"; }
  Math math() const override { return math_; }
  std::string unsupported(const Problem& p) const override {
    if (math_.fused_residual && p.direction != Direction::kForward) return "forward only (inference kernel)";
    return "";
  }
  void prepare(Workspace& ws) override {
    ws_ = &ws;
    options_ = math_.options;
    options_.num_threads = ws.problem.threads;
  }
  void run() override {
    const Problem& p = ws_->problem;
    const int64_t n = p.shape.n;
    const ConstVector weight{math_.weight ? ws_->weight.data() : nullptr, DType::kFloat32};
    const ConstVector bias{math_.bias ? ws_->bias.data() : nullptr, DType::kFloat32};
    if (math_.fused_residual) {
      FusedAddArgs a;
      a.rows = p.shape.rows;
      a.n = n;
      a.x = {ws_->x.data(), p.dtype, n};
      a.residual = {ws_->residual.data(), p.dtype, n};
      a.y = {ws_->y.data(), p.dtype, n};
      a.weight = weight;
      a.bias = bias;
      fused_add_forward(options_, a);
      return;
    }
    const bool with_backward = p.direction == Direction::kForwardBackward;
    ForwardArgs f;
    f.rows = p.shape.rows;
    f.n = n;
    f.x = {ws_->x.data(), p.dtype, n};
    f.y = {ws_->y.data(), p.dtype, n};
    f.weight = weight;
    f.bias = bias;
    if (with_backward) f.saved = {ws_->inv_rms_data(), ws_->mean_data()};
    forward(options_, f);
    if (!with_backward) return;
    BackwardArgs b;
    b.rows = p.shape.rows;
    b.n = n;
    b.x = f.x;
    b.dy = {ws_->dy.data(), p.dtype, n};
    b.weight = weight;
    b.saved = {ws_->inv_rms_data(), ws_->mean_data()};
    b.dx = {ws_->dx.data(), p.dtype, n};
    b.dweight = {math_.weight ? ws_->dweight.data() : nullptr, DType::kFloat32};
    b.dbias = {math_.bias ? ws_->dbias.data() : nullptr, DType::kFloat32};
    backward(options_, b);
  }
  double bytes() const override {
    const Problem& p = ws_->problem;
    const int vectors = (math_.weight ? 1 : 0) + (math_.bias ? 1 : 0);
    if (math_.fused_residual) return traffic(p, 4, vectors);  // x, residual read; residual, y written
    if (p.direction == Direction::kForward) return traffic(p, 2, vectors);
    return traffic(p, 5, 2 * vectors);  // forward 2 + backward 3; parameters and their gradients
  }
  Outputs outputs(const std::vector<int64_t>& rows, bool with_dweight) const override {
    return workspace_outputs(*ws_, rows, with_dweight && math_.weight);
  }

 private:
  std::string key_, name_;
  Math math_;
  NormOptions options_;
  Workspace* ws_ = nullptr;
};

Math rms_math(EpsPlacement placement, double p) {
  Math m;
  m.options.kind = NormKind::kRMSNorm;
  m.options.eps_placement = placement;
  m.options.p = p;
  return m;
}

}  // namespace

ImplementationList make_our_implementations() {
  ImplementationList list;
  list.push_back(std::make_unique<Ours>("ours.rmsnorm", "ours RMSNorm", rms_math(EpsPlacement::kInside, 1.0)));
  list.push_back(std::make_unique<Ours>("ours.rmsnorm_eps_outside", "ours RMSNorm (eps outside)",
                                        rms_math(EpsPlacement::kOutside, 1.0)));
  list.push_back(std::make_unique<Ours>("ours.prmsnorm_6.25", "ours pRMSNorm p=6.25%",
                                        rms_math(EpsPlacement::kInside, 0.0625)));
  Math layer;
  layer.options.kind = NormKind::kLayerNorm;
  layer.bias = true;
  list.push_back(std::make_unique<Ours>("ours.layernorm", "ours LayerNorm", layer));
  Math fused = rms_math(EpsPlacement::kInside, 1.0);
  fused.fused_residual = true;
  list.push_back(std::make_unique<Ours>("ours.fused_add_rmsnorm", "ours fused residual+RMSNorm", fused));
  return list;
}

}  // namespace rmsnorm::bench
