#include "tools/bench/report.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <optional>

#include <fmt/format.h>
#include <fmt/ostream.h>

namespace rmsnorm::bench {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

double memory_gib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:") return kib / (1024.0 * 1024.0);
    in.ignore(256, '\n');
  }
  return 0;
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string speedup_text(const Group& g, const Result& r, const std::string& baseline_key) {
  const Result* b = g.find(baseline_key);
  if (!b || !r.unsupported.empty() || r.ceiling || b == &r) return "";
  return fmt::format("{:.2f}x", b->median_seconds / r.median_seconds);
}

// ns per row of a result (for a single row, the time of one call); none for
// the 256 MiB copy, which moves its own bytes, not the shape's rows.
std::optional<double> ns_per_row(const Result& r, const Shape& shape) {
  if (r.key == "ceiling.large_copy") return std::nullopt;
  return r.median_seconds * 1e9 / static_cast<double>(std::max<int64_t>(1, shape.rows));
}

}  // namespace

Machine describe_machine() {
  const RuntimeInfo info = runtime_info();
  Machine m;
  m.cpu_model = cpu_model();
  m.logical_cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  m.simd_target = info.simd_target;
  m.simd_targets = info.compiled_targets;
  m.max_threads = info.max_threads;
  m.memory_gib = memory_gib();
  m.compiler = __VERSION__;
  m.library_version = info.version;
  m.torch_version = torch_version();
  m.onednn_version = onednn_version();
  m.onednn_isa_cap = onednn_isa_cap();
  m.date_utc = utc_now();
  return m;
}

nlohmann::json to_json(const Machine& m) {
  return {{"cpu_model", m.cpu_model},
          {"logical_cpus", m.logical_cpus},
          {"simd_target", m.simd_target},
          {"simd_targets_available", m.simd_targets},
          {"openmp_max_threads", m.max_threads},
          {"memory_gib", m.memory_gib},
          {"compiler", m.compiler},
          {"rmsnorm_version", m.library_version},
          {"libtorch_version", m.torch_version.empty() ? nlohmann::json() : nlohmann::json(m.torch_version)},
          {"onednn_version", m.onednn_version.empty() ? nlohmann::json() : nlohmann::json(m.onednn_version)},
          {"onednn_isa_cap", m.onednn_isa_cap.empty() ? nlohmann::json() : nlohmann::json(m.onednn_isa_cap)},
          {"date_utc", m.date_utc}};
}

const std::vector<std::pair<std::string, std::string>>& speedup_baselines() {
  static const std::vector<std::pair<std::string, std::string>> list = {
      {"libtorch.layer_norm", "vs torch LN"}, {"libtorch.hf_rmsnorm", "vs HF RMS"}, {"onednn.layer_norm", "vs oneDNN LN"}};
  return list;
}

void print_table(std::ostream& out, const Group& g) {
  const Problem& p = g.problem;
  fmt::print(out, "\n{} {} {} thread(s) {}   (copy {:.1f} GB/s, 256 MiB copy {:.1f} GB/s)\n", p.shape.label(),
             dtype_name(p.dtype), p.threads, direction_name(p.direction), g.copy_gbs, g.large_copy_gbs);
  // ns per row: for a single row (decoding), the time of one call.
  std::string header = fmt::format("  {:<32} {:>10} {:>9} {:>8} {:>7} {:>7}", "implementation", "median ms", "ns/row",
                                   "GB/s", "%copy", "%large");
  for (const auto& [key, label] : speedup_baselines()) header += fmt::format(" {:>12}", label);
  header += "  check";
  fmt::print(out, "{}\n", header);
  for (const Result& r : g.results) {
    if (!r.unsupported.empty()) {
      fmt::print(out, "  {:<32} not run: {}\n", r.name, r.unsupported);
      continue;
    }
    const std::optional<double> per_row = ns_per_row(r, p.shape);
    std::string line = fmt::format("  {:<32} {:>10.4f} {:>9} {:>8.2f} {:>6.1f}% {:>6.1f}%", r.name,
                                   r.median_seconds * 1e3, per_row ? fmt::format("{:.1f}", *per_row) : "",
                                   r.gbs, 100 * r.gbs / g.copy_gbs,
                                   100 * r.gbs / g.large_copy_gbs);
    for (const auto& [key, label] : speedup_baselines()) line += fmt::format(" {:>12}", speedup_text(g, r, key));
    if (r.verification.checked) {
      line += fmt::format("  {} y {:.1e}", r.verification.passed ? "ok" : "FAILED", r.verification.y_error);
      if (r.verification.dx_error >= 0) line += fmt::format(" dx {:.1e}", r.verification.dx_error);
    }
    fmt::print(out, "{}\n", line);
  }
}

