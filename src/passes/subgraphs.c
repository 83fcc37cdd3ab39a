/* Inference inside subgraphs. A subgraph's inputs may carry declared types;
 * where they don't (ONNX allows untyped body inputs), they are typed from the
 * node that owns the subgraph before its nodes are inferred. Nodes inside see
 * outer values through scoping. */
#include <string.h>

#include "passes/passes.h"

static flagos_status_t infer_graph(fir_model_t *m, fir_graph_t *g) {
  for (int i = 0; i < g->n_nodes; i++) FL_TRY(pass_infer_node(m, g->nodes[i]));
  return NULL;
}

static bool untyped(const fir_type_t *t) {
  return !t || t->kind == FIR_TYPE_UNKNOWN || (t->kind == FIR_TYPE_TENSOR && t->dtype == FLAGOS_UNDEFINED);
}

/* A tensor type of the same dtype and rank as t, with every dim unknown: a value
 * that may change shape between iterations. */
static fir_type_t *relaxed(fir_model_t *m, const fir_type_t *t) {
  if (t->kind != FIR_TYPE_TENSOR) return fir_type_clone(m, t);
  return fir_type_tensor(m, t->dtype, t->rank, NULL);
}

static void type_body_inputs(fir_model_t *m, fir_node_t *n, fir_graph_t *g) {
  const char *op = n->op_type;
  if (n->domain[0]) return;
  if (strcmp(op, "Loop") == 0) {
    if (g->n_inputs > 0 && untyped(g->inputs[0]->type)) g->inputs[0]->type = fir_type_tensor(m, FLAGOS_INT64, 0, NULL);
    if (g->n_inputs > 1 && untyped(g->inputs[1]->type)) g->inputs[1]->type = fir_type_tensor(m, FLAGOS_BOOL, 0, NULL);
    for (int j = 2; j < g->n_inputs && j < n->n_inputs; j++)
      if (untyped(g->inputs[j]->type) && n->inputs[j]) g->inputs[j]->type = relaxed(m, n->inputs[j]->type);
  } else if (strcmp(op, "Scan") == 0 && n->opset < 9) {
    /* Scan 8: states drop the batch axis, scan slices drop batch and sequence axes. */
    int ns = n->n_inputs - 1 - (int)fir_attr_int(n, "num_scan_inputs", 0);
    for (int j = 0; j < g->n_inputs && 1 + j < n->n_inputs; j++) {
      if (!untyped(g->inputs[j]->type) || !n->inputs[1 + j]) continue;
      const fir_type_t *t = n->inputs[1 + j]->type;
      int drop = j < ns ? 1 : 2;
      if (t->kind != FIR_TYPE_TENSOR || t->rank < drop) continue;
      int64_t dims[64];
      int r = 0;
      for (int d = drop; d < t->rank && r < 64; d++) dims[r++] = t->dims[d].value;
      g->inputs[j]->type = fir_type_tensor(m, t->dtype, r, dims);
    }
  } else if (strcmp(op, "Scan") == 0) {
    int ns = n->n_inputs - (int)fir_attr_int(n, "num_scan_inputs", 0);
    const int64_t *axes;
    int n_axes = fir_attr_ints(n, "scan_input_axes", &axes);
    for (int j = 0; j < g->n_inputs && j < n->n_inputs; j++) {
      if (!untyped(g->inputs[j]->type) || !n->inputs[j]) continue;
      const fir_type_t *t = n->inputs[j]->type;
      if (j < ns || t->kind != FIR_TYPE_TENSOR || t->rank < 1) {
        g->inputs[j]->type = fir_type_clone(m, t);
        continue;
      }
      int64_t ax = n_axes > j - ns ? axes[j - ns] : 0;
      if (ax < 0) ax += t->rank;
      int64_t dims[64];
      int r = 0;
      for (int d = 0; d < t->rank && r < 64; d++)
        if (d != ax) dims[r++] = t->dims[d].value;
      g->inputs[j]->type = fir_type_tensor(m, t->dtype, r, dims);
    }
  } else if (strcmp(op, "SequenceMap") == 0) {
    for (int j = 0; j < g->n_inputs && j < n->n_inputs; j++) {
      if (!untyped(g->inputs[j]->type) || !n->inputs[j]) continue;
      const fir_type_t *t = n->inputs[j]->type;
      g->inputs[j]->type = t->kind == FIR_TYPE_SEQUENCE && t->elem ? relaxed(m, t->elem) : fir_type_clone(m, t);
    }
  }
}

flagos_status_t pass_infer_subgraphs(fir_model_t *m, fir_node_t *n) {
  for (int a = 0; a < n->n_attrs; a++) {
    const fir_attr_t *at = &n->attrs[a];
    flagos_status_t st = NULL;
    if (at->kind == FIR_ATTR_GRAPH && at->g) {
      type_body_inputs(m, n, at->g);
      st = infer_graph(m, at->g);
    }
    for (int j = 0; !st && at->kind == FIR_ATTR_GRAPHS && j < at->n; j++) st = infer_graph(m, at->graphs[j]);
    if (st) return flagos_status_wrap(st, "in subgraph '%s' of %s node '%s'", at->name, n->op_type, n->name);
  }
  return NULL;
}
