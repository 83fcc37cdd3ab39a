/* A test plugin named "cpu" that wraps the real cpu plugin but says its device
 * memory is not host-visible, counts copies and launches, and captures launches
 * into replayable lists (the graph entries of the plugin ABI). test_runtime_graphs
 * puts it first on FLAGOS_PLUGIN_PATH, so the runtime takes the path it takes for
 * a GPU: weights placed once, inputs uploaded, outputs downloaded, graphs.
 *
 * FAKE_CAPTURE_FAIL=1 (read at capture_end) makes every capture fail;
 * FAKE_NO_CAPTURE=1 (read at capture_begin) refuses to capture. */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagos/backend.h"

typedef struct fake_counts {
  long h2d, d2h, d2d, h2d_bytes, launches, captured_launches, graph_launches, captures, capture_failures;
} fake_counts_t;

static fake_counts_t g_counts;
static const flagos_backend_t *g_real;
static flagos_backend_t g_table;

#define ADD(field, n) __atomic_add_fetch(&g_counts.field, (n), __ATOMIC_RELAXED)

typedef struct rec {
  flagos_bkernel_t k;
  flagos_devptr_t *bufs;
  int64_t *syms;
  int n_bufs, n_syms;
  int64_t work;
} rec_t;

struct flagos_bgraph_s {
  rec_t *recs;
  int n, cap;
};

struct flagos_bstream_s {
  struct flagos_bgraph_s *capturing; /* non-NULL between capture_begin and capture_end */
  int failed;
};

__attribute__((visibility("default"))) void fake_counts(fake_counts_t *out) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  *out = g_counts;
}

/* false: the table ends before the graph entries (a plugin built before them). */
__attribute__((visibility("default"))) void fake_set_graph_abi(int on) {
  g_table.struct_size = on ? (uint32_t)sizeof(flagos_backend_t) : (uint32_t)offsetof(flagos_backend_t, capture_begin);
}

static flagos_status_t f_device_info(void *st, int d, flagos_device_info_t *out) {
  flagos_status_t s = g_real->device_info(st, d, out);
  if (!s) out->host_visible = 0;
  return s;
}

static flagos_status_t f_copy_h2d(void *st, flagos_bstream_t s, flagos_devptr_t dst, size_t off, const void *src,
                                  size_t bytes) {
  ADD(h2d, 1);
  ADD(h2d_bytes, (long)bytes);
  return g_real->copy_h2d(st, NULL, dst, off, src, bytes);
}

static flagos_status_t f_copy_d2h(void *st, flagos_bstream_t s, void *dst, flagos_devptr_t src, size_t off,
                                  size_t bytes) {
  ADD(d2h, 1);
  return g_real->copy_d2h(st, NULL, dst, src, off, bytes);
}

static flagos_status_t f_copy_d2d(void *st, flagos_bstream_t s, flagos_devptr_t dst, size_t doff, flagos_devptr_t src,
                                  size_t soff, size_t bytes) {
  ADD(d2d, 1);
  return g_real->copy_d2d(st, NULL, dst, doff, src, soff, bytes);
}

static flagos_status_t f_stream_create(void *st, int device, flagos_bstream_t *out) {
  (void)st;
  (void)device;
  *out = calloc(1, sizeof(**out));
  return NULL;
}

static void f_stream_destroy(void *st, flagos_bstream_t s) {
  (void)st;
  free(s);
}

static flagos_status_t f_stream_sync(void *st, flagos_bstream_t s) {
  (void)s;
  return g_real->stream_sync(st, NULL);
}

static flagos_status_t f_launch(void *st, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *a) {
  struct flagos_bgraph_s *g = s ? s->capturing : NULL;
  if (!g) {
    ADD(launches, 1);
    return g_real->launch(st, NULL, k, a);
  }
  if (g->n == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 16;
    g->recs = realloc(g->recs, sizeof(rec_t) * (size_t)g->cap);
  }
  rec_t *r = &g->recs[g->n++];
  r->k = k;
  r->n_bufs = a->n_bufs;
  r->n_syms = a->n_syms;
  r->work = a->work;
  r->bufs = malloc(sizeof(flagos_devptr_t) * (size_t)(a->n_bufs + 1));
  r->syms = malloc(sizeof(int64_t) * (size_t)(a->n_syms + 1));
  memcpy(r->bufs, a->bufs, sizeof(flagos_devptr_t) * (size_t)a->n_bufs);
  memcpy(r->syms, a->syms, sizeof(int64_t) * (size_t)a->n_syms);
  ADD(captured_launches, 1);
  return NULL;
}

