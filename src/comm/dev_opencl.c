/* The OpenCL adaptor: buffers are cl_mem handles of the user's context (or of a
 * context FlagCX makes when none is given). The ICD loader (libOpenCL.so.1) is
 * opened at run time, so libflagcx needs no OpenCL to load. Copies go on an
 * in-order queue of FlagCX's own, so they overlap with the network thread's
 * work; staging memory is CL_MEM_ALLOC_HOST_PTR, the runtime's pinned memory. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

#if __has_include(<CL/cl.h>)
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

typedef struct cl_api {
  cl_int (*GetPlatformIDs)(cl_uint, cl_platform_id *, cl_uint *);
  cl_int (*GetDeviceIDs)(cl_platform_id, cl_device_type, cl_uint, cl_device_id *, cl_uint *);
  cl_int (*GetDeviceInfo)(cl_device_id, cl_device_info, size_t, void *, size_t *);
  cl_context (*CreateContext)(const cl_context_properties *, cl_uint, const cl_device_id *,
                              void(CL_CALLBACK *)(const char *, const void *, size_t, void *), void *, cl_int *);
  cl_int (*RetainContext)(cl_context);
  cl_int (*ReleaseContext)(cl_context);
  cl_int (*GetContextInfo)(cl_context, cl_context_info, size_t, void *, size_t *);
  cl_command_queue (*CreateCommandQueue)(cl_context, cl_device_id, cl_command_queue_properties, cl_int *);
  cl_int (*ReleaseCommandQueue)(cl_command_queue);
  cl_mem (*CreateBuffer)(cl_context, cl_mem_flags, size_t, void *, cl_int *);
  cl_int (*ReleaseMemObject)(cl_mem);
  cl_int (*GetMemObjectInfo)(cl_mem, cl_mem_info, size_t, void *, size_t *);
  cl_int (*EnqueueReadBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *, cl_uint, const cl_event *,
                              cl_event *);
  cl_int (*EnqueueWriteBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, const void *, cl_uint,
                               const cl_event *, cl_event *);
  void *(*EnqueueMapBuffer)(cl_command_queue, cl_mem, cl_bool, cl_map_flags, size_t, size_t, cl_uint,
                            const cl_event *, cl_event *, cl_int *);
  cl_int (*EnqueueUnmapMemObject)(cl_command_queue, cl_mem, void *, cl_uint, const cl_event *, cl_event *);
  cl_int (*EnqueueMarkerWithWaitList)(cl_command_queue, cl_uint, const cl_event *, cl_event *);
  cl_int (*Flush)(cl_command_queue);
  cl_int (*Finish)(cl_command_queue);
  cl_int (*WaitForEvents)(cl_uint, const cl_event *);
  cl_int (*GetEventInfo)(cl_event, cl_event_info, size_t, void *, size_t *);
  cl_int (*ReleaseEvent)(cl_event);
} cl_api_t;

static cl_api_t cl;
static pthread_once_t cl_once = PTHREAD_ONCE_INIT;
static char cl_load_error[256];

static void cl_load(void) {
  void *h = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) h = dlopen("libOpenCL.so", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(cl_load_error, sizeof cl_load_error,
             "the OpenCL ICD loader (libOpenCL.so.1) is not installed: %s", dlerror());
    return;
  }
#define SYM(name)                                                                                  \
  do {                                                                                             \
    *(void **)(&cl.name) = dlsym(h, "cl" #name);                                                   \
    if (!cl.name) {                                                                                \
      snprintf(cl_load_error, sizeof cl_load_error, "libOpenCL lacks cl%s (OpenCL 1.2 needed)", #name); \
      return;                                                                                      \
    }                                                                                              \
  } while (0)
  SYM(GetPlatformIDs);
  SYM(GetDeviceIDs);
  SYM(GetDeviceInfo);
  SYM(CreateContext);
  SYM(RetainContext);
  SYM(ReleaseContext);
  SYM(GetContextInfo);
  SYM(CreateCommandQueue);
  SYM(ReleaseCommandQueue);
  SYM(CreateBuffer);
  SYM(ReleaseMemObject);
  SYM(GetMemObjectInfo);
  SYM(EnqueueReadBuffer);
  SYM(EnqueueWriteBuffer);
  SYM(EnqueueMapBuffer);
  SYM(EnqueueUnmapMemObject);
  SYM(EnqueueMarkerWithWaitList);
  SYM(Flush);
  SYM(Finish);
  SYM(WaitForEvents);
  SYM(GetEventInfo);
  SYM(ReleaseEvent);
#undef SYM
}

typedef struct pinned {
  void *ptr;
  cl_mem mem;
  struct pinned *next;
} pinned_t;

typedef struct cl_dev {
  cl_context ctx;
  cl_device_id dev;
  cl_command_queue q;
  pinned_t *pinned;
  bool use_pinned;
} cl_dev_t;

#define D(dev) ((cl_dev_t *)(void *)(dev))

static flagcx_result_t clfail(fcx_err_t *err, cl_int rc, const char *what) {
  return fcx_seterr(err, FLAGCX_ERR_DEVICE, "OpenCL %s failed with error %d", what, (int)rc);
}

/* The index-th device over all platforms (the order clinfo prints). */
static flagcx_result_t pick_device(int index, cl_platform_id *plat, cl_device_id *dev, fcx_err_t *err) {
  cl_platform_id ps[16];
  cl_uint np = 0;
  cl_int rc = cl.GetPlatformIDs(16, ps, &np);
  if (rc != CL_SUCCESS || np == 0)
    return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "no OpenCL platform is installed (error %d)", (int)rc);
  int seen = 0;
  for (cl_uint p = 0; p < np; p++) {
    cl_device_id ds[64];
    cl_uint nd = 0;
    if (cl.GetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, 64, ds, &nd) != CL_SUCCESS) continue;
    for (cl_uint d = 0; d < nd; d++, seen++)
      if (seen == index) {
        *plat = ps[p];
        *dev = ds[d];
        return FLAGCX_SUCCESS;
      }
  }
  return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "OpenCL device %d does not exist (%d found)", index, seen);
}

