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
 *             shared by the batch: strideA 0, as a convolution's weights), n
 *             (the gemm_norm call: a residual added and each row of the sum
 *             normalised, as ProductNorm nodes call it; batch 1; whole rows of
 *             the normalised output checked too)
 *   --backend NAME   plugin libflagos_backend_NAME.so (default opencl) in
 *                    $FLAGOS_PLUGIN_PATH, else in this build's backends folder
 *   --device I       the plugin's device index (default 0)
 *   --dtype f32|f16|f64   (default f32)
 *   --iters N        timed calls (default 100), --warmup N (default 10)
 *   --check N        outputs of each product checked (default 256; 0: none)
 *   --cold N         N copies of B (and the bias) on the device, the calls
 *                    taking them in turn (default 1), so that B comes from
 *                    memory rather than the cache as a model's weights do
 *                    (N times B's size past the device's last-level cache)
 *   --label TEXT     written into each line (e.g. the variant asked for)
 *   --gate N         queue the timed calls behind f32 products of N cubed
 *                    (default 2048; 0: none), so that the host has queued
 *                    them all before the device starts them: the figure is
 *                    then the device's time a call, back to back as in a
 *                    replay, not the host's queuing
 *
 * One JSON object per shape on stdout: backend, device, dtype, shape, label,
 * us (device time per call, by the plugin's events over the timed calls),
 * host_us (host time per call queuing them), gated (whether the gate outlasted
 * the host's queuing; false: us may be the host's pace), tflops, and max_err (the
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
  int ta, tb, bias, shared, norm;
  char text[96];
} shape_t;

static const flagos_backend_t *be;
static void *bst;

static int usage(const char *why) {
  if (why) fprintf(stderr, "flagos_gemm_bench: %s\n", why);
  fprintf(stderr,
          "usage: flagos_gemm_bench [--backend NAME] [--device I] [--dtype f32|f16|f64] [--iters N] [--warmup N]\n"
          "                         [--check N] [--cold N] [--label TEXT] [--gate N] SHAPE...\n"
          "  SHAPE: [BATCHx]MxNxK[:FLAGS], FLAGS: a (A transposed), b (B transposed), + (bias), s (A shared),\n"
          "         n (the gemm_norm call: a residual added, rows normalised; batch 1)\n"
          "  --gate N: queue the timed calls behind f32 products of N cubed (default 2048, 0: none)\n"
          "  --cold N: N copies of B and the bias, taken in turn (default 1: B stays in the cache)\n"
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
  int on5[5] = {0};
  if (!bench_flags(p, "ab+sn", on5)) return false;
  s->ta = on5[0], s->tb = on5[1], s->bias = on5[2], s->shared = on5[3], s->norm = on5[4];
  return !s->norm || s->batch == 1; /* gemm_norm: one matrix */
}

static const char *code_msg(flagos_status_t st) { return st ? flagos_status_message(st) : "ok"; }

/* Runs one shape; prints its line. 0 ok, 1 failed. */
static int run_shape(int dev, flagos_dtype_t dt, const shape_t *s, int iters, int warmup, int n_check, int cold,
                     const char *label, const char *backend, const char *dev_name, const bench_gate_t *gate) {
  size_t es = flagos_dtype_size(dt);
  int64_t sa = s->shared ? 0 : s->M * s->K, sb = s->K * s->N, sy = s->M * s->N;
  size_t na = (size_t)((s->batch - 1) * sa + s->M * s->K), nb = (size_t)(s->batch * sb), ny = (size_t)(s->batch * sy);
  void *ha = malloc(na * es), *hb = malloc(nb * es), *hy = malloc(ny * es), *hbias = malloc((size_t)s->N * es);
  /* gemm_norm's: the residual, scale, shift and the normalised output */
  size_t nn = s->norm ? ny : 1, ng = s->norm ? (size_t)s->N : 1;
  void *hr = malloc(nn * es), *hg = malloc(ng * es), *hbeta = malloc(ng * es), *hz = malloc(nn * es);
  int rc = 1;
  flagos_devptr_t bufs[8] = {0};
  flagos_bevent_t ev[2] = {NULL, NULL};
  flagos_status_t st = NULL;
  /* --cold: the calls' buffers, B and the bias (bias_at) another copy in each */
  const int bias_at = s->norm ? 7 : 3;
  flagos_devptr_t(*cbufs)[8] = calloc((size_t)cold, sizeof *cbufs);
  flagos_libcall_t *calls = calloc((size_t)cold, sizeof *calls);
  if (!ha || !hb || !hy || !hbias || !hr || !hg || !hbeta || !hz || !cbufs || !calls) {
    fprintf(stderr, "flagos_gemm_bench: %s: out of host memory\n", s->text);
    goto done;
  }
  uint64_t seed = 12345;
  for (size_t i = 0; i < na; i++) rt_hs_store_float(dt, ha, (int64_t)i, bench_rnd(&seed));
  for (size_t i = 0; i < nb; i++) rt_hs_store_float(dt, hb, (int64_t)i, bench_rnd(&seed));
  for (int64_t j = 0; j < s->N; j++) rt_hs_store_float(dt, hbias, j, bench_rnd(&seed));
  /* beta 0: Y's old contents must not matter; NaN makes a kernel that reads them fail the check */
  for (size_t i = 0; i < ny; i++) rt_hs_store_float(dt, hy, (int64_t)i, NAN);
  for (size_t i = 0; i < nn; i++) rt_hs_store_float(dt, hr, (int64_t)i, bench_rnd(&seed));
  for (size_t i = 0; i < ng; i++) rt_hs_store_float(dt, hg, (int64_t)i, 1.0 + 0.5 * bench_rnd(&seed));
  for (size_t i = 0; i < ng; i++) rt_hs_store_float(dt, hbeta, (int64_t)i, bench_rnd(&seed));
  for (size_t i = 0; i < nn; i++) rt_hs_store_float(dt, hz, (int64_t)i, NAN);
  /* gemm [A, B, Y (, bias)]; gemm_norm [A, B, Y, R, gamma, beta, Z (, bias)] */
  size_t sizes[8] = {na * es, nb * es, ny * es, nn * es, ng * es, ng * es, nn * es, (size_t)s->N * es};
  const void *host[8] = {ha, hb, hy, hr, hg, hbeta, hz, hbias};
  if (!s->norm) sizes[3] = sizes[7], host[3] = hbias;
  int n_bufs = s->norm ? (s->bias ? 8 : 7) : s->bias ? 4 : 3;
  st = bench_setup(be, bst, dev, n_bufs, sizes, host, bufs, ev);
  if (st) {
    fprintf(stderr, "flagos_gemm_bench: %s: setting up: %s\n", s->text, code_msg(st));
    goto done;
  }
  int32_t dts[8] = {dt, dt, dt, dt, dt, dt, dt, dt};
  /* gemm_norm: the twelve gemm ints (ldb, lda, ldy packed), has_beta */
  int64_t ints[13] = {s->batch, s->M, s->N, s->K, s->ta, s->tb, sa, sb, sy,
                      s->tb ? s->K : s->N, s->ta ? s->M : s->K, s->N, 1};
  double fl[3] = {1.0, 0.0, 1e-5};
  for (int c = 0; c < cold && !st; c++) {
    memcpy(cbufs[c], bufs, sizeof bufs);
    if (c) {
      cbufs[c][1] = cbufs[c][bias_at] = 0;
      st = be->mem_alloc(bst, dev, sizes[1], &cbufs[c][1]);
      if (!st) st = be->copy_h2d(bst, NULL, cbufs[c][1], 0, hb, sizes[1]);
      if (!st && s->bias) st = be->mem_alloc(bst, dev, sizes[bias_at], &cbufs[c][bias_at]);
      if (!st && s->bias) st = be->copy_h2d(bst, NULL, cbufs[c][bias_at], 0, hbias, sizes[bias_at]);
    }
    calls[c] = (flagos_libcall_t){s->norm ? "gemm_norm" : "gemm", cbufs[c], dts, n_bufs, ints, s->norm ? 13 : 9, fl,
                                  s->norm ? 3 : 2};
  }
  double us = 0, host_us = 0;
  bool gated = false;
  if (!st) st = bench_time(be, bst, calls, cold, warmup, iters, ev, gate, &us, &host_us, &gated);
  if (!st) st = be->copy_d2h(bst, NULL, hy, bufs[2], 0, ny * es);
  if (!st && s->norm) st = be->copy_d2h(bst, NULL, hz, bufs[6], 0, ny * es);
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
    if (s->norm) {
      double rv = fl_load_as_double(dt, hr, (size_t)(i * s->N + j));
      sum += rv;
      mag += fabs(rv);
    }
    double got = fl_load_as_double(dt, hy, (size_t)(b * sy + i * s->N + j));
    double err = fabs(got - sum) / (mag > 0 ? mag : 1);
    if (!(err <= max_err)) max_err = isnan(err) ? INFINITY : err;
  }
  /* gemm_norm: whole rows of Z (up to 4) against the normalisation of the exact sums */
  double max_zerr = 0;
  double *row = s->norm ? malloc((size_t)s->N * sizeof(double)) : NULL;
  for (int r = 0; row && r < 4 && r < n_check; r++) {
    int64_t i = r * (s->M - 1) / 3;
    double mean = 0, var = 0;
    for (int64_t j = 0; j < s->N; j++) {
      double sum = s->bias ? fl_load_as_double(dt, hbias, (size_t)j) : 0;
      for (int64_t k = 0; k < s->K; k++)
        sum += fl_load_as_double(dt, ha, (size_t)(s->ta ? k * s->M + i : i * s->K + k)) *
               fl_load_as_double(dt, hb, (size_t)(s->tb ? j * s->K + k : k * s->N + j));
      row[j] = sum + fl_load_as_double(dt, hr, (size_t)(i * s->N + j));
      mean += row[j];
    }
    mean /= (double)s->N;
    for (int64_t j = 0; j < s->N; j++) var += (row[j] - mean) * (row[j] - mean);
    var /= (double)s->N;
    for (int64_t j = 0; j < s->N; j++) {
      double want = (row[j] - mean) / sqrt(var + 1e-5) * fl_load_as_double(dt, hg, (size_t)j) +
                    fl_load_as_double(dt, hbeta, (size_t)j);
      double err = fabs(fl_load_as_double(dt, hz, (size_t)(i * s->N + j)) - want) / (1 + fabs(want));
      if (!(err <= max_zerr)) max_zerr = isnan(err) ? INFINITY : err;
    }
  }
  free(row);
  if (max_zerr > max_err) max_err = max_zerr;
  double tol = dt == FLAGOS_FLOAT16 ? 2e-3 : s->norm ? 1e-4 : 1e-5;
  double flops = 2.0 * (double)s->batch * (double)s->M * (double)s->N * (double)s->K;
  printf("{\"backend\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"label\": \"%s\", "
         "\"us\": %.3f, \"host_us\": %.3f, \"gated\": %s, \"tflops\": %.3f, \"max_err\": %.3g}\n",
         backend, dev_name, dt == FLAGOS_FLOAT16 ? "f16" : dt == FLAGOS_FLOAT64 ? "f64" : "f32", s->text, label, us,
         host_us, gated ? "true" : "false", flops / (us * 1e-6) / 1e12, isinf(max_err) ? 1e300 : max_err);
  fflush(stdout);
  if (max_err > tol) {
    fprintf(stderr, "flagos_gemm_bench: %s on %s: outputs off by %.3g (more than %.0e) of their magnitude\n", s->text,
            backend, max_err, tol);
    goto done;
  }
  rc = 0;
done:
  flagos_status_free(st);
  bench_teardown(be, bst, dev, 8, bufs, ev);
  for (int c = 1; cbufs && c < cold; c++) {
    if (cbufs[c][1]) be->mem_free(bst, dev, cbufs[c][1]);
    if (s->bias && cbufs[c][bias_at]) be->mem_free(bst, dev, cbufs[c][bias_at]);
  }
  free(cbufs), free(calls);
  free(ha), free(hb), free(hy), free(hbias), free(hr), free(hg), free(hbeta), free(hz);
  return rc;
}

static int n_check = 256, n_cold = 1;

static bool own_option(const char *opt, const char *val) {
  if (!strcmp(opt, "--check")) n_check = atoi(val);
  else if (!strcmp(opt, "--cold")) n_cold = atoi(val);
  else return false;
  return true;
}

int main(int argc, char **argv) {
  bench_opts_t o = {.backend = "opencl", .label = "", .iters = 100, .warmup = 10, .gate = BENCH_GATE_N, .dt = FLAGOS_FLOAT32};
  int rc = bench_parse_args(argc, argv, &o, true, own_option, usage);
  if (rc >= 0) return rc;
  if (n_check < 0) return usage("--check must not be negative");
  if (n_cold < 1 || n_cold > 256) return usage("--cold takes 1 to 256 copies");
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
  bench_gate_t gate;
  if (!bench_gate_open("flagos_gemm_bench", be, bst, o.dev, o.gate, &gate)) failed = 1;
  for (int i = 0; i < argc - first && !failed; i++)
    failed |= run_shape(o.dev, o.dt, &shapes[i], o.iters, o.warmup, n_check, n_cold, o.label, o.backend, name, &gate);
  bench_gate_close(be, bst, o.dev, &gate);
  be->shutdown(bst);
  free(shapes);
  return failed;
}
