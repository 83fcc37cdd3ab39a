/* The cuda plugin's library calls ("gemm" through cuBLASLt) and device_power
 * (NVML).
 *  - Everywhere: the plugin loads with no driver and with CUDA's stub driver;
 *    library_call and device_power answer cleanly (unsupported, invalid
 *    argument) without a device; where the toolkit's cuBLASLt is installed, the
 *    plugin binds its whole symbol table (the answer then names the missing
 *    device, not a missing symbol), and a named library that is absent makes
 *    the call unsupported, not an error.
 *  - With a GPU (skipped here): gemm in f32, f64, f16 and bf16, every transpose
 *    combination, alpha/beta (beta == 0 ignoring NaN in Y), strided and
 *    broadcast batches and odd alignments, against a double-precision loop over
 *    the same (rounded) inputs; device_power's NVML energy counter grows. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flagos/backend.h"
#include "flagos/flagos.h"

#include "check.h"
#include "cuda_plugin_test.h"

static flagos_status_t gemm_call(const flagos_backend_t *api, void *state, int32_t dt, void *a, void *b, void *y,
                                 const int64_t ints[9], double alpha, double beta) {
  flagos_devptr_t bufs[3] = {a, b, y};
  int32_t dts[3] = {dt, dt, dt};
  double fl[2] = {alpha, beta};
  flagos_libcall_t call = {"gemm", bufs, dts, 3, ints, 9, fl, 2};
  return api->library_call(state, NULL, &call);
}

/* ---- without a device ---- */
static void check_no_device(const flagos_backend_t *api, const char *driver) {
  setenv("FLAGOS_CUDA_DRIVER", driver, 1);
  void *state = start(api);
  unsetenv("FLAGOS_CUDA_DRIVER");
  if (!state) return;
  CHECK(api->device_count(state) == 0, "driver '%s': no device", driver);
  char fake[64];
  const int64_t ints[9] = {1, 2, 2, 2, 0, 0, 0, 0, 0};
  flagos_status_t st = gemm_call(api, state, FLAGOS_FLOAT32, fake, fake, fake, ints, 1, 0);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "gemm without a device is unsupported: %s", msg(st));
  /* Where the toolkit's cuBLASLt is on the loader path, every symbol bound, and
   * what is missing is the device. */
  void *lt = dlopen("libcublasLt.so.13", RTLD_NOW | RTLD_LOCAL);
  if (!lt) lt = dlopen("libcublasLt.so.12", RTLD_NOW | RTLD_LOCAL);
  if (lt) {
    CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "gemm without a device"), "cuBLASLt binds; the device is missing: %s",
          msg(st));
    dlclose(lt);
  } else {
    printf("test_cuda_blas: no cuBLASLt on the loader path (%s)\n", msg(st));
  }
  flagos_status_free(st);

  st = gemm_call(api, state, FLAGOS_INT32, fake, fake, fake, ints, 1, 0);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "dtypes"), "gemm on int32 is unsupported: %s", msg(st));
  flagos_status_free(st);
  st = gemm_call(api, state, FLAGOS_FLOAT32, fake, fake, fake, (const int64_t[9]){1, 2, -2, 2, 0, 0, 0, 0, 0}, 1, 0);
  CHECK(is(st, FLAGOS_ERR_INVALID_ARGUMENT, "negative"), "a negative N is refused: %s", msg(st));
  flagos_status_free(st);
  st = gemm_call(api, state, FLAGOS_FLOAT32, fake, fake, fake, (const int64_t[9]){3, 0, 5, 7, 0, 0, 0, 0, 0}, 1, 0);
  CHECK(st == NULL, "an empty gemm (M = 0) is done at once: %s", msg(st));
  flagos_status_free(st);
  flagos_devptr_t two[2] = {fake, fake};
  int32_t dts[2] = {FLAGOS_FLOAT32, FLAGOS_FLOAT32};
  flagos_libcall_t bad = {"gemm", two, dts, 2, ints, 9, (const double[2]){1, 0}, 2};
  st = api->library_call(state, NULL, &bad);
  CHECK(is(st, FLAGOS_ERR_INVALID_ARGUMENT, "3 buffers"), "gemm with 2 buffers is refused: %s", msg(st));
  flagos_status_free(st);
  flagos_libcall_t conv = {"conv", two, dts, 2, ints, 9, NULL, 0};
  st = api->library_call(state, NULL, &conv);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "conv"), "an unknown library call is unsupported: %s", msg(st));
  flagos_status_free(st);

  flagos_power_info_t pi;
  memset(&pi, 0, sizeof pi);
  st = api->device_power(state, 0, &pi);
  CHECK(is(st, FLAGOS_ERR_INVALID_ARGUMENT, "no device 0"), "device_power(0) names the missing device: %s", msg(st));
  flagos_status_free(st);
  api->shutdown(state);

  /* A cuBLASLt named but absent: unsupported, not an error, and the plugin still starts. */
  setenv("FLAGOS_CUDA_DRIVER", driver, 1);
  setenv("FLAGOS_CUBLASLT", "/nonexistent/libcublasLt.so.13", 1);
  state = start(api);
  if (state) {
    st = gemm_call(api, state, FLAGOS_FLOAT32, fake, fake, fake, ints, 1, 0);
    CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "no cuBLASLt"), "a missing cuBLASLt makes gemm unsupported: %s", msg(st));
    flagos_status_free(st);
    api->shutdown(state);
  }
  unsetenv("FLAGOS_CUBLASLT");
  unsetenv("FLAGOS_CUDA_DRIVER");
}

