/* flagos_attn_bench: times a backend plugin's "attention" library call
 * (docs/kernel-ir.md) on the layouts a transformer's FusedAttention node
 * passes it, called back to back as a model's run calls it, and checks every
 * output against a double-precision attention on the host. It measures the
 * opencl plugin's attention kernel (backends/opencl/ocl_attention.c) apart
 * from a model, for its variants (FLAGOS_OPENCL_ATTENTION_ROWS, build options).
 *
 * usage: flagos_attn_bench [options] SHAPE...
 *   SHAPE     HxSQxSKxD[:FLAGS]: H heads (the call's batch) of SQ query rows,
 *             SK keys, D features (values too), laid out as a model's Split
 *             leaves them: Q [SQ, H*D] (head h at column h*D), K the same
 *             (transK), V [SK, H*D], Y [SQ, H*D]. FLAGS letters: m (a padding
 *             mask [1,1,1,SK], the last SK/8 keys -1e4), c (a causal mask
 *             [SQ,SK] of -inf), k (K stored [H*D, SK]: not transK), v (V stored
 *             [H*D, SK]: transV)
 *   --backend NAME   plugin libflagos_backend_NAME.so (default opencl) in
 *                    $FLAGOS_PLUGIN_PATH, else in this build's backends folder
 *   --device I       the plugin's device index (default 0)
 *   --dtype f32|f16  (default f32)
 *   --iters N        timed calls (default 200), --warmup N (default 20)
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
 * the host's queuing; false: us may be the host's pace), and max_err (the largest
 * |y - exact| / (alpha2 * sum_j p_j |v_j| + 1e-30) over every output). Exit
 * status: 0; 1 when a check fails (max_err above 1e-5 for f32, 4e-3 for f16)
 * or a call fails; 2 for bad usage; 77 when the plugin, its device or its
 * attention call is missing (FLAGOS_OPENCL_ATTENTION=1 turns the opencl one
 * on). */
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
  int64_t H, SQ, SK, D;
  int pad_mask, causal, k_cols, v_cols;
  char text[96];
} shape_t;

static const flagos_backend_t *be;
static void *bst;

static int usage(const char *why) {
  if (why) fprintf(stderr, "flagos_attn_bench: %s\n", why);
  fprintf(stderr,
          "usage: flagos_attn_bench [--backend NAME] [--device I] [--dtype f32|f16] [--iters N] [--warmup N]\n"
          "                         [--label TEXT] [--gate N] SHAPE...\n"
          "  SHAPE: HxSQxSKxD[:FLAGS], FLAGS: m (padding mask), c (causal mask), k (K not transposed),\n"
          "         v (V transposed)\n"
          "  --gate N: queue the timed calls behind f32 products of N cubed (default 2048, 0: none)\n"
          "  prints one JSON object per shape (device time per call, host time, checked error)\n");
  return 2;
}

static bool parse_shape(const char *arg, shape_t *s) {
  memset(s, 0, sizeof(*s));
  snprintf(s->text, sizeof s->text, "%s", arg);
  int64_t v[4];
  const char *p = arg;
  if (bench_dims(&p, v, 4, 1LL << 20) != 4) return false;
  s->H = v[0], s->SQ = v[1], s->SK = v[2], s->D = v[3];
  int on[4] = {0};
  if (!bench_flags(p, "mckv", on)) return false;
  s->pad_mask = on[0], s->causal = on[1], s->k_cols = on[2], s->v_cols = on[3];
  return !(s->pad_mask && s->causal);
}

static const char *code_msg(flagos_status_t st) { return st ? flagos_status_message(st) : "ok"; }

