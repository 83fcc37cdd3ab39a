/* The caching allocator. The runtime allocates and frees every intermediate
 * value on every run; clCreateBuffer and clReleaseMemObject cost tens of
 * microseconds on some drivers (NVIDIA's allocates device memory at once and
 * its deferred release can wait for the device), so a freed buffer goes to a
 * free list of its size class and is handed out again.
 *
 * Size classes as in the cuda plugin: 256 bytes, then four per power of two (a
 * request is rounded up to a quarter of the power of two below it), so a buffer
 * wastes at most a quarter of its size. A buffer handed out again may still be
 * read by queued work of its previous owner: on one in-order queue (the
 * default stream, which every plain run uses) that work comes first. When the
 * driver runs out of memory, the cached buffers go back to it and the
 * allocation is tried once more. */
#include <stdio.h>
#include <stdlib.h>

#include "../size_class.h"
#include "ocl_internal.h"

void ocl_pool_drain(ocl_state_t *s, ocl_device_t *d) {
  for (int c = 0; c < d->pool.n_classes; c++)
    while (d->pool.free[c]) {
      ocl_buf_t *b = d->pool.free[c];
      d->pool.free[c] = b->next;
      s->cl.clReleaseMemObject(b->mem);
      free(b);
    }
  d->pool.cached_bytes = 0;
}

flagos_status_t ocl_alloc(ocl_state_t *s, ocl_device_t *d, int device, size_t bytes, ocl_buf_t **out) {
  *out = NULL;
  size_t csize;
  int cls = flagos_size_class(bytes ? bytes : 1, &csize);
  pthread_mutex_lock(&s->lock);
  ocl_buf_t *b = cls < d->pool.n_classes ? d->pool.free[cls] : NULL;
  if (b) {
    d->pool.free[cls] = b->next;
    d->pool.cached_bytes -= csize;
  }
  pthread_mutex_unlock(&s->lock);
  if (!b) {
    b = calloc(1, sizeof(*b));
    if (!b) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
    cl_int e;
    b->mem = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, csize, NULL, &e);
    if (!b->mem && (e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES || e == CL_OUT_OF_HOST_MEMORY ||
                    e == CL_INVALID_BUFFER_SIZE)) {
      pthread_mutex_lock(&s->lock);
      ocl_pool_drain(s, d);
      pthread_mutex_unlock(&s->lock);
      s->cl.clFinish(d->queue); /* releases are deferred until the work using them is done */
      b->mem = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, csize, NULL, &e);
    }
    if (!b->mem) {
      free(b);
      char what[256];
      snprintf(what, sizeof what, "cannot allocate %zu bytes on '%s'", bytes, d->name);
      return ocl_fail(s, e, what);
    }
  }
  b->dev = device;
  b->size = bytes;
  b->cls = cls;
  b->next = NULL;
  *out = b;
  return NULL;
}

void ocl_free(ocl_state_t *s, ocl_buf_t *b) {
  ocl_device_t *d = &s->dev[b->dev];
  pthread_mutex_lock(&s->lock);
  if (b->cls >= d->pool.n_classes) {
    int nc = b->cls + 16;
    ocl_buf_t **grown = realloc(d->pool.free, sizeof(*grown) * (size_t)nc);
    if (grown) {
      for (int c = d->pool.n_classes; c < nc; c++) grown[c] = NULL;
      d->pool.free = grown;
      d->pool.n_classes = nc;
    }
  }
  bool kept = b->cls >= 0 && b->cls < d->pool.n_classes;
  if (kept) {
    size_t csize;
    flagos_size_class(b->size ? b->size : 1, &csize);
    b->next = d->pool.free[b->cls];
    d->pool.free[b->cls] = b;
    d->pool.cached_bytes += csize;
  }
  pthread_mutex_unlock(&s->lock);
  if (!kept) {
    s->cl.clReleaseMemObject(b->mem); /* deferred by OpenCL until queued work using it is done */
    free(b);
  }
}
