/* Shape family, part 3: Pad and CenterCropPad. Both map an output position to
 * an input position shifted by a per-axis offset (a param, since it comes from
 * an input's values in recent opsets) and decide what to read outside the input. */
#include <string.h>

#include "ops/shape_util.h"

typedef enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP } pad_mode_t;

static flagos_status_t pad_mode(ops_ctx_t *c, pad_mode_t *m) {
  const char *s = fir_attr_string(c->node, "mode", "constant");
  if (strcmp(s, "constant") == 0) *m = PAD_CONSTANT;
  else if (strcmp(s, "reflect") == 0) *m = PAD_REFLECT;
  else if (strcmp(s, "edge") == 0) *m = PAD_EDGE;
  else if (strcmp(s, "wrap") == 0 && c->opset >= 19) *m = PAD_WRAP;
  else return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown mode '%s'", s);
  return NULL;
}

/* params[d] = pad at the beginning of axis d (negative: crop). */
flagos_status_t ops_sh_infer_pad(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  const ops_tensor_info_t *x = &c->in[0];
  int r = x->rank;
  pad_mode_t mode;
  FL_TRY(pad_mode(c, &mode));
  ops_sh_list_t *p = fl_arena_alloc(c->arena, sizeof(*p)), *ax = fl_arena_alloc(c->arena, sizeof(*ax));
  if (c->opset < 2) FL_TRY(ops_sh_int_list(c, true, "paddings", 0, p));
  else FL_TRY(ops_sh_int_list(c, c->opset < 11, "pads", 1, p));
  if (!p->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "pads are missing");
  if (c->opset >= 11 && ops_has_in(c, 2) && c->in[2].numel > 1)
    return ops_err(c, FLAGOS_ERR_SHAPE, "constant_value must hold one value, has %lld", (long long)c->in[2].numel);
  if (c->opset >= 11 && ops_has_in(c, 2) && c->in[2].dtype != x->dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "constant_value is %s, data is %s", flagos_dtype_name(c->in[2].dtype),
                   flagos_dtype_name(x->dtype));
  int axes[OPS_MAX_RANK], n_axes = r;
  bool axes_known = true;
  for (int i = 0; i < r; i++) axes[i] = i;
  if (c->opset >= 18 && ops_has_in(c, 3)) {
    FL_TRY(ops_sh_int_list(c, false, "axes", 3, ax));
    if (ax->n < 0 || !ax->known) axes_known = false;
    else {
      if (ax->n > r) return ops_err(c, FLAGOS_ERR_SHAPE, "%d axes for rank %d", ax->n, r);
      n_axes = ax->n;
      for (int i = 0; i < n_axes; i++) FL_TRY(ops_axis(c, ax->v[i], r, &axes[i]));
    }
  }
  if (axes_known && p->n >= 0 && p->n != 2 * n_axes)
    return ops_err(c, FLAGOS_ERR_SHAPE, "pads has %d entries, expected %d", p->n, 2 * n_axes);
  c->n_params = r;
  int64_t d[OPS_MAX_RANK];
  if (!axes_known || !p->known) {
    for (int i = 0; i < r; i++) {
      c->params[i] = 0;
      d[i] = -1;
    }
    if (axes_known && !p->known) {
      /* Axes that are not padded keep their size. */
      bool padded[OPS_MAX_RANK] = {false};
      for (int i = 0; i < n_axes; i++) padded[axes[i]] = true;
      for (int i = 0; i < r; i++)
        if (!padded[i]) d[i] = x->dims[i];
    }
    ops_set_out(c, 0, x->dtype, r, d);
    return NULL;
  }
  int64_t beg[OPS_MAX_RANK] = {0}, end[OPS_MAX_RANK] = {0};
  for (int i = 0; i < n_axes; i++) {
    beg[axes[i]] = p->v[i];
    end[axes[i]] = p->v[n_axes + i];
  }
  for (int i = 0; i < r; i++) {
    c->params[i] = beg[i];
    if (x->dims[i] < 0) {
      d[i] = -1;
      continue;
    }
    d[i] = x->dims[i] + beg[i] + end[i];
    if (d[i] < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "pads make axis %d negative (%lld)", i, (long long)d[i]);
    if (mode != PAD_CONSTANT && x->dims[i] == 0 && d[i] > 0)
      return ops_err(c, FLAGOS_ERR_SHAPE, "cannot pad the empty axis %d in a non-constant mode", i);
  }
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

static kir_expr_t *pad_value(ops_ctx_t *c, kir_kernel_t *k) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t dt = c->in[0].dtype;
  if (c->opset >= 11) {
    if (!ops_has_in(c, 2) || c->in[2].numel == 0) return ops_sh_zero(a, dt);
    int b = ops_buf_in(c, k, 2);
    kir_expr_t *zero[OPS_MAX_RANK];
    for (int i = 0; i < c->in[2].rank; i++) zero[i] = kir_i64(a, 0);
    return kir_load(k, b, zero);
  }
  double v = fir_attr_float(c->node, "value", 0.0f);
  if (dt == FLAGOS_BOOL) return kir_bool(a, v != 0.0);
  return kir_const(a, dt, v);
}

