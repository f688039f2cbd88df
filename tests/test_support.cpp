#include "tests/test_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "rmsnorm/scalar_types.hpp"
#include "src/cpu/engine.hpp"

namespace rmsnorm::testing {

uint64_t run_seed() {
  static const uint64_t seed = [] {
    if (const char* s = std::getenv("RMSNORM_TEST_SEED")) return static_cast<uint64_t>(std::strtoull(s, nullptr, 10));
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }();
  return seed;
}

namespace {
// Every test binary states its seed before its tests run, so that a failure
// anywhere can be re-run exactly:
// RMSNORM_TEST_SEED=<seed> <binary> --gtest_filter=<test>.
class SeedReporter : public ::testing::Environment {
 public:
  void SetUp() override {
    std::printf("rmsnorm tests: seed %llu (re-run with RMSNORM_TEST_SEED=%llu)\n",
                static_cast<unsigned long long>(run_seed()), static_cast<unsigned long long>(run_seed()));
  }
  void TearDown() override {
    if (::testing::UnitTest::GetInstance()->Failed()) {
      std::printf("rmsnorm tests: FAILED with seed %llu; RMSNORM_TEST_SEED=%llu reproduces the inputs\n",
                  static_cast<unsigned long long>(run_seed()), static_cast<unsigned long long>(run_seed()));
    }
  }
};
[[maybe_unused]] ::testing::Environment* const seed_reporter = ::testing::AddGlobalTestEnvironment(new SeedReporter);
}  // namespace

std::mt19937_64& rng() {
  static std::mt19937_64 engine(run_seed());
  return engine;
}

double to_double(DType dtype, const void* base, int64_t i) { return load_element(dtype, base, i); }

static void store_double(DType dtype, void* base, int64_t i, double v) { store_element(dtype, base, i, v); }

double TypedMatrix::get(int64_t r, int64_t c) const { return to_double(dtype, bytes.data(), r * stride + c); }
void TypedMatrix::set(int64_t r, int64_t c, double v) { store_double(dtype, bytes.data(), r * stride + c, v); }

reference::Matrix TypedMatrix::values() const {
  reference::Matrix m{rows, n, std::vector<double>(static_cast<size_t>(rows * n))};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) m.at(r, c) = get(r, c);
  return m;
}

TypedMatrix make_matrix(DType dtype, int64_t rows, int64_t n, int64_t stride) {
  TypedMatrix m;
  m.dtype = dtype;
  m.rows = rows;
  m.n = n;
  m.stride = stride;
  // Padding between rows holds a sentinel pattern that no kernel may touch.
  m.bytes.assign(static_cast<size_t>(std::max<int64_t>(1, rows * stride) * dtype_size(dtype)), 0xA5);
  return m;
}

TypedMatrix random_matrix(DType dtype, int64_t rows, int64_t n, int64_t stride, double offset) {
  TypedMatrix m = make_matrix(dtype, rows, n, stride);
  std::normal_distribution<double> normal(0.0, 1.0);
  // 16-bit types keep to a range where values stay normal numbers.
  const double decades = dtype == DType::kFloat16 ? 1.5 : 3.0;
  std::uniform_real_distribution<double> log_scale(-decades, decades);
  for (int64_t r = 0; r < rows; ++r) {
    const double scale = std::pow(10.0, log_scale(rng()));
    for (int64_t c = 0; c < n; ++c) m.set(r, c, scale * (offset + normal(rng())));
  }
  return m;
}

TypedVector random_vector(DType dtype, int64_t n, double mean, double spread) {
  TypedVector v;
  v.dtype = dtype;
  v.bytes.resize(static_cast<size_t>(n) * dtype_size(dtype));
  v.values.resize(static_cast<size_t>(n));
  std::normal_distribution<double> normal(mean, spread);
  for (int64_t i = 0; i < n; ++i) {
    store_double(dtype, v.bytes.data(), i, normal(rng()));
    v.values[i] = to_double(dtype, v.bytes.data(), i);
  }
  return v;
}

