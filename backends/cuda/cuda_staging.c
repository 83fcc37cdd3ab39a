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
 * 64 is 19 MB: ~3 ms through one memcpy on the H100's host. The threads are the
 * plugin's pool (cuda_copy_pool_t, shared by its devices), started on the
 * first such copy: starting them per copy put pthread_create on every run's
 * path. The copying thread
 * takes chunks too, so a copy finishes even when every worker is busy with
 * another thread's copy. */
#define PAR_MIN ((size_t)4 << 20)
#define PAR_MAX_CHUNKS 64
#define PAR_MAX_THREADS CUDA_COPY_THREADS_MAX

typedef struct cuda_par_copy {
  char *dst;
  const char *src;
  size_t n, chunk;
  int nchunks;
  atomic_int next;      /* the next chunk to take */
  int active;           /* workers inside the copy (under the pool's lock) */
  bool queued;          /* on the pool's list (under the pool's lock) */
  struct cuda_par_copy *link;
  atomic_int done[PAR_MAX_CHUNKS];
} par_copy_t;

/* Takes and copies one chunk; false if none was left. */
static bool par_take_one(par_copy_t *pc) {
  int c = atomic_fetch_add_explicit(&pc->next, 1, memory_order_relaxed);
  if (c >= pc->nchunks) return false;
  size_t off = (size_t)c * pc->chunk, len = pc->n - off < pc->chunk ? pc->n - off : pc->chunk;
  memcpy(pc->dst + off, pc->src + off, len);
  atomic_store_explicit(&pc->done[c], 1, memory_order_release);
  return true;
}

static void unqueue(cuda_copy_pool_t *p, par_copy_t *pc) {
  if (!pc->queued) return;
  for (par_copy_t **q = &p->jobs; *q; q = &(*q)->link)
    if (*q == pc) {
      *q = pc->link;
      break;
    }
  pc->queued = false;
}

static void *pool_worker(void *arg) {
  cuda_copy_pool_t *p = arg;
  pthread_mutex_lock(&p->lock);
  while (!p->stop) {
    par_copy_t *pc = p->jobs;
    if (!pc) {
      pthread_cond_wait(&p->wake, &p->lock);
      continue;
    }
    if (atomic_load_explicit(&pc->next, memory_order_relaxed) >= pc->nchunks) {
      unqueue(p, pc); /* every chunk is taken: nothing here for anyone */
      continue;
    }
    pc->active++;
    pthread_mutex_unlock(&p->lock);
    while (par_take_one(pc)) {
    }
    pthread_mutex_lock(&p->lock);
    if (--pc->active == 0) pthread_cond_broadcast(&p->idle);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

/* Workers of the pool: half the online CPUs up to PAR_MAX_THREADS + 1,
 * less the copying thread ($FLAGOS_CUDA_COPY_THREADS, read when the pool
 * starts, replaces the total; 0 or 1: no workers, one memcpy). */
static int pool_size(void) {
  const char *v = getenv("FLAGOS_CUDA_COPY_THREADS");
  long t = v && *v ? strtol(v, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN) / 2;
  if (t > PAR_MAX_THREADS + 1) t = PAR_MAX_THREADS + 1;
  return t > 1 ? (int)t - 1 : 0;
}

/* Queues pc (a copy of n bytes from src to dst) on the pool; false when
 * the copy is too small to split or there are no workers (the caller copies alone). */
static bool par_start(cuda_copy_pool_t *p, par_copy_t *pc, void *dst, const void *src, size_t n) {
  if (n < PAR_MIN) return false;
  pthread_mutex_lock(&p->lock);
  if (!p->started) {
    p->started = true;
    int want = pool_size();
    while (p->n_threads < want && pthread_create(&p->th[p->n_threads], NULL, pool_worker, p) == 0) p->n_threads++;
  }
  if (!p->n_threads) {
    pthread_mutex_unlock(&p->lock);
    return false;
  }
  pc->dst = dst;
  pc->src = src;
  pc->n = n;
  pc->chunk = (size_t)1 << 20;
  while ((n + pc->chunk - 1) / pc->chunk > PAR_MAX_CHUNKS) pc->chunk *= 2;
  pc->nchunks = (int)((n + pc->chunk - 1) / pc->chunk);
  atomic_init(&pc->next, 0);
  for (int c = 0; c < pc->nchunks; c++) atomic_init(&pc->done[c], 0);
  pc->active = 0;
  pc->queued = true;
  pc->link = NULL;
  par_copy_t **q = &p->jobs;
  while (*q) q = &(*q)->link;
  *q = pc;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  return true;
}

/* Waits for chunk c, copying chunks of the copy meanwhile (one at a time: a
 * host-to-device copy sends each chunk as soon as it is done). */
static void par_wait_chunk(par_copy_t *pc, int c) {
  while (!atomic_load_explicit(&pc->done[c], memory_order_acquire))
    if (atomic_load_explicit(&pc->next, memory_order_relaxed) >= pc->nchunks || !par_take_one(pc)) sched_yield();
}

/* Every chunk done: leaves the pool once no worker is inside pc any more (pc
 * lives on the caller's stack). */
static void par_finish(cuda_copy_pool_t *p, par_copy_t *pc) {
  for (int c = 0; c < pc->nchunks; c++) par_wait_chunk(pc, c);
  pthread_mutex_lock(&p->lock);
  unqueue(p, pc);
  while (pc->active > 0) pthread_cond_wait(&p->idle, &p->lock);
  pthread_mutex_unlock(&p->lock);
}

void cuda_copy_pool_init(cuda_copy_pool_t *p) {
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->idle, NULL);
}

void cuda_copy_pool_destroy(cuda_copy_pool_t *p) {
  pthread_mutex_lock(&p->lock);
  p->stop = true;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (int t = 0; t < p->n_threads; t++) pthread_join(p->th[t], NULL);
  pthread_cond_destroy(&p->idle);
  pthread_cond_destroy(&p->wake);
  pthread_mutex_destroy(&p->lock);
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
  par_copy_t pc;
  if (par_start(&s->copy_pool, &pc, sl->host, src, bytes)) {
    int sent = 0;
    for (int c = 0; c < pc.nchunks; c++) {
      par_wait_chunk(&pc, c);
      size_t off = (size_t)c * pc.chunk, len = bytes - off < pc.chunk ? bytes - off : pc.chunk;
      if (!*st) *st = cuda_check(s, s->drv.MemcpyHtoDAsync(dst + off, (char *)sl->host + off, len, cs), "cuMemcpyHtoDAsync");
      sent += !*st;
    }
    par_finish(&s->copy_pool, &pc);
    /* chunks already queued still read the buffer: it is free only after them */
    if (*st && sent) s->drv.StreamSynchronize(cs);
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
  par_copy_t pc;
  if (!*st && par_start(&s->copy_pool, &pc, dst, sl->host, bytes)) {
    par_finish(&s->copy_pool, &pc);
  } else if (!*st) {
    memcpy(dst, sl->host, bytes);
  }
  release(dv, sl, false);
  return true;
}
