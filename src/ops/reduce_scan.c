/* CumSum and CumProd (inclusive/exclusive, forward/reverse).
 *
 * Each output element is a reduction over the whole axis with the elements
 * outside its prefix (or suffix) replaced by the identity: O(n^2) per row of
 * length n, but fully parallel and expressible with fixed reduction extents.
 * A serial prefix scan would be O(n) but serialises the whole tensor. The axis
 * comes from input 1, often known only at run time: params[0] holds it, and each
 * dim asks "am I the axis?" through it. */
#include "ops/reduce_common.h"

flagos_status_t ops_red_cum_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs 'x' and 'axis'");
  const ops_tensor_info_t *x = &c->in[0], *ax = &c->in[1];
  if (x->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input 'x' has unknown rank");
  if (x->rank == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'x' must have rank >= 1");
  if (!flagos_dtype_is_float(x->dtype) && !flagos_dtype_is_int(x->dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input 'x' has unsupported dtype %s", flagos_dtype_name(x->dtype));
  if (ax->dtype != FLAGOS_INT32 && ax->dtype != FLAGOS_INT64)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input 'axis' must be int32 or int64, is %s", flagos_dtype_name(ax->dtype));
  if (ax->numel > 1) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'axis' must hold one value");
  c->n_params = 1;
  c->params[0] = 0;
  if (ax->value) {
    int axis;
    FL_TRY(ops_axis(c, ops_in_int(c, 1, 0), x->rank, &axis));
    c->params[0] = axis;
  }
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  return NULL;
}

static flagos_status_t cum_lower(ops_ctx_t *c, bool prod) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  bool exclusive = fir_attr_int(c->node, "exclusive", 0) != 0;
  bool reverse = fir_attr_int(c->node, "reverse", 0) != 0;
  bool known = c->in[1].value != NULL || c->is_static;
  flagos_dtype_t acc = ops_red_acc_dtype(c->in[0].dtype, false);
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, prod ? "cumprod" : "cumsum", v);
  int xb = ops_buf_in(c, k, 0);
  int rv = kir_new_var(k);
  kir_expr_t *j = kir_var(a, rv), *n = kir_i64(a, 0), *cur = kir_i64(a, 0);
  for (int d = 0; d < r; d++) {
    kir_expr_t *is_ax = known ? kir_bool(a, c->params[0] == d) : ops_red_eq(c, ops_param(c, 0), d);
    idx[d] = kir_select(a, is_ax, j, v[d]);
    n = kir_add(a, n, kir_select(a, is_ax, ops_in_dim(c, 0, d), kir_i64(a, 0)));
    cur = kir_add(a, cur, kir_select(a, is_ax, v[d], kir_i64(a, 0)));
  }
  kir_op_t cmp = reverse ? (exclusive ? KIR_GT : KIR_GE) : (exclusive ? KIR_LT : KIR_LE);
  kir_expr_t *in_range = kir_bin(a, cmp, j, cur);
  kir_expr_t *body = kir_select(a, in_range, ops_red_load(c, k, xb, idx, acc), ops_red_fconst(c, acc, prod ? 1 : 0));
  kir_expr_t *y = kir_reduce(a, prod ? KIR_RPROD : KIR_RSUM, 1, &rv, &n, body);
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

flagos_status_t ops_red_cumsum_lower(ops_ctx_t *c) { return cum_lower(c, false); }
flagos_status_t ops_red_cumprod_lower(ops_ctx_t *c) { return cum_lower(c, true); }
