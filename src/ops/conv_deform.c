/* DeformConv (2-D): a convolution whose kernel taps are moved by learned
 * offsets and optionally scaled by a mask. Each tap samples the input
 * bilinearly at a fractional position, with zero outside the image (ONNX
 * defines it through GridSample with align_corners=1), so the lowering is the
 * Conv reduction with a four-corner guarded interpolation as its input load. */
#include "ops/conv_common.h"
#include "ops/conv_internal.h"

#define AR (c->arena)

flagos_status_t ops_cv_deform_infer(ops_ctx_t *c) {
  if (c->n_in < 3 || !ops_has_in(c, 0) || !ops_has_in(c, 1) || !ops_has_in(c, 2))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs X, W and offset");
  const ops_tensor_info_t *X = &c->in[0], *W = &c->in[1], *O = &c->in[2];
  flagos_dtype_t dt = X->dtype;
  if (!flagos_dtype_is_float(dt)) return ops_err(c, FLAGOS_ERR_SHAPE, "X must be floating point");
  for (int k = 1; k < 5 && k < c->n_in; k++)
    if (ops_has_in(c, k) && c->in[k].dtype != dt)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has dtype %s, X has %s", k, flagos_dtype_name(c->in[k].dtype),
                     flagos_dtype_name(dt));
  if (X->rank != 4 || W->rank != 4 || O->rank != 4)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "only 2-D DeformConv is supported (X, W, offset of rank 4)");
  ops_sp_t g;
  FL_TRY(ops_sp_read(c, 2, W->dims + 2, false, &g));
  if (g.auto_pad != OPS_SP_NOTSET) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "DeformConv has no auto_pad");
  int64_t group = fir_attr_int(c->node, "group", 1), og = fir_attr_int(c->node, "offset_group", 1);
  if (group < 1 || og < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "group and offset_group must be positive");
  int64_t C = X->dims[1];
  if (C >= 0 && W->dims[1] >= 0 && C != W->dims[1] * group)
    return ops_err(c, FLAGOS_ERR_SHAPE, "X has %lld channels, W expects %lld x group %lld", (long long)C,
                   (long long)W->dims[1], (long long)group);
  if (C >= 0 && C % og != 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "channels %lld not a multiple of offset_group %lld", (long long)C, (long long)og);
  if (O->dims[1] >= 0 && g.k[0] >= 0 && g.k[1] >= 0 && O->dims[1] != og * g.k[0] * g.k[1] * 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "offset has %lld channels, expected %lld", (long long)O->dims[1],
                   (long long)(og * g.k[0] * g.k[1] * 2));
  FL_TRY(ops_cv_check_bias(c, 3, 1));
  int64_t d[4] = {X->dims[0], W->dims[0], ops_sp_out(&g, 0, X->dims[2]), ops_sp_out(&g, 1, X->dims[3])};
  for (int i = 0; i < 2; i++) {
    if (d[2 + i] >= 0 && O->dims[2 + i] >= 0 && d[2 + i] != O->dims[2 + i])
      return ops_err(c, FLAGOS_ERR_SHAPE, "offset spatial dim %d is %lld, the output's is %lld", i,
                     (long long)O->dims[2 + i], (long long)d[2 + i]);
    if (d[2 + i] < 0) d[2 + i] = O->dims[2 + i];
  }
  ops_set_out(c, 0, dt, 4, d);
  c->n_params = 0;
  return NULL;
}

