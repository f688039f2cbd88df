// rmsnorm: RMSNorm, partial RMSNorm and LayerNorm over the rows of a matrix.
//
// The public C++ API. Every function views its data as `rows x n` (normalization
// over the last dimension, length n), with a row stride in elements so that a
// slice of a larger tensor works. The mathematics is ../shared/SPEC.md; the
// float64 reference in <rmsnorm/reference.hpp> implements it literally.
//
// Errors: every entry point validates its arguments first and throws
// rmsnorm::Error naming the argument and what was expected; nothing is written
// to any output when an argument is rejected.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace rmsnorm {

// Storage types. bfloat16 and float16 values are passed as their 16-bit
// patterns (uint16_t); see <rmsnorm/scalar_types.hpp> for conversions.
enum class DType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2, kFloat64 = 3 };

enum class NormKind : int {
  kRMSNorm = 0,    // y = x / RMS(x) * g (+ b); with p < 1 this is pRMSNorm
  kLayerNorm = 1,  // y = (x - mean) / sqrt(var + eps) * g + b
};

// Where eps enters the root mean square (RMSNorm / pRMSNorm only).
enum class EpsPlacement : int {
  kInside = 0,   // r = sqrt(ms + eps): PyTorch nn.RMSNorm, T5, LLaMA, Apex
  kOutside = 1,  // r = sqrt(ms) + eps: the paper authors' released code
};

// When 16-bit outputs are rounded (SPEC section 7). float32 and float64 data
// ignore it.
enum class Rounding : int {
  // Everything in float32 or wider, one rounding at the end: Gemma, OLMo2,
  // TransformerEngine, FlashInfer.
  kSingle = 0,
  // t = round_to_data_dtype((x - mean) / r), then y = round(t * (o + g) + b):
  // Hugging Face LlamaRMSNorm (Mistral, Qwen2/3, Phi-3) and PyTorch's F.rms_norm.
  kBeforeWeight = 1,
};

struct NormOptions {
  NormKind kind = NormKind::kRMSNorm;
  double eps = 1e-5;
  EpsPlacement eps_placement = EpsPlacement::kInside;
  // pRMSNorm: the RMS is estimated from the first k = ceil(n * p) elements of
  // each row, 0 < p <= 1. p = 1 is RMSNorm. Must be 1 for LayerNorm.
  double p = 1.0;
  // The gain is (weight_offset + g), added in float32 (float64 for float64
  // data): 1 is Gemma's (1 + weight) and TransformerEngine's zero-centered
  // gamma. Requires a weight when not 0. dweight is unchanged by it.
  double weight_offset = 0.0;
  Rounding rounding = Rounding::kSingle;
  // Threads to use; 0 means OpenMP's default (omp_get_max_threads()). Small
  // problems use fewer threads than asked, because starting threads would cost
  // more than the work.
  int num_threads = 0;
};

// A read-only matrix: `rows` rows of `n` elements, row i at data + i * row_stride.
struct ConstMatrix {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t row_stride = 0;  // in elements, >= n
};

struct Matrix {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t row_stride = 0;  // in elements, >= n
};

// A vector of length n (weight, bias). data == nullptr means "absent".
struct ConstVector {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;  // float32 or the data's dtype
};

struct Vector {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
};

// Per-row statistics written by forward and read by backward, one value per
// row, of statistics_dtype(data dtype): float32, or float64 for float64 data.
// inv_rms is 1/r; mean is used by LayerNorm only. Either may be null.
struct Statistics {
  void* inv_rms = nullptr;
  void* mean = nullptr;
};

struct ConstStatistics {
  const void* inv_rms = nullptr;
  const void* mean = nullptr;
};

struct ForwardArgs {
  int64_t rows = 0;
  int64_t n = 0;
  ConstMatrix x;
  Matrix y;               // same dtype as x; may be x itself (same stride): in place
  ConstVector weight;     // optional gain g
  ConstVector bias;       // optional bias b (same dtype as weight when both given)
  Statistics saved;       // optional outputs for backward
};

// y = norm(x) * g + b.
void forward(const NormOptions& options, const ForwardArgs& args);

// The fused residual form used in LLM inference:
//   residual = round(residual + x)   (written in place, in residual's dtype)
//   y        = norm(residual) * g + b
// The statistics are those of the stored (rounded) residual, so the result is
// exactly forward() applied to the updated residual. y may alias x.
struct FusedAddArgs {
  int64_t rows = 0;
  int64_t n = 0;
  ConstMatrix x;
  Matrix residual;  // same dtype as x; read and overwritten
  Matrix y;         // same dtype as x
  ConstVector weight;
  ConstVector bias;
  Statistics saved;
};

