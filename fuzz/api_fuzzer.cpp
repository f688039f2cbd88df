// libFuzzer target over the C API (forward, fused add, backward), built with
// clang's fuzzer + AddressSanitizer + UndefinedBehaviorSanitizer
// (scripts/fuzz.sh). The input chooses the operation, every argument (enum
// values that are no enumerator, bad shapes, eps and p of any bit pattern) and
// the data (raw bit patterns or moderate values).
//
// The oracle, for every input:
//  - no crash and no sanitizer report (the sanitizers abort on their own);
//  - a rejected call returns a status with a message and leaves every output
//    exactly as it was;
//  - an accepted call meets SPEC section 4: each output element is NaN exactly
//    where the float64 reference's is, infinite only where the reference
//    overflows the dtype, and every row agrees with the reference within
//    SPEC's tolerance measured against the size of its terms (compare_rows);
//    dweight and dbias likewise (compare_sum). Rows whose reference output
//    lies below the dtype's normal range are checked for NaN and overflow
//    only: the storage format itself cannot hold them to relative accuracy.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "rmsnorm/reference.hpp"
#include "rmsnorm/rmsnorm.h"
#include "rmsnorm/rmsnorm.hpp"
#include "tests/test_support.hpp"

extern "C" {
int fuzz_gated_forward(int placement, double eps, int threads, double offset, int64_t rows, int64_t n,
                       int64_t group_size, int gate, int dtype, const void* x, const void* z, int64_t stride, void* y,
                       const void* weight, int param_dtype, void* inv_rms);
int fuzz_gated_backward(int placement, double eps, int threads, double offset, int64_t rows, int64_t n,
                        int64_t group_size, int gate, int dtype, const void* x, const void* z, const void* dy,
                        int64_t stride, const void* weight, int param_dtype, const void* inv_rms, void* dx, void* dz,
                        void* dweight);
int fuzz_forward(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows, int64_t n, int dtype,
                 const void* x, int64_t stride, void* y, const void* weight, const void* bias, int param_dtype,
                 void* inv_rms, void* mean);
int fuzz_fused_add(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows, int64_t n, int dtype,
                   const void* x, int64_t stride, void* residual, void* y, const void* weight, const void* bias,
                   int param_dtype);
int fuzz_backward(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows, int64_t n, int dtype,
                  const void* x, int64_t stride, const void* dy, const void* weight, int param_dtype, void* dx,
                  void* dweight, float* dbias);
int fuzz_fused_add_backward(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows,
                            int64_t n, int dtype, const void* h, int64_t stride, const void* dy, const void* dh_out,
                            const void* weight, int param_dtype, void* dh, void* dweight, float* dbias);
}

namespace {

using rmsnorm::DType;
using rmsnorm::testing::TypedMatrix;
using rmsnorm::testing::to_double;

// Reads the fuzzer's bytes; past the end it gives zeros.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  template <typename T>
  T raw() {
    T value{};
    unsigned char bytes[sizeof(T)];
    for (unsigned char& b : bytes) b = byte();
    std::memcpy(&value, bytes, sizeof(T));
    return value;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// What the current input asked for, printed with a failure.
std::string g_case;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "ORACLE FAILED: %s\n  case: %s\n", what.c_str(), g_case.c_str());
  std::abort();
}

// All 17 digits: std::to_string's 6 decimals print an offset of 1e-300 as 0.
std::string exact(double v) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.17g", v);
  return buffer;
}

std::string values_of(const rmsnorm::reference::Matrix& m, int64_t row) {
  std::string s;
  char buffer[40];
  for (int64_t c = 0; c < m.n; ++c) {
    std::snprintf(buffer, sizeof buffer, "%s%.17g", c ? ", " : "", m.at(row, c));
    s += buffer;
  }
  return s;
}

size_t dtype_bytes(int dtype) { return dtype == 3 ? 8 : dtype == 0 ? 4 : 2; }

