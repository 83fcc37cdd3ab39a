/* What the benchmark drivers that call one plugin directly share
 * (gemm_bench.c, attn_bench.c): their common options, the shapes' syntax, a
 * clock, the inputs' random numbers, opening the plugin and its device as a
 * model's run would, and timing a call back to back between two events.
 * Header-only: each driver is one executable. */
#ifndef FLAGOS_BENCH_PLUGIN_H
#define FLAGOS_BENCH_PLUGIN_H

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flagos/backend.h"
#include "flagos/flagos.h"

#ifndef FLAGOS_BINARY_DIR
#define FLAGOS_BINARY_DIR "."
#endif

/* The options every driver takes (their fields hold the defaults when parsed):
 * --backend, --device, --dtype, --iters, --warmup, --label, --gate; the
 * shapes are argv[first..]. */
typedef struct bench_opts {
  const char *backend, *label;
  int dev, iters, warmup, first;
  int gate; /* --gate N: the gate's size (bench_time; 0 none) */
  flagos_dtype_t dt;
} bench_opts_t;

/* Parses argv into o. `own` (NULL: none) takes a driver's other options of one
 * value (false: unknown); f64: --dtype takes f64 besides f32 and f16. Returns
 * -1 to go on, else the exit status: 0 after --help, 2 for bad usage (usage(why)
 * has said why). */
static int bench_parse_args(int argc, char **argv, bench_opts_t *o, bool f64, bool (*own)(const char *, const char *),
                            int (*usage)(const char *)) {
  o->first = argc;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(NULL);
      return 0;
    }
    if (a[0] != '-' || a[1] != '-') {
      o->first = i;
      break;
    }
    if (!v) return usage("an option without its value");
    i++;
    if (!strcmp(a, "--backend")) o->backend = v;
    else if (!strcmp(a, "--label")) o->label = v;
    else if (!strcmp(a, "--device")) o->dev = atoi(v);
    else if (!strcmp(a, "--iters")) o->iters = atoi(v);
    else if (!strcmp(a, "--warmup")) o->warmup = atoi(v);
    else if (!strcmp(a, "--gate")) o->gate = atoi(v);
    else if (!strcmp(a, "--dtype")) {
      if (!strcmp(v, "f32")) o->dt = FLAGOS_FLOAT32;
      else if (!strcmp(v, "f16")) o->dt = FLAGOS_FLOAT16;
      else if (f64 && !strcmp(v, "f64")) o->dt = FLAGOS_FLOAT64;
      else return usage(f64 ? "--dtype takes f32, f16 or f64" : "--dtype takes f32 or f16");
    } else if (!own || !own(a, v))
      return usage("unknown option");
  }
  if (o->iters < 1 || o->warmup < 0 || o->dev < 0 || o->gate < 0 || o->gate > 8192)
    return usage("--iters must be at least 1, counts not negative, --gate at most 8192");
  if (o->first >= argc) return usage("no shape");
  return -1;
}

/* A shape's extents: up to max positive integers of at most limit joined by
 * 'x', read from *p (moved past them); their number, 0 for a bad one. */
static int bench_dims(const char **p, int64_t *v, int max, int64_t limit) {
  int n = 0;
  while (n < max) {
    char *end;
    long long x = strtoll(*p, &end, 10);
    if (end == *p || x <= 0 || x > limit) return 0;
    v[n++] = x;
    *p = end;
    if (**p != 'x') break;
    (*p)++;
  }
  return n;
}

/* A shape's flags: nothing, or ':' and letters of `letters`, on[i] set for
 * letters[i]; false for anything else. */
static bool bench_flags(const char *p, const char *letters, int *on) {
  if (!*p) return true;
  if (*p != ':') return false;
  for (p++; *p; p++) {
    const char *l = strchr(letters, *p);
    if (!l) return false;
    on[l - letters] = 1;
  }
  return true;
}

static double bench_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Uniform in [-1, 1) from a 64-bit LCG (the same values on every run). */
static double bench_rnd(uint64_t *st) {
  *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*st >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
}

/* Opens plugin libflagos_backend_BACKEND.so ($FLAGOS_PLUGIN_PATH, else this
 * build's backends folder), initialises it with a kernel cache
 * ($FLAGOS_CACHE_DIR, else /tmp/flagos-TOOL-cache) and checks that it has
 * device dev, library calls and events; name gets the device's name without
 * quotes or backslashes (for JSON). 0, or 77 (said on stderr as TOOL: SKIP)
 * where the plugin or its device is missing. */
