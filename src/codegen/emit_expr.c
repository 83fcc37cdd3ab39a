/* The text of single operations: constants, unary/binary ops, casts, bitcasts,
 * buffer element decoding/encoding and reduction steps. Everything here is
 * dialect-neutral C-family text built on the fo_* helpers of the prelude; type
 * names come from the dialect. docs/kernel-ir.md states the semantics. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/cg_internal.h"

static bool is_narrow_float(flagos_dtype_t dt) {
  return flagos_dtype_is_float(dt) && dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT64;
}

static bool is_sub_byte_int(flagos_dtype_t dt) {
  return dt == FLAGOS_INT4 || dt == FLAGOS_UINT4 || dt == FLAGOS_INT2 || dt == FLAGOS_UINT2;
}

/* Value class of a dtype's compute representation. */
typedef enum { V_F32, V_F64, V_INT, V_BOOL } vclass_t;

static vclass_t vclass(flagos_dtype_t dt) {
  flagos_dtype_t c = kir_compute_dtype(dt);
  if (c == FLAGOS_FLOAT32) return V_F32;
  if (c == FLAGOS_FLOAT64) return V_F64;
  if (c == FLAGOS_BOOL) return V_BOOL;
  return V_INT;
}

const char *cg_ctype(cg_t *g, flagos_dtype_t dt) {
  const char *t = g->d->ctype(kir_compute_dtype(dt));
  if (!t) {
    cg_fail(g, FLAGOS_ERR_UNSUPPORTED, "dtype %s is not supported by the %s emitter", flagos_dtype_name(dt), g->d->name);
    return "int";
  }
  return t;
}

static const char *stype(cg_t *g, flagos_dtype_t dt) {
  const char *t = g->d->stype(dt);
  if (!t) {
    cg_fail(g, FLAGOS_ERR_UNSUPPORTED, "buffers of dtype %s are not supported by the %s emitter", flagos_dtype_name(dt),
            g->d->name);
    return "uint8_t";
  }
  return t;
}

const char *cg_sfx(flagos_dtype_t dt) {
  switch (kir_compute_dtype(dt)) {
  case FLAGOS_FLOAT64: return "f64";
  case FLAGOS_INT8: return "i8";
  case FLAGOS_UINT8: return "u8";
  case FLAGOS_INT16: return "i16";
  case FLAGOS_UINT16: return "u16";
  case FLAGOS_UINT32: return "u32";
  case FLAGOS_INT64: return "i64";
  case FLAGOS_UINT64: return "u64";
  case FLAGOS_FLOAT32: return "f32";
  default: return "i32"; /* int32, bool and the sub-byte ints (computed as int32) */
  }
}

/* Unsigned type integer arithmetic is done in, so that wrap-around is defined. */
static const char *wide_unsigned(flagos_dtype_t dt) {
  flagos_dtype_t c = kir_compute_dtype(dt);
  return (c == FLAGOS_INT64 || c == FLAGOS_UINT64) ? "uint64_t" : "uint32_t";
}

static const char *math_fn(cg_t *g, vclass_t vc, const char *base) {
  return vc == V_F32 ? cg_fmt(g, "%s%s", base, g->d->f32_math_suffix) : base;
}

/* ---- literals ---- */
static const char *lit_f64(cg_t *g, double v) {
  if (isnan(v)) return "((double)NAN)";
  if (isinf(v)) return v > 0 ? "((double)INFINITY)" : "(-(double)INFINITY)";
  return cg_fmt(g, v < 0 || (v == 0 && signbit(v)) ? "(%a)" : "%a", v);
}

static const char *lit_f32(cg_t *g, double v) {
  float f = (float)v;
  if (isnan(f)) return "NAN";
  if (isinf(f)) return f > 0 ? "INFINITY" : "(-INFINITY)";
  return cg_fmt(g, f < 0 || (f == 0 && signbit(f)) ? "(%af)" : "%af", (double)f);
}

static const char *lit_i64(cg_t *g, int64_t v) {
  if (v == INT64_MIN) return "INT64_MIN";
  if (v >= INT32_MIN && v <= INT32_MAX) return cg_fmt(g, v < 0 ? "(%lld)" : "%lld", (long long)v);
  return cg_fmt(g, v < 0 ? "(INT64_C(%lld))" : "INT64_C(%lld)", (long long)v);
}

