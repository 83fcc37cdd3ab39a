/* Weights placed once per session: on a device with its own memory, a plan's
 * initializers are uploaded the first time a frame of that plan is made (the main
 * plan at the first run, a subgraph's when it first runs) and stay until the
 * session is destroyed, so runs only move inputs and outputs. A multi-device
 * session asks each device for the weights its nodes read only (the first run
 * of a plan that puts them there uploads them).
 *
 * Runs of one session may come from several threads: the table is guarded by a
 * mutex, and a plan's copies are published only once all of them are uploaded.
 * Kernels never write their inputs, so sharing the copies between runs is safe.
 * Allocation and upload use the plugin's own table, not the profiler's, so the
 * copies outlive a profiling period. */
#include <pthread.h>
#include <stdlib.h>

#include "runtime/exec.h"

typedef struct rt_wplan {
  const rt_plan_t *plan;
  flagos_devptr_t *ptrs; /* by value id */
  struct rt_wplan *next;
} rt_wplan_t;

struct rt_weights {
  const flagos_backend_t *api;
  void *bst;
  int device;
  pthread_mutex_t lock;
  rt_wplan_t *plans;
  int64_t uploads;
};

flagos_status_t rt_weights_create(const flagos_backend_t *api, void *bst, int device, rt_weights_t **out) {
  rt_weights_t *w = calloc(1, sizeof(*w));
  if (!w) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  w->api = api;
  w->bst = bst;
  w->device = device;
  pthread_mutex_init(&w->lock, NULL);
  *out = w;
  return NULL;
}

static void free_ptrs(rt_weights_t *w, const rt_plan_t *p, flagos_devptr_t *ptrs) {
  for (int i = 0; i < p->graph->n_values; i++)
    if (ptrs[i]) w->api->mem_free(w->bst, w->device, ptrs[i]);
  free(ptrs);
}

void rt_weights_destroy(rt_weights_t *w) {
  if (!w) return;
  while (w->plans) {
    rt_wplan_t *wp = w->plans;
    w->plans = wp->next;
    free_ptrs(w, wp->plan, wp->ptrs);
    free(wp);
  }
  pthread_mutex_destroy(&w->lock);
  free(w);
}

/* Uploads the initializers of p that `need` asks for (all when NULL) and that
 * are not on the device yet. On failure the entries uploaded stay (valid). */
static flagos_status_t upload(rt_weights_t *w, const rt_plan_t *p, const bool *need, flagos_devptr_t *ptrs) {
  fir_graph_t *g = p->graph;
  for (int i = 0; i < g->n_values; i++) {
    const fir_tensor_t *t = g->values[i]->init;
    if (!t || t->dtype == FLAGOS_STRING || ptrs[i] || (need && !need[i])) continue; /* strings stay host arrays */
    flagos_devptr_t d = NULL;
    FL_TRY(w->api->mem_alloc(w->bst, w->device, t->nbytes ? t->nbytes : 1, &d));
    flagos_status_t st = t->nbytes ? w->api->copy_h2d(w->bst, NULL, d, 0, t->data, t->nbytes) : NULL;
    if (st) {
      w->api->mem_free(w->bst, w->device, d);
      return st;
    }
    ptrs[i] = d;
    w->uploads++;
  }
  return NULL;
}

flagos_status_t rt_weights_get(rt_weights_t *w, const rt_plan_t *p, const bool *need, flagos_devptr_t const **out) {
  flagos_status_t st = NULL;
  /* Held across the upload: a second thread wanting the same weights waits
   * rather than uploading them again. An entry is written once, under the lock,
   * before any caller that needs it gets the table; callers read only the
   * entries they asked for. */
  pthread_mutex_lock(&w->lock);
  rt_wplan_t *wp = w->plans;
  while (wp && wp->plan != p) wp = wp->next;
  if (!wp) {
    wp = calloc(1, sizeof(*wp));
    flagos_devptr_t *ptrs = wp ? calloc((size_t)p->graph->n_values + 1, sizeof(*ptrs)) : NULL;
    if (!ptrs) {
      free(wp);
      wp = NULL;
      st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    } else {
      wp->plan = p;
      wp->ptrs = ptrs;
      wp->next = w->plans;
      w->plans = wp;
    }
  }
  if (wp && (st = upload(w, p, need, wp->ptrs)) != NULL) st = flagos_status_wrap(st, "while uploading the weights");
  pthread_mutex_unlock(&w->lock);
  *out = wp && !st ? wp->ptrs : NULL;
  return st;
}

int64_t rt_weights_uploads(const rt_weights_t *w) { return w ? w->uploads : 0; }