void fused_add_forward(const NormOptions& options, const FusedAddArgs& args);

struct BackwardArgs {
  int64_t rows = 0;
  int64_t n = 0;
  ConstMatrix x;          // the forward input
  ConstMatrix dy;         // gradient of the output, same dtype as x
  ConstVector weight;     // the forward's weight (null: g = 1)
  ConstStatistics saved;  // from forward; null members are recomputed from x
  Matrix dx;              // same dtype as x; may alias dy (same stride)
  Vector dweight;         // optional output, dtype of weight; requires weight
  Vector dbias;           // optional output, float32 or the data's dtype
};

// dx, dweight = sum over rows of dy * xhat, dbias = sum over rows of dy.
// dweight and dbias are summed in a fixed order: bitwise identical from run to
// run for a given shape and thread count (docs/ENGINE.md says when the thread
// count matters).
void backward(const NormOptions& options, const BackwardArgs& args);

// The training form of fused_add_forward (SPEC section 8). Forward stored
// h = round(residual + x) as the new residual and normalized it; backward
// takes dy and dh_out, the gradient flowing into that residual from later
// layers (optional), and writes
//   dh = norm_backward(dy) + dh_out   (one rounding, in x's dtype),
// which is the gradient of both x and the old residual. One pass reads h, dy
// and dh_out and writes dh; dweight and dbias are as in backward().
struct FusedAddBackwardArgs {
  int64_t rows = 0;
  int64_t n = 0;
  ConstMatrix h;          // the residual as forward left it (the norm's input)
  ConstMatrix dy;         // gradient of y, h's dtype
  ConstMatrix dh_out;     // optional (data null): gradient of the new residual, h's dtype
  ConstVector weight;
  ConstStatistics saved;  // from fused_add_forward; null members are recomputed from h
  Matrix dh;              // h's dtype; may alias dy or dh_out (same stride)
  Vector dweight;
  Vector dbias;
};

void fused_add_backward(const NormOptions& options, const FusedAddBackwardArgs& args);

// ------------------------------------------------------------------ gated and grouped RMSNorm
// SPEC section 10. A row of n = G * m columns is normalized as G groups of
// group_size m columns, each with its own r, and the gain indexed over all n
// columns; with a gate row z (x's dtype and shape), silu(z) = z / (1 + e^-z)
// multiplies either the norm's input or its output. RMSNorm only, p = 1, any
// eps placement, a weight offset as elsewhere; one rounding at the end
// (options.rounding must be kSingle). A non-finite value among a group's
// statistic elements (x, or x * silu(z) with the gate before the norm) makes
// that group's outputs NaN.
enum class Gate : int {
  kNone = 0,        // grouped RMSNorm, no gate
  kBeforeNorm = 1,  // y = norm(x * silu(z)) * g   (Mamba-2 with norm_before_gate=False)
  kAfterNorm = 2,   // y = norm(x) * g * silu(z)   (Mamba-2's default, Qwen3-Next)
};

struct GatedForwardArgs {
  int64_t rows = 0;
  int64_t n = 0;
  int64_t group_size = 0;  // m, dividing n; 0 means n (one group)
  Gate gate = Gate::kNone;
  ConstMatrix x;
  ConstMatrix z;  // the gate; x's dtype; ignored (may be null) without a gate
  Matrix y;       // x's dtype; may be x itself (same stride)
  ConstVector weight;
  // Optional: 1/r of every group, rows x (n / m) values of
  // statistics_dtype(x), row-major. saved.mean must be null.
  Statistics saved;
};

void gated_forward(const NormOptions& options, const GatedForwardArgs& args);

struct GatedBackwardArgs {
  int64_t rows = 0;
  int64_t n = 0;
  int64_t group_size = 0;
  Gate gate = Gate::kNone;
  ConstMatrix x;
  ConstMatrix z;
  ConstMatrix dy;
  ConstVector weight;
  ConstStatistics saved;  // optional inv_rms as gated_forward saved it; recomputed when null
  Matrix dx;              // may alias dy (same stride)
  Matrix dz;              // required with a gate: the gate's gradient, x's dtype
  Vector dweight;         // optional, the weight's dtype
};

// dx, dz and dweight of gated_forward.
void gated_backward(const NormOptions& options, const GatedBackwardArgs& args);

