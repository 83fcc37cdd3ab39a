/* LinearAttention (opset 27): the recurrent form, one token at a time.
 *
 * Like the RNNs, the sequence is unrolled, so T (query's dim 1) must be known
 * when the node is lowered. The f32 state S[b][h][d][m] lives in two temps used
 * in turn; token t is up to three kernels:
 *   delta rules: u[b][h][m] = beta * (v - (decay * S)^T k)      (one reduction over d)
 *   update:      S'[d][m] = decay[d] * S[d][m] + k[d] * u[m]    (u = v without delta)
 *   read:        out[b][t][hq*dv + m] = scale * sum_d q[d] S'[hq / group][d][m]
 * present_state is the last state, cast to past_state's dtype (else query's). */
#include <math.h>
#include <string.h>

#include "ops/misc_util.h"

#define AR (c->arena)

enum { LA_Q, LA_K, LA_V, LA_PAST, LA_DECAY, LA_BETA };

typedef struct la_cfg {
  int64_t hq, hkv;
  bool gating, delta;
  double scale; /* 0: 1/sqrt(dk) */
} la_cfg_t;

static flagos_status_t la_config(const ops_ctx_t *c, la_cfg_t *g) {
  g->hq = fir_attr_int(c->node, "q_num_heads", 0);
  g->hkv = fir_attr_int(c->node, "kv_num_heads", 0);
  if (g->hq <= 0 || g->hkv <= 0 || g->hq % g->hkv != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "q_num_heads (%lld) must be a positive multiple of kv_num_heads (%lld)",
                   (long long)g->hq, (long long)g->hkv);
  const char *rule = fir_attr_string(c->node, "update_rule", "gated_delta");
  if (strcmp(rule, "linear") == 0) g->gating = false, g->delta = false;
  else if (strcmp(rule, "gated") == 0) g->gating = true, g->delta = false;
  else if (strcmp(rule, "delta") == 0) g->gating = false, g->delta = true;
  else if (strcmp(rule, "gated_delta") == 0) g->gating = true, g->delta = true;
  else return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "update_rule has unsupported value \"%s\"", rule);
  g->scale = fir_attr_float(c->node, "scale", 0.0f);
  return NULL;
}

flagos_status_t ops_linattn_infer(ops_ctx_t *c) {
  la_cfg_t g;
  FL_TRY(la_config(c, &g));
  FL_TRY(ops_ew_check_count(c, 3, 6));
  for (int k = LA_Q; k <= LA_V; k++) {
    FL_TRY(ops_ew_check_in(c, k, OPS_DT_FLOATS));
    if (c->in[k].rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "query, key and value must be (B, T, H*D)");
  }
  const ops_tensor_info_t *Q = &c->in[LA_Q], *K = &c->in[LA_K], *V = &c->in[LA_V];
  if ((Q->dims[2] >= 0 && Q->dims[2] % g.hq) || (K->dims[2] >= 0 && K->dims[2] % g.hkv) ||
      (V->dims[2] >= 0 && V->dims[2] % g.hkv))
    return ops_err(c, FLAGOS_ERR_SHAPE, "the packed head dims are not divisible by the head counts");
  int64_t dk = Q->dims[2] < 0 ? -1 : Q->dims[2] / g.hq, dv = V->dims[2] < 0 ? -1 : V->dims[2] / g.hkv;
  if (dk >= 0 && K->dims[2] >= 0 && K->dims[2] != g.hkv * dk)
    return ops_err(c, FLAGOS_ERR_SHAPE, "key's last dim %lld is not kv_num_heads * d_k = %lld", (long long)K->dims[2],
                   (long long)(g.hkv * dk));
  if (g.gating != ops_has_in(c, LA_DECAY))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "decay is %s for this update_rule", g.gating ? "required" : "not allowed");
  if (g.delta != ops_has_in(c, LA_BETA))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "beta is %s for this update_rule", g.delta ? "required" : "not allowed");
  if (g.gating) {
    FL_TRY(ops_ew_check_in(c, LA_DECAY, OPS_DT_FLOATS));
    int64_t last = c->in[LA_DECAY].dims[2];
    if (c->in[LA_DECAY].rank != 3 || (last >= 0 && last != g.hkv && (dk < 0 || last != g.hkv * dk)))
      return ops_err(c, FLAGOS_ERR_SHAPE, "decay must be (B, T, kv_num_heads) or (B, T, kv_num_heads * d_k)");
  }
  if (g.delta) {
    FL_TRY(ops_ew_check_in(c, LA_BETA, OPS_DT_FLOATS));
    int64_t last = c->in[LA_BETA].dims[2];
    if (c->in[LA_BETA].rank != 3 || (last >= 0 && last != g.hkv && last != 1))
      return ops_err(c, FLAGOS_ERR_SHAPE, "beta must be (B, T, kv_num_heads) or (B, T, 1)");
  }
  flagos_dtype_t sdt = Q->dtype;
  if (ops_has_in(c, LA_PAST)) {
    FL_TRY(ops_ew_check_in(c, LA_PAST, OPS_DT_FLOATS));
    const ops_tensor_info_t *P = &c->in[LA_PAST];
    if (P->rank != 4) return ops_err(c, FLAGOS_ERR_SHAPE, "past_state must be (B, kv_num_heads, d_k, d_v)");
    sdt = P->dtype;
  }
  int64_t od[3] = {Q->dims[0], Q->dims[1], dv < 0 ? -1 : g.hq * dv};
  ops_set_out(c, 0, Q->dtype, 3, od);
  int64_t sd[4] = {Q->dims[0], g.hkv, dk, dv};
  if (ops_has_out(c, 1)) ops_set_out(c, 1, sdt, 4, sd);
  return NULL;
}

