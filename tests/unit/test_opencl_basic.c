/* The OpenCL C emitter and the opencl backend plugin, end to end on the first
 * OpenCL device (PoCL in CI): kernels built by hand with the kernel IR builder,
 * emitted as OpenCL C, built by the plugin (through its binary cache) and run.
 * Expected values are hand-computed, or the ml_dtypes/ONNX tables of
 * kir_cast_facts.h, or ONNX's own outputs for the end-to-end model.
 *
 * Skips (exit 77) when the plugin was not built or no OpenCL device exists.
 * FLAGOS_TEST_OPENCL_DEVICE picks another device index. */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/cgen.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "io/value_io.h"
#include "kernel/kir.h"
#include "kir_cast_facts.h"
#include "runtime/runtime.h"

#define SKIP 77

static int g_fails;
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      g_fails++;                                                                                   \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                         \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)
#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    flagos_status_t st_ = (expr);                                                                  \
    CHECK(st_ == NULL, "%s: %s", #expr, flagos_status_message(st_));                               \
    flagos_status_free(st_);                                                                       \
  } while (0)

static fl_arena_t *A;
static kir_kernel_t *g_kernels[64];
static int g_nk;
static const flagos_backend_t *be;
static void *bst;       /* the plugin's state (fp64 as the device has it) */
static int g_dev;
static flagos_bmodule_t mod;
static char g_cache[256];

static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ---- building kernels ---- */
static kir_expr_t *S(int i) { return kir_sym(A, i); }
static kir_expr_t *I(int64_t v) { return kir_i64(A, v); }
static kir_expr_t *F(double v) { return kir_const(A, FLAGOS_FLOAT32, v); }
static kir_expr_t *bin(kir_op_t op, kir_expr_t *x, kir_expr_t *y) { return kir_bin(A, op, x, y); }
static kir_kernel_t *K(const char *name, int n_syms) {
  kir_kernel_t *k = kir_kernel_create(A, name);
  k->n_syms = n_syms;
  g_kernels[g_nk++] = k;
  return k;
}
static int B(kir_kernel_t *k, flagos_dtype_t dt, int rank, ...) {
  kir_expr_t *d[8];
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) d[i] = va_arg(ap, kir_expr_t *);
  va_end(ap);
  return kir_add_buf(k, "buf", dt, rank, d);
}
static kir_expr_t *L1(kir_kernel_t *k, int b, kir_expr_t *i) { return kir_load(k, b, &i); }
static void St1(kir_kernel_t *k, int b, kir_expr_t *i, kir_expr_t *v, kir_expr_t *c) { kir_store(k, b, &i, v, c); }
static kir_expr_t *space1(kir_kernel_t *k, kir_expr_t *e) {
  kir_expr_t *v;
  kir_set_space(k, 1, &e, &v);
  return v;
}

