// What one thread of a team does for the rows its team normalizes: the whole
// body of the CUDA kernels, written once as __host__ __device__ code.
//
// A team is the group of threads that shares a row: a warp for short rows, a
// block for long ones (geometry.hpp picks). Thread `rank` of a team of `size`
// owns the 16-byte packs j = rank + i * size of every row, i = 0, 1, ..., so a
// team's loads are contiguous and coalesced. When the row fits (PACKS > 0, the
// "resident" form) a thread keeps its packs in registers and reads x from
// memory once; otherwise (PACKS == 0, rows above the register capacity) it
// re-reads its own packs, which the row's first pass left in L2.
//
// The only communication is Team::reduce (a sum or a max over the team,
// returned to every thread). On the GPU a team reduces with warp shuffles and
// shared memory (kernels.cu); tests/cuda_emulation_test.cu runs this same code
// on the CPU with one host thread per team member, which is how the kernels'
// indexing and arithmetic are tested on machines without a GPU.
//
// Arithmetic (SPEC section 4): float32 for 16- and 32-bit storage, with row
// sums carried in double between threads; rows whose float32 sum of squares
// overflows or underflows, or that hold NaN/Inf, take the wide path, which
// redoes the statistics in double on values scaled by the row's largest
// magnitude. float64 storage always takes the wide path.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#define RMSNORM_HD __host__ __device__ __forceinline__

namespace rmsnorm::cuda::detail {

// ---------------------------------------------------------------- storage types

template <typename T>
RMSNORM_HD float to_float(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return static_cast<float>(v);
  }
}

template <typename T>
RMSNORM_HD double to_double(T v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    return to_float(v);  // exact
  }
}

// One rounding from float to the storage type.
template <typename T>
RMSNORM_HD T from_float(float v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return static_cast<T>(v);
  }
}

// One rounding from double to the storage type.
template <typename T>
RMSNORM_HD T from_double(double v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __double2half(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __double2bfloat16(v);
  } else {
    return static_cast<T>(v);
  }
}

// Row statistics are saved in float32, or float64 for float64 data.
template <typename T>
using SavedStat = std::conditional_t<std::is_same_v<T, double>, double, float>;
// dweight/dbias partial sums per team.
template <typename T>
using Partial = SavedStat<T>;

// ---------------------------------------------------------------- packs

// VEC consecutive elements, loaded and stored as one 16-byte access when VEC > 1.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// Pack j of a row of n elements; elements past n read as zero (neutral for
// every sum and max taken here). Row starts are 16-byte aligned when VEC > 1.
template <typename T, int VEC>
RMSNORM_HD Pack<T, VEC> load_pack(const T* row, int64_t n, int64_t j) {
  const int64_t c = j * VEC;
  if (c + VEC <= n) return *reinterpret_cast<const Pack<T, VEC>*>(row + c);
  Pack<T, VEC> p;
#pragma unroll
  for (int e = 0; e < VEC; ++e) p.v[e] = c + e < n ? row[c + e] : from_float<T>(0.0f);
  return p;
}

// Stores the elements of pack j that lie inside the row.
template <typename T, int VEC>
RMSNORM_HD void store_pack(T* row, int64_t n, int64_t j, const Pack<T, VEC>& p) {
  const int64_t c = j * VEC;
  if (c + VEC <= n) {
    *reinterpret_cast<Pack<T, VEC>*>(row + c) = p;
    return;
  }
#pragma unroll
  for (int e = 0; e < VEC; ++e)
    if (c + e < n) row[c + e] = p.v[e];
}

// Calls f(i, j) for the packs this thread owns: the i-th is pack j. Resident
// teams own at most PACKS (the loop unrolls); streaming ones own any number.
template <int PACKS, class F>
RMSNORM_HD void for_each_owned_pack(int rank, int size, int64_t packs, F&& f) {
  if constexpr (PACKS > 0) {
#pragma unroll
    for (int i = 0; i < PACKS; ++i) {
      const int64_t j = rank + static_cast<int64_t>(i) * size;
      if (j < packs) f(i, j);
    }
  } else {
    int i = 0;
    for (int64_t j = rank; j < packs; j += size, ++i) f(i, j);
  }
}