const char *cg_const(cg_t *g, const kir_expr_t *e) {
  flagos_dtype_t dt = e->dtype;
  switch (vclass(dt)) {
  case V_F64: return lit_f64(g, e->cf);
  case V_F32:
    /* A constant of a narrow type is the nearest value of that type. */
    if (is_narrow_float(dt)) return cg_cast(g, FLAGOS_FLOAT64, dt, true, lit_f64(g, e->cf));
    return lit_f32(g, e->cf);
  case V_BOOL: return e->ci ? "1" : "0";
  case V_INT:
    if (dt == FLAGOS_INT64) return lit_i64(g, e->ci);
    if (dt == FLAGOS_UINT64) return cg_fmt(g, "UINT64_C(%llu)", (unsigned long long)e->ci);
    return cg_cast(g, FLAGOS_INT64, dt, true, lit_i64(g, e->ci));
  }
  return "0";
}

/* ---- narrow floats ---- */
/* Encodes x (a value of class `src`) into the storage bits of narrow float dt. */
static const char *enc_narrow(cg_t *g, flagos_dtype_t dt, vclass_t src, const char *x, bool sat) {
  const char *xd = (src == V_INT || src == V_BOOL) ? cg_fmt(g, "(double)(%s)", x) : x;
  switch (dt) {
  case FLAGOS_FLOAT16: return cg_fmt(g, src == V_F32 ? "fo_enc_f16f(%s)" : "fo_enc_f16d(%s)", xd);
  case FLAGOS_BFLOAT16: return cg_fmt(g, src == V_F32 ? "fo_enc_bf16f(%s)" : "fo_enc_bf16d(%s)", xd);
  case FLAGOS_FLOAT8E4M3FN: return cg_fmt(g, "fo_enc_f8e4m3fn(%s, %d)", xd, sat);
  case FLAGOS_FLOAT8E4M3FNUZ: return cg_fmt(g, "fo_enc_f8e4m3fnuz(%s, %d)", xd, sat);
  case FLAGOS_FLOAT8E5M2: return cg_fmt(g, "fo_enc_f8e5m2(%s, %d)", xd, sat);
  case FLAGOS_FLOAT8E5M2FNUZ: return cg_fmt(g, "fo_enc_f8e5m2fnuz(%s, %d)", xd, sat);
  case FLAGOS_FLOAT4E2M1: return cg_fmt(g, "fo_enc_f4e2m1(%s)", xd);
  /* As ONNX's reference, e8m0 rounds from the f32 value. */
  case FLAGOS_FLOAT8E8M0: return cg_fmt(g, src == V_F32 ? "fo_enc_f8e8m0(%s, %d)" : "fo_enc_f8e8m0((float)(%s), %d)", x, sat);
  default: return x;
  }
}

const char *cg_decode(cg_t *g, flagos_dtype_t dt, const char *elem) {
  switch (dt) {
  case FLAGOS_FLOAT16: return cg_fmt(g, "fo_dec_f16(%s)", elem);
  case FLAGOS_BFLOAT16: return cg_fmt(g, "fo_dec_bf16(%s)", elem);
  case FLAGOS_FLOAT8E4M3FN: return cg_fmt(g, "fo_dec_f8e4m3fn(%s)", elem);
  case FLAGOS_FLOAT8E4M3FNUZ: return cg_fmt(g, "fo_dec_f8e4m3fnuz(%s)", elem);
  case FLAGOS_FLOAT8E5M2: return cg_fmt(g, "fo_dec_f8e5m2(%s)", elem);
  case FLAGOS_FLOAT8E5M2FNUZ: return cg_fmt(g, "fo_dec_f8e5m2fnuz(%s)", elem);
  case FLAGOS_FLOAT4E2M1: return cg_fmt(g, "fo_dec_f4e2m1(%s)", elem);
  case FLAGOS_FLOAT8E8M0: return cg_fmt(g, "fo_dec_f8e8m0(%s)", elem);
  /* Sub-byte ints: only the low bits count, whatever the byte's upper bits hold. */
  case FLAGOS_INT4: return cg_fmt(g, "fo_wrap_i4(%s)", elem);
  case FLAGOS_UINT4: return cg_fmt(g, "fo_wrap_u4(%s)", elem);
  case FLAGOS_INT2: return cg_fmt(g, "fo_wrap_i2(%s)", elem);
  case FLAGOS_UINT2: return cg_fmt(g, "fo_wrap_u2(%s)", elem);
  case FLAGOS_BOOL: return cg_fmt(g, "(%s != 0)", elem);
  default: return elem;
  }
}