flagos_status_t ops_cv_deform_lower(ops_ctx_t *c) {
  static const int64_t ones[2] = {1, 1};
  ops_sp_t g;
  FL_TRY(ops_sp_read(c, 2, ones, false, &g));
  int64_t group = fir_attr_int(c->node, "group", 1), og = fir_attr_int(c->node, "offset_group", 1);
  flagos_dtype_t dt = c->out[0].dtype;
  flagos_dtype_t ct = dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  kir_expr_t *v[4];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "deformconv", v);
  int bx = ops_buf_in(c, kk, 0), bw = ops_buf_in(c, kk, 1), bo = ops_buf_in(c, kk, 2);
  int bm = ops_has_in(c, 4) ? ops_buf_in(c, kk, 4) : -1;
  kir_expr_t *Cg = ops_in_dim(c, 1, 1), *kH = ops_in_dim(c, 1, 2), *kW = ops_in_dim(c, 1, 3);
  kir_expr_t *Mg = kir_bin(AR, KIR_DIV, ops_in_dim(c, 1, 0), kir_i64(AR, group));
  kir_expr_t *Cog = kir_bin(AR, KIR_DIV, ops_in_dim(c, 0, 1), kir_i64(AR, og));
  kir_expr_t *H = ops_in_dim(c, 0, 2), *Wd = ops_in_dim(c, 0, 3);
  int rv[3] = {kir_new_var(kk), kir_new_var(kk), kir_new_var(kk)};
  kir_expr_t *rext[3] = {Cg, kH, kW};
  kir_expr_t *cv = kir_var(AR, rv[0]), *kh = kir_var(AR, rv[1]), *kw = kir_var(AR, rv[2]);
  kir_expr_t *gi = group == 1 ? kir_i64(AR, 0) : kir_bin(AR, KIR_DIV, v[1], Mg);
  kir_expr_t *ic = kir_add(AR, kir_mul(AR, gi, Cg), cv);
  kir_expr_t *ogi = og == 1 ? kir_i64(AR, 0) : kir_bin(AR, KIR_DIV, ic, Cog);
  kir_expr_t *KK = kir_mul(AR, kH, kW);
  kir_expr_t *tap = kir_add(AR, kir_mul(AR, kh, kW), kw);
  kir_expr_t *och = kir_add(AR, kir_mul(AR, kir_mul(AR, ogi, KK), kir_i64(AR, 2)), kir_mul(AR, tap, kir_i64(AR, 2)));
  kir_expr_t *oi_h[4] = {v[0], och, v[2], v[3]};
  kir_expr_t *oi_w[4] = {v[0], kir_add(AR, och, kir_i64(AR, 1)), v[2], v[3]};
  kir_expr_t *base_h = kir_add(AR, kir_sub(AR, kir_mul(AR, v[2], kir_i64(AR, g.s[0])), kir_i64(AR, g.pb[0])),
                               kir_mul(AR, kh, kir_i64(AR, g.d[0])));
  kir_expr_t *base_w = kir_add(AR, kir_sub(AR, kir_mul(AR, v[3], kir_i64(AR, g.s[1])), kir_i64(AR, g.pb[1])),
                               kir_mul(AR, kw, kir_i64(AR, g.d[1])));
  kir_expr_t *ph = kir_bin(AR, KIR_ADD, kir_cast(AR, ct, base_h), kir_cast(AR, ct, kir_load(kk, bo, oi_h)));
  kir_expr_t *pw = kir_bin(AR, KIR_ADD, kir_cast(AR, ct, base_w), kir_cast(AR, ct, kir_load(kk, bo, oi_w)));
  kir_expr_t *fh = kir_un(AR, KIR_FLOOR, ph), *fw = kir_un(AR, KIR_FLOOR, pw);
  kir_expr_t *lh = kir_bin(AR, KIR_SUB, ph, fh), *lw = kir_bin(AR, KIR_SUB, pw, fw);
  kir_expr_t *one = kir_const(AR, ct, 1.0), *zero = kir_const(AR, ct, 0.0);
  kir_expr_t *wh[2] = {kir_bin(AR, KIR_SUB, one, lh), lh}, *ww[2] = {kir_bin(AR, KIR_SUB, one, lw), lw};
  kir_expr_t *h0 = kir_cast(AR, FLAGOS_INT64, fh), *w0 = kir_cast(AR, FLAGOS_INT64, fw);
  kir_expr_t *val = NULL;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++) {
      kir_expr_t *pos[2] = {kir_add(AR, h0, kir_i64(AR, a)), kir_add(AR, w0, kir_i64(AR, b))};
      kir_expr_t *dims[2] = {H, Wd};
      kir_expr_t *xi[4] = {v[0], ic, pos[0], pos[1]};
      kir_expr_t *x = kir_select(AR, ops_sp_inside(AR, 2, pos, dims), kir_cast(AR, ct, kir_load(kk, bx, xi)), zero);
      kir_expr_t *t = kir_bin(AR, KIR_MUL, kir_bin(AR, KIR_MUL, wh[a], ww[b]), x);
      val = val ? kir_bin(AR, KIR_ADD, val, t) : t;
    }
  kir_expr_t *wi[4] = {v[1], cv, kh, kw};
  kir_expr_t *term = kir_bin(AR, KIR_MUL, kir_cast(AR, ct, kir_load(kk, bw, wi)), val);
  if (bm >= 0) {
    kir_expr_t *mi[4] = {v[0], kir_add(AR, kir_mul(AR, ogi, KK), tap), v[2], v[3]};
    term = kir_bin(AR, KIR_MUL, term, kir_cast(AR, ct, kir_load(kk, bm, mi)));
  }
  kir_expr_t *y = kir_reduce(AR, KIR_RSUM, 3, rv, rext, term);
  if (ops_has_in(c, 3)) y = kir_bin(AR, KIR_ADD, y, kir_cast(AR, ct, ops_cv_load_param(c, kk, 3, v[1])));
  kir_store(kk, 0, v, kir_cast(AR, dt, y), NULL);
  return NULL;
}
