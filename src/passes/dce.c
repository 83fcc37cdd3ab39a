#include <string.h>

#include "passes/passes.h"

/* Marks the values of g that subgraph sg, or a subgraph nested in it, reads. */
static void mark_captures(const fir_graph_t *g, const fir_graph_t *sg, bool *used) {
  for (int i = 0; i < sg->n_nodes; i++) {
    const fir_node_t *n = sg->nodes[i];
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k] && n->inputs[k]->graph == g) used[n->inputs[k]->id] = true;
    for (int a = 0; a < n->n_attrs; a++) {
      if (n->attrs[a].kind == FIR_ATTR_GRAPH && n->attrs[a].g) mark_captures(g, n->attrs[a].g, used);
      for (int j = 0; n->attrs[a].kind == FIR_ATTR_GRAPHS && j < n->attrs[a].n; j++)
        mark_captures(g, n->attrs[a].graphs[j], used);
    }
  }
  for (int i = 0; i < sg->n_outputs; i++)
    if (sg->outputs[i] && sg->outputs[i]->graph == g) used[sg->outputs[i]->id] = true;
}

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
    /* Values read only inside the node's subgraphs (captured outer values) are used too. */
    for (int a = 0; a < n->n_attrs; a++) {
      if (n->attrs[a].kind == FIR_ATTR_GRAPH && n->attrs[a].g) mark_captures(g, n->attrs[a].g, used);
      for (int j = 0; n->attrs[a].kind == FIR_ATTR_GRAPHS && j < n->attrs[a].n; j++)
        mark_captures(g, n->attrs[a].graphs[j], used);
    }
  }
  if (any) fir_graph_remove_nodes(g, dead);
  return NULL;
}

flagos_status_t pass_run_default(fir_model_t *m, const char *shape_spec) {
  FL_TRY(pass_apply_shapes(m, shape_spec));
  FL_TRY(pass_constants_to_initializers(m));
  /* One walk infers every node and folds those whose inputs are all constant, so
   * what a folded node makes static is seen by the nodes after it. */
  bool changed;
  FL_TRY(pass_fold_constants(m, &changed));
  FL_TRY(pass_dce(m));
  FL_TRY(pass_fuse_matmul_bias(m, NULL));
  FL_TRY(pass_fuse_elementwise(m, NULL));
  return NULL;
}
