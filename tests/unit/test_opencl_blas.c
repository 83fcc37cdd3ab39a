/* The opencl plugin's "gemm" library call (CLBlast) called directly, on the
 * first OpenCL device (PoCL in CI): shapes, transposes, alpha/beta, batches
 * with a shared operand (stride 0), f64, NaN in Y's old contents with beta 0,
 * and the cases it must leave to the generic kernel (FLAGOS_ERR_UNSUPPORTED)
 * or refuse (FLAGOS_ERR_INVALID_ARGUMENT), and FLAGOS_OPENCL_BLAS (set to 1
 * here: unset, CLBlast takes only large products on CPU devices such as PoCL's). Expected values
 * are computed here in double by the definition in docs/kernel-ir.md.
 *
 * Then the same call through our own kernels (ocl_gemm.c, FLAGOS_OPENCL_GEMM=1,
 * with or without CLBlast): every tile variant, the bias epilogue (4 buffers)
 * and split-K (test_ours), products recorded and replayed (test_ours_capture),
 * and the "conv" call (test_conv).
 *
 * Skips (exit 77) when the plugin was not built or no OpenCL device exists.
 * Without CLBlast (FLAGOS_CLBLAST=/nonexistent), every call must answer
 * FLAGOS_ERR_UNSUPPORTED. FLAGOS_TEST_OPENCL_DEVICE picks another device. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "runtime/host_strings.h"

#define SKIP 77

#include "check.h"

static const flagos_backend_t *be;
static void *bst;
static int g_dev;
static bool g_have_blas;

/* One gemm case: element type f32, f64 or f16 (f16: our kernels only). */
typedef struct {
  flagos_dtype_t dt;
  int64_t batch, M, N, K;
  int ta, tb;
  int64_t sa, sb, sy; /* -1: a full matrix per batch */
  double alpha, beta;
  bool nan_y; /* Y's old contents are NaN (only with beta 0) */
  bool bias;  /* a fourth buffer: N values added to every row */
  int64_t lda, ldb, ldy; /* the rows' strides (the call's ints 10-12); 0: packed */
} gcase_t;

/* Our own kernels (ocl_gemm.c, FLAGOS_OPENCL_GEMM=1) are on: results are
 * expected whether CLBlast is there or not. */
static bool g_ours;

/* Multiples of 1/8 in [-9/8, 9/8]: exact in every element type. */
static double val(int64_t i, int salt) { return (double)((i * 7 + salt * 13) % 19 - 9) / 8.0; }

/* f16's inputs: multiples of 1/8 in [-16, 15.875], exact in half, whose
 * products sum exactly in float (to 2^16 with 8 fractional bits) but mostly do
 * not fit half's 11 bits: the result must be the float sum rounded once to
 * nearest even, bit for bit — a kernel that sums in half, or rounds another
 * way, fails. */
static double val16(int64_t i, int salt) { return (double)((i * 37 + salt * 101) % 255 - 128) / 8.0; }
static double valx(int64_t i, int salt, flagos_dtype_t dt) { return dt == FLAGOS_FLOAT16 ? val16(i, salt) : val(i, salt); }

