/* Pooling: MaxPool (with its optional Indices output), AveragePool, LpPool,
 * their Global variants, and MaxUnpool.
 *
 * A window is a reduction over the kernel positions; positions in the padding
 * (or past the end in ceil mode) are masked out by a select, so they count as
 * absent (max, Lp, average without count_include_pad) or as zeros inside the
 * padded extent (average with count_include_pad). params: start pads
 * [0, nd), end pads [nd, 2nd) (auto_pad decides them from the input shape). */
#include <math.h>
#include <string.h>

#include "ops/conv_common.h"

#define AR (c->arena)

enum { POOL_MAX, POOL_AVG, POOL_LP };

static bool has_out(const ops_ctx_t *c, int k) {
  return k < c->node->n_outputs && c->node->outputs[k] != NULL;
}

static flagos_status_t pool_infer(ops_ctx_t *c) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects input X");
  const ops_tensor_info_t *X = &c->in[0];
  bool is_max = strcmp(c->node->op_type, "MaxPool") == 0;
  if (!flagos_dtype_is_float(X->dtype) && !(is_max && (X->dtype == FLAGOS_INT8 || X->dtype == FLAGOS_UINT8)))
    return ops_err(c, FLAGOS_ERR_SHAPE, "unsupported dtype %s", flagos_dtype_name(X->dtype));
  if (X->rank < 3) return ops_err(c, FLAGOS_ERR_SHAPE, "X must have rank >= 3 (got %d)", X->rank);
  int nd = X->rank - 2;
  ops_sp_t g;
  FL_TRY(ops_sp_read(c, nd, NULL, true, &g));
  int64_t d[OPS_MAX_RANK];
  d[0] = X->dims[0];
  d[1] = X->dims[1];
  for (int i = 0; i < nd; i++) {
    d[2 + i] = ops_sp_out(&g, i, X->dims[2 + i]);
    if (d[2 + i] == 0 || d[2 + i] < -1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "spatial dim %d: the window does not fit the padded input", i);
  }
  ops_set_out(c, 0, X->dtype, X->rank, d);
  if (is_max && has_out(c, 1)) {
    if (fir_attr_int(c->node, "storage_order", 0) != 0 && nd != 2)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "storage_order 1 is defined for 2-D pools only");
    ops_set_out(c, 1, FLAGOS_INT64, X->rank, d);
  }
  c->n_params = 2 * nd;
  for (int i = 0; i < nd; i++) {
    c->params[i] = g.pb[i];
    c->params[nd + i] = g.pe[i];
  }
  return NULL;
}

static double pool_flops(const ops_ctx_t *c) {
  const int64_t *k;
  int nk = fir_attr_ints(c->node, "kernel_shape", &k);
  if (c->out[0].numel < 0) return 0;
  double f = (double)c->out[0].numel;
  for (int i = 0; i < nk; i++) f *= (double)k[i];
  return f;
}

typedef struct window {
  int nd;
  int rv[OPS_MAX_RANK];
  kir_expr_t *rext[OPS_MAX_RANK];
  kir_expr_t *pos[OPS_MAX_RANK];  /* input position of each tap */
  kir_expr_t *dims[OPS_MAX_RANK]; /* input spatial dims */
  kir_expr_t *valid;              /* the tap is inside the input */
} window_t;

static void window_make(ops_ctx_t *c, kir_kernel_t *kk, kir_expr_t *const *v, const ops_sp_t *g, window_t *w) {
  w->nd = g->nd;
  for (int i = 0; i < g->nd; i++) {
    w->rv[i] = kir_new_var(kk);
    w->rext[i] = kir_i64(AR, g->k[i]);
    kir_expr_t *k = kir_var(AR, w->rv[i]);
    w->pos[i] = kir_add(AR, kir_sub(AR, kir_mul(AR, v[2 + i], kir_i64(AR, g->s[i])), ops_param(c, i)),
                        kir_mul(AR, k, kir_i64(AR, g->d[i])));
    w->dims[i] = ops_in_dim(c, 0, 2 + i);
  }
  w->valid = ops_sp_inside(AR, g->nd, w->pos, w->dims);
}

