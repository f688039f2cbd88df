// Shared by the tests: fresh random inputs in any dtype, the float64
// reference's view of them, SPEC section 4's tolerances, and a loop over every
// SIMD target compiled in and supported here.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "rmsnorm/reference.hpp"
#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::testing {

// Whether this build runs under AddressSanitizer (the sanitizer build of
// scripts/test.sh), where every memory access is checked and a large call runs
// 20-30 times slower. Tests that repeat calls to catch a rare event, or that
// reach the largest sizes, do less there; the release build runs them whole.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

// The seed of this test run: RMSNORM_TEST_SEED if set, else fresh. Printed on failure.
uint64_t run_seed();
std::mt19937_64& rng();

// A rows x n matrix stored in `dtype` with a row stride, plus its exact values
// as doubles (the values after rounding to dtype).
struct TypedMatrix {
  DType dtype = DType::kFloat32;
  int64_t rows = 0, n = 0, stride = 0;
  std::vector<unsigned char> bytes;
  void* data() { return bytes.data(); }
  const void* data() const { return bytes.data(); }
  double get(int64_t r, int64_t c) const;
  void set(int64_t r, int64_t c, double v);  // rounds to dtype
  reference::Matrix values() const;           // rows x n, doubles
};

TypedMatrix make_matrix(DType dtype, int64_t rows, int64_t n, int64_t stride);
// Rows of N(offset, scale) with a random per-row scale over several decades.
TypedMatrix random_matrix(DType dtype, int64_t rows, int64_t n, int64_t stride, double offset = 0.0);

struct TypedVector {
  DType dtype = DType::kFloat32;
  std::vector<unsigned char> bytes;
  std::vector<double> values;  // exact values as doubles
  const void* data() const { return bytes.empty() ? nullptr : bytes.data(); }
};
TypedVector random_vector(DType dtype, int64_t n, double mean, double spread);
TypedVector empty_vector(DType dtype);

double to_double(DType dtype, const void* base, int64_t i);

// SPEC section 4: the float32/float64 norm-wise bound and the 16-bit ulp bound.
// Checks each row of `actual` against `expected`; returns "" or a description.
//
// `magnitude` (optional, rows x n) is the size of the terms that make up each
// element, e.g. |xhat * g| + |b| when a bias is added. Where the terms cancel
// (an output near 0 made of large parts), no float32 arithmetic can meet a
// bound relative to the output itself, so the error is measured against the
// terms: float32/64 rows relative to ||magnitude||, 16-bit elements within
// 1 ulp or within the float32 bound relative to the terms.
std::string compare_rows(const TypedMatrix& actual, const reference::Matrix& expected,
                         const reference::Matrix* magnitude = nullptr);
// A vector (dweight, dbias) summed over rows: |error| <= tol * scale[i], where
// scale is the sum of the magnitudes of the terms (a sum's own condition).
// Each term also carries its row statistic's error, which SPEC allows to grow
// as 1e-6 (1 + log2 n) for float32 (1e-13 for float64).
std::string compare_sum(DType dtype, const void* actual, const std::vector<double>& expected,
                        const std::vector<double>& magnitude, int64_t rows, int64_t n);

// Backward outputs against the reference: dx (rows, with the terms' sizes),
// dweight in dweight_dtype and dbias in float32 (each skipped when null), with
// compare_sum's bounds. Returns "" or what failed.
std::string check_backward_outputs(const NormOptions& options, const TypedMatrix& x, const TypedMatrix& dy,
                                   const TypedVector& weight, const TypedMatrix& dx, const void* dweight,
                                   DType dweight_dtype, const void* dbias);

double float32_tolerance(int64_t n);

// The size of the terms that make up dx (see check_backward_outputs), rows x n.
reference::Matrix gradient_magnitude(const reference::Matrix& x, const reference::Matrix& dy,
                                     const std::vector<double>& weight, const reference::ForwardResult& fw);


// The size of the terms of gated_forward/backward's outputs (SPEC section 10):
// the reference's formulas with every term made positive, and the gain as
// |offset| + |g|. Where du cancels (sum gy u / r against gy), dx and dz are
// measured against these, as SPEC section 4 says.
struct GatedTerms {
  reference::Matrix dx, dz;
  std::vector<double> dweight;
};
GatedTerms gated_terms(const NormOptions& options, Gate gate, int64_t group_size, const reference::Matrix& x,
                       const reference::Matrix& z, const reference::Matrix& dy, const std::vector<double>& weight);

std::vector<DType> all_dtypes();

