// The CUDA entry points: the CPU API's argument checks (src/api/plans.hpp),
// then a check that every pointer is device memory, then the launch.
#include <cuda_runtime_api.h>

#include "rmsnorm/cuda.hpp"
#include "src/api/plans.hpp"
#include "src/cuda/launch.hpp"

namespace rmsnorm::cuda {
namespace {

// Throws unless a device can be used. Cheap on success (it runs on every
// call); device_info() gathers the reason only when there is none.
void require_device() {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) return;
  cudaGetLastError();  // clear the query's error
  throw CudaError("CUDA: no usable device: " + device_info().reason);
}

// Throws rmsnorm::Error naming the argument when p is host memory.
void require_device_memory(const char* name, const void* p) {
  if (!p) return;
  cudaPointerAttributes attributes{};
  const cudaError_t status = cudaPointerGetAttributes(&attributes, p);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of the query
    throw Error(std::string(name) + ": expected a device pointer (cudaPointerGetAttributes: " +
                cudaGetErrorString(status) + ")");
  }
  if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) {
    throw Error(std::string(name) + ": expected device or managed memory, got a host pointer");
  }
}

}  // namespace

DeviceInfo device_info() {
  DeviceInfo info;
  const cudaError_t status = cudaGetDeviceCount(&info.device_count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    info.reason = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    info.device_count = 0;
    return info;
  }
  if (info.device_count == 0) {
    info.reason = "no CUDA device present";
    return info;
  }
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    info.reason = "cannot query the current device";
    return info;
  }
  info.available = true;
  info.name = prop.name;
  info.compute_capability = prop.major * 10 + prop.minor;
  return info;
}

// The output variants of SPEC section 7 run on the CPU only for now: no GPU is
// available to this project to test them on.
void require_cuda_variants(double weight_offset, bool round_before_weight) {
  if (weight_offset != 0) {
    throw Error("options.weight_offset: not supported by the CUDA backend yet (CPU only); expected 0");
  }
  if (round_before_weight) {
    throw Error("options.rounding: before_weight is not supported by the CUDA backend yet (CPU only); expected single");
  }
}

void forward(const NormOptions& options, const ForwardArgs& a, Stream stream) {
  const calls::ForwardCall plan = api::make_forward_plan(options, a);
  require_cuda_variants(plan.weight_offset, plan.round_before_weight);
  require_device();
  for (const auto& [name, p] : {std::pair<const char*, const void*>{"x", a.x.data}, {"y", a.y.data},
                                {"weight", a.weight.data}, {"bias", a.bias.data},
                                {"saved.inv_rms", a.saved.inv_rms}, {"saved.mean", a.saved.mean}}) {
    require_device_memory(name, p);
  }
  detail::launch_forward(plan, stream);
}

void fused_add_forward(const NormOptions& options, const FusedAddArgs& a, Stream stream) {
  const calls::ForwardCall plan = api::make_fused_add_plan(options, a);
  require_cuda_variants(plan.weight_offset, plan.round_before_weight);
  require_device();
  for (const auto& [name, p] :
       {std::pair<const char*, const void*>{"x", a.x.data}, {"residual", a.residual.data}, {"y", a.y.data},
        {"weight", a.weight.data}, {"bias", a.bias.data}, {"saved.inv_rms", a.saved.inv_rms},
        {"saved.mean", a.saved.mean}}) {
    require_device_memory(name, p);
  }
  detail::launch_forward(plan, stream);
}

void backward(const NormOptions& options, const BackwardArgs& a, Stream stream) {
  const calls::BackwardCall plan = api::make_backward_plan(options, a);
  require_cuda_variants(plan.weight_offset, false);
  require_device();
  for (const auto& [name, p] :
       {std::pair<const char*, const void*>{"x", a.x.data}, {"dy", a.dy.data}, {"dx", a.dx.data},
        {"weight", a.weight.data}, {"saved.inv_rms", a.saved.inv_rms}, {"saved.mean", a.saved.mean},
        {"dweight", a.dweight.data}, {"dbias", a.dbias.data}}) {
    require_device_memory(name, p);
  }
  detail::launch_backward(plan, a.dweight, a.dbias, stream);
}

}  // namespace rmsnorm::cuda
