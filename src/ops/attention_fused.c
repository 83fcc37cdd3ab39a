/* FusedAttention (domain ai.flagos): attention's three nodes as one — the
 * scores product, the softmax with its mask added inside (perhaps with
 * PyTorch's NaN guard as its epilogue) and the context product, as the earlier
 * passes leave them (src/passes/fuse_attention.c builds the node; docs/fusion.md
 * describes it) — perhaps with the Split that makes its query, key and value
 * out of one product (GPT-2's, and every merged query/key/value product:
 * fuse_merge.c) and the views between them.
 *
 * The `body` graph holds the nodes in order: the Split and its views, if any,
 * then the three. The lowering is:
 * - first, where the body's kernels are the expected ones, a kernel of no
 *   points carrying the "attention" library call (docs/kernel-ir.md) for the
 *   whole node (ends_node): a backend that takes it runs attention as one
 *   kernel, reading the query, key and value in place in the Split's input
 *   where there is one (offsets, and row strides of the input's rows); one
 *   that declines it launches nothing for it;
 * - then the body's nodes lowered one after the other, each by its own
 *   lowering, the Split's parts, the scores and the probabilities in
 *   temporaries, the views aliases (body_seq.c): what the nodes ran before,
 *   launch for launch.
 * The call's arguments are read off the body's lowered kernels (the two gemm
 * calls' operands, strides and scales) and the softmax node's inputs (the
 * mask's broadcast), so the call computes what the kernels compute. Static
 * shapes only. */
#include <stdlib.h>
#include <string.h>

#include "ops/body_seq.h"

#define AR (c->arena)

static const fir_graph_t *body_of(const ops_ctx_t *c) {
  const fir_graph_t *b = ops_fused_body(c->node);
  return b && b->n_nodes >= 3 && b->n_inputs == c->n_in && b->n_outputs == 1 && c->n_out == 1 ? b : NULL;
}

static flagos_status_t infer_attention(ops_ctx_t *c) {
  const fir_graph_t *b = body_of(c);
  if (!b)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT,
                   "needs a graph attribute '%s' of three nodes or more with the node's inputs and its one output",
                   OPS_FUSED_BODY);
  return ops_seq_infer_outputs(c, b);
}

/* ---- the library call ---- */

static bool const_int(const kir_expr_t *e, int64_t *v) { return kir_eval_int(e, NULL, 0, v); }

/* A gemm call of one kernel, its ints read: 12 of them (absent ones 0). */
typedef struct gemm_view {
  const ops_step_t *st;
  int64_t i[12];
  double alpha, beta;
} gemm_view_t;

static bool gemm_of(const ops_step_t *st, gemm_view_t *g) {
  const kir_libcall_t *lc = st->kernel->libcall;
  if (!lc || strcmp(lc->name, "gemm") != 0 || lc->n_bufs != 3 || lc->n_ints < 9 || lc->n_ints > 12 ||
      lc->n_floats != 2)
    return false;
  memset(g, 0, sizeof(*g));
  g->st = st;
  for (int i = 0; i < lc->n_ints; i++)
    if (!const_int(lc->ints[i], &g->i[i])) return false;
  g->alpha = lc->floats[0];
  g->beta = lc->floats[1];
  return g->beta == 0.0;
}

static ops_bind_t call_bind(const gemm_view_t *g, int operand) {
  return g->st->binds[g->st->kernel->libcall->bufs[operand]];
}

enum { G_BATCH, G_M, G_N, G_K, G_TA, G_TB, G_SA, G_SB, G_SY, G_LDB, G_LDA, G_LDY };

static bool last_axis_softmax(const fir_node_t *n) {
  if (!fir_node_is(n, "", "Softmax") || !n->inputs[0] || !n->inputs[0]->type) return false;
  int r = n->inputs[0]->type->rank;
  int64_t axis = fir_attr_int(n, "axis", n->opset >= 13 ? -1 : 1);
  return r >= 2 && (axis == -1 || axis == r - 1);
}

static bool scalar_zero(const fir_value_t *v) {
  const fir_tensor_t *t = v ? v->init : NULL;
  return t && t->numel == 1 && fl_load_as_double(t->dtype, t->data, 0) == 0.0;
}

/* A FusedElementwise q (a node of body b of node n) computing
 * Where(IsNaN(x), 0, x) of its input x. */
