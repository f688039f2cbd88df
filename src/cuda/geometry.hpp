// How the CUDA kernels divide rows among threads: the team size (threads per
// row), whether the row stays in registers, and the block size. Shared by the
// launcher (kernels.cu) and the CPU emulation test, so both run the same shape.
#pragma once

#include <cstdint>

namespace rmsnorm::cuda::detail {

// Packs (16 bytes each) a thread keeps in registers when its row is resident.
constexpr int kResidentPacks = 4;
// At most 512 threads per block, so each thread may use 128 registers: under
// a 1024-thread bound (64 registers) ptxas spilled the resident 16-bit
// kernels. Rows longer than 512 threads' registers hold are streamed.
constexpr int kLargestForwardTeam = 512;
constexpr int kLargestBackwardTeam = 512;
constexpr int kWarpTeamsPerBlock = 4;

struct Geometry {
  int vec = 1;            // elements per pack: 16 bytes, or 1 when the rows are not 16-byte aligned
  int team_size = 32;     // threads per row: 32 (a warp) up to a whole block
  bool resident = true;   // the row fits in its team's registers (kResidentPacks per thread)
  int block_threads = 128;
  int teams_per_block() const { return block_threads / team_size; }
};

// The smallest team (a power of two from 32) whose registers hold the row;
// rows longer than the largest team can hold are streamed through L2.
inline Geometry choose_geometry(int64_t n, int element_bytes, bool vector_aligned, bool backward) {
  Geometry g;
  g.vec = vector_aligned ? 16 / element_bytes : 1;
  const int64_t packs = (n + g.vec - 1) / g.vec;
  const int largest = backward ? kLargestBackwardTeam : kLargestForwardTeam;
  while (g.team_size < largest && static_cast<int64_t>(g.team_size) * kResidentPacks < packs) g.team_size *= 2;
  g.resident = packs <= static_cast<int64_t>(g.team_size) * kResidentPacks;
  // Warp teams share a block; larger teams are a block each (block reductions
  // synchronize the whole block).
  g.block_threads = g.team_size == 32 ? 32 * kWarpTeamsPerBlock : g.team_size;
  return g;
}

}  // namespace rmsnorm::cuda::detail
