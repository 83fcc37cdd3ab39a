/* Pointwise operators of the subgraph inliner (extra2_subgraph_int.h): their
 * shape rule is numpy broadcasting, their element the operation applied to the
 * inputs' elements at the broadcast index. Integer division and modulo are
 * guarded like the elementwise family's (a zero divisor gives 0), floating Mod
 * without fmod takes the sign of the divisor, Pow on integers goes through
 * float64. */
#include <string.h>

#include "ops/extra2_subgraph_int.h"

/* ---- operator classes ---- */

typedef struct sg_op {
  const char *name;
  kir_op_t op;
} sg_op_t;

static const sg_op_t k_binary[] = {
    {"Add", KIR_ADD},
    {"Sub", KIR_SUB},
    {"Mul", KIR_MUL},
    {"Div", KIR_DIV},
    {"Pow", KIR_POW},
    {"Mod", KIR_MOD},
    {"Max", KIR_MAX},
    {"Min", KIR_MIN},
    {"Sum", KIR_ADD},
    {"And", KIR_AND},
    {"Or", KIR_OR},
    {"Xor", KIR_XOR},
    {"BitwiseAnd", KIR_BITAND},
    {"BitwiseOr", KIR_BITOR},
    {"BitwiseXor", KIR_BITXOR},
    {"Equal", KIR_EQ},
    {"Less", KIR_LT},
    {"LessOrEqual", KIR_LE},
    {"Greater", KIR_GT},
    {"GreaterOrEqual", KIR_GE},
};

static const sg_op_t k_unary[] = {
    {"Neg", KIR_NEG},     {"Abs", KIR_ABS},     {"Exp", KIR_EXP},     {"Log", KIR_LOG},     {"Sqrt", KIR_SQRT},
    {"Sin", KIR_SIN},     {"Cos", KIR_COS},     {"Tan", KIR_TAN},     {"Asin", KIR_ASIN},   {"Acos", KIR_ACOS},
    {"Atan", KIR_ATAN},   {"Sinh", KIR_SINH},   {"Cosh", KIR_COSH},   {"Tanh", KIR_TANH},   {"Asinh", KIR_ASINH},
    {"Acosh", KIR_ACOSH}, {"Atanh", KIR_ATANH}, {"Erf", KIR_ERF},     {"Floor", KIR_FLOOR}, {"Ceil", KIR_CEIL},
    {"Round", KIR_ROUND}, {"Sign", KIR_SIGN},   {"IsNaN", KIR_ISNAN}, {"Not", KIR_NOT},     {"BitwiseNot", KIR_BITNOT},
};

/* Pointwise operators without a single kernel op. */
static const char *const k_pointwise_other[] = {"Identity", "Cast", "CastLike",  "Where",    "Clip", "Reciprocal",
                                                "Sigmoid",  "Relu", "LeakyRelu", "Softplus", "IsInf"};

static const sg_op_t *find_op(const sg_op_t *t, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(t[i].name, name) == 0) return &t[i];
  return NULL;
}

bool ops_sg_is_pointwise(const char *op) {
  if (find_op(k_binary, FL_ARRAY_LEN(k_binary), op) || find_op(k_unary, FL_ARRAY_LEN(k_unary), op)) return true;
  for (size_t i = 0; i < FL_ARRAY_LEN(k_pointwise_other); i++)
    if (strcmp(k_pointwise_other[i], op) == 0) return true;
  return false;
}

static bool float_only(kir_op_t op) {
  return op >= KIR_EXP && op <= KIR_EXPM1 && op != KIR_SIGN && op != KIR_FLOOR && op != KIR_CEIL && op != KIR_ROUND;
}

/* Inputs that take part in the broadcast of a pointwise node. */
static int bcast_inputs(const fir_node_t *n) {
  if (strcmp(n->op_type, "Clip") == 0 || strcmp(n->op_type, "CastLike") == 0) return 1;
  return n->n_inputs;
}

