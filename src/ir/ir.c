#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

fir_model_t *fir_model_create(void) {
  fl_arena_t *a = fl_arena_create();
  fir_model_t *m = fl_arena_alloc(a, sizeof(*m));
  m->arena = a;
  m->ir_version = 10;
  m->producer = "";
  return m;
}

void fir_model_destroy(fir_model_t *m) {
  if (m) fl_arena_destroy(m->arena);
}

int64_t fir_model_opset(const fir_model_t *m, const char *domain) {
  const char *d = domain ? domain : "";
  if (strcmp(d, "ai.onnx") == 0) d = "";
  for (int i = 0; i < m->n_opsets; i++) {
    const char *md = strcmp(m->opsets[i].domain, "ai.onnx") == 0 ? "" : m->opsets[i].domain;
    if (strcmp(md, d) == 0) return m->opsets[i].version;
  }
  return -1;
}

void fir_model_set_opset(fir_model_t *m, const char *domain, int64_t version) {
  for (int i = 0; i < m->n_opsets; i++) {
    if (strcmp(m->opsets[i].domain, domain) == 0) {
      m->opsets[i].version = version;
      return;
    }
  }
  fir_opset_t *o = fl_arena_alloc(m->arena, sizeof(*o) * (size_t)(m->n_opsets + 1));
  if (m->n_opsets) memcpy(o, m->opsets, sizeof(*o) * (size_t)m->n_opsets);
  o[m->n_opsets].domain = fl_arena_strdup(m->arena, domain);
  o[m->n_opsets].version = version;
  m->opsets = o;
  m->n_opsets++;
}

fir_graph_t *fir_graph_create(fir_model_t *m, fir_graph_t *parent, const char *name) {
  fir_graph_t *g = fl_arena_alloc(m->arena, sizeof(*g));
  g->model = m;
  g->parent = parent;
  g->name = fl_arena_strdup(m->arena, name ? name : "");
  return g;
}

/* Arrays in the arena grow by doubling; the old block stays in the arena. */
static void *grow(fl_arena_t *a, void *arr, int n, int *cap, size_t elem) {
  if (n < *cap) return arr;
  int nc = *cap ? *cap * 2 : 8;
  void *d = fl_arena_alloc(a, elem * (size_t)nc);
  if (n) memcpy(d, arr, elem * (size_t)n);
  *cap = nc;
  return d;
}

fir_value_t *fir_value_create(fir_graph_t *g, const char *name, fir_type_t *type) {
  fir_model_t *m = g->model;
  fir_value_t *v = fl_arena_alloc(m->arena, sizeof(*v));
  v->name = fl_arena_strdup(m->arena, name);
  v->type = type ? type : fir_type_unknown(m);
  v->graph = g;
  v->id = g->n_values;
  g->values = grow(m->arena, g->values, g->n_values, &g->cap_values, sizeof(*g->values));
  g->values[g->n_values++] = v;
  return v;
}

fir_value_t *fir_graph_lookup(const fir_graph_t *g, const char *name) {
  for (; g; g = g->parent) {
    /* Search backwards: later definitions are the likelier target of a lookup. */
    for (int i = g->n_values - 1; i >= 0; i--)
      if (strcmp(g->values[i]->name, name) == 0) return g->values[i];
  }
  return NULL;
}

void fir_graph_add_input(fir_graph_t *g, fir_value_t *v) {
  fir_value_t **a = fl_arena_alloc(g->model->arena, sizeof(*a) * (size_t)(g->n_inputs + 1));
  if (g->n_inputs) memcpy(a, g->inputs, sizeof(*a) * (size_t)g->n_inputs);
  a[g->n_inputs++] = v;
  g->inputs = a;
}

void fir_graph_add_output(fir_graph_t *g, fir_value_t *v) {
  fir_value_t **a = fl_arena_alloc(g->model->arena, sizeof(*a) * (size_t)(g->n_outputs + 1));
  if (g->n_outputs) memcpy(a, g->outputs, sizeof(*a) * (size_t)g->n_outputs);
  a[g->n_outputs++] = v;
  g->outputs = a;
}

