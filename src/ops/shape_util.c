/* Index arithmetic and list reading shared by shape, index, scatter and generator. */
#include <string.h>

#include "ops/shape_util.h"

double ops_sh_no_flops(const ops_ctx_t *c) {
  (void)c;
  return 0.0;
}

flagos_status_t ops_sh_need_tensor(const ops_ctx_t *c, int k, const char *what) {
  if (!ops_has_in(c, k)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d (%s) is missing", k, what);
  if (c->in[k].kind != FIR_TYPE_TENSOR)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d (%s) is not a tensor", k, what);
  if (c->in[k].rank < 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d (%s) has unknown rank; FlagOS needs static ranks", k, what);
  if (c->in[k].dtype == FLAGOS_STRING)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d (%s) holds strings, which kernels cannot move yet", k, what);
  return NULL;
}

flagos_status_t ops_sh_int_list(const ops_ctx_t *c, bool from_attr, const char *attr, int k, ops_sh_list_t *l) {
  l->present = false;
  l->known = true;
  l->n = 0;
  if (from_attr) {
    const int64_t *v;
    int n = fir_attr_ints(c->node, attr, &v);
    if (n < 0) return NULL;
    if (n > OPS_MAX_PARAMS) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "attribute '%s' has %d entries", attr, n);
    l->present = true;
    l->n = n;
    if (n) memcpy(l->v, v, sizeof(int64_t) * (size_t)n);
    return NULL;
  }
  if (!ops_has_in(c, k)) return NULL;
  const ops_tensor_info_t *t = &c->in[k];
  if (t->kind != FIR_TYPE_TENSOR) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d ('%s') is not a tensor", k, attr);
  if (t->rank > 1)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input %d ('%s') must be a scalar or 1-D, has rank %d", k, attr, t->rank);
  if (t->dtype != FLAGOS_INT64 && t->dtype != FLAGOS_INT32)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input %d ('%s') must be int64 or int32, is %s", k, attr,
                   flagos_dtype_name(t->dtype));
  l->present = true;
  int64_t n = t->rank == 0 ? 1 : t->rank < 0 ? -1 : t->dims[0];
  if (n > OPS_MAX_PARAMS) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d ('%s') has %lld entries", k, attr, (long long)n);
  l->n = (int)n;
  if (!t->value || n < 0) {
    l->known = false;
    return NULL;
  }
  for (int i = 0; i < l->n; i++) l->v[i] = ops_in_int(c, k, i);
  return NULL;
}

kir_expr_t *ops_sh_linear(fl_arena_t *a, int rank, kir_expr_t *const *idx, kir_expr_t *const *dims) {
  kir_expr_t *lin = kir_i64(a, 0);
  for (int d = 0; d < rank; d++) lin = kir_add(a, kir_mul(a, lin, dims[d]), idx[d]);
  return lin;
}

void ops_sh_unravel(fl_arena_t *a, kir_expr_t *lin, int rank, kir_expr_t *const *dims, kir_expr_t **idx) {
  kir_expr_t *stride = kir_i64(a, 1);
  for (int d = rank - 1; d >= 0; d--) {
    if (kir_is_const(dims[d], 1)) {
      idx[d] = kir_i64(a, 0);
      continue;
    }
    kir_expr_t *q = kir_bin(a, KIR_DIV, lin, stride);
    /* The outermost index needs no modulo: lin is below the element count. */
    idx[d] = d == 0 ? q : kir_bin(a, KIR_MOD, q, dims[d]);
    stride = kir_mul(a, stride, dims[d]);
  }
}

void ops_sh_in_dims(ops_ctx_t *c, int k, kir_expr_t **dims) {
  for (int d = 0; d < c->in[k].rank; d++) dims[d] = ops_in_dim(c, k, d);
}

void ops_sh_out_dims(ops_ctx_t *c, int k, kir_expr_t **dims) {
  for (int d = 0; d < c->out[k].rank; d++) dims[d] = ops_out_dim(c, k, d);
}

kir_expr_t *ops_sh_as_index(fl_arena_t *a, kir_expr_t *x) { return kir_cast_sat(a, FLAGOS_INT64, x, false); }

kir_expr_t *ops_sh_wrap(fl_arena_t *a, kir_expr_t *i, kir_expr_t *dim) {
  return kir_select(a, kir_bin(a, KIR_LT, i, kir_i64(a, 0)), kir_add(a, i, dim), i);
}

kir_expr_t *ops_sh_and(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_AND, x, y); }

kir_expr_t *ops_sh_in_range(fl_arena_t *a, kir_expr_t *i, kir_expr_t *dim) {
  return ops_sh_and(a, kir_bin(a, KIR_GE, i, kir_i64(a, 0)), kir_bin(a, KIR_LT, i, dim));
}

kir_kernel_t *ops_sh_in_kernel(ops_ctx_t *c, int k, const char *suffix, kir_expr_t **vars) {
  kir_kernel_t *kk = ops_kernel(c, suffix);
  kir_expr_t *dims[OPS_MAX_RANK];
  ops_sh_in_dims(c, k, dims);
  kir_set_space(kk, c->in[k].rank, dims, vars);
  return kk;
}

static bool same_dims(ops_ctx_t *c) {
  if (c->in[0].rank != c->out[0].rank) return false;
  for (int d = 0; d < c->in[0].rank; d++)
    if (c->in[0].dims[d] < 0 || c->in[0].dims[d] != c->out[0].dims[d]) return false;
  return true;
}

flagos_status_t ops_sh_lower_copy(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "copy", v);
  int x = ops_buf_in(c, k, 0);
  if (same_dims(c)) {
    kir_store(k, 0, v, kir_load(k, x, v), NULL);
    return NULL;
  }
  kir_expr_t *od[OPS_MAX_RANK], *id[OPS_MAX_RANK];
  ops_sh_out_dims(c, 0, od);
  ops_sh_in_dims(c, 0, id);
  kir_expr_t *lin = ops_sh_linear(a, c->out[0].rank, v, od);
  ops_sh_unravel(a, lin, c->in[0].rank, id, idx);
  kir_store(k, 0, v, kir_load(k, x, idx), NULL);
  return NULL;
}

kir_expr_t *ops_sh_zero(fl_arena_t *a, flagos_dtype_t dt) {
  if (dt == FLAGOS_BOOL) return kir_bool(a, false);
  if (flagos_dtype_is_float(dt)) return kir_const(a, dt, 0.0);
  return kir_const_int(a, dt, 0);
}

kir_expr_t *ops_sh_one(fl_arena_t *a, flagos_dtype_t dt) {
  if (dt == FLAGOS_BOOL) return kir_bool(a, true);
  if (flagos_dtype_is_float(dt)) return kir_const(a, dt, 1.0);
  return kir_const_int(a, dt, 1);
}

flagos_status_t ops_sh_need_index_dtype(const ops_ctx_t *c, int k, const char *what) {
  flagos_dtype_t dt = c->in[k].dtype;
  if (dt != FLAGOS_INT32 && dt != FLAGOS_INT64)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input %d (%s) must be int32 or int64, is %s", k, what, flagos_dtype_name(dt));
  return NULL;
}