static void build_kernels(void) {
  kir_expr_t *v[3];
  /* y[i,j] = x[i,j] + b[j], symbolic M, N */
  kir_kernel_t *k = K("t_bcast_add", 2);
  int x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1)), b = B(k, FLAGOS_FLOAT32, 1, S(1)), y = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  kir_expr_t *ext[2] = {S(0), S(1)};
  kir_set_space(k, 2, ext, v);
  kir_store(k, y, v, bin(KIR_ADD, kir_load(k, x, v), L1(k, b, v[1])), NULL);

  /* rank 3: y[i,j,l] = 100 i + 10 j + l (the point decomposition) */
  k = K("t_iota3", 3);
  y = B(k, FLAGOS_INT32, 3, S(0), S(1), S(2));
  kir_expr_t *ext3[3] = {S(0), S(1), S(2)};
  kir_set_space(k, 3, ext3, v);
  kir_expr_t *lin = kir_add(A, kir_add(A, kir_mul(A, v[0], I(100)), kir_mul(A, v[1], I(10))), v[2]);
  kir_store(k, y, v, kir_cast(A, FLAGOS_INT32, lin), NULL);

  /* per row of x[M,K]: sum, max, min */
  k = K("t_row_reduce", 2);
  x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  int s = B(k, FLAGOS_FLOAT32, 1, S(0)), mx = B(k, FLAGOS_FLOAT32, 1, S(0)), mn = B(k, FLAGOS_FLOAT32, 1, S(0));
  kir_expr_t *i = space1(k, S(0));
  int r = kir_new_var(k);
  kir_expr_t *ix[2] = {i, kir_var(A, r)}, *K1 = S(1);
  kir_expr_t *row = kir_load(k, x, ix);
  St1(k, s, i, kir_reduce(A, KIR_RSUM, 1, &r, &K1, row), NULL);
  St1(k, mx, i, kir_reduce(A, KIR_RMAX, 1, &r, &K1, row), NULL);
  St1(k, mn, i, kir_reduce(A, KIR_RMIN, 1, &r, &K1, row), NULL);

  /* softmax over rows (max and sum hoisted out of the column level) */
  k = K("t_softmax", 2);
  x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  y = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  kir_set_space(k, 2, ext, v);
  int jm = kir_new_var(k), js = kir_new_var(k);
  kir_expr_t *N2 = S(1), *im[2] = {v[0], kir_var(A, jm)}, *is[2] = {v[0], kir_var(A, js)};
  kir_expr_t *m = kir_reduce(A, KIR_RMAX, 1, &jm, &N2, kir_load(k, x, im));
  kir_expr_t *den = kir_reduce(A, KIR_RSUM, 1, &js, &N2, kir_un(A, KIR_EXP, bin(KIR_SUB, kir_load(k, x, is), m)));
  kir_store(k, y, v, bin(KIR_DIV, kir_un(A, KIR_EXP, bin(KIR_SUB, kir_load(k, x, v), m)), den), NULL);

  /* y[i] = x[i] / sum(x): the sum is hoisted out of every main loop (one work-item runs it) */
  k = K("t_norm_all", 1);
  x = B(k, FLAGOS_FLOAT32, 1, S(0));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  r = kir_new_var(k);
  kir_expr_t *KA = S(0);
  St1(k, y, i, bin(KIR_DIV, L1(k, x, i), kir_reduce(A, KIR_RSUM, 1, &r, &KA, L1(k, x, kir_var(A, r)))), NULL);

  /* y[a,b,c] = x[a,b,c] - max_k x[a,b,k]: the max is hoisted to level 1 */
  k = K("t_center3", 3);
  x = B(k, FLAGOS_FLOAT32, 3, S(0), S(1), S(2));
  y = B(k, FLAGOS_FLOAT32, 3, S(0), S(1), S(2));
  kir_set_space(k, 3, ext3, v);
  r = kir_new_var(k);
  kir_expr_t *KC = S(2), *xr[3] = {v[0], v[1], kir_var(A, r)};
  kir_store(k, y, v, bin(KIR_SUB, kir_load(k, x, v), kir_reduce(A, KIR_RMAX, 1, &r, &KC, kir_load(k, x, xr))), NULL);

  /* y[i] = 0 <= idx[i] < D ? data[idx[i]] : -1 (out-of-range indices are never read) */
  k = K("t_gather", 2);
  int idx = B(k, FLAGOS_INT64, 1, S(0)), data = B(k, FLAGOS_FLOAT32, 1, S(1));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *j = L1(k, idx, i);
  kir_expr_t *ok = bin(KIR_AND, bin(KIR_GE, j, I(0)), bin(KIR_LT, j, S(1)));
  St1(k, y, i, kir_select(A, ok, L1(k, data, j), F(-1)), NULL);

  /* rank 0: s = x * 2 + sum(v) */
  k = K("t_scalar", 1);
  x = B(k, FLAGOS_FLOAT32, 0);
  int vb = B(k, FLAGOS_FLOAT32, 1, S(0));
  s = B(k, FLAGOS_FLOAT32, 0);
  kir_set_space(k, 0, NULL, NULL);
  r = kir_new_var(k);
  kir_expr_t *K3 = S(0);
  kir_store(k, s, NULL, bin(KIR_ADD, bin(KIR_MUL, kir_load(k, x, NULL), F(2)),
                            kir_reduce(A, KIR_RSUM, 1, &r, &K3, L1(k, vb, kir_var(A, r)))), NULL);

  /* serial: y[i] = (i > 0 ? y[i-1] : 0) + x[i] (f32: runs without fp64 too) */
  k = K("t_serial", 1);
  k->serial = true;
  x = B(k, FLAGOS_FLOAT32, 1, S(0));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *prev = kir_select(A, bin(KIR_GT, i, I(0)), L1(k, y, kir_sub(A, i, I(1))), F(0));
  St1(k, y, i, bin(KIR_ADD, prev, L1(k, x, i)), NULL);

  /* casts from f32 to every narrow type, saturating and not */
  static const flagos_dtype_t cast_dt[] = {
      FLAGOS_FLOAT16, FLAGOS_BFLOAT16, FLAGOS_FLOAT8E4M3FN, FLAGOS_FLOAT8E4M3FN, FLAGOS_FLOAT8E4M3FNUZ,
      FLAGOS_FLOAT8E4M3FNUZ, FLAGOS_FLOAT8E5M2, FLAGOS_FLOAT8E5M2, FLAGOS_FLOAT8E5M2FNUZ, FLAGOS_FLOAT8E5M2FNUZ,
      FLAGOS_FLOAT4E2M1, FLAGOS_FLOAT8E8M0, FLAGOS_FLOAT8E8M0, FLAGOS_INT4, FLAGOS_UINT4, FLAGOS_INT2, FLAGOS_UINT2,
      FLAGOS_INT8, FLAGOS_INT32};
  static const bool cast_sat[] = {1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1};
  k = K("t_casts", 1);
  x = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *xi = L1(k, x, i);
  for (size_t c = 0; c < FL_ARRAY_LEN(cast_dt); c++)
    St1(k, B(k, cast_dt[c], 1, S(0)), i, kir_cast_sat(A, cast_dt[c], xi, cast_sat[c]), NULL);
  St1(k, B(k, FLAGOS_FLOAT16, 1, S(0)), i, xi, NULL); /* implicit conversion on store */

  /* decode every code of a format to f32 */
  static const flagos_dtype_t dec_dt[] = {FLAGOS_FLOAT8E4M3FN, FLAGOS_FLOAT8E4M3FNUZ, FLAGOS_FLOAT8E5M2,
                                          FLAGOS_FLOAT8E5M2FNUZ, FLAGOS_FLOAT8E8M0, FLAGOS_FLOAT4E2M1};
  for (int f = 0; f < 6; f++) {
    char name[32];
    snprintf(name, sizeof name, "t_decode%d", f);
    k = K(fl_arena_strdup(A, name), 1);
    x = B(k, dec_dt[f], 1, S(0));
    y = B(k, FLAGOS_FLOAT32, 1, S(0));
    i = space1(k, S(0));
    St1(k, y, i, kir_cast(A, FLAGOS_FLOAT32, L1(k, x, i)), NULL);
  }

  /* f16 arithmetic computed in f32, rounded once at the store */
  k = K("t_f16_mul", 1);
  x = B(k, FLAGOS_FLOAT16, 1, S(0));
  y = B(k, FLAGOS_FLOAT16, 1, S(0));
  i = space1(k, S(0));
  St1(k, y, i, bin(KIR_MUL, L1(k, x, i), kir_const(A, FLAGOS_FLOAT16, 3.0)), NULL);

  /* integer division: trunc and floor, by zero, MIN / -1 */
  k = K("t_div_i32", 1);
  int da = B(k, FLAGOS_INT32, 1, S(0)), db = B(k, FLAGOS_INT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *p = L1(k, da, i), *q = L1(k, db, i);
  static const kir_op_t ops[] = {KIR_DIV, KIR_MOD, KIR_FLOORDIV, KIR_FLOORMOD, KIR_SHL, KIR_SHR, KIR_POW};
  for (int o = 0; o < 7; o++) St1(k, B(k, FLAGOS_INT32, 1, S(0)), i, bin(ops[o], p, q), NULL);

  /* the vector form on 16- and 8-bit integers (8 a work-item, packed into words): y = -3 x (int16), z = (uint8)x */
  k = K("t_i16_vec", 1);
  x = B(k, FLAGOS_INT16, 1, S(0));
  i = space1(k, S(0));
  St1(k, B(k, FLAGOS_INT16, 1, S(0)), i, bin(KIR_MUL, L1(k, x, i), kir_const(A, FLAGOS_INT16, -3.0)), NULL);
  St1(k, B(k, FLAGOS_UINT8, 1, S(0)), i, kir_cast(A, FLAGOS_UINT8, L1(k, x, i)), NULL);

  /* conditional store: y[i] = 10 x[i] where x[i] > 0, untouched elsewhere */
  k = K("t_cond_store", 1);
  x = B(k, FLAGOS_FLOAT32, 1, S(0));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *xc = L1(k, x, i);
  St1(k, y, i, bin(KIR_MUL, xc, F(10)), bin(KIR_GT, xc, F(0)));
}

