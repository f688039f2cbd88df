// CUDA kernels for RMSNorm, pRMSNorm and LayerNorm, forward and backward.
//
// One thread block per row (rows shared among blocks by a grid-stride loop).
// Every thread owns the same columns of its row in every pass, 16-byte
// vectors where the pointers allow, so a row is read from HBM once and the
// later passes hit L2; a thread re-reads only what it wrote itself.
//
// Row statistics are computed in double on values scaled by the row's largest
// magnitude, which makes every finite row safe from overflow and underflow
// (SPEC section 4) without a separate slow path. Outputs are computed in
// double and rounded once to the storage type. Block reductions add warp sums
// in a fixed order, and dweight/dbias are per-block partial sums added in
// block order by a second kernel: results are deterministic for a given
// device and shape.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "src/cuda/launch.hpp"

namespace rmsnorm::cuda::detail {
namespace {

// ---------------------------------------------------------------- conversions

template <typename T>
__device__ __forceinline__ double to_double(T v);
template <>
__device__ __forceinline__ double to_double<float>(float v) { return v; }
template <>
__device__ __forceinline__ double to_double<double>(double v) { return v; }
template <>
__device__ __forceinline__ double to_double<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ double to_double<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_double(double v);
template <>
__device__ __forceinline__ float from_double<float>(double v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ double from_double<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_double<__half>(double v) { return __double2half(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_double<__nv_bfloat16>(double v) { return __double2bfloat16(v); }

// ---------------------------------------------------------------- row access

// VEC consecutive elements, loaded and stored as one 16-byte access when VEC > 1.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// Calls f(column, value) for every column this thread owns, in the same order
// in every pass: chunks of VEC at threadIdx.x * VEC + i * blockDim.x * VEC.
template <typename T, int VEC, class F>
__device__ __forceinline__ void for_each_owned(const T* row, int64_t n, F&& f) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * VEC;
  for (int64_t c = static_cast<int64_t>(threadIdx.x) * VEC; c < n; c += step) {
    if (VEC > 1 && c + VEC <= n) {
      const Pack<T, VEC> p = *reinterpret_cast<const Pack<T, VEC>*>(row + c);
#pragma unroll
      for (int i = 0; i < VEC; ++i) f(c + i, to_double(p.v[i]));
    } else {
      for (int64_t i = c; i < std::min<int64_t>(c + VEC, n); ++i) f(i, to_double(row[i]));
    }
  }
}

// Writes g(column) for every owned column, vectorized like for_each_owned.
template <typename T, int VEC, class G>
__device__ __forceinline__ void write_owned(T* row, int64_t n, G&& g) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * VEC;
  for (int64_t c = static_cast<int64_t>(threadIdx.x) * VEC; c < n; c += step) {
    if (VEC > 1 && c + VEC <= n) {
      Pack<T, VEC> p;
#pragma unroll
      for (int i = 0; i < VEC; ++i) p.v[i] = from_double<T>(g(c + i));
      *reinterpret_cast<Pack<T, VEC>*>(row + c) = p;
    } else {
      for (int64_t i = c; i < std::min<int64_t>(c + VEC, n); ++i) row[i] = from_double<T>(g(i));
    }
  }
}

// ---------------------------------------------------------------- reductions

// Reduces v over the block with `op` (warp shuffles, then the warps' results
// in warp order): the same order every time. `shared` holds 32 doubles;
// blockDim.x is a multiple of 32.
template <class Op>
__device__ double block_reduce(double v, double* shared, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? shared[lane] : 0.0;  // 0 is neutral for + and for max of |x|
    for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const double total = shared[0];
  __syncthreads();
  return total;
}

struct Add {
  __device__ double operator()(double a, double b) const { return a + b; }
};
struct Max {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

__device__ double block_sum(double v, double* shared) { return block_reduce(v, shared, Add{}); }
__device__ double block_max(double v, double* shared) { return block_reduce(v, shared, Max{}); }

// ---------------------------------------------------------------- statistics

struct Norm {
  bool centered;
  bool eps_outside;
  double eps;
  int64_t n, k;
};

struct Stats {
  double mean;   // 0 for RMSNorm
  double inv_r;  // NaN for a row holding NaN or Inf
  double s;      // sqrt(mean square) or standard deviation, unscaled
};

// The statistics of one row (`src`), by the passes described at the top.
template <typename T, int VEC>
__device__ Stats row_statistics(const Norm& norm, const T* src, double* shared) {
  const int64_t span = norm.centered ? norm.n : norm.k;
  double largest = 0.0, non_finite = 0.0;
  for_each_owned<T, VEC>(src, norm.n, [&](int64_t c, double v) {
    if (!isfinite(v)) non_finite = 1.0;
    if (c < span) largest = fmax(largest, fabs(v));
  });
  non_finite = block_max(non_finite, shared);
  largest = block_max(largest, shared);
  Stats st{0.0, 0.0, 0.0};
  if (non_finite != 0.0) {
    st.inv_r = NAN;
    st.mean = norm.centered ? NAN : 0.0;
    return st;
  }
  const double m = largest > 0.0 ? largest : 1.0;  // values are divided by m (exact for powers of two only)
  double scaled_mean = 0.0;
  if (norm.centered) {
    double sum = 0.0;
    for_each_owned<T, VEC>(src, norm.n, [&](int64_t, double v) { sum += v / m; });
    scaled_mean = block_sum(sum, shared) / static_cast<double>(norm.n);
  }
  double squares = 0.0;
  for_each_owned<T, VEC>(src, norm.n, [&](int64_t c, double v) {
    if (c < span) {
      const double d = v / m - scaled_mean;
      squares += d * d;
    }
  });
  const double scaled_ms = block_sum(squares, shared) / static_cast<double>(span);
  const double scaled_s = sqrt(scaled_ms);
  double r;
  if (norm.eps_outside) {
    r = m * scaled_s + norm.eps;
  } else {
    const double eps_scaled = norm.eps / m / m;  // may be +inf when m is tiny: then r = sqrt(eps)
    r = isinf(eps_scaled) ? sqrt(norm.eps) : m * sqrt(scaled_ms + eps_scaled);
  }
  st.mean = m * scaled_mean;
  st.s = m * scaled_s;
  st.inv_r = 1.0 / r;
  return st;
}

template <typename S>
__device__ void save(void* p, int64_t row, double v) {
  if (p) static_cast<S*>(p)[row] = static_cast<S>(v);
}

// ---------------------------------------------------------------- forward

template <typename T, typename TW, int VEC>
__global__ void forward_kernel(Norm norm, int64_t rows, const T* x, int64_t x_stride, T* residual,
                               int64_t residual_stride, T* y, int64_t y_stride, const TW* weight, const TW* bias,
                               void* saved_inv_rms, void* saved_mean) {
  __shared__ double shared[32];
  using Saved = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* src = x + row * x_stride;
    if (residual) {
      T* res = residual + row * residual_stride;
      const T* xr = src;
      // residual = round(residual + x); this thread later reads only these columns.
      write_owned<T, VEC>(res, norm.n, [&](int64_t c) { return to_double(xr[c]) + to_double(res[c]); });
      src = res;
    }
    const Stats st = row_statistics<T, VEC>(norm, src, shared);
    if (threadIdx.x == 0) {
      save<Saved>(saved_inv_rms, row, st.inv_r);
      save<Saved>(saved_mean, row, st.mean);
    }
    const T* in = src;
    write_owned<T, VEC>(y + row * y_stride, norm.n, [&](int64_t c) {
      double v = (to_double(in[c]) - st.mean) * st.inv_r;
      if (weight) v *= to_double(weight[c]);
      if (bias) v += to_double(bias[c]);
      return v;
    });
  }
}

// ---------------------------------------------------------------- backward

template <typename T, typename TW, int VEC>
__global__ void backward_kernel(Norm norm, int64_t rows, const T* x, int64_t x_stride, const T* dy,
                                int64_t dy_stride, T* dx, int64_t dx_stride, const TW* weight,
                                const void* saved_inv_rms, const void* saved_mean, double* partial_dweight,
                                double* partial_dbias) {
  __shared__ double shared[32];
  using Saved = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
  double* my_dweight = partial_dweight ? partial_dweight + blockIdx.x * norm.n : nullptr;
  double* my_dbias = partial_dbias ? partial_dbias + blockIdx.x * norm.n : nullptr;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * x_stride;
    const T* dyr = dy + row * dy_stride;
    Stats st;
    // Saved statistics are used as given, except for the "outside" placement,
    // whose s = r - eps would cancel; there they are recomputed.
    const bool use_saved = saved_inv_rms && (!norm.centered || saved_mean) && !norm.eps_outside;
    if (use_saved) {
      st.inv_r = static_cast<const Saved*>(saved_inv_rms)[row];
      st.mean = norm.centered ? static_cast<double>(static_cast<const Saved*>(saved_mean)[row]) : 0.0;
      st.s = 0.0;
    } else {
      st = row_statistics<T, VEC>(norm, xr, shared);
    }
    // Column-owned values of dy are read through the same pattern as x.
    double sum_gy = 0.0, dot = 0.0;
    {
      const int64_t step = static_cast<int64_t>(blockDim.x) * VEC;
      for (int64_t c0 = static_cast<int64_t>(threadIdx.x) * VEC; c0 < norm.n; c0 += step) {
        for (int64_t c = c0; c < std::min<int64_t>(c0 + VEC, norm.n); ++c) {
          const double gy = to_double(dyr[c]) * (weight ? to_double(weight[c]) : 1.0);
          if (norm.centered) sum_gy += gy;
          if (c < norm.k) dot += gy * (to_double(xr[c]) - st.mean);
        }
      }
    }
    sum_gy = block_sum(sum_gy, shared);
    dot = block_sum(dot, shared);
    const double a = st.inv_r;
    const double shift = norm.centered ? -sum_gy / static_cast<double>(norm.n) : 0.0;
    const double k = static_cast<double>(norm.k);
    double coef;
    if (norm.eps_outside) {
      coef = st.s > 0.0 ? dot * st.inv_r * st.inv_r / (k * st.s) : 0.0;
    } else {
      coef = dot * st.inv_r * st.inv_r * st.inv_r / k;
    }
    // dx may be dy itself (in place): every dy element is read, and its
    // dweight/dbias terms taken, before the element of dx is stored.
    write_owned<T, VEC>(dx + row * dx_stride, norm.n, [&](int64_t c) {
      const double d = to_double(dyr[c]);
      const double gy = d * (weight ? to_double(weight[c]) : 1.0);
      const double centered = to_double(xr[c]) - st.mean;
      if (my_dweight) my_dweight[c] += d * centered * st.inv_r;
      if (my_dbias) my_dbias[c] += d;
      return a * (gy + shift) - (c < norm.k ? centered * coef : 0.0);
    });
  }
}

// out[c] = sum over blocks b (in order) of partial[b * n + c], in out's dtype.
template <typename TOut>
__global__ void reduce_partials_kernel(const double* partial, int64_t blocks, int64_t n, TOut* out) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < n;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (int64_t b = 0; b < blocks; ++b) total += partial[b * n + c];
    out[c] = from_double<TOut>(total);
  }
}