flagos_status_t ops_sg_pointwise_info(sg_t *s, const fir_node_t *n, sg_val_t *o) {
  const char *op = n->op_type;
  const sg_val_t *in[8];
  int ni = n->n_inputs;
  if (ni < 1 || ni > 8) return BAD(n, "expects 1 to 8 inputs, got %d", ni);
  for (int k = 0; k < ni; k++) {
    in[k] = NULL;
    if (n->inputs[k]) FL_TRY(ops_sg_val_info(s, n->inputs[k], &in[k]));
  }
  if (!in[0]) return BAD(n, "input 0 is missing");
  o->rank = 0;
  for (int k = 0; k < bcast_inputs(n); k++)
    if (in[k]) FL_TRY(ops_sg_bcast_dims(s, n, o, in[k]->rank, (const kir_expr_t *const *)in[k]->dims));
  o->dt = in[0]->dt;
  const sg_op_t *b = find_op(k_binary, FL_ARRAY_LEN(k_binary), op);
  const sg_op_t *u = find_op(k_unary, FL_ARRAY_LEN(k_unary), op);
  if (b) {
    for (int k = 1; k < ni; k++)
      if (in[k] && in[k]->dt != in[0]->dt && b->op != KIR_POW)
        return BAD(n, "inputs have different dtypes (%s and %s)", flagos_dtype_name(in[0]->dt),
                   flagos_dtype_name(in[k]->dt));
    if ((b->op == KIR_AND || b->op == KIR_OR || b->op == KIR_XOR) && in[0]->dt != FLAGOS_BOOL)
      return BAD(n, "expects bool inputs");
    if (kir_op_is_compare(b->op)) o->dt = FLAGOS_BOOL;
  } else if (u) {
    if (u->op == KIR_NOT && in[0]->dt != FLAGOS_BOOL) return BAD(n, "expects a bool input");
    if (float_only(u->op) && !flagos_dtype_is_float(in[0]->dt)) return BAD(n, "expects a floating-point input");
    if (u->op == KIR_ISNAN) o->dt = FLAGOS_BOOL;
  } else if (strcmp(op, "Cast") == 0) {
    o->dt = (flagos_dtype_t)fir_attr_int(n, "to", FLAGOS_UNDEFINED);
  } else if (strcmp(op, "CastLike") == 0) {
    if (ni < 2 || !in[1]) return BAD(n, "expects 2 inputs");
    o->dt = in[1]->dt;
  } else if (strcmp(op, "Where") == 0) {
    if (ni != 3 || !in[1] || !in[2]) return BAD(n, "expects 3 inputs");
    if (in[0]->dt != FLAGOS_BOOL) return BAD(n, "condition must be bool");
    if (in[1]->dt != in[2]->dt) return BAD(n, "X and Y have different dtypes");
    o->dt = in[1]->dt;
  } else if (strcmp(op, "IsInf") == 0) {
    if (!flagos_dtype_is_float(in[0]->dt)) return BAD(n, "expects a floating-point input");
    o->dt = FLAGOS_BOOL;
  } else if (strcmp(op, "Clip") == 0) {
    for (int k = 1; k < ni; k++)
      if (in[k] && (in[k]->dt != in[0]->dt || in[k]->rank != 0))
        return BAD(n, "min and max must be scalars of X's dtype");
  } else if (strcmp(op, "Identity") != 0 && !flagos_dtype_is_float(in[0]->dt)) {
    return BAD(n, "expects a floating-point input");
  }
  if (o->dt == FLAGOS_STRING || o->dt == FLAGOS_UNDEFINED || o->dt >= FLAGOS_DTYPE_COUNT || in[0]->dt == FLAGOS_STRING)
    return UNSUP(n, "string or undefined dtypes cannot be inlined");
  return NULL;
}

static kir_expr_t *int_divmod(sg_t *s, kir_op_t op, kir_expr_t *x, kir_expr_t *y) {
  /* A zero divisor (and MIN / -1) would trap; the data is the user's. */
  fl_arena_t *a = s->a;
  flagos_dtype_t dt = x->dtype;
  kir_expr_t *zero = kir_const_int(a, dt, 0), *r = kir_bin(a, op, x, y);
  if (flagos_dtype_is_signed(dt)) {
    kir_expr_t *m1 = op == KIR_DIV || op == KIR_FLOORDIV ? kir_bin(a, KIR_SUB, zero, x) : zero;
    r = kir_select(a, kir_bin(a, KIR_EQ, y, kir_const_int(a, dt, -1)), m1, r);
  }
  return kir_select(a, kir_bin(a, KIR_EQ, y, zero), zero, r);
}

static kir_expr_t *apply_binary(sg_t *s, const fir_node_t *n, kir_op_t op, kir_expr_t *x, kir_expr_t *y) {
  fl_arena_t *a = s->a;
  flagos_dtype_t dt = x->dtype;
  bool isint = flagos_dtype_is_int(dt);
  if (op == KIR_POW) {
    if (isint) {
      kir_expr_t *p = kir_bin(a, KIR_POW, kir_cast(a, FLAGOS_FLOAT64, x), kir_cast(a, FLAGOS_FLOAT64, y));
      return kir_cast(a, dt, p);
    }
    return kir_bin(a, KIR_POW, x, kir_cast(a, dt, y));
  }
  if (op == KIR_DIV && isint) return int_divmod(s, KIR_DIV, x, y);
  if (op == KIR_MOD) {
    bool fmod = fir_attr_int(n, "fmod", 0) != 0;
    if (isint) return int_divmod(s, fmod ? KIR_MOD : KIR_FLOORMOD, x, y);
    kir_expr_t *r = kir_bin(a, KIR_MOD, x, y);
    if (fmod) return r;
    kir_expr_t *z = kir_const(a, dt, 0.0);
    kir_expr_t *fix = kir_bin(a, KIR_AND, kir_bin(a, KIR_NE, r, z),
                              kir_bin(a, KIR_NE, kir_bin(a, KIR_LT, r, z), kir_bin(a, KIR_LT, y, z)));
    return kir_select(a, fix, kir_bin(a, KIR_ADD, r, y), r);
  }
  return kir_bin(a, op, x, y);
}

