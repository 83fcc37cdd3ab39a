/* Scalar semantics of kernel IR on the host: constants, element decoding and
 * encoding, casts, bitcasts, unary and binary ops, reduction steps. Every rule
 * mirrors the C emitter (src/codegen/emit_expr.c, prelude_c.inc), so a folded
 * constant is bit for bit what the compiled kernel computes; where the emitter
 * refuses an op/dtype pair, so does this file (returns false). */
#include <math.h>
#include <string.h>

#include "kernel/kir_interp_internal.h"

ki_class_t ki_class(flagos_dtype_t dt) {
  switch (kir_compute_dtype(dt)) {
  case FLAGOS_FLOAT32: return KI_F32;
  case FLAGOS_FLOAT64: return KI_F64;
  case FLAGOS_BOOL: return KI_BOOL;
  case FLAGOS_INT8:
  case FLAGOS_UINT8:
  case FLAGOS_INT16:
  case FLAGOS_UINT16:
  case FLAGOS_INT32:
  case FLAGOS_UINT32:
  case FLAGOS_INT64:
  case FLAGOS_UINT64: return KI_INT;
  default: return KI_NONE;
  }
}

static bool is_narrow(flagos_dtype_t dt) {
  return flagos_dtype_is_float(dt) && dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT64;
}

static bool is_unsigned(flagos_dtype_t dt) {
  flagos_dtype_t c = kir_compute_dtype(dt);
  return c == FLAGOS_UINT8 || c == FLAGOS_UINT16 || c == FLAGOS_UINT32 || c == FLAGOS_UINT64;
}

static int int_bits(flagos_dtype_t dt) {
  switch (kir_compute_dtype(dt)) {
  case FLAGOS_INT8:
  case FLAGOS_UINT8: return 8;
  case FLAGOS_INT16:
  case FLAGOS_UINT16: return 16;
  case FLAGOS_INT64:
  case FLAGOS_UINT64: return 64;
  default: return 32;
  }
}

int64_t ki_norm(flagos_dtype_t dt, int64_t v) {
  switch (kir_compute_dtype(dt)) {
  case FLAGOS_BOOL: return v != 0;
  case FLAGOS_INT8: return (int8_t)v;
  case FLAGOS_UINT8: return (uint8_t)v;
  case FLAGOS_INT16: return (int16_t)v;
  case FLAGOS_UINT16: return (uint16_t)v;
  case FLAGOS_INT32: return (int32_t)v;
  case FLAGOS_UINT32: return (uint32_t)v;
  default: return v;
  }
}

/* ---- bits ---- */
static uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
static float bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}
static uint64_t f64_bits(double x) {
  uint64_t u;
  memcpy(&u, &x, 8);
  return u;
}

/* ---- narrow floats: decode ---- */
static float dec_f16(uint16_t h) {
  uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 1023u;
  if (e == 31u) return bits_f32(s | 0x7f800000u | (m << 13)); /* keeps a NaN's payload, as the emitter */
  if (e == 0u) {
    float f = (float)m * 0x1p-24f;
    return s ? -f : f;
  }
  return bits_f32(s | ((e + 112u) << 23) | (m << 13));
}

static float dec_narrow(flagos_dtype_t dt, uint32_t v) {
  uint32_t s, e, m;
  float f;
  switch (dt) {
  case FLAGOS_FLOAT16: return dec_f16((uint16_t)v);
  case FLAGOS_BFLOAT16: return bits_f32(v << 16);
  case FLAGOS_FLOAT8E4M3FN:
    s = (v & 0x80u) << 24, e = (v >> 3) & 15u, m = v & 7u;
    if ((v & 0x7fu) == 0x7fu) return bits_f32(s | 0x7fc00000u);
    if (e == 0u) {
      f = (float)m * 0x1p-9f;
      return s ? -f : f;
    }
    return bits_f32(s | ((e + 120u) << 23) | (m << 20));
  case FLAGOS_FLOAT8E4M3FNUZ:
    s = (v & 0x80u) << 24, e = (v >> 3) & 15u, m = v & 7u;
    if (v == 0x80u) return bits_f32(0x7fc00000u);
    if (e == 0u) {
      f = (float)m * 0x1p-10f;
      return s ? -f : f;
    }
    return bits_f32(s | ((e + 119u) << 23) | (m << 20));
  case FLAGOS_FLOAT8E5M2: return dec_f16((uint16_t)(v << 8));
  case FLAGOS_FLOAT8E5M2FNUZ:
    s = (v & 0x80u) << 24, e = (v >> 2) & 31u, m = v & 3u;
    if (v == 0x80u) return bits_f32(0x7fc00000u);
    if (e == 0u) {
      f = (float)m * 0x1p-17f;
      return s ? -f : f;
    }
    return bits_f32(s | ((e + 111u) << 23) | (m << 21));
  case FLAGOS_FLOAT4E2M1:
    s = (v & 8u) << 28, e = (v >> 1) & 3u, m = v & 1u;
    if (e == 0u) return bits_f32(s | (m ? 0x3f000000u : 0u));
    return bits_f32(s | ((e + 126u) << 23) | (m << 22));
  case FLAGOS_FLOAT8E8M0:
    if (v == 0xffu) return bits_f32(0x7fc00000u);
    return bits_f32(v ? v << 23 : 0x00400000u);
  default: return NAN;
  }
}

