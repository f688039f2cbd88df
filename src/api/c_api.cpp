// The C API: translate to the C++ API and turn exceptions into statuses.
#include "rmsnorm/rmsnorm.h"

#include <cstring>
#include <functional>
#include <new>
#include <string>

#include "rmsnorm/rmsnorm.hpp"
#include "rmsnorm/version.h"
#include "src/api/c_support.hpp"

static_assert(RMSNORM_SHARD_SUMS_PER_ROW == rmsnorm::kShardSumsPerRow, "the C and C++ APIs agree");

namespace {

thread_local std::string g_last_error;
thread_local std::string g_simd_target;

// A C caller can pass any integer where an enum is declared; loading one that
// is not an enumerator into the enum type is undefined behaviour. So every
// enum argument is read as its integer and checked before it is converted.
template <class CEnum>
int as_int(const CEnum& value) {  // by reference: no load as the enum type
  int raw;
  static_assert(sizeof(CEnum) == sizeof(int), "C enums are int-sized here");
  std::memcpy(&raw, &value, sizeof raw);
  return raw;
}

[[noreturn]] void reject(const char* name, int value, const char* expected) {
  throw rmsnorm::Error(std::string(name) + ": expected " + expected + ", got value " + std::to_string(value));
}

rmsnorm::DType checked_dtype(const rmsnorm_dtype& d, const char* name) {
  const int raw = as_int(d);
  if (raw < RMSNORM_FLOAT32 || raw > RMSNORM_FLOAT64) {
    reject(name, raw, "RMSNORM_FLOAT32, RMSNORM_BFLOAT16, RMSNORM_FLOAT16 or RMSNORM_FLOAT64 (0-3)");
  }
  return static_cast<rmsnorm::DType>(raw);
}

}  // namespace

namespace rmsnorm::c_api {

rmsnorm_status guarded(const std::function<void()>& f) {
  try {
    f();
    g_last_error.clear();
    return RMSNORM_OK;
  } catch (const rmsnorm::Error& e) {
    g_last_error = e.what();
    return RMSNORM_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory";
    return RMSNORM_INTERNAL_ERROR;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return RMSNORM_INTERNAL_ERROR;
  }
}

NormOptions to_options(const rmsnorm_options* o) {
  if (!o) throw rmsnorm::Error("options: null pointer (use rmsnorm_default_options())");
  const int kind = as_int(o->kind), placement = as_int(o->eps_placement), rounding = as_int(o->rounding);
  if (kind != RMSNORM_KIND_RMSNORM && kind != RMSNORM_KIND_LAYERNORM) {
    reject("options.kind", kind, "RMSNORM_KIND_RMSNORM or RMSNORM_KIND_LAYERNORM (0-1)");
  }
  if (placement != RMSNORM_EPS_INSIDE && placement != RMSNORM_EPS_OUTSIDE) {
    reject("options.eps_placement", placement, "RMSNORM_EPS_INSIDE or RMSNORM_EPS_OUTSIDE (0-1)");
  }
  if (rounding != RMSNORM_ROUNDING_SINGLE && rounding != RMSNORM_ROUNDING_BEFORE_WEIGHT) {
    reject("options.rounding", rounding, "RMSNORM_ROUNDING_SINGLE or RMSNORM_ROUNDING_BEFORE_WEIGHT (0-1)");
  }
  NormOptions options;
  options.kind = static_cast<NormKind>(kind);
  options.weight_offset = o->weight_offset;
  options.rounding = static_cast<Rounding>(rounding);
  options.eps = o->eps;
  options.eps_placement = static_cast<EpsPlacement>(placement);
  options.p = o->p;
  options.num_threads = o->num_threads;
  return options;
}

ForwardArgs forward_args(int64_t rows, int64_t n, const rmsnorm_dtype& data_dtype, const void* x, int64_t x_stride, void* y,
                         int64_t y_stride, const void* weight, const void* bias, const rmsnorm_dtype& param_dtype,
                         void* saved_inv_rms, void* saved_mean) {
  ForwardArgs a;
  a.rows = rows;
  a.n = n;
  a.x = {x, checked_dtype(data_dtype, "dtype"), x_stride};
  a.y = {y, checked_dtype(data_dtype, "dtype"), y_stride};
  a.weight = {weight, checked_dtype(param_dtype, "param_dtype")};
  a.bias = {bias, checked_dtype(param_dtype, "param_dtype")};
  a.saved = {saved_inv_rms, saved_mean};
  return a;
}

FusedAddArgs fused_add_args(int64_t rows, int64_t n, const rmsnorm_dtype& data_dtype, const void* x, int64_t x_stride,
                            void* residual, int64_t residual_stride, void* y, int64_t y_stride, const void* weight,
                            const void* bias, const rmsnorm_dtype& param_dtype) {
  FusedAddArgs a;
  a.rows = rows;
  a.n = n;
  a.x = {x, checked_dtype(data_dtype, "dtype"), x_stride};
  a.residual = {residual, checked_dtype(data_dtype, "dtype"), residual_stride};
  a.y = {y, checked_dtype(data_dtype, "dtype"), y_stride};
  a.weight = {weight, checked_dtype(param_dtype, "param_dtype")};
  a.bias = {bias, checked_dtype(param_dtype, "param_dtype")};
  return a;
}

BackwardArgs backward_args(int64_t rows, int64_t n, const rmsnorm_dtype& data_dtype, const void* x, int64_t x_stride,
                           const void* dy, int64_t dy_stride, const void* weight, const rmsnorm_dtype& param_dtype,
                           const void* saved_inv_rms, const void* saved_mean, void* dx, int64_t dx_stride,
                           void* dweight, float* dbias) {
  BackwardArgs a;
  a.rows = rows;
  a.n = n;
  a.x = {x, checked_dtype(data_dtype, "dtype"), x_stride};
  a.dy = {dy, checked_dtype(data_dtype, "dtype"), dy_stride};
  a.weight = {weight, checked_dtype(param_dtype, "param_dtype")};
  a.saved = {saved_inv_rms, saved_mean};
  a.dx = {dx, checked_dtype(data_dtype, "dtype"), dx_stride};
  a.dweight = {dweight, checked_dtype(param_dtype, "param_dtype")};
  a.dbias = {dbias, DType::kFloat32};
  return a;
}

}  // namespace rmsnorm::c_api