static flagos_code_t call_n(const char *name, int n_bufs, flagos_devptr_t *bufs, const int32_t *dts,
                            const int64_t *ints, int n_ints, const double *fl, char *msg, size_t cap) {
  flagos_libcall_t c = {name, bufs, dts, n_bufs, ints, n_ints, fl, 2};
  flagos_status_t st = be->library_call(bst, NULL, &c);
  flagos_code_t code = st ? flagos_status_code(st) : FLAGOS_OK;
  snprintf(msg, cap, "%s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  return code;
}

static flagos_code_t call(const char *name, flagos_devptr_t *bufs, const int32_t *dts, const int64_t *ints,
                          const double *fl, char *msg, size_t cap) {
  return call_n(name, 3, bufs, dts, ints, 9, fl, msg, cap);
}

static void run_case(const char *what, gcase_t g) {
  size_t es = flagos_dtype_size(g.dt);
  /* rows lda, ldb, ldy apart (packed where 0); a matrix spans (rows - 1) * ld + cols */
  int64_t lda = g.lda ? g.lda : g.ta ? g.M : g.K, ldb = g.ldb ? g.ldb : g.tb ? g.K : g.N, ldy = g.ldy ? g.ldy : g.N;
  int64_t ra = g.ta ? g.K : g.M, rb = g.tb ? g.N : g.K;
  int64_t sa = g.sa < 0 ? ra * lda : g.sa, sb = g.sb < 0 ? rb * ldb : g.sb, sy = g.sy < 0 ? g.M * ldy : g.sy;
  size_t na = (size_t)((g.batch - 1) * sa + (ra - 1) * lda + g.M * g.K / ra);
  size_t nb = (size_t)((g.batch - 1) * sb + (rb - 1) * ldb + g.K * g.N / rb);
  size_t ny = (size_t)((g.batch - 1) * sy + (g.M - 1) * ldy + g.N);
  double *a = malloc(na * 8), *b = malloc(nb * 8), *y0 = malloc(ny * 8), *want = malloc(ny * 8);
  double *bias = malloc((size_t)g.N * 8);
  void *ha = malloc(na * es), *hb = malloc(nb * es), *hy = malloc(ny * es), *hbias = malloc((size_t)g.N * es);
  for (int64_t j = 0; j < g.N; j++) bias[j] = g.bias ? valx(j, 4, g.dt) * 3 : 0;
  for (size_t i = 0; i < na; i++) a[i] = valx((int64_t)i, 1, g.dt);
  for (size_t i = 0; i < nb; i++) b[i] = valx((int64_t)i, 2, g.dt);
  for (size_t i = 0; i < ny; i++) y0[i] = g.nan_y ? NAN : valx((int64_t)i, 3, g.dt);
  /* elements between batches (strides with gaps) keep their contents */
  memcpy(want, y0, ny * 8);
  for (int64_t t = 0; t < g.batch; t++)
    for (int64_t i = 0; i < g.M; i++)
      for (int64_t j = 0; j < g.N; j++) {
        double s = 0;
        for (int64_t k = 0; k < g.K; k++)
          s += a[t * sa + (g.ta ? k * lda + i : i * lda + k)] * b[t * sb + (g.tb ? j * ldb + k : k * ldb + j)];
        double *w = &want[t * sy + i * ldy + j];
        *w = g.alpha * s + (g.beta == 0 ? 0 : g.beta * y0[t * sy + i * ldy + j]) + bias[j];
      }
  for (size_t i = 0; i < na; i++) rt_hs_store_float(g.dt, ha, (int64_t)i, a[i]);
  for (size_t i = 0; i < nb; i++) rt_hs_store_float(g.dt, hb, (int64_t)i, b[i]);
  for (size_t i = 0; i < ny; i++) rt_hs_store_float(g.dt, hy, (int64_t)i, y0[i]);
  for (int64_t j = 0; j < g.N; j++) rt_hs_store_float(g.dt, hbias, j, bias[j]);
  flagos_devptr_t bufs[4] = {0};
  flagos_status_t st = be->mem_alloc(bst, g_dev, na * es, &bufs[0]);
  if (!st) st = be->mem_alloc(bst, g_dev, nb * es, &bufs[1]);
  if (!st) st = be->mem_alloc(bst, g_dev, ny * es, &bufs[2]);
  if (!st && g.bias) st = be->mem_alloc(bst, g_dev, (size_t)g.N * es, &bufs[3]);
  if (!st && g.bias) st = be->copy_h2d(bst, NULL, bufs[3], 0, hbias, (size_t)g.N * es);
  if (!st) st = be->copy_h2d(bst, NULL, bufs[0], 0, ha, na * es);
  if (!st) st = be->copy_h2d(bst, NULL, bufs[1], 0, hb, nb * es);
  if (!st) st = be->copy_h2d(bst, NULL, bufs[2], 0, hy, ny * es);
  CHECK(!st, "%s: set-up: %s", what, flagos_status_message(st));
  flagos_status_free(st);
  int32_t dts[4] = {g.dt, g.dt, g.dt, g.dt};
  int64_t ints[12] = {g.batch, g.M, g.N, g.K, g.ta, g.tb, g.sa < 0 ? sa : g.sa, g.sb < 0 ? sb : g.sb, sy,
                      g.ldb, g.lda, g.ldy};
  double fl[2] = {g.alpha, g.beta};
  char msg[512];
  int n_ints = g.lda || g.ldb || g.ldy ? 12 : 9;
  flagos_code_t code = call_n("gemm", g.bias ? 4 : 3, bufs, dts, ints, n_ints, fl, msg, sizeof msg);
  if (g.dt == FLAGOS_FLOAT64 && code == FLAGOS_ERR_UNSUPPORTED && strstr(msg, "cl_khr_fp64")) {
    printf("test_opencl_blas: %s: skipped (%s)\n", what, msg);
  } else if (!g_ours && g.bias) {
    CHECK(code == FLAGOS_ERR_UNSUPPORTED, "%s: CLBlast has no bias epilogue: code %d (%s)", what, (int)code, msg);
  } else if (!g_have_blas && !g_ours) {
    CHECK(code == FLAGOS_ERR_UNSUPPORTED, "%s: without CLBlast: code %d (%s)", what, (int)code, msg);
  } else {
    CHECK(code == FLAGOS_OK, "%s: code %d: %s", what, (int)code, msg);
    st = be->copy_d2h(bst, NULL, hy, bufs[2], 0, ny * es);
    CHECK(!st, "%s: read back: %s", what, flagos_status_message(st));
    flagos_status_free(st);
    /* f16: the exact sum rounded once to half (val16), nothing else */
    double tol = es == 8 ? 1e-12 : 1e-5;
    int bad = 0, rounded = 0;
    for (size_t i = 0; i < ny && code == FLAGOS_OK; i++) {
      double got = fl_load_as_double(g.dt, hy, i);
      double w = want[i];
      if (es == 2) {
        w = fl_f16_to_f32(fl_f32_to_f16((float)want[i]));
        rounded += w != want[i];
      }
      double lim = es == 2 ? 0 : tol * (1 + fabs(want[i]) + g.K);
      if (!(fabs(got - w) <= lim) && !(isnan(got) && isnan(w))) {
        if (bad++ < 3) CHECK(false, "%s: Y[%zu] = %.9g, expected %.9g (exact %.9g)", what, i, got, w, want[i]);
      }
    }
    /* the f16 data must exercise the rounding */
    if (es == 2 && code == FLAGOS_OK && g.M * g.N > 8)
      CHECK(rounded > (int)(ny / 4), "%s: only %d of %zu results needed rounding to half", what, rounded, ny);
    if (bad > 3) CHECK(false, "%s: %d elements wrong in all", what, bad);
  }
  for (int i = 0; i < 4; i++)
    if (bufs[i]) be->mem_free(bst, g_dev, bufs[i]);
  free(a), free(b), free(y0), free(want), free(ha), free(hb), free(hy), free(bias), free(hbias);
}

/* Calls that must not reach CLBlast, on small valid buffers. */
static void test_refusals(void) {
  flagos_devptr_t bufs[3] = {0};
  for (int i = 0; i < 3 && !bufs[2]; i++) {
    flagos_status_t st = be->mem_alloc(bst, g_dev, 256, &bufs[i]);
    CHECK(!st, "alloc: %s", flagos_status_message(st));
    flagos_status_free(st);
  }
  int32_t f32[3] = {FLAGOS_FLOAT32, FLAGOS_FLOAT32, FLAGOS_FLOAT32}, i32[3] = {FLAGOS_INT32, FLAGOS_INT32, FLAGOS_INT32};
  int32_t f16[3] = {FLAGOS_FLOAT16, FLAGOS_FLOAT16, FLAGOS_FLOAT16};
  double fl[2] = {1, 0};
  char msg[512];
  int64_t k0[9] = {1, 4, 4, 0, 0, 0, 0, 0, 0};
  CHECK(call("gemm", bufs, f32, k0, fl, msg, sizeof msg) == FLAGOS_ERR_UNSUPPORTED, "K = 0 is left to the kernel: %s", msg);
  int64_t ok[9] = {1, 4, 4, 4, 0, 0, 0, 0, 0};
  CHECK(call("gemm", bufs, i32, ok, fl, msg, sizeof msg) == FLAGOS_ERR_UNSUPPORTED, "int32: %s", msg);
  CHECK(call("gemm", bufs, f16, ok, fl, msg, sizeof msg) == FLAGOS_ERR_UNSUPPORTED, "f16 is opt-in: %s", msg);
  CHECK(call("pool", bufs, f32, ok, fl, msg, sizeof msg) == FLAGOS_ERR_UNSUPPORTED, "an unknown call: %s", msg);
  CHECK(call("conv", bufs, f32, ok, fl, msg, sizeof msg) == FLAGOS_ERR_INVALID_ARGUMENT, "conv with 9 ints: %s", msg);
  int64_t one_y[9] = {2, 2, 2, 2, 0, 0, 4, 4, 0};
  CHECK(call("gemm", bufs, f32, one_y, fl, msg, sizeof msg) == FLAGOS_ERR_UNSUPPORTED, "batches into one Y: %s", msg);
  int64_t empty[9] = {3, 0, 4, 4, 0, 0, 0, 0, 0};
  CHECK(call("gemm", bufs, f32, empty, fl, msg, sizeof msg) == FLAGOS_OK || !g_have_blas, "M = 0 is a no-op: %s", msg);
  if (g_have_blas) {
    int64_t over[9] = {1, 8, 9, 4, 0, 0, 0, 0, 0}; /* Y needs 288 bytes */
    CHECK(call("gemm", bufs, f32, over, fl, msg, sizeof msg) == FLAGOS_ERR_INVALID_ARGUMENT && strstr(msg, "overruns"),
          "overrun: %s", msg);
    int64_t neg[9] = {1, 4, 4, -1, 0, 0, 0, 0, 0};
    CHECK(call("gemm", bufs, f32, neg, fl, msg, sizeof msg) == FLAGOS_ERR_INVALID_ARGUMENT, "negative K: %s", msg);
    setenv("FLAGOS_OPENCL_BLAS", "0", 1);
    CHECK(call("gemm", bufs, f32, ok, fl, msg, sizeof msg) == FLAGOS_ERR_UNSUPPORTED && strstr(msg, "FLAGOS_OPENCL_BLAS"),
          "FLAGOS_OPENCL_BLAS=0: %s", msg);
    /* unset: on CPU devices only from 2^24 multiply-adds */
    unsetenv("FLAGOS_OPENCL_BLAS");
    flagos_device_info_t info;
    flagos_status_t st = be->device_info(bst, g_dev, &info);
    flagos_status_free(st);
    flagos_code_t code = call("gemm", bufs, f32, ok, fl, msg, sizeof msg);
    if (info.kind == FLAGOS_DEVICE_CPU) {
      CHECK(code == FLAGOS_ERR_UNSUPPORTED && strstr(msg, "left to the kernel"), "default, small, CPU device: %s", msg);
      /* the shape (and so CLBlast's kernel) of "f32 transA, large": 21M multiply-adds */
      run_case("default, CPU device, 21M multiply-adds",
               (gcase_t){FLAGOS_FLOAT32, 1, 300, 260, 270, 1, 0, -1, -1, -1, 1, 0, true});
    } else {
      CHECK(code == FLAGOS_OK, "default on a %s device: %s", info.kind == FLAGOS_DEVICE_GPU ? "GPU" : "other", msg);
    }
    setenv("FLAGOS_OPENCL_BLAS", "1", 1);
  }
  for (int i = 0; i < 3; i++) be->mem_free(bst, g_dev, bufs[i]);
}

/* Lines of FILE holding `what` (0 for a missing file). */
static int count_lines(const char *file, const char *what) {
  int n = 0;
  FILE *f = fopen(file, "r");
  char line[600];
  while (f && fgets(line, sizeof line, f)) n += strstr(line, what) != NULL;
  if (f) fclose(f);
  return n;
}

/* Our own kernels (ocl_gemm.c), forced on (FLAGOS_OPENCL_GEMM=1): every tile
 * variant (FLAGOS_OPENCL_GEMM_TILE) on shapes that are not multiples of its
 * tiles, transposes, batches with a shared operand, alpha/beta, NaN in Y with
 * beta 0, the bias epilogue (4 buffers), f64, and split-K (FLAGOS_OPENCL_SPLITK:
 * slices that do not divide K, more slices than K has steps). */
static void test_ours(const char *blas_log) {
  g_ours = true;
  setenv("FLAGOS_OPENCL_GEMM", "1", 1);
  int before = count_lines(blas_log, "by flagos");
  int n = 0;
  /* every entry of ocl_gemm.c's k_variants */
  static const char *tiles[] = {"0", "1", "2", "3", "4"};
  for (int v = 0; v < (int)(sizeof tiles / sizeof tiles[0]); v++) {
    setenv("FLAGOS_OPENCL_GEMM_TILE", tiles[v], 1);
    char what[64];
    snprintf(what, sizeof what, "ours, tile %d, plain", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 37, 29, 53, 0, 0, -1, -1, -1, 1, 0, true, false}), n++;
    snprintf(what, sizeof what, "ours, tile %d, transA transB", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 5, 7, 3, 1, 1, -1, -1, -1, 0.75, 1.5, false, false}), n++;
    snprintf(what, sizeof what, "ours, tile %d, transA, bias", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 131, 67, 70, 1, 0, -1, -1, -1, 1, 0, true, true}), n++;
    snprintf(what, sizeof what, "ours, tile %d, batch, A shared, bias, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 3, 70, 140, 41, 0, 0, 0, -1, -1, 1, 1, false, true}), n++;
    snprintf(what, sizeof what, "ours, tile %d, batch, B shared, transB", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 4, 6, 5, 9, 0, 1, -1, 0, -1, -2, 0, true, false}), n++;
    snprintf(what, sizeof what, "ours, tile %d, batch strides with gaps", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 3, 9, 7, 11, 1, 1, 9 * 11 + 5, 11 * 7 + 3, 9 * 7 + 4, 1, 0.5, false, true}),
        n++;
  }
  /* f16 (half in the buffers, float sums): every tile, transposes, NaN in Y, bias, batch strides with gaps */
  int n16 = 0;
  for (int v = 0; v < (int)(sizeof tiles / sizeof tiles[0]); v++) {
    setenv("FLAGOS_OPENCL_GEMM_TILE", tiles[v], 1);
    char what[64];
    snprintf(what, sizeof what, "ours, f16, tile %d, transA, NaN in Y, bias", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 1, 131, 67, 70, 1, 0, -1, -1, -1, 1, 0, true, true}), n16++;
    snprintf(what, sizeof what, "ours, f16, tile %d, transB, batch gaps, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 3, 9, 7, 11, 0, 1, 9 * 11 + 5, 11 * 7 + 3, 9 * 7 + 4, 0.75, 1.5, false,
                             false}),
        n16++;
  }
  /* the vector kernel's variants (k_vec): every leading dimension and batch
   * stride a multiple of 4, no extent a multiple of the tile, K not a multiple
   * of the K step; each must run as its own variant (the trace's "vec)") */
  int vec_before = count_lines(blas_log, " vec)"), nvec = 0;
  for (int v = 5; v <= 10; v++) {
    char tile[8], what[64];
    snprintf(tile, sizeof tile, "%d", v);
    setenv("FLAGOS_OPENCL_GEMM_TILE", tile, 1);
    snprintf(what, sizeof what, "ours, vec tile %d, plain, NaN in Y", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 132, 68, 72, 0, 0, -1, -1, -1, 1, 0, true, false}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %d, transA transB", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 36, 20, 44, 1, 1, -1, -1, -1, 0.75, 1.5, false, false}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %d, transA, bias", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 132, 68, 72, 1, 0, -1, -1, -1, 1, 0, true, true}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %d, batch, A shared, bias, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 3, 68, 132, 40, 0, 0, 0, -1, -1, 1, 1, false, true}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %d, batch, B shared, transB", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 4, 12, 8, 16, 0, 1, -1, 0, -1, -2, 0, true, false}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %d, batch strides with gaps", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 3, 12, 8, 20, 1, 1, 12 * 20 + 4, 20 * 8 + 8, 12 * 8 + 4, 1, 0.5, false, true}),
        n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %d, transB, N 67, bias, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 36, 67, 44, 0, 1, -1, -1, -1, 1, 0.5, false, true}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %d, batch, N 5, NaN in Y", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 2, 12, 5, 12, 1, 1, -1, -1, -1, 1, 0, true, false}), n++, nvec++;
    snprintf(what, sizeof what, "ours, f16, vec tile %d, transA, NaN in Y, bias", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 1, 132, 68, 72, 1, 0, -1, -1, -1, 1, 0, true, true}), n16++, nvec++;
    snprintf(what, sizeof what, "ours, f16, vec tile %d, transB, batch gaps, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 3, 12, 8, 20, 0, 1, 12 * 20 + 4, 20 * 8 + 8, 12 * 8 + 4, 0.75, 1.5, false,
                             false}),
        n16++, nvec++;
  }
  /* rows that do not start on float4s: that operand element by element, each
   * element's bounds tested (flags & 32, 64); K 70 and N 49 (ResNet-50's 7x7
   * stage) in every transpose, a batch stride 2 past, f16 */
  static const char *uvec[] = {"5", "7", "8"};
  for (int i = 0; i < 3; i++) {
    char what[80];
    setenv("FLAGOS_OPENCL_GEMM_TILE", uvec[i], 1);
    snprintf(what, sizeof what, "ours, vec tile %s, K 70, NaN in Y", uvec[i]);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 132, 68, 70, 0, 0, -1, -1, -1, 1, 0, true, false}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %s, K 70, transA transB, bias", uvec[i]);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 37, 68, 70, 1, 1, -1, -1, -1, 1, 0.5, false, true}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %s, batch, A shared, N 49, K 147", uvec[i]);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 2, 66, 49, 147, 0, 0, 0, -1, -1, 1, 0, true, true}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %s, M 49 transA, N 49 transB", uvec[i]);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 1, 49, 49, 36, 1, 1, -1, -1, -1, 1, 0, true, false}), n++, nvec++;
    snprintf(what, sizeof what, "ours, vec tile %s, batch stride 2 past", uvec[i]);
    run_case(what, (gcase_t){FLAGOS_FLOAT32, 2, 12, 8, 20, 0, 0, 12 * 20 + 2, -1, -1, 1, 0, true, false}), n++, nvec++;
    snprintf(what, sizeof what, "ours, f16, vec tile %s, N 49, K 147, bias", uvec[i]);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 2, 66, 49, 147, 0, 0, 0, -1, -1, 1, 0, true, true}), n16++, nvec++;
  }
  /* FLAGOS_OPENCL_VEC_UNALIGNED=0: such products go to the general kernel */
  setenv("FLAGOS_OPENCL_VEC_UNALIGNED", "0", 1);
  run_case("ours, vec tile asked for, K 70, unaligned off",
           (gcase_t){FLAGOS_FLOAT32, 1, 132, 68, 70, 0, 0, -1, -1, -1, 1, 0, true, false}),
      n++;
  unsetenv("FLAGOS_OPENCL_VEC_UNALIGNED");
  int vec_ran = count_lines(blas_log, " vec)") - vec_before;
  CHECK(vec_ran == nvec, "ours: %d products ran through the vector kernel (%d expected)", vec_ran, nvec);
  /* the tensor-core kernel's variants (k_tc), its mma.sync emulated
   * (FLAGOS_OPENCL_TENSOR=emulate; the real instruction runs on NVIDIA GPUs
   * only): f16 with every leading dimension and batch stride a multiple of 8,
   * both ways of filling its tiles (rows along K copied, along M or N paired),
   * a K tail, N odd; each must run as its own variant ("mma emulated)"; tiles
   * 16 and 17 the warpgroup kernel's wgmma, "wgmma emulated)"; 18 the 32x32
   * tile with K steps of 64, one 16x16 block a warp) */
  setenv("FLAGOS_OPENCL_TENSOR", "emulate", 1);
  int tc_before = count_lines(blas_log, "mma emulated)"), ntc = 0, wg_em = count_lines(blas_log, " wgmma emulated)");
  for (int v = 11; v <= 18; v++) {
    char tile[8], what[64];
    snprintf(tile, sizeof tile, "%d", v);
    setenv("FLAGOS_OPENCL_GEMM_TILE", tile, 1);
    snprintf(what, sizeof what, "ours, f16, mma tile %d, plain, NaN in Y", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 1, 136, 72, 80, 0, 0, -1, -1, -1, 1, 0, true, false}), n16++, ntc++;
    snprintf(what, sizeof what, "ours, f16, mma tile %d, transA, bias", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 1, 136, 72, 80, 1, 0, -1, -1, -1, 1, 0, false, true}), n16++, ntc++;
    snprintf(what, sizeof what, "ours, f16, mma tile %d, transB, batch gaps, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 3, 24, 16, 40, 0, 1, 24 * 40 + 8, 40 * 16 + 8, 24 * 16 + 4, 0.75, 1.5,
                             false, false}),
        n16++, ntc++;
    snprintf(what, sizeof what, "ours, f16, mma tile %d, transA transB, N 37", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 1, 40, 37, 48, 1, 1, -1, -1, -1, -2, 0, true, true}), n16++, ntc++;
    snprintf(what, sizeof what, "ours, f16, mma tile %d, batch, A shared, bias, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 3, 40, 136, 24, 0, 0, 0, -1, -1, 1, 1, false, true}), n16++, ntc++;
  }
  /* rows not on 16-byte boundaries: the other kernels */
  run_case("ours, f16, mma tile asked for, K 76",
           (gcase_t){FLAGOS_FLOAT16, 1, 40, 24, 76, 0, 0, -1, -1, -1, 1, 0, true, false}), n16++;
  unsetenv("FLAGOS_OPENCL_GEMM_TILE");
  setenv("FLAGOS_OPENCL_SPLITK", "3", 1);
  run_case("ours, f16, mma, split 3, transA bias beta",
           (gcase_t){FLAGOS_FLOAT16, 1, 40, 24, 200, 1, 0, -1, -1, -1, 0.5, 0.25, false, true}), n16++, ntc++;
  unsetenv("FLAGOS_OPENCL_SPLITK");
  unsetenv("FLAGOS_OPENCL_TENSOR");
  int tc_ran = count_lines(blas_log, "mma emulated)") - tc_before;
  wg_em = count_lines(blas_log, " wgmma emulated)") - wg_em;
  CHECK(wg_em == 10, "ours: %d products ran through the warpgroup kernel, emulated (10 expected)", wg_em);
  CHECK(tc_ran == ntc, "ours: %d products ran through the tensor-core kernel, emulated (%d expected)", tc_ran, ntc);
  /* the same products with the device's own mma.sync where it has one (an
   * NVIDIA GPU of compute capability 8.0 or later: scripts/gpu/run.sh's unit
   * stage), the other kernels elsewhere; results checked either way */
  int real_before = count_lines(blas_log, " mma)"), wg_before = count_lines(blas_log, " wgmma)");
  for (int v = 11; v <= 18; v++) {
    char tile[8], what[64];
    snprintf(tile, sizeof tile, "%d", v);
    setenv("FLAGOS_OPENCL_GEMM_TILE", tile, 1);
    snprintf(what, sizeof what, "ours, f16, device mma tile %d, transA, bias", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 1, 136, 72, 80, 1, 0, -1, -1, -1, 1, 0, false, true}), n16++;
    snprintf(what, sizeof what, "ours, f16, device mma tile %d, transB, batch gaps, beta", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 3, 24, 16, 40, 0, 1, 24 * 40 + 8, 40 * 16 + 8, 24 * 16 + 4, 0.75, 1.5,
                             false, false}),
        n16++;
    snprintf(what, sizeof what, "ours, f16, device mma tile %d, batch, A shared, NaN in Y", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 3, 40, 136, 24, 0, 0, 0, -1, -1, 1, 0, true, true}), n16++;
    /* the fourth pair of transposes (the device's kernel is built for each) */
    snprintf(what, sizeof what, "ours, f16, device mma tile %d, transA transB, N 37", v);
    run_case(what, (gcase_t){FLAGOS_FLOAT16, 1, 40, 37, 48, 1, 1, -1, -1, -1, -2, 0, true, true}), n16++;
  }
  unsetenv("FLAGOS_OPENCL_GEMM_TILE");
  int real = count_lines(blas_log, " mma)") - real_before, wgr = count_lines(blas_log, " wgmma)") - wg_before;
  /* tiles 16 and 17 on wgmma where the device has it (compute capability 9.0), else on mma.sync */
  CHECK((real == 0 && wgr == 0) || (real == 24 && wgr == 8) || (real == 32 && wgr == 0),
        "ours: %d and %d of 32 products through the device's mma.sync and wgmma", real, wgr);
  printf("test_opencl_blas: %d and %d of 32 f16 products ran on the device's tensor cores (mma.sync, wgmma)\n", real, wgr);
  /* programs built for their transposes (TRANS: the default for the vector
   * kernel on GPUs and the tensor-core one on the device), forced on this
   * device: the vector kernel and the emulated tensor-core one in each pair */
  setenv("FLAGOS_OPENCL_GEMM_TRANS", "1", 1);
  int fixed_before = count_lines(blas_log, "built for its transposes"), nfixed = 0;
  static const int pairs[4][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
  for (int i = 0; i < 8; i++) {
    int ta = pairs[i % 4][0], tb = pairs[i % 4][1];
    char what[80];
    setenv("FLAGOS_OPENCL_GEMM_TILE", i < 4 ? "7" : "13", 1);
    if (i >= 4) setenv("FLAGOS_OPENCL_TENSOR", "emulate", 1);
    snprintf(what, sizeof what, "ours, %s tile, transposes %d%d built in", i < 4 ? "f32 vec" : "f16 mma emulated", ta, tb);
    run_case(what, (gcase_t){i < 4 ? FLAGOS_FLOAT32 : FLAGOS_FLOAT16, 2, 72, 40, 56, ta, tb, -1, -1, -1, 1, 0.5, false,
                             true}),
        nfixed++, i < 4 ? n++ : n16++;
  }
  unsetenv("FLAGOS_OPENCL_TENSOR");
  unsetenv("FLAGOS_OPENCL_GEMM_TRANS");
  int fixed = count_lines(blas_log, "built for its transposes") - fixed_before;
  CHECK(fixed == nfixed, "ours: %d of %d products ran in programs built for their transposes", fixed, nfixed);
  setenv("FLAGOS_OPENCL_GEMM_TILE", "2", 1);
  run_case("ours, f64 batch, transA", (gcase_t){FLAGOS_FLOAT64, 2, 33, 17, 65, 1, 0, -1, -1, -1, 0.5, 0.25, false, false});
  run_case("ours, f64 transB, NaN in Y, bias", (gcase_t){FLAGOS_FLOAT64, 1, 20, 19, 21, 0, 1, -1, -1, -1, 1, 0, true, true});
  unsetenv("FLAGOS_OPENCL_GEMM_TILE");
  /* the tile chosen by the rule */
  run_case("ours, M 1 N 1", (gcase_t){FLAGOS_FLOAT32, 2, 1, 1, 4, 0, 0, -1, -1, -1, 1, 0, false, false}), n++;
  run_case("ours, K 1", (gcase_t){FLAGOS_FLOAT32, 1, 19, 33, 1, 0, 0, -1, -1, -1, 1, 0, true, false}), n++;
  run_case("ours, transA, large", (gcase_t){FLAGOS_FLOAT32, 1, 300, 260, 270, 1, 0, -1, -1, -1, 1, 0, true, false}), n++;
  /* rows further apart than packed (the call's ldb, lda, ldy: a product read
   * through a transpose and written through one, docs/kernel-ir.md), the gaps
   * between Y's rows kept; every kernel family, split over K too */
  static const struct {
    const char *tile, *tensor, *split;
    flagos_dtype_t dt;
    int ta, tb;
  } lds[] = {{"2", NULL, NULL, FLAGOS_FLOAT32, 0, 0},      {"2", NULL, NULL, FLAGOS_FLOAT32, 1, 1},
             {"7", NULL, NULL, FLAGOS_FLOAT32, 0, 1},      {"7", NULL, NULL, FLAGOS_FLOAT16, 1, 0},
             {"13", "emulate", NULL, FLAGOS_FLOAT16, 0, 1}, {"16", "emulate", NULL, FLAGOS_FLOAT16, 1, 0},
             {NULL, NULL, "3", FLAGOS_FLOAT32, 0, 1},       {NULL, NULL, "3", FLAGOS_FLOAT16, 0, 0}};
  for (size_t i = 0; i < sizeof lds / sizeof lds[0]; i++) {
    char what[96];
    snprintf(what, sizeof what, "ours, rows apart, tile %s%s, split %s, %s, trans %d%d", lds[i].tile ? lds[i].tile : "rule",
             lds[i].tensor ? " emulated" : "", lds[i].split ? lds[i].split : "none",
             lds[i].dt == FLAGOS_FLOAT16 ? "f16" : "f32", lds[i].ta, lds[i].tb);
    if (lds[i].tile) setenv("FLAGOS_OPENCL_GEMM_TILE", lds[i].tile, 1);
    if (lds[i].tensor) setenv("FLAGOS_OPENCL_TENSOR", lds[i].tensor, 1);
    if (lds[i].split) setenv("FLAGOS_OPENCL_SPLITK", lds[i].split, 1);
    /* M 40, N 24, K 48 (whole 16-byte rows, as the tensor-core kernels need);
     * rows 8 elements past packed, batches 2 rows of Y apart beyond them */
    int64_t M = 40, N = 24, K = 48, lda = (lds[i].ta ? M : K) + 8, ldb = (lds[i].tb ? K : N) + 8, ldy = N + 8;
    gcase_t g = {lds[i].dt, lds[i].split ? 1 : 2, M, N, K, lds[i].ta, lds[i].tb, -1, -1, (M + 2) * ldy, 0.5, 0.25,
                 false, true, lda, ldb, ldy};
    run_case(what, g);
    if (lds[i].dt == FLAGOS_FLOAT16) n16++;
    else n++;
    unsetenv("FLAGOS_OPENCL_GEMM_TILE");
    unsetenv("FLAGOS_OPENCL_TENSOR");
    unsetenv("FLAGOS_OPENCL_SPLITK");
  }
  int split_before = count_lines(blas_log, "K slices"), in_kernel_before = count_lines(blas_log, "summed in the kernel");
  /* the slices summed by a second kernel, then by the group that completes a
   * tile (FLAGOS_OPENCL_SPLIT_SUM; the counts go back to zero after each product,
   * or the next one would never sum a tile) */
  for (int in_kernel = 0; in_kernel < 2; in_kernel++) {
    setenv("FLAGOS_OPENCL_SPLIT_SUM", in_kernel ? "1" : "0", 1);
    /* f16 first: its workspace (floats) is then sized by this call alone */
    setenv("FLAGOS_OPENCL_SPLITK", "4", 1);
    run_case("ours, split 4, f16 transA beta bias",
             (gcase_t){FLAGOS_FLOAT16, 1, 30, 45, 200, 1, 0, -1, -1, -1, 0.5, 0.25, false, true}), n16++;
    setenv("FLAGOS_OPENCL_SPLITK", "3", 1);
    run_case("ours, split 3, NaN in Y", (gcase_t){FLAGOS_FLOAT32, 1, 37, 29, 54, 0, 0, -1, -1, -1, 1, 0, true, false}), n++;
    run_case("ours, split 3, transA transB alpha beta bias",
             (gcase_t){FLAGOS_FLOAT32, 1, 20, 12, 63, 1, 1, -1, -1, -1, 0.75, 1.5, false, true}), n++;
    setenv("FLAGOS_OPENCL_SPLITK", "16", 1);
    run_case("ours, split 16 over K 40", (gcase_t){FLAGOS_FLOAT32, 1, 33, 40, 40, 1, 0, -1, -1, -1, -1, 0.5, false, true}), n++;
    setenv("FLAGOS_OPENCL_SPLITK", "4", 1);
    run_case("ours, split 4, transB, large", (gcase_t){FLAGOS_FLOAT32, 1, 300, 70, 270, 0, 1, -1, -1, -1, -1, 0, true, false}), n++;
    run_case("ours, split 4, f64 bias", (gcase_t){FLAGOS_FLOAT64, 1, 21, 22, 75, 0, 0, -1, -1, -1, 1, 2, false, true});
    setenv("FLAGOS_OPENCL_SPLITK", "3", 1);
    run_case("ours, split 3, vec, transA beta bias",
             (gcase_t){FLAGOS_FLOAT32, 1, 36, 28, 200, 1, 0, -1, -1, -1, 0.5, 0.25, false, true}), n++;
    run_case("ours, split 3, vec, f16 transB NaN in Y",
             (gcase_t){FLAGOS_FLOAT16, 1, 36, 28, 200, 0, 1, -1, -1, -1, 1, 0, true, false}), n16++;
    run_case("ours, split 3, vec, N 67, transB bias",
             (gcase_t){FLAGOS_FLOAT32, 1, 36, 67, 200, 0, 1, -1, -1, -1, 1, 0, false, true}), n++;
    /* batches are not split */
    run_case("ours, split 4, batch", (gcase_t){FLAGOS_FLOAT32, 2, 9, 8, 80, 0, 0, -1, -1, -1, 1, 0, false, false}), n++;
  }
  unsetenv("FLAGOS_OPENCL_SPLITK");
  unsetenv("FLAGOS_OPENCL_SPLIT_SUM");
  int split = count_lines(blas_log, "K slices") - split_before;
  int in_kernel = count_lines(blas_log, "summed in the kernel") - in_kernel_before;
  int ran = count_lines(blas_log, "by flagos") - before;
  int ran64 = count_lines(blas_log, "by flagos: f64"), ran16 = count_lines(blas_log, "by flagos: f16");
  CHECK(split == 16 + (ran64 > 0) * 2, "ours: %d products ran in K slices (%d expected)", split, 16 + (ran64 > 0) * 2);
  CHECK(in_kernel == 8 + (ran64 > 0), "ours: %d split products summed in their kernel (%d expected)", in_kernel,
        8 + (ran64 > 0));
  CHECK(ran16 == n16, "ours: %d f16 products ran through our kernels (%d expected)", ran16, n16);
  CHECK(ran == n + ran64 + n16, "ours: %d products ran through our kernels (%d f32 and %d f16 expected, and %d f64)", ran,
        n, n16, ran64);
  /* unset: ours on GPUs only */
  unsetenv("FLAGOS_OPENCL_GEMM");
  flagos_device_info_t info;
  flagos_status_free(be->device_info(bst, g_dev, &info));
  g_ours = info.kind == FLAGOS_DEVICE_GPU;
  run_case("default", (gcase_t){FLAGOS_FLOAT32, 1, 5, 7, 3, 0, 0, -1, -1, -1, 1, 0, false, false});
  int ran_default = count_lines(blas_log, "by flagos") - before - ran;
  CHECK(ran_default == (g_ours ? 1 : 0), "FLAGOS_OPENCL_GEMM unset on a %s device: %d products by our kernel",
        g_ours ? "GPU" : "non-GPU", ran_default);
  /* 0: CLBlast again, which has no bias epilogue */
  setenv("FLAGOS_OPENCL_GEMM", "0", 1);
  g_ours = false;
  run_case("CLBlast, bias left to the kernels", (gcase_t){FLAGOS_FLOAT32, 1, 5, 7, 3, 0, 0, -1, -1, -1, 1, 0, false, true});
  CHECK(count_lines(blas_log, "by flagos") - before - ran == ran_default, "FLAGOS_OPENCL_GEMM=0 still ran our kernel");
}

