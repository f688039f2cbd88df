// The slow path: rows the fast kernels hand over because they hold a NaN or an
// infinity, because their squares overflow or underflow the arithmetic type, or
// because their scale is extreme. Scalar and in long double (64-bit mantissa,
// 15-bit exponent on x86), so every finite float or double input is exact to
// square. Mirrors src/reference/reference.cpp formula for formula.
#include <cmath>
#include <limits>
#include <vector>

#include "rmsnorm/scalar_types.hpp"
#include "src/cpu/dtype_dispatch.hpp"
#include "src/cpu/kernels.hpp"

namespace rmsnorm::cpu {
namespace {

using Wide = long double;
constexpr Wide kNaN = std::numeric_limits<Wide>::quiet_NaN();

// The one scalar load and store of every dtype (rmsnorm/scalar_types.hpp):
// loads are exact, stores round once from long double.
Wide load(DType dtype, const void* base, int64_t i) { return load_element(dtype, base, i); }
void store(DType dtype, void* base, int64_t i, Wide v) { store_element(dtype, base, i, v); }

bool row_finite(DType dtype, const void* row, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    if (!std::isfinite(load(dtype, row, c))) return false;
  }
  return true;
}

// The gain of column c, or g. The offset is the operand the kernels add: a
// float32 for all but float64 data (SPEC section 7), so an offset below
// float32's range adds nothing on either path (-7.1e-73 plus a zero weight is
// a zero gain on the fast path; here it was not, and an infinite x gave inf
// on one path and NaN on the other: fuzzer). The sum is exact here: the
// kernels' folded float32 gain can overflow where the exact one does not.
template <class Plan>
Wide gain(const Plan& plan, int64_t c) {
  if (plan.weight_offset != 0) {
    const Wide offset = plan.dtype == DType::kFloat64 ? static_cast<Wide>(plan.weight_offset)
                                                      : static_cast<Wide>(static_cast<float>(plan.weight_offset));
    return offset + load(plan.unfolded_dtype, plan.unfolded_weight, c);
  }
  return load(plan.param_dtype, plan.weight, c);
}

// The elements that form the statistic: all n, or pRMSNorm's first k.
int64_t statistic_count(const NormParams& p) { return p.centered ? p.n : p.k; }

using WideStatistics = WideRowStatistics;

WideStatistics wide_statistics(const NormParams& p, DType dtype, const void* row) {
  WideStatistics st;
  if (p.centered) {
    Wide sum = 0;
    for (int64_t c = 0; c < p.n; ++c) sum += load(dtype, row, c);
    st.mean = sum / p.n;
    Wide squares = 0;
    for (int64_t c = 0; c < p.n; ++c) {
      const Wide d = load(dtype, row, c) - st.mean;
      squares += d * d;
    }
    st.r = std::sqrt(squares / p.n + p.eps);
    return st;
  }
  Wide squares = 0;
  for (int64_t c = 0; c < p.k; ++c) {
    const Wide v = load(dtype, row, c);
    squares += v * v;
  }
  const Wide ms = squares / p.k;
  st.s = std::sqrt(ms);
  st.r = p.eps_outside ? st.s + p.eps : std::sqrt(ms + p.eps);
  return st;
}

void save_statistic(DType data_dtype, void* where, int64_t row, Wide value) {
  if (!where) return;
  if (data_dtype == DType::kFloat64) {
    static_cast<double*>(where)[row] = static_cast<double>(value);
  } else {
    static_cast<float*>(where)[row] = static_cast<float>(value);
  }
}

}  // namespace

void slow_forward_row(const ForwardPlan& plan, int64_t row, const void* source, int64_t column_begin,
                      int64_t column_end) {
  const NormParams& p = plan.norm;
  const bool finite = row_finite(plan.dtype, source, statistic_count(p));
  slow_forward_apply(plan, row, source, column_begin, column_end,
                     finite ? wide_statistics(p, plan.dtype, source) : WideStatistics{kNaN, kNaN, kNaN});
}

void slow_forward_apply(const ForwardPlan& plan, int64_t row, const void* source, int64_t column_begin,
                        int64_t column_end, const WideRowStatistics& st) {
  if (column_begin == 0) {
    save_statistic(plan.dtype, plan.saved_inv_rms, row, 1 / st.r);
    save_statistic(plan.dtype, plan.saved_mean, row, st.mean);
  }
  void* y = row_pointer<char>(plan.y, row, plan.y_stride * static_cast<int64_t>(dtype_size(plan.dtype)));
  for (int64_t c = column_begin; c < column_end; ++c) {
    Wide v = (load(plan.dtype, source, c) - st.mean) / st.r;
    if (plan.round_before_weight) v = rounded_to(plan.dtype, v);  // SPEC section 7's before_weight
    if (plan.weight) v *= gain(plan, c);
    if (plan.bias) v += load(plan.param_dtype, plan.bias, c);
    store(plan.dtype, y, c, v);
  }
}

