/* ProductNorm (domain ai.flagos): a product — MatMul, MatMulBias or Gemm —
 * whose output, perhaps through one view, a residual Add and the
 * LayerNormalization of that sum read (the pair as inline fusion leaves it:
 * one InlinedProducer of Add -> LayerNormalization), as one node
 * (src/passes/fuse_norm.c builds it; docs/fusion.md describes it). GPT-2 and
 * BERT end each attention and each feed-forward layer so.
 *
 * The `body` graph holds the product, the view if any, and the inlined pair;
 * the node's outputs are the pair's (the normalised sum, and the sum itself
 * where later nodes read it as the next residual). The lowering is:
 * - first, where the product's first kernel carries a gemm call that computes
 *   its whole output, a kernel of no points carrying the "gemm_norm" call
 *   (docs/kernel-ir.md): the product, its bias, the residual and the
 *   normalisation of each row in one call (ends_node); a backend that takes it
 *   computes the sum and its normalisation where it sums the product's slices
 *   over K; one that declines it launches nothing for it;
 * - then the body's nodes, each by its own lowering, the product's output in a
 *   temporary (the view an alias of it), the product's call now skipping only
 *   the product's later kernels (`skip`): a backend that takes the product's
 *   call but not gemm_norm (cuda, cpu) runs what the nodes ran before, launch
 *   for launch.
 * Static shapes only. */
#include <stdlib.h>
#include <string.h>

#include "ops/body_seq.h"

#define AR (c->arena)

/* The body: the product, perhaps a view, then the inlined pair giving the
 * node's outputs (its own, in order). */
static const fir_graph_t *body_of(const ops_ctx_t *c) {
  const fir_graph_t *b = ops_fused_body(c->node);
  if (!b || (b->n_nodes != 2 && b->n_nodes != 3) || b->n_inputs != c->n_in || b->n_outputs != c->n_out ||
      b->nodes[0]->n_outputs != 1)
    return NULL;
  const fir_node_t *l = b->nodes[b->n_nodes - 1];
  if (l->n_outputs != b->n_outputs) return NULL;
  for (int k = 0; k < b->n_outputs; k++)
    if (l->outputs[k] != b->outputs[k]) return NULL;
  return b;
}

static flagos_status_t infer_pn(ops_ctx_t *c) {
  const fir_graph_t *b = body_of(c);
  if (!b)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT,
                   "needs a graph attribute '%s' of two or three nodes, the last giving the node's outputs",
                   OPS_FUSED_BODY);
  return ops_seq_infer_outputs(c, b);
}

/* The pair's Add and LayerNormalization (body nodes of l), or false. */
static bool pair_of(const fir_node_t *l, const fir_node_t **add, const fir_node_t **ln) {
  const fir_graph_t *lb = fir_node_is(l, OPS_FUSED_DOMAIN, OPS_INLINE_OP) ? ops_fused_body(l) : NULL;
  if (!lb || lb->n_nodes != 2 || lb->n_inputs != l->n_inputs || lb->n_outputs != l->n_outputs) return false;
  *add = lb->nodes[0];
  *ln = lb->nodes[1];
  return fir_node_is(*add, "", "Add") && (*add)->n_inputs == 2 && fir_node_is(*ln, "", "LayerNormalization") &&
         (*ln)->n_inputs >= 2 && (*ln)->n_outputs == 1 && (*ln)->inputs[0] == (*add)->outputs[0];
}

/* What value v of l's body is in the fused node's body. */
static const fir_value_t *in_body(const fir_node_t *l, const fir_value_t *v) {
  return ops_seq_outer(ops_fused_body(l), l, v);
}

/* The kernel of no points carrying gemm_norm, made the node's first step;
 * NULL, or why not. first[i]: body node i's first step. */
