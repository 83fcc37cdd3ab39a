/* `flagos devices --calibrate`: measures one device for its profile (docs/sla.md,
 * "Device profiles") with small models compiled for its target and timed through
 * the runtime's profiler (device-side kernel times), plus timed copies through
 * the plugin. It lives with the compiler because it compiles and runs: the
 * partitioner itself only reads the profile. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compiler/calibrate.h"
#include "compiler/compiler.h"
#include "runtime/runtime.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct bench {
  flagos_bundle_t *b;
  flagos_session_t *s;
  int n_in, n_out;
  flagos_value_t in[4];
} bench_t;

static void bench_close(bench_t *x) {
  for (int i = 0; i < x->n_in; i++) free(x->in[i].tensor.data);
  if (x->s) flagos_session_destroy(x->s);
  if (x->b) flagos_bundle_close(x->b);
  memset(x, 0, sizeof *x);
}

static flagos_status_t bench_open(const char *text, const char *target, int index, const char *cache, bench_t *x) {
  memset(x, 0, sizeof *x);
  fir_model_t *m;
  FL_TRY(fir_parse(text, strlen(text), &m));
  flagos_compile_options_t o = {.targets = target, .cache_dir = cache};
  void *img = NULL;
  size_t n = 0;
  flagos_status_t st = compiler_build_bundle(m, &o, &img, &n);
  fir_model_destroy(m);
  if (st) return st;
  bundle_file_t *f;
  FL_TRY(bundle_file_from_memory(img, n, true, &f));
  FL_TRY(rt_bundle_from_file(f, &x->b));
  char dev[48];
  snprintf(dev, sizeof dev, "%s:%d", target, index);
  flagos_session_options_t so = {.device = dev};
  st = flagos_session_create(x->b, &so, &x->s);
  if (!st) st = flagos_session_enable_profiling(x->s, true);
  x->n_in = flagos_bundle_num_inputs(x->b);
  x->n_out = flagos_bundle_num_outputs(x->b);
  for (int i = 0; i < x->n_in && !st; i++) {
    flagos_io_info_t io;
    if ((st = flagos_bundle_input(x->b, i, &io))) break;
    flagos_tensor_t *t = &x->in[i].tensor;
    x->in[i].kind = FLAGOS_VALUE_TENSOR;
    t->dtype = io.dtype;
    t->rank = io.rank;
    memcpy(t->dims, io.dims, sizeof(int64_t) * (size_t)io.rank);
    t->nbytes = (size_t)flagos_tensor_numel(t) * flagos_dtype_size(io.dtype);
    t->data = calloc(1, t->nbytes ? t->nbytes : 1);
    if (!t->data) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    /* Small values (0x3c00 is 1.0 in f16; in f32 the pair reads as a tiny number): no
     * overflow, no denormal slow paths from growth. */
    else if (io.dtype == FLAGOS_FLOAT16)
      for (size_t k = 0; k < t->nbytes / 2; k++) ((uint16_t *)t->data)[k] = 0x2c00; /* 0.0625 */
    else if (io.dtype == FLAGOS_FLOAT32)
      for (size_t k = 0; k < t->nbytes / 4; k++) ((float *)t->data)[k] = 0.0625f;
  }
  if (st) bench_close(x);
  return st;
}

/* Runs until `budget` seconds pass (at least min_runs, at most max_runs) after a
 * warm-up run whose figures are dropped. */
static flagos_status_t bench_run(bench_t *x, double budget, int min_runs, int max_runs) {
  flagos_value_t out[4];
  for (int r = 0;; r++) {
    memset(out, 0, sizeof out);
    FL_TRY(flagos_session_run(x->s, x->in, x->n_in, out, x->n_out));
    for (int k = 0; k < x->n_out; k++) flagos_value_clear(&out[k]);
    if (r == 0) {
      flagos_session_profile_reset(x->s);
      budget += now_s();
      continue;
    }
    if (r >= max_runs || (r >= min_runs && now_s() > budget)) return NULL;
  }
}

static bool node_figures(bench_t *x, const char *onnx_name, double *ms, double *flops, double *bytes) {
  flagos_profile_node_t nodes[64];
  int n = flagos_session_profile_nodes(x->s, nodes, 64);
  for (int i = 0; i < n && i < 64; i++)
    if (nodes[i].onnx_name && strcmp(nodes[i].onnx_name, onnx_name) == 0 && nodes[i].device_ms > 0) {
      *ms = nodes[i].device_ms;
      *flops = nodes[i].flops;
      *bytes = nodes[i].bytes;
      return true;
    }
  return false;
}