extern "C" {

using namespace rmsnorm::c_api;

rmsnorm_options rmsnorm_default_options(void) {
  const rmsnorm::NormOptions d;
  rmsnorm_options o;
  o.kind = static_cast<rmsnorm_kind>(d.kind);
  o.eps = d.eps;
  o.eps_placement = static_cast<rmsnorm_eps_placement>(d.eps_placement);
  o.p = d.p;
  o.num_threads = d.num_threads;
  o.weight_offset = d.weight_offset;
  o.rounding = static_cast<rmsnorm_rounding>(d.rounding);
  return o;
}

rmsnorm_status rmsnorm_forward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype data_dtype,
                               const void* x, int64_t x_stride, void* y, int64_t y_stride, const void* weight,
                               const void* bias, rmsnorm_dtype param_dtype, void* saved_inv_rms,
                               void* saved_mean) {
  return guarded([&] {
    rmsnorm::forward(to_options(options), forward_args(rows, n, data_dtype, x, x_stride, y, y_stride, weight, bias,
                                                       param_dtype, saved_inv_rms, saved_mean));
  });
}

rmsnorm_status rmsnorm_fused_add_forward(const rmsnorm_options* options, int64_t rows, int64_t n,
                                         rmsnorm_dtype data_dtype, const void* x, int64_t x_stride,
                                         void* residual, int64_t residual_stride, void* y, int64_t y_stride,
                                         const void* weight, const void* bias, rmsnorm_dtype param_dtype) {
  return guarded([&] {
    rmsnorm::fused_add_forward(to_options(options),
                               fused_add_args(rows, n, data_dtype, x, x_stride, residual, residual_stride, y, y_stride,
                                              weight, bias, param_dtype));
  });
}

