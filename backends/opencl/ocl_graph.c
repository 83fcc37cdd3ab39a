/* Capture and replay (the plugin ABI's capture_begin, capture_end,
 * graph_launch, graph_destroy; src/runtime/graph.c drives them).
 *
 * Between capture_begin and capture_end, launches and library calls on the
 * capturing stream are recorded, not queued: a launch as its kernel, its
 * argument buffers (retained, so a symbol buffer the kernel later replaces
 * stays alive) and its sizes; a library call as a deep copy of its arguments.
 * capture_end cuts the record into segments at the library calls and, where
 * the device has cl_khr_command_buffer, records each run of launches into a
 * command buffer for the device's default queue. A replay then queues, in
 * order, each command buffer (one call for a run of kernels) or, where there
 * is none (no extension, a refusal, another queue), the segment's launches one
 * by one on kernel objects whose arguments were set at capture_end, and makes
 * each library call again (CLBlast has no command-buffer form).
 *
 * A library call during a capture also runs once on the capturing queue, on
 * whatever its buffers hold then: CLBlast refuses some calls only when it
 * tries them (a kernel it cannot build), and such a refusal must reach the host
 * while it can still record the generic kernel instead. The replay computes
 * everything again, in order, so the values of that run are never read.
 *
 * Without simultaneous use (CL_COMMAND_BUFFER_CAPABILITY_SIMULTANEOUS_USE_KHR)
 * a command buffer is queued again only once its previous execution is done
 * (the host waits on it: the runtime reads a replay's outputs before the next
 * one, so it is normally done already).
 *
 * FLAGOS_OPENCL_GRAPHS=0 refuses capture (the runtime then runs plainly);
 * FLAGOS_OPENCL_COMMAND_BUFFER=0 keeps captures but replays launch by launch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ocl_internal.h"

/* cl_khr_command_buffer's enumerants (cl_ext.h), for headers without it */
#define OCL_CB_CAPABILITIES 0x12A9
#define OCL_CB_REQUIRED_QUEUE_PROPERTIES 0x12AA
#define OCL_CB_CAP_SIMULTANEOUS_USE (1u << 2)
#define OCL_CB_FLAGS 0x1293
#define OCL_CB_SIMULTANEOUS_USE (1u << 0)

typedef struct ocl_rec {
  flagos_bkernel_t k; /* NULL: a library call */
  cl_mem *args;
  cl_uint n_args;
  size_t global, local;
  flagos_libcall_t call; /* arrays owned (the casts below drop const to free them) */
  int ours;              /* the call was our kernels': 1 a product (ga), 2 a convolution (ca), 3 attention (call) */
  ocl_gemm_args_t ga;
  ocl_conv_args_t ca;
} ocl_rec_t;

struct ocl_capture {
  int dev;
  ocl_rec_t *r;
  int n, cap;
  bool failed; /* a record could not be made: capture_end fails */
};

typedef struct ocl_seg {
  int first, n;
  bool call;       /* one library call */
  ocl_cb_t cb;     /* the launches as a command buffer, or NULL */
  cl_kernel *own;  /* a kernel object per launch, arguments set (make_own), or NULL */
  cl_event last;   /* the command buffer's last execution (without simultaneous use) */
  ocl_gemm_plan_t *plan; /* a library call made ready (ocl_gemm_run's plan), or NULL */
} ocl_seg_t;

struct flagos_bgraph_s {
  int dev;
  ocl_capture_t rec;
  cl_command_queue q; /* the default queue: the command buffers and the plans were made for it */
  bool simultaneous;
  bool timed; /* FLAGOS_TRACE when recorded: each replay prints its host time */
  bool timeline; /* FLAGOS_OPENCL_TIMELINE=1 when recorded: and its device's timeline */
  ocl_timeline_t tl;
  ocl_seg_t *seg;
  int n_seg;
};

