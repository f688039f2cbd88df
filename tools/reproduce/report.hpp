// Aggregates the runs of `rmsnorm reproduce` and writes reproduce.json (every
// figure, sample and curve) and REPORT.md (the paper's figures beside ours,
// per-task timing and quality, the goals as measured, the estimator study).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/reproduce/estimator.hpp"
#include "tools/reproduce/trainer.hpp"

namespace rmsnorm::reproduce {

// One (task, variant, setting), its timed steps pooled over seeds.
struct TimingSummary {
  Task task;
  Variant variant;
  Setting setting;
  int64_t samples = 0;
  double step_ms = 0, step_p25 = 0, step_p75 = 0;  // median and quartiles
  double norm_ms = 0, norm_p25 = 0, norm_p75 = 0;  // the norms' own time per step
  double norm_forward_ms = 0;
  double norm_share = 0;  // median over steps of norm time / step time
  // 1 - (this / LayerNorm's, same task and setting), from the medians; and
  // the lowest and highest of the same figure computed seed by seed.
  double step_saving = 0, step_saving_low = 0, step_saving_high = 0;
  double norm_saving = 0, norm_saving_low = 0, norm_saving_high = 0;
};

// One (task, variant) over seeds.
struct QualitySummary {
  Task task;
  Variant variant;
  int runs = 0;
  double metric_mean = 0, metric_std = 0;  // bits/char or accuracy
  double loss_mean = 0, loss_std = 0;
  // (metric - LayerNorm's) / pooled standard deviation: "within 2 sd" is |z| <= 2.
  double z_vs_layernorm = 0;
};

// The trained models' r_k / r_n, per (task, variant, norm site), over
// validation batches of every seed.
struct SiteStudy {
  Task task;
  Variant variant;
  std::string site;
  std::vector<RatioSummary> by_p;  // at kStudiedP
};

struct Study {
  std::vector<TimingSummary> timing;
  std::vector<QualitySummary> quality;
  std::vector<SiteStudy> sites;
  std::vector<SyntheticCase> synthetic;
  int64_t synthetic_n = 0, synthetic_rows = 0;
};

std::vector<TimingSummary> summarize_timing(const std::vector<RunResult>& runs);
std::vector<QualitySummary> summarize_quality(const std::vector<RunResult>& runs);
std::vector<SiteStudy> summarize_sites(const EstimatorProbes& probes);

// Header facts the report prints.
struct RunFacts {
  std::string command;
  nlohmann::json machine;
  nlohmann::json data;
  int threads = 0;
  double wall_seconds = 0;
  nlohmann::json eta;  // the progress bar's ETA against the real remaining time
};

nlohmann::json to_json(const Scale& scale, const RunFacts& facts, const std::vector<RunResult>& runs,
                       const Study& study);

std::string markdown_report(const Scale& scale, const RunFacts& facts, const Study& study);

}  // namespace rmsnorm::reproduce
