/* rmsnorm: the CUDA backend's C API. The same operations, arguments and checks
 * as <rmsnorm/rmsnorm.h>, on device pointers, queued on `stream` (a
 * cudaStream_t; NULL: the legacy default stream). Link librmsnorm_cuda.
 * Errors come back as a status with a message from rmsnorm_last_error(): an
 * argument error is RMSNORM_INVALID_ARGUMENT (nothing is queued), a CUDA
 * failure, e.g. no usable device, RMSNORM_INTERNAL_ERROR. */
#ifndef RMSNORM_CUDA_H_
#define RMSNORM_CUDA_H_

#include <stdint.h>

#include "rmsnorm/rmsnorm.h"

#ifdef __cplusplus
extern "C" {
#endif

rmsnorm_status rmsnorm_cuda_forward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype dtype,
                                    const void* x, int64_t x_stride, void* y, int64_t y_stride, const void* weight,
                                    const void* bias, rmsnorm_dtype param_dtype, void* saved_inv_rms,
                                    void* saved_mean, void* stream);

rmsnorm_status rmsnorm_cuda_fused_add_forward(const rmsnorm_options* options, int64_t rows, int64_t n,
                                              rmsnorm_dtype dtype, const void* x, int64_t x_stride, void* residual,
                                              int64_t residual_stride, void* y, int64_t y_stride, const void* weight,
                                              const void* bias, rmsnorm_dtype param_dtype, void* stream);

rmsnorm_status rmsnorm_cuda_backward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype dtype,
                                     const void* x, int64_t x_stride, const void* dy, int64_t dy_stride,
                                     const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                     const void* saved_mean, void* dx, int64_t dx_stride, void* dweight,
                                     float* dbias, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* RMSNORM_CUDA_H_ */