flagos_status_t ops_sh_lower_pad(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  pad_mode_t mode;
  FL_TRY(pad_mode(c, &mode));
  int r = c->in[0].rank;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "pad", v);
  int x = ops_buf_in(c, k, 0);
  kir_expr_t *inside = kir_bool(a, true), *zero = kir_i64(a, 0), *one = kir_i64(a, 1);
  for (int i = 0; i < r; i++) {
    kir_expr_t *n = ops_in_dim(c, 0, i), *p = ops_param(c, i);
    if (kir_is_const(p, 0) && c->in[0].dims[i] >= 0 && c->in[0].dims[i] == c->out[0].dims[i]) {
      idx[i] = v[i];
      continue;
    }
    kir_expr_t *j = kir_sub(a, v[i], p);
    switch (mode) {
    case PAD_CONSTANT:
      inside = ops_sh_and(a, inside, ops_sh_in_range(a, j, n));
      idx[i] = j;
      break;
    case PAD_EDGE: idx[i] = kir_bin(a, KIR_MAX, kir_bin(a, KIR_MIN, j, kir_sub(a, n, one)), zero); break;
    case PAD_WRAP: idx[i] = kir_bin(a, KIR_FLOORMOD, j, n); break;
    case PAD_REFLECT: {
      if (kir_is_const(n, 1)) {
        idx[i] = zero;
        break;
      }
      /* Reflection without repeating the edge is periodic with period 2(n-1). */
      kir_expr_t *period = kir_mul(a, kir_sub(a, n, one), kir_i64(a, 2));
      kir_expr_t *m = kir_bin(a, KIR_FLOORMOD, j, period);
      kir_expr_t *refl = kir_select(a, kir_bin(a, KIR_GE, m, n), kir_sub(a, period, m), m);
      idx[i] = kir_select(a, kir_bin(a, KIR_EQ, n, one), zero, refl);
      break;
    }
    }
  }
  kir_expr_t *val = kir_load(k, x, idx);
  if (mode == PAD_CONSTANT) val = kir_select(a, inside, val, pad_value(c, k));
  kir_store(k, 0, v, val, NULL);
  return NULL;
}

/* ---- CenterCropPad ---- */
/* params[d] = offset added to an output index to get the input index. */
flagos_status_t ops_sh_infer_center_crop_pad(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input_data"));
  const ops_tensor_info_t *x = &c->in[0];
  int r = x->rank;
  ops_sh_list_t *s = fl_arena_alloc(c->arena, sizeof(*s));
  FL_TRY(ops_sh_int_list(c, false, "shape", 1, s));
  if (!s->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input 1 (shape) is missing");
  int axes[OPS_MAX_RANK], n_axes = r;
  for (int i = 0; i < r; i++) axes[i] = i;
  const int64_t *av;
  int na = fir_attr_ints(c->node, "axes", &av);
  if (na >= 0) {
    if (na > r) return ops_err(c, FLAGOS_ERR_SHAPE, "%d axes for rank %d", na, r);
    n_axes = na;
    for (int i = 0; i < na; i++) FL_TRY(ops_axis(c, av[i], r, &axes[i]));
  }
  if (s->n >= 0 && s->n != n_axes)
    return ops_err(c, FLAGOS_ERR_SHAPE, "shape has %d entries for %d axes", s->n, n_axes);
  int64_t d[OPS_MAX_RANK];
  c->n_params = r;
  for (int i = 0; i < r; i++) {
    d[i] = x->dims[i];
    c->params[i] = 0;
  }
  for (int i = 0; i < n_axes; i++) {
    int ax = axes[i];
    if (!s->known) {
      d[ax] = -1;
      continue;
    }
    int64_t t = s->v[i], n = x->dims[ax];
    if (t < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "target size %lld for axis %d is negative", (long long)t, ax);
    d[ax] = t;
    if (n < 0) continue;
    /* Crop starts are rounded down; odd padding puts the extra element at the end. */
    c->params[ax] = t <= n ? (n - t) / 2 : -((t - n) / 2);
  }
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

flagos_status_t ops_sh_lower_center_crop_pad(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "ccp", v);
  int x = ops_buf_in(c, k, 0);
  kir_expr_t *inside = kir_bool(a, true);
  for (int i = 0; i < r; i++) {
    idx[i] = kir_add(a, v[i], ops_param(c, i));
    if (c->in[0].dims[i] >= 0 && c->in[0].dims[i] == c->out[0].dims[i] && kir_is_const(ops_param(c, i), 0)) continue;
    inside = ops_sh_and(a, inside, ops_sh_in_range(a, idx[i], ops_in_dim(c, 0, i)));
  }
  kir_store(k, 0, v, kir_select(a, inside, kir_load(k, x, idx), ops_sh_zero(a, c->in[0].dtype)), NULL);
  return NULL;
}
