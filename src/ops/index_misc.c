/* Index family, part 3: operators whose output element is chosen by comparing
 * its position with something (ReverseSequence, Trilu, OneHot, EyeLike). */
#include <string.h>

#include "ops/shape_util.h"

/* ---- ReverseSequence ---- */
static flagos_status_t reverse_axes(ops_ctx_t *c, int *batch, int *time) {
  int r = c->in[0].rank;
  if (r < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input must have rank >= 2, has %d", r);
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "batch_axis", 1), r, batch));
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "time_axis", 0), r, time));
  if (*batch == *time) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "batch_axis and time_axis are both %d", *time);
  return NULL;
}

flagos_status_t ops_ix_infer_reverse_sequence(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  FL_TRY(ops_sh_need_tensor(c, 1, "sequence_lens"));
  FL_TRY(ops_sh_need_index_dtype(c, 1, "sequence_lens"));
  int b, t;
  FL_TRY(reverse_axes(c, &b, &t));
  const ops_tensor_info_t *x = &c->in[0], *l = &c->in[1];
  if (l->rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "sequence_lens must be 1-D, has rank %d", l->rank);
  if (l->dims[0] >= 0 && x->dims[b] >= 0 && l->dims[0] != x->dims[b])
    return ops_err(c, FLAGOS_ERR_SHAPE, "sequence_lens has %lld entries for a batch of %lld", (long long)l->dims[0],
                   (long long)x->dims[b]);
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  return NULL;
}

flagos_status_t ops_ix_lower_reverse_sequence(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int b, t;
  FL_TRY(reverse_axes(c, &b, &t));
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "reverse", v);
  int x = ops_buf_in(c, k, 0), lb = ops_buf_in(c, k, 1);
  kir_expr_t *len = ops_sh_as_index(a, kir_load(k, lb, &v[b]));
  /* Lengths beyond the time axis are clamped so the read stays inside. */
  len = kir_bin(a, KIR_MIN, len, ops_in_dim(c, 0, t));
  memcpy(idx, v, sizeof(*v) * (size_t)c->in[0].rank);
  idx[t] = kir_select(a, kir_bin(a, KIR_LT, v[t], len), kir_sub(a, kir_sub(a, len, kir_i64(a, 1)), v[t]), v[t]);
  kir_store(k, 0, v, kir_load(k, x, idx), NULL);
  return NULL;
}

/* ---- Trilu ---- */
flagos_status_t ops_ix_infer_trilu(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input must have rank >= 2, has %d", x->rank);
  if (ops_has_in(c, 1)) {
    FL_TRY(ops_sh_need_tensor(c, 1, "k"));
    if (c->in[1].dtype != FLAGOS_INT64) return ops_err(c, FLAGOS_ERR_SHAPE, "k must be int64");
    if (c->in[1].numel >= 0 && c->in[1].numel != 1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "k must hold one value, has %lld", (long long)c->in[1].numel);
  }
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  return NULL;
}

flagos_status_t ops_ix_lower_trilu(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "trilu", v);
  int x = ops_buf_in(c, k, 0);
  kir_expr_t *kv = kir_i64(a, 0);
  if (ops_has_in(c, 1)) {
    int kb = ops_buf_in(c, k, 1);
    kir_expr_t *zero[OPS_MAX_RANK];
    for (int i = 0; i < c->in[1].rank; i++) zero[i] = kir_i64(a, 0);
    kv = kir_load(k, kb, zero);
  }
  kir_expr_t *diag = kir_sub(a, v[r - 1], v[r - 2]);
  bool upper = fir_attr_int(c->node, "upper", 1) != 0;
  kir_expr_t *keep = kir_bin(a, upper ? KIR_GE : KIR_LE, diag, kv);
  kir_store(k, 0, v, kir_select(a, keep, kir_load(k, x, v), ops_sh_zero(a, c->in[0].dtype)), NULL);
  return NULL;
}

/* ---- OneHot ---- */
static flagos_status_t onehot_axis(ops_ctx_t *c, int *axis) {
  return ops_axis(c, fir_attr_int(c->node, "axis", -1), c->in[0].rank + 1, axis);
}