/* ---- narrow floats: encode (round to nearest even) ----
 * Magnitude bits of a finite |x| in a format with mb mantissa bits, minimum normal
 * exponent emin and bias; above the largest finite magnitude means overflow.
 * Rounding from double is exact for f32 sources too (every f32 is a double). */
static uint32_t round_mag(double ax, int mb, int emin, int bias) {
  uint64_t u = f64_bits(ax);
  int be = (int)(u >> 52);
  if (be == 0) return 0u;
  int e = be - 1023;
  if (e > 1000) return 0xffffffu;
  uint64_t sig = (u & 0xfffffffffffffull) | (1ull << 52);
  int shift = 52 - mb + (e < emin ? emin - e : 0);
  if (shift > 53) return 0u;
  uint64_t q = sig >> shift, rem = sig & ((1ull << shift) - 1u), half = 1ull << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) q++;
  if (e < emin) return (uint32_t)q;
  return (uint32_t)(((uint64_t)(e + bias) << mb) + q - (1ull << mb));
}

static uint16_t enc_f16f(float f) {
  uint32_t x = f32_bits(f), s = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (uint16_t)(s | 0x7e00u | ((ax >> 13) & 0x3ffu));
  return fl_f32_to_f16(f);
}
static uint16_t enc_f16d(double x) {
  uint64_t u = f64_bits(x);
  uint32_t s = (uint32_t)(u >> 48) & 0x8000u;
  if (x != x) return (uint16_t)(s | 0x7e00u | ((u >> 42) & 0x3ffu));
  uint32_t m = round_mag(fabs(x), 10, -14, 15);
  return (uint16_t)(s | (m > 0x7bffu ? 0x7c00u : m));
}
static uint16_t enc_bf16f(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((x >> 16) & 0x8000u) | 0x7fc0u);
  return fl_f32_to_bf16(f);
}
static uint16_t enc_bf16d(double x) {
  uint32_t s = (uint32_t)(f64_bits(x) >> 48) & 0x8000u;
  if (x != x) return (uint16_t)(s | 0x7fc0u);
  uint32_t m = round_mag(fabs(x), 7, -126, 127);
  return (uint16_t)(s | (m > 0x7f7fu ? 0x7f80u : m));
}
static uint8_t enc_f8e4m3fn(double x, bool sat) {
  uint32_t s = (uint32_t)(f64_bits(x) >> 56) & 0x80u;
  if (x != x) return (uint8_t)(s | 0x7fu);
  uint32_t m = round_mag(fabs(x), 3, -6, 7);
  if (m > 0x7eu) return (uint8_t)(s | (sat ? 0x7eu : 0x7fu));
  return (uint8_t)(s | m);
}
static uint8_t enc_f8e4m3fnuz(double x, bool sat) {
  uint32_t s = (uint32_t)(f64_bits(x) >> 56) & 0x80u;
  if (x != x) return 0x80u;
  uint32_t m = round_mag(fabs(x), 3, -7, 8);
  if (m > 0x7fu) return (uint8_t)(sat ? (s | 0x7fu) : 0x80u);
  return (uint8_t)(m ? (s | m) : 0u);
}
static uint8_t enc_f8e5m2(double x, bool sat) {
  uint32_t s = (uint32_t)(f64_bits(x) >> 56) & 0x80u;
  if (x != x) return (uint8_t)(s | 0x7eu);
  uint32_t m = round_mag(fabs(x), 2, -14, 15);
  if (m > 0x7bu) return (uint8_t)(s | (sat ? 0x7bu : 0x7cu));
  return (uint8_t)(s | m);
}
static uint8_t enc_f8e5m2fnuz(double x, bool sat) {
  uint32_t s = (uint32_t)(f64_bits(x) >> 56) & 0x80u;
  if (x != x) return 0x80u;
  uint32_t m = round_mag(fabs(x), 2, -15, 16);
  if (m > 0x7fu) return (uint8_t)(sat ? (s | 0x7fu) : 0x80u);
  return (uint8_t)(m ? (s | m) : 0u);
}
static uint8_t enc_f4e2m1(double x) {
  uint32_t s = (uint32_t)(f64_bits(x) >> 60) & 8u;
  if (x != x) return (uint8_t)(s ^ 8u);
  uint32_t m = round_mag(fabs(x), 1, 0, 1);
  return (uint8_t)(s | (m > 7u ? 7u : m));
}
static uint8_t enc_f8e8m0(float x, bool sat) {
  uint32_t u = f32_bits(x) & 0x7fffffffu, e = u >> 23, m = u & 0x7fffffu;
  if (e == 0xffu) return (uint8_t)((m == 0u && sat) ? 0xfeu : 0xffu);
  if (e == 0u) return (uint8_t)(m > 0x400000u ? 1u : 0u);
  if (m) {
    if (e == 0xfeu && sat) return 0xfeu;
    e++;
  }
  return (uint8_t)e;
}

