/* The cuda plugin's "conv" library call (cuDNN).
 *  - Everywhere: with no driver and with CUDA's stub driver the plugin reports
 *    zero devices and declines conv (FLAGOS_ERR_UNSUPPORTED), naming the
 *    missing device where cuDNN is on the loader path (so its whole symbol
 *    table, the graph API's too, bound), cuDNN when FLAGOS_CUDNN_LIBRARY names
 *    one that is absent, and the switch with FLAGOS_CUDNN=0.
 *  - With a GPU (skipped here), with FLAGOS_CUDNN=1 (every shape cuDNN can do),
 *    through the graph API (f64 through the legacy one) and again with
 *    FLAGOS_CUDNN_API=legacy: conv in f32, f64, f16 and bf16 with and without
 *    bias, strides, pads, dilations, groups and a height of 1, on the default
 *    stream and on a stream of its own, twice each (the second call takes the
 *    cached plan), against a double-precision loop over the same rounded
 *    inputs; an end pad that changes the output size is declined by the
 *    legacy API, and either declined or computed right (checked against the
 *    loop) through the graph API.
 *    Without FLAGOS_CUDNN (the measured rule): small f16 and f32 convolutions,
 *    bf16, large f16 1x1 ones over 56x56, f32 1x1 ones of stride 1 and an f16
 *    7x7 one over 3 channels are declined; large f32 and f16 3x3 ones are
 *    taken and checked against the loop. */
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

/* ints: N, C, H, W, K, OH, OW, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, group */
static flagos_status_t conv_call(const flagos_backend_t *api, void *state, flagos_bstream_t stream, int32_t dt,
                                 void *x, void *w, void *b, void *y, const int64_t ints[16]) {
  flagos_devptr_t bufs[4] = {x, w, b ? b : y, y};
  int32_t dts[4] = {dt, dt, dt, dt};
  flagos_libcall_t call = {"conv", bufs, dts, b ? 4 : 3, ints, 16, NULL, 0};
  return api->library_call(state, stream, &call);
}

/* ---- without a device ---- */
static void check_no_device(const flagos_backend_t *api, const char *driver) {
  setenv("FLAGOS_CUDA_DRIVER", driver, 1);
  void *state = start(api);
  if (!state) return;
  CHECK(api->device_count(state) == 0, "driver '%s': no device", driver);
  char fake[64];
  const int64_t ints[16] = {1, 1, 3, 3, 1, 1, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1};
  flagos_status_t st = conv_call(api, state, NULL, FLAGOS_FLOAT32, fake, fake, NULL, fake, ints);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "conv"), "conv without a device is unsupported: %s", msg(st));
  void *dnn = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
  if (!dnn) dnn = dlopen("/usr/local/cuda/lib64/libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
  if (dnn) {
    CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "conv without a device"), "cuDNN binds; the device is missing: %s", msg(st));
    dlclose(dnn);
  } else {
    printf("test_cuda_dnn: no cuDNN 9 here (%s)\n", msg(st));
  }
  flagos_status_free(st);
  api->shutdown(state);

  setenv("FLAGOS_CUDNN_LIBRARY", "/nonexistent/libcudnn.so.9", 1);
  state = start(api);
  if (state) {
    st = conv_call(api, state, NULL, FLAGOS_FLOAT32, fake, fake, NULL, fake, ints);
    CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "no cuDNN"), "a missing cuDNN makes conv unsupported: %s", msg(st));
    flagos_status_free(st);
    api->shutdown(state);
  }
  unsetenv("FLAGOS_CUDNN_LIBRARY");
  setenv("FLAGOS_CUDNN", "0", 1);
  state = start(api);
  if (state) {
    st = conv_call(api, state, NULL, FLAGOS_FLOAT32, fake, fake, NULL, fake, ints);
    CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, "FLAGOS_CUDNN=0"), "FLAGOS_CUDNN=0 declines conv: %s", msg(st));
    flagos_status_free(st);
    api->shutdown(state);
  }
  unsetenv("FLAGOS_CUDNN");
  unsetenv("FLAGOS_CUDA_DRIVER");
}

/* ---- with a GPU ---- */
typedef struct ccase {
  int32_t dt;
  int64_t n, c, h, w, k, kh, kw, ph, pw, sh, sw, dh, dw, g;
  bool bias;
} ccase_t;

