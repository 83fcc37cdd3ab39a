/* Attention (opset 23+) and RotaryEmbedding.
 *
 * Attention runs as a short pipeline of kernels over scratch buffers of shape
 * [B, Hq, Sq, T] (T = past + new keys):
 *   S = softcap(Q*sqrt(scale) . K*sqrt(scale))           scores
 *   X = S + bias (mask, causal frontier, window, padding)  softmax input
 *   M = max_j X, Z = "every key masked" per row            row stats
 *   L = sum_j exp(X - M)
 *   S <- P = exp(X - M) / L, zero where Z                  probabilities
 *   Y = P . V
 * plus the present key/value concatenations and the optional qk output. Keys
 * and values are read through the past/new concatenation and the 3-D
 * [B, S, H*D] layout directly, so nothing is reshaped in memory. Rounding
 * follows ONNX's reference: Q and K are scaled in their own precision and the
 * probabilities are cast to it before the product with V.
 *
 * params: 0 B, 1 Hq, 2 Hkv, 3 Sq, 4 Skv, 5 P (past), 6 T, 7 Dh, 8 Dv. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

#define AR (c->arena)

enum { A_B, A_HQ, A_HKV, A_SQ, A_SKV, A_P, A_T, A_DH, A_DV, A_NPARAMS };
enum { IN_Q, IN_K, IN_V, IN_MASK, IN_PK, IN_PV, IN_NONPAD };

static bool has_out(const ops_ctx_t *c, int k) { return k < c->node->n_outputs && c->node->outputs[k] != NULL; }

static flagos_status_t attn_infer(ops_ctx_t *c) {
  for (int k = 0; k < 3; k++)
    if (!ops_has_in(c, k)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "inputs Q, K and V are required");
  const ops_tensor_info_t *Q = &c->in[IN_Q], *K = &c->in[IN_K], *V = &c->in[IN_V];
  flagos_dtype_t dt = Q->dtype;
  if (!flagos_dtype_is_float(dt)) return ops_err(c, FLAGOS_ERR_SHAPE, "Q must be floating point");
  if (K->dtype != dt || V->dtype != dt) return ops_err(c, FLAGOS_ERR_SHAPE, "Q, K and V must share one dtype");
  int r = Q->rank;
  if ((r != 3 && r != 4) || K->rank != r || V->rank != r)
    return ops_err(c, FLAGOS_ERR_SHAPE, "Q, K and V must all be 3-D or all 4-D (got ranks %d, %d, %d)", Q->rank,
                   K->rank, V->rank);
  if (ops_has_in(c, IN_PK) != ops_has_in(c, IN_PV))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "past_key and past_value must be given together");
  if (ops_has_in(c, IN_NONPAD) && ops_has_in(c, IN_PK))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "nonpad_kv_seqlen cannot be combined with past_key/past_value");
  int64_t *p = c->params;
  c->n_params = A_NPARAMS;
  p[A_B] = Q->dims[0];
  if (r == 4) {
    p[A_HQ] = Q->dims[1];
    p[A_HKV] = K->dims[1];
    p[A_SQ] = Q->dims[2];
    p[A_SKV] = K->dims[2];
    p[A_DH] = Q->dims[3];
    p[A_DV] = V->dims[3];
  } else {
    int64_t hq = fir_attr_int(c->node, "q_num_heads", 0), hkv = fir_attr_int(c->node, "kv_num_heads", 0);
    if (hq < 1 || hkv < 1)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "3-D inputs need the q_num_heads and kv_num_heads attributes");
    p[A_HQ] = hq;
    p[A_HKV] = hkv;
    p[A_SQ] = Q->dims[1];
    p[A_SKV] = K->dims[1];
    if (Q->dims[2] >= 0 && Q->dims[2] % hq) return ops_err(c, FLAGOS_ERR_SHAPE, "Q hidden size not a multiple of q_num_heads");
    if (V->dims[2] >= 0 && V->dims[2] % hkv) return ops_err(c, FLAGOS_ERR_SHAPE, "V hidden size not a multiple of kv_num_heads");
    p[A_DH] = Q->dims[2] >= 0 ? Q->dims[2] / hq : -1;
    p[A_DV] = V->dims[2] >= 0 ? V->dims[2] / hkv : -1;
    if (K->dims[2] >= 0 && p[A_DH] >= 0 && K->dims[2] != p[A_DH] * hkv)
      return ops_err(c, FLAGOS_ERR_SHAPE, "K hidden size %lld is not kv_num_heads x head size %lld",
                     (long long)K->dims[2], (long long)p[A_DH]);
  }
  if (p[A_HQ] >= 0 && p[A_HKV] > 0 && p[A_HQ] % p[A_HKV] != 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "q heads (%lld) must be a multiple of kv heads (%lld)", (long long)p[A_HQ],
                   (long long)p[A_HKV]);
  p[A_P] = 0;
  if (ops_has_in(c, IN_PK)) {
    const ops_tensor_info_t *PK = &c->in[IN_PK], *PV = &c->in[IN_PV];
    if (PK->rank != 4 || PV->rank != 4) return ops_err(c, FLAGOS_ERR_SHAPE, "past_key and past_value must be 4-D");
    if (PK->dtype != dt || PV->dtype != dt) return ops_err(c, FLAGOS_ERR_SHAPE, "past_key/past_value dtype differs from Q");
    p[A_P] = PK->dims[2];
  }
  p[A_T] = p[A_P] >= 0 && p[A_SKV] >= 0 ? p[A_P] + p[A_SKV] : -1;
  if (ops_has_in(c, IN_MASK)) {
    const ops_tensor_info_t *M = &c->in[IN_MASK];
    if (M->rank < 1 || M->rank > 4) return ops_err(c, FLAGOS_ERR_SHAPE, "attn_mask must have rank 1 to 4");
    if (M->dtype != FLAGOS_BOOL && M->dtype != dt)
      return ops_err(c, FLAGOS_ERR_SHAPE, "attn_mask must be bool or %s (got %s)", flagos_dtype_name(dt),
                     flagos_dtype_name(M->dtype));
    int64_t lm = M->dims[M->rank - 1];
    if (lm >= 0 && p[A_T] >= 0 && lm > p[A_T])
      return ops_err(c, FLAGOS_ERR_SHAPE, "attn_mask's last dim %lld exceeds the total sequence length %lld",
                     (long long)lm, (long long)p[A_T]);
  }
  if (ops_has_in(c, IN_NONPAD) && c->in[IN_NONPAD].dtype != FLAGOS_INT64)
    return ops_err(c, FLAGOS_ERR_SHAPE, "nonpad_kv_seqlen must be int64");
  int64_t sp = fir_attr_int(c->node, "softmax_precision", 0);
  if (sp != 0 && sp != FLAGOS_FLOAT32 && sp != FLAGOS_FLOAT16 && sp != FLAGOS_FLOAT64 && sp != FLAGOS_BFLOAT16)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "softmax_precision %lld is not a float type", (long long)sp);
  int64_t mode = fir_attr_int(c->node, "qk_matmul_output_mode", 0);
  if (mode < 0 || mode > 3) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "qk_matmul_output_mode must be 0 to 3");

  int64_t d[4];
  if (r == 4) {
    int64_t y[4] = {p[A_B], p[A_HQ], p[A_SQ], p[A_DV]};
    memcpy(d, y, sizeof y);
  } else {
    int64_t y[3] = {p[A_B], p[A_SQ], p[A_DV] >= 0 ? p[A_HQ] * p[A_DV] : -1};
    memcpy(d, y, sizeof y);
  }
  ops_set_out(c, 0, dt, r, d);
  int64_t pk[4] = {p[A_B], p[A_HKV], p[A_T], p[A_DH]}, pv[4] = {p[A_B], p[A_HKV], p[A_T], p[A_DV]};
  int64_t qk[4] = {p[A_B], p[A_HQ], p[A_SQ], p[A_T]};
  if (has_out(c, 1)) ops_set_out(c, 1, dt, 4, pk);
  if (has_out(c, 2)) ops_set_out(c, 2, dt, 4, pv);
  if (has_out(c, 3)) ops_set_out(c, 3, dt, 4, qk);
  return NULL;
}

static double attn_flops(const ops_ctx_t *c) {
  const int64_t *p = c->params;
  for (int i = 0; i < A_NPARAMS; i++)
    if (p[i] < 0) return 0;
  /* docs/eaf.md: Q.K^T and P.V (2 per multiply-add) and the softmax (5 per score);
   * masks, scale and softcap are not counted. */
  double scores = (double)p[A_B] * (double)p[A_HQ] * (double)p[A_SQ] * (double)p[A_T];
  return scores * (2.0 * (double)(p[A_DH] + p[A_DV]) + 5.0);
}

