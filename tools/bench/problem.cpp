#include "tools/bench/problem.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <stdexcept>

#include "rmsnorm/scalar_types.hpp"

namespace rmsnorm::bench {

const char* direction_name(Direction d) { return d == Direction::kForward ? "forward" : "forward+backward"; }

std::string Shape::label() const { return std::to_string(rows) + "x" + std::to_string(n); }

Shape parse_shape(const std::string& text) {
  const size_t x = text.find_first_of("xX");
  auto fail = [&] {
    throw std::invalid_argument("--shape: expected ROWSxN with positive integers, e.g. 32x4096, got \"" + text + "\"");
  };
  if (x == std::string::npos || x == 0 || x + 1 >= text.size()) fail();
  Shape s;
  try {
    size_t used_rows = 0, used_n = 0;
    s.rows = std::stoll(text.substr(0, x), &used_rows);
    s.n = std::stoll(text.substr(x + 1), &used_n);
    if (used_rows != x || used_n != text.size() - x - 1) fail();
  } catch (const std::logic_error&) {
    fail();
  }
  if (s.rows <= 0 || s.n <= 0) fail();
  return s;
}

Buffer::Buffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  data_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!data_) throw std::bad_alloc();
}
Buffer::~Buffer() { std::free(data_); }
Buffer::Buffer(Buffer&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
  other.data_ = nullptr;
  other.bytes_ = 0;
}
Buffer& Buffer::operator=(Buffer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(bytes_, other.bytes_);
  return *this;
}

double element(DType dtype, const void* base, int64_t n, int64_t row, int64_t c) {
  return load_element(dtype, base, row * n + c);
}

void set_element(DType dtype, void* base, int64_t n, int64_t row, int64_t c, double value) {
  store_element(dtype, base, row * n + c, value);
}

Workspace::Workspace(const Problem& p) : problem(p) {
  const size_t bytes = p.matrix_bytes();
  const int64_t rows = p.shape.rows, n = p.shape.n;
  x = Buffer(bytes);
  y = Buffer(bytes);
  const bool backward = p.direction == Direction::kForwardBackward;
  residual = Buffer(bytes);
  residual_initial = Buffer(bytes);
  if (backward) {
    dy = Buffer(bytes);
    dx = Buffer(bytes);
    dh_out = Buffer(bytes);
  }
  // Fixed seed: every implementation and every run sees the same inputs.
  std::mt19937_64 rng(20191208);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      set_element(p.dtype, x.data(), n, r, c, normal(rng));
      if (backward) set_element(p.dtype, dy.data(), n, r, c, normal(rng));
    }
  }
  // After x and dy, so that their values do not depend on the direction.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) set_element(p.dtype, residual_initial.data(), n, r, c, normal(rng));
  reset_residual();
  if (backward) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) set_element(p.dtype, dh_out.data(), n, r, c, normal(rng));
  }
  std::memset(y.data(), 0, bytes);
  if (backward) std::memset(dx.data(), 0, bytes);
  weight.resize(n);
  bias.resize(n);
  dweight.resize(n);
  dbias.resize(n);
  for (int64_t c = 0; c < n; ++c) {
    weight[c] = static_cast<float>(1.0 + 0.1 * normal(rng));
    bias[c] = static_cast<float>(0.1 * normal(rng));
    // Parameters representable in the data dtype, so implementations that keep
    // them in that dtype (LibTorch modules do) compute the same function.
    if (p.dtype == DType::kBFloat16 || p.dtype == DType::kFloat16) {
      uint16_t w16, b16;
      set_element(p.dtype, &w16, 1, 0, 0, weight[c]);
      set_element(p.dtype, &b16, 1, 0, 0, bias[c]);
      weight[c] = static_cast<float>(element(p.dtype, &w16, 1, 0, 0));
      bias[c] = static_cast<float>(element(p.dtype, &b16, 1, 0, 0));
    }
  }
  saved_inv_rms.resize(rows);
  saved_mean.resize(rows);
  if (p.dtype == DType::kFloat64) {
    saved_inv_rms64 = Buffer(rows * sizeof(double));
    saved_mean64 = Buffer(rows * sizeof(double));
  }
}

void* Workspace::inv_rms_data() {
  return problem.dtype == DType::kFloat64 ? saved_inv_rms64.data() : static_cast<void*>(saved_inv_rms.data());
}
void* Workspace::mean_data() {
  return problem.dtype == DType::kFloat64 ? saved_mean64.data() : static_cast<void*>(saved_mean.data());
}

void Workspace::reset_residual() {
  if (residual.data()) std::memcpy(residual.data(), residual_initial.data(), residual.bytes());
}

}  // namespace rmsnorm::bench
