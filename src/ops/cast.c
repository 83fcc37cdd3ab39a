/* Cast, CastLike and BitCast between every numeric type FlagOS stores, float8,
 * float4, float8e8m0 and the sub-byte integers included (strings are not: kernels
 * cannot hold them yet).
 *
 * Conversions whose ONNX result is not what a plain C conversion gives are spelled
 * out in kernel IR so every backend agrees: sub-byte integer targets keep the low
 * bits (two's complement), and float8e8m0 targets follow the requested rounding
 * mode. Float8 and float4 rounding (nearest even, with or without saturation) is
 * the kernel IR cast itself. */
#include <string.h>

#include "ops/elementwise.h"
#include "ops/ops_string.h"

static bool is_subbyte_int(flagos_dtype_t dt) {
  return dt == FLAGOS_INT4 || dt == FLAGOS_UINT4 || dt == FLAGOS_INT2 || dt == FLAGOS_UINT2;
}

static int dtype_bits(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_INT4:
  case FLAGOS_UINT4:
  case FLAGOS_FLOAT4E2M1: return 4;
  case FLAGOS_INT2:
  case FLAGOS_UINT2: return 2;
  case FLAGOS_STRING:
  case FLAGOS_UNDEFINED: return 0;
  default: return (int)flagos_dtype_size(dt) * 8;
  }
}

static kir_expr_t *u32c(ops_ctx_t *c, int64_t v) { return kir_const_int(c->arena, FLAGOS_UINT32, v); }

/* float -> float8e8m0 (a biased power-of-two exponent) from the f32 bit pattern,
 * rounding the mantissa away "up", "down" (truncate) or to "nearest" (ties up). */
static kir_expr_t *to_e8m0(ops_ctx_t *c, kir_expr_t *x, bool saturate, const char *mode) {
  fl_arena_t *a = c->arena;
  kir_expr_t *f = x->dtype == FLAGOS_FLOAT32 ? x : kir_cast(a, FLAGOS_FLOAT32, x);
  kir_expr_t *bits = kir_bitcast(a, FLAGOS_UINT32, f);
  kir_expr_t *ex = kir_bin(a, KIR_BITAND, kir_bin(a, KIR_SHR, bits, u32c(c, 23)), u32c(c, 0xFF));
  kir_expr_t *inc;
  if (strcmp(mode, "up") == 0) {
    inc = kir_bin(a, KIR_NE, kir_bin(a, KIR_BITAND, bits, u32c(c, 0x7FFFFF)), u32c(c, 0));
  } else if (strcmp(mode, "nearest") == 0) {
    kir_expr_t *guard = kir_bin(a, KIR_NE, kir_bin(a, KIR_BITAND, bits, u32c(c, 0x400000)), u32c(c, 0));
    kir_expr_t *sticky = kir_bin(a, KIR_NE, kir_bin(a, KIR_BITAND, bits, u32c(c, 0x3FFFFF)), u32c(c, 0));
    kir_expr_t *odd = kir_bin(a, KIR_GT, ex, u32c(c, 0)); /* the implicit leading one acts as the last kept bit */
    inc = kir_bin(a, KIR_AND, guard, kir_bin(a, KIR_OR, sticky, odd));
  } else {
    inc = kir_bool(a, false);
  }
  if (saturate) inc = kir_bin(a, KIR_AND, inc, kir_bin(a, KIR_NE, ex, u32c(c, 0xFE)));
  kir_expr_t *e = kir_bin(a, KIR_ADD, ex, kir_select(a, inc, u32c(c, 1), u32c(c, 0)));
  e = kir_select(a, kir_bin(a, KIR_EQ, ex, u32c(c, 0xFF)), u32c(c, 0xFF), e);
  return kir_bitcast(a, FLAGOS_FLOAT8E8M0, kir_cast(a, FLAGOS_UINT8, e));
}

