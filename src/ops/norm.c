/* Normalisations along axes: Softmax, LogSoftmax, Hardmax, LpNormalization,
 * MeanVarianceNormalization, LRN; the statistics-based ones (LayerNorm,
 * RMSNorm, GroupNorm, InstanceNorm, BatchNorm) live in norm_stats.c.
 *
 * Row statistics (max, sum, norm) go to keepdims-shaped temps, one kernel per
 * statistic, so every operator is O(n) in its input: an inner reduction written
 * inside an outer elementwise kernel would be recomputed for every element. */
#include <math.h>

#include "ops/reduce_common.h"

static flagos_status_t check_float_input(ops_ctx_t *c, const char *name) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing input '%s'", name);
  if (c->in[0].rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input '%s' has unknown rank", name);
  if (!flagos_dtype_is_float(c->in[0].dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must be a float tensor, is %s", name,
                   flagos_dtype_name(c->in[0].dtype));
  return NULL;
}

/* ---- Softmax, LogSoftmax, Hardmax ----
 * From opset 13 they act on one axis (default -1); before, the input is viewed
 * as 2-D at `axis` (default 1) and they act on all dims from it on.
 * params[0] = bit mask of the reduced axes. */
static flagos_status_t softmax_infer(ops_ctx_t *c) {
  FL_TRY(check_float_input(c, "input"));
  int r = c->in[0].rank, axis;
  bool modern = c->opset >= 13;
  if (r == 0) {
    c->n_params = 1;
    c->params[0] = 0;
    ops_set_out(c, 0, c->in[0].dtype, 0, NULL);
    return NULL;
  }
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", modern ? -1 : 1), r, &axis));
  uint64_t mask = 0;
  for (int i = axis; i < (modern ? axis + 1 : r); i++)
    mask |= 1ull << i;
  c->n_params = 1;
  c->params[0] = (int64_t)mask;
  ops_set_out(c, 0, c->in[0].dtype, r, c->in[0].dims);
  return NULL;
}

typedef enum smax_kind { SMAX_SOFT, SMAX_LOG, SMAX_HARD } smax_kind_t;

/* Flat index over the reduced axes (row-major), for Hardmax's "first max". */
static kir_expr_t *flat_over(ops_ctx_t *c, int r, uint64_t mask, kir_expr_t *const *idx) {
  kir_expr_t *f = kir_i64(c->arena, 0);
  for (int i = 0; i < r; i++)
    if ((mask >> i) & 1) f = kir_add(c->arena, kir_mul(c->arena, f, ops_in_dim(c, 0, i)), idx[i]);
  return f;
}

static flagos_status_t softmax_lower_kind(ops_ctx_t *c, smax_kind_t kind) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  uint64_t mask = (uint64_t)c->params[0];
  flagos_dtype_t acc = ops_red_acc_dtype(c->in[0].dtype, true);
  kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK], *v[OPS_MAX_RANK], *ki[OPS_MAX_RANK];
  ops_red_flags_mask(c, r, mask, flag);
  ops_red_keep_dims(c, 0, flag, kd);
  ops_red_space_t s;

  /* Softmax and LogSoftmax over trailing axes (the usual case) are one kernel:
   * the row's max and sum are reductions over the row inside the store
   * expression, which every emitter computes once per row (the C emitter hoists
   * them out of the column loops, the GPU dialects share them across a block),
   * so the input is read from memory once. Over leading or middle axes the
   * reduced index is not inside the kept ones, nothing can be hoisted, and the
   * three-kernel form below stays. */
  bool suffix = true, seen = false;
  for (int i = 0; i < r; i++) {
    bool on = kir_is_const(flag[i], 1);
    if (!on && !kir_is_const(flag[i], 0)) suffix = false;
    if (seen && !on) suffix = false;
    seen = seen || on;
  }
  if (kind != SMAX_HARD && suffix && seen) {
    kir_kernel_t *k = ops_out_kernel(c, 0, kind == SMAX_LOG ? "logsoftmax" : "softmax", v);
    int xb = ops_buf_in(c, k, 0);
    ops_red_space_t sm, ss;
    ops_red_space(c, k, xb, v, flag, &sm);
    kir_expr_t *m = ops_red_reduce(c, KIR_RMAX, &sm, ops_red_load(c, k, xb, sm.idx, acc));
    ops_red_space(c, k, xb, v, flag, &ss);
    kir_expr_t *e = kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, ss.idx, acc), m));
    kir_expr_t *sum = ops_red_reduce(c, KIR_RSUM, &ss, e);
    kir_expr_t *d = kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), m);
    kir_expr_t *y = kind == SMAX_LOG ? kir_bin(a, KIR_SUB, d, kir_un(a, KIR_LOG, sum))
                                     : kir_bin(a, KIR_DIV, kir_un(a, KIR_EXP, d), sum);
    kir_store(k, 0, v, y, NULL);
    return NULL;
  }

  int tmax = ops_temp(c, kind == SMAX_HARD ? c->in[0].dtype : acc, r, kd), tb;
  kir_kernel_t *k = ops_red_temp_kernel(c, tmax, "rowmax", v, &tb);
  int xb = ops_buf_in(c, k, 0);
  ops_red_space(c, k, xb, v, flag, &s);
  kir_store(k, tb, v, ops_red_reduce(c, KIR_RMAX, &s, ops_red_load(c, k, xb, s.idx, k->bufs[tb].dtype)), NULL);

  int tsum;
  if (kind == SMAX_HARD) {
    /* Index of the first maximum of each row; NaN rows pick their first NaN. */
    tsum = ops_temp(c, FLAGOS_INT64, r, kd);
    k = ops_red_temp_kernel(c, tsum, "argmax", v, &tb);
    xb = ops_buf_in(c, k, 0);
    int mb = ops_buf_temp(c, k, tmax);
    ops_red_space(c, k, xb, v, flag, &s);
    kir_expr_t *x = kir_load(k, xb, s.idx);
    kir_expr_t *hit = kir_bin(a, KIR_OR, kir_bin(a, KIR_EQ, x, kir_load(k, mb, v)), kir_un(a, KIR_ISNAN, x));
    kir_expr_t *big = s.count;
    kir_store(k, tb, v, ops_red_reduce(c, KIR_RMIN, &s, kir_select(a, hit, flat_over(c, r, mask, s.idx), big)), NULL);
  } else {
    tsum = ops_temp(c, acc, r, kd);
    k = ops_red_temp_kernel(c, tsum, "rowsum", v, &tb);
    xb = ops_buf_in(c, k, 0);
    int mb = ops_buf_temp(c, k, tmax);
    ops_red_space(c, k, xb, v, flag, &s);
    kir_expr_t *e = kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, s.idx, acc), kir_load(k, mb, v)));
    kir_store(k, tb, v, ops_red_reduce(c, KIR_RSUM, &s, e), NULL);
  }

  k = ops_out_kernel(c, 0, "norm", v);
  xb = ops_buf_in(c, k, 0);
  int mb = ops_buf_temp(c, k, tmax), sb = ops_buf_temp(c, k, tsum);
  ops_red_keep_idx(c, r, flag, v, ki);
  kir_expr_t *y;
  if (kind == SMAX_HARD) {
    flagos_dtype_t dt = c->in[0].dtype;
    kir_expr_t *is = kir_bin(a, KIR_EQ, flat_over(c, r, mask, v), kir_load(k, sb, ki));
    y = kir_select(a, is, kir_cast(a, dt, ops_red_fconst(c, FLAGOS_FLOAT32, 1)),
                   kir_cast(a, dt, ops_red_fconst(c, FLAGOS_FLOAT32, 0)));
  } else {
    kir_expr_t *d = kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), kir_load(k, mb, ki));
    kir_expr_t *sum = kir_load(k, sb, ki);
    y = kind == SMAX_LOG ? kir_bin(a, KIR_SUB, d, kir_un(a, KIR_LOG, sum))
                         : kir_bin(a, KIR_DIV, kir_un(a, KIR_EXP, d), sum);
  }
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