fir_node_t *fir_node_create(fir_graph_t *g, const char *op_type, const char *domain, const char *name,
                            int n_inputs, fir_value_t *const *inputs, int n_outputs, fir_value_t *const *outputs) {
  fir_model_t *m = g->model;
  fir_node_t *n = fl_arena_alloc(m->arena, sizeof(*n));
  n->op_type = fl_arena_strdup(m->arena, op_type);
  n->domain = fl_arena_strdup(m->arena, domain && strcmp(domain, "ai.onnx") != 0 ? domain : "");
  n->name = fl_arena_strdup(m->arena, name ? name : "");
  int64_t ver = fir_model_opset(m, n->domain);
  n->opset = (int)(ver < 0 ? 0 : ver);
  n->n_inputs = n_inputs;
  n->inputs = fl_arena_alloc(m->arena, sizeof(*n->inputs) * (size_t)(n_inputs ? n_inputs : 1));
  if (n_inputs) memcpy(n->inputs, inputs, sizeof(*n->inputs) * (size_t)n_inputs);
  n->n_outputs = n_outputs;
  n->outputs = fl_arena_alloc(m->arena, sizeof(*n->outputs) * (size_t)(n_outputs ? n_outputs : 1));
  if (n_outputs) memcpy(n->outputs, outputs, sizeof(*n->outputs) * (size_t)n_outputs);
  for (int i = 0; i < n_outputs; i++) {
    if (outputs[i]) {
      outputs[i]->producer = n;
      outputs[i]->producer_output = i;
    }
  }
  n->graph = g;
  n->id = g->n_nodes;
  g->nodes = grow(m->arena, g->nodes, g->n_nodes, &g->cap_nodes, sizeof(*g->nodes));
  g->nodes[g->n_nodes++] = n;
  return n;
}

void fir_graph_remove_nodes(fir_graph_t *g, const bool *dead) {
  int k = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    if (dead[i]) continue;
    g->nodes[k] = g->nodes[i];
    g->nodes[k]->id = k;
    k++;
  }
  g->n_nodes = k;
}

void fir_graph_remove_values(fir_graph_t *g, const bool *dead, int n_dead) {
  int k = 0;
  for (int i = 0; i < g->n_values; i++) {
    fir_value_t *v = g->values[i];
    if (v->id < n_dead && dead[v->id]) continue;
    g->values[k++] = v;
  }
  g->n_values = k;
  for (int i = 0; i < k; i++) g->values[i]->id = i;
}

static bool name_taken(const fir_graph_t *g, const char *name) {
  for (int i = 0; i < g->n_values; i++)
    if (strcmp(g->values[i]->name, name) == 0) return true;
  for (int i = 0; i < g->n_nodes; i++) {
    const fir_node_t *n = g->nodes[i];
    for (int a = 0; a < n->n_attrs; a++) {
      const fir_attr_t *at = &n->attrs[a];
      if (at->kind == FIR_ATTR_GRAPH && at->g && name_taken(at->g, name)) return true;
      if (at->kind == FIR_ATTR_GRAPHS)
        for (int j = 0; j < at->n; j++)
          if (name_taken(at->graphs[j], name)) return true;
    }
  }
  return false;
}

const char *fir_fresh_name(fir_model_t *m, const char *prefix) {
  char buf[256];
  for (int i = 0;; i++) {
    snprintf(buf, sizeof buf, "%s_%d", prefix, i);
    if (!name_taken(m->graph, buf)) return fl_arena_strdup(m->arena, buf);
  }
}

fir_type_t *fir_type_unknown(fir_model_t *m) {
  fir_type_t *t = fl_arena_alloc(m->arena, sizeof(*t));
  t->kind = FIR_TYPE_UNKNOWN;
  t->rank = -1;
  return t;
}