/* ---- with a GPU ---- */

typedef struct gcase {
  int32_t dt;
  int64_t batch, m, n, k, ta, tb, sa, sb, sy; /* sa/sb/sy: -1 = contiguous per batch */
  double alpha, beta;
  bool may_decline; /* odd strides: cuBLASLt may have no algorithm, and the generic kernel runs */
} gcase_t;

static void run_case(const flagos_backend_t *api, void *state, gcase_t c) {
  int64_t sa = c.sa < 0 ? c.m * c.k : c.sa, sb = c.sb < 0 ? c.k * c.n : c.sb, sy = c.sy < 0 ? c.m * c.n : c.sy;
  size_t na = (size_t)(sa * (c.batch - 1) + c.m * c.k), nb = (size_t)(sb * (c.batch - 1) + c.k * c.n);
  size_t ny = (size_t)(sy * (c.batch - 1) + c.m * c.n), es = dt_size(c.dt);
  unsigned char *A = malloc(na * es), *B = malloc(nb * es), *Y = malloc(ny * es), *R = malloc(ny * es);
  double *ref = malloc(ny * sizeof(double));
  for (size_t i = 0; i < na; i++) put(A, c.dt, i, rnd());
  for (size_t i = 0; i < nb; i++) put(B, c.dt, i, rnd());
  for (size_t i = 0; i < ny; i++) put(Y, c.dt, i, c.beta == 0 ? NAN : rnd());
  double worst = 0;
  for (int64_t b = 0; b < c.batch; b++)
    for (int64_t i = 0; i < c.m; i++)
      for (int64_t j = 0; j < c.n; j++) {
        double acc = 0;
        for (int64_t q = 0; q < c.k; q++) {
          double x = get(A, c.dt, (size_t)(b * sa + (c.ta ? q * c.m + i : i * c.k + q)));
          double z = get(B, c.dt, (size_t)(b * sb + (c.tb ? j * c.k + q : q * c.n + j)));
          acc += x * z;
        }
        size_t iy = (size_t)(b * sy + i * c.n + j);
        ref[iy] = c.alpha * acc + (c.beta != 0 ? c.beta * get(Y, c.dt, iy) : 0);
      }
  flagos_devptr_t da = NULL, db = NULL, dy = NULL;
  flagos_status_t st = api->mem_alloc(state, 0, na * es, &da);
  if (!st) st = api->mem_alloc(state, 0, nb * es, &db);
  if (!st) st = api->mem_alloc(state, 0, ny * es, &dy);
  if (!st) st = api->copy_h2d(state, NULL, da, 0, A, na * es);
  if (!st) st = api->copy_h2d(state, NULL, db, 0, B, nb * es);
  if (!st) st = api->copy_h2d(state, NULL, dy, 0, Y, ny * es);
  const int64_t ints[9] = {c.batch, c.m, c.n, c.k, c.ta, c.tb, c.sa < 0 ? sa : c.sa, c.sb < 0 ? sb : c.sb, sy};
  /* Twice: the second call takes the cached plan. */
  for (int rep = 0; rep < 2 && !st; rep++) {
    if (rep) st = api->copy_h2d(state, NULL, dy, 0, Y, ny * es);
    if (!st) st = gemm_call(api, state, c.dt, da, db, dy, ints, c.alpha, c.beta);
    if (c.may_decline && is(st, FLAGOS_ERR_UNSUPPORTED, "no algorithm")) {
      printf("test_cuda_blas: cuBLASLt declines dtype %d with strides %lld/%lld/%lld: %s\n", (int)c.dt,
             (long long)ints[6], (long long)ints[7], (long long)ints[8], msg(st));
      flagos_status_free(st);
      st = NULL;
      break;
    }
    if (!st) st = api->copy_d2h(state, NULL, R, dy, 0, ny * es);
    if (st) break;
    /* Output rounding of the dtype, plus fp32 accumulation (none of TF32: not allowed here). */
    double eps = c.dt == FLAGOS_FLOAT64 ? 1e-15 : c.dt == FLAGOS_FLOAT32 ? 1e-7 : c.dt == FLAGOS_FLOAT16 ? 1.0 / 2048 : 1.0 / 256;
    bool ok = true;
    for (size_t i = 0; i < ny && ok; i++) {
      double got = get(R, c.dt, i), want = ref[i];
      bool in_y = true;
      if (c.batch > 1 && sy > c.m * c.n) in_y = (int64_t)(i % (size_t)sy) < c.m * c.n;
      if (!in_y) continue;
      double tol = 2 * eps * (fabs(want) + 1) + 4e-7 * (double)c.k * (c.dt == FLAGOS_FLOAT64 ? 1e-8 : 1);
      double err = fabs(got - want);
      if (!(err <= tol)) ok = false;
      if (err > worst) worst = err;
      if (!ok)
        fprintf(stderr, "  element %zu: got %.9g, want %.9g\n", i, got, want);
    }
    CHECK(ok, "gemm dtype %d batch %lld %lldx%lldx%lld trans %lld%lld strides %lld/%lld/%lld alpha %g beta %g (call %d)",
          (int)c.dt, (long long)c.batch, (long long)c.m, (long long)c.n, (long long)c.k, (long long)c.ta,
          (long long)c.tb, (long long)ints[6], (long long)ints[7], (long long)ints[8], c.alpha, c.beta, rep + 1);
  }
  CHECK(!st, "gemm case runs: %s", msg(st));
  flagos_status_free(st);
  api->mem_free(state, 0, da);
  api->mem_free(state, 0, db);
  api->mem_free(state, 0, dy);
  free(A);
  free(B);
  free(Y);
  free(R);
  free(ref);
}

