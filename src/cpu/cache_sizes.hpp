// The data cache sizes behind the engine's memory decisions: non-temporal
// stores past the last-level cache, prefetching the next row past a core's own
// cache (L2), where a one-row call checks its weight (L1).
#pragma once

#include <cstdint>

namespace rmsnorm::cpu {

struct CacheSizes {
  int64_t l1_data_bytes = 0;     // a core's first-level data cache
  int64_t core_bytes = 0;        // the largest cache one core has to itself (L2)
  int64_t last_level_bytes = 0;  // the largest cache a core sees (L3)
};

// Read once: from the kernel's description of cpu0's caches, else from the C
// library, else 32 KiB, 1 MiB and 32 MiB.
const CacheSizes& cache_sizes();

}  // namespace rmsnorm::cpu