// Parameters (weight, bias) for pack j as float32, in 16-byte loads where the
// pack covers whole 16-byte pieces of them; absent parameters read as `absent`.
template <int VEC>
struct Floats {
  float v[VEC];
};
template <typename TW, int VEC>
RMSNORM_HD Floats<VEC> load_param_floats(const TW* p, int64_t n, int64_t j, float absent) {
  constexpr int kPer16 = static_cast<int>(16 / sizeof(TW));
  const int64_t c = j * VEC;
  Floats<VEC> out;
  if (p == nullptr) {
#pragma unroll
    for (int e = 0; e < VEC; ++e) out.v[e] = absent;
    return out;
  }
  if constexpr (VEC > 1 && VEC % kPer16 == 0) {
    if (c + VEC <= n) {
#pragma unroll
      for (int h = 0; h < VEC / kPer16; ++h) {
        const Pack<TW, kPer16> q = *reinterpret_cast<const Pack<TW, kPer16>*>(p + c + h * kPer16);
#pragma unroll
        for (int e = 0; e < kPer16; ++e) out.v[h * kPer16 + e] = to_float(q.v[e]);
      }
      return out;
    }
  }
#pragma unroll
  for (int e = 0; e < VEC; ++e) out.v[e] = c + e < n ? to_float(p[c + e]) : absent;
  return out;
}

// ---------------------------------------------------------------- reductions

struct Add {
  RMSNORM_HD double operator()(double a, double b) const { return a + b; }
};
struct Max {
  RMSNORM_HD double operator()(double a, double b) const { return a > b ? a : b; }  // inputs are never NaN
};

// ---------------------------------------------------------------- parameters

struct Norm {
  bool centered;     // LayerNorm
  bool eps_outside;  // r = sqrt(ms) + eps
  double eps;
  int64_t n, k;      // row length; elements that estimate the statistic
};

template <typename T, typename TW>
struct ForwardParams {
  using Storage = T;  // x, y, residual
  using Param = TW;   // weight, bias
  Norm norm;
  int64_t rows;
  const T* x;
  int64_t x_stride;
  T* residual;  // fused add: residual = round(residual + x), then normalize it
  int64_t residual_stride;
  T* y;
  int64_t y_stride;
  const TW* weight;
  const TW* bias;
  SavedStat<T>* saved_inv_rms;
  SavedStat<T>* saved_mean;
};

template <typename T, typename TW>
struct BackwardParams {
  using Storage = T;  // x, dy, dx
  using Param = TW;   // weight
  Norm norm;
  int64_t rows;
  const T* x;
  int64_t x_stride;
  const T* dy;
  int64_t dy_stride;
  T* dx;
  int64_t dx_stride;
  const TW* weight;
  const SavedStat<T>* saved_inv_rms;
  const SavedStat<T>* saved_mean;
  Partial<T>* partial_dweight;  // [team][n], or null
  Partial<T>* partial_dbias;
};

// ---------------------------------------------------------------- statistics

struct RowStats {
  double mean;   // 0 for RMSNorm
  double mean_correction;  // the wide path's mean is mean + mean_correction (double-double)
  double inv_r;  // 1 / r; NaN for a row holding NaN or Inf
  double s;      // sqrt(mean square) of the (centered) values
  float mean_hi, mean_lo;  // mean = hi + lo, for float32 centering
  bool wide;     // outputs and gradients must be computed in double
};

// Thresholds of the float32 path: a float32 sum of squares at least this large
// lost nothing to underflow (each subnormal square errs by < 2^-149, and rows
// hold at most 2^20 of them)...
constexpr double kSmallestFastSumOfSquares = 0x1p-80;
// ...and with eps inside the root at least this large, a smaller one does not matter.
constexpr double kSmallestDominantEps = 0x1p-40;