static kir_expr_t *window_load(kir_kernel_t *kk, int bx, kir_expr_t *const *v, const window_t *w) {
  kir_expr_t *xi[OPS_MAX_RANK];
  xi[0] = v[0];
  xi[1] = v[1];
  for (int i = 0; i < w->nd; i++) xi[2 + i] = w->pos[i];
  return kir_load(kk, bx, xi);
}

static flagos_status_t pool_lower(ops_ctx_t *c, int kind) {
  const ops_tensor_info_t *X = &c->in[0];
  int nd = X->rank - 2;
  ops_sp_t g;
  FL_TRY(ops_sp_read(c, nd, NULL, true, &g));
  flagos_dtype_t dt = c->out[0].dtype;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, kind == POOL_MAX ? "maxpool" : kind == POOL_AVG ? "avgpool" : "lppool", v);
  int bx = ops_buf_in(c, kk, 0);
  window_t w;
  window_make(c, kk, v, &g, &w);
  kir_expr_t *x = window_load(kk, bx, v, &w);
  kir_expr_t *zero = kir_const(AR, dt, 0.0);
  kir_expr_t *y;
  if (kind == POOL_MAX) {
    y = kir_reduce(AR, KIR_RMAX, nd, w.rv, w.rext, kir_select(AR, w.valid, x, ops_sp_lowest(AR, dt)));
  } else if (kind == POOL_AVG) {
    kir_expr_t *sum = kir_reduce(AR, KIR_RSUM, nd, w.rv, w.rext, kir_select(AR, w.valid, x, zero));
    kir_expr_t *counted = w.valid;
    if (fir_attr_int(c->node, "count_include_pad", 0) != 0) {
      /* Padding counts, but not window taps past the end padding (ceil mode). */
      counted = kir_bool(AR, true);
      for (int i = 0; i < nd; i++)
        counted = kir_bin(AR, KIR_AND, counted,
                          kir_bin(AR, KIR_LT, w.pos[i], kir_add(AR, w.dims[i], ops_param(c, nd + i))));
    }
    kir_expr_t *cnt = kir_reduce(AR, KIR_RSUM, nd, w.rv, w.rext,
                                 kir_select(AR, counted, kir_const(AR, dt, 1.0), zero));
    y = kir_bin(AR, KIR_DIV, sum, cnt);
  } else {
    int64_t p = fir_attr_int(c->node, "p", 2);
    kir_expr_t *ax = kir_un(AR, KIR_ABS, x);
    kir_expr_t *px = p == 1 ? ax : p == 2 ? kir_bin(AR, KIR_MUL, ax, ax) : kir_bin(AR, KIR_POW, ax, kir_const(AR, dt, (double)p));
    kir_expr_t *sum = kir_reduce(AR, KIR_RSUM, nd, w.rv, w.rext, kir_select(AR, w.valid, px, zero));
    y = p == 1 ? sum : p == 2 ? kir_un(AR, KIR_SQRT, sum) : kir_bin(AR, KIR_POW, sum, kir_const(AR, dt, 1.0 / (double)p));
  }
  kir_store(kk, 0, v, y, NULL);
  if (kind != POOL_MAX || !has_out(c, 1)) return NULL;

  /* Indices: the first tap (row-major) equal to the max just stored, as a flat
   * index into X (row-major, or column-major over the two spatial dims). */
  kir_kernel_t *ki = ops_out_kernel(c, 1, "maxpool_indices", v);
  int by = ops_buf_out(c, ki, 0);
  bx = ops_buf_in(c, ki, 0);
  window_make(c, ki, v, &g, &w);
  x = window_load(ki, bx, v, &w);
  kir_expr_t *lin = kir_i64(AR, 0);
  for (int i = 0; i < nd; i++) lin = kir_add(AR, kir_mul(AR, lin, w.dims[i]), w.pos[i]);
  kir_expr_t *hit = kir_select(AR, w.valid, kir_bin(AR, KIR_EQ, x, kir_load(ki, by, v)), kir_bool(AR, false));
  kir_expr_t *best = kir_reduce(AR, KIR_RMIN, nd, w.rv, w.rext, kir_select(AR, hit, lin, kir_i64(AR, INT64_MAX)));
  kir_expr_t *plane = kir_i64(AR, 1);
  for (int i = 0; i < nd; i++) plane = kir_mul(AR, plane, w.dims[i]);
  if (fir_attr_int(c->node, "storage_order", 0) != 0) {
    kir_expr_t *h = kir_bin(AR, KIR_DIV, best, w.dims[1]), *ww = kir_bin(AR, KIR_MOD, best, w.dims[1]);
    best = kir_add(AR, h, kir_mul(AR, ww, w.dims[0]));
  }
  kir_expr_t *base = kir_mul(AR, kir_add(AR, kir_mul(AR, v[0], ops_in_dim(c, 0, 1)), v[1]), plane);
  /* A window with no input tap (all padding) has no index: -1, as the reference leaves it. */
  kir_expr_t *found = kir_bin(AR, KIR_NE, best, kir_i64(AR, INT64_MAX));
  kir_store(ki, 0, v, kir_select(AR, found, kir_add(AR, base, best), kir_i64(AR, -1)), NULL);
  return NULL;
}

