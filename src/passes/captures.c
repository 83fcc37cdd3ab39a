/* What the fusion passes share: the conditions under which they leave a graph
 * as written, and how they settle the nodes they made. (The values a node's
 * subgraphs read: fir_node_subgraph_reads.) */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

bool pass_fusion_off(const fir_model_t *m) {
  const char *env = getenv("FLAGOS_FUSE");
  if (env && strcmp(env, "0") == 0) return true;
  const fir_graph_t *g = m->graph;
  if (!g || g->n_nodes < 2) return true;
  /* Gradient differentiates the graph's nodes as written (src/ops/training_grad.c). */
  for (int i = 0; i < g->n_nodes; i++)
    if (strcmp(g->nodes[i]->op_type, "Gradient") == 0) return true;
  return false;
}

flagos_status_t pass_fusion_settle(fir_model_t *m, const char *op, const char *domain, const char *pass) {
  /* The new nodes were appended; verification puts them in topological order. */
  flagos_status_t st = fir_verify(m);
  if (st) return flagos_status_wrap(st, "after %s", pass);
  fir_graph_t *g = m->graph;
  for (int i = 0; i < g->n_nodes; i++)
    if (strcmp(g->nodes[i]->op_type, op) == 0 && strcmp(g->nodes[i]->domain, domain) == 0)
      FL_TRY(pass_infer_node(m, g->nodes[i]));
  return NULL;
}
