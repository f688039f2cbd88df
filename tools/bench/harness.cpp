#include "tools/bench/harness.hpp"

#include <algorithm>
#include <chrono>

#include "tools/common/median.hpp"

namespace rmsnorm::bench {
namespace {

double seconds_of(Implementation& impl, int calls) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) impl.run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool selected(const Settings& s, const Implementation& impl) {
  if (impl.is_ceiling() || s.only.empty()) return true;
  for (const std::string& prefix : s.only)
    if (impl.key().rfind(prefix, 0) == 0) return true;
  return false;
}

ImplementationList all_implementations(const Settings& s) {
  ImplementationList all;
  for (auto* make : {&make_ceilings, &make_our_implementations, &make_torch_implementations,
                     &make_onednn_implementations}) {
    for (auto& impl : make())
      if (selected(s, *impl)) all.push_back(std::move(impl));
  }
  return all;
}

Group run_group(const Problem& problem, const Settings& settings, ImplementationList& impls,
                const std::function<void(const std::string&)>& progress) {
  Group group;
  group.problem = problem;
  Workspace ws(problem);
  std::vector<Implementation*> active;
  for (auto& impl : impls) {
    Result r;
    r.key = impl->key();
    r.name = impl->name();
    r.family = impl->family();
    r.ceiling = impl->is_ceiling();
    r.unsupported = impl->unsupported(problem);
    if (r.unsupported.empty()) {
      impl->prepare(ws);
      ws.reset_residual();
      impl->run();  // first call: checked, and warms up
      r.bytes = impl->bytes();
      if (!r.ceiling) {
        r.verification = verify(*impl, ws);
        if (!r.verification.passed) progress("CHECK FAILED: " + r.name + " on " + problem.shape.label());
      }
      active.push_back(impl.get());
    }
    group.results.push_back(std::move(r));
  }
  // Warm-up, then how many calls make one sample last min_sample_seconds.
  std::vector<int> calls(active.size(), 1);
  for (size_t i = 0; i < active.size(); ++i) {
    for (int w = 0; w < settings.warmup; ++w) active[i]->run();
    const double once = seconds_of(*active[i], 1);
    calls[i] = static_cast<int>(std::clamp(settings.min_sample_seconds / std::max(once, 1e-9), 1.0, 10000.0));
  }
  std::vector<std::vector<double>> samples(active.size());
  for (int rep = 0; rep < settings.repetitions; ++rep) {
    for (size_t i = 0; i < active.size(); ++i) {
      if (active[i]->interleaved()) samples[i].push_back(seconds_of(*active[i], calls[i]) / calls[i]);
    }
  }
  for (size_t i = 0; i < active.size(); ++i) {
    if (active[i]->interleaved()) continue;
    for (int rep = 0; rep < settings.repetitions; ++rep) samples[i].push_back(seconds_of(*active[i], calls[i]) / calls[i]);
  }
  size_t a = 0;
  for (Result& r : group.results) {
    if (!r.unsupported.empty()) continue;
    r.calls_per_sample = calls[a];
    r.sample_seconds = samples[a];
    r.median_seconds = tools::median(samples[a]);
    r.gbs = r.bytes / r.median_seconds / 1e9;
    ++a;
  }
  for (auto& impl : impls) impl->release();
  if (const Result* c = group.find("ceiling.copy")) group.copy_gbs = c->gbs;
  if (const Result* c = group.find("ceiling.large_copy")) group.large_copy_gbs = c->gbs;
  return group;
}

}  // namespace

// Single decode rows, cache-resident batches (a GRU step, a small training
// batch, BERT-base tokens) and DRAM-sized ones.
std::vector<Shape> default_shapes() {
  return {{1, 4096}, {1, 8192}, {32, 256}, {64, 512}, {32, 4096}, {2048, 768}, {4096, 4096}, {16384, 8192}};
}

const Result* Group::find(const std::string& key) const {
  for (const Result& r : results)
    if (r.key == key && r.unsupported.empty()) return &r;
  return nullptr;
}

std::vector<Group> run(const Settings& settings, const std::function<void(const std::string&)>& progress) {
  ImplementationList impls = all_implementations(settings);
  std::vector<Group> groups;
  for (const Shape& shape : settings.shapes)
    for (DType dtype : settings.dtypes)
      for (int threads : settings.threads)
        for (Direction direction : settings.directions) {
          Problem p;
          p.shape = shape;
          p.dtype = dtype;
          p.threads = threads;
          p.direction = direction;
          progress(shape.label() + " " + dtype_name(dtype) + " " + std::to_string(threads) + " thread(s) " +
                   direction_name(direction));
          groups.push_back(run_group(p, settings, impls, progress));
        }
  return groups;
}

}  // namespace rmsnorm::bench