fir_type_t *fir_type_tensor(fir_model_t *m, flagos_dtype_t dt, int rank, const int64_t *dims) {
  fir_type_t *t = fl_arena_alloc(m->arena, sizeof(*t));
  t->kind = FIR_TYPE_TENSOR;
  t->dtype = dt;
  t->rank = rank;
  if (rank > 0) {
    t->dims = fl_arena_alloc(m->arena, sizeof(*t->dims) * (size_t)rank);
    for (int i = 0; i < rank; i++) t->dims[i].value = dims ? dims[i] : -1;
  }
  return t;
}

fir_type_t *fir_type_clone(fir_model_t *m, const fir_type_t *t) {
  if (!t) return NULL;
  fir_type_t *c = fl_arena_alloc(m->arena, sizeof(*c));
  *c = *t;
  if (t->rank > 0 && t->dims) c->dims = fl_arena_memdup(m->arena, t->dims, sizeof(*t->dims) * (size_t)t->rank);
  c->elem = fir_type_clone(m, t->elem);
  return c;
}

bool fir_node_is(const fir_node_t *n, const char *domain, const char *op) {
  return strcmp(n->domain, domain) == 0 && strcmp(n->op_type, op) == 0;
}

bool fir_node_is_view(const fir_node_t *n) {
  static const char *const ops[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0] && !n->domain[0]; i++)
    if (strcmp(n->op_type, ops[i]) == 0) return true;
  return false;
}

bool fir_type_equal(const fir_type_t *a, const fir_type_t *b) {
  if (!a || !b) return a == b;
  if (a->kind != b->kind || a->dtype != b->dtype || a->rank != b->rank) return false;
  for (int i = 0; i < a->rank && a->kind == FIR_TYPE_TENSOR; i++) {
    if (a->dims[i].value != b->dims[i].value) return false;
    if ((a->dims[i].sym == NULL) != (b->dims[i].sym == NULL)) return false;
    if (a->dims[i].sym && strcmp(a->dims[i].sym, b->dims[i].sym) != 0) return false;
  }
  return fir_type_equal(a->elem, b->elem);
}

bool fir_type_is_static(const fir_type_t *t) {
  if (!t || t->kind != FIR_TYPE_TENSOR || t->rank < 0) return false;
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i].value < 0) return false;
  return true;
}

int64_t fir_type_numel(const fir_type_t *t) {
  if (!fir_type_is_static(t)) return -1;
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i].value;
  return n;
}

void fir_type_print(fl_buf_t *b, const fir_type_t *t) {
  if (!t || t->kind == FIR_TYPE_UNKNOWN) {
    fl_buf_puts(b, "?");
    return;
  }
  switch (t->kind) {
  case FIR_TYPE_TENSOR:
    fl_buf_puts(b, flagos_dtype_name(t->dtype));
    if (t->rank < 0) {
      fl_buf_puts(b, "[*]");
      return;
    }
    fl_buf_putc(b, '[');
    for (int i = 0; i < t->rank; i++) {
      if (i) fl_buf_putc(b, ',');
      if (t->dims[i].value >= 0) fl_buf_printf(b, "%lld", (long long)t->dims[i].value);
      else if (t->dims[i].sym) fl_buf_puts(b, t->dims[i].sym);
      else fl_buf_putc(b, '?');
    }
    fl_buf_putc(b, ']');
    return;
  case FIR_TYPE_SEQUENCE:
    fl_buf_puts(b, "seq<");
    fir_type_print(b, t->elem);
    fl_buf_putc(b, '>');
    return;
  case FIR_TYPE_OPTIONAL:
    fl_buf_puts(b, "opt<");
    fir_type_print(b, t->elem);
    fl_buf_putc(b, '>');
    return;
  case FIR_TYPE_MAP:
    fl_buf_printf(b, "map<%s,", flagos_dtype_name(t->dtype));
    fir_type_print(b, t->elem);
    fl_buf_putc(b, '>');
    return;
  default:
    fl_buf_puts(b, "?");
  }
}

const fir_attr_t *fir_node_attr(const fir_node_t *n, const char *name) {
  for (int i = 0; i < n->n_attrs; i++)
    if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
  return NULL;
}

