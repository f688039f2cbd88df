// The CUDA backend against the long-double reference on the CPU: every dtype,
// both eps placements, pRMSNorm, weight/bias, awkward sizes, strides, fused
// residual, backward (dx, dweight, dbias), NaN rows, determinism and bad
// input. Every test skips, saying why, when no CUDA device is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>

#include "rmsnorm/cuda.hpp"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

#define REQUIRE_GPU()                                                                       \
  do {                                                                                      \
    const cuda::DeviceInfo info = cuda::device_info();                                      \
    if (!info.available) GTEST_SKIP() << "no CUDA device (" << info.reason << "): skipped"; \
  } while (0)

// Device memory holding a copy of host bytes; copied back by host().
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_ && cudaMalloc(&data_, bytes_) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  DeviceBuffer(const void* host, size_t bytes) : DeviceBuffer(bytes) {
    if (bytes_) cudaMemcpy(data_, host, bytes_, cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return data_; }
  std::vector<unsigned char> host() const {
    std::vector<unsigned char> out(bytes_);
    if (bytes_) cudaMemcpy(out.data(), data_, bytes_, cudaMemcpyDeviceToHost);
    return out;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

NormOptions options_of(NormKind kind, EpsPlacement placement, double p) {
  NormOptions o;
  o.kind = kind;
  o.eps_placement = placement;
  o.p = p;
  return o;
}

struct Case {
  NormKind kind;
  EpsPlacement placement;
  double p;
  bool weight, bias;
};

std::vector<Case> cases() {
  return {{NormKind::kRMSNorm, EpsPlacement::kInside, 1.0, true, false},
          {NormKind::kRMSNorm, EpsPlacement::kOutside, 1.0, true, true},
          {NormKind::kRMSNorm, EpsPlacement::kInside, 0.0625, false, false},
          {NormKind::kRMSNorm, EpsPlacement::kInside, 0.5, true, false},
          {NormKind::kLayerNorm, EpsPlacement::kInside, 1.0, true, true},
          {NormKind::kLayerNorm, EpsPlacement::kOutside, 1.0, false, true}};
}

TEST(Cuda, ForwardMatchesReferenceForEveryDtypeAndSize) {
  REQUIRE_GPU();
  for (DType dtype : all_dtypes()) {
    for (int64_t n : std::vector<int64_t>{1, 3, 17, 4095, 4097, 65537, int64_t{1} << 20}) {
      for (int64_t rows : std::vector<int64_t>{1, 3, 64}) {
        if (rows * n > (int64_t{1} << 22)) continue;
        for (const Case& c : cases()) {
          const NormOptions o = options_of(c.kind, c.placement, c.p);
          const int64_t stride = n + (rows == 3 ? 8 : 0);
          SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + std::to_string(rows) + "x" + std::to_string(n));
          const TypedMatrix x = random_matrix(dtype, rows, n, stride);
          TypedMatrix y = make_matrix(dtype, rows, n, stride);
          const TypedVector w = c.weight ? random_vector(DType::kFloat32, n, 1.0, 0.5) : empty_vector(DType::kFloat32);
          const TypedVector b = c.bias ? random_vector(DType::kFloat32, n, 0.0, 1.0) : empty_vector(DType::kFloat32);
          DeviceBuffer dx(x.data(), x.bytes.size()), dy(y.bytes.size());
          DeviceBuffer dw(w.data(), w.bytes.size()), db(b.data(), b.bytes.size());
          ForwardArgs a;
          a.rows = rows;
          a.n = n;
          a.x = {dx.get(), dtype, stride};
          a.y = {dy.get(), dtype, stride};
          a.weight = {c.weight ? dw.get() : nullptr, DType::kFloat32};
          a.bias = {c.bias ? db.get() : nullptr, DType::kFloat32};
          cuda::forward(o, a);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          y.bytes = dy.host();
          const reference::ForwardResult want = reference::forward(o, x.values(), w.values, b.values);
          reference::Matrix magnitude = want.y;
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t col = 0; col < n; ++col)
              magnitude.at(r, col) = std::fabs(x.get(r, col) - want.mean[r]) * want.inv_rms[r] *
                                         (c.weight ? std::fabs(w.values[col]) : 1.0) +
                                     (c.bias ? std::fabs(b.values[col]) : 0.0) + 1e-300;
          ASSERT_EQ(compare_rows(y, want.y, c.bias ? &magnitude : nullptr), "");
        }
      }
    }
  }
}

TEST(Cuda, FusedResidualMatchesForwardOfTheRoundedSum) {
  REQUIRE_GPU();
  for (DType dtype : all_dtypes()) {
    const int64_t rows = 5, n = 777;
    const TypedMatrix x = random_matrix(dtype, rows, n, n), residual = random_matrix(dtype, rows, n, n);
    TypedMatrix sum = make_matrix(dtype, rows, n, n), y = make_matrix(dtype, rows, n, n);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) sum.set(r, c, x.get(r, c) + residual.get(r, c));
    DeviceBuffer dx(x.data(), x.bytes.size()), dres(residual.data(), residual.bytes.size()), dy(y.bytes.size());
    FusedAddArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {dx.get(), dtype, n};
    a.residual = {dres.get(), dtype, n};
    a.y = {dy.get(), dtype, n};
    cuda::fused_add_forward(NormOptions{}, a);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    TypedMatrix updated = make_matrix(dtype, rows, n, n);
    updated.bytes = dres.host();
    EXPECT_EQ(updated.bytes, sum.bytes) << dtype_name(dtype) << ": residual must be round(residual + x)";
    y.bytes = dy.host();
    ASSERT_EQ(compare_rows(y, reference::forward(NormOptions{}, sum.values(), {}, {}).y), "") << dtype_name(dtype);
  }
}

