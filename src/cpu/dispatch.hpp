// Which compiled SIMD target runs a call. Highway's HWY_DYNAMIC_DISPATCH reads
// the process-wide choice at every call site, so a call that dispatches more
// than once (row blocks, then columns) could mix targets while another thread
// runs set_simd_target. The engine instead reads the choice once per call
// (dispatch_index), keeps it in the plan, and every kernel entry point of that
// call dispatches through it.
#pragma once

#include <cstddef>

#include "hwy/highway.h"

namespace rmsnorm::cpu {

// The index into Highway's dispatch tables of the target in force now
// (src/cpu/targets.cpp); never 0, Highway's "not chosen yet" entry.
size_t dispatch_index();

}  // namespace rmsnorm::cpu

// FUNC's implementation for the target at `index` (from dispatch_index()).
#define RMSNORM_DISPATCH(FUNC, index) (*(HWY_DISPATCH_TABLE(FUNC)[index]))
