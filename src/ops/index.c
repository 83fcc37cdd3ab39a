/* Index family: reading a tensor at positions another tensor gives. This file
 * holds the gathers and the family table; Slice, Compress and NonZero are in
 * index_slice.c, the mask-like operators in index_misc.c.
 *
 * Indices are normalised (negative counts from the end) in the kernel; an index
 * still out of range reads 0 instead of memory outside the tensor, because a
 * kernel cannot report an error. */

#include "ops/shape_util.h"

/* data[.., i, ..] with i wrapped and guarded: 0 when out of range. */
static kir_expr_t *guarded_load(ops_ctx_t *c, kir_kernel_t *k, int buf, kir_expr_t **idx, kir_expr_t *ok) {
  return kir_select(c->arena, ok, kir_load(k, buf, idx), ops_sh_zero(c->arena, k->bufs[buf].dtype));
}

/* ---- Gather ---- */
static flagos_status_t infer_gather(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  FL_TRY(ops_sh_need_tensor(c, 1, "indices"));
  FL_TRY(ops_sh_need_index_dtype(c, 1, "indices"));
  const ops_tensor_info_t *x = &c->in[0], *ind = &c->in[1];
  if (x->rank < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "data must have rank >= 1");
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), x->rank, &axis));
  int r = x->rank + ind->rank - 1;
  if (r > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, OPS_MAX_RANK);
  int64_t d[OPS_MAX_RANK];
  int n = 0;
  for (int i = 0; i < axis; i++) d[n++] = x->dims[i];
  for (int i = 0; i < ind->rank; i++) d[n++] = ind->dims[i];
  for (int i = axis + 1; i < x->rank; i++) d[n++] = x->dims[i];
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

static flagos_status_t lower_gather(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), c->in[0].rank, &axis));
  int q = c->in[1].rank;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "gather", v);
  int x = ops_buf_in(c, k, 0), ib = ops_buf_in(c, k, 1);
  kir_expr_t *n = ops_in_dim(c, 0, axis);
  kir_expr_t *i = ops_sh_wrap(a, ops_sh_as_index(a, kir_load(k, ib, v + axis)), n);
  for (int d = 0; d < axis; d++) idx[d] = v[d];
  idx[axis] = i;
  for (int d = axis + 1; d < c->in[0].rank; d++) idx[d] = v[d + q - 1];
  kir_store(k, 0, v, guarded_load(c, k, x, idx, ops_sh_in_range(a, i, n)), NULL);
  return NULL;
}

/* ---- GatherElements ---- */
static flagos_status_t infer_gather_elements(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  FL_TRY(ops_sh_need_tensor(c, 1, "indices"));
  FL_TRY(ops_sh_need_index_dtype(c, 1, "indices"));
  const ops_tensor_info_t *x = &c->in[0], *ind = &c->in[1];
  if (x->rank < 1 || ind->rank != x->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "indices (rank %d) must have the rank of data (%d), at least 1", ind->rank,
                   x->rank);
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), x->rank, &axis));
  ops_set_out(c, 0, x->dtype, ind->rank, ind->dims);
  return NULL;
}

static flagos_status_t lower_gather_elements(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int axis, r = c->in[0].rank;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), r, &axis));
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "gather", v);
  int x = ops_buf_in(c, k, 0), ib = ops_buf_in(c, k, 1);
  kir_expr_t *n = ops_in_dim(c, 0, axis);
  kir_expr_t *i = ops_sh_wrap(a, ops_sh_as_index(a, kir_load(k, ib, v)), n);
  kir_expr_t *ok = ops_sh_in_range(a, i, n);
  for (int d = 0; d < r; d++) {
    idx[d] = d == axis ? i : v[d];
    /* indices may be smaller than data on other axes, never larger */
    if (d != axis && !(c->in[0].dims[d] >= 0 && c->in[1].dims[d] >= 0 && c->in[1].dims[d] <= c->in[0].dims[d]))
      ok = ops_sh_and(a, ok, kir_bin(a, KIR_LT, v[d], ops_in_dim(c, 0, d)));
  }
  kir_store(k, 0, v, guarded_load(c, k, x, idx, ok), NULL);
  return NULL;
}