// Double, range-safe statistics of a row: every value scaled by 2^-e, where
// 2^e is just above the row's largest magnitude (exact), so no finite row
// overflows or underflows. LayerNorm's mean gets a second pass that adds the
// mean of the residuals x - mean: a double-double mean, so rows whose mean is
// large against their spread lose nothing. `get(i, j)` returns the thread's
// i-th owned pack (pack j).
template <typename T, int VEC, int PACKS, class Team, class GetPack>
RMSNORM_HD RowStats wide_statistics(Team& team, const Norm& norm, GetPack&& get) {
  const int64_t span = norm.centered ? norm.n : norm.k, packs = (norm.n + VEC - 1) / VEC;
  double largest = 0.0, non_finite = 0.0;
  for_each_owned_pack<PACKS>(team.rank(), team.size(), packs, [&](int i, int64_t j) {
    const Pack<T, VEC> p = get(i, j);
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const double v = to_double(p.v[e]);
      if (j * VEC + e >= span) continue;  // past pRMSNorm's k: not the statistic's
      if (!::isfinite(v)) non_finite = 1.0;
      largest = ::fabs(v) > largest ? ::fabs(v) : largest;
    }
  });
  non_finite = team.reduce(non_finite, Max{});
  largest = team.reduce(largest, Max{});
  RowStats st{0.0, 0.0, 0.0, 0.0, 0.0f, 0.0f, true};
  if (non_finite != 0.0) {
    st.inv_r = NAN;
    st.mean = norm.centered ? NAN : 0.0;
    return st;
  }
  int exponent = 0;
  if (largest > 0.0) ::frexp(largest, &exponent);
  // Scaled values past n are zero, as loaded.
  auto for_each_scaled = [&](auto&& f) {
    for_each_owned_pack<PACKS>(team.rank(), team.size(), packs, [&](int i, int64_t j) {
      const Pack<T, VEC> p = get(i, j);
#pragma unroll
      for (int e = 0; e < VEC; ++e) f(j * VEC + e, ::ldexp(to_double(p.v[e]), -exponent));
    });
  };
  double mean = 0.0, correction = 0.0;  // scaled
  if (norm.centered) {
    double sum = 0.0;
    for_each_scaled([&](int64_t, double v) { sum += v; });
    mean = team.reduce(sum, Add{}) / static_cast<double>(norm.n);
    double residual = 0.0;
    for_each_scaled([&](int64_t c, double v) {
      if (c < norm.n) residual += v - mean;
    });
    correction = team.reduce(residual, Add{}) / static_cast<double>(norm.n);
  }
  double squares = 0.0;
  for_each_scaled([&](int64_t c, double v) {
    if (c < span) {
      const double d = (v - mean) - correction;
      squares += d * d;
    }
  });
  const double scaled_ms = team.reduce(squares, Add{}) / static_cast<double>(span);
  const double scaled_s = ::sqrt(scaled_ms);
  double r;
  if (norm.eps_outside) {
    r = ::ldexp(scaled_s, exponent) + norm.eps;
  } else {
    const double eps_scaled = ::ldexp(norm.eps, -2 * exponent);  // +inf when the row is tiny: then r = sqrt(eps)
    r = ::isinf(eps_scaled) ? ::sqrt(norm.eps) : ::ldexp(::sqrt(scaled_ms + eps_scaled), exponent);
  }
  st.mean = ::ldexp(mean, exponent);
  st.mean_correction = ::ldexp(correction, exponent);
  st.s = ::ldexp(scaled_s, exponent);
  st.inv_r = 1.0 / r;
  st.mean_hi = static_cast<float>(st.mean);
  st.mean_lo = static_cast<float>((st.mean - static_cast<double>(st.mean_hi)) + st.mean_correction);
  return st;
}

// The statistics of a row: float32 sums, carried in double between threads,
// falling back to wide_statistics for the rows that need it (and always for
// float64 data).
template <typename T, int VEC, int PACKS, class Team, class GetPack>
RMSNORM_HD RowStats row_statistics(Team& team, const Norm& norm, GetPack&& get) {
  if constexpr (!std::is_same_v<T, double>) {
    const int64_t span = norm.centered ? norm.n : norm.k, packs = (norm.n + VEC - 1) / VEC;
    RowStats st{0.0, 0.0, 0.0, 0.0, 0.0f, 0.0f, false};
    if (norm.centered) {
      // Each thread sums its values around its own first value (exact
      // differences for rows with a large mean), then adds count * pivot in double.
      float pivot = 0.0f, around = 0.0f;
      int64_t count = 0;
      for_each_owned_pack<PACKS>(team.rank(), team.size(), packs, [&](int i, int64_t j) {
        const Pack<T, VEC> p = get(i, j);
        if (count == 0) pivot = to_float(p.v[0]);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          if (j * VEC + e < norm.n) {
            around += to_float(p.v[e]) - pivot;
            ++count;
          }
        }
      });
      const double total = team.reduce(static_cast<double>(around) + static_cast<double>(count) * pivot, Add{});
      st.mean = total / static_cast<double>(norm.n);
      st.mean_hi = static_cast<float>(st.mean);
      st.mean_lo = static_cast<float>(st.mean - static_cast<double>(st.mean_hi));
    }
    float squares = 0.0f;
    for_each_owned_pack<PACKS>(team.rank(), team.size(), packs, [&](int i, int64_t j) {
      const Pack<T, VEC> p = get(i, j);
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        // Only the statistic's elements: a NaN or Inf past pRMSNorm's k
        // reaches its own output alone (SPEC section 4).
        const float d = (to_float(p.v[e]) - st.mean_hi) - st.mean_lo;
        if (j * VEC + e < span) squares = ::fmaf(d, d, squares);
      }
    });
    const double sum_of_squares = team.reduce(static_cast<double>(squares), Add{});
    // The same decision on every thread: sum_of_squares is the team's.
    const bool fast = ::isfinite(sum_of_squares) &&
                      (sum_of_squares >= kSmallestFastSumOfSquares ||
                       (!norm.eps_outside && norm.eps >= kSmallestDominantEps));
    if (fast) {
      const double ms = sum_of_squares / static_cast<double>(span);
      st.s = ::sqrt(ms);
      st.inv_r = 1.0 / (norm.eps_outside ? st.s + norm.eps : ::sqrt(ms + norm.eps));
      return st;
    }
  }
  return wide_statistics<T, VEC, PACKS>(team, norm, get);
}

