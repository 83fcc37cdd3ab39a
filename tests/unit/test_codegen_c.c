/* The C code generator and the cpu backend plugin, end to end: kernels built by
 * hand with the kernel IR builder, emitted as C, compiled (through the kernel
 * cache), loaded by the cpu plugin and run. Expected values are hand-computed or
 * come from NumPy/ml_dtypes/ONNX's reference (the tables below were produced with
 * ml_dtypes 0.6 and onnx.numpy_helper.saturate_cast / to_float8e8m0). */
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cgen.h"
#include "flagos/backend.h"
#include "kernel/kir.h"

/* Reference tables (NumPy, ml_dtypes, onnx.numpy_helper), shared with the kernel IR
 * interpreter's test: see kir_cast_facts.h for what each holds. */
#include "kir_cast_facts.h"

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
static void *bst;
static flagos_bmodule_t mod;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
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
/* Buffer with dims given as expressions. */
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
/* 1-d space over extent e; returns the loop variable. */
static kir_expr_t *space1(kir_kernel_t *k, kir_expr_t *e) {
  kir_expr_t *v;
  kir_set_space(k, 1, &e, &v);
  return v;
}

static void build_kernels(void) {
  kir_expr_t *v[2];
  /* y[i,j] = x[i,j] + b[j], symbolic M, N */
  kir_kernel_t *k = K("t_bcast_add", 2);
  int x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1)), b = B(k, FLAGOS_FLOAT32, 1, S(1)), y = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  kir_expr_t *ext[2] = {S(0), S(1)};
  kir_set_space(k, 2, ext, v);
  kir_store(k, y, v, bin(KIR_ADD, kir_load(k, x, v), L1(k, b, v[1])), NULL);

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

  /* elementwise min/max */
  k = K("t_minmax2", 1);
  int a2 = B(k, FLAGOS_FLOAT32, 1, S(0)), b2 = B(k, FLAGOS_FLOAT32, 1, S(0));
  int c2 = B(k, FLAGOS_FLOAT32, 1, S(0)), d2 = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  St1(k, c2, i, bin(KIR_MIN, L1(k, a2, i), L1(k, b2, i)), NULL);
  St1(k, d2, i, bin(KIR_MAX, L1(k, a2, i), L1(k, b2, i)), NULL);

  /* y[N,M] = transpose(x[M,N]) */
  k = K("t_transpose", 2);
  x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  y = B(k, FLAGOS_FLOAT32, 2, S(1), S(0));
  kir_expr_t *ext2[2] = {S(1), S(0)};
  kir_set_space(k, 2, ext2, v);
  kir_expr_t *xv[2] = {v[1], v[0]};
  kir_store(k, y, v, kir_load(k, x, xv), NULL);

  /* y[i] = 0 <= idx[i] < D ? data[idx[i]] : -1 (out-of-range indices are never read) */
  k = K("t_gather", 2);
  int idx = B(k, FLAGOS_INT64, 1, S(0)), data = B(k, FLAGOS_FLOAT32, 1, S(1));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *j = L1(k, idx, i);
  kir_expr_t *ok = bin(KIR_AND, bin(KIR_GE, j, I(0)), bin(KIR_LT, j, S(1)));
  St1(k, y, i, kir_select(A, ok, L1(k, data, j), F(-1)), NULL);

  /* y[i] = ok[i] ? sum_k data[off[i] + k] : -2 (rows not ok have wild offsets) */
  k = K("t_reduce_in_select", 3);
  int okb = B(k, FLAGOS_BOOL, 1, S(0)), off = B(k, FLAGOS_INT64, 1, S(0)), dat = B(k, FLAGOS_FLOAT32, 1, S(2));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  r = kir_new_var(k);
  kir_expr_t *K2 = S(1);
  kir_expr_t *sum = kir_reduce(A, KIR_RSUM, 1, &r, &K2, L1(k, dat, bin(KIR_ADD, L1(k, off, i), kir_var(A, r))));
  St1(k, y, i, kir_select(A, L1(k, okb, i), sum, F(-2)), NULL);

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

  /* rank 0 over a large extent: function-level reductions run on several threads */
  k = K("t_big_reduce", 1);
  int xf = B(k, FLAGOS_FLOAT32, 1, S(0)), xq = B(k, FLAGOS_INT32, 1, S(0));
  kir_set_space(k, 0, NULL, NULL);
  static const kir_op_t big_ops[] = {KIR_RSUM, KIR_RMAX, KIR_RSUM, KIR_RMAX, KIR_RANY};
  for (int o = 0; o < 5; o++) {
    int rv = kir_new_var(k);
    kir_expr_t *KB = S(0), *rvx = kir_var(A, rv), *body;
    if (o < 2) body = L1(k, xf, rvx);
    else if (o == 2) body = kir_cast(A, FLAGOS_INT64, L1(k, xq, rvx));
    else if (o == 3) body = L1(k, xq, rvx);
    else body = bin(KIR_LT, L1(k, xq, rvx), kir_const_int(A, FLAGOS_INT32, 0));
    kir_expr_t *red = kir_reduce(A, big_ops[o], 1, &rv, &KB, body);
    kir_store(k, B(k, red->dtype, 0), NULL, red, NULL);
  }

  /* zero-size spaces: nothing may be touched */
  k = K("t_zero2d", 2);
  x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  y = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  kir_expr_t *ext3[2] = {S(0), S(1)};
  kir_set_space(k, 2, ext3, v);
  kir_store(k, y, v, bin(KIR_ADD, kir_load(k, x, v), F(1)), NULL);
  k = K("t_zero_red", 2); /* z[i] = sum_{k<N} x[i,k] + sum_{k<N} x[0,k] (the second is hoisted) */
  x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  int z = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  int r1 = kir_new_var(k), r2 = kir_new_var(k);
  kir_expr_t *N1 = S(1), *xa[2] = {i, kir_var(A, r1)}, *xb[2] = {I(0), kir_var(A, r2)};
  St1(k, z, i, bin(KIR_ADD, kir_reduce(A, KIR_RSUM, 1, &r1, &N1, kir_load(k, x, xa)),
                   kir_reduce(A, KIR_RSUM, 1, &r2, &N1, kir_load(k, x, xb))), NULL);

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
  St1(k, B(k, FLAGOS_FLOAT8E4M3FN, 1, S(0)), i, xi, NULL); /* implicit conversion on store: saturates */
  St1(k, B(k, FLAGOS_FLOAT16, 1, S(0)), i, xi, NULL);

  k = K("t_d2h", 0); /* f64 -> f16 in one rounding */
  x = B(k, FLAGOS_FLOAT64, 1, I(5));
  y = B(k, FLAGOS_FLOAT16, 1, I(5));
  i = space1(k, I(5));
  St1(k, y, i, kir_cast(A, FLAGOS_FLOAT16, L1(k, x, i)), NULL);

  k = K("t_i32_to_i4", 1);
  x = B(k, FLAGOS_INT32, 1, S(0));
  y = B(k, FLAGOS_INT4, 1, S(0));
  int yu = B(k, FLAGOS_UINT4, 1, S(0));
  i = space1(k, S(0));
  St1(k, y, i, L1(k, x, i), NULL);
  St1(k, yu, i, L1(k, x, i), NULL);

  /* decode every code to f32, and store it back in its own type */
  static const flagos_dtype_t dec_dt[] = {FLAGOS_FLOAT8E4M3FN, FLAGOS_FLOAT8E4M3FNUZ, FLAGOS_FLOAT8E5M2,
                                          FLAGOS_FLOAT8E5M2FNUZ, FLAGOS_FLOAT8E8M0, FLAGOS_FLOAT4E2M1};
  for (int f = 0; f < 6; f++) {
    char name[32];
    snprintf(name, sizeof name, "t_decode%d", f);
    k = K(name, 1);
    x = B(k, dec_dt[f], 1, S(0));
    y = B(k, FLAGOS_FLOAT32, 1, S(0));
    int rt = B(k, dec_dt[f], 1, S(0));
    i = space1(k, S(0));
    St1(k, y, i, kir_cast(A, FLAGOS_FLOAT32, L1(k, x, i)), NULL);
    St1(k, rt, i, L1(k, x, i), NULL);
  }

  /* integer division: trunc (DIV/MOD) and floor (FLOORDIV/FLOORMOD), i32 and i8 */
  static const flagos_dtype_t div_dt[] = {FLAGOS_INT32, FLAGOS_INT8, FLAGOS_FLOAT32};
  static const char *const div_name[] = {"t_div_i32", "t_div_i8", "t_div_f32"};
  for (int t = 0; t < 3; t++) {
    k = K(div_name[t], 1);
    int da = B(k, div_dt[t], 1, S(0)), db = B(k, div_dt[t], 1, S(0));
    i = space1(k, S(0));
    kir_expr_t *p = L1(k, da, i), *q = L1(k, db, i);
    static const kir_op_t ops[] = {KIR_DIV, KIR_MOD, KIR_FLOORDIV, KIR_FLOORMOD};
    for (int o = 0; o < 4; o++) St1(k, B(k, div_dt[t], 1, S(0)), i, bin(ops[o], p, q), NULL);
  }

  k = K("t_round", 1);
  x = B(k, FLAGOS_FLOAT32, 1, S(0));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  St1(k, y, i, kir_un(A, KIR_ROUND, L1(k, x, i)), NULL);

  /* conditional store: y[i] = 10 x[i] where x[i] > 0, untouched elsewhere */
  k = K("t_cond_store", 1);
  x = B(k, FLAGOS_FLOAT32, 1, S(0));
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *xc = L1(k, x, i);
  St1(k, y, i, bin(KIR_MUL, xc, F(10)), bin(KIR_GT, xc, F(0)));

  /* serial: y[i] = (i > 0 ? y[i-1] : 0) + x[i], which needs the order */
  k = K("t_serial", 1);
  k->serial = true;
  x = B(k, FLAGOS_FLOAT64, 1, S(0));
  y = B(k, FLAGOS_FLOAT64, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *prev = kir_select(A, bin(KIR_GT, i, I(0)), L1(k, y, kir_sub(A, i, I(1))), kir_const(A, FLAGOS_FLOAT64, 0));
  St1(k, y, i, bin(KIR_ADD, prev, L1(k, x, i)), NULL);

  /* integer odds and ends */
  k = K("t_int_misc", 1);
  int pa = B(k, FLAGOS_INT32, 1, S(0)), pb = B(k, FLAGOS_INT32, 1, S(0)), ua = B(k, FLAGOS_UINT8, 1, S(0));
  int ub = B(k, FLAGOS_UINT8, 1, S(0)), fx = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *lpa = L1(k, pa, i), *lua = L1(k, ua, i), *lub = L1(k, ub, i), *lfx = L1(k, fx, i);
  St1(k, B(k, FLAGOS_INT32, 1, S(0)), i, bin(KIR_POW, lpa, L1(k, pb, i)), NULL);
  St1(k, B(k, FLAGOS_UINT8, 1, S(0)), i, bin(KIR_SHL, lua, lub), NULL);
  St1(k, B(k, FLAGOS_UINT8, 1, S(0)), i, bin(KIR_SHR, lua, lub), NULL);
  St1(k, B(k, FLAGOS_INT32, 1, S(0)), i, kir_bitcast(A, FLAGOS_INT32, lfx), NULL);
  St1(k, B(k, FLAGOS_FLOAT32, 1, S(0)), i, kir_bitcast(A, FLAGOS_FLOAT32, lpa), NULL);
  St1(k, B(k, FLAGOS_BOOL, 1, S(0)), i, kir_cast(A, FLAGOS_BOOL, lfx), NULL);
  St1(k, B(k, FLAGOS_UINT8, 1, S(0)), i, bin(KIR_ADD, lua, lub), NULL);
  St1(k, B(k, FLAGOS_INT32, 1, S(0)), i, kir_un(A, KIR_ABS, lpa), NULL);

  /* softmax over rows: the max and the sum are hoisted out of the column loop */
  k = K("t_softmax", 2);
  x = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  y = B(k, FLAGOS_FLOAT32, 2, S(0), S(1));
  kir_expr_t *ext4[2] = {S(0), S(1)};
  kir_set_space(k, 2, ext4, v);
  int jm = kir_new_var(k), js = kir_new_var(k);
  kir_expr_t *N2 = S(1), *im[2] = {v[0], kir_var(A, jm)}, *is[2] = {v[0], kir_var(A, js)};
  kir_expr_t *m = kir_reduce(A, KIR_RMAX, 1, &jm, &N2, kir_load(k, x, im));
  kir_expr_t *den = kir_reduce(A, KIR_RSUM, 1, &js, &N2, kir_un(A, KIR_EXP, bin(KIR_SUB, kir_load(k, x, is), m)));
  kir_store(k, y, v, bin(KIR_DIV, kir_un(A, KIR_EXP, bin(KIR_SUB, kir_load(k, x, v), m)), den), NULL);

  /* a shared chain: 60 doublings, each node used twice (exponential without sharing) */
  k = K("t_chain", 1);
  x = B(k, FLAGOS_FLOAT64, 1, S(0));
  y = B(k, FLAGOS_FLOAT64, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *c = L1(k, x, i);
  for (int t = 0; t < 60; t++) c = bin(KIR_ADD, c, c);
  St1(k, y, i, c, NULL);

  /* program order: the second store reads what the first wrote (same load node) */
  k = K("t_store_order", 1);
  y = B(k, FLAGOS_FLOAT32, 1, S(0));
  z = B(k, FLAGOS_FLOAT32, 1, S(0));
  i = space1(k, S(0));
  kir_expr_t *ly = L1(k, y, i);
  St1(k, y, i, bin(KIR_ADD, ly, F(1)), NULL);
  St1(k, z, i, bin(KIR_MUL, ly, F(2)), NULL);
}

/* ---- running ---- */
static void run(const char *name, void **bufs, int nb, const int64_t *syms, int ns) {
  flagos_bkernel_t kk = NULL;
  CHECK_OK(be->kernel_get(bst, mod, name, &kk));
  if (!kk) return;
  flagos_launch_t la = {bufs, nb, syms, ns, 0};
  CHECK_OK(be->launch(bst, NULL, kk, &la));
}

static bool same_f(float a, float b) { return (isnan(a) && isnan(b)) || bits_of(a) == bits_of(b); }

static void test_bcast_reduce_transpose(void) {
  for (int pass = 0; pass < 2; pass++) { /* small, then big enough to run on several threads */
    int64_t M = pass ? 300 : 3, N = pass ? 200 : 5, syms[2] = {M, N};
    float *x = malloc(sizeof(float) * (size_t)(M * N)), *b = malloc(sizeof(float) * (size_t)N);
    float *y = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * N; i++) x[i] = (float)i, y[i] = NAN;
    for (int64_t j = 0; j < N; j++) b[j] = 0.5f * (float)j;
    void *bufs[3] = {x, b, y};
    run("t_bcast_add", bufs, 3, syms, 2);
    int bad = 0;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) bad += y[i * N + j] != (float)(i * N + j) + 0.5f * (float)j;
    CHECK(bad == 0, "broadcast add %lldx%lld: %d wrong", (long long)M, (long long)N, bad);
    free(x), free(b), free(y);
  }
  /* rows: plain, NaN inside, NaN first, -inf, NaN last */
  float x[15] = {1, 2, 3, 1, NAN, 3, NAN, -1, 5, -INFINITY, 2, 7, 4, 5, NAN};
  float s[5], mx[5], mn[5];
  void *bufs[4] = {x, s, mx, mn};
  int64_t syms[2] = {5, 3};
  run("t_row_reduce", bufs, 4, syms, 2);
  CHECK(s[0] == 6 && mx[0] == 3 && mn[0] == 1, "row 0: %g %g %g", s[0], mx[0], mn[0]);
  for (int r = 1; r < 5; r++) {
    if (r == 3) continue;
    CHECK(isnan(s[r]) && isnan(mx[r]) && isnan(mn[r]), "row %d with a NaN: %g %g %g", r, s[r], mx[r], mn[r]);
  }
  CHECK(s[3] == -INFINITY && mx[3] == 7 && mn[3] == -INFINITY, "row 3: %g %g %g", s[3], mx[3], mn[3]);
  int64_t empty[2] = {2, 0}; /* reductions over nothing give the identity */
  run("t_row_reduce", bufs, 4, empty, 2);
  CHECK(s[0] == 0 && mx[1] == -INFINITY && mn[1] == INFINITY, "empty rows: %g %g %g", s[0], mx[1], mn[1]);

  float a[4] = {1, NAN, 3, NAN}, b[4] = {2, 1, NAN, NAN}, c[4], d[4];
  void *mb[4] = {a, b, c, d};
  int64_t n4 = 4;
  run("t_minmax2", mb, 4, &n4, 1);
  CHECK(c[0] == 1 && d[0] == 2, "min/max %g %g", c[0], d[0]);
  for (int i = 1; i < 4; i++) CHECK(isnan(c[i]) && isnan(d[i]), "min/max with NaN at %d: %g %g", i, c[i], d[i]);

  float tx[12], ty[12];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 4; j++) tx[i * 4 + j] = (float)(10 * i + j);
  void *tb[2] = {tx, ty};
  int64_t tsyms[2] = {3, 4};
  run("t_transpose", tb, 2, tsyms, 2);
  int bad = 0;
  for (int j = 0; j < 4; j++)
    for (int i = 0; i < 3; i++) bad += ty[j * 3 + i] != (float)(10 * i + j);
  CHECK(bad == 0, "transpose: %d wrong", bad);
}