TypedVector empty_vector(DType dtype) {
  TypedVector v;
  v.dtype = dtype;
  return v;
}

double float32_tolerance(int64_t n) { return 1e-6 * (1.0 + std::log2(static_cast<double>(n))); }

namespace {

// Distance in units in the last place between two 16-bit patterns of the same format.
int64_t ulp_distance(uint16_t a, uint16_t b) {
  auto ordered = [](uint16_t h) { return (h & 0x8000u) ? -static_cast<int64_t>(h & 0x7FFFu) : static_cast<int64_t>(h); };
  return std::llabs(ordered(a) - ordered(b));
}

uint16_t round16(DType dtype, double v) { return dtype == DType::kBFloat16 ? double_to_bfloat16(v) : double_to_float16(v); }

std::string describe(int64_t r, int64_t c, double got, double want) {
  std::ostringstream s;
  s.precision(17);
  s << "row " << r << " column " << c << ": got " << got << ", reference " << want;
  return s.str();
}

}  // namespace

std::string compare_rows(const TypedMatrix& actual, const reference::Matrix& expected,
                         const reference::Matrix* magnitude) {
  const int64_t n = actual.n;
  for (int64_t r = 0; r < actual.rows; ++r) {
    if (actual.dtype == DType::kBFloat16 || actual.dtype == DType::kFloat16) {
      for (int64_t c = 0; c < n; ++c) {
        const double want = expected.at(r, c), got = actual.get(r, c);
        if (std::isnan(want) || std::isnan(got)) {
          if (std::isnan(want) != std::isnan(got)) return describe(r, c, got, want);
          continue;
        }
        const uint16_t got_bits = static_cast<const uint16_t*>(actual.data())[r * actual.stride + c];
        const bool subnormal_f16 = actual.dtype == DType::kFloat16 && std::fabs(want) < std::ldexp(1.0, -14);
        const bool cancellation_ok = magnitude && std::fabs(got - want) <= float32_tolerance(n) * magnitude->at(r, c);
        const bool ok = cancellation_ok || (subnormal_f16 ? std::fabs(got - want) <= std::ldexp(1.0, -24)
                                                          : ulp_distance(got_bits, round16(actual.dtype, want)) <= 1);
        if (!ok) return describe(r, c, got, want) + " (more than 1 ulp)";
      }
      continue;
    }
    // The norms are taken of the row scaled by a power of two near its
    // largest value, so that rows near the top of double's range (pRMSNorm
    // outputs past k can be ~1e300) do not overflow the squares.
    double largest_value = 0;
    for (int64_t c = 0; c < n; ++c) {
      const double want = std::fabs(expected.at(r, c));
      if (std::isfinite(want)) largest_value = std::max(largest_value, want);
      if (magnitude && std::isfinite(magnitude->at(r, c))) largest_value = std::max(largest_value, magnitude->at(r, c));
    }
    // (Clamped: 2^1074 for a subnormal row would itself overflow.)
    const double scale = largest_value > 0 ? std::ldexp(1.0, std::clamp(-std::ilogb(largest_value), -1000, 1000)) : 1.0;
    double err2 = 0, ref2 = 0;
    bool any_nan = false;
    for (int64_t c = 0; c < n; ++c) {
      const double want = expected.at(r, c), got = actual.get(r, c);
      if (std::isnan(want) || std::isnan(got)) {
        if (std::isnan(want) != std::isnan(got)) return describe(r, c, got, want);
        any_nan = true;
        continue;
      }
      const double error = got * scale - want * scale, scaled_want = want * scale;
      const double scaled_magnitude = magnitude ? magnitude->at(r, c) * scale : 0.0;
      err2 += error * error;
      ref2 += std::max(scaled_want * scaled_want, scaled_magnitude * scaled_magnitude);
    }
    if (any_nan) continue;
    const double tolerance = actual.dtype == DType::kFloat64 ? 1e-13 * (1.0 + std::log2(static_cast<double>(n)))
                                                             : float32_tolerance(n);
    const double relative = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
    if (!(relative <= tolerance)) {
      std::ostringstream s;
      s << "row " << r << ": relative error " << relative << " exceeds " << tolerance;
      return s.str();
    }
  }
  return "";
}

