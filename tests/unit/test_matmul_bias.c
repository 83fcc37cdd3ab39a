/* MatMul + bias as one gemm call with a bias epilogue (issue 4):
 * (a) the fusion pass turns MatMul(A, W) read only by Add(·, b) with b a
 *     constant vector over the last axis into one ai.flagos::MatMulBias node;
 *     a product also read elsewhere, a bias of the product's full shape, or
 *     FLAGOS_FUSE=0 leave the graph alone;
 * (b) run on the cpu through a wrapped plugin table: the first kernel of the
 *     node (MatMulBias, and Gemm with a 1-D C) carries a "gemm" call with 4
 *     buffers [A, B, Y, bias], marked ends_node, with the ints worked out by
 *     hand. Taken (the wrapper computes it, as cuBLASLt's epilogue would), none
 *     of the node's kernels runs; declined (the plugin's own answer: OpenBLAS
 *     has no epilogue), the bias kernel and the plain gemm call run. Either
 *     way the output equals the loop below (values checked by hand);
 * (c) the same models on the opencl plugin (PoCL), where present. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/bundle.h"
#include "check.h"
#include "fir_util.h"
#include "wrap_cpu.h"
#include "compiler/compiler.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "passes/passes.h"
#include "runtime/runtime.h"

static bool g_take;
static long g_bias_calls, g_plain_calls;
static int64_t g_ints[9];
static double g_floats[2];

/* Y_b = alpha * op(A_b) op(B_b) + beta * Y_b + bias, row-major (docs/kernel-ir.md, gemm). */
static void ref_gemm(const float *A, const float *B, float *Y, const float *bias, const int64_t *v, const double *f) {
  int64_t batch = v[0], M = v[1], N = v[2], K = v[3];
  for (int64_t b = 0; b < batch; b++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) {
          double x = v[4] ? A[b * v[6] + k * M + i] : A[b * v[6] + i * K + k];
          double y = v[5] ? B[b * v[7] + j * K + k] : B[b * v[7] + k * N + j];
          acc += x * y;
        }
        float *y = &Y[b * v[8] + i * N + j];
        double old = f[1] != 0 ? f[1] * *y : 0;
        *y = (float)(f[0] * acc + old + (bias ? bias[j] : 0));
      }
}

static flagos_status_t f_library_call(void *st, flagos_bstream_t s, const flagos_libcall_t *c) {
  if (strcmp(c->name, "gemm") != 0 || c->n_bufs != 4) {
    flagos_status_t r = g_real->library_call(st, s, c);
    if (!r) g_plain_calls++;
    return r;
  }
  g_bias_calls++;
  memcpy(g_ints, c->ints, sizeof(int64_t) * 9);
  memcpy(g_floats, c->floats, sizeof(double) * 2);
  if (!g_take) return g_real->library_call(st, s, c); /* the plugin's own answer */
  if (c->n_ints != 9 || c->n_floats != 2 || c->buf_dtypes[3] != FLAGOS_FLOAT32)
    return flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "test: gemm signature");
  ref_gemm(c->bufs[0], c->bufs[1], c->bufs[2], c->bufs[3], c->ints, c->floats);
  return NULL;
}


