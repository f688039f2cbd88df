// Engine benchmark: GB/s of forward and forward+backward against a same-run
// copy of the same bytes (memcpy, which streams large outputs, split among the
// same number of threads), interleaved, median of repetitions after warm-up
// (SPEC section 6). Small shapes are called repeatedly within one sample so
// that a sample lasts at least ~2 ms.
//
//   engine_bench [rows n threads reps]     defaults: 16384 8192 <all> 11
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include <omp.h>

#include "rmsnorm/rmsnorm.hpp"
#include "tools/common/median.hpp"

namespace {

using rmsnorm::tools::median;

double seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One parallel copy: each thread copies its contiguous share, as the kernels
// share rows.
void parallel_copy(float* dst, const float* src, size_t count, int threads) {
#pragma omp parallel num_threads(threads)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num()), nt = static_cast<size_t>(omp_get_num_threads());
    const size_t begin = count * t / nt, end = count * (t + 1) / nt;
    std::memcpy(dst + begin, src + begin, (end - begin) * sizeof(float));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 16384;
  const int64_t n = argc > 2 ? std::atoll(argv[2]) : 8192;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 0;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 11;
  const size_t count = static_cast<size_t>(rows * n);
  std::vector<float> x(count), y(count), dy(count), dx(count), w(n, 1.0f), dw(n), inv(rows), mean(rows);
  for (size_t i = 0; i < count; ++i) x[i] = dy[i] = static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  std::vector<float> copy_dst(count);

  const int copy_threads = threads > 0 ? threads : omp_get_max_threads();
  rmsnorm::NormOptions rms, layer, partial;
  rms.num_threads = layer.num_threads = partial.num_threads = threads;
  layer.kind = rmsnorm::NormKind::kLayerNorm;
  partial.p = 0.0625;
  auto forward = [&](const rmsnorm::NormOptions& o) {
    rmsnorm::ForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data(), rmsnorm::DType::kFloat32, n};
    a.y = {y.data(), rmsnorm::DType::kFloat32, n};
    a.weight = {w.data(), rmsnorm::DType::kFloat32};
    a.saved = {inv.data(), mean.data()};
    rmsnorm::forward(o, a);
  };
  auto backward = [&](const rmsnorm::NormOptions& o) {
    rmsnorm::BackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data(), rmsnorm::DType::kFloat32, n};
    a.dy = {dy.data(), rmsnorm::DType::kFloat32, n};
    a.weight = {w.data(), rmsnorm::DType::kFloat32};
    a.saved = {inv.data(), o.kind == rmsnorm::NormKind::kLayerNorm ? mean.data() : nullptr};
    a.dx = {dx.data(), rmsnorm::DType::kFloat32, n};
    a.dweight = {dw.data(), rmsnorm::DType::kFloat32};
    rmsnorm::backward(o, a);
  };
  struct Case {
    const char* name;
    double bytes;  // read once + written once
    std::function<void()> run;
    std::vector<double> times;
  };
  const double matrix = static_cast<double>(count) * sizeof(float);
  std::vector<Case> cases = {
      {"copy (memcpy, same bytes, same threads)", 2 * matrix, [&] { parallel_copy(copy_dst.data(), x.data(), count, copy_threads); }, {}},
      {"RMSNorm forward", 2 * matrix, [&] { forward(rms); }, {}},
      {"pRMSNorm (p=6.25%) forward", 2 * matrix, [&] { forward(partial); }, {}},
      {"LayerNorm forward", 2 * matrix, [&] { forward(layer); }, {}},
      {"RMSNorm backward (saved stats)", 3 * matrix, [&] { backward(rms); }, {}},
      {"RMSNorm forward+backward", 5 * matrix, [&] { forward(rms); backward(rms); }, {}},
      {"LayerNorm backward (saved stats)", 3 * matrix, [&] { backward(layer); }, {}},
  };
  for (auto& c : cases) c.run();  // warm-up: pages touched, threads started
  // Calls per sample: enough that the slowest case's sample lasts ~2 ms.
  double slowest = 0;
  for (auto& c : cases) slowest = std::max(slowest, seconds(c.run));
  const int calls = static_cast<int>(std::clamp(2e-3 / slowest, 1.0, 10000.0));
  for (int r = 0; r < reps; ++r) {
    for (auto& c : cases) {  // interleaved
      c.times.push_back(seconds([&] {
                          for (int i = 0; i < calls; ++i) c.run();
                        }) /
                        calls);
    }
  }

  const rmsnorm::RuntimeInfo info = rmsnorm::runtime_info();
  std::printf("rmsnorm %s, SIMD target %s, threads %d (requested %d), float32 %lld x %lld, median of %d samples "
              "of %d call(s)\n",
              info.version.c_str(), info.simd_target.c_str(), threads > 0 ? threads : info.max_threads, threads,
              static_cast<long long>(rows), static_cast<long long>(n), reps, calls);
  const double copy_gbs = cases[0].bytes / median(cases[0].times) / 1e9;
  std::printf("%-38s %10s %9s %9s\n", "case", "median ms", "GB/s", "% copy");
  for (auto& c : cases) {
    const double t = median(c.times), gbs = c.bytes / t / 1e9;
    std::printf("%-38s %10.3f %9.2f %8.1f%%\n", c.name, t * 1e3, gbs, 100 * gbs / copy_gbs);
  }
  std::printf("RMSNorm forward speed-up over LayerNorm forward: %.2fx\n", median(cases[3].times) / median(cases[1].times));
  return 0;
}
