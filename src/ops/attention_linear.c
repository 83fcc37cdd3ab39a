/* LinearAttention (opset 27): the linear / gated / delta / gated-delta
 * recurrences over a per-head state S of shape (d_k, d_v):
 *   S <- exp(g_t) * S                       (gated rules)
 *   u  = beta_t * (v_t - S^T k_t)  or v_t   (delta rules / others)
 *   S <- S + k_t u^T
 *   o_t = scale * q_t^T S                    (for each query head of the group)
 * The recurrence is inherently sequential in t, so it runs as one serial kernel
 * over (t, phase, b, query head, d_k, d_v) on a float32 scratch state, each
 * phase storing only at the points it owns; the state is then cast out.
 * params: 0 d_k, 1 d_v. */
#include <math.h>
#include <string.h>

#include "ops/attention_internal.h"

#define AR (c->arena)

enum { L_Q, L_K, L_V, L_PAST, L_DECAY, L_BETA };

static bool has_out(const ops_ctx_t *c, int k) { return k < c->node->n_outputs && c->node->outputs[k] != NULL; }

static int rule_of(const char *r) {
  if (strcmp(r, "linear") == 0) return 0;
  if (strcmp(r, "gated") == 0) return 1;
  if (strcmp(r, "delta") == 0) return 2;
  if (strcmp(r, "gated_delta") == 0) return 3;
  return -1;
}

flagos_status_t ops_at_linear_infer(ops_ctx_t *c) {
  for (int k = 0; k < 3; k++)
    if (!ops_has_in(c, k)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "query, key and value are required");
  const ops_tensor_info_t *Q = &c->in[L_Q], *K = &c->in[L_K], *V = &c->in[L_V];
  flagos_dtype_t dt = Q->dtype;
  if (!flagos_dtype_is_float(dt)) return ops_err(c, FLAGOS_ERR_SHAPE, "query must be floating point");
  if (Q->rank != 3 || K->rank != 3 || V->rank != 3)
    return ops_err(c, FLAGOS_ERR_SHAPE, "query, key and value must be 3-D (B, T, H*D)");
  int rule = rule_of(fir_attr_string(c->node, "update_rule", "gated_delta"));
  if (rule < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown update_rule");
  bool gated = rule == 1 || rule == 3, delta = rule >= 2;
  if (gated != ops_has_in(c, L_DECAY))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "decay is %s by this update_rule", gated ? "required" : "forbidden");
  if (delta != ops_has_in(c, L_BETA))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "beta is %s by this update_rule", delta ? "required" : "forbidden");
  int64_t hq = fir_attr_int(c->node, "q_num_heads", 0), hkv = fir_attr_int(c->node, "kv_num_heads", 0);
  if (hq < 1 || hkv < 1 || hq % hkv)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "q_num_heads must be a positive multiple of kv_num_heads");
  if (Q->dims[2] >= 0 && Q->dims[2] % hq) return ops_err(c, FLAGOS_ERR_SHAPE, "query size not a multiple of heads");
  if (V->dims[2] >= 0 && V->dims[2] % hkv) return ops_err(c, FLAGOS_ERR_SHAPE, "value size not a multiple of heads");
  int64_t dk = Q->dims[2] >= 0 ? Q->dims[2] / hq : -1, dv = V->dims[2] >= 0 ? V->dims[2] / hkv : -1;
  if (K->dims[2] >= 0 && dk >= 0 && K->dims[2] != hkv * dk)
    return ops_err(c, FLAGOS_ERR_SHAPE, "key size %lld is not kv_num_heads x d_k", (long long)K->dims[2]);
  if (gated) {
    const ops_tensor_info_t *D = &c->in[L_DECAY];
    if (D->rank != 3 || (D->dims[2] >= 0 && D->dims[2] != hkv && (dk < 0 || D->dims[2] != hkv * dk)))
      return ops_err(c, FLAGOS_ERR_SHAPE, "decay must be (B, T, kv_num_heads) or (B, T, kv_num_heads*d_k)");
  }
  if (delta) {
    const ops_tensor_info_t *Bt = &c->in[L_BETA];
    if (Bt->rank != 3 || (Bt->dims[2] >= 0 && Bt->dims[2] != hkv && Bt->dims[2] != 1))
      return ops_err(c, FLAGOS_ERR_SHAPE, "beta must be (B, T, kv_num_heads) or (B, T, 1)");
  }
  flagos_dtype_t sdt = dt;
  if (ops_has_in(c, L_PAST)) {
    const ops_tensor_info_t *P = &c->in[L_PAST];
    if (P->rank != 4) return ops_err(c, FLAGOS_ERR_SHAPE, "past_state must be 4-D (B, H_kv, d_k, d_v)");
    if (!flagos_dtype_is_float(P->dtype)) return ops_err(c, FLAGOS_ERR_SHAPE, "past_state must be floating point");
    sdt = P->dtype;
  }
  c->n_params = 2;
  c->params[0] = dk;
  c->params[1] = dv;
  int64_t y[3] = {Q->dims[0], Q->dims[1], dv >= 0 ? hq * dv : -1};
  ops_set_out(c, 0, dt, 3, y);
  int64_t s[4] = {Q->dims[0], hkv, dk, dv};
  if (has_out(c, 1)) ops_set_out(c, 1, sdt, 4, s);
  return NULL;
}