static flagos_host_t g_host;

static flagos_status_t f_init(const flagos_host_t *host, void **state) {
  g_host = *host;
  return g_real->init(host, state);
}

static flagos_status_t f_library_call(void *st, flagos_bstream_t s, const flagos_libcall_t *c) {
  /* Not recorded: refusing sends the host to the kernel's generic body, which is. */
  if (s && s->capturing) return g_host.status_new(FLAGOS_ERR_UNSUPPORTED, "fake plugin: library calls are not captured");
  return g_real->library_call(st, NULL, c);
}

static flagos_status_t f_capture_begin(void *st, int device, flagos_bstream_t s) {
  (void)st;
  (void)device;
  const char *no = getenv("FAKE_NO_CAPTURE");
  if (no && *no == '1') return g_host.status_new(FLAGOS_ERR_UNSUPPORTED, "fake plugin: no capture");
  if (!s) return g_host.status_new(FLAGOS_ERR_INVALID_ARGUMENT, "fake plugin: captures on a stream of its own only");
  s->capturing = calloc(1, sizeof(*s->capturing));
  return NULL;
}

static void f_graph_destroy(void *st, flagos_bgraph_t g) {
  (void)st;
  if (!g) return;
  for (int i = 0; i < g->n; i++) {
    free(g->recs[i].bufs);
    free(g->recs[i].syms);
  }
  free(g->recs);
  free(g);
}

static flagos_status_t f_capture_end(void *st, int device, flagos_bstream_t s, flagos_bgraph_t *out) {
  (void)device;
  *out = NULL;
  struct flagos_bgraph_s *g = s ? s->capturing : NULL;
  if (!g) return g_host.status_new(FLAGOS_ERR_INVALID_ARGUMENT, "fake plugin: no capture on this stream");
  s->capturing = NULL;
  const char *fail = getenv("FAKE_CAPTURE_FAIL");
  if (fail && *fail == '1') {
    f_graph_destroy(st, g);
    ADD(capture_failures, 1);
    return g_host.status_new(FLAGOS_ERR_BACKEND, "fake plugin: capture invalidated");
  }
  ADD(captures, 1);
  *out = g;
  return NULL;
}

static flagos_status_t f_graph_launch(void *st, flagos_bgraph_t g, flagos_bstream_t s) {
  (void)s;
  ADD(graph_launches, 1);
  for (int i = 0; i < g->n; i++) {
    const rec_t *r = &g->recs[i];
    flagos_launch_t a = {r->bufs, r->n_bufs, r->syms, r->n_syms, r->work};
    flagos_status_t e = g_real->launch(st, NULL, r->k, &a);
    if (e) return e;
  }
  return NULL;
}

__attribute__((visibility("default"))) const flagos_backend_t *flagos_backend_entry(uint32_t abi_version) {
  if (!g_real) {
    void *h = dlopen(FLAGOS_REAL_CPU_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    flagos_backend_entry_fn e = h ? (flagos_backend_entry_fn)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL) : NULL;
    g_real = e ? e(abi_version) : NULL;
    if (!g_real) {
      fprintf(stderr, "fake plugin: cannot load %s\n", FLAGOS_REAL_CPU_PLUGIN);
      return NULL;
    }
    g_table = *g_real;
    g_table.struct_size = sizeof(flagos_backend_t);
    g_table.init = f_init;
    g_table.device_info = f_device_info;
    g_table.copy_h2d = f_copy_h2d;
    g_table.copy_d2h = f_copy_d2h;
    g_table.copy_d2d = f_copy_d2d;
    g_table.stream_create = f_stream_create;
    g_table.stream_destroy = f_stream_destroy;
    g_table.stream_sync = f_stream_sync;
    g_table.launch = f_launch;
    g_table.library_call = g_real->library_call ? f_library_call : NULL;
    g_table.capture_begin = f_capture_begin;
    g_table.capture_end = f_capture_end;
    g_table.graph_launch = f_graph_launch;
    g_table.graph_destroy = f_graph_destroy;
  }
  return &g_table;
}
