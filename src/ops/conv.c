/* Convolutions: Conv, ConvInteger and QLinearConv (plus the family table;
 * ConvTranspose, Col2Im and DeformConv live in conv_*.c).
 *
 * The generic lowering is a reduction over (input channel within the group,
 * kernel positions) for each output element, with the input load guarded
 * where the window reaches into the padding. The start pads are params because
 * auto_pad makes them depend on the input shape. */
#include <math.h>

#include "ops/conv_common.h"
#include "ops/conv_internal.h"

#define AR (c->arena)

/* ---- shared by Conv, ConvInteger, QLinearConv ---- */

flagos_status_t ops_cv_infer_common(ops_ctx_t *c, int ix, int iw, flagos_dtype_t out_dt) {
  const ops_tensor_info_t *X = &c->in[ix], *W = &c->in[iw];
  if (X->rank < 3) return ops_err(c, FLAGOS_ERR_SHAPE, "X must have rank >= 3 (got %d)", X->rank);
  if (W->rank != X->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "W has rank %d, X has rank %d", W->rank, X->rank);
  int nd = X->rank - 2;
  ops_sp_t g;
  FL_TRY(ops_sp_read(c, nd, W->dims + 2, false, &g));
  for (int i = 0; i < nd; i++)
    if (W->dims[2 + i] >= 0 && W->dims[2 + i] != g.k[i])
      return ops_err(c, FLAGOS_ERR_SHAPE, "kernel_shape[%d] = %lld but W has %lld", i, (long long)g.k[i],
                     (long long)W->dims[2 + i]);
  int64_t group = fir_attr_int(c->node, "group", 1);
  if (group < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "group must be positive");
  int64_t C = X->dims[1], Cg = W->dims[1], M = W->dims[0];
  if (C >= 0 && Cg >= 0 && C != Cg * group)
    return ops_err(c, FLAGOS_ERR_SHAPE, "X has %lld channels but W expects %lld x group %lld", (long long)C,
                   (long long)Cg, (long long)group);
  if (M >= 0 && M % group != 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "W has %lld output channels, not a multiple of group %lld", (long long)M,
                   (long long)group);
  int64_t d[OPS_MAX_RANK];
  d[0] = X->dims[0];
  d[1] = M;
  for (int i = 0; i < nd; i++) {
    d[2 + i] = ops_sp_out(&g, i, X->dims[2 + i]);
    if (d[2 + i] == 0 || d[2 + i] < -1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "spatial dim %d: the kernel does not fit the padded input", i);
  }
  ops_set_out(c, 0, out_dt, X->rank, d);
  c->n_params = 0;
  ops_sp_params(c, &g, 0);
  return NULL;
}

/* docs/eaf.md: 2 * N * Cout * prod(out spatial) * (Cin / group) * prod(kernel),
 * i.e. 2 * |Y| * prod(W dims but the first); the bias add is not counted. */
static double conv_flops_w(const ops_ctx_t *c, int iw) {
  const ops_tensor_info_t *W = &c->in[iw];
  if (c->out[0].numel < 0) return 0;
  double f = 2.0 * (double)c->out[0].numel;
  for (int i = 1; i < W->rank; i++) {
    if (W->dims[i] < 0) return 0;
    f *= (double)W->dims[i];
  }
  return f;
}

double ops_cv_flops(const ops_ctx_t *c) { return conv_flops_w(c, 1); }
static double qlconv_flops(const ops_ctx_t *c) { return conv_flops_w(c, 3); }