std::string compare_sum(DType dtype, const void* actual, const std::vector<double>& expected,
                        const std::vector<double>& magnitude, int64_t rows, int64_t n) {
  // Terms are formed in float (double for float64 data) and summed in chunks of
  // 32 rows before a double total: a few float roundings per term.
  const double unit = dtype == DType::kFloat64 ? 1e-15 : 6e-8;
  const double statistic = (dtype == DType::kFloat64 ? 1e-13 : 1e-6) * (1.0 + std::log2(static_cast<double>(n)));
  const double tolerance = 64 * unit * (1.0 + std::log2(1.0 + static_cast<double>(rows))) + statistic;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double got = to_double(dtype, actual, static_cast<int64_t>(i));
    const double rounded = rounded_to(dtype, expected[i]);
    // The true sum is beyond the format's range: infinity is the right answer,
    // and so is a finite value within the sum's tolerance (the largest finite
    // number, when the computed sum lands just below the boundary).
    if (std::isinf(rounded) && got == rounded) continue;
    double allowed = tolerance * magnitude[i];
    if (dtype == DType::kBFloat16) allowed += std::fabs(expected[i]) * std::ldexp(1.0, -8);
    if (dtype == DType::kFloat16) allowed += std::fabs(expected[i]) * std::ldexp(1.0, -11) + std::ldexp(1.0, -24);
    if (dtype == DType::kFloat32) allowed += std::fabs(expected[i]) * 1.2e-7;
    // The storage's own rounding at the bottom of its range: a sum of 1e-66
    // is 0 as a float32 (gated dweight terms of silu(z) ~ e^-150).
    allowed += dtype == DType::kFloat64    ? std::numeric_limits<double>::denorm_min()
               : dtype == DType::kFloat16  ? 0.0
               : dtype == DType::kBFloat16 ? std::ldexp(1.0, -134)
                                           : std::ldexp(1.0, -150);
    // Where the tolerance itself reaches past the format's range (terms near
    // its top that cancel), an overflow to infinity in that direction is one
    // of the values it allows (found by the fuzzer: float32 dweight of float64
    // rows whose terms of 1.4e86 cancel to 0).
    const double largest = dtype == DType::kFloat64    ? std::numeric_limits<double>::max()
                           : dtype == DType::kFloat32  ? std::numeric_limits<float>::max()
                           : dtype == DType::kBFloat16 ? 0x1.fep127
                                                       : 65504.0;
    if (std::isinf(got) && (got > 0 ? expected[i] + allowed > largest : expected[i] - allowed < -largest)) continue;
    if (!(std::fabs(got - expected[i]) <= allowed)) {
      std::ostringstream s;
      s.precision(17);
      s << "element " << i << ": got " << got << ", reference " << expected[i] << ", allowed error " << allowed;
      return s.str();
    }
  }
  return "";
}

std::vector<DType> all_dtypes() { return {DType::kFloat32, DType::kBFloat16, DType::kFloat16, DType::kFloat64}; }

ForceStreaming::ForceStreaming() { cpu::set_stream_threshold_override(0); }
ForceStreaming::~ForceStreaming() { cpu::set_stream_threshold_override(-1); }