/* A 4-buffer product through our kernel recorded (capture_begin ..
 * capture_end), then replayed twice on new A and a reset Y. Expected: A*B +
 * 0.5*Y0 + bias in double. `mode`:
 *   0: recorded on a stream of its own (as the runtime records) with
 *      FLAGOS_OPENCL_SPLITK=2: the call runs on the stream's queue, not split
 *      (the split-K workspace is the default queue's), and the plan is made
 *      for the default queue, split; the replays there queue it;
 *   1: recorded on the default queue with FLAGOS_OPENCL_SPLITK=2: the replays
 *      queue the plan (split over K, its own kernel objects) and never make
 *      the call again, though the variable is gone by then;
 *   2: as 1 with FLAGOS_OPENCL_GEMM_PLANS=0: no plan, the call each time
 *      (and, the variable gone, not split);
 *   3: as 1, replayed on a stream: the plan uses the default queue's
 *      workspace, so the call is made again each time, not split. */
static void test_ours_capture(const char *blas_log, int mode) {
  if (!FLAGOS_BACKEND_HAS(be, capture_begin)) return;
  setenv("FLAGOS_OPENCL_GEMM", "1", 1);
  if (mode == 2) setenv("FLAGOS_OPENCL_GEMM_PLANS", "0", 1);
  enum { M = 13, N = 9, K = 11 };
  float a[M * K], b[K * N], y0[M * N], bias[N], y[M * N];
  for (int i = 0; i < K * N; i++) b[i] = (float)val(i, 2);
  for (int i = 0; i < M * N; i++) y0[i] = (float)val(i, 3);
  for (int j = 0; j < N; j++) bias[j] = (float)val(j, 4) * 3;
  flagos_devptr_t bufs[4] = {0};
  size_t sz[4] = {sizeof a, sizeof b, sizeof y0, sizeof bias};
  for (int i = 0; i < 4; i++) CHECK_OK(be->mem_alloc(bst, g_dev, sz[i], &bufs[i]));
  flagos_bstream_t cs = NULL, rs = NULL;
  if (mode == 0) CHECK_OK(be->stream_create(bst, g_dev, &cs));
  if (mode == 3) CHECK_OK(be->stream_create(bst, g_dev, &rs));
  if (!bufs[0] || !bufs[1] || !bufs[2] || !bufs[3] || (mode == 0 && !cs) || (mode == 3 && !rs)) return;
  for (int i = 0; i < M * K; i++) a[i] = (float)val(i, 1);
  CHECK_OK(be->copy_h2d(bst, NULL, bufs[0], 0, a, sizeof a));
  CHECK_OK(be->copy_h2d(bst, NULL, bufs[1], 0, b, sizeof b));
  CHECK_OK(be->copy_h2d(bst, NULL, bufs[2], 0, y0, sizeof y0));
  CHECK_OK(be->copy_h2d(bst, NULL, bufs[3], 0, bias, sizeof bias));
  int32_t dts[4] = {FLAGOS_FLOAT32, FLAGOS_FLOAT32, FLAGOS_FLOAT32, FLAGOS_FLOAT32};
  int64_t ints[9] = {1, M, N, K, 0, 0, M * K, K * N, M * N};
  double fl[2] = {1, 0.5};
  flagos_libcall_t c = {"gemm", bufs, dts, 4, ints, 9, fl, 2};
  int before = count_lines(blas_log, "by flagos"), split_before = count_lines(blas_log, "K slices");
  int planned_before = count_lines(blas_log, "planned for replays");
  int in_kernel_before = count_lines(blas_log, "summed in the kernel");
  setenv("FLAGOS_OPENCL_SPLITK", "2", 1);
  /* odd modes: the slices summed in the product's kernel, even: by a second one */
  setenv("FLAGOS_OPENCL_SPLIT_SUM", mode & 1 ? "1" : "0", 1);
  CHECK_OK(be->capture_begin(bst, g_dev, cs));
  CHECK_OK(be->library_call(bst, cs, &c));
  flagos_bgraph_t g = NULL;
  CHECK_OK(be->capture_end(bst, g_dev, cs, &g));
  unsetenv("FLAGOS_OPENCL_SPLITK");
  if (cs) be->stream_destroy(bst, cs);
  if (!g) return;
  for (int rep = 0; rep < 2; rep++) {
    for (int i = 0; i < M * K; i++) a[i] = (float)val(i * (rep + 2), 5 + rep);
    CHECK_OK(be->copy_h2d(bst, NULL, bufs[0], 0, a, sizeof a));
    CHECK_OK(be->copy_h2d(bst, NULL, bufs[2], 0, y0, sizeof y0));
    CHECK_OK(be->graph_launch(bst, g, rs));
    if (rs) CHECK_OK(be->stream_sync(bst, rs));
    CHECK_OK(be->copy_d2h(bst, NULL, y, bufs[2], 0, sizeof y));
    int bad = 0;
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double w = 0.5 * y0[i * N + j] + bias[j];
        for (int k = 0; k < K; k++) w += (double)a[i * K + k] * b[k * N + j];
        bad += !(fabs(y[i * N + j] - w) <= 1e-5 * (1 + fabs(w) + K));
      }
    CHECK(bad == 0, "ours, captured (mode %d) with a bias, replay %d: %d of %d values wrong", mode, rep, bad, M * N);
  }
  unsetenv("FLAGOS_OPENCL_SPLITK");
  unsetenv("FLAGOS_OPENCL_GEMM_PLANS");
  unsetenv("FLAGOS_OPENCL_SPLIT_SUM");
  int split = count_lines(blas_log, "K slices") - split_before, by = count_lines(blas_log, "by flagos") - before;
  int in_kernel = count_lines(blas_log, "summed in the kernel") - in_kernel_before;
  int planned = count_lines(blas_log, "planned for replays") - planned_before;
  /* the call ran once while recorded, then once in each replay where there is no plan for the queue */
  static const int want_by[4] = {1, 1, 3, 3}, want_split[4] = {1, 2, 1, 2}, want_planned[4] = {1, 1, 0, 1};
  CHECK(by == want_by[mode], "ours, captured (mode %d): %d calls by our kernel (%d expected)", mode, by, want_by[mode]);
  CHECK(planned == want_planned[mode], "ours, captured (mode %d): %d plans (%d expected)", mode, planned,
        want_planned[mode]);
  CHECK(split == want_split[mode], "ours, captured (mode %d): %d products split over K (%d expected)", mode, split,
        want_split[mode]);
  CHECK(in_kernel == (mode & 1 ? split : 0), "ours, captured (mode %d): %d split products summed in their kernel", mode,
        in_kernel);
  be->graph_destroy(bst, g);
  if (rs) be->stream_destroy(bst, rs);
  for (int i = 0; i < 4; i++) be->mem_free(bst, g_dev, bufs[i]);
  unsetenv("FLAGOS_OPENCL_GEMM");
}

