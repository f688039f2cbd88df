// The benchmark run: for every shape x dtype x threads x direction, every
// implementation is checked against the reference, then all are timed
// interleaved (median of repetitions after warm-up), SPEC section 6.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tools/bench/implementation.hpp"
#include "tools/bench/problem.hpp"

namespace rmsnorm::bench {

struct Settings {
  std::vector<Shape> shapes;
  std::vector<DType> dtypes{DType::kFloat32};
  std::vector<int> threads;
  std::vector<Direction> directions{Direction::kForward, Direction::kForwardBackward};
  int repetitions = 11;
  int warmup = 2;
  double min_sample_seconds = 2e-3;  // small calls are repeated within a sample
  std::vector<std::string> only;     // implementation keys to keep (prefix match); empty: all
};

std::vector<Shape> default_shapes();  // 1x4096 1x8192 32x256 64x512 32x4096 2048x768 4096x4096 16384x8192

struct Verification {
  bool checked = false;
  bool passed = true;
  int64_t rows_checked = 0;
  double y_error = 0, dx_error = 0, dweight_error = 0;  // ||got - ref|| / ||ref||; -1 when not checked
  double tolerance = 0;
  std::string note;
};

struct Result {
  std::string key, name, family;
  bool ceiling = false;
  std::string unsupported;  // non-empty: not run, and why
  double bytes = 0;
  int calls_per_sample = 1;
  std::vector<double> sample_seconds;  // per call
  double median_seconds = 0;
  double gbs = 0;
  Verification verification;
};

struct Group {
  Problem problem;
  std::vector<Result> results;
  double copy_gbs = 0, large_copy_gbs = 0;
  const Result* find(const std::string& key) const;
};

// Runs everything; `progress` receives one line per step.
std::vector<Group> run(const Settings& settings, const std::function<void(const std::string&)>& progress);

// The check of one implementation's outputs against the long-double reference.
Verification verify(const Implementation& impl, Workspace& ws);


}  // namespace rmsnorm::bench