static void test_lazy_and_shapes(void) {
  int64_t idx[6] = {0, 3, -1, 4, (int64_t)1 << 40, -((int64_t)1 << 40)};
  float data[4] = {10, 11, 12, 13}, y[6];
  void *gb[3] = {idx, data, y};
  int64_t gs[2] = {6, 4};
  run("t_gather", gb, 3, gs, 2);
  float ge[6] = {10, 13, -1, -1, -1, -1};
  CHECK(memcmp(y, ge, sizeof ge) == 0, "guarded gather: %g %g %g %g %g %g", y[0], y[1], y[2], y[3], y[4], y[5]);

  uint8_t ok[4] = {1, 0, 1, 0};
  int64_t off[4] = {0, (int64_t)1 << 40, 3, -((int64_t)1 << 40)};
  float dat[6] = {1, 2, 3, 4, 5, 6}, ys[4];
  void *sb[4] = {ok, off, dat, ys};
  int64_t ss[3] = {4, 3, 6};
  run("t_reduce_in_select", sb, 4, ss, 3);
  CHECK(ys[0] == 6 && ys[1] == -2 && ys[2] == 15 && ys[3] == -2, "reduce in select: %g %g %g %g", ys[0], ys[1], ys[2], ys[3]);

  float x0 = 1.5f, v[4] = {1, 2, 3, 4}, s0 = 0;
  void *cb[3] = {&x0, v, &s0};
  int64_t K = 4;
  run("t_scalar", cb, 3, &K, 1);
  CHECK(s0 == 13, "rank-0 kernel: %g", s0);
  K = 0;
  run("t_scalar", cb, 3, &K, 1);
  CHECK(s0 == 3, "rank-0 kernel, empty sum: %g", s0);

  int64_t big = 1 << 20;
  float *bx = malloc(sizeof(float) * (size_t)big);
  int32_t *bq = malloc(sizeof(int32_t) * (size_t)big);
  for (int64_t i = 0; i < big; i++) bx[i] = 1, bq[i] = (int32_t)i;
  bx[777777] = 5;
  float bs = 0, bm = 0;
  int64_t bsi = 0;
  int32_t bmi = 0;
  uint8_t bany = 7;
  void *bb[7] = {bx, bq, &bs, &bm, &bsi, &bmi, &bany};
  run("t_big_reduce", bb, 7, &big, 1);
  CHECK(bs == (float)(big + 4) && bm == 5 && bsi == big * (big - 1) / 2 && bmi == big - 1 && bany == 0,
        "large rank-0 reductions: %g %g %lld %d %d", bs, bm, (long long)bsi, bmi, bany);
  bx[123] = NAN;
  bq[99] = -1;
  run("t_big_reduce", bb, 7, &big, 1);
  CHECK(isnan(bs) && isnan(bm) && bany == 1, "large reductions with a NaN: %g %g, any %d", bs, bm, bany);
  free(bx), free(bq);

  void *nul[3] = {NULL, NULL, NULL}; /* zero-size: buffers are never touched */
  int64_t z1[2] = {0, 5}, z2[2] = {5, 0}, z3[2] = {3, 0};
  run("t_zero2d", nul, 2, z1, 2);
  run("t_zero2d", nul, 2, z2, 2);
  run("t_zero_red", nul, 2, z1, 2);
  float zr[3] = {NAN, NAN, NAN};
  void *zb[2] = {NULL, zr};
  run("t_zero_red", zb, 2, z3, 2);
  CHECK(zr[0] == 0 && zr[1] == 0 && zr[2] == 0, "sums over an empty axis: %g %g %g", zr[0], zr[1], zr[2]);
}

