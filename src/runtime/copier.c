/* Cross-device copies of a multi-device run, off the run's thread (docs/sla.md
 * "Running a plan"). Two plugins share no memory and no events, so a value
 * crosses through the host, and someone must wait for the producer before the
 * data can be read back: here a worker thread, so that the run's thread goes on
 * issuing the nodes that do not need the value, on every device, meanwhile.
 *
 * A copy of a tensor from slot A to slot B:
 *   run's thread  allocates the destination on B (the allocators are only ever
 *                 used from the run's thread), records event ea on A's default
 *                 stream after the producer and eb on B's default stream (the
 *                 destination block may have been freed by a kernel still queued
 *                 there), and queues the job;
 *   worker        on A's copy stream: waits for ea, reads the value into B's
 *                 memory (B host-visible) or a host buffer, synchronises; on B's
 *                 copy stream: waits for eb, writes, synchronises; marks the job
 *                 done. Copy streams are the plugins' own streams (stream_create),
 *                 one per slot and run, so a copy waits only for its producer,
 *                 not for the kernels queued after it.
 *   run's thread  before the first consumer on B runs: waits for the job.
 * The source is not released before that (its block could be handed to a later
 * kernel while the worker still reads it). Jobs run in the order they were
 * queued, which is program order.
 * A source on a host-visible device (the cpu) is complete when its node
 * returns, so nothing needs waiting for: the run's thread queues the write on
 * B's copy stream itself (rt_copier_write) and waits for its event only at the
 * first consumer; no thread is involved. Handing a copy to the worker costs a
 * thread wake-up, which while the cpu backend's threads occupy every core
 * (BERT-base split over a 16-core CPU and an H100: 59 copies) cost more than
 * the overlap gave. */
#include <pthread.h>
#include <stdlib.h>

#include "runtime/copier.h"

typedef struct cp_job {
  rt_exec_t *xa, *xb;
  flagos_bstream_t sa, sb; /* the slots' copy streams (NULL: host-visible, none) */
  flagos_bevent_t ea, eb;
  flagos_devptr_t src, dst;
  size_t n;
  flagos_status_t st;
  bool done;
  bool direct; /* queued by the run's thread (rt_copier_write): wait for eb */
} cp_job_t;

struct rt_copier {
  pthread_mutex_t lock;
  pthread_cond_t cv; /* a job queued, a job done, stop */
  pthread_t th;
  bool started, stop;
  cp_job_t *jobs;
  int n, cap, next; /* next: the worker's next job */
  const rt_exec_t *xs[RT_MAX_SLOTS];
  flagos_bstream_t cs[RT_MAX_SLOTS];
  int n_xs;
};

bool rt_copier_can(const rt_exec_t *x) {
  const flagos_backend_t *a = x->api;
  if (x->host_visible) return true;
  return a->stream_create && a->stream_destroy && a->stream_sync && a->event_create && a->event_destroy &&
         a->event_record && a->stream_wait_event && a->event_sync;
}

rt_copier_t *rt_copier_new(void) {
  rt_copier_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cv, NULL);
  return c;
}

/* One job, on the worker. */
static flagos_status_t do_copy(const cp_job_t *j) {
  /* The source is a device's (rt_copier_start): a host-visible one is
   * written by the run's thread (rt_copier_write). */
  const rt_exec_t *xa = j->xa, *xb = j->xb;
  void *stage = NULL, *to = xb->host_visible ? j->dst : (stage = malloc(j->n));
  if (!to) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to copy between devices", j->n);
  flagos_status_t st = xa->api->stream_wait_event(xa->bst, j->sa, j->ea);
  if (!st) st = xa->api->copy_d2h(xa->bst, j->sa, to, j->src, 0, j->n);
  if (!st) st = xa->api->stream_sync(xa->bst, j->sa);
  if (!st && !xb->host_visible) {
    st = xb->api->stream_wait_event(xb->bst, j->sb, j->eb);
    if (!st) st = xb->api->copy_h2d(xb->bst, j->sb, j->dst, 0, to, j->n);
    if (!st) st = xb->api->stream_sync(xb->bst, j->sb); /* before the staging buffer goes */
  }
  free(stage);
  return st;
}

static void *worker(void *arg) {
  rt_copier_t *c = arg;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    while (c->next == c->n && !c->stop) pthread_cond_wait(&c->cv, &c->lock);
    if (c->next == c->n) break;
    int k = c->next++;
    if (c->jobs[k].direct) continue; /* the run's thread queued it */
    cp_job_t j = c->jobs[k]; /* the array may move while the lock is not held */
    pthread_mutex_unlock(&c->lock);
    flagos_status_t st = do_copy(&j);
    pthread_mutex_lock(&c->lock);
    c->jobs[k].st = st;
    c->jobs[k].done = true;
    pthread_cond_broadcast(&c->cv);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* x's copy stream, made on first use (run's thread). */
