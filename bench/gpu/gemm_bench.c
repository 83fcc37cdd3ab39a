/* flagos_gemm_bench: times a backend plugin's "gemm" library call on given
 * shapes, called back to back as a model's run calls it, and checks a sample
 * of each product's outputs against a double-precision sum on the host. It
 * measures the opencl plugin's GEMM (ocl_gemm.c) against the cuda plugin's
 * (cuBLASLt) on the same GPU in the same run (scripts/gpu/gemm.sh); the shapes
 * are those of the models' products.
 *
 * usage: flagos_gemm_bench [options] SHAPE...
 *   SHAPE     [BATCHx]MxNxK[:FLAGS]; FLAGS letters: a (A transposed), b (B
 *             transposed), + (a bias of N values: the 4-buffer call), s (A
 *             shared by the batch: strideA 0, as a convolution's weights)
 *   --backend NAME   plugin libflagos_backend_NAME.so (default opencl) in
 *                    $FLAGOS_PLUGIN_PATH, else in this build's backends folder
 *   --device I       the plugin's device index (default 0)
 *   --dtype f32|f16|f64   (default f32)
 *   --iters N        timed calls (default 100), --warmup N (default 10)
 *   --check N        outputs of each product checked (default 256; 0: none)
 *   --label TEXT     written into each line (e.g. the variant asked for)
 *
 * One JSON object per shape on stdout: backend, device, dtype, shape, label,
 * us (device time per call, by the plugin's events over the timed calls),
 * host_us (host time per call queuing them), tflops, and max_err (the
 * largest |y - exact| / sum |alpha a b| + |beta y0| + |bias| of the checked
 * outputs). Exit status: 0; 1 when a check fails (max_err above 1e-5 for
 * f32 and f64, 2e-3 for f16) or a call fails; 2 for bad usage; 77 when the
 * plugin or its device is missing. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "runtime/host_strings.h"
#include "bench_plugin.h"

typedef struct {
  int64_t batch, M, N, K;
  int ta, tb, bias, shared;
  char text[96];
} shape_t;

static const flagos_backend_t *be;
static void *bst;

static int usage(const char *why) {
  if (why) fprintf(stderr, "flagos_gemm_bench: %s\n", why);
  fprintf(stderr,
          "usage: flagos_gemm_bench [--backend NAME] [--device I] [--dtype f32|f16|f64] [--iters N] [--warmup N]\n"
          "                         [--check N] [--label TEXT] SHAPE...\n"
          "  SHAPE: [BATCHx]MxNxK[:FLAGS], FLAGS: a (A transposed), b (B transposed), + (bias), s (A shared)\n"
          "  prints one JSON object per shape (device time per call, host time, TFLOP/s, checked error)\n");
  return 2;
}

static bool parse_shape(const char *arg, shape_t *s) {
  memset(s, 0, sizeof(*s));
  snprintf(s->text, sizeof s->text, "%s", arg);
  int64_t v[4];
  const char *p = arg;
  int n = bench_dims(&p, v, 4, 1LL << 30);
  if (n == 3) {
    s->batch = 1, s->M = v[0], s->N = v[1], s->K = v[2];
  } else if (n == 4) {
    s->batch = v[0], s->M = v[1], s->N = v[2], s->K = v[3];
  } else {
    return false;
  }
  int on[4] = {0};
  if (!bench_flags(p, "ab+s", on)) return false;
  s->ta = on[0], s->tb = on[1], s->bias = on[2], s->shared = on[3];
  return true;
}

static const char *code_msg(flagos_status_t st) { return st ? flagos_status_message(st) : "ok"; }

/* Runs one shape; prints its line. 0 ok, 1 failed. */
static int run_shape(int dev, flagos_dtype_t dt, const shape_t *s, int iters, int warmup, int n_check,
                     const char *label, const char *backend, const char *dev_name) {
  size_t es = flagos_dtype_size(dt);
  int64_t sa = s->shared ? 0 : s->M * s->K, sb = s->K * s->N, sy = s->M * s->N;
  size_t na = (size_t)((s->batch - 1) * sa + s->M * s->K), nb = (size_t)(s->batch * sb), ny = (size_t)(s->batch * sy);
  void *ha = malloc(na * es), *hb = malloc(nb * es), *hy = malloc(ny * es), *hbias = malloc((size_t)s->N * es);
  int rc = 1;
  flagos_devptr_t bufs[4] = {0};
  flagos_bevent_t ev[2] = {NULL, NULL};
  flagos_status_t st = NULL;
  if (!ha || !hb || !hy || !hbias) {
    fprintf(stderr, "flagos_gemm_bench: %s: out of host memory\n", s->text);
    goto done;
  }
  uint64_t seed = 12345;
  for (size_t i = 0; i < na; i++) rt_hs_store_float(dt, ha, (int64_t)i, bench_rnd(&seed));
  for (size_t i = 0; i < nb; i++) rt_hs_store_float(dt, hb, (int64_t)i, bench_rnd(&seed));
  for (int64_t j = 0; j < s->N; j++) rt_hs_store_float(dt, hbias, j, bench_rnd(&seed));
  /* beta 0: Y's old contents must not matter; NaN makes a kernel that reads them fail the check */
  for (size_t i = 0; i < ny; i++) rt_hs_store_float(dt, hy, (int64_t)i, NAN);
  size_t sizes[4] = {na * es, nb * es, ny * es, (size_t)s->N * es};
  const void *host[4] = {ha, hb, hy, hbias};
  int n_bufs = s->bias ? 4 : 3;
  st = bench_setup(be, bst, dev, n_bufs, sizes, host, bufs, ev);
  if (st) {
    fprintf(stderr, "flagos_gemm_bench: %s: setting up: %s\n", s->text, code_msg(st));
    goto done;
  }
  int32_t dts[4] = {dt, dt, dt, dt};
  int64_t ints[9] = {s->batch, s->M, s->N, s->K, s->ta, s->tb, sa, sb, sy};
  double fl[2] = {1.0, 0.0};
  flagos_libcall_t call = {"gemm", bufs, dts, n_bufs, ints, 9, fl, 2};
  double us = 0, host_us = 0;
  st = bench_time(be, bst, &call, warmup, iters, ev, &us, &host_us);
  if (!st) st = be->copy_d2h(bst, NULL, hy, bufs[2], 0, ny * es);
  if (st) {
    fprintf(stderr, "flagos_gemm_bench: %s on %s: %s\n", s->text, backend, code_msg(st));
    goto done;
  }
  /* the check: sampled outputs against the exact sum of the inputs as stored */
  double max_err = 0;
  uint64_t pick = 777;
  for (int c = 0; c < n_check; c++) {
    int64_t b = (int64_t)((bench_rnd(&pick) + 1) / 2 * (double)s->batch), i = (int64_t)((bench_rnd(&pick) + 1) / 2 * (double)s->M),
            j = (int64_t)((bench_rnd(&pick) + 1) / 2 * (double)s->N);
    if (b >= s->batch) b = s->batch - 1;
    if (i >= s->M) i = s->M - 1;
    if (j >= s->N) j = s->N - 1;
    double sum = 0, mag = 0;
    for (int64_t k = 0; k < s->K; k++) {
      size_t ai = (size_t)(b * sa + (s->ta ? k * s->M + i : i * s->K + k));
      size_t bi = (size_t)(b * sb + (s->tb ? j * s->K + k : k * s->N + j));
      double p = fl_load_as_double(dt, ha, ai) * fl_load_as_double(dt, hb, bi);
      sum += p;
      mag += fabs(p);
    }
    if (s->bias) {
      double bv = fl_load_as_double(dt, hbias, (size_t)j);
      sum += bv;
      mag += fabs(bv);
    }
    double got = fl_load_as_double(dt, hy, (size_t)(b * sy + i * s->N + j));
    double err = fabs(got - sum) / (mag > 0 ? mag : 1);
    if (!(err <= max_err)) max_err = isnan(err) ? INFINITY : err;
  }
  double tol = dt == FLAGOS_FLOAT16 ? 2e-3 : 1e-5;
  double flops = 2.0 * (double)s->batch * (double)s->M * (double)s->N * (double)s->K;
  printf("{\"backend\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"label\": \"%s\", "
         "\"us\": %.3f, \"host_us\": %.3f, \"tflops\": %.3f, \"max_err\": %.3g}\n",
         backend, dev_name, dt == FLAGOS_FLOAT16 ? "f16" : dt == FLAGOS_FLOAT64 ? "f64" : "f32", s->text, label, us,
         host_us, flops / (us * 1e-6) / 1e12, isinf(max_err) ? 1e300 : max_err);
  fflush(stdout);
  if (max_err > tol) {
    fprintf(stderr, "flagos_gemm_bench: %s on %s: outputs off by %.3g (more than %.0e) of their magnitude\n", s->text,
            backend, max_err, tol);
    goto done;
  }
  rc = 0;
done:
  flagos_status_free(st);
  bench_teardown(be, bst, dev, 4, bufs, ev);
  free(ha), free(hb), free(hy), free(hbias);
  return rc;
}