/* The "conv" library call (ocl_conv.c) on our kernels: a 2-D convolution in
 * NCHW with group 1, against the definition in docs/kernel-ir.md computed here
 * in double; f16 bit for bit (the exact sum rounded once). `plan`: recorded
 * on the default queue and replayed twice on new X (the plan's im2col and
 * product, made at capture_end). */
typedef struct {
  flagos_dtype_t dt;
  int64_t n, c, h, w, m, kh, kw, ph, pw, eh, ew, sh, sw, dh, dw; /* eh, ew: end pads */
  bool bias, plan;
} ccase_t;

static void conv_case(const char *what, ccase_t t, const char *blas_log) {
  size_t es = flagos_dtype_size(t.dt);
  int64_t oh = (t.h + t.ph + t.eh - t.dh * (t.kh - 1) - 1) / t.sh + 1;
  int64_t ow = (t.w + t.pw + t.ew - t.dw * (t.kw - 1) - 1) / t.sw + 1;
  size_t nx = (size_t)(t.n * t.c * t.h * t.w), nw = (size_t)(t.m * t.c * t.kh * t.kw), ny = (size_t)(t.n * t.m * oh * ow);
  double *x = malloc(nx * 8), *wt = malloc(nw * 8), *bias = malloc((size_t)t.m * 8), *want = malloc(ny * 8);
  void *hx = malloc(nx * es), *hw = malloc(nw * es), *hb = malloc((size_t)t.m * es), *hy = malloc(ny * es);
  for (size_t i = 0; i < nw; i++) wt[i] = valx((int64_t)i, 2, t.dt);
  for (int64_t k = 0; k < t.m; k++) bias[k] = t.bias ? valx(k, 4, t.dt) * 3 : 0;
  for (size_t i = 0; i < nw; i++) rt_hs_store_float(t.dt, hw, (int64_t)i, wt[i]);
  for (int64_t k = 0; k < t.m; k++) rt_hs_store_float(t.dt, hb, k, bias[k]);
  flagos_devptr_t bufs[4] = {0};
  flagos_status_t st = be->mem_alloc(bst, g_dev, nx * es, &bufs[0]);
  if (!st) st = be->mem_alloc(bst, g_dev, nw * es, &bufs[1]);
  if (!st) st = be->mem_alloc(bst, g_dev, (size_t)t.m * es, &bufs[2]);
  if (!st) st = be->mem_alloc(bst, g_dev, ny * es, &bufs[3]);
  if (!st) st = be->copy_h2d(bst, NULL, bufs[1], 0, hw, nw * es);
  if (!st) st = be->copy_h2d(bst, NULL, bufs[2], 0, hb, (size_t)t.m * es);
  CHECK(!st, "%s: set-up: %s", what, flagos_status_message(st));
  flagos_status_free(st);
  flagos_devptr_t cb[4] = {bufs[0], bufs[1], t.bias ? bufs[2] : bufs[3], bufs[3]};
  int32_t dts[4] = {t.dt, t.dt, t.dt, t.dt};
  int64_t ints[16] = {t.n, t.c, t.h, t.w, t.m, oh, ow, t.kh, t.kw, t.ph, t.pw, t.sh, t.sw, t.dh, t.dw, 1};
  flagos_libcall_t c = {"conv", cb, dts, t.bias ? 4 : 3, ints, 16, NULL, 0};
  flagos_bgraph_t g = NULL;
  int planned = count_lines(blas_log, "conv planned for replays");
  int runs = t.plan ? 2 : 1;
  if (t.plan) CHECK_OK(be->capture_begin(bst, g_dev, NULL));
  for (int r = 0; r < runs; r++) {
    for (size_t i = 0; i < nx; i++) x[i] = valx((int64_t)i * (r + 1), 1 + r, t.dt);
    for (size_t i = 0; i < nx; i++) rt_hs_store_float(t.dt, hx, (int64_t)i, x[i]);
    CHECK_OK(be->copy_h2d(bst, NULL, bufs[0], 0, hx, nx * es));
    if (r == 0) {
      st = be->library_call(bst, NULL, &c);
      CHECK(!st, "%s: conv: %s", what, flagos_status_message(st));
      flagos_status_free(st);
      if (t.plan) CHECK_OK(be->capture_end(bst, g_dev, NULL, &g));
    }
    if (t.plan && g) CHECK_OK(be->graph_launch(bst, g, NULL));
    CHECK_OK(be->copy_d2h(bst, NULL, hy, bufs[3], 0, ny * es));
    int bad = 0;
    for (int64_t n = 0; n < t.n; n++)
      for (int64_t k = 0; k < t.m; k++)
        for (int64_t i = 0; i < oh; i++)
          for (int64_t j = 0; j < ow; j++) {
            double v = bias[k];
            for (int64_t ci = 0; ci < t.c; ci++)
              for (int64_t a = 0; a < t.kh; a++)
                for (int64_t e = 0; e < t.kw; e++) {
                  int64_t yy = i * t.sh - t.ph + a * t.dh, xx = j * t.sw - t.pw + e * t.dw;
                  if (yy >= 0 && yy < t.h && xx >= 0 && xx < t.w)
                    v += x[((n * t.c + ci) * t.h + yy) * t.w + xx] * wt[((k * t.c + ci) * t.kh + a) * t.kw + e];
                }
            size_t o = (size_t)(((n * t.m + k) * oh + i) * ow + j);
            double w = es == 2 ? fl_f16_to_f32(fl_f32_to_f16((float)v)) : v;
            double got = fl_load_as_double(t.dt, hy, o);
            double lim = es == 2 ? 0 : 1e-5 * (1 + fabs(v) + (double)(t.c * t.kh * t.kw));
            if (!(fabs(got - w) <= lim) && bad++ < 3)
              CHECK(false, "%s, run %d: Y[%zu] = %.9g, expected %.9g", what, r, o, got, w);
          }
    CHECK(bad == 0, "%s, run %d: %d of %zu values wrong", what, r, bad, ny);
  }
  if (t.plan) {
    CHECK(count_lines(blas_log, "conv planned for replays") - planned == 1, "%s: no plan made", what);
    if (g) be->graph_destroy(bst, g);
  }
  for (int i = 0; i < 4; i++)
    if (bufs[i]) be->mem_free(bst, g_dev, bufs[i]);
  free(x), free(wt), free(bias), free(want), free(hx), free(hw), free(hb), free(hy);
}