static void test_casts(void) {
  enum { NOUT = 21 };
  uint8_t out[NOUT][CAST_N * 4];
  float x[CAST_N];
  for (int i = 0; i < CAST_N; i++) x[i] = f32_of(cast_in[i]);
  void *bufs[NOUT + 1] = {x};
  for (int c = 0; c < NOUT; c++) memset(out[c], 0xab, sizeof out[c]), bufs[c + 1] = out[c];
  int64_t n = CAST_N;
  run("t_casts", bufs, NOUT + 1, &n, 1);
  const uint8_t *e8[] = {exp_e4m3fn_sat, exp_e4m3fn_nosat, exp_e4m3fnuz_sat, exp_e4m3fnuz_nosat,
                         exp_e5m2_sat, exp_e5m2_nosat, exp_e5m2fnuz_sat, exp_e5m2fnuz_nosat, exp_f4e2m1};
  const char *names[] = {"e4m3fn sat", "e4m3fn nosat", "e4m3fnuz sat", "e4m3fnuz nosat", "e5m2 sat",
                         "e5m2 nosat", "e5m2fnuz sat", "e5m2fnuz nosat", "f4e2m1"};
  for (int i = 0; i < CAST_N; i++) {
    uint16_t h, bf;
    memcpy(&h, out[0] + 2 * i, 2);
    memcpy(&bf, out[1] + 2 * i, 2);
    CHECK(h == exp_f16[i], "f16(%g) = %04x, want %04x", x[i], h, exp_f16[i]);
    CHECK(bf == exp_bf16[i], "bf16(%g) = %04x, want %04x", x[i], bf, exp_bf16[i]);
    for (int f = 0; f < 9; f++)
      CHECK(out[2 + f][i] == e8[f][i], "%s(%g) = %02x, want %02x", names[f], x[i], out[2 + f][i], e8[f][i]);
    /* e8m0 saturating of +-inf follows ONNX's table (the largest value), not its reference code (NaN) */
    uint8_t want = isinf(x[i]) ? 0xfe : exp_e8m0_sat[i];
    CHECK(out[11][i] == want, "e8m0 sat(%g) = %02x, want %02x", x[i], out[11][i], want);
    CHECK(out[12][i] == exp_e8m0_nosat[i], "e8m0(%g) = %02x, want %02x", x[i], out[12][i], exp_e8m0_nosat[i]);
    CHECK((int8_t)out[13][i] == exp_i4[i], "i4(%g) = %d, want %d", x[i], (int8_t)out[13][i], exp_i4[i]);
    CHECK(out[14][i] == exp_u4[i], "u4(%g) = %d, want %d", x[i], out[14][i], exp_u4[i]);
    CHECK((int8_t)out[15][i] == exp_i2[i], "i2(%g) = %d, want %d", x[i], (int8_t)out[15][i], exp_i2[i]);
    CHECK(out[16][i] == exp_u2[i], "u2(%g) = %d, want %d", x[i], out[16][i], exp_u2[i]);
    CHECK((int8_t)out[17][i] == exp_i8[i], "i8(%g) = %d, want %d", x[i], (int8_t)out[17][i], exp_i8[i]);
    int32_t i32;
    memcpy(&i32, out[18] + 4 * i, 4);
    CHECK(i32 == exp_i32[i], "i32(%g) = %d, want %d", x[i], i32, exp_i32[i]);
    CHECK(out[19][i] == exp_e4m3fn_sat[i], "store f32 -> e4m3fn (%g) = %02x, want %02x", x[i], out[19][i], exp_e4m3fn_sat[i]);
    memcpy(&h, out[20] + 2 * i, 2);
    CHECK(h == exp_f16[i], "store f32 -> f16 (%g) = %04x, want %04x", x[i], h, exp_f16[i]);
  }
  /* e8m0 where ONNX's reference code rounds f32 subnormals up to 2^-126 even when
   * they are at most 2^-127 (which e8m0 holds): here they round up exactly. */
  static const uint32_t sp[5] = {0x00400000u, 0x00400001u, 0x00000001u, 0x7f400000u, 0x7f000000u};
  static const uint8_t want_sat[5] = {0x00, 0x01, 0x00, 0xfe, 0xfe}, want_nosat[5] = {0x00, 0x01, 0x00, 0xff, 0xfe};
  for (int i = 0; i < 5; i++) x[i] = f32_of(sp[i]);
  n = 5;
  run("t_casts", bufs, NOUT + 1, &n, 1);
  for (int i = 0; i < 5; i++)
    CHECK(out[11][i] == want_sat[i] && out[12][i] == want_nosat[i], "e8m0(%a) = %02x/%02x, want %02x/%02x",
          (double)x[i], out[11][i], out[12][i], want_sat[i], want_nosat[i]);

  uint16_t h5[5];
  void *db[2] = {(void *)d2h_in, h5};
  run("t_d2h", db, 2, NULL, 0);
  for (int i = 0; i < 5; i++) CHECK(h5[i] == exp_d2h[i], "f64 -> f16 (%a) = %04x, want %04x", d2h_in[i], h5[i], exp_d2h[i]);

  int32_t xi[9] = {-9, -8, -1, 0, 7, 8, 15, 16, 100};
  int8_t wi4[9] = {7, -8, -1, 0, 7, -8, -1, 0, 4}, y4[9];
  uint8_t wu4[9] = {7, 8, 15, 0, 7, 8, 15, 0, 4}, yu4[9];
  void *ib[3] = {xi, y4, yu4};
  int64_t n9 = 9;
  run("t_i32_to_i4", ib, 3, &n9, 1);
  CHECK(memcmp(y4, wi4, 9) == 0 && memcmp(yu4, wu4, 9) == 0, "int32 -> int4/uint4 wrap");

  const uint32_t *dec[6] = {dec_e4m3fn, dec_e4m3fnuz, dec_e5m2, dec_e5m2fnuz, dec_e8m0, dec_f4e2m1};
  for (int f = 0; f < 6; f++) {
    int64_t nc = f == 5 ? 16 : 256;
    uint8_t codes[256], rt[256];
    float y[256];
    for (int c = 0; c < nc; c++) codes[c] = (uint8_t)c;
    void *b[3] = {codes, y, rt};
    char name[32];
    snprintf(name, sizeof name, "t_decode%d", f);
    run(name, b, 3, &nc, 1);
    for (int c = 0; c < nc; c++) {
      float want = f32_of(dec[f][c]);
      CHECK(same_f(y[c], want), "%s: code %02x decodes to %g, want %g", name, c, y[c], want);
      if (!isnan(want)) CHECK(rt[c] == c, "%s: code %02x stores back as %02x", name, c, rt[c]);
      else CHECK(isnan(f32_of(dec[f][rt[c]])), "%s: NaN code %02x stores back as %02x", name, c, rt[c]);
    }
  }
}