/* A kernel computing in f64 (its program requires cl_khr_fp64). */
static kir_kernel_t *f64_kernel(void) {
  kir_kernel_t *k = kir_kernel_create(A, "t_f64");
  k->n_syms = 1;
  int x = B(k, FLAGOS_FLOAT64, 1, S(0)), y = B(k, FLAGOS_FLOAT64, 1, S(0));
  kir_expr_t *i = space1(k, S(0));
  St1(k, y, i, bin(KIR_MUL, L1(k, x, i), kir_const(A, FLAGOS_FLOAT64, 1.0 / 3.0)), NULL);
  return k;
}

/* ---- running: host arrays in, host arrays out ---- */
typedef struct {
  void *host;
  size_t bytes;
} hbuf_t;

static void run_on(void *state, flagos_bmodule_t m, const char *name, hbuf_t *hb, int nb, const int64_t *syms, int ns,
                   int64_t work) {
  flagos_bkernel_t kk = NULL;
  CHECK_OK(be->kernel_get(state, m, name, &kk));
  if (!kk) return;
  flagos_devptr_t d[32] = {0};
  for (int i = 0; i < nb; i++) {
    CHECK_OK(be->mem_alloc(state, g_dev, hb[i].bytes, &d[i]));
    if (d[i] && hb[i].bytes) CHECK_OK(be->copy_h2d(state, NULL, d[i], 0, hb[i].host, hb[i].bytes));
  }
  flagos_launch_t la = {d, nb, syms, ns, work};
  CHECK_OK(be->launch(state, NULL, kk, &la));
  for (int i = 0; i < nb; i++) {
    if (d[i] && hb[i].bytes) CHECK_OK(be->copy_d2h(state, NULL, hb[i].host, d[i], 0, hb[i].bytes));
    be->mem_free(state, g_dev, d[i]);
  }
}
static void run(const char *name, hbuf_t *hb, int nb, const int64_t *syms, int ns, int64_t work) {
  run_on(bst, mod, name, hb, nb, syms, ns, work);
}
#define HB(p, n) ((hbuf_t){(p), (n)})

static bool same_f(float a, float b) { return (isnan(a) && isnan(b)) || bits_of(a) == bits_of(b); }

static void test_shapes(void) {
  /* small, then beyond the launch cap (the kernel's loop strides over the rest) */
  for (int pass = 0; pass < 2; pass++) {
    int64_t M = pass ? 1031 : 3, N = pass ? 1027 : 5, syms[2] = {M, N}, n = M * N;
    float *x = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)N), *y = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)i, y[i] = NAN;
    for (int64_t j = 0; j < N; j++) b[j] = 0.5f * (float)j;
    hbuf_t hb[3] = {HB(x, sizeof(float) * (size_t)n), HB(b, sizeof(float) * (size_t)N), HB(y, sizeof(float) * (size_t)n)};
    run("t_bcast_add", hb, 3, syms, 2, n);
    int bad = 0;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) bad += y[i * N + j] != (float)(i * N + j) + 0.5f * (float)j;
    CHECK(bad == 0, "broadcast add %lldx%lld: %d wrong", (long long)M, (long long)N, bad);
    free(x), free(b), free(y);
  }
  int32_t io[2 * 3 * 4];
  int64_t s3[3] = {2, 3, 4};
  hbuf_t hi[1] = {HB(io, sizeof io)};
  run("t_iota3", hi, 1, s3, 3, 24);
  int bad = 0;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 4; c++) bad += io[(a * 3 + b) * 4 + c] != 100 * a + 10 * b + c;
  CHECK(bad == 0, "rank-3 point decomposition: %d wrong", bad);

  /* an empty space launches nothing and touches nothing */
  float untouched[4] = {7, 7, 7, 7};
  int64_t z[2] = {0, 4};
  hbuf_t hz[3] = {HB(untouched, 16), HB(untouched, 16), HB(untouched, 16)};
  run("t_bcast_add", hz, 3, z, 2, 0);
  /* and a launch whose symbols say "empty" returns before touching anything */
  run("t_bcast_add", hz, 3, z, 2, 16);
  CHECK(untouched[0] == 7 && untouched[3] == 7, "empty space wrote %g", untouched[0]);
}

