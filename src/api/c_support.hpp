// Shared by the C APIs of the CPU library (c_api.cpp) and the CUDA one
// (src/cuda/c_api.cpp): the C arguments as the C++ API's structs, and
// exceptions turned into a status with the message kept for
// rmsnorm_last_error(), which both report through.
#pragma once

#include <functional>

#include "rmsnorm/rmsnorm.h"
#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::c_api {

// Runs f: RMSNORM_OK, or the status of the exception it threw, whose message
// rmsnorm_last_error() then returns on this thread.
rmsnorm_status guarded(const std::function<void()>& f);

NormOptions to_options(const rmsnorm_options* options);

ForwardArgs forward_args(int64_t rows, int64_t n, const rmsnorm_dtype& data_dtype, const void* x, int64_t x_stride, void* y,
                         int64_t y_stride, const void* weight, const void* bias, const rmsnorm_dtype& param_dtype,
                         void* saved_inv_rms, void* saved_mean);
FusedAddArgs fused_add_args(int64_t rows, int64_t n, const rmsnorm_dtype& data_dtype, const void* x, int64_t x_stride,
                            void* residual, int64_t residual_stride, void* y, int64_t y_stride, const void* weight,
                            const void* bias, const rmsnorm_dtype& param_dtype);
BackwardArgs backward_args(int64_t rows, int64_t n, const rmsnorm_dtype& data_dtype, const void* x, int64_t x_stride,
                           const void* dy, int64_t dy_stride, const void* weight, const rmsnorm_dtype& param_dtype,
                           const void* saved_inv_rms, const void* saved_mean, void* dx, int64_t dx_stride,
                           void* dweight, float* dbias);

}  // namespace rmsnorm::c_api
