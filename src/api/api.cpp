// The public C++ API: validate every argument (nothing is written when one is
// rejected), translate to a plan, and hand it to the CPU engine. The plan
// builders (src/api/plans.hpp) are shared with the CUDA front end.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

#include "rmsnorm/rmsnorm.hpp"
#include "rmsnorm/version.h"
#include "src/api/plans.hpp"
#include "src/api/validate.hpp"
#include "src/cpu/engine.hpp"

namespace rmsnorm {
namespace {

using api::Region;

// The parameters' dtype for the kernels: weight's, else bias's, else float32.
DType parameter_dtype(const ConstVector& weight, const ConstVector& bias) {
  if (weight.data) return weight.dtype;
  if (bias.data) return bias.dtype;
  return DType::kFloat32;
}

void check_parameters(const ConstVector& weight, const ConstVector& bias, DType data_dtype) {
  api::check_parameter("weight", weight, data_dtype);
  api::check_parameter("bias", bias, data_dtype);
  if (weight.data && bias.data && weight.dtype != bias.dtype) {
    throw Error(std::string("bias.dtype: expected the weight's dtype (") + dtype_name(weight.dtype) + "), got " +
                dtype_name(bias.dtype));
  }
}

bool is_sixteen_bit(DType dtype) { return dtype == DType::kBFloat16 || dtype == DType::kFloat16; }

// The checks and plan shared by forward and fused_add_forward.
calls::ForwardCall forward_plan(const NormOptions& options, int64_t rows, int64_t n, const ConstMatrix& x,
                              const Matrix& y, const ConstVector& weight, const ConstVector& bias,
                              const Statistics& saved, api::RegionList& inputs) {
  api::check_options(options);
  api::check_shape(rows, n);
  api::check_matrix("x", x.data, x.dtype, x.row_stride, rows, n);
  api::check_matrix("y", y.data, y.dtype, y.row_stride, rows, n);
  if (y.dtype != x.dtype) {
    throw Error(std::string("y.dtype: expected x's dtype (") + dtype_name(x.dtype) + "), got " + dtype_name(y.dtype));
  }
  check_parameters(weight, bias, x.dtype);
  api::check_weight_offset(options, weight, x.dtype);
  const DType stats_dtype = statistics_dtype(x.dtype);
  inputs.push_back(api::vector_region("weight", weight.data, weight.dtype, n));
  inputs.push_back(api::vector_region("bias", bias.data, bias.dtype, n));
  const Region y_region = api::matrix_region("y", y.data, y.dtype, y.row_stride, rows, n);
  const Region inv_rms = api::vector_region("saved.inv_rms", saved.inv_rms, stats_dtype, rows);
  const Region mean = api::vector_region("saved.mean", saved.mean, stats_dtype, rows);
  for (const Region& input : inputs) {
    const bool in_place = std::strcmp(input.name, "x") == 0;
    api::check_no_overlap(y_region, input, in_place);
    api::check_no_overlap(inv_rms, input, false);
    api::check_no_overlap(mean, input, false);
  }
  api::check_no_overlap(inv_rms, y_region, false);
  api::check_no_overlap(mean, y_region, false);
  api::check_no_overlap(inv_rms, mean, false);

  calls::ForwardCall plan;
  plan.norm = api::norm_params(options, n);
  plan.rows = rows;
  plan.dtype = x.dtype;
  plan.param_dtype = parameter_dtype(weight, bias);
  plan.x = x.data;
  plan.x_stride = x.row_stride;
  plan.y = y.data;
  plan.y_stride = y.row_stride;
  plan.weight = weight.data;
  plan.bias = bias.data;
  plan.weight_offset = options.weight_offset;
  plan.round_before_weight = options.rounding == Rounding::kBeforeWeight && is_sixteen_bit(x.dtype);
  plan.saved_inv_rms = saved.inv_rms;
  plan.saved_mean = saved.mean;
  return plan;
}

}  // namespace

int64_t partial_count(int64_t n, double p) {
  if (n < 1) throw Error("n: expected >= 1, got " + std::to_string(n));
  if (!(p > 0 && p <= 1)) throw Error("p: expected 0 < p <= 1, got " + std::to_string(p));
  if (p == 1) return n;  // every call of the full norms: skip the long-double arithmetic below
  // p is a double: 0.1 is stored as 0.1000000000000000055..., so n * p for
  // n = 10 lies just above 1 and a plain ceil gives 2. A user who writes
  // p = 0.1 means a tenth: when n * p is within the rounding of p (n ulps of p,
  // plus the product's own rounding) of an integer, that integer is k.
  const long double product = static_cast<long double>(n) * p;
  // rint, not nearbyint: the same integer, without saving and restoring the
  // floating-point environment (nearbyintl did, 10% of a 32x256 pRMSNorm call).
  const long double nearest = std::rint(product);
  const long double p_rounding = static_cast<long double>(n) * std::numeric_limits<double>::epsilon() * p;
  const long double exact_k = std::fabs(product - nearest) <= p_rounding ? nearest : std::ceil(product);
  return std::clamp<int64_t>(static_cast<int64_t>(exact_k), 1, n);
}

DType statistics_dtype(DType data_dtype) {
  return data_dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
}

size_t dtype_size(DType dtype) { return static_cast<size_t>(api::element_bytes(dtype)); }

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFloat16:
      return "float16";
    case DType::kFloat64:
      return "float64";
  }
  return "invalid";
}