// ------------------------------------------------------------------ sharded rows
// SPEC section 9 (tensor parallelism): each row of global_n columns is split
// across processes, and this process holds columns [column_begin, column_begin
// + n). Each norm is two phases with an all-reduce (a sum over the shards, in
// rank order) between them:
//   forward:  for round in [0, shard_forward_rounds(options)):
//               shard_forward_sums(..., round, reduced, sums); all-reduce sums
//               into reduced.round<round>
//             shard_forward_apply(..., reduced)       writes y and saved
//   backward: shard_backward_sums(..., sums); all-reduce sums into reduced
//             shard_backward_apply(..., reduced)      writes dx, dweight, dbias
// Every sums array is rows x kShardSumsPerRow doubles, row-major; unused
// entries are 0, so a caller all-reduces the whole array. pRMSNorm's k =
// ceil(global_n * p) counts over the global row: a shard whose columns lie
// past k contributes 0 to the statistic and still applies it. The weight,
// bias, dweight and dbias are this shard's n columns. The result equals the
// unsharded norm within SPEC section 4's tolerance.
//
// What the sums hold, per row (all in float64):
//   RMSNorm forward, round 0:   [sum of x^2 over the shard's columns below k, 0, 0]
//   LayerNorm forward, round 0: [sum of x, 0, 0]
//   LayerNorm forward, round 1: [sum (x - m)^2, sum (x - m), 0], m = round 0's sum / global_n
//                               (never E[x^2] - mean^2, which cancels on rows with a large mean)
//   RMSNorm backward:           [sum gy x, sum of x^2 below k as in forward (eps outside only), 0]
//   LayerNorm backward:         [sum gy (x - mean), sum gy, sum (x - mean)], mean the saved one
// float64 data: a row whose sum of squares overflows float64 (|x| beyond
// about 1e150) comes out NaN; the unsharded norm has no such limit.
struct Shard {
  int64_t global_n = 0;      // the whole row's length
  int64_t column_begin = 0;  // this shard's first column in the global row
};

inline constexpr int64_t kShardSumsPerRow = 3;

// Rounds of forward sums: 1 for RMSNorm, 2 for LayerNorm (the mean, then the
// centered squares).
int shard_forward_rounds(const NormOptions& options);

struct ShardForwardArgs {
  int64_t rows = 0;
  int64_t n = 0;  // this shard's columns
  Shard shard;
  ConstMatrix x;
  Matrix y;            // apply only; may be x itself (same stride)
  ConstVector weight;  // apply only: this shard's slice
  ConstVector bias;
  Statistics saved;  // apply only: the global row's statistics, as forward() saves them
};

// The all-reduced sums of the rounds so far (the second is LayerNorm's).
struct ShardReducedSums {
  const double* round0 = nullptr;
  const double* round1 = nullptr;
};

// Phase 1 of forward: this shard's sums of round `round` (LayerNorm's round 1
// reads reduced.round0).
void shard_forward_sums(const NormOptions& options, const ShardForwardArgs& args, int round,
                        const ShardReducedSums& reduced, double* sums);
// Phase 2 of forward: y (and the saved statistics) from every round's
// all-reduced sums.
void shard_forward_apply(const NormOptions& options, const ShardForwardArgs& args, const ShardReducedSums& reduced);

struct ShardBackwardArgs {
  int64_t rows = 0;
  int64_t n = 0;
  Shard shard;
  ConstMatrix x;
  ConstMatrix dy;
  ConstVector weight;
  // Required: a shard cannot recompute the row's statistics on its own.
  ConstStatistics saved;
  Matrix dx;  // apply only; may alias dy (same stride)
  Vector dweight;
  Vector dbias;
};

// Phase 1 of backward: this shard's gradient sums.
void shard_backward_sums(const NormOptions& options, const ShardBackwardArgs& args, double* sums);
// Phase 2 of backward: dx and this shard's dweight/dbias from the all-reduced sums.
void shard_backward_apply(const NormOptions& options, const ShardBackwardArgs& args, const double* reduced);

// Thrown for every rejected argument; what() names the argument.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// k = ceil(n * p), at least 1: how many leading elements estimate the RMS.
int64_t partial_count(int64_t n, double p);

// The dtype of saved statistics for data of `data_dtype`.
DType statistics_dtype(DType data_dtype);

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
// Parses "float32"/"f32", "bfloat16"/"bf16", "float16"/"f16", "float64"/"f64".
DType parse_dtype(const std::string& name);

struct RuntimeInfo {
  std::string version;
  std::string simd_target;                   // the target dispatch uses now
  std::vector<std::string> compiled_targets;  // compiled in and supported by this CPU
  int max_threads = 1;                       // OpenMP's default thread count
  bool openmp = false;
};

RuntimeInfo runtime_info();

// Restricts dispatch to one SIMD target by name (as listed in
// runtime_info().compiled_targets); "" or "best" restores the best one.
// Process-wide; meant for tests, benchmarks and debugging.
void set_simd_target(const std::string& name);

}  // namespace rmsnorm
