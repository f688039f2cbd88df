// The CUDA backend: the same operations, arguments and checks as
// <rmsnorm/rmsnorm.hpp>, on device memory, queued on a CUDA stream. Built when
// CMake finds a CUDA compiler; link the target rmsnorm::cuda.
//
//   rmsnorm::cuda::forward(options, args, stream);  // args' pointers are device pointers
//
// Calls are asynchronous on `stream` (nullptr: the legacy default stream).
// Errors in the arguments throw rmsnorm::Error before anything is queued;
// CUDA failures throw rmsnorm::cuda::CudaError.
#pragma once

#include <stdexcept>
#include <string>

#include "rmsnorm/rmsnorm.hpp"

struct CUstream_st;

namespace rmsnorm::cuda {

using Stream = CUstream_st*;  // the same type as cudaStream_t

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DeviceInfo {
  bool available = false;  // a device can be used
  int device_count = 0;
  std::string name;        // of the current device
  int compute_capability = 0;  // e.g. 90
  std::string reason;      // why not available
};

DeviceInfo device_info();

void forward(const NormOptions& options, const ForwardArgs& args, Stream stream = nullptr);
void fused_add_forward(const NormOptions& options, const FusedAddArgs& args, Stream stream = nullptr);
// dweight and dbias are deterministic for a given device and shape (per-block
// partial sums added in a fixed order).
void backward(const NormOptions& options, const BackwardArgs& args, Stream stream = nullptr);

}  // namespace rmsnorm::cuda
