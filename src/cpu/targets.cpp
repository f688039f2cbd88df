// Which Highway target dispatch uses, and restricting it to one (for tests
// that must check every target, and for benchmarks comparing them).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/cpu/targets.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "hwy/targets.h"

HWY_BEFORE_NAMESPACE();
namespace rmsnorm::cpu::HWY_NAMESPACE {
// The target this very code was compiled for: what dispatch actually picks.
int64_t CompiledTargetImpl() { return HWY_TARGET; }
}  // namespace rmsnorm::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <atomic>
#include <cctype>
#include <mutex>

#include "rmsnorm/rmsnorm.hpp"
#include "src/cpu/dispatch.hpp"
#include "src/cpu/engine.hpp"

namespace rmsnorm::cpu {

HWY_EXPORT(CompiledTargetImpl);

namespace {
// Serializes changes of the target: Highway's SetSupportedTargetsForTest
// writes a plain global. Kernels never take it: they read g_dispatch_index.
std::mutex g_target_mutex;
// The dispatch-table index calls use; 0 until the first call chooses.
std::atomic<size_t> g_dispatch_index{0};
// The target set_simd_target restricted dispatch to; 0 when none.
int64_t g_selected_target = 0;

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// With g_target_mutex held: restricts Highway to `target` (0: all supported)
// and publishes the resulting index for the calls that start after this.
void choose(int64_t target) {
  g_selected_target = target;
  hwy::SetSupportedTargetsForTest(target);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
  g_dispatch_index.store(hwy::GetChosenTarget().GetIndex(), std::memory_order_release);
}
}  // namespace

size_t dispatch_index() {
  const size_t index = g_dispatch_index.load(std::memory_order_acquire);
  if (index != 0) return index;
  std::lock_guard<std::mutex> lock(g_target_mutex);
  if (g_dispatch_index.load(std::memory_order_acquire) == 0) choose(g_selected_target);
  return g_dispatch_index.load(std::memory_order_acquire);
}

std::string active_target_name() {
  return hwy::TargetName(RMSNORM_DISPATCH(CompiledTargetImpl, dispatch_index())());
}

std::vector<std::string> available_target_names() {
  std::lock_guard<std::mutex> lock(g_target_mutex);
  std::vector<std::string> names;
  // List what could be selected, not just the restriction in force.
  hwy::SetSupportedTargetsForTest(0);
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) names.emplace_back(hwy::TargetName(target));
  hwy::SetSupportedTargetsForTest(g_selected_target);
  return names;
}

void select_target(const std::string& name) {
  const std::string wanted = lowercase(name);
  std::lock_guard<std::mutex> lock(g_target_mutex);
  if (wanted.empty() || wanted == "best") return choose(0);
  hwy::SetSupportedTargetsForTest(0);  // search the full set, not a previous choice
  std::string known;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (lowercase(hwy::TargetName(target)) == wanted) return choose(target);
    known += (known.empty() ? "" : ", ") + std::string(hwy::TargetName(target));
  }
  hwy::SetSupportedTargetsForTest(g_selected_target);  // a rejected name changes nothing
  throw Error("simd target: '" + name + "' is not compiled in or not supported by this CPU; available: " + known +
              " (or 'best')");
}

}  // namespace rmsnorm::cpu
#endif  // HWY_ONCE