static void test_arith(void) {
  int32_t a[10] = {7, -7, 7, -7, 5, INT32_MIN, 0, -1, 9, -9}, b[10] = {2, 2, -2, -2, 0, -1, 3, 5, 3, 3}, o[4][10];
  /* trunc: DIV/MOD; floor: FLOORDIV/FLOORMOD; x/0 = 0 and x%0 = 0; INT_MIN/-1 wraps */
  int32_t w[4][10] = {{3, -3, -3, 3, 0, INT32_MIN, 0, 0, 3, -3},
                      {1, -1, 1, -1, 0, 0, 0, -1, 0, 0},
                      {3, -4, -4, 3, 0, INT32_MIN, 0, -1, 3, -3},
                      {1, 1, -1, -1, 0, 0, 0, 4, 0, 0}};
  void *ib[6] = {a, b, o[0], o[1], o[2], o[3]};
  int64_t n = 10;
  run("t_div_i32", ib, 6, &n, 1);
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 10; i++) CHECK(o[k][i] == w[k][i], "i32 op %d: %d, %d -> %d, want %d", k, a[i], b[i], o[k][i], w[k][i]);
  int8_t a8[3] = {-128, -7, 100}, b8[3] = {-1, 2, 0}, o8[4][3];
  int8_t w8[4][3] = {{-128, -3, 0}, {0, -1, 0}, {-128, -4, 0}, {0, 1, 0}};
  void *b8b[6] = {a8, b8, o8[0], o8[1], o8[2], o8[3]};
  n = 3;
  run("t_div_i8", b8b, 6, &n, 1);
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 3; i++) CHECK(o8[k][i] == w8[k][i], "i8 op %d: %d, %d -> %d, want %d", k, a8[i], b8[i], o8[k][i], w8[k][i]);
  float fa[4] = {-7.5f, 7.5f, -7.5f, 5}, fb[4] = {2, -2, -2, 0}, fo[4][4];
  float fw[4][4] = {{-3.75f, -3.75f, 3.75f, INFINITY}, {-1.5f, 1.5f, -1.5f, NAN}, {-4, -4, 3, INFINITY}, {0.5f, -0.5f, -1.5f, NAN}};
  void *fbb[6] = {fa, fb, fo[0], fo[1], fo[2], fo[3]};
  n = 4;
  run("t_div_f32", fbb, 6, &n, 1);
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 4; i++) CHECK(same_f(fo[k][i], fw[k][i]), "f32 op %d: %g, %g -> %g, want %g", k, fa[i], fb[i], fo[k][i], fw[k][i]);

  float rx[10] = {-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 3.5f, 0.49999997f, 2.4f, -2.6f}, ry[10];
  float rw[10] = {-2, -2, -0.0f, 0, 2, 2, 4, 0, 2, -3};
  void *rb[2] = {rx, ry};
  n = 10;
  run("t_round", rb, 2, &n, 1);
  for (int i = 0; i < 10; i++) CHECK(same_f(ry[i], rw[i]), "round(%g) = %g, want %g", rx[i], ry[i], rw[i]);

  float cx[5] = {1, -1, 0, 2.5f, NAN}, cy[5] = {-7, -7, -7, -7, -7}, cw[5] = {10, -7, -7, 25, -7};
  void *cb[2] = {cx, cy};
  n = 5;
  run("t_cond_store", cb, 2, &n, 1);
  CHECK(memcmp(cy, cw, sizeof cw) == 0, "conditional store: %g %g %g %g %g", cy[0], cy[1], cy[2], cy[3], cy[4]);

  n = 100000; /* large enough that a parallel loop would break the chain */
  double *sx = malloc(sizeof(double) * (size_t)n), *sy = calloc((size_t)n, sizeof(double));
  for (int64_t i = 0; i < n; i++) sx[i] = 1;
  void *sb[2] = {sx, sy};
  run("t_serial", sb, 2, &n, 1);
  int bad = 0;
  for (int64_t i = 0; i < n; i++) bad += sy[i] != (double)(i + 1);
  CHECK(bad == 0, "serial prefix sum: %d wrong", bad);
  free(sx), free(sy);

  int32_t pa[8] = {2, -3, 2, 1, -1, 3, 2, INT32_MIN}, pb[8] = {10, 3, -1, -5, -3, 0, 31, 1};
  uint8_t ua[8] = {1, 1, 255, 3, 128, 128, 255, 200}, ub[8] = {7, 8, 1, 200, 7, 8, 4, 100};
  float fx[8] = {1, f32_of(0x40490fdbu), -0.0f, f32_of(0x7fc00000u), 0.5f, -2, f32_of(1u), INFINITY};
  int32_t pw[8] = {1024, -27, 0, 1, -1, 1, INT32_MIN, INT32_MIN}, pow_o[8], bci[8], abs_o[8];
  uint8_t shl_w[8] = {128, 0, 254, 0, 0, 0, 240, 0}, shr_w[8] = {0, 0, 127, 0, 1, 0, 15, 0};
  uint8_t add_w[8] = {8, 9, 0, 203, 135, 136, 3, 44}, bool_w[8] = {1, 1, 0, 1, 1, 1, 1, 1};
  int32_t bci_w[8] = {0x3f800000, 0x40490fdb, INT32_MIN, 0x7fc00000, 0x3f000000, (int32_t)0xc0000000u, 1, 0x7f800000};
  int32_t abs_w[8] = {2, 3, 2, 1, 1, 3, 2, INT32_MIN};
  uint8_t shl_o[8], shr_o[8], bool_o[8], add_o[8];
  float bcf[8];
  void *mb[13] = {pa, pb, ua, ub, fx, pow_o, shl_o, shr_o, bci, bcf, bool_o, add_o, abs_o};
  n = 8;
  run("t_int_misc", mb, 13, &n, 1);
  for (int i = 0; i < 8; i++) {
    CHECK(pow_o[i] == pw[i], "pow(%d, %d) = %d, want %d", pa[i], pb[i], pow_o[i], pw[i]);
    CHECK(shl_o[i] == shl_w[i] && shr_o[i] == shr_w[i], "u8 %d <</>> %d = %d/%d, want %d/%d", ua[i], ub[i], shl_o[i],
          shr_o[i], shl_w[i], shr_w[i]);
    CHECK(bci[i] == bci_w[i], "bitcast f32 %g -> %08x, want %08x", fx[i], (unsigned)bci[i], (unsigned)bci_w[i]);
    CHECK(bits_of(bcf[i]) == (uint32_t)pa[i], "bitcast i32 %d -> %08x", pa[i], bits_of(bcf[i]));
    CHECK(bool_o[i] == bool_w[i], "bool(%g) = %d", fx[i], bool_o[i]);
    CHECK(add_o[i] == add_w[i], "u8 %d + %d = %d, want %d", ua[i], ub[i], add_o[i], add_w[i]);
    CHECK(abs_o[i] == abs_w[i], "abs(%d) = %d", pa[i], abs_o[i]);
  }

  float smx[15] = {1, 2, 3, 4, 5, -1, 0, 1, 1000, 1000, 88, -88, 0, 3, 3}, smy[15];
  void *smb[2] = {smx, smy};
  int64_t sms[2] = {3, 5};
  run("t_softmax", smb, 2, sms, 2);
  for (int r = 0; r < 3; r++) {
    double m = -INFINITY, den = 0;
    for (int j = 0; j < 5; j++) m = fmax(m, smx[r * 5 + j]);
    for (int j = 0; j < 5; j++) den += exp(smx[r * 5 + j] - m);
    for (int j = 0; j < 5; j++) {
      double want = exp(smx[r * 5 + j] - m) / den;
      CHECK(fabs(smy[r * 5 + j] - want) <= 1e-6 + 1e-5 * want, "softmax[%d,%d] = %g, want %g", r, j, smy[r * 5 + j], want);
    }
  }

  double chx[2] = {1, -3}, chy[2];
  void *chb[2] = {chx, chy};
  n = 2;
  run("t_chain", chb, 2, &n, 1);
  CHECK(chy[0] == ldexp(1, 60) && chy[1] == -3 * ldexp(1, 60), "shared chain: %g %g", chy[0], chy[1]);

  float soy[2] = {1, 2}, soz[2];
  void *sob[2] = {soy, soz};
  run("t_store_order", sob, 2, &n, 1);
  CHECK(soy[0] == 2 && soy[1] == 3 && soz[0] == 4 && soz[1] == 6, "store order: y %g %g z %g %g", soy[0], soy[1], soz[0], soz[1]);
}

