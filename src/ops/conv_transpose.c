/* ConvTranspose and Col2Im: both scatter input positions onto a larger output,
 * lowered here as gathers. Output position o receives input position i through
 * kernel offset k when o + pad_begin - k*dilation = i*stride, so each output
 * element is a reduction over k (and channels) guarded by that divisibility. */
#include <string.h>

#include "ops/conv_common.h"
#include "ops/conv_internal.h"

#define AR (c->arena)

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* i = t / s when t >= 0, t % s == 0 and t / s < n; *ok gets the condition. */
static kir_expr_t *strided_source(fl_arena_t *a, kir_expr_t *t, int64_t s, kir_expr_t *n, kir_expr_t **ok) {
  kir_expr_t *S = kir_i64(a, s);
  kir_expr_t *i = s == 1 ? t : kir_bin(a, KIR_DIV, t, S);
  kir_expr_t *c = kir_bin(a, KIR_GE, t, kir_i64(a, 0));
  if (s != 1) c = kir_bin(a, KIR_AND, c, kir_bin(a, KIR_EQ, kir_bin(a, KIR_MOD, t, S), kir_i64(a, 0)));
  c = kir_bin(a, KIR_AND, c, kir_bin(a, KIR_LT, i, n));
  *ok = c;
  return i;
}

/* ---- ConvTranspose ---- */

flagos_status_t ops_cv_transpose_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs X and W");
  const ops_tensor_info_t *X = &c->in[0], *W = &c->in[1];
  flagos_dtype_t dt = X->dtype;
  if (!flagos_dtype_is_float(dt)) return ops_err(c, FLAGOS_ERR_SHAPE, "X must be floating point");
  if (W->dtype != dt || (ops_has_in(c, 2) && c->in[2].dtype != dt))
    return ops_err(c, FLAGOS_ERR_SHAPE, "X, W and B must share one dtype");
  if (X->rank < 3 || W->rank != X->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "X and W must have the same rank >= 3 (got %d and %d)", X->rank, W->rank);
  int nd = X->rank - 2;
  ops_sp_t g;
  FL_TRY(ops_sp_read(c, nd, W->dims + 2, false, &g));
  int64_t group = fir_attr_int(c->node, "group", 1);
  if (group < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "group must be positive");
  if (X->dims[1] >= 0 && W->dims[0] >= 0 && X->dims[1] != W->dims[0])
    return ops_err(c, FLAGOS_ERR_SHAPE, "X has %lld channels, W has %lld", (long long)X->dims[1],
                   (long long)W->dims[0]);
  if (X->dims[1] >= 0 && X->dims[1] % group != 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "channels %lld not a multiple of group %lld", (long long)X->dims[1],
                   (long long)group);
  if (ops_has_in(c, 2)) {
    const ops_tensor_info_t *B = &c->in[2];
    int64_t M = W->dims[1] >= 0 ? W->dims[1] * group : -1;
    if (B->rank != 1 || (B->dims[0] >= 0 && M >= 0 && B->dims[0] != M))
      return ops_err(c, FLAGOS_ERR_SHAPE, "B must be 1-D with one value per output channel");
  }
  int64_t opad[OPS_MAX_RANK];
  FL_TRY(ops_sp_ints(c, "output_padding", nd, 0, opad));
  const int64_t *os;
  int nos = fir_attr_ints(c->node, "output_shape", &os);
  if (nos > 0 && nos != nd && nos != nd + 2)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "output_shape has %d values, expected %d", nos, nd);
  if (nos == nd + 2) os += 2;
  bool same = g.auto_pad == OPS_SP_SAME_UPPER || g.auto_pad == OPS_SP_SAME_LOWER;
  int64_t d[OPS_MAX_RANK];
  d[0] = X->dims[0];
  d[1] = W->dims[1] >= 0 ? W->dims[1] * group : -1;
  for (int i = 0; i < nd; i++) {
    /* An unknown kernel size (W's dims only known at run time) leaves the size unknown too. */
    int64_t in = g.k[i] >= 0 ? X->dims[2 + i] : -1, dk = (g.k[i] - 1) * g.d[i] + 1, out;
    if (nos > 0 || same) {
      out = nos > 0 ? os[i] : (in >= 0 ? in * g.s[i] : -1);
      if (same && in >= 0) {
        int64_t total = g.s[i] * (in - 1) + opad[i] + dk - out;
        int64_t half = floor_div(total, 2);
        g.pb[i] = g.auto_pad == OPS_SP_SAME_UPPER ? half : total - half;
      }
    } else {
      out = in >= 0 ? g.s[i] * (in - 1) + opad[i] + dk - g.pb[i] - g.pe[i] : -1;
      if (in >= 0 && out < 1)
        return ops_err(c, FLAGOS_ERR_SHAPE, "spatial dim %d: output size %lld is not positive", i, (long long)out);
    }
    d[2 + i] = out;
  }
  ops_set_out(c, 0, dt, X->rank, d);
  c->n_params = 0;
  ops_sp_params(c, &g, 0);
  return NULL;
}

