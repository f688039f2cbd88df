#include "src/api/validate.hpp"

#include <cmath>
#include <sstream>

namespace rmsnorm::api {
namespace {

// Extents beyond this many bytes are rejected: no real buffer is that large and
// offsets stay far from int64 overflow.
constexpr int64_t kMaxExtentBytes = int64_t{1} << 60;

template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw Error(message.str());
}

}  // namespace

void check_options(const NormOptions& o) {
  if (o.kind != NormKind::kRMSNorm && o.kind != NormKind::kLayerNorm) {
    fail("options.kind: expected RMSNorm or LayerNorm, got value ", static_cast<int>(o.kind));
  }
  if (o.eps_placement != EpsPlacement::kInside && o.eps_placement != EpsPlacement::kOutside) {
    fail("options.eps_placement: expected inside or outside, got value ", static_cast<int>(o.eps_placement));
  }
  if (!std::isfinite(o.eps) || o.eps < 0) fail("options.eps: expected a finite value >= 0, got ", o.eps);
  if (!(o.p > 0 && o.p <= 1)) fail("options.p: expected 0 < p <= 1, got ", o.p);
  if (o.kind == NormKind::kLayerNorm && o.p != 1) {
    fail("options.p: LayerNorm has no partial form; expected p = 1, got ", o.p);
  }
  if (o.kind == NormKind::kLayerNorm && o.eps_placement != EpsPlacement::kInside) {
    fail("options.eps_placement: LayerNorm uses sqrt(var + eps); expected inside");
  }
  if (o.rounding != Rounding::kSingle && o.rounding != Rounding::kBeforeWeight) {
    fail("options.rounding: expected single or before_weight, got value ", static_cast<int>(o.rounding));
  }
  if (!std::isfinite(o.weight_offset)) fail("options.weight_offset: expected a finite value, got ", o.weight_offset);
  if (o.num_threads < 0) fail("options.num_threads: expected >= 0 (0 = default), got ", o.num_threads);
}

void check_shape(int64_t rows, int64_t n) {
  if (rows < 0) fail("rows: expected >= 0, got ", rows);
  if (n < 1) fail("n: expected >= 1 (the normalized length), got ", n);
}

void check_dtype(DType dtype, const char* name) {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kBFloat16:
    case DType::kFloat16:
    case DType::kFloat64:
      return;
  }
  fail(name, ".dtype: expected float32, bfloat16, float16 or float64, got value ", static_cast<int>(dtype));
}

void check_matrix(const char* name, const void* data, DType dtype, int64_t row_stride, int64_t rows, int64_t n) {
  check_dtype(dtype, name);
  if (rows > 0 && data == nullptr) fail(name, ": null pointer for a ", rows, " x ", n, " matrix");
  if (row_stride < n) fail(name, ".row_stride: expected >= n = ", n, " elements, got ", row_stride);
  // rows * row_stride * size can overflow int64 (n = 2^62): checked products.
  // (It was long double: x87 loads and stores cost a tenth of a one-row call.)
  int64_t elements = 0, extent = 0;
  const bool overflows = __builtin_mul_overflow(rows, row_stride, &elements) ||
                         __builtin_add_overflow(elements, n, &elements) ||
                         __builtin_mul_overflow(elements, static_cast<int64_t>(dtype_size(dtype)), &extent);
  if (overflows || extent > kMaxExtentBytes) {
    fail(name, ": ", rows, " rows with stride ", row_stride, " do not fit in memory");
  }
}

void check_parameter(const char* name, const ConstVector& v, DType data_dtype) {
  if (!v.data) return;
  check_dtype(v.dtype, name);
  if (v.dtype != DType::kFloat32 && v.dtype != data_dtype) {
    fail(name, ".dtype: expected float32 or the data's dtype (", dtype_name(data_dtype), "), got ",
         dtype_name(v.dtype));
  }
}

bool overlap(const Region& a, const Region& b) {
  if (apart(a, b)) return false;  // empty, or bounding boxes apart
  const auto* pa = static_cast<const char*>(a.begin);
  const auto* pb = static_cast<const char*>(b.begin);
  if (a.rows == 1 && b.rows == 1) return true;
  if (a.stride_bytes != b.stride_bytes) return true;  // interleavings with other strides: assume the worst
  // Same stride S: row j of b starts at offset d + j*S from a's start. Writing
  // d = q*S + rem, b's row j meets a's row q+j when rem < a.row_bytes, and a's
  // row q+j+1 when rem + b.row_bytes > S; each needs that row of a to exist.
  const int64_t S = a.stride_bytes;
  const int64_t d = pb - pa;
  int64_t q = d / S, rem = d % S;
  if (rem < 0) {
    rem += S;
    --q;
  }
  auto a_row_reachable = [&](int64_t first) { return first + b.rows - 1 >= 0 && first < a.rows; };
  if (rem < a.row_bytes && a_row_reachable(q)) return true;
  if (rem + b.row_bytes > S && a_row_reachable(q + 1)) return true;
  return false;
}

void check_overlapping(const Region& a, const Region& b, bool same_allowed) {
  if (!overlap(a, b)) return;
  const bool same = a.begin == b.begin && a.stride_bytes == b.stride_bytes && a.row_bytes == b.row_bytes;
  if (same && same_allowed) return;
  if (same_allowed) fail(a.name, " and ", b.name, " overlap: expected the same buffer and stride (in place) or disjoint memory");
  fail(a.name, " and ", b.name, " overlap: expected disjoint memory");
}

}  // namespace rmsnorm::api
