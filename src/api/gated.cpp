// The gated and grouped RMSNorm entry points (SPEC section 10): validate, then
// run on the CPU engine. x, y, dy, dx, weight and the saved statistics are
// checked by the unsharded plan builders; this file adds the group size, the
// gate and its gradient, and what the norm allows (RMSNorm, p = 1, one rounding).
#include <string>
#include <vector>

#include "rmsnorm/rmsnorm.hpp"
#include "src/api/plans.hpp"
#include "src/api/validate.hpp"
#include "src/cpu/engine.hpp"

namespace rmsnorm {
namespace {

using api::Region;

void check_gated_options(const NormOptions& options) {
  api::check_options(options);
  if (options.kind != NormKind::kRMSNorm) {
    throw Error("options.kind: gated and grouped norms are RMSNorm (SPEC section 10); got LayerNorm");
  }
  if (options.p != 1) {
    throw Error("options.p: gated and grouped RMSNorm normalize whole groups; expected p = 1, got " +
                std::to_string(options.p));
  }
  if (options.rounding != Rounding::kSingle) {
    throw Error("options.rounding: gated and grouped RMSNorm round once; expected single, got before_weight");
  }
}

// m, with 0 meaning n.
int64_t checked_group_size(int64_t group_size, int64_t n) {
  if (group_size == 0) return n;
  if (group_size < 0 || n % group_size != 0) {
    throw Error("group_size: expected a divisor of n = " + std::to_string(n) + " (or 0 for one group), got " +
                std::to_string(group_size));
  }
  return group_size;
}

void check_gate(Gate gate, const ConstMatrix& z, const ConstMatrix& x, int64_t rows, int64_t n) {
  if (gate != Gate::kNone && gate != Gate::kBeforeNorm && gate != Gate::kAfterNorm) {
    throw Error("gate: expected none, before_norm or after_norm, got value " + std::to_string(static_cast<int>(gate)));
  }
  if (gate == Gate::kNone) return;
  if (!z.data && rows > 0) throw Error("z: null pointer, but the gate is on (gate before or after the norm)");
  api::check_matrix("z", z.data, z.dtype, z.row_stride, rows, n);
  if (z.dtype != x.dtype) {
    throw Error(std::string("z.dtype: expected x's dtype (") + dtype_name(x.dtype) + "), got " + dtype_name(z.dtype));
  }
}

Region z_region(Gate gate, const ConstMatrix& z, int64_t rows, int64_t n) {
  return api::matrix_region("z", gate == Gate::kNone ? nullptr : z.data, z.dtype, z.row_stride, rows, n);
}

Region groups_region(const char* name, const void* data, DType data_dtype, int64_t rows, int64_t groups) {
  return api::vector_region(name, data, statistics_dtype(data_dtype), rows * groups);
}

}  // namespace

void gated_forward(const NormOptions& options, const GatedForwardArgs& a) {
  check_gated_options(options);
  if (a.saved.mean) throw Error("saved.mean: expected null; gated and grouped RMSNorm save 1/r only");
  ForwardArgs f;
  f.rows = a.rows;
  f.n = a.n;
  f.x = a.x;
  f.y = a.y;
  f.weight = a.weight;
  f.saved = {a.saved.inv_rms, nullptr};
  calls::ForwardCall call = api::make_forward_plan(options, f);
  const int64_t m = checked_group_size(a.group_size, a.n);
  check_gate(a.gate, a.z, a.x, a.rows, a.n);
  const Region z = z_region(a.gate, a.z, a.rows, a.n);
  const Region inv_rms = groups_region("saved.inv_rms", a.saved.inv_rms, a.x.dtype, a.rows, a.n / m);
  api::check_no_overlap(api::matrix_region("y", a.y.data, a.y.dtype, a.y.row_stride, a.rows, a.n), z, false);
  for (const Region& input : {api::matrix_region("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n), z,
                              api::vector_region("weight", a.weight.data, a.weight.dtype, a.n),
                              api::matrix_region("y", a.y.data, a.y.dtype, a.y.row_stride, a.rows, a.n)}) {
    api::check_no_overlap(inv_rms, input, false);
  }
  calls::Gating gating;
  gating.group_size = m;
  gating.gate = a.gate;
  gating.z = a.gate == Gate::kNone ? nullptr : a.z.data;
  gating.z_stride = a.z.row_stride;
  cpu::run_gated_forward(call, gating, cpu::threads_for(options.num_threads, a.rows, a.n));
}

void gated_backward(const NormOptions& options, const GatedBackwardArgs& a) {
  check_gated_options(options);
  if (a.saved.mean) throw Error("saved.mean: expected null; gated and grouped RMSNorm save 1/r only");
  BackwardArgs b;
  b.rows = a.rows;
  b.n = a.n;
  b.x = a.x;
  b.dy = a.dy;
  b.weight = a.weight;
  b.saved = {a.saved.inv_rms, nullptr};
  b.dx = a.dx;
  b.dweight = a.dweight;
  calls::BackwardCall call = api::make_backward_plan(options, b);
  const int64_t m = checked_group_size(a.group_size, a.n);
  check_gate(a.gate, a.z, a.x, a.rows, a.n);
  const bool gated = a.gate != Gate::kNone;
  if (gated) {
    if (!a.dz.data && a.rows > 0) throw Error("dz: null pointer, but the gate is on: its gradient is an output");
    api::check_matrix("dz", a.dz.data, a.dz.dtype, a.dz.row_stride, a.rows, a.n);
    if (a.dz.dtype != a.x.dtype) {
      throw Error(std::string("dz.dtype: expected x's dtype (") + dtype_name(a.x.dtype) + "), got " +
                  dtype_name(a.dz.dtype));
    }
  }
  const Region z = z_region(a.gate, a.z, a.rows, a.n);
  const Region dz = api::matrix_region("dz", gated ? a.dz.data : nullptr, a.dz.dtype, a.dz.row_stride, a.rows, a.n);
  const Region inv_rms = groups_region("saved.inv_rms", a.saved.inv_rms, a.x.dtype, a.rows, a.n / m);
  const Region dx = api::matrix_region("dx", a.dx.data, a.dx.dtype, a.dx.row_stride, a.rows, a.n);
  const Region dweight = api::vector_region("dweight", a.dweight.data, a.dweight.dtype, a.n);
  for (const Region& output : {dx, dweight}) {
    api::check_no_overlap(output, z, false);
    api::check_no_overlap(output, inv_rms, false);
  }
  for (const Region& other : {api::matrix_region("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n), z,
                              api::matrix_region("dy", a.dy.data, a.dy.dtype, a.dy.row_stride, a.rows, a.n),
                              api::vector_region("weight", a.weight.data, a.weight.dtype, a.n), inv_rms, dx,
                              dweight}) {
    api::check_no_overlap(dz, other, false);
  }
  calls::Gating gating;
  gating.group_size = m;
  gating.gate = a.gate;
  gating.z = gated ? a.z.data : nullptr;
  gating.z_stride = a.z.row_stride;
  gating.dz = gated ? a.dz.data : nullptr;
  gating.dz_stride = a.dz.row_stride;
  cpu::run_gated_backward(call, gating, cpu::threads_for(options.num_threads, a.rows, a.n), a.dweight);
}

}  // namespace rmsnorm
