/* Family extra2: FlexAttention (ai.onnx.preview) here, TfIdfVectorizer in
 * extra2_tfidf.c; this file holds the family table.
 *
 * FlexAttention: Q [B, Hq, L, E], K [B, Hkv, S, E], V [B, Hkv, S, Ev] -> Y [B, Hq, L, Ev]
 *   T = score_mod((Q*sqrt(scale)) . (K*sqrt(scale)))   scores, softmax precision
 *   M = max_s T, Z = sum_s exp(T - M)                    row statistics
 *   Y = sum_s prob_mod(exp(T - M) / Z) * V               in softmax precision, cast back
 * Query head h reads key/value head h / (Hq / Hkv) (grouped-query attention).
 * Rounding follows ONNX's function body: sqrt(scale) is computed in float32 and
 * cast to the input type, Q and K are scaled in the input type, the product is
 * rounded to the input type, then everything after runs in the softmax precision
 * (float32, or float64 for double inputs, unless softmax_precision says otherwise).
 * The modifier subgraphs are inlined into the kernels' expressions by the
 * translator of extra2_subgraph.c: each score or probability element is the
 * subgraph's output at that position.
 *
 * params: 0 B, 1 Hq, 2 Hkv, 3 L, 4 S, 5 E, 6 Ev. */
#include <math.h>
#include <string.h>

#include "ops/extra2_subgraph.h"

#define AR (c->arena)

enum { F_B, F_HQ, F_HKV, F_L, F_S, F_E, F_EV, F_NPARAMS };

flagos_status_t ops_x2_tfidf_infer(ops_ctx_t *c);
flagos_status_t ops_x2_tfidf_lower(ops_ctx_t *c);
double ops_x2_tfidf_flops(const ops_ctx_t *c);

static const fir_graph_t *graph_attr(const ops_ctx_t *c, const char *name) {
  const fir_attr_t *a = fir_node_attr(c->node, name);
  return a && a->kind == FIR_ATTR_GRAPH ? a->g : NULL;
}

static flagos_status_t flex_precision(const ops_ctx_t *c, flagos_dtype_t dt, flagos_dtype_t *sp) {
  int64_t p = fir_attr_int(c->node, "softmax_precision", 0);
  if (p == 0) {
    *sp = dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
    return NULL;
  }
  if (p != FLAGOS_FLOAT32 && p != FLAGOS_FLOAT64 && p != FLAGOS_FLOAT16 && p != FLAGOS_BFLOAT16)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "softmax_precision %lld is not a floating-point type", (long long)p);
  *sp = (flagos_dtype_t)p;
  return NULL;
}

/* ---- modifier subgraphs ---- */

/* What a modifier sees as its input element: one callback per use site. */
typedef struct flex_elem {
  kir_expr_t *(*fn)(struct flex_elem *fe, kir_expr_t *const *idx);
  ops_ctx_t *c;
  kir_kernel_t *kk;
  int buf;
  int bm, bz; /* row max and sum (probabilities) */
  flagos_dtype_t sp;
  kir_expr_t *dummy;
} flex_elem_t;

static kir_expr_t *flex_cb(void *user, int input, kir_expr_t *const *idx) {
  (void)input;
  flex_elem_t *fe = user;
  return fe->fn(fe, idx);
}

static kir_expr_t *elem_dummy(flex_elem_t *fe, kir_expr_t *const *idx) {
  (void)idx;
  return fe->dummy;
}

/* mod(x) at idx = (b, h, l, s) of a tensor of dims [B, Hq, L, S]; x itself when
 * the node has no such subgraph. */
static flagos_status_t apply_mod(ops_ctx_t *c, const char *name, flex_elem_t *fe, kir_expr_t *const *dims,
                                 kir_expr_t *const *idx, kir_expr_t **res) {
  const fir_graph_t *g = graph_attr(c, name);
  if (!g) {
    *res = fe->fn(fe, idx);
    return NULL;
  }
  ops_sg_input_t in = {.dtype = fe->sp, .rank = 4, .elem = flex_cb, .user = fe};
  for (int i = 0; i < 4; i++) in.dims[i] = dims[i];
  return ops_sg_inline(c, g, name, 1, &in, 0, 4, idx, fe->sp, res);
}

/* ---- shape rule ---- */