static flagcx_result_t o_open(const flagcx_config_t *cfg, fcx_dev_t **out, fcx_err_t *err) {
  pthread_once(&cl_once, cl_load);
  if (cl_load_error[0]) return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "%s", cl_load_error);
  cl_dev_t *d = calloc(1, sizeof *d);
  if (!d) return fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  cl_int rc = CL_SUCCESS;
  d->use_pinned = fcx_env_long("FLAGCX_OPENCL_PINNED", 1) != 0;
  if (cfg->cl_context) {
    d->ctx = (cl_context)cfg->cl_context;
    cl.RetainContext(d->ctx);
    d->dev = (cl_device_id)cfg->cl_device;
    if (!d->dev) {
      cl_device_id ds[16];
      size_t got = 0;
      rc = cl.GetContextInfo(d->ctx, CL_CONTEXT_DEVICES, sizeof ds, ds, &got);
      if (rc != CL_SUCCESS || got < sizeof ds[0]) {
        cl.ReleaseContext(d->ctx);
        free(d);
        return clfail(err, rc, "clGetContextInfo(CL_CONTEXT_DEVICES) on the given cl_context");
      }
      d->dev = ds[0];
    }
  } else {
    cl_platform_id plat = NULL;
    int index = (int)fcx_env_long("FLAGCX_OPENCL_DEVICE", cfg->device_index);
    flagcx_result_t r = pick_device(index, &plat, &d->dev, err);
    if (r != FLAGCX_SUCCESS) {
      free(d);
      return r;
    }
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    d->ctx = cl.CreateContext(props, 1, &d->dev, NULL, NULL, &rc);
    if (!d->ctx) {
      free(d);
      return clfail(err, rc, "clCreateContext");
    }
  }
  d->q = cl.CreateCommandQueue(d->ctx, d->dev, 0, &rc);
  if (!d->q) {
    cl.ReleaseContext(d->ctx);
    free(d);
    return clfail(err, rc, "clCreateCommandQueue");
  }
  *out = (fcx_dev_t *)d;
  return FLAGCX_SUCCESS;
}

static void o_close(fcx_dev_t *dev) {
  cl_dev_t *d = D(dev);
  if (!d) return;
  cl.Finish(d->q);
  while (d->pinned) {
    pinned_t *p = d->pinned;
    d->pinned = p->next;
    cl.EnqueueUnmapMemObject(d->q, p->mem, p->ptr, 0, NULL, NULL);
    cl.Finish(d->q);
    cl.ReleaseMemObject(p->mem);
    free(p);
  }
  cl.ReleaseCommandQueue(d->q);
  cl.ReleaseContext(d->ctx);
  free(d);
}

