/* The cuda backend: NVIDIA GPUs through the CUDA driver API, loaded at run time
 * (cuda_driver.c). Without a driver, or when cuInit finds no device, the plugin
 * still loads and reports zero devices.
 *
 * Each device uses its primary context and one default stream (made on first
 * use, not by device_count or device_info, so that listing devices creates no
 * context). A NULL stream in any call means that default stream; copies to the
 * host on it return when the data is there, since the runtime reads it at once.
 * Device memory comes from a caching allocator over cuMemAlloc (cuda_alloc.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_dnn.h"
#include "cuda_internal.h"

struct flagos_bevent_s {
  int device;
  cu_event_t ev;
};

flagos_status_t cuda_check(cuda_state_t *s, cu_result_t rc, const char *what) {
  if (rc == CU_OK) return NULL;
  const char *name = NULL;
  if (s->drv.GetErrorName) s->drv.GetErrorName(rc, &name);
  flagos_code_t code = rc == CU_ERR_OUT_OF_MEMORY ? FLAGOS_ERR_OUT_OF_MEMORY : FLAGOS_ERR_BACKEND;
  return CUDA_ERR(s, code, "cuda backend: %s failed: %s (%d)", what, name ? name : "unknown error", rc);
}

static flagos_status_t check_device(cuda_state_t *s, int d) {
  if (d < 0 || d >= s->n_devices)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: no device %d (%d device(s)%s%s)", d, s->n_devices,
                    s->why_none[0] ? ": " : "", s->why_none);
  return NULL;
}

flagos_status_t cuda_use(cuda_state_t *s, int d) {
  flagos_status_t st = check_device(s, d);
  if (st) return st;
  cuda_device_t *dv = &s->dev[d];
  pthread_mutex_lock(&s->lock);
  if (!dv->ready) {
    /* A host thread waiting for the GPU yields its core by default instead of
     * spinning on it (the driver's choice with fewer contexts than cores): in a
     * plan split over the CPU and the GPU, the runtime's copy thread waits on
     * GPU streams while the cpu backend's threads compute, and a spinning waiter
     * took a core from them. FLAGOS_CUDA_SCHED=spin|yield|blocking|auto. Where
     * the context is already active (another library made it), the call fails
     * and its flags stay. */
    const char *sc = getenv("FLAGOS_CUDA_SCHED");
    unsigned flags = !sc || !*sc || !strcmp(sc, "yield") ? CU_CTX_SCHED_YIELD_FLAG
                     : !strcmp(sc, "spin")                ? CU_CTX_SCHED_SPIN_FLAG
                     : !strcmp(sc, "blocking")            ? CU_CTX_SCHED_BLOCKING_FLAG
                                                          : 0;
    if (s->drv.PrimaryCtxSetFlags) s->drv.PrimaryCtxSetFlags(dv->dev, flags);
    st = cuda_check(s, s->drv.PrimaryCtxRetain(&dv->ctx, dv->dev), "cuDevicePrimaryCtxRetain");
    if (!st) st = cuda_check(s, s->drv.CtxSetCurrent(dv->ctx), "cuCtxSetCurrent");
    if (!st) st = cuda_check(s, s->drv.StreamCreate(&dv->stream, CU_STREAM_NON_BLOCKING_FLAG), "cuStreamCreate");
    if (!st) {
      cuda_alloc_init(&dv->alloc);
      cuda_staging_init(&dv->staging);
      dv->ready = true;
    }
  }
  pthread_mutex_unlock(&s->lock);
  if (!st) st = cuda_check(s, s->drv.CtxSetCurrent(dv->ctx), "cuCtxSetCurrent");
  return st;
}