typedef struct attn {
  ops_ctx_t *c;
  int rank;
  flagos_dtype_t dt, ct, sp; /* input type, compute type, softmax type */
  kir_expr_t *prm[A_NPARAMS];
  kir_expr_t *scale; /* sqrt(scale) rounded to dt, in ct */
} attn_t;

/* Q element (b, h, i, d) as ct, scaled. */
static kir_expr_t *load_q(attn_t *a, kir_kernel_t *kk, int buf, kir_expr_t *b, kir_expr_t *h, kir_expr_t *i,
                          kir_expr_t *d) {
  ops_ctx_t *c = a->c;
  kir_expr_t *idx[4] = {b, h, i, d};
  if (a->rank == 3) {
    idx[1] = i;
    idx[2] = kir_add(AR, kir_mul(AR, h, a->prm[A_DH]), d);
  }
  kir_expr_t *x = kir_bin(AR, KIR_MUL, kir_cast(AR, a->ct, kir_load(kk, buf, idx)), a->scale);
  return kir_cast(AR, a->ct, kir_cast(AR, a->dt, x));
}

/* Key or value element (b, hk, j, d) of the past/new concatenation, as stored. */
static kir_expr_t *load_kv(attn_t *a, kir_kernel_t *kk, int bnew, int bpast, kir_expr_t *b, kir_expr_t *hk,
                           kir_expr_t *j, kir_expr_t *d, kir_expr_t *hsize) {
  ops_ctx_t *c = a->c;
  kir_expr_t *jn = bpast >= 0 ? kir_sub(AR, j, a->prm[A_P]) : j;
  kir_expr_t *idx[4] = {b, hk, jn, d};
  if (a->rank == 3) {
    idx[1] = jn;
    idx[2] = kir_add(AR, kir_mul(AR, hk, hsize), d);
  }
  kir_expr_t *x = kir_load(kk, bnew, idx);
  if (bpast < 0) return x;
  kir_expr_t *pidx[4] = {b, hk, j, d};
  return kir_select(AR, kir_bin(AR, KIR_LT, j, a->prm[A_P]), kir_load(kk, bpast, pidx), x);
}