static void test_reductions(void) {
  /* rows: plain, NaN inside, NaN first, -inf, NaN last */
  float x[15] = {1, 2, 3, 1, NAN, 3, NAN, -1, 5, -INFINITY, 2, 7, 4, 5, NAN};
  float s[5], mx[5], mn[5];
  hbuf_t hb[4] = {HB(x, sizeof x), HB(s, sizeof s), HB(mx, sizeof mx), HB(mn, sizeof mn)};
  int64_t syms[2] = {5, 3};
  run("t_row_reduce", hb, 4, syms, 2, 5);
  CHECK(s[0] == 6 && mx[0] == 3 && mn[0] == 1, "row 0: %g %g %g", s[0], mx[0], mn[0]);
  for (int r = 1; r < 5; r++)
    if (r != 3) CHECK(isnan(s[r]) && isnan(mx[r]) && isnan(mn[r]), "row %d with a NaN: %g %g %g", r, s[r], mx[r], mn[r]);
  CHECK(s[3] == -INFINITY && mx[3] == 7 && mn[3] == -INFINITY, "row 3: %g %g %g", s[3], mx[3], mn[3]);
  int64_t empty[2] = {2, 0}; /* reductions over nothing give the identity */
  run("t_row_reduce", hb, 4, empty, 2, 2);
  CHECK(s[0] == 0 && mx[1] == -INFINITY && mn[1] == INFINITY, "empty rows: %g %g %g", s[0], mx[1], mn[1]);

  /* softmax of [[0, ln 2, ln 3], [1000, 1000, 1000]]: [1/6, 2/6, 3/6] and thirds (no overflow) */
  float sx[6] = {0, (float)log(2.0), (float)log(3.0), 1000, 1000, 1000}, sy[6];
  hbuf_t sb[2] = {HB(sx, sizeof sx), HB(sy, sizeof sy)};
  int64_t ss[2] = {2, 3};
  run("t_softmax", sb, 2, ss, 2, 6);
  const double want[6] = {1.0 / 6, 2.0 / 6, 3.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 3};
  for (int i = 0; i < 6; i++) CHECK(fabs(sy[i] - want[i]) < 1e-6, "softmax[%d] = %.8g, want %.8g", i, sy[i], want[i]);

  float x0 = 1.5f, vv[4] = {1, 2, 3, 4}, s0 = 0;
  hbuf_t cb[3] = {HB(&x0, 4), HB(vv, sizeof vv), HB(&s0, 4)};
  int64_t K4 = 4;
  run("t_scalar", cb, 3, &K4, 1, 1);
  CHECK(s0 == 13, "rank-0 kernel: %g", s0);

  enum { NA = 5000 };
  float *ax = malloc(sizeof(float) * NA), *ay = malloc(sizeof(float) * NA);
  for (int i = 0; i < NA; i++) ax[i] = (float)(i % 4); /* sum = 1250 * 6 = 7500, exact in f32 */
  hbuf_t ab[2] = {HB(ax, sizeof(float) * NA), HB(ay, sizeof(float) * NA)};
  int64_t na = NA;
  run("t_norm_all", ab, 2, &na, 1, NA);
  int bad = 0;
  for (int i = 0; i < NA; i++) bad += ay[i] != (float)(i % 4) / 7500.0f;
  CHECK(bad == 0, "x / sum(x): %d wrong (y[3] = %g)", bad, ay[3]);
  free(ax), free(ay);

  float cx[2 * 3 * 4], cy[2 * 3 * 4];
  for (int i = 0; i < 24; i++) cx[i] = (float)((i * 7) % 11);
  hbuf_t cb3[2] = {HB(cx, sizeof cx), HB(cy, sizeof cy)};
  int64_t s3[3] = {2, 3, 4};
  run("t_center3", cb3, 2, s3, 3, 24);
  bad = 0;
  for (int row = 0; row < 6; row++) {
    float m = cx[row * 4];
    for (int c = 1; c < 4; c++) m = cx[row * 4 + c] > m ? cx[row * 4 + c] : m;
    for (int c = 0; c < 4; c++) bad += cy[row * 4 + c] != cx[row * 4 + c] - m;
  }
  CHECK(bad == 0, "x - rowmax(x), rank 3: %d wrong", bad);

  float px[6] = {1, 2, 3, 4, 5, 6}, py[6] = {0};
  hbuf_t pb[2] = {HB(px, sizeof px), HB(py, sizeof py)};
  int64_t n6 = 6;
  run("t_serial", pb, 2, &n6, 1, 6);
  CHECK(py[0] == 1 && py[2] == 6 && py[5] == 21, "serial prefix sum: %g %g %g", py[0], py[2], py[5]);
}

static void test_lazy(void) {
  int64_t idx[6] = {0, 3, -1, 4, (int64_t)1 << 40, -((int64_t)1 << 40)};
  float data[4] = {10, 11, 12, 13}, y[6];
  hbuf_t gb[3] = {HB(idx, sizeof idx), HB(data, sizeof data), HB(y, sizeof y)};
  int64_t gs[2] = {6, 4};
  run("t_gather", gb, 3, gs, 2, 6);
  float ge[6] = {10, 13, -1, -1, -1, -1};
  CHECK(memcmp(y, ge, sizeof ge) == 0, "guarded gather: %g %g %g %g %g %g", y[0], y[1], y[2], y[3], y[4], y[5]);

  float cx[4] = {1, -1, 0, 2}, cy[4] = {5, 5, 5, 5};
  hbuf_t cb[2] = {HB(cx, sizeof cx), HB(cy, sizeof cy)};
  int64_t n4 = 4;
  run("t_cond_store", cb, 2, &n4, 1, 4);
  CHECK(cy[0] == 10 && cy[1] == 5 && cy[2] == 5 && cy[3] == 20, "conditional store: %g %g %g %g", cy[0], cy[1], cy[2], cy[3]);
}

static void test_ints(void) {
  enum { N = 9 };
  int32_t a[N] = {7, -7, 7, -7, 5, INT32_MIN, 3, -8, 2}, b[N] = {2, 2, -2, -2, 0, -1, 0, 1, 40};
  int32_t out[7][N];
  static const int32_t want[7][N] = {
      {3, -3, -3, 3, 0, INT32_MIN, 0, -8, 0},        /* div: trunc, x/0 = 0, MIN/-1 = MIN */
      {1, -1, 1, -1, 0, 0, 0, 0, 2},                 /* mod: sign of dividend */
      {3, -4, -4, 3, 0, INT32_MIN, 0, -8, 0},        /* floordiv */
      {1, 1, -1, -1, 0, 0, 0, 0, 2},                 /* floormod: sign of divisor */
      {28, -28, 0, 0, 5, 0, 3, -16, 0},              /* shl; negative or >= 32 counts give 0 */
      {1, -2, 0, -1, 5, -1, 3, -4, 0},               /* shr: arithmetic; too far gives 0 / -1 */
      {49, 49, 0, 0, 1, 0, 1, -8, 0},                /* pow: (+-7)^-2 = 0, 5^0 = 1, 2^40 wraps to 0 */
  };
  hbuf_t hb[9] = {HB(a, sizeof a), HB(b, sizeof b)};
  for (int o = 0; o < 7; o++) hb[2 + o] = HB(out[o], sizeof out[o]);
  int64_t n = N;
  run("t_div_i32", hb, 9, &n, 1, N);
  /* negative int16s in every lane: each fills only its own half of a word */
  int16_t h[16], hy[16];
  uint8_t hz[16];
  for (int j = 0; j < 16; j++) h[j] = (int16_t)(j % 3 ? -1000 * j - 1 : 700 * j + 1);
  hbuf_t hv[3] = {HB(h, sizeof h), HB(hy, sizeof hy), HB(hz, sizeof hz)};
  int64_t n16 = 16;
  run("t_i16_vec", hv, 3, &n16, 1, 16);
  for (int j = 0; j < 16; j++)
    CHECK(hy[j] == (int16_t)(h[j] * -3) && hz[j] == (uint8_t)h[j], "int16 vector lane %d: %d, %u from %d", j, hy[j],
          hz[j], h[j]);
  static const char *const names[7] = {"div", "mod", "floordiv", "floormod", "shl", "shr", "pow"};
  for (int o = 0; o < 7; o++)
    for (int i = 0; i < N; i++)
      CHECK(out[o][i] == want[o][i], "%s(%d, %d) = %d, want %d", names[o], a[i], b[i], out[o][i], want[o][i]);
}