static bool nan_guard(const fir_graph_t *b, const fir_node_t *n, const fir_node_t *q, const fir_value_t *x) {
  const fir_graph_t *qb = fir_node_is(q, OPS_FUSED_DOMAIN, OPS_FUSED_OP) ? ops_fused_body(q) : NULL;
  if (!qb || qb->n_nodes != 2 || qb->n_outputs != 1 || qb->n_inputs != q->n_inputs) return false;
  const fir_node_t *isnan = qb->nodes[0], *where = qb->nodes[1];
  int kx = -1;
  for (int k = 0; k < q->n_inputs; k++)
    if (q->inputs[k] == x) kx = k;
  if (kx < 0 || !fir_node_is(isnan, "", "IsNaN") || !fir_node_is(where, "", "Where") || where->n_inputs != 3 ||
      isnan->inputs[0] != qb->inputs[kx] || where->inputs[0] != isnan->outputs[0] ||
      where->inputs[2] != qb->inputs[kx] || where->outputs[0] != qb->outputs[0])
    return false;
  /* the zero: a constant, inside or among the node's inputs */
  return scalar_zero(ops_seq_outer(b, n, ops_seq_outer(qb, q, where->inputs[1])));
}

/* Whether n (its inputs the fused node's values) is the softmax of scores:
 * Softmax over the last axis, alone or with the mask added inside (an
 * InlinedProducer of Add -> Softmax), perhaps followed by PyTorch's guard
 * Where(IsNaN(p), 0, p) (an InlinedProducer of that with a FusedElementwise).
 * Sets *mask to the value added (NULL: none) and *guard. */
static bool softmax_form(const fir_node_t *n, const fir_value_t *scores, const fir_value_t **mask, bool *guard) {
  *mask = NULL;
  *guard = false;
  if (n->inputs[0] == scores && last_axis_softmax(n)) return true;
  const fir_graph_t *b = fir_node_is(n, OPS_FUSED_DOMAIN, OPS_INLINE_OP) ? ops_fused_body(n) : NULL;
  if (!b || b->n_nodes != 2 || b->n_inputs != n->n_inputs || b->n_outputs != 1) return false;
  const fir_node_t *p = b->nodes[0], *q = b->nodes[1];
  if (b->outputs[0] != q->outputs[0] || p->n_outputs != 1) return false;
  if (fir_node_is(p, "", "Add") && p->n_inputs == 2 && last_axis_softmax(q) && q->inputs[0] == p->outputs[0]) {
    const fir_value_t *x = ops_seq_outer(b, n, p->inputs[0]), *y = ops_seq_outer(b, n, p->inputs[1]);
    if ((x == scores) == (y == scores)) return false;
    *mask = x == scores ? y : x;
    return (*mask)->graph != b;
  }
  /* the NaN guard around one of the forms above: p seen with the node's values */
  if (!nan_guard(b, n, q, p->outputs[0]) || p->n_inputs > 8) return false;
  fir_node_t pn = *p;
  fir_value_t *ins[8];
  for (int j = 0; j < p->n_inputs; j++) ins[j] = (fir_value_t *)ops_seq_outer(b, n, p->inputs[j]);
  pn.inputs = ins;
  bool g;
  if (!softmax_form(&pn, scores, mask, &g) || g) return false;
  *guard = true;
  return true;
}

/* The mask's element strides along the scores' axes (0 where broadcast). */
static bool mask_strides(const ops_tensor_info_t *m, const ops_tensor_info_t *s, int64_t *st) {
  if (m->rank > s->rank) return false;
  int64_t run = 1;
  for (int a = s->rank - 1; a >= 0; a--) {
    int am = a - (s->rank - m->rank);
    int64_t d = am >= 0 ? m->dims[am] : 1;
    if (d != 1 && d != s->dims[a]) return false;
    st[a] = d == 1 ? 0 : run;
    run *= d;
  }
  return true;
}

enum { A_BATCH, A_SQ, A_SK, A_D, A_DV, A_SQS, A_LDQ, A_TK, A_SKS, A_LDK, A_TV, A_SVS, A_LDV, A_SYS, A_LDY, A_H, A_MB,
       A_MH, A_MI, A_MJ, A_GUARD, A_NINTS, A_OFFQ = A_NINTS, A_OFFK, A_OFFV, A_NINTS_OFF };

typedef struct call_args {
  int q, k, v, m; /* the node's inputs (m -1: no mask) */
  int64_t ints[A_NINTS_OFF];
  int n_ints; /* A_NINTS, or A_NINTS_OFF where an operand is read in the Split's input */
  double alpha[2];
} call_args_t;