// The size of the terms of dx_j: (|gy_j| + rms(gy) (1 + |x_j - mean| / r)) / r.
// dx can cancel to near 0 (n = 1, dy along y, LayerNorm rows of nearly equal
// values); errors are measured against these terms. The mean itself is not a
// term: a row like 1e4 + N(0, 1) must have gradients accurate to its spread.
reference::Matrix gradient_magnitude(const reference::Matrix& x, const reference::Matrix& dy,
                                     const std::vector<double>& weight, const reference::ForwardResult& fw) {
  // In long double (x86: 15-bit exponent), which no product or square of
  // doubles here underflows or overflows: in double, squares of gy ~ 1e-265
  // underflowed to 0 and 0 * (1/r = inf) made the magnitude NaN (a float64
  // row of subnormals, found by the fuzzer in CI), and gy = dy * g = 6e-325
  // itself rounded to 0, so terms of 1e-40 counted as 0 and an exact answer
  // was demanded of a dx that cancels to 0 (LayerNorm, n = 2, eps = 0).
  using Wide = long double;
  reference::Matrix m = x;
  for (int64_t r = 0; r < x.rows; ++r) {
    auto gy = [&](int64_t c) { return static_cast<Wide>(dy.at(r, c)) * (weight.empty() ? Wide{1} : weight[c]); };
    // A NaN or Inf gy makes the row's statistic terms (and those dx) NaN,
    // which is checked as NaN; it must not make the other columns' terms NaN
    // too, or their results would be held to 1 ulp (fuzzer: a NaN weight in
    // column 0 of a pRMSNorm row, whose column 3 past k cancels dh_out).
    Wide sum = 0;
    for (int64_t c = 0; c < x.n; ++c) {
      if (std::isfinite(gy(c))) sum += gy(c) * gy(c);
    }
    const Wide rms_gy = std::sqrt(sum / static_cast<Wide>(x.n));
    const Wide inv_r = fw.inv_rms[r];
    for (int64_t c = 0; c < x.n; ++c) {
      const Wide x_terms = std::fabs(static_cast<Wide>(x.at(r, c)) - fw.mean[r]) * inv_r;
      m.at(r, c) = static_cast<double>((std::fabs(gy(c)) + rms_gy * (1 + x_terms)) * inv_r);
    }
  }
  return m;
}

GatedTerms gated_terms(const NormOptions& options, Gate gate, int64_t group_size, const reference::Matrix& x,
                       const reference::Matrix& z, const reference::Matrix& dy, const std::vector<double>& weight) {
  using Wide = long double;
  const int64_t n = x.n, m = group_size == 0 ? n : group_size;
  GatedTerms t{x, x, std::vector<double>(static_cast<size_t>(n), 0.0)};
  auto silu = [](Wide v) { return v / (1 + std::exp(-v)); };
  auto silu_derivative = [](Wide v) {
    const Wide s = 1 / (1 + std::exp(-v));
    return std::fabs(s) * (1 + std::fabs(v) * std::fabs(1 - s));
  };
  const bool outside = options.eps_placement == EpsPlacement::kOutside;
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c0 = 0; c0 < n; c0 += m) {
      std::vector<Wide> u(static_cast<size_t>(m)), gy(static_cast<size_t>(m));
      Wide squares = 0;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t c = c0 + i;
        u[i] = x.at(r, c) * (gate == Gate::kBeforeNorm ? silu(z.at(r, c)) : 1);
        squares += u[i] * u[i];
      }
      const Wide ms = squares / m;
      const Wide rr = outside ? std::sqrt(ms) + options.eps : std::sqrt(ms + options.eps);
      Wide D = 0;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t c = c0 + i;
        const Wide gain = weight.empty() ? 1 : std::fabs(options.weight_offset) + std::fabs(static_cast<Wide>(weight[c]));
        gy[i] = std::fabs(dy.at(r, c)) * gain * (gate == Gate::kAfterNorm ? std::fabs(silu(z.at(r, c))) : 1);
        D += gy[i] * std::fabs(u[i]) / rr;
      }
      for (int64_t i = 0; i < m; ++i) {
        const int64_t c = c0 + i;
        const Wide u_hat = std::fabs(u[i]) / rr;
        const Wide du = (gy[i] + u_hat * D / m + (outside ? u_hat * D : 0)) / rr;
        const Wide gain = weight.empty() ? 1 : std::fabs(options.weight_offset) + std::fabs(static_cast<Wide>(weight[c]));
        if (gate == Gate::kBeforeNorm) {
          t.dx.at(r, c) = static_cast<double>(du * std::fabs(silu(z.at(r, c))));
          t.dz.at(r, c) = static_cast<double>(du * std::fabs(x.at(r, c)) * silu_derivative(z.at(r, c)));
        } else {
          t.dx.at(r, c) = static_cast<double>(du);
          t.dz.at(r, c) = static_cast<double>(std::fabs(dy.at(r, c)) * gain * u_hat * silu_derivative(z.at(r, c)));
        }
        t.dweight[c] += static_cast<double>(std::fabs(dy.at(r, c)) * u_hat *
                                            (gate == Gate::kAfterNorm ? std::fabs(silu(z.at(r, c))) : 1));
      }
    }
  return t;
}

