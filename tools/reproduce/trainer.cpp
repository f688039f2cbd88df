#include "tools/reproduce/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "tools/common/median.hpp"

namespace rmsnorm::reproduce {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// `count` windows of context + 1 tokens starting at offsets drawn by `generator`.
::torch::Tensor windows(const ::torch::Tensor& tokens, int64_t count, int64_t context, at::Generator& generator) {
  const int64_t last = tokens.size(0) - context - 1;
  const auto starts = ::torch::randint(0, last, {count}, generator, ::torch::kLong);
  std::vector<::torch::Tensor> rows;
  rows.reserve(count);
  for (int64_t i = 0; i < count; ++i) rows.push_back(tokens.narrow(0, starts[i].item<int64_t>(), context + 1));
  return ::torch::stack(rows);
}

// Evenly spaced validation windows: the same for every variant and seed.
::torch::Tensor validation_windows(const ::torch::Tensor& tokens, int64_t count, int64_t context) {
  const int64_t last = tokens.size(0) - context - 1;
  std::vector<::torch::Tensor> rows;
  for (int64_t i = 0; i < count; ++i) rows.push_back(tokens.narrow(0, i * last / std::max<int64_t>(1, count), context + 1));
  return ::torch::stack(rows);
}

// The loss curve: the mean training loss since the previous point, recorded
// every `every` steps and at the last step, with the wall-clock time.
class Curve {
 public:
  Curve(RunResult& r, int64_t every, int64_t steps) : r_(r), every_(every), steps_(steps) {}
  void add(int64_t step, double loss, double seconds) {
    sum_ += loss;
    ++count_;
    if (step % every_ != 0 && step != steps_) return;
    r_.curve_steps.push_back(step);
    r_.curve_loss.push_back(sum_ / static_cast<double>(count_));
    r_.curve_seconds.push_back(seconds);
    sum_ = 0;
    count_ = 0;
  }

 private:
  RunResult& r_;
  int64_t every_, steps_;
  double sum_ = 0;
  int64_t count_ = 0;
};

template <class Model>
RunResult train_language_model(Model& model, const RunResult& base, const Scale& scale, const CharCorpus& text,
                               const Progress& progress) {
  RunResult r = base;
  ::torch::optim::Adam optimizer(model->parameters(), ::torch::optim::AdamOptions(2e-3));
  auto generator = at::detail::createCPUGenerator(1000 + static_cast<uint64_t>(base.seed));  // data order per seed
  const auto t0 = Clock::now();
  Curve curve(r, scale.log_every, scale.steps);
  for (int64_t step = 1; step <= scale.steps; ++step) {
    const auto batch = windows(text.train, scale.batch, scale.context, generator);
    const auto step_start = Clock::now();
    optimizer.zero_grad();
    const auto logits = model->forward(batch.narrow(1, 0, scale.context));
    const auto loss = ::torch::nn::functional::cross_entropy(logits.reshape({-1, text.vocab()}),
                                                            batch.narrow(1, 1, scale.context).reshape({-1}));
    loss.backward();
    ::torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    optimizer.step();
    r.step_ms.push_back(seconds_since(step_start) * 1e3);
    curve.add(step, loss.template item<double>(), seconds_since(t0));
    progress(step, scale.steps);
  }
  r.total_seconds = seconds_since(t0);
  ::torch::NoGradGuard no_grad;
  model->eval();
  const auto valid = validation_windows(text.valid, scale.eval_sequences, scale.context);
  const auto logits = model->forward(valid.narrow(1, 0, scale.context));
  r.valid_loss = ::torch::nn::functional::cross_entropy(logits.reshape({-1, text.vocab()}),
                                                       valid.narrow(1, 1, scale.context).reshape({-1}))
                     .template item<double>();
  r.valid_metric = r.valid_loss / std::log(2.0);  // bits per character
  return r;
}

RunResult train_classifier(MlpClassifier& model, const RunResult& base, const Scale& scale, const FashionMnist& data,
                           const Progress& progress) {
  RunResult r = base;
  ::torch::optim::Adam optimizer(model->parameters(), ::torch::optim::AdamOptions(1e-3));
  auto generator = at::detail::createCPUGenerator(1000 + static_cast<uint64_t>(base.seed));
  const int64_t count = data.train.images.size(0);
  auto order = ::torch::randperm(count, generator, ::torch::kLong);
  int64_t cursor = 0;
  const auto t0 = Clock::now();
  Curve curve(r, scale.log_every, scale.image_steps);
  for (int64_t step = 1; step <= scale.image_steps; ++step) {
    if (cursor + scale.image_batch > count) {  // next epoch, new order
      order = ::torch::randperm(count, generator, ::torch::kLong);
      cursor = 0;
    }
    const auto index = order.narrow(0, cursor, scale.image_batch);
    cursor += scale.image_batch;
    const auto images = data.train.images.index_select(0, index);
    const auto labels = data.train.labels.index_select(0, index);
    const auto step_start = Clock::now();
    optimizer.zero_grad();
    const auto loss = ::torch::nn::functional::cross_entropy(model->forward(images), labels);
    loss.backward();
    optimizer.step();
    r.step_ms.push_back(seconds_since(step_start) * 1e3);
    curve.add(step, loss.item<double>(), seconds_since(t0));
    progress(step, scale.image_steps);
  }
  r.total_seconds = seconds_since(t0);
  ::torch::NoGradGuard no_grad;
  model->eval();
  const auto logits = model->forward(data.test.images);
  r.valid_loss = ::torch::nn::functional::cross_entropy(logits, data.test.labels).item<double>();
  r.valid_metric = logits.argmax(1).eq(data.test.labels).to(::torch::kDouble).mean().item<double>();  // accuracy
  return r;
}

}  // namespace

