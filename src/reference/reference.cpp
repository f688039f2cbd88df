// The float64 reference: SPEC.md sections 2 and 3, literally. Read this file to
// know what every other implementation computes.
#include "rmsnorm/reference.hpp"

#include "rmsnorm/scalar_types.hpp"

#include <cmath>
#include <limits>

namespace rmsnorm::reference {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();


bool all_finite(const Matrix& m, int64_t row, int64_t count) {
  for (int64_t c = 0; c < count; ++c) {
    if (!std::isfinite(m.at(row, c))) return false;
  }
  return true;
}

// The elements that form the row's statistic (SPEC section 4): all n, or
// pRMSNorm's first k. A NaN or Inf past k reaches only its own output.
int64_t statistic_count(const NormOptions& options, int64_t n) {
  return options.kind == NormKind::kLayerNorm ? n : partial_count(n, options.p);
}

// The per-row statistics: the shift (mean for LayerNorm, 0 for RMSNorm), r, and
// for RMSNorm s = sqrt(ms) and k.
// Kept in long double: a double mean of a row like 1e4 + N(0, 1) is off by
// 1e-12, which is 1e-12 of the row's spread, more than float64's bound.
struct RowStatistics {
  long double mean = 0.0;
  long double r = 0.0;
  long double s = 0.0;  // sqrt(ms), used by the "outside" gradient
  int64_t k = 0;
};

RowStatistics row_statistics(const NormOptions& options, const Matrix& x, int64_t row) {
  RowStatistics st;
  const int64_t n = x.n;
  if (options.kind == NormKind::kLayerNorm) {
    long double sum = 0;
    for (int64_t c = 0; c < n; ++c) sum += x.at(row, c);
    st.mean = sum / n;
    long double squares = 0;
    for (int64_t c = 0; c < n; ++c) {
      const long double d = static_cast<long double>(x.at(row, c)) - st.mean;
      squares += d * d;
    }
    const long double var = squares / n;
    st.r = std::sqrt(var + options.eps);
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
  st.s = std::sqrt(ms);
  st.r = options.eps_placement == EpsPlacement::kInside ? std::sqrt(ms + options.eps) : std::sqrt(ms) + options.eps;
  return st;
}

}  // namespace

ForwardResult forward(const NormOptions& options, const Matrix& x, const std::vector<double>& weight,
                      const std::vector<double>& bias, DType data_dtype) {
  // SPEC section 7: the gain is o + g; before_weight rounds (x - mean) / r to
  // 16-bit data's dtype before the gain and bias apply.
  const bool round_first = options.rounding == Rounding::kBeforeWeight &&
                           (data_dtype == DType::kBFloat16 || data_dtype == DType::kFloat16);
  ForwardResult out;
  out.y = Matrix{x.rows, x.n, std::vector<double>(x.values.size())};
  out.inv_rms.resize(static_cast<size_t>(x.rows));
  out.mean.resize(static_cast<size_t>(x.rows));
  for (int64_t row = 0; row < x.rows; ++row) {
    if (!all_finite(x, row, statistic_count(options, x.n))) {
      for (int64_t c = 0; c < x.n; ++c) out.y.at(row, c) = kNaN;
      out.inv_rms[row] = kNaN;
      out.mean[row] = kNaN;
      continue;
    }
    const RowStatistics st = row_statistics(options, x, row);
    out.inv_rms[row] = static_cast<double>(1 / st.r);
    out.mean[row] = static_cast<double>(st.mean);
    for (int64_t c = 0; c < x.n; ++c) {
      long double v = (x.at(row, c) - st.mean) / st.r;
      if (round_first) v = rounded_to(data_dtype, v);
      if (!weight.empty()) v *= options.weight_offset + static_cast<long double>(weight[c]);
      if (!bias.empty()) v += bias[c];
      out.y.at(row, c) = static_cast<double>(v);
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
  std::vector<long double> gy(static_cast<size_t>(n));

  for (int64_t row = 0; row < x.rows; ++row) {
    for (int64_t c = 0; c < n; ++c) out.dbias[c] += dy.at(row, c);
    const bool statistic_finite = all_finite(x, row, statistic_count(options, n));
    if (!statistic_finite || !all_finite(x, row, n) || !all_finite(dy, row, n)) {
      // c = sum gy x runs over the whole row, so every dx of the row is NaN.
      for (int64_t c = 0; c < n; ++c) out.dx.at(row, c) = kNaN;
      if (!weight.empty()) {
        // A non-finite statistic element leaves the row without statistics: xhat is NaN.
        const RowStatistics st = statistic_finite ? row_statistics(options, x, row) : RowStatistics{kNaN, kNaN};
        for (int64_t c = 0; c < n; ++c) out.dweight[c] += static_cast<double>(dy.at(row, c) * (x.at(row, c) - st.mean) / st.r);
      }
      continue;
    }
    const RowStatistics st = row_statistics(options, x, row);
    for (int64_t c = 0; c < n; ++c) gy[c] = static_cast<long double>(dy.at(row, c)) * (weight.empty() ? 1.0L : options.weight_offset + static_cast<long double>(weight[c]));

    if (options.kind == NormKind::kLayerNorm) {
      // dx_j = (1/r) * (gy_j - mean(gy) - xhat_j * mean(gy * xhat)), in long double
      long double sum_gy = 0, sum_gy_xhat = 0;
      for (int64_t c = 0; c < n; ++c) {
        const long double xhat = (x.at(row, c) - st.mean) / st.r;
        sum_gy += gy[c];
        sum_gy_xhat += gy[c] * xhat;
      }
      const long double mean_gy = sum_gy / n, mean_gy_xhat = sum_gy_xhat / n;
      for (int64_t c = 0; c < n; ++c) {
        const long double xhat = (x.at(row, c) - st.mean) / st.r;
        out.dx.at(row, c) = static_cast<double>((gy[c] - mean_gy - xhat * mean_gy_xhat) / st.r);
      }
    } else {
      // c = sum_{all i} gy_i x_i; only the first k elements carry the statistic
      // term. Evaluated in normalized form, in long double (xhat = x / r,
      // D = sum_i gy_i xhat_i = c / r), the same values as section 3's:
      //   inside:  dx_j = (gy_j - [j<k] xhat_j D / k) / r
      //   outside: dx_j = gy_j / r - [j<k] xhat_j D / (k s)   (0 when s = 0)
      // so that no intermediate underflows or overflows where the result does
      // not (x / r^3 does, for rows far from 1 in scale).
      using Wide = long double;
      const Wide r = st.r, s = st.s, k = static_cast<Wide>(st.k);
      auto gy_of = [&](int64_t c) { return gy[c]; };
      Wide D = 0;
      for (int64_t c = 0; c < n; ++c) D += gy_of(c) * (x.at(row, c) / r);
      for (int64_t c = 0; c < n; ++c) {
        const Wide xhat = x.at(row, c) / r;
        Wide v;
        if (c >= st.k) {
          v = gy_of(c) / r;
        } else if (options.eps_placement == EpsPlacement::kInside) {
          v = (gy_of(c) - xhat * D / k) / r;
        } else {
          v = gy_of(c) / r - (s == 0 ? 0 : xhat * D / (k * s));
        }
        out.dx.at(row, c) = static_cast<double>(v);
      }
    }
    if (!weight.empty()) {
      for (int64_t c = 0; c < n; ++c) out.dweight[c] += static_cast<double>(dy.at(row, c) * (x.at(row, c) - st.mean) / st.r);
    }
  }
  return out;
}

namespace {

// silu(z) = z / (1 + e^-z) and its derivative sigma(z) (1 + z (1 - sigma(z))).
long double silu(long double z) { return z / (1 + std::exp(-z)); }
long double silu_derivative(long double z) {
  const long double sigma = 1 / (1 + std::exp(-z));
  return sigma * (1 + z * (1 - sigma));
}

// One group's input to the norm, its statistics, and its gain per column.
struct Group {
  std::vector<long double> u;  // x, or x * silu(z) with the gate before the norm
  long double r = 0, s = 0;
  bool finite = true;
};

Group group_of(const NormOptions& options, const Matrix& x, const Matrix& z, Gate gate, int64_t row, int64_t c0,
               int64_t m) {
  Group g;
  long double squares = 0;
  for (int64_t c = c0; c < c0 + m; ++c) {
    const long double u = gate == Gate::kBeforeNorm ? x.at(row, c) * silu(z.at(row, c)) : x.at(row, c);
    g.finite = g.finite && std::isfinite(u);
    g.u.push_back(u);
    squares += u * u;
  }
  const long double ms = squares / m;
  g.s = std::sqrt(ms);
  g.r = options.eps_placement == EpsPlacement::kInside ? std::sqrt(ms + options.eps) : g.s + options.eps;
  return g;
}

int64_t group_size_of(int64_t group_size, int64_t n) { return group_size == 0 ? n : group_size; }

}  // namespace

GatedForwardResult gated_forward(const NormOptions& options, const Matrix& x, const Matrix& z, Gate gate,
                                 int64_t group_size, const std::vector<double>& weight) {
  const int64_t n = x.n, m = group_size_of(group_size, n), groups = n / m;
  GatedForwardResult out;
  out.y = Matrix{x.rows, n, std::vector<double>(x.values.size())};
  out.inv_rms.resize(static_cast<size_t>(x.rows * groups));
  for (int64_t row = 0; row < x.rows; ++row) {
    for (int64_t group = 0; group < groups; ++group) {
      const int64_t c0 = group * m;
      const Group g = group_of(options, x, z, gate, row, c0, m);
      out.inv_rms[row * groups + group] = g.finite ? static_cast<double>(1 / g.r) : kNaN;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t c = c0 + i;
        long double v = g.u[i] / g.r;
        if (!weight.empty()) v *= options.weight_offset + static_cast<long double>(weight[c]);
        if (gate == Gate::kAfterNorm) v *= silu(z.at(row, c));
        out.y.at(row, c) = g.finite ? static_cast<double>(v) : kNaN;
      }
    }
  }
  return out;
}

GatedBackwardResult gated_backward(const NormOptions& options, const Matrix& x, const Matrix& z, const Matrix& dy,
                                   Gate gate, int64_t group_size, const std::vector<double>& weight) {
  const int64_t n = x.n, m = group_size_of(group_size, n), groups = n / m;
  GatedBackwardResult out;
  out.dx = Matrix{x.rows, n, std::vector<double>(x.values.size())};
  out.dz = out.dx;
  if (!weight.empty()) out.dweight.assign(static_cast<size_t>(n), 0.0);
  auto gain = [&](int64_t c) { return weight.empty() ? 1.0L : options.weight_offset + static_cast<long double>(weight[c]); };
  for (int64_t row = 0; row < x.rows; ++row) {
    for (int64_t group = 0; group < groups; ++group) {
      const int64_t c0 = group * m;
      const Group g = group_of(options, x, z, gate, row, c0, m);
      // gy: the gradient reaching the normalized value u / r.
      std::vector<long double> gy(static_cast<size_t>(m));
      long double D = 0;  // sum gy (u / r)
      for (int64_t i = 0; i < m; ++i) {
        const int64_t c = c0 + i;
        gy[i] = dy.at(row, c) * gain(c) * (gate == Gate::kAfterNorm ? silu(z.at(row, c)) : 1.0L);
        D += gy[i] * (g.u[i] / g.r);
      }
      const bool poisoned = !g.finite || !std::isfinite(D);
      for (int64_t i = 0; i < m; ++i) {
        const int64_t c = c0 + i;
        const long double uhat = g.u[i] / g.r;
        if (!weight.empty()) {
          out.dweight[c] += static_cast<double>(dy.at(row, c) * uhat * (gate == Gate::kAfterNorm ? silu(z.at(row, c)) : 1.0L));
        }
        if (poisoned) {
          out.dx.at(row, c) = out.dz.at(row, c) = kNaN;
          continue;
        }
        // SPEC section 3 for the group, in normalized form.
        const long double du = options.eps_placement == EpsPlacement::kInside
                                   ? (gy[i] - uhat * D / m) / g.r
                                   : gy[i] / g.r - (g.s == 0 ? 0 : uhat * D / (m * g.s));
        if (gate == Gate::kBeforeNorm) {
          out.dx.at(row, c) = static_cast<double>(du * silu(z.at(row, c)));
          out.dz.at(row, c) = static_cast<double>(du * x.at(row, c) * silu_derivative(z.at(row, c)));
        } else {
          out.dx.at(row, c) = static_cast<double>(du);
          out.dz.at(row, c) = gate == Gate::kAfterNorm
                                  ? static_cast<double>(dy.at(row, c) * gain(c) * uhat * silu_derivative(z.at(row, c)))
                                  : 0.0;
        }
      }
    }
  }
  return out;
}

}  // namespace rmsnorm::reference
