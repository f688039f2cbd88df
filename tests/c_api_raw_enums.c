/* Calls the C API the way a C program can: with integers that are not
 * enumerators where an enum is declared (legal in C). The library must reject
 * them with a status, never load them into its enum types.
 * Used by tests/reliability_test.cpp. */
#include "rmsnorm/rmsnorm.h"

int rmsnorm_test_forward_raw(int kind, int eps_placement, int dtype, int param_dtype, const float* x, float* y,
                             const float* weight, int64_t n) {
  rmsnorm_options options = rmsnorm_default_options();
  options.kind = (rmsnorm_kind)kind;
  options.eps_placement = (rmsnorm_eps_placement)eps_placement;
  return (int)rmsnorm_forward(&options, 1, n, (rmsnorm_dtype)dtype, x, n, y, n, weight, 0,
                              (rmsnorm_dtype)param_dtype, 0, 0);
}

int rmsnorm_test_backward_raw(int dtype, int param_dtype, const float* x, const float* dy, const float* weight,
                              float* dx, float* dweight, int64_t n) {
  rmsnorm_options options = rmsnorm_default_options();
  return (int)rmsnorm_backward(&options, 1, n, (rmsnorm_dtype)dtype, x, n, dy, n, weight, (rmsnorm_dtype)param_dtype,
                               0, 0, dx, n, dweight, 0);
}