/* Two's complement wrap of an integer (or truncated float) into `bits` bits. */
static kir_expr_t *wrap_bits(ops_ctx_t *c, kir_expr_t *x, flagos_dtype_t to) {
  fl_arena_t *a = c->arena;
  int bits = dtype_bits(to);
  kir_expr_t *v = kir_cast(a, FLAGOS_INT64, x);
  v = kir_bin(a, KIR_BITAND, v, kir_i64(a, (INT64_C(1) << bits) - 1));
  if (flagos_dtype_is_signed(to)) {
    kir_expr_t *half = kir_i64(a, INT64_C(1) << (bits - 1));
    v = kir_sub(a, kir_bin(a, KIR_BITXOR, v, half), half);
  }
  return kir_cast(a, to, v);
}

kir_expr_t *ops_cast_expr(ops_ctx_t *c, kir_expr_t *x, flagos_dtype_t to, bool saturate, const char *round_mode,
                          flagos_status_t *err) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t from = x->dtype;
  *err = NULL;
  if (from == to) return x;
  if (!ops_dt_in(from, OPS_DT_ANY) || !ops_dt_in(to, OPS_DT_ANY)) {
    *err = ops_err(c, FLAGOS_ERR_UNSUPPORTED, "cast from %s to %s is not supported", flagos_dtype_onnx_name(from),
                   flagos_dtype_onnx_name(to));
    return NULL;
  }
  if (to == FLAGOS_BOOL) {
    if (flagos_dtype_is_float(from)) {
      flagos_dtype_t cd = ops_ew_float_compute(from);
      return kir_bin(a, KIR_NE, kir_cast(a, cd, x), ops_ew_f(c, cd, 0.0));
    }
    return kir_bin(a, KIR_NE, x, kir_const_int(a, from, 0));
  }
  if (from == FLAGOS_BOOL) return ops_cast_expr(c, kir_cast(a, FLAGOS_INT32, x), to, saturate, round_mode, err);
  if (is_subbyte_int(to)) return wrap_bits(c, x, to);
  if (to == FLAGOS_FLOAT8E8M0) return to_e8m0(c, x, saturate, round_mode ? round_mode : "up");
  bool narrow_float = ops_dt_in(to, OPS_DT_F8) || to == FLAGOS_FLOAT4E2M1;
  if (narrow_float && !flagos_dtype_is_float(from)) x = kir_cast(a, FLAGOS_FLOAT32, x);
  if (ops_dt_in(to, OPS_DT_F8)) return kir_cast_sat(a, to, x, saturate);
  return kir_cast(a, to, x);
}

static flagos_status_t check_cast_attrs(ops_ctx_t *c) {
  const char *rm = fir_attr_string(c->node, "round_mode", "up");
  if (strcmp(rm, "up") != 0 && strcmp(rm, "down") != 0 && strcmp(rm, "nearest") != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute round_mode must be up, down or nearest, got \"%s\"", rm);
  return NULL;
}

static flagos_status_t check_target(ops_ctx_t *c, int64_t to) {
  if (to <= 0 || to >= FLAGOS_DTYPE_COUNT)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "target type %lld is not a type FlagOS knows", (long long)to);
  if (!ops_dt_in((flagos_dtype_t)to, OPS_DT_ANY))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "casting to %s is not supported",
                   flagos_dtype_onnx_name((flagos_dtype_t)to));
  return NULL;
}

static flagos_status_t infer_cast(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  const fir_attr_t *to = fir_node_attr(c->node, "to");
  if (to && (to->i == FLAGOS_STRING || ops_str_any_input(c))) /* run by the runtime (host_strings.c) */
    return ops_str_infer_cast(c, (flagos_dtype_t)to->i);
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_ANY));
  const fir_attr_t *at = fir_node_attr(c->node, "to");
  if (!at) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'to' is missing");
  FL_TRY(check_target(c, at->i));
  FL_TRY(check_cast_attrs(c));
  return ops_ew_infer_bcast(c, 0, 1, OPS_DT_ANY, true, (flagos_dtype_t)at->i);
}

static flagos_status_t infer_castlike(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  if (ops_str_any_input(c)) return ops_str_infer_cast(c, c->in[1].dtype); /* run by the runtime (host_strings.c) */
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_ANY));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT_ANY));
  FL_TRY(check_cast_attrs(c));
  int r = c->in[0].rank;
  ops_set_out(c, 0, c->in[1].dtype, r, c->in[0].dims);
  return NULL;
}

