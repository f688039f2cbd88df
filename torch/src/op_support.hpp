// What every torch.ops.rmsnorm.* kernel needs: the engine's dtype of a
// tensor, the engine's errors as PyTorch errors, parameters in the engine's
// layout, the eps placement by name and the engine's options.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <limits>
#include <string>
#include <vector>

#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::torch {

inline DType engine_dtype(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kHalf:
      return DType::kFloat16;
    default:
      TORCH_CHECK(false, "rmsnorm: ", what, " must be float32, float64, bfloat16 or float16, got ", t.scalar_type());
  }
}

// Runs an engine call, turning its argument errors into PyTorch errors
// (RuntimeError in Python) with the engine's message.
template <class F>
void engine_call(F&& f) {
  try {
    f();
  } catch (const rmsnorm::Error& e) {
    TORCH_CHECK(false, "rmsnorm: ", e.what());
  }
}

inline EpsPlacement parse_placement(c10::string_view s) {
  if (s == "inside") return EpsPlacement::kInside;
  if (s == "outside") return EpsPlacement::kOutside;
  TORCH_CHECK(false, "rmsnorm: eps_placement must be \"inside\" or \"outside\", got \"", std::string(s), "\"");
}

// eps when the caller gives none: the machine epsilon of the input's dtype, as
// torch.nn.functional.rms_norm does.
inline double default_rms_eps(const at::Tensor& input) {
  switch (input.scalar_type()) {
    case at::kDouble:
      return std::numeric_limits<double>::epsilon();
    case at::kBFloat16:
      return 0.0078125;  // 2^-7
    case at::kHalf:
      return 0.0009765625;  // 2^-10
    default:
      return std::numeric_limits<float>::epsilon();
  }
}

inline Rounding parse_rounding(c10::string_view s) {
  if (s == "single") return Rounding::kSingle;
  if (s == "before_weight") return Rounding::kBeforeWeight;
  TORCH_CHECK(false, "rmsnorm: rounding must be \"single\" or \"before_weight\", got \"", std::string(s), "\"");
}

// The dtype of the per-row statistics the forward ops return: float32, or
// float64 for float64 data.
inline at::ScalarType statistics_type(at::ScalarType data) { return data == at::kDouble ? at::kDouble : at::kFloat; }

// Parameters as the engine takes them: float32 or the input's dtype, contiguous.
inline at::Tensor engine_parameter(const at::Tensor& param, at::ScalarType input_type) {
  if (!param.defined()) return param;
  const at::ScalarType type = param.scalar_type() == at::kFloat ? at::kFloat : input_type;
  return param.to(type).contiguous();
}

// The engine's options for one call; forward and backward build them alike.
inline NormOptions norm_options(bool layer_norm, double eps, double p, int64_t placement, double weight_offset = 0.0,
                                Rounding rounding = Rounding::kSingle) {
  NormOptions options;
  options.kind = layer_norm ? NormKind::kLayerNorm : NormKind::kRMSNorm;
  options.eps = eps;
  options.eps_placement = static_cast<EpsPlacement>(placement);
  options.p = p;
  options.weight_offset = weight_offset;
  options.rounding = rounding;
  options.num_threads = at::get_num_threads();
  return options;
}

}  // namespace rmsnorm::torch
