#include "tools/reproduce/run.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "tools/common/median.hpp"
#include "tools/reproduce/report.hpp"
#include "tools/reproduce/trainer.hpp"

namespace rmsnorm::reproduce {
namespace {

using Clock = std::chrono::steady_clock;

std::string clock_text(double seconds) {
  const int s = static_cast<int>(seconds + 0.5);
  return fmt::format("{}:{:02d}", s / 60, s % 60);
}

// One line on stderr, redrawn in place: the block, its progress, and the ETA
// of everything. Blocks differ in cost (a GRU step costs several CNN steps),
// so progress is counted in seconds: each block's cost is predicted from a
// short calibration, and replaced by what its task's last block really took
// once one has finished. The ETA is the elapsed time scaled by the work left
// over the work done, which also corrects a prediction that is off by the
// same factor everywhere (a busier machine).
class ProgressBar {
 public:
  // predicted: each block's seconds; tasks: each block's task, in order.
  ProgressBar(std::vector<double> predicted, std::vector<Task> tasks)
      : predicted_(std::move(predicted)), tasks_(std::move(tasks)), start_(Clock::now()), block_start_(start_) {
    for (double p : predicted_) total_ += p;
  }
  void update(const std::string& label, int64_t step, int64_t steps, double train_share) {
    if (step != steps && step % 5 != 0) return;  // redraw every few steps
    const double fraction = static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, steps));
    const double done = done_before_ + fraction * train_share * predicted_[index_];
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double eta = done > 0 ? elapsed * std::max(0.0, total_ - done) / done : 0;
    trace_.push_back({elapsed, done / std::max(1e-9, total_), eta});
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * fraction);
    std::fprintf(stderr, "\r%-40s [%s%s] %3d%%  total %3d%%  elapsed %s  ETA %s ", label.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                 static_cast<int>(100 * fraction), static_cast<int>(100 * done / std::max(1e-9, total_)),
                 clock_text(elapsed).c_str(), clock_text(eta).c_str());
    std::fflush(stderr);
  }
  void finish_block() {
    const double actual = std::chrono::duration<double>(Clock::now() - block_start_).count();
    for (size_t b = index_ + 1; b < predicted_.size(); ++b) {
      if (tasks_[b] == tasks_[index_]) predicted_[b] = actual;
    }
    predicted_[index_++] = actual;
    done_before_ += actual;
    total_ = 0;
    for (double p : predicted_) total_ += p;
    block_start_ = Clock::now();
    std::fprintf(stderr, "\n");
  }
  // How good the ETA was: for every redraw after the first 10% of the
  // predicted work with at least 10 s to go, (ETA - real remaining) / real
  // remaining. Call when the last block is done.
  nlohmann::json eta_accuracy() const {
    const double end = std::chrono::duration<double>(Clock::now() - start_).count();
    std::vector<double> errors;
    nlohmann::json samples = nlohmann::json::array();
    for (const Sample& s : trace_) {
      const double remaining = end - s.elapsed;
      samples.push_back({s.elapsed, s.done, s.eta});
      if (s.done >= 0.10 && remaining >= 10) errors.push_back((s.eta - remaining) / remaining);
    }
    std::vector<double> magnitudes;
    for (double e : errors) magnitudes.push_back(std::fabs(e));
    return {{"seconds", end},
            {"checked_redraws", errors.size()},
            {"median_abs_error", tools::median(magnitudes)},
            {"max_abs_error", magnitudes.empty() ? 0.0 : *std::max_element(magnitudes.begin(), magnitudes.end())},
            {"samples_elapsed_done_eta", samples}};
  }

 private:
  struct Sample {
    double elapsed, done, eta;
  };
  std::vector<double> predicted_;
  std::vector<Task> tasks_;
  std::vector<Sample> trace_;
  double total_ = 0, done_before_ = 0;
  size_t index_ = 0;
  Clock::time_point start_, block_start_;
};

