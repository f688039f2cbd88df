// One engine call repeated in a loop, median of 15 samples: the per-call time
// of small shapes (decode rows, cache-resident batches), float32, with a
// weight (and a bias for LayerNorm). For A/B of two builds of librmsnorm.so,
// run it with LD_LIBRARY_PATH pointing at each in turn
// (scripts/ab_engine_calls.sh).
//
//   engine_call_bench ROWS N WHAT CALLS [THREADS] [TARGET]
//     WHAT: copy (memcpy of the same bytes), rms, prms (p = 6.25%), ln,
//           bwd (RMSNorm backward, saved 1/r), bwdw (the same with dweight),
//           pbwd (pRMSNorm backward, p = 6.25%)
//   Prints "WHAT ROWSxN: <ns per call>".
//   Buffers are 64-byte aligned; OFFSET=<bytes> in the environment shifts them all.
//   DTYPE=bf16 in the environment: bfloat16 data and parameters (statistics
//   stay float32); the copy then moves the bfloat16 bytes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "rmsnorm/rmsnorm.hpp"

namespace {

// A 64-byte aligned buffer of `count` floats, shifted by OFFSET bytes.
struct Buffer {
  explicit Buffer(size_t count) {
    const char* offset_env = std::getenv("OFFSET");
    const size_t offset = offset_env ? std::strtoul(offset_env, nullptr, 10) : 0;
    storage.resize(count * sizeof(float) + offset + 64);
    const auto base = reinterpret_cast<uintptr_t>(storage.data());
    data = reinterpret_cast<float*>(storage.data() + ((64 - base % 64) % 64) + offset);
  }
  std::vector<char> storage;
  float* data = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: engine_call_bench ROWS N WHAT CALLS [THREADS] [TARGET]\n");
    return 2;
  }
  const int64_t rows = std::atoll(argv[1]), n = std::atoll(argv[2]);
  const std::string what = argv[3];
  const int calls = std::max(1, std::atoi(argv[4]));
  const size_t count = static_cast<size_t>(rows * n);
  Buffer x(count), y(count), dy(count), dx(count), w(n), b(n), dw(n), inv(rows), mean(rows);
  for (size_t i = 0; i < count; ++i) x.data[i] = dy.data[i] = static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    w.data[i] = 1.0f + static_cast<float>(i) * 1e-3f;
    b.data[i] = 0.0f;
  }
  const char* dtype_env = std::getenv("DTYPE");
  const bool bf16 = dtype_env && std::string(dtype_env) == "bf16";
  if (dtype_env && !bf16 && std::string(dtype_env) != "f32") {
    std::fprintf(stderr, "engine_call_bench: DTYPE must be f32 or bf16, got \"%s\"\n", dtype_env);
    return 2;
  }
  const rmsnorm::DType dt = bf16 ? rmsnorm::DType::kBFloat16 : rmsnorm::DType::kFloat32;
  const size_t element_bytes = rmsnorm::dtype_size(dt);
  if (bf16) {  // in place: element i's two bytes land below float i's four
    for (Buffer* buffer : {&x, &dy, &w, &b}) {
      auto* bits = reinterpret_cast<uint16_t*>(buffer->data);
      const size_t elements = buffer == &w || buffer == &b ? static_cast<size_t>(n) : count;
      for (size_t i = 0; i < elements; ++i) {
        uint32_t f;
        std::memcpy(&f, &buffer->data[i], sizeof(f));
        bits[i] = static_cast<uint16_t>(f >> 16);  // truncated: inputs to time, not to check
      }
    }
  }
  rmsnorm::NormOptions o;
  o.num_threads = argc > 5 ? std::atoi(argv[5]) : 1;
  if (what == "prms" || what == "pbwd") o.p = 0.0625;
  if (what == "ln") o.kind = rmsnorm::NormKind::kLayerNorm;
  if (argc > 6) rmsnorm::set_simd_target(argv[6]);
  auto forward = [&] {
    rmsnorm::ForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data, dt, n};
    a.y = {y.data, dt, n};
    a.weight = {w.data, dt};
    if (o.kind == rmsnorm::NormKind::kLayerNorm) a.bias = {b.data, dt};
    a.saved = {inv.data, mean.data};
    rmsnorm::forward(o, a);
  };
  auto backward = [&](bool with_dweight) {
    rmsnorm::BackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data, dt, n};
    a.dy = {dy.data, dt, n};
    a.weight = {w.data, dt};
    a.saved = {inv.data, nullptr};
    a.dx = {dx.data, dt, n};
    if (with_dweight) a.dweight = {dw.data, dt};
    rmsnorm::backward(o, a);
  };
  // The choice is made once: comparing `what` in every call cost ~25 ns, a
  // tenth of a one-row call.
  std::function<void()> once;
  if (what == "copy") {
    once = [&] {
      std::memcpy(y.data, x.data, count * element_bytes);
      asm volatile("" ::: "memory");
    };
  } else if (what == "bwd" || what == "bwdw" || what == "pbwd") {
    const bool with_dweight = what == "bwdw";
    once = [&, with_dweight] { backward(with_dweight); };
  } else if (what == "rms" || what == "prms" || what == "ln") {
    once = forward;
  } else {
    std::fprintf(stderr, "engine_call_bench: WHAT must be copy, rms, prms, ln, bwd, bwdw or pbwd, got \"%s\"\n",
                 what.c_str());
    return 2;
  }
  forward();  // the saved statistics backward reads; warm-up
  once();
  std::vector<double> samples;
  for (int r = 0; r < 15; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) once();
    samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls);
  }
  std::sort(samples.begin(), samples.end());
  std::printf("%s %lldx%lld: %.1f ns\n", what.c_str(), static_cast<long long>(rows), static_cast<long long>(n),
              samples[samples.size() / 2] * 1e9);
  return 0;
}
