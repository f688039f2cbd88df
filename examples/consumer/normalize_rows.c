/* The same through the C API: RMSNorm of one row, then a rejected call whose
 * error message is printed. */
#include <math.h>
#include <stdio.h>

#include <rmsnorm/rmsnorm.h>

int main(void) {
  const float x[4] = {1, 2, 3, 4};
  float y[4];
  rmsnorm_options options = rmsnorm_default_options();
  if (rmsnorm_forward(&options, 1, 4, RMSNORM_FLOAT32, x, 4, y, 4, NULL, NULL, RMSNORM_FLOAT32, NULL, NULL) !=
      RMSNORM_OK) {
    printf("forward failed: %s\n", rmsnorm_last_error());
    return 1;
  }
  const double inv_rms = 1.0 / sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-5);
  for (int j = 0; j < 4; ++j) {
    if (fabs(y[j] - x[j] * inv_rms) > 1e-6) {
      printf("mismatch at column %d\n", j);
      return 1;
    }
  }
  options.p = 0; /* rejected: p must be in (0, 1] */
  if (rmsnorm_forward(&options, 1, 4, RMSNORM_FLOAT32, x, 4, y, 4, NULL, NULL, RMSNORM_FLOAT32, NULL, NULL) !=
      RMSNORM_INVALID_ARGUMENT) {
    printf("p = 0 was not rejected\n");
    return 1;
  }
  printf("rmsnorm %s (%s) from C: y = %.6f %.6f %.6f %.6f; p = 0 rejected: %s\n", rmsnorm_version(),
         rmsnorm_simd_target(), y[0], y[1], y[2], y[3], rmsnorm_last_error());
  return 0;
}