flagos_status_t ops_at_linear_lower(ops_ctx_t *c) {
  const flagos_dtype_t f32 = FLAGOS_FLOAT32;
  int rule = rule_of(fir_attr_string(c->node, "update_rule", "gated_delta"));
  bool gated = rule == 1 || rule == 3, delta = rule >= 2;
  int64_t hq = fir_attr_int(c->node, "q_num_heads", 0), hkv = fir_attr_int(c->node, "kv_num_heads", 0);
  kir_expr_t *G = kir_i64(AR, hq / hkv), *HKV = kir_i64(AR, hkv), *HQ = kir_i64(AR, hq);
  kir_expr_t *dk = ops_param(c, 0), *dv = ops_param(c, 1);
  kir_expr_t *B = ops_in_dim(c, L_Q, 0), *T = ops_in_dim(c, L_Q, 1);
  kir_expr_t *sdims[4] = {B, HKV, dk, dv};
  int tS = ops_temp(c, f32, 4, sdims);
  int tU = ops_temp(c, f32, 3, sdims);
  kir_expr_t *v[6];

  /* S = past_state or 0 */
  {
    kir_kernel_t *kk = ops_kernel(c, "linattn_init");
    int bs = ops_buf_temp(c, kk, tS);
    kir_set_space(kk, 4, sdims, v);
    kir_expr_t *init = kir_const(AR, f32, 0.0);
    if (ops_has_in(c, L_PAST)) init = kir_cast(AR, f32, kir_load(kk, ops_buf_in(c, kk, L_PAST), v));
    kir_store(kk, bs, v, init, NULL);
  }

  double scale = fir_attr_float(c->node, "scale", 0.0f);
  kir_kernel_t *kk = ops_kernel(c, "linattn_scan");
  kk->serial = true;
  int bS = ops_buf_temp(c, kk, tS), bU = ops_buf_temp(c, kk, tU);
  int bq = ops_buf_in(c, kk, L_Q), bk = ops_buf_in(c, kk, L_K), bv = ops_buf_in(c, kk, L_V);
  int by = ops_buf_out(c, kk, 0);
  kir_expr_t *space[6] = {T, kir_i64(AR, 4), B, HQ, dk, dv};
  kir_set_space(kk, 6, space, v);
  kir_expr_t *t = v[0], *ph = v[1], *b = v[2], *h = v[3], *d = v[4], *m = v[5];
  kir_expr_t *zero = kir_i64(AR, 0);
  kir_expr_t *hk = kir_bin(AR, KIR_DIV, h, G);
  kir_expr_t *owner = kir_bin(AR, KIR_EQ, kir_bin(AR, KIR_MOD, h, G), zero); /* first query head of the group */
  kir_expr_t *d0 = kir_bin(AR, KIR_EQ, d, zero);
  kir_expr_t *at[4];
  for (int q = 0; q < 4; q++) at[q] = kir_bin(AR, KIR_EQ, ph, kir_i64(AR, q));
  kir_expr_t *si[4] = {b, hk, d, m}, *ui[3] = {b, hk, m};
  kir_expr_t *sv = kir_load(kk, bS, si);
  kir_expr_t *ki[3] = {b, t, kir_add(AR, kir_mul(AR, hk, dk), d)};
  kir_expr_t *kd = kir_cast(AR, f32, kir_load(kk, bk, ki));
  /* phase 0: decay */
  if (gated) {
    int bd = ops_buf_in(c, kk, L_DECAY);
    kir_expr_t *ddim = kk->bufs[bd].dims[2];
    kir_expr_t *per_key = kir_bin(AR, KIR_NE, ddim, HKV);
    kir_expr_t *di[3] = {b, t, kir_select(AR, per_key, kir_add(AR, kir_mul(AR, hk, dk), d), hk)};
    if (ddim->kind == KIR_CONST) di[2] = kir_is_const(ddim, hkv) ? hk : kir_add(AR, kir_mul(AR, hk, dk), d);
    kir_expr_t *g = kir_un(AR, KIR_EXP, kir_cast(AR, f32, kir_load(kk, bd, di)));
    kir_store(kk, bS, si, kir_bin(AR, KIR_MUL, sv, g), kir_bin(AR, KIR_AND, at[0], owner));
  }
  /* phase 1: u = beta * (v - S^T k) or v */
  {
    kir_expr_t *vi[3] = {b, t, kir_add(AR, kir_mul(AR, hk, dv), m)};
    kir_expr_t *u = kir_cast(AR, f32, kir_load(kk, bv, vi));
    if (delta) {
      int bb = ops_buf_in(c, kk, L_BETA);
      kir_expr_t *bdim = kk->bufs[bb].dims[2];
      kir_expr_t *bi[3] = {b, t, kir_is_const(bdim, 1) ? zero : bdim->kind == KIR_CONST ? hk
                                 : kir_select(AR, kir_bin(AR, KIR_EQ, bdim, kir_i64(AR, 1)), zero, hk)};
      int rv = kir_new_var(kk);
      kir_expr_t *r = kir_var(AR, rv);
      kir_expr_t *sr[4] = {b, hk, r, m};
      kir_expr_t *kr[3] = {b, t, kir_add(AR, kir_mul(AR, hk, dk), r)};
      kir_expr_t *ret = kir_reduce(AR, KIR_RSUM, 1, &rv, &dk,
                                   kir_bin(AR, KIR_MUL, kir_load(kk, bS, sr), kir_cast(AR, f32, kir_load(kk, bk, kr))));
      u = kir_bin(AR, KIR_MUL, kir_cast(AR, f32, kir_load(kk, bb, bi)), kir_bin(AR, KIR_SUB, u, ret));
    }
    kir_store(kk, bU, ui, u, kir_bin(AR, KIR_AND, at[1], kir_bin(AR, KIR_AND, owner, d0)));
  }
  /* phase 2: S += k u^T */
  kir_store(kk, bS, si, kir_bin(AR, KIR_ADD, sv, kir_bin(AR, KIR_MUL, kd, kir_load(kk, bU, ui))),
            kir_bin(AR, KIR_AND, at[2], owner));
  /* phase 3: o = scale * q^T S for every query head */
  {
    int rv = kir_new_var(kk);
    kir_expr_t *r = kir_var(AR, rv);
    kir_expr_t *qi[3] = {b, t, kir_add(AR, kir_mul(AR, h, dk), r)};
    kir_expr_t *sr[4] = {b, hk, r, m};
    kir_expr_t *o = kir_reduce(AR, KIR_RSUM, 1, &rv, &dk,
                               kir_bin(AR, KIR_MUL, kir_cast(AR, f32, kir_load(kk, bq, qi)), kir_load(kk, bS, sr)));
    kir_expr_t *sc = scale != 0.0 ? kir_const(AR, f32, scale)
                                  : kir_bin(AR, KIR_DIV, kir_const(AR, f32, 1.0),
                                            kir_un(AR, KIR_SQRT, kir_cast(AR, f32, dk)));
    kir_expr_t *yi[3] = {b, t, kir_add(AR, kir_mul(AR, h, dv), m)};
    kir_store(kk, by, yi, kir_bin(AR, KIR_MUL, sc, o), kir_bin(AR, KIR_AND, at[3], d0));
  }
  if (has_out(c, 1)) {
    kir_kernel_t *ks = ops_out_kernel(c, 1, "linattn_state", v);
    int bs = ops_buf_temp(c, ks, tS);
    kir_store(ks, 0, v, kir_load(ks, bs, v), NULL);
  }
  return NULL;
}
