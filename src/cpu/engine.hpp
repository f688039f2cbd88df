// The CPU engine's entry points for the API layer: run a validated plan on
// `threads` threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/cpu/plan.hpp"

namespace rmsnorm::cpu {

int max_threads();
// The threads a call of rows x n will use when `requested` are asked for (0: default).
int threads_for(int requested, int64_t rows, int64_t n);
int64_t last_level_cache_bytes();
// Outputs larger than this are written with non-temporal stores: the
// last-level cache size, or RMSNORM_STREAM_THRESHOLD_BYTES when set (read
// once, for tuning).
int64_t stream_threshold_bytes();
// Overrides the threshold for this process (the tests set 0 to run the
// streaming paths on small inputs); a negative value restores the default.
void set_stream_threshold_override(int64_t bytes);

// Runs a validated call: the engine decides the rest of the plan (streaming,
// the parameters' range, the SIMD target) first.
void run_forward(const calls::ForwardCall& call, int threads);
// Writes dweight / dbias (when their data is non-null) after dx.
void run_backward(const calls::BackwardCall& call, int threads, const Vector& dweight, const Vector& dbias);

// SPEC section 9's phases for a shard of each row (src/cpu/sharded.cpp). The
// call's norm is the shard's: n its width, k how many of its columns fall in
// pRMSNorm's first k (0 to n); `global` is the whole row's. Sums are
// kShardSumsPerRow doubles per row (rmsnorm.hpp says what each holds).
void run_shard_forward_sums(const calls::ForwardCall& call, const NormParams& global, int round,
                            const double* reduced_round0, double* sums, int threads);
void run_shard_forward_apply(const calls::ForwardCall& call, const NormParams& global, const double* reduced_round0,
                             const double* reduced_round1, int threads);
void run_shard_backward_sums(const calls::BackwardCall& call, const NormParams& global, double* sums, int threads);
void run_shard_backward_apply(const calls::BackwardCall& call, const NormParams& global, const double* reduced,
                              int threads, const Vector& dweight, const Vector& dbias);

// Gated and grouped RMSNorm (SPEC section 10; src/cpu/gated_engine.cpp).
void run_gated_forward(const calls::ForwardCall& call, const calls::Gating& gating, int threads);
void run_gated_backward(const calls::BackwardCall& call, const calls::Gating& gating, int threads,
                        const Vector& dweight);

// SIMD targets (src/cpu/targets.cpp).
std::string active_target_name();
std::vector<std::string> available_target_names();
void select_target(const std::string& name);

}  // namespace rmsnorm::cpu
