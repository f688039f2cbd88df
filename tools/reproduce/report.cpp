#include "tools/reproduce/report.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "tools/common/median.hpp"

namespace rmsnorm::reproduce {
namespace {

constexpr Task kTasks[] = {Task::kGruLanguageModel, Task::kTransformerLanguageModel, Task::kImageClassifier};

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

// The paper's own figures: time saved against LayerNorm, (T_LN - T) / T_LN.
struct PaperRow {
  Task task;
  const char* what;
  double rmsnorm, prmsnorm;
};
constexpr PaperRow kPaper[] = {
    {Task::kGruLanguageModel, "RNNSearch, TensorFlow (Table 2)", 0.247, 0.259},
    {Task::kGruLanguageModel, "Theano (Table 3)", 0.340, 0.334},
    {Task::kGruLanguageModel, "PyTorch (Table 3)", 0.110, 0.120},
    {Task::kTransformerLanguageModel, "Transformer, TensorFlow (Table 4)", 0.069, 0.093},
    {Task::kImageClassifier, "ConvPool-CNN-C on CIFAR-10, p = 12.5%, Theano (Table 10)", 0.205, 0.231},
};

const TimingSummary* find_timing(const std::vector<TimingSummary>& all, Task t, Variant v, Setting s) {
  for (const TimingSummary& x : all) {
    if (x.task == t && x.variant == v && x.setting == s) return &x;
  }
  return nullptr;
}

const QualitySummary* find_quality(const std::vector<QualitySummary>& all, Task t, Variant v) {
  for (const QualitySummary& x : all) {
    if (x.task == t && x.variant == v) return &x;
  }
  return nullptr;
}

std::string percent(double share) { return fmt::format("{:+.1f}%", 100 * share); }

std::string saving_text(const TimingSummary* s, bool norm) {
  if (s == nullptr) return "-";
  if (norm) return fmt::format("{} ({} to {})", percent(s->norm_saving), percent(s->norm_saving_low),
                               percent(s->norm_saving_high));
  return fmt::format("{} ({} to {})", percent(s->step_saving), percent(s->step_saving_low),
                     percent(s->step_saving_high));
}

}  // namespace

std::vector<TimingSummary> summarize_timing(const std::vector<RunResult>& runs) {
  // (task, variant, setting) -> pooled samples, and per seed the medians.
  struct Pool {
    std::vector<double> step, norm, norm_forward, share;
    std::map<int, std::pair<double, double>> per_seed;  // seed -> (median step, median norm)
  };
  std::map<std::tuple<int, int, int>, Pool> pools;
  for (const RunResult& r : runs) {
    for (Setting s : kSettings) {
      const SettingTimes& t = r.times[static_cast<size_t>(s)];
      Pool& p = pools[{static_cast<int>(r.task), static_cast<int>(r.variant), static_cast<int>(s)}];
      p.step.insert(p.step.end(), t.step_ms.begin(), t.step_ms.end());
      p.norm.insert(p.norm.end(), t.norm_ms.begin(), t.norm_ms.end());
      p.norm_forward.insert(p.norm_forward.end(), t.norm_forward_ms.begin(), t.norm_forward_ms.end());
      for (size_t i = 0; i < t.step_ms.size(); ++i) p.share.push_back(t.norm_ms[i] / t.step_ms[i]);
      p.per_seed[r.seed] = {tools::median(t.step_ms), tools::median(t.norm_ms)};
    }
  }
  std::vector<TimingSummary> out;
  for (const auto& [key, p] : pools) {
    TimingSummary s;
    s.task = static_cast<Task>(std::get<0>(key));
    s.variant = static_cast<Variant>(std::get<1>(key));
    s.setting = static_cast<Setting>(std::get<2>(key));
    s.samples = static_cast<int64_t>(p.step.size());
    s.step_ms = tools::median(p.step);
    s.step_p25 = tools::quantile(p.step, 0.25);
    s.step_p75 = tools::quantile(p.step, 0.75);
    s.norm_ms = tools::median(p.norm);
    s.norm_p25 = tools::quantile(p.norm, 0.25);
    s.norm_p75 = tools::quantile(p.norm, 0.75);
    s.norm_forward_ms = tools::median(p.norm_forward);
    s.norm_share = tools::median(p.share);
    out.push_back(s);
  }
  for (TimingSummary& s : out) {
    const auto ln = pools.find({static_cast<int>(s.task), static_cast<int>(Variant::kLayerNorm), static_cast<int>(s.setting)});
    const auto self = pools.find({static_cast<int>(s.task), static_cast<int>(s.variant), static_cast<int>(s.setting)});
    if (ln == pools.end()) continue;
    const TimingSummary* ln_summary = find_timing(out, s.task, Variant::kLayerNorm, s.setting);
    s.step_saving = 1 - s.step_ms / ln_summary->step_ms;
    s.norm_saving = ln_summary->norm_ms > 0 ? 1 - s.norm_ms / ln_summary->norm_ms : 0;
    s.step_saving_low = s.norm_saving_low = std::numeric_limits<double>::infinity();
    s.step_saving_high = s.norm_saving_high = -std::numeric_limits<double>::infinity();
    for (const auto& [seed, medians] : self->second.per_seed) {
      const auto other = ln->second.per_seed.find(seed);
      if (other == ln->second.per_seed.end() || other->second.first <= 0) continue;
      const double step = 1 - medians.first / other->second.first;
      const double norm = other->second.second > 0 ? 1 - medians.second / other->second.second : 0;
      s.step_saving_low = std::min(s.step_saving_low, step);
      s.step_saving_high = std::max(s.step_saving_high, step);
      s.norm_saving_low = std::min(s.norm_saving_low, norm);
      s.norm_saving_high = std::max(s.norm_saving_high, norm);
    }
  }
  return out;
}

std::vector<QualitySummary> summarize_quality(const std::vector<RunResult>& runs) {
  std::map<std::pair<int, int>, std::pair<std::vector<double>, std::vector<double>>> by;  // metric, loss
  for (const RunResult& r : runs) {
    auto& [metric, loss] = by[{static_cast<int>(r.task), static_cast<int>(r.variant)}];
    metric.push_back(r.valid_metric);
    loss.push_back(r.valid_loss);
  }
  std::vector<QualitySummary> out;
  for (const auto& [key, values] : by) {
    QualitySummary q;
    q.task = static_cast<Task>(key.first);
    q.variant = static_cast<Variant>(key.second);
    q.runs = static_cast<int>(values.first.size());
    q.metric_mean = mean(values.first);
    q.metric_std = stddev(values.first);
    q.loss_mean = mean(values.second);
    q.loss_std = stddev(values.second);
    out.push_back(q);
  }
  for (QualitySummary& q : out) {
    const QualitySummary* ln = find_quality(out, q.task, Variant::kLayerNorm);
    if (ln == nullptr) continue;
    const double pooled = std::sqrt(0.5 * (q.metric_std * q.metric_std + ln->metric_std * ln->metric_std));
    q.z_vs_layernorm = pooled > 0 ? (q.metric_mean - ln->metric_mean) / pooled : 0;
  }
  return out;
}

std::vector<SiteStudy> summarize_sites(const EstimatorProbes& probes) {
  std::vector<SiteStudy> out;
  for (const auto& [key, probe] : probes) {
    for (const auto& [site, per_p] : probe.ratios) {
      SiteStudy s;
      s.task = key.first;
      s.variant = key.second;
      s.site = site;
      for (size_t i = 0; i < per_p.size(); ++i) s.by_p.push_back(summarize_ratios(kStudiedP[i], per_p[i]));
      out.push_back(std::move(s));
    }
  }
  return out;
}

nlohmann::json to_json(const Scale& scale, const RunFacts& facts, const std::vector<RunResult>& runs,
                       const Study& study) {
  nlohmann::json doc;
  doc["tool"] = "rmsnorm reproduce";
  doc["command"] = facts.command;
  doc["machine"] = facts.machine;
  doc["threads"] = facts.threads;
  doc["wall_seconds"] = facts.wall_seconds;
  doc["eta_accuracy"] = facts.eta;
  doc["data"] = facts.data;
  doc["scale"] = {{"name", scale.name},
                  {"steps", scale.steps},
                  {"image_steps", scale.image_steps},
                  {"batch", scale.batch},
                  {"context", scale.context},
                  {"gru_hidden", scale.gru_hidden},
                  {"transformer_width", scale.width},
                  {"transformer_layers", scale.layers},
                  {"cnn_channels", scale.cnn_channels},
                  {"image_batch", scale.image_batch},
                  {"warmup_steps", scale.warmup_steps},
                  {"seeds", scale.seeds}};
  doc["timing"] = nlohmann::json::array();
  for (const TimingSummary& s : study.timing) {
    doc["timing"].push_back({{"task", task_key(s.task)},
                             {"variant", variant_key(s.variant)},
                             {"setting", setting_key(s.setting)},
                             {"samples", s.samples},
                             {"step_ms", {{"median", s.step_ms}, {"p25", s.step_p25}, {"p75", s.step_p75}}},
                             {"norm_ms", {{"median", s.norm_ms}, {"p25", s.norm_p25}, {"p75", s.norm_p75}}},
                             {"norm_forward_ms", s.norm_forward_ms},
                             {"norm_share_of_step", s.norm_share},
                             {"step_saving_vs_layernorm",
                              {{"median", s.step_saving}, {"seed_low", s.step_saving_low}, {"seed_high", s.step_saving_high}}},
                             {"norm_saving_vs_layernorm",
                              {{"median", s.norm_saving}, {"seed_low", s.norm_saving_low}, {"seed_high", s.norm_saving_high}}}});
  }
  doc["quality"] = nlohmann::json::array();
  for (const QualitySummary& q : study.quality) {
    doc["quality"].push_back({{"task", task_key(q.task)},
                              {"variant", variant_key(q.variant)},
                              {"runs", q.runs},
                              {"metric", metric_name(q.task)},
                              {"metric_mean", q.metric_mean},
                              {"metric_std", q.metric_std},
                              {"valid_loss_mean", q.loss_mean},
                              {"valid_loss_std", q.loss_std},
                              {"z_vs_layernorm", q.z_vs_layernorm}});
  }
  nlohmann::json estimator;
  estimator["studied_p"] = std::vector<double>(std::begin(kStudiedP), std::end(kStudiedP));
  estimator["sites"] = nlohmann::json::array();
  for (const SiteStudy& s : study.sites) {
    nlohmann::json by_p = nlohmann::json::array();
    for (const RatioSummary& r : s.by_p) by_p.push_back(to_json(r));
    estimator["sites"].push_back(
        {{"task", task_key(s.task)}, {"variant", variant_key(s.variant)}, {"site", s.site}, {"by_p", by_p}});
  }
  estimator["synthetic"] = {{"n", study.synthetic_n}, {"rows", study.synthetic_rows}, {"cases", nlohmann::json::array()}};
  for (const SyntheticCase& c : study.synthetic) {
    nlohmann::json by_p = nlohmann::json::array();
    for (const RatioSummary& r : c.by_p) by_p.push_back(to_json(r));
    estimator["synthetic"]["cases"].push_back({{"name", c.name}, {"by_p", by_p}});
  }
  doc["estimator"] = estimator;
  doc["runs"] = nlohmann::json::array();
  for (const RunResult& r : runs) {
    nlohmann::json times;
    for (Setting s : kSettings) {
      const SettingTimes& t = r.times[static_cast<size_t>(s)];
      times[setting_key(s)] = {{"step_ms", t.step_ms}, {"norm_ms", t.norm_ms}, {"norm_forward_ms", t.norm_forward_ms}};
    }
    doc["runs"].push_back({{"task", task_key(r.task)},
                           {"variant", variant_key(r.variant)},
                           {"variant_name", variant_name(r.variant)},
                           {"seed", r.seed},
                           {"train_seconds", r.train_seconds},
                           {"valid_loss", r.valid_loss},
                           {"valid_metric", r.valid_metric},
                           {"curve_steps", r.curve_steps},
                           {"curve_loss", r.curve_loss},
                           {"curve_seconds", r.curve_seconds},
                           {"times", times}});
  }
  return doc;
}

std::string markdown_report(const Scale& scale, const RunFacts& facts, const Study& study) {
  const nlohmann::json& machine = facts.machine;
  const nlohmann::json& data = facts.data;
  std::string md = "# rmsnorm reproduce: RMSNorm against LayerNorm\n\n";
  md += fmt::format("- Command: `{}` ({} s wall-clock).\n", facts.command, static_cast<int>(facts.wall_seconds + 0.5));
  if (facts.eta.contains("checked_redraws")) {
    md += fmt::format("- The progress bar's ETA against the real time left, over the {} redraws after the first 10% "
                      "with at least 10 s to go: median error {:.0f}%, largest {:.0f}%.\n",
                      facts.eta.value("checked_redraws", 0), 100 * facts.eta.value("median_abs_error", 0.0),
                      100 * facts.eta.value("max_abs_error", 0.0));
  }
  md += fmt::format("- Machine: {} ({} logical CPUs, SIMD {}), LibTorch {}, {} thread(s) for LibTorch and our "
                    "kernels, {}.\n",
                    machine.value("cpu_model", "?"), machine.value("logical_cpus", 0), machine.value("simd_target", "?"),
                    machine.value("libtorch_version", "?"), facts.threads, machine.value("date_utc", "?"));
  md += fmt::format("- Scale `{}`: {} seeds; language models {} steps (batch {} x {} characters); CNN {} steps "
                    "(batch {}); the first {} steps of each model are not timed.\n",
                    scale.name, scale.seeds, scale.steps, scale.batch, scale.context, scale.image_steps,
                    scale.image_batch, scale.warmup_steps);
  md += fmt::format("- Data: {} characters of `fortunes` text ({} train / {} valid, vocabulary {}); "
                    "Fashion-MNIST {} train / {} test images.\n",
                    data.value("text_characters", 0), data.value("text_train", 0), data.value("text_valid", 0),
                    data.value("vocabulary", 0), data.value("images_train", 0), data.value("images_test", 0));
  md += "- **How it is timed.** For each task and seed, every variant's model trains on the same batches, the "
        "variants taking turns step by step (the order rotates), and each model rotates through the three "
        "implementation settings, one step each. A slow minute of the machine therefore touches every variant and "
        "setting alike. *Step* = forward + backward + optimizer. *Norm* = the norms' own time in a step: a timer "
        "around every norm call, and for backward the time from the moment the gradient of a norm's output is "
        "ready to the moment its input's gradient is (autograd hooks), summed per step. Figures are medians over "
        "the timed steps of every seed, with the interquartile range; savings are 1 - (variant / LayerNorm) in the "
        "same setting, with the lowest and highest of the same figure seed by seed.\n";
  md += "- **Settings.** `framework`: each norm composed from LibTorch tensor ops, as the paper's code was "
        "(LayerNorm: mean, subtract, variance, rsqrt, scale, shift; RMSNorm: pow, mean, rsqrt, scale; pRMSNorm the "
        "same on a slice of the first k columns; L2-Norm: pow, sum, rsqrt, scale). `native`: what a PyTorch user "
        "has: `at::layer_norm`, and the op sequence of PyTorch's `F.rms_norm` on CPU (pow, mean, add_, rsqrt, mul, "
        "mul; on a slice for pRMSNorm; `F.normalize` for L2-Norm). `fused`: this project's ops. The three settings "
        "of a variant compute the same function (tested), so one model trains through all three; its quality is "
        "the variant's.\n\n";

  md += "## The paper's figures beside this run\n\n"
        "Time saved against LayerNorm, (T_LN - T) / T_LN, as RMSNorm / pRMSNorm. The paper timed whole training "
        "steps of far larger models on GPUs; here, minutes of CPU training. *Step* is the whole training step, "
        "*norm* the norms' own time in it (the figure the claim is about).\n\n"
        "| model here (the paper's) | the paper: RMSNorm / pRMSNorm | ";
  for (Setting setting : kSettings) md += fmt::format("{} step | {} norm | ", setting_key(setting), setting_key(setting));
  md += "\n|---|---|";
  for (size_t i = 0; i < 2 * std::size(kSettings); ++i) md += "---|";
  md += "\n";
  for (Task task : kTasks) {
    if (find_timing(study.timing, task, Variant::kRMSNorm, Setting::kFused) == nullptr) continue;
    std::string paper;
    for (const PaperRow& p : kPaper) {
      if (p.task != task) continue;
      paper += fmt::format("{}{}: {:.1f}% / {:.1f}%", paper.empty() ? "" : "; ", p.what, 100 * p.rmsnorm,
                           100 * p.prmsnorm);
    }
    md += fmt::format("| {} | {} | ", task_name(task), paper);
    for (Setting setting : kSettings) {
      const TimingSummary* rms = find_timing(study.timing, task, Variant::kRMSNorm, setting);
      const TimingSummary* prms = find_timing(study.timing, task, Variant::kPartialRMSNorm, setting);
      md += fmt::format("{} / {} | {} / {} | ", percent(rms->step_saving), prms ? percent(prms->step_saving) : "-",
                        percent(rms->norm_saving), prms ? percent(prms->norm_saving) : "-");
    }
    md += "\n";
  }
  md += "\n";

  for (Task task : kTasks) {
    if (find_timing(study.timing, task, Variant::kLayerNorm, Setting::kFused) == nullptr) continue;
    md += fmt::format("## {}\n\n", task_name(task));
    md += "| variant | setting | step ms, median [IQR] | step saving vs LayerNorm (seeds) | norm ms per step, median "
          "[IQR] | norm saving vs LayerNorm (seeds) | norm share of step |\n|---|---|---|---|---|---|---|\n";
    for (Variant v : task_variants(task)) {
      for (Setting setting : kSettings) {
        const TimingSummary* s = find_timing(study.timing, task, v, setting);
        if (s == nullptr) continue;
        const bool none = v == Variant::kNone, ln = v == Variant::kLayerNorm;
        md += fmt::format("| {} | {} | {:.2f} [{:.2f}, {:.2f}] | {} | {} | {} | {} |\n",
                          variant_name(v), none ? "-" : setting_key(setting), s->step_ms, s->step_p25, s->step_p75,
                          ln ? "-" : saving_text(s, false),
                          none ? "-" : fmt::format("{:.3f} [{:.3f}, {:.3f}]", s->norm_ms, s->norm_p25, s->norm_p75),
                          ln || none ? "-" : saving_text(s, true),
                          none ? "-" : fmt::format("{:.1f}%", 100 * s->norm_share));
        if (none) break;  // no norm: the settings are the same model
      }
    }
    md += fmt::format("\n| variant | {} (mean ± sd) | valid loss (mean ± sd) | seeds | vs LayerNorm, in pooled sd |\n"
                      "|---|---|---|---|---|\n",
                      metric_name(task));
    for (Variant v : task_variants(task)) {
      const QualitySummary* q = find_quality(study.quality, task, v);
      if (q == nullptr) continue;
      const bool accuracy = task == Task::kImageClassifier;
      md += fmt::format("| {} | {} | {:.4f} ± {:.4f} | {} | {} |\n", variant_name(v),
                        accuracy ? fmt::format("{:.2f}% ± {:.2f}", 100 * q->metric_mean, 100 * q->metric_std)
                                 : fmt::format("{:.4f} ± {:.4f}", q->metric_mean, q->metric_std),
                        q->loss_mean, q->loss_std, q->runs,
                        v == Variant::kLayerNorm ? "-" : fmt::format("{:+.2f}", q->z_vs_layernorm));
    }
    md += "\n";
  }

  md += "## The goals, as measured in this run\n\n";
  {
    const Task gru = Task::kGruLanguageModel;
    const TimingSummary* fw_rms = find_timing(study.timing, gru, Variant::kRMSNorm, Setting::kFramework);
    if (fw_rms != nullptr) {
      md += fmt::format("- GRU, `framework`: RMSNorm's step saves {} against LayerNorm (goal: at least 10%, the "
                        "paper's PyTorch RNNSearch saved 11.0%): {}.\n",
                        percent(fw_rms->step_saving), fw_rms->step_saving >= 0.10 ? "met" : "not met");
    }
    for (Task task : kTasks) {
      for (Setting setting : kSettings) {
        const TimingSummary* rms = find_timing(study.timing, task, Variant::kRMSNorm, setting);
        const TimingSummary* prms = find_timing(study.timing, task, Variant::kPartialRMSNorm, setting);
        if (rms == nullptr || prms == nullptr) continue;
        const bool faster = prms->step_ms < rms->step_ms;
        md += fmt::format("- {}, `{}`: pRMSNorm step {:.2f} ms vs RMSNorm {:.2f} ms ({}); norm {:.3f} vs {:.3f} ms: "
                          "{}.\n",
                          task_key(task), setting_key(setting), prms->step_ms, rms->step_ms,
                          percent(1 - prms->step_ms / rms->step_ms), prms->norm_ms, rms->norm_ms,
                          faster ? "no slower" : (prms->step_ms <= rms->step_p75 ? "slower, within RMSNorm's IQR"
                                                                                 : "slower"));
      }
    }
    double worst_other = 0;
    for (Variant v : {Variant::kLayerNorm, Variant::kRMSNorm, Variant::kPartialRMSNorm}) {
      for (Setting setting : {Setting::kFramework, Setting::kNative}) {
        const TimingSummary* s = find_timing(study.timing, gru, v, setting);
        if (s != nullptr) worst_other = worst_other == 0 ? s->norm_share : std::min(worst_other, s->norm_share);
      }
    }
    for (Variant v : {Variant::kLayerNorm, Variant::kRMSNorm, Variant::kPartialRMSNorm}) {
      const TimingSummary* s = find_timing(study.timing, gru, v, Setting::kFused);
      if (s == nullptr) continue;
      md += fmt::format("- GRU, fused {}: the norm is {:.1f}% of the step; the smallest share of any framework or "
                        "native variant is {:.1f}%: {}.\n",
                        variant_name(v), 100 * s->norm_share, 100 * worst_other,
                        s->norm_share < worst_other ? "smaller" : "not smaller");
    }
    for (const QualitySummary& q : study.quality) {
      if (q.variant != Variant::kRMSNorm && q.variant != Variant::kPartialRMSNorm) continue;
      md += fmt::format("- {}, {}: {} {:+.2f} pooled sd from LayerNorm over {} seeds: {}.\n", task_key(q.task),
                        variant_name(q.variant), metric_name(q.task), q.z_vs_layernorm, q.runs,
                        std::fabs(q.z_vs_layernorm) <= 2 ? "within 2 sd" : "outside 2 sd");
    }
  }
  md += "\n";

  md += "## How good is pRMSNorm's estimate? r_k / r_n at the trained models' norm sites\n\n"
        "r_k / r_n is the RMS of a row's first k = ceil(n p) elements against the RMS of all n (pRMSNorm's output "
        "is RMSNorm's times r_n / r_k), over the validation batches of every seed. Quantiles 1% / 50% / 99%, and "
        "the share of rows within 10% of 1.\n\n| task | model | site | rows | ";
  for (double p : kStudiedP) md += fmt::format("p = {:g}% | ", 100 * p);
  md += "\n|---|---|---|---|";
  for (size_t i = 0; i < std::size(kStudiedP); ++i) md += "---|";
  md += "\n";
  for (const SiteStudy& s : study.sites) {
    md += fmt::format("| {} | {} | {} | {} | ", task_key(s.task), variant_name(s.variant), s.site,
                      s.by_p.empty() ? 0 : s.by_p[0].rows);
    for (const RatioSummary& r : s.by_p) {
      if (r.quantiles.size() < 7) {
        md += "- | ";
        continue;
      }
      md += fmt::format("{:.2f} / {:.2f} / {:.2f}, {:.0f}% | ", r.quantiles[0], r.quantiles[3], r.quantiles[6],
                        100 * r.within_10_percent);
    }
    md += "\n";
  }
  md += fmt::format("\nSynthetic rows of n = {} ({} rows): "
                    "N(0, 1), and N(0, 1) with six channels at about 50x the rest, as large language models' "
                    "outlier channels.\n\n| case | ",
                    study.synthetic_n, study.synthetic_rows);
  for (double p : kStudiedP) md += fmt::format("p = {:g}% | ", 100 * p);
  md += "\n|---|";
  for (size_t i = 0; i < std::size(kStudiedP); ++i) md += "---|";
  md += "\n";
  for (const SyntheticCase& c : study.synthetic) {
    md += fmt::format("| {} | ", c.name);
    for (const RatioSummary& r : c.by_p) {
      md += r.quantiles.size() < 7 ? std::string("- | ")
                                   : fmt::format("{:.3f} / {:.3f} / {:.3f} | ", r.quantiles[0], r.quantiles[3],
                                                 r.quantiles[6]);
    }
    md += "\n";
  }
  md += "\nPlots: `loss_vs_steps.png`, `loss_vs_time.png` (as the paper's Figure 1; time is each model's own "
        "training time, its settings rotating), `prms_estimator.png`.\n";
  return md;
}

}  // namespace rmsnorm::reproduce