static int64_t out_size(int64_t in, int64_t k, int64_t p, int64_t s, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* Whether the state under test plans through cuDNN's graph API (else FLAGOS_CUDNN_API=legacy). */
static bool graph_api = true;

/* The double-precision reference of an oh x ow output (start pads ph/pw; X reads 0 outside). */
static void reference(ccase_t c, const void *X, const void *W, const void *B, int64_t oh, int64_t ow, double *ref) {
  int64_t cg = c.c / c.g, kg = c.k / c.g;
  for (int64_t n = 0; n < c.n; n++)
    for (int64_t k = 0; k < c.k; k++)
      for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++) {
          double acc = c.bias ? get(B, c.dt, (size_t)k) : 0;
          int64_t g = k / kg;
          for (int64_t q = 0; q < cg; q++)
            for (int64_t a = 0; a < c.kh; a++)
              for (int64_t e = 0; e < c.kw; e++) {
                int64_t y = i * c.sh - c.ph + a * c.dh, x = j * c.sw - c.pw + e * c.dw;
                if (y < 0 || y >= c.h || x < 0 || x >= c.w) continue;
                acc += get(X, c.dt, (size_t)(((n * c.c + g * cg + q) * c.h + y) * c.w + x)) *
                       get(W, c.dt, (size_t)(((k * cg + q) * c.kh + a) * c.kw + e));
              }
          ref[((n * c.k + k) * oh + i) * ow + j] = acc;
        }
}

/* Whether Y (ny values) matches ref within the dtype's rounding of `terms` products. */
static bool matches(ccase_t c, const void *Y, const double *ref, size_t ny) {
  /* f32: cuDNN's Winograd and FFT algorithms (which PyTorch runs too) round
   * more than a direct sum: on an H100 algorithm 7 (Winograd, non-fused) was
   * 6.1e-5 off a sum of 576 terms near 8.6, which 1e-6 did not allow; in four
   * of eight later GPU runs (the algorithm is the fastest one timed) an output
   * near 0.94 of N 8, C 64, 56x56, 3x3 was 1.2e-4 off, past 4e-6's 1.04e-4.
   * 1e-5 allows 2.6e-4 there; TF32 (10-bit mantissas: about 3e-3 over such a
   * sum) and any wrong index still fail. */
  double eps = c.dt == FLAGOS_FLOAT64   ? 1e-14
               : c.dt == FLAGOS_FLOAT32 ? 1e-5
               : c.dt == FLAGOS_FLOAT16 ? 1.0 / 1024
                                        : 1.0 / 128;
  double terms = (double)(c.c / c.g * c.kh * c.kw);
  for (size_t i = 0; i < ny; i++) {
    double got = get(Y, c.dt, i), want = ref[i];
    double tol = eps * (fabs(want) + sqrt(terms) + 1);
    if (!(fabs(got - want) <= tol)) {
      fprintf(stderr, "  element %zu: got %.9g, want %.9g\n", i, got, want);
      return false;
    }
  }
  return true;
}