/* ---- gemm through the plugin against a naive triple loop ---- */
static void naive_gemm(bool f64, const int64_t *v, const double *fl, const void *A_, const void *B_, void *Y_) {
  int64_t batch = v[0], M = v[1], N = v[2], K = v[3];
  for (int64_t b = 0; b < batch; b++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) {
          int64_t ai = b * v[6] + (v[4] ? k * M + i : i * K + k), bi = b * v[7] + (v[5] ? j * K + k : k * N + j);
          acc += f64 ? ((const double *)A_)[ai] * ((const double *)B_)[bi]
                     : (double)((const float *)A_)[ai] * ((const float *)B_)[bi];
        }
        int64_t yi = b * v[8] + i * N + j;
        double old = f64 ? ((double *)Y_)[yi] : ((float *)Y_)[yi];
        double r = fl[0] * acc + (fl[1] == 0 ? 0 : fl[1] * old);
        if (f64) ((double *)Y_)[yi] = r;
        else ((float *)Y_)[yi] = (float)r;
      }
}

static void test_gemm(void) {
  static const int64_t cases[][9] = {
      {1, 3, 4, 5, 0, 0, 0, 0, 0},    {1, 3, 4, 5, 1, 0, 0, 0, 0},   {1, 3, 4, 5, 0, 1, 0, 0, 0},
      {1, 3, 4, 5, 1, 1, 0, 0, 0},    {2, 3, 4, 5, 0, 0, 15, 0, 12}, {3, 2, 2, 3, 1, 1, 6, 6, 4},
      {1, 4, 3, 0, 0, 0, 0, 0, 0},    {1, 0, 3, 2, 0, 0, 0, 0, 0},   {2, 17, 9, 33, 1, 0, 561, 297, 153}};
  for (size_t c = 0; c < FL_ARRAY_LEN(cases); c++)
    for (int f64 = 0; f64 < 2; f64++)
      for (int bz = 0; bz < 2; bz++) {
        const int64_t *v = cases[c];
        double fl[2] = {0.5, bz ? 0.0 : 2.0};
        size_t es = f64 ? 8 : 4, na = 4000, ny = 400;
        char *a = calloc(na, es), *b = calloc(na, es), *y = calloc(ny, es), *yw = calloc(ny, es);
        for (size_t i = 0; i < na; i++) {
          double av = (double)((int)(i * 7 % 11) - 5), bv = (double)((int)(i * 5 % 13) - 6);
          if (f64) ((double *)a)[i] = av, ((double *)b)[i] = bv;
          else ((float *)a)[i] = (float)av, ((float *)b)[i] = (float)bv;
        }
        for (size_t i = 0; i < ny; i++) {
          double yv = bz ? NAN : (double)(i % 5);
          if (f64) ((double *)y)[i] = ((double *)yw)[i] = yv;
          else ((float *)y)[i] = ((float *)yw)[i] = (float)yv;
        }
        naive_gemm(f64, v, fl, a, b, yw);
        void *bufs[3] = {a, b, y};
        int32_t dts[3];
        for (int i = 0; i < 3; i++) dts[i] = f64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
        flagos_libcall_t call = {"gemm", bufs, dts, 3, v, 9, fl, 2};
        CHECK_OK(be->library_call(bst, NULL, &call));
        int64_t rows = v[0] > 1 ? (v[0] - 1) * v[8] + v[1] * v[2] : v[1] * v[2];
        int bad = 0;
        for (int64_t i = 0; i < rows; i++) {
          double g = f64 ? ((double *)y)[i] : ((float *)y)[i], w = f64 ? ((double *)yw)[i] : ((float *)yw)[i];
          bad += !(g == w || (isnan(g) && isnan(w)));
        }
        CHECK(bad == 0, "gemm case %zu (%s, beta %g): %d of %lld wrong", c, f64 ? "f64" : "f32", fl[1], bad, (long long)rows);
        free(a), free(b), free(y), free(yw);
      }
  float one = 1;
  void *bufs[3] = {&one, &one, &one};
  int32_t dts[3] = {FLAGOS_FLOAT16, FLAGOS_FLOAT16, FLAGOS_FLOAT16};
  int64_t v[9] = {1, 1, 1, 1, 0, 0, 0, 0, 0};
  double fl[2] = {1, 0};
  flagos_libcall_t call = {"gemm", bufs, dts, 3, v, 9, fl, 2};
  flagos_status_t st = be->library_call(bst, NULL, &call);
  CHECK(flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED, "gemm on f16: %s", flagos_status_message(st));
  flagos_status_free(st);
  call.name = "conv";
  st = be->library_call(bst, NULL, &call);
  CHECK(flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED, "unknown library call: %s", flagos_status_message(st));
  flagos_status_free(st);
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static void test_plugin(const void *so, size_t so_len) {
  flagos_device_info_t di;
  CHECK(be->device_count(bst) == 1, "one device");
  CHECK_OK(be->device_info(bst, 0, &di));
  CHECK(di.name[0] && di.vendor[0] && di.memory_bytes > 0 && di.compute_units >= 1 && di.host_visible == 1 &&
            di.kind == FLAGOS_DEVICE_CPU, "device info: '%s' '%s' %llu bytes %d units", di.name, di.vendor,
        (unsigned long long)di.memory_bytes, di.compute_units);
  flagos_status_t st = be->device_info(bst, 1, &di);
  CHECK(st != NULL, "device 1 does not exist");
  flagos_status_free(st);
  flagos_devptr_t p0 = NULL, p1 = NULL;
  CHECK_OK(be->mem_alloc(bst, 0, 0, &p0));
  CHECK_OK(be->mem_alloc(bst, 0, 100, &p1));
  CHECK(p0 && p1 && ((uintptr_t)p0 % 64) == 0 && ((uintptr_t)p1 % 64) == 0, "64-byte aligned allocations");
  char msg[6] = "hello", back[6] = {0};
  CHECK_OK(be->copy_h2d(bst, NULL, p1, 10, msg, 6));
  CHECK_OK(be->copy_d2d(bst, NULL, p1, 40, p1, 10, 6));
  CHECK_OK(be->copy_d2h(bst, NULL, back, p1, 40, 6));
  CHECK(strcmp(back, "hello") == 0, "copies");
  be->mem_free(bst, 0, p0);
  be->mem_free(bst, 0, p1);
  flagos_bstream_t s;
  flagos_bevent_t e0, e1;
  CHECK_OK(be->stream_create(bst, 0, &s));
  CHECK_OK(be->event_create(bst, 0, &e0));
  CHECK_OK(be->event_create(bst, 0, &e1));
  double ms = -1;
  st = be->event_elapsed_ms(bst, e0, e1, &ms);
  CHECK(st != NULL, "elapsed time of unrecorded events is an error");
  flagos_status_free(st);
  CHECK_OK(be->event_record(bst, e0, s));
  usleep(2000);
  CHECK_OK(be->event_record(bst, e1, s));
  CHECK_OK(be->stream_wait_event(bst, s, e1));
  CHECK_OK(be->event_sync(bst, e1));
  CHECK_OK(be->stream_sync(bst, s));
  CHECK_OK(be->event_elapsed_ms(bst, e0, e1, &ms));
  CHECK(ms >= 1.5 && ms < 1000, "elapsed %g ms across a 2 ms sleep", ms);
  be->event_destroy(bst, e0);
  be->event_destroy(bst, e1);
  be->stream_destroy(bst, s);

  /* identical bytes loaded twice are two modules; many loads and unloads leak nothing */
  flagos_bmodule_t m2 = NULL;
  CHECK_OK(be->module_load(bst, 0, so, so_len, &m2));
  flagos_bkernel_t k1 = NULL, k2 = NULL;
  CHECK_OK(be->kernel_get(bst, mod, "t_round", &k1));
  if (m2) CHECK_OK(be->kernel_get(bst, m2, "t_round", &k2));
  CHECK(k1 && k2 && k1 != k2, "two loads of the same bytes are separate modules");
  if (m2) be->module_unload(bst, m2);
  int fds = count_fds();
  for (int i = 0; i < 30; i++) {
    flagos_bmodule_t m = NULL;
    CHECK_OK(be->module_load(bst, 0, so, so_len, &m));
    flagos_bkernel_t k = NULL;
    if (m) CHECK_OK(be->kernel_get(bst, m, "t_store_order", &k));
    if (k) {
      float y = 1, z = 0;
      void *b[2] = {&y, &z};
      int64_t one = 1;
      flagos_launch_t la = {b, 2, &one, 1, 1};
      CHECK_OK(be->launch(bst, NULL, k, &la));
      CHECK(y == 2 && z == 4, "kernel of reloaded module %d", i);
    }
    if (m) be->module_unload(bst, m);
  }
  CHECK(count_fds() == fds, "file descriptors leak across loads (%d -> %d)", fds, count_fds());
  flagos_bkernel_t none = NULL;
  st = be->kernel_get(bst, mod, "no_such_kernel", &none);
  CHECK(flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND && strstr(flagos_status_message(st), "no_such_kernel"),
        "missing kernel: %s", flagos_status_message(st));
  flagos_status_free(st);
  flagos_bmodule_t bad = NULL;
  st = be->module_load(bst, 0, "not an elf file at all, not an elf file at all, not an elf file at all", 70, &bad);
  CHECK(st != NULL && bad == NULL, "garbage module refused");
  flagos_status_free(st);
}

/* ---- emission errors ---- */
static void test_emit_errors(void) {
  fl_buf_t b = {0};
  kir_kernel_t *k = kir_kernel_create(A, "bad name");
  flagos_status_t st = cgen_c_emit(&k, 1, &b);
  CHECK(flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT, "a kernel name with a blank: %s", flagos_status_message(st));
  flagos_status_free(st);
  kir_kernel_t *two[2] = {kir_kernel_create(A, "same"), kir_kernel_create(A, "same")};
  st = cgen_c_emit(two, 2, &b);
  CHECK(st && strstr(flagos_status_message(st), "same"), "duplicate names: %s", flagos_status_message(st));
  flagos_status_free(st);
  k = kir_kernel_create(A, "strings");
  kir_expr_t *n1 = I(1), *v;
  int sb = kir_add_buf(k, "s", FLAGOS_STRING, 1, &n1);
  kir_set_space(k, 1, &n1, &v);
  kir_store(k, sb, &v, kir_load(k, sb, &v), NULL);
  st = cgen_c_emit(&k, 1, &b);
  CHECK(flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED && strstr(flagos_status_message(st), "str"),
        "string buffers: %s", flagos_status_message(st));
  flagos_status_free(st);
  k = kir_kernel_create(A, "unbound"); /* stores a reduction variable outside its reduction */
  int fb = kir_add_buf(k, "y", FLAGOS_INT64, 1, &n1);
  kir_set_space(k, 1, &n1, &v);
  kir_store(k, fb, &v, kir_var(A, kir_new_var(k)), NULL);
  st = cgen_c_emit(&k, 1, &b);
  CHECK(st && strstr(flagos_status_message(st), "outside the loop"), "unbound variable: %s", flagos_status_message(st));
  flagos_status_free(st);
  fl_buf_free(&b);
}

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[4096];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat s;
    if (lstat(p, &s) == 0 && S_ISDIR(s.st_mode)) rm_tree(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static int count_suffix(const char *dir, const char *suffix) {
  int n = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name), s = strlen(suffix);
    n += l > s && strcmp(e->d_name + l - s, suffix) == 0;
  }
  closedir(d);
  return n;
}

