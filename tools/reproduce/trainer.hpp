// Trains every normalization variant of one task for one seed, together: the
// variants' models step in turn on the same batches (the order rotates each
// step), and each model rotates through the three implementation settings,
// one step each. Every variant and setting thus sees the same minutes of a
// shared machine, and the comparison survives its noise. Records per
// (variant, setting) every step's time and the norms' own time, and per
// variant the loss curve and the validation figures.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tools/reproduce/datasets.hpp"
#include "tools/reproduce/models.hpp"

namespace rmsnorm::reproduce {

enum class Task { kGruLanguageModel, kTransformerLanguageModel, kImageClassifier };

const char* task_key(Task t);   // "gru_lm", "transformer_lm", "fashion_cnn"
const char* task_name(Task t);  // for the report

// The variants a task trains: none, LayerNorm, RMSNorm, pRMSNorm, and on the
// GRU the paper's L2-Norm too.
std::vector<Variant> task_variants(Task t);
// pRMSNorm's p: 6.25% on the language models, 12.5% on the CNN (as the paper).
double task_p(Task t);

// Sizes and step counts of one run; the same for every variant and seed.
struct Scale {
  std::string name;             // "quick", "default", "full"
  int64_t steps = 0;            // per language-model run
  int64_t image_steps = 0;      // the classifier's steps
  int64_t batch = 0;            // sequences per language-model batch
  int64_t context = 0;          // characters per sequence
  int64_t gru_hidden = 0;
  int64_t width = 0;            // Transformer width
  int64_t layers = 0;           // Transformer layers
  int64_t cnn_channels = 0;     // the first block's channels (the second has twice)
  int64_t image_batch = 0;
  int64_t eval_sequences = 0;   // validation sequences (language models)
  int64_t eval_images = 0;      // test images (0: all 10,000)
  int seeds = 0;
  int64_t log_every = 0;        // loss-curve points
  int64_t warmup_steps = 0;     // steps of each model not timed (two per setting)
};

Scale scale_named(const std::string& name);  // throws std::invalid_argument for an unknown name
int64_t task_steps(Task t, const Scale& scale);

// Timing samples of one (variant, setting): one entry per timed step.
struct SettingTimes {
  std::vector<double> step_ms;          // forward + backward + optimizer
  std::vector<double> norm_ms;          // the norms' own time in that step, forward and backward
  std::vector<double> norm_forward_ms;  // the forward part of norm_ms
};

struct RunResult {
  Task task;
  Variant variant;
  int seed = 0;
  std::array<SettingTimes, 3> times;  // indexed by Setting
  std::vector<int64_t> curve_steps;   // training loss (mean since the last point) at these steps
  std::vector<double> curve_loss;
  std::vector<double> curve_seconds;  // this model's own training time up to that step
  double valid_loss = 0;              // nats per token / per image
  double valid_metric = 0;            // bits per character, or test accuracy
  double train_seconds = 0;           // this model's own steps
};

// What a block of training cost, for the progress bar's estimates. The first
// step is left out (it pays one-off set-up: allocator growth, first calls).
struct BlockCost {
  double train_seconds = 0;  // steps 2..: every model's step and the batch
  int64_t timed_steps = 0;
  double eval_seconds = 0;
  double per_step() const { return timed_steps > 0 ? train_seconds / static_cast<double>(timed_steps) : 0; }
};

// step (1-based), steps of this block
using Progress = std::function<void(int64_t, int64_t)>;

// The per-(task, variant) probes the estimator study fills during validation
// (RMSNorm's and pRMSNorm's models); nullptr: no study.
using EstimatorProbes = std::map<std::pair<Task, Variant>, EstimatorProbe>;

struct TaskData {
  const CharCorpus* text = nullptr;
  const FashionMnist* images = nullptr;
};

// Trains task_variants(task) with `seed` for `steps` steps each (0: the
// scale's); every model starts from the same initial weights of the seed.
std::vector<RunResult> train_together(Task task, int seed, const Scale& scale, const TaskData& data,
                                      const Progress& progress, EstimatorProbes* probes, BlockCost* cost,
                                      int64_t steps = 0);

}  // namespace rmsnorm::reproduce
