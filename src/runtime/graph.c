/* Captured graphs: a session whose main plan has only kernel steps with shapes
 * fixed by its inputs' shapes records the plan's launches once per set of input
 * shapes (the plugin's capture_begin/capture_end) and replays them on later runs
 * with the same shapes: a run is then the inputs' uploads, one graph launch and
 * the outputs' downloads, with no shape rules, allocations or per-kernel calls.
 *
 * A graph runs on the buffers it was recorded with, so the capturing run takes
 * its device memory from a set the graph keeps (`rt_hold`): a value freed during
 * the capture hands its buffer to a later value of the same run (the graph
 * replays in the same order), and nothing is returned to the plugin until the
 * session is destroyed. Inputs are uploaded into the kept input buffers and
 * outputs read from the kept output buffers (or from the weights, for an
 * output that is one).
 *
 * The capture records on a stream of its own, so another thread's copies on the
 * device's default stream are never recorded into it; replays run on the default
 * stream, ordered after the uploads. Anything that fails during a capture (a
 * library call that cannot be recorded, a device read) abandons it: the shapes
 * are marked, and this and later runs with them go the plain way. One run at a
 * time uses a graph; a second thread with the same shapes meanwhile runs plainly.
 * Off when profiling (the profiler times each launch), with FLAGOS_GRAPHS=0, and
 * where the plugin refuses capture (the cuda plugin: FLAGOS_CUDA_GRAPHS=0 or
 * FLAGOS_CUDA_SYNC=1; the opencl plugin: FLAGOS_OPENCL_GRAPHS=0). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/exec.h"

#define MAX_GRAPHS 16 /* shape sets captured per session; later ones run plainly */

/* ---- buffers kept for a graph ---- */
typedef struct rt_hbuf {
  flagos_devptr_t ptr;
  size_t bytes;
  bool busy;
} rt_hbuf_t;

struct rt_hold {
  rt_hbuf_t *b;
  int n, cap;
};

flagos_status_t rt_dev_alloc(rt_exec_t *x, size_t bytes, flagos_devptr_t *out) {
  struct rt_hold *h = x->hold;
  if (!h) return x->api->mem_alloc(x->bst, x->device, bytes, out);
  /* The smallest idle buffer that fits and wastes at most half of itself. */
  int best = -1;
  for (int i = 0; i < h->n; i++)
    if (!h->b[i].busy && h->b[i].bytes >= bytes && h->b[i].bytes <= 2 * bytes + 256 &&
        (best < 0 || h->b[i].bytes < h->b[best].bytes))
      best = i;
  if (best >= 0) {
    h->b[best].busy = true;
    *out = h->b[best].ptr;
    return NULL;
  }
  if (h->n == h->cap) {
    int nc = h->cap ? h->cap * 2 : 64;
    rt_hbuf_t *nb = realloc(h->b, sizeof(*nb) * (size_t)nc);
    if (!nb) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    h->b = nb;
    h->cap = nc;
  }
  FL_TRY(x->api->mem_alloc(x->bst, x->device, bytes, out));
  h->b[h->n++] = (rt_hbuf_t){*out, bytes, true};
  return NULL;
}

void rt_dev_free(rt_exec_t *x, flagos_devptr_t p) {
  struct rt_hold *h = x->hold;
  for (int i = 0; h && i < h->n; i++)
    if (h->b[i].ptr == p) {
      h->b[i].busy = false;
      return;
    }
  x->api->mem_free(x->bst, x->device, p);
}

static void hold_release(const rt_exec_t *x, struct rt_hold *h) {
  for (int i = 0; i < h->n; i++) x->api->mem_free(x->bst, x->device, h->b[i].ptr);
  free(h->b);
  memset(h, 0, sizeof(*h));
}

/* ---- graphs by input shapes ---- */
typedef struct rt_gentry {
  struct rt_gentry *next;
  int64_t *key;
  int key_len;
  bool failed; /* the capture failed for these shapes: they run plainly */
  pthread_mutex_t busy;
  flagos_bgraph_t graph;
  struct rt_hold hold;
  rt_val_t *ins, *outs; /* views, by graph input and output index */
} rt_gentry_t;

struct rt_graphs {
  rt_exec_t x; /* the session's executor as created (the plugin's own table) */
  const rt_plan_t *main;
  pthread_mutex_t lock; /* guards the list, off and stats */
  rt_gentry_t *entries;
  int n_entries;
  bool off; /* the plugin refused to capture */
  rt_graph_stats_t stats;
};

