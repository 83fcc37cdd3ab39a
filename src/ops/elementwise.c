/* Pointwise arithmetic with NumPy broadcasting: binary and variadic operators, the
 * helpers every pointwise family shares (elementwise.h), and the family table,
 * which also lists the unary operators of elementwise_unary.c. Each operator is one
 * kernel over the output's index space. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/elementwise.h"

/* ---- shared helpers ---- */

flagos_status_t ops_ew_check_count(ops_ctx_t *c, int lo, int hi) {
  if (c->n_in < lo || (hi >= 0 && c->n_in > hi)) {
    if (hi < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects at least %d inputs, got %d", lo, c->n_in);
    if (lo == hi) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects %d inputs, got %d", lo, c->n_in);
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects %d to %d inputs, got %d", lo, hi, c->n_in);
  }
  return NULL;
}

flagos_status_t ops_ew_check_in(ops_ctx_t *c, int k, uint64_t allowed) {
  if (!ops_has_in(c, k)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d is required but missing", k);
  const ops_tensor_info_t *t = &c->in[k];
  if (t->kind == FIR_TYPE_UNKNOWN)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d has no known type (nothing inferred or declared it)", k);
  if (t->kind != FIR_TYPE_TENSOR) return ops_err(c, FLAGOS_ERR_SHAPE, "input %d is not a tensor", k);
  if (t->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d has unknown rank", k);
  if (!ops_dt_in(t->dtype, allowed)) {
    if (t->dtype == FLAGOS_STRING)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d: string tensors are not supported by kernels yet", k);
    return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has dtype %s, which this operator does not accept", k,
                   flagos_dtype_onnx_name(t->dtype));
  }
  return NULL;
}

flagos_status_t ops_ew_infer_bcast(ops_ctx_t *c, int first, int n, uint64_t allowed, bool same_dtype,
                                   flagos_dtype_t out_dt) {
  FL_TRY(ops_ew_check_in(c, first, allowed));
  for (int k = first + 1; k < first + n; k++) {
    if (!ops_has_in(c, k)) continue;
    FL_TRY(ops_ew_check_in(c, k, allowed));
    if (same_dtype && c->in[k].dtype != c->in[first].dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has dtype %s but input %d has %s", k,
                     flagos_dtype_onnx_name(c->in[k].dtype), first, flagos_dtype_onnx_name(c->in[first].dtype));
  }
  int r;
  int64_t d[OPS_MAX_RANK];
  FL_TRY(ops_broadcast_shape(c, first, n, &r, d));
  ops_set_out(c, 0, out_dt == FLAGOS_UNDEFINED ? c->in[first].dtype : out_dt, r, d);
  return NULL;
}

flagos_status_t ops_ew_lower_map(ops_ctx_t *c, ops_ew_fn_t fn) {
  if (c->capture_in) {
    c->capture_out = fn(c, c->capture_in);
    return NULL;
  }
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "main", v);
  int r = c->out[0].rank;
  kir_expr_t **x = fl_arena_alloc(c->arena, sizeof(*x) * (size_t)(c->n_in > 0 ? c->n_in : 1));
  for (int i = 0; i < c->n_in; i++) {
    if (!ops_has_in(c, i)) continue;
    int b = ops_buf_in(c, k, i);
    x[i] = ops_load_bcast(c, k, b, i, r, v);
  }
  kir_store(k, 0, v, fn(c, x), NULL);
  return NULL;
}

flagos_dtype_t ops_ew_float_compute(flagos_dtype_t dt) { return dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32; }

kir_expr_t *ops_ew_f(ops_ctx_t *c, flagos_dtype_t dt, double v) { return kir_const(c->arena, dt, v); }

double ops_ew_dtype_max(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_UINT8: return 255.0;
  case FLAGOS_INT8: return 127.0;
  case FLAGOS_UINT16: return 65535.0;
  case FLAGOS_INT16: return 32767.0;
  case FLAGOS_INT32: return 2147483647.0;
  case FLAGOS_UINT32: return 4294967295.0;
  case FLAGOS_INT64: return 9223372036854775807.0;
  case FLAGOS_UINT64: return 18446744073709551615.0;
  case FLAGOS_UINT4: return 15.0;
  case FLAGOS_INT4: return 7.0;
  case FLAGOS_UINT2: return 3.0;
  case FLAGOS_INT2: return 1.0;
  case FLAGOS_BOOL: return 1.0;
  case FLAGOS_FLOAT16: return 65504.0;
  case FLAGOS_BFLOAT16: return 3.3895313892515355e38;
  case FLAGOS_FLOAT32: return FLT_MAX;
  case FLAGOS_FLOAT64: return DBL_MAX;
  case FLAGOS_FLOAT8E4M3FN: return 448.0;
  case FLAGOS_FLOAT8E4M3FNUZ: return 240.0;
  case FLAGOS_FLOAT8E5M2: return 57344.0;
  case FLAGOS_FLOAT8E5M2FNUZ: return 57344.0;
  case FLAGOS_FLOAT4E2M1: return 6.0;
  default: return 0.0;
  }
}

