// Gated and grouped RMSNorm (SPEC section 10): a row is normalized group by
// group (group_size m columns each), with silu(z) = z / (1 + e^-z) applied to
// the norm's input (gate before) or output (gate after). Per group, forward is
// a statistics pass and an output pass, backward a sums pass and an output
// pass. Every intermediate is formed in double lanes, whatever the data type:
// the gate's products (x silu(z), (x / r) silu'(z), ...) of float-range values
// are then never subnormal, where in float they were (fuzzing: u = x silu(z)
// = -2.6e-42 left y = u / r g = -6.8e-30 off by 6e-4). That halves the lanes
// against the plain kernels. Sums are formed in 4096-element blocks, as
// there. The statistics and coefficients keep the data's own ranges and
// rounding (finalize_*), so saved and recomputed statistics agree bitwise;
// groups outside them go to the long-double slow path.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/cpu/gated.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <vector>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/cpu/dispatch.hpp"
#include "src/cpu/dtype_dispatch.hpp"
#include "src/cpu/flags.hpp"
#include "src/cpu/kernels.hpp"
#include "src/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rmsnorm::cpu::HWY_NAMESPACE {

// sigma(z) = 1 / (1 + e^-z) and its complement 1 - sigma(z) = sigma(-z), both
// from e = e^-|z|, which never overflows and is within Highway's Exp range
// for every z: sigma(-|z|) = e / (1 + e), sigma(|z|) = 1 / (1 + e). So a very
// negative z gives sigma = e^z down to float's subnormals (silu'(-90) =
// -7e-38 is a normal float), and 1 - sigma does not cancel for large z.
template <class D>
struct Sigmoids {
  hn::VFromD<D> sigma, complement;
};

template <class D>
HWY_INLINE Sigmoids<D> SigmoidOf(D d, hn::VFromD<D> z) {
  using A = hn::TFromD<D>;
  const auto one = hn::Set(d, A{1});
  // NaN never reaches Exp: its emulated target (EMU128) converts to int32 with
  // a cast that is undefined behaviour for NaN (UBSan, in the fuzzer). A NaN
  // z still makes silu and silu' NaN, through the factor z.
  const auto e = hn::Exp(d, hn::IfThenZeroElse(hn::IsNaN(z), hn::Neg(hn::Abs(z))));
  const auto denominator = hn::Add(one, e);
  const auto small = hn::Div(e, denominator), large = hn::Div(one, denominator);
  const auto negative = hn::Lt(z, hn::Zero(d));
  return {hn::IfThenElse(negative, small, large), hn::IfThenElse(negative, large, small)};
}

// silu(z) = z sigma(z); NaN in z stays NaN (z * anything).
template <class D>
HWY_INLINE hn::VFromD<D> Silu(D d, hn::VFromD<D> z) {
  return hn::Mul(z, SigmoidOf(d, z).sigma);
}

// silu'(z) = sigma(z) (1 + z (1 - sigma(z))).
template <class D>
HWY_INLINE hn::VFromD<D> SiluDerivative(D d, hn::VFromD<D> z) {
  using A = hn::TFromD<D>;
  const Sigmoids<D> s = SigmoidOf(d, z);
  return hn::Mul(s.sigma, hn::MulAdd(z, s.complement, hn::Set(d, A{1})));
}

// count (< Lanes) elements, or a whole vector when count is 0, of any storage
// type into d's lanes (double: see the file comment), through float for the
// 16-bit and float types.
template <class D, typename T>
HWY_INLINE hn::VFromD<D> Load(D d, const T* HWY_RESTRICT p, size_t count) {
  if constexpr (std::is_same_v<T, hn::TFromD<D>>) {
    return count ? LoadTail(d, p, count) : LoadAs(d, p);
  } else {
    const hn::Rebind<float, D> df;
    return hn::PromoteTo(d, count ? LoadTail(df, p, count) : LoadAs(df, p));
  }
}
template <class D, typename T>
HWY_INLINE void Store(D d, hn::VFromD<D> v, T* HWY_RESTRICT p, size_t count) {
  if constexpr (std::is_same_v<T, hn::TFromD<D>>) {
    if (count) {
      StoreTail(d, v, p, count);
    } else {
      StoreAs(d, v, p);
    }
  } else {
    const hn::Rebind<float, D> df;
    const auto narrow = hn::DemoteTo(df, v);
    if (count) {
      StoreTail(df, narrow, p, count);
    } else {
      StoreAs(df, narrow, p);
    }
  }
}

