#include "tools/reproduce/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <tuple>

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
// every `every` steps and at the last step, with the model's own training
// time so far (its steps only: the variants take turns).
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

// One variant's model with its optimizer, loss curve and result.
struct Learner {
  Context context;
  ::torch::nn::AnyModule model;
  std::vector<::torch::Tensor> parameters;
  std::unique_ptr<::torch::optim::Adam> optimizer;
  RunResult result;
  std::unique_ptr<Curve> curve;
};

::torch::nn::AnyModule build_model(Task task, Variant variant, const Context& context, const Scale& scale,
                                   const TaskData& data) {
  switch (task) {
    case Task::kGruLanguageModel:
      return ::torch::nn::AnyModule(
          GruLanguageModel(variant, task_p(task), context, data.text->vocab(), 64, scale.gru_hidden));
    case Task::kTransformerLanguageModel:
      return ::torch::nn::AnyModule(TransformerLanguageModel(variant, task_p(task), context, data.text->vocab(),
                                                             scale.context, scale.width, 4, scale.layers));
    case Task::kImageClassifier:
      return ::torch::nn::AnyModule(CnnClassifier(variant, task_p(task), context, scale.cnn_channels, 10));
  }
  throw std::logic_error("unknown task");
}

// The batches of one block: the same for every variant (drawn once per step).
class Batches {
 public:
  Batches(Task task, int seed, const Scale& scale, const TaskData& data)
      : task_(task), scale_(scale), data_(data),
        generator_(at::detail::createCPUGenerator(1000 + static_cast<uint64_t>(seed))) {
    if (task_ == Task::kImageClassifier) order_ = ::torch::randperm(data_.images->train.images.size(0), generator_,
                                                                      ::torch::kLong);
  }
  // (input, target)
  std::pair<::torch::Tensor, ::torch::Tensor> next() {
    if (task_ != Task::kImageClassifier) {
      const auto batch = windows(data_.text->train, scale_.batch, scale_.context, generator_);
      return {batch.narrow(1, 0, scale_.context), batch.narrow(1, 1, scale_.context)};
    }
    const int64_t count = data_.images->train.images.size(0);
    if (cursor_ + scale_.image_batch > count) {  // next epoch, new order
      order_ = ::torch::randperm(count, generator_, ::torch::kLong);
      cursor_ = 0;
    }
    const auto index = order_.narrow(0, cursor_, scale_.image_batch);
    cursor_ += scale_.image_batch;
    return {data_.images->train.images.index_select(0, index), data_.images->train.labels.index_select(0, index)};
  }

 private:
  Task task_;
  const Scale& scale_;
  const TaskData& data_;
  at::Generator generator_;
  ::torch::Tensor order_;
  int64_t cursor_ = 0;
};

::torch::Tensor loss_of(Task task, const ::torch::Tensor& output, const ::torch::Tensor& target) {
  if (task == Task::kImageClassifier) return ::torch::nn::functional::cross_entropy(output, target);
  return ::torch::nn::functional::cross_entropy(output.reshape({-1, output.size(-1)}), target.reshape({-1}));
}

// Validation loss and metric (bits per character, or accuracy), in the
// fused setting (every setting computes the same function).
std::pair<double, double> evaluate(Task task, Learner& learner, const Scale& scale, const TaskData& data) {
  ::torch::NoGradGuard no_grad;
  learner.model.ptr()->eval();
  learner.context->setting = Setting::kFused;
  learner.context->timing = false;
  if (task != Task::kImageClassifier) {
    const auto valid = validation_windows(data.text->valid, scale.eval_sequences, scale.context);
    const auto logits = learner.model.forward(valid.narrow(1, 0, scale.context));
    const double loss = loss_of(task, logits, valid.narrow(1, 1, scale.context)).item<double>();
    return {loss, loss / std::log(2.0)};
  }
  const auto& test = data.images->test;
  const int64_t count = scale.eval_images > 0 ? std::min(scale.eval_images, test.images.size(0)) : test.images.size(0);
  double loss_sum = 0, correct = 0;
  for (int64_t start = 0; start < count; start += 1000) {  // chunks bound the activations' memory
    const int64_t size = std::min<int64_t>(1000, count - start);
    const auto logits = learner.model.forward(test.images.narrow(0, start, size));
    const auto labels = test.labels.narrow(0, start, size);
    loss_sum += ::torch::nn::functional::cross_entropy(logits, labels).item<double>() * static_cast<double>(size);
    correct += logits.argmax(1).eq(labels).sum().item<double>();
  }
  return {loss_sum / static_cast<double>(count), correct / static_cast<double>(count)};
}

}  // namespace

const char* task_key(Task t) {
  switch (t) {
    case Task::kGruLanguageModel:
      return "gru_lm";
    case Task::kTransformerLanguageModel:
      return "transformer_lm";
    case Task::kImageClassifier:
      return "fashion_cnn";
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
      return "image classifier, CNN (Fashion-MNIST)";
  }
  return "?";
}

std::vector<Variant> task_variants(Task t) {
  std::vector<Variant> v = {Variant::kNone, Variant::kLayerNorm, Variant::kRMSNorm, Variant::kPartialRMSNorm};
  if (t == Task::kGruLanguageModel) v.push_back(Variant::kL2Norm);
  return v;
}