static bool numeric_tensor_type(const fir_type_t *t) {
  return t && (t->kind == FIR_TYPE_TENSOR || t->kind == FIR_TYPE_UNKNOWN) && t->dtype != FLAGOS_STRING;
}

static bool is_graph_input(const fir_graph_t *g, const fir_value_t *v) {
  for (int i = 0; i < g->n_inputs; i++)
    if (g->inputs[i] == v) return true;
  return false;
}

/* A plan can be captured when every node is kernels only and every value a
 * shape rule reads is a weight (its bytes are on the host; any other value would
 * need a device read in the middle of the capture). */
static bool plan_capturable(const rt_plan_t *p) {
  const fir_graph_t *g = p->graph;
  for (int i = 0; i < g->n_inputs; i++)
    if (!numeric_tensor_type(g->inputs[i]->type)) return false;
  for (int i = 0; i < g->n_outputs; i++)
    if (!g->outputs[i] || !numeric_tensor_type(g->outputs[i]->type)) return false;
  for (int i = 0; i < p->n_nodes; i++) {
    const rt_node_t *rn = &p->nodes[i];
    if (rn->host) return false;
    const fir_node_t *n = rn->node;
    for (int k = 0; k < n->n_inputs && k < 64; k++) {
      const fir_value_t *v = n->inputs[k];
      if (!v || !(rn->def->value_inputs >> k & 1)) continue;
      if (!v->init || v->init->dtype == FLAGOS_STRING || is_graph_input(g, v)) return false;
    }
  }
  return true;
}

flagos_status_t rt_graphs_create(const rt_exec_t *x, const rt_plan_t *main, rt_graphs_t **out) {
  *out = NULL;
  const char *env = getenv("FLAGOS_GRAPHS");
  if (x->host_visible || (env && strcmp(env, "0") == 0)) return NULL;
  const flagos_backend_t *api = x->api;
  if (!FLAGOS_BACKEND_HAS(api, capture_begin) || !FLAGOS_BACKEND_HAS(api, capture_end) ||
      !FLAGOS_BACKEND_HAS(api, graph_launch) || !FLAGOS_BACKEND_HAS(api, graph_destroy))
    return NULL;
  if (!plan_capturable(main)) return NULL;
  rt_graphs_t *gs = calloc(1, sizeof(*gs));
  if (!gs) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  gs->x = *x;
  gs->main = main;
  pthread_mutex_init(&gs->lock, NULL);
  *out = gs;
  return NULL;
}

static void entry_free(rt_graphs_t *gs, rt_gentry_t *e) {
  if (e->graph) gs->x.api->graph_destroy(gs->x.bst, e->graph);
  hold_release(&gs->x, &e->hold);
  pthread_mutex_destroy(&e->busy);
  free(e->key);
  free(e->ins);
  free(e->outs);
  free(e);
}

void rt_graphs_destroy(rt_graphs_t *gs) {
  if (!gs) return;
  while (gs->entries) {
    rt_gentry_t *e = gs->entries;
    gs->entries = e->next;
    entry_free(gs, e);
  }
  pthread_mutex_destroy(&gs->lock);
  free(gs);
}

void rt_graphs_stats(const rt_graphs_t *gs, rt_graph_stats_t *out) {
  memset(out, 0, sizeof(*out));
  if (!gs) return;
  out->captures = __atomic_load_n(&gs->stats.captures, __ATOMIC_RELAXED);
  out->replays = __atomic_load_n(&gs->stats.replays, __ATOMIC_RELAXED);
  out->fallbacks = __atomic_load_n(&gs->stats.fallbacks, __ATOMIC_RELAXED);
}

/* dtype, rank and dims of every input; false when an input is no numeric tensor. */
static bool make_key(const flagos_value_t *inputs, int n, int64_t **key, int *len) {
  int l = 0;
  for (int i = 0; i < n; i++) {
    const flagos_tensor_t *t = &inputs[i].tensor;
    if (inputs[i].kind != FLAGOS_VALUE_TENSOR || t->dtype == FLAGOS_STRING || t->rank < 0 || t->rank > FLAGOS_MAX_RANK)
      return false;
    l += 2 + t->rank;
  }
  int64_t *k = malloc(sizeof(int64_t) * (size_t)(l + 1));
  if (!k) return false;
  l = 0;
  for (int i = 0; i < n; i++) {
    const flagos_tensor_t *t = &inputs[i].tensor;
    k[l++] = t->dtype;
    k[l++] = t->rank;
    for (int d = 0; d < t->rank; d++) k[l++] = t->dims[d];
  }
  *key = k;
  *len = l;
  return true;
}

