// `rmsnorm`: the command line. `info` describes the machine and the engine;
// `bench` compares our kernels with LibTorch, oneDNN and the copy ceiling.
// Everything here is argument handling; the work is in tools/bench/.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tools/bench/harness.hpp"
#include "tools/bench/report.hpp"
#ifdef RMSNORM_CLI_HAS_REPRODUCE
#include "tools/reproduce/run.hpp"
#endif
#ifdef RMSNORM_CLI_HAS_CUDA
#include "rmsnorm/cuda.hpp"
#endif

namespace {

using rmsnorm::bench::Direction;

Direction parse_direction(const std::string& s) {
  if (s == "forward" || s == "fwd") return Direction::kForward;
  if (s == "forward+backward" || s == "fwdbwd" || s == "backward") return Direction::kForwardBackward;
  throw CLI::ValidationError("--direction", "expected forward (fwd) or fwdbwd (forward+backward), got \"" + s + "\"");
}

std::string plot_script() {
  if (const char* env = std::getenv("RMSNORM_PLOT_SCRIPT")) return env;
  return RMSNORM_PLOT_SCRIPT;
}

int run_info(bool as_json) {
  const auto machine = rmsnorm::bench::describe_machine();
  std::string cuda = "not built in";
#ifdef RMSNORM_CLI_HAS_CUDA
  const rmsnorm::cuda::DeviceInfo device = rmsnorm::cuda::device_info();
  cuda = device.available ? fmt::format("{} (sm_{}, {} device(s))", device.name, device.compute_capability,
                                        device.device_count)
                          : "built in; no usable device: " + device.reason;
#endif
  if (as_json) {
    nlohmann::json doc = rmsnorm::bench::to_json(machine);
    doc["cuda"] = cuda;
    std::cout << doc.dump(2) << "\n";
    return 0;
  }
  fmt::print("rmsnorm {}\n", machine.library_version);
  fmt::print("CPU            {} ({} logical CPUs, {:.1f} GiB)\n", machine.cpu_model, machine.logical_cpus,
             machine.memory_gib);
  fmt::print("SIMD target    {} (available: {})\n", machine.simd_target, fmt::join(machine.simd_targets, ", "));
  fmt::print("threads        {} (OpenMP default; set OMP_NUM_THREADS or NormOptions::num_threads)\n",
             machine.max_threads);
  fmt::print("compiler       {}\n", machine.compiler);
  fmt::print("LibTorch       {}\n", machine.torch_version.empty() ? "not built in" : machine.torch_version);
  fmt::print("oneDNN         {}\n", machine.onednn_version.empty() ? "not built in" : machine.onednn_version);
  fmt::print("CUDA backend   {}\n", cuda);
  return 0;
}

constexpr int kMaxBenchThreads = 256;

int run_bench(rmsnorm::bench::Settings settings, const std::vector<std::string>& shapes, bool no_default_shapes,
              const std::vector<std::string>& dtypes, const std::vector<std::string>& directions,
              const std::string& target, const std::string& json_path, const std::string& plot_path) {
  // Before describe_machine, which records the target the run used.
  if (!target.empty()) {
    try {
      rmsnorm::set_simd_target(target);
    } catch (const rmsnorm::Error& e) {
      throw CLI::ValidationError("--target", e.what());
    }
    rmsnorm::bench::cap_onednn_isa(target);
  }
  if (!no_default_shapes) settings.shapes = rmsnorm::bench::default_shapes();
  for (const std::string& s : shapes) settings.shapes.push_back(rmsnorm::bench::parse_shape(s));
  if (settings.shapes.empty()) throw CLI::ValidationError("--shape", "no shapes to run (--no-default-shapes without --shape)");
  settings.dtypes.clear();
  for (const std::string& d : dtypes) settings.dtypes.push_back(rmsnorm::parse_dtype(d));
  settings.directions.clear();
  for (const std::string& d : directions) settings.directions.push_back(parse_direction(d));
  if (settings.threads.empty()) {
    settings.threads.push_back(1);
    if (omp_get_max_threads() > 1) settings.threads.push_back(omp_get_max_threads());
  }

  const auto machine = rmsnorm::bench::describe_machine();
  fmt::print("rmsnorm bench: {} on {}, SIMD {}{}, {} repetitions (median), interleaved\n", machine.library_version,
             machine.cpu_model, machine.simd_target,
             machine.onednn_isa_cap.empty() ? "" : ", oneDNN capped at " + machine.onednn_isa_cap, settings.repetitions);
  const auto groups = rmsnorm::bench::run(settings, [](const std::string& line) {
    std::fprintf(stderr, "... %s\n", line.c_str());
  });
  for (const auto& g : groups) rmsnorm::bench::print_table(std::cout, g);
  std::cout.flush();

  const nlohmann::json doc = rmsnorm::bench::to_json(settings, machine, groups);
  std::string json_file = json_path;
  if (json_file.empty() && !plot_path.empty()) json_file = plot_path + ".json";
  if (!json_file.empty()) {
    std::ofstream out(json_file);
    out << doc.dump(2) << "\n";
    if (!out) throw std::runtime_error("--json: cannot write " + json_file);
    fmt::print("\nJSON written to {}\n", json_file);
  }
  if (!plot_path.empty()) {
    const std::string command =
        fmt::format("'{}' '{}' '{}' '{}'", RMSNORM_PYTHON, plot_script(), json_file, plot_path);
    if (std::system(command.c_str()) != 0) throw std::runtime_error("--plot: the plotting script failed: " + command);
    fmt::print("plot written to {}\n", plot_path);
  }
  if (!rmsnorm::bench::all_checks_passed(groups)) {
    std::fprintf(stderr,
                 "\nrmsnorm bench: CORRECTNESS CHECK FAILED: at least one implementation disagrees with the "
                 "reference beyond tolerance (see 'FAILED' above). Its timings are not meaningful.\n");
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rmsnorm: RMSNorm, pRMSNorm and LayerNorm kernels; machine info and benchmarks"};
  app.require_subcommand(1);

  auto* info = app.add_subcommand("info", "CPU, SIMD target chosen, threads, library and baseline versions");
  bool info_json = false;
  info->add_flag("--json", info_json, "print as JSON");

  auto* bench = app.add_subcommand("bench", "time our kernels against LibTorch, oneDNN and the copy ceiling");
  rmsnorm::bench::Settings settings;
  std::vector<std::string> shapes, dtypes{"f32"}, directions{"forward", "fwdbwd"};
  bool no_default_shapes = false;
  std::string json_path, plot_path, target;
  bench->add_option("--shape", shapes, "extra shape RxN, e.g. 8x1024 (repeatable)");
  bench->add_flag("--no-default-shapes", no_default_shapes,
                  "run only the --shape shapes (defaults: 1x4096 1x8192 32x256 64x512 32x4096 2048x768 4096x4096 "
                  "16384x8192)");
  bench->add_option("--target", target,
                    "force our kernels' SIMD target (e.g. AVX2 on an AVX-512 machine; `rmsnorm info` lists the "
                    "compiled ones); default: the best the CPU supports");
  bench->add_option("--dtype", dtypes, "data types: f32, bf16, f16, f64 (comma-separated)")->delimiter(',');
  // An upper bound too: OpenMP cannot start 100000 threads (it crashed), and
  // more threads than a few per core measure only the scheduler.
  bench->add_option("--threads", settings.threads, "thread counts (comma-separated; default 1 and all)")
      ->delimiter(',')
      ->check(CLI::Range(1, kMaxBenchThreads));
  bench->add_option("--direction", directions, "forward, fwdbwd (comma-separated)")->delimiter(',');
  bench->add_option("--reps", settings.repetitions, "timed repetitions; the median is reported")
      ->check(CLI::Range(1, 1000));
  bench->add_option("--warmup", settings.warmup, "untimed calls before timing")->check(CLI::Range(0, 1000));
  bench->add_option("--min-sample-ms", settings.min_sample_seconds, "repeat short calls so a sample lasts this long")
      ->transform([](std::string s) { return std::to_string(std::stod(s) / 1e3); })
      ->check(CLI::PositiveNumber);
  bench->add_option("--only", settings.only, "keep implementations whose key starts with one of these (ours, "
                                             "libtorch, onednn, ours.rmsnorm, ...)")
      ->delimiter(',');
  bench->add_option("--json", json_path, "write every figure and the machine description to this file");
  bench->add_option("--plot", plot_path, "draw GB/s against shape per implementation to this PNG (matplotlib)");

#ifdef RMSNORM_CLI_HAS_REPRODUCE
  auto* reproduce = app.add_subcommand(
      "reproduce", "train none / LayerNorm / RMSNorm / pRMSNorm (and L2-Norm on the GRU), each composed from "
                   "LibTorch ops, as PyTorch ships it and fused, on a GRU LM, a Transformer LM and a Fashion-MNIST "
                   "CNN (the paper's comparison), and write a report");
  rmsnorm::reproduce::Options reproduce_options;
  bool quick = false, full = false;
  auto* quick_flag = reproduce->add_flag("--quick", quick, "a tiny run (under a minute), as the tests use");
  reproduce->add_flag("--full", full, "a longer run, for the docs")->excludes(quick_flag);
  reproduce->add_option("--out", reproduce_options.out_dir, "directory for REPORT.md, reproduce.json and the plots")
      ->capture_default_str();
  reproduce->add_option("--seeds", reproduce_options.seeds, "seeds per variant (default: the scale's, >= 3 but quick)")
      ->check(CLI::Range(1, 100));
  reproduce->add_option("--task", reproduce_options.tasks, "gru_lm, transformer_lm, fashion_cnn (comma-separated)")
      ->delimiter(',');
  reproduce->add_option("--threads", reproduce_options.threads,
                        "threads for LibTorch and our kernels (default: every core; LibTorch alone would use one)")
      ->check(CLI::Range(1, 256));
  reproduce->add_option("--fortunes-dir", reproduce_options.fortunes_dir, "text corpus (Debian package fortunes)")
      ->capture_default_str();
  reproduce->add_option("--fashion-mnist-dir", reproduce_options.fashion_dir,
                        "images (Debian package dataset-fashion-mnist)")
      ->capture_default_str();
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*info) return run_info(info_json);
#ifdef RMSNORM_CLI_HAS_REPRODUCE
    if (*reproduce) {
      reproduce_options.scale = quick ? "quick" : full ? "full" : "default";
      reproduce_options.python = RMSNORM_PYTHON;
      reproduce_options.plot_script = RMSNORM_REPRODUCE_PLOT_SCRIPT;
      std::string command = "rmsnorm";
      for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
      reproduce_options.command = command;
      return rmsnorm::reproduce::run(reproduce_options, rmsnorm::bench::to_json(rmsnorm::bench::describe_machine()));
    }
#endif
    return run_bench(settings, shapes, no_default_shapes, dtypes, directions, target, json_path, plot_path);
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rmsnorm: %s\n", e.what());
    return 1;
  }
}