std::string check_backward_outputs(const NormOptions& o, const TypedMatrix& x, const TypedMatrix& dy,
                                   const TypedVector& weight, const TypedMatrix& dx, const void* dweight,
                                   DType dweight_dtype, const void* dbias) {
  const int64_t rows = x.rows, n = x.n;
  const reference::Matrix xv = x.values(), dyv = dy.values();
  const reference::BackwardResult want = reference::backward(o, xv, dyv, weight.values);
  const reference::ForwardResult fw = reference::forward(o, xv, {}, {});
  std::vector<double> gain = weight.values;  // SPEC section 7: the gradient's gain is offset + g
  for (double& g : gain) g += o.weight_offset;
  const reference::Matrix magnitude = gradient_magnitude(xv, dyv, gain, fw);
  if (std::string e = compare_rows(dx, want.dx, &magnitude); !e.empty()) return "dx: " + e;
  // dweight's terms are dy * xhat. The mean's own rounding error is of the
  // order of the row's spread times the float32 bound (~1e-6 in xhat units);
  // it shifts every xhat_j, also where x_j - mean is small, and the sums are
  // allowed ~1e-5 of their terms.
  const double mean_term = o.kind == NormKind::kLayerNorm ? 0.05 : 0.0;
  std::vector<double> dw_magnitude(static_cast<size_t>(n)), db_magnitude(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) {
      const double x_terms = std::fabs(xv.at(r, c) - fw.mean[r]) * fw.inv_rms[r] + mean_term;
      dw_magnitude[c] += std::fabs(dyv.at(r, c)) * x_terms;
      db_magnitude[c] += std::fabs(dyv.at(r, c));
    }
  if (dbias) {
    if (std::string e = compare_sum(DType::kFloat32, dbias, want.dbias, db_magnitude, rows, n); !e.empty())
      return "dbias: " + e;
  }
  if (dweight) {
    if (std::string e = compare_sum(dweight_dtype, dweight, want.dweight, dw_magnitude, rows, n); !e.empty())
      return "dweight: " + e;
  }
  return "";
}

// ------------------------------------------------------------------ calls
void TargetTest::SetUp() {
  set_simd_target(GetParam());
  ASSERT_EQ(runtime_info().simd_target, GetParam());
}
void TargetTest::TearDown() { set_simd_target("best"); }

::testing::internal::ParamGenerator<std::string> every_target() {
  return ::testing::ValuesIn(runtime_info().compiled_targets);
}
std::string target_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

NormOptions rms(double p, EpsPlacement placement, double eps) {
  NormOptions o;
  o.p = p;
  o.eps_placement = placement;
  o.eps = eps;
  return o;
}

NormOptions layer_norm() {
  NormOptions o;
  o.kind = NormKind::kLayerNorm;
  return o;
}