kir_expr_t *ops_cv_sum(ops_ctx_t *c, kir_kernel_t *kk, kir_expr_t *const *v, int ix, int iw, kir_expr_t *xzp,
                       kir_expr_t *wzp, flagos_dtype_t acc) {
  const ops_tensor_info_t *X = &c->in[ix];
  int nd = X->rank - 2;
  ops_sp_t g;
  /* Only strides, dilations and auto_pad matter here; the kernel extents come from W. */
  static const int64_t ones[OPS_MAX_RANK] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  flagos_status_t st = ops_sp_read(c, nd, ones, false, &g);
  if (st) flagos_status_free(st); /* infer already accepted these attributes */
  int64_t group = fir_attr_int(c->node, "group", 1);
  int bx = ops_buf_in(c, kk, ix), bw = ops_buf_in(c, kk, iw);
  kir_expr_t *Cg = ops_in_dim(c, iw, 1);
  kir_expr_t *Mg = kir_bin(AR, KIR_DIV, ops_in_dim(c, iw, 0), kir_i64(AR, group));
  kir_expr_t *gi = group == 1 ? kir_i64(AR, 0) : kir_bin(AR, KIR_DIV, v[1], Mg);
  int rv[OPS_MAX_RANK];
  kir_expr_t *rext[OPS_MAX_RANK] = {0}, *rk[OPS_MAX_RANK] = {0}; /* nd >= 0: rk[0] is always set */
  for (int i = 0; i < nd + 1; i++) {
    rv[i] = kir_new_var(kk);
    rk[i] = kir_var(AR, rv[i]);
    rext[i] = ops_in_dim(c, iw, 1 + i);
  }
  kir_expr_t *xi[OPS_MAX_RANK], *wi[OPS_MAX_RANK], *pos[OPS_MAX_RANK], *dims[OPS_MAX_RANK];
  xi[0] = v[0];
  xi[1] = kir_add(AR, kir_mul(AR, gi, Cg), rk[0]);
  wi[0] = v[1];
  wi[1] = rk[0];
  bool guard = false;
  for (int i = 0; i < nd; i++) {
    kir_expr_t *pb = ops_param(c, i);
    if (!kir_is_const(pb, 0) || g.pe[i] != 0 || g.auto_pad == OPS_SP_SAME_UPPER || g.auto_pad == OPS_SP_SAME_LOWER)
      guard = true;
    pos[i] = kir_add(AR, kir_sub(AR, kir_mul(AR, v[2 + i], kir_i64(AR, g.s[i])), pb),
                     kir_mul(AR, rk[1 + i], kir_i64(AR, g.d[i])));
    dims[i] = ops_in_dim(c, ix, 2 + i);
    xi[2 + i] = pos[i];
    wi[2 + i] = rk[1 + i];
  }
  kir_expr_t *xv = kir_cast(AR, acc, kir_load(kk, bx, xi));
  if (xzp) xv = kir_bin(AR, KIR_SUB, xv, kir_cast(AR, acc, xzp));
  kir_expr_t *wv = kir_cast(AR, acc, kir_load(kk, bw, wi));
  if (wzp) wv = kir_bin(AR, KIR_SUB, wv, kir_cast(AR, acc, wzp));
  kir_expr_t *term = kir_bin(AR, KIR_MUL, xv, wv);
  if (guard) term = kir_select(AR, ops_sp_inside(AR, nd, pos, dims), term, kir_const(AR, acc, 0));
  return kir_reduce(AR, KIR_RSUM, nd + 1, rv, rext, term);
}

/* Loads element i of a per-tensor (scalar / one element) or 1-D per-channel input k. */
kir_expr_t *ops_cv_load_param(ops_ctx_t *c, kir_kernel_t *kk, int k, kir_expr_t *i) {
  int b = ops_buf_in(c, kk, k);
  const kir_buf_t *bf = &kk->bufs[b];
  kir_expr_t *idx[OPS_MAX_RANK];
  for (int j = 0; j < bf->rank; j++) idx[j] = kir_i64(AR, 0);
  if (bf->rank >= 1) {
    kir_expr_t *d = bf->dims[bf->rank - 1];
    idx[bf->rank - 1] = kir_is_const(d, 1) ? kir_i64(AR, 0)
                        : d->kind == KIR_CONST
                            ? i
                            : kir_select(AR, kir_bin(AR, KIR_EQ, d, kir_i64(AR, 1)), kir_i64(AR, 0), i);
  }
  return kir_load(kk, b, idx);
}

flagos_status_t ops_cv_check_bias(ops_ctx_t *c, int k, int iw) {
  if (!ops_has_in(c, k)) return NULL;
  const ops_tensor_info_t *B = &c->in[k];
  int64_t M = c->in[iw].dims[0];
  if (B->rank != 1 || (B->dims[0] >= 0 && M >= 0 && B->dims[0] != M))
    return ops_err(c, FLAGOS_ERR_SHAPE, "B must be 1-D with one value per output channel");
  return NULL;
}

/* ---- Conv ---- */

static flagos_status_t conv_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs X and W");
  flagos_dtype_t dt = c->in[0].dtype;
  if (!flagos_dtype_is_float(dt)) return ops_err(c, FLAGOS_ERR_SHAPE, "X must be floating point (got %s)", flagos_dtype_name(dt));
  if (c->in[1].dtype != dt || (ops_has_in(c, 2) && c->in[2].dtype != dt))
    return ops_err(c, FLAGOS_ERR_SHAPE, "X, W and B must share one dtype");
  FL_TRY(ops_cv_check_bias(c, 2, 1));
  return ops_cv_infer_common(c, 0, 1, dt);
}

static flagos_status_t conv_lower(ops_ctx_t *c) {
  bool used;
  FL_TRY(ops_cv_lower_gemm(c, &used));
  if (used) return NULL;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "conv", v);
  flagos_dtype_t dt = c->out[0].dtype;
  kir_expr_t *y = ops_cv_sum(c, kk, v, 0, 1, NULL, NULL, dt);
  if (ops_has_in(c, 2)) y = kir_bin(AR, KIR_ADD, y, ops_cv_load_param(c, kk, 2, v[1]));
  kir_store(kk, 0, v, y, NULL);
  ops_cv_attach_conv(c, kk);
  return NULL;
}

/* ---- ConvInteger ---- */

static bool is_q8(flagos_dtype_t dt) { return dt == FLAGOS_INT8 || dt == FLAGOS_UINT8; }

