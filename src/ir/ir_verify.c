/* FlagIR verifier. Two passes over the model: the first checks each object on
 * its own and records every definition under its (model-unique) name; the
 * second checks every use against those definitions and sorts each graph's
 * nodes topologically, counting the outer values a subgraph reads as inputs of
 * the node that owns the subgraph. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir_text_internal.h"

#define MAX_TYPE_DEPTH 64
#define MAX_GRAPH_DEPTH 256

typedef struct vctx {
  fir_model_t *m;
  fir_nmap_t defs; /* (NULL, name) -> fir_value_t */
  flagos_status_t err;
} vctx_t;

typedef struct vvec {
  void **d;
  size_t n, cap;
} vvec_t;

static void vvec_push(vvec_t *v, void *x) {
  if (v->n == v->cap) {
    size_t nc = v->cap ? v->cap * 2 : 16;
    void **d = realloc(v->d, nc * sizeof(*d));
    if (!d) abort(); /* out of memory, as everywhere else in FlagOS */
    v->d = d;
    v->cap = nc;
  }
  v->d[v->n++] = x;
}

static const char *gname(const fir_graph_t *g) { return g && g->name ? g->name : ""; }

static const char *vname(const fir_value_t *v) { return v->name ? v->name : "(null)"; }

/* Sets the first error; the message is built in a buffer so node descriptions fit in. */
static bool fail(vctx_t *c, fl_buf_t *msg) {
  if (!c->err) c->err = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s", msg->data ? msg->data : "invalid model");
  fl_buf_free(msg);
  return false;
}

