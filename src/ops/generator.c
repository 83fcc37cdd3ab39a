/* Generator family: tensors made from attributes and scalars rather than from
 * input elements (Constant, ConstantOfShape, Range). */
#include <math.h>
#include <string.h>

#include "ops/shape_util.h"

/* ---- Constant ----
 * The compiler turns Constant nodes into initializers before lowering (see
 * passes/constants.c); infer still types them for passes that run earlier. */
static flagos_status_t infer_constant(ops_ctx_t *c) {
  if (c->node->n_attrs != 1)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "must have exactly one attribute, has %d", c->node->n_attrs);
  const fir_attr_t *at = &c->node->attrs[0];
  const char *n = at->name;
  if ((strcmp(n, "value") == 0 || strcmp(n, "sparse_value") == 0) && at->t) {
    ops_set_out(c, 0, at->t->dtype, at->t->rank, at->t->dims);
  } else if (strcmp(n, "value_float") == 0) {
    ops_set_out(c, 0, FLAGOS_FLOAT32, 0, NULL);
  } else if (strcmp(n, "value_int") == 0) {
    ops_set_out(c, 0, FLAGOS_INT64, 0, NULL);
  } else if (strcmp(n, "value_string") == 0) {
    ops_set_out(c, 0, FLAGOS_STRING, 0, NULL);
  } else if (strcmp(n, "value_floats") == 0 || strcmp(n, "value_ints") == 0 || strcmp(n, "value_strings") == 0) {
    int64_t len = at->n;
    flagos_dtype_t dt = n[6] == 'f' ? FLAGOS_FLOAT32 : n[6] == 'i' ? FLAGOS_INT64 : FLAGOS_STRING;
    ops_set_out(c, 0, dt, 1, &len);
  } else {
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown attribute '%s'", n);
  }
  return NULL;
}

static flagos_status_t lower_constant(ops_ctx_t *c) {
  return ops_err(c, FLAGOS_ERR_INTERNAL, "Constant must be folded into an initializer before lowering");
}

/* ---- ConstantOfShape ---- */
static const fir_tensor_t *cos_value(const ops_ctx_t *c) {
  const fir_attr_t *at = fir_node_attr(c->node, "value");
  return at && at->t ? at->t : NULL;
}

static flagos_status_t infer_constant_of_shape(ops_ctx_t *c) {
  const fir_tensor_t *t = cos_value(c);
  if (t && t->numel != 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "value must hold one element, has %lld", (long long)t->numel);
  flagos_dtype_t dt = t ? t->dtype : FLAGOS_FLOAT32;
  if (dt == FLAGOS_STRING || dt == FLAGOS_COMPLEX64 || dt == FLAGOS_COMPLEX128)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "value of type %s", flagos_dtype_name(dt));
  ops_sh_list_t *s = fl_arena_alloc(c->arena, sizeof(*s));
  FL_TRY(ops_sh_int_list(c, false, "input", 0, s));
  if (!s->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input (shape) is missing");
  if (c->in[0].dtype != FLAGOS_INT64) return ops_err(c, FLAGOS_ERR_SHAPE, "the shape input must be int64");
  if (s->n < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the shape input's length is unknown, so the output rank is");
  if (s->n > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank %d exceeds %d", s->n, OPS_MAX_RANK);
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < s->n; i++) {
    d[i] = s->known ? s->v[i] : -1;
    if (s->known && d[i] < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "shape entry %d is negative (%lld)", i, (long long)d[i]);
  }
  ops_set_out(c, 0, dt, s->n, d);
  return NULL;
}

/* Element 0 of a host tensor as a kernel constant of its own dtype. */
static kir_expr_t *tensor_const(fl_arena_t *a, const fir_tensor_t *t) {
  if (!t) return kir_const(a, FLAGOS_FLOAT32, 0.0);
  if (t->dtype == FLAGOS_BOOL) return kir_bool(a, fl_load_as_int64(t->dtype, t->data, 0) != 0);
  if (flagos_dtype_is_float(t->dtype)) return kir_const(a, t->dtype, fl_load_as_double(t->dtype, t->data, 0));
  return kir_const_int(a, t->dtype, fl_load_as_int64(t->dtype, t->data, 0));
}

static flagos_status_t lower_constant_of_shape(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "fill", v);
  kir_store(k, 0, v, tensor_const(c->arena, cos_value(c)), NULL);
  return NULL;
}

