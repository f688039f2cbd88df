// What one norm call costs through LibTorch's autograd, forward + backward,
// in each implementation setting of `rmsnorm reproduce` (framework tensor
// ops, what PyTorch ships, our ops), at the small shapes where per-call
// overhead decides (the GRU's 32-row calls). The input is made by an op, as
// in a model; that op alone is timed too and subtracted. Medians of
// interleaved samples, one process.
//
//   build/bench/norm_call_bench [--rows 32] [--n 256] [--threads 1] [--samples 21] [--calls 300]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "tools/common/median.hpp"
#include "tools/reproduce/norms.hpp"

namespace {

using rmsnorm::reproduce::Norm;
using rmsnorm::reproduce::NormContext;
using rmsnorm::reproduce::Setting;
using rmsnorm::reproduce::Variant;

int64_t option(int argc, char** argv, const char* name, int64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) {
      const int64_t value = std::atoll(argv[i + 1]);
      if (value <= 0) {
        std::fprintf(stderr, "norm_call_bench: %s must be a positive integer, got \"%s\"\n", name, argv[i + 1]);
        std::exit(2);
      }
      return value;
    }
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = option(argc, argv, "--rows", 32), n = option(argc, argv, "--n", 256);
  const int64_t samples = option(argc, argv, "--samples", 21), calls = option(argc, argv, "--calls", 300);
  at::set_num_threads(static_cast<int>(option(argc, argv, "--threads", 1)));
  const auto x = ::torch::randn({rows, n}).requires_grad_();
  const auto dy = ::torch::randn({rows, n});
  auto context = std::make_shared<NormContext>();

  struct Candidate {
    std::string name;
    std::function<void()> call;
  };
  std::vector<Candidate> candidates;
  candidates.push_back({"input op alone", [&] { (x * 1.0).backward(dy); }});
  for (Variant v : {Variant::kLayerNorm, Variant::kRMSNorm, Variant::kPartialRMSNorm}) {
    Norm norm(v, std::vector<int64_t>{n}, 0.0625, context, "bench");
    for (Setting s : rmsnorm::reproduce::kSettings) {
      candidates.push_back({std::string(variant_name(v)) + " " + setting_key(s),
                            [norm, s, &x, &dy] { norm->compute(x * 1.0, s).backward(dy); }});
    }
  }
  std::vector<std::vector<double>> us(candidates.size());
  for (int64_t sample = -2; sample < samples; ++sample) {  // two untimed rounds warm up
    for (size_t c = 0; c < candidates.size(); ++c) {
      x.mutable_grad() = ::torch::Tensor();
      const auto start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < calls; ++i) candidates[c].call();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (sample >= 0) us[c].push_back(seconds / static_cast<double>(calls) * 1e6);
    }
  }
  const double base = rmsnorm::tools::median(us[0]);
  std::printf("%lldx%lld float32, %d thread(s), forward + backward through autograd, median of %lld samples of "
              "%lld calls\n%-24s %10s %12s\n",
              static_cast<long long>(rows), static_cast<long long>(n), at::get_num_threads(),
              static_cast<long long>(samples), static_cast<long long>(calls), "", "us/call", "minus input");
  for (size_t c = 0; c < candidates.size(); ++c) {
    const double median = rmsnorm::tools::median(us[c]);
    std::printf("%-24s %10.2f %12.2f\n", candidates[c].name.c_str(), median, c == 0 ? 0.0 : median - base);
  }
  return 0;
}