void ocl_cb_load(ocl_state_t *s, ocl_device_t *d) {
  d->cb_ok = false;
  if (s->cb_off || !ocl_has_word(d->extensions, "cl_khr_command_buffer")) {
    if (getenv("FLAGOS_TRACE"))
      fprintf(stderr, "flagos trace: opencl: '%s': no command buffers (%s): replays launch by launch\n", d->name,
              s->cb_off ? "FLAGOS_OPENCL_COMMAND_BUFFER=0" : "no cl_khr_command_buffer");
    return;
  }
  ocl_cb_api_t *a = &d->cb;
  void *p[5] = {
      s->cl.clGetExtensionFunctionAddressForPlatform(d->platform, "clCreateCommandBufferKHR"),
      s->cl.clGetExtensionFunctionAddressForPlatform(d->platform, "clFinalizeCommandBufferKHR"),
      s->cl.clGetExtensionFunctionAddressForPlatform(d->platform, "clReleaseCommandBufferKHR"),
      s->cl.clGetExtensionFunctionAddressForPlatform(d->platform, "clEnqueueCommandBufferKHR"),
      s->cl.clGetExtensionFunctionAddressForPlatform(d->platform, "clCommandNDRangeKernelKHR"),
  };
  for (int i = 0; i < 5; i++)
    if (!p[i]) return;
  memcpy(&a->create, &p[0], sizeof p[0]); /* object pointer -> function pointer (POSIX) */
  memcpy(&a->finalize, &p[1], sizeof p[1]);
  memcpy(&a->release, &p[2], sizeof p[2]);
  memcpy(&a->enqueue, &p[3], sizeof p[3]);
  memcpy(&a->nd_range, &p[4], sizeof p[4]);
  cl_bitfield caps = 0, required = 0;
  s->cl.clGetDeviceInfo(d->id, OCL_CB_CAPABILITIES, sizeof caps, &caps, NULL);
  /* Queue properties a command buffer's queue must have: ours have none, or
   * profiling once timed. A device that asks for more goes without. */
  if (s->cl.clGetDeviceInfo(d->id, OCL_CB_REQUIRED_QUEUE_PROPERTIES, sizeof required, &required, NULL) == CL_SUCCESS &&
      (required & ~(cl_bitfield)CL_QUEUE_PROFILING_ENABLE) != 0)
    return;
  a->simultaneous = (caps & OCL_CB_CAP_SIMULTANEOUS_USE) != 0;
  d->cb_ok = true;
  if (getenv("FLAGOS_TRACE"))
    fprintf(stderr, "flagos trace: opencl: '%s' records command buffers (cl_khr_command_buffer%s)\n", d->name,
            a->simultaneous ? ", simultaneous use" : "");
}

ocl_capture_t *ocl_capturing(ocl_state_t *s, flagos_bstream_t st, int dev) {
  return st ? st->capture : dev >= 0 && dev < s->n_dev ? s->dev[dev].capture : NULL;
}

static ocl_rec_t *rec_new(ocl_capture_t *c) {
  if (c->n == c->cap) {
    int nc = c->cap ? c->cap * 2 : 256;
    ocl_rec_t *g = realloc(c->r, sizeof(*g) * (size_t)nc);
    if (!g) return NULL;
    c->r = g;
    c->cap = nc;
  }
  ocl_rec_t *r = &c->r[c->n++];
  memset(r, 0, sizeof(*r));
  return r;
}

flagos_status_t ocl_record_kernel(ocl_state_t *s, ocl_capture_t *c, flagos_bkernel_t k, const cl_mem *args,
                                  cl_uint n_args, size_t global, size_t local) {
  ocl_rec_t *r = rec_new(c);
  cl_mem *a = r ? malloc(sizeof(cl_mem) * (n_args + 1)) : NULL;
  if (!a) {
    if (r) c->n--;
    c->failed = true;
    return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  }
  for (cl_uint i = 0; i < n_args; i++) {
    a[i] = args[i];
    s->cl.clRetainMemObject(a[i]);
  }
  r->k = k;
  r->args = a;
  r->n_args = n_args;
  r->global = global;
  r->local = local;
  return NULL;
}

