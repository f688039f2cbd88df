// GPU benchmark: our CUDA kernels against a same-run device-to-device copy of
// the same bytes, CUDA events, interleaved, median of repetitions after
// warm-up (SPEC section 6). PyTorch's kernels are timed by
// scripts/bench_torch_cuda.py on the same machine.
//
//   cuda_bench [rows n dtype reps]    defaults: 16384 8192 bf16 21
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "rmsnorm/cuda.hpp"
#include "tools/common/median.hpp"

namespace {

void check(cudaError_t s, const char* what) {
  if (s != cudaSuccess) {
    std::fprintf(stderr, "cuda_bench: %s: %s\n", what, cudaGetErrorString(s));
    std::exit(1);
  }
}

double time_ms(const std::function<void()>& f) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start);
  f();
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 16384;
  const int64_t n = argc > 2 ? std::atoll(argv[2]) : 8192;
  const rmsnorm::DType dtype = rmsnorm::parse_dtype(argc > 3 ? argv[3] : "bf16");
  const int reps = argc > 4 ? std::atoi(argv[4]) : 21;
  const rmsnorm::cuda::DeviceInfo info = rmsnorm::cuda::device_info();
  if (!info.available) {
    std::printf("cuda_bench: no CUDA device (%s)\n", info.reason.c_str());
    return 0;
  }
  const size_t bytes = static_cast<size_t>(rows * n) * rmsnorm::dtype_size(dtype);
  void *x, *y, *dy, *dx, *copy, *w, *dw, *inv;
  for (void** p : {&x, &y, &dy, &dx, &copy}) check(cudaMalloc(p, bytes), "cudaMalloc");
  check(cudaMalloc(&w, n * sizeof(float)), "cudaMalloc");
  check(cudaMalloc(&dw, n * sizeof(float)), "cudaMalloc");
  check(cudaMalloc(&inv, rows * sizeof(double)), "cudaMalloc");
  std::vector<float> ones(n, 1.0f);
  cudaMemcpy(w, ones.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemset(x, 0x3c, bytes);  // finite values in every dtype
  cudaMemset(dy, 0x3c, bytes);

  rmsnorm::NormOptions rms, layer;
  layer.kind = rmsnorm::NormKind::kLayerNorm;
  auto forward = [&](const rmsnorm::NormOptions& o) {
    rmsnorm::ForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x, dtype, n};
    a.y = {y, dtype, n};
    a.weight = {w, rmsnorm::DType::kFloat32};
    a.saved = {inv, nullptr};
    rmsnorm::cuda::forward(o, a);
  };
  auto backward = [&](const rmsnorm::NormOptions& o) {
    rmsnorm::BackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x, dtype, n};
    a.dy = {dy, dtype, n};
    a.weight = {w, rmsnorm::DType::kFloat32};
    a.saved = {inv, nullptr};
    a.dx = {dx, dtype, n};
    a.dweight = {dw, rmsnorm::DType::kFloat32};
    rmsnorm::cuda::backward(o, a);
  };
  struct Case {
    const char* name;
    double bytes;
    std::function<void()> run;
    std::vector<double> ms;
  };
  const double m = static_cast<double>(bytes);
  std::vector<Case> cases = {
      {"device copy (same bytes)", 2 * m, [&] { cudaMemcpyAsync(copy, x, bytes, cudaMemcpyDeviceToDevice); }, {}},
      {"RMSNorm forward", 2 * m, [&] { forward(rms); }, {}},
      {"LayerNorm forward", 2 * m, [&] { forward(layer); }, {}},
      {"RMSNorm forward+backward", 5 * m, [&] { forward(rms); backward(rms); }, {}},
  };
  for (auto& c : cases) c.run();
  check(cudaDeviceSynchronize(), "warm-up");
  for (int r = 0; r < reps; ++r)
    for (auto& c : cases) c.ms.push_back(time_ms(c.run));
  std::printf("%s (sm_%d), %s %lld x %lld, median of %d\n", info.name.c_str(), info.compute_capability,
              rmsnorm::dtype_name(dtype), static_cast<long long>(rows), static_cast<long long>(n), reps);
  using rmsnorm::tools::median;
  const double copy_gbs = cases[0].bytes / median(cases[0].ms) / 1e6;
  for (auto& c : cases) {
    const double gbs = c.bytes / median(c.ms) / 1e6;
    std::printf("%-28s %9.4f ms %9.1f GB/s %7.1f%% of copy\n", c.name, median(c.ms), gbs, 100 * gbs / copy_gbs);
  }
  return 0;
}
