/* The opencl backend: every device of every OpenCL platform the ICD loader
 * knows, in platform order. Each device gets its own context and an in-order
 * default queue (the NULL stream) when first used; streams are further in-order
 * queues, events are markers. Device memory is a cl_mem wrapped with its device
 * and size (so a copy knows its queue and is checked against the buffer's end).
 * Copies from and to the host block — the host's pointer may go away as soon as
 * the call returns — while device-side copies and kernels are only queued. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

const char *ocl_error_name(cl_int e) {
  switch (e) {
#define N(c) \
  case c: return #c;
    N(CL_DEVICE_NOT_FOUND) N(CL_DEVICE_NOT_AVAILABLE) N(CL_COMPILER_NOT_AVAILABLE)
    N(CL_MEM_OBJECT_ALLOCATION_FAILURE) N(CL_OUT_OF_RESOURCES) N(CL_OUT_OF_HOST_MEMORY)
    N(CL_PROFILING_INFO_NOT_AVAILABLE) N(CL_MEM_COPY_OVERLAP) N(CL_BUILD_PROGRAM_FAILURE) N(CL_MAP_FAILURE)
    N(CL_MISALIGNED_SUB_BUFFER_OFFSET) N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) N(CL_COMPILE_PROGRAM_FAILURE)
    N(CL_LINKER_NOT_AVAILABLE) N(CL_LINK_PROGRAM_FAILURE) N(CL_INVALID_VALUE) N(CL_INVALID_DEVICE_TYPE)
    N(CL_INVALID_PLATFORM) N(CL_INVALID_DEVICE) N(CL_INVALID_CONTEXT) N(CL_INVALID_QUEUE_PROPERTIES)
    N(CL_INVALID_COMMAND_QUEUE) N(CL_INVALID_HOST_PTR) N(CL_INVALID_MEM_OBJECT) N(CL_INVALID_BINARY)
    N(CL_INVALID_BUILD_OPTIONS) N(CL_INVALID_PROGRAM) N(CL_INVALID_PROGRAM_EXECUTABLE) N(CL_INVALID_KERNEL_NAME)
    N(CL_INVALID_KERNEL_DEFINITION) N(CL_INVALID_KERNEL) N(CL_INVALID_ARG_INDEX) N(CL_INVALID_ARG_VALUE)
    N(CL_INVALID_ARG_SIZE) N(CL_INVALID_KERNEL_ARGS) N(CL_INVALID_WORK_DIMENSION) N(CL_INVALID_WORK_GROUP_SIZE)
    N(CL_INVALID_WORK_ITEM_SIZE) N(CL_INVALID_GLOBAL_OFFSET) N(CL_INVALID_EVENT_WAIT_LIST) N(CL_INVALID_EVENT)
    N(CL_INVALID_OPERATION) N(CL_INVALID_BUFFER_SIZE) N(CL_INVALID_GLOBAL_WORK_SIZE) N(CL_INVALID_PROPERTY)
#undef N
  case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
  default: return "unknown OpenCL error";
  }
}

flagos_status_t ocl_fail(ocl_state_t *s, cl_int e, const char *what) {
  /* CL_OUT_OF_RESOURCES is also how some drivers report a kernel that faulted. */
  flagos_code_t code =
      e == CL_OUT_OF_HOST_MEMORY || e == CL_MEM_OBJECT_ALLOCATION_FAILURE ? FLAGOS_ERR_OUT_OF_MEMORY : FLAGOS_ERR_BACKEND;
  return OCL_ERR(s, code, "opencl backend: %s: %s (%d)", what, ocl_error_name(e), (int)e);
}

/* ---- loading the ICD loader ---- */
static bool load_api(ocl_api_t *cl) {
  const char *env = getenv("FLAGOS_OPENCL_LIBRARY");
  const char *names[] = {env && *env ? env : "libOpenCL.so.1", "libOpenCL.so.1", "libOpenCL.so"};
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !cl->lib; i++) cl->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!cl->lib) return false;
  bool ok = true;
#define OCL_LOAD(f)                                                                  \
  {                                                                                  \
    void *p_ = dlsym(cl->lib, #f);                                                   \
    memcpy(&cl->f, &p_, sizeof p_); /* object pointer -> function pointer (POSIX) */ \
    ok = ok && p_ != NULL;                                                           \
  }
  OCL_FUNCS(OCL_LOAD)
#undef OCL_LOAD
  if (!ok) {
    dlclose(cl->lib);
    memset(cl, 0, sizeof(*cl));
  }
  return ok;
}