const char *cg_store_value(cg_t *g, flagos_dtype_t vdt, flagos_dtype_t bdt, const char *x) {
  if (vdt != bdt) {
    /* Rounding straight from the source type avoids rounding twice. */
    if (is_narrow_float(bdt)) return enc_narrow(g, bdt, vclass(vdt), x, true);
    x = cg_cast(g, vdt, bdt, true, x);
  }
  /* The value already has the buffer's type: it is encoded exactly when
   * representable, and overflow of arithmetic results follows IEEE (inf or NaN). */
  if (is_narrow_float(bdt)) return enc_narrow(g, bdt, V_F32, x, false);
  switch (bdt) {
  case FLAGOS_INT4: return cg_fmt(g, "(int8_t)fo_wrap_i4(%s)", x);
  case FLAGOS_INT2: return cg_fmt(g, "(int8_t)fo_wrap_i2(%s)", x);
  case FLAGOS_UINT4: return cg_fmt(g, "(uint8_t)fo_wrap_u4(%s)", x);
  case FLAGOS_UINT2: return cg_fmt(g, "(uint8_t)fo_wrap_u2(%s)", x);
  case FLAGOS_BOOL: return cg_fmt(g, "(uint8_t)(%s)", x);
  default: return x;
  }
}

/* ---- casts ---- */
const char *cg_cast(cg_t *g, flagos_dtype_t from, flagos_dtype_t to, bool sat, const char *x) {
  if (from == to) return x;
  vclass_t fc = vclass(from), tc = vclass(to);
  if (is_narrow_float(to)) return cg_decode(g, to, enc_narrow(g, to, fc, x, sat));
  const char *T = cg_ctype(g, to);
  switch (tc) {
  case V_F32:
    return fc == V_F32 ? x : cg_fmt(g, "((float)(%s))", x);
  case V_F64: return cg_fmt(g, "((double)(%s))", x);
  case V_BOOL: return cg_fmt(g, "((%s) != 0)", x);
  case V_INT: break;
  }
  const char *wide;
  if (fc == V_F32 || fc == V_F64) {
    if (to == FLAGOS_UINT64) return cg_fmt(g, "fo_f2u64(%s)", x);
    wide = cg_fmt(g, "fo_f2i64(%s)", x);
    if (to == FLAGOS_INT64) return wide;
  } else {
    wide = x;
  }
  if (is_sub_byte_int(to)) {
    const char *w = to == FLAGOS_INT4 ? "i4" : to == FLAGOS_UINT4 ? "u4" : to == FLAGOS_INT2 ? "i2" : "u2";
    return cg_fmt(g, "fo_wrap_%s(%s)", w, wide);
  }
  return cg_fmt(g, "((%s)(%s))", T, wide);
}

/* Unsigned integer of n bytes holding a storage element's bits. */
static const char *to_bits(cg_t *g, flagos_dtype_t dt, const char *elem) {
  if (dt == FLAGOS_FLOAT32) return cg_fmt(g, "fo_f32_bits(%s)", elem);
  if (dt == FLAGOS_FLOAT64) return cg_fmt(g, "fo_f64_bits(%s)", elem);
  return cg_fmt(g, "((uint%zu_t)(%s))", flagos_dtype_size(dt) * 8, elem);
}

const char *cg_bitcast(cg_t *g, flagos_dtype_t from, flagos_dtype_t to, const char *x) {
  if (from == to) return x;
  if (flagos_dtype_size(from) != flagos_dtype_size(to)) {
    cg_fail(g, FLAGOS_ERR_INTERNAL, "bitcast from %s to %s changes the size", flagos_dtype_name(from),
            flagos_dtype_name(to));
    return x;
  }
  const char *bits = to_bits(g, from, cg_store_value(g, from, from, x));
  const char *elem;
  if (to == FLAGOS_FLOAT32) elem = cg_fmt(g, "fo_bits_f32(%s)", bits);
  else if (to == FLAGOS_FLOAT64) elem = cg_fmt(g, "fo_bits_f64(%s)", bits);
  else elem = cg_fmt(g, "((%s)(%s))", stype(g, to), bits);
  return cg_decode(g, to, elem);
}

