/* Recording a session's profile: the forwarding backend table, device events
 * around nodes and copies, host spans, and device memory in use. The trace
 * writer and the summaries are in profile_report.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/profile.h"

typedef struct mem_slot {
  void *ptr;
  size_t bytes;
} mem_slot_t;

/* A device-timed record waiting for its run's events to complete. */
typedef struct pending {
  int64_t ev;
  int e0, e1; /* indices into the event pool */
} pending_t;

struct rt_prof {
  flagos_backend_t api; /* the forwarders; the executor's table while profiling */
  const flagos_backend_t *real;
  void *real_state;
  int device;
  char device_label[64];
  char device_name[128];
  double epoch_us;

  bool in_run;
  int run; /* index of the current run among the recorded ones */
  double wall_ms;
  flagos_bevent_t anchor;
  double anchor_us, run_t0_us;
  double dev_end_us; /* the end of the latest device event, over all runs */
  int64_t run_first_ev, run_first_mem;

  flagos_bevent_t *pool; /* device events, reused run after run */
  int n_pool, used_pool;
  pending_t *pending;
  int64_t n_pending, cap_pending;
  int node_e0;

  rt_pev_t *evs;
  int64_t n_evs, cap_evs;
  rt_mem_sample_t *mem;
  int64_t n_mem, cap_mem;

  mem_slot_t *slots; /* live allocations: open addressing, linear probing */
  size_t cap_slots, n_slots;
  uint64_t live, peak;
};

double rt_prof_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ---- growable arrays ---- */
static bool grow(void **arr, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return true;
  int64_t nc = *cap ? *cap * 2 : 256;
  while (nc < need) nc *= 2;
  void *n = realloc(*arr, (size_t)nc * elem);
  if (!n) return false;
  *arr = n;
  *cap = nc;
  return true;
}

static rt_pev_t *push_ev(rt_prof_t *p, rt_pev_kind_t kind) {
  if (!grow((void **)&p->evs, &p->cap_evs, p->n_evs + 1, sizeof(rt_pev_t))) return NULL;
  rt_pev_t *e = &p->evs[p->n_evs++];
  memset(e, 0, sizeof(*e));
  e->kind = kind;
  e->run = p->run;
  return e;
}

/* ---- live allocations ---- */
static size_t slot_of(const rt_prof_t *p, const void *ptr) {
  uint64_t h = (uint64_t)(uintptr_t)ptr * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 20) & (p->cap_slots - 1);
}

static bool mem_insert(rt_prof_t *p, void *ptr, size_t bytes) {
  if ((p->n_slots + 1) * 2 > p->cap_slots) {
    size_t oc = p->cap_slots, nc = oc ? oc * 2 : 1024;
    mem_slot_t *old = p->slots, *n = calloc(nc, sizeof(*n));
    if (!n) return false;
    p->slots = n;
    p->cap_slots = nc;
    p->n_slots = 0;
    for (size_t i = 0; i < oc; i++)
      if (old[i].ptr) mem_insert(p, old[i].ptr, old[i].bytes);
    free(old);
  }
  size_t i = slot_of(p, ptr);
  while (p->slots[i].ptr && p->slots[i].ptr != ptr) i = (i + 1) & (p->cap_slots - 1);
  if (!p->slots[i].ptr) p->n_slots++;
  p->slots[i].ptr = ptr;
  p->slots[i].bytes = bytes;
  return true;
}

/* Removes ptr (backward-shift deletion keeps probe chains intact); returns its size. */
static size_t mem_remove(rt_prof_t *p, const void *ptr) {
  if (!p->cap_slots) return 0;
  size_t mask = p->cap_slots - 1, i = slot_of(p, ptr);
  while (p->slots[i].ptr && p->slots[i].ptr != ptr) i = (i + 1) & mask;
  if (!p->slots[i].ptr) return 0;
  size_t bytes = p->slots[i].bytes;
  p->slots[i].ptr = NULL;
  p->n_slots--;
  for (size_t j = (i + 1) & mask; p->slots[j].ptr; j = (j + 1) & mask) {
    size_t home = slot_of(p, p->slots[j].ptr);
    /* j's entry may move into the hole at i unless its home lies cyclically in (i, j]. */
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    p->slots[i] = p->slots[j];
    p->slots[j].ptr = NULL;
    i = j;
  }
  return bytes;
}

static void mem_sample(rt_prof_t *p) {
  if (!p->in_run || !grow((void **)&p->mem, &p->cap_mem, p->n_mem + 1, sizeof(rt_mem_sample_t))) return;
  p->mem[p->n_mem].t_us = rt_prof_now_us();
  p->mem[p->n_mem].bytes = p->live;
  p->n_mem++;
}

