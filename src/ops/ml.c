/* The ai.onnx.ml family: Binarizer, ArrayFeatureExtractor and LabelEncoder
 * here, TreeEnsemble in ml_tree.c; this file holds the family table and the
 * helpers for attribute lists (ml_internal.h).
 *
 * String tensors cannot live in kernels, so the lowering here maps numbers to
 * numbers only (int64/int32/int16/float/double keys and values); a LabelEncoder
 * with string keys or values is typed by ops_str_infer_label_encoder() and run
 * by the runtime (src/runtime/host_strings.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/elementwise.h"
#include "ops/ml_internal.h"
#include "ops/ops_string.h"
#include "ops/shape_util.h"

/* ---- helpers ---- */

int ops_ml_table(ops_ctx_t *c, const char *suffix, flagos_dtype_t dt, int64_t n, const double *f, const int64_t *i) {
  fl_arena_t *a = c->arena;
  kir_expr_t *len = kir_i64(a, n > 0 ? n : 1), *one = kir_i64(a, 1), *v[1];
  int t = ops_temp(c, dt, 1, &len);
  kir_kernel_t *k = ops_kernel(c, suffix);
  int tb = ops_buf_temp(c, k, t);
  kir_set_space(k, 1, &one, v);
  for (int64_t e = 0; e < n; e++) {
    kir_expr_t *idx = kir_i64(a, e), *val;
    if (dt == FLAGOS_BOOL) val = kir_bool(a, f ? f[e] != 0 : i[e] != 0);
    else if (flagos_dtype_is_float(dt)) val = kir_const(a, dt, f ? f[e] : (double)i[e]);
    else val = kir_const_int(a, dt, f ? (int64_t)f[e] : i[e]);
    kir_store(k, tb, &idx, val, NULL);
  }
  if (n <= 0) kir_store(k, tb, v, flagos_dtype_is_float(dt) ? kir_const(a, dt, 0.0) : kir_const_int(a, dt, 0), NULL);
  return t;
}

flagos_status_t ops_ml_attr_doubles(const ops_ctx_t *c, const char *name, int64_t *n, const double **out,
                                    flagos_dtype_t *dtype) {
  const fir_attr_t *at = fir_node_attr(c->node, name);
  *n = -1;
  *out = NULL;
  if (dtype) *dtype = FLAGOS_UNDEFINED;
  if (!at) return NULL;
  double *d;
  if (at->kind == FIR_ATTR_TENSOR && at->t) {
    const fir_tensor_t *t = at->t;
    if (t->dtype == FLAGOS_STRING || t->dtype == FLAGOS_COMPLEX64 || t->dtype == FLAGOS_COMPLEX128)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "attribute '%s' holds %s values", name, flagos_dtype_name(t->dtype));
    if (t->numel > 0 && !t->data) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute '%s' has no data", name);
    d = fl_arena_alloc(c->arena, sizeof(*d) * (size_t)(t->numel > 0 ? t->numel : 1));
    for (int64_t e = 0; e < t->numel; e++) d[e] = fl_load_as_double(t->dtype, t->data, (size_t)e);
    *n = t->numel;
    if (dtype) *dtype = t->dtype;
  } else if (at->kind == FIR_ATTR_FLOATS || at->kind == FIR_ATTR_FLOAT) {
    int len = at->kind == FIR_ATTR_FLOAT ? 1 : at->n;
    d = fl_arena_alloc(c->arena, sizeof(*d) * (size_t)(len > 0 ? len : 1));
    for (int e = 0; e < len; e++) d[e] = at->kind == FIR_ATTR_FLOAT ? at->f : at->floats[e];
    *n = len;
    if (dtype) *dtype = FLAGOS_FLOAT32;
  } else if (at->kind == FIR_ATTR_INTS || at->kind == FIR_ATTR_INT) {
    int len = at->kind == FIR_ATTR_INT ? 1 : at->n;
    d = fl_arena_alloc(c->arena, sizeof(*d) * (size_t)(len > 0 ? len : 1));
    for (int e = 0; e < len; e++) d[e] = (double)(at->kind == FIR_ATTR_INT ? at->i : at->ints[e]);
    *n = len;
    if (dtype) *dtype = FLAGOS_INT64;
  } else {
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute '%s' is not a list of numbers", name);
  }
  *out = d;
  return NULL;
}

