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
 * says why not under FLAGOS_FUSE_TRACE).
 *
 * Where the query, key and value the products read are the parts of one
 * Split (each part read by the triple alone, directly or through one view
 * that the triple alone reads: GPT-2's query/key/value product, and every
 * one fuse_merge.c made), the Split and the views join the node too, so that
 * the call reads the Split's input in place and the Split's launch goes
 * (FLAGOS_FUSE_ATTENTION_SPLIT=0 leaves them out; a trial that does not take
 * the call with them is made again without). */
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

/* The Split whose parts the products of triple t read, each part read by
 * them alone, directly or through one view they alone read, every part so:
 * pre[0] the Split, then the views; returns their number (0: none such). */
static int split_prefix(fir_node_t *const *t, const int *readers, const bool *dead, int n, fir_node_t **pre) {
  fir_node_t *sp = NULL;
  int n_pre = 1;
  unsigned parts = 0; /* the Split's outputs seen, a bit each */
  for (int i = 0; i < 3; i += 2)
    for (int k = 0; k < t[i]->n_inputs; k++) {
      fir_value_t *v = t[i]->inputs[k];
      fir_node_t *p = v && v->graph == t[i]->graph && readers[v->id] == 1 ? v->producer : NULL;
      if (!p || p->graph != t[i]->graph || p->id >= n || dead[p->id] || !pass_node_fusable(p)) continue;
      fir_node_t *view = NULL;
      if (fir_node_is_view(p) && p->n_outputs == 1 && p->n_inputs >= 1 && p->inputs[0] &&
          readers[p->inputs[0]->id] == 1) {
        view = p;
        v = p->inputs[0];
        p = v->producer;
        if (!p || p->graph != t[i]->graph || p->id >= n || dead[p->id] || !pass_node_fusable(p)) continue;
      }
      int part = 0;
      while (part < p->n_outputs && p->outputs[part] != v) part++;
      if (!fir_node_is(p, "", "Split") || (sp && p != sp) || p->n_outputs > 8 || part == p->n_outputs ||
          (parts >> part & 1))
        continue;
      sp = p;
      parts |= 1u << part;
      if (view) pre[n_pre++] = view;
    }
  if (!sp || parts != (1u << sp->n_outputs) - 1) return 0;
  pre[0] = sp;
  return n_pre;
}

/* The fused node of triple t (after the n_pre nodes of pre: a Split and its
 * views), in g where the trial lowering takes it, else NULL. */
static fir_node_t *build(fir_model_t *m, fir_node_t *const *t, fir_node_t *const *pre, int n_pre, fl_arena_t *a) {
  fir_node_t *all[12];
  int n_all = 0;
  for (int i = 0; i < n_pre; i++) all[n_all++] = pre[i];
  for (int i = 0; i < 3; i++) all[n_all++] = t[i];
  const char *name = fl_arena_printf(m->arena, "%s_attention", t[1]->name[0] ? t[1]->name : "softmax"), *why_not;
  fir_node_t *fn = pass_fuse_nodes(m, OPS_ATTENTION_OP, name, all, n_all, ops_attention_why_not, a, &why_not);
  if (getenv("FLAGOS_FUSE_TRACE")) {
    if (!fn)
      fprintf(stderr, "flagos fuse: no attention of '%s', '%s' and '%s'%s%s: %s\n", t[0]->name, t[1]->name,
              t[2]->name, n_pre ? " with the Split " : "", n_pre ? pre[0]->name : "", why_not);
    else
      fprintf(stderr, "flagos fuse: '%s' = %s, %s and %s as one attention (%d inputs)%s%s%s\n", name, t[0]->op_type,
              t[1]->op_type, t[2]->op_type, fn->n_inputs, n_pre ? ", reading the input of the Split '" : "",
              n_pre ? pre[0]->name : "", n_pre ? "' in place" : "");
  }
  return fn;
}

flagos_status_t pass_fuse_attention(fir_model_t *m, int *n_fused) {
  if (n_fused) *n_fused = 0;
  if (pass_fusion_off(m, "FLAGOS_FUSE_ATTENTION")) return NULL;
  fir_graph_t *g = m->graph;
  fl_arena_t *a = fl_arena_create();
  int n = g->n_nodes, *readers = pass_round_readers(g, a);
  const char *se = getenv("FLAGOS_FUSE_ATTENTION_SPLIT");
  bool with_split = !(se && strcmp(se, "0") == 0);
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
      fir_node_t *t[3] = {p, s, c}, *pre[9];
      int n_pre = with_split ? split_prefix(t, readers, dead, n, pre) : 0;
      bool ok = n_pre && build(m, t, pre, n_pre, a);
      if (!ok) n_pre = 0, ok = build(m, t, pre, 0, a) != NULL;
      if (!ok) continue;
      dead[p->id] = dead[s->id] = dead[c->id] = true;
      for (int j = 0; j < n_pre; j++) dead[pre[j]->id] = true;
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