// ---------------------------------------------------------------- forward

// Normalizes rows team_index, team_index + team_count, ... of `a`.
template <typename T, typename TW, int VEC, int PACKS, class Team>
RMSNORM_HD void forward_rows(Team& team, int64_t team_index, int64_t team_count, const ForwardParams<T, TW>& a) {
  const Norm& norm = a.norm;
  const int64_t n = norm.n, packs = (n + VEC - 1) / VEC;
  const int rank = team.rank(), size = team.size();
  Pack<T, VEC> slot[PACKS > 0 ? PACKS : 1];  // the resident row
  for (int64_t row = team_index; row < a.rows; row += team_count) {
    const T* src = a.x + row * a.x_stride;
    if (a.residual) {
      T* res = a.residual + row * a.residual_stride;
      // residual = round(residual + x). The float32 sum of two 16-bit values is
      // exact or far from a rounding midpoint, so this is one correct rounding.
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        const Pack<T, VEC> xp = load_pack<T, VEC>(src, n, j), rp = load_pack<T, VEC>(res, n, j);
        Pack<T, VEC> sum;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          if constexpr (std::is_same_v<T, double>) {
            sum.v[e] = xp.v[e] + rp.v[e];
          } else {
            sum.v[e] = from_float<T>(to_float(xp.v[e]) + to_float(rp.v[e]));
          }
        }
        store_pack<T, VEC>(res, n, j, sum);
        if constexpr (PACKS > 0) slot[i] = sum;
      });
      src = res;  // a streaming thread re-reads only the columns it wrote
    } else if constexpr (PACKS > 0) {
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) { slot[i] = load_pack<T, VEC>(src, n, j); });
    }
    auto get = [&](int i, int64_t j) -> Pack<T, VEC> {
      if constexpr (PACKS > 0) {
        return slot[i];
      } else {
        return load_pack<T, VEC>(src, n, j);
      }
    };
    const RowStats st = row_statistics<T, VEC, PACKS>(team, norm, get);
    if (rank == 0) {
      if (a.saved_inv_rms) a.saved_inv_rms[row] = static_cast<SavedStat<T>>(st.inv_r);
      if (a.saved_mean) a.saved_mean[row] = static_cast<SavedStat<T>>(st.mean);
    }
    T* out = a.y + row * a.y_stride;
    // One loop per path, so the common float32 loop carries no double registers.
    if (!st.wide) {
      const float inv_r = static_cast<float>(st.inv_r);
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        const Pack<T, VEC> p = get(i, j);
        const Floats<VEC> w = load_param_floats<TW, VEC>(a.weight, n, j, 1.0f);
        const Floats<VEC> b = load_param_floats<TW, VEC>(a.bias, n, j, 0.0f);
        Pack<T, VEC> q;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          q.v[e] = from_float<T>(::fmaf(((to_float(p.v[e]) - st.mean_hi) - st.mean_lo) * inv_r, w.v[e], b.v[e]));
        }
        store_pack<T, VEC>(out, n, j, q);
      });
    } else {
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        const Pack<T, VEC> p = get(i, j);
        Pack<T, VEC> q;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const int64_t cw = j * VEC + e < n ? j * VEC + e : n - 1;  // parameters are read only inside the row
          double v = ((to_double(p.v[e]) - st.mean) - st.mean_correction) * st.inv_r;
          if (a.weight) v *= to_double(a.weight[cw]);
          if (a.bias) v += to_double(a.bias[cw]);
          q.v[e] = from_double<T>(v);
        }
        store_pack<T, VEC>(out, n, j, q);
      });
    }
  }
}

