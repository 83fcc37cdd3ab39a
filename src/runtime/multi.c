/* Multi-device execution (docs/sla.md "Running a plan"): the main plan's nodes
 * run on the device slots a placement names, each through its own slot's
 * executor (plugin, loaded kernels, weights, allocator, default stream). A value
 * lives on the slot of the node that produced it (its home); a consumer on
 * another slot reads a mirror, copied once per run and slot through the host.
 * Memory per slot: every buffer comes from its slot's allocator; a home copy is
 * freed once the consumers on its slot ran and every mirror was made, a mirror
 * once the consumers on its slot ran. Weights live in mirrors only: each slot
 * holds the initializers its nodes read, placed once per session (weights.c).
 *
 * Ordering: a device's launches go to its default stream in program order. A
 * tensor's copies to the other slots that read it start as soon as its node
 * was issued (copier.c: on the plugins' copy streams, ordered by events; from a
 * host-visible slot queued by the run's thread, from a device by the copier's
 * thread, unless the next node reads it), and the run's thread waits for one
 * only before its first reader on that slot runs: meanwhile it issues the nodes
 * that do not need it, on every device. Sequences, strings, and devices whose
 * plugin lacks streams or events (and every copy with FLAGOS_ASYNC_COPIES=0)
 * are copied on the run's thread when first read: a copy to the host
 * (copy_d2h) is complete when it returns, a copy to a device is waited for
 * before its host source may be freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/copier.h"
#include "runtime/exec.h"

void rt_mplan_free(rt_mplan_t *mp) {
  if (!mp) return;
  free(mp->node_slot);
  free(mp->input_slot);
  for (int d = 0; d < RT_MAX_SLOTS; d++) {
    free(mp->uses_on[d]);
    free(mp->first_on[d]);
    free(mp->weights_on[d]);
  }
  free(mp->json);
  free(mp);
}

/* Waits until the copies issued to x's device are done. */
static flagos_status_t wait_copies(rt_exec_t *x) {
  const flagos_backend_t *api = x->api;
  if (api->event_create && api->event_record && api->event_sync && api->event_destroy) {
    flagos_bevent_t e = NULL;
    flagos_status_t st = api->event_create(x->bst, x->device, &e);
    if (!st) st = api->event_record(x->bst, e, NULL);
    if (!st) st = api->event_sync(x->bst, e);
    if (e) api->event_destroy(x->bst, e);
    return st;
  }
  return api->stream_sync ? api->stream_sync(x->bst, NULL) : NULL;
}

/* A deep copy of src (on xa's device) into dst on xb's device. */
static flagos_status_t cross_copy(rt_exec_t *xa, rt_exec_t *xb, const rt_val_t *src, rt_val_t *dst) {
  memset(dst, 0, sizeof(*dst));
  if (!src->present) return NULL;
  if (src->kind == FLAGOS_VALUE_TENSOR) {
    if (src->dtype == FLAGOS_STRING) return rt_val_copy(xb, src, dst); /* host arrays on every device */
    FL_TRY(rt_val_alloc_tensor(xb, dst, src->dtype, src->rank, src->dims));
    size_t n = dst->nbytes;
    if (!n) return NULL;
    if (xa->host_visible && xb->host_visible) {
      memcpy(dst->ptr, src->ptr, n);
      return NULL;
    }
    if (xa->host_visible) {
      FL_TRY(xb->api->copy_h2d(xb->bst, NULL, dst->ptr, 0, src->ptr, n));
      return wait_copies(xb);
    }
    if (xb->host_visible) return xa->api->copy_d2h(xa->bst, NULL, dst->ptr, src->ptr, 0, n);
    void *stage = malloc(n);
    if (!stage) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to copy between devices", n);
    flagos_status_t st = xa->api->copy_d2h(xa->bst, NULL, stage, src->ptr, 0, n);
    if (!st) st = xb->api->copy_h2d(xb->bst, NULL, dst->ptr, 0, stage, n);
    if (!st) st = wait_copies(xb);
    free(stage);
    return st;
  }
  *dst = *src;
  dst->ptr = NULL;
  dst->owned = false;
  dst->uses_left = 0;
  dst->pinned = false;
  dst->host = NULL;
  dst->n_items = 0;
  dst->items = src->n_items ? calloc((size_t)src->n_items, sizeof(rt_val_t)) : NULL;
  if (src->n_items && !dst->items) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < src->n_items; i++) {
    FL_TRY(cross_copy(xa, xb, &src->items[i], &dst->items[i]));
    dst->n_items++;
  }
  return NULL;
}

