/* The "conv" library call between the Conv lowering and the runtime (issue 4):
 * the cpu plugin's table, wrapped here, takes the call (a direct convolution
 * written out in this file) or declines it, and counts kernel launches.
 *  - The call's ints are the shapes, start pads, strides, dilations and group
 *    worked out by hand for each node, evaluated from symbols where the batch is
 *    dynamic; its buffers are X, W, (B,) Y.
 *  - Taken: none of the node's kernels is launched (ends_node skips the im2col,
 *    bias and gemm kernels after it), and the output is the call's.
 *  - Declined: the kernels run as before (im2col, bias, gemm: launched, or
 *    the gemm through the plugin's own library call).
 * Outputs are compared with ONNX Conv computed by the loop below, and a few
 * elements with values worked out by hand. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/bundle.h"
#include "compiler/compiler.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "runtime/runtime.h"

#include "check.h"
#include "wrap_cpu.h"

static bool g_decline;
static long g_convs, g_gemms;
static int64_t g_ints[16];
static int g_n_bufs;

/* Y[n,k,i,j] = B[k] + sum over (c in group, a, e) of X[n, g*Cg + c, i*sh - ph + a*dh, j*sw - pw + e*dw] * W[k, c, a, e] */
static void direct_conv(const float *X, const float *W, const float *B, float *Y, const int64_t *v) {
  int64_t N = v[0], C = v[1], H = v[2], Wd = v[3], K = v[4], OH = v[5], OW = v[6], kh = v[7], kw = v[8];
  int64_t G = v[15], Cg = C / G, Kg = K / G;
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      for (int64_t i = 0; i < OH; i++)
        for (int64_t j = 0; j < OW; j++) {
          double acc = B ? B[k] : 0;
          for (int64_t c = 0; c < Cg; c++)
            for (int64_t a = 0; a < kh; a++)
              for (int64_t e = 0; e < kw; e++) {
                int64_t y = i * v[11] - v[9] + a * v[13], x = j * v[12] - v[10] + e * v[14];
                if (y < 0 || y >= H || x < 0 || x >= Wd) continue;
                acc += (double)X[((n * C + k / Kg * Cg + c) * H + y) * Wd + x] * W[((k * Cg + c) * kh + a) * kw + e];
              }
          Y[((n * K + k) * OH + i) * OW + j] = (float)acc;
        }
}

static flagos_status_t f_library_call(void *st, flagos_bstream_t s, const flagos_libcall_t *c) {
  if (strcmp(c->name, "conv") != 0) {
    flagos_status_t r = g_real->library_call(st, s, c);
    if (!r) g_gemms++;
    return r;
  }
  g_convs++;
  g_n_bufs = c->n_bufs;
  memcpy(g_ints, c->ints, sizeof(int64_t) * (size_t)(c->n_ints < 16 ? c->n_ints : 16));
  if (g_decline) return flagos_status_new(FLAGOS_ERR_UNSUPPORTED, "test: conv declined");
  if (c->n_ints != 16 || (c->n_bufs != 3 && c->n_bufs != 4))
    return flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "test: conv signature");
  direct_conv(c->bufs[0], c->bufs[1], c->n_bufs == 4 ? c->bufs[2] : NULL, c->bufs[c->n_bufs - 1], c->ints);
  return NULL;
}