static void unlink_entry(rt_graphs_t *gs, rt_gentry_t *e) {
  pthread_mutex_lock(&gs->lock);
  for (rt_gentry_t **pp = &gs->entries; *pp; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      gs->n_entries--;
      break;
    }
  pthread_mutex_unlock(&gs->lock);
}

/* Atomic, not under gs->lock: it is called with an entry's busy lock held. */
static void count(rt_graphs_t *gs, int64_t *field) {
  (void)gs;
  __atomic_fetch_add(field, 1, __ATOMIC_RELAXED);
}

/* Uploads the inputs into the graph's buffers (unless the capturing run has just
 * done so), launches it, exports the outputs. */
static flagos_status_t replay(rt_graphs_t *gs, rt_gentry_t *e, const flagos_value_t *inputs,
                              int n_inputs, flagos_value_t *outputs, int n_outputs, bool upload) {
  /* The executor as the table was made with, not the caller's: its counters
   * change under other threads' runs. */
  rt_exec_t x = gs->x;
  x.stream = NULL;
  x.hold = NULL;
  const fir_graph_t *g = gs->main->graph;
  for (int i = 0; i < n_inputs && upload; i++) {
    const flagos_tensor_t *t = &inputs[i].tensor;
    size_t need = e->ins[i].nbytes;
    if (t->nbytes < need || (!t->data && need))
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': buffer of %zu bytes is smaller than its shape needs",
                    g->inputs[i]->name, t->nbytes);
    if (need) FL_TRY(x.api->copy_h2d(x.bst, NULL, e->ins[i].ptr, 0, t->data, need));
  }
  if (x.trace) fprintf(stderr, "flagos trace: replaying the captured graph\n");
  FL_TRY(x.api->graph_launch(x.bst, e->graph, NULL));
  rt_val_t **vals = calloc((size_t)n_outputs + 1, sizeof(*vals));
  if (!vals) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < n_outputs; i++) vals[i] = &e->outs[i];
  flagos_status_t st = rt_export_outputs(&x, vals, outputs, n_outputs, g);
  free(vals);
  return st;
}

typedef enum { CAPTURED, NOT_THESE_SHAPES, NOT_NOW } capture_result_t;

/* The first run with a set of shapes: records the plan, then launches the
 * recording. Unless CAPTURED, nothing was run and the caller runs plainly;
 * NOT_NOW when the inputs themselves were refused (the plain run reports why). */