typedef struct mrun {
  rt_exec_t *const *xs;
  const rt_mplan_t *mp;
  rt_frame_t f;
  /* by value id: the mirror on that slot exists (MADE), or is being copied
   * (COPYING: job[slot][id] - 1 names the copier's job, at[slot][id] the node
   * that made the value) */
  unsigned char *made[RT_MAX_SLOTS];
  int *job[RT_MAX_SLOTS], *at[RT_MAX_SLOTS];
  rt_copier_t *cp; /* NULL: copies on the run's thread */
  /* FLAGOS_ASYNC_COPIES: unset or 1 both, "host" copies from host-visible
   * slots only, "device" from devices only, 0 none (for measurements) */
  bool async_host, async_dev;
  int node;        /* the node running now */
} mrun_t;

enum { MADE = 1, COPYING = 2 };

static rt_exec_t *home_exec(const mrun_t *r, int id) {
  int h = r->f.home[id];
  return r->xs[h >= 0 ? h : r->mp->default_slot];
}

/* A weight as a value on slot d: a view of the slot's device copy, of the
 * bundle's bytes on a host-visible device, or a per-run upload where the slot
 * keeps no copies. */
static flagos_status_t place_weight(rt_exec_t *x, const fir_tensor_t *t, flagos_devptr_t placed, rt_val_t *rv) {
  if (x->host_visible || t->dtype == FLAGOS_STRING || placed) {
    rv->present = true;
    rv->kind = FLAGOS_VALUE_TENSOR;
    rv->dtype = t->dtype;
    rv->rank = t->rank;
    memcpy(rv->dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
    rv->ptr = placed ? placed : t->data;
    rv->nbytes = t->dtype == FLAGOS_STRING ? (size_t)t->numel * sizeof(char *) : t->nbytes;
  } else {
    FL_TRY(rt_val_from_host(x, rv, t->dtype, t->rank, t->dims, t->data));
  }
  rv->pinned = true;
  if (t->dtype != FLAGOS_STRING) rv->host = t->data;
  return NULL;
}

static flagos_status_t frame_init(mrun_t *r, const rt_plan_t *p) {
  const rt_mplan_t *mp = r->mp;
  fir_graph_t *g = p->graph;
  size_t n = (size_t)g->n_values + 1;
  r->f.plan = p;
  r->f.vals = calloc(n, sizeof(rt_val_t));
  r->f.home = malloc(n * sizeof(int));
  if (!r->f.vals || !r->f.home) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < g->n_values; i++) r->f.home[i] = g->values[i]->init ? -1 : mp->default_slot;
  for (int d = 0; d < RT_MAX_SLOTS; d++) {
    if (!mp->uses_on[d]) continue;
    r->f.mirror[d] = calloc(n, sizeof(rt_val_t));
    r->made[d] = calloc(n, 1);
    r->job[d] = calloc(n, sizeof(int));
    r->at[d] = calloc(n, sizeof(int));
    if (!r->f.mirror[d] || !r->made[d] || !r->job[d] || !r->at[d])
      return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    rt_exec_t *x = r->xs[d];
    flagos_devptr_t const *placed = NULL;
    if (!x->host_visible && x->weights) FL_TRY(rt_weights_get(x->weights, p, mp->weights_on[d], &placed));
    for (int i = 0; i < g->n_values; i++) {
      if (!mp->weights_on[d][i]) continue;
      FL_TRY(place_weight(x, g->values[i]->init, placed ? placed[i] : NULL, &r->f.mirror[d][i]));
      r->made[d][i] = MADE;
    }
  }
  return NULL;
}

static void frame_free(mrun_t *r) {
  rt_copier_free(r->cp); /* first: its jobs read and write the frame's buffers */
  const rt_plan_t *p = r->f.plan;
  int nv = p ? p->graph->n_values : 0;
  if (r->f.vals && r->f.home)
    for (int i = 0; i < nv; i++) rt_val_release(home_exec(r, i), &r->f.vals[i]);
  for (int d = 0; d < RT_MAX_SLOTS; d++) {
    if (r->f.mirror[d])
      for (int i = 0; i < nv; i++) rt_val_release(r->xs[d], &r->f.mirror[d][i]);
    free(r->f.mirror[d]);
    free(r->made[d]);
    free(r->job[d]);
    free(r->at[d]);
  }
  free(r->f.vals);
  free(r->f.home);
}

