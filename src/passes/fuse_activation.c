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

/* The activation as one ONNX node of the body, for a pair with a view between
 * (the pass moves the view after the fused node): Gelu (erf or tanh) or Relu
 * of the product's output `in`, giving `out`. */
static void canonical_act(fir_model_t *m, fir_graph_t *body, int act, fir_value_t *in, fir_value_t *out) {
  fir_node_t *an = fir_node_create(body, act == OPS_ACT_RELU ? "Relu" : "Gelu", "", fir_fresh_name(m, "act"), 1, &in,
                                   1, &out);
  an->opset = act == OPS_ACT_RELU ? 14 : 20;
  if (act == OPS_ACT_GELU_TANH) {
    fir_attr_t *at = fir_node_add_attr(an, "approximate", FIR_ATTR_STRING);
    at->s = "tanh";
    at->s_len = 4;
  }
}

/* The fused node of p and q in g where the trial lowering takes it, else
 * NULL. With a view r between them (q reads r's output, r the product's), the
 * body is p and the activation as one ONNX node (act), and r is made again
 * after the fused node, its output q's: an activation commutes with a view. */
static fir_node_t *build(fir_model_t *m, fir_node_t *p, const fir_node_t *r, fir_node_t *q, int act, fl_arena_t *a) {
  fir_graph_t *g = m->graph;
  fir_value_t **ins = fl_arena_alloc(a, sizeof(*ins) * (size_t)(p->n_inputs + q->n_inputs + 1));
  const fir_node_t *both[2] = {p, q};
  int n_ins = pass_fused_inputs(both, r ? 1 : 2, ins);
  const char *name = fl_arena_printf(m->arena, "%s_act", p->name[0] ? p->name : p->op_type);
  fir_value_t **bmap = fl_arena_alloc(a, sizeof(*bmap) * (size_t)(g->n_values + 1));
  fir_graph_t *body = pass_new_body(m, name, ins, n_ins, bmap);
  const fir_node_t *bp = pass_move_node(m, body, p, bmap, a);
  fir_value_t *out = q->outputs[0];
  if (r) {
    const fir_type_t *pt = p->outputs[0]->type;
    fir_value_t *bout = fir_value_create(body, fir_fresh_name(m, "act"), fir_type_clone(m, pt));
    canonical_act(m, body, act, bp->outputs[0], bout);
    fir_graph_add_output(body, bout);
    out = fir_value_create(g, fir_fresh_name(m, name), fir_type_clone(m, pt));
  } else {
    fir_graph_add_output(body, pass_move_node(m, body, q, bmap, a)->outputs[0]);
  }
  fir_attr_t attr = {.name = OPS_FUSED_BODY, .kind = FIR_ATTR_GRAPH, .g = body};
  fir_node_t probe = {.name = name, .op_type = OPS_PRODUCT_ACT_OP, .domain = OPS_FUSED_DOMAIN, .opset = 1,
                      .n_inputs = n_ins, .inputs = ins, .n_outputs = 1, .outputs = &out,
                      .n_attrs = 1, .attrs = &attr, .graph = g};
  const char *why_not = ops_product_act_why_not(a, &probe);
  if (why_not && getenv("FLAGOS_FUSE_TRACE"))
    fprintf(stderr, "flagos fuse: no activation epilogue for '%s' and '%s': %s\n", p->name, q->name, why_not);
  if (why_not) {
    pass_nest_subgraphs(p, g);
    pass_nest_subgraphs(q, g);
    return NULL;
  }
  fir_node_t *fn = fir_node_create(g, OPS_PRODUCT_ACT_OP, OPS_FUSED_DOMAIN, name, n_ins, ins, 1, &out);
  fir_node_add_attr(fn, OPS_FUSED_BODY, FIR_ATTR_GRAPH)->g = body;
  if (r) {
    /* the view again, now of the fused node's output, giving q's output */
    fir_value_t **rin = fl_arena_alloc(a, sizeof(*rin) * (size_t)(r->n_inputs + 1));
    memcpy(rin, r->inputs, sizeof(*rin) * (size_t)r->n_inputs);
    rin[0] = out;
    fir_node_t *rn = fir_node_create(g, r->op_type, r->domain, fir_fresh_name(m, r->name[0] ? r->name : "view"),
                                     r->n_inputs, rin, 1, &q->outputs[0]);
    rn->n_attrs = r->n_attrs;
    rn->attrs = r->attrs;
  }
  if (getenv("FLAGOS_FUSE_TRACE"))
    fprintf(stderr, "flagos fuse: '%s' = %s with %s as its epilogue%s (%d inputs)\n", name, p->op_type, q->op_type,
            r ? ", the view after it" : "", n_ins);
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
  /* the fused nodes are appended, and a view after each that had one */
  bool *dead = fl_arena_alloc(a, sizeof(bool) * (size_t)(3 * n + 1));
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
    if (!act || !build(m, p, r, q, act, a)) continue;
    if (fir_model_opset(m, OPS_FUSED_DOMAIN) < 0) fir_model_set_opset(m, OPS_FUSED_DOMAIN, 1);
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