static int bench_open_plugin(const char *tool, const char *backend, int dev, const flagos_backend_t **be, void **bst,
                             char *name, size_t cap) {
  char so[1024];
  const char *dir = getenv("FLAGOS_PLUGIN_PATH");
  snprintf(so, sizeof so, "%s/libflagos_backend_%s.so", dir && *dir ? dir : FLAGOS_BINARY_DIR "/backends", backend);
  void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  flagos_backend_entry_fn entry = h ? (flagos_backend_entry_fn)(uintptr_t)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL) : NULL;
  *be = entry ? entry(FLAGOS_BACKEND_ABI_VERSION) : NULL;
  *bst = NULL;
  if (!*be || !(*be)->library_call || !(*be)->event_elapsed_ms) {
    fprintf(stderr, "%s: SKIP: no usable plugin %s (%s)\n", tool, so, h ? "no library call or events" : dlerror());
    return 77;
  }
  static char cache[512];
  const char *cd = getenv("FLAGOS_CACHE_DIR");
  if (cd && *cd) snprintf(cache, sizeof cache, "%s", cd);
  else snprintf(cache, sizeof cache, "/tmp/%s-cache", tool);
  static flagos_host_t host;
  host = (flagos_host_t){FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, cache};
  flagos_status_t st = (*be)->init(&host, bst);
  if (st || !*bst || (*be)->device_count(*bst) <= dev) {
    fprintf(stderr, "%s: SKIP: %s has no device %d%s%s\n", tool, backend, dev, st ? ": " : "",
            st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    if (*bst) (*be)->shutdown(*bst);
    *bst = NULL;
    return 77;
  }
  flagos_device_info_t info;
  memset(&info, 0, sizeof info);
  flagos_status_free((*be)->device_info(*bst, dev, &info));
  size_t o = 0;
  for (const char *p = info.name; *p && o + 1 < cap; p++)
    if (*p != '"' && *p != '\\') name[o++] = *p;
  name[o] = 0;
  return 0;
}

/* n device buffers of sizes[i] bytes holding host[i], and two events. */
static flagos_status_t bench_setup(const flagos_backend_t *be, void *bst, int dev, int n, const size_t *sizes,
                                   const void *const *host, flagos_devptr_t *bufs, flagos_bevent_t *ev) {
  flagos_status_t st = NULL;
  for (int i = 0; i < n && !st; i++) st = be->mem_alloc(bst, dev, sizes[i], &bufs[i]);
  for (int i = 0; i < n && !st; i++) st = be->copy_h2d(bst, NULL, bufs[i], 0, host[i], sizes[i]);
  if (!st) st = be->event_create(bst, dev, &ev[0]);
  if (!st) st = be->event_create(bst, dev, &ev[1]);
  return st;
}

/* Frees what bench_setup made (NULL entries skipped). */
static void bench_teardown(const flagos_backend_t *be, void *bst, int dev, int n, flagos_devptr_t *bufs,
                           flagos_bevent_t *ev) {
  for (int i = 0; i < 2; i++)
    if (ev[i]) be->event_destroy(bst, ev[i]);
  for (int i = 0; i < n; i++)
    if (bufs[i]) be->mem_free(bst, dev, bufs[i]);
}

/* The gate: products big enough to keep the device busy while the host
 * queues the timed calls behind them (f32, n cubed, through the plugin's own
 * gemm call), so that the calls run back to back on the device as a replay
 * runs them, and the time between the events is the device's alone, not the
 * host's queuing (slower than the device for products of a few
 * microseconds). */
#define BENCH_GATE_N 2048
typedef struct {
  flagos_devptr_t bufs[3];
  int32_t dts[3];
  int64_t ints[9];
  double fl[2];
  flagos_libcall_t call;
  flagos_bevent_t ev; /* NULL: no gate */
} bench_gate_t;

static void bench_gate_close(const flagos_backend_t *be, void *bst, int dev, bench_gate_t *g) {
  if (g->ev) be->event_destroy(bst, g->ev);
  for (int i = 0; i < 3; i++)
    if (g->bufs[i]) be->mem_free(bst, dev, g->bufs[i]);
  memset(g, 0, sizeof *g);
}

/* A gate of n cubed (0: none). A plugin that declines the product (or has no
 * gemm call) times ungated, said on stderr; an error setting it up is said
 * there as TOOL's and gives false. */
