/* Norm fusion: a product (MatMul, MatMulBias, Gemm) whose output — directly,
 * or through one view that alone reads it (PyTorch's exporters reshape a
 * Gemm's 2-D output back) — one node alone reads, that node the inlined pair
 * of a residual Add and the LayerNormalization of the sum (inline fusion's
 * InlinedProducer; GPT-2 and BERT close every attention and feed-forward
 * block so), become one ProductNorm node (src/ops/product_norm.c) whose first
 * kernel carries the "gemm_norm" call: a backend that takes it sums the
 * product's slices over K, adds the bias and the residual and normalises each
 * row in one kernel, where the nodes took two; one that declines it runs
 * their kernels as before.
 *
 * A triple qualifies when its values are static and fusable (none a graph
 * output but the pair's, which become the fused node's) and a trial lowering
 * finds the product's first kernel carrying a gemm call for its whole output,
 * the residual, scale and bias inputs of the node with the product's rows
 * (ops_product_norm_why_not decides, and says why not under
 * FLAGOS_FUSE_TRACE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/fused.h"
#include "passes/passes.h"

static bool is_product(const fir_node_t *n) {
  return fir_node_is(n, "", "MatMul") || fir_node_is(n, "", "Gemm") || fir_node_is(n, OPS_FUSED_DOMAIN, "MatMulBias");
}

/* An InlinedProducer of Add -> LayerNormalization. */
static bool add_norm(const fir_node_t *n) {
  const fir_graph_t *b = fir_node_is(n, OPS_FUSED_DOMAIN, OPS_INLINE_OP) ? ops_fused_body(n) : NULL;
  return b && b->n_nodes == 2 && fir_node_is(b->nodes[0], "", "Add") &&
         fir_node_is(b->nodes[1], "", "LayerNormalization") && b->nodes[1]->n_outputs == 1;
}

/* The fused node of product p, view r (or NULL) and pair q in g where the
 * trial lowering takes it, else NULL. */
static fir_node_t *build(fir_model_t *m, fir_node_t *p, fir_node_t *r, fir_node_t *q, fl_arena_t *a) {
  fir_node_t *nodes[3] = {p, r ? r : q, q};
  const char *name = fl_arena_printf(m->arena, "%s_norm", p->name[0] ? p->name : p->op_type), *why_not;
  fir_node_t *fn = pass_fuse_nodes(m, OPS_PRODUCT_NORM_OP, name, nodes, r ? 3 : 2, ops_product_norm_why_not, a, &why_not);
  if (getenv("FLAGOS_FUSE_TRACE")) {
    if (!fn) fprintf(stderr, "flagos fuse: no norm epilogue for '%s' and '%s': %s\n", p->name, q->name, why_not);
    else
      fprintf(stderr, "flagos fuse: '%s' = %s%s with a residual Add and LayerNormalization as its epilogue (%d inputs)\n",
              name, p->op_type, r ? " through a view" : "", fn->n_inputs);
  }
  return fn;
}

flagos_status_t pass_fuse_norm(fir_model_t *m, int *n_fused) {
  if (n_fused) *n_fused = 0;
  if (pass_fusion_off(m, "FLAGOS_FUSE_NORM")) return NULL;
  fir_graph_t *g = m->graph;
  fl_arena_t *a = fl_arena_create();
  int n = g->n_nodes, *readers = pass_round_readers(g, a);
  bool *dead = fl_arena_alloc(a, sizeof(bool) * (size_t)(2 * n + 1)); /* the fused nodes are appended */
  int fused = 0;
  for (int i = 0; i < n; i++) {
    fir_node_t *q = g->nodes[i];
    if (dead[i] || !add_norm(q) || !pass_node_fusable(q)) continue;
    for (int k = 0; k < q->n_inputs; k++) {
      fir_value_t *x = q->inputs[k];
      fir_node_t *p = x && x->graph == g && readers[x->id] == 1 ? x->producer : NULL, *r = NULL;
      if (p && p->graph == g && p->id < n && !dead[p->id] && fir_node_is_view(p) && p->n_outputs == 1 &&
          p->inputs[0] && p->inputs[0]->graph == g && readers[p->inputs[0]->id] == 1 && pass_node_fusable(p)) {
        r = p;
        p = r->inputs[0]->producer;
      }
      if (!p || p->graph != g || p->id >= n || dead[p->id] || !is_product(p) || p->n_outputs != 1 ||
          !pass_node_fusable(p) || !build(m, p, r, q, a))
        continue;
      dead[p->id] = dead[q->id] = true;
      if (r) dead[r->id] = true;
      fused++;
      break;
    }
  }
  if (fused) fir_graph_remove_nodes(g, dead);
  fl_arena_destroy(a);
  if (fused) FL_TRY(pass_fusion_settle(m, OPS_PRODUCT_NORM_OP, OPS_FUSED_DOMAIN, "norm fusion"));
  if (n_fused) *n_fused = fused;
  return NULL;
}
