// Our kernels as benchmark implementations: thin wrappers over the public API.
#include <cstdint>
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

Math rms_math(EpsPlacement placement, double p) {
  Math m;
  m.options.kind = NormKind::kRMSNorm;
  m.options.eps_placement = placement;
  m.options.p = p;
  return m;
}

class Ours : public Implementation {
 public:
  Ours(std::string key, std::string name, Math math) : key_(std::move(key)), name_(std::move(name)), math_(math) {}
  std::string key() const override { return key_; }
  std::string name() const override { return name_; }
  std::string family() const override { return "ours"; }
  Math math() const override { return math_; }
  std::string unsupported(const Problem&) const override { return ""; }
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
    const bool with_backward = p.direction == Direction::kForwardBackward;
    if (math_.fused_residual) {
      FusedAddArgs a;
      a.rows = p.shape.rows;
      a.n = n;
      a.x = {ws_->x.data(), p.dtype, n};
      a.residual = {ws_->residual.data(), p.dtype, n};
      a.y = {ws_->y.data(), p.dtype, n};
      a.weight = weight;
      a.bias = bias;
      if (with_backward) a.saved = {ws_->inv_rms_data(), ws_->mean_data()};
      fused_add_forward(options_, a);
      if (!with_backward) return;
      // Training: dh = norm_backward(dy) + dh_out in one pass (SPEC section 8).
      FusedAddBackwardArgs b;
      b.rows = p.shape.rows;
      b.n = n;
      b.h = {ws_->residual.data(), p.dtype, n};
      b.dy = {ws_->dy.data(), p.dtype, n};
      b.dh_out = {ws_->dh_out.data(), p.dtype, n};
      b.weight = weight;
      b.saved = {ws_->inv_rms_data(), ws_->mean_data()};
      b.dh = {ws_->dx.data(), p.dtype, n};
      b.dweight = {math_.weight ? ws_->dweight.data() : nullptr, DType::kFloat32};
      fused_add_backward(options_, b);
      return;
    }
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
    if (math_.fused_residual && p.direction == Direction::kForward) return traffic(p, 4, vectors);  // x, residual read; residual, y written
    // Forward 4; backward reads h, dy, dh_out and writes dh.
    if (math_.fused_residual) return traffic(p, 8, 2 * vectors);
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

// a + b into out, count elements of dtype, rounded once (bfloat16 to nearest
// even, as the engine rounds), in loops the compiler vectorizes: the adds a
// model without the fused kernel runs around the norm.
void add_elements(DType dtype, const void* a, const void* b, void* out, int64_t count) {
  if (dtype == DType::kFloat32) {
    const auto* x = static_cast<const float*>(a);
    const auto* y = static_cast<const float*>(b);
    auto* z = static_cast<float*>(out);
    for (int64_t i = 0; i < count; ++i) z[i] = x[i] + y[i];
  } else if (dtype == DType::kFloat64) {
    const auto* x = static_cast<const double*>(a);
    const auto* y = static_cast<const double*>(b);
    auto* z = static_cast<double*>(out);
    for (int64_t i = 0; i < count; ++i) z[i] = x[i] + y[i];
  } else {  // bfloat16 (unsupported() keeps float16 away)
    const auto* x = static_cast<const uint16_t*>(a);
    const auto* y = static_cast<const uint16_t*>(b);
    auto* z = static_cast<uint16_t*>(out);
    for (int64_t i = 0; i < count; ++i) {
      float fx, fy;
      const uint32_t bx = uint32_t{x[i]} << 16, by = uint32_t{y[i]} << 16;
      std::memcpy(&fx, &bx, 4);
      std::memcpy(&fy, &by, 4);
      const float sum = fx + fy;
      uint32_t bits;
      std::memcpy(&bits, &sum, 4);
      z[i] = static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);  // finite inputs here
    }
  }
}

// The same training step without the fused kernels: h = x + residual (a
// separate add), y = RMSNorm(h), backward dx = RMSNorm'(dy), then dh = dx +
// dh_out (a second add). 11 matrix passes against the fused form's 8.
class UnfusedResidual : public Implementation {
 public:
  std::string key() const override { return "ours.add_rmsnorm_unfused"; }
  std::string name() const override { return "ours unfused add+RMSNorm+add"; }
  std::string family() const override { return "ours"; }
  Math math() const override {
    Math m = rms_math(EpsPlacement::kInside, 1.0);
    m.fused_residual = true;
    return m;
  }
  std::string unsupported(const Problem& p) const override {
    if (p.direction != Direction::kForwardBackward) return "training step (forward+backward) only";
    if (p.dtype == DType::kFloat16) return "its float16 adds are not written";
    if (p.threads != 1) return "its adds are single-threaded: compared at 1 thread only";
    return "";
  }
  void prepare(Workspace& ws) override {
    ws_ = &ws;
    options_ = math().options;
    options_.num_threads = ws.problem.threads;
  }
  void run() override {
    const Problem& p = ws_->problem;
    const int64_t n = p.shape.n, elements = p.elements();
    const ConstVector weight{ws_->weight.data(), DType::kFloat32};
    add_elements(p.dtype, ws_->x.data(), ws_->residual.data(), ws_->residual.data(), elements);
    ForwardArgs f;
    f.rows = p.shape.rows;
    f.n = n;
    f.x = {ws_->residual.data(), p.dtype, n};
    f.y = {ws_->y.data(), p.dtype, n};
    f.weight = weight;
    f.saved = {ws_->inv_rms_data(), ws_->mean_data()};
    forward(options_, f);
    BackwardArgs b;
    b.rows = p.shape.rows;
    b.n = n;
    b.x = f.x;
    b.dy = {ws_->dy.data(), p.dtype, n};
    b.weight = weight;
    b.saved = {ws_->inv_rms_data(), ws_->mean_data()};
    b.dx = {ws_->dx.data(), p.dtype, n};
    b.dweight = {ws_->dweight.data(), DType::kFloat32};
    backward(options_, b);
    add_elements(p.dtype, ws_->dx.data(), ws_->dh_out.data(), ws_->dx.data(), elements);
  }
  double bytes() const override { return traffic(ws_->problem, 11, 2); }
  Outputs outputs(const std::vector<int64_t>& rows, bool with_dweight) const override {
    return workspace_outputs(*ws_, rows, with_dweight);
  }

 private:
  NormOptions options_;
  Workspace* ws_ = nullptr;
};


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
  list.push_back(std::make_unique<UnfusedResidual>());
  return list;
}

}  // namespace rmsnorm::bench
