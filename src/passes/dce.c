#include <string.h>

#include "passes/passes.h"

typedef struct {
  const fir_graph_t *g;
  bool *used;
} mark_t;

static void mark_used(fir_value_t *v, void *ctx) {
  mark_t *m = ctx;
  if (v->graph == m->g) m->used[v->id] = true;
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
    mark_t mk = {g, used};
    fir_node_subgraph_reads(n, mark_used, &mk);
  }
  if (any) fir_graph_remove_nodes(g, dead);
  /* Initializers no live node reads (a folded node's constant inputs, the
   * shape constants of views that CSE dropped) leave the graph, so that the
   * bundle neither stores nor uploads them; a graph input's default stays. */
  bool *keep_in = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_values + 1));
  pass_mark_graph_inputs(g, keep_in);
  bool *unread = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_values + 1));
  int n_unread = 0;
  for (int i = 0; i < g->n_values; i++) {
    const fir_value_t *v = g->values[i];
    if (v->init && !v->producer && !used[v->id] && !keep_in[v->id]) unread[v->id] = true, n_unread++;
  }
  if (n_unread) fir_graph_remove_values(g, unread, g->n_values);
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
  FL_TRY(pass_cse(m, NULL));
  FL_TRY(pass_fold_transpose_chains(m, NULL));
  FL_TRY(pass_fuse_matmul_bias(m, NULL));
  FL_TRY(pass_merge_products(m, NULL));
  FL_TRY(pass_fuse_elementwise(m, NULL));
  FL_TRY(pass_fuse_inline(m, NULL));
  FL_TRY(pass_fuse_attention(m, NULL));
  FL_TRY(pass_fuse_activation(m, NULL));
  FL_TRY(pass_fuse_norm(m, NULL));
  /* what CSE and the fusion passes left unread (a dropped view's shape constant) */
  FL_TRY(pass_dce(m));
  return NULL;
}
