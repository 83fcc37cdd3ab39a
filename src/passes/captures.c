/* What the passes that count a value's readers share: the values a node's
 * subgraphs read (captured outer values), and the conditions under which the
 * fusion passes leave a graph as written. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static void graph_reads(const fir_graph_t *sg, void (*fn)(fir_value_t *v, void *ctx), void *ctx) {
  for (int i = 0; i < sg->n_nodes; i++) {
    const fir_node_t *n = sg->nodes[i];
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k]) fn(n->inputs[k], ctx);
    pass_subgraph_reads(n, fn, ctx);
  }
  for (int k = 0; k < sg->n_outputs; k++)
    if (sg->outputs[k]) fn(sg->outputs[k], ctx);
}

void pass_subgraph_reads(const fir_node_t *n, void (*fn)(fir_value_t *v, void *ctx), void *ctx) {
  for (int a = 0; a < n->n_attrs; a++) {
    if (n->attrs[a].kind == FIR_ATTR_GRAPH && n->attrs[a].g) graph_reads(n->attrs[a].g, fn, ctx);
    for (int j = 0; n->attrs[a].kind == FIR_ATTR_GRAPHS && j < n->attrs[a].n; j++)
      graph_reads(n->attrs[a].graphs[j], fn, ctx);
  }
}

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