static bool bind_is(ops_bind_t b, ops_bind_kind_t kind, int index) { return b.kind == kind && b.index == index; }

/* An operand of the call read at b*sb + x*ld + y (b < nb, x < nx, y < ny) in
 * a part of a Split along the last axis (its rows r elements long), read
 * instead in the Split's input (rows of rin): a stride that is whole rows
 * becomes as many of the input's rows; the others must stay inside a row.
 * False where the reads cross a row. */
static bool split_remap(int64_t r, int64_t rin, int64_t *sb, int64_t nb, int64_t *ld, int64_t nx, int64_t ny) {
  if (r <= 0) return false;
  int64_t in_row = ny - 1;
  int64_t *st[2] = {sb, ld}, ext[2] = {nb, nx};
  for (int i = 0; i < 2; i++) {
    if (ext[i] <= 1) continue;
    if (*st[i] % r == 0) *st[i] = *st[i] / r * rin;
    else in_row += (ext[i] - 1) * *st[i];
  }
  return ny <= r && in_row < r;
}

/* Where the body starts with a Split (along the last axis, of a node input)
 * and its views, operand bind o of the call: reads of the node's input, at
 * column *off of its rows (the part's start), with the strides rewritten
 * (split_remap). o reading a node input as it is: unchanged, *off 0. NULL, or
 * why not. */
static const char *operand_in_place(const ops_ctx_t *c, const fir_graph_t *b, const ops_seq_t *s, int n_pre,
                                    ops_bind_t *o, int64_t *off, int64_t *sb, int64_t nb, int64_t *ld, int64_t nx,
                                    int64_t ny) {
  *off = 0;
  if (o->kind == OPS_BIND_INPUT) return NULL;
  const fir_node_t *sp = n_pre ? b->nodes[0] : NULL;
  if (!sp || o->kind != OPS_BIND_TEMP) return "an operand is not an input of the node";
  const ops_ctx_t *sc = s->sub[0];
  const ops_tensor_info_t *x = &sc->in[0];
  int64_t axis = fir_attr_int(sp, "axis", 0);
  if (axis < 0) axis += x->rank;
  const ops_bind_t *w = &s->where[sp->inputs[0]->id];
  if (x->rank < 1 || axis != x->rank - 1 || w->kind != OPS_BIND_INPUT) return "the Split is not of a node input's last axis";
  for (int j = 0; j < sp->n_outputs; j++) {
    const fir_value_t *v = sp->outputs[j];
    if (!v || !bind_is(s->where[v->id], OPS_BIND_TEMP, o->index)) continue;
    if (!split_remap(sc->out[j].dims[axis], x->dims[axis], sb, nb, ld, nx, ny))
      return "an operand's reads cross the rows of its Split part";
    *off = sc->params[j];
    *o = *w;
    return NULL;
  }
  return "an operand is neither an input of the node nor a part of its Split";
}

/* Whether the body's first n_pre nodes are a Split and views of its parts. */
static bool split_prefix(const fir_graph_t *b, const ops_seq_t *s, int n_pre) {
  if (!n_pre) return true;
  if (!fir_node_is(b->nodes[0], "", "Split") || s->alias[0]) return false;
  for (int i = 1; i < n_pre; i++)
    if (!s->alias[i]) return false;
  return true;
}

/* The call's arguments read off the lowered body (first[i]: body node i's
 * first step; first[n_nodes]: the steps' end; the attention's three nodes
 * last, after n_pre nodes of a Split and its views): NULL, or why the body is
 * not attention as the call computes it. */