void slow_backward_row(const BackwardPlan& plan, int64_t row, int64_t column_begin, int64_t column_end,
                       GradAccumulator& acc) {
  const NormParams& p = plan.norm;
  const int64_t esize = static_cast<int64_t>(dtype_size(plan.dtype));
  const void* x = row_pointer<char>(plan.x, row, plan.x_stride * esize);
  const void* dy = row_pointer<char>(plan.dy, row, plan.dy_stride * esize);
  void* dx = row_pointer<char>(plan.dx, row, plan.dx_stride * esize);
  const void* dh_out = plan.dh_out ? row_pointer<char>(plan.dh_out, row, plan.dh_out_stride * esize) : nullptr;
  // dx = norm_backward(dy) + dh_out, rounded once (SPEC section 8). dh_out is
  // read before dx is written: dx may be dh_out.
  auto store_dx = [&](int64_t c, Wide v) { store(plan.dtype, dx, c, dh_out ? v + load(plan.dtype, dh_out, c) : v); };
  const bool statistic_finite = row_finite(plan.dtype, x, statistic_count(p));
  const WideStatistics st = statistic_finite ? wide_statistics(p, plan.dtype, x) : WideStatistics{kNaN, kNaN, kNaN};
  auto gy = [&](int64_t c) {
    const Wide d = load(plan.dtype, dy, c);
    return plan.weight ? d * gain(plan, c) : d;
  };

  // Straight into the double totals, not the chunk in the arithmetic type:
  // the rows that come here can have terms beyond float's range (dy ~ 1e37),
  // whose float sum would overflow to inf - inf = NaN. The order of additions
  // is still fixed.
  if (acc.total_dweight) {
    ensure_totals(acc);
    for (int64_t c = column_begin; c < column_end; ++c) {
      const Wide d = load(plan.dtype, dy, c);
      acc.total_dweight[c] += static_cast<double>(d * (load(plan.dtype, x, c) - st.mean) / st.r);
      acc.total_dbias[c] += static_cast<double>(d);
    }
  }
  // c = sum gy x runs over the whole row: a NaN or Inf anywhere in x or dy
  // reaches every dx of the row (the [j<k] terms by arithmetic; the others are
  // made NaN with them, as SPEC section 4 makes a poisoned row NaN).
  if (!statistic_finite || !row_finite(plan.dtype, x, p.n) || !row_finite(plan.dtype, dy, p.n)) {
    for (int64_t c = column_begin; c < column_end; ++c) store_dx(c, kNaN);
    return;
  }
  if (p.centered) {
    Wide sum_gy = 0, sum_gy_xhat = 0;
    for (int64_t c = 0; c < p.n; ++c) {
      sum_gy += gy(c);
      sum_gy_xhat += gy(c) * (load(plan.dtype, x, c) - st.mean) / st.r;
    }
    const Wide mean_gy = sum_gy / p.n, mean_gy_xhat = sum_gy_xhat / p.n;
    for (int64_t c = column_begin; c < column_end; ++c) {
      const Wide xhat = (load(plan.dtype, x, c) - st.mean) / st.r;
      store_dx(c, (gy(c) - mean_gy - xhat * mean_gy_xhat) / st.r);
    }
    return;
  }
  // SPEC section 3 in normalized form, as the reference computes it
  // (xhat = x / r, D = sum_i gy_i xhat_i):
  //   inside:  dx_j = (gy_j - [j<k] xhat_j D / k) / r
  //   outside: dx_j = gy_j / r - [j<k] xhat_j D / (k s)   (0 when s = 0)
  // Every intermediate is of the size of gy or of xhat, so none underflows or
  // overflows even where r does, and a row that cancels exactly (n = 1, eps = 0)
  // gives exactly 0 instead of the rounding residue of two huge terms.
  Wide D = 0;
  for (int64_t c = 0; c < p.n; ++c) D += gy(c) * (load(plan.dtype, x, c) / st.r);
  const Wide k = static_cast<Wide>(p.k);
  for (int64_t c = column_begin; c < column_end; ++c) {
    const Wide xhat = load(plan.dtype, x, c) / st.r;
    Wide v;
    if (c >= p.k) {
      v = gy(c) / st.r;
    } else if (!p.eps_outside) {
      v = (gy(c) - xhat * D / k) / st.r;
    } else {
      v = gy(c) / st.r - (st.s == 0 ? 0 : xhat * D / (k * st.s));
    }
    store_dx(c, v);
  }
}

