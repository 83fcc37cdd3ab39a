/* Conv as im2col + GEMM, for float32/float64 and float16/bfloat16 (which a GPU
 * BLAS takes): one kernel gathers the input patches into a matrix (a temp), and a
 * second kernel multiplies the weights by it.
 * The second kernel carries the "gemm" library call (OpenBLAS on cpu), so a
 * backend with a BLAS runs the product there, and it keeps its generic reduction
 * body for backends without one. A 1x1 convolution with unit strides and no
 * padding needs no patch matrix: the input already is one. The generic
 * one-kernel lowering (conv.c) serves the cases this does not take: other dtypes,
 * kernels whose size is unknown at compile time, and grouped convolutions whose
 * per-group products are too small to pay for a library call.
 *
 * The node's first kernel also carries the "conv" library call (cuDNN on
 * cuda) for 1-D and 2-D convolutions, marked ends_node: a backend that takes it
 * computes the whole output, bias included, and the node's other kernels are
 * skipped; one that declines runs them all as before. A pointwise convolution
 * without bias has no kernel before the gemm to carry it and keeps the gemm
 * call alone. */
#include "ops/conv_common.h"
#include "ops/conv_internal.h"

#define AR (c->arena)

static kir_expr_t *prod(fl_arena_t *a, kir_expr_t *const *d, int n) {
  kir_expr_t *p = kir_i64(a, 1);
  for (int i = 0; i < n; i++) p = kir_mul(a, p, d[i]);
  return p;
}

/* The buffer of kk bound to the whole of tensor `index` of `kind`, or -1. */
static int find_bind(ops_ctx_t *c, const kir_kernel_t *kk, ops_bind_kind_t kind, int index, int rank) {
  for (int s = 0; s < c->n_steps; s++) {
    if (c->steps[s].kernel != kk) continue;
    for (int b = 0; b < kk->n_bufs; b++)
      if (c->steps[s].binds[b].kind == kind && c->steps[s].binds[b].index == index && kk->bufs[b].rank == rank)
        return b;
  }
  return -1;
}

static int bind_whole(ops_ctx_t *c, kir_kernel_t *kk, ops_bind_kind_t kind, int index) {
  int rank = kind == OPS_BIND_INPUT ? c->in[index].rank : c->out[index].rank;
  int b = find_bind(c, kk, kind, index, rank);
  if (b >= 0) return b;
  return kind == OPS_BIND_INPUT ? ops_buf_in(c, kk, index) : ops_buf_out(c, kk, index);
}

void ops_cv_attach_conv(ops_ctx_t *c, kir_kernel_t *kk) {
  flagos_dtype_t dt = c->out[0].dtype;
  if (dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT64 && dt != FLAGOS_FLOAT16 && dt != FLAGOS_BFLOAT16) return;
  if (kk->libcall) return;
  const ops_tensor_info_t *X = &c->in[0], *W = &c->in[1];
  int nd = X->rank - 2;
  if (nd < 1 || nd > 2 || W->rank != X->rank) return;
  bool bias = ops_has_in(c, 2);
  /* The call adds one bias value per output channel: a B whose length is not
   * known to be M (a broadcast single value) stays with the kernels. */
  if (bias && (c->in[2].rank != 1 || c->in[2].dims[0] < 0 || c->in[2].dims[0] != W->dims[0])) return;
  static const int64_t ones[OPS_MAX_RANK] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  ops_sp_t g;
  flagos_status_t st = ops_sp_read(c, nd, ones, false, &g);
  if (st) {
    flagos_status_free(st); /* infer already accepted these attributes */
    return;
  }
  int64_t G = fir_attr_int(c->node, "group", 1);
  /* 1-D is 2-D with height 1. */
  int h = nd == 2 ? 0 : -1, w = nd - 1;
  kir_expr_t *one = kir_i64(AR, 1), *zero = kir_i64(AR, 0);
  kir_expr_t *ints[16] = {
      ops_in_dim(c, 0, 0),
      ops_in_dim(c, 0, 1),
      h < 0 ? one : ops_in_dim(c, 0, 2 + h),
      ops_in_dim(c, 0, 2 + w),
      ops_in_dim(c, 1, 0),
      h < 0 ? one : ops_out_dim(c, 0, 2 + h),
      ops_out_dim(c, 0, 2 + w),
      h < 0 ? one : ops_in_dim(c, 1, 2 + h),
      ops_in_dim(c, 1, 2 + w),
      h < 0 ? zero : ops_param(c, h),
      ops_param(c, w),
      kir_i64(AR, h < 0 ? 1 : g.s[h]),
      kir_i64(AR, g.s[w]),
      kir_i64(AR, h < 0 ? 1 : g.d[h]),
      kir_i64(AR, g.d[w]),
      kir_i64(AR, G),
  };
  int bufs[4], nb = 0;
  bufs[nb++] = bind_whole(c, kk, OPS_BIND_INPUT, 0);
  bufs[nb++] = bind_whole(c, kk, OPS_BIND_INPUT, 1);
  if (bias) bufs[nb++] = bind_whole(c, kk, OPS_BIND_INPUT, 2);
  bufs[nb++] = bind_whole(c, kk, OPS_BIND_OUTPUT, 0);
  static const double none[1] = {0};
  kir_set_libcall(kk, "conv", nb, bufs, 16, ints, 0, none);
  kk->libcall->ends_node = true;
}