static flagos_bundle_t *bundle_of(const char *text, const char *target) {
  fir_model_t *m = parse(text);
  if (!m) return NULL;
  void *img = NULL;
  size_t n = 0;
  flagos_compile_options_t o = {.targets = target};
  flagos_status_t st = compiler_build_bundle(m, &o, &img, &n);
  fir_model_destroy(m);
  bundle_file_t *f = NULL;
  flagos_bundle_t *b = NULL;
  if (!st) st = bundle_file_from_memory(img, n, true, &f);
  if (!st) st = rt_bundle_from_file(f, &b);
  CHECK(!st, "compile for %s: %s", target, st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  return b;
}

static flagos_value_t tensor(float *data, int rank, const int64_t *dims) {
  flagos_value_t v;
  memset(&v, 0, sizeof v);
  v.kind = FLAGOS_VALUE_TENSOR;
  v.tensor.dtype = FLAGOS_FLOAT32;
  v.tensor.rank = rank;
  size_t n = 1;
  for (int i = 0; i < rank; i++) {
    v.tensor.dims[i] = dims[i];
    n *= (size_t)dims[i];
  }
  v.tensor.data = data;
  v.tensor.nbytes = n * sizeof(float);
  return v;
}

/* A batched MatMul of A [2,3,4] by a constant W [4,5] plus a constant b [5]
 * (BERT's shape, small): W[k][j] = k - j, b[j] = j / 2. */
static const char k_matmul_bias[] =
    "flagir 1\nir_version 8\nopset \"\" 17\n"
    "graph \"g\" (%a: f32[2,3,4]) -> (%y: f32[2,3,5]) {\n"
    "  %w: f32[4,5] = const [0, -1, -2, -3, -4, 1, 0, -1, -2, -3, 2, 1, 0, -1, -2, 3, 2, 1, 0, -1]\n"
    "  %b: f32[5] = const [0, 0.5, 1, 1.5, 2]\n"
    "  %p: f32[2,3,5] = MatMul \"mm\" (%a, %w)\n"
    "  %y: f32[2,3,5] = Add \"add\" (%b, %p)\n"
    "}\n";

/* ONNX Gemm with transB, alpha 2 and a 1-D C: Y = 2 * A W^T + c. */
static const char k_gemm[] =
    "flagir 1\nir_version 8\nopset \"\" 17\n"
    "graph \"g\" (%a: f32[3,4]) -> (%y: f32[3,5]) {\n"
    "  %w: f32[5,4] = const [0, 1, 2, 3, -1, 0, 1, 2, -2, -1, 0, 1, -3, -2, -1, 0, -4, -3, -2, -1]\n"
    "  %c: f32[5] = const [0, 0.5, 1, 1.5, 2]\n"
    "  %y: f32[3,5] = Gemm \"gemm\" (%a, %w, %c) {alpha = 2.0, transB = 1}\n"
    "}\n";

static void check_pass(void) {
  fir_model_t *m = parse(k_matmul_bias);
  if (m) {
    flagos_status_t st = pass_run_default(m, NULL);
    CHECK(!st, "passes: %s", st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    CHECK(count_op(m, "MatMulBias") == 1 && count_op(m, "MatMul") == 0 && count_op(m, "Add") == 0,
          "MatMul + Add(b) became one MatMulBias (%d MatMulBias, %d MatMul, %d Add)", count_op(m, "MatMulBias"),
          count_op(m, "MatMul"), count_op(m, "Add"));
    fir_model_destroy(m);
  }
  static const char *const keep[] = {
      /* the product is a graph output too */
      "flagir 1\nir_version 8\nopset \"\" 17\n"
      "graph \"g\" (%a: f32[3,4], %w: f32[4,5]) -> (%y: f32[3,5], %p: f32[3,5]) {\n"
      "  %b: f32[5] = const [0, 0.5, 1, 1.5, 2]\n"
      "  %p: f32[3,5] = MatMul(%a, %w)\n  %y: f32[3,5] = Add(%p, %b)\n}\n",
      /* a bias of the product's full shape */
      "flagir 1\nir_version 8\nopset \"\" 17\n"
      "graph \"g\" (%a: f32[2,4], %w: f32[4,2]) -> (%y: f32[2,2]) {\n"
      "  %b: f32[2,2] = const [0, 0.5, 1, 1.5]\n"
      "  %p: f32[2,2] = MatMul(%a, %w)\n  %y: f32[2,2] = Add(%p, %b)\n}\n",
      /* a bias that is a graph input, not a constant */
      "flagir 1\nir_version 8\nopset \"\" 17\n"
      "graph \"g\" (%a: f32[3,4], %w: f32[4,5], %b: f32[5]) -> (%y: f32[3,5]) {\n"
      "  %p: f32[3,5] = MatMul(%a, %w)\n  %y: f32[3,5] = Add(%p, %b)\n}\n",
  };
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    m = parse(keep[i]);
    if (!m) continue;
    flagos_status_t st = pass_run_default(m, NULL);
    CHECK(!st, "passes: %s", st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    CHECK(count_op(m, "MatMulBias") == 0 && count_op(m, "MatMul") == 1, "case %zu: MatMul left alone", i);
    fir_model_destroy(m);
  }
  setenv("FLAGOS_FUSE", "0", 1);
  m = parse(k_matmul_bias);
  if (m) {
    flagos_status_t st = pass_run_default(m, NULL);
    flagos_status_free(st);
    CHECK(count_op(m, "MatMulBias") == 0 && count_op(m, "MatMul") == 1, "FLAGOS_FUSE=0 leaves MatMul + Add");
    fir_model_destroy(m);
  }
  unsetenv("FLAGOS_FUSE");
}

typedef struct mcase {
  const char *name, *text;
  int rank;
  int64_t adims[3];
  int64_t ints[9]; /* the call's, by hand */
  double floats[2];
  const float *w, *bias; /* the constants of the text */
  float y0, ylast;       /* Y's first and last elements, by hand */
} mcase_t;

static void run_case(const mcase_t *c, const char *target, const char *device, bool wrapped) {
  flagos_bundle_t *b = bundle_of(c->text, target);
  if (!b) return;
  const int64_t *v = c->ints;
  int64_t na = v[0] * v[1] * v[3], ny = v[0] * v[1] * v[2];
  float *A = malloc((size_t)na * 4), *ref = malloc((size_t)ny * 4);
  for (int64_t i = 0; i < na; i++) A[i] = (float)i / 4; /* A[..] = 0, 0.25, 0.5 ... */
  memset(ref, 0, (size_t)ny * 4);
  ref_gemm(A, c->w, ref, c->bias, v, c->floats);
  CHECK(ref[0] == c->y0 && ref[ny - 1] == c->ylast, "%s: the loop gives %g and %g, by hand %g and %g", c->name,
        ref[0], ref[ny - 1], c->y0, c->ylast);
  flagos_value_t in = tensor(A, c->rank, c->adims);
  for (int take = 0; take < (wrapped ? 2 : 1); take++) {
    g_take = take;
    g_launches = g_bias_calls = g_plain_calls = 0;
    memset(g_ints, 0, sizeof g_ints);
    flagos_session_options_t o = {.device = device};
    flagos_session_t *s = NULL;
    flagos_status_t st = flagos_session_create(b, &o, &s);
    flagos_value_t out;
    memset(&out, 0, sizeof out);
    if (!st) st = flagos_session_run(s, &in, 1, &out, 1);
    CHECK(!st, "%s on %s: run: %s", c->name, device, st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    if (s) flagos_session_destroy(s);
    if (st) continue;
    if (wrapped) {
      CHECK(g_bias_calls == 1, "%s: one gemm call with a bias (got %ld)", c->name, g_bias_calls);
      for (int i = 0; i < 9; i++)
        CHECK(g_ints[i] == v[i], "%s: int %d of the call is %lld, by hand %lld", c->name, i, (long long)g_ints[i],
              (long long)v[i]);
      CHECK(g_floats[0] == c->floats[0] && g_floats[1] == 0, "%s: floats %g %g", c->name, g_floats[0], g_floats[1]);
      if (take)
        CHECK(g_launches == 0 && g_plain_calls == 0, "%s taken: the node's kernels skipped (%ld launched, %ld gemm)",
              c->name, g_launches, g_plain_calls);
      else
        CHECK(g_launches == 1 && g_plain_calls == 1,
              "%s declined: the bias kernel and the plain gemm call run (%ld launched, %ld gemm)", c->name,
              g_launches, g_plain_calls);
    }
    bool ok = (int64_t)flagos_tensor_numel(&out.tensor) == ny;
    for (int64_t i = 0; ok && i < ny; i++) ok = fabsf(((float *)out.tensor.data)[i] - ref[i]) <= 1e-5f * (1 + fabsf(ref[i]));
    CHECK(ok, "%s on %s (%s): output differs from the loop", c->name, device, take ? "taken" : "declined");
    flagos_value_clear(&out);
  }
  free(A);
  free(ref);
  flagos_bundle_close(b);
}

static bool have_opencl(void) {
  flagos_bundle_t *b = bundle_of(k_gemm, "opencl");
  if (!b) return false;
  flagos_session_options_t o = {.device = "opencl"};
  flagos_session_t *s = NULL;
  flagos_status_t st = flagos_session_create(b, &o, &s);
  bool ok = !st;
  if (st) printf("test_matmul_bias: opencl skipped (%s)\n", flagos_status_message(st));
  flagos_status_free(st);
  if (s) flagos_session_destroy(s);
  flagos_bundle_close(b);
  return ok;
}

int main(void) {
  check_pass();
  static const float w_mm[20] = {0, -1, -2, -3, -4, 1, 0, -1, -2, -3, 2, 1, 0, -1, -2, 3, 2, 1, 0, -1};
  static const float w_gemm[20] = {0, 1, 2, 3, -1, 0, 1, 2, -2, -1, 0, 1, -3, -2, -1, 0, -4, -3, -2, -1};
  static const float bias[5] = {0, 0.5f, 1, 1.5f, 2};
  /* MatMul: Y[0,0,0] = sum_k A[k] W[k][0] = (0*0 + .25*1 + .5*2 + .75*3) + 0 = 3.5;
   * Y[1,2,4] = sum_k A[20+k] W[k][4] + 2 = -(5*4 + 5.25*3 + 5.5*2 + 5.75*1) + 2 = -50.5.
   * The batch of 2 over one W flattens into one product of 6 rows, but the
   * call states the lowering's batch: 2, strides 12, 0, 15. */
  static const mcase_t cases[] = {
      {"MatMulBias [2,3,4]x[4,5]+[5]", k_matmul_bias, 3, {2, 3, 4}, {2, 3, 5, 4, 0, 0, 12, 0, 15}, {1, 0},
       w_mm, bias, 3.5f, -50.5f},
      /* Gemm: Y[0,0] = 2 * (0*0 + .25*1 + .5*2 + .75*3) + 0 = 7;
       * Y[2,4] = 2 * (2*-4 + 2.25*-3 + 2.5*-2 + 2.75*-1) + 2 = -43. */
      {"Gemm transB alpha 2, C [5]", k_gemm, 2, {3, 4}, {1, 3, 5, 4, 0, 1, 0, 0, 0}, {2, 0}, w_gemm, bias, 7, -43},
  };
  if (!wrap_cpu(f_library_call)) {
    printf("test_matmul_bias: %d checks, %d failures\n", checks, failures);
    return 1;
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], "cpu", "cpu", true);
  if (have_opencl())
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], "opencl", "opencl", false);
  printf("test_matmul_bias: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
