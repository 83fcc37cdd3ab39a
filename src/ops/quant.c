/* Linear (de)quantisation: QuantizeLinear, DequantizeLinear and
 * DynamicQuantizeLinear. Scales and zero points are per tensor (a scalar or a
 * one-element vector), per axis (a vector along `axis`) or blocked (the input's
 * shape with `axis` divided into blocks of block_size); which one is decided from
 * ranks and attributes, so one lowering serves every input shape. */
#include <string.h>

#include "ops/elementwise.h"

#define QUANT_INT_TARGETS                                                                                           \
  (OPS_DT(FLAGOS_INT8) | OPS_DT(FLAGOS_UINT8) | OPS_DT(FLAGOS_INT16) | OPS_DT(FLAGOS_UINT16) | OPS_DT(FLAGOS_INT4) | \
   OPS_DT(FLAGOS_UINT4) | OPS_DT(FLAGOS_INT2) | OPS_DT(FLAGOS_UINT2))
#define QUANT_TARGETS (QUANT_INT_TARGETS | OPS_DT_F8 | OPS_DT(FLAGOS_FLOAT4E2M1))
#define QUANT_SCALES (OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT16) | OPS_DT(FLAGOS_BFLOAT16) | OPS_DT(FLAGOS_FLOAT8E8M0))

typedef enum { Q_TENSOR, Q_AXIS, Q_BLOCKED } qmode_t;

typedef struct {
  qmode_t mode;
  int axis;      /* normalised; Q_AXIS and Q_BLOCKED */
  int64_t block; /* Q_BLOCKED */
} qgran_t;

/* Works out the granularity from x (input 0) and the scale (input 1), and checks
 * that the zero point (input 2), when given, has the scale's shape. */
static flagos_status_t granularity(ops_ctx_t *c, qgran_t *g) {
  const ops_tensor_info_t *x = &c->in[0], *s = &c->in[1];
  int64_t block = fir_attr_int(c->node, "block_size", 0);
  memset(g, 0, sizeof(*g));
  if (block < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "block_size must not be negative, got %lld", (long long)block);
  /* A scalar and a one-element vector both mean "per tensor", and models mix them. */
  bool zp_single = ops_has_in(c, 2) && (c->in[2].rank == 0 || c->in[2].numel == 1);
  bool s_single = s->rank == 0 || s->numel == 1;
  if (ops_has_in(c, 2) && c->in[2].rank != s->rank && !(zp_single && s_single))
    return ops_err(c, FLAGOS_ERR_SHAPE, "zero point has rank %d but scale has rank %d", c->in[2].rank, s->rank);
  if (ops_has_in(c, 2) && c->in[2].rank == s->rank)
    for (int d = 0; d < s->rank; d++)
      if (s->dims[d] >= 0 && c->in[2].dims[d] >= 0 && s->dims[d] != c->in[2].dims[d])
        return ops_err(c, FLAGOS_ERR_SHAPE, "zero point dimension %d is %lld but the scale's is %lld", d,
                       (long long)c->in[2].dims[d], (long long)s->dims[d]);
  if (s->rank == 0 || (s->rank == 1 && x->rank == 0) || (block == 0 && s->numel == 1)) {
    if (s->numel > 1) return ops_err(c, FLAGOS_ERR_SHAPE, "scale of %lld elements for a scalar input", (long long)s->numel);
    g->mode = Q_TENSOR;
    return NULL;
  }
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 1), x->rank, &g->axis));
  if (block == 0) {
    if (s->rank != 1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "scale of rank %d needs block_size (per-axis scales are 1-D)", s->rank);
    if (s->dims[0] >= 0 && x->dims[g->axis] >= 0 && s->dims[0] != x->dims[g->axis] && s->dims[0] != 1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "scale has %lld elements but axis %d of the input has %lld",
                     (long long)s->dims[0], g->axis, (long long)x->dims[g->axis]);
    g->mode = Q_AXIS;
    return NULL;
  }
  if (s->rank != x->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "blocked scale has rank %d but the input has rank %d", s->rank, x->rank);
  for (int d = 0; d < x->rank; d++) {
    if (s->dims[d] < 0 || x->dims[d] < 0) continue;
    int64_t want = d == g->axis ? (x->dims[d] + block - 1) / block : x->dims[d];
    if (s->dims[d] != want)
      return ops_err(c, FLAGOS_ERR_SHAPE, "blocked scale dimension %d is %lld, expected %lld (block_size %lld)", d,
                     (long long)s->dims[d], (long long)want, (long long)block);
  }
  g->mode = Q_BLOCKED;
  g->block = block;
  return NULL;
}