// Calls f(i, tail) over [0, count) in vectors: tail 0 for whole ones.
template <class D, class F>
HWY_INLINE void ForVectors(D d, int64_t count, F&& f) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= count; i += N) f(i, size_t{0});
  if (i < count) f(i, static_cast<size_t>(count - i));
}

// u = x, or x * silu(z) (written to `u` when kBefore), and sum u^2 over the
// group, in blocks added in double.
// Whether every product of the gated kernels stays a normal number in
// double lanes, so that only the last rounding of each output loses
// precision. Otherwise the group takes the wide path.
//  - Float-family data: products of a few values within 1.4e-45 .. 3.4e38 are
//    normal in double; only sigma(z) = e^z for z < -700 is subnormal there
//    (and Highway's Exp flushes it to 0 on SSE4 and the portable target).
//  - float64 data: every x, z, dy and g of the group must be 0 or within
//    2^-150 .. 2^150; with 1/r within 2^+-400 (FastRange) no product of the
//    kernels then leaves double's normal range. Fuzzing found a z of 7e-317
//    (silu(z) = z / 2 rounded on the subnormal grid: dx off by 7e-8) and an x
//    of 2.4e-319 (x / r formed first: y off by 1.3e-8).
// NaN counts as in range: it propagates the same on either path.
template <class D, typename T>
HWY_INLINE hn::Mask<D> Immoderate(D d, const T* HWY_RESTRICT p, int64_t i, size_t tail) {
  const auto magnitude = hn::Abs(Load(d, p + i, tail));
  return hn::And(hn::Gt(magnitude, hn::Zero(d)),
                 hn::Or(hn::Lt(magnitude, hn::Set(d, std::ldexp(1.0, -150))),
                        hn::Gt(magnitude, hn::Set(d, std::ldexp(1.0, 150)))));
}

template <class D, typename T, typename TW>
HWY_INLINE bool GroupInRange(D d, const T* HWY_RESTRICT x, const T* HWY_RESTRICT z, const T* HWY_RESTRICT dy,
                             const TW* HWY_RESTRICT g, int64_t m) {
  auto out = hn::Zero(d);
  ForVectors(d, m, [&](int64_t i, size_t tail) {
    auto bad = hn::Lt(Load(d, z + i, tail), hn::Set(d, -700.0));
    if constexpr (std::is_same_v<T, double>) {
      bad = hn::Or(bad, hn::Or(Immoderate(d, x, i, tail), Immoderate(d, z, i, tail)));
      if (dy) bad = hn::Or(bad, Immoderate(d, dy, i, tail));
      if (g) bad = hn::Or(bad, Immoderate(d, g, i, tail));
    }
    out = hn::IfThenElse(bad, hn::Set(d, 1.0), out);
  });
  return hn::AllTrue(d, hn::Eq(out, hn::Zero(d)));
}

template <typename T, bool kBefore>
double GroupSquares(const T* HWY_RESTRICT x, const T* HWY_RESTRICT z, double* HWY_RESTRICT u, int64_t m) {
  const hn::ScalableTag<double> d;
  double total = 0.0;
  for (int64_t b = 0; b < m; b += kBlockElements) {
    const int64_t count = std::min(m - b, kBlockElements);
    auto acc = hn::Zero(d);
    ForVectors(d, count, [&](int64_t i, size_t tail) {
      auto v = Load(d, x + b + i, tail);
      if constexpr (kBefore) {
        v = hn::Mul(v, Silu(d, Load(d, z + b + i, tail)));
        Store(d, v, u + b + i, tail);
      }
      acc = hn::MulAdd(v, v, acc);
    });
    total += static_cast<double>(hn::GetLane(hn::SumOfLanes(d, acc)));
  }
  return total;
}

