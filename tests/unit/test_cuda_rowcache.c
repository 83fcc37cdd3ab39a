/* The CUDA row cache's shared-memory tier (docs/kernel-ir.md, "The CUDA
 * kernel ABI"), off by default and turned on here with
 * $FLAGOS_CODEGEN_ROW_SHARED=98304: rows too long for a thread's register
 * slots keep the rest in dynamic shared memory, whose size the kernel
 * publishes as the size of the global fo_dynsmem_<kernel> (256 bytes a unit).
 *  - Without a GPU: by default no kernel uses the tier; with it, softmax rows
 *    of 32k floats, of f16 (converted to f32), of f64, rows past the tier's
 *    budget and of odd lengths (scalar slots), and a row with two cached
 *    arrays emit it and compile with NVRTC for sm_90; a 16k row (registers
 *    suffice) and a warp-shared 1k row do not use it.
 *  - With a GPU: every kernel runs through the cuda plugin against softmax
 *    computed here in double precision, also launched with no dynamic shared
 *    memory (the global renamed: the kernel reads memory instead) and through
 *    a captured graph. Skipped where there is no device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cgen.h"
#include "kernel/kir.h"

#include "check.h"
#include "cuda_plugin_test.h"

typedef struct kcase {
  const char *name;
  flagos_dtype_t dt;
  int64_t rows, n;
  bool two;       /* y = x * z / sum(x * z): two cached arrays; else softmax(x) */
  int dyn_units;  /* the published size (256-byte units); 0: no tier */
} kcase_t;

/* 64 register slots a thread (shared by the cached arrays), the rest up to
 * the 96 KB a block this test allows in shared memory: a 32k-float row takes 64 slots of 256
 * threads x 4 bytes (64 KB); 33333 elements are not whole vectors of 4: 67
 * scalar slots (67 KB); f64 values take 8 bytes; 50k floats and the two
 * arrays of 24k (32 register slots each) fill the 96 KB, the rest of their
 * rows is read from memory. */
static const kcase_t k_cases[] = {
    {"rc_softmax_32k", FLAGOS_FLOAT32, 40, 32768, false, 256},
    {"rc_softmax_f16_32k", FLAGOS_FLOAT16, 24, 32768, false, 256},
    {"rc_softmax_bf16_odd", FLAGOS_BFLOAT16, 8, 33333, false, 268},
    {"rc_softmax_f64_20k", FLAGOS_FLOAT64, 16, 20000, false, 128},
    {"rc_softmax_50k", FLAGOS_FLOAT32, 8, 50000, false, 384},
    {"rc_scaled_24k", FLAGOS_FLOAT32, 12, 24576, true, 384},
    {"rc_softmax_16k", FLAGOS_FLOAT32, 16, 16384, false, 0},
    {"rc_softmax_1k", FLAGOS_FLOAT32, 64, 1000, false, 0},
};
#define N_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

static kir_expr_t *as(fl_arena_t *A, flagos_dtype_t to, flagos_dtype_t from, kir_expr_t *x) {
  return to == from ? x : kir_cast(A, to, x);
}

static kir_kernel_t *build(fl_arena_t *A, const kcase_t *c) {
  kir_kernel_t *k = kir_kernel_create(A, c->name);
  kir_expr_t *ext[2] = {kir_i64(A, c->rows), kir_i64(A, c->n)}, *v[2], *n = ext[1];
  flagos_dtype_t ct = c->dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  int x = kir_add_buf(k, "x", c->dt, 2, ext), z = c->two ? kir_add_buf(k, "z", c->dt, 2, ext) : -1;
  int y = kir_add_buf(k, "y", c->dt, 2, ext);
  kir_set_space(k, 2, ext, v);
  int j1 = kir_new_var(k), j2 = kir_new_var(k);
  kir_expr_t *i1[2] = {v[0], kir_var(A, j1)}, *i2[2] = {v[0], kir_var(A, j2)};
  kir_expr_t *out;
  if (c->two) {
    kir_expr_t *p = kir_mul(A, as(A, ct, c->dt, kir_load(k, x, i1)), as(A, ct, c->dt, kir_load(k, z, i1)));
    kir_expr_t *sum = kir_reduce(A, KIR_RSUM, 1, &j1, &n, p);
    out = kir_bin(A, KIR_DIV, kir_mul(A, as(A, ct, c->dt, kir_load(k, x, v)), as(A, ct, c->dt, kir_load(k, z, v))),
                  sum);
  } else {
    kir_expr_t *m = kir_reduce(A, KIR_RMAX, 1, &j1, &n, as(A, ct, c->dt, kir_load(k, x, i1)));
    kir_expr_t *e = kir_un(A, KIR_EXP, kir_sub(A, as(A, ct, c->dt, kir_load(k, x, i2)), m));
    kir_expr_t *den = kir_reduce(A, KIR_RSUM, 1, &j2, &n, e);
    out = kir_bin(A, KIR_DIV, kir_un(A, KIR_EXP, kir_sub(A, as(A, ct, c->dt, kir_load(k, x, v)), m)), den);
  }
  kir_store(k, y, v, as(A, c->dt, ct, out), NULL);
  return k;
}

