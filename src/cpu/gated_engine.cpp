// Threads for gated and grouped RMSNorm (SPEC section 10): each thread takes a
// contiguous range of whole rows, and in backward sums dweight privately; the
// private sums are added in thread order, as run_backward does.
#include "src/cpu/engine.hpp"
#include "src/cpu/engine_internal.hpp"
#include "src/cpu/kernels.hpp"

namespace rmsnorm::cpu {

void run_gated_forward(const calls::ForwardCall& call, const calls::Gating& gating, int threads) {
  if (call.rows == 0) return;
  const ForwardPlan plan = forward_plan_for(call);
  if (threads == 1) return gated_forward_rows(plan, gating, 0, call.rows);
#pragma omp parallel num_threads(threads)
  {
    const int t = thread_index(), nt = thread_count_in_team();
    gated_forward_rows(plan, gating, call.rows * t / nt, call.rows * (t + 1) / nt);
  }
}

void run_gated_backward(const calls::BackwardCall& call, const calls::Gating& gating, int threads,
                        const Vector& dweight) {
  const BackwardPlan plan = backward_plan_for(call);
  // The gated kernels run in double lanes whatever the dtype, and so does
  // their dweight chunk.
  const bool dbl = true;
  const Accumulators accumulators(call.norm.n, dbl, threads, dweight, Vector{});
  if (call.rows > 0) {
#pragma omp parallel num_threads(threads)
    {
      const int t = thread_index(), nt = thread_count_in_team();
      GradAccumulator acc = accumulators.at(t);
      gated_backward_rows(plan, gating, call.rows * t / nt, call.rows * (t + 1) / nt, acc);  // write() flushes
    }
  }
  accumulators.write(dweight, Vector{});
}

}  // namespace rmsnorm::cpu
