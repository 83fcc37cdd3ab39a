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
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_internal.h"

#define STAGING_MIN ((size_t)64 << 10)
#define STAGING_MAX ((size_t)64 << 20)

/* Large copies: the memcpy through the pinned buffer is split over threads (one
 * core copies ~5-10 GB/s, a PCIe 5 DMA runs ~25-50), and a host-to-device copy
 * sends each chunk as soon as it is in the buffer. ResNet-50's f16 input at batch
 * 64 is 19 MB: ~3 ms through one memcpy on the H100's host. */
#define PAR_MIN ((size_t)4 << 20)
#define PAR_MAX_CHUNKS 64
#define PAR_MAX_THREADS 8

typedef struct par_copy {
  char *dst;
  const char *src;
  size_t n, chunk;
  int nchunks, nthreads;
  atomic_int done[PAR_MAX_CHUNKS];
} par_copy_t;

typedef struct par_arg {
  par_copy_t *pc;
  int t;
} par_arg_t;

static void *par_worker(void *arg) {
  par_arg_t *a = arg;
  par_copy_t *pc = a->pc;
  for (int c = a->t; c < pc->nchunks; c += pc->nthreads) {
    size_t off = (size_t)c * pc->chunk, len = pc->n - off < pc->chunk ? pc->n - off : pc->chunk;
    memcpy(pc->dst + off, pc->src + off, len);
    atomic_store_explicit(&pc->done[c], 1, memory_order_release);
  }
  return NULL;
}

/* Threads for a copy of n bytes: 0 below PAR_MIN, else half the online CPUs up
 * to PAR_MAX_THREADS ($FLAGOS_CUDA_COPY_THREADS overrides; 0 or 1: one memcpy). */
static int par_threads(size_t n) {
  if (n < PAR_MIN) return 0;
  const char *v = getenv("FLAGOS_CUDA_COPY_THREADS");
  long t = v && *v ? strtol(v, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN) / 2;
  if (t > PAR_MAX_THREADS) t = PAR_MAX_THREADS;
  return t > 1 ? (int)t : 0;
}

/* Starts the workers of a parallel copy; returns how many started (0: none, the
 * caller copies alone). */
static int par_start(par_copy_t *pc, par_arg_t *args, pthread_t *th, void *dst, const void *src, size_t n, int nt) {
  pc->dst = dst;
  pc->src = src;
  pc->n = n;
  pc->chunk = (size_t)1 << 20;
  while ((n + pc->chunk - 1) / pc->chunk > PAR_MAX_CHUNKS) pc->chunk *= 2;
  pc->nchunks = (int)((n + pc->chunk - 1) / pc->chunk);
  pc->nthreads = nt < pc->nchunks ? nt : pc->nchunks;
  for (int c = 0; c < pc->nchunks; c++) atomic_init(&pc->done[c], 0);
  int started = 0;
  for (int t = 0; t < pc->nthreads; t++) {
    args[t] = (par_arg_t){pc, t};
    if (pthread_create(&th[t], NULL, par_worker, &args[t]) != 0) break;
    started++;
  }
  /* Chunks of threads that did not start: copied here, in turn. */
  for (int t = started; t < pc->nthreads; t++) {
    par_arg_t a = {pc, t};
    par_worker(&a);
  }
  return started;
}

static void par_wait_chunk(par_copy_t *pc, int c) {
  while (!atomic_load_explicit(&pc->done[c], memory_order_acquire)) sched_yield();
}

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
  int nt = par_threads(bytes);
  if (nt) {
    par_copy_t pc;
    par_arg_t args[PAR_MAX_THREADS];
    pthread_t th[PAR_MAX_THREADS];
    int started = par_start(&pc, args, th, sl->host, src, bytes, nt);
    for (int c = 0; c < pc.nchunks; c++) {
      par_wait_chunk(&pc, c);
      size_t off = (size_t)c * pc.chunk, len = bytes - off < pc.chunk ? bytes - off : pc.chunk;
      if (!*st) *st = cuda_check(s, s->drv.MemcpyHtoDAsync(dst + off, (char *)sl->host + off, len, cs), "cuMemcpyHtoDAsync");
    }
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
  } else {
    memcpy(sl->host, src, bytes);
    *st = cuda_check(s, s->drv.MemcpyHtoDAsync(dst, sl->host, bytes, cs), "cuMemcpyHtoDAsync");
  }
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
  int nt = *st ? 0 : par_threads(bytes);
  if (nt) {
    par_copy_t pc;
    par_arg_t args[PAR_MAX_THREADS];
    pthread_t th[PAR_MAX_THREADS];
    int started = par_start(&pc, args, th, dst, sl->host, bytes, nt);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
  } else if (!*st) {
    memcpy(dst, sl->host, bytes);
  }
  release(dv, sl, false);
  return true;
}
