/* Inline fusion: a node whose output one consumer alone reads is run inside
 * that consumer's kernels, as one InlinedProducer node (src/ops/inlined.c).
 * Where other nodes read the output too, the pair keeps it: the consumer's
 * kernel also stores it, as the node's last output (GPT-2's residual Add,
 * read by the LayerNormalization and by the next residual Add).
 * It saves the producer's launch and the tensor's trip through memory where
 * elementwise fusion cannot reach, because the consumer is not pointwise
 * (Add -> LayerNormalization, the attention mask's Add -> Softmax) or the
 * producer is not (Transpose -> Mul).
 *
 * A pair qualifies when the producer's single output is read by the consumer
 * only (no other node, subgraph or graph output) or, kept, by others too where
 * the consumer is of the first kind below and its other inputs are graph
 * inputs or initializers (none depends on the producer), both nodes have static
 * tensors of the types elementwise fusion takes, and either
 * - the consumer reads each element of that output a bounded number of times
 *   (pointwise operators, FusedElementwise, Softmax, LogSoftmax,
 *   LayerNormalization, RMSNormalization);
 * - the consumer is a product (MatMul, MatMulBias, or a pair around one) that
 *   a Transpose feeds, alone or scaled by a Mul or Div (an inlined pair of
 *   them); or
 * - the consumer is a Transpose of a product's output;
 * and a trial lowering of the pair succeeds (ops_inline_can: the producer is
 * one plain store, the consumer hands the tensor to a library call only as a
 * gemm's A or B that strides can read through the transpose; or the
 * transpose's permutation can be the product's stores and the call's Y
 * strides; or, the epilogue form, the consumer is one pointwise kernel over
 * the output of a producer that stores it once and never reads it back:
 * Softmax -> Where(IsNaN(p), 0, p) as PyTorch's exporter writes attention). Each node joins at most one pair a round; the pass runs rounds
 * until none pairs, so a product takes both its operands' transposes and
 * then its output's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/fused.h"
#include "passes/passes.h"

/* The inlined pair's nodes (producer, consumer), or NULL where n is no pair. */
static const fir_node_t *pair_node(const fir_node_t *n, int i) {
  const fir_graph_t *b = fir_node_is(n, OPS_FUSED_DOMAIN, OPS_INLINE_OP) ? ops_fused_body(n) : NULL;
  return b && b->n_nodes == 2 ? b->nodes[i] : NULL;
}

/* A product: MatMul, MatMulBias, or an inlined pair whose consumer is one. */
static bool is_product(const fir_node_t *n) {
  const fir_node_t *q = pair_node(n, 1);
  if (q) return is_product(q);
  return fir_node_is(n, "", "MatMul") || fir_node_is(n, OPS_FUSED_DOMAIN, "MatMulBias");
}

/* A Transpose, or an inlined Transpose scaled by a Mul or Div. */
static bool is_transpose(const fir_node_t *n) {
  const fir_node_t *p = pair_node(n, 0), *q = pair_node(n, 1);
  if (p) return fir_node_is(p, "", "Transpose") && (fir_node_is(q, "", "Mul") || fir_node_is(q, "", "Div"));
  return fir_node_is(n, "", "Transpose");
}

/* 1 for consumers that read each element of their input a few times at
 * most, so that recomputing the producer's element at each read costs
 * little; 2 for products, which take only a transpose (its element is a load,
 * and the gemm call reads its input through strides); 3 for a Transpose,
 * which takes only a product; else 0. */
static int consumer_op(fl_arena_t *a, const fir_node_t *n) {
  static const char *const ops[] = {"Softmax", "LogSoftmax", "LayerNormalization", "RMSNormalization"};
  if (is_product(n)) return 2;
  if (strcmp(n->domain, OPS_FUSED_DOMAIN) == 0) return strcmp(n->op_type, OPS_FUSED_OP) == 0 ? 1 : 0;
  if (n->domain[0]) return 0;
  if (strcmp(n->op_type, "Transpose") == 0) return 3;
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(n->op_type, ops[i]) == 0) return 1;
  return ops_fused_can_fuse(a, n) ? 1 : 0;
}

bool pass_node_fusable(const fir_node_t *n) {
  for (int k = 0; k < n->n_inputs; k++)
    if (n->inputs[k] && !pass_fusable_value(n->inputs[k])) return false;
  for (int k = 0; k < n->n_outputs; k++)
    if (!n->outputs[k] || !pass_fusable_value(n->outputs[k])) return false;
  return true;
}

int pass_fused_inputs(const fir_node_t *const *nodes, int n_nodes, fir_value_t **ins) {
  int n = 0;
  for (int i = 0; i < n_nodes; i++)
    for (int k = 0; k < nodes[i]->n_inputs; k++) {
      fir_value_t *v = nodes[i]->inputs[k];
      bool seen = !v;
      for (int j = 0; j < n_nodes && !seen; j++) seen = v->producer == nodes[j];
      for (int j = 0; j < n && !seen; j++) seen = ins[j] == v;
      if (!seen) ins[n++] = v;
    }
  return n;
}

