/* Shape family: operators that change how elements are indexed, not their values.
 * This file holds the view-like ones (Identity, Reshape, Flatten, Squeeze,
 * Unsqueeze, Dropout at inference), Shape and Size, and the family table; the
 * remapping ones are in shape_layout.c and shape_pad.c. */

#include "ops/shape_util.h"

/* ---- Identity ---- */
static flagos_status_t infer_identity(ops_ctx_t *c) {
  if (ops_has_in(c, 0) && c->in[0].kind != FIR_TYPE_TENSOR)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "Identity of a sequence or optional value is not supported in kernel IR");
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

/* ---- Reshape ---- */
static flagos_status_t infer_reshape(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  ops_sh_list_t *s = fl_arena_alloc(c->arena, sizeof(*s));
  bool attr = c->opset < 5;
  FL_TRY(ops_sh_int_list(c, attr, "shape", 1, s));
  if (!s->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the target shape is missing");
  if (s->n < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the target shape's length is unknown, so the output rank is");
  if (s->n > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "target rank %d exceeds %d", s->n, OPS_MAX_RANK);
  const ops_tensor_info_t *x = &c->in[0];
  int64_t d[OPS_MAX_RANK];
  if (!s->known) {
    for (int i = 0; i < s->n; i++) d[i] = -1;
    ops_set_out(c, 0, x->dtype, s->n, d);
    return NULL;
  }
  bool allowzero = c->opset >= 14 && fir_attr_int(c->node, "allowzero", 0) != 0;
  int infer_at = -1;
  int64_t known_prod = 1;
  bool prod_known = true;
  for (int i = 0; i < s->n; i++) {
    int64_t v = s->v[i];
    if (v == -1) {
      if (infer_at >= 0) return ops_err(c, FLAGOS_ERR_SHAPE, "target shape has more than one -1");
      infer_at = i;
      d[i] = -1;
      continue;
    }
    if (v < -1) return ops_err(c, FLAGOS_ERR_SHAPE, "target shape entry %d is %lld", i, (long long)v);
    if (v == 0 && !allowzero) {
      if (i >= x->rank)
        return ops_err(c, FLAGOS_ERR_SHAPE, "target shape entry %d is 0 (copy) but the input has rank %d", i, x->rank);
      v = x->dims[i];
    }
    d[i] = v;
    if (v < 0) prod_known = false;
    else known_prod *= v;
  }
  if (infer_at >= 0 && prod_known && x->numel >= 0) {
    if (known_prod == 0) {
      if (x->numel != 0)
        return ops_err(c, FLAGOS_ERR_SHAPE, "cannot infer the -1 entry: the other entries multiply to 0");
      d[infer_at] = 0;
    } else {
      if (x->numel % known_prod)
        return ops_err(c, FLAGOS_ERR_SHAPE, "input of %lld elements cannot be reshaped with the other entries giving %lld",
                       (long long)x->numel, (long long)known_prod);
      d[infer_at] = x->numel / known_prod;
    }
  } else if (infer_at < 0 && prod_known && x->numel >= 0 && known_prod != x->numel) {
    return ops_err(c, FLAGOS_ERR_SHAPE, "cannot reshape %lld elements into a shape of %lld elements", (long long)x->numel,
                   (long long)known_prod);
  }
  ops_set_out(c, 0, x->dtype, s->n, d);
  return NULL;
}

/* ---- Flatten ---- */
static flagos_status_t infer_flatten(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  const ops_tensor_info_t *x = &c->in[0];
  int64_t axis = fir_attr_int(c->node, "axis", 1);
  if (axis < 0) axis += x->rank;
  if (axis < 0 || axis > x->rank)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                   (long long)fir_attr_int(c->node, "axis", 1), x->rank);
  /* A zero dim makes the product 0 even when other dims are unknown. */
  int64_t d[2] = {1, 1};
  bool unknown[2] = {false, false}, zero[2] = {false, false};
  for (int i = 0; i < x->rank; i++) {
    int g = i < axis ? 0 : 1;
    if (x->dims[i] < 0) unknown[g] = true;
    else if (x->dims[i] == 0) zero[g] = true;
    else d[g] *= x->dims[i];
  }
  for (int g = 0; g < 2; g++) d[g] = zero[g] ? 0 : unknown[g] ? -1 : d[g];
  ops_set_out(c, 0, x->dtype, 2, d);
  return NULL;
}

/* ---- Squeeze / Unsqueeze ---- */
static flagos_status_t infer_squeeze(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  const ops_tensor_info_t *x = &c->in[0];
  ops_sh_list_t *ax = fl_arena_alloc(c->arena, sizeof(*ax));
  FL_TRY(ops_sh_int_list(c, c->opset < 13, "axes", 1, ax));
  int64_t d[OPS_MAX_RANK];
  int r = 0;
  if (!ax->present) {
    /* Without axes the output rank depends on which dims are 1. A dim unknown at
     * compile time is taken to stay (FlagOS needs static ranks); run time checks
     * the guess against the rank the graph was compiled with. */
    for (int i = 0; i < x->rank; i++)
      if (x->dims[i] != 1) d[r++] = x->dims[i];
    const fir_value_t *ov = c->node->n_outputs > 0 ? c->node->outputs[0] : NULL;
    if (c->runtime && ov && ov->type->kind == FIR_TYPE_TENSOR && ov->type->rank >= 0 && ov->type->rank != r)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED,
                     "Squeeze without axes gives rank %d at run time, but a dimension unknown at compile time was "
                     "assumed not to be 1 (compiled rank %d); give the axes explicitly",
                     r, ov->type->rank);
    ops_set_out(c, 0, x->dtype, r, d);
    return NULL;
  }
  if (ax->n < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the number of axes is unknown, so the output rank is");
  if (ax->n > x->rank) return ops_err(c, FLAGOS_ERR_SHAPE, "%d axes for an input of rank %d", ax->n, x->rank);
  if (!ax->known) {
    for (int i = 0; i < x->rank - ax->n; i++) d[i] = -1;
    ops_set_out(c, 0, x->dtype, x->rank - ax->n, d);
    return NULL;
  }
  bool drop[OPS_MAX_RANK] = {false};
  for (int i = 0; i < ax->n; i++) {
    int a;
    FL_TRY(ops_axis(c, ax->v[i], x->rank, &a));
    if (drop[a]) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %d is listed twice", a);
    if (x->dims[a] > 1 || x->dims[a] == 0)
      return ops_err(c, FLAGOS_ERR_SHAPE, "cannot squeeze axis %d of size %lld", a, (long long)x->dims[a]);
    drop[a] = true;
  }
  for (int i = 0; i < x->rank; i++)
    if (!drop[i]) d[r++] = x->dims[i];
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

static flagos_status_t infer_unsqueeze(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  const ops_tensor_info_t *x = &c->in[0];
  ops_sh_list_t *ax = fl_arena_alloc(c->arena, sizeof(*ax));
  FL_TRY(ops_sh_int_list(c, c->opset < 13, "axes", 1, ax));
  if (!ax->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axes are missing");
  if (ax->n < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the number of axes is unknown, so the output rank is");
  int r = x->rank + ax->n;
  if (r > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, OPS_MAX_RANK);
  int64_t d[OPS_MAX_RANK];
  if (!ax->known) {
    for (int i = 0; i < r; i++) d[i] = -1;
    ops_set_out(c, 0, x->dtype, r, d);
    return NULL;
  }
  bool ins[OPS_MAX_RANK] = {false};
  for (int i = 0; i < ax->n; i++) {
    int a;
    FL_TRY(ops_axis(c, ax->v[i], r, &a));
    if (ins[a]) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %d is listed twice", a);
    ins[a] = true;
  }
  for (int i = 0, j = 0; i < r; i++) d[i] = ins[i] ? 1 : x->dims[j++];
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

/* ---- Dropout (inference only) ---- */
static flagos_status_t infer_dropout(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  const ops_tensor_info_t *x = &c->in[0];
  if (c->opset >= 12) {
    for (int k = 1; k <= 2; k++)
      if (ops_has_in(c, k) && c->in[k].numel != 1 && c->in[k].numel >= 0)
        return ops_err(c, FLAGOS_ERR_SHAPE, "%s must hold one value, has %lld", k == 1 ? "ratio" : "training_mode",
                       (long long)c->in[k].numel);
    if (ops_has_in(c, 2) && c->in[2].value && ops_in_int(c, 2, 0)) {
      /* Training mode with ratio 0 is still the identity; anything else needs random masks. */
      if (ops_has_in(c, 1) && !c->in[1].value)
        return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "training-mode Dropout with an unknown ratio is not supported");
      double ratio = ops_has_in(c, 1) ? ops_in_float(c, 1, 0) : 0.5;
      if (ratio != 0.0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "training-mode Dropout (random masks) is not supported");
    }
  }
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  if (c->n_out > 1 && c->node->outputs[1]) ops_set_out(c, 1, FLAGOS_BOOL, x->rank, x->dims);
  return NULL;
}

static flagos_status_t lower_dropout(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "copy", v);
  int x = ops_buf_in(c, k, 0);
  kir_store(k, 0, v, kir_load(k, x, v), NULL);
  if (c->n_out > 1 && c->out[1].present) {
    int m = ops_buf_out(c, k, 1);
    kir_store(k, m, v, kir_bool(c->arena, true), NULL);
  }
  return NULL;
}

/* ---- Shape / Size ---- */
static void shape_range(const ops_ctx_t *c, int64_t *start, int64_t *len) {
  int r = c->in[0].rank;
  int64_t s = c->opset >= 15 ? fir_attr_int(c->node, "start", 0) : 0;
  int64_t e = c->opset >= 15 ? fir_attr_int(c->node, "end", r) : r;
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = s < 0 ? 0 : s > r ? r : s;
  e = e < 0 ? 0 : e > r ? r : e;
  *start = s;
  *len = e > s ? e - s : 0;
}

static flagos_status_t infer_shape(ops_ctx_t *c) {
  if (!ops_has_in(c, 0) || c->in[0].kind != FIR_TYPE_TENSOR || c->in[0].rank < 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input must be a tensor of known rank");
  int64_t s, n;
  shape_range(c, &s, &n);
  ops_set_out(c, 0, FLAGOS_INT64, 1, &n);
  return NULL;
}

static flagos_status_t lower_shape(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int64_t s, n;
  shape_range(c, &s, &n);
  kir_expr_t *v[1];
  kir_kernel_t *k = ops_out_kernel(c, 0, "shape", v);
  kir_expr_t *val = kir_i64(a, 0);
  for (int64_t j = n - 1; j >= 0; j--)
    val = kir_select(a, kir_bin(a, KIR_EQ, v[0], kir_i64(a, j)), ops_in_dim(c, 0, (int)(s + j)), val);
  kir_store(k, 0, v, val, NULL);
  return NULL;
}

static flagos_status_t infer_size(ops_ctx_t *c) {
  if (!ops_has_in(c, 0) || c->in[0].kind != FIR_TYPE_TENSOR || c->in[0].rank < 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input must be a tensor of known rank");
  ops_set_out(c, 0, FLAGOS_INT64, 0, NULL);
  return NULL;
}

static flagos_status_t lower_size(ops_ctx_t *c) {
  kir_expr_t *v[1];
  kir_kernel_t *k = ops_out_kernel(c, 0, "size", v);
  kir_expr_t *n = kir_i64(c->arena, 1);
  for (int d = 0; d < c->in[0].rank; d++) n = kir_mul(c->arena, n, ops_in_dim(c, 0, d));
  kir_store(k, 0, v, n, NULL);
  return NULL;
}

#define NF ops_sh_no_flops
const ops_def_t ops_family_shape[] = {
    {"Identity", "", 0, infer_identity, ops_sh_lower_copy, NF},
    {"Reshape", "", 1u << 1, infer_reshape, ops_sh_lower_copy, NF},
    {"Flatten", "", 0, infer_flatten, ops_sh_lower_copy, NF},
    {"Squeeze", "", 1u << 1, infer_squeeze, ops_sh_lower_copy, NF},
    {"Unsqueeze", "", 1u << 1, infer_unsqueeze, ops_sh_lower_copy, NF},
    {"Dropout", "", (1u << 1) | (1u << 2), infer_dropout, lower_dropout, NF},
    {"Shape", "", 0, infer_shape, lower_shape, NF},
    {"Size", "", 0, infer_size, lower_size, NF},
    {"Transpose", "", 0, ops_sh_infer_transpose, ops_sh_lower_transpose, NF},
    {"Concat", "", 0, ops_sh_infer_concat, ops_sh_lower_concat, NF},
    {"Split", "", 1u << 1, ops_sh_infer_split, ops_sh_lower_split, NF},
    {"Expand", "", 1u << 1, ops_sh_infer_expand, ops_sh_lower_expand, NF},
    {"Tile", "", 1u << 1, ops_sh_infer_tile, ops_sh_lower_tile, NF},
    {"DepthToSpace", "", 0, ops_sh_infer_depth_to_space, ops_sh_lower_depth_to_space, NF},
    {"SpaceToDepth", "", 0, ops_sh_infer_space_to_depth, ops_sh_lower_space_to_depth, NF},
    {"Pad", "", (1u << 1) | (1u << 3), ops_sh_infer_pad, ops_sh_lower_pad, NF},
    {"CenterCropPad", "", 1u << 1, ops_sh_infer_center_crop_pad, ops_sh_lower_center_crop_pad, NF},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
