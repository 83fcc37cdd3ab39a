/* Common subexpressions of views: a view node of the main graph (Reshape,
 * Flatten, Squeeze, Unsqueeze, Identity) that repeats an earlier one (same
 * operator, same inputs, same attributes) is dropped and its readers read the
 * earlier node's output. Inputs are the same when they are the same value, or
 * constants of up to 1 KiB with the same type and bytes: PyTorch's exporters
 * give each `view` of one tensor a shape constant of its own, so the three
 * Reshapes of the hidden state, one per attention projection, become one, and
 * the projections, reading one value, then merge (merge_products.c).
 *
 * Views only: they cost nothing at run time, while merging two computing nodes
 * can cost more than it saves (inline fusion runs a producer inside its
 * consumer only where one consumer reads it: two Transposes of one input that
 * two products read through strides would become one Transpose kernel). The
 * comparison itself is general (any inputs and attributes; nodes with
 * subgraphs and non-tensor outputs excluded). A node whose output is a graph output or is
 * read inside a subgraph stays. Runs after folding and before the fusion
 * passes; FLAGOS_CSE=0 turns it off, FLAGOS_FUSE_TRACE=1 prints each node
 * dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

typedef struct cse {
  fir_graph_t *g;
  bool *is_input;  /* by value id: a graph input */
  bool *protected; /* by value id: a graph output, or read inside a subgraph */
} cse_t;

static void mark_read(fir_value_t *v, void *ctx) {
  cse_t *s = ctx;
  if (v && v->graph == s->g) s->protected[v->id] = true;
}

static bool eligible(const cse_t *s, const fir_node_t *n) {
  if (n->n_outputs < 1 || !fir_node_is_view(n)) return false;
  for (int a = 0; a < n->n_attrs; a++)
    if (n->attrs[a].kind == FIR_ATTR_GRAPH || n->attrs[a].kind == FIR_ATTR_GRAPHS) return false;
  for (int k = 0; k < n->n_outputs; k++)
    if (n->outputs[k] && (n->outputs[k]->type->kind != FIR_TYPE_TENSOR || s->protected[n->outputs[k]->id]))
      return false;
  return true;
}

static bool same_tensor(const fir_tensor_t *x, const fir_tensor_t *y, size_t max_bytes) {
  if (!x || !y || !x->data || !y->data || x->dtype != y->dtype || x->rank != y->rank || x->nbytes != y->nbytes ||
      x->dtype == FLAGOS_STRING || x->nbytes > max_bytes)
    return false;
  for (int i = 0; i < x->rank; i++)
    if (x->dims[i] != y->dims[i]) return false;
  return memcmp(x->data, y->data, x->nbytes) == 0;
}

/* The same value, or two small constants (not graph inputs) of the same bytes. */
static bool same_input(const cse_t *s, const fir_value_t *x, const fir_value_t *y) {
  if (x == y) return true;
  if (!x || !y || x->graph != s->g || y->graph != s->g || s->is_input[x->id] || s->is_input[y->id]) return false;
  return same_tensor(x->init, y->init, 1024);
}

static bool same_attr(const fir_attr_t *x, const fir_attr_t *y) {
  if (x->kind != y->kind) return false;
  switch (x->kind) {
  case FIR_ATTR_INT: return x->i == y->i;
  case FIR_ATTR_FLOAT: return memcmp(&x->f, &y->f, sizeof x->f) == 0;
  case FIR_ATTR_STRING: return x->s_len == y->s_len && memcmp(x->s, y->s, x->s_len) == 0;
  case FIR_ATTR_INTS: return x->n == y->n && (x->n == 0 || memcmp(x->ints, y->ints, sizeof(int64_t) * (size_t)x->n) == 0);
  case FIR_ATTR_FLOATS: return x->n == y->n && (x->n == 0 || memcmp(x->floats, y->floats, sizeof(float) * (size_t)x->n) == 0);
  case FIR_ATTR_STRINGS:
    if (x->n != y->n) return false;
    for (int i = 0; i < x->n; i++)
      if (x->string_lens[i] != y->string_lens[i] || memcmp(x->strings[i], y->strings[i], x->string_lens[i]) != 0)
        return false;
    return true;
  case FIR_ATTR_TENSOR: return same_tensor(x->t, y->t, (size_t)-1);
  default: return false; /* types, sparse tensors, tensor lists: not compared, so never the same */
  }
}