// A buffer of `count` elements (at least one) filled from the input: raw bit
// patterns, or moderate values (a small integer times a power of two).
std::vector<unsigned char> fill(Input& in, int dtype, int64_t count, bool raw_bits) {
  const size_t esize = dtype_bytes(dtype);
  std::vector<unsigned char> bytes(static_cast<size_t>(std::max<int64_t>(count, 1)) * esize);
  const int exponent = static_cast<int>(in.byte() % 24) - 12;
  for (int64_t i = 0; i < count; ++i) {
    unsigned char* p = bytes.data() + i * esize;
    if (raw_bits) {
      for (size_t b = 0; b < esize; ++b) p[b] = in.byte();
      continue;
    }
    const double v = std::ldexp(static_cast<double>(static_cast<int8_t>(in.byte())) / 8.0, exponent);
    rmsnorm::testing::TypedMatrix one = rmsnorm::testing::make_matrix(static_cast<DType>(dtype), 1, 1, 1);
    one.set(0, 0, v);
    std::memcpy(p, one.data(), esize);
  }
  return bytes;
}

TypedMatrix as_matrix(int dtype, const std::vector<unsigned char>& bytes, int64_t rows, int64_t n, int64_t stride) {
  TypedMatrix m = rmsnorm::testing::make_matrix(static_cast<DType>(dtype), rows, n, stride);
  std::memcpy(m.data(), bytes.data(), std::min(bytes.size(), m.bytes.size()));
  return m;
}

std::vector<double> as_vector(int dtype, const std::vector<unsigned char>& bytes, int64_t n, bool present) {
  std::vector<double> v;
  if (!present) return v;
  for (int64_t i = 0; i < n; ++i) v.push_back(to_double(static_cast<DType>(dtype), bytes.data(), i));
  return v;
}

double largest(DType d) {
  switch (d) {
    case DType::kFloat32: return std::numeric_limits<float>::max();
    case DType::kBFloat16: return 3.3895313892515355e38;
    case DType::kFloat16: return 65504.0;
    case DType::kFloat64: return std::numeric_limits<double>::max();
  }
  return 0;
}

double smallest_normal(DType d) {
  switch (d) {
    case DType::kFloat32:
    case DType::kBFloat16: return std::numeric_limits<float>::min();
    case DType::kFloat16: return std::ldexp(1.0, -14);
    case DType::kFloat64: return std::numeric_limits<double>::min();
  }
  return 0;
}

// Elementwise NaN and overflow agreement, then SPEC's accuracy on the rows
// whose reference is representable to relative accuracy in the dtype.
void check_rows(const char* name, const TypedMatrix& got, const rmsnorm::reference::Matrix& want,
                const rmsnorm::reference::Matrix& magnitude) {
  const DType dtype = got.dtype;
  for (int64_t r = 0; r < got.rows; ++r) {
    bool comparable = true;
    for (int64_t c = 0; c < got.n; ++c) {
      const double g = got.get(r, c), w = want.at(r, c);
      const std::string where = std::string(name) + " row " + std::to_string(r) + " column " + std::to_string(c) +
                                ": got " + std::to_string(g) + ", reference " + std::to_string(w);
      if (std::isnan(w) != std::isnan(g)) fail(where + " (NaN where the reference has none, or the reverse)");
      if (std::isnan(w)) continue;
      // Beyond the dtype's range (within the last half ulp) infinity is right.
      const bool overflows = std::fabs(w) >= largest(dtype) * (1 - std::ldexp(1.0, dtype == DType::kFloat64 ? -53 : -8));
      // Where SPEC's allowance for cancelling terms (its tolerance times their
      // size) exceeds the dtype's range, any value is within tolerance and an
      // overflow to infinity is the rounding of one (a float16 dx of terms
      // ~6e13, computed in float32, cancelling to 0).
      const double tolerance = dtype == DType::kFloat64 ? 1e-13 * (1 + std::log2(static_cast<double>(got.n)))
                                                        : rmsnorm::testing::float32_tolerance(got.n);
      const bool unresolvable = magnitude.at(r, c) * tolerance > largest(dtype);
      if (std::isinf(g) && !overflows && !unresolvable) fail(where + " (infinite where the reference is finite)");
      if (unresolvable) comparable = false;
      if (overflows || (w != 0 && std::fabs(w) < smallest_normal(dtype))) comparable = false;
    }
    if (!comparable) continue;
    TypedMatrix row = rmsnorm::testing::make_matrix(dtype, 1, got.n, got.n);
    rmsnorm::reference::Matrix want_row{1, got.n, {}}, magnitude_row{1, got.n, {}};
    for (int64_t c = 0; c < got.n; ++c) {
      std::memcpy(static_cast<unsigned char*>(row.data()) + c * dtype_bytes(static_cast<int>(dtype)),
                  static_cast<const unsigned char*>(got.data()) + (r * got.stride + c) * dtype_bytes(static_cast<int>(dtype)),
                  dtype_bytes(static_cast<int>(dtype)));
      want_row.values.push_back(want.at(r, c));
      magnitude_row.values.push_back(magnitude.at(r, c));
    }
    const std::string error = rmsnorm::testing::compare_rows(row, want_row, &magnitude_row);
    if (!error.empty()) {
      std::string values;
      for (int64_t c = 0; c < got.n; ++c) {
        char buffer[160];
        std::snprintf(buffer, sizeof buffer, "\n  column %lld: got %.17g, reference %.17g, terms %.17g",
                      static_cast<long long>(c), row.get(0, c), want_row.values[c], magnitude_row.values[c]);
        values += buffer;
      }
      fail(std::string(name) + " row " + std::to_string(r) + ": " + error + values);
    }
  }
}