/* The largest error of Y against attention in double on the inputs as stored. */
static double check(flagos_dtype_t dt, const shape_t *s, const void *q, const void *k, const void *v, const void *m,
                    const void *y, double alpha, double alpha2) {
  int64_t H = s->H, SQ = s->SQ, SK = s->SK, D = s->D, W = H * D;
  double *sc = malloc((size_t)SK * sizeof(double)), worst = 0;
  if (!sc) return INFINITY;
  for (int64_t b = 0; b < H; b++)
    for (int64_t i = 0; i < SQ; i++) {
      double mx = -INFINITY;
      for (int64_t j = 0; j < SK; j++) {
        double acc = 0;
        for (int64_t c = 0; c < D; c++) {
          size_t ki = (size_t)(s->k_cols ? (b * D + c) * SK + j : j * W + b * D + c);
          acc += fl_load_as_double(dt, q, (size_t)(i * W + b * D + c)) * fl_load_as_double(dt, k, ki);
        }
        double mk = s->pad_mask ? fl_load_as_double(dt, m, (size_t)j) : s->causal ? fl_load_as_double(dt, m, (size_t)(i * SK + j)) : 0;
        sc[j] = alpha * acc + mk;
        if (sc[j] > mx) mx = sc[j];
      }
      double sum = 0;
      for (int64_t j = 0; j < SK; j++) sum += (sc[j] = exp(sc[j] - mx));
      for (int64_t c = 0; c < D; c++) {
        double ref = 0, mag = 0;
        for (int64_t j = 0; j < SK; j++) {
          size_t vi = (size_t)(s->v_cols ? (b * D + c) * SK + j : j * W + b * D + c);
          double pv = sc[j] / sum * fl_load_as_double(dt, v, vi);
          ref += pv;
          mag += fabs(pv);
        }
        double got = fl_load_as_double(dt, y, (size_t)(i * W + b * D + c));
        double err = fabs(got - alpha2 * ref) / (fabs(alpha2) * mag + 1e-30);
        if (!(err <= worst)) worst = isnan(err) ? INFINITY : err;
      }
    }
  free(sc);
  return worst;
}

/* Runs one shape; prints its line. 0 ok, 1 failed, 77 the call declined. */
static int run_shape(int dev, flagos_dtype_t dt, const shape_t *s, int iters, int warmup, const bench_gate_t *gate,
                     const char *label,
                     const char *backend, const char *dev_name) {
  size_t es = flagos_dtype_size(dt);
  int64_t W = s->H * s->D;
  size_t nq = (size_t)(s->SQ * W), nk = (size_t)(s->SK * W), nm = s->causal ? (size_t)(s->SQ * s->SK) : (size_t)s->SK;
  void *hq = malloc(nq * es), *hk = malloc(nk * es), *hv = malloc(nk * es), *hy = malloc(nq * es), *hm = malloc(nm * es);
  int rc = 1, has_mask = s->pad_mask || s->causal;
  flagos_devptr_t bufs[5] = {0};
  flagos_bevent_t ev[2] = {NULL, NULL};
  flagos_status_t st = NULL;
  if (!hq || !hk || !hv || !hy || !hm) {
    fprintf(stderr, "flagos_attn_bench: %s: out of host memory\n", s->text);
    goto done;
  }
  uint64_t seed = 12345;
  for (size_t i = 0; i < nq; i++) rt_hs_store_float(dt, hq, (int64_t)i, bench_rnd(&seed));
  for (size_t i = 0; i < nk; i++) rt_hs_store_float(dt, hk, (int64_t)i, bench_rnd(&seed));
  for (size_t i = 0; i < nk; i++) rt_hs_store_float(dt, hv, (int64_t)i, bench_rnd(&seed));
  for (size_t i = 0; i < nq; i++) rt_hs_store_float(dt, hy, (int64_t)i, NAN); /* a kernel must write every output */
  for (size_t i = 0; i < nm; i++) {
    int64_t r = s->causal ? (int64_t)i / s->SK : 0, j = s->causal ? (int64_t)i % s->SK : (int64_t)i;
    double x = s->causal ? (j > r ? -INFINITY : 0.0) : (j >= s->SK - s->SK / 8 ? -1e4 : 0.0);
    rt_hs_store_float(dt, hm, (int64_t)i, x);
  }
  size_t sizes[5] = {nq * es, nk * es, nk * es, nq * es, nm * es};
  const void *host[5] = {hq, hk, hv, hy, hm};
  int n_bufs = has_mask ? 5 : 4;
  st = bench_setup(be, bst, dev, n_bufs, sizes, host, bufs, ev);
  if (st) {
    fprintf(stderr, "flagos_attn_bench: %s: setting up: %s\n", s->text, code_msg(st));
    goto done;
  }
  int32_t dts[5] = {dt, dt, dt, dt, dt};
  int64_t ints[21] = {s->H,           s->SQ, s->SK, s->D, s->D, s->D,         W, !s->k_cols, s->k_cols ? s->D * s->SK : s->D,
                      s->k_cols ? s->SK : W, s->v_cols, s->v_cols ? s->D * s->SK : s->D, s->v_cols ? s->SK : W,
                      s->D,           W,     s->H,  0,    0,    s->causal ? s->SK : 0, 1, 1};
  double alpha = 1.0 / sqrt((double)s->D), fl[2] = {alpha, 1.0};
  flagos_libcall_t call = {"attention", bufs, dts, n_bufs, ints, 21, fl, 2};
  st = be->library_call(bst, NULL, &call);
  if (st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED) {
    fprintf(stderr, "flagos_attn_bench: SKIP: %s declines %s: %s\n", backend, s->text, code_msg(st));
    rc = 77;
    goto done;
  }
  /* the first call was the first of the warm-up */
  double us = 0, host_us = 0;
  bool gated = false;
  if (!st) st = bench_time(be, bst, &call, 1, warmup - 1, iters, ev, gate, &us, &host_us, &gated);
  if (!st) st = be->copy_d2h(bst, NULL, hy, bufs[3], 0, nq * es);
  if (st) {
    fprintf(stderr, "flagos_attn_bench: %s on %s: %s\n", s->text, backend, code_msg(st));
    goto done;
  }
  double max_err = check(dt, s, hq, hk, hv, hm, hy, alpha, 1.0);
  double tol = dt == FLAGOS_FLOAT16 ? 4e-3 : 1e-5;
  printf("{\"backend\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"label\": \"%s\", "
         "\"us\": %.3f, \"host_us\": %.3f, \"gated\": %s, \"max_err\": %.3g}\n",
         backend, dev_name, dt == FLAGOS_FLOAT16 ? "f16" : "f32", s->text, label, us,
         host_us, gated ? "true" : "false", isinf(max_err) ? 1e300 : max_err);
  fflush(stdout);
  if (!(max_err <= tol)) {
    fprintf(stderr, "flagos_attn_bench: %s on %s: outputs off by %.3g (more than %.0e) of their magnitude\n", s->text,
            backend, max_err, tol);
    goto done;
  }
  rc = 0;
done:
  flagos_status_free(st);
  bench_teardown(be, bst, dev, 5, bufs, ev);
  free(hq), free(hk), free(hv), free(hy), free(hm);
  return rc;
}