// ---------------------------------------------------------------- host side

Norm device_norm(const cpu::NormParams& p) { return Norm{p.centered, p.eps_outside, p.eps, p.n, p.k}; }

int threads_for(int64_t n) {
  if (n <= 1024) return 128;
  if (n <= 8192) return 256;
  if (n <= 65536) return 512;
  return 1024;
}

int multiprocessors() {
  int device = 0, count = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return count;
}

bool aligned16(const void* p, int64_t stride_bytes) {
  return p == nullptr || (reinterpret_cast<uintptr_t>(p) % 16 == 0 && stride_bytes % 16 == 0);
}

// Calls f(T{}, TW{}) for the plan's storage and parameter types.
template <class F>
void dispatch(DType dtype, DType param_dtype, F&& f) {
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

// Calls f(integral_constant<int, VEC>) with 16-byte vectors when `vector`,
// else single elements.
template <typename T, class F>
void with_vector_width(bool vector, F&& f) {
  if (vector) {
    f(std::integral_constant<int, static_cast<int>(16 / sizeof(T))>{});
  } else {
    f(std::integral_constant<int, 1>{});
  }
}

// out (float32 or T, device) = the partial sums added over blocks in order.
template <typename T>
void reduce_into(const Vector& out, const double* partial, int64_t blocks, int64_t n, Stream stream) {
  if (!out.data) return;
  const int reduce_blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096));
  if (out.dtype == DType::kFloat32) {
    reduce_partials_kernel<float><<<reduce_blocks, 256, 0, stream>>>(partial, blocks, n, static_cast<float*>(out.data));
  } else {
    reduce_partials_kernel<T><<<reduce_blocks, 256, 0, stream>>>(partial, blocks, n, static_cast<T*>(out.data));
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

void launch_forward(const cpu::ForwardPlan& p, Stream stream) {
  if (p.rows == 0) return;
  const int threads = threads_for(p.norm.n);
  const int64_t grid = std::min<int64_t>(p.rows, int64_t{1} << 20);
  dispatch(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    using TW = decltype(tw);
    const int64_t es = sizeof(T);
    const bool vector = aligned16(p.x, p.x_stride * es) && aligned16(p.y, p.y_stride * es) &&
                        aligned16(p.residual, p.residual_stride * es);
    with_vector_width<T>(vector, [&](auto vec) {
      forward_kernel<T, TW, decltype(vec)::value><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
          device_norm(p.norm), p.rows, static_cast<const T*>(p.x), p.x_stride, static_cast<T*>(p.residual),
          p.residual_stride, static_cast<T*>(p.y), p.y_stride, static_cast<const TW*>(p.weight),
          static_cast<const TW*>(p.bias), p.saved_inv_rms, p.saved_mean);
    });
  });
  check(cudaGetLastError(), "forward kernel launch");
}