static double energy_j(rt_backend_t *be, int dev, bool *ok) {
  flagos_power_info_t pi;
  memset(&pi, 0, sizeof pi);
  *ok = false;
  if (!FLAGOS_BACKEND_HAS(be->api, device_power)) return 0;
  flagos_status_t st = be->api->device_power(be->state, dev, &pi);
  if (st) {
    flagos_status_free(st);
    return 0;
  }
  *ok = pi.has_energy != 0;
  return (double)pi.energy_uj * 1e-6;
}

static void copies(rt_backend_t *be, int dev, part_device_t *out, fl_buf_t *log) {
  const size_t big = 32u << 20;
  void *host = calloc(1, big);
  flagos_devptr_t p = NULL;
  flagos_bstream_t s = NULL;
  flagos_status_t st = host ? NULL : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (!st) st = be->api->stream_create(be->state, dev, &s);
  if (!st) st = be->api->mem_alloc(be->state, dev, big, &p);
  double best_h2d = 1e30, best_d2h = 1e30, lat = 1e30;
  for (int r = 0; r < 4 && !st; r++) {
    double t0 = now_s();
    st = be->api->copy_h2d(be->state, s, p, 0, host, big);
    if (!st) st = be->api->stream_sync(be->state, s);
    double t1 = now_s();
    if (!st) st = be->api->copy_d2h(be->state, s, host, p, 0, big);
    if (!st) st = be->api->stream_sync(be->state, s);
    double t2 = now_s();
    if (r > 0) {
      best_h2d = fmin(best_h2d, t1 - t0);
      best_d2h = fmin(best_d2h, t2 - t1);
    }
  }
  for (int r = 0; r < 20 && !st; r++) {
    double t0 = now_s();
    st = be->api->copy_h2d(be->state, s, p, 0, host, 4);
    if (!st) st = be->api->stream_sync(be->state, s);
    if (r > 0) lat = fmin(lat, now_s() - t0);
  }
  if (st) {
    fl_buf_printf(log, "  copies not measured (%s); defaults kept\n", flagos_status_message(st));
    flagos_status_free(st);
  } else {
    out->h2d_bw = (double)big / best_h2d;
    out->d2h_bw = (double)big / best_d2h;
    out->link_latency = lat;
  }
  if (p) be->api->mem_free(be->state, dev, p);
  if (s) be->api->stream_destroy(be->state, s);
  free(host);
}