rmsnorm_status rmsnorm_backward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype data_dtype,
                                const void* x, int64_t x_stride, const void* dy, int64_t dy_stride,
                                const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                const void* saved_mean, void* dx, int64_t dx_stride, void* dweight,
                                float* dbias) {
  return guarded([&] {
    rmsnorm::backward(to_options(options), backward_args(rows, n, data_dtype, x, x_stride, dy, dy_stride, weight,
                                                         param_dtype, saved_inv_rms, saved_mean, dx, dx_stride,
                                                         dweight, dbias));
  });
}

rmsnorm_status rmsnorm_fused_add_backward(const rmsnorm_options* options, int64_t rows, int64_t n,
                                          rmsnorm_dtype data_dtype, const void* h, int64_t h_stride, const void* dy,
                                          int64_t dy_stride, const void* dh_out, int64_t dh_out_stride,
                                          const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                          const void* saved_mean, void* dh, int64_t dh_stride, void* dweight,
                                          float* dbias) {
  return guarded([&] {
    const rmsnorm::BackwardArgs b = backward_args(rows, n, data_dtype, h, h_stride, dy, dy_stride, weight, param_dtype,
                                         saved_inv_rms, saved_mean, dh, dh_stride, dweight, dbias);
    rmsnorm::FusedAddBackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.h = b.x;
    a.dy = b.dy;
    a.dh_out = {dh_out, b.x.dtype, dh_out_stride};
    a.weight = b.weight;
    a.saved = b.saved;
    a.dh = b.dx;
    a.dweight = b.dweight;
    a.dbias = b.dbias;
    rmsnorm::fused_add_backward(to_options(options), a);
  });
}

namespace {

rmsnorm::Gate checked_gate(const rmsnorm_gate& gate) {
  const int raw = as_int(gate);
  if (raw < RMSNORM_GATE_NONE || raw > RMSNORM_GATE_AFTER_NORM) {
    reject("gate", raw, "RMSNORM_GATE_NONE, RMSNORM_GATE_BEFORE_NORM or RMSNORM_GATE_AFTER_NORM (0-2)");
  }
  return static_cast<rmsnorm::Gate>(raw);
}

}  // namespace

rmsnorm_status rmsnorm_gated_forward(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t group_size,
                                     rmsnorm_gate gate, rmsnorm_dtype data_dtype, const void* x, int64_t x_stride,
                                     const void* z, int64_t z_stride, void* y, int64_t y_stride, const void* weight,
                                     rmsnorm_dtype param_dtype, void* saved_inv_rms) {
  return guarded([&] {
    const rmsnorm::ForwardArgs f = forward_args(rows, n, data_dtype, x, x_stride, y, y_stride, weight, nullptr,
                                                param_dtype, saved_inv_rms, nullptr);
    rmsnorm::GatedForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.group_size = group_size;
    a.gate = checked_gate(gate);
    a.x = f.x;
    a.z = {z, f.x.dtype, z_stride};
    a.y = f.y;
    a.weight = f.weight;
    a.saved = f.saved;
    rmsnorm::gated_forward(to_options(options), a);
  });
}

rmsnorm_status rmsnorm_gated_backward(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t group_size,
                                      rmsnorm_gate gate, rmsnorm_dtype data_dtype, const void* x, int64_t x_stride,
                                      const void* z, int64_t z_stride, const void* dy, int64_t dy_stride,
                                      const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                      void* dx, int64_t dx_stride, void* dz, int64_t dz_stride, void* dweight) {
  return guarded([&] {
    const rmsnorm::BackwardArgs b = backward_args(rows, n, data_dtype, x, x_stride, dy, dy_stride, weight,
                                                  param_dtype, saved_inv_rms, nullptr, dx, dx_stride, dweight, nullptr);
    rmsnorm::GatedBackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.group_size = group_size;
    a.gate = checked_gate(gate);
    a.x = b.x;
    a.z = {z, b.x.dtype, z_stride};
    a.dy = b.dy;
    a.weight = b.weight;
    a.saved = b.saved;
    a.dx = b.dx;
    a.dz = {dz, b.x.dtype, dz_stride};
    a.dweight = b.dweight;
    rmsnorm::gated_backward(to_options(options), a);
  });
}