int64_t fir_attr_int(const fir_node_t *n, const char *name, int64_t dflt) {
  const fir_attr_t *a = fir_node_attr(n, name);
  return a && a->kind == FIR_ATTR_INT ? a->i : dflt;
}

float fir_attr_float(const fir_node_t *n, const char *name, float dflt) {
  const fir_attr_t *a = fir_node_attr(n, name);
  if (!a) return dflt;
  if (a->kind == FIR_ATTR_FLOAT) return a->f;
  if (a->kind == FIR_ATTR_INT) return (float)a->i;
  return dflt;
}

const char *fir_attr_string(const fir_node_t *n, const char *name, const char *dflt) {
  const fir_attr_t *a = fir_node_attr(n, name);
  return a && a->kind == FIR_ATTR_STRING ? a->s : dflt;
}

int fir_attr_ints(const fir_node_t *n, const char *name, const int64_t **out) {
  const fir_attr_t *a = fir_node_attr(n, name);
  *out = NULL;
  if (!a || a->kind != FIR_ATTR_INTS) return -1;
  *out = a->ints;
  return a->n;
}

int fir_attr_floats(const fir_node_t *n, const char *name, const float **out) {
  const fir_attr_t *a = fir_node_attr(n, name);
  *out = NULL;
  if (!a || a->kind != FIR_ATTR_FLOATS) return -1;
  *out = a->floats;
  return a->n;
}

fir_attr_t *fir_node_add_attr(fir_node_t *n, const char *name, fir_attr_kind_t kind) {
  fl_arena_t *ar = n->graph->model->arena;
  fir_attr_t *a = fl_arena_alloc(ar, sizeof(*a) * (size_t)(n->n_attrs + 1));
  if (n->n_attrs) memcpy(a, n->attrs, sizeof(*a) * (size_t)n->n_attrs);
  n->attrs = a;
  fir_attr_t *at = &a[n->n_attrs++];
  at->name = fl_arena_strdup(ar, name);
  at->kind = kind;
  return at;
}

fir_tensor_t *fir_tensor_create(fir_model_t *m, flagos_dtype_t dt, int rank, const int64_t *dims) {
  fir_tensor_t *t = fl_arena_alloc(m->arena, sizeof(*t));
  t->dtype = dt;
  t->rank = rank;
  t->ref = -1;
  t->dims = fl_arena_alloc(m->arena, sizeof(int64_t) * (size_t)(rank > 0 ? rank : 1));
  t->numel = 1;
  for (int i = 0; i < rank; i++) {
    t->dims[i] = dims[i];
    t->numel *= dims[i];
  }
  t->nbytes = (size_t)t->numel * flagos_dtype_size(dt);
  t->data = fl_arena_alloc(m->arena, t->nbytes ? t->nbytes : 1);
  if (dt == FLAGOS_STRING) t->string_lens = fl_arena_alloc(m->arena, sizeof(size_t) * (size_t)(t->numel ? t->numel : 1));
  return t;
}

static void graph_reads(const fir_graph_t *sg, void (*fn)(fir_value_t *v, void *ctx), void *ctx) {
  for (int i = 0; i < sg->n_nodes; i++) {
    const fir_node_t *n = sg->nodes[i];
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k]) fn(n->inputs[k], ctx);
    fir_node_subgraph_reads(n, fn, ctx);
  }
  for (int k = 0; k < sg->n_outputs; k++)
    if (sg->outputs[k]) fn(sg->outputs[k], ctx);
}

void fir_node_subgraph_reads(const fir_node_t *n, void (*fn)(fir_value_t *v, void *ctx), void *ctx) {
  for (int a = 0; a < n->n_attrs; a++) {
    if (n->attrs[a].kind == FIR_ATTR_GRAPH && n->attrs[a].g) graph_reads(n->attrs[a].g, fn, ctx);
    for (int j = 0; n->attrs[a].kind == FIR_ATTR_GRAPHS && j < n->attrs[a].n; j++)
      graph_reads(n->attrs[a].graphs[j], fn, ctx);
  }
}
