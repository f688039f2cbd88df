// The open question the paper left: how good is pRMSNorm's estimate? For a
// row x of n and p, r_k / r_n = sqrt(mean of the first k squares / mean of
// all n), the partial RMS against the full one (pRMSNorm's output is the
// full RMSNorm's times r_n / r_k). Summaries of that ratio, from the trained
// models' norm sites (filled by EstimatorProbe during validation) and from
// synthetic rows with a few large "outlier" channels, as large language
// models' activations have.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/reproduce/norms.hpp"

namespace rmsnorm::reproduce {

constexpr double kQuantileLevels[] = {0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99};

struct RatioSummary {
  double p = 0;
  int64_t rows = 0;
  std::vector<double> quantiles;  // at kQuantileLevels
  double within_10_percent = 0;   // share of rows with 0.9 <= r_k / r_n <= 1.1
};

RatioSummary summarize_ratios(double p, std::vector<double> ratios);

struct SyntheticCase {
  std::string name;
  std::vector<RatioSummary> by_p;  // at kStudiedP
};

// Rows of n: N(0, 1), and N(0, 1) with six channels at about 50x the rest
// (sign varying by row) placed past every studied k, in the first 1% of the
// row, and spread over it. Deterministic for a seed.
std::vector<SyntheticCase> synthetic_study(int64_t n, int64_t rows, uint64_t seed);

nlohmann::json to_json(const RatioSummary& s);

}  // namespace rmsnorm::reproduce