static flagos_status_t maxpool_lower(ops_ctx_t *c) { return pool_lower(c, POOL_MAX); }
static flagos_status_t avgpool_lower(ops_ctx_t *c) { return pool_lower(c, POOL_AVG); }
static flagos_status_t lppool_lower(ops_ctx_t *c) { return pool_lower(c, POOL_LP); }

/* ---- Global pools ---- */

static flagos_status_t global_infer(ops_ctx_t *c) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects input X");
  const ops_tensor_info_t *X = &c->in[0];
  if (!flagos_dtype_is_float(X->dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "X must be floating point (got %s)", flagos_dtype_name(X->dtype));
  if (X->rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "X must have rank >= 2 (got %d)", X->rank);
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < X->rank; i++) d[i] = i < 2 ? X->dims[i] : 1;
  ops_set_out(c, 0, X->dtype, X->rank, d);
  return NULL;
}

static double global_flops(const ops_ctx_t *c) { return c->in[0].numel < 0 ? 0 : (double)c->in[0].numel; }

static flagos_status_t global_lower(ops_ctx_t *c, int kind) {
  const ops_tensor_info_t *X = &c->in[0];
  int nd = X->rank - 2;
  flagos_dtype_t dt = X->dtype;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "globalpool", v);
  int bx = ops_buf_in(c, kk, 0);
  int rv[OPS_MAX_RANK];
  kir_expr_t *rext[OPS_MAX_RANK], *xi[OPS_MAX_RANK];
  kir_expr_t *n = kir_i64(AR, 1);
  xi[0] = v[0];
  xi[1] = v[1];
  for (int i = 0; i < nd; i++) {
    rv[i] = kir_new_var(kk);
    rext[i] = ops_in_dim(c, 0, 2 + i);
    xi[2 + i] = kir_var(AR, rv[i]);
    n = kir_mul(AR, n, rext[i]);
  }
  kir_expr_t *x = kir_load(kk, bx, xi), *y;
  if (kind == POOL_MAX) {
    y = kir_reduce(AR, KIR_RMAX, nd, rv, rext, x);
  } else if (kind == POOL_AVG) {
    y = kir_bin(AR, KIR_DIV, kir_reduce(AR, KIR_RSUM, nd, rv, rext, x), kir_cast(AR, dt, n));
  } else {
    int64_t p = fir_attr_int(c->node, "p", 2);
    kir_expr_t *pc = kir_const(AR, dt, (double)p);
    y = kir_reduce(AR, KIR_RSUM, nd, rv, rext, kir_bin(AR, KIR_POW, kir_un(AR, KIR_ABS, x), pc));
    y = kir_bin(AR, KIR_POW, y, kir_const(AR, dt, 1.0 / (double)p));
  }
  kir_store(kk, 0, v, y, NULL);
  return NULL;
}

static flagos_status_t gmax_lower(ops_ctx_t *c) { return global_lower(c, POOL_MAX); }
static flagos_status_t gavg_lower(ops_ctx_t *c) { return global_lower(c, POOL_AVG); }
static flagos_status_t glp_lower(ops_ctx_t *c) { return global_lower(c, POOL_LP); }

/* ---- MaxUnpool ----
 * ONNX's reference reads the indices as flat positions in the default
 * (inferred) output shape and places that result at the start of an explicit
 * output_shape; params[0, nd) hold the inferred spatial dims. */