/* ---- device events ---- */
static flagos_status_t pool_record(rt_prof_t *p, int *idx) {
  if (p->used_pool == p->n_pool) {
    flagos_bevent_t *np = realloc(p->pool, sizeof(*np) * (size_t)(p->n_pool ? p->n_pool * 2 : 64));
    if (!np) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "profiler: out of memory");
    p->pool = np;
    int want = p->n_pool ? p->n_pool * 2 : 64;
    while (p->n_pool < want) {
      FL_TRY(p->real->event_create(p->real_state, p->device, &p->pool[p->n_pool]));
      p->n_pool++;
    }
  }
  *idx = p->used_pool++;
  return p->real->event_record(p->real_state, p->pool[*idx], NULL);
}

static flagos_status_t add_pending(rt_prof_t *p, int64_t ev, int e0, int e1) {
  if (!grow((void **)&p->pending, &p->cap_pending, p->n_pending + 1, sizeof(pending_t)))
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "profiler: out of memory");
  p->pending[p->n_pending++] = (pending_t){ev, e0, e1};
  return NULL;
}

/* ---- the forwarding table ---- */
#define P ((rt_prof_t *)state)
static flagos_status_t w_init(const flagos_host_t *host, void **state) {
  (void)host;
  (void)state;
  return FL_ERR(FLAGOS_ERR_INTERNAL, "profiler table: init is not forwarded");
}
static void w_shutdown(void *state) { (void)state; }
static int w_device_count(void *state) { return P->real->device_count(P->real_state); }
static flagos_status_t w_device_info(void *state, int device, flagos_device_info_t *out) {
  return P->real->device_info(P->real_state, device, out);
}
static flagos_status_t w_mem_alloc(void *state, int device, size_t bytes, flagos_devptr_t *out) {
  FL_TRY(P->real->mem_alloc(P->real_state, device, bytes, out));
  if (mem_insert(P, *out, bytes)) {
    P->live += bytes;
    if (P->live > P->peak) P->peak = P->live;
    mem_sample(P);
  }
  return NULL;
}
static void w_mem_free(void *state, int device, flagos_devptr_t ptr) {
  P->live -= mem_remove(P, ptr);
  P->real->mem_free(P->real_state, device, ptr);
  mem_sample(P);
}

/* A copy between two device events, recorded while a run is being profiled. */
static flagos_status_t timed_copy(rt_prof_t *p, int *e0) {
  *e0 = -1;
  return p->in_run ? pool_record(p, e0) : NULL;
}
static flagos_status_t copy_done(rt_prof_t *p, rt_copy_dir_t dir, size_t bytes, int e0) {
  if (e0 < 0) return NULL;
  int e1;
  FL_TRY(pool_record(p, &e1));
  rt_pev_t *e = push_ev(p, RT_PEV_COPY);
  if (!e) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "profiler: out of memory");
  e->dir = dir;
  e->bytes = (double)bytes;
  return add_pending(p, p->n_evs - 1, e0, e1);
}
static flagos_status_t w_copy_h2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                  const void *src, size_t bytes) {
  int e0;
  FL_TRY(timed_copy(P, &e0));
  FL_TRY(P->real->copy_h2d(P->real_state, stream, dst, dst_off, src, bytes));
  return copy_done(P, RT_COPY_H2D, bytes, e0);
}
static flagos_status_t w_copy_d2h(void *state, flagos_bstream_t stream, void *dst, flagos_devptr_t src, size_t src_off,
                                  size_t bytes) {
  int e0;
  FL_TRY(timed_copy(P, &e0));
  FL_TRY(P->real->copy_d2h(P->real_state, stream, dst, src, src_off, bytes));
  return copy_done(P, RT_COPY_D2H, bytes, e0);
}
static flagos_status_t w_copy_d2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                  flagos_devptr_t src, size_t src_off, size_t bytes) {
  int e0;
  FL_TRY(timed_copy(P, &e0));
  FL_TRY(P->real->copy_d2d(P->real_state, stream, dst, dst_off, src, src_off, bytes));
  return copy_done(P, RT_COPY_D2D, bytes, e0);
}
static flagos_status_t w_stream_create(void *state, int device, flagos_bstream_t *out) {
  return P->real->stream_create(P->real_state, device, out);
}
static void w_stream_destroy(void *state, flagos_bstream_t s) { P->real->stream_destroy(P->real_state, s); }
static flagos_status_t w_stream_sync(void *state, flagos_bstream_t s) { return P->real->stream_sync(P->real_state, s); }
static flagos_status_t w_event_create(void *state, int device, flagos_bevent_t *out) {
  return P->real->event_create(P->real_state, device, out);
}
static void w_event_destroy(void *state, flagos_bevent_t e) { P->real->event_destroy(P->real_state, e); }
static flagos_status_t w_event_record(void *state, flagos_bevent_t e, flagos_bstream_t s) {
  return P->real->event_record(P->real_state, e, s);
}
static flagos_status_t w_stream_wait_event(void *state, flagos_bstream_t s, flagos_bevent_t e) {
  return P->real->stream_wait_event(P->real_state, s, e);
}
static flagos_status_t w_event_sync(void *state, flagos_bevent_t e) { return P->real->event_sync(P->real_state, e); }
static flagos_status_t w_event_elapsed_ms(void *state, flagos_bevent_t a, flagos_bevent_t b, double *ms) {
  return P->real->event_elapsed_ms(P->real_state, a, b, ms);
}
static flagos_status_t w_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out) {
  return P->real->module_load(P->real_state, device, code, size, out);
}
static void w_module_unload(void *state, flagos_bmodule_t m) { P->real->module_unload(P->real_state, m); }
static flagos_status_t w_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out) {
  return P->real->kernel_get(P->real_state, m, name, out);
}
static flagos_status_t w_launch(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args) {
  return P->real->launch(P->real_state, s, k, args);
}
static flagos_status_t w_library_call(void *state, flagos_bstream_t s, const flagos_libcall_t *call) {
  return P->real->library_call(P->real_state, s, call);
}
static flagos_status_t w_device_power(void *state, int device, flagos_power_info_t *out) {
  return P->real->device_power(P->real_state, device, out);
}
#undef P