/* NaNs match whatever their bits (f16: vload_half/vstore_half_rte make the device's NaN, 0x7fff on PoCL
 * and NVIDIA) or sign (float8 formats 0, 1 e4m3fn and 4, 5 e5m2: NVIDIA's compiler may drop a converted
 * NaN's sign, which LLVM leaves open) */
static bool f16_nan(unsigned h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }
static bool f8_nan(int f, unsigned v) {
  return f < 2 ? (v & 0x7fu) == 0x7fu : (f == 4 || f == 5) && (v & 0x7cu) == 0x7cu && (v & 3u);
}

/* Casts and decodes against the ml_dtypes/ONNX tables, on one plugin state/module. */
static void test_casts_on(void *state, flagos_bmodule_t m, const char *mode) {
  enum { NOUT = 20 };
  static uint8_t out[NOUT][CAST_N * 4];
  float x[CAST_N];
  for (int i = 0; i < CAST_N; i++) x[i] = f32_of(cast_in[i]);
  static const size_t esz[NOUT] = {2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 2};
  hbuf_t hb[NOUT + 1] = {HB(x, sizeof x)};
  for (int c = 0; c < NOUT; c++) memset(out[c], 0xab, sizeof out[c]), hb[c + 1] = HB(out[c], esz[c] * CAST_N);
  int64_t n = CAST_N;
  run_on(state, m, "t_casts", hb, NOUT + 1, &n, 1, n);
  const uint8_t *e8[] = {exp_e4m3fn_sat, exp_e4m3fn_nosat, exp_e4m3fnuz_sat, exp_e4m3fnuz_nosat,
                         exp_e5m2_sat, exp_e5m2_nosat, exp_e5m2fnuz_sat, exp_e5m2fnuz_nosat, exp_f4e2m1};
  const char *names[] = {"e4m3fn sat", "e4m3fn nosat", "e4m3fnuz sat", "e4m3fnuz nosat", "e5m2 sat",
                         "e5m2 nosat", "e5m2fnuz sat", "e5m2fnuz nosat", "f4e2m1"};
  for (int i = 0; i < CAST_N; i++) {
    uint16_t h, bf;
    memcpy(&h, out[0] + 2 * i, 2);
    memcpy(&bf, out[1] + 2 * i, 2);
    CHECK(h == exp_f16[i] || (f16_nan(h) && f16_nan(exp_f16[i])), "%s: f16(%g) = %04x, want %04x", mode, x[i], h,
          exp_f16[i]);
    CHECK(bf == exp_bf16[i], "%s: bf16(%g) = %04x, want %04x", mode, x[i], bf, exp_bf16[i]);
    for (int f = 0; f < 9; f++)
      CHECK(out[2 + f][i] == e8[f][i] || (isnan(x[i]) && f8_nan(f, out[2 + f][i])), "%s: %s(%g) = %02x, want %02x",
            mode, names[f], x[i], out[2 + f][i], e8[f][i]);
    uint8_t want = isinf(x[i]) ? 0xfe : exp_e8m0_sat[i]; /* ONNX's table for +-inf (see test_codegen_c.c) */
    CHECK(out[11][i] == want, "%s: e8m0 sat(%g) = %02x, want %02x", mode, x[i], out[11][i], want);
    CHECK(out[12][i] == exp_e8m0_nosat[i], "%s: e8m0(%g) = %02x, want %02x", mode, x[i], out[12][i], exp_e8m0_nosat[i]);
    CHECK((int8_t)out[13][i] == exp_i4[i], "%s: i4(%g) = %d, want %d", mode, x[i], (int8_t)out[13][i], exp_i4[i]);
    CHECK(out[14][i] == exp_u4[i], "%s: u4(%g) = %d, want %d", mode, x[i], out[14][i], exp_u4[i]);
    CHECK((int8_t)out[15][i] == exp_i2[i], "%s: i2(%g) = %d, want %d", mode, x[i], (int8_t)out[15][i], exp_i2[i]);
    CHECK(out[16][i] == exp_u2[i], "%s: u2(%g) = %d, want %d", mode, x[i], out[16][i], exp_u2[i]);
    CHECK((int8_t)out[17][i] == exp_i8[i], "%s: i8(%g) = %d, want %d", mode, x[i], (int8_t)out[17][i], exp_i8[i]);
    int32_t i32;
    memcpy(&i32, out[18] + 4 * i, 4);
    CHECK(i32 == exp_i32[i], "%s: i32(%g) = %d, want %d", mode, x[i], i32, exp_i32[i]);
    memcpy(&h, out[19] + 2 * i, 2);
    CHECK(h == exp_f16[i] || (f16_nan(h) && f16_nan(exp_f16[i])), "%s: store f32 -> f16 (%g) = %04x, want %04x", mode,
          x[i], h, exp_f16[i]);
  }
  static const uint32_t *dec[6] = {dec_e4m3fn, dec_e4m3fnuz, dec_e5m2, dec_e5m2fnuz, dec_e8m0, dec_f4e2m1};
  for (int f = 0; f < 6; f++) {
    int nc = f == 5 ? 16 : 256;
    uint8_t codes[256];
    float got[256];
    for (int c = 0; c < nc; c++) codes[c] = (uint8_t)c;
    hbuf_t db[2] = {HB(codes, (size_t)nc), HB(got, sizeof(float) * (size_t)nc)};
    int64_t nn = nc;
    char name[32];
    snprintf(name, sizeof name, "t_decode%d", f);
    run_on(state, m, name, db, 2, &nn, 1, nn);
    int bad = 0;
    for (int c = 0; c < nc; c++) bad += !same_f(got[c], f32_of(dec[f][c]));
    CHECK(bad == 0, "%s: decode table %d: %d codes wrong", mode, f, bad);
  }
  /* f16 * 3 rounded once: 1.0009765625 (0x3c01) * 3 = 3.0029296875 -> 0x4202 (3.00390625, ties to even) */
  uint16_t hx[3] = {0x3c01, 0x7bff, 0x0001}, hy[3];
  hbuf_t fb[2] = {HB(hx, sizeof hx), HB(hy, sizeof hy)};
  int64_t n3 = 3;
  run_on(state, m, "t_f16_mul", fb, 2, &n3, 1, 3);
  CHECK(hy[0] == 0x4202 && hy[1] == 0x7c00 && hy[2] == 0x0003, "%s: f16 * 3 = %04x %04x %04x, want 4202 7c00 0003",
        mode, hy[0], hy[1], hy[2]);
}

