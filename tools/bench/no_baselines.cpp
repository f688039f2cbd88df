// Stand-ins when the project is built without LibTorch or oneDNN: no
// implementations, and an empty version that the report shows as absent.
#include "tools/bench/implementation.hpp"

namespace rmsnorm::bench {

#ifndef RMSNORM_BENCH_HAS_TORCH
ImplementationList make_torch_implementations() { return {}; }
std::string torch_version() { return ""; }
#endif

#ifndef RMSNORM_BENCH_HAS_ONEDNN
ImplementationList make_onednn_implementations() { return {}; }
std::string onednn_version() { return ""; }
std::string cap_onednn_isa(const std::string&) { return ""; }
std::string onednn_isa_cap() { return ""; }
#endif

}  // namespace rmsnorm::bench