flagos_status_t ops_ml_attr_ints(const ops_ctx_t *c, const char *name, int64_t *n, const int64_t **out) {
  const fir_attr_t *at = fir_node_attr(c->node, name);
  *n = -1;
  *out = NULL;
  if (!at) return NULL;
  if (at->kind == FIR_ATTR_INTS) {
    *n = at->n;
    *out = at->ints;
    return NULL;
  }
  if (at->kind == FIR_ATTR_TENSOR && at->t && !flagos_dtype_is_float(at->t->dtype) && at->t->dtype != FLAGOS_STRING) {
    const fir_tensor_t *t = at->t;
    if (t->numel > 0 && !t->data) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute '%s' has no data", name);
    int64_t *d = fl_arena_alloc(c->arena, sizeof(*d) * (size_t)(t->numel > 0 ? t->numel : 1));
    for (int64_t e = 0; e < t->numel; e++) d[e] = fl_load_as_int64(t->dtype, t->data, (size_t)e);
    *n = t->numel;
    *out = d;
    return NULL;
  }
  return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute '%s' is not a list of integers", name);
}

/* ---- Binarizer: y = x > threshold ? 1 : 0 ---- */
#define ML_NUM (OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT64) | OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32))

static flagos_status_t infer_binarizer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, ML_NUM | OPS_DT(FLAGOS_FLOAT16)));
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static kir_expr_t *ew_binarizer(ops_ctx_t *c, kir_expr_t *const *x) {
  fl_arena_t *a = c->arena;
  /* The threshold is an f32 attribute; comparing in f64 is exact for every input type. */
  double thr = fir_attr_float(c->node, "threshold", 0.0f);
  kir_expr_t *gt = kir_bin(a, KIR_GT, kir_cast(a, FLAGOS_FLOAT64, x[0]), kir_const(a, FLAGOS_FLOAT64, thr));
  return kir_cast(a, c->out[0].dtype, gt);
}

static flagos_status_t lower_binarizer(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_binarizer); }

/* ---- ArrayFeatureExtractor: x[..., y] with y's elements flattened ---- */
static flagos_status_t infer_afe(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_ANY));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT(FLAGOS_INT64)));
  const ops_tensor_info_t *x = &c->in[0], *y = &c->in[1];
  if (x->rank < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'X' must have rank >= 1");
  int64_t last = x->dims[x->rank - 1];
  if (y->value && last >= 0)
    for (int64_t i = 0; i < y->numel; i++) {
      int64_t e = ops_in_int(c, 1, i);
      if (e < -last || e >= last)
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "index %lld of 'Y' is out of range for the last axis of 'X' (%lld)",
                       (long long)e, (long long)last);
    }
  int64_t d[OPS_MAX_RANK];
  int r = x->rank == 1 ? 2 : x->rank;
  if (x->rank == 1) d[0] = 1;
  else
    for (int i = 0; i < x->rank - 1; i++) d[i] = x->dims[i];
  d[r - 1] = y->numel;
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

static flagos_status_t lower_afe(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int xr = c->in[0].rank, yr = c->in[1].rank, r = c->out[0].rank;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK], *yd[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "extract", v);
  int xb = ops_buf_in(c, k, 0), yb = ops_buf_in(c, k, 1);
  ops_sh_in_dims(c, 1, yd);
  ops_sh_unravel(a, v[r - 1], yr, yd, idx);
  kir_expr_t *n = ops_in_dim(c, 0, xr - 1);
  kir_expr_t *e = ops_sh_wrap(a, kir_load(k, yb, idx), n);
  for (int i = 0; i < xr - 1; i++) idx[i] = v[i];
  idx[xr - 1] = e;
  /* An index out of range (only detectable at run time) gives zero. */
  kir_expr_t *y = kir_select(a, ops_sh_in_range(a, e, n), kir_load(k, xb, idx), ops_sh_zero(a, c->out[0].dtype));
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

