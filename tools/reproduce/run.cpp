#include "tools/reproduce/run.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "tools/reproduce/report.hpp"
#include "tools/reproduce/trainer.hpp"

namespace rmsnorm::reproduce {
namespace {

using Clock = std::chrono::steady_clock;

std::string clock_text(double seconds) {
  const int s = static_cast<int>(seconds + 0.5);
  return fmt::format("{}:{:02d}", s / 60, s % 60);
}

// One line on stderr, redrawn in place: the run, its progress, and the ETA of
// everything, from the share of all steps done so far.
class ProgressBar {
 public:
  explicit ProgressBar(int64_t total_steps) : total_(total_steps), start_(Clock::now()) {}
  void update(const std::string& label, int64_t step, int64_t steps) {
    const int64_t done = done_before_ + step;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0;
    if (step != steps && step % 5 != 0) return;  // redraw every few steps
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * step / std::max<int64_t>(1, steps));
    std::fprintf(stderr, "\r%-52s [%s%s] %3d%%  total %3d%%  elapsed %s  ETA %s ", label.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                 static_cast<int>(100 * step / std::max<int64_t>(1, steps)),
                 static_cast<int>(100 * done / std::max<int64_t>(1, total_)), clock_text(elapsed).c_str(),
                 clock_text(eta).c_str());
    std::fflush(stderr);
  }
  void finish_run(int64_t steps) {
    done_before_ += steps;
    std::fprintf(stderr, "\n");
  }

 private:
  int64_t total_, done_before_ = 0;
  Clock::time_point start_;
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
    if (!found) throw std::invalid_argument("--task: expected gru_lm, transformer_lm or fashion_mlp, got \"" + name + "\"");
  }
  return out;
}

}  // namespace

int run(const Options& options, const nlohmann::json& machine) {
  Scale scale = scale_named(options.scale);
  if (options.seeds > 0) scale.seeds = options.seeds;
  const std::vector<Task> tasks = selected_tasks(options.tasks);
  const std::vector<Variant> variants = {Variant::kNone, Variant::kLayerNorm, Variant::kRMSNorm,
                                         Variant::kPartialRMSNorm};
  bool needs_text = false, needs_images = false;
  for (Task t : tasks) (t == Task::kImageClassifier ? needs_images : needs_text) = true;
  CharCorpus text;
  FashionMnist images;
  if (needs_text) text = load_fortunes(options.fortunes_dir);
  if (needs_images) images = load_fashion_mnist(options.fashion_dir);
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

  int64_t total_steps = 0;
  for (Task t : tasks) total_steps += (t == Task::kImageClassifier ? scale.image_steps : scale.steps);
  total_steps *= static_cast<int64_t>(variants.size()) * scale.seeds;
  std::fprintf(stderr, "rmsnorm reproduce (%s): %zu task(s) x %zu variants x %d seeds\n", scale.name.c_str(),
               tasks.size(), variants.size(), scale.seeds);
  ProgressBar bar(total_steps);
  std::vector<RunResult> runs;
  // Seeds outermost and variants innermost: drifts in machine speed then touch
  // every variant alike.
  for (int seed = 0; seed < scale.seeds; ++seed) {
    for (Task task : tasks) {
      for (Variant variant : variants) {
        const std::string label = fmt::format("{} / {} / seed {}", task_key(task), variant_key(variant), seed);
        runs.push_back(train(task, variant, seed, scale, text, images,
                             [&](int64_t step, int64_t steps) { bar.update(label, step, steps); }));
        bar.finish_run(task == Task::kImageClassifier ? scale.image_steps : scale.steps);
      }
    }
  }

  namespace fs = std::filesystem;
  fs::create_directories(options.out_dir);
  const std::vector<Summary> summaries = summarize(runs);
  const nlohmann::json doc = to_json(scale, machine, runs, summaries, data);
  const std::string report = markdown_report(scale, machine, summaries, data, options.command);
  const std::string json_path = (fs::path(options.out_dir) / "reproduce.json").string();
  const std::string md_path = (fs::path(options.out_dir) / "REPORT.md").string();
  {
    std::ofstream out(json_path);
    out << doc.dump(1) << "\n";
    if (!out) throw std::runtime_error("cannot write " + json_path);
  }
  {
    std::ofstream out(md_path);
    out << report;
    if (!out) throw std::runtime_error("cannot write " + md_path);
  }
  const std::string plot = fmt::format("'{}' '{}' '{}' '{}'", options.python, options.plot_script, json_path,
                                       options.out_dir);
  if (std::system(plot.c_str()) != 0) throw std::runtime_error("the plotting script failed: " + plot);
  std::printf("%s\n", report.c_str());
  std::printf("Report: %s, %s, %s/loss_vs_steps.png, %s/loss_vs_time.png\n", md_path.c_str(), json_path.c_str(),
              options.out_dir.c_str(), options.out_dir.c_str());
  return 0;
}

}  // namespace rmsnorm::reproduce
