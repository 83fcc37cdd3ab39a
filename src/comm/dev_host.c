/* The host adaptor: buffers are host memory, so staging is the identity
 * (host_view) and copies are memcpy. */
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

/* The host adaptor has no state; its handle only needs to be non-NULL. */
static char host_dev_token;

static flagcx_result_t h_open(const flagcx_config_t *cfg, fcx_dev_t **dev, fcx_err_t *err) {
  (void)cfg, (void)err;
  *dev = (fcx_dev_t *)(void *)&host_dev_token;
  return FLAGCX_SUCCESS;
}
static void h_close(fcx_dev_t *dev) { (void)dev; }

static flagcx_result_t h_alloc(fcx_dev_t *dev, size_t bytes, void **ptr, fcx_err_t *err) {
  (void)dev;
  size_t n = (bytes + 63) & ~(size_t)63;
  *ptr = aligned_alloc(64, n ? n : 64);
  return *ptr ? FLAGCX_SUCCESS : fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes)", bytes);
}
static void h_free(fcx_dev_t *dev, void *ptr) {
  (void)dev;
  free(ptr);
}
static flagcx_result_t h_mem_free(fcx_dev_t *dev, void *buf, fcx_err_t *err) {
  (void)dev;
  (void)err;
  free(buf);
  return FLAGCX_SUCCESS;
}
static void *h_view(fcx_dev_t *dev, const void *buf, size_t off) {
  (void)dev;
  return (char *)buf + off;
}
static flagcx_result_t h_range(fcx_dev_t *dev, const void *buf, size_t off, size_t bytes, const char *what,
                               fcx_err_t *err) {
  (void)dev, (void)buf, (void)off, (void)bytes, (void)what, (void)err;
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_stream_wait(fcx_dev_t *dev, flagcx_stream_t s, fcx_err_t *err) {
  (void)dev, (void)s, (void)err;
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_d2h(fcx_dev_t *dev, void *dst, const void *src, size_t off, size_t bytes, fcx_err_t *err) {
  (void)dev, (void)err;
  memcpy(dst, (const char *)src + off, bytes);
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_h2d(fcx_dev_t *dev, void *dst, size_t off, const void *src, size_t bytes, fcx_err_t *err) {
  (void)dev, (void)err;
  memcpy((char *)dst + off, src, bytes);
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_mark(fcx_dev_t *dev, void **m, fcx_err_t *err) {
  (void)dev, (void)err;
  *m = NULL;
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_wait(fcx_dev_t *dev, void *m, fcx_err_t *err) {
  (void)dev, (void)m, (void)err;
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_drain(fcx_dev_t *dev, fcx_err_t *err) {
  (void)dev, (void)err;
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_stream_create(fcx_dev_t *dev, flagcx_stream_t *s, fcx_err_t *err) {
  (void)dev, (void)err;
  *s = NULL;
  return FLAGCX_SUCCESS;
}
static flagcx_result_t h_stream_destroy(fcx_dev_t *dev, flagcx_stream_t s, fcx_err_t *err) {
  (void)dev, (void)s, (void)err;
  return FLAGCX_SUCCESS;
}

const fcx_dev_ops_t fcx_dev_host_ops = {
    .kind = FLAGCX_DEVICE_HOST,
    .name = "host",
    .open = h_open,
    .close = h_close,
    .host_alloc = h_alloc,
    .host_free = h_free,
    .mem_alloc = h_alloc,
    .mem_free = h_mem_free,
    .host_view = h_view,
    .check_range = h_range,
    .stream_wait = h_stream_wait,
    .d2h = h_d2h,
    .h2d = h_h2d,
    .mark = h_mark,
    .wait = h_wait,
    .drain = h_drain,
    .stream_create = h_stream_create,
    .stream_destroy = h_stream_destroy,
    .stream_sync = h_stream_wait,
};

const fcx_dev_ops_t *fcx_dev_ops_for(flagcx_device_kind_t kind) {
  switch (kind) {
  case FLAGCX_DEVICE_HOST: return &fcx_dev_host_ops;
  case FLAGCX_DEVICE_CUDA: return &fcx_dev_cuda_ops;
  case FLAGCX_DEVICE_OPENCL: return &fcx_dev_opencl_ops;
  default: return NULL;
  }
}
