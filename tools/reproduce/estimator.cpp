#include "tools/reproduce/estimator.hpp"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "tools/common/median.hpp"

namespace rmsnorm::reproduce {
namespace {

// N(0, 1) rows whose `channels` hold magnitude x (1 + 0.1 N(0, 1)) with a random sign.
::torch::Tensor rows_with_outliers(int64_t rows, int64_t n, const std::vector<int64_t>& channels, double magnitude,
                                   at::Generator& g) {
  auto x = at::normal(0.0, 1.0, {rows, n}, g).to(::torch::kDouble);
  for (int64_t c : channels) {
    const auto sign = ::torch::randint(0, 2, {rows}, g, ::torch::kDouble) * 2 - 1;
    x.select(1, c).copy_(magnitude * sign * (1 + 0.1 * at::normal(0.0, 1.0, {rows}, g).to(::torch::kDouble)));
  }
  return x;
}

}  // namespace

RatioSummary summarize_ratios(double p, std::vector<double> ratios) {
  RatioSummary s;
  s.p = p;
  s.rows = static_cast<int64_t>(ratios.size());
  if (ratios.empty()) return s;
  std::sort(ratios.begin(), ratios.end());
  for (double level : kQuantileLevels) s.quantiles.push_back(tools::quantile_of_sorted(ratios, level));
  const auto inside = std::count_if(ratios.begin(), ratios.end(), [](double r) { return r >= 0.9 && r <= 1.1; });
  s.within_10_percent = static_cast<double>(inside) / static_cast<double>(ratios.size());
  return s;
}

std::vector<SyntheticCase> synthetic_study(int64_t n, int64_t rows, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  std::vector<int64_t> last, first, spread;
  for (int64_t i = 0; i < 6; ++i) {
    last.push_back(n - 6 + i);
    first.push_back(i);
  }
  for (double f : {0.03, 0.2, 0.41, 0.58, 0.77, 0.93}) spread.push_back(static_cast<int64_t>(f * static_cast<double>(n)));
  const std::pair<std::string, ::torch::Tensor> cases[] = {
      {"N(0,1), no outliers", rows_with_outliers(rows, n, {}, 0, g)},
      {"6 channels at 50x, all past k (last 6)", rows_with_outliers(rows, n, last, 50, g)},
      {"6 channels at 50x, the first 6", rows_with_outliers(rows, n, first, 50, g)},
      {"6 channels at 50x, spread over the row", rows_with_outliers(rows, n, spread, 50, g)},
  };
  std::vector<SyntheticCase> out;
  for (const auto& [name, x] : cases) {
    EstimatorProbe probe;
    probe.record("synthetic", x);
    SyntheticCase c;
    c.name = name;
    for (size_t i = 0; i < std::size(kStudiedP); ++i) {
      c.by_p.push_back(summarize_ratios(kStudiedP[i], probe.ratios["synthetic"][i]));
    }
    out.push_back(std::move(c));
  }
  return out;
}

nlohmann::json to_json(const RatioSummary& s) {
  return {{"p", s.p},
          {"rows", s.rows},
          {"quantile_levels", std::vector<double>(std::begin(kQuantileLevels), std::end(kQuantileLevels))},
          {"quantiles", s.quantiles},
          {"within_10_percent", s.within_10_percent}};
}

}  // namespace rmsnorm::reproduce
