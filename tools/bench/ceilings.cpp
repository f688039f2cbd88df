// The memory ceilings of SPEC section 6: a copy of the same bytes as the
// kernels' main matrix, and a large copy, each split among the group's threads
// the way the kernels split rows.
#include <omp.h>

#include <cstring>

#include "tools/bench/implementation.hpp"

namespace rmsnorm::bench {
namespace {

void parallel_copy(void* dst, const void* src, size_t bytes, int threads) {
  if (threads == 1) {
    std::memcpy(dst, src, bytes);  // no parallel region: small copies would time OpenMP, not memory
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num()), nt = static_cast<size_t>(omp_get_num_threads());
    const size_t begin = bytes * t / nt / 64 * 64, end = t + 1 == nt ? bytes : bytes * (t + 1) / nt / 64 * 64;
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, end - begin);
  }
}

class Copy : public Implementation {
 public:
  explicit Copy(bool large) : large_(large) {}
  std::string key() const override { return large_ ? "ceiling.large_copy" : "ceiling.copy"; }
  std::string name() const override { return large_ ? "copy 256 MiB (ceiling)" : "copy same bytes (ceiling)"; }
  std::string family() const override { return "ceiling"; }
  bool is_ceiling() const override { return true; }
  bool interleaved() const override { return !large_; }
  std::string unsupported(const Problem&) const override { return ""; }
  void prepare(Workspace& ws) override {
    ws_ = &ws;
    if (large_) {
      src_ = Buffer(kLargeBytes);
      dst_ = Buffer(kLargeBytes);
      std::memset(src_.data(), 1, kLargeBytes);
      std::memset(dst_.data(), 0, kLargeBytes);
    }
  }
  void run() override {
    const int threads = ws_->problem.threads;
    if (large_) return parallel_copy(dst_.data(), src_.data(), kLargeBytes, threads);
    parallel_copy(ws_->y.data(), ws_->x.data(), ws_->problem.matrix_bytes(), threads);
  }
  double bytes() const override {
    return 2.0 * static_cast<double>(large_ ? kLargeBytes : ws_->problem.matrix_bytes());
  }
  Outputs outputs(const std::vector<int64_t>&, bool) const override { return {}; }
  void release() override {
    src_ = Buffer();
    dst_ = Buffer();
  }

 private:
  static constexpr size_t kLargeBytes = size_t{256} << 20;
  bool large_;
  Workspace* ws_ = nullptr;
  Buffer src_, dst_;
};

}  // namespace

ImplementationList make_ceilings() {
  ImplementationList list;
  list.push_back(std::make_unique<Copy>(false));
  list.push_back(std::make_unique<Copy>(true));
  return list;
}

}  // namespace rmsnorm::bench
