// From a plan (src/cpu/plan.hpp, with device pointers) to a row program's
// compile-time choices: storage and parameter types, pack width and resident
// or streaming form, plus the kernel parameters and the geometry. Shared by
// the launcher (kernels.cu) and the CPU emulation test.
#pragma once

#include <cstdint>
#include <type_traits>

#include "src/calls/calls.hpp"
#include "src/cuda/geometry.hpp"
#include "src/cuda/row_program.cuh"

namespace rmsnorm::cuda::detail {

inline Norm device_norm(const calls::NormParams& p) { return Norm{p.centered, p.eps_outside, p.eps, p.n, p.k}; }

inline bool aligned16(const void* p, int64_t stride_bytes) {
  return p == nullptr || (reinterpret_cast<uintptr_t>(p) % 16 == 0 && stride_bytes % 16 == 0);
}

// Calls f(T{}, TW{}) for the storage and parameter types.
template <class F>
void dispatch_types(DType dtype, DType param_dtype, F&& f) {
  auto with_param = [&](auto t) {
    using T = decltype(t);
    if (param_dtype == DType::kFloat32) return f(t, float{});
    return f(t, T{});
  };
  switch (dtype) {
    case DType::kFloat32:
      return with_param(float{});
    case DType::kFloat64:
      return with_param(double{});
    case DType::kFloat16:
      return with_param(__half{});
    case DType::kBFloat16:
      return with_param(__nv_bfloat16{});
  }
}

// Calls f(integral_constant VEC, integral_constant PACKS) for the geometry.
template <typename T, class F>
void dispatch_shape(const Geometry& g, F&& f) {
  constexpr int kVec = static_cast<int>(16 / sizeof(T));
  auto with_packs = [&](auto vec) {
    if (g.resident) return f(vec, std::integral_constant<int, kResidentPacks>{});
    return f(vec, std::integral_constant<int, 0>{});
  };
  if (g.vec == kVec) return with_packs(std::integral_constant<int, kVec>{});
  return with_packs(std::integral_constant<int, 1>{});
}

// Calls f(ForwardParams<T, TW>, geometry, VEC, PACKS) for the plan.
template <class F>
void with_forward_program(const calls::ForwardCall& p, F&& f) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    using TW = decltype(tw);
    const int64_t es = sizeof(T);
    const bool aligned = aligned16(p.x, p.x_stride * es) && aligned16(p.y, p.y_stride * es) &&
                         aligned16(p.residual, p.residual_stride * es) && aligned16(p.weight, 0) &&
                         aligned16(p.bias, 0);
    const Geometry g = choose_geometry(p.norm.n, sizeof(T), aligned, /*backward=*/false);
    const ForwardParams<T, TW> params{device_norm(p.norm),
                                      p.rows,
                                      static_cast<const T*>(p.x),
                                      p.x_stride,
                                      static_cast<T*>(p.residual),
                                      p.residual_stride,
                                      static_cast<T*>(p.y),
                                      p.y_stride,
                                      static_cast<const TW*>(p.weight),
                                      static_cast<const TW*>(p.bias),
                                      static_cast<SavedStat<T>*>(p.saved_inv_rms),
                                      static_cast<SavedStat<T>*>(p.saved_mean)};
    dispatch_shape<T>(g, [&](auto vec, auto packs) { f(params, g, vec, packs); });
  });
}

// Calls f(BackwardParams<T, TW>, geometry, VEC, PACKS) for the plan; f sets
// the partial-sum pointers, which depend on how many teams it runs.
template <class F>
void with_backward_program(const calls::BackwardCall& p, F&& f) {
  dispatch_types(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    using TW = decltype(tw);
    const int64_t es = sizeof(T);
    const bool aligned = aligned16(p.x, p.x_stride * es) && aligned16(p.dy, p.dy_stride * es) &&
                         aligned16(p.dx, p.dx_stride * es) && aligned16(p.weight, 0);
    const Geometry g = choose_geometry(p.norm.n, sizeof(T), aligned, /*backward=*/true);
    const BackwardParams<T, TW> params{device_norm(p.norm),
                                       p.rows,
                                       static_cast<const T*>(p.x),
                                       p.x_stride,
                                       static_cast<const T*>(p.dy),
                                       p.dy_stride,
                                       static_cast<T*>(p.dx),
                                       p.dx_stride,
                                       static_cast<const TW*>(p.weight),
                                       static_cast<const SavedStat<T>*>(p.saved_inv_rms),
                                       static_cast<const SavedStat<T>*>(p.saved_mean),
                                       nullptr,
                                       nullptr};
    dispatch_shape<T>(g, [&](auto vec, auto packs) { f(params, g, vec, packs); });
  });
}

}  // namespace rmsnorm::cuda::detail