flagos_status_t rt_prof_create(const rt_backend_t *be, int device, rt_prof_t **out) {
  rt_prof_t *p = calloc(1, sizeof(*p));
  if (!p) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "profiler: out of memory");
  const flagos_backend_t *r = be->api;
  p->real = r;
  p->real_state = be->state;
  p->device = device;
  snprintf(p->device_label, sizeof p->device_label, "%s:%d", be->name, device);
  flagos_device_info_t info;
  memset(&info, 0, sizeof info);
  if (r->device_info(be->state, device, &info) == NULL) snprintf(p->device_name, sizeof p->device_name, "%s", info.name);
  flagos_backend_t *w = &p->api;
  *w = (flagos_backend_t){
      .abi_version = r->abi_version,
      .struct_size = sizeof(flagos_backend_t),
      .name = r->name,
      .code_format = r->code_format,
      .version = r->version,
      .init = w_init,
      .shutdown = w_shutdown,
      .device_count = w_device_count,
      .device_info = w_device_info,
      .mem_alloc = w_mem_alloc,
      .mem_free = w_mem_free,
      .copy_h2d = w_copy_h2d,
      .copy_d2h = w_copy_d2h,
      .copy_d2d = w_copy_d2d,
      .stream_create = w_stream_create,
      .stream_destroy = w_stream_destroy,
      .stream_sync = w_stream_sync,
      .event_create = w_event_create,
      .event_destroy = w_event_destroy,
      .event_record = w_event_record,
      .stream_wait_event = w_stream_wait_event,
      .event_sync = w_event_sync,
      .event_elapsed_ms = w_event_elapsed_ms,
      .module_load = w_module_load,
      .module_unload = w_module_unload,
      .kernel_get = w_kernel_get,
      .launch = w_launch,
      /* optional calls stay absent where the plugin lacks them */
      .library_call = r->library_call ? w_library_call : NULL,
      .device_power = FLAGOS_BACKEND_HAS(r, device_power) ? w_device_power : NULL,
  };
  flagos_status_t st = r->event_create(be->state, device, &p->anchor);
  if (st) {
    free(p);
    return flagos_status_wrap(st, "profiler: cannot create a device event");
  }
  p->epoch_us = rt_prof_now_us();
  *out = p;
  return NULL;
}

void rt_prof_destroy(rt_prof_t *p) {
  if (!p) return;
  for (int i = 0; i < p->n_pool; i++) p->real->event_destroy(p->real_state, p->pool[i]);
  if (p->anchor) p->real->event_destroy(p->real_state, p->anchor);
  free(p->pool);
  free(p->pending);
  free(p->evs);
  free(p->mem);
  free(p->slots);
  free(p);
}

