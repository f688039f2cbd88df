/* rmsnorm: the C API. The same operations and checks as <rmsnorm/rmsnorm.hpp>;
 * errors come back as a status, with a message from rmsnorm_last_error().
 * Strides are in elements; bfloat16/float16 data are 16-bit patterns. */
#ifndef RMSNORM_RMSNORM_H_
#define RMSNORM_RMSNORM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rmsnorm_status {
  RMSNORM_OK = 0,
  RMSNORM_INVALID_ARGUMENT = 1, /* an argument was rejected; nothing was written */
  RMSNORM_INTERNAL_ERROR = 2    /* e.g. out of memory */
} rmsnorm_status;

typedef enum rmsnorm_dtype {
  RMSNORM_FLOAT32 = 0,
  RMSNORM_BFLOAT16 = 1,
  RMSNORM_FLOAT16 = 2,
  RMSNORM_FLOAT64 = 3
} rmsnorm_dtype;

typedef enum rmsnorm_kind { RMSNORM_KIND_RMSNORM = 0, RMSNORM_KIND_LAYERNORM = 1 } rmsnorm_kind;

typedef enum rmsnorm_eps_placement { RMSNORM_EPS_INSIDE = 0, RMSNORM_EPS_OUTSIDE = 1 } rmsnorm_eps_placement;

/* When 16-bit outputs are rounded: once at the end, or (Hugging Face Llama,
 * PyTorch F.rms_norm) the normalized value first, before the weight. */
typedef enum rmsnorm_rounding { RMSNORM_ROUNDING_SINGLE = 0, RMSNORM_ROUNDING_BEFORE_WEIGHT = 1 } rmsnorm_rounding;

typedef struct rmsnorm_options {
  rmsnorm_kind kind;
  double eps;
  rmsnorm_eps_placement eps_placement;
  double p;        /* pRMSNorm fraction, 0 < p <= 1 */
  int num_threads; /* 0: default */
  double weight_offset;      /* gain = weight_offset + weight (Gemma: 1); needs a weight when not 0 */
  rmsnorm_rounding rounding; /* 16-bit data only */
} rmsnorm_options;

/* RMSNorm, eps = 1e-5 inside, p = 1, default threads, no weight offset, single
 * rounding. Start from this: fields added later get their defaults here. */
rmsnorm_options rmsnorm_default_options(void);

/* y = norm(x) * weight + bias. x and y share `dtype`; weight and bias (each may
 * be NULL) share `param_dtype` (float32 or dtype). saved_inv_rms / saved_mean
 * (may be NULL) receive one float32 per row (float64 for float64 data). */
rmsnorm_status rmsnorm_forward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype dtype,
                               const void* x, int64_t x_stride, void* y, int64_t y_stride, const void* weight,
                               const void* bias, rmsnorm_dtype param_dtype, void* saved_inv_rms,
                               void* saved_mean);

/* residual += x (rounded to dtype, in place); y = norm(residual) * weight + bias. */
rmsnorm_status rmsnorm_fused_add_forward(const rmsnorm_options* options, int64_t rows, int64_t n,
                                         rmsnorm_dtype dtype, const void* x, int64_t x_stride, void* residual,
                                         int64_t residual_stride, void* y, int64_t y_stride, const void* weight,
                                         const void* bias, rmsnorm_dtype param_dtype);

/* dx (and, when non-NULL, dweight in param_dtype and dbias in float32) from x,
 * dy and the forward's weight. saved_* may be NULL (recomputed). */
rmsnorm_status rmsnorm_backward(const rmsnorm_options* options, int64_t rows, int64_t n, rmsnorm_dtype dtype,
                                const void* x, int64_t x_stride, const void* dy, int64_t dy_stride,
                                const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                const void* saved_mean, void* dx, int64_t dx_stride, void* dweight,
                                float* dbias);

/* The fused residual form's backward (SPEC section 8): dh = norm_backward(dy) +
 * dh_out (dh_out may be NULL), the gradient of both x and the residual, from
 * h, the residual as rmsnorm_fused_add_forward left it. dh may alias dy or
 * dh_out (same stride). dweight and dbias as in rmsnorm_backward. */
rmsnorm_status rmsnorm_fused_add_backward(const rmsnorm_options* options, int64_t rows, int64_t n,
                                          rmsnorm_dtype dtype, const void* h, int64_t h_stride, const void* dy,
                                          int64_t dy_stride, const void* dh_out, int64_t dh_out_stride,
                                          const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                          const void* saved_mean, void* dh, int64_t dh_stride, void* dweight,
                                          float* dbias);