/* The additive bias at (b, h, i, j) in ct: 0 or the float mask value where key j
 * is visible to query i, -inf elsewhere. */
static kir_expr_t *bias(attn_t *a, kir_kernel_t *kk, kir_expr_t *b, kir_expr_t *h, kir_expr_t *i, kir_expr_t *j) {
  ops_ctx_t *c = a->c;
  kir_expr_t *ok = kir_bool(AR, true);
  kir_expr_t *val = kir_const(AR, a->ct, 0.0);
  kir_expr_t *nonpad = NULL;
  if (ops_has_in(c, IN_NONPAD)) {
    int bn = ops_buf_in(c, kk, IN_NONPAD);
    kir_expr_t *bi[1] = {b};
    nonpad = kir_load(kk, bn, bi);
    ok = kir_bin(AR, KIR_AND, ok, kir_bin(AR, KIR_LT, j, nonpad));
  }
  kir_expr_t *offset = ops_has_in(c, IN_PK) ? a->prm[A_P] : nonpad ? kir_sub(AR, nonpad, a->prm[A_SQ]) : kir_i64(AR, 0);
  kir_expr_t *qpos = kir_add(AR, i, offset);
  if (fir_attr_int(c->node, "is_causal", 0)) ok = kir_bin(AR, KIR_AND, ok, kir_bin(AR, KIR_LE, j, qpos));
  if (c->opset >= 25) {
    int64_t lw = fir_attr_int(c->node, "left_window_size", -1), rw = fir_attr_int(c->node, "right_window_size", -1);
    kir_expr_t *diff = kir_sub(AR, qpos, j);
    if (lw >= 0) ok = kir_bin(AR, KIR_AND, ok, kir_bin(AR, KIR_LE, diff, kir_i64(AR, lw)));
    if (rw >= 0) ok = kir_bin(AR, KIR_AND, ok, kir_bin(AR, KIR_GE, diff, kir_i64(AR, -rw)));
  }
  if (ops_has_in(c, IN_MASK)) {
    int bm = ops_buf_in(c, kk, IN_MASK);
    const kir_buf_t *mb = &kk->bufs[bm];
    kir_expr_t *full[4] = {b, h, i, j}, *idx[4];
    for (int q = 0; q < mb->rank - 1; q++) {
      kir_expr_t *dim = mb->dims[q], *vv = full[4 - mb->rank + q];
      idx[q] = kir_is_const(dim, 1) ? kir_i64(AR, 0)
               : dim->kind == KIR_CONST
                   ? vv
                   : kir_select(AR, kir_bin(AR, KIR_EQ, dim, kir_i64(AR, 1)), kir_i64(AR, 0), vv);
    }
    /* The last dim is padded (masked) up to T, never broadcast. */
    idx[mb->rank - 1] = j;
    kir_expr_t *in_mask = kir_bin(AR, KIR_LT, j, mb->dims[mb->rank - 1]);
    kir_expr_t *m = kir_load(kk, bm, idx);
    if (mb->dtype == FLAGOS_BOOL) {
      ok = kir_bin(AR, KIR_AND, ok, kir_select(AR, in_mask, m, kir_bool(AR, false)));
    } else {
      ok = kir_bin(AR, KIR_AND, ok, in_mask);
      val = kir_select(AR, in_mask, kir_cast(AR, a->ct, m), val);
    }
  }
  return kir_select(AR, ok, val, kir_const(AR, a->ct, -INFINITY));
}