static flagos_status_t cuda_init(const flagos_host_t *host, void **state) {
  *state = NULL;
  if (!host || !host->status_new) return NULL;
  cuda_state_t *s = calloc(1, sizeof(*s));
  if (!s) return host->status_new(FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  s->host = *host;
  pthread_mutex_init(&s->lock, NULL);
  cuda_copy_pool_init(&s->copy_pool);
  const char *sync = getenv("FLAGOS_CUDA_SYNC");
  s->sync_launches = sync && *sync && strcmp(sync, "0") != 0;
  *state = s;
  if (!cu_driver_open(&s->drv, s->why_none, sizeof s->why_none)) return NULL;
  s->have_driver = true;
  cu_result_t rc = s->drv.Init(0);
  if (rc == CU_OK) rc = s->drv.DeviceGetCount(&s->n_devices);
  if (rc != CU_OK) {
    const char *name = NULL;
    s->drv.GetErrorName(rc, &name);
    snprintf(s->why_none, sizeof s->why_none, "cuInit: %s", name ? name : "error");
    s->n_devices = 0;
    return NULL;
  }
  s->drv.DriverGetVersion(&s->drv.version);
  if (s->n_devices > CUDA_MAX_DEVICES) s->n_devices = CUDA_MAX_DEVICES;
  for (int i = 0; i < s->n_devices; i++) {
    cuda_device_t *dv = &s->dev[i];
    int major = 0, minor = 0;
    if (s->drv.DeviceGet(&dv->dev, i) != CU_OK ||
        s->drv.DeviceGetAttribute(&major, CU_ATTR_CC_MAJOR, dv->dev) != CU_OK ||
        s->drv.DeviceGetAttribute(&minor, CU_ATTR_CC_MINOR, dv->dev) != CU_OK ||
        s->drv.DeviceGetAttribute(&dv->sm_count, CU_ATTR_MULTIPROCESSOR_COUNT, dv->dev) != CU_OK ||
        s->drv.DeviceGetAttribute(&dv->max_grid_x, CU_ATTR_MAX_GRID_DIM_X, dv->dev) != CU_OK) {
      snprintf(s->why_none, sizeof s->why_none, "cannot query device %d", i);
      s->n_devices = i; /* the devices before it stay usable */
      break;
    }
    dv->sm = major * 10 + minor;
  }
  return NULL;
}

/* Library calls by name: "conv" through cuDNN (cuda_dnn.c), the others through
 * cuBLASLt (cuda_blas.c, which answers the names it does not know). */
static flagos_status_t library_call(void *state, flagos_bstream_t stream, const flagos_libcall_t *call) {
  if (call && call->name && strcmp(call->name, "conv") == 0) return cuda_dnn_conv(state, stream, call);
  return cuda_library_call(state, stream, call);
}

static void cuda_shutdown(void *state) {
  cuda_state_t *s = state;
  if (!s) return;
  cuda_blas_shutdown(s);
  cuda_dnn_shutdown(s);
  cuda_nvml_shutdown(s);
  for (int i = 0; i < s->n_devices; i++) {
    cuda_device_t *dv = &s->dev[i];
    if (!dv->ready) continue;
    s->drv.CtxSetCurrent(dv->ctx);
    s->drv.StreamSynchronize(dv->stream);
    cuda_staging_destroy(s, dv);
    cuda_alloc_destroy(s, dv);
    s->drv.StreamDestroy(dv->stream);
    s->drv.PrimaryCtxRelease(dv->dev);
  }
  cuda_copy_pool_destroy(&s->copy_pool);
  /* The driver stays loaded: it may have threads of its own. */
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static int cuda_device_count(void *state) {
  cuda_state_t *s = state;
  return s ? s->n_devices : 0;
}

static flagos_status_t cuda_device_info(void *state, int device, flagos_device_info_t *out) {
  cuda_state_t *s = state;
  flagos_status_t st = check_device(s, device);
  if (st) return st;
  memset(out, 0, sizeof(*out));
  cuda_device_t *dv = &s->dev[device];
  if (s->drv.DeviceGetName(out->name, (int)sizeof out->name, dv->dev) != CU_OK)
    snprintf(out->name, sizeof out->name, "CUDA device %d", device);
  snprintf(out->vendor, sizeof out->vendor, "NVIDIA");
  snprintf(out->driver_version, sizeof out->driver_version, "CUDA %d.%d, sm_%d", s->drv.version / 1000,
           s->drv.version % 1000 / 10, dv->sm);
  out->kind = FLAGOS_DEVICE_GPU;
  size_t mem = 0;
  if (s->drv.DeviceTotalMem(&mem, dv->dev) == CU_OK) out->memory_bytes = mem;
  out->compute_units = dv->sm_count;
  out->host_visible = 0;
  return NULL;
}

/* ---- memory ---- */
static flagos_status_t cuda_mem_alloc(void *state, int device, size_t bytes, flagos_devptr_t *out) {
  cuda_state_t *s = state;
  *out = NULL;
  flagos_status_t st = cuda_use(s, device);
  if (st) return st;
  cu_ptr_t p = 0;
  st = cuda_alloc_get(s, &s->dev[device], bytes, &p);
  if (!st) *out = (flagos_devptr_t)(uintptr_t)p;
  return st;
}

static void cuda_mem_free(void *state, int device, flagos_devptr_t p) {
  cuda_state_t *s = state;
  if (!p || device < 0 || device >= s->n_devices || !s->dev[device].ready) return;
  s->drv.CtxSetCurrent(s->dev[device].ctx);
  cuda_alloc_put(s, &s->dev[device], (cu_ptr_t)(uintptr_t)p);
}

static cu_ptr_t dptr(flagos_devptr_t p, size_t off) { return (cu_ptr_t)(uintptr_t)p + off; }

/* The device a copy on `stream` runs on: the stream's, else the one whose
 * allocator handed out `p`, else the first one in use. */
static int copy_device(cuda_state_t *s, flagos_bstream_t stream, flagos_devptr_t p) {
  if (stream) return stream->device;
  int first = -1;
  for (int i = 0; i < s->n_devices; i++) {
    if (!s->dev[i].ready) continue;
    if (first < 0) first = i;
    if (cuda_alloc_owns(&s->dev[i].alloc, (cu_ptr_t)(uintptr_t)p)) return i;
  }
  return first < 0 ? 0 : first;
}

static flagos_status_t copy_begin(cuda_state_t *s, flagos_bstream_t stream, flagos_devptr_t p, const void *other,
                                  size_t bytes, const char *what, cu_stream_t *cs, cuda_device_t **dv) {
  if (bytes && (!p || !other))
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: %s of %zu bytes with a NULL pointer", what, bytes);
  int d = copy_device(s, stream, p);
  flagos_status_t st = cuda_use(s, d);
  if (st) return st;
  *cs = stream ? stream->st : s->dev[d].stream;
  *dv = &s->dev[d];
  return NULL;
}

static flagos_status_t cuda_copy_h2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                     const void *src, size_t bytes) {
  cuda_state_t *s = state;
  cu_stream_t cs;
  cuda_device_t *dv;
  flagos_status_t st = copy_begin(s, stream, dst, src, bytes, "host-to-device copy", &cs, &dv);
  if (st || !bytes) return st;
  /* Through a pinned buffer (cuda_staging.c) the copy runs asynchronously. Either
   * way the caller may reuse `src` at once: the bytes were copied into the
   * buffer, or the driver staged them from pageable memory before returning. */
  if (cuda_staging_h2d(s, dv, cs, dptr(dst, dst_off), src, bytes, &st)) return st;
  return cuda_check(s, s->drv.MemcpyHtoDAsync(dptr(dst, dst_off), src, bytes, cs), "cuMemcpyHtoDAsync");
}

static flagos_status_t cuda_copy_d2h(void *state, flagos_bstream_t stream, void *dst, flagos_devptr_t src,
                                     size_t src_off, size_t bytes) {
  cuda_state_t *s = state;
  cu_stream_t cs;
  cuda_device_t *dv;
  flagos_status_t st = copy_begin(s, stream, src, dst, bytes, "device-to-host copy", &cs, &dv);
  if (st || !bytes) return st;
  /* On the default stream the data must be there on return: through a pinned
   * buffer, waited for. On a caller's stream too where a pinned buffer is free
   * (the runtime's copier, which waits for the stream next, gets the pinned
   * bandwidth: with pageable copies a BERT-base split over CPU and H100, 35 MB
   * crossing, ran 131 ms against 123 ms with the copies in turn through pinned
   * buffers); else the copy stays asynchronous. */
  if (cuda_staging_d2h(s, dv, cs, dst, dptr(src, src_off), bytes, &st)) return st;
  st = cuda_check(s, s->drv.MemcpyDtoHAsync(dst, dptr(src, src_off), bytes, cs), "cuMemcpyDtoHAsync");
  /* Errors of earlier kernels on the stream surface here. */
  if (!st && !stream) st = cuda_check(s, s->drv.StreamSynchronize(cs), "device-to-host copy (stream synchronize)");
  return st;
}

static flagos_status_t cuda_copy_d2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                     flagos_devptr_t src, size_t src_off, size_t bytes) {
  cuda_state_t *s = state;
  cu_stream_t cs;
  cuda_device_t *dv;
  flagos_status_t st = copy_begin(s, stream, dst, src, bytes, "device-to-device copy", &cs, &dv);
  if (st || !bytes) return st;
  return cuda_check(s, s->drv.MemcpyDtoDAsync(dptr(dst, dst_off), dptr(src, src_off), bytes, cs), "cuMemcpyDtoDAsync");
}