static void test_streams_events(void) {
  flagos_bstream_t s2 = NULL;
  flagos_bevent_t e0 = NULL, e1 = NULL;
  CHECK_OK(be->stream_create(bst, g_dev, &s2));
  CHECK_OK(be->event_create(bst, g_dev, &e0));
  CHECK_OK(be->event_create(bst, g_dev, &e1));
  flagos_devptr_t d = NULL;
  CHECK_OK(be->mem_alloc(bst, g_dev, 64, &d));
  uint8_t h[64], back[64];
  for (int i = 0; i < 64; i++) h[i] = (uint8_t)i;
  if (s2 && e0 && e1 && d) {
    CHECK_OK(be->event_record(bst, e0, s2));
    CHECK_OK(be->copy_h2d(bst, s2, d, 0, h, 64));
    /* overlapping copy inside one buffer: memmove semantics */
    CHECK_OK(be->copy_d2d(bst, s2, d, 8, d, 0, 32));
    CHECK_OK(be->event_record(bst, e1, s2));
    CHECK_OK(be->stream_wait_event(bst, NULL, e1));
    CHECK_OK(be->event_sync(bst, e1));
    double ms = -1;
    CHECK_OK(be->event_elapsed_ms(bst, e0, e1, &ms));
    CHECK(ms >= 0, "elapsed %g ms", ms);
    CHECK_OK(be->copy_d2h(bst, NULL, back, d, 0, 64));
    int bad = 0;
    for (int i = 0; i < 64; i++) bad += back[i] != (i >= 8 && i < 40 ? i - 8 : i);
    CHECK(bad == 0, "overlapping device copy: %d bytes wrong", bad);
    CHECK_OK(be->stream_sync(bst, s2));
    flagos_status_t st = be->copy_d2h(bst, NULL, back, d, 60, 8);
    CHECK(st && flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT, "a copy past the end is refused: %s",
          st ? flagos_status_message(st) : "accepted");
    flagos_status_free(st);
  }
  be->mem_free(bst, g_dev, d);
  be->event_destroy(bst, e0);
  be->event_destroy(bst, e1);
  be->stream_destroy(bst, s2);
}

/* Capture and replay (ocl_graph.c), on `state` (command buffers or not, as its
 * environment said): y = x + b and z = y + b recorded on a stream, nothing run
 * until graph_launch, then replayed twice on new x; the symbol buffers the
 * recording used stay valid after plain launches with other symbols replace
 * the kernel's cached ones. Expected values: z = x + 2b, hand-computed. */
static void test_capture_on(void *state, flagos_bmodule_t m, const char *mode) {
  if (!FLAGOS_BACKEND_HAS(be, capture_begin)) {
    CHECK(0, "%s: the plugin has no capture entries", mode);
    return;
  }
  flagos_bkernel_t kk = NULL;
  CHECK_OK(be->kernel_get(state, m, "t_bcast_add", &kk));
  enum { M = 3, N = 5 };
  float x[M * N], b[N], z[M * N], nan[M * N];
  for (int i = 0; i < M * N; i++) x[i] = (float)i, nan[i] = NAN;
  for (int j = 0; j < N; j++) b[j] = 0.25f * (float)j;
  flagos_devptr_t dx = NULL, db = NULL, dy = NULL, dz = NULL, dw = NULL;
  CHECK_OK(be->mem_alloc(state, g_dev, sizeof x, &dx));
  CHECK_OK(be->mem_alloc(state, g_dev, sizeof b, &db));
  CHECK_OK(be->mem_alloc(state, g_dev, sizeof x, &dy));
  CHECK_OK(be->mem_alloc(state, g_dev, sizeof x, &dz));
  CHECK_OK(be->mem_alloc(state, g_dev, sizeof x, &dw));
  flagos_bstream_t cs = NULL;
  CHECK_OK(be->stream_create(state, g_dev, &cs));
  if (!kk || !dx || !db || !dy || !dz || !dw || !cs) return;
  CHECK_OK(be->copy_h2d(state, NULL, db, 0, b, sizeof b));
  CHECK_OK(be->copy_h2d(state, NULL, dz, 0, nan, sizeof nan));
  int64_t syms[2] = {M, N};
  flagos_devptr_t a1[3] = {dx, db, dy}, a2[3] = {dy, db, dz};
  flagos_launch_t l1 = {a1, 3, syms, 2, M * N}, l2 = {a2, 3, syms, 2, M * N};
  CHECK_OK(be->capture_begin(state, g_dev, cs));
  CHECK_OK(be->launch(state, cs, kk, &l1));
  CHECK_OK(be->launch(state, cs, kk, &l2));
  flagos_bgraph_t g = NULL;
  CHECK_OK(be->capture_end(state, g_dev, cs, &g));
  be->stream_destroy(state, cs);
  if (!g) return;
  CHECK_OK(be->copy_d2h(state, NULL, z, dz, 0, sizeof z));
  CHECK(isnan(z[0]) && isnan(z[M * N - 1]), "%s: a captured launch ran (z[0] = %g)", mode, z[0]);
  for (int rep = 0; rep < 3; rep++) {
    for (int i = 0; i < M * N; i++) x[i] = (float)(i * (rep + 1)) - 3.0f;
    CHECK_OK(be->copy_h2d(state, NULL, dx, 0, x, sizeof x));
    CHECK_OK(be->graph_launch(state, g, NULL));
    memcpy(z, nan, sizeof z);
    CHECK_OK(be->copy_d2h(state, NULL, z, dz, 0, sizeof z));
    int bad = 0;
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) bad += z[i * N + j] != x[i * N + j] + 0.5f * (float)j;
    CHECK(bad == 0, "%s: replay %d: %d of %d values wrong (z[0] = %g, want %g)", mode, rep, bad, M * N, z[0], x[0]);
    /* plain launches with other symbols cycle the kernel's symbol buffers */
    for (int k = 1; k <= 6 && rep == 0; k++) {
      int64_t s2[2] = {1, k};
      flagos_devptr_t a3[3] = {dx, db, dw};
      flagos_launch_t l3 = {a3, 3, s2, 2, k};
      CHECK_OK(be->launch(state, NULL, kk, &l3));
    }
  }
  be->graph_destroy(state, g);
  flagos_devptr_t all[5] = {dx, db, dy, dz, dw};
  for (int i = 0; i < 5; i++) be->mem_free(state, g_dev, all[i]);
}