static bool bench_gate_open(const char *tool, const flagos_backend_t *be, void *bst, int dev, int64_t n,
                            bench_gate_t *g) {
  memset(g, 0, sizeof *g);
  if (n <= 0) return true;
  size_t bytes = (size_t)(n * n) * sizeof(float);
  void *zeros = calloc(1, bytes);
  if (!zeros) return true;
  flagos_status_t st = NULL;
  for (int i = 0; i < 3 && !st; i++) st = be->mem_alloc(bst, dev, bytes, &g->bufs[i]);
  for (int i = 0; i < 3 && !st; i++) st = be->copy_h2d(bst, NULL, g->bufs[i], 0, zeros, bytes);
  free(zeros);
  if (!st) st = be->event_create(bst, dev, &g->ev);
  for (int i = 0; i < 3; i++) g->dts[i] = FLAGOS_FLOAT32;
  int64_t ints[9] = {1, n, n, n, 0, 0, n * n, n * n, n * n};
  memcpy(g->ints, ints, sizeof ints);
  g->fl[0] = 1.0, g->fl[1] = 0.0;
  g->call = (flagos_libcall_t){"gemm", g->bufs, g->dts, 3, g->ints, 9, g->fl, 2};
  if (st) {
    fprintf(stderr, "%s: the gate: %s\n", tool, flagos_status_message(st));
    flagos_status_free(st);
    bench_gate_close(be, bst, dev, g);
    return false;
  }
  flagos_status_t cs = be->library_call(bst, NULL, &g->call);
  if (!cs) cs = be->stream_sync(bst, NULL);
  if (cs) {
    fprintf(stderr, "%s: no gate (the %lldx%lldx%lld f32 gemm call: %s): times may be the host's pace\n", tool,
            (long long)n, (long long)n, (long long)n, flagos_status_message(cs));
    flagos_status_free(cs);
    bench_gate_close(be, bst, dev, g);
  }
  return true;
}

/* `warmup` calls and a sync, then `iters` calls back to back between ev[0] and
 * ev[1] (call i is calls[i % ncalls]: the same product on other buffers, so
 * that its operands are not in the device's cache): *us the device time a
 * call (the plugin's events), *host_us the host time a call spent queuing
 * them. With a gate (NULL or closed: none), gate
 * products first, as many as twice the host's expected queuing (ev[0] after
 * them), and *gated says whether they outlasted it: the host had queued the
 * last timed call before the device left the gate, by an event before it. */
static flagos_status_t bench_time(const flagos_backend_t *be, void *bst, const flagos_libcall_t *calls, int ncalls,
                                  int warmup, int iters, flagos_bevent_t *ev, const bench_gate_t *gate, double *us,
                                  double *host_us, bool *gated) {
  flagos_status_t st = NULL;
  *gated = false;
  /* the host's time a call, from the warm-ups after the first (which may build kernels) */
  double tw = 0, warm_us = 50.0;
  for (int i = 0; i < warmup && !st; i++) {
    if (i == 1) tw = bench_now_s();
    st = be->library_call(bst, NULL, &calls[i % ncalls]);
  }
  if (warmup > 1) warm_us = (bench_now_s() - tw) * 1e6 / (warmup - 1);
  if (!st) st = be->stream_sync(bst, NULL);
  int n_gate = 0;
  if (!st && gate && gate->ev) {
    double ms = 0;
    st = be->event_record(bst, gate->ev, NULL);
    if (!st) st = be->library_call(bst, NULL, &gate->call);
    if (!st) st = be->event_record(bst, ev[0], NULL);
    if (!st) st = be->event_sync(bst, ev[0]);
    if (!st) st = be->event_elapsed_ms(bst, gate->ev, ev[0], &ms);
    double gate_us = ms * 1e3 > 1.0 ? ms * 1e3 : 1.0, need = 2.0 * ((double)iters * warm_us + 200.0) / gate_us;
    n_gate = need > 2000 ? 2000 : (int)need + 1;
  }
  double t0 = bench_now_s();
  if (!st && n_gate) st = be->event_record(bst, gate->ev, NULL);
  for (int i = 0; i < n_gate && !st; i++) st = be->library_call(bst, NULL, &gate->call);
  if (!st) st = be->event_record(bst, ev[0], NULL);
  double t1 = bench_now_s();
  for (int i = 0; i < iters && !st; i++) st = be->library_call(bst, NULL, &calls[i % ncalls]);
  double t2 = bench_now_s();
  *host_us = (t2 - t1) * 1e6 / iters;
  if (!st) st = be->event_record(bst, ev[1], NULL);
  if (!st) st = be->event_sync(bst, ev[1]);
  double ms = 0;
  if (!st) st = be->event_elapsed_ms(bst, ev[0], ev[1], &ms);
  *us = ms * 1e3 / iters;
  if (!st && n_gate) {
    double gms = 0;
    st = be->event_elapsed_ms(bst, gate->ev, ev[0], &gms);
    *gated = !st && gms * 1e-3 > t2 - t0;
  }
  return st;
}

#endif