// The norm of one group (SPEC section 2 with n = k = m).
inline NormParams GroupNorm(const NormParams& row, int64_t m) {
  NormParams p = row;
  p.n = m;
  p.k = m;
  return p;
}

template <int kGate>
inline constexpr bool kBeforeGate = kGate == static_cast<int>(Gate::kBeforeNorm);
template <int kGate>
inline constexpr bool kAfterGate = kGate == static_cast<int>(Gate::kAfterNorm);

template <typename T, typename TW, int kGate, bool kWeight>
void GatedForwardRow(const ForwardPlan& p, const calls::Gating& gating, int64_t row, std::vector<double>& scratch) {
  using A = Arith<T>;
  constexpr bool kBefore = kBeforeGate<kGate>, kAfter = kAfterGate<kGate>;
  const hn::ScalableTag<double> d;
  const int64_t m = gating.group_size, groups = p.norm.n / m;
  const NormParams norm = GroupNorm(p.norm, m);
  const T* x = row_pointer<T>(p.x, row, p.x_stride);
  const T* z = kGate ? row_pointer<T>(gating.z, row, gating.z_stride) : nullptr;
  T* y = row_pointer<T>(p.y, row, p.y_stride);
  const auto* g = static_cast<const TW*>(p.weight);
  for (int64_t group = 0; group < groups; ++group) {
    const int64_t c0 = group * m;
    const T* zg = kGate ? z + c0 : nullptr;
    const RowStatistics st =
        finalize_statistics(norm, RowMean{}, GroupSquares<T, kBefore>(x + c0, zg, scratch.data(), m), std::is_same_v<T, double>);
    if (!st.fast || !p.weight_in_range ||
        (kGate && !GroupInRange(d, x + c0, zg, static_cast<const T*>(nullptr), kWeight ? g + c0 : nullptr, m))) {
      slow_gated_forward_group(p, gating, row, group);
      continue;
    }
    if (p.saved_inv_rms) static_cast<A*>(p.saved_inv_rms)[row * groups + group] = static_cast<A>(st.inv_r);
    const auto inv_r = hn::Set(d, st.inv_r);
    ForVectors(d, m, [&](int64_t i, size_t tail) {
      auto v = kBefore ? Load(d, scratch.data() + i, tail) : Load(d, x + c0 + i, tail);
      // u * (1/r * g): 1/r * g is a normal number (weight_in_range), as in forward.cpp.
      if constexpr (kWeight) {
        v = hn::Mul(v, hn::Mul(inv_r, Load(d, g + c0 + i, tail)));
      } else {
        v = hn::Mul(v, inv_r);
      }
      if constexpr (kAfter) v = hn::Mul(v, Silu(d, Load(d, zg + i, tail)));
      Store(d, v, y + c0 + i, tail);
    });
  }
}

void GatedForwardRowsImpl(const ForwardPlan& p, const calls::Gating& gating, int64_t row_begin, int64_t row_end) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    std::vector<double> scratch(gating.gate == Gate::kBeforeNorm ? static_cast<size_t>(gating.group_size) : 0);
    with_flags(
        [&](auto before, auto after, auto weight) {
          constexpr int kGate = flag_v<decltype(before)>   ? static_cast<int>(Gate::kBeforeNorm)
                                : flag_v<decltype(after)> ? static_cast<int>(Gate::kAfterNorm)
                                                          : static_cast<int>(Gate::kNone);
          if constexpr (!(flag_v<decltype(before)> && flag_v<decltype(after)>)) {
            for (int64_t row = row_begin; row < row_end; ++row) {
              GatedForwardRow<T, decltype(tw), kGate, flag_v<decltype(weight)>>(p, gating, row, scratch);
            }
          }
        },
        gating.gate == Gate::kBeforeNorm, gating.gate == Gate::kAfterNorm, p.weight != nullptr);
  });
}