/* ---- LabelEncoder ---- */
#define LE_TYPES                                                                                                    \
  (OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32) | OPS_DT(FLAGOS_INT16) | OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT64))
/* Above this many keys the map goes through tables instead of a chain of selects. */
#define LE_CHAIN_MAX 16

typedef struct le_map {
  int64_t n;
  flagos_dtype_t key_dt, val_dt;
  const double *kf, *vf; /* float keys / values (NULL for integer ones) */
  const int64_t *ki, *vi;
  double def_f;
  int64_t def_i;
} le_map_t;

/* One of the keys_* / values_* attributes: its dtype and numbers. */
static flagos_status_t le_list(const ops_ctx_t *c, const char *what, int64_t *n, flagos_dtype_t *dt, const double **f,
                               const int64_t **i) {
  char name[32];
  *n = -1;
  *f = NULL;
  *i = NULL;
  snprintf(name, sizeof name, "%s_strings", what);
  if (fir_node_attr(c->node, name))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "attribute '%s': string maps cannot run in kernels yet", name);
  snprintf(name, sizeof name, "%s_int64s", what);
  if (fir_node_attr(c->node, name)) {
    *dt = FLAGOS_INT64;
    return ops_ml_attr_ints(c, name, n, i);
  }
  snprintf(name, sizeof name, "%s_floats", what);
  if (fir_node_attr(c->node, name)) {
    *dt = FLAGOS_FLOAT32;
    return ops_ml_attr_doubles(c, name, n, f, NULL);
  }
  snprintf(name, sizeof name, "%s_tensor", what);
  const fir_attr_t *at = fir_node_attr(c->node, name);
  if (at && at->t) {
    *dt = at->t->dtype;
    if (*dt == FLAGOS_STRING)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "attribute '%s' holds strings, which kernels cannot handle yet", name);
    if (!ops_dt_in(*dt, LE_TYPES))
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute '%s' has dtype %s", name, flagos_dtype_name(*dt));
    if (flagos_dtype_is_float(*dt)) return ops_ml_attr_doubles(c, name, n, f, NULL);
    return ops_ml_attr_ints(c, name, n, i);
  }
  if (c->opset < 2 || fir_node_attr(c->node, "classes_strings"))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "LabelEncoder opset %d maps strings, which kernels cannot handle yet",
                   c->opset);
  return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "none of the attributes %s_int64s, %s_floats, %s_tensor is given",
                 what, what, what);
}

static flagos_status_t le_read(const ops_ctx_t *c, le_map_t *m) {
  int64_t nk, nv;
  FL_TRY(le_list(c, "keys", &nk, &m->key_dt, &m->kf, &m->ki));
  FL_TRY(le_list(c, "values", &nv, &m->val_dt, &m->vf, &m->vi));
  if (nk != nv) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "%lld keys but %lld values", (long long)nk, (long long)nv);
  m->n = nk;
  m->def_f = -0.0;
  m->def_i = -1;
  const fir_attr_t *dt = fir_node_attr(c->node, "default_tensor");
  if (fir_node_attr(c->node, "values_tensor") && dt && dt->t) {
    if (dt->t->numel != 1 || !dt->t->data)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "default_tensor must hold one value");
    if (dt->t->dtype == FLAGOS_STRING) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "default_tensor holds a string");
    m->def_f = fl_load_as_double(dt->t->dtype, dt->t->data, 0);
    m->def_i = fl_load_as_int64(dt->t->dtype, dt->t->data, 0);
  } else if (fir_node_attr(c->node, "values_floats")) {
    m->def_f = fir_attr_float(c->node, "default_float", -0.0f);
  } else if (fir_node_attr(c->node, "values_int64s")) {
    m->def_i = fir_attr_int(c->node, "default_int64", -1);
  }
  return NULL;
}