// ---------------------------------------------------------------- backward

// Gradients of rows team_index, team_index + team_count, ... of `a`: dx, and
// this team's dweight/dbias partial sums in row `team_index` of the partials.
// dx may be dy itself: a thread reads its dy values before it stores them.
//
// The team adds its rows' dweight/dbias terms into `scratch_dweight` /
// `scratch_dbias` (n each; shared memory on the GPU when it fits, else the
// partial rows themselves) and copies them to its partial rows at the end.
// Every thread touches only its own columns there, so no synchronization is
// needed, and the registers stay free for the row itself.
template <typename T, typename TW, int VEC, int PACKS, class Team>
RMSNORM_HD void backward_rows(Team& team, int64_t team_index, int64_t team_count, const BackwardParams<T, TW>& a,
                              Partial<T>* scratch_dweight, Partial<T>* scratch_dbias) {
  using Acc = Partial<T>;
  const Norm& norm = a.norm;
  const int64_t n = norm.n, packs = (n + VEC - 1) / VEC;
  const int rank = team.rank(), size = team.size();
  Pack<T, VEC> x_slot[PACKS > 0 ? PACKS : 1], dy_slot[PACKS > 0 ? PACKS : 1];
  Acc* partial_dweight = a.partial_dweight ? a.partial_dweight + team_index * n : nullptr;
  Acc* partial_dbias = a.partial_dbias ? a.partial_dbias + team_index * n : nullptr;
  Acc* acc_dweight = partial_dweight ? (scratch_dweight ? scratch_dweight : partial_dweight) : nullptr;
  Acc* acc_dbias = partial_dbias ? (scratch_dbias ? scratch_dbias : partial_dbias) : nullptr;
  auto for_each_owned_column = [&](auto&& f) {
    for_each_owned_pack<PACKS>(rank, size, packs, [&](int, int64_t j) {
      for (int64_t c = j * VEC; c < n && c < (j + 1) * VEC; ++c) f(c);
    });
  };
  for_each_owned_column([&](int64_t c) {
    if (acc_dweight) acc_dweight[c] = Acc(0);
    if (acc_dbias) acc_dbias[c] = Acc(0);
  });
  for (int64_t row = team_index; row < a.rows; row += team_count) {
    const T* xr = a.x + row * a.x_stride;
    const T* dyr = a.dy + row * a.dy_stride;
    if constexpr (PACKS > 0) {
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        x_slot[i] = load_pack<T, VEC>(xr, n, j);
        dy_slot[i] = load_pack<T, VEC>(dyr, n, j);
      });
    }
    auto get_x = [&](int i, int64_t j) -> Pack<T, VEC> {
      if constexpr (PACKS > 0) {
        return x_slot[i];
      } else {
        return load_pack<T, VEC>(xr, n, j);
      }
    };
    auto get_dy = [&](int i, int64_t j) -> Pack<T, VEC> {
      if constexpr (PACKS > 0) {
        return dy_slot[i];
      } else {
        return load_pack<T, VEC>(dyr, n, j);
      }
    };
    // Parameters are read only inside the row (c < n).
    auto weight_at = [&](int64_t c) { return a.weight ? to_double(a.weight[c < n ? c : n - 1]) : 1.0; };

    // Saved statistics are used as given, except for the "outside" placement,
    // whose s = r - eps would cancel; there they are recomputed.
    RowStats st;
    const bool use_saved = a.saved_inv_rms && (!norm.centered || a.saved_mean) && !norm.eps_outside;
    if (use_saved) {
      st.inv_r = static_cast<double>(a.saved_inv_rms[row]);
      st.mean = norm.centered ? static_cast<double>(a.saved_mean[row]) : 0.0;
      st.mean_hi = static_cast<float>(st.mean);
      st.mean_lo = 0.0f;
      st.mean_correction = 0.0;
      st.s = 0.0;
      st.wide = std::is_same_v<T, double> || !::isfinite(st.inv_r) || !::isfinite(st.mean);
    } else {
      st = row_statistics<T, VEC, PACKS>(team, norm, get_x);
    }

    // The row sums: float32 within a thread unless the row is wide. c is summed
    // over the whole row (SPEC section 3). Elements past n are zero.
    double sum_gy = 0.0, dot = 0.0;
    if (!st.wide) {
      float sum_gy_f = 0.0f, dot_f = 0.0f;
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        const Pack<T, VEC> xp = get_x(i, j), dp = get_dy(i, j);
        const Floats<VEC> w = load_param_floats<TW, VEC>(a.weight, n, j, 1.0f);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const float gy = to_float(dp.v[e]) * w.v[e];
          sum_gy_f += gy;
          dot_f = ::fmaf(gy, (to_float(xp.v[e]) - st.mean_hi) - st.mean_lo, dot_f);
        }
      });
      sum_gy = sum_gy_f;
      dot = dot_f;
    } else {
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        const Pack<T, VEC> xp = get_x(i, j), dp = get_dy(i, j);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const int64_t c = j * VEC + e;
          if (c >= n) continue;
          const double gy = to_double(dp.v[e]) * weight_at(c);
          sum_gy += gy;
          dot += gy * ((to_double(xp.v[e]) - st.mean) - st.mean_correction);
        }
      });
    }
    if (norm.centered) sum_gy = team.reduce(sum_gy, Add{});
    dot = team.reduce(dot, Add{});

    // dx_j = a * (gy_j + shift) - (x_j - mean) * coef [j < k]  (SPEC section 3)
    const double k = static_cast<double>(norm.k);
    const double shift = norm.centered ? -sum_gy / static_cast<double>(n) : 0.0;
    double coef;
    if (norm.eps_outside) {
      coef = st.s > 0.0 ? dot * st.inv_r * st.inv_r / (k * st.s) : 0.0;
    } else {
      coef = dot * st.inv_r * st.inv_r * st.inv_r / k;
    }
    const float a_f = static_cast<float>(st.inv_r), shift_f = static_cast<float>(shift),
                coef_f = static_cast<float>(coef);
    const bool wide = st.wide || !::isfinite(a_f) || !::isfinite(coef_f) || !::isfinite(shift_f);
    T* dxr = a.dx + row * a.dx_stride;
    auto accumulate = [&](int64_t c, Acc dweight_term, Acc dbias_term) {
      if (c < n) {
        if (acc_dweight) acc_dweight[c] += dweight_term;
        if (acc_dbias) acc_dbias[c] += dbias_term;
      }
    };
    if (!wide) {
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        const Pack<T, VEC> xp = get_x(i, j), dp = get_dy(i, j);
        const Floats<VEC> w = load_param_floats<TW, VEC>(a.weight, n, j, 1.0f);
        Pack<T, VEC> out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const int64_t c = j * VEC + e;
          const float d = to_float(dp.v[e]), centered = (to_float(xp.v[e]) - st.mean_hi) - st.mean_lo;
          accumulate(c, static_cast<Acc>(d * centered * a_f), static_cast<Acc>(d));
          out.v[e] = from_float<T>(a_f * ::fmaf(d, w.v[e], shift_f) - (c < norm.k ? centered * coef_f : 0.0f));
        }
        store_pack<T, VEC>(dxr, n, j, out);
      });
    } else {
      for_each_owned_pack<PACKS>(rank, size, packs, [&](int i, int64_t j) {
        const Pack<T, VEC> xp = get_x(i, j), dp = get_dy(i, j);
        Pack<T, VEC> out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const int64_t c = j * VEC + e;
          const double d = to_double(dp.v[e]), centered = (to_double(xp.v[e]) - st.mean) - st.mean_correction;
          accumulate(c, static_cast<Acc>(d * centered * st.inv_r), static_cast<Acc>(d));
          out.v[e] = from_double<T>(st.inv_r * (d * weight_at(c) + shift) - (c < norm.k ? centered * coef : 0.0));
        }
        store_pack<T, VEC>(dxr, n, j, out);
      });
    }
  }
  for_each_owned_column([&](int64_t c) {
    if (acc_dweight != partial_dweight) partial_dweight[c] = acc_dweight[c];
    if (acc_dbias != partial_dbias) partial_dbias[c] = acc_dbias[c];
  });
}

// Column c of dweight/dbias: the teams' partial sums added in team order, in
// double. The CPU emulation adds them so; the GPU's reduce_partials_kernel
// adds them in its own fixed order, 32 teams apart, then across.
template <typename T>
RMSNORM_HD double sum_partials(const Partial<T>* partial, int64_t teams, int64_t n, int64_t c) {
  double total = 0.0;
  for (int64_t t = 0; t < teams; ++t) total += static_cast<double>(partial[t * n + c]);
  return total;
}

}  // namespace rmsnorm::cuda::detail