flagos_status_t compiler_calibrate_device(const char *target, int index, const char *cache_dir, part_device_t *out,
                                          fl_buf_t *log) {
  rt_backend_t *be;
  FL_TRY(rt_backend_get(target, &be));
  flagos_device_info_t di;
  memset(&di, 0, sizeof di);
  FL_TRY(be->api->device_info(be->state, index, &di));
  part_device_defaults(target, index, &di, out);
  snprintf(out->plugin_version, sizeof out->plugin_version, "%s", be->api->version);
  bool cpu = di.kind == FLAGOS_DEVICE_CPU;
  int n = cpu ? 384 : 2048, nh = cpu ? 128 : 2048;
  long m = cpu ? (4l << 20) : (32l << 20);
  char text[2048];
  snprintf(text, sizeof text,
           "flagir 1\nir_version 8\nopset \"\" 17\n"
           "graph \"calibrate\" (%%a: f32[%d,%d], %%b: f32[%d,%d], %%x: f32[%ld], %%y: f32[%ld]) -> (%%c: f32[%d,%d], "
           "%%s: f32[%ld]) {\n"
           "  %%c: f32[%d,%d] = MatMul \"mm\" (%%a, %%b)\n  %%s: f32[%ld] = Add \"bw\" (%%x, %%y)\n}\n",
           n, n, n, n, m, m, n, n, m, n, n, m);
  bench_t x;
  FL_TRY(flagos_status_wrap(bench_open(text, target, index, cache_dir, &x), "calibrating %s:%d", target, index));
  bool e_ok0, e_ok1;
  double e0 = energy_j(be, index, &e_ok0), t0 = now_s();
  flagos_status_t st = bench_run(&x, 0.4, 3, 50);
  double e1 = energy_j(be, index, &e_ok1), t1 = now_s();
  double ms, fl, by;
  if (!st && node_figures(&x, "mm", &ms, &fl, &by) && fl > 0) out->flops_f32 = fl / (ms * 1e-3);
  if (!st && node_figures(&x, "bw", &ms, &fl, &by) && by > 0) out->mem_bw = by / (ms * 1e-3);
  bench_close(&x);
  if (st) return flagos_status_wrap(st, "calibrating %s:%d", target, index);
  fl_buf_printf(log, "  MatMul f32 %dx%d: %.3g GFLOP/s; Add of %ld floats: %.3g GB/s\n", n, n, out->flops_f32 * 1e-9, m,
                out->mem_bw * 1e-9);

  /* Launch overhead: a chain of tiny Adds; the host's time per node. */
  enum { K = 32 };
  fl_buf_t tb = {0};
  fl_buf_printf(&tb, "flagir 1\nir_version 8\nopset \"\" 17\ngraph \"launch\" (%%t0: f32[1]) -> (%%t%d: f32[1]) {\n", K);
  for (int k = 1; k <= K; k++) fl_buf_printf(&tb, "  %%t%d: f32[1] = Add(%%t%d, %%t0)\n", k, k - 1);
  fl_buf_puts(&tb, "}\n");
  st = bench_open(tb.data, target, index, cache_dir, &x);
  fl_buf_free(&tb);
  if (!st) st = bench_run(&x, 0.2, 5, 200);
  if (!st) {
    flagos_profile_summary_t sum;
    if (!flagos_session_profile_summary(x.s, &sum) && sum.runs > 0) {
      double per_run = (sum.wall_ms - sum.copy_ms) / sum.runs;
      out->launch = fmax(per_run / K, 1e-4) * 1e-3;
    }
  }
  bench_close(&x);
  if (st) return flagos_status_wrap(st, "calibrating %s:%d (launch overhead)", target, index);
  fl_buf_printf(log, "  launch overhead: %.3g us per kernel\n", out->launch * 1e6);

  /* Half precision: a device without it keeps a quarter of the f32 figure. */
  snprintf(text, sizeof text,
           "flagir 1\nir_version 8\nopset \"\" 17\n"
           "graph \"calibrate16\" (%%a: f16[%d,%d], %%b: f16[%d,%d]) -> (%%c: f16[%d,%d]) {\n"
           "  %%c: f16[%d,%d] = MatMul \"mm16\" (%%a, %%b)\n}\n",
           nh, nh, nh, nh, nh, nh, nh, nh);
  out->flops_f16 = out->flops_f32 / 4;
  st = bench_open(text, target, index, cache_dir, &x);
  if (!st) st = bench_run(&x, 0.2, 2, 50);
  if (!st && node_figures(&x, "mm16", &ms, &fl, &by) && fl > 0) out->flops_f16 = fl / (ms * 1e-3);
  bench_close(&x);
  if (st) {
    fl_buf_printf(log, "  MatMul f16: not measured (%s)\n", flagos_status_message(st));
    flagos_status_free(st);
  } else {
    fl_buf_printf(log, "  MatMul f16 %dx%d: %.3g GFLOP/s\n", nh, nh, out->flops_f16 * 1e-9);
  }

  if (di.host_visible) {
    out->h2d_bw = out->d2h_bw = out->mem_bw;
    out->link_latency = 0;
  } else {
    copies(be, index, out, log);
    fl_buf_printf(log, "  host->device %.3g GB/s, device->host %.3g GB/s, latency %.3g us\n", out->h2d_bw * 1e-9,
                  out->d2h_bw * 1e-9, out->link_latency * 1e6);
  }

  /* Power: measured where the plugin keeps an energy counter, else declared. */
  flagos_power_info_t pi;
  memset(&pi, 0, sizeof pi);
  flagos_status_t pst = FLAGOS_BACKEND_HAS(be->api, device_power) ? be->api->device_power(be->state, index, &pi) : NULL;
  flagos_status_free(pst);
  if (e_ok0 && e_ok1 && e1 > e0 && t1 > t0) {
    out->power_active = (e1 - e0) / (t1 - t0);
    bool ok_a, ok_b;
    double ea = energy_j(be, index, &ok_a), ta = now_s();
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    double eb = energy_j(be, index, &ok_b), tb2 = now_s();
    out->power_idle = ok_a && ok_b && eb >= ea ? (eb - ea) / (tb2 - ta) : out->power_active * 0.3;
    out->power_measured = true;
    snprintf(out->power_source, sizeof out->power_source, "measured (%.31s)", pi.energy_source[0] ? pi.energy_source : "energy counter");
  } else if (pi.declared_watts > 0) {
    out->power_active = pi.declared_watts;
    out->power_idle = 0.3 * pi.declared_watts;
    snprintf(out->power_source, sizeof out->power_source, "declared (%.40s)", pi.declared_source[0] ? pi.declared_source : "plugin");
  }
  fl_buf_printf(log, "  power: %.3g W active, %.3g W idle, %s%s\n", out->power_active, out->power_idle, out->power_source,
                out->power_measured ? "" : ", estimated");
  out->calibrated = true;
  return NULL;
}
