// The sharded phases' entry points (SPEC section 9): validate, build the call
// for this shard's columns, and hand it to the CPU engine with the global
// row's norm. The apply phases reuse the unsharded plan builders, so their
// arguments are checked exactly as forward() and backward() check them.
#include <algorithm>
#include <string>
#include <vector>

#include "rmsnorm/rmsnorm.hpp"
#include "src/api/plans.hpp"
#include "src/api/validate.hpp"
#include "src/cpu/engine.hpp"

namespace rmsnorm {
namespace {

using api::Region;

void check_shard(const Shard& shard, int64_t n) {
  if (shard.global_n < 1) throw Error("shard.global_n: expected >= 1, got " + std::to_string(shard.global_n));
  if (shard.column_begin < 0) {
    throw Error("shard.column_begin: expected >= 0, got " + std::to_string(shard.column_begin));
  }
  if (shard.column_begin > shard.global_n - n) {
    throw Error("shard: columns [" + std::to_string(shard.column_begin) + ", " +
                std::to_string(shard.column_begin + n) + ") (column_begin + n) exceed the global row of " +
                "shard.global_n = " + std::to_string(shard.global_n) + " columns");
  }
}

// The whole row's norm, and the shard's: its n columns, of which those below
// the global k form the statistic.
struct Norms {
  calls::NormParams global, local;
};

Norms norms_of(const NormOptions& options, const Shard& shard, int64_t n) {
  Norms norms{api::norm_params(options, shard.global_n), api::norm_params(options, shard.global_n)};
  norms.local.n = n;
  norms.local.k = std::clamp<int64_t>(norms.global.k - shard.column_begin, 0, n);
  return norms;
}

Region sums_region(const char* name, const double* sums, int64_t rows) {
  return api::vector_region(name, sums, DType::kFloat64, rows * kShardSumsPerRow);
}

void check_sums_pointer(const char* name, const double* sums, int64_t rows, const char* what) {
  if (rows > 0 && !sums) throw Error(std::string(name) + ": null pointer; expected " + what);
}

void check_saved(const NormOptions& options, const ConstStatistics& saved) {
  if (!saved.inv_rms) {
    throw Error("saved.inv_rms: null; the sharded backward needs the forward's saved statistics "
                "(one shard cannot recompute the row's)");
  }
  if (options.kind == NormKind::kLayerNorm && !saved.mean) {
    throw Error("saved.mean: null; the sharded LayerNorm backward needs the forward's saved mean");
  }
}

void check_reduced(const NormOptions& options, const ShardReducedSums& reduced, int64_t rows, int rounds) {
  if (rows == 0) return;
  check_sums_pointer("reduced.round0", reduced.round0, rows, "round 0's all-reduced sums");
  if (options.kind == NormKind::kLayerNorm && rounds > 1) {
    check_sums_pointer("reduced.round1", reduced.round1, rows, "LayerNorm's round 1 all-reduced sums");
  }
}

int threads(const NormOptions& options, int64_t rows, int64_t n) {
  return cpu::threads_for(options.num_threads, rows, n);
}

}  // namespace

int shard_forward_rounds(const NormOptions& options) {
  api::check_options(options);
  return options.kind == NormKind::kLayerNorm ? 2 : 1;
}

void shard_forward_sums(const NormOptions& options, const ShardForwardArgs& a, int round,
                        const ShardReducedSums& reduced, double* sums) {
  const int rounds = shard_forward_rounds(options);
  api::check_shape(a.rows, a.n);
  check_shard(a.shard, a.n);
  api::check_matrix("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n);
  if (round < 0 || round >= rounds) {
    throw Error("round: expected 0" + std::string(rounds > 1 ? " or 1 (LayerNorm has two rounds of sums)"
                                                               : " (RMSNorm has one round of sums)") +
                ", got " + std::to_string(round));
  }
  if (round == 1) check_reduced(options, {reduced.round0, nullptr}, a.rows, 1);
  check_sums_pointer("sums", sums, a.rows, "rows x kShardSumsPerRow doubles");
  const Region out = sums_region("sums", sums, a.rows);
  api::check_no_overlap(out, api::matrix_region("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n), false);
  if (round == 1) api::check_no_overlap(out, sums_region("reduced.round0", reduced.round0, a.rows), false);

  const Norms norms = norms_of(options, a.shard, a.n);
  calls::ForwardCall call;
  call.norm = norms.local;
  call.rows = a.rows;
  call.dtype = a.x.dtype;
  call.x = a.x.data;
  call.x_stride = a.x.row_stride;
  cpu::run_shard_forward_sums(call, norms.global, round, reduced.round0, sums, threads(options, a.rows, a.n));
}

void shard_forward_apply(const NormOptions& options, const ShardForwardArgs& a, const ShardReducedSums& reduced) {
  const int rounds = shard_forward_rounds(options);
  ForwardArgs f;
  f.rows = a.rows;
  f.n = a.n;
  f.x = a.x;
  f.y = a.y;
  f.weight = a.weight;
  f.bias = a.bias;
  f.saved = a.saved;
  calls::ForwardCall call = api::make_forward_plan(options, f);
  check_shard(a.shard, a.n);
  check_reduced(options, reduced, a.rows, rounds);
  const DType stats = statistics_dtype(a.x.dtype);
  for (const Region& output : {api::matrix_region("y", a.y.data, a.y.dtype, a.y.row_stride, a.rows, a.n),
                               api::vector_region("saved.inv_rms", a.saved.inv_rms, stats, a.rows),
                               api::vector_region("saved.mean", a.saved.mean, stats, a.rows)}) {
    api::check_no_overlap(output, sums_region("reduced.round0", reduced.round0, a.rows), false);
    if (rounds > 1) api::check_no_overlap(output, sums_region("reduced.round1", reduced.round1, a.rows), false);
  }
  const Norms norms = norms_of(options, a.shard, a.n);
  call.norm = norms.local;
  cpu::run_shard_forward_apply(call, norms.global, reduced.round0, reduced.round1, threads(options, a.rows, a.n));
}

void shard_backward_sums(const NormOptions& options, const ShardBackwardArgs& a, double* sums) {
  api::check_options(options);
  api::check_shape(a.rows, a.n);
  check_shard(a.shard, a.n);
  api::check_matrix("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n);
  api::check_matrix("dy", a.dy.data, a.dy.dtype, a.dy.row_stride, a.rows, a.n);
  if (a.dy.dtype != a.x.dtype) {
    throw Error(std::string("dy.dtype: expected x's dtype (") + dtype_name(a.x.dtype) + "), got " +
                dtype_name(a.dy.dtype));
  }
  api::check_parameter("weight", a.weight, a.x.dtype);
  api::check_weight_offset(options, a.weight, a.x.dtype);
  check_saved(options, a.saved);
  check_sums_pointer("sums", sums, a.rows, "rows x kShardSumsPerRow doubles");
  const Region out = sums_region("sums", sums, a.rows);
  const DType stats = statistics_dtype(a.x.dtype);
  for (const Region& input : {api::matrix_region("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n),
                              api::matrix_region("dy", a.dy.data, a.dy.dtype, a.dy.row_stride, a.rows, a.n),
                              api::vector_region("weight", a.weight.data, a.weight.dtype, a.n),
                              api::vector_region("saved.inv_rms", a.saved.inv_rms, stats, a.rows),
                              api::vector_region("saved.mean", a.saved.mean, stats, a.rows)}) {
    api::check_no_overlap(out, input, false);
  }

  const Norms norms = norms_of(options, a.shard, a.n);
  calls::BackwardCall call;
  call.norm = norms.local;
  call.rows = a.rows;
  call.dtype = a.x.dtype;
  call.param_dtype = a.weight.data ? a.weight.dtype : DType::kFloat32;
  call.x = a.x.data;
  call.x_stride = a.x.row_stride;
  call.dy = a.dy.data;
  call.dy_stride = a.dy.row_stride;
  call.weight = a.weight.data;
  call.weight_offset = options.weight_offset;
  call.saved_inv_rms = a.saved.inv_rms;
  call.saved_mean = a.saved.mean;
  cpu::run_shard_backward_sums(call, norms.global, sums, threads(options, a.rows, a.n));
}

void shard_backward_apply(const NormOptions& options, const ShardBackwardArgs& a, const double* reduced) {
  BackwardArgs b;
  b.rows = a.rows;
  b.n = a.n;
  b.x = a.x;
  b.dy = a.dy;
  b.weight = a.weight;
  b.saved = a.saved;
  b.dx = a.dx;
  b.dweight = a.dweight;
  b.dbias = a.dbias;
  calls::BackwardCall call = api::make_backward_plan(options, b);
  check_shard(a.shard, a.n);
  check_saved(options, a.saved);
  check_sums_pointer("reduced", reduced, a.rows, "the all-reduced backward sums");
  const Region in = sums_region("reduced", reduced, a.rows);
  for (const Region& output : {api::matrix_region("dx", a.dx.data, a.dx.dtype, a.dx.row_stride, a.rows, a.n),
                               api::vector_region("dweight", a.dweight.data, a.dweight.dtype, a.n),
                               api::vector_region("dbias", a.dbias.data, a.dbias.dtype, a.n)}) {
    api::check_no_overlap(output, in, false);
  }
  const Norms norms = norms_of(options, a.shard, a.n);
  call.norm = norms.local;
  cpu::run_shard_backward_apply(call, norms.global, reduced, threads(options, a.rows, a.n), a.dweight, a.dbias);
}

}  // namespace rmsnorm