nlohmann::json to_json(const Settings& s, const Machine& machine, const std::vector<Group>& groups) {
  nlohmann::json doc;
  doc["tool"] = "rmsnorm bench";
  doc["machine"] = to_json(machine);
  nlohmann::json settings;
  for (const Shape& shape : s.shapes) settings["shapes"].push_back(shape.label());
  for (DType d : s.dtypes) settings["dtypes"].push_back(dtype_name(d));
  settings["threads"] = s.threads;
  for (Direction d : s.directions) settings["directions"].push_back(direction_name(d));
  settings["repetitions"] = s.repetitions;
  settings["warmup"] = s.warmup;
  settings["min_sample_seconds"] = s.min_sample_seconds;
  settings["timing"] =
      "implementations interleaved within each repetition (the 256 MiB copy timed after them, so that it does not "
      "evict the others' data); median of repetitions after warm-up";
  doc["settings"] = settings;
  doc["groups"] = nlohmann::json::array();
  for (const Group& g : groups) {
    nlohmann::json jg;
    jg["rows"] = g.problem.shape.rows;
    jg["n"] = g.problem.shape.n;
    jg["shape"] = g.problem.shape.label();
    jg["dtype"] = dtype_name(g.problem.dtype);
    jg["threads"] = g.problem.threads;
    jg["direction"] = direction_name(g.problem.direction);
    jg["copy_gbs"] = g.copy_gbs;
    jg["large_copy_gbs"] = g.large_copy_gbs;
    jg["results"] = nlohmann::json::array();
    for (const Result& r : g.results) {
      nlohmann::json jr;
      jr["key"] = r.key;
      jr["name"] = r.name;
      jr["family"] = r.family;
      jr["ceiling"] = r.ceiling;
      if (!r.unsupported.empty()) {
        jr["unsupported"] = r.unsupported;
        jg["results"].push_back(jr);
        continue;
      }
      jr["bytes"] = r.bytes;
      jr["calls_per_sample"] = r.calls_per_sample;
      jr["sample_ms"] = nlohmann::json::array();
      for (double t : r.sample_seconds) jr["sample_ms"].push_back(t * 1e3);
      jr["median_ms"] = r.median_seconds * 1e3;
      if (const std::optional<double> per_row = ns_per_row(r, g.problem.shape)) jr["ns_per_row"] = *per_row;
      jr["gbs"] = r.gbs;
      jr["percent_of_copy"] = 100 * r.gbs / g.copy_gbs;
      jr["percent_of_large_copy"] = 100 * r.gbs / g.large_copy_gbs;
      nlohmann::json speedups = nlohmann::json::object();
      for (const auto& [key, label] : speedup_baselines()) {
        const Result* b = g.find(key);
        if (b && !r.ceiling && b != &r) speedups[key] = b->median_seconds / r.median_seconds;
      }
      jr["speedup_vs"] = speedups;
      if (r.verification.checked) {
        const Verification& v = r.verification;
        jr["check"] = {{"passed", v.passed},
                       {"rows_checked", v.rows_checked},
                       {"y_relative_error", v.y_error},
                       {"dx_relative_error", v.dx_error >= 0 ? nlohmann::json(v.dx_error) : nlohmann::json()},
                       {"dweight_relative_error",
                        v.dweight_error >= 0 ? nlohmann::json(v.dweight_error) : nlohmann::json()},
                       {"tolerance", v.tolerance},
                       {"note", v.note}};
      }
      jg["results"].push_back(jr);
    }
    doc["groups"].push_back(jg);
  }
  doc["all_checks_passed"] = all_checks_passed(groups);
  return doc;
}

bool all_checks_passed(const std::vector<Group>& groups) {
  for (const Group& g : groups)
    for (const Result& r : g.results)
      if (r.verification.checked && !r.verification.passed) return false;
  return true;
}

}  // namespace rmsnorm::bench