/* Loads the scale or zero point (buffer `buf`) that applies at output index v. */
static kir_expr_t *load_qparam(ops_ctx_t *c, kir_kernel_t *k, int buf, const qgran_t *g, kir_expr_t *const *v) {
  fl_arena_t *a = c->arena;
  const kir_buf_t *b = &k->bufs[buf];
  kir_expr_t *idx[OPS_MAX_RANK];
  if (g->mode == Q_TENSOR) {
    for (int d = 0; d < b->rank; d++) idx[d] = kir_i64(a, 0);
  } else if (g->mode == Q_AXIS) {
    kir_expr_t *dim = b->dims[0];
    if (kir_is_const(dim, 1)) idx[0] = kir_i64(a, 0);
    else if (dim->kind == KIR_CONST) idx[0] = v[g->axis];
    else idx[0] = kir_select(a, kir_bin(a, KIR_EQ, dim, kir_i64(a, 1)), kir_i64(a, 0), v[g->axis]);
  } else {
    for (int d = 0; d < b->rank; d++)
      idx[d] = d == g->axis ? kir_bin(a, KIR_DIV, v[d], kir_i64(a, g->block)) : v[d];
  }
  return kir_load(k, buf, idx);
}

/* Rounds a value computed in f32 to a narrower float type and widens it again. */
static kir_expr_t *in_precision(ops_ctx_t *c, kir_expr_t *e, flagos_dtype_t p) {
  flagos_dtype_t cd = ops_ew_float_compute(p);
  if (p == FLAGOS_FLOAT16 || p == FLAGOS_BFLOAT16) return kir_cast(c->arena, cd, kir_cast(c->arena, p, e));
  return kir_cast(c->arena, cd, e);
}

/* ---- QuantizeLinear ---- */

static flagos_status_t quant_out_dtype(ops_ctx_t *c, flagos_dtype_t *out) {
  int64_t od = fir_attr_int(c->node, "output_dtype", 0);
  flagos_dtype_t dt = od ? (flagos_dtype_t)od : FLAGOS_UINT8;
  if (ops_has_in(c, 2)) {
    if (od && (flagos_dtype_t)od != c->in[2].dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "output_dtype %lld disagrees with the zero point's type %s", (long long)od,
                     flagos_dtype_onnx_name(c->in[2].dtype));
    dt = c->in[2].dtype;
  }
  if (!ops_dt_in(dt, QUANT_TARGETS))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "quantising to %s is not supported",
                   od > 0 && od < FLAGOS_DTYPE_COUNT ? flagos_dtype_onnx_name(dt) : "an unknown type");
  *out = dt;
  return NULL;
}