/* ---- streams and events ---- */
static flagos_status_t cuda_stream_create(void *state, int device, flagos_bstream_t *out) {
  cuda_state_t *s = state;
  *out = NULL;
  flagos_status_t st = cuda_use(s, device);
  if (st) return st;
  flagos_bstream_t t = calloc(1, sizeof(*t));
  if (!t) return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  t->device = device;
  st = cuda_check(s, s->drv.StreamCreate(&t->st, CU_STREAM_NON_BLOCKING_FLAG), "cuStreamCreate");
  if (st) {
    free(t);
    return st;
  }
  *out = t;
  return NULL;
}

static void cuda_stream_destroy(void *state, flagos_bstream_t t) {
  cuda_state_t *s = state;
  if (!t) return;
  if (t->device >= 0 && t->device < s->n_devices && s->dev[t->device].ready &&
      s->drv.CtxSetCurrent(s->dev[t->device].ctx) == CU_OK)
    s->drv.StreamDestroy(t->st);
  free(t);
}

static flagos_status_t cuda_stream_sync(void *state, flagos_bstream_t t) {
  cuda_state_t *s = state;
  if (t) {
    flagos_status_t st = cuda_use(s, t->device);
    if (st) return st;
    return cuda_check(s, s->drv.StreamSynchronize(t->st), "cuStreamSynchronize");
  }
  for (int i = 0; i < s->n_devices; i++) {
    if (!s->dev[i].ready) continue;
    flagos_status_t st = cuda_use(s, i);
    if (!st) st = cuda_check(s, s->drv.StreamSynchronize(s->dev[i].stream), "cuStreamSynchronize");
    if (st) return st;
  }
  return NULL;
}