/* ---- unary ---- */
static const char *const k_float_fn[KIR_OP_COUNT] = {
    [KIR_EXP] = "exp", [KIR_LOG] = "log", [KIR_SQRT] = "sqrt", [KIR_SIN] = "sin", [KIR_COS] = "cos",
    [KIR_TAN] = "tan", [KIR_ASIN] = "asin", [KIR_ACOS] = "acos", [KIR_ATAN] = "atan", [KIR_SINH] = "sinh",
    [KIR_COSH] = "cosh", [KIR_TANH] = "tanh", [KIR_ASINH] = "asinh", [KIR_ACOSH] = "acosh", [KIR_ATANH] = "atanh",
    [KIR_ERF] = "erf", [KIR_FLOOR] = "floor", [KIR_CEIL] = "ceil", [KIR_ROUND] = "rint", [KIR_ABS] = "fabs",
    [KIR_LOG1P] = "log1p", [KIR_EXPM1] = "expm1",
};

static const char *bad_op(cg_t *g, kir_op_t op, flagos_dtype_t dt) {
  cg_fail(g, FLAGOS_ERR_UNSUPPORTED, "op %s is not defined for dtype %s", kir_op_name(op), flagos_dtype_name(dt));
  return "0";
}

const char *cg_unary(cg_t *g, const kir_expr_t *e, const char *x) {
  flagos_dtype_t dt = e->a[0]->dtype;
  vclass_t vc = vclass(dt);
  const char *S = cg_sfx(dt);
  kir_op_t op = e->op;
  if (vc == V_F32 || vc == V_F64) {
    switch (op) {
    case KIR_NEG: return cg_fmt(g, "(-(%s))", x);
    case KIR_SIGN: return cg_fmt(g, "fo_sign_%s(%s)", S, x);
    case KIR_ISNAN: return cg_fmt(g, "(isnan(%s) != 0)", x);
    case KIR_ISINF_POS: return cg_fmt(g, "((%s) == INFINITY)", x);
    case KIR_ISINF_NEG: return cg_fmt(g, "((%s) == -INFINITY)", x);
    case KIR_NOT:
    case KIR_BITNOT: return bad_op(g, op, dt);
    default:
      if (op < KIR_OP_COUNT && k_float_fn[op]) return cg_fmt(g, "%s(%s)", math_fn(g, vc, k_float_fn[op]), x);
      return bad_op(g, op, dt);
    }
  }
  if (vc == V_BOOL) {
    switch (op) {
    case KIR_NOT: return cg_fmt(g, "(!(%s))", x);
    case KIR_ABS:
    case KIR_FLOOR:
    case KIR_CEIL:
    case KIR_ROUND: return x;
    case KIR_ISNAN:
    case KIR_ISINF_POS:
    case KIR_ISINF_NEG: return "0";
    default: return bad_op(g, op, dt);
    }
  }
  const char *T = cg_ctype(g, dt);
  switch (op) {
  case KIR_NEG:
    if (g->index_ctx && dt == FLAGOS_INT64) return cg_fmt(g, "(-(%s))", x);
    return cg_fmt(g, "((%s)-(%s)(%s))", T, wide_unsigned(dt), x);
  case KIR_ABS: return cg_fmt(g, "fo_abs_%s(%s)", S, x);
  case KIR_SIGN: return cg_fmt(g, "fo_sign_%s(%s)", S, x);
  case KIR_BITNOT: return cg_fmt(g, "((%s)~(%s))", T, x);
  case KIR_FLOOR:
  case KIR_CEIL:
  case KIR_ROUND: return x;
  case KIR_ISNAN:
  case KIR_ISINF_POS:
  case KIR_ISINF_NEG: return "0";
  case KIR_NOT: return bad_op(g, op, dt);
  default:
    /* Float functions of integers: computed in double, converted back. */
    if (op < KIR_OP_COUNT && k_float_fn[op])
      return cg_cast(g, FLAGOS_FLOAT64, dt, true, cg_fmt(g, "%s((double)(%s))", k_float_fn[op], x));
    return bad_op(g, op, dt);
  }
}

