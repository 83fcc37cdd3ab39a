#include <string.h>

#include "passes/passes.h"

flagos_status_t pass_dce(fir_model_t *m) {
  fir_graph_t *g = m->graph;
  bool *used = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_values + 1));
  bool *dead = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_nodes + 1));
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i]->graph == g) used[g->outputs[i]->id] = true;
  bool any = false;
  for (int i = g->n_nodes - 1; i >= 0; i--) {
    fir_node_t *n = g->nodes[i];
    bool live = false;
    for (int k = 0; k < n->n_outputs; k++)
      if (n->outputs[k] && used[n->outputs[k]->id]) live = true;
    /* Nodes with subgraphs keep their outer references alive through the subgraph;
     * DCE leaves the subgraphs alone and never removes a node that has one. */
    for (int a = 0; a < n->n_attrs; a++)
      if (n->attrs[a].kind == FIR_ATTR_GRAPH || n->attrs[a].kind == FIR_ATTR_GRAPHS) live = true;
    if (!live) {
      dead[i] = true;
      any = true;
      continue;
    }
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k] && n->inputs[k]->graph == g) used[n->inputs[k]->id] = true;
  }
  if (any) fir_graph_remove_nodes(g, dead);
  return NULL;
}

flagos_status_t pass_fold_shapes(fir_model_t *m, bool *changed) {
  fir_graph_t *g = m->graph;
  bool *dead = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_nodes + 1));
  *changed = false;
  for (int i = 0; i < g->n_nodes; i++) {
    fir_node_t *n = g->nodes[i];
    if (n->domain[0] || n->n_inputs != 1 || !n->inputs[0] || n->n_outputs != 1 || !n->outputs[0]) continue;
    bool is_shape = strcmp(n->op_type, "Shape") == 0, is_size = strcmp(n->op_type, "Size") == 0;
    if (!is_shape && !is_size) continue;
    const fir_type_t *t = n->inputs[0]->type;
    if (!fir_type_is_static(t)) continue;
    fir_tensor_t *c;
    if (is_size) {
      c = fir_tensor_create(m, FLAGOS_INT64, 0, NULL);
      ((int64_t *)c->data)[0] = fir_type_numel(t);
    } else {
      int64_t r = t->rank, start = fir_attr_int(n, "start", 0), end = fir_attr_int(n, "end", r);
      if (start < 0) start += r;
      if (end < 0) end += r;
      start = start < 0 ? 0 : start > r ? r : start;
      end = end < 0 ? 0 : end > r ? r : end;
      int64_t len = end > start ? end - start : 0;
      c = fir_tensor_create(m, FLAGOS_INT64, 1, &len);
      for (int64_t j = 0; j < len; j++) ((int64_t *)c->data)[j] = t->dims[start + j].value;
    }
    fir_value_t *v = n->outputs[0];
    c->name = v->name;
    v->init = c;
    v->producer = NULL;
    v->type = fir_type_tensor(m, c->dtype, c->rank, c->dims);
    dead[i] = true;
    *changed = true;
  }
  if (*changed) fir_graph_remove_nodes(g, dead);
  return NULL;
}

flagos_status_t pass_run_default(fir_model_t *m, const char *shape_spec) {
  FL_TRY(pass_apply_shapes(m, shape_spec));
  FL_TRY(pass_constants_to_initializers(m));
  /* Folding Shape needs the input's shape inferred first, and folding can make more
   * shapes static; a node is inferred again after each round. */
  for (int round = 0; round < 8; round++) {
    FL_TRY(pass_infer_types(m));
    bool changed;
    FL_TRY(pass_fold_shapes(m, &changed));
    if (!changed) break;
  }
  FL_TRY(pass_dce(m));
  return NULL;
}