// The size of the terms of LayerNorm's mean, sum |x_i| / n: x_j - mean is
// x_j - x_0/n - ... - x_{n-1}/n, and SPEC section 4 measures a cancelling sum's
// error against its terms' magnitudes. |mean| alone under-counts them: in
// x = [-7e-37, 0, -0.03125, 0.03125] the mean (-1.8e-37) cancels terms of
// 0.008, and no summation short of an exact one gets it to 1e-37 (the long-double
// reference does not either). 0 for RMSNorm.
// The offset as the engine adds it: a float32 operand for all but float64
// data (SPEC section 7 adds it in float32; docs/ENGINE.md). An offset below
// float32's range adds nothing there: -7.1e-73 plus a zero weight is a zero
// gain, and zero times an infinite x is NaN (fuzzer), where the exact offset
// would have given an infinity.
double offset_as_added(double offset, int dtype) {
  return static_cast<DType>(dtype) == DType::kFloat64 ? offset : static_cast<double>(static_cast<float>(offset));
}

double mean_terms(int kind, const rmsnorm::reference::Matrix& x, int64_t row) {
  if (kind != 1) return 0.0;
  double sum = 0.0;  // of |x| / n, which cannot overflow where the row's values do not
  for (int64_t c = 0; c < x.n; ++c) sum += std::fabs(x.at(row, c)) / static_cast<double>(x.n);
  return sum;
}

bool all_finite(const std::vector<double>& v) {
  for (double d : v)
    if (!std::isfinite(d)) return false;
  return true;
}

// Gated and grouped RMSNorm (SPEC section 10): forward, then backward on the
// same arguments, with the gate z and the group size read from the input.
struct GatedCall {
  int placement;
  double eps;
  int threads;
  double offset;
  int64_t rows, n, stride, elements;
  bool small;
  int dtype, storage, param_dtype;
  bool raw_bits, weight_present, saved_present;
};