/* Whether y computes what x computes. */
static bool same_node(const cse_t *s, const fir_node_t *x, const fir_node_t *y) {
  if (strcmp(x->op_type, y->op_type) != 0 || x->opset != y->opset || x->n_inputs != y->n_inputs ||
      x->n_outputs != y->n_outputs || x->n_attrs != y->n_attrs)
    return false;
  for (int k = 0; k < x->n_outputs; k++)
    if ((x->outputs[k] == NULL) != (y->outputs[k] == NULL)) return false;
  for (int k = 0; k < x->n_inputs; k++)
    if (!same_input(s, x->inputs[k], y->inputs[k])) return false;
  for (int a = 0; a < x->n_attrs; a++) {
    const fir_attr_t *ya = fir_node_attr(y, x->attrs[a].name);
    if (!ya || !same_attr(&x->attrs[a], ya)) return false;
  }
  return true;
}

/* A hash of what same_node compares first: the operator and the first input
 * (its bytes where same_input compares bytes). */
static size_t node_hash(const cse_t *s, const fir_node_t *n) {
  size_t h = 1469598103934665603u;
  for (const char *c = n->op_type; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211u;
  h = (h ^ (size_t)n->n_inputs) * 1099511628211u;
  const fir_value_t *v = n->n_inputs ? n->inputs[0] : NULL;
  if (!v) return h;
  const fir_tensor_t *t = v->init;
  if (v->graph == s->g && !s->is_input[v->id] && t && t->data && t->dtype != FLAGOS_STRING && t->nbytes <= 1024) {
    for (size_t i = 0; i < t->nbytes; i++) h = (h ^ ((const unsigned char *)t->data)[i]) * 1099511628211u;
    return h;
  }
  return (h ^ fl_hash_ptr(v)) * 1099511628211u;
}

flagos_status_t pass_cse(fir_model_t *m, int *n_dropped) {
  if (n_dropped) *n_dropped = 0;
  const char *env = getenv("FLAGOS_CSE");
  fir_graph_t *g = m->graph;
  if ((env && strcmp(env, "0") == 0) || !g || g->n_nodes < 2) return NULL;
  cse_t s = {.g = g};
  size_t nv = (size_t)g->n_values + 1;
  s.is_input = calloc(nv, sizeof(bool));
  s.protected = calloc(nv, sizeof(bool));
  bool *dead = calloc((size_t)g->n_nodes + 1, sizeof(bool));
  fir_value_t **to = calloc(nv, sizeof(*to)); /* a dropped node's output -> the kept node's */
  if (!s.is_input || !s.protected || !dead || !to) {
    free(s.is_input), free(s.protected), free(dead), free(to);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "common subexpressions: out of memory");
  }
  for (int i = 0; i < g->n_values; i++) g->values[i]->id = i;
  for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->id = i;
  pass_mark_graph_inputs(g, s.is_input);
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] && g->outputs[i]->graph == g) s.protected[g->outputs[i]->id] = true;
  for (int i = 0; i < g->n_nodes; i++) fir_node_subgraph_reads(g->nodes[i], mark_read, &s);
  /* kept nodes by hash: bucket heads and chains, node indices + 1 */
  size_t cap = 16;
  while (cap < 2 * (size_t)g->n_nodes) cap *= 2;
  int *head = calloc(cap, sizeof(int)), *next = calloc((size_t)g->n_nodes + 1, sizeof(int));
  if (!head || !next) {
    free(s.is_input), free(s.protected), free(dead), free(to), free(head), free(next);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "common subexpressions: out of memory");
  }
  int dropped = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    fir_node_t *y = g->nodes[i];
    /* readers of outputs dropped earlier read the kept ones (nodes are in topological order) */
    for (int k = 0; k < y->n_inputs; k++)
      if (y->inputs[k] && y->inputs[k]->graph == g && to[y->inputs[k]->id]) y->inputs[k] = to[y->inputs[k]->id];
    if (!eligible(&s, y)) continue;
    size_t b = node_hash(&s, y) & (cap - 1);
    for (int j1 = head[b]; j1; j1 = next[j1 - 1]) {
      const fir_node_t *x = g->nodes[j1 - 1];
      if (!same_node(&s, x, y)) continue;
      for (int k = 0; k < y->n_outputs; k++)
        if (y->outputs[k]) to[y->outputs[k]->id] = x->outputs[k];
      dead[i] = true;
      dropped++;
      if (getenv("FLAGOS_FUSE_TRACE"))
        fprintf(stderr, "flagos cse: %s '%s' repeats '%s'\n", y->op_type, y->name, x->name);
      break;
    }
    if (!dead[i]) {
      next[i] = head[b];
      head[b] = i + 1;
    }
  }
  free(head);
  free(next);
  free(s.is_input);
  free(s.protected);
  free(to);
  if (dropped) fir_graph_remove_nodes(g, dead);
  free(dead);
  if (n_dropped) *n_dropped = dropped;
  return NULL;
}