static flagos_status_t infer_label_encoder(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  /* String maps run in the runtime (src/runtime/host_strings.c); the compiler routes them there. */
  if (ops_str_label_encoder_uses_strings(c)) return ops_str_infer_label_encoder(c);
  FL_TRY(ops_ew_check_in(c, 0, LE_TYPES));
  le_map_t m;
  FL_TRY(le_read(c, &m));
  if (m.key_dt != c->in[0].dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "keys are %s but the input is %s", flagos_dtype_name(m.key_dt),
                   flagos_dtype_name(c->in[0].dtype));
  ops_set_out(c, 0, m.val_dt, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static kir_expr_t *le_const(fl_arena_t *a, flagos_dtype_t dt, const double *f, const int64_t *i, int64_t e) {
  if (flagos_dtype_is_float(dt)) return kir_const(a, dt, f ? f[e] : (double)i[e]);
  return kir_const_int(a, dt, f ? (int64_t)f[e] : i[e]);
}

/* x matches key: equal, or both NaN (a NaN key matches any NaN input). */
static kir_expr_t *le_match(fl_arena_t *a, kir_expr_t *x, kir_expr_t *key, bool key_nan) {
  if (!flagos_dtype_is_float(x->dtype)) return kir_bin(a, KIR_EQ, x, key);
  if (key_nan) return kir_un(a, KIR_ISNAN, x);
  return kir_bin(a, KIR_OR, kir_bin(a, KIR_EQ, x, key),
                 kir_bin(a, KIR_AND, kir_un(a, KIR_ISNAN, x), kir_un(a, KIR_ISNAN, key)));
}

static flagos_status_t lower_label_encoder(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  le_map_t m;
  FL_TRY(le_read(c, &m));
  bool vfloat = flagos_dtype_is_float(m.val_dt);
  kir_expr_t *def = vfloat ? kir_const(a, m.val_dt, m.def_f) : kir_const_int(a, m.val_dt, m.def_i);
  kir_expr_t *v[OPS_MAX_RANK];
  if (m.n <= LE_CHAIN_MAX) {
    kir_kernel_t *k = ops_out_kernel(c, 0, "map", v);
    kir_expr_t *x = kir_load(k, ops_buf_in(c, k, 0), v), *y = def;
    /* Later keys override earlier ones, as in the spec. */
    for (int64_t e = 0; e < m.n; e++) {
      bool nan = m.kf && isnan(m.kf[e]);
      kir_expr_t *key = le_const(a, m.key_dt, m.kf, m.ki, e);
      y = kir_select(a, le_match(a, x, key, nan), le_const(a, m.val_dt, m.vf, m.vi, e), y);
    }
    kir_store(k, 0, v, y, NULL);
    return NULL;
  }
  int tk = ops_ml_table(c, "keys", m.key_dt, m.n, m.kf, m.ki);
  int tv = ops_ml_table(c, "values", m.val_dt, m.n, m.vf, m.vi);
  kir_kernel_t *k = ops_out_kernel(c, 0, "map", v);
  int xb = ops_buf_in(c, k, 0), kb = ops_buf_temp(c, k, tk), vb = ops_buf_temp(c, k, tv);
  kir_expr_t *x = kir_load(k, xb, v), *n = kir_i64(a, m.n);
  int jv = kir_new_var(k);
  kir_expr_t *j = kir_var(a, jv);
  kir_expr_t *hit = le_match(a, x, kir_load(k, kb, &j), false);
  /* The last matching key wins: the largest matching position. */
  kir_expr_t *at = kir_reduce(a, KIR_RMAX, 1, &jv, &n, kir_select(a, hit, j, kir_i64(a, -1)));
  kir_expr_t *found = kir_bin(a, KIR_GE, at, kir_i64(a, 0));
  kir_store(k, 0, v, kir_select(a, found, kir_load(k, vb, &at), def), NULL);
  return NULL;
}

#define ML_ENTRY(name, inf, low) {.op_type = name, .domain = "ai.onnx.ml", .infer = inf, .lower = low}
const ops_def_t ops_family_ml[] = {
    ML_ENTRY("Binarizer", infer_binarizer, lower_binarizer),
    ML_ENTRY("ArrayFeatureExtractor", infer_afe, lower_afe),
    ML_ENTRY("LabelEncoder", infer_label_encoder, lower_label_encoder),
    {.op_type = "TreeEnsemble", .domain = "ai.onnx.ml", .infer = ops_ml_tree_infer, .lower = ops_ml_tree_lower,
     .flops = ops_ml_tree_flops},
    {.op_type = NULL},
};
#undef ML_ENTRY