double ops_cv_transpose_flops(const ops_ctx_t *c) {
  const ops_tensor_info_t *X = &c->in[0], *W = &c->in[1];
  if (X->numel < 0 || W->numel < 0 || W->dims[0] <= 0) return 0;
  /* Every input element meets every weight of its group: 2 * |X| * (|W| / C). */
  return 2.0 * (double)X->numel * (double)W->numel / (double)W->dims[0];
}

flagos_status_t ops_cv_transpose_lower(ops_ctx_t *c) {
  const ops_tensor_info_t *X = &c->in[0];
  int nd = X->rank - 2;
  ops_sp_t g;
  static const int64_t ones[OPS_MAX_RANK] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  FL_TRY(ops_sp_read(c, nd, ones, false, &g));
  int64_t group = fir_attr_int(c->node, "group", 1);
  flagos_dtype_t dt = c->out[0].dtype;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "convtranspose", v);
  int bx = ops_buf_in(c, kk, 0), bw = ops_buf_in(c, kk, 1);
  kir_expr_t *Mg = ops_in_dim(c, 1, 1);
  kir_expr_t *Cg = kir_bin(AR, KIR_DIV, ops_in_dim(c, 0, 1), kir_i64(AR, group));
  kir_expr_t *gi = group == 1 ? kir_i64(AR, 0) : kir_bin(AR, KIR_DIV, v[1], Mg);
  kir_expr_t *ml = group == 1 ? v[1] : kir_bin(AR, KIR_MOD, v[1], Mg);
  int rv[OPS_MAX_RANK];
  kir_expr_t *rext[OPS_MAX_RANK] = {0}, *rk[OPS_MAX_RANK] = {0}; /* nd >= 0: rk[0] is always set */
  for (int i = 0; i < nd + 1; i++) {
    rv[i] = kir_new_var(kk);
    rk[i] = kir_var(AR, rv[i]);
    rext[i] = i == 0 ? Cg : ops_in_dim(c, 1, 1 + i);
  }
  kir_expr_t *ic = kir_add(AR, kir_mul(AR, gi, Cg), rk[0]);
  kir_expr_t *xi[OPS_MAX_RANK], *wi[OPS_MAX_RANK];
  xi[0] = v[0];
  xi[1] = ic;
  wi[0] = ic;
  wi[1] = ml;
  kir_expr_t *ok = kir_bool(AR, true);
  for (int i = 0; i < nd; i++) {
    kir_expr_t *t = kir_sub(AR, kir_add(AR, v[2 + i], ops_param(c, i)), kir_mul(AR, rk[1 + i], kir_i64(AR, g.d[i])));
    kir_expr_t *oki;
    xi[2 + i] = strided_source(AR, t, g.s[i], ops_in_dim(c, 0, 2 + i), &oki);
    ok = kir_bin(AR, KIR_AND, ok, oki);
    wi[2 + i] = rk[1 + i];
  }
  kir_expr_t *term = kir_bin(AR, KIR_MUL, kir_load(kk, bx, xi), kir_load(kk, bw, wi));
  term = kir_select(AR, ok, term, kir_const(AR, dt, 0));
  kir_expr_t *y = kir_reduce(AR, KIR_RSUM, nd + 1, rv, rext, term);
  if (ops_has_in(c, 2)) y = kir_bin(AR, KIR_ADD, y, ops_cv_load_param(c, kk, 2, v[1]));
  kir_store(kk, 0, v, y, NULL);
  return NULL;
}

/* ---- Col2Im ----
 * params: [0,nd) image dims, [nd,2nd) block dims, [2nd,3nd) start pads, [3nd,4nd) blocks per dim. */

