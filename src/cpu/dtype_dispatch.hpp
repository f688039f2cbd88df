// Maps the run-time (data dtype, parameter dtype) pair to C++ types, once, for
// every kernel entry point. Parameters (weight, bias) are float32 or the data's
// own type; the validation layer guarantees nothing else reaches here.
#pragma once

#include "hwy/base.h"
#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::cpu {

// Calls f(T{}, TW{}) with T the storage type of the data and TW that of the
// parameters.
template <class F>
void dispatch_types(DType data, DType params, F&& f) {
  const bool float_params = params == DType::kFloat32;
  switch (data) {
    case DType::kFloat32:
      return f(float{}, float{});
    case DType::kBFloat16:
      return float_params ? f(hwy::bfloat16_t{}, float{}) : f(hwy::bfloat16_t{}, hwy::bfloat16_t{});
    case DType::kFloat16:
      return float_params ? f(hwy::float16_t{}, float{}) : f(hwy::float16_t{}, hwy::float16_t{});
    case DType::kFloat64:
      return float_params ? f(double{}, float{}) : f(double{}, double{});
  }
}

template <typename T>
const T* row_pointer(const void* base, int64_t row, int64_t stride) {
  return static_cast<const T*>(base) + row * stride;
}

template <typename T>
T* row_pointer(void* base, int64_t row, int64_t stride) {
  return static_cast<T*>(base) + row * stride;
}

}  // namespace rmsnorm::cpu
