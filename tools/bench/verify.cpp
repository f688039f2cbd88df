// Checks an implementation's last outputs against the reference of SPEC on a
// sample of rows (all rows up to 2^22 elements; then 64 spread over the
// matrix), norm-wise. A fast and wrong kernel fails here, before any timing.
#include <cmath>
#include <cstdlib>

#include "rmsnorm/reference.hpp"
#include "tools/bench/harness.hpp"

namespace rmsnorm::bench {
namespace {

constexpr int64_t kFullCheckElements = int64_t{1} << 22;
constexpr int64_t kSampledRows = 64;

std::vector<int64_t> rows_to_check(int64_t rows, int64_t n) {
  std::vector<int64_t> out;
  if (rows * n <= kFullCheckElements || rows <= kSampledRows) {
    for (int64_t r = 0; r < rows; ++r) out.push_back(r);
    return out;
  }
  for (int64_t i = 0; i < kSampledRows; ++i) out.push_back(i * (rows - 1) / (kSampledRows - 1));
  return out;
}

double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = got[i] - want[i];
    diff += d * d;
    ref += want[i] * want[i];
  }
  if (!std::isfinite(diff)) return INFINITY;
  return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

// Norm-wise tolerance. Ours: 10x SPEC's float32/float64 bound (dx and dweight
// carry a few more roundings than y), about 2 units in the last place for
// 16-bit outputs. Baselines get 10x more: the check is there to catch a wrong
// kernel, and e.g. LibTorch 1.13's bfloat16 layer_norm backward returns a
// dweight with ~8e-3 relative error (its figures are in the JSON either way).
double tolerance_for(DType dtype, int64_t n, bool strict) {
  if (!strict) return 10 * tolerance_for(dtype, n, true);
  const double growth = 1.0 + std::log2(static_cast<double>(n));
  switch (dtype) {
    case DType::kFloat32:
      return 1e-5 * growth;
    case DType::kFloat64:
      return 1e-12 * growth;
    case DType::kBFloat16:
      return std::ldexp(1.0, -7);
    case DType::kFloat16:
      return std::ldexp(1.0, -10);
  }
  return 0;
}

reference::Matrix source_rows(const Workspace& ws, const Math& math, const std::vector<int64_t>& rows) {
  const Problem& p = ws.problem;
  const int64_t n = p.shape.n;
  reference::Matrix m{static_cast<int64_t>(rows.size()), n, std::vector<double>(rows.size() * n)};
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int64_t c = 0; c < n; ++c) {
      double v = element(p.dtype, ws.x.data(), n, rows[i], c);
      if (math.fused_residual) {
        // The updated residual, rounded to the data dtype, is what is normalized.
        v += element(p.dtype, ws.residual_initial.data(), n, rows[i], c);
        uint64_t rounded = 0;
        set_element(p.dtype, &rounded, 1, 0, 0, v);
        v = element(p.dtype, &rounded, 1, 0, 0);
      }
      m.at(static_cast<int64_t>(i), c) = v;
    }
  }
  return m;
}

}  // namespace

Verification verify(const Implementation& impl, Workspace& ws) {
  Verification v;
  const Problem& p = ws.problem;
  const int64_t n = p.shape.n;
  const std::vector<int64_t> rows = rows_to_check(p.shape.rows, n);
  const bool all_rows = static_cast<int64_t>(rows.size()) == p.shape.rows;
  const Math math = impl.math();
  Outputs got = impl.outputs(rows, all_rows);
  // Self-test of this check (used by the test suite): RMSNORM_BENCH_CORRUPT=<key>
  // perturbs one output of that implementation, which must then fail.
  if (const char* corrupt = std::getenv("RMSNORM_BENCH_CORRUPT"); corrupt && impl.key() == corrupt && !got.y.empty()) {
    got.y[0] += 1.0 + std::fabs(got.y[0]);
  }
  v.checked = true;
  v.rows_checked = static_cast<int64_t>(rows.size());
  const bool strict = impl.family() == "ours";
  v.tolerance = tolerance_for(p.dtype, n, strict);

  const reference::Matrix x = source_rows(ws, math, rows);
  const std::vector<double> weight = math.weight ? std::vector<double>(ws.weight.begin(), ws.weight.end())
                                                 : std::vector<double>();
  const std::vector<double> bias = math.bias ? std::vector<double>(ws.bias.begin(), ws.bias.end()) : std::vector<double>();
  const reference::ForwardResult fw = reference::forward(math.options, x, weight, bias);
  v.y_error = relative_error(got.y, fw.y.values);
  v.dx_error = v.dweight_error = -1;
  bool ok = v.y_error <= v.tolerance;
  if (p.direction == Direction::kForwardBackward) {
    reference::Matrix dy{x.rows, n, std::vector<double>(x.values.size())};
    for (size_t i = 0; i < rows.size(); ++i)
      for (int64_t c = 0; c < n; ++c) dy.at(static_cast<int64_t>(i), c) = element(p.dtype, ws.dy.data(), n, rows[i], c);
    reference::BackwardResult bw = reference::backward(math.options, x, dy, weight);
    if (math.fused_residual) {  // dh = norm_backward(dy) + dh_out (SPEC section 8)
      for (size_t i = 0; i < rows.size(); ++i)
        for (int64_t c = 0; c < n; ++c) bw.dx.at(static_cast<int64_t>(i), c) += element(p.dtype, ws.dh_out.data(), n, rows[i], c);
    }
    v.dx_error = relative_error(got.dx, bw.dx.values);
    ok = ok && v.dx_error <= v.tolerance;
    if (all_rows && math.weight) {
      // The workspace's weight and dweight are float32 (for float64 data too).
      const double dweight_tolerance = tolerance_for(p.dtype == DType::kFloat64 ? DType::kFloat32 : p.dtype, n, strict);
      v.dweight_error = relative_error(got.dweight, bw.dweight);
      ok = ok && v.dweight_error <= dweight_tolerance;
    }
  }
  v.passed = ok;
  v.note = all_rows ? "all rows" : std::to_string(rows.size()) + " rows spread over the matrix";
  return v;
}

}  // namespace rmsnorm::bench