/* ---- binary ---- */
static const char *cmp_op(kir_op_t op) {
  switch (op) {
  case KIR_EQ: return "==";
  case KIR_NE: return "!=";
  case KIR_LT: return "<";
  case KIR_LE: return "<=";
  case KIR_GT: return ">";
  case KIR_GE: return ">=";
  default: return NULL;
  }
}

static const char *arith_op(kir_op_t op) {
  switch (op) {
  case KIR_ADD: return "+";
  case KIR_SUB: return "-";
  case KIR_MUL: return "*";
  default: return NULL;
  }
}

static const char *int_helper(kir_op_t op) {
  switch (op) {
  case KIR_DIV: return "div";
  case KIR_MOD: return "mod";
  case KIR_FLOORDIV: return "floordiv";
  case KIR_FLOORMOD: return "floormod";
  case KIR_POW: return "pow";
  case KIR_MIN: return "min";
  case KIR_MAX: return "max";
  case KIR_SHL: return "shl";
  case KIR_SHR: return "shr";
  default: return NULL;
  }
}

const char *cg_binary(cg_t *g, const kir_expr_t *e, const char *x, const char *y) {
  flagos_dtype_t dt = e->a[0]->dtype;
  vclass_t vc = vclass(dt);
  const char *S = cg_sfx(dt);
  kir_op_t op = e->op;
  const char *c = cmp_op(op);
  if (c) return cg_fmt(g, "((%s) %s (%s))", x, c, y);
  if (vc == V_F32 || vc == V_F64) {
    const char *a = arith_op(op);
    if (a) return cg_fmt(g, "((%s) %s (%s))", x, a, y);
    switch (op) {
    case KIR_DIV: return cg_fmt(g, "((%s) / (%s))", x, y);
    case KIR_MOD: return cg_fmt(g, "%s(%s, %s)", math_fn(g, vc, "fmod"), x, y);
    case KIR_FLOORDIV: return cg_fmt(g, "%s((%s) / (%s))", math_fn(g, vc, "floor"), x, y);
    case KIR_FLOORMOD: return cg_fmt(g, "fo_floormod_%s(%s, %s)", S, x, y);
    case KIR_POW: return cg_fmt(g, "%s(%s, %s)", math_fn(g, vc, "pow"), x, y);
    case KIR_MIN: return cg_fmt(g, "fo_min_%s(%s, %s)", S, x, y);
    case KIR_MAX: return cg_fmt(g, "fo_max_%s(%s, %s)", S, x, y);
    case KIR_ATAN2: return cg_fmt(g, "%s(%s, %s)", math_fn(g, vc, "atan2"), x, y);
    default: return bad_op(g, op, dt);
    }
  }
  if (vc == V_BOOL) {
    switch (op) {
    case KIR_AND:
    case KIR_BITAND: return cg_fmt(g, "((%s) & (%s))", x, y);
    case KIR_OR:
    case KIR_BITOR: return cg_fmt(g, "((%s) | (%s))", x, y);
    case KIR_XOR:
    case KIR_BITXOR: return cg_fmt(g, "((%s) ^ (%s))", x, y);
    case KIR_MIN: return cg_fmt(g, "((%s) & (%s))", x, y);
    case KIR_MAX: return cg_fmt(g, "((%s) | (%s))", x, y);
    default: return bad_op(g, op, dt);
    }
  }
  const char *T = cg_ctype(g, dt);
  const char *a = arith_op(op);
  if (a) {
    /* Index arithmetic may assume no overflow (it helps loop analysis); data
     * arithmetic wraps, computed in unsigned so that wrapping is defined. */
    if (g->index_ctx && dt == FLAGOS_INT64) return cg_fmt(g, "((%s) %s (%s))", x, a, y);
    const char *U = wide_unsigned(dt);
    return cg_fmt(g, "((%s)((%s)(%s) %s (%s)(%s)))", T, U, x, a, U, y);
  }
  const char *h = int_helper(op);
  if (h) return cg_fmt(g, "fo_%s_%s(%s, %s)", h, S, x, y);
  switch (op) {
  case KIR_BITAND: return cg_fmt(g, "((%s)((%s) & (%s)))", T, x, y);
  case KIR_BITOR: return cg_fmt(g, "((%s)((%s) | (%s)))", T, x, y);
  case KIR_BITXOR: return cg_fmt(g, "((%s)((%s) ^ (%s)))", T, x, y);
  case KIR_ATAN2:
    return cg_cast(g, FLAGOS_FLOAT64, dt, true, cg_fmt(g, "atan2((double)(%s), (double)(%s))", x, y));
  default: return bad_op(g, op, dt);
  }
}

