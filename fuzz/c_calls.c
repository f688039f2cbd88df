/* The fuzzer's calls into the C API, from C: there an int that is no
 * enumerator may be passed where an enum is declared, as any C program may,
 * without undefined behaviour in the caller. */
#include "rmsnorm/rmsnorm.h"

static rmsnorm_options options_of(int kind, int placement, double eps, double p, int threads, double offset) {
  rmsnorm_options o = rmsnorm_default_options();
  o.kind = (rmsnorm_kind)kind;
  o.eps_placement = (rmsnorm_eps_placement)placement;
  o.eps = eps;
  o.p = p;
  o.num_threads = threads;
  o.weight_offset = offset;
  return o;
}

int fuzz_forward(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows, int64_t n, int dtype,
                 const void* x, int64_t stride, void* y, const void* weight, const void* bias, int param_dtype,
                 void* inv_rms, void* mean) {
  rmsnorm_options o = options_of(kind, placement, eps, p, threads, offset);
  return (int)rmsnorm_forward(&o, rows, n, (rmsnorm_dtype)dtype, x, stride, y, stride, weight, bias,
                              (rmsnorm_dtype)param_dtype, inv_rms, mean);
}

int fuzz_fused_add(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows, int64_t n, int dtype,
                   const void* x, int64_t stride, void* residual, void* y, const void* weight, const void* bias,
                   int param_dtype) {
  rmsnorm_options o = options_of(kind, placement, eps, p, threads, offset);
  return (int)rmsnorm_fused_add_forward(&o, rows, n, (rmsnorm_dtype)dtype, x, stride, residual, stride, y, stride,
                                        weight, bias, (rmsnorm_dtype)param_dtype);
}

int fuzz_backward(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows, int64_t n, int dtype,
                  const void* x, int64_t stride, const void* dy, const void* weight, int param_dtype, void* dx,
                  void* dweight, float* dbias) {
  rmsnorm_options o = options_of(kind, placement, eps, p, threads, offset);
  return (int)rmsnorm_backward(&o, rows, n, (rmsnorm_dtype)dtype, x, stride, dy, stride, weight,
                               (rmsnorm_dtype)param_dtype, 0, 0, dx, stride, dweight, dbias);
}

int fuzz_fused_add_backward(int kind, int placement, double eps, double p, int threads, double offset, int64_t rows,
                            int64_t n, int dtype, const void* h, int64_t stride, const void* dy, const void* dh_out,
                            const void* weight, int param_dtype, void* dh, void* dweight, float* dbias) {
  rmsnorm_options o = options_of(kind, placement, eps, p, threads, offset);
  return (int)rmsnorm_fused_add_backward(&o, rows, n, (rmsnorm_dtype)dtype, h, stride, dy, stride, dh_out, stride,
                                         weight, (rmsnorm_dtype)param_dtype, 0, 0, dh, stride, dweight, dbias);
}

int fuzz_gated_forward(int placement, double eps, int threads, double offset, int64_t rows, int64_t n,
                       int64_t group_size, int gate, int dtype, const void* x, const void* z, int64_t stride, void* y,
                       const void* weight, int param_dtype, void* inv_rms) {
  rmsnorm_options o = options_of(RMSNORM_KIND_RMSNORM, placement, eps, 1.0, threads, offset);
  return (int)rmsnorm_gated_forward(&o, rows, n, group_size, (rmsnorm_gate)gate, (rmsnorm_dtype)dtype, x, stride, z,
                                    stride, y, stride, weight, (rmsnorm_dtype)param_dtype, inv_rms);
}

int fuzz_gated_backward(int placement, double eps, int threads, double offset, int64_t rows, int64_t n,
                        int64_t group_size, int gate, int dtype, const void* x, const void* z, const void* dy,
                        int64_t stride, const void* weight, int param_dtype, const void* inv_rms, void* dx, void* dz,
                        void* dweight) {
  rmsnorm_options o = options_of(RMSNORM_KIND_RMSNORM, placement, eps, 1.0, threads, offset);
  return (int)rmsnorm_gated_backward(&o, rows, n, group_size, (rmsnorm_gate)gate, (rmsnorm_dtype)dtype, x, stride, z,
                                     stride, dy, stride, weight, (rmsnorm_dtype)param_dtype, inv_rms, dx, stride, dz,
                                     stride, dweight);
}