DType parse_dtype(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "float32" || s == "f32" || s == "fp32" || s == "float") return DType::kFloat32;
  if (s == "bfloat16" || s == "bf16") return DType::kBFloat16;
  if (s == "float16" || s == "f16" || s == "fp16" || s == "half") return DType::kFloat16;
  if (s == "float64" || s == "f64" || s == "fp64" || s == "double") return DType::kFloat64;
  throw Error("dtype: expected float32, bfloat16, float16 or float64, got '" + name + "'");
}

namespace api {

// A gain of offset + g needs a g, and the offset is added in the arithmetic
// type (float32 unless the data are float64), so it must be a float32 there.
void check_weight_offset(const NormOptions& options, const ConstVector& weight, DType data_dtype) {
  if (options.weight_offset != 0 && !weight.data) {
    throw Error("options.weight_offset: " + std::to_string(options.weight_offset) +
                " needs a weight (the gain is offset + weight), but weight.data is null");
  }
  if (data_dtype != DType::kFloat64 && std::fabs(options.weight_offset) > std::numeric_limits<float>::max()) {
    throw Error("options.weight_offset: expected a value within float32's range for " +
                std::string(dtype_name(data_dtype)) + " data (it is added in float32), got " +
                std::to_string(options.weight_offset));
  }
}

calls::NormParams norm_params(const NormOptions& o, int64_t n) {
  calls::NormParams p;
  p.centered = o.kind == NormKind::kLayerNorm;
  p.eps_outside = o.eps_placement == EpsPlacement::kOutside;
  p.eps = o.eps;
  p.n = n;
  p.k = p.centered ? n : partial_count(n, o.p);
  return p;
}

calls::ForwardCall make_forward_plan(const NormOptions& options, const ForwardArgs& a) {
  // Shape and extent first: a region's byte counts are products that must not overflow.
  api::check_shape(a.rows, a.n);
  api::check_matrix("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n);
  api::RegionList inputs{api::matrix_region("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n)};
  return forward_plan(options, a.rows, a.n, a.x, a.y, a.weight, a.bias, a.saved, inputs);
}

calls::ForwardCall make_fused_add_plan(const NormOptions& options, const FusedAddArgs& a) {
  api::check_shape(a.rows, a.n);
  api::check_matrix("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n);
  api::check_matrix("residual", a.residual.data, a.residual.dtype, a.residual.row_stride, a.rows, a.n);
  if (a.residual.dtype != a.x.dtype) {
    throw Error(std::string("residual.dtype: expected x's dtype (") + dtype_name(a.x.dtype) + "), got " +
                dtype_name(a.residual.dtype));
  }
  const Region residual =
      api::matrix_region("residual", a.residual.data, a.residual.dtype, a.residual.row_stride, a.rows, a.n);
  api::RegionList inputs{api::matrix_region("x", a.x.data, a.x.dtype, a.x.row_stride, a.rows, a.n), residual};
  calls::ForwardCall plan = forward_plan(options, a.rows, a.n, a.x, a.y, a.weight, a.bias, a.saved, inputs);
  // The residual is written: it must not share memory with x or the parameters.
  api::check_no_overlap(residual, inputs[0], false);
  api::check_no_overlap(residual, inputs[2], false);
  api::check_no_overlap(residual, inputs[3], false);
  plan.residual = a.residual.data;
  plan.residual_stride = a.residual.row_stride;
  return plan;
}

namespace {

// What the caller calls x and dx (fused_add_backward: h and dh), for messages.
struct BackwardNames {
  const char* x;
  const char* dx;
};

calls::BackwardCall backward_plan(const NormOptions& options, const BackwardArgs& a, const BackwardNames& names) {
  api::check_options(options);
  api::check_shape(a.rows, a.n);
  const int64_t rows = a.rows, n = a.n;
  api::check_matrix(names.x, a.x.data, a.x.dtype, a.x.row_stride, rows, n);
  api::check_matrix("dy", a.dy.data, a.dy.dtype, a.dy.row_stride, rows, n);
  api::check_matrix(names.dx, a.dx.data, a.dx.dtype, a.dx.row_stride, rows, n);
  for (const auto& [name, dtype] : {std::pair{"dy", a.dy.dtype}, std::pair{names.dx, a.dx.dtype}}) {
    if (dtype != a.x.dtype) {
      throw Error(std::string(name) + ".dtype: expected " + names.x + "'s dtype (" + dtype_name(a.x.dtype) +
                  "), got " + dtype_name(dtype));
    }
  }
  api::check_parameter("weight", a.weight, a.x.dtype);
  api::check_weight_offset(options, a.weight, a.x.dtype);
  if (a.dweight.data) {
    if (!a.weight.data) throw Error("dweight: requested, but there is no weight (weight.data is null)");
    if (a.dweight.dtype != a.weight.dtype) {
      throw Error(std::string("dweight.dtype: expected the weight's dtype (") + dtype_name(a.weight.dtype) +
                  "), got " + dtype_name(a.dweight.dtype));
    }
  }
  if (a.dbias.data) {
    api::check_dtype(a.dbias.dtype, "dbias");
    if (a.dbias.dtype != DType::kFloat32 && a.dbias.dtype != a.x.dtype) {
      throw Error(std::string("dbias.dtype: expected float32 or ") + names.x + "'s dtype (" +
                  dtype_name(a.x.dtype) + "), got " + dtype_name(a.dbias.dtype));
    }
  }
  const DType stats_dtype = statistics_dtype(a.x.dtype);
  const api::RegionList inputs{
      api::matrix_region(names.x, a.x.data, a.x.dtype, a.x.row_stride, rows, n),
      api::matrix_region("dy", a.dy.data, a.dy.dtype, a.dy.row_stride, rows, n),
      api::vector_region("weight", a.weight.data, a.weight.dtype, n),
      api::vector_region("saved.inv_rms", a.saved.inv_rms, stats_dtype, rows),
      api::vector_region("saved.mean", a.saved.mean, stats_dtype, rows)};
  const api::RegionList outputs{api::matrix_region(names.dx, a.dx.data, a.dx.dtype, a.dx.row_stride, rows, n),
                                    api::vector_region("dweight", a.dweight.data, a.dweight.dtype, n),
                                    api::vector_region("dbias", a.dbias.data, a.dbias.dtype, n)};
  for (size_t o = 0; o < outputs.size(); ++o) {
    for (const Region& input : inputs) {
      // dx may replace dy in place: dy is read before dx is written, element by element.
      api::check_no_overlap(outputs[o], input, o == 0 && std::strcmp(input.name, "dy") == 0);
    }
    for (size_t other = o + 1; other < outputs.size(); ++other) api::check_no_overlap(outputs[o], outputs[other], false);
  }

  calls::BackwardCall plan;
  plan.norm = api::norm_params(options, n);
  plan.rows = rows;
  plan.dtype = a.x.dtype;
  plan.param_dtype = a.weight.data ? a.weight.dtype : DType::kFloat32;
  plan.x = a.x.data;
  plan.x_stride = a.x.row_stride;
  plan.dy = a.dy.data;
  plan.dy_stride = a.dy.row_stride;
  plan.dx = a.dx.data;
  plan.dx_stride = a.dx.row_stride;
  plan.weight = a.weight.data;
  plan.weight_offset = options.weight_offset;
  plan.saved_inv_rms = a.saved.inv_rms;
  plan.saved_mean = a.saved.mean;
  plan.want_dweight = a.dweight.data != nullptr;
  plan.want_dbias = a.dbias.data != nullptr;
  return plan;
}

}  // namespace

calls::BackwardCall make_backward_plan(const NormOptions& options, const BackwardArgs& a) {
  return backward_plan(options, a, {"x", "dx"});
}

calls::BackwardCall make_fused_add_backward_plan(const NormOptions& options, const FusedAddBackwardArgs& a) {
  BackwardArgs b;
  b.rows = a.rows;
  b.n = a.n;
  b.x = a.h;
  b.dy = a.dy;
  b.weight = a.weight;
  b.saved = a.saved;
  b.dx = a.dh;
  b.dweight = a.dweight;
  b.dbias = a.dbias;
  calls::BackwardCall plan = backward_plan(options, b, {"h", "dh"});
  if (a.dh_out.data) {
    api::check_matrix("dh_out", a.dh_out.data, a.dh_out.dtype, a.dh_out.row_stride, a.rows, a.n);
    if (a.dh_out.dtype != a.h.dtype) {
      throw Error(std::string("dh_out.dtype: expected h's dtype (") + dtype_name(a.h.dtype) + "), got " +
                  dtype_name(a.dh_out.dtype));
    }
    const Region dh_out = api::matrix_region("dh_out", a.dh_out.data, a.dh_out.dtype, a.dh_out.row_stride, a.rows, a.n);
    // dh may replace dh_out in place (it is read before dh is written); the
    // other outputs must not touch it.
    api::check_no_overlap(api::matrix_region("dh", a.dh.data, a.dh.dtype, a.dh.row_stride, a.rows, a.n), dh_out, true);
    api::check_no_overlap(api::vector_region("dweight", a.dweight.data, a.dweight.dtype, a.n), dh_out, false);
    api::check_no_overlap(api::vector_region("dbias", a.dbias.data, a.dbias.dtype, a.n), dh_out, false);
    plan.dh_out = a.dh_out.data;
    plan.dh_out_stride = a.dh_out.row_stride;
  }
  return plan;
}

}  // namespace api

void forward(const NormOptions& options, const ForwardArgs& a) {
  cpu::run_forward(api::make_forward_plan(options, a), cpu::threads_for(options.num_threads, a.rows, a.n));
}

void fused_add_forward(const NormOptions& options, const FusedAddArgs& a) {
  cpu::run_forward(api::make_fused_add_plan(options, a), cpu::threads_for(options.num_threads, a.rows, a.n));
}

void backward(const NormOptions& options, const BackwardArgs& a) {
  cpu::run_backward(api::make_backward_plan(options, a), cpu::threads_for(options.num_threads, a.rows, a.n),
                    a.dweight, a.dbias);
}

void fused_add_backward(const NormOptions& options, const FusedAddBackwardArgs& a) {
  cpu::run_backward(api::make_fused_add_backward_plan(options, a),
                    cpu::threads_for(options.num_threads, a.rows, a.n), a.dweight, a.dbias);
}

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.version = RMSNORM_VERSION_STRING;
  info.simd_target = cpu::active_target_name();
  info.compiled_targets = cpu::available_target_names();
  info.max_threads = cpu::max_threads();
#ifdef _OPENMP
  info.openmp = true;
#endif
  return info;
}

void set_simd_target(const std::string& name) { cpu::select_target(name); }

}  // namespace rmsnorm