int gated_case(Input& in, const GatedCall& c, const std::vector<unsigned char>& x, const std::vector<unsigned char>& dy,
               const std::vector<unsigned char>& weight) {
  const uint8_t gate_byte = in.byte();
  const int gate = (gate_byte & 0xF0) == 0xF0 ? static_cast<int>(static_cast<int8_t>(gate_byte)) : gate_byte % 3;
  const uint8_t group_byte = in.byte();
  int64_t group_size = 0;
  if (group_byte >= 0xF8) {  // sizes that may not divide n
    // n + 1 only for the small shapes: n may be INT64_MAX here (UBSan found
    // the harness's own overflow).
    const int64_t odd[] = {-1, c.small ? c.n + 1 : 2, 7, 3, 0, 2, 5, c.n};
    group_size = odd[group_byte - 0xF8];
  } else if (c.small) {
    std::vector<int64_t> divisors;
    for (int64_t d = 1; d <= c.n; ++d)
      if (c.n % d == 0) divisors.push_back(d);
    group_size = divisors[group_byte % divisors.size()];
  }
  const std::vector<unsigned char> z = fill(in, c.storage, c.elements, c.raw_bits);
  const size_t stats_bytes = static_cast<size_t>(std::max<int64_t>(1, c.small ? c.rows * c.n : 1)) * 8;
  std::vector<unsigned char> y(x.size(), 0xA5), dx(x.size(), 0xA5), dz(x.size(), 0xA5), inv_rms(stats_bytes, 0xA5),
      dweight(weight.size() + 8, 0xA5);
  const void* w = c.weight_present ? weight.data() : nullptr;
  void* saved = c.saved_present ? inv_rms.data() : nullptr;
  int status = fuzz_gated_forward(c.placement, c.eps, c.threads, c.offset, c.rows, c.n, group_size, gate, c.dtype,
                                  x.data(), z.data(), c.stride, y.data(), w, c.param_dtype, saved);
  if (status != RMSNORM_OK) {
    if (std::strlen(rmsnorm_last_error()) == 0) fail("a rejected gated call gave no message");
    for (const std::vector<unsigned char>* out : {&y, &inv_rms}) {
      for (unsigned char b : *out)
        if (b != 0xA5) fail(std::string("a rejected gated forward wrote an output: ") + rmsnorm_last_error());
    }
    return 0;
  }
  if (!c.small) fail("a gated call with a huge extent was accepted");
  status = fuzz_gated_backward(c.placement, c.eps, c.threads, c.offset, c.rows, c.n, group_size, gate, c.dtype,
                               x.data(), z.data(), dy.data(), c.stride, w, c.param_dtype, saved, dx.data(), dz.data(),
                               c.weight_present ? dweight.data() : nullptr);
  if (status != RMSNORM_OK) fail(std::string("gated backward rejected what forward accepted: ") + rmsnorm_last_error());
  if (c.rows == 0) return 0;

  rmsnorm::NormOptions o;
  o.eps_placement = static_cast<rmsnorm::EpsPlacement>(c.placement);
  o.eps = c.eps;
  o.weight_offset = offset_as_added(c.offset, c.dtype);
  const rmsnorm::Gate g = static_cast<rmsnorm::Gate>(gate);
  const std::vector<double> wv = as_vector(c.param_dtype, weight, c.n, c.weight_present);
  std::vector<double> gain_terms = wv;
  for (double& v : gain_terms) v = std::fabs(c.offset) + std::fabs(v);
  const rmsnorm::reference::Matrix xv = as_matrix(c.dtype, x, c.rows, c.n, c.stride).values();
  const rmsnorm::reference::Matrix zv = as_matrix(c.dtype, z, c.rows, c.n, c.stride).values();
  const rmsnorm::reference::Matrix dyv = as_matrix(c.dtype, dy, c.rows, c.n, c.stride).values();
  g_case = "gated " + std::to_string(gate) + " group_size " + std::to_string(group_size) + " placement " +
           std::to_string(c.placement) + " dtype " + std::to_string(c.dtype) + " param " + std::to_string(c.param_dtype) +
           " rows " + std::to_string(c.rows) + " n " + std::to_string(c.n) + " eps " + exact(c.eps) + " weight " +
           std::to_string(c.weight_present) + " saved " + std::to_string(c.saved_present) + " weight_offset " +
           exact(c.offset);
  for (int64_t r = 0; r < c.rows; ++r) {
    g_case += "\n  x[" + std::to_string(r) + "] = " + values_of(xv, r);
    g_case += "\n  z[" + std::to_string(r) + "] = " + values_of(zv, r);
    g_case += "\n  dy[" + std::to_string(r) + "] = " + values_of(dyv, r);
  }
  if (!wv.empty()) g_case += "\n  weight = " + values_of(rmsnorm::reference::Matrix{1, c.n, wv}, 0);
  const rmsnorm::reference::GatedForwardResult want = rmsnorm::reference::gated_forward(o, xv, zv, g, group_size, wv);
  // y's terms: |u / r| (|o| + |g|) |silu(z)|, the gain being a sum formed in float32.
  rmsnorm::NormOptions plain = o;
  plain.weight_offset = 0;
  rmsnorm::reference::Matrix magnitude = rmsnorm::reference::gated_forward(plain, xv, zv, g, group_size, gain_terms).y;
  for (double& v : magnitude.values) v = std::fabs(v);
  check_rows("gated y", as_matrix(c.dtype, y, c.rows, c.n, c.stride), want.y, magnitude);
  const rmsnorm::reference::GatedBackwardResult grad =
      rmsnorm::reference::gated_backward(o, xv, zv, dyv, g, group_size, wv);
  const rmsnorm::testing::GatedTerms terms = rmsnorm::testing::gated_terms(o, g, group_size, xv, zv, dyv, wv);
  check_rows("gated dx", as_matrix(c.dtype, dx, c.rows, c.n, c.stride), grad.dx, terms.dx);
  if (g != rmsnorm::Gate::kNone) check_rows("gated dz", as_matrix(c.dtype, dz, c.rows, c.n, c.stride), grad.dz, terms.dz);
  if (c.weight_present && all_finite(xv.values) && all_finite(zv.values) && all_finite(dyv.values) &&
      all_finite(gain_terms) && all_finite(grad.dweight) && all_finite(terms.dweight)) {
    bool representable = true;
    for (double v : grad.dweight)
      representable = representable && (v == 0 || std::fabs(v) >= smallest_normal(static_cast<DType>(c.param_dtype)));
    std::vector<double> dw_magnitude = terms.dweight;
    // u / r formed in the arithmetic type, as in the plain norm's dweight (see below).
    const double underflow = c.dtype == 3 ? std::ldexp(1.0, -1022 + 53) : std::ldexp(1.0, -126 + 24);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < c.n; ++col) dw_magnitude[col] += std::fabs(dyv.at(r, col)) * underflow;
    if (representable) {
      const std::string e = rmsnorm::testing::compare_sum(static_cast<DType>(c.param_dtype), dweight.data(),
                                                          grad.dweight, dw_magnitude, c.rows, c.n);
      if (!e.empty()) fail("gated dweight: " + e);
    }
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  g_case = "(arguments)";
  const int op = in.byte() % 3;  // forward, fused add, backward
  const uint8_t flags = in.byte();
  auto pick = [&](int legal_count) {  // mostly a legal enumerator, sometimes any int
    const uint8_t b = in.byte();
    return (b & 0xF0) == 0xF0 ? static_cast<int>(static_cast<int8_t>(b)) : b % legal_count;
  };
  const int kind = pick(2), placement = pick(2), dtype = pick(4);
  const int param_dtype = (flags & 1) ? dtype : 0;
  const uint8_t shape = in.byte();
  int64_t rows = shape % 5, n = 1 + in.byte() % 40;
  if ((shape & 0xE0) == 0xE0) {  // bad shapes, and extents beyond what any buffer holds (2^60 bytes); a
                                 // plausible extent larger than the buffer would only test this harness
    const int64_t weird[] = {0, -1, int64_t{1} << 62, (int64_t{1} << 62) + 3, std::numeric_limits<int64_t>::max()};
    (shape & 0x10 ? rows : n) = weird[in.byte() % 5];
    if (rows == 0) rows = -1;  // rows = 0 is valid and writes nothing
  }
  const int64_t stride_pad = in.byte() % 3;
  const bool weight_present = flags & 2, bias_present = flags & 4, saved_present = flags & 8, raw_bits = flags & 16,
             in_place = flags & 32;
  const uint8_t eps_choice = in.byte(), p_choice = in.byte();
  const double eps_table[] = {1e-5, 0.0, 1e-6, 1.0};
  const double p_table[] = {1.0, 0.5, 0.0625, 0.1, 0.25, 1.0 / 3};
  const double eps = eps_choice >= 0xF0 ? in.raw<double>() : eps_table[eps_choice % 4];
  const double p = kind == 1 ? 1.0 : p_choice >= 0xF0 ? in.raw<double>() : p_table[p_choice % 6];
  const int threads = in.byte() % 3;
  static const std::vector<std::string> targets = rmsnorm::runtime_info().compiled_targets;
  rmsnorm::set_simd_target(targets[in.byte() % targets.size()]);

  // Buffers sized for the small shapes; huge extents must be rejected before use.
  const bool small = rows >= 0 && rows <= 4 && n >= 1 && n <= 40;
  const int storage = dtype >= 0 && dtype <= 3 ? dtype : 0;
  const int param_storage = param_dtype >= 0 && param_dtype <= 3 ? param_dtype : 0;
  const int64_t stride = small ? n + stride_pad : 1;
  const int64_t elements = small ? rows * stride : 1;
  const int64_t vector_length = small ? n : 1;
  std::vector<unsigned char> x = fill(in, storage, elements, raw_bits);
  std::vector<unsigned char> other = fill(in, storage, elements, raw_bits);  // residual or dy
  std::vector<unsigned char> weight = fill(in, param_storage, vector_length, raw_bits);
  std::vector<unsigned char> bias = fill(in, param_storage, vector_length, raw_bits);
  // The weight offset (SPEC section 7), read last so that inputs written before
  // it existed still mean what they meant (past the end the input gives 0).
  const uint8_t offset_choice = in.byte();
  const double offset_table[] = {0.0, 0.0, 1.0, -0.5};
  const double offset = offset_choice >= 0xF8 ? in.raw<double>() : offset_table[offset_choice % 4];
  // Backward with flag 64 is the fused residual form's (SPEC section 8): dx is
  // norm_backward(dy) + dh_out, read from here on (zeros past the end).
  const bool fused_backward = op == 2 && (flags & 64);
  const std::vector<unsigned char> dh_out = fill(in, storage, fused_backward ? elements : 0, raw_bits);
  // Forward, with the next byte's top bit set: gated and grouped RMSNorm
  // instead, its own arguments read from here on (a byte past the end of an
  // input written before this existed reads as 0, so those keep their meaning).
  if (op == 0 && (in.byte() & 0x80)) {
    const GatedCall call{placement, eps, threads, offset, rows, n, stride, elements, small, dtype, storage,
                         param_dtype, raw_bits, weight_present, saved_present};
    return gated_case(in, call, x, other, weight);
  }
  std::vector<unsigned char> y(x.size(), 0xA5), dweight(weight.size() + 8, 0xA5), dbias(vector_length * 4 + 8, 0xA5);
  std::vector<unsigned char> inv_rms(8 * 8, 0xA5), mean(8 * 8, 0xA5);
  const std::vector<unsigned char> x_before = x, other_before = other;
  unsigned char* out = in_place && op != 2 ? x.data() : y.data();
  const std::vector<unsigned char> out_before = in_place && op != 2 ? x : y;

  int status;
  if (op == 0) {
    status = fuzz_forward(kind, placement, eps, p, threads, offset, rows, n, dtype, x.data(), stride, out,
                          weight_present ? weight.data() : nullptr, bias_present ? bias.data() : nullptr, param_dtype,
                          saved_present ? inv_rms.data() : nullptr, saved_present ? mean.data() : nullptr);
  } else if (op == 1) {
    status = fuzz_fused_add(kind, placement, eps, p, threads, offset, rows, n, dtype, x.data(), stride, other.data(), y.data(),
                            weight_present ? weight.data() : nullptr, bias_present ? bias.data() : nullptr, param_dtype);
  } else if (fused_backward) {
    status = fuzz_fused_add_backward(kind, placement, eps, p, threads, offset, rows, n, dtype, x.data(), stride,
                                     other.data(), dh_out.data(), weight_present ? weight.data() : nullptr,
                                     param_dtype, y.data(), weight_present ? dweight.data() : nullptr,
                                     reinterpret_cast<float*>(dbias.data()));
  } else {
    status = fuzz_backward(kind, placement, eps, p, threads, offset, rows, n, dtype, x.data(), stride, other.data(),
                           weight_present ? weight.data() : nullptr, param_dtype, y.data(),
                           weight_present ? dweight.data() : nullptr, reinterpret_cast<float*>(dbias.data()));
  }

  if (status != RMSNORM_OK) {
    if (std::strlen(rmsnorm_last_error()) == 0) fail("a rejected call gave no message");
    if (x != x_before || other != other_before) fail(std::string("a rejected call wrote its inputs: ") + rmsnorm_last_error());
    if ((in_place && op != 2 ? x : y) != out_before) fail(std::string("a rejected call wrote y: ") + rmsnorm_last_error());
    for (unsigned char b : dweight)
      if (b != 0xA5) fail("a rejected call wrote dweight");
    for (unsigned char b : inv_rms)
      if (b != 0xA5) fail("a rejected call wrote the statistics");
    return 0;
  }
  if (!small) fail("a call with a huge extent was accepted");
  if (rows == 0) return 0;

  // The reference on the very values the call read.
  rmsnorm::NormOptions o;
  o.kind = static_cast<rmsnorm::NormKind>(kind);
  o.eps_placement = static_cast<rmsnorm::EpsPlacement>(placement);
  o.eps = eps;
  o.p = p;
  o.weight_offset = offset_as_added(offset, dtype);
  const DType dt = static_cast<DType>(dtype);
  const std::vector<double> w = as_vector(param_dtype, weight, n, weight_present);
  // The gain offset + g is itself a sum, formed in float32 for all but float64
  // data (SPEC section 7): its error is measured against |offset| + |g|, its
  // terms, as SPEC section 4 measures every cancelling sum (an offset of
  // -1.24e37 against a weight of about +1.24e37 leaves a gain far smaller than
  // float32's rounding of the offset alone).
  std::vector<double> gain_terms = w;
  for (double& g : gain_terms) g = std::fabs(offset) + std::fabs(g);
  const std::vector<double> b = as_vector(param_dtype, bias, n, bias_present);
  TypedMatrix xm = as_matrix(dtype, x_before, rows, n, stride);
  if (op == 1) {
    // residual = round(residual + x): exact for float32/float64 (one rounding
    // of the exact sum); 16-bit sums are formed in float first, within 1 ulp.
    const TypedMatrix h = as_matrix(dtype, other, rows, n, stride);
    TypedMatrix expected = as_matrix(dtype, other_before, rows, n, stride);
    const TypedMatrix res_in = as_matrix(dtype, other_before, rows, n, stride);
    rmsnorm::reference::Matrix sum{rows, n, {}}, no_terms{rows, n, {}};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        sum.values.push_back(static_cast<double>(static_cast<long double>(xm.get(r, c)) + res_in.get(r, c)));
        no_terms.values.push_back(std::fabs(xm.get(r, c)) + std::fabs(res_in.get(r, c)));
      }
    check_rows("residual", h, sum, no_terms);
    xm = h;  // y is the norm of the stored residual
  }
  const rmsnorm::reference::Matrix xv = xm.values();
  g_case = "op " + std::to_string(op) + " kind " + std::to_string(kind) + " placement " + std::to_string(placement) +
           " dtype " + std::to_string(dtype) + " param " + std::to_string(param_dtype) + " rows " + std::to_string(rows) +
           " n " + std::to_string(n) + " eps " + exact(eps) + " p " + exact(p) + " weight " +
           std::to_string(weight_present) + " bias " + std::to_string(bias_present) + " weight_offset " + exact(offset) + (fused_backward ? " fused backward" : "");
  for (int64_t r = 0; r < rows; ++r) g_case += "\n  x[" + std::to_string(r) + "] = " + values_of(xv, r);
  if (!w.empty()) g_case += "\n  weight = " + values_of(rmsnorm::reference::Matrix{1, n, w}, 0);
  if (!b.empty()) g_case += "\n  bias = " + values_of(rmsnorm::reference::Matrix{1, n, b}, 0);
  if (op != 2) {
    const rmsnorm::reference::ForwardResult want = rmsnorm::reference::forward(o, xv, w, b);
    rmsnorm::reference::Matrix magnitude = xv;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        // SPEC section 4: x - mean is a sum of terms that cancel; errors are
        // measured against their magnitudes, |x_j| + sum |x_i| / n (for rows
        // like 1e4 + N(0, 1) the engine does better, which
        // tests/reliability_test.cpp holds it to).
        const double x_terms = (std::fabs(xv.at(r, c)) + mean_terms(kind, xv, r)) * want.inv_rms[r];
        const double terms = x_terms * (gain_terms.empty() ? 1.0 : gain_terms[c]);
        magnitude.at(r, c) = terms + (b.empty() ? 0.0 : std::fabs(b[c]));
      }
    check_rows("y", as_matrix(dtype, in_place && op == 0 ? x : y, rows, n, stride), want.y, magnitude);
    return 0;
  }
  const rmsnorm::reference::Matrix dyv = as_matrix(dtype, other_before, rows, n, stride).values();
  for (int64_t r = 0; r < rows; ++r) g_case += "\n  dy[" + std::to_string(r) + "] = " + values_of(dyv, r);
  const rmsnorm::reference::BackwardResult want = rmsnorm::reference::backward(o, xv, dyv, w);
  const rmsnorm::reference::ForwardResult fw = rmsnorm::reference::forward(o, xv, {}, {});
  // dx's terms with x - mean measured as |x_j| + sum |x_i| / n (SPEC section 4).
  rmsnorm::reference::Matrix x_terms = xv;
  rmsnorm::reference::ForwardResult unshifted = fw;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) x_terms.at(r, c) = std::fabs(xv.at(r, c)) + mean_terms(kind, xv, r);
    unshifted.mean[r] = 0.0;
  }
  rmsnorm::reference::Matrix dx_want = want.dx;
  rmsnorm::reference::Matrix dx_terms = rmsnorm::testing::gradient_magnitude(x_terms, dyv, gain_terms, unshifted);
  if (fused_backward) {  // dh = dx + dh_out: one more term
    const rmsnorm::reference::Matrix dh_out_values = as_matrix(dtype, dh_out, rows, n, stride).values();
    for (int64_t r = 0; r < rows; ++r) {
      g_case += "\n  dh_out[" + std::to_string(r) + "] = " + values_of(dh_out_values, r);
      for (int64_t c = 0; c < n; ++c) {
        dx_want.at(r, c) += dh_out_values.at(r, c);
        dx_terms.at(r, c) += std::fabs(dh_out_values.at(r, c));
      }
    }
  }
  check_rows(fused_backward ? "dh" : "dx", as_matrix(dtype, y, rows, n, stride), dx_want, dx_terms);
  // The parameter gradients of rows that are all finite and representable.
  if (all_finite(xv.values) && all_finite(dyv.values) && all_finite(gain_terms) && all_finite(want.dbias) &&
      all_finite(want.dweight)) {
    bool representable = true;
    for (double v : want.dweight) representable = representable && (v == 0 || std::fabs(v) >= smallest_normal(static_cast<DType>(param_dtype)));
    for (double v : want.dbias) representable = representable && (v == 0 || std::fabs(v) >= std::numeric_limits<float>::min());
    std::vector<double> dw_magnitude(static_cast<size_t>(n)), db_magnitude(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        // A documented limit (docs/ENGINE.md): x / r is formed in the arithmetic
        // type, so an element below its normal range against r (|x| < 2^-126 r
        // in float) adds up to |dy| 2^-149 of absolute error to its dweight
        // term; that is allowed here as a magnitude of |dy| 2^-126 2^24.
        const double underflow = dtype == 3 ? std::ldexp(1.0, -1022 + 53) : std::ldexp(1.0, -126 + 24);
        dw_magnitude[c] += std::fabs(dyv.at(r, c)) * ((std::fabs(xv.at(r, c)) + mean_terms(kind, xv, r)) * fw.inv_rms[r] +
                                                      (kind == 1 ? 0.05 : 0.0) + underflow);
        db_magnitude[c] += std::fabs(dyv.at(r, c));
      }
    // A row with r = 0 (all zeros, eps = 0) has no finite 1/r to size its terms by.
    representable = representable && all_finite(dw_magnitude) && all_finite(db_magnitude);
    if (representable) {
      std::string e = rmsnorm::testing::compare_sum(DType::kFloat32, dbias.data(), want.dbias, db_magnitude, rows, n);
      if (!e.empty()) fail("dbias: " + e);
      if (weight_present) {
        e = rmsnorm::testing::compare_sum(static_cast<DType>(param_dtype), dweight.data(), want.dweight, dw_magnitude, rows, n);
        if (!e.empty()) fail("dweight: " + e);
      }
    }
  }
  (void)dt;
  return 0;
}
