// The CUDA kernels' entry points, called by src/cuda/api.cpp after the shared
// argument checks (src/api/plans.hpp). Plans hold device pointers.
#pragma once

#include "rmsnorm/cuda.hpp"
#include "src/calls/calls.hpp"

namespace rmsnorm::cuda::detail {

void launch_forward(const calls::ForwardCall& plan, Stream stream);
// dweight/dbias (device pointers, may be null) in their dtypes.
void launch_backward(const calls::BackwardCall& plan, const Vector& dweight, const Vector& dbias, Stream stream);

// Throws CudaError naming `what` when status is not cudaSuccess (status is a cudaError_t).
void check(int status, const char* what);

}  // namespace rmsnorm::cuda::detail