static flagcx_result_t o_host_alloc(fcx_dev_t *dev, size_t bytes, void **ptr, fcx_err_t *err) {
  cl_dev_t *d = D(dev);
  if (bytes == 0) bytes = 64;
  if (!d->use_pinned) {
    *ptr = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return *ptr ? FLAGCX_SUCCESS : fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes)", bytes);
  }
  pinned_t *p = calloc(1, sizeof *p);
  if (!p) return fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  cl_int rc;
  p->mem = cl.CreateBuffer(d->ctx, CL_MEM_ALLOC_HOST_PTR | CL_MEM_READ_WRITE, bytes, NULL, &rc);
  if (p->mem)
    p->ptr = cl.EnqueueMapBuffer(d->q, p->mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL, NULL, &rc);
  if (!p->ptr) {
    if (p->mem) cl.ReleaseMemObject(p->mem);
    free(p);
    return clfail(err, rc, "allocating pinned staging memory");
  }
  p->next = d->pinned;
  d->pinned = p;
  *ptr = p->ptr;
  return FLAGCX_SUCCESS;
}

static void o_host_free(fcx_dev_t *dev, void *ptr) {
  cl_dev_t *d = D(dev);
  if (!ptr) return;
  for (pinned_t **pp = &d->pinned; *pp; pp = &(*pp)->next) {
    pinned_t *p = *pp;
    if (p->ptr != ptr) continue;
    *pp = p->next;
    cl.EnqueueUnmapMemObject(d->q, p->mem, p->ptr, 0, NULL, NULL);
    cl.Finish(d->q);
    cl.ReleaseMemObject(p->mem);
    free(p);
    return;
  }
  free(ptr); /* FLAGCX_OPENCL_PINNED=0 */
}

static flagcx_result_t o_mem_alloc(fcx_dev_t *dev, size_t bytes, void **buf, fcx_err_t *err) {
  cl_int rc;
  cl_mem m = cl.CreateBuffer(D(dev)->ctx, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &rc);
  if (!m) return clfail(err, rc, "clCreateBuffer");
  *buf = m;
  return FLAGCX_SUCCESS;
}

static flagcx_result_t o_mem_free(fcx_dev_t *dev, void *buf, fcx_err_t *err) {
  (void)dev;
  cl_int rc = cl.ReleaseMemObject((cl_mem)buf);
  return rc == CL_SUCCESS ? FLAGCX_SUCCESS : clfail(err, rc, "clReleaseMemObject");
}

static void *o_view(fcx_dev_t *dev, const void *buf, size_t off) {
  (void)dev, (void)buf, (void)off;
  return NULL;
}

static flagcx_result_t o_range(fcx_dev_t *dev, const void *buf, size_t off, size_t bytes, const char *what,
                               fcx_err_t *err) {
  cl_dev_t *d = D(dev);
  size_t size = 0;
  cl_context ctx = NULL;
  cl_int rc = cl.GetMemObjectInfo((cl_mem)buf, CL_MEM_SIZE, sizeof size, &size, NULL);
  if (rc == CL_SUCCESS) rc = cl.GetMemObjectInfo((cl_mem)buf, CL_MEM_CONTEXT, sizeof ctx, &ctx, NULL);
  if (rc != CL_SUCCESS)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s is not a valid cl_mem (OpenCL error %d)", what, (int)rc);
  if (ctx != d->ctx)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s belongs to another OpenCL context than the communicator's",
                      what);
  if (off > size || bytes > size - off)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s holds %zu bytes; the call needs bytes %zu to %zu", what,
                      size, off, off + bytes);
  return FLAGCX_SUCCESS;
}

static flagcx_result_t o_stream_wait(fcx_dev_t *dev, flagcx_stream_t s, fcx_err_t *err) {
  (void)dev;
  if (!s) return FLAGCX_SUCCESS;
  cl_int rc = cl.Finish((cl_command_queue)s);
  return rc == CL_SUCCESS ? FLAGCX_SUCCESS : clfail(err, rc, "clFinish on the call's queue");
}

