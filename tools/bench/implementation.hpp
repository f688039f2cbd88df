// One way of computing a normalization (ours, LibTorch's, oneDNN's) or a copy
// ceiling, behind one interface so the harness can time them interleaved and
// check each against the reference.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rmsnorm/rmsnorm.hpp"
#include "tools/bench/problem.hpp"

namespace rmsnorm::bench {

// What the reference must compute to check an implementation.
struct Math {
  NormOptions options;  // kind, eps, placement, p
  bool weight = true;
  bool bias = false;
  bool fused_residual = false;  // y = norm(round(residual + x))
};

// Results of the checked rows, as double, for the verifier.
struct Outputs {
  std::vector<double> y;        // checked rows x n (forward)
  std::vector<double> dx;       // checked rows x n (forward+backward)
  std::vector<double> dweight;  // n, only when every row is checked
};

class Implementation {
 public:
  virtual ~Implementation() = default;
  virtual std::string key() const = 0;     // stable id for JSON, e.g. "ours.rmsnorm"
  virtual std::string name() const = 0;    // for the table
  virtual std::string family() const = 0;  // "ours", "libtorch", "onednn", "ceiling"
  virtual bool is_ceiling() const { return false; }
  // False: timed in its own loop after the interleaved ones (the large copy,
  // which would otherwise evict the cache-resident shapes of whatever follows it).
  virtual bool interleaved() const { return true; }
  virtual Math math() const { return {}; }
  // "" when this implementation can run the problem, else why not.
  virtual std::string unsupported(const Problem& problem) const = 0;
  // Allocates what it needs; called once per group before any run().
  virtual void prepare(Workspace& ws) = 0;
  // One call: forward, or forward then backward.
  virtual void run() = 0;
  // Bytes one call moves by SPEC section 6 (inputs read once, outputs written once).
  virtual double bytes() const = 0;
  // The results of the last run() for the given rows.
  virtual Outputs outputs(const std::vector<int64_t>& rows, bool with_dweight) const = 0;
  // Releases what prepare() allocated.
  virtual void release() {}
};

using ImplementationList = std::vector<std::unique_ptr<Implementation>>;

// Ours: RMSNorm (eps inside and outside), pRMSNorm p = 6.25%, LayerNorm,
// fused residual RMSNorm.
ImplementationList make_our_implementations();
// A copy of the same bytes, and a large (2 x 256 MiB) copy, at the group's threads.
ImplementationList make_ceilings();
// LibTorch's at::layer_norm and a HuggingFace-style RMSNorm; empty when built without LibTorch.
ImplementationList make_torch_implementations();
// oneDNN layer normalization; empty when built without oneDNN.
ImplementationList make_onednn_implementations();

// Versions of the optional baselines ("" when not built in).
std::string torch_version();
std::string onednn_version();

// With our SIMD target forced (rmsnorm bench --target), oneDNN is capped at
// the same instruction set (AVX2 -> avx2, SSE4 -> sse41), so that a forced
// AVX2 run on an AVX-512 machine compares with oneDNN's AVX2 code, as on an
// AVX2 machine, not with its AVX-512 code. Must run before oneDNN creates a
// primitive. Returns oneDNN's name of the cap, or "" when none was set (no
// oneDNN, or a target at or above AVX-512, which oneDNN picks for itself).
std::string cap_onednn_isa(const std::string& simd_target);
// The cap set by cap_onednn_isa, or "".
std::string onednn_isa_cap();

// The workspace's y (and dx, dweight) rows, for implementations that write there.
Outputs workspace_outputs(const Workspace& ws, const std::vector<int64_t>& rows, bool with_dweight);
std::vector<double> read_rows(DType dtype, const void* base, int64_t n, const std::vector<int64_t>& rows);

// Bytes of the matrices an implementation reads and writes, plus one parameter vector.
double traffic(const Problem& p, int matrices, int vectors);

}  // namespace rmsnorm::bench
