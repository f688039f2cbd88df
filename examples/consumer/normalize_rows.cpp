// Normalizes two rows with RMSNorm through the C++ API of an installed
// rmsnorm and checks the result against the formula: y = x / sqrt(mean(x^2) + eps).
#include <cmath>
#include <cstdio>
#include <vector>

#include <rmsnorm/rmsnorm.hpp>

int main() {
  const int64_t rows = 2, n = 4;
  std::vector<float> x = {1, 2, 3, 4, -2, 0, 2, 0}, y(x.size());
  rmsnorm::NormOptions options;  // RMSNorm, eps = 1e-5 inside the square root
  rmsnorm::ForwardArgs args;
  args.rows = rows;
  args.n = n;
  args.x = {x.data(), rmsnorm::DType::kFloat32, n};
  args.y = {y.data(), rmsnorm::DType::kFloat32, n};
  rmsnorm::forward(options, args);

  for (int64_t r = 0; r < rows; ++r) {
    double squares = 0;
    for (int64_t j = 0; j < n; ++j) squares += x[r * n + j] * x[r * n + j];
    const double inv_rms = 1 / std::sqrt(squares / n + options.eps);
    for (int64_t j = 0; j < n; ++j) {
      if (std::fabs(y[r * n + j] - x[r * n + j] * inv_rms) > 1e-6) {
        std::printf("mismatch at row %lld column %lld\n", static_cast<long long>(r), static_cast<long long>(j));
        return 1;
      }
    }
  }
  const rmsnorm::RuntimeInfo info = rmsnorm::runtime_info();
  std::printf("rmsnorm %s (%s): y[0] = %.6f %.6f %.6f %.6f\n", info.version.c_str(), info.simd_target.c_str(), y[0],
              y[1], y[2], y[3]);
  return 0;
}