/* The GPU dialects' row cache and tiled form (docs/kernel-ir.md) are text the
 * C dialect never emits; their values are checked on devices by the ONNX
 * conformance runs (softmax, layer normalisation, transposes through PoCL and
 * CUDA). Here: which form each kernel takes, per dialect. */
static size_t count(const char *s, const char *w) {
  size_t n = 0;
  for (const char *p = s ? strstr(s, w) : NULL; p; p = strstr(p + 1, w)) n++;
  return n;
}

static void check_gpu_forms(void) {
  kir_kernel_t *ks[2];
  kir_expr_t *v[2], *ext[2] = {kir_i64(A, 64), kir_i64(A, 4096)};
  kir_kernel_t *k = ks[0] = kir_kernel_create(A, "g_softmax");
  int x = kir_add_buf(k, "x", FLAGOS_FLOAT32, 2, ext), y = kir_add_buf(k, "y", FLAGOS_FLOAT32, 2, ext);
  kir_set_space(k, 2, ext, v);
  int jm = kir_new_var(k), js = kir_new_var(k);
  kir_expr_t *im[2] = {v[0], kir_var(A, jm)}, *is[2] = {v[0], kir_var(A, js)}, *n = ext[1];
  kir_expr_t *m = kir_reduce(A, KIR_RMAX, 1, &jm, &n, kir_load(k, x, im));
  kir_expr_t *den =
      kir_reduce(A, KIR_RSUM, 1, &js, &n, kir_un(A, KIR_EXP, kir_bin(A, KIR_SUB, kir_load(k, x, is), m)));
  kir_store(k, y, v, kir_bin(A, KIR_DIV, kir_un(A, KIR_EXP, kir_bin(A, KIR_SUB, kir_load(k, x, v), m)), den), NULL);

  kir_expr_t *ex[2] = {kir_i64(A, 300), kir_i64(A, 200)}, *ey[2] = {ex[1], ex[0]};
  k = ks[1] = kir_kernel_create(A, "g_transpose");
  x = kir_add_buf(k, "x", FLAGOS_FLOAT32, 2, ex);
  y = kir_add_buf(k, "y", FLAGOS_FLOAT32, 2, ey);
  kir_set_space(k, 2, ey, v);
  kir_expr_t *ix[2] = {v[1], v[0]};
  kir_store(k, y, v, kir_load(k, x, ix), NULL);

  fl_buf_t c = {0}, cu = {0}, cl = {0};
  CHECK_OK(cgen_c_emit(ks, 2, &c));
  CHECK_OK(cgen_cuda_emit(ks, 2, &cu));
  CHECK_OK(cgen_opencl_emit(ks, 2, &cl));
  CHECK(c.data && !strstr(c.data, "fo_rc") && !strstr(c.data, "fo_tl"), "the C dialect has no row cache nor tiles");
  for (int d = 0; d < 2; d++) {
    const char *t = d ? cl.data : cu.data, *nm = d ? "OpenCL" : "CUDA";
    const char *sm = t ? strstr(t, "g_softmax(") : NULL, *tr = t ? strstr(t, "g_transpose(") : NULL;
    CHECK(sm && tr, "%s: both kernels emitted", nm);
    if (!sm || !tr) continue;
    /* x is read from memory once per slot (the fill) and again only in each
     * loop's tail past the slots: 1 fill + 3 tails */
    size_t slots = tr > sm ? (size_t)(tr - sm) : strlen(sm);
    char *body = strndup(sm, slots);
    /* CUDA emits the row loop twice: with pointers declared aligned (its
     * slots are vectors of 4 elements, moved as one access) and without */
    size_t dup = d ? 1 : 2;
    CHECK(count(body, "fo_rc0[fo_k] = b0[") == dup && count(body, ": b0[") == 6 * dup && count(body, "b0[") == 7 * dup,
          "%s: softmax's x is cached (one fill, three loops reading the cache)", nm);
    if (!d)
      CHECK(strstr(body, "__builtin_assume_aligned(b0, 16)") &&
                strstr(body, "fo_e0 = ((int64_t)fo_gt + (int64_t)fo_kv * fo_gw) * 4;"),
            "CUDA: softmax's slots are vectors of 4 consecutive elements behind aligned pointers");
    free(body);
    /* CUDA: whole tiles move vectors of 4 (a second loop of each pass) */
    size_t passes = d ? 1 : 2;
    CHECK(strstr(tr, "fo_tl[64][65]") && count(tr, "fo_tv[fo_x] = b0[") == 1 &&
              count(tr, "fo_tl[fo_r][fo_c + fo_x] = fo_tv[fo_x];") == passes &&
              count(tr, "fo_tv[fo_x] = fo_tl[fo_c + fo_x][fo_r];") == passes,
          "%s: the transpose goes through a padded tile", nm);
    if (!d)
      CHECK(count(tr, "= *(const float4 *)&b0[") == 1 && count(tr, "__stcg((float4 *)(b1 + ") == 1,
            "CUDA: whole tiles of the transpose move float4 vectors");
  }
  fl_buf_free(&c);
  fl_buf_free(&cu);
  fl_buf_free(&cl);
}