double ops_ew_dtype_lowest(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_INT8: return -128.0;
  case FLAGOS_INT16: return -32768.0;
  case FLAGOS_INT32: return -2147483648.0;
  case FLAGOS_INT64: return -9223372036854775808.0;
  case FLAGOS_INT4: return -8.0;
  case FLAGOS_INT2: return -2.0;
  default: return flagos_dtype_is_float(dt) ? -ops_ew_dtype_max(dt) : 0.0;
  }
}

/* ---- binary arithmetic ---- */

static flagos_status_t infer_arith(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  return ops_ew_infer_bcast(c, 0, 2, OPS_DT_NUMERIC, true, FLAGOS_UNDEFINED);
}

static kir_expr_t *ew_add(ops_ctx_t *c, kir_expr_t *const *x) { return kir_bin(c->arena, KIR_ADD, x[0], x[1]); }
static kir_expr_t *ew_sub(ops_ctx_t *c, kir_expr_t *const *x) { return kir_bin(c->arena, KIR_SUB, x[0], x[1]); }
static kir_expr_t *ew_mul(ops_ctx_t *c, kir_expr_t *const *x) { return kir_bin(c->arena, KIR_MUL, x[0], x[1]); }

/* Integer division and remainder trap on a zero divisor and on MIN / -1, and the
 * data that feeds them is the user's: those cases give 0 (and -x for x / -1). */
static kir_expr_t *guarded_int_divmod(ops_ctx_t *c, kir_op_t op, kir_expr_t *x, kir_expr_t *y) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t dt = x->dtype;
  kir_expr_t *zero = kir_const_int(a, dt, 0);
  kir_expr_t *r = kir_bin(a, op, x, y);
  if (flagos_dtype_is_signed(dt)) {
    kir_expr_t *by_m1 = op == KIR_DIV || op == KIR_FLOORDIV ? kir_bin(a, KIR_SUB, zero, x) : zero;
    r = kir_select(a, kir_bin(a, KIR_EQ, y, kir_const_int(a, dt, -1)), by_m1, r);
  }
  return kir_select(a, kir_bin(a, KIR_EQ, y, zero), zero, r);
}

static kir_expr_t *ew_div(ops_ctx_t *c, kir_expr_t *const *x) {
  if (flagos_dtype_is_int(x[0]->dtype)) return guarded_int_divmod(c, KIR_DIV, x[0], x[1]);
  return kir_bin(c->arena, KIR_DIV, x[0], x[1]);
}

static kir_expr_t *ew_mod(ops_ctx_t *c, kir_expr_t *const *x) {
  fl_arena_t *a = c->arena;
  bool fmod = fir_attr_int(c->node, "fmod", 0) != 0;
  flagos_dtype_t dt = x[0]->dtype;
  if (flagos_dtype_is_int(dt)) return guarded_int_divmod(c, fmod ? KIR_MOD : KIR_FLOORMOD, x[0], x[1]);
  kir_expr_t *r = kir_bin(a, KIR_MOD, x[0], x[1]);
  if (fmod) return r;
  /* Floor modulo from fmod: a nonzero remainder whose sign differs from the
   * divisor's moves by one divisor (this keeps the ±inf divisor cases of the spec). */
  kir_expr_t *zero = ops_ew_f(c, dt, 0.0);
  kir_expr_t *differ = kir_bin(a, KIR_NE, kir_bin(a, KIR_LT, r, zero), kir_bin(a, KIR_LT, x[1], zero));
  kir_expr_t *fix = kir_bin(a, KIR_AND, kir_bin(a, KIR_NE, r, zero), differ);
  return kir_select(a, fix, kir_bin(a, KIR_ADD, r, x[1]), r);
}

static flagos_status_t lower_add(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_add); }
static flagos_status_t lower_sub(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_sub); }
static flagos_status_t lower_mul(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_mul); }
static flagos_status_t lower_div(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_div); }
static flagos_status_t lower_mod(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_mod); }