static flagos_status_t flex_infer(ops_ctx_t *c) {
  if (c->n_in != 3) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects Q, K and V, got %d inputs", c->n_in);
  for (int k = 0; k < 3; k++)
    if (!ops_has_in(c, k) || c->in[k].kind != FIR_TYPE_TENSOR)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d (Q, K, V) must be a tensor", k);
  const ops_tensor_info_t *Q = &c->in[0], *K = &c->in[1], *V = &c->in[2];
  flagos_dtype_t dt = Q->dtype, sp = FLAGOS_FLOAT32;
  if (!flagos_dtype_is_float(dt))
    return ops_err(c, FLAGOS_ERR_SHAPE, "Q must be floating point, got %s", flagos_dtype_name(dt));
  if (K->dtype != dt || V->dtype != dt) return ops_err(c, FLAGOS_ERR_SHAPE, "Q, K and V must share one dtype");
  if (Q->rank != 4 || K->rank != 4 || V->rank != 4)
    return ops_err(c, FLAGOS_ERR_SHAPE, "Q, K and V must be 4-D (got ranks %d, %d, %d)", Q->rank, K->rank, V->rank);
  FL_TRY(flex_precision(c, dt, &sp));
  int64_t *p = c->params;
  c->n_params = F_NPARAMS;
  p[F_B] = Q->dims[0];
  p[F_HQ] = Q->dims[1];
  p[F_HKV] = K->dims[1];
  p[F_L] = Q->dims[2];
  p[F_S] = K->dims[2];
  p[F_E] = Q->dims[3];
  p[F_EV] = V->dims[3];
#define KNOWN_NE(x, y) ((x) >= 0 && (y) >= 0 && (x) != (y))
  if (KNOWN_NE(K->dims[0], p[F_B]) || KNOWN_NE(V->dims[0], p[F_B]))
    return ops_err(c, FLAGOS_ERR_SHAPE, "Q, K and V differ in batch size");
  if (KNOWN_NE(K->dims[3], p[F_E]))
    return ops_err(c, FLAGOS_ERR_SHAPE, "K's head size %lld differs from Q's %lld", (long long)K->dims[3],
                   (long long)p[F_E]);
  if (KNOWN_NE(V->dims[1], p[F_HKV]) || KNOWN_NE(V->dims[2], p[F_S]))
    return ops_err(c, FLAGOS_ERR_SHAPE, "K and V differ in heads or sequence length");
#undef KNOWN_NE
  if (p[F_HQ] >= 0 && p[F_HKV] > 0 && p[F_HQ] % p[F_HKV] != 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "q_num_heads (%lld) must be a multiple of kv_num_heads (%lld)",
                   (long long)p[F_HQ], (long long)p[F_HKV]);
  if (p[F_HKV] == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "K has no heads");
  /* Translate the modifiers now, on placeholder scores, so that an operator the
   * translator cannot inline fails at compile time with its name. */
  for (int i = 0; i < c->node->n_attrs; i++) {
    const fir_attr_t *at = &c->node->attrs[i];
    if (at->kind != FIR_ATTR_GRAPH) continue;
    if (strcmp(at->name, "score_mod") != 0 && strcmp(at->name, "prob_mod") != 0)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "unknown subgraph attribute '%s'", at->name);
    flex_elem_t fe = {.fn = elem_dummy, .c = c, .sp = sp, .dummy = kir_const(AR, sp, 0.0)};
    kir_expr_t *idx[4], *dims[4], *res = NULL;
    int map[4] = {F_B, F_HQ, F_L, F_S};
    for (int d = 0; d < 4; d++) {
      idx[d] = kir_var(AR, d);
      dims[d] = p[map[d]] >= 0 ? kir_i64(AR, p[map[d]]) : kir_sym(AR, 0);
    }
    FL_TRY(apply_mod(c, at->name, &fe, dims, idx, &res));
  }
  int64_t y[4] = {p[F_B], p[F_HQ], p[F_L], p[F_EV]};
  ops_set_out(c, 0, dt, 4, y);
  return NULL;
}

/* ---- lowering ---- */

static kir_expr_t *elem_scores_dot(flex_elem_t *fe, kir_expr_t *const *idx);

typedef struct flex {
  ops_ctx_t *c;
  flagos_dtype_t dt, ct, sp, spc; /* input, its compute type, softmax precision, its compute type */
  kir_expr_t *prm[F_NPARAMS];
  kir_expr_t *sq;  /* sqrt(scale) in the input type, as ct */
  kir_expr_t *rep; /* Hq / Hkv */
  int bq, bk;      /* buffers in the scores kernel */
} flex_t;