/* The emitted source of case c and its published size (-1: none). */
static char *emit(const kcase_t *c, int *units) {
  fl_arena_t *A = fl_arena_create();
  kir_kernel_t *k = build(A, c);
  fl_buf_t src = {0};
  flagos_status_t st = cgen_cuda_emit(&k, 1, &src);
  CHECK(!st, "%s emits: %s", c->name, msg(st));
  flagos_status_free(st);
  fl_arena_destroy(A);
  char pat[128];
  snprintf(pat, sizeof pat, "fo_dynsmem_%s[", c->name);
  const char *p = src.data ? strstr(src.data, pat) : NULL;
  *units = p ? atoi(p + strlen(pat)) : -1;
  return src.data;
}

/* ---- the GPU part ---- */
/* The expected rows, in double precision from the values the kernel reads. */
static double *reference(const kcase_t *c, const double *x, const double *z) {
  double *want = malloc(sizeof(double) * (size_t)(c->rows * c->n));
  for (int64_t r = 0; want && r < c->rows; r++) {
    const double *xr = x + r * c->n, *zr = z ? z + r * c->n : NULL;
    double *wr = want + r * c->n, s = 0, m = -INFINITY;
    if (c->two) {
      for (int64_t i = 0; i < c->n; i++) s += xr[i] * zr[i];
      for (int64_t i = 0; i < c->n; i++) wr[i] = xr[i] * zr[i] / s;
      continue;
    }
    for (int64_t i = 0; i < c->n; i++) m = xr[i] > m ? xr[i] : m;
    for (int64_t i = 0; i < c->n; i++) s += exp(xr[i] - m);
    for (int64_t i = 0; i < c->n; i++) wr[i] = exp(xr[i] - m) / s;
  }
  return want;
}

/* Runs c's kernel from `src` (plain launch, then a captured graph) and
 * compares with the reference; `what` names the variant in messages. */
static void run_case(const flagos_backend_t *api, void *state, const kcase_t *c, const char *src, const char *what,
                     const char *cache) {
  void *blob = NULL;
  size_t nb = 0;
  flagos_status_t st = cgen_cuda_compile(src, strlen(src), "sm_90", cache, &blob, &nb);
  CHECK(!st, "%s (%s) compiles: %s", c->name, what, msg(st));
  flagos_status_free(st);
  if (!blob) return;
  flagos_bmodule_t mod = NULL;
  flagos_bkernel_t kern = NULL;
  st = api->module_load(state, 0, blob, nb, &mod);
  if (!st) st = api->kernel_get(state, mod, c->name, &kern);
  CHECK(!st, "%s (%s) loads: %s", c->name, what, msg(st));
  flagos_status_free(st);
  free(blob);
  if (!kern) {
    if (mod) api->module_unload(state, mod);
    return;
  }
  size_t count = (size_t)(c->rows * c->n), bytes = count * dt_size(c->dt);
  double *x = malloc(sizeof(double) * count), *z = c->two ? malloc(sizeof(double) * count) : NULL;
  void *hx = malloc(bytes), *hz = malloc(bytes), *hy = malloc(bytes);
  flagos_devptr_t d[3] = {0};
  for (size_t i = 0; i < count; i++) {
    /* values the element type holds exactly, so the reference sees what the kernel reads */
    put(hx, c->dt, i, c->two ? 1 + 0.5 * rnd() : 8 * rnd());
    x[i] = get(hx, c->dt, i);
    if (z) {
      put(hz, c->dt, i, 1 + 0.5 * rnd());
      z[i] = get(hz, c->dt, i);
    }
  }
  double *want = reference(c, x, z);
  int nbuf = c->two ? 3 : 2;
  for (int i = 0; i < nbuf && !st; i++) st = api->mem_alloc(state, 0, bytes, &d[i]);
  if (!st) st = api->copy_h2d(state, NULL, d[0], 0, hx, bytes);
  if (!st && z) st = api->copy_h2d(state, NULL, d[1], 0, hz, bytes);
  flagos_launch_t la = {d, nbuf, NULL, 0, c->rows * c->n};
  if (!want) st = flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int pass = 0; pass < 2 && !st; pass++) {
    memset(hy, 0, bytes);
    st = api->copy_h2d(state, NULL, d[nbuf - 1], 0, hy, bytes);
    /* the copy may still run on the default stream; the graph's stream is not
     * ordered after it */
    if (!st) st = api->stream_sync(state, NULL);
    if (!st && pass == 0) st = api->launch(state, NULL, kern, &la);
    if (!st && pass == 1) {
      /* through a graph: the launch's shared memory is part of what is captured */
      flagos_bstream_t s = NULL;
      flagos_bgraph_t g = NULL;
      st = api->stream_create(state, 0, &s);
      if (!st) st = api->capture_begin(state, 0, s);
      if (!st) st = api->launch(state, s, kern, &la);
      if (!st) st = api->capture_end(state, 0, s, &g);
      if (!st) st = api->graph_launch(state, g, s);
      if (!st) st = api->stream_sync(state, s);
      if (g) api->graph_destroy(state, g);
      if (s) api->stream_destroy(state, s);
    }
    if (!st) st = api->copy_d2h(state, NULL, hy, d[nbuf - 1], 0, bytes);
    CHECK(!st, "%s (%s, %s) runs: %s", c->name, what, pass ? "graph" : "launch", msg(st));
    if (st) break;
    /* f32 math: a few ulps of exp and of the row's sum; 16-bit results: their rounding */
    double tol = c->dt == FLAGOS_FLOAT64 ? 1e-12 : c->dt == FLAGOS_FLOAT32 ? 2e-5 : c->dt == FLAGOS_FLOAT16 ? 2e-3 : 1e-2;
    /* f16 results of 32k-wide rows are mostly subnormal: spaced 2^-24 apart */
    double abs_tol = c->dt == FLAGOS_FLOAT16 ? 6e-8 : 1e-30;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < count; i++) {
      double got = get(hy, c->dt, i);
      if (!(fabs(got - want[i]) <= tol * fabs(want[i]) + abs_tol)) {
        if (!bad) first = i;
        bad++;
      }
    }
    CHECK(bad == 0, "%s (%s, %s): %zu of %zu elements differ from the reference (first at row %zu column %zu)",
          c->name, what, pass ? "graph" : "launch", bad, count, first / (size_t)c->n, first % (size_t)c->n);
  }
  flagos_status_free(st);
  for (int i = 0; i < 3; i++)
    if (d[i]) api->mem_free(state, 0, d[i]);
  api->module_unload(state, mod);
  free(x);
  free(z);
  free(want);
  free(hx);
  free(hz);
  free(hy);
}