namespace {
TypedMatrix forward_call(const NormOptions& o, const TypedMatrix& x, const TypedVector& weight, const TypedVector* bias,
                         void* inv_rms, void* mean) {
  TypedMatrix y = make_matrix(x.dtype, x.rows, x.n, x.n);
  ForwardArgs a;
  a.rows = x.rows;
  a.n = x.n;
  a.x = {x.data(), x.dtype, x.stride};
  a.y = {y.data(), x.dtype, x.n};
  a.weight = {weight.data(), weight.dtype};
  if (bias) a.bias = {bias->data(), bias->dtype};
  a.saved = {inv_rms, mean};
  forward(o, a);
  return y;
}
}  // namespace

TypedMatrix forward_of(const NormOptions& o, const TypedMatrix& x, const TypedVector& weight, void* inv_rms,
                       void* mean) {
  return forward_call(o, x, weight, nullptr, inv_rms, mean);
}

TypedMatrix forward_with_bias_of(const NormOptions& o, const TypedMatrix& x, const TypedVector& weight,
                                 const TypedVector& bias) {
  return forward_call(o, x, weight, &bias, nullptr, nullptr);
}

FusedOutputs fused_add_of(const NormOptions& o, const TypedMatrix& x, const TypedMatrix& residual,
                          const TypedVector& weight) {
  FusedOutputs out{make_matrix(x.dtype, x.rows, x.n, x.n), residual};
  FusedAddArgs a;
  a.rows = x.rows;
  a.n = x.n;
  a.x = {x.data(), x.dtype, x.stride};
  a.residual = {out.h.data(), x.dtype, out.h.stride};
  a.y = {out.y.data(), x.dtype, x.n};
  a.weight = {weight.data(), weight.dtype};
  fused_add_forward(o, a);
  return out;
}

BackwardArgs backward_inputs(const TypedMatrix& x, const TypedMatrix& dy, const TypedVector& weight,
                             const void* inv_rms, const void* mean) {
  BackwardArgs a;
  a.rows = x.rows;
  a.n = x.n;
  a.x = {x.data(), x.dtype, x.stride};
  a.dy = {dy.data(), dy.dtype, dy.stride};
  a.weight = {weight.data(), weight.dtype};
  a.saved = {inv_rms, mean};
  return a;
}

Gradients backward_of(const NormOptions& o, const TypedMatrix& x, const TypedMatrix& dy, const TypedVector& weight,
                      const void* inv_rms, const void* mean) {
  Gradients g{make_matrix(x.dtype, x.rows, x.n, x.n), std::vector<unsigned char>(static_cast<size_t>(x.n) * 8)};
  BackwardArgs a = backward_inputs(x, dy, weight, inv_rms, mean);
  a.dx = {g.dx.data(), x.dtype, x.n};
  if (weight.data()) a.dweight = {g.dweight.data(), weight.dtype};
  backward(o, a);
  return g;
}

TypedMatrix row_of(const TypedMatrix& m, int64_t r) {
  TypedMatrix one = make_matrix(m.dtype, 1, m.n, m.n);
  const size_t bytes = static_cast<size_t>(m.n) * dtype_size(m.dtype);
  std::memcpy(one.data(), m.bytes.data() + static_cast<size_t>(r * m.stride) * dtype_size(m.dtype), bytes);
  return one;
}

bool same_bits(const TypedMatrix& a, int64_t ra, const TypedMatrix& b, int64_t rb) {
  const size_t size = dtype_size(a.dtype);
  return a.dtype == b.dtype && a.n == b.n &&
         std::memcmp(a.bytes.data() + static_cast<size_t>(ra * a.stride) * size,
                     b.bytes.data() + static_cast<size_t>(rb * b.stride) * size, static_cast<size_t>(a.n) * size) == 0;
}

TypedMatrix matrix_of(DType dtype, int64_t rows, int64_t n, const std::vector<double>& values) {
  TypedMatrix m = make_matrix(dtype, rows, n, n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) m.set(r, c, values[static_cast<size_t>(r * n + c)]);
  return m;
}