flagos_status_t ops_sg_pointwise_elem(sg_t *s, const fir_node_t *n, const sg_val_t *o, kir_expr_t *const *idx,
                                      kir_expr_t **out) {
  fl_arena_t *a = s->a;
  const char *op = n->op_type;
  kir_expr_t *x[8] = {NULL};
  for (int k = 0; k < n->n_inputs && k < 8; k++) {
    if (!n->inputs[k]) continue;
    if (strcmp(op, "CastLike") == 0 && k == 1) continue;
    const sg_val_t *vi = NULL;
    FL_TRY(ops_sg_val_info(s, n->inputs[k], &vi));
    FL_TRY(ops_sg_val_elem(s, n->inputs[k], ops_sg_bcast_idx(s, vi, o->rank, idx), &x[k]));
  }
  const sg_op_t *b = find_op(k_binary, FL_ARRAY_LEN(k_binary), op);
  const sg_op_t *u = find_op(k_unary, FL_ARRAY_LEN(k_unary), op);
  kir_expr_t *e = x[0];
  flagos_dtype_t dt = x[0]->dtype;
  if (b) {
    if (n->n_inputs < 2 && !(b->op == KIR_MAX || b->op == KIR_MIN || b->op == KIR_ADD))
      return BAD(n, "expects 2 inputs");
    for (int k = 1; k < n->n_inputs; k++)
      if (x[k]) e = apply_binary(s, n, b->op, e, x[k]);
  } else if (u) {
    if (u->op == KIR_ABS && !flagos_dtype_is_signed(dt) && !flagos_dtype_is_float(dt))
      e = x[0];
    else
      e = kir_un(a, u->op, x[0]);
  } else if (strcmp(op, "Identity") == 0) {
    e = x[0];
  } else if (strcmp(op, "Cast") == 0 || strcmp(op, "CastLike") == 0) {
    bool sat = fir_attr_int(n, "saturate", 1) != 0;
    e = kir_cast_sat(a, o->dt, x[0], sat);
  } else if (strcmp(op, "Where") == 0) {
    e = kir_select(a, x[0], x[1], x[2]);
  } else if (strcmp(op, "Clip") == 0) {
    kir_expr_t *lo = x[1], *hi = n->n_inputs > 2 ? x[2] : NULL;
    if (n->opset < 11) {
      const fir_attr_t *mn = fir_node_attr(n, "min"), *mx = fir_node_attr(n, "max");
      lo = mn ? kir_const(a, dt, mn->f) : NULL;
      hi = mx ? kir_const(a, dt, mx->f) : NULL;
    }
    if (lo) e = kir_bin(a, KIR_MAX, e, lo);
    if (hi) e = kir_bin(a, KIR_MIN, e, hi);
  } else if (strcmp(op, "Reciprocal") == 0) {
    e = kir_bin(a, KIR_DIV, kir_const(a, dt, 1.0), x[0]);
  } else if (strcmp(op, "Sigmoid") == 0) {
    kir_expr_t *one = kir_const(a, dt, 1.0);
    e = kir_bin(a, KIR_DIV, one, kir_bin(a, KIR_ADD, one, kir_un(a, KIR_EXP, kir_un(a, KIR_NEG, x[0]))));
  } else if (strcmp(op, "Relu") == 0) {
    e = kir_bin(a, KIR_MAX, x[0], kir_const(a, dt, 0.0));
  } else if (strcmp(op, "LeakyRelu") == 0) {
    kir_expr_t *al = kir_const(a, dt, fir_attr_float(n, "alpha", 0.01f));
    e = kir_select(a, kir_bin(a, KIR_LT, x[0], kir_const(a, dt, 0.0)), kir_bin(a, KIR_MUL, al, x[0]), x[0]);
  } else if (strcmp(op, "Softplus") == 0) {
    e = kir_un(a, KIR_LOG1P, kir_un(a, KIR_EXP, x[0]));
  } else if (strcmp(op, "IsInf") == 0) {
    bool pos = fir_attr_int(n, "detect_positive", 1) != 0, neg = fir_attr_int(n, "detect_negative", 1) != 0;
    e = kir_bool(a, false);
    if (pos) e = kir_bin(a, KIR_OR, e, kir_un(a, KIR_ISINF_POS, x[0]));
    if (neg) e = kir_bin(a, KIR_OR, e, kir_un(a, KIR_ISINF_NEG, x[0]));
  } else {
    return UNSUP(n, "no element rule");
  }
  *out = e;
  return NULL;
}