static flagos_status_t infer_quantize(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 3));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_FLOATS | OPS_DT(FLAGOS_INT32)));
  FL_TRY(ops_ew_check_in(c, 1, QUANT_SCALES | OPS_DT(FLAGOS_INT32)));
  if (ops_has_in(c, 2)) FL_TRY(ops_ew_check_in(c, 2, QUANT_TARGETS));
  int64_t prec = fir_attr_int(c->node, "precision", 0);
  if (prec && !ops_dt_in((flagos_dtype_t)prec, OPS_DT_FLOATS))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "precision %lld is not a float type FlagOS computes in", (long long)prec);
  flagos_dtype_t out = FLAGOS_UINT8;
  FL_TRY(quant_out_dtype(c, &out));
  qgran_t g;
  FL_TRY(granularity(c, &g));
  ops_set_out(c, 0, out, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static flagos_status_t lower_quantize(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  qgran_t g;
  FL_TRY(granularity(c, &g));
  flagos_dtype_t out = c->out[0].dtype;
  int64_t prec = fir_attr_int(c->node, "precision", 0);
  flagos_dtype_t sdt = c->in[1].dtype;
  /* The division runs in `precision`, else in the scale's type (e8m0 and int32
   * scales in f32). */
  flagos_dtype_t p = prec ? (flagos_dtype_t)prec : (ops_dt_in(sdt, OPS_DT_FLOATS) ? sdt : FLAGOS_FLOAT32);
  flagos_dtype_t cd = ops_ew_float_compute(p);
  bool sat = fir_attr_int(c->node, "saturate", 1) != 0;

  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "main", v);
  kir_expr_t *x = kir_load(k, ops_buf_in(c, k, 0), v);
  kir_expr_t *s = load_qparam(c, k, ops_buf_in(c, k, 1), &g, v);
  kir_expr_t *zp = ops_has_in(c, 2) ? load_qparam(c, k, ops_buf_in(c, k, 2), &g, v) : NULL;
  kir_expr_t *q = in_precision(c, kir_bin(a, KIR_DIV, in_precision(c, x, p), in_precision(c, s, p)), p);
  kir_expr_t *y;
  flagos_status_t err = NULL;
  if (ops_dt_in(out, QUANT_INT_TARGETS)) {
    kir_expr_t *r = kir_un(a, KIR_ROUND, q);
    if (zp) r = kir_bin(a, KIR_ADD, r, kir_cast(a, cd, zp));
    kir_expr_t *lo = ops_ew_f(c, cd, ops_ew_dtype_lowest(out)), *hi = ops_ew_f(c, cd, ops_ew_dtype_max(out));
    /* NaN has no integer image; it saturates low as the reference's conversion does. */
    r = kir_select(a, kir_un(a, KIR_ISNAN, r), lo, r);
    r = kir_bin(a, KIR_MAX, kir_bin(a, KIR_MIN, r, hi), lo);
    y = ops_cast_expr(c, r, out, true, NULL, &err);
  } else {
    if (zp) q = kir_bin(a, KIR_ADD, q, kir_cast(a, cd, zp));
    y = ops_cast_expr(c, q, out, sat, NULL, &err);
  }
  if (!y) return err;
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

/* ---- DequantizeLinear ---- */

#define DEQUANT_INPUTS (QUANT_TARGETS | OPS_DT(FLAGOS_INT32))

static flagos_status_t infer_dequantize(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 3));
  FL_TRY(ops_ew_check_in(c, 0, DEQUANT_INPUTS));
  FL_TRY(ops_ew_check_in(c, 1, QUANT_SCALES));
  if (ops_has_in(c, 2)) {
    FL_TRY(ops_ew_check_in(c, 2, DEQUANT_INPUTS));
    if (c->in[2].dtype != c->in[0].dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "zero point has dtype %s but x has %s", flagos_dtype_onnx_name(c->in[2].dtype),
                     flagos_dtype_onnx_name(c->in[0].dtype));
  }
  int64_t od = fir_attr_int(c->node, "output_dtype", 0);
  flagos_dtype_t out = od ? (flagos_dtype_t)od : c->in[1].dtype;
  if (out == FLAGOS_FLOAT8E8M0) out = FLAGOS_FLOAT32;
  if (!ops_dt_in(out, OPS_DT_FLOATS))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output_dtype %lld is not float, float16 or bfloat16", (long long)od);
  qgran_t g;
  FL_TRY(granularity(c, &g));
  ops_set_out(c, 0, out, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static flagos_status_t lower_dequantize(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  qgran_t g;
  FL_TRY(granularity(c, &g));
  flagos_dtype_t out = c->out[0].dtype, cd = ops_ew_float_compute(out);
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "main", v);
  kir_expr_t *x = kir_cast(a, cd, kir_load(k, ops_buf_in(c, k, 0), v));
  kir_expr_t *s = kir_cast(a, cd, load_qparam(c, k, ops_buf_in(c, k, 1), &g, v));
  if (ops_has_in(c, 2)) x = kir_bin(a, KIR_SUB, x, kir_cast(a, cd, load_qparam(c, k, ops_buf_in(c, k, 2), &g, v)));
  kir_store(k, 0, v, kir_cast(a, out, kir_bin(a, KIR_MUL, x, s)), NULL);
  return NULL;
}

/* ---- DynamicQuantizeLinear: uint8, scale and zero point from the data's range ---- */

static flagos_status_t infer_dynamic_quantize(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT(FLAGOS_FLOAT32)));
  if (c->n_out != 3) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects 3 outputs, got %d", c->n_out);
  ops_set_out(c, 0, FLAGOS_UINT8, c->in[0].rank, c->in[0].dims);
  ops_set_out(c, 1, FLAGOS_FLOAT32, 0, NULL);
  ops_set_out(c, 2, FLAGOS_UINT8, 0, NULL);
  return NULL;
}