// While alive, every output is written by the streaming (non-temporal) paths,
// which otherwise run only for outputs larger than the last-level cache.
class ForceStreaming {
 public:
  ForceStreaming();
  ~ForceStreaming();
  ForceStreaming(const ForceStreaming&) = delete;
  ForceStreaming& operator=(const ForceStreaming&) = delete;
};

// ------------------------------------------------------------------ calls
// One gtest instance per compiled SIMD target: derive a fixture from
// TargetTest and instantiate it with
//   INSTANTIATE_TEST_SUITE_P(Targets, Fixture, every_target(), target_name);
// SetUp restricts dispatch to the target, TearDown restores the best.
class TargetTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  void TearDown() override;
};
::testing::internal::ParamGenerator<std::string> every_target();
std::string target_name(const ::testing::TestParamInfo<std::string>& info);

NormOptions rms(double p = 1.0, EpsPlacement placement = EpsPlacement::kInside, double eps = 1e-5);
NormOptions layer_norm();

// One engine call on typed matrices: y (row stride n) from x, with the weight
// when it holds values, saving the statistics where pointers are given.
TypedMatrix forward_of(const NormOptions& o, const TypedMatrix& x, const TypedVector& weight,
                       void* inv_rms = nullptr, void* mean = nullptr);
// The same with a bias (absent when it holds no values).
TypedMatrix forward_with_bias_of(const NormOptions& o, const TypedMatrix& x, const TypedVector& weight,
                                 const TypedVector& bias);
// The fused residual form (row stride n): h = x + residual rounded, y = norm(h).
struct FusedOutputs {
  TypedMatrix y, h;
};
FusedOutputs fused_add_of(const NormOptions& o, const TypedMatrix& x, const TypedMatrix& residual,
                          const TypedVector& weight);
// dx (row stride n) and dweight (in the weight's dtype, when there is a weight).
struct Gradients {
  TypedMatrix dx;
  std::vector<unsigned char> dweight;
};
// The inputs of a backward call (rows, n, x, dy, weight, saved statistics);
// the caller adds the outputs it wants.
BackwardArgs backward_inputs(const TypedMatrix& x, const TypedMatrix& dy, const TypedVector& weight,
                             const void* inv_rms = nullptr, const void* mean = nullptr);
Gradients backward_of(const NormOptions& o, const TypedMatrix& x, const TypedMatrix& dy, const TypedVector& weight,
                      const void* inv_rms = nullptr, const void* mean = nullptr);

// Runs `call`, which must throw rmsnorm::Error with `expected` in its message;
// returns "" or what went wrong (the caller then checks nothing was written).
std::string rejection_problem(const std::function<void()>& call, const std::string& expected);

// Columns [begin, begin + width) of m, as their own matrix with row stride
// width + pad; and a vector's elements [begin, begin + width).
TypedMatrix columns_of(const TypedMatrix& m, int64_t begin, int64_t width, int64_t pad = 0);
TypedVector slice_of(const TypedVector& v, int64_t begin, int64_t width);

// Row r of m as a one-row matrix, and whether two rows hold the same bytes.
TypedMatrix row_of(const TypedMatrix& m, int64_t r);
bool same_bits(const TypedMatrix& a, int64_t ra, const TypedMatrix& b, int64_t rb);
// A matrix / vector holding exactly these values (rounded to dtype), row-major.
TypedMatrix matrix_of(DType dtype, int64_t rows, int64_t n, const std::vector<double>& values);
TypedVector vector_of(DType dtype, const std::vector<double>& values);

// ------------------------------------------------------- SPEC section 7
// The 16-bit outputs a published formula allows: every value in [lo, hi].
struct Accepted {
  double lo, hi;
  bool contains(double y) const { return y >= lo && y <= hi; }
};
// What the published formulas give for element c of a row, from the exact x
// values of the row, with the gain g (offset included) and bias b:
//   single:        y = round16(xhat * g + b)
//   before_weight: t = round16(xhat), y = round16(float32(t * g + b))
// xhat = (x - mean) / sqrt(var + eps) (LayerNorm) or x / sqrt(mean(x^2) + eps)
// over the whole row (p = 1, eps inside). Both neighbours are accepted where
// a value lies within 2^-20 of its terms from a rounding boundary, where
// statistics summed in another order may take either (SPEC section 7).
Accepted formula_outputs(const NormOptions& o, DType dtype, const std::vector<double>& row, int64_t c, double g,
                         double b);

}  // namespace rmsnorm::testing