/* C's conversions of a value of dtype `from` to double / float. */
static double to_double(flagos_dtype_t from, ki_val_t x) {
  switch (ki_class(from)) {
  case KI_F32: return x.f32;
  case KI_F64: return x.f64;
  default: return kir_compute_dtype(from) == FLAGOS_UINT64 ? (double)(uint64_t)x.i : (double)x.i;
  }
}
static float to_float(flagos_dtype_t from, ki_val_t x) {
  switch (ki_class(from)) {
  case KI_F32: return x.f32;
  case KI_F64: return (float)x.f64;
  default: return kir_compute_dtype(from) == FLAGOS_UINT64 ? (float)(uint64_t)x.i : (float)x.i;
  }
}

/* Storage bits of narrow float dt for x (of dtype `from`), as enc_narrow in the emitter. */
static uint32_t enc_narrow(flagos_dtype_t dt, flagos_dtype_t from, ki_val_t x, bool sat) {
  bool f32src = ki_class(from) == KI_F32;
  switch (dt) {
  case FLAGOS_FLOAT16: return f32src ? enc_f16f(x.f32) : enc_f16d(to_double(from, x));
  case FLAGOS_BFLOAT16: return f32src ? enc_bf16f(x.f32) : enc_bf16d(to_double(from, x));
  case FLAGOS_FLOAT8E4M3FN: return enc_f8e4m3fn(to_double(from, x), sat);
  case FLAGOS_FLOAT8E4M3FNUZ: return enc_f8e4m3fnuz(to_double(from, x), sat);
  case FLAGOS_FLOAT8E5M2: return enc_f8e5m2(to_double(from, x), sat);
  case FLAGOS_FLOAT8E5M2FNUZ: return enc_f8e5m2fnuz(to_double(from, x), sat);
  case FLAGOS_FLOAT4E2M1: return enc_f4e2m1(to_double(from, x));
  case FLAGOS_FLOAT8E8M0: return enc_f8e8m0(to_float(from, x), sat);
  default: return 0;
  }
}

static int32_t wrap_sub(flagos_dtype_t dt, int64_t v) {
  switch (dt) {
  case FLAGOS_INT4: return (int32_t)(((uint32_t)v & 15u) ^ 8u) - 8;
  case FLAGOS_UINT4: return (int32_t)((uint32_t)v & 15u);
  case FLAGOS_INT2: return (int32_t)(((uint32_t)v & 3u) ^ 2u) - 2;
  case FLAGOS_UINT2: return (int32_t)((uint32_t)v & 3u);
  default: return (int32_t)v;
  }
}

static bool is_sub_byte(flagos_dtype_t dt) {
  return dt == FLAGOS_INT4 || dt == FLAGOS_UINT4 || dt == FLAGOS_INT2 || dt == FLAGOS_UINT2;
}