flagos_status_t ops_ix_infer_onehot(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "indices"));
  FL_TRY(ops_sh_need_tensor(c, 1, "depth"));
  FL_TRY(ops_sh_need_tensor(c, 2, "values"));
  const ops_tensor_info_t *ind = &c->in[0], *dp = &c->in[1], *val = &c->in[2];
  if (val->rank != 1 || (val->dims[0] >= 0 && val->dims[0] != 2))
    return ops_err(c, FLAGOS_ERR_SHAPE, "values must be a 2-element vector [off, on]");
  if (dp->numel >= 0 && dp->numel != 1)
    return ops_err(c, FLAGOS_ERR_SHAPE, "depth must hold one value, has %lld", (long long)dp->numel);
  if (ind->rank + 1 > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank exceeds %d", OPS_MAX_RANK);
  int axis;
  FL_TRY(onehot_axis(c, &axis));
  int64_t depth = -1;
  if (dp->value) {
    depth = (int64_t)ops_in_float(c, 1, 0);
    if (depth < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "depth must be positive, is %lld", (long long)depth);
  }
  int64_t d[OPS_MAX_RANK];
  for (int i = 0, j = 0; i <= ind->rank; i++) d[i] = i == axis ? depth : ind->dims[j++];
  ops_set_out(c, 0, val->dtype, ind->rank + 1, d);
  return NULL;
}

flagos_status_t ops_ix_lower_onehot(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int axis, q = c->in[0].rank;
  FL_TRY(onehot_axis(c, &axis));
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "onehot", v);
  int ib = ops_buf_in(c, k, 0), vb = ops_buf_in(c, k, 2);
  for (int i = 0, j = 0; i <= q; i++)
    if (i != axis) idx[j++] = v[i];
  kir_expr_t *depth = ops_out_dim(c, 0, axis), *x = kir_load(k, ib, idx), *hit;
  if (flagos_dtype_is_float(x->dtype)) {
    /* Non-integral float indices match no position (as the reference compares values). */
    flagos_dtype_t cd = kir_compute_dtype(x->dtype);
    kir_expr_t *xf = kir_cast(a, cd, x), *df = kir_cast(a, cd, depth);
    xf = kir_select(a, kir_bin(a, KIR_LT, xf, kir_const(a, cd, 0.0)), kir_bin(a, KIR_ADD, xf, df), xf);
    hit = kir_bin(a, KIR_EQ, xf, kir_cast(a, cd, v[axis]));
  } else {
    hit = kir_bin(a, KIR_EQ, ops_sh_wrap(a, ops_sh_as_index(a, x), depth), v[axis]);
  }
  kir_expr_t *off = kir_load(k, vb, (kir_expr_t *[]){kir_i64(a, 0)});
  kir_expr_t *on = kir_load(k, vb, (kir_expr_t *[]){kir_i64(a, 1)});
  kir_store(k, 0, v, kir_select(a, hit, on, off), NULL);
  return NULL;
}

/* ---- EyeLike ---- */
static flagos_dtype_t eyelike_dtype(const ops_ctx_t *c) {
  return (flagos_dtype_t)fir_attr_int(c->node, "dtype", c->in[0].dtype);
}

flagos_status_t ops_ix_infer_eyelike(ops_ctx_t *c) {
  if (!ops_has_in(c, 0) || c->in[0].kind != FIR_TYPE_TENSOR || c->in[0].rank != 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input must be a 2-D tensor");
  flagos_dtype_t dt = eyelike_dtype(c);
  if (dt <= FLAGOS_UNDEFINED || dt >= FLAGOS_DTYPE_COUNT || dt == FLAGOS_STRING || dt == FLAGOS_COMPLEX64 ||
      dt == FLAGOS_COMPLEX128)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "dtype %d is not supported", (int)dt);
  ops_set_out(c, 0, dt, 2, c->in[0].dims);
  return NULL;
}

flagos_status_t ops_ix_lower_eyelike(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t dt = eyelike_dtype(c);
  kir_expr_t *v[2];
  kir_kernel_t *k = ops_out_kernel(c, 0, "eye", v);
  kir_expr_t *on = kir_bin(a, KIR_EQ, kir_sub(a, v[1], v[0]), kir_i64(a, fir_attr_int(c->node, "k", 0)));
  kir_store(k, 0, v, kir_select(a, on, ops_sh_one(a, dt), ops_sh_zero(a, dt)), NULL);
  return NULL;
}
