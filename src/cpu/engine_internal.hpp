// What the engine's two halves share: engine.cpp (whole rows, one call) and
// sharded.cpp (SPEC section 9's phases). Thread helpers, the per-call plan
// (streaming, SIMD target, folded weight offset) and the dweight/dbias scratch.
#pragma once

#include <cstdint>
#include <vector>

#include "src/cpu/accumulator.hpp"
#include "src/cpu/plan.hpp"

namespace rmsnorm::cpu {

int thread_index();
int thread_count_in_team();

// values[0] + values[1] + ... in that order: block sums, shard sums.
inline double ordered_sum(const double* values, int64_t count) {
  double total = 0.0;
  for (int64_t i = 0; i < count; ++i) total += values[i];
  return total;
}

// What the engine decides for a call before any kernel runs, the same for
// forward and backward: streaming (the output against the last-level cache),
// the SIMD target of every kernel of the call, the weight offset folded into
// the parameters, and whether the (folded) weight lies in the fast range.
// rows_check_weight: only for calls that run on the row path (forward_rows),
// which may then check the weight itself (ForwardPlan::weight_checked_by_rows).
ForwardPlan forward_plan_for(const calls::ForwardCall& call, bool rows_check_weight = false);
BackwardPlan backward_plan_for(const calls::BackwardCall& call);

// The dweight/dbias scratch of one backward call: `count` accumulators of n
// columns each (none when neither is wanted), in the calling thread's
// reusable workspace; the wanted chunks zeroed. Each accumulator belongs to
// one thread, which leaves its last rows in the chunk: write() flushes them.
// Their totals are zeroed on first use (GradAccumulator::totals_zeroed),
// except with kSharedByColumns, where threads share one accumulator by
// columns, flush their own columns themselves, and the totals are zeroed up
// front.
class Accumulators {
 public:
  enum Sharing { kOnePerThread, kSharedByColumns };
  // dweight / dbias: the call's outputs (data may be null). A single
  // accumulator whose output has the chunk's type accumulates straight into
  // it, so that a call that never flushes has nothing left to write.
  Accumulators(int64_t n, bool double_arithmetic, int count, const Vector& dweight, const Vector& dbias,
               Sharing sharing = kOnePerThread);
  GradAccumulator at(int i) const;
  // Flushes each accumulator's chunk (kOnePerThread), adds accumulators 1..
  // into 0 in order (deterministic for a given count) and writes dweight /
  // dbias where their data is non-null. A single accumulator whose totals
  // were never used is written straight from its chunk: the same values, as
  // its total would be 0 + chunk exactly.
  void write(const Vector& dweight, const Vector& dbias) const;
  bool active() const { return per_accumulator_ > 0; }

 private:
  int64_t n_;
  size_t arith_size_;
  int count_;
  size_t per_accumulator_;
  bool want_dweight_, want_dbias_;
  Sharing sharing_;
  void* direct_dweight_ = nullptr;  // the output used as the chunk, or null
  void* direct_dbias_ = nullptr;
  unsigned char* base_;
  bool* totals_zeroed_;  // one flag per accumulator, after the accumulators in the workspace
};

}  // namespace rmsnorm::cpu
