// The CUDA kernels: thin shells around the row programs of row_program.cuh.
//
// A kernel finds its thread's team (a warp, or the whole block; geometry.hpp)
// and runs the team's rows. Teams reduce with warp shuffles (xor butterflies,
// which leave the bitwise-same result in every lane) and, for block teams,
// the warps' results added in warp order through shared memory: the same
// order every time. dweight/dbias are per-team partial sums, added in a fixed
// order by reduce_partials_kernel: deterministic for a given device and shape.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>

#include "src/cuda/dispatch.cuh"
#include "src/cuda/launch.hpp"

namespace rmsnorm::cuda::detail {
namespace {

template <class Op>
__device__ __forceinline__ double warp_reduce(double v, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// A warp working on one row.
struct WarpTeam {
  __device__ int rank() const { return static_cast<int>(threadIdx.x & 31); }
  __device__ int size() const { return 32; }
  template <class Op>
  __device__ double reduce(double v, Op op) {
    return warp_reduce(v, op);
  }
};

// A whole block working on one row; blockDim.x is a multiple of 32.
struct BlockTeam {
  double* shared;  // 32 doubles
  __device__ int rank() const { return static_cast<int>(threadIdx.x); }
  __device__ int size() const { return static_cast<int>(blockDim.x); }
  template <class Op>
  __device__ double reduce(double v, Op op) {
    v = warp_reduce(v, op);
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    double total = shared[0];
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) total = op(total, shared[w]);
    __syncthreads();  // before shared is written again
    return total;
  }
};

template <typename T, typename TW, int VEC, int PACKS, bool WARP_TEAMS>
__global__ void __launch_bounds__(kLargestForwardTeam) forward_kernel(ForwardParams<T, TW> a) {
  if constexpr (WARP_TEAMS) {
    WarpTeam team;
    const int64_t teams_per_block = blockDim.x >> 5;
    forward_rows<T, TW, VEC, PACKS>(team, blockIdx.x * teams_per_block + (threadIdx.x >> 5),
                                    gridDim.x * teams_per_block, a);
  } else {
    __shared__ double shared[32];
    BlockTeam team{shared};
    forward_rows<T, TW, VEC, PACKS>(team, blockIdx.x, gridDim.x, a);
  }
}

// Each team's dweight/dbias accumulators (scratch_per_team elements: n for
// each gradient asked for) are in dynamic shared memory when scratch_per_team
// is not 0, else in the team's partial rows in global memory.
template <typename T, typename TW, int VEC, int PACKS, bool WARP_TEAMS>
__global__ void __launch_bounds__(kLargestBackwardTeam)
    backward_kernel(BackwardParams<T, TW> a, int64_t scratch_per_team) {
  using Acc = Partial<T>;
  extern __shared__ __align__(16) unsigned char dynamic_shared[];
  const int64_t teams_per_block = WARP_TEAMS ? blockDim.x >> 5 : 1;
  const int64_t team_in_block = WARP_TEAMS ? threadIdx.x >> 5 : 0;
  Acc* scratch = scratch_per_team ? reinterpret_cast<Acc*>(dynamic_shared) + team_in_block * scratch_per_team : nullptr;
  Acc* scratch_dweight = scratch && a.partial_dweight ? scratch : nullptr;
  Acc* scratch_dbias = scratch && a.partial_dbias ? scratch + (a.partial_dweight ? a.norm.n : 0) : nullptr;
  const int64_t team_index = blockIdx.x * teams_per_block + team_in_block;
  const int64_t team_count = gridDim.x * teams_per_block;
  if constexpr (WARP_TEAMS) {
    WarpTeam team;
    backward_rows<T, TW, VEC, PACKS>(team, team_index, team_count, a, scratch_dweight, scratch_dbias);
  } else {
    __shared__ double shared[32];
    BlockTeam team{shared};
    backward_rows<T, TW, VEC, PACKS>(team, team_index, team_count, a, scratch_dweight, scratch_dbias);
  }
}

// out[c] = the sum over teams of partial[team * n + c], rounded once to TOut.
// A 32x32 block takes 32 columns; thread row ty adds teams ty, ty + 32, ... in
// order, then thread row 0 adds the 32 results in order: a fixed order.
template <typename TAcc, typename TOut>
__global__ void reduce_partials_kernel(const TAcc* partial, int64_t teams, int64_t n, TOut* out) {
  __shared__ double sums[32][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  double total = 0.0;
  if (c < n)
    for (int64_t t = threadIdx.y; t < teams; t += 32) total += static_cast<double>(partial[t * n + c]);
  sums[threadIdx.y][threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.y == 0 && c < n) {
    double all = 0.0;
    for (int i = 0; i < 32; ++i) all += sums[i][threadIdx.x];
    out[c] = from_double<TOut>(all);
  }
}

// ---------------------------------------------------------------- host side

// The current device's multiprocessor count and opt-in shared memory per
// block, queried once per device: every launch needs them.
struct DeviceLimits {
  int multiprocessors = 0;
  int shared_bytes_optin = 0;
};

const DeviceLimits& device_limits() {
  constexpr int kMaxDevices = 64;
  static DeviceLimits limits[kMaxDevices];
  static std::once_flag queried[kMaxDevices];
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  if (device < 0 || device >= kMaxDevices) throw CudaError("CUDA: device index " + std::to_string(device) + " beyond 63");
  std::call_once(queried[device], [&] {  // a throw leaves it to be queried again
    check(cudaDeviceGetAttribute(&limits[device].multiprocessors, cudaDevAttrMultiProcessorCount, device),
          "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&limits[device].shared_bytes_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
          "cudaDeviceGetAttribute");
  });
  return limits[device];
}

// Blocks for `rows` rows: one team per row up to as many blocks as the device
// keeps resident at once (more would only queue), at least one.
template <class Kernel>
int64_t grid_for(Kernel kernel, const Geometry& g, int64_t rows, size_t dynamic_shared_bytes = 0) {
  int per_multiprocessor = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel, g.block_threads,
                                                      dynamic_shared_bytes),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int64_t resident = static_cast<int64_t>(std::max(per_multiprocessor, 1)) * device_limits().multiprocessors;
  const int64_t wanted = (rows + g.teams_per_block() - 1) / g.teams_per_block();
  return std::max<int64_t>(1, std::min(wanted, resident));
}

// out (float32 or T, device) = the teams' partial sums added in a fixed order.
template <typename T>
void reduce_into(const Vector& out, const Partial<T>* partial, int64_t teams, int64_t n, Stream stream) {
  if (!out.data) return;
  const dim3 block(32, 32);
  const unsigned blocks = static_cast<unsigned>((n + 31) / 32);
  if (out.dtype == DType::kFloat32) {
    reduce_partials_kernel<<<blocks, block, 0, stream>>>(partial, teams, n, static_cast<float*>(out.data));
  } else {
    reduce_partials_kernel<<<blocks, block, 0, stream>>>(partial, teams, n, static_cast<T*>(out.data));
  }
}

}  // namespace

void check(int status, const char* what) {
  if (status != cudaSuccess) {
    const auto e = static_cast<cudaError_t>(status);
    throw CudaError(std::string("CUDA: ") + what + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                    ")");
  }
}

void launch_forward(const calls::ForwardCall& p, Stream stream) {
  if (p.rows == 0) return;
  with_forward_program(p, [&](const auto& params, const Geometry& g, auto vec, auto packs) {
    using Params = std::decay_t<decltype(params)>;
    auto run = [&](auto kernel) {
      const int64_t grid = grid_for(kernel, g, p.rows);
      kernel<<<static_cast<unsigned>(grid), g.block_threads, 0, stream>>>(params);
    };
    using T = typename Params::Storage;
    using TW = typename Params::Param;
    constexpr int kVec = decltype(vec)::value, kPacks = decltype(packs)::value;
    if constexpr (kPacks > 0) {  // only resident rows are short enough for warp teams
      if (g.team_size == 32) return run(forward_kernel<T, TW, kVec, kPacks, true>);
    }
    run(forward_kernel<T, TW, kVec, kPacks, false>);
  });
  check(cudaGetLastError(), "forward kernel launch");
}

void launch_backward(const calls::BackwardCall& p, const Vector& dweight, const Vector& dbias, Stream stream) {
  const int64_t n = p.norm.n;
  with_backward_program(p, [&](auto params, const Geometry& g, auto vec, auto packs) {
    using Params = decltype(params);
    using T = typename Params::Storage;
    using TW = typename Params::Param;
    using Acc = Partial<T>;
    auto run = [&](auto kernel) {
      const bool accumulate = dweight.data || dbias.data;
      // The accumulators go to shared memory when a block's fit.
      int64_t scratch_per_team = ((dweight.data ? 1 : 0) + (dbias.data ? 1 : 0)) * n;
      size_t shared_bytes = static_cast<size_t>(scratch_per_team * g.teams_per_block()) * sizeof(Acc);
      if (shared_bytes > 48 * 1024) {
        if (shared_bytes + 1024 <= static_cast<size_t>(device_limits().shared_bytes_optin)) {
          check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
                "cudaFuncSetAttribute");
        } else {
          scratch_per_team = 0;
          shared_bytes = 0;
        }
      }
      // The team count fixes the partial sums' order: it depends only on the
      // device and the shape. Partials are capped at 256 MiB.
      int64_t grid = grid_for(kernel, g, std::max<int64_t>(p.rows, 1), shared_bytes);
      if (accumulate) {
        const int64_t bytes_per_block = 2 * n * static_cast<int64_t>(sizeof(Acc)) * g.teams_per_block();
        grid = std::max<int64_t>(1, std::min(grid, (int64_t{256} << 20) / bytes_per_block));
      }
      const int64_t teams = grid * g.teams_per_block();
      Acc* partial = nullptr;
      if (accumulate) {
        check(cudaMallocAsync(reinterpret_cast<void**>(&partial), static_cast<size_t>(2 * teams * n) * sizeof(Acc),
                              stream),
              "cudaMallocAsync (partial sums)");
      }
      params.partial_dweight = dweight.data ? partial : nullptr;
      params.partial_dbias = dbias.data ? partial + teams * n : nullptr;
      if (p.rows > 0 || accumulate) {
        kernel<<<static_cast<unsigned>(grid), g.block_threads, shared_bytes, stream>>>(params, scratch_per_team);
        check(cudaGetLastError(), "backward kernel launch");
      }
      reduce_into<T>(dweight, params.partial_dweight, teams, n, stream);
      reduce_into<T>(dbias, params.partial_dbias, teams, n, stream);
      check(cudaGetLastError(), "partial-sum kernel launch");
      if (accumulate) check(cudaFreeAsync(partial, stream), "cudaFreeAsync (partial sums)");
    };
    constexpr int kVec = decltype(vec)::value, kPacks = decltype(packs)::value;
    if constexpr (kPacks > 0) {
      if (g.team_size == 32) return run(backward_kernel<T, TW, kVec, kPacks, true>);
    }
    run(backward_kernel<T, TW, kVec, kPacks, false>);
  });
}

}  // namespace rmsnorm::cuda::detail
