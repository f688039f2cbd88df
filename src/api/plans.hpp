// Validation + translation of the public arguments into backend plans, shared
// by the CPU entry points (api.cpp) and the CUDA ones (src/cuda/api.cpp). Each
// throws rmsnorm::Error naming the argument; nothing is written before.
#pragma once

#include "rmsnorm/rmsnorm.hpp"
#include "src/calls/calls.hpp"

namespace rmsnorm::api {

// A gain of offset + g needs a g, and for non-float64 data the offset must
// be a float32 (it is added in float32).
void check_weight_offset(const NormOptions& options, const ConstVector& weight, DType data_dtype);

// The norm over rows of n: LayerNorm or RMSNorm, eps, and k = partial_count(n, p).
calls::NormParams norm_params(const NormOptions& options, int64_t n);

calls::ForwardCall make_forward_plan(const NormOptions& options, const ForwardArgs& args);
calls::ForwardCall make_fused_add_plan(const NormOptions& options, const FusedAddArgs& args);
// dweight/dbias outputs are not in the plan: the caller passes args.dweight / args.dbias on.
calls::BackwardCall make_backward_plan(const NormOptions& options, const BackwardArgs& args);
calls::BackwardCall make_fused_add_backward_plan(const NormOptions& options, const FusedAddBackwardArgs& args);

}  // namespace rmsnorm::api
