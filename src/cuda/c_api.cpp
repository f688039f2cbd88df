// The CUDA backend's C API: the C arguments as the C++ API's structs (shared
// with the CPU's C API), then rmsnorm::cuda::*.
#include "rmsnorm/cuda.h"

#include "rmsnorm/cuda.hpp"
#include "src/api/c_support.hpp"

using namespace rmsnorm::c_api;

namespace {

rmsnorm::cuda::Stream as_stream(void* stream) { return static_cast<rmsnorm::cuda::Stream>(stream); }

}  // namespace

extern "C" {

rmsnorm_status rmsnorm_cuda_forward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype dtype,
                                    const void* x, int64_t x_stride, void* y, int64_t y_stride, const void* weight,
                                    const void* bias, rmsnorm_dtype param_dtype, void* saved_inv_rms,
                                    void* saved_mean, void* stream) {
  return guarded([&] {
    rmsnorm::cuda::forward(to_options(options),
                           forward_args(rows, n, dtype, x, x_stride, y, y_stride, weight, bias, param_dtype,
                                        saved_inv_rms, saved_mean),
                           as_stream(stream));
  });
}

rmsnorm_status rmsnorm_cuda_fused_add_forward(const rmsnorm_options* options, int64_t rows, int64_t n,
                                              rmsnorm_dtype dtype, const void* x, int64_t x_stride, void* residual,
                                              int64_t residual_stride, void* y, int64_t y_stride, const void* weight,
                                              const void* bias, rmsnorm_dtype param_dtype, void* stream) {
  return guarded([&] {
    rmsnorm::cuda::fused_add_forward(to_options(options),
                                     fused_add_args(rows, n, dtype, x, x_stride, residual, residual_stride, y,
                                                    y_stride, weight, bias, param_dtype),
                                     as_stream(stream));
  });
}

rmsnorm_status rmsnorm_cuda_backward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype dtype,
                                     const void* x, int64_t x_stride, const void* dy, int64_t dy_stride,
                                     const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                     const void* saved_mean, void* dx, int64_t dx_stride, void* dweight,
                                     float* dbias, void* stream) {
  return guarded([&] {
    rmsnorm::cuda::backward(to_options(options),
                            backward_args(rows, n, dtype, x, x_stride, dy, dy_stride, weight, param_dtype,
                                          saved_inv_rms, saved_mean, dx, dx_stride, dweight, dbias),
                            as_stream(stream));
  });
}

}  // extern "C"