double ops_linattn_flops(const ops_ctx_t *c) {
  la_cfg_t g;
  if (la_config(c, &g) || c->out[0].numel < 0 || c->in[LA_Q].dims[2] < 0) return 0;
  double dk = (double)(c->in[LA_Q].dims[2] / g.hq);
  return (double)c->out[0].numel * dk * (g.delta ? 6.0 : 4.0);
}

typedef struct la_ctx {
  const la_cfg_t *g;
  kir_kernel_t *k;
  kir_expr_t *dk, *dv, *t;
} la_t;

/* Element (b, t, head*D + i) of a packed input, as f32. */
static kir_expr_t *packed(ops_ctx_t *c, la_t *s, int buf, kir_expr_t *b, kir_expr_t *head, kir_expr_t *D, kir_expr_t *i) {
  kir_expr_t *idx[3] = {b, s->t, kir_add(AR, kir_mul(AR, head, D), i)};
  return kir_cast(AR, FLAGOS_FLOAT32, kir_load(s->k, buf, idx));
}

/* exp(decay) for key dim d of head h (per-head decay ignores d), or NULL. */
static kir_expr_t *decay_at(ops_ctx_t *c, la_t *s, kir_expr_t *b, kir_expr_t *h, kir_expr_t *d) {
  if (!s->g->gating) return NULL;
  int bd = ops_buf_in(c, s->k, LA_DECAY);
  bool per_head = c->in[LA_DECAY].dims[2] == s->g->hkv;
  kir_expr_t *g = per_head ? packed(c, s, bd, b, h, kir_i64(AR, 1), kir_i64(AR, 0)) : packed(c, s, bd, b, h, s->dk, d);
  return kir_un(AR, KIR_EXP, g);
}

static kir_expr_t *state_at(la_t *s, int buf, kir_expr_t *b, kir_expr_t *h, kir_expr_t *d, kir_expr_t *m) {
  kir_expr_t *idx[4] = {b, h, d, m};
  return kir_load(s->k, buf, idx);
}

static kir_kernel_t *space(ops_ctx_t *c, const char *name, int rank, kir_expr_t *const *ext, kir_expr_t **v) {
  kir_kernel_t *k = ops_kernel(c, name);
  kir_set_space(k, rank, ext, v);
  return k;
}