static flagos_status_t softmax_lower(ops_ctx_t *c) { return softmax_lower_kind(c, SMAX_SOFT); }
static flagos_status_t logsoftmax_lower(ops_ctx_t *c) { return softmax_lower_kind(c, SMAX_LOG); }
static flagos_status_t hardmax_lower(ops_ctx_t *c) { return softmax_lower_kind(c, SMAX_HARD); }

/* ---- LpNormalization: x / ||x||_p along one axis (p = 1 or 2), 0 where the norm is 0. ---- */
static flagos_status_t lpnorm_infer(ops_ctx_t *c) {
  FL_TRY(check_float_input(c, "input"));
  int r = c->in[0].rank, axis;
  if (r == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'input' must have rank >= 1");
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", -1), r, &axis));
  int64_t p = fir_attr_int(c->node, "p", 2);
  if (p != 1 && p != 2)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'p' must be 1 or 2, is %lld", (long long)p);
  c->n_params = 1;
  c->params[0] = axis;
  ops_set_out(c, 0, c->in[0].dtype, r, c->in[0].dims);
  return NULL;
}

static flagos_status_t lpnorm_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  bool l1 = fir_attr_int(c->node, "p", 2) == 1;
  flagos_dtype_t acc = ops_red_acc_dtype(c->in[0].dtype, true);
  kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK], *v[OPS_MAX_RANK], *ki[OPS_MAX_RANK];
  ops_red_flags_mask(c, r, 1ull << c->params[0], flag);
  ops_red_keep_dims(c, 0, flag, kd);
  ops_red_space_t s;
  int t = ops_temp(c, acc, r, kd), tb;
  kir_kernel_t *k = ops_red_temp_kernel(c, t, "norm", v, &tb);
  int xb = ops_buf_in(c, k, 0);
  ops_red_space(c, k, xb, v, flag, &s);
  kir_expr_t *x = ops_red_load(c, k, xb, s.idx, acc);
  kir_expr_t *n = l1 ? ops_red_reduce(c, KIR_RSUM, &s, kir_un(a, KIR_ABS, x))
                     : kir_un(a, KIR_SQRT, ops_red_reduce(c, KIR_RSUM, &s, kir_bin(a, KIR_MUL, x, x)));
  kir_store(k, tb, v, n, NULL);

  k = ops_out_kernel(c, 0, "scale", v);
  xb = ops_buf_in(c, k, 0);
  tb = ops_buf_temp(c, k, t);
  ops_red_keep_idx(c, r, flag, v, ki);
  kir_expr_t *nv = kir_load(k, tb, ki), *zero = ops_red_fconst(c, acc, 0);
  kir_store(k, 0, v,
            kir_select(a, kir_bin(a, KIR_EQ, nv, zero), zero, kir_bin(a, KIR_DIV, ops_red_load(c, k, xb, v, acc), nv)),
            NULL);
  return NULL;
}

