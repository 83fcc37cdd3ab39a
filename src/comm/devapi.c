/* Device memory and streams of a communicator's device kind, so that tools and
 * tests can drive any kind without linking CUDA or OpenCL themselves. */
#include "fcx.h"

static flagcx_result_t need(flagcx_comm_t c, const void *p, const char *call) {
  if (!c) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "%s: comm is NULL", call);
  if (!p) return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "%s: NULL pointer", call);
  if (!c->dev) return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_USAGE, "%s: the communicator has no device", call);
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_mem_alloc(flagcx_comm_t c, size_t bytes, void **buf) {
  FCX_TRY(need(c, buf, "mem_alloc"));
  return c->dev_ops->mem_alloc(c->dev, bytes, buf, &c->err);
}

flagcx_result_t flagcx_mem_free(flagcx_comm_t c, void *buf) {
  if (c && !buf) return FLAGCX_SUCCESS;
  FCX_TRY(need(c, buf, "mem_free"));
  return c->dev_ops->mem_free(c->dev, buf, &c->err);
}

flagcx_result_t flagcx_mem_write(flagcx_comm_t c, void *dst, size_t off, const void *src, size_t bytes) {
  FCX_TRY(need(c, dst, "mem_write"));
  if (bytes == 0) return FLAGCX_SUCCESS;
  if (!src) return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "mem_write: src is NULL");
  FCX_TRY(c->dev_ops->check_range(c->dev, dst, off, bytes, "mem_write destination", &c->err));
  FCX_TRY(c->dev_ops->h2d(c->dev, dst, off, src, bytes, &c->err));
  return c->dev_ops->drain(c->dev, &c->err);
}

flagcx_result_t flagcx_mem_read(flagcx_comm_t c, void *dst, const void *src, size_t off, size_t bytes) {
  FCX_TRY(need(c, src, "mem_read"));
  if (bytes == 0) return FLAGCX_SUCCESS;
  if (!dst) return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "mem_read: dst is NULL");
  FCX_TRY(c->dev_ops->check_range(c->dev, src, off, bytes, "mem_read source", &c->err));
  FCX_TRY(c->dev_ops->d2h(c->dev, dst, src, off, bytes, &c->err));
  return c->dev_ops->drain(c->dev, &c->err);
}

flagcx_result_t flagcx_stream_create(flagcx_comm_t c, flagcx_stream_t *stream) {
  FCX_TRY(need(c, stream, "stream_create"));
  return c->dev_ops->stream_create(c->dev, stream, &c->err);
}

flagcx_result_t flagcx_stream_destroy(flagcx_comm_t c, flagcx_stream_t stream) {
  FCX_TRY(need(c, c, "stream_destroy"));
  return c->dev_ops->stream_destroy(c->dev, stream, &c->err);
}

flagcx_result_t flagcx_stream_synchronize(flagcx_comm_t c, flagcx_stream_t stream) {
  FCX_TRY(need(c, c, "stream_synchronize"));
  FCX_TRY(c->dev_ops->stream_sync(c->dev, stream, &c->err));
  /* On NCCL paths a hung stream is ended by the watchdog: report why. */
  if (c->nccl) return fcx_nccl_check(c);
  return FLAGCX_SUCCESS;
}
