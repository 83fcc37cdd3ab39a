/* Unary pointwise operators (math functions, predicates, BitwiseNot). Narrow float
 * inputs are widened to f32 for the computation and rounded once at the store, so
 * f16/bf16 results are as close to the exact value as their type allows. */
#include <string.h>

#include "ops/elementwise.h"

static flagos_status_t infer_unary(ops_ctx_t *c, uint64_t allowed, flagos_dtype_t out_dt) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  return ops_ew_infer_bcast(c, 0, 1, allowed, true, out_dt);
}

/* Applies a float function in the input's compute type; the store rounds back. */
static kir_expr_t *float_un(ops_ctx_t *c, kir_op_t op, kir_expr_t *x) {
  flagos_dtype_t cd = ops_ew_float_compute(x->dtype);
  return kir_un(c->arena, op, kir_cast(c->arena, cd, x));
}

#define FLOAT_UNARY(Name, OP)                                                                                       \
  static kir_expr_t *ew_##Name(ops_ctx_t *c, kir_expr_t *const *x) { return float_un(c, OP, x[0]); }              \
  flagos_status_t ops_ew_infer_##Name(ops_ctx_t *c) { return infer_unary(c, OPS_DT_FLOATS, FLAGOS_UNDEFINED); }   \
  flagos_status_t ops_ew_lower_##Name(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_##Name); }

FLOAT_UNARY(Sqrt, KIR_SQRT)
FLOAT_UNARY(Exp, KIR_EXP)
FLOAT_UNARY(Log, KIR_LOG)
FLOAT_UNARY(Ceil, KIR_CEIL)
FLOAT_UNARY(Floor, KIR_FLOOR)
FLOAT_UNARY(Round, KIR_ROUND)
FLOAT_UNARY(Sin, KIR_SIN)
FLOAT_UNARY(Cos, KIR_COS)
FLOAT_UNARY(Tan, KIR_TAN)
FLOAT_UNARY(Asin, KIR_ASIN)
FLOAT_UNARY(Acos, KIR_ACOS)
FLOAT_UNARY(Atan, KIR_ATAN)
FLOAT_UNARY(Sinh, KIR_SINH)
FLOAT_UNARY(Cosh, KIR_COSH)
FLOAT_UNARY(Asinh, KIR_ASINH)
FLOAT_UNARY(Acosh, KIR_ACOSH)
FLOAT_UNARY(Atanh, KIR_ATANH)

/* Erf accepted integer tensors up to opset 13; they are computed in float. */
static kir_expr_t *ew_Erf(ops_ctx_t *c, kir_expr_t *const *x) { return float_un(c, KIR_ERF, x[0]); }
flagos_status_t ops_ew_infer_Erf(ops_ctx_t *c) { return infer_unary(c, OPS_DT_NUMERIC, FLAGOS_UNDEFINED); }
flagos_status_t ops_ew_lower_Erf(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_Erf); }

static kir_expr_t *ew_Reciprocal(ops_ctx_t *c, kir_expr_t *const *x) {
  flagos_dtype_t cd = ops_ew_float_compute(x[0]->dtype);
  return kir_bin(c->arena, KIR_DIV, ops_ew_f(c, cd, 1.0), kir_cast(c->arena, cd, x[0]));
}
flagos_status_t ops_ew_infer_Reciprocal(ops_ctx_t *c) { return infer_unary(c, OPS_DT_FLOATS, FLAGOS_UNDEFINED); }
flagos_status_t ops_ew_lower_Reciprocal(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_Reciprocal); }

static kir_expr_t *ew_Abs(ops_ctx_t *c, kir_expr_t *const *x) {
  if (flagos_dtype_is_int(x[0]->dtype) && !flagos_dtype_is_signed(x[0]->dtype)) return x[0];
  return kir_un(c->arena, KIR_ABS, x[0]);
}
flagos_status_t ops_ew_infer_Abs(ops_ctx_t *c) { return infer_unary(c, OPS_DT_NUMERIC, FLAGOS_UNDEFINED); }
flagos_status_t ops_ew_lower_Abs(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_Abs); }

static kir_expr_t *ew_Neg(ops_ctx_t *c, kir_expr_t *const *x) { return kir_un(c->arena, KIR_NEG, x[0]); }
flagos_status_t ops_ew_infer_Neg(ops_ctx_t *c) { return infer_unary(c, OPS_DT_FLOATS | OPS_DT_SINTS, FLAGOS_UNDEFINED); }
flagos_status_t ops_ew_lower_Neg(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_Neg); }

static kir_expr_t *ew_Sign(ops_ctx_t *c, kir_expr_t *const *x) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t dt = x[0]->dtype;
  if (flagos_dtype_is_float(dt)) return float_un(c, KIR_SIGN, x[0]);
  kir_expr_t *zero = kir_const_int(a, dt, 0);
  kir_expr_t *pos = kir_select(a, kir_bin(a, KIR_GT, x[0], zero), kir_const_int(a, dt, 1), zero);
  if (!flagos_dtype_is_signed(dt)) return pos;
  return kir_select(a, kir_bin(a, KIR_LT, x[0], zero), kir_const_int(a, dt, -1), pos);
}
flagos_status_t ops_ew_infer_Sign(ops_ctx_t *c) { return infer_unary(c, OPS_DT_NUMERIC, FLAGOS_UNDEFINED); }
flagos_status_t ops_ew_lower_Sign(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_Sign); }

static kir_expr_t *ew_IsNaN(ops_ctx_t *c, kir_expr_t *const *x) { return float_un(c, KIR_ISNAN, x[0]); }
flagos_status_t ops_ew_infer_IsNaN(ops_ctx_t *c) { return infer_unary(c, OPS_DT_FLOATS | OPS_DT_F8, FLAGOS_BOOL); }
flagos_status_t ops_ew_lower_IsNaN(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_IsNaN); }

static kir_expr_t *ew_IsInf(ops_ctx_t *c, kir_expr_t *const *x) {
  bool pos = fir_attr_int(c->node, "detect_positive", 1) != 0;
  bool neg = fir_attr_int(c->node, "detect_negative", 1) != 0;
  if (!pos && !neg) return kir_bool(c->arena, false);
  kir_expr_t *p = pos ? float_un(c, KIR_ISINF_POS, x[0]) : NULL;
  kir_expr_t *n = neg ? float_un(c, KIR_ISINF_NEG, x[0]) : NULL;
  if (p && n) return kir_bin(c->arena, KIR_OR, p, n);
  return p ? p : n;
}
flagos_status_t ops_ew_infer_IsInf(ops_ctx_t *c) { return infer_unary(c, OPS_DT_FLOATS | OPS_DT_F8, FLAGOS_BOOL); }
flagos_status_t ops_ew_lower_IsInf(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_IsInf); }

static kir_expr_t *ew_BitwiseNot(ops_ctx_t *c, kir_expr_t *const *x) { return kir_un(c->arena, KIR_BITNOT, x[0]); }
flagos_status_t ops_ew_infer_BitwiseNot(ops_ctx_t *c) { return infer_unary(c, OPS_DT_INTS, FLAGOS_UNDEFINED); }
flagos_status_t ops_ew_lower_BitwiseNot(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_BitwiseNot); }