flagos_status_t ops_cv_col2im_infer(ops_ctx_t *c) {
  if (c->n_in != 3 || !ops_has_in(c, 0) || !ops_has_in(c, 1) || !ops_has_in(c, 2))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs input, image_shape and block_shape");
  const ops_tensor_info_t *X = &c->in[0], *I = &c->in[1], *Bk = &c->in[2];
  if (X->rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "input must be 3-D (got rank %d)", X->rank);
  if (I->rank != 1 || I->dims[0] < 1)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "image_shape must be 1-D of known length");
  if (Bk->rank != 1 || Bk->dims[0] != I->dims[0])
    return ops_err(c, FLAGOS_ERR_SHAPE, "block_shape must be 1-D of the same length as image_shape");
  int nd = (int)I->dims[0];
  if (nd > OPS_MAX_RANK - 2) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "too many spatial dims (%d)", nd);
  int64_t s[OPS_MAX_RANK], dl[OPS_MAX_RANK], pads[2 * OPS_MAX_RANK];
  FL_TRY(ops_sp_ints(c, "strides", nd, 1, s));
  FL_TRY(ops_sp_ints(c, "dilations", nd, 1, dl));
  FL_TRY(ops_sp_ints(c, "pads", 2 * nd, 0, pads));
  c->n_params = 4 * nd;
  int64_t d[OPS_MAX_RANK];
  d[0] = X->dims[0];
  d[1] = -1;
  for (int i = 0; i < nd; i++) d[2 + i] = -1;
  if (I->value && Bk->value) {
    int64_t bprod = 1, lprod = 1;
    for (int i = 0; i < nd; i++) {
      int64_t img = ops_in_int(c, 1, i), blk = ops_in_int(c, 2, i);
      if (img < 1 || blk < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "image_shape and block_shape must be positive");
      int64_t nblk = (img + pads[i] + pads[nd + i] - dl[i] * (blk - 1) - 1) / s[i] + 1;
      if (nblk < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "dim %d: the block does not fit the padded image", i);
      c->params[i] = img;
      c->params[nd + i] = blk;
      c->params[2 * nd + i] = pads[i];
      c->params[3 * nd + i] = nblk;
      d[2 + i] = img;
      bprod *= blk;
      lprod *= nblk;
    }
    if (X->dims[1] >= 0) {
      if (X->dims[1] % bprod != 0)
        return ops_err(c, FLAGOS_ERR_SHAPE, "input dim 1 (%lld) is not a multiple of the block size %lld",
                       (long long)X->dims[1], (long long)bprod);
      d[1] = X->dims[1] / bprod;
    }
    if (X->dims[2] >= 0 && X->dims[2] != lprod)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input dim 2 is %lld but the blocks number %lld", (long long)X->dims[2],
                     (long long)lprod);
  }
  ops_set_out(c, 0, X->dtype, 2 + nd, d);
  return NULL;
}

flagos_status_t ops_cv_col2im_lower(ops_ctx_t *c) {
  int nd = (int)c->in[1].dims[0];
  int64_t s[OPS_MAX_RANK], dl[OPS_MAX_RANK];
  FL_TRY(ops_sp_ints(c, "strides", nd, 1, s));
  FL_TRY(ops_sp_ints(c, "dilations", nd, 1, dl));
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "col2im", v);
  int bx = ops_buf_in(c, kk, 0);
  int rv[OPS_MAX_RANK];
  kir_expr_t *rext[OPS_MAX_RANK];
  kir_expr_t *col = v[1], *l = kir_i64(AR, 0), *ok = kir_bool(AR, true);
  for (int i = 0; i < nd; i++) {
    rv[i] = kir_new_var(kk);
    kir_expr_t *k = kir_var(AR, rv[i]);
    kir_expr_t *blk = ops_param(c, nd + i), *nblk = ops_param(c, 3 * nd + i);
    rext[i] = blk;
    col = kir_add(AR, kir_mul(AR, col, blk), k);
    kir_expr_t *t = kir_sub(AR, kir_add(AR, v[2 + i], ops_param(c, 2 * nd + i)), kir_mul(AR, k, kir_i64(AR, dl[i])));
    kir_expr_t *oki;
    kir_expr_t *src = strided_source(AR, t, s[i], nblk, &oki);
    ok = kir_bin(AR, KIR_AND, ok, oki);
    l = kir_add(AR, kir_mul(AR, l, nblk), src);
  }
  kir_expr_t *xi[3] = {v[0], col, l};
  kir_expr_t *term = kir_select(AR, ok, kir_load(kk, bx, xi), kir_const(AR, c->out[0].dtype, 0));
  kir_store(kk, 0, v, kir_reduce(AR, KIR_RSUM, nd, rv, rext, term), NULL);
  return NULL;
}