static int64_t f2i64(double x) {
  return x != x ? 0 : x >= 0x1p63 ? INT64_MAX : x <= -0x1p63 ? INT64_MIN : (int64_t)x;
}
static uint64_t f2u64(double x) {
  return x != x ? 0u : x >= 0x1p64 ? UINT64_MAX : x >= 0x1p63 ? (uint64_t)x : (uint64_t)f2i64(x);
}

bool ki_cast(flagos_dtype_t from, flagos_dtype_t to, bool sat, ki_val_t x, ki_val_t *out) {
  if (from == to) {
    *out = x;
    return true;
  }
  ki_class_t fc = ki_class(from), tc = ki_class(to);
  if (fc == KI_NONE || tc == KI_NONE) return false;
  if (is_narrow(to)) {
    out->f32 = dec_narrow(to, enc_narrow(to, from, x, sat));
    return true;
  }
  int64_t wide;
  switch (tc) {
  case KI_F32: out->f32 = to_float(from, x); return true;
  case KI_F64: out->f64 = to_double(from, x); return true;
  case KI_BOOL:
    out->i = fc == KI_F32 ? x.f32 != 0 : fc == KI_F64 ? x.f64 != 0 : x.i != 0;
    return true;
  default: break;
  }
  if (fc == KI_F32 || fc == KI_F64) {
    double d = to_double(from, x);
    if (to == FLAGOS_UINT64) {
      out->i = (int64_t)f2u64(d);
      return true;
    }
    wide = f2i64(d);
  } else {
    wide = x.i;
  }
  out->i = is_sub_byte(to) ? wrap_sub(to, wide) : ki_norm(to, wide);
  return true;
}

bool ki_const(const kir_expr_t *e, ki_val_t *out) {
  ki_val_t v;
  switch (ki_class(e->dtype)) {
  case KI_F64: out->f64 = e->cf; return true;
  case KI_F32:
    /* A constant of a narrow type is the nearest value of that type. */
    v.f64 = e->cf;
    if (is_narrow(e->dtype)) return ki_cast(FLAGOS_FLOAT64, e->dtype, true, v, out);
    out->f32 = (float)e->cf;
    return true;
  case KI_BOOL: out->i = e->ci != 0; return true;
  case KI_INT:
    if (e->dtype == FLAGOS_INT64 || e->dtype == FLAGOS_UINT64) {
      out->i = e->ci;
      return true;
    }
    v.i = e->ci;
    return ki_cast(FLAGOS_INT64, e->dtype, true, v, out);
  default: return false;
  }
}

void ki_decode(flagos_dtype_t dt, const void *data, int64_t idx, ki_val_t *out) {
  const unsigned char *p = data;
  size_t i = (size_t)idx;
  switch (dt) {
  case FLAGOS_FLOAT32: memcpy(&out->f32, p + i * 4, 4); return;
  case FLAGOS_FLOAT64: memcpy(&out->f64, p + i * 8, 8); return;
  case FLAGOS_FLOAT16:
  case FLAGOS_BFLOAT16: {
    uint16_t h;
    memcpy(&h, p + i * 2, 2);
    out->f32 = dec_narrow(dt, h);
    return;
  }
  case FLAGOS_FLOAT8E4M3FN:
  case FLAGOS_FLOAT8E4M3FNUZ:
  case FLAGOS_FLOAT8E5M2:
  case FLAGOS_FLOAT8E5M2FNUZ:
  case FLAGOS_FLOAT4E2M1:
  case FLAGOS_FLOAT8E8M0: out->f32 = dec_narrow(dt, p[i]); return;
  case FLAGOS_BOOL: out->i = p[i] != 0; return;
  /* Sub-byte ints: only the low bits count, whatever the byte's upper bits hold. */
  case FLAGOS_INT4:
  case FLAGOS_UINT4:
  case FLAGOS_INT2:
  case FLAGOS_UINT2: out->i = wrap_sub(dt, (int8_t)p[i]); return;
  case FLAGOS_INT8: out->i = (int8_t)p[i]; return;
  case FLAGOS_UINT8: out->i = p[i]; return;
  case FLAGOS_INT16: {
    int16_t v;
    memcpy(&v, p + i * 2, 2);
    out->i = v;
    return;
  }
  case FLAGOS_UINT16: {
    uint16_t v;
    memcpy(&v, p + i * 2, 2);
    out->i = v;
    return;
  }
  case FLAGOS_INT32: {
    int32_t v;
    memcpy(&v, p + i * 4, 4);
    out->i = v;
    return;
  }
  case FLAGOS_UINT32: {
    uint32_t v;
    memcpy(&v, p + i * 4, 4);
    out->i = v;
    return;
  }
  case FLAGOS_INT64:
  case FLAGOS_UINT64: memcpy(&out->i, p + i * 8, 8); return;
  default: out->i = 0; return;
  }
}

