/* Pinned staging for host<->device copies. A copy from pageable memory makes
 * the driver stage it through its own buffers in chunks, and the host waits for
 * that; from page-locked memory the DMA runs on its own. So a host-to-device copy
 * is a memcpy into a pinned buffer and an asynchronous copy from it (the caller
 * may reuse its memory at once, as before), and the buffer is handed out again
 * once the event recorded after the copy has completed. A device-to-host copy
 * (on any stream) lands in a pinned buffer, is waited for (the runtime
 * reads the data at once) and then copied out.
 *
 * A few buffers per device (CUDA_STAGING_SLOTS), grown to the next power of two
 * that fits a copy; copies larger than STAGING_MAX, and copies while every
 * buffer is in flight, go from pageable memory as before. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

#define STAGING_MIN ((size_t)64 << 10)
#define STAGING_MAX ((size_t)64 << 20)

void cuda_staging_init(cuda_staging_t *g) {
  memset(g, 0, sizeof(*g));
  pthread_mutex_init(&g->lock, NULL);
}

void cuda_staging_destroy(cuda_state_t *s, cuda_device_t *dv) {
  cuda_staging_t *g = &dv->staging;
  for (int i = 0; i < CUDA_STAGING_SLOTS; i++) {
    cuda_staging_slot_t *sl = &g->slot[i];
    if (sl->done) {
      s->drv.EventSynchronize(sl->done);
      s->drv.EventDestroy(sl->done);
    }
    if (sl->host) s->drv.MemFreeHost(sl->host);
  }
  pthread_mutex_destroy(&g->lock);
  memset(g, 0, sizeof(*g));
}

static bool idle(cuda_state_t *s, cuda_staging_slot_t *sl) {
  if (sl->busy) return false;
  if (sl->pending && s->drv.EventQuery(sl->done) == CU_OK) sl->pending = false;
  return !sl->pending;
}

/* A buffer of at least `bytes` (lock taken inside), or NULL. */
static cuda_staging_slot_t *acquire(cuda_state_t *s, cuda_device_t *dv, size_t bytes) {
  cuda_staging_t *g = &dv->staging;
  cuda_staging_slot_t *best = NULL, *grow = NULL;
  pthread_mutex_lock(&g->lock);
  for (int i = 0; i < CUDA_STAGING_SLOTS; i++) {
    cuda_staging_slot_t *sl = &g->slot[i];
    if (!idle(s, sl)) continue;
    if (sl->host && sl->cap >= bytes) {
      if (!best || sl->cap < best->cap) best = sl;
    } else if (!grow || !sl->host || (grow->host && sl->cap < grow->cap)) {
      grow = sl; /* an empty slot first, else the smallest one */
    }
  }
  if (!best && grow) {
    size_t cap = STAGING_MIN;
    while (cap < bytes) cap *= 2;
    void *h = NULL;
    if (!grow->done && s->drv.EventCreate(&grow->done, CU_EVENT_DISABLE_TIMING_FLAG) != CU_OK) grow->done = NULL;
    if (grow->done && s->drv.MemHostAlloc(&h, cap, 0) == CU_OK) {
      if (grow->host) s->drv.MemFreeHost(grow->host);
      grow->host = h;
      grow->cap = cap;
      best = grow;
    }
  }
  if (best) best->busy = true;
  pthread_mutex_unlock(&g->lock);
  return best;
}

static void release(cuda_device_t *dv, cuda_staging_slot_t *sl, bool pending) {
  pthread_mutex_lock(&dv->staging.lock);
  sl->busy = false;
  sl->pending = pending;
  pthread_mutex_unlock(&dv->staging.lock);
}

bool cuda_staging_h2d(cuda_state_t *s, cuda_device_t *dv, cu_stream_t cs, cu_ptr_t dst, const void *src, size_t bytes,
                      flagos_status_t *st) {
  *st = NULL;
  if (bytes > STAGING_MAX) return false;
  cuda_staging_slot_t *sl = acquire(s, dv, bytes);
  if (!sl) return false;
  memcpy(sl->host, src, bytes);
  *st = cuda_check(s, s->drv.MemcpyHtoDAsync(dst, sl->host, bytes, cs), "cuMemcpyHtoDAsync");
  if (!*st && s->drv.EventRecord(sl->done, cs) != CU_OK) {
    /* Without the event nothing would tell when the buffer is free again. */
    *st = cuda_check(s, s->drv.StreamSynchronize(cs), "host-to-device copy (stream synchronize)");
    release(dv, sl, false);
    return true;
  }
  release(dv, sl, *st == NULL);
  return true;
}

bool cuda_staging_d2h(cuda_state_t *s, cuda_device_t *dv, cu_stream_t cs, void *dst, cu_ptr_t src, size_t bytes,
                      flagos_status_t *st) {
  *st = NULL;
  if (bytes > STAGING_MAX) return false;
  cuda_staging_slot_t *sl = acquire(s, dv, bytes);
  if (!sl) return false;
  *st = cuda_check(s, s->drv.MemcpyDtoHAsync(sl->host, src, bytes, cs), "cuMemcpyDtoHAsync");
  /* Errors of earlier kernels on the stream surface here. */
  if (!*st) *st = cuda_check(s, s->drv.StreamSynchronize(cs), "device-to-host copy (stream synchronize)");
  if (!*st) memcpy(dst, sl->host, bytes);
  release(dv, sl, false);
  return true;
}