const char* task_key(Task t) {
  switch (t) {
    case Task::kGruLanguageModel:
      return "gru_lm";
    case Task::kTransformerLanguageModel:
      return "transformer_lm";
    case Task::kImageClassifier:
      return "fashion_mlp";
  }
  return "?";
}

const char* task_name(Task t) {
  switch (t) {
    case Task::kGruLanguageModel:
      return "character LM, normalized GRU (fortunes)";
    case Task::kTransformerLanguageModel:
      return "character LM, pre-norm Transformer (fortunes)";
    case Task::kImageClassifier:
      return "image classifier, MLP (Fashion-MNIST)";
  }
  return "?";
}

Scale scale_named(const std::string& name) {
  Scale s;
  s.name = name;
  if (name == "quick") {
    s.steps = 12, s.image_steps = 20, s.batch = 8, s.context = 24, s.gru_hidden = 64, s.width = 64, s.layers = 1;
    s.mlp_hidden = 128, s.mlp_layers = 2, s.image_batch = 64, s.eval_sequences = 8, s.seeds = 2, s.log_every = 4;
  } else if (name == "default") {
    s.steps = 150, s.image_steps = 600, s.batch = 32, s.context = 64, s.gru_hidden = 256, s.width = 128;
    s.layers = 2, s.mlp_hidden = 512, s.mlp_layers = 3, s.image_batch = 128, s.eval_sequences = 64, s.seeds = 3;
    s.log_every = 10;
  } else if (name == "full") {
    // Twice the default's steps and 5 seeds: about 25 minutes on 2 cores.
    s.steps = 300, s.image_steps = 1200, s.batch = 32, s.context = 64, s.gru_hidden = 256, s.width = 128;
    s.layers = 2, s.mlp_hidden = 512, s.mlp_layers = 3, s.image_batch = 128, s.eval_sequences = 128, s.seeds = 5;
    s.log_every = 10;
  } else {
    throw std::invalid_argument("scale: expected quick, default or full, got \"" + name + "\"");
  }
  return s;
}

RunResult train(Task task, Variant variant, int seed, const Scale& scale, const CharCorpus& text,
                const FashionMnist& images, const Progress& progress) {
  RunResult base;
  base.task = task;
  base.variant = variant;
  base.seed = seed;
  // The same seed gives every variant the same initial weights: the norms'
  // parameters are ones/zeros and draw nothing from the generator.
  ::torch::manual_seed(static_cast<uint64_t>(seed));
  RunResult r;
  switch (task) {
    case Task::kGruLanguageModel: {
      GruLanguageModel model(variant, text.vocab(), 64, scale.gru_hidden);
      r = train_language_model(model, base, scale, text, progress);
      break;
    }
    case Task::kTransformerLanguageModel: {
      TransformerLanguageModel model(variant, text.vocab(), scale.context, scale.width, 4, scale.layers);
      r = train_language_model(model, base, scale, text, progress);
      break;
    }
    case Task::kImageClassifier: {
      MlpClassifier model(variant, 28 * 28, scale.mlp_hidden, scale.mlp_layers, 10);
      r = train_classifier(model, base, scale, images, progress);
      break;
    }
  }
  std::vector<double> settled(r.step_ms.begin() + std::min<size_t>(5, r.step_ms.size() / 2), r.step_ms.end());
  r.median_step_ms = tools::median(settled);
  return r;
}

}  // namespace rmsnorm::reproduce
