// Why our ops advise huge pages for their large outputs.
//
// A functional op allocates its output on every call. Under glibc's defaults a
// block of 32 MiB or more is a fresh mmap, returned to the kernel on free, so
// every call takes one page fault per 4 KiB of output as the engine first
// writes it. Measured on a 4x2048x4096 float32 training step (docs/PYTORCH.md):
// the faults cost about 55 ms per 128 MiB output against 15 ms for the norm
// itself. With the block marked MADV_HUGEPAGE the kernel maps it in 2 MiB
// pages: the zeroing remains, the per-page fault cost mostly goes. Recent
// PyTorch offers the same for its whole CPU allocator, off by default, behind
// C10_THP_MEM_ALLOC_ENABLE (c10/core/impl/alloc_cpu); here it covers only
// outputs we are about to write in full. Where the kernel's THP defrag mode
// compacts memory for advised regions, a fault may stall on a fragmented
// machine: RMSNORM_HUGE_PAGES=0 is the way out.
#include "output_memory.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace rmsnorm::torch {
namespace {

// glibc's largest dynamic mmap threshold on 64-bit: a block this large is
// always its own mapping (unless the user raised M_MMAP_THRESHOLD, and then
// memory is reused and the advice changes little). Smaller blocks may come
// from the heap, shared with other allocations, which we leave alone.
constexpr size_t kAdviseFromBytes = size_t{32} << 20;
constexpr uintptr_t kHugePageBytes = uintptr_t{2} << 20;

bool huge_pages_wanted() {
  static const bool wanted = [] {
    const char* setting = std::getenv("RMSNORM_HUGE_PAGES");
    return setting == nullptr || std::strcmp(setting, "0") != 0;
  }();
  return wanted;
}

void prefer_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  // Only pages wholly inside this output; the kernel gives a huge page only
  // to a 2 MiB-aligned range inside them. A failure is ignored: the advice
  // changes speed, never contents.
  if (end > begin && end - begin >= kHugePageBytes) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace

at::Tensor empty_output(const at::Tensor& input) {
  at::Tensor out = at::empty(input.sizes(), input.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.device().is_cpu() && out.nbytes() >= kAdviseFromBytes && huge_pages_wanted()) {
    prefer_huge_pages(out.data_ptr(), out.nbytes());
  }
  return out;
}

}  // namespace rmsnorm::torch