static int n_check = 256;

static bool own_option(const char *opt, const char *val) {
  if (strcmp(opt, "--check") != 0) return false;
  n_check = atoi(val);
  return true;
}

int main(int argc, char **argv) {
  bench_opts_t o = {.backend = "opencl", .label = "", .iters = 100, .warmup = 10, .dt = FLAGOS_FLOAT32};
  int rc = bench_parse_args(argc, argv, &o, true, own_option, usage);
  if (rc >= 0) return rc;
  if (n_check < 0) return usage("--check must not be negative");
  int first = o.first;
  shape_t *shapes = calloc((size_t)(argc - first), sizeof(shape_t));
  if (!shapes) return 1;
  for (int i = first; i < argc; i++)
    if (!parse_shape(argv[i], &shapes[i - first])) {
      fprintf(stderr, "flagos_gemm_bench: bad shape '%s'\n", argv[i]);
      free(shapes);
      return usage(NULL);
    }
  char name[160];
  rc = bench_open_plugin("flagos_gemm_bench", o.backend, o.dev, &be, &bst, name, sizeof name);
  if (rc) {
    free(shapes);
    return rc;
  }
  int failed = 0;
  for (int i = 0; i < argc - first; i++)
    failed |= run_shape(o.dev, o.dt, &shapes[i], o.iters, o.warmup, n_check, o.label, o.backend, name);
  be->shutdown(bst);
  free(shapes);
  return failed;
}