static const char *attention_call(const ops_ctx_t *c, const fir_graph_t *b, const ops_seq_t *s, const int *first,
                           call_args_t *a) {
  int n_pre = b->n_nodes - 3;
  if (!split_prefix(b, s, n_pre)) return "the nodes before the attention's are not a Split and views of its parts";
  first += n_pre;
  fir_node_t *const *tri = b->nodes + n_pre;
  const ops_ctx_t *const *sub = (const ops_ctx_t *const *)s->sub + n_pre;
  gemm_view_t g1, g2;
  if (first[1] - first[0] != 1 || first[3] - first[2] != 1 || !gemm_of(&c->steps[first[0]], &g1) ||
      !gemm_of(&c->steps[first[2]], &g2))
    return "the products are not one gemm call each";
  const fir_value_t *sv = tri[0]->outputs[0], *pv = tri[1]->outputs[0], *mask;
  /* the softmax node seen with the fused node's own inputs (its constants are initializers there) */
  fir_node_t sn = *tri[1];
  fir_value_t *sins[8];
  if (sn.n_inputs > 8) return "the middle node has more than 8 inputs";
  for (int j = 0; j < sn.n_inputs; j++) sins[j] = (fir_value_t *)ops_seq_outer(b, c->node, sn.inputs[j]);
  sn.inputs = sins;
  bool guard;
  if (!softmax_form(&sn, sv, &mask, &guard) || tri[2]->outputs[0] != b->outputs[0]) return "the middle node is not a softmax over the last axis with an added mask";
  ops_bind_t q = call_bind(&g1, 0), k = call_bind(&g1, 1), v = call_bind(&g2, 1);
  if ((q.kind != OPS_BIND_INPUT && q.kind != OPS_BIND_TEMP) || (k.kind != OPS_BIND_INPUT && k.kind != OPS_BIND_TEMP) ||
      (v.kind != OPS_BIND_INPUT && v.kind != OPS_BIND_TEMP) ||
      !bind_is(call_bind(&g1, 2), OPS_BIND_TEMP, s->where[sv->id].index) ||
      s->where[sv->id].kind != OPS_BIND_TEMP || s->where[pv->id].kind != OPS_BIND_TEMP ||
      !bind_is(call_bind(&g2, 0), OPS_BIND_TEMP, s->where[pv->id].index) ||
      !bind_is(call_bind(&g2, 2), OPS_BIND_OUTPUT, 0))
    return "the calls do not read the query, key and value and hand on the scores and probabilities";
  a->m = -1;
  for (int j = 0; mask && j < c->n_in; j++)
    if (c->node->inputs[j] == mask) a->m = j;
  if (mask && a->m < 0) return "the mask is not an input of the node";
  /* one dtype, f32 or f16 (the Split's parts: its input's) */
  flagos_dtype_t dt = c->out[0].dtype;
  const ops_tensor_info_t *S = &sub[0]->out[0];
  if ((dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT16) || S->dtype != dt || sub[1]->out[0].dtype != dt ||
      (a->m >= 0 && c->in[a->m].dtype != dt) || (n_pre && s->sub[0]->in[0].dtype != dt))
    return "the tensors are not all f32 or all f16";
  /* the scores [.., Sq, Sk]: g1's Y, packed; the probabilities g2's A, packed */
  int64_t batch = g1.i[G_BATCH], sq = g1.i[G_M], sk = g1.i[G_N], d = g1.i[G_K], dv = g2.i[G_N];
  int r = S->rank;
  if (r < 2 || r > 4 || S->dims[r - 2] != sq || S->dims[r - 1] != sk || S->numel != batch * sq * sk) return "the scores are not [.., Sq, Sk] of the scores product";
  if (g1.i[G_TA] || (g1.i[G_LDY] && g1.i[G_LDY] != sk) || (batch > 1 && g1.i[G_SY] != sq * sk)) return "the scores product does not read the query as rows or write packed scores";
  if (g2.i[G_BATCH] != batch || g2.i[G_M] != sq || g2.i[G_K] != sk || g2.i[G_TA] ||
      (g2.i[G_LDA] && g2.i[G_LDA] != sk) || (batch > 1 && g2.i[G_SA] != sq * sk))
    return "the context product does not read packed probabilities";
  int64_t *x = a->ints;
  x[A_BATCH] = batch;
  x[A_SQ] = sq;
  x[A_SK] = sk;
  x[A_D] = d;
  x[A_DV] = dv;
  x[A_SQS] = g1.i[G_SA];
  x[A_LDQ] = g1.i[G_LDA] ? g1.i[G_LDA] : d;
  x[A_TK] = g1.i[G_TB] != 0;
  x[A_SKS] = g1.i[G_SB];
  x[A_LDK] = g1.i[G_LDB] ? g1.i[G_LDB] : x[A_TK] ? d : sk;
  x[A_TV] = g2.i[G_TB] != 0;
  x[A_SVS] = g2.i[G_SB];
  x[A_LDV] = g2.i[G_LDB] ? g2.i[G_LDB] : x[A_TV] ? sk : dv;
  x[A_SYS] = g2.i[G_SY];
  x[A_LDY] = g2.i[G_LDY] ? g2.i[G_LDY] : dv;
  int64_t ms[4] = {0, 0, 0, 0};
  if (a->m >= 0 && !mask_strides(&c->in[a->m], S, ms)) return "the mask does not broadcast to the scores";
  /* the batch index splits as (b, h) over the scores' leading dims */
  x[A_H] = r == 4 ? S->dims[1] : r == 3 ? S->dims[0] : 1;
  x[A_MB] = r == 4 ? ms[0] : 0;
  x[A_MH] = r == 4 ? ms[1] : r == 3 ? ms[0] : 0;
  x[A_MI] = ms[r - 2];
  x[A_MJ] = ms[r - 1];
  x[A_GUARD] = guard;
  /* the operands as the call reads them: the node's inputs, or the Split's input in place */
  const char *why;
  if ((why = operand_in_place(c, b, s, n_pre, &q, &x[A_OFFQ], &x[A_SQS], batch, &x[A_LDQ], sq, d)) ||
      (why = operand_in_place(c, b, s, n_pre, &k, &x[A_OFFK], &x[A_SKS], batch, &x[A_LDK], x[A_TK] ? sk : d,
                              x[A_TK] ? d : sk)) ||
      (why = operand_in_place(c, b, s, n_pre, &v, &x[A_OFFV], &x[A_SVS], batch, &x[A_LDV], x[A_TV] ? dv : sk,
                              x[A_TV] ? sk : dv)))
    return why;
  a->q = q.index;
  a->k = k.index;
  a->v = v.index;
  if (c->in[a->q].dtype != dt || c->in[a->k].dtype != dt || c->in[a->v].dtype != dt)
    return "the tensors are not all f32 or all f16";
  a->n_ints = x[A_OFFQ] || x[A_OFFK] || x[A_OFFV] || n_pre ? A_NINTS_OFF : A_NINTS;
  a->alpha[0] = g1.alpha;
  a->alpha[1] = g2.alpha;
  return NULL;
}

