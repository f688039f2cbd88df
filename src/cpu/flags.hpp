// Run-time switches of a call (is there a weight, a bias, is the norm
// centered, ...) become compile-time ones here, in one place, for forward and
// backward alike: with_flags(f, a, b, c) calls f(A{}, B{}, C{}) where each
// argument is std::true_type or std::false_type as the bool says. Every
// combination is instantiated once, so an added switch is one more argument at
// the call site instead of a doubled ladder of hand-written cases.
#pragma once

#include <type_traits>

namespace rmsnorm::cpu {

template <class F>
decltype(auto) with_flags(F&& f) {
  return f();
}

template <class F, class... Rest>
decltype(auto) with_flags(F&& f, bool first, Rest... rest) {
  if (first) return with_flags([&](auto... later) { return f(std::true_type{}, later...); }, rest...);
  return with_flags([&](auto... later) { return f(std::false_type{}, later...); }, rest...);
}

// The value of a flag passed by with_flags, usable as a template argument.
template <class Flag>
inline constexpr bool flag_v = std::decay_t<Flag>::value;

}  // namespace rmsnorm::cpu