static flagcx_result_t o_d2h(fcx_dev_t *dev, void *dst, const void *src, size_t off, size_t bytes, fcx_err_t *err) {
  cl_int rc = cl.EnqueueReadBuffer(D(dev)->q, (cl_mem)src, CL_FALSE, off, bytes, dst, 0, NULL, NULL);
  return rc == CL_SUCCESS ? FLAGCX_SUCCESS : clfail(err, rc, "clEnqueueReadBuffer");
}

static flagcx_result_t o_h2d(fcx_dev_t *dev, void *dst, size_t off, const void *src, size_t bytes, fcx_err_t *err) {
  cl_int rc = cl.EnqueueWriteBuffer(D(dev)->q, (cl_mem)dst, CL_FALSE, off, bytes, src, 0, NULL, NULL);
  return rc == CL_SUCCESS ? FLAGCX_SUCCESS : clfail(err, rc, "clEnqueueWriteBuffer");
}

static flagcx_result_t o_mark(fcx_dev_t *dev, void **marker, fcx_err_t *err) {
  cl_event ev = NULL;
  cl_int rc = cl.EnqueueMarkerWithWaitList(D(dev)->q, 0, NULL, &ev);
  if (rc == CL_SUCCESS) rc = cl.Flush(D(dev)->q); /* start the copies now, not at the wait */
  if (rc != CL_SUCCESS) return clfail(err, rc, "clEnqueueMarkerWithWaitList");
  *marker = ev;
  return FLAGCX_SUCCESS;
}

static flagcx_result_t o_wait(fcx_dev_t *dev, void *marker, fcx_err_t *err) {
  (void)dev;
  if (!marker) return FLAGCX_SUCCESS;
  cl_event ev = marker;
  cl_int rc = cl.WaitForEvents(1, &ev);
  cl_int status = CL_COMPLETE;
  cl.GetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
  cl.ReleaseEvent(ev);
  if (rc != CL_SUCCESS || status < 0) return clfail(err, rc != CL_SUCCESS ? rc : status, "a staging copy");
  return FLAGCX_SUCCESS;
}

static flagcx_result_t o_drain(fcx_dev_t *dev, fcx_err_t *err) {
  cl_int rc = cl.Finish(D(dev)->q);
  return rc == CL_SUCCESS ? FLAGCX_SUCCESS : clfail(err, rc, "clFinish");
}

static flagcx_result_t o_stream_create(fcx_dev_t *dev, flagcx_stream_t *s, fcx_err_t *err) {
  cl_int rc;
  cl_command_queue q = cl.CreateCommandQueue(D(dev)->ctx, D(dev)->dev, 0, &rc);
  if (!q) return clfail(err, rc, "clCreateCommandQueue");
  *s = q;
  return FLAGCX_SUCCESS;
}

static flagcx_result_t o_stream_destroy(fcx_dev_t *dev, flagcx_stream_t s, fcx_err_t *err) {
  (void)dev;
  cl_int rc = s ? cl.ReleaseCommandQueue((cl_command_queue)s) : CL_SUCCESS;
  return rc == CL_SUCCESS ? FLAGCX_SUCCESS : clfail(err, rc, "clReleaseCommandQueue");
}

const fcx_dev_ops_t fcx_dev_opencl_ops = {
    .kind = FLAGCX_DEVICE_OPENCL,
    .name = "opencl",
    .open = o_open,
    .close = o_close,
    .host_alloc = o_host_alloc,
    .host_free = o_host_free,
    .mem_alloc = o_mem_alloc,
    .mem_free = o_mem_free,
    .host_view = o_view,
    .check_range = o_range,
    .stream_wait = o_stream_wait,
    .d2h = o_d2h,
    .h2d = o_h2d,
    .mark = o_mark,
    .wait = o_wait,
    .drain = o_drain,
    .stream_create = o_stream_create,
    .stream_destroy = o_stream_destroy,
    .stream_sync = o_stream_wait,
};

#else /* no OpenCL headers at build time */

static flagcx_result_t o_open(const flagcx_config_t *cfg, fcx_dev_t **out, fcx_err_t *err) {
  (void)cfg, (void)out;
  return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "this FlagCX was built without OpenCL headers (opencl-headers)");
}
const fcx_dev_ops_t fcx_dev_opencl_ops = {.kind = FLAGCX_DEVICE_OPENCL, .name = "opencl", .open = o_open};

#endif
