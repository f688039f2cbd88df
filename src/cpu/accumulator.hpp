// dweight/dbias accumulation, shared by the kernels (which add rows' terms
// into a chunk and flush it every kRowsPerChunk rows) and the engine (which
// lays the buffers out per thread and adds the threads' totals in order).
// Below both, so that calls go one way: engine -> kernels -> here.
#pragma once

#include <cstdint>
#include <cstring>

namespace rmsnorm::cpu {

// Accumulators of dweight and dbias for one thread (or one column range):
// `chunk` in the arithmetic type takes a few rows, then is added into `total`
// in double, which keeps long sums accurate and the order fixed.
struct GradAccumulator {
  void* chunk_dweight = nullptr;  // arithmetic type (float, or double for f64 data), length n
  void* chunk_dbias = nullptr;
  double* total_dweight = nullptr;  // length n
  double* total_dbias = nullptr;
  int rows_in_chunk = 0;
  // Which of the two the call returns: only those are zeroed, flushed and
  // written (the wide path adds into both totals; an unwanted one is never read).
  bool want_dweight = true;
  bool want_dbias = true;
  // Null when the totals were zeroed up front. Otherwise they are zeroed on
  // first use (ensure_totals), and this says whether that has happened: a
  // call whose rows all fit in one chunk and take the fast path never touches
  // them, and its result is written straight from the chunk. For a one-row
  // backward the totals' clear, flush and double-to-float write cost more than
  // the row itself.
  bool* totals_zeroed = nullptr;
  int64_t n = 0;  // the totals' length
};

// Zeroes acc's totals if they are zeroed lazily and have not been yet. Every
// writer of the totals calls it first (flush_chunk and the wide path).
inline void ensure_totals(const GradAccumulator& acc) {
  if (!acc.totals_zeroed || *acc.totals_zeroed) return;
  const size_t bytes = static_cast<size_t>(acc.n) * sizeof(double);
  if (acc.want_dweight) std::memset(acc.total_dweight, 0, bytes);
  if (acc.want_dbias) std::memset(acc.total_dbias, 0, bytes);
  *acc.totals_zeroed = true;
}

inline constexpr int kRowsPerChunk = 32;

// Adds acc's chunk into its totals over [column_begin, column_end) and clears it.
inline void flush_chunk(const GradAccumulator& acc, bool double_arithmetic, int64_t column_begin, int64_t column_end) {
  ensure_totals(acc);
  // One array at a time, restrict-qualified: the compiler vectorizes it.
  auto flush = [&](auto* __restrict__ chunk, double* __restrict__ total) {
    for (int64_t c = column_begin; c < column_end; ++c) {
      total[c] += chunk[c];
      chunk[c] = 0;
    }
  };
  auto flush_both = [&](auto* chunk_dweight, auto* chunk_dbias) {
    if (acc.want_dweight) flush(chunk_dweight, acc.total_dweight);
    if (acc.want_dbias) flush(chunk_dbias, acc.total_dbias);
  };
  if (double_arithmetic) {
    flush_both(static_cast<double*>(acc.chunk_dweight), static_cast<double*>(acc.chunk_dbias));
  } else {
    flush_both(static_cast<float*>(acc.chunk_dweight), static_cast<float*>(acc.chunk_dbias));
  }
}

}  // namespace rmsnorm::cpu