static flagos_status_t capture(rt_graphs_t *gs, rt_gentry_t *e, const flagos_value_t *inputs,
                               int n_inputs, flagos_value_t *outputs, int n_outputs, capture_result_t *res) {
  *res = NOT_THESE_SHAPES;
  /* The executor as the table was made with, not the caller's: its counters
   * change under other threads' runs. */
  rt_exec_t x = gs->x;
  x.hold = &e->hold;
  x.stream = NULL;
  const fir_graph_t *g = gs->main->graph;
  rt_frame_t f = {0};
  flagos_bstream_t cs = NULL;
  flagos_status_t st = rt_frame_init(&x, gs->main, NULL, &f);
  for (int i = 0; i < n_inputs && !st; i++) {
    rt_val_t *rv = &f.vals[g->inputs[i]->id];
    rt_val_release(&x, rv);
    st = rt_import_value(&x, g->inputs[i]->name, g->inputs[i]->type, &inputs[i], rv);
    rv->pinned = true;
  }
  if (st) *res = NOT_NOW;
  if (!st) st = x.api->stream_create(x.bst, x.device, &cs);
  bool began = false;
  if (!st) {
    st = x.api->capture_begin(x.bst, x.device, cs);
    began = st == NULL;
    if (st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED) {
      pthread_mutex_lock(&gs->lock);
      gs->off = true;
      pthread_mutex_unlock(&gs->lock);
    }
  }
  if (began) {
    x.stream = cs;
    st = rt_exec_graph(&x, &f);
    flagos_bgraph_t graph = NULL;
    flagos_status_t es = x.api->capture_end(x.bst, x.device, cs, &graph);
    x.stream = NULL;
    if (st || es) {
      if (graph) x.api->graph_destroy(x.bst, graph);
      flagos_status_free(es);
      if (!st) st = es ? FL_ERR(FLAGOS_ERR_BACKEND, "capture failed") : NULL;
    } else {
      e->graph = graph;
    }
  }
  /* The graph's views of its inputs and outputs. */
  if (!st) {
    e->ins = calloc((size_t)n_inputs + 1, sizeof(rt_val_t));
    e->outs = calloc((size_t)n_outputs + 1, sizeof(rt_val_t));
    if (!e->ins || !e->outs) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  for (int i = 0; i < n_inputs && !st; i++) e->ins[i] = f.vals[g->inputs[i]->id];
  for (int i = 0; i < n_outputs && !st; i++) {
    const rt_val_t *rv = rt_lookup(&f, g->outputs[i]);
    if (!rv || !rv->present || rv->kind != FLAGOS_VALUE_TENSOR || rv->dtype == FLAGOS_STRING)
      st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "output '%s' is no tensor the graph computes", g->outputs[i]->name);
    else
      e->outs[i] = *rv;
  }
  for (int i = 0; i < n_inputs + n_outputs && !st; i++) {
    rt_val_t *v = i < n_inputs ? &e->ins[i] : &e->outs[i - n_inputs];
    v->owned = false;
    v->items = NULL;
    v->n_items = 0;
  }
  rt_frame_free(&x, &f); /* owned buffers go back to the kept set, not to the plugin */
  if (cs) x.api->stream_destroy(x.bst, cs);
  if (st || !e->graph) {
    if (x.trace) fprintf(stderr, "flagos trace: no graph for these shapes: %s\n", st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    return NULL;
  }
  *res = CAPTURED;
  count(gs, &gs->stats.captures);
  return replay(gs, e, inputs, n_inputs, outputs, n_outputs, false);
}

flagos_status_t rt_graphs_run(rt_graphs_t *gs, const rt_exec_t *x, const flagos_value_t *inputs, int n_inputs,
                              flagos_value_t *outputs, int n_outputs, bool *done) {
  *done = false;
  if (!gs || x->prof) return NULL;
  int64_t *key;
  int len;
  if (!make_key(inputs, n_inputs, &key, &len)) return NULL;
  pthread_mutex_lock(&gs->lock);
  rt_gentry_t *e = gs->entries;
  while (e && !(e->key_len == len && memcmp(e->key, key, sizeof(int64_t) * (size_t)len) == 0)) e = e->next;
  bool fresh = false;
  if (gs->off || (e && (e->failed || pthread_mutex_trylock(&e->busy) != 0)) || (!e && gs->n_entries >= MAX_GRAPHS)) {
    e = NULL;
  } else if (!e) {
    e = calloc(1, sizeof(*e));
    if (e) {
      e->key = key;
      e->key_len = len;
      key = NULL;
      pthread_mutex_init(&e->busy, NULL);
      pthread_mutex_lock(&e->busy);
      e->next = gs->entries;
      gs->entries = e;
      gs->n_entries++;
      fresh = true;
    }
  }
  pthread_mutex_unlock(&gs->lock);
  free(key);
  if (!e) return NULL;
  flagos_status_t st = NULL;
  if (fresh) {
    capture_result_t res;
    st = capture(gs, e, inputs, n_inputs, outputs, n_outputs, &res);
    *done = res == CAPTURED;
    if (res == NOT_NOW) {
      unlink_entry(gs, e);
      pthread_mutex_unlock(&e->busy);
      entry_free(gs, e);
      return st;
    }
    if (res == NOT_THESE_SHAPES) {
      /* Nothing ran: the shapes stay marked so they are not tried again, and the
       * buffers the attempt kept go back now. */
      hold_release(&gs->x, &e->hold);
      pthread_mutex_lock(&gs->lock);
      e->failed = true;
      pthread_mutex_unlock(&gs->lock);
      count(gs, &gs->stats.fallbacks);
    }
  } else {
    st = replay(gs, e, inputs, n_inputs, outputs, n_outputs, true);
    *done = true;
    count(gs, &gs->stats.replays);
  }
  pthread_mutex_unlock(&e->busy);
  return st;
}