static flagos_status_t cuda_event_create(void *state, int device, flagos_bevent_t *out) {
  cuda_state_t *s = state;
  *out = NULL;
  flagos_status_t st = cuda_use(s, device);
  if (st) return st;
  flagos_bevent_t e = calloc(1, sizeof(*e));
  if (!e) return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  e->device = device;
  st = cuda_check(s, s->drv.EventCreate(&e->ev, CU_EVENT_DEFAULT_FLAG), "cuEventCreate");
  if (st) {
    free(e);
    return st;
  }
  *out = e;
  return NULL;
}

static void cuda_event_destroy(void *state, flagos_bevent_t e) {
  cuda_state_t *s = state;
  if (!e) return;
  if (e->device >= 0 && e->device < s->n_devices && s->dev[e->device].ready &&
      s->drv.CtxSetCurrent(s->dev[e->device].ctx) == CU_OK)
    s->drv.EventDestroy(e->ev);
  free(e);
}

static flagos_status_t cuda_event_record(void *state, flagos_bevent_t e, flagos_bstream_t t) {
  cuda_state_t *s = state;
  if (!e) return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: record of a NULL event");
  flagos_status_t st = cuda_use(s, e->device);
  if (st) return st;
  return cuda_check(s, s->drv.EventRecord(e->ev, t ? t->st : s->dev[e->device].stream), "cuEventRecord");
}