static flagos_status_t unpool_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs X and I");
  const ops_tensor_info_t *X = &c->in[0], *I = &c->in[1];
  if (X->rank < 3) return ops_err(c, FLAGOS_ERR_SHAPE, "X must have rank >= 3 (got %d)", X->rank);
  if (I->dtype != FLAGOS_INT64 || I->rank != X->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "I must be int64 with the shape of X");
  int nd = X->rank - 2;
  ops_sp_t g;
  FL_TRY(ops_sp_read(c, nd, NULL, false, &g));
  c->n_params = nd;
  int64_t d[OPS_MAX_RANK];
  d[0] = X->dims[0];
  d[1] = X->dims[1];
  for (int i = 0; i < nd; i++) {
    int64_t in = X->dims[2 + i];
    d[2 + i] = in < 0 ? -1 : (in - 1) * g.s[i] - (g.pb[i] + g.pe[i]) + g.k[i];
    c->params[i] = d[2 + i];
  }
  if (ops_has_in(c, 2)) {
    const ops_tensor_info_t *S = &c->in[2];
    if (S->rank != 1 || (S->dims[0] >= 0 && S->dims[0] != X->rank))
      return ops_err(c, FLAGOS_ERR_SHAPE, "output_shape must be 1-D with %d values", X->rank);
    for (int i = 0; i < X->rank; i++) d[i] = S->value ? ops_in_int(c, 2, i) : -1;
    if (S->value)
      for (int i = 0; i < nd; i++)
        if (c->params[i] >= 0 && d[2 + i] < c->params[i])
          return ops_err(c, FLAGOS_ERR_SHAPE, "output_shape dim %d (%lld) is smaller than the unpooled size %lld",
                         2 + i, (long long)d[2 + i], (long long)c->params[i]);
  }
  ops_set_out(c, 0, X->dtype, X->rank, d);
  return NULL;
}

static flagos_status_t unpool_lower(ops_ctx_t *c) {
  const ops_tensor_info_t *X = &c->in[0];
  int r = X->rank, nd = r - 2;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kz = ops_out_kernel(c, 0, "maxunpool_zero", v);
  kir_store(kz, 0, v, kir_const(AR, c->out[0].dtype, 0.0), NULL);

  kir_kernel_t *kk = ops_kernel(c, "maxunpool");
  int by = ops_buf_out(c, kk, 0);
  int bx = ops_buf_in(c, kk, 0), bi = ops_buf_in(c, kk, 1);
  kir_set_space(kk, r, kk->bufs[bx].dims, v);
  kir_expr_t *idx = kir_load(kk, bi, v);
  kir_expr_t *inf[OPS_MAX_RANK], *co[OPS_MAX_RANK];
  inf[0] = ops_in_dim(c, 0, 0);
  inf[1] = ops_in_dim(c, 0, 1);
  for (int i = 0; i < nd; i++) inf[2 + i] = ops_param(c, i);
  kir_expr_t *rest = idx, *ok = kir_bin(AR, KIR_GE, idx, kir_i64(AR, 0));
  for (int i = r - 1; i >= 0; i--) {
    co[i] = i == 0 ? rest : kir_bin(AR, KIR_MOD, rest, inf[i]);
    if (i) rest = kir_bin(AR, KIR_DIV, rest, inf[i]);
    ok = kir_bin(AR, KIR_AND, ok, kir_bin(AR, KIR_LT, co[i], ops_out_dim(c, 0, i)));
  }
  kir_store(kk, by, co, kir_load(kk, bx, v), ok);
  return NULL;
}

const ops_def_t ops_family_pool[] = {
    {"MaxPool", "", 0, pool_infer, maxpool_lower, pool_flops},
    {"AveragePool", "", 0, pool_infer, avgpool_lower, pool_flops},
    {"LpPool", "", 0, pool_infer, lppool_lower, pool_flops},
    {"GlobalMaxPool", "", 0, global_infer, gmax_lower, global_flops},
    {"GlobalAveragePool", "", 0, global_infer, gavg_lower, global_flops},
    {"GlobalLpPool", "", 0, global_infer, glp_lower, global_flops},
    {"MaxUnpool", "", 1u << 2, unpool_infer, unpool_lower, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