static void dev_str(ocl_state_t *s, cl_device_id id, cl_device_info what, char *buf, size_t cap) {
  buf[0] = 0;
  if (s->cl.clGetDeviceInfo(id, what, cap - 1, buf, NULL) != CL_SUCCESS) buf[0] = 0;
  buf[cap - 1] = 0;
}

bool ocl_has_word(const char *list, const char *word) {
  size_t l = strlen(word);
  for (const char *p = list; p && (p = strstr(p, word)); p += l)
    if ((p == list || p[-1] == ' ') && (p[l] == 0 || p[l] == ' ')) return true;
  return false;
}

static void add_device(ocl_state_t *s, cl_platform_id p, cl_device_id id, const char *pname, const char *pversion,
                       bool no_fp64) {
  ocl_device_t *d = &s->dev[s->n_dev];
  memset(d, 0, sizeof(*d));
  d->platform = p;
  d->id = id;
  snprintf(d->platform_name, sizeof d->platform_name, "%s", pname);
  snprintf(d->platform_version, sizeof d->platform_version, "%s", pversion);
  dev_str(s, id, CL_DEVICE_NAME, d->name, sizeof d->name);
  dev_str(s, id, CL_DEVICE_VENDOR, d->vendor, sizeof d->vendor);
  dev_str(s, id, CL_DRIVER_VERSION, d->driver, sizeof d->driver);
  dev_str(s, id, CL_DEVICE_VERSION, d->version, sizeof d->version);
  size_t n = 0;
  if (s->cl.clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, 0, NULL, &n) == CL_SUCCESS && (d->extensions = calloc(n + 1, 1)))
    if (s->cl.clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, n, d->extensions, NULL) != CL_SUCCESS) d->extensions[0] = 0;
  s->cl.clGetDeviceInfo(id, CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL);
  s->cl.clGetDeviceInfo(id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof d->memory, &d->memory, NULL);
  s->cl.clGetDeviceInfo(id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof d->compute_units, &d->compute_units, NULL);
  s->cl.clGetDeviceInfo(id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_wg, &d->max_wg, NULL);
  cl_device_fp_config dbl = 0, sgl = 0;
  s->cl.clGetDeviceInfo(id, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof dbl, &dbl, NULL);
  s->cl.clGetDeviceInfo(id, CL_DEVICE_SINGLE_FP_CONFIG, sizeof sgl, &sgl, NULL);
  d->fp64 = !no_fp64 && (ocl_has_word(d->extensions, "cl_khr_fp64") || dbl != 0);
  d->div_sqrt = (sgl & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
  /* warps of 32 and inline PTX (the cooperative form's shuffles, src/codegen/dialect_opencl.c):
   * NVIDIA's GPUs; FLAGOS_OPENCL_WARP=0 keeps the local-memory trees */
  const char *warp = getenv("FLAGOS_OPENCL_WARP");
  d->warp32 = strstr(d->vendor, "NVIDIA") && (d->type & CL_DEVICE_TYPE_GPU) && !(warp && !strcmp(warp, "0"));
  /* generated kernels' vector accesses (up to 32 bytes) assume buffers on 32 bytes (the prelude's FO_VLD) */
  cl_uint align_bits = 0;
  s->cl.clGetDeviceInfo(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
  d->vec_unaligned = align_bits < 256;
  if (d->max_wg == 0) d->max_wg = 1;
  s->n_dev++;
}

static void enumerate(ocl_state_t *s) {
  cl_uint np = 0;
  if (s->cl.clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0) return;
  cl_platform_id *ps = calloc(np, sizeof(*ps));
  if (!ps || s->cl.clGetPlatformIDs(np, ps, NULL) != CL_SUCCESS) {
    free(ps);
    return;
  }
  /* FLAGOS_OPENCL_NO_FP64=1 treats every device as lacking cl_khr_fp64 (to see
   * how a model fares on such devices, and to test that path on any machine). */
  const char *nf = getenv("FLAGOS_OPENCL_NO_FP64");
  bool no_fp64 = nf && *nf && strcmp(nf, "0") != 0;
  for (cl_uint i = 0; i < np; i++) {
    cl_uint nd = 0;
    if (s->cl.clGetDeviceIDs(ps[i], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
    cl_device_id *ids = calloc(nd, sizeof(*ids));
    ocl_device_t *grown = realloc(s->dev, sizeof(*s->dev) * (size_t)(s->n_dev + (int)nd));
    if (!ids || !grown || s->cl.clGetDeviceIDs(ps[i], CL_DEVICE_TYPE_ALL, nd, ids, NULL) != CL_SUCCESS) {
      free(ids);
      if (grown) s->dev = grown;
      continue;
    }
    s->dev = grown;
    char pname[128] = "", pversion[128] = "";
    s->cl.clGetPlatformInfo(ps[i], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
    s->cl.clGetPlatformInfo(ps[i], CL_PLATFORM_VERSION, sizeof pversion - 1, pversion, NULL);
    for (cl_uint j = 0; j < nd; j++) add_device(s, ps[i], ids[j], pname, pversion, no_fp64);
    free(ids);
  }
  free(ps);
}

static flagos_status_t ocl_init(const flagos_host_t *host, void **state) {
  *state = NULL;
  if (!host || !host->status_new) return NULL;
  ocl_state_t *s = calloc(1, sizeof(*s));
  if (!s) return host->status_new(FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  s->host = *host;
  snprintf(s->cache_dir, sizeof s->cache_dir, "%s", host->cache_dir ? host->cache_dir : "/tmp");
  s->host.cache_dir = s->cache_dir;
  pthread_mutex_init(&s->lock, NULL);
  const char *g = getenv("FLAGOS_OPENCL_GRAPHS");
  s->graphs_off = g && strcmp(g, "0") == 0;
  const char *cb = getenv("FLAGOS_OPENCL_COMMAND_BUFFER");
  s->cb_off = cb && strcmp(cb, "0") == 0;
  const char *fl = getenv("FLAGOS_OPENCL_FLUSH");
  s->flush_every = fl ? atoi(fl) : 0;
  if (s->flush_every < 0) s->flush_every = 0;
  /* No loader, or a loader without platforms: zero devices, not an error. */
  if (load_api(&s->cl)) enumerate(s);
  *state = s;
  return NULL;
}

static void ocl_shutdown(void *state) {
  ocl_state_t *s = state;
  if (!s) return;
  for (int i = 0; i < s->n_dev; i++) {
    ocl_device_t *d = &s->dev[i];
    if (d->queue) s->cl.clFinish(d->queue);
    ocl_pool_drain(s, d);
    free(d->pool.free);
    ocl_blas_split_release(s, d);
    ocl_gemm_release(s, d);
    ocl_conv_release(s, d);
    ocl_attention_release(s, d);
    if (d->queue) s->cl.clReleaseCommandQueue(d->queue);
    if (d->old_queue) s->cl.clReleaseCommandQueue(d->old_queue);
    if (d->ctx) s->cl.clReleaseContext(d->ctx);
    free(d->extensions);
  }
  free(s->dev);
  /* The loader stays mapped: OpenCL implementations keep worker threads. */
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static int ocl_device_count(void *state) { return state ? ((ocl_state_t *)state)->n_dev : 0; }

static flagos_status_t check_index(ocl_state_t *s, int device) {
  if (device < 0 || device >= s->n_dev)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: no device %d (%d device(s))", device, s->n_dev);
  return NULL;
}

flagos_status_t ocl_device_ready(ocl_state_t *s, int device, ocl_device_t **out) {
  flagos_status_t st = check_index(s, device);
  if (st) return st;
  ocl_device_t *d = &s->dev[device];
  pthread_mutex_lock(&s->lock);
  if (!d->ready) {
    cl_int e;
    char what[256];
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
    d->ctx = s->cl.clCreateContext(props, 1, &d->id, NULL, NULL, &e);
    if (!d->ctx) {
      snprintf(what, sizeof what, "cannot create a context for device '%s'", d->name);
      st = ocl_fail(s, e, what);
    }
    if (!st) {
      d->profiling = (getenv("FLAGOS_OPENCL_PROFILING") && strcmp(getenv("FLAGOS_OPENCL_PROFILING"), "1") == 0) ||
                     ocl_timeline_wanted();
      d->queue = s->cl.clCreateCommandQueue(d->ctx, d->id, d->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &e);
      if (!d->queue) {
        snprintf(what, sizeof what, "cannot create a command queue for device '%s'", d->name);
        st = ocl_fail(s, e, what);
        s->cl.clReleaseContext(d->ctx);
        d->ctx = NULL;
      }
    }
    if (!st) ocl_cb_load(s, d);
    d->ready = st == NULL;
  }
  pthread_mutex_unlock(&s->lock);
  if (st) return st;
  *out = d;
  return NULL;
}

cl_command_queue ocl_queue(ocl_state_t *s, flagos_bstream_t st, int dev) { return st ? st->queue : s->dev[dev].queue; }

static flagos_status_t ocl_device_info(void *state, int device, flagos_device_info_t *out) {
  ocl_state_t *s = state;
  flagos_status_t st = check_index(s, device);
  if (st) return st;
  const ocl_device_t *d = &s->dev[device];
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof out->name, "%s", d->name);
  snprintf(out->vendor, sizeof out->vendor, "%s", d->vendor);
  snprintf(out->driver_version, sizeof out->driver_version, "%s", d->driver);
  out->kind = (d->type & CL_DEVICE_TYPE_GPU)           ? FLAGOS_DEVICE_GPU
              : (d->type & CL_DEVICE_TYPE_ACCELERATOR) ? FLAGOS_DEVICE_ACCELERATOR
                                                       : FLAGOS_DEVICE_CPU;
  out->memory_bytes = d->memory;
  out->compute_units = (int)d->compute_units;
  out->host_visible = 0; /* cl_mem handles, even where the memory is the host's (PoCL) */
  return NULL;
}

/* ---- memory ---- */
static flagos_status_t ocl_mem_alloc(void *state, int device, size_t bytes, flagos_devptr_t *out) {
  ocl_state_t *s = state;
  *out = NULL;
  ocl_device_t *d;
  flagos_status_t st = ocl_device_ready(s, device, &d);
  if (st) return st;
  ocl_buf_t *b;
  st = ocl_alloc(s, d, device, bytes, &b);
  if (st) return st;
  *out = b;
  return NULL;
}

static void ocl_mem_free(void *state, int device, flagos_devptr_t p) {
  ocl_state_t *s = state;
  (void)device;
  if (p) ocl_free(s, p);
}

static flagos_status_t check_range(ocl_state_t *s, const ocl_buf_t *b, size_t off, size_t bytes, const char *what) {
  if (!b) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: %s with a NULL device pointer", what);
  if (off > b->size || bytes > b->size - off)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: %s of %zu bytes at offset %zu overruns a %zu-byte buffer",
                   what, bytes, off, b->size);
  return NULL;
}

static flagos_status_t ocl_copy_h2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                    const void *src, size_t bytes) {
  ocl_state_t *s = state;
  ocl_buf_t *b = dst;
  if (!bytes) return NULL;
  flagos_status_t st = check_range(s, b, dst_off, bytes, "host-to-device copy");
  if (st) return st;
  cl_int e = s->cl.clEnqueueWriteBuffer(ocl_queue(s, stream, b->dev), b->mem, CL_TRUE, dst_off, bytes, src, 0, NULL, NULL);
  return e == CL_SUCCESS ? NULL : ocl_fail(s, e, "host-to-device copy");
}

static flagos_status_t ocl_copy_d2h(void *state, flagos_bstream_t stream, void *dst, flagos_devptr_t src, size_t src_off,
                                    size_t bytes) {
  ocl_state_t *s = state;
  ocl_buf_t *b = src;
  if (!bytes) return NULL;
  flagos_status_t st = check_range(s, b, src_off, bytes, "device-to-host copy");
  if (st) return st;
  cl_int e = s->cl.clEnqueueReadBuffer(ocl_queue(s, stream, b->dev), b->mem, CL_TRUE, src_off, bytes, dst, 0, NULL, NULL);
  return e == CL_SUCCESS ? NULL : ocl_fail(s, e, "device-to-host copy (or a kernel before it)");
}

static flagos_status_t ocl_copy_d2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                    flagos_devptr_t src, size_t src_off, size_t bytes) {
  ocl_state_t *s = state;
  ocl_buf_t *d = dst, *b = src;
  if (!bytes) return NULL;
  flagos_status_t st = check_range(s, d, dst_off, bytes, "device-to-device copy");
  if (!st) st = check_range(s, b, src_off, bytes, "device-to-device copy");
  if (st) return st;
  if (d->dev != b->dev) { /* two contexts: through the host */
    void *tmp = malloc(bytes);
    if (!tmp) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
    st = ocl_copy_d2h(state, NULL, tmp, src, src_off, bytes);
    if (!st) st = ocl_copy_h2d(state, NULL, dst, dst_off, tmp, bytes);
    free(tmp);
    return st;
  }
  cl_command_queue q = ocl_queue(s, stream, d->dev);
  cl_int e;
  bool overlap = d->mem == b->mem && dst_off < src_off + bytes && src_off < dst_off + bytes;
  if (overlap) { /* OpenCL refuses overlapping copies (memmove semantics through a temporary) */
    if (dst_off == src_off) return NULL;
    cl_mem t = s->cl.clCreateBuffer(s->dev[d->dev].ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (!t) return ocl_fail(s, e, "device-to-device copy (temporary)");
    e = s->cl.clEnqueueCopyBuffer(q, b->mem, t, src_off, 0, bytes, 0, NULL, NULL);
    if (e == CL_SUCCESS) e = s->cl.clEnqueueCopyBuffer(q, t, d->mem, 0, dst_off, bytes, 0, NULL, NULL);
    s->cl.clReleaseMemObject(t);
  } else {
    e = s->cl.clEnqueueCopyBuffer(q, b->mem, d->mem, src_off, dst_off, bytes, 0, NULL, NULL);
  }
  return e == CL_SUCCESS ? NULL : ocl_fail(s, e, "device-to-device copy");
}

/* ---- streams and events ---- */
static flagos_status_t ocl_stream_create(void *state, int device, flagos_bstream_t *out) {
  ocl_state_t *s = state;
  *out = NULL;
  ocl_device_t *d;
  flagos_status_t st = ocl_device_ready(s, device, &d);
  if (st) return st;
  flagos_bstream_t t = calloc(1, sizeof(*t));
  if (!t) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  cl_int e;
  /* Streams always record timestamps (an event on one may be timed before any
   * event_create switched the default queue); the per-launch path is the default queue's. */
  t->queue = s->cl.clCreateCommandQueue(d->ctx, d->id, CL_QUEUE_PROFILING_ENABLE, &e);
  if (!t->queue) {
    free(t);
    return ocl_fail(s, e, "cannot create a command queue");
  }
  t->dev = device;
  *out = t;
  return NULL;
}

static void ocl_stream_destroy(void *state, flagos_bstream_t t) {
  ocl_state_t *s = state;
  if (!t) return;
  ocl_capture_discard(s, t->capture);
  s->cl.clFinish(t->queue);
  s->cl.clReleaseCommandQueue(t->queue);
  free(t);
}

static flagos_status_t ocl_stream_sync(void *state, flagos_bstream_t t) {
  ocl_state_t *s = state;
  if (t) {
    cl_int e = s->cl.clFinish(t->queue);
    return e == CL_SUCCESS ? NULL : ocl_fail(s, e, "stream synchronisation");
  }
  for (int i = 0; i < s->n_dev; i++) { /* the NULL stream: every default queue in use */
    if (!s->dev[i].ready) continue;
    cl_int e = s->cl.clFinish(s->dev[i].queue);
    if (e != CL_SUCCESS) return ocl_fail(s, e, "stream synchronisation");
  }
  return NULL;
}

static flagos_status_t ocl_event_create(void *state, int device, flagos_bevent_t *out) {
  ocl_state_t *s = state;
  *out = NULL;
  ocl_device_t *d;
  flagos_status_t st = ocl_device_ready(s, device, &d);
  if (st) return st;
  /* Events are how the host times work (the profiler, event_elapsed_ms): from
   * the first one on, the device's default queue records timestamps. The old
   * queue is drained first so that work stays ordered before the new queue's. */
  pthread_mutex_lock(&s->lock);
  if (!d->profiling && !d->old_queue) {
    cl_int r;
    cl_command_queue q = s->cl.clCreateCommandQueue(d->ctx, d->id, CL_QUEUE_PROFILING_ENABLE, &r);
    if (q) {
      s->cl.clFinish(d->queue);
      d->old_queue = d->queue;
      d->queue = q;
      d->profiling = true;
    }
  }
  pthread_mutex_unlock(&s->lock);
  flagos_bevent_t e = calloc(1, sizeof(*e));
  if (!e) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  e->dev = device;
  *out = e;
  return NULL;
}

static void ocl_event_destroy(void *state, flagos_bevent_t e) {
  ocl_state_t *s = state;
  if (!e) return;
  if (e->ev) s->cl.clReleaseEvent(e->ev);
  free(e);
}

static flagos_status_t ocl_event_record(void *state, flagos_bevent_t e, flagos_bstream_t t) {
  ocl_state_t *s = state;
  if (!e) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: record of a NULL event");
  int dev = t ? t->dev : e->dev;
  cl_event ev = NULL;
  cl_int r = s->cl.clEnqueueMarkerWithWaitList(ocl_queue(s, t, dev), 0, NULL, &ev);
  if (r != CL_SUCCESS) return ocl_fail(s, r, "event record");
  if (e->ev) s->cl.clReleaseEvent(e->ev);
  e->ev = ev;
  e->dev = dev;
  return NULL;
}

static flagos_status_t ocl_stream_wait_event(void *state, flagos_bstream_t t, flagos_bevent_t e) {
  ocl_state_t *s = state;
  if (!e || !e->ev) return NULL; /* never recorded: nothing to wait for */
  int dev = t ? t->dev : e->dev;
  cl_int r;
  if (dev != e->dev) /* events do not cross contexts: the host waits */
    r = s->cl.clWaitForEvents(1, &e->ev);
  else
    r = s->cl.clEnqueueBarrierWithWaitList(ocl_queue(s, t, dev), 1, &e->ev, NULL);
  return r == CL_SUCCESS ? NULL : ocl_fail(s, r, "stream wait on an event");
}

static flagos_status_t ocl_event_sync(void *state, flagos_bevent_t e) {
  ocl_state_t *s = state;
  if (!e || !e->ev) return NULL;
  s->cl.clFlush(ocl_queue(s, NULL, e->dev));
  cl_int r = s->cl.clWaitForEvents(1, &e->ev);
  return r == CL_SUCCESS ? NULL : ocl_fail(s, r, "event synchronisation");
}

static flagos_status_t ocl_event_elapsed_ms(void *state, flagos_bevent_t start, flagos_bevent_t end, double *ms) {
  ocl_state_t *s = state;
  if (!start || !end || !start->ev || !end->ev)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: elapsed time between events that were not both recorded");
  cl_event both[2] = {start->ev, end->ev};
  cl_int r = s->cl.clWaitForEvents(1, &both[0]);
  if (r == CL_SUCCESS) r = s->cl.clWaitForEvents(1, &both[1]);
  cl_ulong t0 = 0, t1 = 0;
  if (r == CL_SUCCESS) r = s->cl.clGetEventProfilingInfo(start->ev, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL);
  if (r == CL_SUCCESS) r = s->cl.clGetEventProfilingInfo(end->ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
  if (r != CL_SUCCESS) return ocl_fail(s, r, "event timing");
  *ms = ((double)t1 - (double)t0) / 1e6;
  return NULL;
}

static const flagos_backend_t k_ocl_backend = {
    .abi_version = FLAGOS_BACKEND_ABI_VERSION,
    .struct_size = sizeof(flagos_backend_t),
    .name = "opencl",
    .code_format = "opencl-c",
    .version = "0.1.0",
    .init = ocl_init,
    .shutdown = ocl_shutdown,
    .device_count = ocl_device_count,
    .device_info = ocl_device_info,
    .mem_alloc = ocl_mem_alloc,
    .mem_free = ocl_mem_free,
    .copy_h2d = ocl_copy_h2d,
    .copy_d2h = ocl_copy_d2h,
    .copy_d2d = ocl_copy_d2d,
    .stream_create = ocl_stream_create,
    .stream_destroy = ocl_stream_destroy,
    .stream_sync = ocl_stream_sync,
    .event_create = ocl_event_create,
    .event_destroy = ocl_event_destroy,
    .event_record = ocl_event_record,
    .stream_wait_event = ocl_stream_wait_event,
    .event_sync = ocl_event_sync,
    .event_elapsed_ms = ocl_event_elapsed_ms,
    .module_load = ocl_module_load,
    .module_unload = ocl_module_unload,
    .kernel_get = ocl_kernel_get,
    .launch = ocl_launch,
    .library_call = ocl_library_call,
    .device_power = NULL,
    .capture_begin = ocl_capture_begin,
    .capture_end = ocl_capture_end,
    .graph_launch = ocl_graph_launch,
    .graph_destroy = ocl_graph_destroy,
};

__attribute__((visibility("default"))) const flagos_backend_t *flagos_backend_entry(uint32_t abi_version) {
  return abi_version == FLAGOS_BACKEND_ABI_VERSION ? &k_ocl_backend : NULL;
}
