/* Inlining an If whose condition is a compile-time constant: the chosen branch's
 * nodes and initializers move into the enclosing graph where the If stood, and
 * each If output becomes an Identity of the branch's output. Shapes computed from
 * constants (ONNX functions often test a rank or a size with If) then stay static
 * for the rest of the graph. */
#include <string.h>

#include "passes/passes.h"

static void adopt_value(fir_graph_t *g, fir_value_t *v) {
  fir_model_t *m = g->model;
  fir_value_t **vals = fl_arena_alloc(m->arena, sizeof(*vals) * (size_t)(g->n_values + 1));
  if (g->n_values) memcpy(vals, g->values, sizeof(*vals) * (size_t)g->n_values);
  v->graph = g;
  v->id = g->n_values;
  vals[g->n_values++] = v;
  g->values = vals;
  g->cap_values = g->n_values;
}

/* Re-parents subgraphs nested in moved nodes. */
static void reparent(fir_node_t *n, fir_graph_t *g) {
  n->graph = g;
  for (int a = 0; a < n->n_attrs; a++) {
    if (n->attrs[a].kind == FIR_ATTR_GRAPH && n->attrs[a].g) n->attrs[a].g->parent = g;
    for (int j = 0; n->attrs[a].kind == FIR_ATTR_GRAPHS && j < n->attrs[a].n; j++) n->attrs[a].graphs[j]->parent = g;
  }
}

static flagos_status_t inline_one(fir_graph_t *g, int idx) {
  /* caller checked: an If whose condition input is a constant */
  fir_model_t *m = g->model;
  fir_node_t *n = g->nodes[idx];
  const fir_tensor_t *c = n->inputs[0]->init;
  bool cond = fl_load_as_int64(c->dtype, c->data, 0) != 0;
  const fir_attr_t *br = fir_node_attr(n, cond ? "then_branch" : "else_branch");
  if (!br || br->kind != FIR_ATTR_GRAPH || !br->g) return NULL;
  fir_graph_t *b = br->g;
  if (b->n_outputs != n->n_outputs) return NULL;
  for (int i = 0; i < b->n_values; i++) adopt_value(g, b->values[i]);
  int old_n = g->n_nodes;
  fir_node_t **before = fl_arena_memdup(m->arena, g->nodes, sizeof(*before) * (size_t)old_n);
  /* fir_node_create appends the Identity nodes; the order is rebuilt below. */
  for (int o = 0; o < n->n_outputs; o++) {
    fir_value_t *in = b->outputs[o], *out = n->outputs[o];
    if (out) fir_node_create(g, "Identity", "", fl_arena_printf(m->arena, "%s_inlined_out%d", n->name, o), 1, &in, 1, &out);
  }
  int made = g->n_nodes - old_n;
  fir_node_t **ids = g->nodes + old_n;
  int total = old_n - 1 + b->n_nodes + made;
  fir_node_t **nodes = fl_arena_alloc(m->arena, sizeof(*nodes) * (size_t)(total + 1));
  int k = 0;
  for (int i = 0; i < idx; i++) nodes[k++] = before[i];
  for (int i = 0; i < b->n_nodes; i++) {
    reparent(b->nodes[i], g);
    nodes[k++] = b->nodes[i];
  }
  for (int i = 0; i < made; i++) nodes[k++] = ids[i];
  for (int i = idx + 1; i < old_n; i++) nodes[k++] = before[i];
  for (int i = 0; i < k; i++) nodes[i]->id = i;
  g->nodes = nodes;
  g->n_nodes = k;
  g->cap_nodes = k;
  b->n_nodes = 0; /* the branch no longer owns them */
  return NULL;
}

bool pass_is_constant_if(const fir_node_t *n) {
  if (strcmp(n->op_type, "If") != 0 || n->domain[0] || n->n_inputs < 1 || !n->inputs[0]) return false;
  const fir_tensor_t *c = n->inputs[0]->init;
  return c && c->data && c->numel >= 1;
}

flagos_status_t pass_inline_if_at(fir_graph_t *g, int idx, bool *inlined) {
  fir_node_t *n = g->nodes[idx];
  *inlined = false;
  if (!pass_is_constant_if(n)) return NULL;
  FL_TRY(inline_one(g, idx));
  *inlined = idx >= g->n_nodes || g->nodes[idx] != n;
  return NULL;
}