static void test_conv(const char *blas_log) {
  setenv("FLAGOS_OPENCL_GEMM", "1", 1);
  int before = count_lines(blas_log, "conv by flagos"), pw = count_lines(blas_log, ", pointwise on");
  conv_case("conv 3x3 pad 1, bias", (ccase_t){FLAGOS_FLOAT32, 2, 3, 7, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true, false},
            blas_log);
  conv_case("conv 1x1, bias", (ccase_t){FLAGOS_FLOAT32, 3, 4, 5, 5, 6, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, true, false},
            blas_log);
  conv_case("conv 3x2, pads 2/2 0/0, strides 2 3, dilations 2 1",
            (ccase_t){FLAGOS_FLOAT32, 1, 2, 9, 8, 4, 3, 2, 2, 0, 2, 0, 2, 3, 2, 1, false, false}, blas_log);
  conv_case("conv 1x1 stride 2, end pad 1", (ccase_t){FLAGOS_FLOAT32, 2, 3, 5, 4, 2, 1, 1, 0, 0, 1, 1, 2, 2, 1, 1, true, false},
            blas_log);
  conv_case("conv f16 3x3 pad 1, bias", (ccase_t){FLAGOS_FLOAT16, 2, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true, false},
            blas_log);
  conv_case("conv f16 1x1, bias", (ccase_t){FLAGOS_FLOAT16, 2, 16, 4, 4, 8, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, true, false},
            blas_log);
  /* rows of 16 bytes: the tensor-core kernel's epilogue (emulated where the device has no mma.sync) */
  const char *tc = getenv("FLAGOS_OPENCL_TENSOR");
  if (!tc) setenv("FLAGOS_OPENCL_TENSOR", "emulate", 1);
  int tc_before = count_lines(blas_log, " mma");
  conv_case("conv f16 1x1 on tensor cores, bias",
            (ccase_t){FLAGOS_FLOAT16, 2, 16, 4, 4, 8, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, true, false}, blas_log);
  CHECK(count_lines(blas_log, " mma") - tc_before == 1, "conv f16 1x1: not on the tensor-core kernel");
  /* 7x7 outputs (49, not a multiple of 8): the patch rows padded to 56 for the tensor cores, pointwise too */
  tc_before = count_lines(blas_log, " mma");
  conv_case("conv f16 1x1 7x7, patch rows padded, bias",
            (ccase_t){FLAGOS_FLOAT16, 2, 16, 7, 7, 8, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, true, false}, blas_log);
  conv_case("conv f16 3x3 pad 1 7x7, patch rows padded",
            (ccase_t){FLAGOS_FLOAT16, 3, 8, 7, 7, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, false}, blas_log);
  CHECK(count_lines(blas_log, " mma") - tc_before == 2, "conv f16 7x7: %d of 2 on the tensor-core kernel",
        count_lines(blas_log, " mma") - tc_before);
  if (!tc) unsetenv("FLAGOS_OPENCL_TENSOR");
  conv_case("conv 5x5 pad 2, bias, replayed", (ccase_t){FLAGOS_FLOAT32, 2, 3, 9, 7, 4, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1, true, true},
            blas_log);
  conv_case("conv 1x1, replayed", (ccase_t){FLAGOS_FLOAT32, 2, 5, 3, 3, 4, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, false, true},
            blas_log);
  int by = count_lines(blas_log, "conv by flagos") - before, point = count_lines(blas_log, ", pointwise on") - pw;
  CHECK(by == 11, "conv: %d calls by our kernels (11 expected)", by);
  /* pointwise convolutions: four by call (one of them padded through the im2col), one recorded and planned */
  CHECK(point == 6, "conv: %d pointwise lines (6 expected)", point);
  /* grouped convolutions and a device where our kernels are off go to the node's kernels */
  flagos_devptr_t b[3] = {0};
  for (int i = 0; i < 3; i++) CHECK_OK(be->mem_alloc(bst, g_dev, 4096, &b[i]));
  int32_t dts[3] = {FLAGOS_FLOAT32, FLAGOS_FLOAT32, FLAGOS_FLOAT32};
  int64_t ints[16] = {1, 4, 4, 4, 4, 4, 4, 1, 1, 0, 0, 1, 1, 1, 1, 2};
  flagos_libcall_t c = {"conv", b, dts, 3, ints, 16, NULL, 0};
  flagos_status_t st = be->library_call(bst, NULL, &c);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED, "conv, group 2: not left to the kernels");
  flagos_status_free(st);
  ints[15] = 1;
  ints[1] = 400; /* X is 1x400x4x4 floats: past its 4096 bytes */
  st = be->library_call(bst, NULL, &c);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT, "conv past its buffers: not refused");
  flagos_status_free(st);
  ints[1] = 4;
  setenv("FLAGOS_OPENCL_GEMM", "0", 1);
  st = be->library_call(bst, NULL, &c);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED, "conv, FLAGOS_OPENCL_GEMM=0: not left to the kernels");
  flagos_status_free(st);
  for (int i = 0; i < 3; i++) be->mem_free(bst, g_dev, b[i]);
  unsetenv("FLAGOS_OPENCL_GEMM");
}