static kir_kernel_t *temp_kernel(ops_ctx_t *c, const char *name, int t, int *tb, kir_expr_t **v) {
  kir_kernel_t *kk = ops_kernel(c, name);
  *tb = ops_buf_temp(c, kk, t);
  kir_set_space(kk, kk->bufs[*tb].rank, kk->bufs[*tb].dims, v);
  return kk;
}

static double round_host(flagos_dtype_t dt, double x) {
  if (dt == FLAGOS_FLOAT32) return (double)(float)x;
  if (dt == FLAGOS_FLOAT16) return fl_f16_to_f32(fl_f32_to_f16((float)x));
  if (dt == FLAGOS_BFLOAT16) return fl_bf16_to_f32(fl_f32_to_bf16((float)x));
  return x;
}

static flagos_status_t attn_lower(ops_ctx_t *c) {
  attn_t a = {.c = c, .rank = c->in[IN_Q].rank, .dt = c->in[IN_Q].dtype};
  a.ct = a.dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  int64_t spa = fir_attr_int(c->node, "softmax_precision", 0);
  a.sp = spa ? (flagos_dtype_t)spa : a.dt;
  flagos_dtype_t sct = a.sp == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  for (int i = 0; i < A_NPARAMS; i++) a.prm[i] = ops_param(c, i);
  const fir_attr_t *sa = fir_node_attr(c->node, "scale");
  if (sa) {
    a.scale = kir_const(AR, a.ct, round_host(a.dt, sqrt((double)sa->f)));
  } else if (a.prm[A_DH]->kind == KIR_CONST) {
    a.scale = kir_const(AR, a.ct, round_host(a.dt, sqrt(1.0 / sqrt((double)a.prm[A_DH]->ci))));
  } else {
    kir_expr_t *dh = kir_cast(AR, a.ct, a.prm[A_DH]);
    a.scale = kir_un(AR, KIR_SQRT, kir_bin(AR, KIR_DIV, kir_const(AR, a.ct, 1.0), kir_un(AR, KIR_SQRT, dh)));
    a.scale = kir_cast(AR, a.ct, kir_cast(AR, a.dt, a.scale));
  }
  double softcap = fir_attr_float(c->node, "softcap", 0.0f);
  int64_t mode = fir_attr_int(c->node, "qk_matmul_output_mode", 0);
  bool past = ops_has_in(c, IN_PK);
  kir_expr_t *rep = kir_bin(AR, KIR_DIV, a.prm[A_HQ], a.prm[A_HKV]);
  kir_expr_t *v[4];

  /* Present key / value. */
  for (int o = 1; o <= 2; o++) {
    if (!has_out(c, o)) continue;
    kir_kernel_t *kk = ops_out_kernel(c, o, o == 1 ? "present_key" : "present_value", v);
    int bn = ops_buf_in(c, kk, o == 1 ? IN_K : IN_V), bp = past ? ops_buf_in(c, kk, o == 1 ? IN_PK : IN_PV) : -1;
    kir_store(kk, 0, v, load_kv(&a, kk, bn, bp, v[0], v[1], v[2], v[3], a.prm[o == 1 ? A_DH : A_DV]), NULL);
  }

  kir_expr_t *sdims[4] = {a.prm[A_B], a.prm[A_HQ], a.prm[A_SQ], a.prm[A_T]};
  int tS = ops_temp(c, a.dt, 4, sdims);
  int tX = ops_temp(c, a.sp, 4, sdims);
  int tM = ops_temp(c, sct, 3, sdims);
  int tL = ops_temp(c, sct, 3, sdims);
  int tZ = ops_temp(c, FLAGOS_BOOL, 3, sdims);
  int bS, bX, bM, bL, bZ;

  /* S: scaled scores with softcap. */
  {
    kir_kernel_t *kk = temp_kernel(c, "scores", tS, &bS, v);
    int bq = ops_buf_in(c, kk, IN_Q), bk = ops_buf_in(c, kk, IN_K), bp = past ? ops_buf_in(c, kk, IN_PK) : -1;
    int dv = kir_new_var(kk);
    kir_expr_t *d = kir_var(AR, dv);
    kir_expr_t *hk = kir_bin(AR, KIR_DIV, v[1], rep);
    kir_expr_t *kval = kir_cast(AR, a.ct, load_kv(&a, kk, bk, bp, v[0], hk, v[3], d, a.prm[A_DH]));
    kval = kir_cast(AR, a.ct, kir_cast(AR, a.dt, kir_bin(AR, KIR_MUL, kval, a.scale)));
    kir_expr_t *s = kir_reduce(AR, KIR_RSUM, 1, &dv, &a.prm[A_DH],
                               kir_bin(AR, KIR_MUL, load_q(&a, kk, bq, v[0], v[1], v[2], d), kval));
    if (softcap > 0) {
      kir_expr_t *cap = kir_const(AR, a.ct, softcap);
      s = kir_cast(AR, a.ct, kir_cast(AR, a.dt, s));
      s = kir_bin(AR, KIR_MUL, kir_un(AR, KIR_TANH, kir_bin(AR, KIR_DIV, s, cap)), cap);
    }
    kir_store(kk, bS, v, s, NULL);
  }
  /* X = S + bias; the qk output in modes 0-2. */
  {
    kir_kernel_t *kk = temp_kernel(c, "logits", tX, &bX, v);
    bS = ops_buf_temp(c, kk, tS);
    kir_expr_t *s = kir_cast(AR, a.ct, kir_load(kk, bS, v));
    kir_expr_t *x = kir_cast(AR, a.dt, kir_bin(AR, KIR_ADD, s, bias(&a, kk, v[0], v[1], v[2], v[3])));
    kir_store(kk, bX, v, kir_cast(AR, a.sp, x), NULL);
    if (has_out(c, 3) && mode <= 2) {
      int bo = ops_buf_out(c, kk, 3);
      kir_store(kk, bo, v, mode == 2 ? x : kir_load(kk, bS, v), NULL);
    }
  }
  /* Row max and the fully-masked flag (decided on the bias, not on the logits). */
  {
    kir_kernel_t *kk = temp_kernel(c, "rowmax", tM, &bM, v);
    bZ = ops_buf_temp(c, kk, tZ);
    bX = ops_buf_temp(c, kk, tX);
    int jv = kir_new_var(kk), jv2 = kir_new_var(kk);
    kir_expr_t *j = kir_var(AR, jv), *j2 = kir_var(AR, jv2);
    kir_expr_t *xi[4] = {v[0], v[1], v[2], j};
    kir_store(kk, bM, v, kir_reduce(AR, KIR_RMAX, 1, &jv, &a.prm[A_T], kir_cast(AR, sct, kir_load(kk, bX, xi))), NULL);
    kir_expr_t *bmax = kir_reduce(AR, KIR_RMAX, 1, &jv2, &a.prm[A_T], bias(&a, kk, v[0], v[1], v[2], j2));
    kir_store(kk, bZ, v, kir_un(AR, KIR_ISINF_NEG, bmax), NULL);
  }
  /* Softmax denominators; a row of -inf gets max 0 so that exp gives 0, not NaN. */
  kir_expr_t *zero_s = kir_const(AR, sct, 0.0);
  {
    kir_kernel_t *kk = temp_kernel(c, "rowsum", tL, &bL, v);
    bM = ops_buf_temp(c, kk, tM);
    bX = ops_buf_temp(c, kk, tX);
    int jv = kir_new_var(kk);
    kir_expr_t *xi[4] = {v[0], v[1], v[2], kir_var(AR, jv)};
    kir_expr_t *m = kir_load(kk, bM, v);
    m = kir_select(AR, kir_un(AR, KIR_ISINF_NEG, m), zero_s, m);
    kir_expr_t *e = kir_un(AR, KIR_EXP, kir_bin(AR, KIR_SUB, kir_cast(AR, sct, kir_load(kk, bX, xi)), m));
    kir_store(kk, bL, v, kir_reduce(AR, KIR_RSUM, 1, &jv, &a.prm[A_T], e), NULL);
  }
  /* Probabilities into S (cast to the input type as the reference does). */
  {
    kir_kernel_t *kk = temp_kernel(c, "probs", tS, &bS, v);
    bX = ops_buf_temp(c, kk, tX);
    bM = ops_buf_temp(c, kk, tM);
    bL = ops_buf_temp(c, kk, tL);
    bZ = ops_buf_temp(c, kk, tZ);
    kir_expr_t *m = kir_load(kk, bM, v), *l = kir_load(kk, bL, v);
    m = kir_select(AR, kir_un(AR, KIR_ISINF_NEG, m), zero_s, m);
    l = kir_select(AR, kir_bin(AR, KIR_EQ, l, zero_s), kir_const(AR, sct, 1.0), l);
    kir_expr_t *e = kir_un(AR, KIR_EXP, kir_bin(AR, KIR_SUB, kir_cast(AR, sct, kir_load(kk, bX, v)), m));
    kir_expr_t *pr = kir_cast(AR, a.sp, kir_bin(AR, KIR_DIV, e, l));
    pr = kir_select(AR, kir_load(kk, bZ, v), kir_const(AR, a.sp, 0.0), pr);
    kir_store(kk, bS, v, kir_cast(AR, a.dt, pr), NULL);
    if (has_out(c, 3) && mode == 3) {
      int bo = ops_buf_out(c, kk, 3);
      kir_store(kk, bo, v, kir_cast(AR, a.dt, pr), NULL);
    }
  }
  /* Y = P . V, written in Y's layout (3-D: [B, Sq, Hq*Dv]). */
  {
    kir_kernel_t *kk = ops_out_kernel(c, 0, "output", v);
    bS = ops_buf_temp(c, kk, tS);
    int bv = ops_buf_in(c, kk, IN_V), bp = past ? ops_buf_in(c, kk, IN_PV) : -1;
    kir_expr_t *b = v[0], *h, *i, *dv;
    if (a.rank == 4) {
      h = v[1];
      i = v[2];
      dv = v[3];
    } else {
      i = v[1];
      h = kir_bin(AR, KIR_DIV, v[2], a.prm[A_DV]);
      dv = kir_bin(AR, KIR_MOD, v[2], a.prm[A_DV]);
    }
    int jv = kir_new_var(kk);
    kir_expr_t *j = kir_var(AR, jv);
    kir_expr_t *pi[4] = {b, h, i, j};
    kir_expr_t *hk = kir_bin(AR, KIR_DIV, h, rep);
    kir_expr_t *term = kir_bin(AR, KIR_MUL, kir_cast(AR, a.ct, kir_load(kk, bS, pi)),
                               kir_cast(AR, a.ct, load_kv(&a, kk, bv, bp, b, hk, j, dv, a.prm[A_DV])));
    kir_store(kk, 0, v, kir_reduce(AR, KIR_RSUM, 1, &jv, &a.prm[A_T], term), NULL);
  }
  return NULL;
}

