// The float64 reference: SPEC.md sections 2 and 3, literally. Read this file to
// know what every other implementation computes.
#include "rmsnorm/reference.hpp"

#include <cmath>
#include <limits>

namespace rmsnorm::reference {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool all_finite(const Matrix& m, int64_t row) {
  for (int64_t c = 0; c < m.n; ++c) {
    if (!std::isfinite(m.at(row, c))) return false;
  }
  return true;
}

// The per-row statistics: the shift (mean for LayerNorm, 0 for RMSNorm), r, and
// for RMSNorm s = sqrt(ms) and k.
struct RowStatistics {
  double mean = 0.0;
  double r = 0.0;
  double s = 0.0;  // sqrt(ms), used by the "outside" gradient
  int64_t k = 0;
};

RowStatistics row_statistics(const NormOptions& options, const Matrix& x, int64_t row) {
  RowStatistics st;
  const int64_t n = x.n;
  if (options.kind == NormKind::kLayerNorm) {
    long double sum = 0;
    for (int64_t c = 0; c < n; ++c) sum += x.at(row, c);
    st.mean = static_cast<double>(sum / n);
    long double squares = 0;
    for (int64_t c = 0; c < n; ++c) {
      const long double d = static_cast<long double>(x.at(row, c)) - st.mean;
      squares += d * d;
    }
    const long double var = squares / n;
    st.r = static_cast<double>(std::sqrt(var + options.eps));
    st.k = n;
    return st;
  }
  st.k = partial_count(n, options.p);
  long double squares = 0;
  for (int64_t c = 0; c < st.k; ++c) {
    const long double v = x.at(row, c);
    squares += v * v;
  }
  const long double ms = squares / st.k;
  st.s = static_cast<double>(std::sqrt(ms));
  st.r = options.eps_placement == EpsPlacement::kInside
             ? static_cast<double>(std::sqrt(ms + options.eps))
             : static_cast<double>(std::sqrt(ms) + options.eps);
  return st;
}

}  // namespace

ForwardResult forward(const NormOptions& options, const Matrix& x, const std::vector<double>& weight,
                      const std::vector<double>& bias) {
  ForwardResult out;
  out.y = Matrix{x.rows, x.n, std::vector<double>(x.values.size())};
  out.inv_rms.resize(static_cast<size_t>(x.rows));
  out.mean.resize(static_cast<size_t>(x.rows));
  for (int64_t row = 0; row < x.rows; ++row) {
    if (!all_finite(x, row)) {
      for (int64_t c = 0; c < x.n; ++c) out.y.at(row, c) = kNaN;
      out.inv_rms[row] = kNaN;
      out.mean[row] = kNaN;
      continue;
    }
    const RowStatistics st = row_statistics(options, x, row);
    out.inv_rms[row] = 1.0 / st.r;
    out.mean[row] = st.mean;
    for (int64_t c = 0; c < x.n; ++c) {
      double v = (x.at(row, c) - st.mean) / st.r;
      if (!weight.empty()) v *= weight[c];
      if (!bias.empty()) v += bias[c];
      out.y.at(row, c) = v;
    }
  }
  return out;
}

BackwardResult backward(const NormOptions& options, const Matrix& x, const Matrix& dy,
                        const std::vector<double>& weight) {
  const int64_t n = x.n;
  BackwardResult out;
  out.dx = Matrix{x.rows, n, std::vector<double>(x.values.size())};
  if (!weight.empty()) out.dweight.assign(static_cast<size_t>(n), 0.0);
  out.dbias.assign(static_cast<size_t>(n), 0.0);
  std::vector<double> gy(static_cast<size_t>(n));

  for (int64_t row = 0; row < x.rows; ++row) {
    for (int64_t c = 0; c < n; ++c) out.dbias[c] += dy.at(row, c);
    const bool x_finite = all_finite(x, row);
    if (!x_finite || !all_finite(dy, row)) {
      for (int64_t c = 0; c < n; ++c) out.dx.at(row, c) = kNaN;
      if (!weight.empty()) {
        // A non-finite x leaves the row without statistics: xhat is NaN.
        const RowStatistics st = x_finite ? row_statistics(options, x, row) : RowStatistics{kNaN, kNaN};
        for (int64_t c = 0; c < n; ++c) out.dweight[c] += dy.at(row, c) * (x.at(row, c) - st.mean) / st.r;
      }
      continue;
    }
    const RowStatistics st = row_statistics(options, x, row);
    for (int64_t c = 0; c < n; ++c) gy[c] = dy.at(row, c) * (weight.empty() ? 1.0 : weight[c]);

    if (options.kind == NormKind::kLayerNorm) {
      // dx_j = (1/r) * (gy_j - mean(gy) - xhat_j * mean(gy * xhat))
      long double sum_gy = 0, sum_gy_xhat = 0;
      for (int64_t c = 0; c < n; ++c) {
        const double xhat = (x.at(row, c) - st.mean) / st.r;
        sum_gy += gy[c];
        sum_gy_xhat += static_cast<long double>(gy[c]) * xhat;
      }
      const double mean_gy = static_cast<double>(sum_gy / n);
      const double mean_gy_xhat = static_cast<double>(sum_gy_xhat / n);
      for (int64_t c = 0; c < n; ++c) {
        const double xhat = (x.at(row, c) - st.mean) / st.r;
        out.dx.at(row, c) = (gy[c] - mean_gy - xhat * mean_gy_xhat) / st.r;
      }
    } else {
      // c = sum_{all i} gy_i x_i; only the first k elements carry the statistic term.
      long double dot = 0;
      for (int64_t c = 0; c < n; ++c) dot += static_cast<long double>(gy[c]) * x.at(row, c);
      const double cdot = static_cast<double>(dot);
      double coefficient;  // multiplies x_j for j < k
      if (options.eps_placement == EpsPlacement::kInside) {
        coefficient = cdot / (static_cast<double>(st.k) * st.r * st.r * st.r);
      } else {
        coefficient = st.s == 0.0 ? 0.0 : cdot / (static_cast<double>(st.k) * st.s * st.r * st.r);
      }
      for (int64_t c = 0; c < n; ++c) {
        const double term = c < st.k ? x.at(row, c) * coefficient : 0.0;
        out.dx.at(row, c) = gy[c] / st.r - term;
      }
    }
    if (!weight.empty()) {
      for (int64_t c = 0; c < n; ++c) out.dweight[c] += dy.at(row, c) * (x.at(row, c) - st.mean) / st.r;
    }
  }
  return out;
}

}  // namespace rmsnorm::reference