static const char *norm_call(ops_ctx_t *c, const fir_graph_t *b, const ops_seq_t *s, const int *first) {
  int nb = b->n_nodes;
  const fir_node_t *p = b->nodes[0], *l = b->nodes[nb - 1], *add, *ln;
  if (nb == 3 && !s->alias[1]) return "the node between the product and the pair is not a view of it";
  if (!pair_of(l, &add, &ln)) return "the last node is not a residual Add and its LayerNormalization";
  /* the Add: the product's output (through the view) and a residual the node reads */
  ops_bind_t pw = s->where[p->outputs[0]->id];
  const fir_value_t *x0 = in_body(l, add->inputs[0]), *x1 = in_body(l, add->inputs[1]);
  if (!x0 || !x1) return "the Add reads a value of its own body";
  ops_bind_t w0 = s->where[x0->id], w1 = s->where[x1->id];
  bool first_is_p = w0.kind == pw.kind && w0.index == pw.index;
  ops_bind_t rw = first_is_p ? w1 : w0, xw = first_is_p ? w0 : w1;
  if (pw.kind != OPS_BIND_TEMP || xw.kind != pw.kind || xw.index != pw.index || rw.kind != OPS_BIND_INPUT)
    return "the Add does not read the product's output and an input of the node";
  /* LayerNormalization over the last axis, its scale and bias inputs of the node */
  const ops_tensor_info_t *y = &s->sub[0]->out[0], *r = &c->in[rw.index];
  int rank = y->rank;
  if (rank < 1) return "the product's output is a scalar";
  const fir_value_t *gv = in_body(l, ln->inputs[1]), *bv = ln->n_inputs > 2 && ln->inputs[2] ? in_body(l, ln->inputs[2]) : NULL;
  if (!gv || s->where[gv->id].kind != OPS_BIND_INPUT || (bv && s->where[bv->id].kind != OPS_BIND_INPUT))
    return "the scale or bias of the LayerNormalization is not an input of the node";
  /* the product's call: gemm over rows of the output, packed, computing it all */
  const ops_step_t *st = &c->steps[first[0]];
  kir_libcall_t *lc = st->kernel->libcall;
  if (!lc || strcmp(lc->name, "gemm") != 0 || lc->n_ints < 9 || lc->n_ints > 12 || lc->n_floats != 2)
    return "the product's first kernel carries no gemm call (9 to 12 ints)";
  int end = first[1];
  if (!lc->ends_node && end - first[0] != 1) return "the product's call does not compute its whole output";
  int64_t g[12] = {0};
  for (int i = 0; i < lc->n_ints; i++)
    if (!kir_eval_int(lc->ints[i], NULL, 0, &g[i])) return "the call's ints are not constants";
  int64_t M = g[1], N = g[2];
  if (g[0] != 1 || (g[11] && g[11] != N)) return "the product is batched or writes rows apart";
  ops_bind_t yb = st->binds[lc->bufs[2]];
  if (yb.kind != pw.kind || yb.index != pw.index) return "the call does not write the product's output";
  for (int i = 0; i < lc->n_bufs; i++)
    if (i != 2 && st->binds[lc->bufs[i]].kind != OPS_BIND_INPUT) return "the call reads a temporary";
  const ops_tensor_info_t *gt = &c->in[s->where[gv->id].index], *bt = bv ? &c->in[s->where[bv->id].index] : NULL;
  flagos_dtype_t dt = y->dtype;
  if (y->numel != M * N || y->dims[rank - 1] != N || r->numel != M * N || gt->numel != N || (bt && bt->numel != N))
    return "the residual, scale or bias do not match the product's rows";
  if ((dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT16) || r->dtype != dt || gt->dtype != dt || (bt && bt->dtype != dt))
    return "the tensors are not all f32 or all f16";
  /* where the sum and the normalised sum go: the node's outputs, or a temporary for an unread sum */
  int zk = -1, sk = -1;
  for (int k = 0; k < l->n_outputs; k++) {
    const fir_value_t *lo = ops_fused_body(l)->outputs[k];
    if (lo == ln->outputs[0]) zk = k;
    if (lo == add->outputs[0]) sk = k;
  }
  if (zk < 0 || (l->n_outputs == 2 && sk < 0) || c->out[zk].dtype != dt) return "the pair's outputs are not the norm and the sum";
  /* the normalisation over the last axis of its own input (the sum: a view may have changed the rank) of N
   * values, and the sum the product's size (no broadcasting Add) */
  const ops_tensor_info_t *zt = &c->out[zk];
  int64_t axis = fir_attr_int(ln, "axis", -1);
  if (zt->rank < 1 || (axis != -1 && axis != zt->rank - 1) || zt->dims[zt->rank - 1] != N || zt->numel != M * N ||
      (sk >= 0 && c->out[sk].numel != M * N))
    return "the LayerNormalization is not over rows of the product (its last axis, no broadcasting)";
  /* the call's Y is the sum, not the product: a product that reads its output (beta) does not fit */
  if (lc->floats[1] != 0.0) return "the product's call reads its output (beta)";
  kir_kernel_t *kk = ops_kernel(c, "norm");
  int bufs[8];
  bufs[0] = ops_buf_in(c, kk, st->binds[lc->bufs[0]].index);
  bufs[1] = ops_buf_in(c, kk, st->binds[lc->bufs[1]].index);
  if (sk >= 0) {
    bufs[2] = ops_buf_out(c, kk, sk);
  } else {
    kir_expr_t *d[1] = {kir_i64(AR, M * N)};
    bufs[2] = ops_buf_temp(c, kk, ops_temp(c, dt, 1, d));
  }
  bufs[3] = ops_buf_in(c, kk, rw.index);
  bufs[4] = ops_buf_in(c, kk, s->where[gv->id].index);
  bufs[5] = bv ? ops_buf_in(c, kk, s->where[bv->id].index) : bufs[4];
  bufs[6] = ops_buf_out(c, kk, zk);
  int n_bufs = 7;
  if (lc->n_bufs == 4) bufs[n_bufs++] = ops_buf_in(c, kk, st->binds[lc->bufs[3]].index);
  kir_expr_t *ints[13];
  for (int i = 0; i < 12; i++) ints[i] = kir_i64(AR, g[i]);
  ints[12] = kir_i64(AR, bv != NULL);
  double floats[3] = {lc->floats[0], lc->floats[1], fir_attr_float(ln, "epsilon", 1e-5)};
  kir_expr_t *ext = kir_i64(AR, 0), *var;
  kir_set_space(kk, 1, &ext, &var);
  kir_set_libcall(kk, "gemm_norm", n_bufs, bufs, 13, ints, 3, floats);
  /* the product's own call, taken, now skips the product's later kernels only */
  ops_seq_call_first(c, lc, first[0], end);
  return NULL;
}

static flagos_status_t lower_body(ops_ctx_t *c, const char **why_not) {
  const fir_graph_t *b = body_of(c);
  if (!b) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs a graph attribute '%s' of two or three nodes", OPS_FUSED_BODY);
  ops_seq_t s;
  int first[4];
  FL_TRY(ops_seq_lower_all(c, b, &s, first));
  if (!ops_seq_call_on("FLAGOS_NORM_CALL")) *why_not = "FLAGOS_NORM_CALL=0";
  else if (first[1] == first[0]) *why_not = "the product has no kernel";
  else *why_not = norm_call(c, b, &s, first);
  return NULL;
}

static flagos_status_t lower_pn(ops_ctx_t *c) {
  const char *why_not;
  return lower_body(c, &why_not);
}

const char *ops_product_norm_why_not(fl_arena_t *a, const fir_node_t *n) { return ops_seq_trial(a, n, lower_body); }

const ops_def_t ops_family_product_norm[] = {
    {.op_type = OPS_PRODUCT_NORM_OP, .domain = OPS_FUSED_DOMAIN, .infer = infer_pn, .lower = lower_pn,
     .flops = ops_seq_flops},
    {.op_type = NULL},
};