/* ---- RotaryEmbedding ----
 * params: 0 head size, 1 rotary dim / 2. */

static flagos_status_t rope_infer(ops_ctx_t *c) {
  if (c->n_in < 3 || !ops_has_in(c, 0) || !ops_has_in(c, 1) || !ops_has_in(c, 2))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects X, cos_cache and sin_cache");
  const ops_tensor_info_t *X = &c->in[0], *Cc = &c->in[1], *Sc = &c->in[2];
  if (!flagos_dtype_is_float(X->dtype)) return ops_err(c, FLAGOS_ERR_SHAPE, "X must be floating point");
  if (Cc->dtype != X->dtype || Sc->dtype != X->dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "cos_cache and sin_cache must have X's dtype");
  if (X->rank != 3 && X->rank != 4) return ops_err(c, FLAGOS_ERR_SHAPE, "X must be 3-D or 4-D (got %d)", X->rank);
  bool pos = ops_has_in(c, 3);
  if (pos && (c->in[3].rank != 2 || !flagos_dtype_is_int(c->in[3].dtype)))
    return ops_err(c, FLAGOS_ERR_SHAPE, "position_ids must be a 2-D integer tensor");
  if (Cc->rank != (pos ? 2 : 3) || Sc->rank != Cc->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "cos_cache/sin_cache must be %d-D", pos ? 2 : 3);
  int64_t hs;
  if (X->rank == 4) {
    hs = X->dims[3];
  } else {
    int64_t nh = fir_attr_int(c->node, "num_heads", 0);
    if (nh < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "3-D input needs the num_heads attribute");
    if (X->dims[2] >= 0 && X->dims[2] % nh)
      return ops_err(c, FLAGOS_ERR_SHAPE, "hidden size %lld is not a multiple of num_heads %lld", (long long)X->dims[2],
                     (long long)nh);
    hs = X->dims[2] >= 0 ? X->dims[2] / nh : -1;
  }
  int64_t rd = fir_attr_int(c->node, "rotary_embedding_dim", 0);
  if (rd == 0) rd = hs;
  if (rd >= 0 && hs >= 0 && (rd > hs || rd % 2))
    return ops_err(c, FLAGOS_ERR_SHAPE, "rotary_embedding_dim %lld must be even and at most the head size %lld",
                   (long long)rd, (long long)hs);
  int64_t half = rd >= 0 ? rd / 2 : -1, cl = Cc->dims[Cc->rank - 1];
  if (half >= 0 && cl >= 0 && cl != half)
    return ops_err(c, FLAGOS_ERR_SHAPE, "cos_cache's last dim is %lld, expected rotary_embedding_dim/2 = %lld",
                   (long long)cl, (long long)half);
  c->n_params = 2;
  c->params[0] = hs;
  c->params[1] = half;
  ops_set_out(c, 0, X->dtype, X->rank, X->dims);
  return NULL;
}

