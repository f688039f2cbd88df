// The C API: translate to the C++ API and turn exceptions into statuses.
#include "rmsnorm/rmsnorm.h"

#include <functional>
#include <new>
#include <string>

#include "rmsnorm/rmsnorm.hpp"
#include "rmsnorm/version.h"
#include "src/api/c_support.hpp"

namespace {

thread_local std::string g_last_error;
thread_local std::string g_simd_target;

rmsnorm::DType dtype(rmsnorm_dtype d) { return static_cast<rmsnorm::DType>(d); }

}  // namespace

namespace rmsnorm::c_api {

rmsnorm_status guarded(const std::function<void()>& f) {
  try {
    f();
    g_last_error.clear();
    return RMSNORM_OK;
  } catch (const rmsnorm::Error& e) {
    g_last_error = e.what();
    return RMSNORM_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory";
    return RMSNORM_INTERNAL_ERROR;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return RMSNORM_INTERNAL_ERROR;
  }
}

NormOptions to_options(const rmsnorm_options* o) {
  if (!o) throw rmsnorm::Error("options: null pointer (use rmsnorm_default_options())");
  NormOptions options;
  options.kind = static_cast<NormKind>(o->kind);
  options.eps = o->eps;
  options.eps_placement = static_cast<EpsPlacement>(o->eps_placement);
  options.p = o->p;
  options.num_threads = o->num_threads;
  return options;
}

ForwardArgs forward_args(int64_t rows, int64_t n, rmsnorm_dtype data_dtype, const void* x, int64_t x_stride, void* y,
                         int64_t y_stride, const void* weight, const void* bias, rmsnorm_dtype param_dtype,
                         void* saved_inv_rms, void* saved_mean) {
  ForwardArgs a;
  a.rows = rows;
  a.n = n;
  a.x = {x, dtype(data_dtype), x_stride};
  a.y = {y, dtype(data_dtype), y_stride};
  a.weight = {weight, dtype(param_dtype)};
  a.bias = {bias, dtype(param_dtype)};
  a.saved = {saved_inv_rms, saved_mean};
  return a;
}

FusedAddArgs fused_add_args(int64_t rows, int64_t n, rmsnorm_dtype data_dtype, const void* x, int64_t x_stride,
                            void* residual, int64_t residual_stride, void* y, int64_t y_stride, const void* weight,
                            const void* bias, rmsnorm_dtype param_dtype) {
  FusedAddArgs a;
  a.rows = rows;
  a.n = n;
  a.x = {x, dtype(data_dtype), x_stride};
  a.residual = {residual, dtype(data_dtype), residual_stride};
  a.y = {y, dtype(data_dtype), y_stride};
  a.weight = {weight, dtype(param_dtype)};
  a.bias = {bias, dtype(param_dtype)};
  return a;
}

BackwardArgs backward_args(int64_t rows, int64_t n, rmsnorm_dtype data_dtype, const void* x, int64_t x_stride,
                           const void* dy, int64_t dy_stride, const void* weight, rmsnorm_dtype param_dtype,
                           const void* saved_inv_rms, const void* saved_mean, void* dx, int64_t dx_stride,
                           void* dweight, float* dbias) {
  BackwardArgs a;
  a.rows = rows;
  a.n = n;
  a.x = {x, dtype(data_dtype), x_stride};
  a.dy = {dy, dtype(data_dtype), dy_stride};
  a.weight = {weight, dtype(param_dtype)};
  a.saved = {saved_inv_rms, saved_mean};
  a.dx = {dx, dtype(data_dtype), dx_stride};
  a.dweight = {dweight, dtype(param_dtype)};
  a.dbias = {dbias, DType::kFloat32};
  return a;
}

}  // namespace rmsnorm::c_api

extern "C" {

using namespace rmsnorm::c_api;

rmsnorm_options rmsnorm_default_options(void) {
  const rmsnorm::NormOptions d;
  return {static_cast<rmsnorm_kind>(d.kind), d.eps, static_cast<rmsnorm_eps_placement>(d.eps_placement), d.p,
          d.num_threads};
}

rmsnorm_status rmsnorm_forward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype data_dtype,
                               const void* x, int64_t x_stride, void* y, int64_t y_stride, const void* weight,
                               const void* bias, rmsnorm_dtype param_dtype, void* saved_inv_rms,
                               void* saved_mean) {
  return guarded([&] {
    rmsnorm::forward(to_options(options), forward_args(rows, n, data_dtype, x, x_stride, y, y_stride, weight, bias,
                                                       param_dtype, saved_inv_rms, saved_mean));
  });
}

rmsnorm_status rmsnorm_fused_add_forward(const rmsnorm_options* options, int64_t rows, int64_t n,
                                         rmsnorm_dtype data_dtype, const void* x, int64_t x_stride,
                                         void* residual, int64_t residual_stride, void* y, int64_t y_stride,
                                         const void* weight, const void* bias, rmsnorm_dtype param_dtype) {
  return guarded([&] {
    rmsnorm::fused_add_forward(to_options(options),
                               fused_add_args(rows, n, data_dtype, x, x_stride, residual, residual_stride, y, y_stride,
                                              weight, bias, param_dtype));
  });
}

rmsnorm_status rmsnorm_backward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype data_dtype,
                                const void* x, int64_t x_stride, const void* dy, int64_t dy_stride,
                                const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                const void* saved_mean, void* dx, int64_t dx_stride, void* dweight,
                                float* dbias) {
  return guarded([&] {
    rmsnorm::backward(to_options(options), backward_args(rows, n, data_dtype, x, x_stride, dy, dy_stride, weight,
                                                         param_dtype, saved_inv_rms, saved_mean, dx, dx_stride,
                                                         dweight, dbias));
  });
}

const char* rmsnorm_last_error(void) { return g_last_error.c_str(); }

const char* rmsnorm_version(void) { return RMSNORM_VERSION_STRING; }

const char* rmsnorm_simd_target(void) {
  g_simd_target = rmsnorm::runtime_info().simd_target;
  return g_simd_target.c_str();
}

}  // extern "C"
