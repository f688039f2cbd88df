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
ForwardPlan forward_plan_for(const calls::ForwardCall& call);
BackwardPlan backward_plan_for(const calls::BackwardCall& call);

// The dweight/dbias scratch of one backward call: `count` accumulators of n
// columns each (none when neither is wanted), in the calling thread's
// reusable workspace; the wanted halves zeroed.
class Accumulators {
 public:
  Accumulators(int64_t n, bool double_arithmetic, int count, bool want_dweight, bool want_dbias);
  GradAccumulator at(int i) const;
  // Adds accumulators 1.. into 0 in order (deterministic for a given count)
  // and writes dweight / dbias where their data is non-null.
  void write(const Vector& dweight, const Vector& dbias) const;
  bool active() const { return per_accumulator_ > 0; }

 private:
  int64_t n_;
  size_t arith_size_;
  int count_;
  size_t per_accumulator_;
  bool want_dweight_, want_dbias_;
  unsigned char* base_;
};

}  // namespace rmsnorm::cpu