bool ki_store(flagos_dtype_t vdt, flagos_dtype_t bdt, ki_val_t x, void *data, int64_t idx) {
  unsigned char *p = data;
  size_t i = (size_t)idx;
  if (ki_class(vdt) == KI_NONE || ki_class(bdt) == KI_NONE) return false;
  bool sat = false;
  if (vdt != bdt) {
    /* Rounding straight from the source type avoids rounding twice. */
    if (is_narrow(bdt)) sat = true;
    else if (!ki_cast(vdt, bdt, true, x, &x)) return false;
    else vdt = bdt;
  }
  if (is_narrow(bdt)) {
    uint32_t bits = enc_narrow(bdt, vdt, x, sat);
    if (flagos_dtype_size(bdt) == 2) {
      uint16_t h = (uint16_t)bits;
      memcpy(p + i * 2, &h, 2);
    } else {
      p[i] = (uint8_t)bits;
    }
    return true;
  }
  switch (bdt) {
  case FLAGOS_FLOAT32: memcpy(p + i * 4, &x.f32, 4); return true;
  case FLAGOS_FLOAT64: memcpy(p + i * 8, &x.f64, 8); return true;
  case FLAGOS_INT4:
  case FLAGOS_INT2:
  case FLAGOS_UINT4:
  case FLAGOS_UINT2: p[i] = (uint8_t)wrap_sub(bdt, x.i); return true;
  case FLAGOS_BOOL:
  case FLAGOS_INT8:
  case FLAGOS_UINT8: p[i] = (uint8_t)x.i; return true;
  case FLAGOS_INT16:
  case FLAGOS_UINT16: {
    uint16_t v = (uint16_t)x.i;
    memcpy(p + i * 2, &v, 2);
    return true;
  }
  case FLAGOS_INT32:
  case FLAGOS_UINT32: {
    uint32_t v = (uint32_t)x.i;
    memcpy(p + i * 4, &v, 4);
    return true;
  }
  case FLAGOS_INT64:
  case FLAGOS_UINT64: memcpy(p + i * 8, &x.i, 8); return true;
  default: return false;
  }
}

bool ki_bitcast(flagos_dtype_t from, flagos_dtype_t to, ki_val_t x, ki_val_t *out) {
  if (from == to) {
    *out = x;
    return true;
  }
  if (ki_class(from) == KI_NONE || ki_class(to) == KI_NONE || flagos_dtype_size(from) != flagos_dtype_size(to) ||
      flagos_dtype_size(to) > 8)
    return false;
  unsigned char tmp[8] = {0};
  if (!ki_store(from, from, x, tmp, 0)) return false;
  ki_decode(to, tmp, 0, out);
  return true;
}

/* ---- unary ---- */
typedef float (*fn_f32_t)(float);
typedef double (*fn_f64_t)(double);

static bool float_fn(kir_op_t op, fn_f32_t *f, fn_f64_t *d) {
#define FN(OP, NAME)                                                                                               \
  case OP:                                                                                                         \
    *f = NAME##f;                                                                                                  \
    *d = NAME;                                                                                                     \
    return true;
  switch (op) {
    FN(KIR_EXP, exp)
    FN(KIR_LOG, log)
    FN(KIR_SQRT, sqrt)
    FN(KIR_SIN, sin)
    FN(KIR_COS, cos)
    FN(KIR_TAN, tan)
    FN(KIR_ASIN, asin)
    FN(KIR_ACOS, acos)
    FN(KIR_ATAN, atan)
    FN(KIR_SINH, sinh)
    FN(KIR_COSH, cosh)
    FN(KIR_TANH, tanh)
    FN(KIR_ASINH, asinh)
    FN(KIR_ACOSH, acosh)
    FN(KIR_ATANH, atanh)
    FN(KIR_ERF, erf)
    FN(KIR_FLOOR, floor)
    FN(KIR_CEIL, ceil)
    FN(KIR_ROUND, rint) /* half to even in the default rounding mode */
    FN(KIR_ABS, fabs)
    FN(KIR_LOG1P, log1p)
    FN(KIR_EXPM1, expm1)
  default: return false;
  }
#undef FN
}

