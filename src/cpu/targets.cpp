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
#include <cctype>

#include "rmsnorm/rmsnorm.hpp"
#include "src/cpu/engine.hpp"

namespace rmsnorm::cpu {

HWY_EXPORT(CompiledTargetImpl);

namespace {
// The target set_simd_target restricted dispatch to; 0 when none.
int64_t g_selected_target = 0;

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
}  // namespace

std::string active_target_name() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(CompiledTargetImpl)()); }

std::vector<std::string> available_target_names() {
  std::vector<std::string> names;
  // List what could be selected, not just the restriction in force.
  hwy::SetSupportedTargetsForTest(0);
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) names.emplace_back(hwy::TargetName(target));
  hwy::SetSupportedTargetsForTest(g_selected_target);
  return names;
}

void select_target(const std::string& name) {
  const std::string wanted = lowercase(name);
  if (wanted.empty() || wanted == "best") {
    g_selected_target = 0;
    hwy::SetSupportedTargetsForTest(0);
    return;
  }
  hwy::SetSupportedTargetsForTest(0);  // search the full set, not a previous choice
  std::string known;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (lowercase(hwy::TargetName(target)) == wanted) {
      g_selected_target = target;
      hwy::SetSupportedTargetsForTest(target);
      return;
    }
    known += (known.empty() ? "" : ", ") + std::string(hwy::TargetName(target));
  }
  hwy::SetSupportedTargetsForTest(g_selected_target);  // a rejected name changes nothing
  throw Error("simd target: '" + name + "' is not compiled in or not supported by this CPU; available: " + known +
              " (or 'best')");
}

}  // namespace rmsnorm::cpu
#endif  // HWY_ONCE