static flagos_status_t rope_lower(ops_ctx_t *c) {
  int r = c->in[0].rank;
  flagos_dtype_t dt = c->in[0].dtype, ct = dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  bool inter = fir_attr_int(c->node, "interleaved", 0) != 0;
  kir_expr_t *v[4];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "rope", v);
  int bx = ops_buf_in(c, kk, 0), bc = ops_buf_in(c, kk, 1), bs = ops_buf_in(c, kk, 2);
  kir_expr_t *hs = ops_param(c, 0), *half = ops_param(c, 1);
  kir_expr_t *b = v[0], *s, *d, *hbase; /* hbase: index of the head's first element in X's last dim */
  if (r == 4) {
    s = v[2];
    d = v[3];
    hbase = kir_i64(AR, 0);
  } else {
    s = v[1];
    d = kir_bin(AR, KIR_MOD, v[2], hs);
    hbase = kir_sub(AR, v[2], d);
  }
  kir_expr_t *two = kir_i64(AR, 2);
  kir_expr_t *f, *i1, *i2, *first;
  if (inter) {
    f = kir_bin(AR, KIR_DIV, d, two);
    i1 = kir_mul(AR, f, two);
    i2 = kir_add(AR, i1, kir_i64(AR, 1));
    first = kir_bin(AR, KIR_EQ, kir_bin(AR, KIR_MOD, d, two), kir_i64(AR, 0));
  } else {
    first = kir_bin(AR, KIR_LT, d, half);
    f = kir_select(AR, first, d, kir_sub(AR, d, half));
    i1 = f;
    i2 = kir_add(AR, f, half);
  }
  kir_expr_t *xi1[4], *xi2[4];
  for (int q = 0; q < r; q++) xi1[q] = xi2[q] = v[q];
  xi1[r - 1] = kir_add(AR, hbase, i1);
  xi2[r - 1] = kir_add(AR, hbase, i2);
  kir_expr_t *x1 = kir_cast(AR, ct, kir_load(kk, bx, xi1)), *x2 = kir_cast(AR, ct, kir_load(kk, bx, xi2));
  kir_expr_t *ci[3];
  if (ops_has_in(c, 3)) {
    int bp = ops_buf_in(c, kk, 3);
    kir_expr_t *pi[2] = {b, s};
    ci[0] = kir_cast(AR, FLAGOS_INT64, kir_load(kk, bp, pi));
    ci[1] = f;
  } else {
    ci[0] = b;
    ci[1] = s;
    ci[2] = f;
  }
  kir_expr_t *cs = kir_cast(AR, ct, kir_load(kk, bc, ci)), *sn = kir_cast(AR, ct, kir_load(kk, bs, ci));
  kir_expr_t *re = kir_bin(AR, KIR_SUB, kir_bin(AR, KIR_MUL, cs, x1), kir_bin(AR, KIR_MUL, sn, x2));
  kir_expr_t *im = kir_bin(AR, KIR_ADD, kir_bin(AR, KIR_MUL, sn, x1), kir_bin(AR, KIR_MUL, cs, x2));
  kir_expr_t *rot = kir_select(AR, first, re, im);
  kir_expr_t *inside = kir_bin(AR, KIR_LT, d, kir_mul(AR, half, two));
  kir_expr_t *y = kir_select(AR, inside, kir_cast(AR, dt, rot), kir_load(kk, bx, v));
  kir_store(kk, 0, v, y, NULL);
  return NULL;
}

const ops_def_t ops_family_attention[] = {
    {"Attention", "", 0, attn_infer, attn_lower, attn_flops},
    {"RotaryEmbedding", "", 0, rope_infer, rope_lower, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