flagos_status_t ops_cv_lower_gemm(ops_ctx_t *c, bool *used) {
  *used = false;
  flagos_dtype_t dt = c->out[0].dtype;
  if (dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT64 && dt != FLAGOS_FLOAT16 && dt != FLAGOS_BFLOAT16) return NULL;
  const ops_tensor_info_t *X = &c->in[0], *W = &c->in[1];
  int nd = X->rank - 2;
  if (nd < 1 || nd > 3 || W->rank != X->rank) return NULL;
  for (int i = 0; i < W->rank; i++)
    if (W->dims[i] < 0) return NULL;
  int64_t G = fir_attr_int(c->node, "group", 1);
  if (G < 1 || W->dims[0] % G) return NULL;
  int64_t Mg = W->dims[0] / G, Cg = W->dims[1], Kprod = 1;
  for (int i = 0; i < nd; i++) Kprod *= W->dims[2 + i];
  int64_t Kc = Cg * Kprod;
  /* With groups, one batched product needs the batch to be 1 (the weights of
   * group g sit at a fixed stride); tiny per-group products stay generic. */
  if (G > 1 && (X->dims[0] != 1 || Mg < 8 || Kc < 8)) return NULL;

  static const int64_t ones[OPS_MAX_RANK] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  ops_sp_t g;
  flagos_status_t st = ops_sp_read(c, nd, ones, false, &g);
  if (st) {
    flagos_status_free(st); /* infer already accepted these attributes */
    return NULL;
  }
  bool pointwise = Kprod == 1 && g.auto_pad != OPS_SP_SAME_UPPER && g.auto_pad != OPS_SP_SAME_LOWER;
  for (int i = 0; i < nd && pointwise; i++)
    pointwise = g.s[i] == 1 && g.d[i] == 1 && g.pe[i] == 0 && kir_is_const(ops_param(c, i), 0);

  kir_expr_t *n = ops_in_dim(c, 0, 0), *Gx = kir_i64(AR, G), *Mgx = kir_i64(AR, Mg), *Kcx = kir_i64(AR, Kc);
  kir_expr_t *odims[OPS_MAX_RANK], *kdims[OPS_MAX_RANK];
  for (int i = 0; i < nd; i++) {
    odims[i] = ops_out_dim(c, 0, 2 + i);
    kdims[i] = kir_i64(AR, W->dims[2 + i]);
  }
  kir_expr_t *O = prod(AR, odims, nd), *B = kir_mul(AR, n, Gx);
  int col = -1;
  kir_kernel_t *first = NULL; /* carries the conv call */
  if (!pointwise) {
    /* col[n, g, c, k..., o...] = X[n, g*Cg + c, o*s - pad + k*d], 0 in the padding */
    kir_expr_t *cd[3 + 2 * 3];
    cd[0] = n;
    cd[1] = Gx;
    cd[2] = kir_i64(AR, Cg);
    for (int i = 0; i < nd; i++) {
      cd[3 + i] = kdims[i];
      cd[3 + nd + i] = odims[i];
    }
    col = ops_temp(c, dt, 3 + 2 * nd, cd);
    kir_kernel_t *kk = ops_kernel(c, "im2col");
    first = kk;
    int tb = ops_buf_temp(c, kk, col), xb = ops_buf_in(c, kk, 0);
    kir_expr_t *v[3 + 2 * 3], *xi[OPS_MAX_RANK], *pos[OPS_MAX_RANK], *sd[OPS_MAX_RANK];
    kir_set_space(kk, 3 + 2 * nd, cd, v);
    xi[0] = v[0];
    xi[1] = kir_add(AR, kir_mul(AR, v[1], kir_i64(AR, Cg)), v[2]);
    for (int i = 0; i < nd; i++) {
      pos[i] = kir_add(AR, kir_sub(AR, kir_mul(AR, v[3 + nd + i], kir_i64(AR, g.s[i])), ops_param(c, i)),
                       kir_mul(AR, v[3 + i], kir_i64(AR, g.d[i])));
      sd[i] = ops_in_dim(c, 0, 2 + i);
      xi[2 + i] = pos[i];
    }
    kir_expr_t *x = kir_select(AR, ops_sp_inside(AR, nd, pos, sd), kir_load(kk, xb, xi), kir_const(AR, dt, 0));
    kir_store(kk, tb, v, x, NULL);
  }
  bool bias = ops_has_in(c, 2);
  if (bias) {
    kir_expr_t *v[OPS_MAX_RANK];
    kir_kernel_t *kk = ops_out_kernel(c, 0, "bias", v);
    kir_store(kk, 0, v, ops_cv_load_param(c, kk, 2, v[1]), NULL);
    if (!first) first = kk;
  }
  /* y[b, m, o] (+)= sum_r w[g*Mg + m, r] * col[b, r, o], b = n*G + g */
  kir_kernel_t *kk = ops_kernel(c, "gemm");
  kir_expr_t *yd[3] = {B, Mgx, O}, *wd[2] = {kir_i64(AR, W->dims[0]), Kcx}, *cdv[3] = {B, Kcx, O};
  int wb = ops_buf_view(c, kk, OPS_BIND_INPUT, 1, 2, wd);
  int cb = pointwise ? ops_buf_view(c, kk, OPS_BIND_INPUT, 0, 3, cdv) : ops_buf_view(c, kk, OPS_BIND_TEMP, col, 3, cdv);
  int yb = ops_buf_view(c, kk, OPS_BIND_OUTPUT, 0, 3, yd);
  kir_expr_t *v[3];
  kir_set_space(kk, 3, yd, v);
  int r = kir_new_var(kk);
  kir_expr_t *rv = kir_var(AR, r), *gi = G == 1 ? kir_i64(AR, 0) : kir_bin(AR, KIR_MOD, v[0], Gx);
  kir_expr_t *wi[2] = {kir_add(AR, kir_mul(AR, gi, Mgx), v[1]), rv}, *ci[3] = {v[0], rv, v[2]};
  kir_expr_t *sum = kir_reduce(AR, KIR_RSUM, 1, &r, &Kcx, kir_bin(AR, KIR_MUL, kir_load(kk, wb, wi), kir_load(kk, cb, ci)));
  kir_store(kk, yb, v, bias ? kir_bin(AR, KIR_ADD, kir_load(kk, yb, v), sum) : sum, NULL);
  int bufs[3] = {wb, cb, yb};
  kir_expr_t *ints[9] = {B,   Mgx, O, Kcx, kir_i64(AR, 0), kir_i64(AR, 0), kir_i64(AR, G == 1 ? 0 : Mg * Kc),
                         kir_mul(AR, Kcx, O), kir_mul(AR, Mgx, O)};
  double floats[2] = {1.0, bias ? 1.0 : 0.0};
  kir_set_libcall(kk, "gemm", 3, bufs, 9, ints, 2, floats);
  if (first) ops_cv_attach_conv(c, first);
  *used = true;
  return NULL;
}