/* ---- GatherND ---- */
static flagos_status_t gathernd_dims(ops_ctx_t *c, int *b, int *kdim) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  FL_TRY(ops_sh_need_tensor(c, 1, "indices"));
  if (c->in[1].dtype != FLAGOS_INT64) FL_TRY(ops_sh_need_index_dtype(c, 1, "indices"));
  const ops_tensor_info_t *x = &c->in[0], *ind = &c->in[1];
  int64_t bd = c->opset >= 12 ? fir_attr_int(c->node, "batch_dims", 0) : 0;
  if (ind->rank < 1 || x->rank < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "data and indices must have rank >= 1");
  if (bd < 0 || bd >= ind->rank || bd >= x->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "batch_dims %lld is out of range for ranks %d and %d", (long long)bd, x->rank,
                   ind->rank);
  int64_t k = ind->dims[ind->rank - 1];
  if (k < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the last dimension of indices is unknown, so the output rank is");
  if (k < 1 || bd + k > x->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "indices address %lld axes after %lld batch axes of a rank-%d tensor",
                   (long long)k, (long long)bd, x->rank);
  for (int i = 0; i < bd; i++)
    if (x->dims[i] >= 0 && ind->dims[i] >= 0 && x->dims[i] != ind->dims[i])
      return ops_err(c, FLAGOS_ERR_SHAPE, "batch axis %d differs: %lld vs %lld", i, (long long)x->dims[i],
                     (long long)ind->dims[i]);
  *b = (int)bd;
  *kdim = (int)k;
  return NULL;
}

static flagos_status_t infer_gather_nd(ops_ctx_t *c) {
  int b, k;
  FL_TRY(gathernd_dims(c, &b, &k));
  const ops_tensor_info_t *x = &c->in[0], *ind = &c->in[1];
  int64_t d[OPS_MAX_RANK];
  int n = 0;
  for (int i = 0; i < ind->rank - 1; i++) d[n++] = ind->dims[i];
  for (int i = b + k; i < x->rank; i++) {
    if (n >= OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank exceeds %d", OPS_MAX_RANK);
    d[n++] = x->dims[i];
  }
  ops_set_out(c, 0, x->dtype, n, d);
  return NULL;
}

static flagos_status_t lower_gather_nd(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int b, kd;
  FL_TRY(gathernd_dims(c, &b, &kd));
  int q = c->in[1].rank, r = c->in[0].rank;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK], *iidx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "gathernd", v);
  int x = ops_buf_in(c, k, 0), ib = ops_buf_in(c, k, 1);
  kir_expr_t *ok = kir_bool(a, true);
  for (int d = 0; d < q - 1; d++) iidx[d] = v[d];
  for (int d = 0; d < r; d++) {
    if (d < b) {
      idx[d] = v[d];
    } else if (d < b + kd) {
      iidx[q - 1] = kir_i64(a, d - b);
      kir_expr_t *n = ops_in_dim(c, 0, d);
      idx[d] = ops_sh_wrap(a, ops_sh_as_index(a, kir_load(k, ib, iidx)), n);
      ok = ops_sh_and(a, ok, ops_sh_in_range(a, idx[d], n));
    } else {
      idx[d] = v[q - 1 + d - b - kd];
    }
  }
  kir_store(k, 0, v, guarded_load(c, k, x, idx, ok), NULL);
  return NULL;
}

#define NF ops_sh_no_flops
const ops_def_t ops_family_index[] = {
    {"Gather", "", 0, infer_gather, lower_gather, NF},
    {"GatherElements", "", 0, infer_gather_elements, lower_gather_elements, NF},
    {"GatherND", "", 0, infer_gather_nd, lower_gather_nd, NF},
    {"Slice", "", (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4), ops_ix_infer_slice, ops_ix_lower_slice, NF},
    {"Compress", "", 1u << 1, ops_ix_infer_compress, ops_ix_lower_compress, NF},
    {"NonZero", "", 1u << 0, ops_ix_infer_nonzero, ops_ix_lower_nonzero, NF},
    {"ReverseSequence", "", 0, ops_ix_infer_reverse_sequence, ops_ix_lower_reverse_sequence, NF},
    {"Trilu", "", 0, ops_ix_infer_trilu, ops_ix_lower_trilu, NF},
    {"OneHot", "", 1u << 1, ops_ix_infer_onehot, ops_ix_lower_onehot, NF},
    {"EyeLike", "", 0, ops_ix_infer_eyelike, ops_ix_lower_eyelike, NF},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