static flagos_status_t copy_stream(rt_copier_t *c, rt_exec_t *x, flagos_bstream_t *out) {
  *out = NULL;
  if (x->host_visible) return NULL;
  for (int i = 0; i < c->n_xs; i++)
    if (c->xs[i] == x) {
      *out = c->cs[i];
      return NULL;
    }
  if (c->n_xs == RT_MAX_SLOTS) return FL_ERR(FLAGOS_ERR_INTERNAL, "more than %d devices in one run", RT_MAX_SLOTS);
  FL_TRY(x->api->stream_create(x->bst, x->device, &c->cs[c->n_xs]));
  c->xs[c->n_xs] = x;
  *out = c->cs[c->n_xs++];
  return NULL;
}

static flagos_status_t record(rt_exec_t *x, flagos_bevent_t *e) {
  *e = NULL;
  if (x->host_visible) return NULL; /* its work ran when it was issued */
  FL_TRY(x->api->event_create(x->bst, x->device, e));
  return x->api->event_record(x->bst, *e, NULL);
}

static flagos_status_t add_job(rt_copier_t *c, const cp_job_t *j, int *job) {
  pthread_mutex_lock(&c->lock);
  flagos_status_t st = NULL;
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 16;
    cp_job_t *nj = realloc(c->jobs, (size_t)cap * sizeof(*nj));
    if (nj) {
      c->jobs = nj;
      c->cap = cap;
    } else {
      st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    }
  }
  if (!st) {
    *job = c->n;
    c->jobs[c->n++] = *j;
  }
  pthread_mutex_unlock(&c->lock);
  return st;
}

flagos_status_t rt_copier_write(rt_copier_t *c, rt_exec_t *xb, const void *src, flagos_devptr_t dst, size_t n,
                                int *job) {
  cp_job_t j = {.xb = xb, .dst = dst, .n = n, .direct = true, .done = true};
  flagos_bstream_t sb;
  flagos_bevent_t e0 = NULL;
  flagos_status_t st = copy_stream(c, xb, &sb);
  if (!st) st = record(xb, &e0); /* dst's block may still be read by kernels queued on B */
  if (!st) st = xb->api->stream_wait_event(xb->bst, sb, e0);
  if (!st) st = xb->api->copy_h2d(xb->bst, sb, dst, 0, src, n);
  if (!st) st = xb->api->event_create(xb->bst, xb->device, &j.eb);
  if (!st) st = xb->api->event_record(xb->bst, j.eb, sb);
  if (e0) xb->api->event_destroy(xb->bst, e0);
  if (!st) st = add_job(c, &j, job);
  if (st && j.eb) xb->api->event_destroy(xb->bst, j.eb);
  return st;
}

flagos_status_t rt_copier_start(rt_copier_t *c, rt_exec_t *xa, rt_exec_t *xb, flagos_devptr_t src, flagos_devptr_t dst,
                                size_t n, int *job) {
  if (xa->host_visible)
    return FL_ERR(FLAGOS_ERR_INTERNAL, "a copy from host-visible memory is the run's thread's (rt_copier_write)");
  cp_job_t j = {.xa = xa, .xb = xb, .src = src, .dst = dst, .n = n};
  flagos_status_t st = copy_stream(c, xa, &j.sa);
  if (!st) st = copy_stream(c, xb, &j.sb);
  if (!st) st = record(xa, &j.ea);
  if (!st) st = record(xb, &j.eb);
  pthread_mutex_lock(&c->lock);
  if (!st && !c->started) {
    if (pthread_create(&c->th, NULL, worker, c) == 0) c->started = true;
    else st = FL_ERR(FLAGOS_ERR_INTERNAL, "cannot start the thread of cross-device copies");
  }
  pthread_mutex_unlock(&c->lock);
  if (!st) st = add_job(c, &j, job);
  if (st) {
    if (j.ea) xa->api->event_destroy(xa->bst, j.ea);
    if (j.eb) xb->api->event_destroy(xb->bst, j.eb);
    return st;
  }
  pthread_mutex_lock(&c->lock);
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

flagos_status_t rt_copier_wait(rt_copier_t *c, int job) {
  pthread_mutex_lock(&c->lock);
  if (c->jobs[job].direct) {
    cp_job_t j = c->jobs[job];
    pthread_mutex_unlock(&c->lock);
    return j.xb->api->event_sync(j.xb->bst, j.eb);
  }
  while (!c->jobs[job].done) pthread_cond_wait(&c->cv, &c->lock);
  flagos_status_t st = c->jobs[job].st;
  c->jobs[job].st = NULL;
  pthread_mutex_unlock(&c->lock);
  return st;
}

void rt_copier_free(rt_copier_t *c) {
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  c->stop = true;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->lock);
  if (c->started) pthread_join(c->th, NULL); /* it finishes the jobs queued */
  for (int k = 0; k < c->n; k++) {
    cp_job_t *j = &c->jobs[k];
    flagos_status_free(j->st);
    if (j->ea) j->xa->api->event_destroy(j->xa->bst, j->ea);
    if (j->eb) j->xb->api->event_destroy(j->xb->bst, j->eb);
  }
  for (int i = 0; i < c->n_xs; i++) { /* writes of the run's thread may be in flight (an error stopped the run) */
    flagos_status_free(c->xs[i]->api->stream_sync(c->xs[i]->bst, c->cs[i]));
    c->xs[i]->api->stream_destroy(c->xs[i]->bst, c->cs[i]);
  }
  free(c->jobs);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->lock);
  free(c);
}