bool ki_unary(kir_op_t op, flagos_dtype_t dt, ki_val_t x, ki_val_t *out) {
  ki_class_t c = ki_class(dt);
  fn_f32_t ff;
  fn_f64_t fd;
  if (c == KI_F32 || c == KI_F64) {
    double v = c == KI_F32 ? x.f32 : x.f64;
    switch (op) {
    case KIR_NEG:
      if (c == KI_F32) out->f32 = -x.f32;
      else out->f64 = -x.f64;
      return true;
    case KIR_SIGN:
      if (c == KI_F32) out->f32 = x.f32 > 0 ? 1.0f : x.f32 < 0 ? -1.0f : x.f32;
      else out->f64 = x.f64 > 0 ? 1.0 : x.f64 < 0 ? -1.0 : x.f64;
      return true;
    case KIR_ISNAN: out->i = v != v; return true;
    case KIR_ISINF_POS: out->i = v == INFINITY; return true;
    case KIR_ISINF_NEG: out->i = v == -INFINITY; return true;
    default:
      if (!float_fn(op, &ff, &fd)) return false;
      /* The emitter calls the f32 function (expf...) for f32 values: same libm, same bits. */
      if (c == KI_F32) out->f32 = ff(x.f32);
      else out->f64 = fd(x.f64);
      return true;
    }
  }
  if (c == KI_BOOL) {
    switch (op) {
    case KIR_NOT: out->i = !x.i; return true;
    case KIR_ABS:
    case KIR_FLOOR:
    case KIR_CEIL:
    case KIR_ROUND: *out = x; return true;
    case KIR_ISNAN:
    case KIR_ISINF_POS:
    case KIR_ISINF_NEG: out->i = 0; return true;
    default: return false;
    }
  }
  if (c != KI_INT) return false;
  bool uns = is_unsigned(dt);
  switch (op) {
  case KIR_NEG: out->i = ki_norm(dt, (int64_t)(0u - (uint64_t)x.i)); return true;
  case KIR_ABS: out->i = (!uns && x.i < 0) ? ki_norm(dt, (int64_t)(0u - (uint64_t)x.i)) : x.i; return true;
  case KIR_SIGN: out->i = uns ? ((uint64_t)x.i > 0) : (x.i > 0) - (x.i < 0); return true;
  case KIR_BITNOT: out->i = ki_norm(dt, ~x.i); return true;
  case KIR_FLOOR:
  case KIR_CEIL:
  case KIR_ROUND: *out = x; return true;
  case KIR_ISNAN:
  case KIR_ISINF_POS:
  case KIR_ISINF_NEG: out->i = 0; return true;
  default: {
    /* Float functions of integers: computed in double, converted back. */
    if (!float_fn(op, &ff, &fd)) return false;
    ki_val_t d;
    d.f64 = fd(to_double(dt, x));
    return ki_cast(FLAGOS_FLOAT64, dt, true, d, out);
  }
  }
}

/* ---- binary ---- */
static bool compare(kir_op_t op, int s) {
  switch (op) {
  case KIR_EQ: return s == 0;
  case KIR_NE: return s != 0;
  case KIR_LT: return s < 0;
  case KIR_LE: return s <= 0;
  case KIR_GT: return s > 0;
  case KIR_GE: return s >= 0;
  default: return false;
  }
}

static bool float_binary(kir_op_t op, bool f32, double x, double y, double *r) {
  switch (op) {
  case KIR_ADD: *r = x + y; return true;
  case KIR_SUB: *r = x - y; return true;
  case KIR_MUL: *r = x * y; return true;
  case KIR_DIV: *r = x / y; return true;
  case KIR_MOD: *r = f32 ? fmodf((float)x, (float)y) : fmod(x, y); return true;
  case KIR_FLOORDIV:
    /* floor of the quotient as the type computes it */
    *r = f32 ? floorf((float)(x / y)) : floor(x / y);
    return true;
  case KIR_FLOORMOD: {
    double m = f32 ? fmodf((float)x, (float)y) : fmod(x, y);
    *r = (m != 0 && ((m < 0) != (y < 0))) ? m + y : m;
    return true;
  }
  case KIR_POW: *r = f32 ? powf((float)x, (float)y) : pow(x, y); return true;
  case KIR_MIN: *r = (x < y || x != x) ? x : y; return true;
  case KIR_MAX: *r = (x > y || x != x) ? x : y; return true;
  case KIR_ATAN2: *r = f32 ? atan2f((float)x, (float)y) : atan2(x, y); return true;
  default: return false;
  }
}

