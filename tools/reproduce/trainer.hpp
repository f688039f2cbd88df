// Trains one (task, normalization variant, seed) and records what the report
// needs: per-step time, the loss curve against steps and wall-clock time, and
// the final validation figures.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tools/reproduce/datasets.hpp"
#include "tools/reproduce/models.hpp"

namespace rmsnorm::reproduce {

enum class Task { kGruLanguageModel, kTransformerLanguageModel, kImageClassifier };

const char* task_key(Task t);   // "gru_lm", "transformer_lm", "fashion_mlp"
const char* task_name(Task t);  // for the report

// Sizes and step counts of one run; the same for every variant and seed.
struct Scale {
  std::string name;             // "quick", "default", "full"
  int64_t steps = 0;            // per run, for every task
  int64_t image_steps = 0;      // the classifier's steps (cheaper per step)
  int64_t batch = 0;            // sequences per language-model batch
  int64_t context = 0;          // characters per sequence
  int64_t gru_hidden = 0;
  int64_t width = 0;            // Transformer width
  int64_t layers = 0;           // Transformer layers
  int64_t mlp_hidden = 0;
  int64_t mlp_layers = 0;
  int64_t image_batch = 0;
  int64_t eval_sequences = 0;   // validation sequences (language models)
  int seeds = 0;
  int64_t log_every = 0;        // loss-curve points
};

Scale scale_named(const std::string& name);  // throws std::invalid_argument for an unknown name

struct RunResult {
  Task task;
  Variant variant;
  int seed = 0;
  std::vector<double> step_ms;        // every step: forward + backward + optimizer
  std::vector<int64_t> curve_steps;   // training loss (mean since the last point) at these steps
  std::vector<double> curve_loss;
  std::vector<double> curve_seconds;  // wall-clock since the start of training
  double valid_loss = 0;              // nats per token / per image
  double valid_metric = 0;            // bits per character, or test accuracy
  double total_seconds = 0;
  double median_step_ms = 0;          // over steps after the first 5 (warm-up)
};

// step, steps in this run
using Progress = std::function<void(int64_t, int64_t)>;

RunResult train(Task task, Variant variant, int seed, const Scale& scale, const CharCorpus& text,
                const FashionMnist& images, const Progress& progress);

}  // namespace rmsnorm::reproduce
