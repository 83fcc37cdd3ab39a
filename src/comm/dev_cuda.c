/* The CUDA adaptor: device pointers, copies on a non-blocking stream of
 * FlagCX's own, page-locked staging memory (cudaHostAlloc). The CUDA runtime is
 * opened at run time, so libflagcx loads on machines without CUDA. Every entry
 * selects the communicator's device first: the current device is per thread. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcx.h"
#include "nccl_abi.h"

static fcx_cudart_t rt;
static pthread_once_t rt_once = PTHREAD_ONCE_INIT;
static char rt_error[300];

static void rt_load(void) {
  const char *names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"};
  void *h = NULL;
  const char *env = fcx_env_str("FLAGCX_CUDART_LIBRARY");
  if (env) h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(rt_error, sizeof rt_error, "the CUDA runtime (libcudart.so) is not installed; set FLAGCX_CUDART_LIBRARY");
    return;
  }
#define RSYM(field, name)                                                                          \
  do {                                                                                             \
    *(void **)(&rt.field) = dlsym(h, name);                                                        \
    if (!rt.field) {                                                                               \
      snprintf(rt_error, sizeof rt_error, "the CUDA runtime lacks %s", name);                      \
      return;                                                                                      \
    }                                                                                              \
  } while (0)
  RSYM(GetDeviceCount, "cudaGetDeviceCount");
  RSYM(SetDevice, "cudaSetDevice");
  RSYM(Malloc, "cudaMalloc");
  RSYM(Free, "cudaFree");
  RSYM(HostAlloc, "cudaHostAlloc");
  RSYM(FreeHost, "cudaFreeHost");
  RSYM(Memcpy, "cudaMemcpy");
  RSYM(MemcpyAsync, "cudaMemcpyAsync");
  RSYM(StreamCreateWithFlags, "cudaStreamCreateWithFlags");
  RSYM(StreamDestroy, "cudaStreamDestroy");
  RSYM(StreamSynchronize, "cudaStreamSynchronize");
  RSYM(StreamWaitEvent, "cudaStreamWaitEvent");
  RSYM(EventCreateWithFlags, "cudaEventCreateWithFlags");
  RSYM(EventRecord, "cudaEventRecord");
  RSYM(EventSynchronize, "cudaEventSynchronize");
  RSYM(EventQuery, "cudaEventQuery");
  RSYM(EventElapsedTime, "cudaEventElapsedTime");
  RSYM(EventDestroy, "cudaEventDestroy");
  RSYM(GetErrorString, "cudaGetErrorString");
#undef RSYM
}

const fcx_cudart_t *fcx_cudart(fcx_err_t *err) {
  pthread_once(&rt_once, rt_load);
  if (rt_error[0]) {
    fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "%s", rt_error);
    return NULL;
  }
  return &rt;
}

typedef struct cu_dev {
  int index;
  fcx_cudaStream_t copy;
} cu_dev_t;

#define D(dev) ((cu_dev_t *)(void *)(dev))

static flagcx_result_t cufail(fcx_err_t *err, fcx_cudaError_t rc, const char *what) {
  return fcx_seterr(err, FLAGCX_ERR_DEVICE, "CUDA %s failed: %s (%d)", what, rt.GetErrorString(rc), rc);
}

#define CU(call, what)                                                                             \
  do {                                                                                             \
    fcx_cudaError_t cu_rc_ = (call);                                                               \
    if (cu_rc_ != 0) return cufail(err, cu_rc_, what);                                             \
  } while (0)

int fcx_dev_cuda_index(fcx_dev_t *dev) { return D(dev)->index; }

static flagcx_result_t c_open(const flagcx_config_t *cfg, fcx_dev_t **out, fcx_err_t *err) {
  if (!fcx_cudart(err)) return err->code;
  int count = 0;
  fcx_cudaError_t rc = rt.GetDeviceCount(&count);
  if (rc != 0 || count == 0)
    return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "no CUDA device is visible (%s)",
                      rc ? rt.GetErrorString(rc) : "0 devices");
  if (cfg->device_index < 0 || cfg->device_index >= count)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "CUDA device %d does not exist (%d visible)",
                      cfg->device_index, count);
  cu_dev_t *d = calloc(1, sizeof *d);
  if (!d) return fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  d->index = cfg->device_index;
  rc = rt.SetDevice(d->index);
  if (rc == 0) rc = rt.StreamCreateWithFlags(&d->copy, FCX_cudaStreamNonBlocking);
  if (rc != 0) {
    free(d);
    return cufail(err, rc, "stream creation");
  }
  *out = (fcx_dev_t *)d;
  return FLAGCX_SUCCESS;
}

static void c_close(fcx_dev_t *dev) {
  cu_dev_t *d = D(dev);
  if (!d) return;
  rt.SetDevice(d->index);
  rt.StreamSynchronize(d->copy);
  rt.StreamDestroy(d->copy);
  free(d);
}

static flagcx_result_t c_host_alloc(fcx_dev_t *dev, size_t bytes, void **ptr, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.HostAlloc(ptr, bytes ? bytes : 64, FCX_cudaHostAllocPortable), "cudaHostAlloc");
  return FLAGCX_SUCCESS;
}
static void c_host_free(fcx_dev_t *dev, void *ptr) {
  (void)dev;
  if (ptr) rt.FreeHost(ptr);
}
static flagcx_result_t c_mem_alloc(fcx_dev_t *dev, size_t bytes, void **buf, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.Malloc(buf, bytes ? bytes : 1), "cudaMalloc");
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_mem_free(fcx_dev_t *dev, void *buf, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.Free(buf), "cudaFree");
  return FLAGCX_SUCCESS;
}
static void *c_view(fcx_dev_t *dev, const void *buf, size_t off) {
  (void)dev, (void)buf, (void)off;
  return NULL;
}
static flagcx_result_t c_range(fcx_dev_t *dev, const void *buf, size_t off, size_t bytes, const char *what,
                               fcx_err_t *err) {
  (void)dev, (void)buf, (void)off, (void)bytes, (void)what, (void)err;
  return FLAGCX_SUCCESS; /* the runtime does not say how large an allocation is */
}
static flagcx_result_t c_stream_sync(fcx_dev_t *dev, flagcx_stream_t s, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.StreamSynchronize(s), "cudaStreamSynchronize");
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_d2h(fcx_dev_t *dev, void *dst, const void *src, size_t off, size_t bytes, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.MemcpyAsync(dst, (const char *)src + off, bytes, FCX_cudaMemcpyDeviceToHost, D(dev)->copy),
     "cudaMemcpyAsync (device to host)");
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_h2d(fcx_dev_t *dev, void *dst, size_t off, const void *src, size_t bytes, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.MemcpyAsync((char *)dst + off, src, bytes, FCX_cudaMemcpyHostToDevice, D(dev)->copy),
     "cudaMemcpyAsync (host to device)");
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_mark(fcx_dev_t *dev, void **marker, fcx_err_t *err) {
  fcx_cudaEvent_t ev;
  CU(rt.EventCreateWithFlags(&ev, FCX_cudaEventDisableTiming), "cudaEventCreate");
  fcx_cudaError_t rc = rt.EventRecord(ev, D(dev)->copy);
  if (rc != 0) {
    rt.EventDestroy(ev);
    return cufail(err, rc, "cudaEventRecord");
  }
  *marker = ev;
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_wait(fcx_dev_t *dev, void *marker, fcx_err_t *err) {
  (void)dev;
  if (!marker) return FLAGCX_SUCCESS;
  fcx_cudaError_t rc = rt.EventSynchronize(marker);
  rt.EventDestroy(marker);
  if (rc != 0) return cufail(err, rc, "a staging copy");
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_drain(fcx_dev_t *dev, fcx_err_t *err) {
  CU(rt.StreamSynchronize(D(dev)->copy), "cudaStreamSynchronize (copy stream)");
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_stream_create(fcx_dev_t *dev, flagcx_stream_t *s, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.StreamCreateWithFlags(s, FCX_cudaStreamNonBlocking), "cudaStreamCreate");
  return FLAGCX_SUCCESS;
}
static flagcx_result_t c_stream_destroy(fcx_dev_t *dev, flagcx_stream_t s, fcx_err_t *err) {
  CU(rt.SetDevice(D(dev)->index), "cudaSetDevice");
  CU(rt.StreamDestroy(s), "cudaStreamDestroy");
  return FLAGCX_SUCCESS;
}

const fcx_dev_ops_t fcx_dev_cuda_ops = {
    .kind = FLAGCX_DEVICE_CUDA,
    .name = "cuda",
    .open = c_open,
    .close = c_close,
    .host_alloc = c_host_alloc,
    .host_free = c_host_free,
    .mem_alloc = c_mem_alloc,
    .mem_free = c_mem_free,
    .host_view = c_view,
    .check_range = c_range,
    .stream_wait = c_stream_sync,
    .d2h = c_d2h,
    .h2d = c_h2d,
    .mark = c_mark,
    .wait = c_wait,
    .drain = c_drain,
    .stream_create = c_stream_create,
    .stream_destroy = c_stream_destroy,
    .stream_sync = c_stream_sync,
};