static void *dup_mem(const void *p, size_t n) {
  void *d = malloc(n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

flagos_status_t ocl_record_call(ocl_state_t *s, ocl_capture_t *c, const flagos_libcall_t *call,
                                const ocl_gemm_args_t *ours, const ocl_conv_args_t *conv) {
  ocl_rec_t *r = rec_new(c);
  if (r) {
    r->ours = ours ? 1 : conv ? 2 : strcmp(call->name, "attention") == 0 ? 3 : 0;
    if (ours) r->ga = *ours;
    if (conv) r->ca = *conv;
    flagos_libcall_t *o = &r->call;
    o->name = dup_mem(call->name, strlen(call->name) + 1);
    o->bufs = dup_mem(call->bufs, sizeof(*call->bufs) * (size_t)call->n_bufs);
    o->buf_dtypes = dup_mem(call->buf_dtypes, sizeof(*call->buf_dtypes) * (size_t)call->n_bufs);
    o->ints = dup_mem(call->ints, sizeof(*call->ints) * (size_t)call->n_ints);
    o->floats = dup_mem(call->floats, sizeof(*call->floats) * (size_t)call->n_floats);
    o->n_bufs = call->n_bufs;
    o->n_ints = call->n_ints;
    o->n_floats = call->n_floats;
    if (o->name && o->bufs && o->buf_dtypes && o->ints && o->floats) return NULL;
  }
  c->failed = true;
  return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
}

static void rec_free(ocl_state_t *s, ocl_capture_t *c) {
  for (int i = 0; i < c->n; i++) {
    ocl_rec_t *r = &c->r[i];
    for (cl_uint j = 0; j < r->n_args; j++) s->cl.clReleaseMemObject(r->args[j]);
    free(r->args);
    free((void *)r->call.name);
    free((void *)r->call.bufs);
    free((void *)r->call.buf_dtypes);
    free((void *)r->call.ints);
    free((void *)r->call.floats);
  }
  free(c->r);
  memset(c, 0, sizeof(*c));
}

void ocl_capture_discard(ocl_state_t *s, ocl_capture_t *c) {
  if (!c) return;
  rec_free(s, c);
  free(c);
}

flagos_status_t ocl_capture_begin(void *state, int device, flagos_bstream_t st) {
  ocl_state_t *s = state;
  if (s->graphs_off)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: graphs disabled (FLAGOS_OPENCL_GRAPHS=0)");
  ocl_device_t *d;
  flagos_status_t err = ocl_device_ready(s, device, &d);
  if (err) return err;
  if (st && st->dev != device)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: capture on a stream of another device");
  ocl_capture_t **slot = st ? &st->capture : &d->capture;
  if (*slot) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: the stream is already capturing");
  ocl_capture_t *c = calloc(1, sizeof(*c));
  if (!c) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  c->dev = device;
  *slot = c;
  return NULL;
}

/* Records segment g->seg[i]'s launches into a command buffer; on any refusal
 * the segment keeps none and replays launch by launch. */
static void release_own(ocl_state_t *s, ocl_seg_t *sg) {
  for (int i = 0; sg->own && i < sg->n; i++)
    if (sg->own[i]) s->cl.clReleaseKernel(sg->own[i]);
  free(sg->own);
  sg->own = NULL;
}

/* Gives each launch of the segment a kernel object of its own with its
 * arguments set, so that a replay is one clEnqueueNDRangeKernel per launch (no
 * argument setting, no lock) and a command buffer sees each launch's own
 * arguments (the extension takes them when a launch is recorded, but PoCL 3.1
 * reads them when the buffer runs: two launches of one cl_kernel would both
 * run with the arguments set last). On failure the segment has none. */
static cl_int make_own(ocl_state_t *s, flagos_bgraph_t g, ocl_seg_t *sg) {
  cl_int e = CL_SUCCESS;
  sg->own = calloc((size_t)sg->n, sizeof(*sg->own));
  if (!sg->own) return CL_OUT_OF_HOST_MEMORY;
  for (int i = 0; e == CL_SUCCESS && i < sg->n; i++) {
    const ocl_rec_t *r = &g->rec.r[sg->first + i];
    sg->own[i] = ocl_kernel_clone(s, r->k, &e);
    for (cl_uint j = 0; e == CL_SUCCESS && j < r->n_args; j++)
      e = s->cl.clSetKernelArg(sg->own[i], j, sizeof(cl_mem), &r->args[j]);
  }
  if (e != CL_SUCCESS) release_own(s, sg);
  return e;
}

static void make_cb(ocl_state_t *s, ocl_device_t *d, flagos_bgraph_t g, ocl_seg_t *sg) {
  cl_int e = CL_SUCCESS;
  cl_ulong props[3] = {OCL_CB_FLAGS, OCL_CB_SIMULTANEOUS_USE, 0};
  ocl_cb_t cb = d->cb.create(1, &g->q, g->simultaneous ? props : NULL, &e);
  for (int i = 0; cb && e == CL_SUCCESS && i < sg->n; i++) {
    const ocl_rec_t *r = &g->rec.r[sg->first + i];
    e = d->cb.nd_range(cb, NULL, NULL, sg->own[i], 1, NULL, &r->global, &r->local, 0, NULL, NULL, NULL);
  }
  if (cb && e == CL_SUCCESS) e = d->cb.finalize(cb);
  if (cb && e == CL_SUCCESS) {
    sg->cb = cb;
    return;
  }
  if (cb) d->cb.release(cb);
  if (getenv("FLAGOS_TRACE"))
    fprintf(stderr, "flagos trace: opencl: no command buffer for %d launches: %s (%d)\n", sg->n, ocl_error_name(e),
            (int)e);
}

flagos_status_t ocl_capture_end(void *state, int device, flagos_bstream_t st, flagos_bgraph_t *out) {
  ocl_state_t *s = state;
  *out = NULL;
  if (device < 0 || device >= s->n_dev || (st && st->dev != device))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: capture_end on device %d", device);
  ocl_device_t *d = &s->dev[device];
  ocl_capture_t **slot = st ? &st->capture : &d->capture;
  ocl_capture_t *c = *slot;
  *slot = NULL;
  if (!c) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: capture_end without capture_begin");
  flagos_bgraph_t g = c->failed ? NULL : calloc(1, sizeof(*g));
  int n_seg = 0;
  for (int i = 0; i < c->n; i++)
    if (!c->r[i].k || i == 0 || !c->r[i - 1].k) n_seg++;
  if (g) g->seg = calloc((size_t)n_seg + 1, sizeof(*g->seg));
  if (!g || !g->seg) {
    bool failed = c->failed;
    rec_free(s, c);
    free(c);
    if (g) free(g);
    return failed ? OCL_ERR(s, FLAGOS_ERR_BACKEND, "opencl backend: the capture failed")
                  : OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  }
  g->dev = device;
  g->rec = *c;
  free(c);
  pthread_mutex_lock(&s->lock);
  g->q = d->queue;
  bool use_cb = d->cb_ok;
  pthread_mutex_unlock(&s->lock);
  g->simultaneous = d->cb.simultaneous;
  g->timed = getenv("FLAGOS_TRACE") != NULL;
  g->timeline = ocl_timeline_wanted();
  for (int i = 0; i < g->rec.n; i++) {
    bool call = !g->rec.r[i].k;
    if (call || i == 0 || !g->rec.r[i - 1].k) g->seg[g->n_seg++] = (ocl_seg_t){i, 0, call, NULL, NULL, NULL, NULL};
    g->seg[g->n_seg - 1].n++;
  }
  for (int i = 0; i < g->n_seg; i++)
    if (!g->seg[i].call && make_own(s, g, &g->seg[i]) == CL_SUCCESS && use_cb) make_cb(s, d, g, &g->seg[i]);
  /* The products, convolutions and attention our kernels took become plans
   * (FLAGOS_OPENCL_GEMM_PLANS=0: the call is made again at each replay),
   * made for the default queue whatever stream recorded them: the runtime
   * records on a stream of its own and replays on the default queue
   * (src/runtime/graph.c), and only there may a plan use the shared
   * workspaces (split-K's partial products, a convolution's patches). */
  const char *pe = getenv("FLAGOS_OPENCL_GEMM_PLANS");
  bool plans = !pe || (strcmp(pe, "0") != 0 && strcmp(pe, "off") != 0);
  cl_command_queue cq = g->q;
  for (int i = 0; plans && i < g->n_seg; i++) {
    ocl_seg_t *sg = &g->seg[i];
    const ocl_rec_t *r = &g->rec.r[sg->first];
    if (!sg->call || !r->ours) continue;
    ocl_gemm_plan_t *p = calloc(1, sizeof(*p));
    bool taken = r->ours == 3; /* attention's plan is its kernel, or an error */
    flagos_status_t err = !p              ? OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory")
                          : r->ours == 1 ? ocl_gemm_run(s, d, cq, &r->ga, ocl_blas_trace, &taken, p)
                          : r->ours == 2 ? ocl_conv_run(s, d, cq, &r->ca, ocl_blas_trace, &taken, p)
                                         : ocl_attention_plan(s, cq, &r->call, p);
    if (err) {
      if (p) ocl_gemm_plan_release(s, p);
      free(p);
      ocl_graph_destroy(s, g);
      return err;
    }
    if (taken) {
      sg->plan = p;
    } else {
      /* our kernels leave it now (shapes they took when recorded: not seen),
       * so the call is made again at each replay; a convolution's plan may
       * hold its im2col already */
      ocl_gemm_plan_release(s, p);
      free(p);
    }
  }
  *out = g;
  return NULL;
}

/* FLAGOS_OPENCL_FLUSH=N: a replay hands its commands to the device every N
 * (clFlush). An implementation may hold queued commands until a flush or a
 * wait, so that the device would start only once the host has queued the
 * whole replay; the flushes let it start while the host queues the rest. */
static void flush_some(ocl_state_t *s, cl_command_queue q, int *queued) {
  if (s->flush_every <= 0) return;
  ++*queued;
  if (*queued >= s->flush_every) {
    s->cl.clFlush(q);
    *queued = 0;
  }
}

/* the trace's kinds of command: 0 and 1 gemm plans (one launch, more), 2
 * library calls, 3 + n launches of n buffer arguments (the last: n or more) */
enum { OCL_TRACE_KINDS = 12 };

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void tally(double *by_kind, int *n_kind, int kind, double since) {
  by_kind[kind] += now_us() - since;
  n_kind[kind]++;
}

flagos_status_t ocl_graph_launch(void *state, flagos_bgraph_t g, flagos_bstream_t st) {
  ocl_state_t *s = state;
  if (!g) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: launch of a NULL graph");
  if (st && st->dev != g->dev)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: graph of device %d launched on a stream of device %d",
                   g->dev, st->dev);
  ocl_device_t *d = &s->dev[g->dev];
  cl_command_queue q = ocl_queue(s, st, g->dev);
  int queued = 0; /* commands since the last flush */
  /* the host time a replay takes to queue its commands, to set against the
   * run's time (the rest is the device's); traced, also by kind of command:
   * a gemm plan's launches, a library call, a launch by its buffer arguments */
  double t0 = g->timed ? now_us() : 0, by_kind[OCL_TRACE_KINDS] = {0};
  int n_kind[OCL_TRACE_KINDS] = {0};
  ocl_timeline_t *tl = g->timeline && q == d->queue ? &g->tl : NULL;
  if (tl) ocl_timeline_discard(s, tl); /* what a failed replay left */
  for (int i = 0; i < g->n_seg; i++) {
    ocl_seg_t *sg = &g->seg[i];
    if (sg->plan && (q == sg->plan->q || ocl_gemm_plan_portable(sg->plan))) {
      double c0 = g->timed ? now_us() : 0;
      cl_int e = ocl_gemm_plan_run(s, sg->plan, q, tl);
      if (e != CL_SUCCESS) return ocl_fail(s, e, "replaying a gemm");
      flush_some(s, q, &queued);
      if (g->timed) tally(by_kind, n_kind, sg->plan->n > 1 ? 1 : 0, c0);
      continue;
    }
    if (sg->call) {
      double c0 = g->timed ? now_us() : 0;
      flagos_status_t err = ocl_library_call(s, st, &g->rec.r[sg->first].call);
      if (err) return err;
      flush_some(s, q, &queued);
      if (g->timed) tally(by_kind, n_kind, 2, c0);
      continue;
    }
    cl_int e = CL_SUCCESS;
    if (sg->cb && q == g->q) {
      if (sg->last) {
        e = s->cl.clWaitForEvents(1, &sg->last);
        s->cl.clReleaseEvent(sg->last);
        sg->last = NULL;
      }
      if (e == CL_SUCCESS) e = d->cb.enqueue(0, NULL, sg->cb, 0, NULL, g->simultaneous ? NULL : &sg->last);
      if (e != CL_SUCCESS) return ocl_fail(s, e, "queuing a command buffer");
      flush_some(s, q, &queued);
      continue;
    }
    for (int j = 0; j < sg->n && e == CL_SUCCESS; j++) {
      const ocl_rec_t *r = &g->rec.r[sg->first + j];
      double c0 = g->timed ? now_us() : 0;
      e = sg->own ? s->cl.clEnqueueNDRangeKernel(q, sg->own[j], 1, NULL, &r->global, &r->local, 0, NULL,
                                                 tl ? ocl_timeline_slot(tl, sg->own[j]) : NULL)
                  : ocl_kernel_run(s, r->k, r->args, r->n_args, r->global, r->local, q);
      flush_some(s, q, &queued);
      int nb = r->n_args < OCL_TRACE_KINDS - 4 ? (int)r->n_args : OCL_TRACE_KINDS - 4;
      if (g->timed) tally(by_kind, n_kind, 3 + nb, c0);
    }
    if (e != CL_SUCCESS) return ocl_fail(s, e, "replaying a launch");
  }
  if (g->timed) {
    fprintf(stderr, "flagos trace: opencl: a replay of %d commands queued in %.1f us of host time\n", g->rec.n,
            now_us() - t0);
    for (int k = 0; k < OCL_TRACE_KINDS; k++) {
      if (!n_kind[k]) continue;
      char what[64];
      if (k < 3)
        snprintf(what, sizeof what, "%s",
                 k == 0 ? "gemm plans of one launch" : k == 1 ? "gemm plans of two or more launches" : "library calls");
      else
        snprintf(what, sizeof what, "launches with %d%s buffer arguments", k - 3,
                 k == OCL_TRACE_KINDS - 1 ? " or more" : "");
      fprintf(stderr, "flagos trace: opencl:   %4d %s, %.2f us each\n", n_kind[k], what, by_kind[k] / n_kind[k]);
    }
  }
  if (tl) ocl_timeline_report(s, tl);
  return NULL;
}

void ocl_graph_destroy(void *state, flagos_bgraph_t g) {
  ocl_state_t *s = state;
  if (!g) return;
  ocl_device_t *d = &s->dev[g->dev];
  for (int i = 0; i < g->n_seg; i++) {
    /* OpenCL frees a command buffer, and the buffers it uses, once its queued executions are done */
    if (g->seg[i].cb) d->cb.release(g->seg[i].cb);
    release_own(s, &g->seg[i]);
    if (g->seg[i].plan) ocl_gemm_plan_release(s, g->seg[i].plan);
    free(g->seg[i].plan);
    if (g->seg[i].last) s->cl.clReleaseEvent(g->seg[i].last);
  }
  free(g->seg);
  ocl_timeline_discard(s, &g->tl);
  ocl_timeline_free(&g->tl);
  rec_free(s, &g->rec);
  free(g);
}
