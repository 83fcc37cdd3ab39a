/* The runtime's profiler (docs/profiling.md): opt-in per session, recording per
 * node the device time between two backend events recorded around its launches,
 * the node's useful FLOPs and bytes, every copy (bytes, direction, device time),
 * the host's own overhead and the device memory the runtime holds.
 *
 * While a session profiles, its executor calls the backend through a table of
 * forwarders whose state is the profiler (rt_prof_api): copies and allocations
 * are seen there without touching every call site, and a session that does not
 * profile keeps calling the plugin directly. Nodes are seen through four hooks
 * in exec.c, each behind `if (x->prof)`. Device events are resolved against an
 * anchor event recorded at the start of each run, whose host time is known, so
 * every event lands on one clock (microseconds since the profiler started). */
#ifndef FLAGOS_RT_PROFILE_H
#define FLAGOS_RT_PROFILE_H

#include "runtime/runtime.h"

typedef struct rt_prof rt_prof_t;

typedef enum rt_pev_kind { RT_PEV_KERNEL, RT_PEV_COPY, RT_PEV_HOST } rt_pev_kind_t;
typedef enum rt_copy_dir { RT_COPY_H2D, RT_COPY_D2H, RT_COPY_D2D } rt_copy_dir_t;

typedef struct rt_pev {
  rt_pev_kind_t kind;
  int run;
  double t0_us, t1_us;     /* host clock; device events already mapped onto it */
  const rt_node_t *node;   /* kernel events; host spans of a node (else NULL) */
  const char *label;       /* host spans: a static string ("run", "prepare"...) */
  const char *library;     /* kernel events: the library call that ran, NULL for generated kernels */
  double flops, bytes;     /* kernel: per execution; copy: bytes */
  rt_copy_dir_t dir;       /* copies */
} rt_pev_t;

typedef struct rt_mem_sample {
  double t_us;
  uint64_t bytes;
} rt_mem_sample_t;

/* What the trace writer and the summaries read. */
typedef struct rt_prof_view {
  const char *device;      /* "cpu:0" */
  const char *device_name;
  double epoch_us;         /* host clock when the profiler started */
  int runs;
  double wall_ms;
  const rt_pev_t *evs;
  int64_t n_evs;
  const rt_mem_sample_t *mem;
  int64_t n_mem;
  uint64_t peak_mem;
} rt_prof_view_t;

flagos_status_t rt_prof_create(const rt_backend_t *be, int device, rt_prof_t **out);
void rt_prof_destroy(rt_prof_t *p);
void rt_prof_reset(rt_prof_t *p);
/* The forwarding table; its calls take the profiler as their state. */
const flagos_backend_t *rt_prof_api(rt_prof_t *p);
void rt_prof_view(const rt_prof_t *p, rt_prof_view_t *out);

/* Host monotonic clock in microseconds. */
double rt_prof_now_us(void);

/* Run boundaries (session.c). run_end resolves the run's device events; a failed
 * run's records are dropped. */
flagos_status_t rt_prof_run_begin(rt_prof_t *p);
flagos_status_t rt_prof_run_end(rt_prof_t *p, bool ok, double wall_ms);
/* A host span [t0_us, now] on the runtime's lane. */
void rt_prof_host_span(rt_prof_t *p, const char *label, const rt_node_t *rn, double t0_us);
/* Around a kernel node's launches (exec.c): begin records the host time spent
 * preparing it since t0_us and a device event; end records the closing event
 * and the node's FLOPs (the manifest's, or its operator's count on the concrete
 * shapes in c) and bytes. */
flagos_status_t rt_prof_node_begin(rt_prof_t *p, const rt_node_t *rn, double t0_us);
flagos_status_t rt_prof_node_end(rt_prof_t *p, const rt_node_t *rn, const ops_ctx_t *c, const char *library);

/* session.c: the profiler of a session, NULL when it never profiled. */
rt_prof_t *rt_session_profiler(const flagos_session_t *s);

#endif