fir_node_t *pass_move_node(fir_model_t *m, fir_graph_t *body, const fir_node_t *n, fir_value_t **bmap,
                             fl_arena_t *a) {
  fir_value_t **in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  fir_value_t **out = fl_arena_alloc(a, sizeof(*out) * (size_t)(n->n_outputs + 1));
  for (int k = 0; k < n->n_inputs; k++) in[k] = n->inputs[k] ? bmap[n->inputs[k]->id] : NULL;
  for (int k = 0; k < n->n_outputs; k++) {
    const fir_value_t *o = n->outputs[k];
    out[k] = bmap[o->id] = fir_value_create(body, fir_fresh_name(m, strlen(o->name) < 200 ? o->name : "inlined"),
                                            fir_type_clone(m, o->type));
  }
  fir_node_t *bn = fir_node_create(body, n->op_type, n->domain, n->name, n->n_inputs, in, n->n_outputs, out);
  bn->n_attrs = n->n_attrs;
  bn->attrs = n->attrs;
  pass_nest_subgraphs(n, body); /* a FusedElementwise's body now nests in this one */
  return bn;
}

void pass_nest_subgraphs(const fir_node_t *n, fir_graph_t *parent) {
  for (int i = 0; i < n->n_attrs; i++) {
    if (n->attrs[i].kind == FIR_ATTR_GRAPH && n->attrs[i].g) n->attrs[i].g->parent = parent;
    for (int j = 0; n->attrs[i].kind == FIR_ATTR_GRAPHS && j < n->attrs[i].n; j++) n->attrs[i].graphs[j]->parent = parent;
  }
}

fir_graph_t *pass_new_body(fir_model_t *m, const char *name, fir_value_t *const *ins, int n_ins, fir_value_t **bmap) {
  fir_graph_t *body = fir_graph_create(m, m->graph, name);
  for (int k = 0; k < n_ins; k++) {
    fir_value_t *v = ins[k];
    bmap[v->id] = fir_value_create(body, fir_fresh_name(m, strlen(v->name) < 200 ? v->name : "fused"),
                                   fir_type_clone(m, v->type));
    fir_graph_add_input(body, bmap[v->id]);
  }
  return body;
}

fir_node_t *pass_fuse_nodes(fir_model_t *m, const char *op, const char *name, fir_node_t *const *nodes, int n_nodes,
                            pass_why_not_fn why_not, fl_arena_t *a, const char **why) {
  fir_graph_t *g = m->graph;
  int n_in_all = 0;
  for (int i = 0; i < n_nodes; i++) n_in_all += nodes[i]->n_inputs;
  fir_value_t **ins = fl_arena_alloc(a, sizeof(*ins) * (size_t)(n_in_all + 1));
  int n_ins = pass_fused_inputs((const fir_node_t *const *)nodes, n_nodes, ins);
  fir_value_t **bmap = fl_arena_alloc(a, sizeof(*bmap) * (size_t)(g->n_values + 1));
  fir_graph_t *body = pass_new_body(m, name, ins, n_ins, bmap);
  const fir_node_t *last = NULL;
  for (int i = 0; i < n_nodes; i++) last = pass_move_node(m, body, nodes[i], bmap, a);
  for (int k = 0; k < last->n_outputs; k++) fir_graph_add_output(body, last->outputs[k]);
  const fir_node_t *tail = nodes[n_nodes - 1];
  fir_attr_t attr = {.name = OPS_FUSED_BODY, .kind = FIR_ATTR_GRAPH, .g = body};
  fir_node_t probe = {.name = name, .op_type = op, .domain = OPS_FUSED_DOMAIN, .opset = 1, .n_inputs = n_ins,
                      .inputs = ins, .n_outputs = tail->n_outputs, .outputs = tail->outputs, .n_attrs = 1,
                      .attrs = &attr, .graph = g};
  *why = why_not(a, &probe);
  if (*why) {
    for (int i = 0; i < n_nodes; i++) pass_nest_subgraphs(nodes[i], g);
    return NULL;
  }
  fir_node_t *fn = fir_node_create(g, op, OPS_FUSED_DOMAIN, name, n_ins, ins, tail->n_outputs, tail->outputs);
  fir_node_add_attr(fn, OPS_FUSED_BODY, FIR_ATTR_GRAPH)->g = body;
  if (fir_model_opset(m, OPS_FUSED_DOMAIN) < 0) fir_model_set_opset(m, OPS_FUSED_DOMAIN, 1);
  return fn;
}