static void test_capture(const char *src, size_t len, const flagos_host_t *host) {
  test_capture_on(bst, mod, "capture");
  const char *vars[2] = {"FLAGOS_OPENCL_COMMAND_BUFFER", "FLAGOS_OPENCL_GRAPHS"};
  for (int v = 0; v < 2; v++) {
    setenv(vars[v], "0", 1);
    void *s2 = NULL;
    CHECK_OK(be->init(host, &s2));
    unsetenv(vars[v]);
    if (!s2) continue;
    flagos_bmodule_t m = NULL;
    CHECK_OK(be->module_load(s2, g_dev, src, len, &m));
    if (m && v == 0) test_capture_on(s2, m, "capture without command buffers");
    if (m && v == 1) {
      flagos_bstream_t cs = NULL;
      CHECK_OK(be->stream_create(s2, g_dev, &cs));
      flagos_status_t st = be->capture_begin(s2, g_dev, cs);
      CHECK(st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED, "FLAGOS_OPENCL_GRAPHS=0: capture_begin %s",
            st ? flagos_status_message(st) : "succeeded");
      flagos_status_free(st);
      be->stream_destroy(s2, cs);
    }
    be->module_unload(s2, m);
    be->shutdown(s2);
  }
}

static size_t count_cache_files(const char *suffix) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "ls %s/opencl 2>/dev/null | grep -c '%s$'", g_cache, suffix);
  FILE *p = popen(cmd, "r");
  unsigned long n = 0;
  if (p) {
    if (fscanf(p, "%lu", &n) != 1) n = 0;
    pclose(p);
  }
  return n;
}

static void test_errors_and_cache(const char *src, size_t len, flagos_device_info_t *info) {
  CHECK(count_cache_files(".bin") >= 1, "no program binary in %s/opencl", g_cache);
  /* a second load of the same source comes from the cache; a damaged cache entry is rebuilt */
  flagos_bmodule_t m2 = NULL;
  CHECK_OK(be->module_load(bst, g_dev, src, len, &m2));
  be->module_unload(bst, m2);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "for f in %s/opencl/*.bin; do printf 'FLOCLBN1\\010\\0\\0\\0\\0\\0\\0\\0garbage!' > $f; done",
           g_cache);
  CHECK(system(cmd) == 0, "cannot damage the cache");
  m2 = NULL;
  CHECK_OK(be->module_load(bst, g_dev, src, len, &m2));
  if (m2) {
    float px[3] = {1, 2, 3}, py[3];
    hbuf_t pb[2] = {HB(px, sizeof px), HB(py, sizeof py)};
    int64_t n3 = 3;
    run_on(bst, m2, "t_serial", pb, 2, &n3, 1, 3);
    CHECK(py[2] == 6, "module rebuilt after a damaged cache entry: %g", py[2]);
  }
  be->module_unload(bst, m2);

  /* a build error carries the compiler's log and keeps the source */
  static const char bad[] = "__kernel void k(__global float *b0) { b0[0] = undeclared_thing; }\n";
  flagos_bmodule_t m3 = NULL;
  flagos_status_t st = be->module_load(bst, g_dev, bad, sizeof bad - 1, &m3);
  CHECK(st && strstr(flagos_status_message(st), "undeclared_thing") && strstr(flagos_status_message(st), info->name),
        "build failure message: %s", st ? flagos_status_message(st) : "built");
  flagos_status_free(st);
  CHECK(count_cache_files(".failed.cl") == 1, "failed source not kept");

  flagos_bkernel_t kk = NULL;
  st = be->kernel_get(bst, mod, "no_such_kernel", &kk);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND, "missing kernel: %s", st ? flagos_status_message(st) : "found");
  flagos_status_free(st);
}

/* The same kernels on a state that treats the device as lacking cl_khr_fp64:
 * f32 programs build and convert exactly; an f64 program is refused at load. */
static void test_no_fp64(const char *src, size_t len, const flagos_host_t *host, flagos_device_info_t *info) {
  setenv("FLAGOS_OPENCL_NO_FP64", "1", 1);
  void *s2 = NULL;
  CHECK_OK(be->init(host, &s2));
  unsetenv("FLAGOS_OPENCL_NO_FP64");
  if (!s2) return;
  flagos_bmodule_t m = NULL;
  CHECK_OK(be->module_load(s2, g_dev, src, len, &m));
  if (m) test_casts_on(s2, m, "no fp64");
  be->module_unload(s2, m);

  kir_kernel_t *k = f64_kernel();
  fl_buf_t f = {0};
  CHECK_OK(cgen_opencl_emit(&k, 1, &f));
  CHECK(f.data && strstr(f.data, "//! requires cl_khr_fp64\n"), "an f64 program declares it needs cl_khr_fp64");
  m = NULL;
  flagos_status_t st = be->module_load(s2, g_dev, f.data, f.len, &m);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED && strstr(flagos_status_message(st), "cl_khr_fp64") &&
            strstr(flagos_status_message(st), info->name),
        "f64 on a device without cl_khr_fp64: %s", st ? flagos_status_message(st) : "loaded");
  flagos_status_free(st);
  be->module_unload(s2, m);
  /* the device that has it runs the same program */
  m = NULL;
  CHECK_OK(be->module_load(bst, g_dev, f.data, f.len, &m));
  if (m) {
    double dx[2] = {3, -1.5}, dy[2];
    hbuf_t db[2] = {HB(dx, sizeof dx), HB(dy, sizeof dy)};
    int64_t n2 = 2;
    run_on(bst, m, "t_f64", db, 2, &n2, 1, 2);
    CHECK(dy[0] == 3 * (1.0 / 3.0) && dy[1] == -1.5 * (1.0 / 3.0), "f64 kernel: %.17g %.17g", dy[0], dy[1]);
  }
  be->module_unload(bst, m);
  fl_buf_free(&f);
  be->shutdown(s2);
}

/* A model from ONNX's node tests through the whole stack, with the device picked
 * by index and by name, compared with ONNX's output. */