/* ---- Range ---- */
static flagos_status_t infer_range(ops_ctx_t *c) {
  for (int k = 0; k < 3; k++) {
    FL_TRY(ops_sh_need_tensor(c, k, k == 0 ? "start" : k == 1 ? "limit" : "delta"));
    if (c->in[k].numel >= 0 && c->in[k].numel != 1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input %d must be a scalar, has %lld elements", k, (long long)c->in[k].numel);
    if (c->in[k].dtype != c->in[0].dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input %d is %s, start is %s", k, flagos_dtype_name(c->in[k].dtype),
                     flagos_dtype_name(c->in[0].dtype));
  }
  flagos_dtype_t dt = c->in[0].dtype;
  if (dt == FLAGOS_BOOL || (!flagos_dtype_is_float(dt) && !flagos_dtype_is_int(dt)))
    return ops_err(c, FLAGOS_ERR_SHAPE, "inputs must be numeric, are %s", flagos_dtype_name(dt));
  int64_t n = -1;
  if (c->in[0].value && c->in[1].value && c->in[2].value) {
    if (flagos_dtype_is_float(dt)) {
      double s = ops_in_float(c, 0, 0), l = ops_in_float(c, 1, 0), d = ops_in_float(c, 2, 0);
      if (d == 0 || !isfinite(s) || !isfinite(l) || !isfinite(d))
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "start, limit and delta must be finite and delta non-zero");
      double cnt = ceil((l - s) / d);
      if (cnt > 1e15) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "range of %g elements is too large", cnt);
      n = cnt > 0 ? (int64_t)cnt : 0;
    } else {
      int64_t s = ops_in_int(c, 0, 0), l = ops_in_int(c, 1, 0), d = ops_in_int(c, 2, 0);
      if (d == 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "delta is 0");
      if (d > 0) n = l > s ? (l - s - 1) / d + 1 : 0;
      else n = s > l ? (s - l - 1) / -d + 1 : 0;
    }
  }
  ops_set_out(c, 0, dt, 1, &n);
  return NULL;
}

static kir_expr_t *load_scalar(ops_ctx_t *c, kir_kernel_t *k, int input) {
  kir_expr_t *zero[OPS_MAX_RANK];
  for (int i = 0; i < c->in[input].rank; i++) zero[i] = kir_i64(c->arena, 0);
  return kir_load(k, ops_buf_in(c, k, input), zero);
}

static flagos_status_t lower_range(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  kir_expr_t *v[1];
  kir_kernel_t *k = ops_out_kernel(c, 0, "range", v);
  /* NumPy computes arange in double (floats) or int64 and then converts. */
  flagos_dtype_t cd = flagos_dtype_is_float(c->in[0].dtype) ? FLAGOS_FLOAT64 : FLAGOS_INT64;
  kir_expr_t *s = kir_cast(a, cd, load_scalar(c, k, 0)), *d = kir_cast(a, cd, load_scalar(c, k, 2));
  kir_expr_t *val = kir_bin(a, KIR_ADD, s, kir_bin(a, KIR_MUL, kir_cast(a, cd, v[0]), d));
  kir_store(k, 0, v, val, NULL);
  return NULL;
}

static double range_flops(const ops_ctx_t *c) { return 2.0 * (double)(c->out[0].numel > 0 ? c->out[0].numel : 0); }

const ops_def_t ops_family_generator[] = {
    {"Constant", "", 0, infer_constant, lower_constant, ops_sh_no_flops},
    {"ConstantOfShape", "", 1u << 0, infer_constant_of_shape, lower_constant_of_shape, ops_sh_no_flops},
    {"Range", "", (1u << 0) | (1u << 1) | (1u << 2), infer_range, lower_range, range_flops},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
