/* Scatter family: writing updates into a copy of a tensor at positions another
 * tensor gives (ScatterElements, Scatter, ScatterND) and the KV-cache update
 * TensorScatter.
 *
 * The copy is one kernel; the updates are a second, serial kernel, because
 * duplicate indices must apply in order (the last write wins, or the reduction
 * accumulates). Indices out of range after normalisation are skipped instead of
 * writing outside the tensor. TensorScatter's positions are unique, so it is a
 * single gather-style kernel. */
#include <string.h>

#include "ops/shape_util.h"

typedef enum { RED_NONE, RED_ADD, RED_MUL, RED_MIN, RED_MAX } reduction_t;

static flagos_status_t reduction(ops_ctx_t *c, reduction_t *r) {
  const char *s = fir_attr_string(c->node, "reduction", "none");
  if (strcmp(s, "none") == 0) *r = RED_NONE;
  else if (strcmp(s, "add") == 0) *r = RED_ADD;
  else if (strcmp(s, "mul") == 0) *r = RED_MUL;
  else if (strcmp(s, "min") == 0) *r = RED_MIN;
  else if (strcmp(s, "max") == 0) *r = RED_MAX;
  else return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown reduction '%s'", s);
  return NULL;
}

static kir_expr_t *combine(fl_arena_t *a, reduction_t r, kir_expr_t *old, kir_expr_t *upd) {
  bool b = old->dtype == FLAGOS_BOOL;
  switch (r) {
  case RED_ADD: return kir_bin(a, b ? KIR_OR : KIR_ADD, old, upd);
  case RED_MUL: return kir_bin(a, b ? KIR_AND : KIR_MUL, old, upd);
  case RED_MIN: return kir_bin(a, b ? KIR_AND : KIR_MIN, old, upd);
  case RED_MAX: return kir_bin(a, b ? KIR_OR : KIR_MAX, old, upd);
  default: return upd;
  }
}

/* out = data, as the first kernel of every scatter. */
static void copy_data(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "copy", v);
  int x = ops_buf_in(c, k, 0);
  kir_store(k, 0, v, kir_load(k, x, v), NULL);
}

static flagos_status_t check_common(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  FL_TRY(ops_sh_need_tensor(c, 1, "indices"));
  FL_TRY(ops_sh_need_tensor(c, 2, "updates"));
  FL_TRY(ops_sh_need_index_dtype(c, 1, "indices"));
  if (c->in[2].dtype != c->in[0].dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "updates are %s, data is %s", flagos_dtype_name(c->in[2].dtype),
                   flagos_dtype_name(c->in[0].dtype));
  return NULL;
}

/* ---- ScatterElements / Scatter ---- */
static flagos_status_t infer_scatter_elements(ops_ctx_t *c) {
  FL_TRY(check_common(c));
  const ops_tensor_info_t *x = &c->in[0], *ind = &c->in[1], *u = &c->in[2];
  reduction_t r;
  FL_TRY(reduction(c, &r));
  if (x->rank < 1 || ind->rank != x->rank || u->rank != x->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "data, indices and updates must share a rank >= 1 (%d, %d, %d)", x->rank,
                   ind->rank, u->rank);
  for (int i = 0; i < x->rank; i++)
    if (ind->dims[i] >= 0 && u->dims[i] >= 0 && ind->dims[i] != u->dims[i])
      return ops_err(c, FLAGOS_ERR_SHAPE, "indices and updates differ on axis %d", i);
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), x->rank, &axis));
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  return NULL;
}

static flagos_status_t lower_scatter_elements(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int axis, rank = c->in[0].rank;
  reduction_t red;
  FL_TRY(reduction(c, &red));
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), rank, &axis));
  copy_data(c);
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_sh_in_kernel(c, 1, "scatter", v);
  k->serial = true;
  int o = ops_buf_out(c, k, 0), ib = ops_buf_in(c, k, 1), ub = ops_buf_in(c, k, 2);
  kir_expr_t *n = ops_in_dim(c, 0, axis);
  kir_expr_t *i = ops_sh_wrap(a, ops_sh_as_index(a, kir_load(k, ib, v)), n);
  kir_expr_t *ok = ops_sh_in_range(a, i, n);
  for (int d = 0; d < rank; d++) {
    idx[d] = d == axis ? i : v[d];
    /* indices may be smaller than data on other axes, never larger */
    bool fits = c->in[0].dims[d] >= 0 && c->in[1].dims[d] >= 0 && c->in[1].dims[d] <= c->in[0].dims[d];
    if (d != axis && !fits) ok = ops_sh_and(a, ok, kir_bin(a, KIR_LT, v[d], ops_in_dim(c, 0, d)));
  }
  kir_expr_t *val = kir_load(k, ub, v);
  if (red != RED_NONE) val = combine(a, red, kir_load(k, o, idx), val);
  kir_store(k, o, idx, val, ok);
  return NULL;
}