double task_p(Task t) { return t == Task::kImageClassifier ? 0.125 : 0.0625; }

Scale scale_named(const std::string& name) {
  Scale s;
  s.name = name;
  if (name == "quick") {
    s.steps = 12, s.image_steps = 12, s.batch = 8, s.context = 24, s.gru_hidden = 64, s.width = 64, s.layers = 1;
    s.cnn_channels = 4, s.image_batch = 16, s.eval_sequences = 8, s.eval_images = 500, s.seeds = 2;
    s.log_every = 4, s.warmup_steps = 6;
  } else if (name == "default") {
    s.steps = 150, s.image_steps = 150, s.batch = 32, s.context = 64, s.gru_hidden = 256, s.width = 128;
    s.layers = 2, s.cnn_channels = 8, s.image_batch = 64, s.eval_sequences = 64, s.eval_images = 0, s.seeds = 3;
    s.log_every = 10, s.warmup_steps = 6;
  } else if (name == "full") {
    s.steps = 300, s.image_steps = 300, s.batch = 32, s.context = 64, s.gru_hidden = 256, s.width = 128;
    s.layers = 2, s.cnn_channels = 8, s.image_batch = 64, s.eval_sequences = 128, s.eval_images = 0, s.seeds = 5;
    s.log_every = 10, s.warmup_steps = 6;
  } else {
    throw std::invalid_argument("scale: expected quick, default or full, got \"" + name + "\"");
  }
  return s;
}

int64_t task_steps(Task t, const Scale& scale) {
  return t == Task::kImageClassifier ? scale.image_steps : scale.steps;
}

std::vector<RunResult> train_together(Task task, int seed, const Scale& scale, const TaskData& data,
                                      const Progress& progress, EstimatorProbes* probes, BlockCost* cost,
                                      int64_t steps) {
  if (steps <= 0) steps = task_steps(task, scale);
  const std::vector<Variant> variants = task_variants(task);
  std::vector<Learner> learners(variants.size());
  for (size_t i = 0; i < variants.size(); ++i) {
    Learner& l = learners[i];
    l.context = std::make_shared<NormContext>();
    // The same seed gives every variant the same initial weights: the norms'
    // parameters are ones/zeros and draw nothing from the generator.
    ::torch::manual_seed(static_cast<uint64_t>(seed));
    l.model = build_model(task, variants[i], l.context, scale, data);
    l.parameters = l.model.ptr()->parameters();
    l.optimizer = std::make_unique<::torch::optim::Adam>(
        l.parameters, ::torch::optim::AdamOptions(task == Task::kImageClassifier ? 1e-3 : 2e-3));
    l.result.task = task;
    l.result.variant = variants[i];
    l.result.seed = seed;
    l.curve = std::make_unique<Curve>(l.result, scale.log_every, steps);
  }
  Batches batches(task, seed, scale, data);
  const size_t count = learners.size();
  for (int64_t step = 1; step <= steps; ++step) {
    const auto step_start = Clock::now();
    const auto [input, target] = batches.next();
    for (size_t j = 0; j < count; ++j) {
      const size_t i = (j + static_cast<size_t>(step)) % count;  // the order rotates
      Learner& l = learners[i];
      const Setting setting = kSettings[(static_cast<size_t>(step) + i) % std::size(kSettings)];
      l.context->setting = setting;
      l.context->timing = true;
      l.context->reset_step();
      const auto model_start = Clock::now();
      l.optimizer->zero_grad();
      const auto loss = loss_of(task, l.model.forward(input), target);
      loss.backward();
      if (task != Task::kImageClassifier) ::torch::nn::utils::clip_grad_norm_(l.parameters, 1.0);
      l.optimizer->step();
      const double seconds = seconds_since(model_start);
      l.result.train_seconds += seconds;
      if (step > scale.warmup_steps) {
        SettingTimes& t = l.result.times[static_cast<size_t>(setting)];
        t.step_ms.push_back(seconds * 1e3);
        t.norm_ms.push_back(l.context->step_seconds() * 1e3);
        t.norm_forward_ms.push_back(l.context->forward_seconds() * 1e3);
      }
      l.curve->add(step, loss.item<double>(), l.result.train_seconds);
    }
    if (cost != nullptr && step > 1) {
      cost->train_seconds += seconds_since(step_start);
      ++cost->timed_steps;
    }
    progress(step, steps);
  }
  const auto eval_start = Clock::now();
  std::vector<RunResult> out;
  for (Learner& l : learners) {
    const Variant v = l.result.variant;
    const bool studied = probes != nullptr && (v == Variant::kRMSNorm || v == Variant::kPartialRMSNorm);
    l.context->probe = studied ? &(*probes)[{task, v}] : nullptr;
    std::tie(l.result.valid_loss, l.result.valid_metric) = evaluate(task, l, scale, data);
    l.context->probe = nullptr;
    out.push_back(std::move(l.result));
  }
  if (cost != nullptr) cost->eval_seconds += seconds_since(eval_start);
  return out;
}

}  // namespace rmsnorm::reproduce
