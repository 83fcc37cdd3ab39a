/* Inference inside subgraphs. A subgraph's inputs carry declared types (Loop and
 * Scan bodies) or none (If branches); its nodes see outer values through scoping. */
#include <string.h>

#include "passes/passes.h"

static flagos_status_t infer_graph(fir_model_t *m, fir_graph_t *g) {
  for (int i = 0; i < g->n_nodes; i++) FL_TRY(pass_infer_node(m, g->nodes[i]));
  return NULL;
}

flagos_status_t pass_infer_subgraphs(fir_model_t *m, fir_node_t *n) {
  for (int a = 0; a < n->n_attrs; a++) {
    const fir_attr_t *at = &n->attrs[a];
    flagos_status_t st = NULL;
    if (at->kind == FIR_ATTR_GRAPH && at->g) st = infer_graph(m, at->g);
    for (int j = 0; !st && at->kind == FIR_ATTR_GRAPHS && j < at->n; j++) st = infer_graph(m, at->graphs[j]);
    if (st) return flagos_status_wrap(st, "in subgraph '%s' of %s node '%s'", at->name, n->op_type, n->name);
  }
  return NULL;
}
