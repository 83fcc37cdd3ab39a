/* Attention fusion: attention's scores product, softmax and context product,
 * as inline fusion leaves them (one node each: the products read the query,
 * key and value through their transposes, the softmax adds the mask inside),
 * become one FusedAttention node (src/ops/attention_fused.c) whose first
 * kernel carries the "attention" library call: a backend that takes it runs
 * attention as one kernel, one that declines it runs the three nodes' kernels
 * as before.
 *
 * A triple qualifies when a node (a Softmax, or an inlined pair around one)
 * reads a value that one node alone produces and it alone reads, its output is
 * read by one node alone (none of these a graph output), all three have static
 * tensors, and a trial lowering of the fused node finds its first kernel
 * carrying the call: the products are gemm calls in the layout the call takes,
 * the softmax is over the scores' last axis with the mask added inside and
 * perhaps Where(IsNaN(p), 0, p) after it (ops_attention_why_not decides, and
 * says why not under FLAGOS_FUSE_TRACE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/fused.h"
#include "passes/passes.h"

static bool fusable(const fir_node_t *n) { return pass_node_fusable(n) && n->n_outputs == 1; }

/* A Softmax, or an inlined pair whose consumer is one or whose producer is one
 * (the epilogue form); the trial lowering checks the rest. */
static bool softmax_like(const fir_node_t *n) {
  if (!n->domain[0]) return strcmp(n->op_type, "Softmax") == 0;
  const fir_graph_t *b = strcmp(n->domain, OPS_FUSED_DOMAIN) == 0 && strcmp(n->op_type, OPS_INLINE_OP) == 0
                             ? ops_fused_body(n)
                             : NULL;
  return b && b->n_nodes == 2 && (softmax_like(b->nodes[1]) || softmax_like(b->nodes[0]));
}

/* The fused node of triple t, in g where the trial lowering takes it, else
 * NULL (the triple's subgraphs nest in g again). */
static fir_node_t *build(fir_model_t *m, fir_node_t *const *t, fl_arena_t *a) {
  fir_graph_t *g = m->graph;
  fir_value_t **ins = fl_arena_alloc(a, sizeof(*ins) * (size_t)(t[0]->n_inputs + t[1]->n_inputs + t[2]->n_inputs + 1));
  int n_ins = pass_fused_inputs((const fir_node_t *const *)t, 3, ins);
  const char *name = fl_arena_printf(m->arena, "%s_attention", t[1]->name[0] ? t[1]->name : "softmax");
  fir_value_t **bmap = fl_arena_alloc(a, sizeof(*bmap) * (size_t)(g->n_values + 1));
  fir_graph_t *body = pass_new_body(m, name, ins, n_ins, bmap);
  const fir_node_t *last = NULL;
  for (int i = 0; i < 3; i++) last = pass_move_node(m, body, t[i], bmap, a);
  fir_graph_add_output(body, last->outputs[0]);
  fir_attr_t attr = {.name = OPS_FUSED_BODY, .kind = FIR_ATTR_GRAPH, .g = body};
  fir_node_t probe = {.name = name, .op_type = OPS_ATTENTION_OP, .domain = OPS_FUSED_DOMAIN, .opset = 1,
                      .n_inputs = n_ins, .inputs = ins, .n_outputs = 1, .outputs = t[2]->outputs,
                      .n_attrs = 1, .attrs = &attr, .graph = g};
  const char *why_not = ops_attention_why_not(a, &probe);
  if (why_not && getenv("FLAGOS_FUSE_TRACE"))
    fprintf(stderr, "flagos fuse: no attention of '%s', '%s' and '%s': %s\n", t[0]->name, t[1]->name, t[2]->name,
            why_not);
  if (why_not) {
    for (int i = 0; i < 3; i++) pass_nest_subgraphs(t[i], g);
    return NULL;
  }
  fir_value_t *out = t[2]->outputs[0];
  fir_node_t *fn = fir_node_create(g, OPS_ATTENTION_OP, OPS_FUSED_DOMAIN, name, n_ins, ins, 1, &out);
  fir_node_add_attr(fn, OPS_FUSED_BODY, FIR_ATTR_GRAPH)->g = body;
  if (getenv("FLAGOS_FUSE_TRACE"))
    fprintf(stderr, "flagos fuse: '%s' = %s, %s and %s as one attention (%d inputs)\n", name, t[0]->op_type,
            t[1]->op_type, t[2]->op_type, n_ins);
  return fn;
}

flagos_status_t pass_fuse_attention(fir_model_t *m, int *n_fused) {
  if (n_fused) *n_fused = 0;
  if (pass_fusion_off(m, "FLAGOS_FUSE_ATTENTION")) return NULL;
  fir_graph_t *g = m->graph;
  fl_arena_t *a = fl_arena_create();
  int n = g->n_nodes, *readers = pass_round_readers(g, a);
  /* the one node reading each value that one node alone reads */
  fir_node_t **reader = fl_arena_alloc(a, sizeof(*reader) * (size_t)(g->n_values + 1));
  for (int i = 0; i < n; i++)
    for (int k = 0; k < g->nodes[i]->n_inputs; k++) {
      const fir_value_t *v = g->nodes[i]->inputs[k];
      if (v && v->graph == g && readers[v->id] == 1) reader[v->id] = g->nodes[i];
    }
  bool *dead = fl_arena_alloc(a, sizeof(bool) * (size_t)(2 * n + 1)); /* the fused nodes are appended */
  int fused = 0;
  for (int i = 0; i < n; i++) {
    fir_node_t *s = g->nodes[i];
    if (dead[i] || !softmax_like(s) || !fusable(s)) continue;
    fir_node_t *c = readers[s->outputs[0]->id] == 1 ? reader[s->outputs[0]->id] : NULL;
    if (!c || c->id >= n || dead[c->id] || !fusable(c)) continue;
    for (int k = 0; k < s->n_inputs; k++) {
      const fir_value_t *v = s->inputs[k];
      fir_node_t *p = v && v->graph == g && readers[v->id] == 1 ? v->producer : NULL;
      if (!p || p->graph != g || p->id >= n || dead[p->id] || p == c || !fusable(p)) continue;
      fir_node_t *t[3] = {p, s, c};
      if (!build(m, t, a)) continue;
      if (fir_model_opset(m, OPS_FUSED_DOMAIN) < 0) fir_model_set_opset(m, OPS_FUSED_DOMAIN, 1);
      dead[p->id] = dead[s->id] = dead[c->id] = true;
      fused++;
      break;
    }
  }
  if (fused) fir_graph_remove_nodes(g, dead);
  fl_arena_destroy(a);
  if (fused) FL_TRY(pass_fusion_settle(m, OPS_ATTENTION_OP, OPS_FUSED_DOMAIN, "attention fusion"));
  if (n_fused) *n_fused = fused;
  return NULL;
}
