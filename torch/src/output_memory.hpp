// The outputs our ops allocate (y, dx, dz): contiguous, of the input's shape,
// dtype and device, and written in full by the engine straight after.
#pragma once

#include <ATen/ATen.h>

namespace rmsnorm::torch {

// A new contiguous tensor like `input`. A large CPU one is advised to use
// transparent huge pages (see output_memory.cpp); RMSNORM_HUGE_PAGES=0 in the
// environment turns the advice off.
at::Tensor empty_output(const at::Tensor& input);

}  // namespace rmsnorm::torch