void launch_backward(const cpu::BackwardPlan& p, const Vector& dweight, const Vector& dbias, Stream stream) {
  const int64_t n = p.norm.n;
  const bool accumulate = dweight.data || dbias.data;
  // Blocks, and so partial sums, are fixed by the device and the shape:
  // deterministic. The partials are capped at 256 MiB.
  int64_t grid = std::min<int64_t>(p.rows, int64_t{2} * multiprocessors());
  if (accumulate) grid = std::max<int64_t>(1, std::min<int64_t>(grid, (int64_t{256} << 20) / (16 * n)));
  grid = std::max<int64_t>(grid, 1);
  double* partial = nullptr;
  const size_t partial_bytes = accumulate ? static_cast<size_t>(grid * n) * 2 * sizeof(double) : 0;
  if (accumulate) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&partial), partial_bytes, stream), "cudaMallocAsync (partials)");
    check(cudaMemsetAsync(partial, 0, partial_bytes, stream), "cudaMemsetAsync (partials)");
  }
  double* partial_dweight = dweight.data ? partial : nullptr;
  double* partial_dbias = dbias.data ? partial + grid * n : nullptr;
  const int threads = threads_for(n);
  dispatch(p.dtype, p.param_dtype, [&](auto t, auto tw) {
    using T = decltype(t);
    using TW = decltype(tw);
    const int64_t es = sizeof(T);
    const bool vector = aligned16(p.x, p.x_stride * es) && aligned16(p.dy, p.dy_stride * es) &&
                        aligned16(p.dx, p.dx_stride * es);
    if (p.rows > 0) {
      with_vector_width<T>(vector, [&](auto vec) {
        backward_kernel<T, TW, decltype(vec)::value><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
            device_norm(p.norm), p.rows, static_cast<const T*>(p.x), p.x_stride, static_cast<const T*>(p.dy),
            p.dy_stride, static_cast<T*>(p.dx), p.dx_stride, static_cast<const TW*>(p.weight), p.saved_inv_rms,
            p.saved_mean, partial_dweight, partial_dbias);
      });
    }
    reduce_into<T>(dweight, partial_dweight, grid, n, stream);
    reduce_into<T>(dbias, partial_dbias, grid, n, stream);
  });
  check(cudaGetLastError(), "backward kernel launch");
  if (accumulate) check(cudaFreeAsync(partial, stream), "cudaFreeAsync (partials)");
}

}  // namespace rmsnorm::cuda::detail