/* ---- MeanVarianceNormalization: (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9) over `axes`. ---- */
static flagos_status_t mvn_infer(ops_ctx_t *c) {
  FL_TRY(check_float_input(c, "X"));
  int r = c->in[0].rank;
  const int64_t *ax;
  static const int64_t dflt[] = {0, 2, 3};
  int n = fir_attr_ints(c->node, "axes", &ax);
  if (n < 0) {
    ax = dflt;
    n = 3;
  }
  uint64_t mask = 0;
  for (int i = 0; i < n; i++) {
    int a;
    FL_TRY(ops_axis(c, ax[i], r, &a));
    mask |= 1ull << a;
  }
  c->n_params = 1;
  c->params[0] = (int64_t)mask;
  ops_set_out(c, 0, c->in[0].dtype, r, c->in[0].dims);
  return NULL;
}

static flagos_status_t mvn_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  flagos_dtype_t acc = ops_red_acc_dtype(c->in[0].dtype, true);
  kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK], *v[OPS_MAX_RANK], *ki[OPS_MAX_RANK];
  ops_red_flags_mask(c, r, (uint64_t)c->params[0], flag);
  ops_red_keep_dims(c, 0, flag, kd);
  ops_red_space_t s;
  int tm = ops_temp(c, acc, r, kd), ts = ops_temp(c, acc, r, kd), tb;
  kir_kernel_t *k = ops_red_temp_kernel(c, tm, "moments", v, &tb);
  int sb = ops_buf_temp(c, k, ts), xb = ops_buf_in(c, k, 0);
  ops_red_space(c, k, xb, v, flag, &s);
  kir_expr_t *x = ops_red_load(c, k, xb, s.idx, acc), *cnt = kir_cast(a, acc, s.count);
  kir_expr_t *mean = kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, x), cnt);
  kir_expr_t *ex2 = kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, kir_bin(a, KIR_MUL, x, x)), cnt);
  kir_store(k, tb, v, mean, NULL);
  kir_store(k, sb, v,
            kir_bin(a, KIR_ADD, kir_un(a, KIR_SQRT, kir_bin(a, KIR_SUB, ex2, kir_bin(a, KIR_MUL, mean, mean))),
                    ops_red_fconst(c, acc, 1e-9)),
            NULL);

  k = ops_out_kernel(c, 0, "scale", v);
  xb = ops_buf_in(c, k, 0);
  tb = ops_buf_temp(c, k, tm);
  sb = ops_buf_temp(c, k, ts);
  ops_red_keep_idx(c, r, flag, v, ki);
  kir_expr_t *d = kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), kir_load(k, tb, ki));
  kir_store(k, 0, v, kir_bin(a, KIR_DIV, d, kir_load(k, sb, ki)), NULL);
  return NULL;
}