static flagos_bundle_t *bundle_of(const char *text) {
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(text, strlen(text), &m);
  CHECK(!st, "FlagIR parses: %s", st ? flagos_status_message(st) : "");
  void *img = NULL;
  size_t n = 0;
  flagos_compile_options_t o = {.targets = "cpu"};
  if (!st) st = compiler_build_bundle(m, &o, &img, &n);
  if (m) fir_model_destroy(m);
  bundle_file_t *f = NULL;
  flagos_bundle_t *b = NULL;
  if (!st) st = bundle_file_from_memory(img, n, true, &f);
  if (!st) st = rt_bundle_from_file(f, &b);
  CHECK(!st, "compile: %s", st ? flagos_status_message(st) : "");
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

typedef struct ccase {
  const char *name;
  const char *text;
  int64_t batch;     /* the run's N */
  int64_t ints[16];  /* the call's ints, by hand */
  bool bias;
  long kernels;      /* launches when declined */
} ccase_t;

static void run_case(const ccase_t *c) {
  flagos_bundle_t *b = bundle_of(c->text);
  if (!b) return;
  const int64_t *v = c->ints;
  int64_t xd[4] = {c->batch, v[1], v[2], v[3]}, wd[4] = {v[4], v[1] / v[15], v[7], v[8]}, bd[1] = {v[4]};
  size_t nx = (size_t)(xd[0] * xd[1] * xd[2] * xd[3]), nw = (size_t)(wd[0] * wd[1] * wd[2] * wd[3]);
  size_t ny = (size_t)(c->batch * v[4] * v[5] * v[6]);
  float *X = malloc(nx * 4), *W = malloc(nw * 4), *B = malloc((size_t)v[4] * 4), *ref = malloc(ny * 4);
  for (size_t i = 0; i < nx; i++) X[i] = (float)((int)(i * 7 % 11) - 5) / 4;
  for (size_t i = 0; i < nw; i++) W[i] = (float)((int)(i * 5 % 9) - 4) / 8;
  for (int64_t i = 0; i < v[4]; i++) B[i] = (float)i - 1.5f;
  int64_t rv[16];
  memcpy(rv, v, sizeof rv);
  rv[0] = c->batch;
  direct_conv(X, W, c->bias ? B : NULL, ref, rv);
  flagos_value_t in[3] = {tensor(X, 4, xd), tensor(W, 4, wd), tensor(B, 1, bd)};
  for (int decline = 0; decline < 2; decline++) {
    g_decline = decline;
    g_launches = g_convs = g_gemms = 0;
    memset(g_ints, 0, sizeof g_ints);
    flagos_session_options_t o = {.device = "cpu"};
    flagos_session_t *s = NULL;
    flagos_status_t st = flagos_session_create(b, &o, &s);
    flagos_value_t out;
    memset(&out, 0, sizeof out);
    if (!st) st = flagos_session_run(s, in, c->bias ? 3 : 2, &out, 1);
    CHECK(!st, "%s: run: %s", c->name, st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    if (s) flagos_session_destroy(s);
    if (st) continue;
    CHECK(g_convs == 1, "%s: one conv call (got %ld)", c->name, g_convs);
    CHECK(g_n_bufs == (c->bias ? 4 : 3), "%s: %d buffers", c->name, g_n_bufs);
    for (int i = 0; i < 16; i++)
      CHECK(g_ints[i] == rv[i], "%s: int %d of the call is %lld, by hand %lld", c->name, i, (long long)g_ints[i],
            (long long)rv[i]);
    if (decline)
      CHECK(g_launches + g_gemms == c->kernels, "%s declined: %ld kernels launched and %ld gemm calls, expected %ld in all",
            c->name, g_launches, g_gemms, c->kernels);
    else
      CHECK(g_launches == 0 && g_gemms == 0, "%s taken: the node's kernels are skipped (%ld launched, %ld gemm calls)",
            c->name, g_launches, g_gemms);
    bool ok = out.tensor.rank == 4 && (size_t)flagos_tensor_numel(&out.tensor) == ny;
    for (size_t i = 0; ok && i < ny; i++) ok = fabsf(((float *)out.tensor.data)[i] - ref[i]) <= 1e-5f * (1 + fabsf(ref[i]));
    CHECK(ok, "%s (%s): output differs from the direct convolution", c->name, decline ? "declined" : "taken");
    flagos_value_clear(&out);
  }
  free(X);
  free(W);
  free(B);
  free(ref);
  flagos_bundle_close(b);
}

/* Two elements of the direct convolution, worked out by hand: a 1x1x3x3 input
 * 1..9, an all-ones 3x3 kernel, pad 1, bias 0.5: Y[0,0,0,0] = 1+2+4+5 + 0.5,
 * Y[0,0,1,1] = 45 + 0.5. */
static void check_reference(void) {
  float X[9], W[9], B[1] = {0.5f}, Y[9];
  for (int i = 0; i < 9; i++) {
    X[i] = (float)(i + 1);
    W[i] = 1;
  }
  const int64_t v[16] = {1, 1, 3, 3, 1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  direct_conv(X, W, B, Y, v);
  CHECK(Y[0] == 12.5f && Y[4] == 45.5f && Y[8] == 28.5f, "the reference loop: %g %g %g", Y[0], Y[4], Y[8]);
}

int main(void) {
  check_reference();
  if (!wrap_cpu(f_library_call)) {
    printf("test_conv_libcall: %d checks, %d failures\n", checks, failures);
    return 1;
  }
  static const ccase_t cases[] = {
      {"3x3 pad 1 bias, dynamic batch",
       "flagir 1\nir_version 10\nopset \"\" 23\n"
       "graph \"g\" (%x: f32[N,4,7,6], %w: f32[8,4,3,3], %b: f32[8]) -> (%y) {\n"
       "  %y = Conv \"conv\" (%x, %w, %b) {kernel_shape = [3, 3], pads = [1, 1, 1, 1]}\n}\n",
       2, {2, 4, 7, 6, 8, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, 3},
      {"stride 2, dilation 2, no bias",
       "flagir 1\nir_version 10\nopset \"\" 23\n"
       "graph \"g\" (%x: f32[1,3,9,10], %w: f32[5,3,3,2]) -> (%y) {\n"
       "  %y = Conv \"conv\" (%x, %w) {kernel_shape = [3, 2], pads = [2, 0, 2, 0], strides = [2, 1],"
       " dilations = [2, 3]}\n}\n",
       1, {1, 3, 9, 10, 5, 5, 7, 3, 2, 2, 0, 2, 1, 2, 3, 1}, false, 2},
      {"SAME_UPPER stride 2, group 2, bias",
       "flagir 1\nir_version 10\nopset \"\" 23\n"
       "graph \"g\" (%x: f32[1,8,8,8], %w: f32[16,4,3,3], %b: f32[16]) -> (%y) {\n"
       "  %y = Conv \"conv\" (%x, %w, %b) {kernel_shape = [3, 3], auto_pad = \"SAME_UPPER\", strides = [2, 2],"
       " group = 2}\n}\n",
       1, {1, 8, 8, 8, 16, 4, 4, 3, 3, 0, 0, 2, 2, 1, 1, 2}, true, 3},
      {"pointwise with bias",
       "flagir 1\nir_version 10\nopset \"\" 23\n"
       "graph \"g\" (%x: f32[2,6,5,5], %w: f32[4,6,1,1], %b: f32[4]) -> (%y) {\n"
       "  %y = Conv \"conv\" (%x, %w, %b) {kernel_shape = [1, 1]}\n}\n",
       2, {2, 6, 5, 5, 4, 5, 5, 1, 1, 0, 0, 1, 1, 1, 1, 1}, true, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
  printf("test_conv_libcall: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