static void run_case(const flagos_backend_t *api, void *state, flagos_bstream_t stream, ccase_t c) {
  int64_t oh = out_size(c.h, c.kh, c.ph, c.sh, c.dh), ow = out_size(c.w, c.kw, c.pw, c.sw, c.dw);
  int64_t cg = c.c / c.g;
  size_t nx = (size_t)(c.n * c.c * c.h * c.w), nw = (size_t)(c.k * cg * c.kh * c.kw), nb = (size_t)c.k;
  size_t ny = (size_t)(c.n * c.k * oh * ow), es = dt_size(c.dt);
  unsigned char *X = malloc(nx * es), *W = malloc(nw * es), *B = malloc(nb * es), *Y = malloc(ny * es);
  double *ref = malloc(ny * sizeof(double));
  for (size_t i = 0; i < nx; i++) put(X, c.dt, i, rnd());
  for (size_t i = 0; i < nw; i++) put(W, c.dt, i, rnd());
  for (size_t i = 0; i < nb; i++) put(B, c.dt, i, rnd());
  reference(c, X, W, B, oh, ow, ref);
  flagos_devptr_t dx = NULL, dw = NULL, db = NULL, dy = NULL;
  flagos_status_t st = api->mem_alloc(state, 0, nx * es, &dx);
  if (!st) st = api->mem_alloc(state, 0, nw * es, &dw);
  if (!st) st = api->mem_alloc(state, 0, nb * es, &db);
  if (!st) st = api->mem_alloc(state, 0, ny * es, &dy);
  if (!st) st = api->copy_h2d(state, NULL, dx, 0, X, nx * es);
  if (!st) st = api->copy_h2d(state, NULL, dw, 0, W, nw * es);
  if (!st) st = api->copy_h2d(state, NULL, db, 0, B, nb * es);
  const int64_t ints[16] = {c.n, c.c, c.h, c.w, c.k, oh, ow, c.kh, c.kw, c.ph, c.pw, c.sh, c.sw, c.dh, c.dw, c.g};
  /* Twice: the second call takes the cached plan. */
  for (int rep = 0; rep < 2 && !st; rep++) {
    for (size_t i = 0; i < ny; i++) put(Y, c.dt, i, NAN);
    st = api->copy_h2d(state, NULL, dy, 0, Y, ny * es);
    if (!st && stream) st = api->stream_sync(state, NULL); /* the uploads ran on the default stream */
    if (!st) st = conv_call(api, state, stream, c.dt, dx, dw, c.bias ? db : NULL, dy, ints);
    if (!st && stream) st = api->stream_sync(state, stream);
    if (!st) st = api->copy_d2h(state, NULL, Y, dy, 0, ny * es);
    if (st) break;
    CHECK(matches(c, Y, ref, ny), "conv dtype %d N %lld C %lld %lldx%lld K %lld kernel %lldx%lld pad %lld/%lld stride %lld/%lld dil "
              "%lld/%lld group %lld bias %d stream %d (call %d)",
          (int)c.dt, (long long)c.n, (long long)c.c, (long long)c.h, (long long)c.w, (long long)c.k, (long long)c.kh,
          (long long)c.kw, (long long)c.ph, (long long)c.pw, (long long)c.sh, (long long)c.sw, (long long)c.dh,
          (long long)c.dw, (long long)c.g, c.bias, stream != NULL, rep + 1);
  }
  CHECK(!st, "conv case runs: %s", msg(st));
  flagos_status_free(st);
  if (!st && (c.dt == FLAGOS_FLOAT32 || c.dt == FLAGOS_FLOAT16)) {
    /* An output one column wider than symmetric padding gives (a larger end pad): declined. */
    int64_t wide[16];
    memcpy(wide, ints, sizeof wide);
    wide[6] = ow + 1;
    flagos_devptr_t dy2 = NULL;
    st = api->mem_alloc(state, 0, (ny / (size_t)ow) * (size_t)(ow + 1) * es, &dy2);
    if (!st) st = conv_call(api, state, stream, c.dt, dx, dw, NULL, dy2, wide);
    if (graph_api && !is(st, FLAGOS_ERR_UNSUPPORTED, NULL)) {
      /* The graph API takes the larger end pad as a post padding where an
       * engine does (else the call is declined): the extra column reads zeros beyond W. */
      size_t ny2 = (ny / (size_t)ow) * (size_t)(ow + 1);
      unsigned char *Y2 = malloc(ny2 * es);
      double *ref2 = malloc(ny2 * sizeof(double));
      if (!st && stream) st = api->stream_sync(state, stream);
      if (!st) st = api->copy_d2h(state, NULL, Y2, dy2, 0, ny2 * es);
      CHECK(!st, "an output with a larger end pad runs through the graph API: %s", msg(st));
      if (!st) {
        ccase_t nb = c;
        nb.bias = false;
        reference(nb, X, W, NULL, oh, ow + 1, ref2);
        CHECK(matches(c, Y2, ref2, ny2), "the larger end pad's output (dtype %d)", (int)c.dt);
      }
      printf("test_cuda_dnn: an output with a larger end pad ran through the graph API\n");
      free(Y2);
      free(ref2);
    } else {
      CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "an output size cuDNN cannot pad to is declined: %s", msg(st));
    }
    flagos_status_free(st);
    st = NULL;
    if (dy2) api->mem_free(state, 0, dy2);
  }
  api->mem_free(state, 0, dx);
  api->mem_free(state, 0, dw);
  api->mem_free(state, 0, db);
  api->mem_free(state, 0, dy);
  free(X);
  free(W);
  free(B);
  free(Y);
  free(ref);
}