/* The source's consumers on slot d read the mirror from now on. */
static void mirror_made(mrun_t *r, int id, int d) {
  rt_val_t *src = &r->f.vals[id];
  __atomic_fetch_add(&r->xs[d]->copies_in, 1, __ATOMIC_RELAXED);
  r->made[d][id] = MADE;
  src->uses_left -= r->mp->uses_on[d][id];
  if (src->uses_left <= 0 && !src->pinned) rt_val_release(r->xs[r->f.home[id]], src);
}

/* Makes the mirror on slot d of value id (which lives on another slot), or
 * waits for the copy that makes it. */
static flagos_status_t make_mirror(mrun_t *r, int id, int d) {
  int h = r->f.home[id];
  const fir_value_t *v = r->f.plan->graph->values[id];
  if (h < 0) return FL_ERR(FLAGOS_ERR_INTERNAL, "weight '%s' was not placed on device slot %d", v->name, d);
  rt_val_t *src = &r->f.vals[id], *dst = &r->f.mirror[d][id];
  flagos_status_t st;
  if (r->made[d][id] == COPYING) {
    st = rt_copier_wait(r->cp, r->job[d][id] - 1);
    if (!st && r->node > r->at[d][id] + 1) __atomic_fetch_add(&r->xs[d]->copies_ahead, 1, __ATOMIC_RELAXED);
    if (r->xs[d]->trace)
      fprintf(stderr, "flagos trace: copy of '%s' to slot %d done (made by node %d, read by node %d)\n", v->name, d,
              r->at[d][id], r->node);
  } else {
    st = cross_copy(r->xs[h], r->xs[d], src, dst);
    if (!st) dst->uses_left = r->mp->uses_on[d][id];
  }
  if (st) return flagos_status_wrap(st, "while copying '%s' between devices", v->name);
  mirror_made(r, id, d);
  return NULL;
}

static int n_reads(const rt_node_t *rn) { return rn->node->n_inputs + rn->n_captures; }
static fir_value_t *read_k(const rt_node_t *rn, int k) {
  return k < rn->node->n_inputs ? rn->node->inputs[k] : rn->captures[k - rn->node->n_inputs];
}


/* Starts the copies of value id (just made on its home slot) to the other
 * slots that read it, where both devices can copy asynchronously. */
static flagos_status_t start_copies(mrun_t *r, int id) {
  int h = r->f.home[id];
  rt_val_t *src = &r->f.vals[id];
  if (!r->cp || h < 0 || !src->present || src->kind != FLAGOS_VALUE_TENSOR || src->dtype == FLAGOS_STRING ||
      !src->nbytes || !rt_copier_can(r->xs[h]))
    return NULL;
  for (int d = 0; d < RT_MAX_SLOTS; d++) {
    if (d == h || !r->mp->uses_on[d] || !r->mp->uses_on[d][id] || r->made[d][id]) continue;
    rt_exec_t *xa = r->xs[h], *xb = r->xs[d];
    if (!rt_copier_can(xb) || (xa->host_visible && xb->host_visible)) continue;
    if (xa->host_visible ? !r->async_host : !r->async_dev) continue;
    /* A device's value read by the very next node has nothing to overlap
     * with: the copy thread's wake-up would only add to the wait. */
    if (!xa->host_visible && r->mp->first_on[d][id] == r->node + 1) continue;
    rt_val_t *dst = &r->f.mirror[d][id];
    FL_TRY(rt_val_alloc_tensor(xb, dst, src->dtype, src->rank, src->dims));
    dst->uses_left = r->mp->uses_on[d][id];
    int job;
    if (xa->host_visible) FL_TRY(rt_copier_write(r->cp, xb, src->ptr, dst->ptr, src->nbytes, &job));
    else FL_TRY(rt_copier_start(r->cp, xa, xb, src->ptr, dst->ptr, src->nbytes, &job));
    r->job[d][id] = job + 1;
    r->at[d][id] = r->node;
    r->made[d][id] = COPYING;
    if (xb->trace)
      fprintf(stderr, "flagos trace: copy of '%s' from slot %d to slot %d started\n", r->f.plan->graph->values[id]->name,
              h, d);
  }
  return NULL;
}