template <typename T, typename TW, int kGate, bool kWeight, bool kDweight>
void GatedBackwardRow(const BackwardPlan& p, const calls::Gating& gating, int64_t row, std::vector<double>& scratch,
                      GradAccumulator& acc) {
  using A = Arith<T>;
  constexpr bool kBefore = kBeforeGate<kGate>, kAfter = kAfterGate<kGate>;
  constexpr bool kDouble = std::is_same_v<T, double>;
  const hn::ScalableTag<double> d;
  const int64_t m = gating.group_size, groups = p.norm.n / m;
  const NormParams norm = GroupNorm(p.norm, m);
  const T* x = row_pointer<T>(p.x, row, p.x_stride);
  const T* z = kGate ? row_pointer<T>(gating.z, row, gating.z_stride) : nullptr;
  const T* dy = row_pointer<T>(p.dy, row, p.dy_stride);
  T* dx = row_pointer<T>(p.dx, row, p.dx_stride);
  T* dz = kGate ? row_pointer<T>(gating.dz, row, gating.dz_stride) : nullptr;
  const auto* g = static_cast<const TW*>(p.weight);
  // dweight's chunk is double, like the lanes (gated_engine.cpp lays it out):
  // a float chunk rounded terms of 1e-44 (u / r with silu(z) ~ e^-100) on
  // float's subnormal grid once per row, and a float32 dweight of two rows
  // came out a unit off (found by the fresh-clone CI run).
  double* chunk = kDweight ? static_cast<double*>(acc.chunk_dweight) : nullptr;
  for (int64_t group = 0; group < groups; ++group) {
    const int64_t c0 = group * m;
    const T* zg = kGate ? z + c0 : nullptr;
    // The statistics as forward formed them (u into scratch, with the gate
    // before), or the saved 1/r; s for "outside" as finalize_statistics derives it.
    const double squares = GroupSquares<T, kBefore>(x + c0, zg, scratch.data(), m);
    RowStatistics st = finalize_statistics(norm, RowMean{}, squares, kDouble);
    if (p.saved_inv_rms) {
      const double inv_r = static_cast<const A*>(p.saved_inv_rms)[row * groups + group];
      const double limit = fast_range(kDouble).inv_r_limit;
      st.fast = st.fast && inv_r <= limit && inv_r >= 1.0 / limit;
      st.s = norm.eps_outside ? outside_s(norm.eps, inv_r, std::sqrt(squares / static_cast<double>(m))) : 0.0;
      st.inv_r = inv_r;
    }
    // gy = dy * gain (* silu(z) after the norm); dot = sum gy u.
    GradientSums sums;
    for (int64_t b = 0; b < m; b += kBlockElements) {
      const int64_t count = std::min(m - b, kBlockElements);
      auto dot = hn::Zero(d), gy_magnitude = hn::Zero(d), dy_magnitude = hn::Zero(d);
      ForVectors(d, count, [&](int64_t i, size_t tail) {
        const int64_t c = b + i;
        const auto dyv = Load(d, dy + c0 + c, tail);
        auto gy = kWeight ? hn::Mul(dyv, Load(d, g + c0 + c, tail)) : dyv;
        if constexpr (kAfter) gy = hn::Mul(gy, Silu(d, Load(d, zg + c, tail)));
        const auto u = kBefore ? Load(d, scratch.data() + c, tail) : Load(d, x + c0 + c, tail);
        dot = hn::MulAdd(gy, u, dot);
        gy_magnitude = hn::Add(gy_magnitude, hn::Abs(gy));
        if constexpr (kDweight) dy_magnitude = hn::Add(dy_magnitude, hn::Abs(dyv));
      });
      GradientSums block;
      block.dot = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, dot)));
      block.gy_magnitude = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, gy_magnitude)));
      block.dy_magnitude = static_cast<double>(hn::GetLane(hn::SumOfLanes(d, dy_magnitude)));
      sums += block;
    }
    const RowGradient grad = finalize_gradient(norm, st, sums, kDouble);
    if (!st.fast || !grad.fast || !p.weight_in_range ||
        (kGate && !GroupInRange(d, x + c0, zg, dy + c0, kWeight ? g + c0 : nullptr, m))) {
      slow_gated_backward_group(p, gating, row, group, acc);
      continue;
    }
    // du = a gy - u coef; with the gate before: dx = du silu(z), dz = du (x silu'(z));
    // after: dx = du, dz = dy gain (u / r) silu'(z).
    const auto a = hn::Set(d, grad.a), coef = hn::Set(d, grad.coef);
    const auto inv_r = hn::Set(d, st.inv_r);
    ForVectors(d, m, [&](int64_t i, size_t tail) {
      const int64_t c = c0 + i;
      const auto dyv = Load(d, dy + c, tail);
      const auto xv = Load(d, x + c, tail);
      const auto gain_dy = kWeight ? hn::Mul(dyv, Load(d, g + c, tail)) : dyv;
      const auto zv = kGate ? Load(d, zg + i, tail) : hn::Zero(d);
      const auto u = kBefore ? Load(d, scratch.data() + i, tail) : xv;
      const auto u_hat = hn::Mul(u, inv_r);
      const auto silu = kGate ? Silu(d, zv) : hn::Zero(d);
      const auto gy = kAfter ? hn::Mul(gain_dy, silu) : gain_dy;
      const auto du = hn::NegMulAdd(u, coef, hn::Mul(a, gy));
      if constexpr (kDweight) {
        const auto term = kAfter ? hn::Mul(dyv, hn::Mul(u_hat, silu)) : hn::Mul(dyv, u_hat);
        Store(d, hn::Add(Load(d, chunk + c, tail), term), chunk + c, tail);
      }
      if constexpr (kBefore) {
        Store(d, hn::Mul(du, hn::Mul(xv, SiluDerivative(d, zv))), dz + c, tail);
        Store(d, hn::Mul(du, silu), dx + c, tail);
      } else if constexpr (kAfter) {
        Store(d, hn::Mul(gain_dy, hn::Mul(u_hat, SiluDerivative(d, zv))), dz + c, tail);
        Store(d, du, dx + c, tail);
      } else {
        Store(d, du, dx + c, tail);
      }
    });
  }
}

