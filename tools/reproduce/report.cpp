#include "tools/reproduce/report.hpp"

#include <cmath>
#include <map>

#include <fmt/format.h>

#include "tools/common/median.hpp"

namespace rmsnorm::reproduce {
namespace {

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

const char* metric_name(Task t) { return t == Task::kImageClassifier ? "test accuracy" : "valid bits/char"; }

}  // namespace

std::vector<Summary> summarize(const std::vector<RunResult>& runs) {
  std::map<std::pair<int, int>, std::vector<const RunResult*>> by;
  for (const RunResult& r : runs) by[{static_cast<int>(r.task), static_cast<int>(r.variant)}].push_back(&r);
  std::vector<Summary> out;
  for (const auto& [key, group] : by) {
    Summary s;
    s.task = static_cast<Task>(key.first);
    s.variant = static_cast<Variant>(key.second);
    s.runs = static_cast<int>(group.size());
    std::vector<double> step, total, metric, loss;
    for (const RunResult* r : group) {
      step.push_back(r->median_step_ms);
      total.push_back(r->total_seconds);
      metric.push_back(r->valid_metric);
      loss.push_back(r->valid_loss);
    }
    s.median_step_ms = tools::median(step);
    s.total_seconds_mean = mean(total);
    s.metric_mean = mean(metric);
    s.metric_std = stddev(metric);
    s.valid_loss_mean = mean(loss);
    s.valid_loss_std = stddev(loss);
    out.push_back(s);
  }
  for (Summary& s : out) {
    for (const Summary& other : out) {
      if (other.task != s.task) continue;
      if (other.variant == Variant::kLayerNorm) s.saving_vs_layernorm = 1 - s.median_step_ms / other.median_step_ms;
      if (other.variant == Variant::kNone && s.median_step_ms > 0)
        s.norm_share = (s.median_step_ms - other.median_step_ms) / s.median_step_ms;
    }
  }
  return out;
}

nlohmann::json to_json(const Scale& scale, const nlohmann::json& machine, const std::vector<RunResult>& runs,
                       const std::vector<Summary>& summaries, const nlohmann::json& data) {
  nlohmann::json doc;
  doc["tool"] = "rmsnorm reproduce";
  doc["machine"] = machine;
  doc["data"] = data;
  doc["scale"] = {{"name", scale.name},           {"steps", scale.steps},        {"image_steps", scale.image_steps},
                  {"batch", scale.batch},         {"context", scale.context},    {"gru_hidden", scale.gru_hidden},
                  {"transformer_width", scale.width}, {"transformer_layers", scale.layers},
                  {"mlp_hidden", scale.mlp_hidden}, {"mlp_layers", scale.mlp_layers},
                  {"image_batch", scale.image_batch}, {"seeds", scale.seeds}};
  doc["summaries"] = nlohmann::json::array();
  for (const Summary& s : summaries) {
    doc["summaries"].push_back({{"task", task_key(s.task)},
                                {"variant", variant_key(s.variant)},
                                {"runs", s.runs},
                                {"median_step_ms", s.median_step_ms},
                                {"total_seconds_mean", s.total_seconds_mean},
                                {"metric", metric_name(s.task)},
                                {"metric_mean", s.metric_mean},
                                {"metric_std", s.metric_std},
                                {"valid_loss_mean", s.valid_loss_mean},
                                {"valid_loss_std", s.valid_loss_std},
                                {"time_saving_vs_layernorm", s.saving_vs_layernorm},
                                {"normalization_share_of_step", s.norm_share}});
  }
  doc["runs"] = nlohmann::json::array();
  for (const RunResult& r : runs) {
    doc["runs"].push_back({{"task", task_key(r.task)},
                           {"variant", variant_key(r.variant)},
                           {"variant_name", variant_name(r.variant)},
                           {"seed", r.seed},
                           {"median_step_ms", r.median_step_ms},
                           {"total_seconds", r.total_seconds},
                           {"valid_loss", r.valid_loss},
                           {"valid_metric", r.valid_metric},
                           {"curve_steps", r.curve_steps},
                           {"curve_loss", r.curve_loss},
                           {"curve_seconds", r.curve_seconds},
                           {"step_ms", r.step_ms}});
  }
  return doc;
}

std::string markdown_report(const Scale& scale, const nlohmann::json& machine, const std::vector<Summary>& summaries,
                            const nlohmann::json& data, const std::string& command) {
  std::string md = "# rmsnorm reproduce: RMSNorm against LayerNorm\n\n";
  md += fmt::format("- Command: `{}`\n- Machine: {} ({} logical CPUs, SIMD {}), LibTorch {}, {}\n", command,
                    machine.value("cpu_model", "?"), machine.value("logical_cpus", 0), machine.value("simd_target", "?"),
                    machine.value("libtorch_version", "?"), machine.value("date_utc", "?"));
  md += fmt::format("- Scale `{}`: {} seeds per variant; language models {} steps (batch {} x {} characters), "
                    "classifier {} steps (batch {}).\n",
                    scale.name, scale.seeds, scale.steps, scale.batch, scale.context, scale.image_steps,
                    scale.image_batch);
  md += fmt::format("- Data: {} characters of `fortunes` text ({} train / {} valid, vocabulary {}); "
                    "Fashion-MNIST {} train / {} test images.\n",
                    data.value("text_characters", 0), data.value("text_train", 0), data.value("text_valid", 0),
                    data.value("vocabulary", 0), data.value("images_train", 0), data.value("images_test", 0));
  md += "- Every variant of a task has the same initial weights, data order and hyper-parameters (per seed). "
        "Normalization is computed by this project's kernels (`torch.ops.rmsnorm.*` from C++).\n";
  md += "- *Step* = forward + backward + optimizer. *Norm share* = (step - step of `none`) / step: the part of a step "
        "that the normalization adds, measured by difference, not by profiling.\n\n";
  for (Task task : {Task::kGruLanguageModel, Task::kTransformerLanguageModel, Task::kImageClassifier}) {
    md += fmt::format("## {}\n\n| variant | median step ms | total s (mean) | norm share | time saving vs LayerNorm "
                      "| {} (mean ± sd) | valid loss (mean ± sd) |\n|---|---|---|---|---|---|---|\n",
                      task_name(task), metric_name(task));
    for (const Summary& s : summaries) {
      if (s.task != task) continue;
      const bool accuracy = task == Task::kImageClassifier;
      md += fmt::format("| {} | {:.2f} | {:.2f} | {} | {} | {} | {:.4f} ± {:.4f} |\n", variant_name(s.variant),
                        s.median_step_ms, s.total_seconds_mean,
                        s.variant == Variant::kNone ? "-" : fmt::format("{:.1f}%", 100 * s.norm_share),
                        s.variant == Variant::kLayerNorm ? "-" : fmt::format("{:+.1f}%", 100 * s.saving_vs_layernorm),
                        accuracy ? fmt::format("{:.2f}% ± {:.2f}", 100 * s.metric_mean, 100 * s.metric_std)
                                 : fmt::format("{:.4f} ± {:.4f}", s.metric_mean, s.metric_std),
                        s.valid_loss_mean, s.valid_loss_std);
    }
    md += "\n";
  }
  md += "## The paper's claims, for comparison\n\n"
        "Zhang & Sennrich (NeurIPS 2019), abstract: RMSNorm achieves performance comparable to LayerNorm while "
        "reducing running time by 7%-64% on different models; pRMSNorm with p = 6.25% performs comparably. "
        "Their models (RNNSearch, Transformer, CNN/Daily Mail reader, image-caption retrieval, ConvPool-CNN) are far "
        "larger than these and ran on GPUs with TensorFlow/Theano/PyTorch kernels; only the direction of the "
        "comparison carries over, not the magnitudes.\n\n"
        "Plots: `loss_vs_steps.png`, `loss_vs_time.png` (as the paper's Figure 1).\n";
  return md;
}

}  // namespace rmsnorm::reproduce