static flagos_status_t run_node(mrun_t *r, int i) {
  const rt_plan_t *p = r->f.plan;
  const fir_graph_t *g = p->graph;
  const rt_node_t *rn = &p->nodes[i];
  int d = r->mp->node_slot[i];
  rt_exec_t *x = r->xs[d];
  for (int k = 0; k < n_reads(rn); k++) {
    fir_value_t *v = read_k(rn, k);
    if (v && v->graph == g && r->f.home[v->id] != d && r->made[d][v->id] != MADE) FL_TRY(make_mirror(r, v->id, d));
  }
  for (int k = 0; k < rn->node->n_outputs; k++)
    if (rn->node->outputs[k]) r->f.home[rn->node->outputs[k]->id] = d;
  r->f.cur = d;
  flagos_status_t st;
  if (rn->host) {
    if (x->trace) fprintf(stderr, "flagos trace: node %d %s '%s' (runtime, slot %d)\n", i, rn->node->op_type, rn->node->name, d);
    st = rt_host_op(x, &r->f, rn);
    for (int k = 0; !st && k < rn->node->n_outputs; k++) {
      fir_value_t *v = rn->node->outputs[k];
      if (!v) continue;
      r->f.vals[v->id].uses_left = p->uses[v->id];
      r->f.vals[v->id].pinned = p->is_output[v->id];
    }
  } else {
    if (x->trace) fprintf(stderr, "flagos trace: node %d runs on slot %d\n", i, d);
    st = rt_exec_kernels(x, &r->f, rn, i);
    __atomic_fetch_add(&x->nodes_run, 1, __ATOMIC_RELAXED);
  }
  if (st) return st;
  for (int k = 0; k < rn->node->n_outputs; k++)
    if (rn->node->outputs[k]) FL_TRY(start_copies(r, rn->node->outputs[k]->id));
  for (int k = 0; k < n_reads(rn); k++) {
    fir_value_t *v = read_k(rn, k);
    if (!v || v->graph != g) continue;
    rt_val_t *rv = r->f.home[v->id] == d ? &r->f.vals[v->id] : &r->f.mirror[d][v->id];
    if (--rv->uses_left <= 0 && !rv->pinned) rt_val_release(x, rv);
  }
  return NULL;
}

flagos_status_t rt_multi_run(rt_exec_t *const *xs, const rt_mplan_t *mp, const flagos_bundle_t *b,
                             const flagos_value_t *inputs, int n_inputs, flagos_value_t *outputs, int n_outputs) {
  const rt_plan_t *p = &b->main;
  const fir_graph_t *g = p->graph;
  mrun_t r;
  memset(&r, 0, sizeof r);
  r.xs = xs;
  r.mp = mp;
  flagos_status_t st = frame_init(&r, p);
  const char *env = getenv("FLAGOS_ASYNC_COPIES");
  r.async_host = !env || !*env || !strcmp(env, "1") || !strcmp(env, "host");
  r.async_dev = !env || !*env || !strcmp(env, "1") || !strcmp(env, "device");
  if (!st && mp->n_used > 1 && (r.async_host || r.async_dev) && !(r.cp = rt_copier_new()))
    st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int k = 0; k < n_inputs && !st; k++) {
    int id = g->inputs[k]->id, d = mp->input_slot[k];
    /* An input with a default (initializer) is overridden: its placed views go. */
    for (int s = 0; s < RT_MAX_SLOTS; s++)
      if (r.f.mirror[s]) {
        rt_val_release(xs[s], &r.f.mirror[s][id]);
        r.made[s][id] = 0;
      }
    rt_val_release(home_exec(&r, id), &r.f.vals[id]);
    r.f.home[id] = d;
    st = rt_import_value(xs[d], g->inputs[k]->name, g->inputs[k]->type, &inputs[k], &r.f.vals[id]);
    r.f.vals[id].pinned = true;
  }
  r.node = -1;
  for (int k = 0; k < n_inputs && !st; k++) st = start_copies(&r, g->inputs[k]->id);
  for (int i = 0; i < p->n_nodes && !st; i++) {
    r.node = i;
    st = run_node(&r, i);
    if (st) st = flagos_status_wrap(st, "while running node %d (%s '%s')", i, p->nodes[i].node->op_type, p->nodes[i].node->name);
  }
  if (!st) {
    rt_val_t **vals = calloc((size_t)n_outputs + 1, sizeof(*vals));
    rt_exec_t **xo = calloc((size_t)n_outputs + 1, sizeof(*xo));
    if (!vals || !xo) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n_outputs && !st; i++) {
      int id = g->outputs[i]->id, h = r.f.home[id];
      vals[i] = h >= 0 ? &r.f.vals[id] : &r.f.mirror[mp->default_slot][id];
      xo[i] = xs[h >= 0 ? h : mp->default_slot];
    }
    if (!st) st = rt_export_outputs_on(xo, vals, outputs, n_outputs, g);
    free(vals);
    free(xo);
  }
  frame_free(&r);
  return st;
}