static kir_expr_t *reduce_all(ops_ctx_t *c, kir_kernel_t *k, int buf, kir_op_t op) {
  int r = c->in[0].rank, vars[OPS_MAX_RANK];
  kir_expr_t *idx[OPS_MAX_RANK], *ext[OPS_MAX_RANK];
  for (int d = 0; d < r; d++) {
    vars[d] = kir_new_var(k);
    idx[d] = kir_var(c->arena, vars[d]);
    ext[d] = ops_in_dim(c, 0, d);
  }
  return kir_reduce(c->arena, op, r, vars, ext, kir_load(k, buf, idx));
}

static flagos_status_t lower_dynamic_quantize(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  const flagos_dtype_t f = FLAGOS_FLOAT32;
  kir_expr_t *zero = ops_ew_f(c, f, 0.0), *qmax = ops_ew_f(c, f, 255.0), *none[1] = {NULL};

  /* The data's range (widened to hold 0) goes to two scalar temps first, so each
   * reduction runs once whatever the emitter does with shared subexpressions. */
  int t_hi = ops_temp(c, f, 0, none), t_lo = ops_temp(c, f, 0, none);
  kir_kernel_t *k0 = ops_kernel(c, "range");
  kir_set_space(k0, 0, none, NULL);
  int hb = ops_buf_temp(c, k0, t_hi), lb = ops_buf_temp(c, k0, t_lo), xb = ops_buf_in(c, k0, 0);
  kir_store(k0, hb, none, kir_bin(a, KIR_MAX, zero, reduce_all(c, k0, xb, KIR_RMAX)), NULL);
  kir_store(k0, lb, none, kir_bin(a, KIR_MIN, zero, reduce_all(c, k0, xb, KIR_RMIN)), NULL);

  kir_kernel_t *k1 = ops_out_kernel(c, 1, "params", none);
  int zb = ops_buf_out(c, k1, 2);
  kir_expr_t *mx = kir_load(k1, ops_buf_temp(c, k1, t_hi), none), *mn = kir_load(k1, ops_buf_temp(c, k1, t_lo), none);
  kir_expr_t *range = kir_select(a, kir_bin(a, KIR_EQ, mx, mn), ops_ew_f(c, f, 1.0), kir_bin(a, KIR_SUB, mx, mn));
  kir_expr_t *scale = kir_bin(a, KIR_DIV, range, qmax);
  kir_expr_t *zpf = kir_bin(a, KIR_SUB, zero, kir_bin(a, KIR_DIV, mn, scale));
  zpf = kir_un(a, KIR_ROUND, kir_bin(a, KIR_MAX, kir_bin(a, KIR_MIN, zpf, qmax), zero));
  kir_store(k1, 0, none, scale, NULL);
  kir_store(k1, zb, none, kir_cast(a, FLAGOS_UINT8, zpf), NULL);

  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k2 = ops_out_kernel(c, 0, "quant", v);
  kir_expr_t *x = kir_load(k2, ops_buf_in(c, k2, 0), v);
  kir_expr_t *s = kir_load(k2, ops_buf_out(c, k2, 1), none);
  kir_expr_t *zp = kir_cast(a, f, kir_load(k2, ops_buf_out(c, k2, 2), none));
  kir_expr_t *y = kir_bin(a, KIR_ADD, kir_un(a, KIR_ROUND, kir_bin(a, KIR_DIV, x, s)), zp);
  y = kir_select(a, kir_un(a, KIR_ISNAN, y), zero, y);
  y = kir_bin(a, KIR_MAX, kir_bin(a, KIR_MIN, y, qmax), zero);
  kir_store(k2, 0, v, kir_cast(a, FLAGOS_UINT8, y), NULL);
  return NULL;
}

static double flops_2(const ops_ctx_t *c) { return c->out[0].numel > 0 ? 2.0 * (double)c->out[0].numel : 0.0; }
static double flops_dyn(const ops_ctx_t *c) { return c->out[0].numel > 0 ? 4.0 * (double)c->out[0].numel : 0.0; }

const ops_def_t ops_family_quant[] = {
    OPS_EW_DEF("QuantizeLinear", infer_quantize, lower_quantize, flops_2),
    OPS_EW_DEF("DequantizeLinear", infer_dequantize, lower_dequantize, flops_2),
    OPS_EW_DEF("DynamicQuantizeLinear", infer_dynamic_quantize, lower_dynamic_quantize, flops_dyn),
    OPS_EW_END,
};
