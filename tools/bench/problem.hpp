// What one benchmark group measures, and the input/output buffers every
// implementation of that group shares (so a 512 MiB shape is allocated once,
// not once per implementation).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm::bench {

enum class Direction { kForward, kForwardBackward };

const char* direction_name(Direction d);  // "forward", "forward+backward"

struct Shape {
  int64_t rows = 0;
  int64_t n = 0;
  std::string label() const;  // "32x4096"
};

// Parses "RxN" (e.g. "32x4096"); throws std::invalid_argument naming the text.
Shape parse_shape(const std::string& text);

struct Problem {
  Shape shape;
  DType dtype = DType::kFloat32;
  Direction direction = Direction::kForward;
  int threads = 1;
  double eps = 1e-5;
  int64_t elements() const { return shape.rows * shape.n; }
  size_t matrix_bytes() const { return static_cast<size_t>(elements()) * dtype_size(dtype); }
};

// A dense rows x n matrix of `dtype`, 64-byte aligned, untouched until filled.
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t bytes);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Inputs (fixed random values), outputs, and the float32 parameters.
struct Workspace {
  Problem problem;
  Buffer x, dy, residual, residual_initial;  // data dtype
  Buffer dh_out;                              // forward+backward: the fused residual's incoming gradient
  Buffer y, dx;                               // data dtype
  std::vector<float> weight, bias, dweight, dbias;
  std::vector<float> saved_inv_rms, saved_mean;  // statistics dtype is float32 except for f64
  Buffer saved_inv_rms64, saved_mean64;          // used for float64 data

  explicit Workspace(const Problem& p);
  void* inv_rms_data();
  void* mean_data();
  // Restores the residual that the fused kernel overwrites.
  void reset_residual();
};

// Element (row, c) of a matrix of `dtype` with rows of n elements, as double.
double element(DType dtype, const void* base, int64_t n, int64_t row, int64_t c);
void set_element(DType dtype, void* base, int64_t n, int64_t row, int64_t c, double value);

}  // namespace rmsnorm::bench