TEST(Cuda, BackwardMatchesReferenceAndIsDeterministic) {
  REQUIRE_GPU();
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kBFloat16}) {
    for (int64_t n : std::vector<int64_t>{1, 17, 4097}) {
      for (const Case& c : cases()) {
        const int64_t rows = 37;
        const NormOptions o = options_of(c.kind, c.placement, c.p);
        const TypedMatrix x = random_matrix(dtype, rows, n, n), dyv = random_matrix(dtype, rows, n, n);
        const TypedVector w = c.weight ? random_vector(DType::kFloat32, n, 1.0, 0.5) : empty_vector(DType::kFloat32);
        DeviceBuffer d_x(x.data(), x.bytes.size()), d_dy(dyv.data(), dyv.bytes.size()), d_dx(x.bytes.size());
        DeviceBuffer d_w(w.data(), w.bytes.size()), d_dw(n * sizeof(float)), d_db(n * sizeof(float));
        BackwardArgs a;
        a.rows = rows;
        a.n = n;
        a.x = {d_x.get(), dtype, n};
        a.dy = {d_dy.get(), dtype, n};
        a.weight = {c.weight ? d_w.get() : nullptr, DType::kFloat32};
        a.dx = {d_dx.get(), dtype, n};
        a.dweight = {c.weight ? d_dw.get() : nullptr, DType::kFloat32};
        a.dbias = {d_db.get(), DType::kFloat32};
        cuda::backward(o, a);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const auto first_dw = d_dw.host(), first_db = d_db.host();
        const reference::BackwardResult want = reference::backward(o, x.values(), dyv.values(), w.values);
        TypedMatrix got = make_matrix(dtype, rows, n, n);
        got.bytes = d_dx.host();
        // dx against the reference, norm-wise per row with the term sizes (dx can cancel).
        double diff = 0, ref = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t col = 0; col < n; ++col) {
            diff += std::pow(got.get(r, col) - want.dx.at(r, col), 2);
            ref += std::pow(want.dx.at(r, col), 2);
          }
        const double tolerance = dtype == DType::kFloat64 ? 1e-12 : dtype == DType::kFloat32 ? 1e-5 : 1e-2;
        EXPECT_LE(std::sqrt(diff), tolerance * std::sqrt(ref) + 1e-30) << dtype_name(dtype) << " n=" << n;
        const std::vector<double> db_got = [&] {
          std::vector<double> v(n);
          for (int64_t i = 0; i < n; ++i) v[i] = to_double(DType::kFloat32, first_db.data(), i);
          return v;
        }();
        for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(db_got[i], want.dbias[i], 1e-5 * (1 + std::fabs(want.dbias[i])));
        // The same call again gives bitwise the same dweight and dbias.
        cuda::backward(o, a);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        EXPECT_EQ(d_dw.host(), first_dw);
        EXPECT_EQ(d_db.host(), first_db);
      }
    }
  }
}

TEST(Cuda, NonFiniteValuesPoisonOnlyTheirRow) {
  REQUIRE_GPU();
  const int64_t rows = 3, n = 100;
  TypedMatrix x = random_matrix(DType::kFloat32, rows, n, n);
  x.set(1, 90, std::numeric_limits<double>::quiet_NaN());  // beyond k for p = 0.5
  TypedMatrix y = make_matrix(DType::kFloat32, rows, n, n);
  DeviceBuffer dx(x.data(), x.bytes.size()), dy(y.bytes.size());
  ForwardArgs a;
  a.rows = rows;
  a.n = n;
  a.x = {dx.get(), DType::kFloat32, n};
  a.y = {dy.get(), DType::kFloat32, n};
  cuda::forward(options_of(NormKind::kRMSNorm, EpsPlacement::kInside, 0.5), a);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  y.bytes = dy.host();
  for (int64_t c = 0; c < n; ++c) {
    EXPECT_TRUE(std::isnan(y.get(1, c)));
    EXPECT_TRUE(std::isfinite(y.get(0, c)) && std::isfinite(y.get(2, c)));
  }
}

TEST(Cuda, HostPointersAndBadArgumentsAreRejected) {
  REQUIRE_GPU();
  std::vector<float> host(64);
  DeviceBuffer device(64 * sizeof(float));
  ForwardArgs a;
  a.rows = 4;
  a.n = 16;
  a.x = {host.data(), DType::kFloat32, 16};
  a.y = {device.get(), DType::kFloat32, 16};
  try {
    cuda::forward(NormOptions{}, a);
    FAIL() << "a host pointer was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x: expected device"), std::string::npos) << e.what();
  }
  a.x = {device.get(), DType::kFloat32, 16};
  NormOptions bad;
  bad.p = 0;
  EXPECT_THROW(cuda::forward(bad, a), Error);
}

TEST(Cuda, DeviceInfoExplainsItself) {
  const cuda::DeviceInfo info = cuda::device_info();
  if (info.available) {
    EXPECT_GT(info.device_count, 0);
    EXPECT_FALSE(info.name.empty());
  } else {
    EXPECT_FALSE(info.reason.empty());
    // Calls fail with a CudaError that says why, and write nothing.
    std::vector<float> x(4, 1.0f), y(4, 7.0f);
    ForwardArgs a;
    a.rows = 1;
    a.n = 4;
    a.x = {x.data(), DType::kFloat32, 4};
    a.y = {y.data(), DType::kFloat32, 4};
    EXPECT_THROW(cuda::forward(NormOptions{}, a), cuda::CudaError);
    EXPECT_EQ(y, std::vector<float>(4, 7.0f));
  }
}

}  // namespace
}  // namespace rmsnorm::testing