static void check_gpu(const flagos_backend_t *api, void *state) {
  static const int32_t dts[4] = {FLAGOS_FLOAT32, FLAGOS_FLOAT64, FLAGOS_FLOAT16, FLAGOS_BFLOAT16};
  for (int d = 0; d < 4; d++)
    for (int t = 0; t < 4; t++) {
      run_case(api, state, (gcase_t){dts[d], 1, 37, 29, 53, t & 1, t >> 1, 0, 0, 0, 1.5, 0});
      run_case(api, state, (gcase_t){dts[d], 3, 16, 24, 40, t & 1, t >> 1, -1, -1, -1, 1, 0.5});
    }
  for (int d = 0; d < 4; d++) {
    /* A shared B (the batch folds into M), a shared A, odd element strides. */
    run_case(api, state, (gcase_t){dts[d], 4, 33, 64, 48, 0, 0, -1, 0, -1, 1, 0});
    run_case(api, state, (gcase_t){dts[d], 3, 20, 31, 17, 1, 0, 0, -1, -1, -0.75, 0});
    run_case(api, state, (gcase_t){dts[d], 2, 7, 5, 9, 0, 1, 71, 53, 41, 1, 1, true});
    run_case(api, state, (gcase_t){dts[d], 1, 1, 1, 1, 0, 0, 0, 0, 0, 2, 0});
  }
  run_case(api, state, (gcase_t){FLAGOS_FLOAT16, 2, 256, 384, 512, 0, 0, -1, -1, -1, 1, 0});
  /* K = 0 goes to the generic kernel. */
  flagos_devptr_t p = NULL;
  flagos_status_t st = api->mem_alloc(state, 0, 64, &p);
  if (!st) st = gemm_call(api, state, FLAGOS_FLOAT32, p, p, p, (const int64_t[9]){1, 2, 2, 0, 0, 0, 0, 0, 0}, 1, 0);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "gemm with K = 0 is left to the generic kernel: %s", msg(st));
  flagos_status_free(st);
  api->mem_free(state, 0, p);

  flagos_power_info_t a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  st = api->device_power(state, 0, &a);
  CHECK(!st, "device_power(0): %s", msg(st));
  flagos_status_free(st);
  printf("test_cuda_blas: power: energy %s %llu uJ, declared %.1f W (%s)\n", a.has_energy ? a.energy_source : "none",
         (unsigned long long)a.energy_uj, a.declared_watts, a.declared_source);
  if (a.has_energy) {
    run_case(api, state, (gcase_t){FLAGOS_FLOAT32, 8, 512, 512, 512, 0, 0, -1, -1, -1, 1, 0});
    usleep(200000);
    st = api->device_power(state, 0, &b);
    CHECK(!st && b.has_energy && b.energy_uj > a.energy_uj, "the energy counter grows: %llu -> %llu uJ",
          (unsigned long long)a.energy_uj, (unsigned long long)b.energy_uj);
    flagos_status_free(st);
  }
}

int main(void) {
  const flagos_backend_t *api = load_plugin();
  if (!api) {
    printf("test_cuda_blas: %d checks, %d failures\n", checks, failures);
    return 1;
  }
  /* The GPU part first: once CUDA's stub driver is loaded, its soname
   * (libcuda.so.1) would stand for the real driver in this process, and a GPU
   * machine would skip the GPU part. */
  void *state = start(api);
  bool gpu = state && api->device_count(state) > 0;
  if (gpu) check_gpu(api, state);
  else printf("test_cuda_blas: SKIP the GPU part: no CUDA device\n");
  if (state) api->shutdown(state);
  check_no_device(api, "/nonexistent/libcuda.so.1");
  const char *stub = "/usr/local/cuda/lib64/stubs/libcuda.so";
  if (!gpu && access(stub, R_OK) == 0) check_no_device(api, stub);
  printf("test_cuda_blas: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