/* ---- ScatterND ---- */
static flagos_status_t infer_scatter_nd(ops_ctx_t *c) {
  FL_TRY(check_common(c));
  const ops_tensor_info_t *x = &c->in[0], *ind = &c->in[1], *u = &c->in[2];
  reduction_t r;
  FL_TRY(reduction(c, &r));
  if (ind->rank < 1 || x->rank < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "data and indices must have rank >= 1");
  int64_t k = ind->dims[ind->rank - 1];
  if (k >= 0 && (k < 1 || k > x->rank))
    return ops_err(c, FLAGOS_ERR_SHAPE, "indices address %lld axes of a rank-%d tensor", (long long)k, x->rank);
  if (k < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the last dimension of indices is unknown");
  int want = ind->rank - 1 + x->rank - (int)k;
  if (u->rank != want) return ops_err(c, FLAGOS_ERR_SHAPE, "updates have rank %d, expected %d", u->rank, want);
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  return NULL;
}

static flagos_status_t lower_scatter_nd(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  reduction_t red;
  FL_TRY(reduction(c, &red));
  int q = c->in[1].rank, r = c->in[0].rank, kd = (int)c->in[1].dims[q - 1];
  copy_data(c);
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK], *iidx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_sh_in_kernel(c, 2, "scatter", v);
  k->serial = true;
  int o = ops_buf_out(c, k, 0), ib = ops_buf_in(c, k, 1), ub = ops_buf_in(c, k, 2);
  kir_expr_t *ok = kir_bool(a, true);
  for (int d = 0; d < q - 1; d++) iidx[d] = v[d];
  for (int d = 0; d < r; d++) {
    if (d < kd) {
      iidx[q - 1] = kir_i64(a, d);
      kir_expr_t *n = ops_in_dim(c, 0, d);
      idx[d] = ops_sh_wrap(a, ops_sh_as_index(a, kir_load(k, ib, iidx)), n);
      ok = ops_sh_and(a, ok, ops_sh_in_range(a, idx[d], n));
    } else {
      idx[d] = v[q - 1 + d - kd];
    }
  }
  kir_expr_t *val = kir_load(k, ub, v);
  if (red != RED_NONE) val = combine(a, red, kir_load(k, o, idx), val);
  kir_store(k, o, idx, val, ok);
  return NULL;
}

/* ---- TensorScatter ---- */
static flagos_status_t tscatter_axis(ops_ctx_t *c, int *axis, bool *circular) {
  const char *m = fir_attr_string(c->node, "mode", "linear");
  if (strcmp(m, "linear") && strcmp(m, "circular")) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown mode '%s'", m);
  *circular = strcmp(m, "circular") == 0;
  return ops_axis(c, fir_attr_int(c->node, "axis", -2), c->in[0].rank, axis);
}

static flagos_status_t infer_tensor_scatter(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "past_cache"));
  FL_TRY(ops_sh_need_tensor(c, 1, "update"));
  const ops_tensor_info_t *x = &c->in[0], *u = &c->in[1];
  if (x->rank < 2 || u->rank != x->rank || u->dtype != x->dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "past_cache and update must share dtype and a rank >= 2");
  int axis;
  bool circ;
  FL_TRY(tscatter_axis(c, &axis, &circ));
  if (axis == 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis must not be the batch axis");
  for (int i = 0; i < x->rank; i++) {
    if (x->dims[i] < 0 || u->dims[i] < 0) continue;
    if (i == axis ? u->dims[i] > x->dims[i] : u->dims[i] != x->dims[i])
      return ops_err(c, FLAGOS_ERR_SHAPE, "update does not fit past_cache on axis %d", i);
  }
  if (ops_has_in(c, 2)) {
    FL_TRY(ops_sh_need_tensor(c, 2, "write_indices"));
    FL_TRY(ops_sh_need_index_dtype(c, 2, "write_indices"));
    if (c->in[2].rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "write_indices must be 1-D");
  }
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  return NULL;
}

static flagos_status_t lower_tensor_scatter(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int axis;
  bool circ;
  FL_TRY(tscatter_axis(c, &axis, &circ));
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "tscatter", v);
  int x = ops_buf_in(c, k, 0), u = ops_buf_in(c, k, 1);
  kir_expr_t *w = kir_i64(a, 0);
  if (ops_has_in(c, 2)) w = ops_sh_as_index(a, kir_load(k, ops_buf_in(c, k, 2), &v[0]));
  kir_expr_t *s = kir_sub(a, v[axis], w);
  if (circ) s = kir_bin(a, KIR_FLOORMOD, s, ops_in_dim(c, 0, axis));
  kir_expr_t *take = ops_sh_in_range(a, s, ops_in_dim(c, 1, axis));
  memcpy(idx, v, sizeof(*v) * (size_t)c->in[0].rank);
  idx[axis] = s;
  kir_store(k, 0, v, kir_select(a, take, kir_load(k, u, idx), kir_load(k, x, v)), NULL);
  return NULL;
}

#define NF ops_sh_no_flops
const ops_def_t ops_family_scatter[] = {
    {"ScatterElements", "", 0, infer_scatter_elements, lower_scatter_elements, NF},
    {"Scatter", "", 0, infer_scatter_elements, lower_scatter_elements, NF},
    {"ScatterND", "", 0, infer_scatter_nd, lower_scatter_nd, NF},
    {"TensorScatter", "", 0, infer_tensor_scatter, lower_tensor_scatter, NF},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