TypedVector vector_of(DType dtype, const std::vector<double>& values) {
  TypedVector v = random_vector(dtype, static_cast<int64_t>(values.size()), 0.0, 1.0);
  TypedMatrix row = matrix_of(dtype, 1, static_cast<int64_t>(values.size()), values);
  std::memcpy(v.bytes.data(), row.data(), v.bytes.size());
  for (size_t i = 0; i < values.size(); ++i) v.values[i] = row.get(0, static_cast<int64_t>(i));
  return v;
}


std::string rejection_problem(const std::function<void()>& call, const std::string& expected) {
  try {
    call();
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.find(expected) == std::string::npos) return "the message '" + message + "' lacks '" + expected + "'";
    return "";
  }
  return "accepted; expected an error mentioning '" + expected + "'";
}

TypedMatrix columns_of(const TypedMatrix& m, int64_t begin, int64_t width, int64_t pad) {
  TypedMatrix part = make_matrix(m.dtype, m.rows, width, width + pad);
  const size_t size = dtype_size(m.dtype);
  for (int64_t r = 0; r < m.rows; ++r) {
    std::memcpy(part.bytes.data() + static_cast<size_t>(r * part.stride) * size,
                m.bytes.data() + static_cast<size_t>(r * m.stride + begin) * size, static_cast<size_t>(width) * size);
  }
  return part;
}

TypedVector slice_of(const TypedVector& v, int64_t begin, int64_t width) {
  TypedVector part;
  part.dtype = v.dtype;
  if (v.bytes.empty()) return part;
  const size_t size = dtype_size(v.dtype);
  part.bytes.assign(v.bytes.begin() + static_cast<std::ptrdiff_t>(begin * size),
                    v.bytes.begin() + static_cast<std::ptrdiff_t>((begin + width) * size));
  part.values.assign(v.values.begin() + begin, v.values.begin() + begin + width);
  return part;
}

// ------------------------------------------------------- SPEC section 7

namespace {

// The 16-bit values nearest v, and both neighbours when v lies within 2^-20 of
// `terms` (the size of the parts v is made of) from a rounding boundary
// (SPEC section 4 measures cancelling results against their terms).
Accepted rounded(DType dtype, double lo, double hi, double terms) {
  const double band = std::ldexp(terms, -20);
  return {rounded_to(dtype, lo - band), rounded_to(dtype, hi + band)};
}

}  // namespace

// LayerNorm's xhat also carries the mean's own rounding, about 1 in xhat units
// times the arithmetic's precision, wherever x - mean cancels (as in
// forward_test), so its terms are |xhat| + 1.
Accepted formula_outputs(const NormOptions& o, DType dtype, const std::vector<double>& row, int64_t c, double g,
                         double b) {
  if (o.p != 1.0 || o.eps_placement != EpsPlacement::kInside) {
    throw std::invalid_argument("formula_outputs: only p = 1 with eps inside is written out");
  }
  const auto n = static_cast<double>(row.size());
  const bool centered = o.kind == NormKind::kLayerNorm;
  long double mean = 0, squares = 0;
  if (centered) {
    for (double v : row) mean += v;
    mean /= n;
  }
  for (double v : row) squares += (v - mean) * (v - mean);
  const double xhat = static_cast<double>((row[c] - mean) / std::sqrt(squares / n + o.eps));
  const double xhat_terms = std::fabs(xhat) + (centered ? 1.0 : 0.0);
  if (o.rounding == Rounding::kSingle) {
    const double y = xhat * g + b;
    return rounded(dtype, y, y, xhat_terms * std::fabs(g) + std::fabs(b));
  }
  const Accepted t = rounded(dtype, xhat, xhat, xhat_terms);
  // t * g + b is monotone in t: its ends bound it.
  const double p1 = static_cast<float>(t.lo * g + b), p2 = static_cast<float>(t.hi * g + b);  // formed in float32
  const double t_size = std::max(std::fabs(t.lo), std::fabs(t.hi));
  return rounded(dtype, std::min(p1, p2), std::max(p1, p2), t_size * std::fabs(g) + std::fabs(b));
}

}  // namespace rmsnorm::testing