/* The kernel of no points that carries the call, made the node's first step
 * (no stores: it only names the call's buffers). */
static void call_kernel(ops_ctx_t *c, const call_args_t *a) {
  kir_kernel_t *kk = ops_kernel(c, "attention");
  /* a kernel buffer an input (the query, key and value may be one: the Split's input) */
  int ins[4] = {a->q, a->k, a->v, a->m}, bufs[5] = {0, 0, 0, ops_buf_out(c, kk, 0), 0};
  for (int i = 0; i < 4; i++) {
    if (ins[i] < 0) continue;
    int j = 0;
    while (j < i && ins[j] != ins[i]) j++;
    bufs[i < 3 ? i : 4] = j < i ? bufs[j] : ops_buf_in(c, kk, ins[i]);
  }
  kir_expr_t *ext = kir_i64(AR, 0), *var;
  kir_set_space(kk, 1, &ext, &var);
  kir_expr_t *ints[A_NINTS_OFF];
  for (int i = 0; i < a->n_ints; i++) ints[i] = kir_i64(AR, a->ints[i]);
  kir_set_libcall(kk, "attention", a->m >= 0 ? 5 : 4, bufs, a->n_ints, ints, 2, a->alpha);
  ops_seq_call_first(c, NULL, 0, 0);
}

static flagos_status_t lower_body(ops_ctx_t *c, const char **why_not) {
  const fir_graph_t *b = body_of(c);
  if (!b)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs a graph attribute '%s' of three nodes or more", OPS_FUSED_BODY);
  ops_seq_t s;
  int *first = fl_arena_alloc(AR, sizeof(int) * (size_t)(b->n_nodes + 1));
  FL_TRY(ops_seq_lower_all(c, b, &s, first));
  call_args_t a;
  *why_not = ops_seq_call_on("FLAGOS_ATTENTION_CALL") ? attention_call(c, b, &s, first, &a) : "FLAGOS_ATTENTION_CALL=0";
  if (!*why_not) call_kernel(c, &a);
  return NULL;
}

static flagos_status_t lower_attention(ops_ctx_t *c) {
  const char *why_not;
  return lower_body(c, &why_not);
}

const char *ops_attention_why_not(fl_arena_t *a, const fir_node_t *n) { return ops_seq_trial(a, n, lower_body); }

const ops_def_t ops_family_attention_fused[] = {
    {.op_type = OPS_ATTENTION_OP, .domain = OPS_FUSED_DOMAIN, .infer = infer_attention, .lower = lower_attention,
     .flops = ops_seq_flops},
    {.op_type = NULL},
};
