// Aggregates the runs of `rmsnorm reproduce` per task and variant, and writes
// reproduce.json (every figure and curve), REPORT.md and the plots.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/reproduce/trainer.hpp"

namespace rmsnorm::reproduce {

struct Summary {
  Task task;
  Variant variant;
  int runs = 0;
  double median_step_ms = 0;     // median over runs of each run's median step time
  double total_seconds_mean = 0;
  double metric_mean = 0, metric_std = 0;          // bits/char or accuracy
  double valid_loss_mean = 0, valid_loss_std = 0;
  double saving_vs_layernorm = 0;  // 1 - step time / LayerNorm's step time
  double norm_share = 0;           // (step time - no-norm step time) / step time
};

std::vector<Summary> summarize(const std::vector<RunResult>& runs);

nlohmann::json to_json(const Scale& scale, const nlohmann::json& machine, const std::vector<RunResult>& runs,
                       const std::vector<Summary>& summaries, const nlohmann::json& data);

std::string markdown_report(const Scale& scale, const nlohmann::json& machine, const std::vector<Summary>& summaries,
                            const nlohmann::json& data, const std::string& command);

}  // namespace rmsnorm::reproduce