static flagos_status_t lower_cast_common(ops_ctx_t *c) {
  bool sat = fir_attr_int(c->node, "saturate", 1) != 0;
  const char *rm = fir_attr_string(c->node, "round_mode", "up");
  flagos_status_t err;
  if (c->capture_in) {
    /* Inside a fused group (src/ops/fused.c) Cast gives its element. CastLike
     * stays out: the group would load its second input, which only names a
     * type and need not broadcast onto the output. */
    if (c->n_in != 1) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "CastLike is not fused");
    c->capture_out = ops_cast_expr(c, c->capture_in[0], c->out[0].dtype, sat, rm, &err);
    return c->capture_out ? NULL : err;
  }
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "main", v);
  int b = ops_buf_in(c, k, 0);
  kir_expr_t *x = kir_load(k, b, v);
  kir_expr_t *y = ops_cast_expr(c, x, c->out[0].dtype, sat, rm, &err);
  if (!y) return err;
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

/* ---- BitCast ---- */

static flagos_status_t infer_bitcast(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_ANY));
  const fir_attr_t *at = fir_node_attr(c->node, "to");
  if (!at) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'to' is missing");
  FL_TRY(check_target(c, at->i));
  flagos_dtype_t from = c->in[0].dtype, to = (flagos_dtype_t)at->i;
  if (dtype_bits(from) != dtype_bits(to))
    return ops_err(c, FLAGOS_ERR_SHAPE, "cannot reinterpret %s (%d bits) as %s (%d bits)", flagos_dtype_onnx_name(from),
                   dtype_bits(from), flagos_dtype_onnx_name(to), dtype_bits(to));
  ops_set_out(c, 0, to, c->in[0].rank, c->in[0].dims);
  return NULL;
}

/* The raw bits of a one-byte-or-narrower value as an unsigned integer. */
static kir_expr_t *raw_small(ops_ctx_t *c, kir_expr_t *x) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t dt = x->dtype;
  int bits = dtype_bits(dt);
  kir_expr_t *r;
  if (dt == FLAGOS_BOOL || is_subbyte_int(dt)) r = kir_cast(a, FLAGOS_INT32, x);
  else r = kir_cast(a, FLAGOS_INT32, kir_bitcast(a, FLAGOS_UINT8, x));
  return kir_bin(a, KIR_BITAND, r, kir_const_int(a, FLAGOS_INT32, (1 << bits) - 1));
}

static kir_expr_t *from_raw_small(ops_ctx_t *c, kir_expr_t *raw, flagos_dtype_t to) {
  fl_arena_t *a = c->arena;
  int bits = dtype_bits(to);
  if (to == FLAGOS_BOOL) return kir_bin(a, KIR_NE, raw, kir_const_int(a, FLAGOS_INT32, 0));
  if (is_subbyte_int(to) || to == FLAGOS_INT8) {
    if (flagos_dtype_is_signed(to)) {
      kir_expr_t *half = kir_const_int(a, FLAGOS_INT32, 1 << (bits - 1));
      raw = kir_bin(a, KIR_SUB, kir_bin(a, KIR_BITXOR, raw, half), half);
    }
    return kir_cast(a, to, raw);
  }
  if (to == FLAGOS_UINT8) return kir_cast(a, to, raw);
  return kir_bitcast(a, to, kir_cast(a, FLAGOS_UINT8, raw));
}

static flagos_status_t lower_bitcast(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "main", v);
  int b = ops_buf_in(c, k, 0);
  kir_expr_t *x = kir_load(k, b, v);
  flagos_dtype_t to = c->out[0].dtype;
  kir_expr_t *y = dtype_bits(to) <= 8 ? from_raw_small(c, raw_small(c, x), to) : kir_bitcast(c->arena, to, x);
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

static double flops_none(const ops_ctx_t *c) { return 0.0; }

const ops_def_t ops_family_cast[] = {
    OPS_EW_DEF("Cast", infer_cast, lower_cast_common, flops_none),
    OPS_EW_DEF("CastLike", infer_castlike, lower_cast_common, flops_none),
    OPS_EW_DEF("BitCast", infer_bitcast, lower_bitcast, flops_none),
    OPS_EW_END,
};