int main(void) {
  char cache[] = "/tmp/flagos-test-opencl-blas-XXXXXX";
  if (!mkdtemp(cache)) {
    perror("mkdtemp");
    return 1;
  }
  setenv("FLAGOS_OPENCL_BLAS", "1", 1); /* on whatever the device and size (by default CPU devices take large ones only) */
  char so[512];
  snprintf(so, sizeof so, "%s/backends/libflagos_backend_opencl.so", FLAGOS_BINARY_DIR);
  void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("test_opencl_blas: SKIP: the opencl plugin was not built (%s)\n", dlerror());
    return SKIP;
  }
  flagos_backend_entry_fn entry = (flagos_backend_entry_fn)(uintptr_t)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL);
  be = entry ? entry(FLAGOS_BACKEND_ABI_VERSION) : NULL;
  if (!be || !be->library_call) {
    fprintf(stderr, "FAIL: %s has no table or no library_call\n", so);
    return 1;
  }
  flagos_host_t host = {FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, cache};
  flagos_status_t st = be->init(&host, &bst);
  CHECK(!st, "init: %s", flagos_status_message(st));
  flagos_status_free(st);
  if (!bst || be->device_count(bst) == 0) {
    printf("test_opencl_blas: SKIP: no OpenCL platform or device\n");
    if (bst) be->shutdown(bst);
    rmdir(cache);
    return SKIP;
  }
  const char *dv = getenv("FLAGOS_TEST_OPENCL_DEVICE");
  g_dev = dv ? atoi(dv) : 0;
  const char *lib = getenv("FLAGOS_CLBLAST");
  void *blas = dlopen(lib && *lib ? lib : "libclblast.so.1", RTLD_NOW | RTLD_LOCAL);
  g_have_blas = blas != NULL;
  printf("test_opencl_blas: CLBlast %s\n", g_have_blas ? "found: results checked" : "missing: calls must be refused");

  /* CLBlast parameters from a file (FLAGOS_CLBLAST_PARAMS, ocl_blas_params.c),
   * applied before the device's first product: every result below is computed
   * with them. Two complete sets, a threshold that sends "f32 transA, large"
   * (300x260x270) to the indirect kernel and the rest to the direct one, a
   * partial set (CLBlast refuses it; the complete one stays), a malformed line
   * (skipped) and a line for another device (ignored). */
  char params[600], blas_log[600];
  snprintf(params, sizeof params, "%s/params.txt", cache);
  snprintf(blas_log, sizeof blas_log, "%s/blas.log", cache);
  FILE *pf = fopen(params, "w");
  CHECK(pf != NULL, "cannot write %s", params);
  if (pf) {
    fputs("# MATCH KERNEL PRECISION NAME=VALUE...\n"
          "* XgemmDirect 32 KWID=2 MDIMAD=8 MDIMCD=8 NDIMBD=8 NDIMCD=8 PADA=1 PADB=1 VWMD=1 VWND=2 WGD=16\n"
          "* GemmRoutine 32 XGEMM_MIN_INDIRECT_SIZE=128   # comment\n"
          "* Xgemm 32 GEMMK=0 KREG=1 KWG=16 KWI=2 MDIMA=8 MDIMC=8 MWG=32 NDIMB=8 NDIMC=8 NWG=32 SA=0 SB=0 STRM=0 "
          "STRN=0 VWM=1 VWN=1\n"
          "* Xgemm 32 KWG=16 MWG=32\n"
          "* XgemmDirect 32 WGD=sixteen\n"
          "NoSuchDevice GemmRoutine 32 XGEMM_MIN_INDIRECT_SIZE=1\n",
          pf);
    fclose(pf);
  }
  setenv("FLAGOS_CLBLAST_PARAMS", params, 1);
  setenv("FLAGOS_OPENCL_BLAS_LOG", blas_log, 1);
  setenv("FLAGOS_OPENCL_GEMM", "0", 1); /* CLBlast's part (unset, a GPU takes our kernels: test_ours) */

  /* Small sizes take CLBlast's direct kernel, larger ones its padded (indirect) one. */
  run_case("f32 plain, NaN in Y, beta 0", (gcase_t){FLAGOS_FLOAT32, 1, 37, 29, 53, 0, 0, -1, -1, -1, 1, 0, true});
  run_case("f32 transA transB alpha beta", (gcase_t){FLAGOS_FLOAT32, 1, 5, 7, 3, 1, 1, -1, -1, -1, 0.75, 1.5, false});
  run_case("f32 transA, large", (gcase_t){FLAGOS_FLOAT32, 1, 300, 260, 270, 1, 0, -1, -1, -1, 1, 0, true});
  run_case("f32 batch, A shared", (gcase_t){FLAGOS_FLOAT32, 3, 130, 140, 150, 0, 0, 0, -1, -1, 1, 1, false});
  run_case("f32 batch, B shared, transB", (gcase_t){FLAGOS_FLOAT32, 4, 6, 5, 9, 0, 1, -1, 0, -1, -2, 0, true});
  run_case("f32 M 1 N 1", (gcase_t){FLAGOS_FLOAT32, 2, 1, 1, 4, 0, 0, -1, -1, -1, 1, 0, false});
  run_case("f64 batch, transA", (gcase_t){FLAGOS_FLOAT64, 2, 33, 17, 65, 1, 0, -1, -1, -1, 0.5, 0.25, false});
  run_case("f64 transB, NaN in Y", (gcase_t){FLAGOS_FLOAT64, 1, 20, 19, 21, 0, 1, -1, -1, -1, 1, 0, true});
  /* Split-K (ocl_blas_split.c), forced with FLAGOS_OPENCL_SPLITK: S products
   * over slices of K into a workspace, then their sum with beta*Y. */
  int split_before = count_lines(blas_log, " K slices on ");
  setenv("FLAGOS_OPENCL_SPLITK", "3", 1);
  run_case("f32 split-K 3, NaN in Y, beta 0", (gcase_t){FLAGOS_FLOAT32, 1, 37, 29, 54, 0, 0, -1, -1, -1, 1, 0, true});
  run_case("f32 split-K 3, transA transB alpha beta",
           (gcase_t){FLAGOS_FLOAT32, 1, 20, 12, 63, 1, 1, -1, -1, -1, 0.75, 1.5, false});
  setenv("FLAGOS_OPENCL_SPLITK", "2", 1);
  run_case("f32 split-K 2, transA", (gcase_t){FLAGOS_FLOAT32, 1, 33, 40, 50, 1, 0, -1, -1, -1, 1, 0.5, false});
  run_case("f32 split-K 2, transB, large", (gcase_t){FLAGOS_FLOAT32, 1, 300, 70, 270, 0, 1, -1, -1, -1, -1, 0, true});
  /* not split: K not a multiple of S, and a batch */
  run_case("f32 split-K 2, odd K", (gcase_t){FLAGOS_FLOAT32, 1, 9, 8, 7, 0, 0, -1, -1, -1, 1, 0, false});
  run_case("f32 split-K 2, batch", (gcase_t){FLAGOS_FLOAT32, 2, 9, 8, 8, 0, 0, -1, -1, -1, 1, 0, false});
  unsetenv("FLAGOS_OPENCL_SPLITK");
  /* (unset, a GPU splits some of the other cases by itself: only these are counted) */
  int split = count_lines(blas_log, " K slices on ") - split_before;
  CHECK(!g_have_blas || split == 4, "split-K: %d products ran in K slices (4 expected)", split);
  test_refusals();
  test_ours(blas_log);
  for (int mode = 0; mode < 4; mode++) test_ours_capture(blas_log, mode);
  test_conv(blas_log);
  if (g_have_blas) {
    int applied = 0, refused = 0, malformed = 0, other = 0;
    FILE *lf = fopen(blas_log, "r");
    char line[600];
    while (lf && fgets(line, sizeof line, lf)) {
      if (!strstr(line, "CLBlast parameters")) continue;
      applied += strstr(line, ": applied") != NULL;
      refused += strstr(line, "refused by CLBlast") != NULL;
      malformed += strstr(line, "'WGD=sixteen' is not NAME=VALUE") != NULL;
      other += strstr(line, "MIN_INDIRECT_SIZE=1\n") != NULL || strstr(line, "NoSuchDevice") != NULL;
    }
    if (lf) fclose(lf);
    CHECK(applied == 3 && refused == 1 && malformed == 1 && other == 0,
          "CLBlast parameters: %d applied (3 expected), %d refused (1), %d malformed (1), %d for another device (0)",
          applied, refused, malformed, other);
  }

  be->shutdown(bst);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", cache);
  printf("test_opencl_blas: %d checks, %d failures: %s\n", checks, failures, failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