static bool failf(vctx_t *c, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
static bool failf(vctx_t *c, const char *fmt, ...) {
  fl_buf_t b = {0};
  va_list ap;
  va_start(ap, fmt);
  fl_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  return fail(c, &b);
}

static void put_node(fl_buf_t *b, const fir_node_t *n) { fir_text_describe_node(b, n); }

/* How an already-recorded value came to be defined, for duplicate messages. */
static void put_definition(fl_buf_t *b, const fir_value_t *v) {
  if (v->producer) {
    fl_buf_printf(b, "output %d of ", v->producer_output);
    put_node(b, v->producer);
  } else if (v->init) {
    fl_buf_printf(b, "an initializer of graph '%s'", gname(v->graph));
  } else {
    fl_buf_printf(b, "an input of graph '%s'", gname(v->graph));
  }
}

/* ---- pass 1: objects on their own ---- */

static bool check_type(vctx_t *c, const fir_type_t *t, const char *what, const char *name, int depth) {
  if (depth > MAX_TYPE_DEPTH) return failf(c, "type of %s '%s' nests deeper than %d levels", what, name, MAX_TYPE_DEPTH);
  if (!t) return failf(c, "%s '%s' has no type (use an unknown type, not NULL)", what, name);
  switch (t->kind) {
  case FIR_TYPE_UNKNOWN: return true;
  case FIR_TYPE_TENSOR:
    if ((unsigned)t->dtype >= FLAGOS_DTYPE_COUNT)
      return failf(c, "%s '%s' has a tensor type with invalid element type %d", what, name, (int)t->dtype);
    if (t->rank < -1) return failf(c, "%s '%s' has a tensor type of rank %d", what, name, t->rank);
    if (t->rank > 0 && !t->dims) return failf(c, "%s '%s' has a tensor type of rank %d without dims", what, name, t->rank);
    return true;
  case FIR_TYPE_MAP:
    if (!flagos_dtype_is_int(t->dtype) && t->dtype != FLAGOS_STRING)
      return failf(c, "%s '%s' has a map type whose key type %s is neither an integer nor str", what, name,
                   flagos_dtype_name(t->dtype));
    /* fall through */
  case FIR_TYPE_SEQUENCE:
  case FIR_TYPE_OPTIONAL:
    if (!t->elem) return failf(c, "%s '%s' has a seq/opt/map type without an element type", what, name);
    return check_type(c, t->elem, what, name, depth + 1);
  default: return failf(c, "%s '%s' has a type of unknown kind %d", what, name, (int)t->kind);
  }
}

static bool check_tensor(vctx_t *c, const fir_tensor_t *t, const char *what) {
  if (!t) return failf(c, "%s has no tensor", what);
  if (t->dtype <= FLAGOS_UNDEFINED || t->dtype >= FLAGOS_DTYPE_COUNT)
    return failf(c, "%s: tensor has invalid element type %d", what, (int)t->dtype);
  if (t->rank < 0 || (t->rank > 0 && !t->dims)) return failf(c, "%s: tensor has rank %d and no dims", what, t->rank);
  int64_t numel = 1;
  for (int i = 0; i < t->rank; i++) {
    if (t->dims[i] < 0) return failf(c, "%s: tensor dimension %d is negative (%lld)", what, i, (long long)t->dims[i]);
    if (t->dims[i] && numel > INT64_MAX / t->dims[i]) return failf(c, "%s: tensor has more than 2^63 elements", what);
    numel *= t->dims[i];
  }
  if (numel != t->numel)
    return failf(c, "%s: tensor says it has %lld elements but its dims make %lld", what, (long long)t->numel,
                 (long long)numel);
  if (!t->data) {
    if (t->ref < 0) return failf(c, "%s: tensor holds no data and no weight reference", what);
    return true;
  }
  if (t->dtype == FLAGOS_STRING) {
    for (int64_t i = 0; i < numel; i++)
      if (!((char *const *)t->data)[i]) return failf(c, "%s: string element %lld is NULL", what, (long long)i);
    return true;
  }
  size_t size = flagos_dtype_size(t->dtype);
  if ((uint64_t)numel > SIZE_MAX / size || t->nbytes < (size_t)numel * size)
    return failf(c, "%s: tensor holds %zu bytes, fewer than its %lld elements of %s need", what, t->nbytes,
                 (long long)numel, flagos_dtype_name(t->dtype));
  return true;
}

static bool check_value(vctx_t *c, const fir_value_t *v, const fir_graph_t *g, const char *role) {
  if (!v->name || !v->name[0]) return failf(c, "%s of graph '%s' has an empty name", role, gname(g));
  if (v->graph != g)
    return failf(c, "%s '%s' is listed in graph '%s' but records graph '%s'", role, v->name, gname(g), gname(v->graph));
  return check_type(c, v->type, role, v->name, 0);
}

static bool record(vctx_t *c, fir_value_t *v, const char *role_fmt, const fir_node_t *n, int k) {
  fir_value_t *old = fir_nmap_get(&c->defs, NULL, v->name);
  if (!old) {
    fir_nmap_put(&c->defs, NULL, v->name, v);
    return true;
  }
  fl_buf_t b = {0};
  fl_buf_printf(&b, "value '%s' is defined twice: as ", v->name);
  put_definition(&b, old);
  fl_buf_puts(&b, " and as ");
  if (n) {
    fl_buf_printf(&b, "output %d of ", k);
    put_node(&b, n);
  } else {
    fl_buf_printf(&b, role_fmt, gname(v->graph));
  }
  if (old == v) fl_buf_puts(&b, " (the same value listed twice)");
  return fail(c, &b);
}

static bool pass1(vctx_t *c, fir_graph_t *g, int depth);

static bool check_attr(vctx_t *c, const fir_node_t *n, const fir_attr_t *a, int depth) {
  fl_buf_t w = {0};
  fl_buf_printf(&w, "attribute '%s' of ", a->name ? a->name : "");
  put_node(&w, n);
  bool ok = true;
  int len = a->n;
  if (!a->name || !a->name[0]) {
    ok = failf(c, "%s has an empty name", w.data);
  } else {
    switch (a->kind) {
    case FIR_ATTR_FLOAT:
    case FIR_ATTR_INT: break;
    case FIR_ATTR_STRING:
      if (!a->s && a->s_len) ok = failf(c, "%s has no string", w.data);
      break;
    case FIR_ATTR_TENSOR:
    case FIR_ATTR_SPARSE_TENSOR: ok = check_tensor(c, a->t, w.data); break;
    case FIR_ATTR_TYPE: ok = check_type(c, a->tp, "type in", w.data, 0); break;
    case FIR_ATTR_GRAPH:
      if (!a->g) ok = failf(c, "%s has no graph", w.data);
      else if (a->g->parent != n->graph)
        ok = failf(c, "%s: subgraph '%s' does not record the node's graph as its parent", w.data, gname(a->g));
      else ok = pass1(c, a->g, depth + 1);
      break;
    case FIR_ATTR_FLOATS:
    case FIR_ATTR_INTS:
    case FIR_ATTR_STRINGS:
    case FIR_ATTR_TENSORS:
    case FIR_ATTR_SPARSE_TENSORS:
    case FIR_ATTR_GRAPHS:
    case FIR_ATTR_TYPES: {
      const void *arr = a->kind == FIR_ATTR_FLOATS    ? (const void *)a->floats
                        : a->kind == FIR_ATTR_INTS    ? (const void *)a->ints
                        : a->kind == FIR_ATTR_STRINGS ? (const void *)a->strings
                        : a->kind == FIR_ATTR_GRAPHS  ? (const void *)a->graphs
                        : a->kind == FIR_ATTR_TYPES   ? (const void *)a->types
                                                      : (const void *)a->tensors;
      if (len < 0 || (len > 0 && !arr)) {
        ok = failf(c, "%s has a list of %d elements and no array", w.data, len);
        break;
      }
      for (int i = 0; ok && i < len; i++) {
        switch (a->kind) {
        case FIR_ATTR_STRINGS:
          if (!a->strings[i]) ok = failf(c, "%s: element %d is NULL", w.data, i);
          break;
        case FIR_ATTR_TENSORS:
        case FIR_ATTR_SPARSE_TENSORS: ok = check_tensor(c, a->tensors[i], w.data); break;
        case FIR_ATTR_TYPES: ok = check_type(c, a->types[i], "type in", w.data, 0); break;
        case FIR_ATTR_GRAPHS:
          if (!a->graphs[i]) ok = failf(c, "%s: graph %d is NULL", w.data, i);
          else if (a->graphs[i]->parent != n->graph)
            ok = failf(c, "%s: subgraph '%s' does not record the node's graph as its parent", w.data,
                       gname(a->graphs[i]));
          else ok = pass1(c, a->graphs[i], depth + 1);
          break;
        default: break;
        }
      }
      break;
    }
    case FIR_ATTR_UNDEFINED: ok = failf(c, "%s has no kind (undefined)", w.data); break;
    default: ok = failf(c, "%s has unknown kind %d", w.data, (int)a->kind);
    }
  }
  fl_buf_free(&w);
  return ok;
}

static bool check_node(vctx_t *c, fir_graph_t *g, fir_node_t *n, int depth) {
  fl_buf_t w = {0};
  put_node(&w, n);
  bool ok = true;
  if (n->graph != g) ok = failf(c, "%s is listed in graph '%s' but records another graph", w.data, gname(g));
  else if (!n->op_type || !n->op_type[0]) ok = failf(c, "%s has no operator type", w.data);
  else if (!n->domain) ok = failf(c, "%s has a NULL domain (use \"\")", w.data);
  else if (n->n_inputs < 0 || n->n_outputs < 0 || n->n_attrs < 0 ||
           (n->n_inputs && !n->inputs) || (n->n_outputs && !n->outputs) || (n->n_attrs && !n->attrs))
    ok = failf(c, "%s has malformed input, output or attribute arrays", w.data);
  for (int k = 0; ok && k < n->n_outputs; k++) {
    fir_value_t *v = n->outputs[k];
    if (!v) continue;
    if (!check_value(c, v, g, "node output") || !record(c, v, NULL, n, k)) ok = false;
    else if (v->producer != n || v->producer_output != k)
      ok = failf(c, "value '%s' is output %d of %s but records another producer", v->name, k, w.data);
  }
  fir_nmap_t seen = {0};
  for (int i = 0; ok && i < n->n_attrs; i++) {
    ok = check_attr(c, n, &n->attrs[i], depth);
    if (ok && fir_nmap_get(&seen, NULL, n->attrs[i].name))
      ok = failf(c, "%s has attribute '%s' twice", w.data, n->attrs[i].name);
    if (ok) fir_nmap_put(&seen, NULL, n->attrs[i].name, &n->attrs[i]);
  }
  fir_nmap_free(&seen);
  fl_buf_free(&w);
  return ok;
}

static bool pass1(vctx_t *c, fir_graph_t *g, int depth) {
  if (depth > MAX_GRAPH_DEPTH) return failf(c, "subgraphs nest deeper than %d levels", MAX_GRAPH_DEPTH);
  if (g->model != c->m) return failf(c, "graph '%s' belongs to another model", gname(g));
  if (g->n_inputs < 0 || g->n_outputs < 0 || g->n_nodes < 0 || g->n_values < 0)
    return failf(c, "graph '%s' has a negative count", gname(g));
  for (int i = 0; i < g->n_inputs; i++) {
    fir_value_t *v = g->inputs[i];
    if (!v) return failf(c, "input %d of graph '%s' is NULL", i, gname(g));
    if (!check_value(c, v, g, "graph input")) return false;
    if (v->producer) {
      fl_buf_t b = {0};
      fl_buf_printf(&b, "graph input '%s' is also output %d of ", v->name, v->producer_output);
      put_node(&b, v->producer);
      return fail(c, &b);
    }
    if (!record(c, v, "an input of graph '%s'", NULL, 0)) return false;
  }
  for (int i = 0; i < g->n_values; i++) {
    fir_value_t *v = g->values[i];
    if (!v || !v->init) continue;
    if (!check_value(c, v, g, "initializer")) return false;
    fl_buf_t w = {0};
    fl_buf_printf(&w, "initializer '%s'", v->name);
    bool ok = check_tensor(c, v->init, w.data);
    fl_buf_free(&w);
    if (!ok) return false;
    if (v->producer) {
      fl_buf_t b = {0};
      fl_buf_printf(&b, "initializer '%s' is also output %d of ", v->name, v->producer_output);
      put_node(&b, v->producer);
      return fail(c, &b);
    }
    /* An input with a default value is recorded once, as the input. */
    if (fir_nmap_get(&c->defs, NULL, v->name) != v && !record(c, v, "an initializer of graph '%s'", NULL, 0))
      return false;
  }
  for (int i = 0; i < g->n_nodes; i++) {
    if (!g->nodes[i]) return failf(c, "node %d of graph '%s' is NULL", i, gname(g));
    g->nodes[i]->id = i;
  }
  for (int i = 0; i < g->n_nodes; i++)
    if (!check_node(c, g, g->nodes[i], depth)) return false;
  return true;
}

/* ---- pass 2: uses, scopes and order ---- */

typedef struct edge {
  int from, to;
  const fir_value_t *v;
} edge_t;

static bool encloses(const fir_graph_t *outer, const fir_graph_t *g) {
  for (g = g ? g->parent : NULL; g; g = g->parent)
    if (g == outer) return true;
  return false;
}

/* A use of u in graph g, by node `user` (or by the graph's outputs when NULL).
 * Uses of outer values go to *free; uses of g's own node outputs become edges. */
static bool use(vctx_t *c, fir_graph_t *g, fir_node_t *user, int index, fir_value_t *u, vvec_t *free_vals,
                edge_t **edges, size_t *n_edges, size_t *cap_edges) {
  fir_value_t *def = u->name ? fir_nmap_get(&c->defs, NULL, u->name) : NULL;
  if (def != u || (u->graph != g && !encloses(u->graph, g))) {
    fl_buf_t b = {0};
    if (user) {
      fl_buf_printf(&b, "input %d ('%s') of ", index, vname(u));
      put_node(&b, user);
    } else {
      fl_buf_printf(&b, "output %d ('%s') of graph '%s'", index, vname(u), gname(g));
    }
    if (!def) fl_buf_puts(&b, " is not defined");
    else if (def != u) fl_buf_puts(&b, " is a stale value: another value now carries that name");
    else fl_buf_printf(&b, " is defined in graph '%s', which does not enclose graph '%s'", gname(u->graph), gname(g));
    return fail(c, &b);
  }
  if (u->graph != g) {
    vvec_push(free_vals, u);
    return true;
  }
  if (u->producer && user) {
    if (*n_edges == *cap_edges) {
      size_t nc = *cap_edges ? *cap_edges * 2 : 64;
      edge_t *d = realloc(*edges, nc * sizeof(*d));
      if (!d) abort();
      *edges = d;
      *cap_edges = nc;
    }
    (*edges)[(*n_edges)++] = (edge_t){u->producer->id, user->id, u};
  }
  return true;
}

static bool report_cycle(vctx_t *c, fir_graph_t *g, const edge_t *e, size_t ne, const int *indeg) {
  int n = g->n_nodes;
  int *step = malloc(sizeof(int) * (size_t)n);
  const edge_t **via = calloc((size_t)n, sizeof(*via));
  if (!step || !via) abort();
  /* Every node left unsorted has an unsorted producer; remember one edge each. */
  for (size_t k = 0; k < ne; k++)
    if (indeg[e[k].to] > 0 && indeg[e[k].from] > 0 && !via[e[k].to]) via[e[k].to] = &e[k];
  for (int i = 0; i < n; i++) step[i] = -1;
  int x = 0;
  while (x < n && indeg[x] == 0) x++;
  /* Walk backwards along those edges until a node repeats: that node is on a cycle. */
  for (int s = 0; step[x] < 0; s++) {
    step[x] = s;
    x = via[x]->from;
  }
  fl_buf_t b = {0};
  fl_buf_printf(&b, "graph '%s' has a cycle: ", gname(g));
  int start = x;
  do {
    put_node(&b, g->nodes[x]);
    fl_buf_printf(&b, " needs '%s' from ", vname(via[x]->v));
    x = via[x]->from;
  } while (x != start);
  put_node(&b, g->nodes[start]);
  free(step);
  free(via);
  return fail(c, &b);
}

/* Stable topological order: among ready nodes, the one first in the current order. */
static bool sort_graph(vctx_t *c, fir_graph_t *g, const edge_t *e, size_t ne) {
  int n = g->n_nodes;
  bool sorted = true;
  for (size_t k = 0; k < ne && sorted; k++) sorted = e[k].from < e[k].to;
  if (sorted) return true;
  int *indeg = calloc((size_t)n + 1, sizeof(int)), *start = calloc((size_t)n + 2, sizeof(int));
  int *adj = malloc(sizeof(int) * (ne + 1)), *heap = malloc(sizeof(int) * ((size_t)n + 1));
  int *order = malloc(sizeof(int) * ((size_t)n + 1));
  if (!indeg || !start || !adj || !heap || !order) abort();
  for (size_t k = 0; k < ne; k++) {
    indeg[e[k].to]++;
    start[e[k].from + 1]++;
  }
  for (int i = 0; i < n; i++) start[i + 1] += start[i];
  int *fill = malloc(sizeof(int) * ((size_t)n + 1));
  if (!fill) abort();
  memcpy(fill, start, sizeof(int) * (size_t)n);
  for (size_t k = 0; k < ne; k++) adj[fill[e[k].from]++] = e[k].to;
  free(fill);
  int hn = 0, done = 0;
#define HEAP_PUSH(x)                                                                                               \
  do {                                                                                                             \
    int i_ = hn++;                                                                                                 \
    heap[i_] = (x);                                                                                                \
    while (i_ > 0 && heap[(i_ - 1) / 2] > heap[i_]) {                                                              \
      int t_ = heap[i_];                                                                                           \
      heap[i_] = heap[(i_ - 1) / 2];                                                                               \
      heap[(i_ - 1) / 2] = t_;                                                                                     \
      i_ = (i_ - 1) / 2;                                                                                           \
    }                                                                                                              \
  } while (0)
  for (int i = 0; i < n; i++)
    if (indeg[i] == 0) HEAP_PUSH(i);
  while (hn > 0) {
    int x = heap[0];
    heap[0] = heap[--hn];
    for (int i = 0;;) {
      int l = 2 * i + 1, r = l + 1, s = i;
      if (l < hn && heap[l] < heap[s]) s = l;
      if (r < hn && heap[r] < heap[s]) s = r;
      if (s == i) break;
      int t = heap[i];
      heap[i] = heap[s];
      heap[s] = t;
      i = s;
    }
    order[done++] = x;
    for (int k = start[x]; k < start[x + 1]; k++)
      if (--indeg[adj[k]] == 0) HEAP_PUSH(adj[k]);
  }
#undef HEAP_PUSH
  bool ok = true;
  if (done < n) {
    ok = report_cycle(c, g, e, ne, indeg);
  } else {
    fir_node_t **old = malloc(sizeof(*old) * (size_t)n);
    if (!old) abort();
    memcpy(old, g->nodes, sizeof(*old) * (size_t)n);
    for (int i = 0; i < n; i++) {
      g->nodes[i] = old[order[i]];
      g->nodes[i]->id = i;
    }
    free(old);
  }
  free(indeg);
  free(start);
  free(adj);
  free(heap);
  free(order);
  return ok;
}

/* Checks the uses in g, sorts g, and appends to *outer the values g reads from
 * enclosing graphs. */
static bool pass2(vctx_t *c, fir_graph_t *g, vvec_t *outer) {
  edge_t *edges = NULL;
  size_t ne = 0, cap = 0;
  bool ok = true;
  for (int i = 0; ok && i < g->n_nodes; i++) {
    fir_node_t *n = g->nodes[i];
    for (int k = 0; ok && k < n->n_inputs; k++)
      if (n->inputs[k]) ok = use(c, g, n, k, n->inputs[k], outer, &edges, &ne, &cap);
    for (int a = 0; ok && a < n->n_attrs; a++) {
      const fir_attr_t *at = &n->attrs[a];
      int count = at->kind == FIR_ATTR_GRAPH ? 1 : at->kind == FIR_ATTR_GRAPHS ? at->n : 0;
      for (int j = 0; ok && j < count; j++) {
        fir_graph_t *sub = at->kind == FIR_ATTR_GRAPH ? at->g : at->graphs[j];
        vvec_t inner = {0};
        ok = pass2(c, sub, &inner);
        /* What a subgraph reads from outside is an input of the node that owns it. */
        for (size_t v = 0; ok && v < inner.n; v++) ok = use(c, g, n, -1, inner.d[v], outer, &edges, &ne, &cap);
        free(inner.d);
      }
    }
  }
  for (int i = 0; ok && i < g->n_outputs; i++) {
    if (!g->outputs[i]) ok = failf(c, "output %d of graph '%s' is NULL", i, gname(g));
    else ok = use(c, g, NULL, i, g->outputs[i], outer, &edges, &ne, &cap);
  }
  if (ok) ok = sort_graph(c, g, edges, ne);
  free(edges);
  return ok;
}

flagos_status_t fir_verify(fir_model_t *m) {
  if (!m) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "fir_verify: no model");
  if (!m->graph) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "model has no main graph");
  if (m->n_opsets < 0 || (m->n_opsets && !m->opsets)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "model has a malformed opset list");
  for (int i = 0; i < m->n_opsets; i++)
    if (!m->opsets[i].domain) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "opset %d has a NULL domain", i);
  vctx_t c = {.m = m};
  if (m->graph->parent) failf(&c, "the main graph '%s' has a parent graph", gname(m->graph));
  else if (pass1(&c, m->graph, 0)) {
    vvec_t outer = {0};
    if (pass2(&c, m->graph, &outer) && outer.n)
      failf(&c, "the main graph reads '%s', which no graph defines", vname(outer.d[0]));
    free(outer.d);
  }
  fir_nmap_free(&c.defs);
  return c.err;
}