std::vector<Task> selected_tasks(const std::vector<std::string>& names) {
  const std::vector<Task> all = {Task::kGruLanguageModel, Task::kTransformerLanguageModel, Task::kImageClassifier};
  if (names.empty()) return all;
  std::vector<Task> out;
  for (const std::string& name : names) {
    bool found = false;
    for (Task t : all) {
      if (name == task_key(t)) {
        out.push_back(t);
        found = true;
      }
    }
    if (!found) throw std::invalid_argument("--task: expected gru_lm, transformer_lm or fashion_cnn, got \"" + name + "\"");
  }
  return out;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int run(const Options& options, const nlohmann::json& machine) {
  const auto run_start = Clock::now();
  Scale scale = scale_named(options.scale);
  if (options.seeds > 0) scale.seeds = options.seeds;
  const int threads = options.threads > 0 ? options.threads
                                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);  // our ops take their thread count from LibTorch's
  const std::vector<Task> tasks = selected_tasks(options.tasks);
  bool needs_text = false, needs_images = false;
  for (Task t : tasks) (t == Task::kImageClassifier ? needs_images : needs_text) = true;
  CharCorpus text;
  FashionMnist images;
  if (needs_text) text = load_fortunes(options.fortunes_dir);
  if (needs_images) images = load_fashion_mnist(options.fashion_dir);
  const TaskData task_data{&text, &images};
  nlohmann::json data;
  data["text_directory"] = options.fortunes_dir;
  data["text_files"] = text.files;
  data["text_characters"] = needs_text ? text.train.size(0) + text.valid.size(0) : 0;
  data["text_train"] = needs_text ? text.train.size(0) : 0;
  data["text_valid"] = needs_text ? text.valid.size(0) : 0;
  data["vocabulary"] = text.vocab();
  data["images_directory"] = options.fashion_dir;
  data["images_train"] = needs_images ? images.train.images.size(0) : 0;
  data["images_test"] = needs_images ? images.test.images.size(0) : 0;

  std::fprintf(stderr, "rmsnorm reproduce (%s): %zu task(s) x %d seeds, every variant and setting of a task trained "
               "together; %d thread(s)\n", scale.name.c_str(), tasks.size(), scale.seeds, threads);
  // Calibration: eight steps of every model of each task, the first untimed
  // (also LibTorch's warm-up), and one evaluation.
  std::map<Task, BlockCost> calibration;
  for (Task task : tasks) {
    constexpr int64_t kCalibrationSteps = 8;
    train_together(task, 0, scale, task_data, [](int64_t, int64_t) {}, nullptr, &calibration[task],
                   kCalibrationSteps);
  }
  // A block's predicted seconds: its steps, then its evaluation.
  auto predicted_training = [&](Task task) {
    return calibration[task].per_step() * static_cast<double>(task_steps(task, scale));
  };
  std::vector<double> predicted;
  std::vector<Task> block_tasks;
  for (int seed = 0; seed < scale.seeds; ++seed) {
    for (Task task : tasks) {
      predicted.push_back(predicted_training(task) + calibration[task].eval_seconds);
      block_tasks.push_back(task);
    }
  }
  ProgressBar bar(predicted, block_tasks);
  std::vector<RunResult> runs;
  EstimatorProbes probes;
  // Seeds outermost: drifts in machine speed then touch every task alike
  // (within a task, the variants and settings already take turns).
  size_t block = 0;
  for (int seed = 0; seed < scale.seeds; ++seed) {
    for (Task task : tasks) {
      const std::string label = fmt::format("{} / seed {}", task_key(task), seed);
      const double train_share = predicted_training(task) / std::max(1e-9, predicted[block]);
      std::vector<RunResult> block_runs =
          train_together(task, seed, scale, task_data,
                         [&](int64_t step, int64_t steps) { bar.update(label, step, steps, train_share); }, &probes,
                         nullptr);
      for (RunResult& r : block_runs) runs.push_back(std::move(r));
      bar.finish_block();
      ++block;
    }
  }

  const nlohmann::json eta = bar.eta_accuracy();
  Study study;
  study.timing = summarize_timing(runs);
  study.quality = summarize_quality(runs);
  study.sites = summarize_sites(probes);
  study.synthetic_n = scale.name == "quick" ? 1024 : 4096;
  study.synthetic_rows = scale.name == "quick" ? 256 : 2048;
  study.synthetic = synthetic_study(study.synthetic_n, study.synthetic_rows, 0);

  namespace fs = std::filesystem;
  fs::create_directories(options.out_dir);
  RunFacts facts;
  facts.command = options.command;
  facts.machine = machine;
  facts.data = data;
  facts.threads = threads;
  facts.eta = eta;
  for (Task task : tasks) {
    facts.eta["calibration"][task_key(task)] = {{"seconds_per_step", calibration[task].per_step()},
                                                {"eval_seconds", calibration[task].eval_seconds}};
  }
  facts.wall_seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  const std::string json_path = (fs::path(options.out_dir) / "reproduce.json").string();
  const std::string md_path = (fs::path(options.out_dir) / "REPORT.md").string();
  write_file(json_path, to_json(scale, facts, runs, study).dump(1) + "\n");
  const std::string report = markdown_report(scale, facts, study);
  write_file(md_path, report);
  const std::string plot = fmt::format("'{}' '{}' '{}' '{}'", options.python, options.plot_script, json_path,
                                       options.out_dir);
  if (std::system(plot.c_str()) != 0) throw std::runtime_error("the plotting script failed: " + plot);
  std::printf("%s\n", report.c_str());
  std::printf("Report: %s, %s, and in %s: loss_vs_steps.png, loss_vs_time.png, prms_estimator.png\n",
              md_path.c_str(), json_path.c_str(), options.out_dir.c_str());
  return 0;
}

}  // namespace rmsnorm::reproduce