rmsnorm_status rmsnorm_shard_forward_rounds(const rmsnorm_options* options, int* rounds) {
  return guarded([&] {
    const int r = rmsnorm::shard_forward_rounds(to_options(options));
    if (!rounds) throw rmsnorm::Error("rounds: null pointer");
    *rounds = r;
  });
}

rmsnorm_status rmsnorm_shard_forward_sums(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                          int64_t column_begin, rmsnorm_dtype data_dtype, const void* x,
                                          int64_t x_stride, int round, const double* reduced_round0, double* sums) {
  return guarded([&] {
    rmsnorm::ShardForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.shard = {global_n, column_begin};
    a.x = forward_args(rows, n, data_dtype, x, x_stride, nullptr, 0, nullptr, nullptr, RMSNORM_FLOAT32, nullptr,
                       nullptr)
              .x;
    rmsnorm::shard_forward_sums(to_options(options), a, round, {reduced_round0, nullptr}, sums);
  });
}

rmsnorm_status rmsnorm_shard_forward_apply(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                           int64_t column_begin, rmsnorm_dtype data_dtype, const void* x,
                                           int64_t x_stride, void* y, int64_t y_stride, const void* weight,
                                           const void* bias, rmsnorm_dtype param_dtype, const double* reduced_round0,
                                           const double* reduced_round1, void* saved_inv_rms, void* saved_mean) {
  return guarded([&] {
    const rmsnorm::ForwardArgs f = forward_args(rows, n, data_dtype, x, x_stride, y, y_stride, weight, bias,
                                                param_dtype, saved_inv_rms, saved_mean);
    rmsnorm::ShardForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.shard = {global_n, column_begin};
    a.x = f.x;
    a.y = f.y;
    a.weight = f.weight;
    a.bias = f.bias;
    a.saved = f.saved;
    rmsnorm::shard_forward_apply(to_options(options), a, {reduced_round0, reduced_round1});
  });
}

namespace {

rmsnorm::ShardBackwardArgs shard_backward_args(const rmsnorm::BackwardArgs& b, int64_t global_n, int64_t column_begin) {
  rmsnorm::ShardBackwardArgs a;
  a.rows = b.rows;
  a.n = b.n;
  a.shard = {global_n, column_begin};
  a.x = b.x;
  a.dy = b.dy;
  a.weight = b.weight;
  a.saved = b.saved;
  a.dx = b.dx;
  a.dweight = b.dweight;
  a.dbias = b.dbias;
  return a;
}

}  // namespace

rmsnorm_status rmsnorm_shard_backward_sums(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                           int64_t column_begin, rmsnorm_dtype data_dtype, const void* x,
                                           int64_t x_stride, const void* dy, int64_t dy_stride, const void* weight,
                                           rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                           const void* saved_mean, double* sums) {
  return guarded([&] {
    const rmsnorm::BackwardArgs b = backward_args(rows, n, data_dtype, x, x_stride, dy, dy_stride, weight,
                                                  param_dtype, saved_inv_rms, saved_mean, nullptr, 0, nullptr, nullptr);
    rmsnorm::shard_backward_sums(to_options(options), shard_backward_args(b, global_n, column_begin), sums);
  });
}

rmsnorm_status rmsnorm_shard_backward_apply(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                            int64_t column_begin, rmsnorm_dtype data_dtype, const void* x,
                                            int64_t x_stride, const void* dy, int64_t dy_stride, const void* weight,
                                            rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                            const void* saved_mean, const double* reduced, void* dx,
                                            int64_t dx_stride, void* dweight, float* dbias) {
  return guarded([&] {
    const rmsnorm::BackwardArgs b = backward_args(rows, n, data_dtype, x, x_stride, dy, dy_stride, weight,
                                                  param_dtype, saved_inv_rms, saved_mean, dx, dx_stride, dweight,
                                                  dbias);
    rmsnorm::shard_backward_apply(to_options(options), shard_backward_args(b, global_n, column_begin), reduced);
  });
}

const char* rmsnorm_last_error(void) { return g_last_error.c_str(); }

const char* rmsnorm_version(void) { return RMSNORM_VERSION_STRING; }

const char* rmsnorm_simd_target(void) {
  g_simd_target = rmsnorm::runtime_info().simd_target;
  return g_simd_target.c_str();
}

}  // extern "C"