void rt_prof_reset(rt_prof_t *p) {
  p->n_evs = p->n_mem = 0;
  p->run = 0;
  p->wall_ms = 0;
  p->peak = p->live;
}

const flagos_backend_t *rt_prof_api(rt_prof_t *p) { return &p->api; }

void rt_prof_view(const rt_prof_t *p, rt_prof_view_t *out) {
  *out = (rt_prof_view_t){p->device_label, p->device_name, p->epoch_us, p->run, p->wall_ms, p->evs, p->n_evs,
                          p->mem, p->n_mem, p->peak};
}

flagos_status_t rt_prof_run_begin(rt_prof_t *p) {
  /* Nothing may be queued before the anchor, or its host time would not be its device time. */
  FL_TRY(p->real->stream_sync(p->real_state, NULL));
  /* The anchor's host time is read just before it is recorded (on an idle
   * device it is recorded at once; reading the clock after the sync instead
   * would add the host's delays, up to a preemption, to every event of the run
   * and let one run's events overlap the next one's). It cannot be earlier than
   * the end of the previous run's last device event. */
  double t0 = rt_prof_now_us();
  FL_TRY(p->real->event_record(p->real_state, p->anchor, NULL));
  FL_TRY(p->real->event_sync(p->real_state, p->anchor));
  p->anchor_us = p->run_t0_us = t0 > p->dev_end_us ? t0 : p->dev_end_us;
  p->in_run = true;
  p->used_pool = 0;
  p->n_pending = 0;
  p->run_first_ev = p->n_evs;
  p->run_first_mem = p->n_mem;
  mem_sample(p);
  return NULL;
}

flagos_status_t rt_prof_run_end(rt_prof_t *p, bool ok, double wall_ms) {
  p->in_run = false;
  flagos_status_t st = NULL;
  if (ok && p->used_pool > 0) st = p->real->event_sync(p->real_state, p->pool[p->used_pool - 1]);
  for (int64_t i = 0; ok && !st && i < p->n_pending; i++) {
    const pending_t *q = &p->pending[i];
    double a = 0, b = 0;
    st = p->real->event_elapsed_ms(p->real_state, p->anchor, p->pool[q->e0], &a);
    if (!st) st = p->real->event_elapsed_ms(p->real_state, p->anchor, p->pool[q->e1], &b);
    if (st) break;
    rt_pev_t *e = &p->evs[q->ev];
    e->t0_us = p->anchor_us + a * 1e3;
    e->t1_us = p->anchor_us + (b > a ? b : a) * 1e3;
    if (e->t1_us > p->dev_end_us) p->dev_end_us = e->t1_us;
  }
  if (!ok || st) {
    p->n_evs = p->run_first_ev;
    p->n_mem = p->run_first_mem;
    return st ? flagos_status_wrap(st, "profiler: cannot read the device's event times") : NULL;
  }
  /* the closing sample (the counter shows what the run kept) and the run's span */
  p->in_run = true;
  mem_sample(p);
  rt_prof_host_span(p, "run", NULL, p->run_t0_us);
  p->in_run = false;
  p->run++;
  p->wall_ms += wall_ms;
  return NULL;
}

void rt_prof_host_span(rt_prof_t *p, const char *label, const rt_node_t *rn, double t0_us) {
  if (!p->in_run) return;
  rt_pev_t *e = push_ev(p, RT_PEV_HOST);
  if (!e) return;
  e->label = label;
  e->node = rn;
  e->t0_us = t0_us;
  e->t1_us = rt_prof_now_us();
}

flagos_status_t rt_prof_node_begin(rt_prof_t *p, const rt_node_t *rn, double t0_us) {
  p->node_e0 = -1;
  if (!p->in_run) return NULL;
  rt_prof_host_span(p, "prepare", rn, t0_us);
  return pool_record(p, &p->node_e0);
}

flagos_status_t rt_prof_node_end(rt_prof_t *p, const rt_node_t *rn, const ops_ctx_t *c, const char *library) {
  if (!p->in_run || p->node_e0 < 0) return NULL;
  int e1;
  FL_TRY(pool_record(p, &e1));
  rt_pev_t *e = push_ev(p, RT_PEV_KERNEL);
  if (!e) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "profiler: out of memory");
  e->node = rn;
  e->library = library;
  double f = rn->flops >= 0 ? rn->flops : ops_node_flops(rn->def, c);
  e->flops = f > 0 ? f : 0;
  double b = ops_node_bytes(c);
  e->bytes = b > 0 ? b : 0;
  return add_pending(p, p->n_evs - 1, p->node_e0, e1);
}
