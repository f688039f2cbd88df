// Argument checks of SPEC section 5, shared by every public entry point. Each
// throws rmsnorm::Error with a message naming the argument and what was
// expected. They run before anything is written.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::api {

void check_options(const NormOptions& options);
void check_shape(int64_t rows, int64_t n);
void check_dtype(DType dtype, const char* name);

// A matrix argument: non-null when it holds data, stride >= n, extent in range.
void check_matrix(const char* name, const void* data, DType dtype, int64_t row_stride, int64_t rows, int64_t n);
// A weight or bias: float32 or the data's dtype.
void check_parameter(const char* name, const ConstVector& v, DType data_dtype);

// A region of memory: `rows` rows of `row_bytes` bytes, `stride_bytes` apart.
struct Region {
  const char* name;
  const void* begin;
  int64_t rows;
  int64_t row_bytes;
  int64_t stride_bytes;
};

// The few regions of one call, on the stack: a std::vector here cost a heap
// allocation per call, a measurable part of a one-row call.
class RegionList {
 public:
  RegionList(std::initializer_list<Region> regions) {
    for (const Region& r : regions) push_back(r);
  }
  void push_back(const Region& r) {
    if (count_ == items_.size()) throw std::logic_error("RegionList: capacity exceeded");
    items_[count_++] = r;
  }
  const Region& operator[](size_t i) const { return items_[i]; }
  size_t size() const { return count_; }
  const Region* begin() const { return items_.data(); }
  const Region* end() const { return items_.data() + count_; }

 private:
  std::array<Region, 8> items_;  // only [0, count_) is read; zeroing all 8 was a rep stos per call
  size_t count_ = 0;
};

// The size of one element of dtype, 0 for an invalid dtype (which check_dtype
// rejects before any region is formed). Inline for the checks of every call;
// the public dtype_size returns it.
inline int64_t element_bytes(DType dtype) {
  switch (dtype) {
    case DType::kBFloat16:
    case DType::kFloat16:
      return 2;
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
      return 8;
  }
  return 0;
}

// Inline: returned from a call, a Region went through memory in narrow stores
// read back in wide loads, a store-forwarding stall per region per call.
inline Region matrix_region(const char* name, const void* data, DType dtype, int64_t row_stride, int64_t rows,
                            int64_t n) {
  const int64_t esize = element_bytes(dtype);
  return {name, data, rows, n * esize, row_stride * esize};
}

inline Region vector_region(const char* name, const void* data, DType dtype, int64_t n) {
  const int64_t bytes = n * element_bytes(dtype);
  return {name, data, 1, bytes, bytes};
}

// Whether a and b certainly share no byte: either is empty, or their bounding
// boxes are apart. The common answer, inline: a call checks a dozen pairs.
inline bool apart(const Region& a, const Region& b) {
  if (!a.begin || !b.begin || a.rows == 0 || b.rows == 0) return true;
  const auto* pa = static_cast<const char*>(a.begin);
  const auto* pb = static_cast<const char*>(b.begin);
  return pa + (a.rows - 1) * a.stride_bytes + a.row_bytes <= pb || pb + (b.rows - 1) * b.stride_bytes + b.row_bytes <= pa;
}

bool overlap(const Region& a, const Region& b);
// Throws unless a and b are disjoint, or (when same_allowed) exactly the same
// rows with the same stride: an in-place operation.
void check_overlapping(const Region& a, const Region& b, bool same_allowed);
inline void check_no_overlap(const Region& a, const Region& b, bool same_allowed) {
  if (!apart(a, b)) check_overlapping(a, b, same_allowed);
}

}  // namespace rmsnorm::api