static flagos_status_t infer_mod(ops_ctx_t *c) {
  FL_TRY(infer_arith(c));
  int64_t f = fir_attr_int(c->node, "fmod", 0);
  if (f != 0 && f != 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute fmod must be 0 or 1, got %lld", (long long)f);
  return NULL;
}

/* ---- Pow: the exponent may have another type than the base ---- */

static flagos_status_t infer_pow(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_NUMERIC));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT_NUMERIC));
  return ops_ew_infer_bcast(c, 0, 2, OPS_DT_NUMERIC, false, c->in[0].dtype);
}

static kir_expr_t *ew_pow(ops_ctx_t *c, kir_expr_t *const *x) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t bt = x[0]->dtype, et = x[1]->dtype;
  /* Integer results and wide exponents go through double (exact for the integer
   * powers that fit); f32-and-narrower pairs stay in f32 like NumPy's powf. */
  bool wide = bt == FLAGOS_FLOAT64 || et == FLAGOS_FLOAT64 || !flagos_dtype_is_float(bt) ||
              et == FLAGOS_INT32 || et == FLAGOS_INT64 || et == FLAGOS_UINT32 || et == FLAGOS_UINT64;
  flagos_dtype_t cd = wide ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  kir_expr_t *p = kir_bin(a, KIR_POW, kir_cast(a, cd, x[0]), kir_cast(a, cd, x[1]));
  if (flagos_dtype_is_int(bt)) {
    /* An integer result out of range (or NaN/inf) has no defined value; clamp so
     * the conversion itself stays defined. */
    p = kir_select(a, kir_un(a, KIR_ISNAN, p), kir_const(a, cd, 0.0), p);
    /* INT64_MAX rounds up to 2^63 in double; the largest double below it is safe. */
    double hi = bt == FLAGOS_INT64 ? 9223372036854774784.0 : ops_ew_dtype_max(bt);
    p = kir_bin(a, KIR_MAX, kir_bin(a, KIR_MIN, p, kir_const(a, cd, hi)),
                kir_const(a, cd, ops_ew_dtype_lowest(bt)));
  }
  return kir_cast(a, bt, p);
}

static flagos_status_t lower_pow(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_pow); }

/* ---- bitwise ---- */

static flagos_status_t infer_bitwise(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  return ops_ew_infer_bcast(c, 0, 2, OPS_DT_INTS, true, FLAGOS_UNDEFINED);
}

static kir_expr_t *ew_bitand(ops_ctx_t *c, kir_expr_t *const *x) { return kir_bin(c->arena, KIR_BITAND, x[0], x[1]); }
static kir_expr_t *ew_bitor(ops_ctx_t *c, kir_expr_t *const *x) { return kir_bin(c->arena, KIR_BITOR, x[0], x[1]); }
static kir_expr_t *ew_bitxor(ops_ctx_t *c, kir_expr_t *const *x) { return kir_bin(c->arena, KIR_BITXOR, x[0], x[1]); }
static flagos_status_t lower_bitand(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_bitand); }
static flagos_status_t lower_bitor(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_bitor); }
static flagos_status_t lower_bitxor(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_bitxor); }

static flagos_status_t infer_bitshift(ops_ctx_t *c) {
  FL_TRY(infer_bitwise(c));
  const char *dir = fir_attr_string(c->node, "direction", NULL);
  if (!dir || (strcmp(dir, "LEFT") != 0 && strcmp(dir, "RIGHT") != 0))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute direction must be \"LEFT\" or \"RIGHT\", got %s%s%s",
                   dir ? "\"" : "", dir ? dir : "nothing", dir ? "\"" : "");
  return NULL;
}

static kir_expr_t *ew_bitshift(ops_ctx_t *c, kir_expr_t *const *x) {
  fl_arena_t *a = c->arena;
  bool left = strcmp(fir_attr_string(c->node, "direction", "LEFT"), "LEFT") == 0;
  flagos_dtype_t dt = x[0]->dtype;
  kir_expr_t *zero = kir_const_int(a, dt, 0);
  int bits = (int)flagos_dtype_size(dt) * 8;
  /* A shift by a negative count or by the width or more is undefined in C; ONNX
   * gives what the sign fill alone produces. */
  kir_expr_t *ok = kir_bin(a, KIR_LT, x[1], kir_const_int(a, dt, bits));
  if (flagos_dtype_is_signed(dt)) ok = kir_bin(a, KIR_AND, ok, kir_bin(a, KIR_GE, x[1], zero));
  kir_expr_t *fill = zero;
  if (!left && flagos_dtype_is_signed(dt))
    fill = kir_select(a, kir_bin(a, KIR_LT, x[0], zero), kir_const_int(a, dt, -1), zero);
  return kir_select(a, ok, kir_bin(a, left ? KIR_SHL : KIR_SHR, x[0], x[1]), fill);
}