/* sqrt(scale), computed as the function body does: in float32, then cast to the input type. */
static kir_expr_t *sqrt_scale(flex_t *f) {
  ops_ctx_t *c = f->c;
  const fir_attr_t *sa = fir_node_attr(c->node, "scale");
  kir_expr_t *s;
  if (sa) {
    s = kir_const(AR, FLAGOS_FLOAT32, (double)sqrtf(sa->f));
  } else if (f->prm[F_E]->kind == KIR_CONST) {
    float sc = 1.0f / sqrtf((float)f->prm[F_E]->ci);
    s = kir_const(AR, FLAGOS_FLOAT32, (double)sqrtf(sc));
  } else {
    kir_expr_t *e = kir_cast(AR, FLAGOS_FLOAT32, f->prm[F_E]);
    s = kir_un(AR, KIR_SQRT, kir_bin(AR, KIR_DIV, kir_const(AR, FLAGOS_FLOAT32, 1.0), kir_un(AR, KIR_SQRT, e)));
  }
  return kir_cast(AR, f->ct, kir_cast(AR, f->dt, s));
}

static kir_expr_t *rnd(flex_t *f, kir_expr_t *x) {
  return kir_cast(f->c->arena, f->ct, kir_cast(f->c->arena, f->dt, x));
}

typedef struct flex_scores {
  flex_elem_t fe;
  flex_t *f;
  kir_kernel_t *kk;
} flex_scores_t;

/* The raw scaled score at (b, h, l, s), rounded to the input type and cast to the softmax precision. */
static kir_expr_t *elem_scores_dot(flex_elem_t *fe, kir_expr_t *const *idx) {
  flex_scores_t *fs = (flex_scores_t *)fe;
  flex_t *f = fs->f;
  ops_ctx_t *c = f->c;
  kir_kernel_t *kk = fs->kk;
  int ev = kir_new_var(kk);
  kir_expr_t *e = kir_var(AR, ev);
  kir_expr_t *hk = kir_bin(AR, KIR_DIV, idx[1], f->rep);
  kir_expr_t *qi[4] = {idx[0], idx[1], idx[2], e}, *ki[4] = {idx[0], hk, idx[3], e};
  kir_expr_t *q = rnd(f, kir_bin(AR, KIR_MUL, kir_cast(AR, f->ct, kir_load(kk, f->bq, qi)), f->sq));
  kir_expr_t *k = rnd(f, kir_bin(AR, KIR_MUL, kir_cast(AR, f->ct, kir_load(kk, f->bk, ki)), f->sq));
  kir_expr_t *dot = kir_reduce(AR, KIR_RSUM, 1, &ev, &f->prm[F_E], kir_bin(AR, KIR_MUL, q, k));
  return kir_cast(AR, f->sp, rnd(f, dot));
}

static kir_expr_t *elem_probs(flex_elem_t *fe, kir_expr_t *const *idx) {
  ops_ctx_t *c = fe->c;
  flagos_dtype_t spc = kir_compute_dtype(fe->sp);
  kir_expr_t *t = kir_cast(AR, spc, kir_load(fe->kk, fe->buf, idx));
  kir_expr_t *m = kir_load(fe->kk, fe->bm, idx), *z = kir_load(fe->kk, fe->bz, idx);
  kir_expr_t *p = kir_bin(AR, KIR_DIV, kir_un(AR, KIR_EXP, kir_bin(AR, KIR_SUB, t, m)), z);
  return kir_cast(AR, fe->sp, p);
}

static kir_kernel_t *temp_kernel(ops_ctx_t *c, const char *name, int t, int *tb, kir_expr_t **v) {
  kir_kernel_t *kk = ops_kernel(c, name);
  *tb = ops_buf_temp(c, kk, t);
  kir_set_space(kk, kk->bufs[*tb].rank, kk->bufs[*tb].dims, v);
  return kk;
}