flagos_status_t ops_linattn_lower(ops_ctx_t *c) {
  const flagos_dtype_t F = FLAGOS_FLOAT32;
  la_cfg_t g;
  FL_TRY(la_config(c, &g));
  int64_t T = c->in[LA_Q].dims[1];
  if (T < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the sequence length must be known when compiling (it is dynamic here)");
  kir_expr_t *B = ops_in_dim(c, LA_Q, 0), *Hkv = kir_i64(AR, g.hkv);
  kir_expr_t *dk = kir_bin(AR, KIR_DIV, ops_in_dim(c, LA_Q, 2), kir_i64(AR, g.hq));
  kir_expr_t *dv = kir_bin(AR, KIR_DIV, ops_in_dim(c, LA_V, 2), Hkv);
  kir_expr_t *sd[4] = {B, Hkv, dk, dv};
  int ts[2] = {ops_temp(c, F, 4, sd), ops_temp(c, F, 4, sd)};
  int tu = g.delta ? ops_temp(c, F, 3, (kir_expr_t *const[]){B, Hkv, dv}) : -1;
  kir_expr_t *scale = g.scale != 0.0 ? ops_fc(c, F, g.scale)
                                     : ops_fdiv(c, ops_fc(c, F, 1.0), kir_un(AR, KIR_SQRT, ops_itof(c, F, dk)));
  kir_expr_t *v[4];
  la_t s = {.g = &g, .dk = dk, .dv = dv};
  {
    kir_kernel_t *k = space(c, "la_init", 4, sd, v);
    int bs = ops_buf_temp(c, k, ts[0]);
    kir_expr_t *x = ops_fc(c, F, 0.0);
    if (ops_has_in(c, LA_PAST)) x = kir_cast(AR, F, kir_load(k, ops_buf_in(c, k, LA_PAST), v));
    kir_store(k, bs, v, x, NULL);
  }
  for (int64_t t = 0; t < T; t++) {
    int cur = ts[t % 2], nxt = ts[(t + 1) % 2];
    s.t = kir_i64(AR, t);
    if (g.delta) {
      kir_expr_t *ext[3] = {B, Hkv, dv};
      s.k = space(c, "la_delta", 3, ext, v);
      int bu = ops_buf_temp(c, s.k, tu), bs = ops_buf_temp(c, s.k, cur);
      int bk = ops_buf_in(c, s.k, LA_K), bv = ops_buf_in(c, s.k, LA_V), bb = ops_buf_in(c, s.k, LA_BETA);
      int dvar = kir_new_var(s.k);
      kir_expr_t *d = kir_var(AR, dvar);
      kir_expr_t *sv = state_at(&s, bs, v[0], v[1], d, v[2]);
      kir_expr_t *dc = decay_at(c, &s, v[0], v[1], d);
      if (dc) sv = ops_fmul(c, sv, dc);
      kir_expr_t *ret = kir_reduce(AR, KIR_RSUM, 1, &dvar, &dk, ops_fmul(c, sv, packed(c, &s, bk, v[0], v[1], dk, d)));
      kir_expr_t *beta = c->in[LA_BETA].dims[2] == 1 ? packed(c, &s, bb, v[0], kir_i64(AR, 0), kir_i64(AR, 1), kir_i64(AR, 0))
                                                     : packed(c, &s, bb, v[0], v[1], kir_i64(AR, 1), kir_i64(AR, 0));
      kir_expr_t *u = ops_fmul(c, beta, ops_fsub(c, packed(c, &s, bv, v[0], v[1], dv, v[2]), ret));
      kir_store(s.k, bu, v, u, NULL);
    }
    s.k = space(c, "la_update", 4, sd, v);
    int bn = ops_buf_temp(c, s.k, nxt), bs = ops_buf_temp(c, s.k, cur);
    int bk = ops_buf_in(c, s.k, LA_K);
    kir_expr_t *sv = state_at(&s, bs, v[0], v[1], v[2], v[3]);
    kir_expr_t *dc = decay_at(c, &s, v[0], v[1], v[2]);
    if (dc) sv = ops_fmul(c, sv, dc);
    kir_expr_t *u;
    if (g.delta) {
      kir_expr_t *ui[3] = {v[0], v[1], v[3]};
      u = kir_load(s.k, ops_buf_temp(c, s.k, tu), ui);
    } else {
      u = packed(c, &s, ops_buf_in(c, s.k, LA_V), v[0], v[1], dv, v[3]);
    }
    kir_store(s.k, bn, v, ops_fadd(c, sv, ops_fmul(c, packed(c, &s, bk, v[0], v[1], dk, v[2]), u)), NULL);

    /* read: out[b, t, hq * dv + m] */
    kir_expr_t *ext[2] = {B, kir_mul(AR, kir_i64(AR, g.hq), dv)};
    s.k = space(c, "la_read", 2, ext, v);
    int bo = ops_buf_out(c, s.k, 0);
    bs = ops_buf_temp(c, s.k, nxt);
    int bq = ops_buf_in(c, s.k, LA_Q);
    kir_expr_t *hq = kir_bin(AR, KIR_DIV, v[1], dv), *m = kir_bin(AR, KIR_MOD, v[1], dv);
    kir_expr_t *hk = kir_bin(AR, KIR_DIV, hq, kir_i64(AR, g.hq / g.hkv));
    int dvar = kir_new_var(s.k);
    kir_expr_t *d = kir_var(AR, dvar);
    kir_expr_t *o = kir_reduce(AR, KIR_RSUM, 1, &dvar, &dk,
                               ops_fmul(c, packed(c, &s, bq, v[0], hq, dk, d), state_at(&s, bs, v[0], hk, d, m)));
    kir_expr_t *oi[3] = {v[0], s.t, v[1]};
    kir_store(s.k, bo, oi, kir_cast(AR, c->out[0].dtype, ops_fmul(c, scale, o)), NULL);
  }
  if (ops_has_out(c, 1)) {
    kir_kernel_t *k = ops_out_kernel(c, 1, "la_state", v);
    int bs = ops_buf_temp(c, k, ts[T % 2]);
    kir_store(k, 0, v, kir_cast(AR, c->out[1].dtype, kir_load(k, bs, v)), NULL);
  }
  return NULL;
}