static flagos_status_t lower_bitshift(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_bitshift); }

/* ---- variadic: Min, Max, Sum, Mean ---- */

static flagos_status_t infer_variadic(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, -1));
  for (int k = 0; k < c->n_in; k++)
    if (!ops_has_in(c, k)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d is missing", k);
  return ops_ew_infer_bcast(c, 0, c->n_in, OPS_DT_NUMERIC, true, FLAGOS_UNDEFINED);
}

static flagos_status_t infer_mean(ops_ctx_t *c) {
  FL_TRY(infer_variadic(c));
  if (!flagos_dtype_is_float(c->in[0].dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "Mean takes float tensors, got %s", flagos_dtype_onnx_name(c->in[0].dtype));
  return NULL;
}

static kir_expr_t *fold_inputs(ops_ctx_t *c, kir_expr_t *const *x, kir_op_t op) {
  kir_expr_t *r = x[0];
  for (int i = 1; i < c->n_in; i++) r = kir_bin(c->arena, op, r, x[i]);
  return r;
}

static kir_expr_t *ew_min(ops_ctx_t *c, kir_expr_t *const *x) { return fold_inputs(c, x, KIR_MIN); }
static kir_expr_t *ew_max(ops_ctx_t *c, kir_expr_t *const *x) { return fold_inputs(c, x, KIR_MAX); }
static kir_expr_t *ew_sum(ops_ctx_t *c, kir_expr_t *const *x) { return fold_inputs(c, x, KIR_ADD); }

static kir_expr_t *ew_mean(ops_ctx_t *c, kir_expr_t *const *x) {
  flagos_dtype_t cd = ops_ew_float_compute(x[0]->dtype);
  kir_expr_t *s = kir_cast(c->arena, cd, x[0]);
  for (int i = 1; i < c->n_in; i++) s = kir_bin(c->arena, KIR_ADD, s, kir_cast(c->arena, cd, x[i]));
  return kir_bin(c->arena, KIR_DIV, s, ops_ew_f(c, cd, (double)c->n_in));
}

static flagos_status_t lower_min(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_min); }
static flagos_status_t lower_max(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_max); }
static flagos_status_t lower_sum(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_sum); }
static flagos_status_t lower_mean(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_mean); }

static double flops_variadic(const ops_ctx_t *c) {
  double n = c->out[0].numel > 0 ? (double)c->out[0].numel : 0.0;
  return n * (c->n_in > 1 ? c->n_in - 1 : 1);
}

#define OPS_EW_ENTRY(name) OPS_EW_DEF(#name, ops_ew_infer_##name, ops_ew_lower_##name, NULL),

const ops_def_t ops_family_elementwise[] = {
    OPS_EW_DEF("Add", infer_arith, lower_add, NULL),
    OPS_EW_DEF("Sub", infer_arith, lower_sub, NULL),
    OPS_EW_DEF("Mul", infer_arith, lower_mul, NULL),
    OPS_EW_DEF("Div", infer_arith, lower_div, NULL),
    OPS_EW_DEF("Mod", infer_mod, lower_mod, NULL),
    OPS_EW_DEF("Pow", infer_pow, lower_pow, NULL),
    OPS_EW_DEF("Min", infer_variadic, lower_min, flops_variadic),
    OPS_EW_DEF("Max", infer_variadic, lower_max, flops_variadic),
    OPS_EW_DEF("Sum", infer_variadic, lower_sum, flops_variadic),
    OPS_EW_DEF("Mean", infer_mean, lower_mean, flops_variadic),
    OPS_EW_DEF("BitShift", infer_bitshift, lower_bitshift, NULL),
    OPS_EW_DEF("BitwiseAnd", infer_bitwise, lower_bitand, NULL),
    OPS_EW_DEF("BitwiseOr", infer_bitwise, lower_bitor, NULL),
    OPS_EW_DEF("BitwiseXor", infer_bitwise, lower_bitxor, NULL),
    OPS_EW_UNARY_LIST(OPS_EW_ENTRY)
    OPS_EW_END,
};
