/* What the fusion passes share: the conditions under which they leave a graph
 * as written, how they count a value's readers, and how they settle the nodes
 * they made. (The values a node's subgraphs read: fir_node_subgraph_reads.) */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

bool pass_fusion_off(const fir_model_t *m, const char *env) {
  const char *all = getenv("FLAGOS_FUSE"), *own = env ? getenv(env) : NULL;
  if ((all && strcmp(all, "0") == 0) || (own && strcmp(own, "0") == 0)) return true;
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

typedef struct reads {
  const fir_graph_t *g;
  int *count;
} reads_t;

static void note_subgraph_read(fir_value_t *v, void *ctx) {
  reads_t *r = ctx;
  if (v && v->graph == r->g) r->count[v->id] += 2;
}

void pass_count_readers(const fir_graph_t *g, int *count) {
  reads_t r = {g, count};
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] && g->outputs[i]->graph == g) count[g->outputs[i]->id] += 2;
  for (int i = 0; i < g->n_nodes; i++) {
    const fir_node_t *x = g->nodes[i];
    for (int k = 0; k < x->n_inputs; k++) {
      const fir_value_t *v = x->inputs[k];
      bool again = false; /* a node reading a value twice is one reader */
      for (int j = 0; j < k && !again; j++) again = x->inputs[j] == v;
      if (v && v->graph == g && !again) count[v->id]++;
    }
    fir_node_subgraph_reads(x, note_subgraph_read, &r);
  }
}

int *pass_round_readers(fir_graph_t *g, fl_arena_t *a) {
  for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->id = i;
  int *readers = fl_arena_alloc(a, sizeof(int) * (size_t)(g->n_values + 1));
  pass_count_readers(g, readers);
  return readers;
}

void pass_mark_graph_inputs(const fir_graph_t *g, bool *is_input) {
  for (int i = 0; i < g->n_inputs; i++) {
    const fir_value_t *v = g->inputs[i];
    if (v && v->graph == g && v->id >= 0 && v->id < g->n_values) is_input[v->id] = true;
  }
}
