/* What the fusion passes share: the conditions under which they leave a graph
 * as written. (The values a node's subgraphs read: fir_node_subgraph_reads.) */
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
