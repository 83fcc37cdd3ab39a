/* Sorting: TopK here, Unique in sort_unique.c.
 *
 * Kernel IR has no sort, so sorting is expressed by ranks: the rank of an
 * element is the number of elements that precede it in the wanted order (ties
 * broken by the lower index), and the element at output position p is the one
 * whose rank is p. That is O(n^2) per row of length n, but every step is a
 * plain parallel reduction that any backend can run; a backend library sort
 * can replace it later. */
#include "ops/reduce_common.h"

/* TopK (X, K) -> (Values, Indices) along `axis`; K is input 1 from opset 10,
 * attribute `k` before. params[0] = axis, params[1] = K. */
static flagos_status_t topk_infer(ops_ctx_t *c) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing input 'X'");
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank < 1)
    return ops_err(c, x->rank < 0 ? FLAGOS_ERR_UNSUPPORTED : FLAGOS_ERR_SHAPE, "input 'X' must have known rank >= 1");
  if (!flagos_dtype_is_float(x->dtype) && !flagos_dtype_is_int(x->dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input 'X' has unsupported dtype %s", flagos_dtype_name(x->dtype));
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", -1), x->rank, &axis));
  int64_t kval = -1;
  if (c->opset < 10) {
    const fir_attr_t *ka = fir_node_attr(c->node, "k");
    if (!ka) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing attribute 'k'");
    kval = ka->i;
  } else {
    if (!ops_has_in(c, 1)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing input 'K'");
    const ops_tensor_info_t *k = &c->in[1];
    if (k->dtype != FLAGOS_INT64 || k->numel > 1 || k->rank > 1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input 'K' must be a 1-element int64 tensor");
    if (k->value) kval = ops_in_int(c, 1, 0);
  }
  if (kval != -1 && (kval < 0 || (x->dims[axis] >= 0 && kval > x->dims[axis])))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "K = %lld is out of range for axis %d of length %lld",
                   (long long)kval, axis, (long long)x->dims[axis]);
  int64_t od[OPS_MAX_RANK];
  for (int i = 0; i < x->rank; i++)
    od[i] = i == axis ? kval : x->dims[i];
  ops_set_out(c, 0, x->dtype, x->rank, od);
  if (c->n_out > 1 && c->node->outputs[1]) ops_set_out(c, 1, FLAGOS_INT64, x->rank, od);
  c->n_params = 2;
  c->params[0] = axis;
  c->params[1] = kval;
  return NULL;
}

static flagos_status_t topk_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank, axis = (int)c->params[0];
  bool largest = fir_attr_int(c->node, "largest", 1) != 0;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK], *xd[OPS_MAX_RANK], *od[OPS_MAX_RANK];
  for (int i = 0; i < r; i++) {
    xd[i] = ops_in_dim(c, 0, i);
    od[i] = ops_out_dim(c, 0, i);
  }
  kir_expr_t *n = xd[axis];

  /* rank[i] = #{ j : x[j] before x[i] } along the axis. */
  int trank = ops_temp(c, FLAGOS_INT64, r, xd), tb;
  kir_kernel_t *k = ops_red_temp_kernel(c, trank, "rank", v, &tb);
  int xb = ops_buf_in(c, k, 0);
  int jv = kir_new_var(k);
  kir_expr_t *j = kir_var(a, jv);
  for (int i = 0; i < r; i++)
    idx[i] = i == axis ? j : v[i];
  kir_expr_t *xi = kir_load(k, xb, v), *xj = kir_load(k, xb, idx);
  kir_expr_t *before = kir_bin(a, KIR_OR, kir_bin(a, largest ? KIR_GT : KIR_LT, xj, xi),
                               kir_bin(a, KIR_AND, kir_bin(a, KIR_EQ, xj, xi), kir_bin(a, KIR_LT, j, v[axis])));
  kir_store(k, tb, v, kir_reduce(a, KIR_RSUM, 1, &jv, &n, kir_cast(a, FLAGOS_INT64, before)), NULL);

  /* The element of rank p: exactly one matches, so a sum of its index finds it. */
  int tidx = ops_temp(c, FLAGOS_INT64, r, od);
  k = ops_red_temp_kernel(c, tidx, "select", v, &tb);
  int rb = ops_buf_temp(c, k, trank);
  jv = kir_new_var(k);
  j = kir_var(a, jv);
  for (int i = 0; i < r; i++)
    idx[i] = i == axis ? j : v[i];
  kir_expr_t *hit = kir_bin(a, KIR_EQ, kir_load(k, rb, idx), v[axis]);
  kir_store(k, tb, v, kir_reduce(a, KIR_RSUM, 1, &jv, &n, kir_select(a, hit, j, kir_i64(a, 0))), NULL);

  k = ops_out_kernel(c, 0, "gather", v);
  xb = ops_buf_in(c, k, 0);
  int ib = ops_buf_temp(c, k, tidx);
  kir_expr_t *src = kir_load(k, ib, v);
  for (int i = 0; i < r; i++)
    idx[i] = i == axis ? src : v[i];
  kir_store(k, 0, v, kir_load(k, xb, idx), NULL);
  if (c->out[1].present) kir_store(k, ops_buf_out(c, k, 1), v, src, NULL);
  return NULL;
}

static double topk_flops(const ops_ctx_t *c) {
  /* Rank computation compares every pair along the axis. */
  const ops_tensor_info_t *x = &c->in[0];
  if (x->numel < 0 || c->params[0] < 0 || c->params[0] >= x->rank) return 0;
  return (double)x->numel * (double)x->dims[c->params[0]];
}

const ops_def_t ops_family_sort[] = {
    {"TopK", "", 2, topk_infer, topk_lower, topk_flops},
    {"Unique", "", 1, ops_sort_unique_infer, ops_sort_unique_lower, ops_red_flops_in0},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
