// Why the kernel's description first: on the "AMD EPYC" VM the docs' figures
// come from, glibc's sysconf(_SC_LEVEL3_CACHE_SIZE) gave 320 MiB, apparently
// the host's L3 summed over its core complexes, while the kernel (sysfs, and
// lscpu) reports the 32 MiB the VM's cores share. With 320 MiB the engine did
// not stream outputs of 32-320 MiB, which do not stay in cache.
#include "src/cpu/cache_sizes.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

namespace rmsnorm::cpu {
namespace {

// "32K", "1024K", "32M" or a plain byte count; 0 when unreadable.
int64_t parse_size(const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || value <= 0) return 0;
  switch (*end) {
    case 'K': return value << 10;
    case 'M': return value << 20;
    case 'G': return value << 30;
    default: return value;
  }
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Data and unified caches of cpu0 by level, from sysfs (Linux).
CacheSizes from_kernel() {
  CacheSizes sizes;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    const std::string type = read_line(dir + "type");
    if (type != "Data" && type != "Unified") continue;
    const int64_t bytes = parse_size(read_line(dir + "size"));
    if (level == "1" && type == "Data") sizes.l1_data_bytes = bytes;
    if (level == "2") sizes.core_bytes = bytes;
    if (level == "3") sizes.last_level_bytes = bytes;
  }
  if (sizes.last_level_bytes == 0) sizes.last_level_bytes = sizes.core_bytes;
  return sizes;
}

CacheSizes from_c_library() {
  CacheSizes sizes;
#ifdef _SC_LEVEL1_DCACHE_SIZE
  sizes.l1_data_bytes = std::max(0L, sysconf(_SC_LEVEL1_DCACHE_SIZE));
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
  sizes.core_bytes = std::max(0L, sysconf(_SC_LEVEL2_CACHE_SIZE));
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  sizes.last_level_bytes = l3 > 0 ? l3 : sizes.core_bytes;
#endif
  return sizes;
}

}  // namespace

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = [] {
    CacheSizes s = from_kernel();
    if (s.core_bytes <= 0 || s.last_level_bytes <= 0) s = from_c_library();
    if (s.l1_data_bytes <= 0) s.l1_data_bytes = from_c_library().l1_data_bytes;
    if (s.l1_data_bytes <= 0) s.l1_data_bytes = int64_t{32} << 10;
    if (s.core_bytes <= 0) s.core_bytes = int64_t{1} << 20;
    if (s.last_level_bytes <= 0) s.last_level_bytes = int64_t{32} << 20;
    return s;
  }();
  return sizes;
}

}  // namespace rmsnorm::cpu