void GatedBackwardRowsImpl(const BackwardPlan& p, const calls::Gating& gating, int64_t row_begin, int64_t row_end,
                           GradAccumulator& acc) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    std::vector<double> scratch(gating.gate == Gate::kBeforeNorm ? static_cast<size_t>(gating.group_size) : 0);
    with_flags(
        [&](auto before, auto after, auto weight, auto dweight) {
          constexpr int kGate = flag_v<decltype(before)>   ? static_cast<int>(Gate::kBeforeNorm)
                                : flag_v<decltype(after)> ? static_cast<int>(Gate::kAfterNorm)
                                                          : static_cast<int>(Gate::kNone);
          if constexpr (!(flag_v<decltype(before)> && flag_v<decltype(after)>) &&
                        !(flag_v<decltype(dweight)> && !flag_v<decltype(weight)>)) {
            for (int64_t row = row_begin; row < row_end; ++row) {
              GatedBackwardRow<T, decltype(tw), kGate, flag_v<decltype(weight)>, flag_v<decltype(dweight)>>(
                  p, gating, row, scratch, acc);
              if (flag_v<decltype(dweight)> && ++acc.rows_in_chunk == kRowsPerChunk) {
                flush_chunk(acc, /*double_arithmetic=*/true, 0, p.norm.n);
                acc.rows_in_chunk = 0;
              }
            }
          }
        },
        gating.gate == Gate::kBeforeNorm, gating.gate == Gate::kAfterNorm, p.weight != nullptr,
        p.want_dweight && p.weight != nullptr);
  });
}

}  // namespace rmsnorm::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rmsnorm::cpu {

HWY_EXPORT(GatedForwardRowsImpl);
HWY_EXPORT(GatedBackwardRowsImpl);

void gated_forward_rows(const ForwardPlan& plan, const calls::Gating& gating, int64_t row_begin, int64_t row_end) {
  RMSNORM_DISPATCH(GatedForwardRowsImpl, plan.simd_index)(plan, gating, row_begin, row_end);
}

void gated_backward_rows(const BackwardPlan& plan, const calls::Gating& gating, int64_t row_begin, int64_t row_end,
                         GradAccumulator& acc) {
  RMSNORM_DISPATCH(GatedBackwardRowsImpl, plan.simd_index)(plan, gating, row_begin, row_end, acc);
}

}  // namespace rmsnorm::cpu
#endif  // HWY_ONCE