/* 16-bit pointwise kernels on the GPU dialects: a thread takes 8 points moved
 * as 16-byte vectors, and CUDA converts f16/bf16 with the hardware's
 * instructions (inline PTX) instead of the C prelude's arithmetic, which the C
 * text keeps. A bias broadcast along the last axis is a vector load too. Values
 * are checked on devices by the conformance runs (PoCL here). */
static void check_f16_forms(void) {
  kir_kernel_t *ks[2];
  for (int i = 0; i < 2; i++) {
    flagos_dtype_t dt = i ? FLAGOS_BFLOAT16 : FLAGOS_FLOAT16;
    kir_expr_t *v[2], *ext[2] = {kir_i64(A, 64), kir_i64(A, 768)};
    kir_kernel_t *k = ks[i] = kir_kernel_create(A, i ? "h_bias_bf16" : "h_bias_f16");
    int x = kir_add_buf(k, "x", dt, 2, ext), b = kir_add_buf(k, "b", dt, 1, &ext[1]);
    int y = kir_add_buf(k, "y", dt, 2, ext);
    kir_set_space(k, 2, ext, v);
    kir_store(k, y, v, kir_bin(A, KIR_ADD, kir_load(k, x, v), kir_load(k, b, &v[1])), NULL);
  }
  fl_buf_t c = {0}, cu = {0}, cl = {0};
  CHECK_OK(cgen_c_emit(ks, 2, &c));
  CHECK_OK(cgen_cuda_emit(ks, 2, &cu));
  CHECK_OK(cgen_opencl_emit(ks, 2, &cl));
  if (!c.data || !cu.data || !cl.data) return;
  CHECK(!strstr(c.data, "asm(") && strstr(c.data, "0x477ff000u") && !strstr(c.data, "uint4"),
        "the C text keeps the software conversions and has no vectors");
  CHECK(count(cu.data, "cvt.f32.f16") == 1 && count(cu.data, "cvt.rn.f16.f32") == 1 &&
            count(cu.data, "cvt.rn.bf16.f32") == 1,
        "CUDA converts f16/bf16 with the hardware's instructions");
  CHECK(!strstr(cu.data, "0x477ff000u") && !strstr(cu.data, "0x1p-24f") && count(cu.data, "fo_dec_f16(uint16_t") == 1 &&
            count(cu.data, "fo_enc_f16f(float") == 1 && count(cu.data, "fo_enc_bf16f(float") == 1 &&
            count(cu.data, "fo_enc_f16d(double") == 1,
        "CUDA defines each replaced helper once and keeps the others");
  /* per kernel: x and b loaded, y stored as uint4, 8 points per thread */
  CHECK(count(cu.data, "= *(const uint4 *)(b0 + ") == 2 && count(cu.data, "= *(const uint4 *)(b1 + ") == 2 &&
            count(cu.data, "(uint4 *)(b2 + ") == 2 && count(cu.data, "fo_u < 8;") == 2 &&
            count(cu.data, "E1 % 8 == 0") == 2 && count(cu.data, "& 15) == 0") == 6,
        "CUDA moves 16-bit elements 8 at a time in 16-byte aligned accesses");
  CHECK(count(cl.data, "= FO_VLDW(uint4, ushort, 8, b0 + ") == 2 && count(cl.data, "= FO_VLDW(uint4, ushort, 8, b1 + ") == 2 &&
            count(cl.data, "FO_VSTW(uint4, ushort, 8, b2 + ") == 2 && count(cl.data, "fo_u < 8;") == 2 &&
            count(cl.data, "#define FO_VLDW(U, E, n, p) (*(__global const U *)(p))") == 1,
        "OpenCL moves 16-bit elements 8 at a time, as 16-byte words of the vector's alignment");
  /* NVRTC, where the toolkit is installed: the inline PTX assembles */
  char dir[] = "/tmp/flagos-test-cgen16-XXXXXX";
  void *blob = NULL;
  size_t blob_len = 0;
  if (mkdtemp(dir)) {
    flagos_status_t st = cgen_cuda_compile(cu.data, cu.len, "sm_80,sm_90", dir, &blob, &blob_len);
    if (flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND) fprintf(stderr, "test_codegen_c: no NVRTC, f16 compile skipped\n");
    else CHECK(!st && blob && blob_len > 0, "NVRTC compiles the f16/bf16 kernels: %s", st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    free(blob);
    rm_tree(dir);
  }
  fl_buf_free(&c);
  fl_buf_free(&cu);
  fl_buf_free(&cl);
}

int main(void) {
  double t_start = now();
  A = fl_arena_create();
  build_kernels();
  check_gpu_forms();
  check_f16_forms();
  fl_buf_t src = {0};
  CHECK_OK(cgen_c_emit(g_kernels, g_nk, &src));
  if (!src.data) return 1;
  /* The serial kernel has no OpenMP pragma. */
  const char *ser = strstr(src.data, "void t_serial(");
  const char *ser_end = ser ? strstr(ser, "\n}\n") : NULL;
  CHECK(ser && ser_end, "t_serial emitted");
  if (ser && ser_end) CHECK(!memmem(ser, (size_t)(ser_end - ser), "#pragma", 7), "serial kernel has a pragma");

  char cache[] = "/tmp/flagos-test-cgen-XXXXXX";
  if (!mkdtemp(cache)) return 1;
  /* The emitted code is warning-free. */
  char path[512], cmd[4096];
  snprintf(path, sizeof path, "%s/check.c", cache);
  FILE *f = fopen(path, "w");
  fwrite(src.data, 1, src.len, f);
  fclose(f);
  const char *cc = getenv("CC");
  snprintf(cmd, sizeof cmd, "%s -std=gnu17 -O1 -fopenmp -Wall -Wextra -Werror -c '%s' -o '%s.o' 2>'%s.log'",
           cc && *cc ? cc : "cc", path, path, path);
  int rc = system(cmd);
  CHECK(rc == 0, "generated code does not compile with -Wall -Wextra -Werror (see %s.log)", path);
  if (rc != 0) {
    snprintf(cmd, sizeof cmd, "head -30 '%s.log' >&2", path);
    if (system(cmd)) {}
  }

  void *so = NULL, *so2 = NULL;
  size_t so_len = 0, so2_len = 0;
  double t0 = now();
  CHECK_OK(cgen_c_compile(src.data, src.len, 2, cache, &so, &so_len));
  double t1 = now();
  CHECK_OK(cgen_c_compile(src.data, src.len, 2, cache, &so2, &so2_len));
  double t2 = now();
  char cdir[4200];
  snprintf(cdir, sizeof cdir, "%s/c", cache);
  CHECK(count_suffix(cdir, ".so") == 1, "one cached object after two compiles of one source (%d)", count_suffix(cdir, ".so"));
  CHECK(so && so2 && so_len == so2_len && memcmp(so, so2, so_len) == 0, "the cache hit returns the same object");
  CHECK(t2 - t1 < 0.05 && t2 - t1 < (t1 - t0) / 4, "cache hit takes %.3f s (compile took %.3f s)", t2 - t1, t1 - t0);
  free(so2);
  const char *tiny = "int fo_tiny(int x) { return x + 1; }\n";
  for (int o = 1; o <= 2; o++) {
    so2 = NULL;
    CHECK_OK(cgen_c_compile(tiny, strlen(tiny), o, cache, &so2, &so2_len));
    free(so2);
  }
  CHECK(count_suffix(cdir, ".so") == 3, "the opt level is part of the cache key (%d entries)", count_suffix(cdir, ".so"));
  const char *broken = "void f(void) { undeclared_thing_42 = 1; }\n";
  flagos_status_t st = cgen_c_compile(broken, strlen(broken), 2, cache, &so2, &so2_len);
  CHECK(flagos_status_code(st) == FLAGOS_ERR_BACKEND && strstr(flagos_status_message(st), "undeclared_thing_42"),
        "compile error carries the diagnostic: %s", flagos_status_message(st));
  flagos_status_free(st);
  /* Several processes compiling one new source at once: all succeed, one entry. */
  const char *shared_src = "int fo_shared(int x) { return 3 * x; }\n";
  int n_before = count_suffix(cdir, ".so");
  pid_t kids[3];
  for (int i = 0; i < 3; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      void *o = NULL;
      size_t ol = 0;
      flagos_status_t cs = cgen_c_compile(shared_src, strlen(shared_src), 2, cache, &o, &ol);
      _exit(cs == NULL && o && ol > 0 ? 0 : 1);
    }
  }
  for (int i = 0; i < 3; i++) {
    int ws = 0;
    waitpid(kids[i], &ws, 0);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "concurrent compile %d failed", i);
  }
  CHECK(count_suffix(cdir, ".so") == n_before + 1, "concurrent compiles of one source leave one entry");
  CHECK(count_suffix(cdir, ".tmp.c") == 0 && count_suffix(cdir, ".tmp.so") == 0, "no temporary files left");
  char *old_cc = getenv("CC") ? strdup(getenv("CC")) : NULL;
  setenv("CC", "/nonexistent/flagos-cc", 1);
  st = cgen_c_compile(tiny, strlen(tiny), 3, cache, &so2, &so2_len);
  CHECK(flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND && strstr(flagos_status_message(st), "flagos-cc"),
        "a missing compiler: %s", flagos_status_message(st));
  flagos_status_free(st);
  if (old_cc) setenv("CC", old_cc, 1);
  else unsetenv("CC");
  free(old_cc);

  void *lib = dlopen(FLAGOS_BINARY_DIR "/backends/libflagos_backend_cpu.so", RTLD_NOW | RTLD_LOCAL);
  CHECK(lib, "cannot load the cpu plugin: %s", dlerror());
  flagos_backend_entry_fn entry = lib ? (flagos_backend_entry_fn)dlsym(lib, FLAGOS_BACKEND_ENTRY_SYMBOL) : NULL;
  be = entry ? entry(FLAGOS_BACKEND_ABI_VERSION) : NULL;
  CHECK(be && !strcmp(be->name, "cpu") && !strcmp(be->code_format, "elf-so") && be->struct_size == sizeof(*be), "plugin table");
  CHECK(!entry || entry(FLAGOS_BACKEND_ABI_VERSION + 1) == NULL, "other ABI versions are refused");
  if (be && so) {
    flagos_host_t host = {FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, cache};
    CHECK_OK(be->init(&host, &bst));
    CHECK_OK(be->module_load(bst, 0, so, so_len, &mod));
    if (mod) {
      test_bcast_reduce_transpose();
      test_lazy_and_shapes();
      test_casts();
      test_arith();
      test_plugin(so, so_len);
      be->module_unload(bst, mod);
      /* OpenMP's idle workers live in its runtime: unloading the last module must not unmap it. */
      FILE *maps = fopen("/proc/self/maps", "r");
      char line[512];
      int gomp = 0;
      while (maps && fgets(line, sizeof line, maps)) gomp += strstr(line, "libgomp") != NULL;
      if (maps) fclose(maps);
      CHECK(gomp > 0, "the OpenMP runtime was unloaded with the last module");
    }
    test_gemm();
    be->shutdown(bst);
  }
  test_emit_errors();
  free(so);
  fl_buf_free(&src);
  fl_arena_destroy(A);
  rm_tree(cache);
  fprintf(stderr, "test_codegen_c: %d kernels, compile %.2f s, total %.2f s, %d failures\n", g_nk, t1 - t0,
          now() - t_start, g_fails);
  return g_fails ? 1 : 0;
}