int main(int argc, char **argv) {
  bench_opts_t o = {.backend = "opencl", .label = "", .iters = 200, .warmup = 20, .gate = BENCH_GATE_N, .dt = FLAGOS_FLOAT32};
  int rc = bench_parse_args(argc, argv, &o, false, NULL, usage);
  if (rc >= 0) return rc;
  if (o.warmup < 1) return usage("--warmup must be at least 1 (the first call tells a declined shape)");
  int first = o.first;
  shape_t *shapes = calloc((size_t)(argc - first), sizeof(shape_t));
  if (!shapes) return 1;
  for (int i = first; i < argc; i++)
    if (!parse_shape(argv[i], &shapes[i - first])) {
      fprintf(stderr, "flagos_attn_bench: bad shape '%s'\n", argv[i]);
      free(shapes);
      return usage(NULL);
    }
  char name[160];
  rc = bench_open_plugin("flagos_attn_bench", o.backend, o.dev, &be, &bst, name, sizeof name);
  if (rc) {
    free(shapes);
    return rc;
  }
  bench_gate_t gate;
  if (!bench_gate_open("flagos_attn_bench", be, bst, o.dev, o.gate, &gate)) rc = 1;
  for (int i = 0; i < argc - first && rc != 1; i++) {
    int r = run_shape(o.dev, o.dt, &shapes[i], o.iters, o.warmup, &gate, o.label, o.backend, name);
    if (r == 1 || (r == 77 && rc == 0)) rc = r;
  }
  bench_gate_close(be, bst, o.dev, &gate);
  be->shutdown(bst);
  free(shapes);
  return rc;
}