static uint64_t upow(uint64_t a, uint64_t e) {
  uint64_t r = 1u;
  for (; e; e >>= 1) {
    if (e & 1u) r *= a;
    a *= a;
  }
  return r;
}

static bool int_binary(kir_op_t op, flagos_dtype_t dt, int64_t a, int64_t b, int64_t *r) {
  bool uns = is_unsigned(dt);
  uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
  int bits = int_bits(dt);
  switch (op) {
  case KIR_ADD: *r = ki_norm(dt, (int64_t)(ua + ub)); return true;
  case KIR_SUB: *r = ki_norm(dt, (int64_t)(ua - ub)); return true;
  case KIR_MUL: *r = ki_norm(dt, (int64_t)(ua * ub)); return true;
  case KIR_BITAND: *r = ki_norm(dt, a & b); return true;
  case KIR_BITOR: *r = ki_norm(dt, a | b); return true;
  case KIR_BITXOR: *r = ki_norm(dt, a ^ b); return true;
  case KIR_MIN: *r = (uns ? ua < ub : a < b) ? a : b; return true;
  case KIR_MAX: *r = (uns ? ua > ub : a > b) ? a : b; return true;
  case KIR_SHL: *r = ub >= (uint64_t)bits ? 0 : ki_norm(dt, (int64_t)(ua << ub)); return true;
  case KIR_SHR:
    if (uns) *r = ub >= (uint64_t)bits ? 0 : (int64_t)(ua >> ub);
    else *r = ub >= (uint64_t)bits ? (a < 0 ? -1 : 0) : a >> ub;
    return true;
  case KIR_ATAN2: {
    ki_val_t d, o;
    d.f64 = atan2(to_double(dt, (ki_val_t){.i = a}), to_double(dt, (ki_val_t){.i = b}));
    if (!ki_cast(FLAGOS_FLOAT64, dt, true, d, &o)) return false;
    *r = o.i;
    return true;
  }
  default: break;
  }
  /* Division by zero gives 0 and MIN / -1 wraps, as the emitter's helpers define. */
  if (uns) {
    switch (op) {
    case KIR_DIV:
    case KIR_FLOORDIV: *r = ub == 0 ? 0 : (int64_t)(ua / ub); return true;
    case KIR_MOD:
    case KIR_FLOORMOD: *r = ub == 0 ? 0 : (int64_t)(ua % ub); return true;
    case KIR_POW: *r = ki_norm(dt, (int64_t)upow(ua, ub)); return true;
    default: return false;
    }
  }
  switch (op) {
  case KIR_DIV:
    *r = b == 0 ? 0 : b == -1 ? ki_norm(dt, (int64_t)(0u - ua)) : a / b;
    return true;
  case KIR_MOD: *r = (b == 0 || b == -1) ? 0 : a % b; return true;
  case KIR_FLOORDIV: {
    if (b == 0 || b == -1) {
      *r = b == 0 ? 0 : ki_norm(dt, (int64_t)(0u - ua));
      return true;
    }
    int64_t q = a / b;
    *r = (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
    return true;
  }
  case KIR_FLOORMOD: {
    if (b == 0 || b == -1) {
      *r = 0;
      return true;
    }
    int64_t m = a % b;
    *r = (m != 0 && ((m < 0) != (b < 0))) ? m + b : m;
    return true;
  }
  case KIR_POW:
    if (b < 0) *r = a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
    else *r = ki_norm(dt, (int64_t)upow(ua, ub));
    return true;
  default: return false;
  }
}

bool ki_binary(kir_op_t op, flagos_dtype_t dt, ki_val_t x, ki_val_t y, ki_val_t *out) {
  ki_class_t c = ki_class(dt);
  if (kir_op_is_compare(op)) {
    int s;
    switch (c) {
    case KI_F32:
    case KI_F64: {
      double a = c == KI_F32 ? x.f32 : x.f64, b = c == KI_F32 ? y.f32 : y.f64;
      /* NaN compares unordered: only NE holds. */
      if (a != a || b != b) {
        out->i = op == KIR_NE;
        return true;
      }
      s = a < b ? -1 : a > b ? 1 : 0;
      break;
    }
    case KI_INT:
      if (is_unsigned(dt)) s = (uint64_t)x.i < (uint64_t)y.i ? -1 : (uint64_t)x.i > (uint64_t)y.i ? 1 : 0;
      else s = x.i < y.i ? -1 : x.i > y.i ? 1 : 0;
      break;
    case KI_BOOL: s = x.i < y.i ? -1 : x.i > y.i ? 1 : 0; break;
    default: return false;
    }
    out->i = compare(op, s);
    return true;
  }
  switch (c) {
  case KI_F32: {
    double r;
    /* min/max return an operand unchanged (its bits, a signalling NaN's included) */
    if (op == KIR_MIN || op == KIR_MAX) {
      bool first = op == KIR_MIN ? (x.f32 < y.f32 || x.f32 != x.f32) : (x.f32 > y.f32 || x.f32 != x.f32);
      *out = first ? x : y;
      return true;
    }
    if (!float_binary(op, true, x.f32, y.f32, &r)) return false;
    out->f32 = (float)r; /* exact for + - * /: double holds the f32 result before rounding */
    return true;
  }
  case KI_F64: return float_binary(op, false, x.f64, y.f64, &out->f64);
  case KI_BOOL:
    switch (op) {
    case KIR_AND:
    case KIR_BITAND:
    case KIR_MIN: out->i = x.i & y.i; return true;
    case KIR_OR:
    case KIR_BITOR:
    case KIR_MAX: out->i = x.i | y.i; return true;
    case KIR_XOR:
    case KIR_BITXOR: out->i = x.i ^ y.i; return true;
    default: return false;
    }
  case KI_INT: return int_binary(op, dt, x.i, y.i, &out->i);
  default: return false;
  }
}

/* ---- reductions ---- */
static int64_t int_limit(flagos_dtype_t dt, bool max) {
  switch (kir_compute_dtype(dt)) {
  case FLAGOS_INT8: return max ? INT8_MAX : INT8_MIN;
  case FLAGOS_INT16: return max ? INT16_MAX : INT16_MIN;
  case FLAGOS_INT64: return max ? INT64_MAX : INT64_MIN;
  case FLAGOS_UINT8: return max ? UINT8_MAX : 0;
  case FLAGOS_UINT16: return max ? UINT16_MAX : 0;
  case FLAGOS_UINT32: return max ? (int64_t)UINT32_MAX : 0;
  case FLAGOS_UINT64: return max ? -1 /* UINT64_MAX's bits */ : 0;
  default: return max ? INT32_MAX : INT32_MIN;
  }
}

bool ki_reduce_init(kir_op_t op, flagos_dtype_t dt, ki_val_t *out) {
  ki_class_t c = ki_class(dt);
  bool fl = c == KI_F32 || c == KI_F64;
  double f;
  switch (op) {
  case KIR_RSUM:
  case KIR_RANY: f = 0; out->i = 0; break;
  case KIR_RPROD:
  case KIR_RALL: f = 1; out->i = 1; break;
  case KIR_RMAX: f = -INFINITY; out->i = c == KI_BOOL ? 0 : int_limit(dt, false); break;
  case KIR_RMIN: f = INFINITY; out->i = c == KI_BOOL ? 1 : int_limit(dt, true); break;
  default: return false;
  }
  if (c == KI_NONE) return false;
  /* any/all accumulate with | and &, which C has no float form of */
  if (fl && (op == KIR_RANY || op == KIR_RALL)) return false;
  if (c == KI_F32) out->f32 = (float)f;
  else if (c == KI_F64) out->f64 = f;
  return true;
}

bool ki_reduce_step(kir_op_t op, flagos_dtype_t dt, ki_val_t *acc, ki_val_t x) {
  ki_class_t c = ki_class(dt);
  switch (op) {
  case KIR_RSUM:
  case KIR_RPROD:
    if (c == KI_BOOL) {
      acc->i = op == KIR_RSUM ? (acc->i | x.i) : (acc->i & x.i);
      return true;
    }
    return ki_binary(op == KIR_RSUM ? KIR_ADD : KIR_MUL, dt, *acc, x, acc);
  case KIR_RMAX:
  case KIR_RMIN:
    return ki_binary(op == KIR_RMAX ? KIR_MAX : KIR_MIN, dt, *acc, x, acc);
  case KIR_RANY:
  case KIR_RALL:
    if (c != KI_BOOL && c != KI_INT) return false;
    acc->i = op == KIR_RANY ? (acc->i | (x.i != 0)) : (acc->i & (x.i != 0));
    return true;
  default: return false;
  }
}