static void test_end_to_end(const flagos_device_info_t *info) {
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/onnx-node/test_softmax_axis_1", FLAGOS_CONFORMANCE_DIR);
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  if (access(path, R_OK) != 0) {
    printf("test_opencl_basic: no %s, end-to-end part skipped\n", path);
    return;
  }
  flagos_bundle_t *b = NULL;
  flagos_compile_options_t co = {.targets = "cpu,opencl"};
  CHECK_OK(flagos_compile_to_bundle(path, &co, &b));
  if (!b) return;
  /* a name filter: the first word of the device's name */
  char byname[160], byindex[32];
  snprintf(byname, sizeof byname, "opencl:%.*s", (int)strcspn(info->name, " -"), info->name);
  snprintf(byindex, sizeof byindex, "opencl:%d", g_dev);
  const char *devices[] = {byindex, byname, "cpu"};
  fir_graph_t *g = b->model->graph;
  flagos_value_t in = {0}, ref = {0};
  snprintf(path, sizeof path, "%s/test_data_set_0/input_0.pb", dir);
  CHECK_OK(io_load_value(path, g->inputs[0]->type, &in));
  snprintf(path, sizeof path, "%s/test_data_set_0/output_0.pb", dir);
  CHECK_OK(io_load_value(path, g->outputs[0]->type, &ref));
  for (int d = 0; d < 3; d++) {
    flagos_session_t *s = NULL;
    flagos_session_options_t so = {.device = devices[d]};
    CHECK_OK(flagos_session_create(b, &so, &s));
    if (!s) continue;
    flagos_value_t out = {0};
    CHECK_OK(flagos_session_run(s, &in, 1, &out, 1));
    int64_t n = flagos_tensor_numel(&ref.tensor);
    CHECK(out.tensor.dtype == FLAGOS_FLOAT32 && flagos_tensor_numel(&out.tensor) == n, "%s: output shape", devices[d]);
    int bad = 0;
    for (int64_t i = 0; out.tensor.data && i < n; i++) {
      float o = ((float *)out.tensor.data)[i], r = ((float *)ref.tensor.data)[i];
      bad += !(fabsf(o - r) <= 1e-6f + 1e-5f * fabsf(r));
    }
    CHECK(bad == 0, "%s: %d of %lld values differ from ONNX's", devices[d], bad, (long long)n);
    flagos_value_clear(&out);
    flagos_session_destroy(s);
  }
  flagos_session_t *s = NULL;
  flagos_session_options_t so = {.device = "opencl:no-such-device-anywhere"};
  flagos_status_t st = flagos_session_create(b, &so, &s);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND && strstr(flagos_status_message(st), info->name),
        "unknown device name: %s", st ? flagos_status_message(st) : "accepted");
  flagos_status_free(st);
  flagos_session_destroy(s);
  flagos_value_clear(&in);
  flagos_value_clear(&ref);
  flagos_bundle_close(b);
}

int main(void) {
  snprintf(g_cache, sizeof g_cache, "/tmp/flagos-test-opencl-XXXXXX");
  if (!mkdtemp(g_cache)) {
    perror("mkdtemp");
    return 1;
  }
  setenv("FLAGOS_CACHE_DIR", g_cache, 1); /* the runtime's plugin instance caches here too */
  char so[512];
  snprintf(so, sizeof so, "%s/backends/libflagos_backend_opencl.so", FLAGOS_BINARY_DIR);
  void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("test_opencl_basic: SKIP: the opencl plugin was not built (%s)\n", dlerror());
    return SKIP;
  }
  flagos_backend_entry_fn entry = (flagos_backend_entry_fn)(uintptr_t)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL);
  be = entry ? entry(FLAGOS_BACKEND_ABI_VERSION) : NULL;
  if (!be) {
    fprintf(stderr, "FAIL: no backend table in %s\n", so);
    return 1;
  }
  CHECK(strcmp(be->name, "opencl") == 0 && strcmp(be->code_format, "opencl-c") == 0, "plugin identity %s %s", be->name,
        be->code_format);
  flagos_host_t host = {FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, g_cache};
  CHECK_OK(be->init(&host, &bst));
  int nd = bst ? be->device_count(bst) : 0;
  if (nd == 0) {
    printf("test_opencl_basic: SKIP: no OpenCL platform or device\n");
    if (bst) be->shutdown(bst);
    return SKIP;
  }
  const char *dv = getenv("FLAGOS_TEST_OPENCL_DEVICE");
  g_dev = dv ? atoi(dv) : 0;
  flagos_device_info_t info;
  CHECK_OK(be->device_info(bst, g_dev, &info));
  CHECK(info.host_visible == 0 && info.name[0], "device info");
  printf("test_opencl_basic: %d device(s); testing %d: %s (%s, driver %s)\n", nd, g_dev, info.name, info.vendor,
         info.driver_version);

  A = fl_arena_create();
  build_kernels();
  fl_buf_t src = {0};
  CHECK_OK(cgen_opencl_emit(g_kernels, g_nk, &src));
  CHECK(src.data && !strstr(src.data, "//! requires"), "an f32 program needs no extension");
  /* a reduction at function level runs once, shared by one work-group (not once per point) */
  const char *na = src.data ? strstr(src.data, "__kernel void t_norm_all(") : NULL, *nx = na ? strstr(na + 1, "__kernel") : NULL;
  const char *nb = na ? strstr(na, "barrier(CLK_LOCAL_MEM_FENCE)") : NULL, *nr = na ? strstr(na, "if (fo_row0 > 0) return;") : NULL;
  CHECK(na && nb && nr && (!nx || (nb < nx && nr < nx)), "t_norm_all is one work-group sharing its reduction");
  if (getenv("FLAGOS_TEST_DUMP")) fputs(src.data, stderr);
  CHECK_OK(be->module_load(bst, g_dev, src.data, src.len, &mod));
  if (mod) {
    test_shapes();
    test_reductions();
    test_lazy();
    test_ints();
    test_casts_on(bst, mod, "fp64");
    test_streams_events();
    test_capture(src.data, src.len, &host);
    test_errors_and_cache(src.data, src.len, &info);
    test_no_fp64(src.data, src.len, &host, &info);
    be->module_unload(bst, mod);
  }
  test_end_to_end(&info);
  fl_buf_free(&src);
  fl_arena_destroy(A);
  be->shutdown(bst);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_cache);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_cache);
  if (g_fails) {
    fprintf(stderr, "test_opencl_basic: %d check(s) failed\n", g_fails);
    return 1;
  }
  printf("test_opencl_basic: all checks passed\n");
  return 0;
}