int main(void) {
  int major = 0, minor = 0;
  if (!cgen_cuda_available(&major, &minor)) {
    printf("test_cuda_rowcache: SKIP: NVRTC not found\n");
    return 0;
  }
  char cache[] = "/tmp/flagos-rowcache-XXXXXX";
  CHECK(mkdtemp(cache) != NULL, "temporary cache directory");
  char *src[N_CASES], *def[N_CASES];
  /* off by default: every row keeps to registers (and memory); these sources
   * run on a GPU too (with $FLAGOS_CODEGEN_WIDE_BLOCK in the environment, in
   * wider blocks) */
  unsetenv("FLAGOS_CODEGEN_ROW_SHARED");
  for (int i = 0; i < N_CASES; i++) {
    int units = 0;
    char *t = def[i] = emit(&k_cases[i], &units);
    CHECK(t && units < 0 && !strstr(t, "fo_rsm"), "%s does not use shared memory by default", k_cases[i].name);
  }
  setenv("FLAGOS_CODEGEN_ROW_SHARED", "98304", 1);
  for (int i = 0; i < N_CASES; i++) {
    const kcase_t *c = &k_cases[i];
    int units = 0;
    src[i] = emit(c, &units);
    const char *t = src[i] ? src[i] : "";
    if (c->dyn_units) {
      CHECK(units == c->dyn_units && strstr(t, "fo_rsm_ok") && strstr(t, "%%dynamic_smem_size"),
            "%s keeps %d bytes of its rows in dynamic shared memory, publishing it (got %d units)", c->name,
            c->dyn_units * 256, units);
    } else {
      CHECK(units < 0 && !strstr(t, "fo_rsm"), "%s keeps its rows in registers alone", c->name);
    }
    void *blob = NULL;
    size_t nb = 0;
    flagos_status_t st = cgen_cuda_compile(t, strlen(t), "sm_90", cache, &blob, &nb);
    CHECK(!st && blob, "%s compiles for sm_90: %s", c->name, msg(st));
    flagos_status_free(st);
    free(blob);
  }

  const flagos_backend_t *api = load_plugin();
  void *state = api ? start(api) : NULL;
  if (!state || api->device_count(state) == 0) {
    printf("test_cuda_rowcache: SKIP the GPU part: no CUDA device\n");
  } else {
    for (int i = 0; i < N_CASES; i++)
      if (def[i]) run_case(api, state, &k_cases[i], def[i], "default", cache);
    for (int i = 0; i < N_CASES; i++) {
      if (!src[i]) continue;
      run_case(api, state, &k_cases[i], src[i], "shared memory", cache);
      /* without the published size the plugin gives no shared memory: the
       * kernel must notice and read those elements from memory */
      char *p = strstr(src[i], "fo_dynsmem_");
      if (p) {
        memcpy(p, "fo_nodynmem", 11);
        run_case(api, state, &k_cases[i], src[i], "no shared memory", cache);
      }
    }
  }
  if (state) api->shutdown(state);
  for (int i = 0; i < N_CASES; i++) {
    free(src[i]);
    free(def[i]);
  }
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache);
  printf("test_cuda_rowcache: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