static void check_auto(const flagos_backend_t *api) {
  unsetenv("FLAGOS_CUDNN");
  void *state = start(api);
  if (!state) return;
  flagos_devptr_t p = NULL;
  flagos_status_t st = api->mem_alloc(state, 0, 1 << 20, &p);
  const int64_t small[16] = {2, 16, 8, 8, 16, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  if (!st) st = conv_call(api, state, NULL, FLAGOS_FLOAT16, p, p, NULL, p, small);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "a small f16 conv is left to the kernels by default: %s", msg(st));
  flagos_status_free(st);
  st = conv_call(api, state, NULL, FLAGOS_FLOAT32, p, p, NULL, p, small);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "a small f32 conv is left to the kernels by default: %s", msg(st));
  flagos_status_free(st);
  st = conv_call(api, state, NULL, FLAGOS_BFLOAT16, p, p, NULL, p, small);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "bf16 (not measured) is left to the kernels by default: %s", msg(st));
  flagos_status_free(st);
  /* Large (over 1.6 GFLOP) but measured faster as im2col + gemm: declined before any buffer is read. */
  const int64_t pw56[16] = {64, 64, 56, 56, 64, 56, 56, 1, 1, 0, 0, 1, 1, 1, 1, 1};
  const int64_t stem[16] = {8, 3, 224, 224, 64, 112, 112, 7, 7, 3, 3, 2, 2, 1, 1, 1};
  st = conv_call(api, state, NULL, FLAGOS_FLOAT16, p, p, NULL, p, pw56);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "an f16 1x1 conv over 56x56 is left to the kernels: %s", msg(st));
  flagos_status_free(st);
  st = conv_call(api, state, NULL, FLAGOS_FLOAT32, p, p, NULL, p, pw56);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "an f32 1x1 conv of stride 1 is left to the kernels: %s", msg(st));
  flagos_status_free(st);
  st = conv_call(api, state, NULL, FLAGOS_FLOAT16, p, p, NULL, p, stem);
  CHECK(is(st, FLAGOS_ERR_UNSUPPORTED, NULL), "an f16 7x7 conv of 3 channels is left to the kernels: %s", msg(st));
  flagos_status_free(st);
  if (p) api->mem_free(state, 0, p);
  /* Large enough (1.8 GFLOP) for the measured rule to take them; a failure to take one fails run_case. */
  run_case(api, state, NULL, (ccase_t){FLAGOS_FLOAT32, 8, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
  run_case(api, state, NULL, (ccase_t){FLAGOS_FLOAT16, 8, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
  api->shutdown(state);
}

static void check_gpu(const flagos_backend_t *api, void *state) {
  static const int32_t dts[4] = {FLAGOS_FLOAT32, FLAGOS_FLOAT64, FLAGOS_FLOAT16, FLAGOS_BFLOAT16};
  flagos_bstream_t stream = NULL;
  flagos_status_t st = api->stream_create(state, 0, &stream);
  CHECK(!st, "stream_create: %s", msg(st));
  flagos_status_free(st);
  for (int d = 0; d < 4; d++) {
    run_case(api, state, NULL, (ccase_t){dts[d], 2, 16, 9, 11, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
    run_case(api, state, NULL, (ccase_t){dts[d], 3, 8, 12, 10, 16, 3, 2, 0, 1, 2, 2, 1, 1, 1, false});
    run_case(api, state, NULL, (ccase_t){dts[d], 1, 8, 14, 13, 8, 3, 3, 2, 2, 1, 1, 2, 2, 1, true});
    run_case(api, state, NULL, (ccase_t){dts[d], 2, 12, 7, 7, 18, 3, 3, 1, 1, 1, 1, 1, 1, 3, true});
    run_case(api, state, NULL, (ccase_t){dts[d], 2, 8, 1, 33, 8, 1, 5, 0, 2, 1, 2, 1, 1, 1, true}); /* 1-D */
    run_case(api, state, NULL, (ccase_t){dts[d], 4, 64, 8, 8, 32, 1, 1, 0, 0, 1, 1, 1, 1, 1, true});
    if (stream) run_case(api, state, stream, (ccase_t){dts[d], 2, 16, 10, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
  }
  /* Depthwise, as MobileNets have it. */
  run_case(api, state, NULL, (ccase_t){FLAGOS_FLOAT16, 2, 32, 16, 16, 32, 3, 3, 1, 1, 2, 2, 1, 1, 32, true});
  if (stream) api->stream_destroy(state, stream);
}

int main(void) {
  const flagos_backend_t *api = load_plugin();
  if (!api) {
    printf("test_cuda_dnn: %d checks, %d failures\n", checks, failures);
    return 1;
  }
  /* The GPU part first: once CUDA's stub driver is loaded, its soname
   * (libcuda.so.1) would stand for the real driver in this process. */
  setenv("FLAGOS_CUDNN", "1", 1); /* read on the state's first conv call */
  void *state = start(api);
  bool gpu = state && api->device_count(state) > 0;
  if (gpu) check_gpu(api, state);
  else printf("test_cuda_dnn: SKIP the GPU part: no CUDA device\n");
  if (state) api->shutdown(state);
  if (gpu) {
    /* The legacy API, which f64 always takes and FLAGOS_CUDNN_API=legacy selects. */
    setenv("FLAGOS_CUDNN_API", "legacy", 1);
    graph_api = false;
    state = start(api);
    if (state) check_gpu(api, state);
    if (state) api->shutdown(state);
    unsetenv("FLAGOS_CUDNN_API");
    graph_api = true;
  }
  unsetenv("FLAGOS_CUDNN");
  if (gpu) check_auto(api);
  check_no_device(api, "/nonexistent/libcuda.so.1");
  const char *stub = "/usr/local/cuda/lib64/stubs/libcuda.so";
  if (!gpu && access(stub, R_OK) == 0) check_no_device(api, stub);
  printf("test_cuda_dnn: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
