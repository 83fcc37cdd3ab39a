/* Cross-device copies of a multi-device run on a thread of their own
 * (src/runtime/copier.c). Used from one run's thread; the worker is started by
 * the first copy. */
#ifndef FLAGOS_RUNTIME_COPIER_H
#define FLAGOS_RUNTIME_COPIER_H

#include "runtime/exec.h"

typedef struct rt_copier rt_copier_t;

/* Whether x's plugin has what an asynchronous copy needs (streams and events). */
bool rt_copier_can(const rt_exec_t *x);
rt_copier_t *rt_copier_new(void);
/* Queues a copy of n bytes from src on xa's device (not host-visible: those take
 * rt_copier_write) to dst on xb's (allocated by
 * the caller), ordered after the work issued to both devices so far; *job names
 * it for rt_copier_wait. src and dst must stay until the job is waited for. */
flagos_status_t rt_copier_start(rt_copier_t *c, rt_exec_t *xa, rt_exec_t *xb, flagos_devptr_t src, flagos_devptr_t dst,
                                size_t n, int *job);
/* Queues, from the calling thread, a write of n bytes of host memory src (a
 * value of a host-visible device, complete now) to dst on xb's device, on xb's
 * copy stream after the work issued to xb so far. src must stay until the job
 * is waited for. */
flagos_status_t rt_copier_write(rt_copier_t *c, rt_exec_t *xb, const void *src, flagos_devptr_t dst, size_t n,
                                int *job);
/* Waits until the job is done: dst holds the data. Its error, once. */
flagos_status_t rt_copier_wait(rt_copier_t *c, int job);
/* Finishes the queued jobs and frees everything (NULL: nothing). */
void rt_copier_free(rt_copier_t *c);

#endif