static flagos_status_t cuda_stream_wait_event(void *state, flagos_bstream_t t, flagos_bevent_t e) {
  cuda_state_t *s = state;
  if (!e) return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: wait for a NULL event");
  int d = t ? t->device : e->device;
  flagos_status_t st = cuda_use(s, d);
  if (st) return st;
  return cuda_check(s, s->drv.StreamWaitEvent(t ? t->st : s->dev[d].stream, e->ev, 0), "cuStreamWaitEvent");
}

static flagos_status_t cuda_event_sync(void *state, flagos_bevent_t e) {
  cuda_state_t *s = state;
  if (!e) return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: synchronize on a NULL event");
  flagos_status_t st = cuda_use(s, e->device);
  if (st) return st;
  return cuda_check(s, s->drv.EventSynchronize(e->ev), "cuEventSynchronize");
}

static flagos_status_t cuda_event_elapsed_ms(void *state, flagos_bevent_t a, flagos_bevent_t b, double *ms) {
  cuda_state_t *s = state;
  if (!a || !b) return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: elapsed time of a NULL event");
  flagos_status_t st = cuda_use(s, a->device);
  if (st) return st;
  float f = 0;
  st = cuda_check(s, s->drv.EventElapsedTime(&f, a->ev, b->ev), "cuEventElapsedTime");
  if (!st) *ms = f;
  return st;
}

static const flagos_backend_t k_cuda_backend = {
    .abi_version = FLAGOS_BACKEND_ABI_VERSION,
    .struct_size = sizeof(flagos_backend_t),
    .name = "cuda",
    .code_format = "flagos-cuda",
    .version = "0.1.0",
    .init = cuda_init,
    .shutdown = cuda_shutdown,
    .device_count = cuda_device_count,
    .device_info = cuda_device_info,
    .mem_alloc = cuda_mem_alloc,
    .mem_free = cuda_mem_free,
    .copy_h2d = cuda_copy_h2d,
    .copy_d2h = cuda_copy_d2h,
    .copy_d2d = cuda_copy_d2d,
    .stream_create = cuda_stream_create,
    .stream_destroy = cuda_stream_destroy,
    .stream_sync = cuda_stream_sync,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .stream_wait_event = cuda_stream_wait_event,
    .event_sync = cuda_event_sync,
    .event_elapsed_ms = cuda_event_elapsed_ms,
    .module_load = cuda_module_load,
    .module_unload = cuda_module_unload,
    .kernel_get = cuda_kernel_get,
    .launch = cuda_launch,
    .library_call = library_call,
    .device_power = cuda_device_power,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .graph_launch = cuda_graph_launch,
    .graph_destroy = cuda_graph_destroy,
};

__attribute__((visibility("default"))) const flagos_backend_t *flagos_backend_entry(uint32_t abi_version) {
  return abi_version == FLAGOS_BACKEND_ABI_VERSION ? &k_cuda_backend : NULL;
}