/* ---- reductions ---- */
static const char *int_limit(flagos_dtype_t dt, bool max) {
  switch (kir_compute_dtype(dt)) {
  case FLAGOS_INT8: return max ? "INT8_MAX" : "INT8_MIN";
  case FLAGOS_INT16: return max ? "INT16_MAX" : "INT16_MIN";
  case FLAGOS_INT64: return max ? "INT64_MAX" : "INT64_MIN";
  case FLAGOS_UINT8: return max ? "UINT8_MAX" : "0";
  case FLAGOS_UINT16: return max ? "UINT16_MAX" : "0";
  case FLAGOS_UINT32: return max ? "UINT32_MAX" : "0u";
  case FLAGOS_UINT64: return max ? "UINT64_MAX" : "UINT64_C(0)";
  default: break;
  }
  /* int32, and the sub-byte ints: they are computed as int32 and wrapped only on
   * store, which maps these identities to the type's own min/max. */
  return max ? "INT32_MAX" : "INT32_MIN";
}

const char *cg_reduce_init(cg_t *g, kir_op_t op, flagos_dtype_t dt) {
  vclass_t vc = vclass(dt);
  bool fl = vc == V_F32 || vc == V_F64;
  switch (op) {
  case KIR_RSUM:
  case KIR_RANY: return vc == V_F32 ? "0.0f" : vc == V_F64 ? "0.0" : "0";
  case KIR_RPROD:
  case KIR_RALL: return vc == V_F32 ? "1.0f" : vc == V_F64 ? "1.0" : "1";
  case KIR_RMAX:
    if (vc == V_BOOL) return "0";
    return fl ? (vc == V_F32 ? "(-INFINITY)" : "(-(double)INFINITY)") : int_limit(dt, false);
  case KIR_RMIN:
    if (vc == V_BOOL) return "1";
    return fl ? (vc == V_F32 ? "INFINITY" : "((double)INFINITY)") : int_limit(dt, true);
  default:
    cg_fail(g, FLAGOS_ERR_INTERNAL, "%s is not a reduction", kir_op_name(op));
    return "0";
  }
}

const char *cg_reduce_step(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, const char *x) {
  vclass_t vc = vclass(dt);
  const char *S = cg_sfx(dt);
  bool fl = vc == V_F32 || vc == V_F64;
  switch (op) {
  case KIR_RSUM:
  case KIR_RPROD: {
    const char *o = op == KIR_RSUM ? "+" : "*";
    if (fl) return cg_fmt(g, "%s %s (%s)", acc, o, x);
    if (vc == V_BOOL) return cg_fmt(g, op == KIR_RSUM ? "%s | (%s)" : "%s & (%s)", acc, x);
    const char *U = wide_unsigned(dt);
    return cg_fmt(g, "(%s)((%s)%s %s (%s)(%s))", cg_ctype(g, dt), U, acc, o, U, x);
  }
  case KIR_RMAX:
    if (vc == V_BOOL) return cg_fmt(g, "%s | (%s)", acc, x);
    return cg_fmt(g, "fo_max_%s(%s, %s)", S, acc, x);
  case KIR_RMIN:
    if (vc == V_BOOL) return cg_fmt(g, "%s & (%s)", acc, x);
    return cg_fmt(g, "fo_min_%s(%s, %s)", S, acc, x);
  case KIR_RANY: return cg_fmt(g, "%s | ((%s) != 0)", acc, x);
  case KIR_RALL: return cg_fmt(g, "%s & ((%s) != 0)", acc, x);
  default:
    cg_fail(g, FLAGOS_ERR_INTERNAL, "%s is not a reduction", kir_op_name(op));
    return acc;
  }
}