long double slow_row_sum(DType dtype, const void* row, int64_t count, long double shift, int power) {
  Wide sum = 0;
  for (int64_t c = 0; c < count; ++c) {
    const Wide d = load(dtype, row, c) - shift;
    sum += power == 2 ? d * d : d;
  }
  return sum;
}

WideGradientSums slow_gradient_sums(const BackwardPlan& plan, int64_t row, long double pivot) {
  const int64_t esize = static_cast<int64_t>(dtype_size(plan.dtype));
  const void* x = row_pointer<char>(plan.x, row, plan.x_stride * esize);
  const void* dy = row_pointer<char>(plan.dy, row, plan.dy_stride * esize);
  WideGradientSums sums;
  for (int64_t c = 0; c < plan.norm.n; ++c) {
    const Wide d = load(plan.dtype, dy, c);
    const Wide gy = plan.weight ? d * gain(plan, c) : d;
    const Wide deviation = load(plan.dtype, x, c) - pivot;
    sums.dot += gy * deviation;
    sums.sum_gy += gy;
    sums.deviations += deviation;
  }
  return sums;
}

void slow_backward_apply(const BackwardPlan& plan, const NormParams& global, int64_t row, int64_t column_begin,
                         int64_t column_end, const WideGradient& g, GradAccumulator& acc) {
  const int64_t esize = static_cast<int64_t>(dtype_size(plan.dtype));
  const void* x = row_pointer<char>(plan.x, row, plan.x_stride * esize);
  const void* dy = row_pointer<char>(plan.dy, row, plan.dy_stride * esize);
  void* dx = row_pointer<char>(plan.dx, row, plan.dx_stride * esize);
  if (acc.total_dweight) {  // straight into the double totals, as slow_backward_row
    ensure_totals(acc);
    for (int64_t c = column_begin; c < column_end; ++c) {
      const Wide d = load(plan.dtype, dy, c);
      acc.total_dweight[c] += static_cast<double>(d * (load(plan.dtype, x, c) - g.mean) * g.inv_r);
      acc.total_dbias[c] += static_cast<double>(d);
    }
  }
  // A NaN or Inf anywhere in the global row's x or dy reaches its sums, and
  // from there every dx of the row (SPEC section 4).
  const bool poisoned = !std::isfinite(g.dot) || !std::isfinite(g.sum_gy) || !std::isfinite(g.inv_r) ||
                        !std::isfinite(g.mean) || !std::isfinite(g.s);
  const Wide inv_r = g.inv_r, n = static_cast<Wide>(global.n), k = static_cast<Wide>(global.k);
  // SPEC section 3 with the statistic term scaled once per row.
  Wide coef;
  if (global.centered) {
    coef = inv_r * inv_r * inv_r * g.dot / n;
  } else if (!global.eps_outside) {
    coef = g.dot * inv_r * inv_r * inv_r / k;
  } else {
    coef = g.s == 0 ? 0 : g.dot * inv_r * inv_r / (k * g.s);
  }
  const Wide mean_gy = global.centered ? g.sum_gy / n : 0;
  for (int64_t c = column_begin; c < column_end; ++c) {
    if (poisoned) {
      store(plan.dtype, dx, c, kNaN);
      continue;
    }
    const Wide d = load(plan.dtype, dy, c);
    const Wide gy = plan.weight ? d * gain(plan, c) : d;
    const Wide statistic_term = global.centered || c < plan.norm.k ? (load(plan.dtype, x, c) - g.mean) * coef : 0;
    store(plan.dtype, dx, c, (gy - mean_gy) * inv_r - statistic_term);
  }
}

namespace {

Wide silu(Wide z) { return z / (1 + std::exp(-z)); }
Wide silu_derivative(Wide z) {
  const Wide sigma = 1 / (1 + std::exp(-z));
  return sigma * (1 + z * (1 - sigma));
}

// One group's pointers and its normalized input u (x, or x silu(z) with the
// gate before), statistics as reference.cpp forms them.
struct WideGroup {
  const void* x;
  const void* z;
  int64_t c0, m;
  std::vector<Wide> u;
  Wide r = 0, s = 0;
  bool finite = true;
};

template <class Plan>
WideGroup wide_group(const Plan& plan, const calls::Gating& gating, int64_t row, int64_t group) {
  const int64_t esize = static_cast<int64_t>(dtype_size(plan.dtype));
  WideGroup g{row_pointer<char>(plan.x, row, plan.x_stride * esize),
              gating.z ? row_pointer<char>(gating.z, row, gating.z_stride * esize) : nullptr,
              group * gating.group_size, gating.group_size, {}};
  Wide squares = 0;
  for (int64_t c = g.c0; c < g.c0 + g.m; ++c) {
    Wide u = load(plan.dtype, g.x, c);
    if (gating.gate == Gate::kBeforeNorm) u *= silu(load(plan.dtype, g.z, c));
    g.finite = g.finite && std::isfinite(u);
    g.u.push_back(u);
    squares += u * u;
  }
  const NormParams& p = plan.norm;
  const Wide ms = squares / g.m;
  g.s = std::sqrt(ms);
  g.r = p.eps_outside ? g.s + p.eps : std::sqrt(ms + p.eps);
  return g;
}

}  // namespace

