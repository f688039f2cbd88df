// The median and quantiles the bench and the reproduction report (mean of
// the two middle values for an even count; 0 for none).
#pragma once

#include <algorithm>
#include <vector>

namespace rmsnorm::tools {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// The quantile at `level` in [0, 1] of values already sorted ascending, by
// linear interpolation between order statistics (numpy's default); 0 for none.
inline double quantile_of_sorted(const std::vector<double>& sorted, double level) {
  if (sorted.empty()) return 0;
  const double position = level * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(position);
  const size_t above = std::min(below + 1, sorted.size() - 1);
  return sorted[below] + (position - static_cast<double>(below)) * (sorted[above] - sorted[below]);
}

inline double quantile(std::vector<double> v, double level) {
  std::sort(v.begin(), v.end());
  return quantile_of_sorted(v, level);
}

}  // namespace rmsnorm::tools