/* ---- LRN: x / (bias + alpha/size * sum of x^2 over a window of channels)^beta. ---- */
static flagos_status_t lrn_infer(ops_ctx_t *c) {
  FL_TRY(check_float_input(c, "X"));
  if (c->in[0].rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'X' must have rank >= 2 (N, C, ...)");
  const fir_attr_t *sz = fir_node_attr(c->node, "size");
  if (!sz || sz->i <= 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'size' must be a positive int");
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static flagos_status_t lrn_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  int64_t size = fir_attr_int(c->node, "size", 1);
  double alpha = fir_attr_float(c->node, "alpha", 1e-4f), beta = fir_attr_float(c->node, "beta", 0.75f);
  double bias = fir_attr_float(c->node, "bias", 1.0f);
  flagos_dtype_t acc = ops_red_acc_dtype(c->in[0].dtype, true);
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "lrn", v);
  int xb = ops_buf_in(c, k, 0);
  int rv = kir_new_var(k);
  /* Window [c - floor((size-1)/2), c + ceil((size-1)/2)], clipped to the channels. */
  kir_expr_t *ch = kir_add(a, kir_sub(a, v[1], kir_i64(a, (size - 1) / 2)), kir_var(a, rv));
  for (int i = 0; i < r; i++)
    idx[i] = i == 1 ? ch : v[i];
  kir_expr_t *ok =
      kir_bin(a, KIR_AND, kir_bin(a, KIR_GE, ch, kir_i64(a, 0)), kir_bin(a, KIR_LT, ch, ops_in_dim(c, 0, 1)));
  kir_expr_t *xw = ops_red_load(c, k, xb, idx, acc);
  kir_expr_t *sq = kir_select(a, ok, kir_bin(a, KIR_MUL, xw, xw), ops_red_fconst(c, acc, 0));
  kir_expr_t *ext = kir_i64(a, size);
  kir_expr_t *sum = kir_reduce(a, KIR_RSUM, 1, &rv, &ext, sq);
  kir_expr_t *den = kir_bin(a, KIR_POW,
                            kir_bin(a, KIR_ADD, ops_red_fconst(c, acc, bias),
                                    kir_bin(a, KIR_MUL, ops_red_fconst(c, acc, alpha / (double)size), sum)),
                            ops_red_fconst(c, acc, beta));
  kir_store(k, 0, v, kir_bin(a, KIR_DIV, ops_red_load(c, k, xb, v, acc), den), NULL);
  return NULL;
}

/* FLOPs per element of X (docs/eaf.md): each elementary operation counts one,
 * a transcendental too; per-row work (a reciprocal square root per row) is not
 * counted. Standardising costs 5: mean (1), x - mean (1), square (1), sum (1),
 * times 1/sigma (1); an affine scale and bias add 1 each. */
static double per_x(const ops_ctx_t *c, double per) { return c->in[0].numel < 0 ? 0 : per * (double)c->in[0].numel; }
/* max, x - max, exp, sum, divide (LogSoftmax: log of the sum, subtract) */
static double softmax_flops(const ops_ctx_t *c) { return per_x(c, 5); }
/* |x| or x^2, sum, divide */
static double lpnorm_flops(const ops_ctx_t *c) { return per_x(c, 3); }
static double mvn_flops(const ops_ctx_t *c) { return per_x(c, 5); }
/* window sum of squares (2 per tap), then scale, add bias, pow, divide */
static double lrn_flops(const ops_ctx_t *c) { return per_x(c, 2.0 * (double)fir_attr_int(c->node, "size", 1) + 4); }
static double layer_flops(const ops_ctx_t *c) { return per_x(c, ops_has_in(c, 2) ? 7 : 6); }
/* x^2, sum, times 1/rms, times scale */
static double rms_flops(const ops_ctx_t *c) { return per_x(c, 4); }
static double group_flops(const ops_ctx_t *c) { return per_x(c, 7); }
/* (x - mean) * (1/sigma) * scale + bias with the statistics given; training mode
 * computes them too (mean 1, square 1, sum 1). */
static double batch_flops(const ops_ctx_t *c) { return per_x(c, fir_attr_int(c->node, "training_mode", 0) ? 7 : 4); }

const ops_def_t ops_family_norm[] = {
    {"Softmax", "", 0, softmax_infer, softmax_lower, softmax_flops},
    {"LogSoftmax", "", 0, softmax_infer, logsoftmax_lower, softmax_flops},
    {"Hardmax", "", 0, softmax_infer, hardmax_lower, ops_red_flops_in0},
    {"LpNormalization", "", 0, lpnorm_infer, lpnorm_lower, lpnorm_flops},
    {"MeanVarianceNormalization", "", 0, mvn_infer, mvn_lower, mvn_flops},
    {"LRN", "", 0, lrn_infer, lrn_lower, lrn_flops},
    {"LayerNormalization", "", 0, ops_norm_layer_infer, ops_norm_layer_lower, layer_flops},
    {"RMSNormalization", "", 0, ops_norm_rms_infer, ops_norm_rms_lower, rms_flops},
    {"GroupNormalization", "", 0, ops_norm_group_infer, ops_norm_group_lower, group_flops},
    {"InstanceNormalization", "", 0, ops_norm_instance_infer, ops_norm_instance_lower, group_flops},
    {"BatchNormalization", "", 0, ops_norm_batch_infer, ops_norm_batch_lower, batch_flops},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
