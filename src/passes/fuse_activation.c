/* Activation fusion: a product (MatMul, MatMulBias, Gemm, Conv) whose output
 * one node alone reads, that node an activation of it — GELU in its erf or
 * tanh form, or ReLU, however the exporter wrote it (ops_activation_of
 * evaluates it) — become one ProductActivation node (src/ops/product_act.c)
 * whose first kernel carries the product's library call with the activation
 * as an epilogue: a backend that takes it runs the two nodes as one call, one
 * that declines it runs their kernels as before.
 *
 * A pair qualifies when the activation's other inputs are scalar constants,
 * both nodes have static tensors of one float dtype and the activation's
 * output has the product's shape, neither output is a graph output, and a
 * trial lowering finds the product's first kernel carrying a gemm or conv call
 * that computes its whole output (ops_product_act_why_not decides, and says
 * why not under FLAGOS_FUSE_TRACE). Run last of the fusion passes, when
 * elementwise fusion has made the activation one node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/fused.h"
#include "passes/passes.h"

static bool fusable(const fir_node_t *n) { return pass_node_fusable(n) && n->n_outputs == 1; }

static bool is_product(const fir_node_t *n) {
  return fir_node_is(n, "", "MatMul") || fir_node_is(n, "", "Gemm") || fir_node_is(n, "", "Conv") ||
         fir_node_is(n, OPS_FUSED_DOMAIN, "MatMulBias");
}

typedef struct walk {
  const bool *graph_input;
} walk_t;

/* An initializer that no caller may override. */
static const fir_tensor_t *graph_const(const fir_value_t *v, const void *ctx) {
  const walk_t *w = ctx;
  return v && v->init && !w->graph_input[v->id] ? v->init : NULL;
}

/* The fused node of p, the view r between them if any (q reads r's output, r
 * the product's) and q, in g where the trial lowering takes it, else NULL. */
static fir_node_t *build(fir_model_t *m, fir_node_t *p, fir_node_t *r, fir_node_t *q, fl_arena_t *a) {
  fir_node_t *nodes[3] = {p, r ? r : q, q};
  const char *name = fl_arena_printf(m->arena, "%s_act", p->name[0] ? p->name : p->op_type), *why_not;
  fir_node_t *fn = pass_fuse_nodes(m, OPS_PRODUCT_ACT_OP, name, nodes, r ? 3 : 2, ops_product_act_why_not, a, &why_not);
  if (getenv("FLAGOS_FUSE_TRACE")) {
    if (!fn) fprintf(stderr, "flagos fuse: no activation epilogue for '%s' and '%s': %s\n", p->name, q->name, why_not);
    else
      fprintf(stderr, "flagos fuse: '%s' = %s with %s as its epilogue%s (%d inputs)\n", name, p->op_type, q->op_type,
              r ? ", through a view" : "", fn->n_inputs);
  }
  return fn;
}

flagos_status_t pass_fuse_activation(fir_model_t *m, int *n_fused) {
  if (n_fused) *n_fused = 0;
  if (pass_fusion_off(m, "FLAGOS_FUSE_ACTIVATION")) return NULL;
  fir_graph_t *g = m->graph;
  fl_arena_t *a = fl_arena_create();
  int n = g->n_nodes, *readers = pass_round_readers(g, a);
  bool *graph_input = fl_arena_alloc(a, sizeof(bool) * (size_t)(g->n_values + 1));
  pass_mark_graph_inputs(g, graph_input);
  walk_t w = {graph_input};
  bool *dead = fl_arena_alloc(a, sizeof(bool) * (size_t)(2 * n + 1)); /* the fused nodes are appended */
  int fused = 0;
  for (int i = 0; i < n; i++) {
    fir_node_t *q = g->nodes[i];
    if (dead[i] || !fusable(q)) continue;
    /* the one input that is not a constant: the product's output, read by q alone */
    const fir_value_t *x = NULL;
    bool one = true;
    for (int k = 0; k < q->n_inputs && one; k++) {
      const fir_value_t *v = q->inputs[k];
      if (!v || graph_const(v, &w)) continue;
      one = !x || x == v;
      x = v;
    }
    fir_node_t *p = one && x && x->graph == g && readers[x->id] == 1 ? x->producer : NULL;
    /* or through a view that alone reads the product's output (PyTorch's
     * exporters reshape a Gemm's 2-D output back to the batch's shape) */
    fir_node_t *r = NULL;
    if (p && p->graph == g && p->id < n && !dead[p->id] && fir_node_is_view(p) && p->n_outputs == 1 &&
        p->inputs[0] && p->inputs[0]->graph == g && readers[p->inputs[0]->id] == 1 && fusable(p)) {
      r = p;
      p = r->inputs[0]->producer;
    }
    /* the activation keeps x's type; a view keeps the product's element count */
    int act = OPS_ACT_NONE;
    if (p && p->graph == g && p->id < n && !dead[p->id] && is_product(p) && fusable(p) &&
        fir_type_equal(x->type, q->outputs[0]->type) &&
        (!r || fir_type_numel(x->type) == fir_type_numel(p->outputs[0]->type)))
      act = ops_activation_of(q, x, graph_const, &w, x->type->dtype);
    if (!act || !build(m, p, r, q, a)) continue;
    dead[p->id] = dead[q->id] = true;
    if (r) dead[r->id] = true;
    fused++;
  }
  if (fused) fir_graph_remove_nodes(g, dead);
  fl_arena_destroy(a);
  if (fused) FL_TRY(pass_fusion_settle(m, OPS_PRODUCT_ACT_OP, OPS_FUSED_DOMAIN, "activation fusion"));
  if (n_fused) *n_fused = fused;
  return NULL;
}