static flagos_status_t convint_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs x and w");
  if (!is_q8(c->in[0].dtype) || !is_q8(c->in[1].dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "x and w must be int8 or uint8");
  for (int k = 2; k < 4; k++)
    if (ops_has_in(c, k) && c->in[k].dtype != c->in[k - 2].dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "zero point %d must have its operand's dtype", k);
  return ops_cv_infer_common(c, 0, 1, FLAGOS_INT32);
}

static flagos_status_t convint_lower(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "convinteger", v);
  kir_expr_t *xzp = ops_has_in(c, 2) ? ops_cv_load_param(c, kk, 2, kir_i64(AR, 0)) : NULL;
  kir_expr_t *wzp = ops_has_in(c, 3) ? ops_cv_load_param(c, kk, 3, v[1]) : NULL;
  kir_store(kk, 0, v, ops_cv_sum(c, kk, v, 0, 1, xzp, wzp, FLAGOS_INT32), NULL);
  return NULL;
}

/* ---- QLinearConv ---- */

static flagos_status_t qlconv_infer(ops_ctx_t *c) {
  if (c->n_in < 8) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects at least 8 inputs, got %d", c->n_in);
  static const int required[] = {0, 1, 3, 4, 6};
  for (size_t i = 0; i < FL_ARRAY_LEN(required); i++)
    if (!ops_has_in(c, required[i]))
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d is required", required[i]);
  if (!is_q8(c->in[0].dtype) || !is_q8(c->in[3].dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "x and w must be int8 or uint8");
  if (ops_has_in(c, 8) && c->in[8].dtype != FLAGOS_INT32) return ops_err(c, FLAGOS_ERR_SHAPE, "B must be int32");
  FL_TRY(ops_cv_check_bias(c, 8, 3));
  flagos_dtype_t ot = ops_has_in(c, 7) ? c->in[7].dtype : c->in[0].dtype;
  if (!is_q8(ot)) return ops_err(c, FLAGOS_ERR_SHAPE, "y_zero_point must be int8 or uint8");
  return ops_cv_infer_common(c, 0, 3, ot);
}

static flagos_status_t qlconv_lower(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "qlinearconv", v);
  flagos_dtype_t ot = c->out[0].dtype;
  kir_expr_t *xzp = ops_has_in(c, 2) ? ops_cv_load_param(c, kk, 2, kir_i64(AR, 0)) : NULL;
  kir_expr_t *wzp = ops_has_in(c, 5) ? ops_cv_load_param(c, kk, 5, v[1]) : NULL;
  kir_expr_t *acc = ops_cv_sum(c, kk, v, 0, 3, xzp, wzp, FLAGOS_INT32);
  if (ops_has_in(c, 8)) acc = kir_bin(AR, KIR_ADD, acc, ops_cv_load_param(c, kk, 8, v[1]));
  kir_expr_t *f32 = NULL;
  kir_expr_t *xs = kir_cast(AR, FLAGOS_FLOAT32, ops_cv_load_param(c, kk, 1, kir_i64(AR, 0)));
  kir_expr_t *ws = kir_cast(AR, FLAGOS_FLOAT32, ops_cv_load_param(c, kk, 4, v[1]));
  kir_expr_t *ys = kir_cast(AR, FLAGOS_FLOAT32, ops_cv_load_param(c, kk, 6, kir_i64(AR, 0)));
  f32 = kir_bin(AR, KIR_DIV, kir_bin(AR, KIR_MUL, xs, ws), ys);
  kir_expr_t *r = kir_bin(AR, KIR_MUL, kir_cast(AR, FLAGOS_FLOAT64, acc), kir_cast(AR, FLAGOS_FLOAT64, f32));
  if (ops_has_in(c, 7)) r = kir_bin(AR, KIR_ADD, r, kir_cast(AR, FLAGOS_FLOAT64, ops_cv_load_param(c, kk, 7, kir_i64(AR, 0))));
  double lo = ot == FLAGOS_INT8 ? -128 : 0, hi = ot == FLAGOS_INT8 ? 127 : 255;
  r = kir_bin(AR, KIR_MIN, kir_bin(AR, KIR_MAX, r, kir_const(AR, FLAGOS_FLOAT64, lo)), kir_const(AR, FLAGOS_FLOAT64, hi));
  kir_store(kk, 0, v, kir_cast(AR, ot, kir_un(AR, KIR_ROUND, r)), NULL);
  return NULL;
}

const ops_def_t ops_family_conv[] = {
    {"Conv", "", 0, conv_infer, conv_lower, ops_cv_flops},
    {"ConvInteger", "", 0, convint_infer, convint_lower, ops_cv_flops},
    {"QLinearConv", "", 0, qlconv_infer, qlconv_lower, qlconv_flops},
    {"ConvTranspose", "", 0, ops_cv_transpose_infer, ops_cv_transpose_lower, ops_cv_transpose_flops},
    /* the convolution's count; the bilinear sampling of each tap is not counted */
    {"DeformConv", "", 0, ops_cv_deform_infer, ops_cv_deform_lower, ops_cv_flops},
    {"Col2Im", "", (1u << 1) | (1u << 2), ops_cv_col2im_infer, ops_cv_col2im_lower, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