static flagos_status_t flex_lower(ops_ctx_t *c) {
  flex_t f = {.c = c, .dt = c->in[0].dtype};
  f.ct = kir_compute_dtype(f.dt);
  FL_TRY(flex_precision(c, f.dt, &f.sp));
  f.spc = kir_compute_dtype(f.sp);
  for (int i = 0; i < F_NPARAMS; i++) f.prm[i] = ops_param(c, i);
  f.sq = sqrt_scale(&f);
  f.rep = kir_bin(AR, KIR_DIV, f.prm[F_HQ], f.prm[F_HKV]);
  kir_expr_t *v[4];
  kir_expr_t *tdims[4] = {f.prm[F_B], f.prm[F_HQ], f.prm[F_L], f.prm[F_S]};
  int tT = ops_temp(c, f.sp, 4, tdims), tM = ops_temp(c, f.spc, 3, tdims), tZ = ops_temp(c, f.spc, 3, tdims);
  int bT, bM, bZ;
  int tP = ops_temp(c, f.sp, 4, tdims);
  int bP;
  /* T: scores after score_mod. */
  {
    kir_kernel_t *kk = temp_kernel(c, "scores", tT, &bT, v);
    f.bq = ops_buf_in(c, kk, 0);
    f.bk = ops_buf_in(c, kk, 1);
    flex_scores_t fs = {.fe = {.fn = elem_scores_dot, .c = c, .kk = kk, .sp = f.sp}, .f = &f, .kk = kk};
    kir_expr_t *t = NULL;
    FL_TRY(apply_mod(c, "score_mod", &fs.fe, tdims, v, &t));
    kir_store(kk, bT, v, t, NULL);
  }
  /* Row max and sum of exponentials. */
  {
    kir_kernel_t *kk = temp_kernel(c, "rowmax", tM, &bM, v);
    bT = ops_buf_temp(c, kk, tT);
    int sv = kir_new_var(kk);
    kir_expr_t *ti[4] = {v[0], v[1], v[2], kir_var(AR, sv)};
    kir_store(kk, bM, v, kir_reduce(AR, KIR_RMAX, 1, &sv, &f.prm[F_S], kir_cast(AR, f.spc, kir_load(kk, bT, ti))),
              NULL);
  }
  {
    kir_kernel_t *kk = temp_kernel(c, "rowsum", tZ, &bZ, v);
    bT = ops_buf_temp(c, kk, tT);
    bM = ops_buf_temp(c, kk, tM);
    int sv = kir_new_var(kk);
    kir_expr_t *ti[4] = {v[0], v[1], v[2], kir_var(AR, sv)};
    kir_expr_t *e =
        kir_un(AR, KIR_EXP, kir_bin(AR, KIR_SUB, kir_cast(AR, f.spc, kir_load(kk, bT, ti)), kir_load(kk, bM, v)));
    kir_store(kk, bZ, v, kir_reduce(AR, KIR_RSUM, 1, &sv, &f.prm[F_S], e), NULL);
  }
  /* P = prob_mod(softmax(T)), into its own buffer: a modifier may read T at other positions. */
  {
    kir_kernel_t *kk = temp_kernel(c, "probs", tP, &bP, v);
    bT = ops_buf_temp(c, kk, tT);
    bM = ops_buf_temp(c, kk, tM);
    bZ = ops_buf_temp(c, kk, tZ);
    flex_elem_t fe = {.fn = elem_probs, .c = c, .kk = kk, .buf = bT, .sp = f.sp, .bm = bM, .bz = bZ};
    kir_expr_t *p = NULL;
    FL_TRY(apply_mod(c, "prob_mod", &fe, tdims, v, &p));
    kir_store(kk, bP, v, p, NULL);
  }
  /* Y = P . V in the softmax precision, cast back to the input type. */
  {
    kir_kernel_t *kk = ops_out_kernel(c, 0, "output", v);
    bP = ops_buf_temp(c, kk, tP);
    int bv = ops_buf_in(c, kk, 2);
    int sv = kir_new_var(kk);
    kir_expr_t *s = kir_var(AR, sv);
    kir_expr_t *pi[4] = {v[0], v[1], v[2], s};
    kir_expr_t *vi[4] = {v[0], kir_bin(AR, KIR_DIV, v[1], f.rep), s, v[3]};
    kir_expr_t *vv = kir_cast(AR, f.spc, kir_cast(AR, f.sp, kir_load(kk, bv, vi)));
    kir_expr_t *pv = kir_cast(AR, f.spc, kir_load(kk, bP, pi));
    kir_expr_t *y = kir_reduce(AR, KIR_RSUM, 1, &sv, &f.prm[F_S], kir_bin(AR, KIR_MUL, pv, vv));
    kir_store(kk, 0, v, kir_cast(AR, f.dt, y), NULL);
  }
  return NULL;
}

static double flex_flops(const ops_ctx_t *c) {
  const int64_t *p = c->params;
  double rows = (double)p[F_B] * (double)p[F_HQ] * (double)p[F_L] * (double)p[F_S];
  return rows * (2.0 * (double)p[F_E] + 2.0 * (double)p[F_EV] + 5.0);
}

const ops_def_t ops_family_extra2[] = {
    {"FlexAttention", "ai.onnx.preview", 0, flex_infer, flex_lower, flex_flops},
    {"TfIdfVectorizer", "", 0, ops_x2_tfidf_infer, ops_x2_tfidf_lower, ops_x2_tfidf_flops},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