/* Gated and grouped RMSNorm (SPEC section 10): groups of group_size columns
 * (0: one group of n), each with its own r; with a gate z (dtype and shape of
 * x), silu(z) multiplies the norm's input (BEFORE_NORM: Mamba-2 with
 * norm_before_gate=False) or its output (AFTER_NORM: Mamba-2's default,
 * Qwen3-Next). RMSNorm, p = 1, single rounding. saved_inv_rms (may be NULL)
 * holds rows x (n / group_size) values; dz is required with a gate. */
typedef enum rmsnorm_gate {
  RMSNORM_GATE_NONE = 0,
  RMSNORM_GATE_BEFORE_NORM = 1,
  RMSNORM_GATE_AFTER_NORM = 2
} rmsnorm_gate;

rmsnorm_status rmsnorm_gated_forward(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t group_size,
                                     rmsnorm_gate gate, rmsnorm_dtype dtype, const void* x, int64_t x_stride,
                                     const void* z, int64_t z_stride, void* y, int64_t y_stride, const void* weight,
                                     rmsnorm_dtype param_dtype, void* saved_inv_rms);

rmsnorm_status rmsnorm_gated_backward(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t group_size,
                                      rmsnorm_gate gate, rmsnorm_dtype dtype, const void* x, int64_t x_stride,
                                      const void* z, int64_t z_stride, const void* dy, int64_t dy_stride,
                                      const void* weight, rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                      void* dx, int64_t dx_stride, void* dz, int64_t dz_stride, void* dweight);

/* Sharded rows (SPEC section 9; <rmsnorm/rmsnorm.hpp> says what each sum
 * holds): this process holds columns [column_begin, column_begin + n) of rows
 * of global_n. Every sums array is rows x RMSNORM_SHARD_SUMS_PER_ROW doubles;
 * the caller all-reduces (sums, in rank order) between the phases:
 *   for round < *rounds: rmsnorm_shard_forward_sums(round) -> all-reduce
 *   rmsnorm_shard_forward_apply(reduced_round0, reduced_round1)
 *   rmsnorm_shard_backward_sums -> all-reduce -> rmsnorm_shard_backward_apply
 * The backward needs the forward's saved statistics. */
#define RMSNORM_SHARD_SUMS_PER_ROW 3

/* 1 for RMSNorm, 2 for LayerNorm. */
rmsnorm_status rmsnorm_shard_forward_rounds(const rmsnorm_options* options, int* rounds);

/* reduced_round0: round 0's all-reduced sums (LayerNorm's round 1 only, else NULL). */
rmsnorm_status rmsnorm_shard_forward_sums(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                          int64_t column_begin, rmsnorm_dtype dtype, const void* x, int64_t x_stride,
                                          int round, const double* reduced_round0, double* sums);

rmsnorm_status rmsnorm_shard_forward_apply(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                           int64_t column_begin, rmsnorm_dtype dtype, const void* x, int64_t x_stride,
                                           void* y, int64_t y_stride, const void* weight, const void* bias,
                                           rmsnorm_dtype param_dtype, const double* reduced_round0,
                                           const double* reduced_round1, void* saved_inv_rms, void* saved_mean);

rmsnorm_status rmsnorm_shard_backward_sums(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                           int64_t column_begin, rmsnorm_dtype dtype, const void* x, int64_t x_stride,
                                           const void* dy, int64_t dy_stride, const void* weight,
                                           rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                           const void* saved_mean, double* sums);

rmsnorm_status rmsnorm_shard_backward_apply(const rmsnorm_options* options, int64_t rows, int64_t n, int64_t global_n,
                                            int64_t column_begin, rmsnorm_dtype dtype, const void* x, int64_t x_stride,
                                            const void* dy, int64_t dy_stride, const void* weight,
                                            rmsnorm_dtype param_dtype, const void* saved_inv_rms,
                                            const void* saved_mean, const double* reduced, void* dx,
                                            int64_t dx_stride, void* dweight, float* dbias);

/* The message of the last error on this thread ("" if none). */
const char* rmsnorm_last_error(void);

/* The library version and the SIMD target in use, e.g. "AVX3". Static strings
 * valid until the next call on this thread. */
const char* rmsnorm_version(void);
const char* rmsnorm_simd_target(void);

#ifdef __cplusplus
}
#endif

#endif /* RMSNORM_RMSNORM_H_ */