void slow_gated_forward_group(const ForwardPlan& plan, const calls::Gating& gating, int64_t row, int64_t group) {
  const WideGroup g = wide_group(plan, gating, row, group);
  const int64_t groups = plan.norm.n / gating.group_size;
  save_statistic(plan.dtype, plan.saved_inv_rms, row * groups + group, g.finite ? 1 / g.r : kNaN);
  void* y = row_pointer<char>(plan.y, row, plan.y_stride * static_cast<int64_t>(dtype_size(plan.dtype)));
  for (int64_t i = 0; i < g.m; ++i) {
    const int64_t c = g.c0 + i;
    Wide v = g.u[i] / g.r;
    if (plan.weight) v *= gain(plan, c);
    if (gating.gate == Gate::kAfterNorm) v *= silu(load(plan.dtype, g.z, c));
    store(plan.dtype, y, c, g.finite ? v : kNaN);
  }
}

void slow_gated_backward_group(const BackwardPlan& plan, const calls::Gating& gating, int64_t row, int64_t group,
                               GradAccumulator& acc) {
  const WideGroup g = wide_group(plan, gating, row, group);
  const int64_t esize = static_cast<int64_t>(dtype_size(plan.dtype));
  const void* dy = row_pointer<char>(plan.dy, row, plan.dy_stride * esize);
  void* dx = row_pointer<char>(plan.dx, row, plan.dx_stride * esize);
  void* dz = gating.dz ? row_pointer<char>(gating.dz, row, gating.dz_stride * esize) : nullptr;
  const bool after = gating.gate == Gate::kAfterNorm, before = gating.gate == Gate::kBeforeNorm;
  auto gain_dy = [&](int64_t c) {
    const Wide d = load(plan.dtype, dy, c);
    return plan.weight ? d * gain(plan, c) : d;
  };
  // Read every dy before dx is written: dx may be dy.
  std::vector<Wide> gy(static_cast<size_t>(g.m)), dys(static_cast<size_t>(g.m));
  Wide D = 0;  // sum gy (u / r)
  for (int64_t i = 0; i < g.m; ++i) {
    const int64_t c = g.c0 + i;
    dys[i] = load(plan.dtype, dy, c);
    gy[i] = gain_dy(c) * (after ? silu(load(plan.dtype, g.z, c)) : 1);
    D += gy[i] * (g.u[i] / g.r);
  }
  if (acc.total_dweight && plan.want_dweight) {  // straight into the double totals, as slow_backward_row
    ensure_totals(acc);
    for (int64_t i = 0; i < g.m; ++i) {
      const int64_t c = g.c0 + i;
      acc.total_dweight[c] +=
          static_cast<double>(dys[i] * (g.u[i] / g.r) * (after ? silu(load(plan.dtype, g.z, c)) : 1));
    }
  }
  const bool poisoned = !g.finite || !std::isfinite(D);
  const Wide m = static_cast<Wide>(g.m);
  for (int64_t i = 0; i < g.m; ++i) {
    const int64_t c = g.c0 + i;
    if (poisoned) {
      store(plan.dtype, dx, c, kNaN);
      if (dz) store(plan.dtype, dz, c, kNaN);
      continue;
    }
    const Wide u_hat = g.u[i] / g.r;
    const Wide du = !plan.norm.eps_outside ? (gy[i] - u_hat * D / m) / g.r
                                           : gy[i] / g.r - (g.s == 0 ? 0 : u_hat * D / (m * g.s));
    if (before) {
      const Wide z = load(plan.dtype, g.z, c);
      store(plan.dtype, dz, c, du * load(plan.dtype, g.x, c) * silu_derivative(z));
      store(plan.dtype, dx, c, du * silu(z));
    } else if (after) {
      const Wide gain_only = plan.weight ? gain(plan, c) : 1;
      store(plan.dtype, dz, c, dys[i] * gain_only * u_hat * silu_derivative(load(plan.dtype, g.z, c)));
      store(plan.dtype, dx, c, du);
    } else {
      store(plan.dtype, dx, c, du);
    }
  }
}

}  // namespace rmsnorm::cpu