static void build_pair(fir_model_t *m, const fir_node_t *p, const fir_node_t *c, fir_value_t **ins, int n_ins,
                       bool keep, fl_arena_t *a) {
  fir_graph_t *g = m->graph;
  const char *name = c->name[0] ? fl_arena_printf(m->arena, "%s_inlined", c->name)
                                : fl_arena_printf(m->arena, "inlined_%s_%s", p->op_type, c->op_type);
  fir_value_t **bmap = fl_arena_alloc(a, sizeof(*bmap) * (size_t)(g->n_values + 1));
  fir_graph_t *body = pass_new_body(m, name, ins, n_ins, bmap);
  const fir_node_t *bp = pass_move_node(m, body, p, bmap, a);
  const fir_node_t *bc = pass_move_node(m, body, c, bmap, a);
  for (int k = 0; k < bc->n_outputs; k++) fir_graph_add_output(body, bc->outputs[k]);
  fir_value_t **outs = fl_arena_alloc(a, sizeof(*outs) * (size_t)(c->n_outputs + 1));
  memcpy(outs, c->outputs, sizeof(*outs) * (size_t)c->n_outputs);
  if (keep) { /* the producer's output stays, stored by the consumer's kernel: the last output */
    fir_graph_add_output(body, bp->outputs[0]);
    outs[c->n_outputs] = p->outputs[0];
  }
  fir_node_t *fn = fir_node_create(g, OPS_INLINE_OP, OPS_FUSED_DOMAIN, name, n_ins, ins, c->n_outputs + keep, outs);
  fir_node_add_attr(fn, OPS_FUSED_BODY, FIR_ATTR_GRAPH)->g = body;
  if (getenv("FLAGOS_FUSE_TRACE"))
    fprintf(stderr, "flagos fuse: '%s' = %s inlined into %s (%d inputs%s)\n", name, p->op_type, c->op_type, n_ins,
            keep ? ", its output kept" : "");
}

/* Whether c's inputs other than p's output are all graph inputs or
 * initializers: then none depends on p, and the pair may keep p's output
 * for its other readers without making a cycle. */
static bool others_free(const fir_node_t *p, const fir_node_t *c) {
  for (int k = 0; k < c->n_inputs; k++) {
    const fir_value_t *v = c->inputs[k];
    if (v && v != p->outputs[0] && v->producer) return false;
  }
  return true;
}

/* One round: the pairs of the graph's nodes as they are; their number. */
static int inline_round(fir_model_t *m) {
  fir_graph_t *g = m->graph;
  const char *env = getenv("FLAGOS_FUSE_KEEP"); /* 0: no kept pairs, for measurements */
  bool may_keep = !env || strcmp(env, "0") != 0;
  fl_arena_t *a = fl_arena_create();
  int n = g->n_nodes, *readers = pass_round_readers(g, a);
  bool *dead = fl_arena_alloc(a, sizeof(bool) * (size_t)(2 * n + 1)); /* the pairs are appended */
  fir_value_t **ins = fl_arena_alloc(a, sizeof(*ins) * (size_t)(g->n_values + 1));
  int fused = 0;
  for (int i = 0; i < n; i++) {
    const fir_node_t *c = g->nodes[i];
    if (dead[i] || !pass_node_fusable(c)) continue;
    int kind = -1; /* consumer_op's answer, asked (a trial lowering) once a producer qualifies */
    for (int k = 0; k < c->n_inputs && kind; k++) {
      const fir_value_t *v = c->inputs[k];
      const fir_node_t *p = v && v->graph == g ? v->producer : NULL;
      if (!p || p->graph != g || p->id >= n || dead[p->id] || p->n_outputs != 1 || readers[v->id] < 1 ||
          !pass_node_fusable(p))
        continue;
      if (kind < 0) kind = consumer_op(a, c);
      bool keep = readers[v->id] > 1;
      if (!kind || (kind == 2 && !is_transpose(p)) || (kind == 3 && !is_product(p)) ||
          (keep && (!may_keep || kind != 1 || !others_free(p, c))))
        continue;
      const fir_node_t *both[2] = {p, c};
      int n_ins = pass_fused_inputs(both, 2, ins);
      if (!ops_inline_can(a, p, c, (const fir_value_t *const *)ins, n_ins, keep)) continue;
      if (fir_model_opset(m, OPS_FUSED_DOMAIN) < 0) fir_model_set_opset(m, OPS_FUSED_DOMAIN, 1);
      build_pair(m, p, c, ins, n_ins, keep, a);
      dead[p->id] = dead[c->id] = true;
      fused++;
      break;
    }
  }
  if (fused) fir_graph_remove_nodes(g, dead);
  fl_arena_destroy(a);
  return fused;
}

flagos_status_t pass_fuse_inline(fir_model_t *m, int *n_fused) {
  if (n_fused) *n_fused = 0;
  if (pass_fusion_off(m, NULL)) return NULL;
  for (int fused; (fused = inline_round(m)) > 0;) {
    FL_TRY(pass_fusion_settle(m, OPS_INLINE_OP, OPS_FUSED_DOMAIN, "inline fusion"));
    if (n_fused) *n_fused += fused;
  }
  return NULL;
}
