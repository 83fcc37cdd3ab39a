/* Comparisons, boolean logic and Where, with NumPy broadcasting. Comparisons yield
 * bool tensors; NaN compares unequal and unordered as in IEEE 754. */
#include "ops/elementwise.h"
#include "ops/ops_string.h"

static flagos_status_t infer_compare(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  if (ops_str_any_input(c)) return ops_str_infer_equal(c); /* run by the runtime (host_strings.c) */
  return ops_ew_infer_bcast(c, 0, 2, OPS_DT_NUMERIC | OPS_DT_BOOL, true, FLAGOS_BOOL);
}

static flagos_status_t infer_logic(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  return ops_ew_infer_bcast(c, 0, 2, OPS_DT_BOOL, true, FLAGOS_BOOL);
}

static flagos_status_t infer_not(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  return ops_ew_infer_bcast(c, 0, 1, OPS_DT_BOOL, true, FLAGOS_BOOL);
}

#define BINARY(name, OP)                                                                                            \
  static kir_expr_t *ew_##name(ops_ctx_t *c, kir_expr_t *const *x) { return kir_bin(c->arena, OP, x[0], x[1]); }  \
  static flagos_status_t lower_##name(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_##name); }

BINARY(equal, KIR_EQ)
BINARY(less, KIR_LT)
BINARY(greater, KIR_GT)
BINARY(less_equal, KIR_LE)
BINARY(greater_equal, KIR_GE)
BINARY(and, KIR_AND)
BINARY(or, KIR_OR)
BINARY(xor, KIR_XOR)

static kir_expr_t *ew_not(ops_ctx_t *c, kir_expr_t *const *x) { return kir_un(c->arena, KIR_NOT, x[0]); }
static flagos_status_t lower_not(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_not); }

static flagos_status_t infer_where(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 3, 3));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_BOOL));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT_ANY));
  FL_TRY(ops_ew_check_in(c, 2, OPS_DT_ANY));
  if (c->in[1].dtype != c->in[2].dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "X has dtype %s but Y has %s", flagos_dtype_onnx_name(c->in[1].dtype),
                   flagos_dtype_onnx_name(c->in[2].dtype));
  return ops_ew_infer_bcast(c, 0, 3, OPS_DT_ANY, false, c->in[1].dtype);
}

static kir_expr_t *ew_where(ops_ctx_t *c, kir_expr_t *const *x) { return kir_select(c->arena, x[0], x[1], x[2]); }
static flagos_status_t lower_where(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_where); }

const ops_def_t ops_family_logical[] = {
    OPS_EW_DEF("Equal", infer_compare, lower_equal, NULL),
    OPS_EW_DEF("Less", infer_compare, lower_less, NULL),
    OPS_EW_DEF("Greater", infer_compare, lower_greater, NULL),
    OPS_EW_DEF("LessOrEqual", infer_compare, lower_less_equal, NULL),
    OPS_EW_DEF("GreaterOrEqual", infer_compare, lower_greater_equal, NULL),
    OPS_EW_DEF("And", infer_logic, lower_and, NULL),
    OPS_EW_DEF("Or", infer_logic, lower_or, NULL),
    OPS_EW_DEF("Xor", infer_logic, lower_xor, NULL),
    OPS_EW_DEF("Not", infer_not, lower_not, NULL),
    OPS_EW_DEF("Where", infer_where, lower_where, NULL),
    OPS_EW_END,
};
