/* Element-wise reductions on host memory, one loop per type and operator so
 * that the compiler vectorises them. Integer sums and products go through
 * unsigned arithmetic: they wrap (two's complement) instead of being undefined. */
#include <string.h>

#include "fcx.h"

float fcx_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalise into a float exponent */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while (!(man & 0x400u));
      bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t fcx_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u, man = x & 0x7fffffu;
  int32_t exp = (int32_t)((x >> 23) & 0xffu);
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0u));
  int32_t e = exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    uint32_t full = man | 0x800000u;
    int shift = 14 - e;
    uint32_t half = 1u << (shift - 1), r = full >> shift, rem = full & ((1u << shift) - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++; /* a carry into the exponent gives inf, as it should */
  return (uint16_t)(sign | r);
}

float fcx_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t fcx_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* keep NaN a NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

#define FCX_MIN(x, y) ((y) < (x) ? (y) : (x))
#define FCX_MAX(x, y) ((y) > (x) ? (y) : (x))

/* T: element type, W: unsigned type the wrapping arithmetic is done in. */
#define INT_LOOPS(T, W)                                                                            \
  do {                                                                                             \
    T *o = out;                                                                                    \
    const T *x = a, *y = b;                                                                        \
    switch (op) {                                                                                  \
    case FLAGCX_PROD:                                                                              \
      for (size_t i = 0; i < n; i++) o[i] = (T)((W)x[i] * (W)y[i]);                                \
      break;                                                                                       \
    case FLAGCX_MIN:                                                                               \
      for (size_t i = 0; i < n; i++) o[i] = FCX_MIN(x[i], y[i]);                                   \
      break;                                                                                       \
    case FLAGCX_MAX:                                                                               \
      for (size_t i = 0; i < n; i++) o[i] = FCX_MAX(x[i], y[i]);                                   \
      break;                                                                                       \
    default:                                                                                       \
      for (size_t i = 0; i < n; i++) o[i] = (T)((W)x[i] + (W)y[i]);                                \
      break;                                                                                       \
    }                                                                                              \
  } while (0)

#define FLOAT_LOOPS(T)                                                                             \
  do {                                                                                             \
    T *o = out;                                                                                    \
    const T *x = a, *y = b;                                                                        \
    switch (op) {                                                                                  \
    case FLAGCX_PROD:                                                                              \
      for (size_t i = 0; i < n; i++) o[i] = x[i] * y[i];                                           \
      break;                                                                                       \
    case FLAGCX_MIN:                                                                               \
      for (size_t i = 0; i < n; i++) o[i] = FCX_MIN(x[i], y[i]);                                   \
      break;                                                                                       \
    case FLAGCX_MAX:                                                                               \
      for (size_t i = 0; i < n; i++) o[i] = FCX_MAX(x[i], y[i]);                                   \
      break;                                                                                       \
    default:                                                                                       \
      for (size_t i = 0; i < n; i++) o[i] = x[i] + y[i];                                           \
      break;                                                                                       \
    }                                                                                              \
  } while (0)

/* 16-bit floats: widen, operate, round back; one element at a time so out may alias. */
#define HALF_LOOPS(TO_F32, FROM_F32)                                                               \
  do {                                                                                             \
    uint16_t *o = out;                                                                             \
    const uint16_t *x = a, *y = b;                                                                 \
    for (size_t i = 0; i < n; i++) {                                                               \
      float p = TO_F32(x[i]), q = TO_F32(y[i]), r;                                                 \
      switch (op) {                                                                                \
      case FLAGCX_PROD: r = p * q; break;                                                          \
      case FLAGCX_MIN: r = FCX_MIN(p, q); break;                                                   \
      case FLAGCX_MAX: r = FCX_MAX(p, q); break;                                                   \
      default: r = p + q; break;                                                                   \
      }                                                                                            \
      o[i] = FROM_F32(r);                                                                          \
    }                                                                                              \
  } while (0)

void fcx_reduce3(flagcx_datatype_t dt, flagcx_red_op_t op, void *out, const void *a, const void *b, size_t n) {
  switch (dt) {
  case FLAGCX_INT8: INT_LOOPS(int8_t, uint32_t); break;
  case FLAGCX_UINT8: INT_LOOPS(uint8_t, uint32_t); break;
  case FLAGCX_INT16: INT_LOOPS(int16_t, uint32_t); break;
  case FLAGCX_INT32: INT_LOOPS(int32_t, uint32_t); break;
  case FLAGCX_UINT32: INT_LOOPS(uint32_t, uint32_t); break;
  case FLAGCX_INT64: INT_LOOPS(int64_t, uint64_t); break;
  case FLAGCX_UINT64: INT_LOOPS(uint64_t, uint64_t); break;
  case FLAGCX_FLOAT16: HALF_LOOPS(fcx_f16_to_f32, fcx_f32_to_f16); break;
  case FLAGCX_BFLOAT16: HALF_LOOPS(fcx_bf16_to_f32, fcx_f32_to_bf16); break;
  case FLAGCX_FLOAT32: FLOAT_LOOPS(float); break;
  case FLAGCX_FLOAT64: FLOAT_LOOPS(double); break;
  default: break;
  }
}

void fcx_reduce_into(flagcx_datatype_t dt, flagcx_red_op_t op, void *acc, const void *in, size_t n) {
  fcx_reduce3(dt, op, acc, acc, in, n);
}

#define AVG_LOOP(T)                                                                                \
  do {                                                                                             \
    T *p = buf;                                                                                    \
    for (size_t i = 0; i < n; i++) p[i] = (T)(p[i] / (T)nranks);                                   \
  } while (0)

void fcx_avg_finish(flagcx_datatype_t dt, void *buf, size_t n, int nranks) {
  switch (dt) {
  case FLAGCX_INT8: AVG_LOOP(int8_t); break;
  case FLAGCX_UINT8: AVG_LOOP(uint8_t); break;
  case FLAGCX_INT16: AVG_LOOP(int16_t); break;
  case FLAGCX_INT32: AVG_LOOP(int32_t); break;
  case FLAGCX_UINT32: AVG_LOOP(uint32_t); break;
  case FLAGCX_INT64: AVG_LOOP(int64_t); break;
  case FLAGCX_UINT64: AVG_LOOP(uint64_t); break;
  case FLAGCX_FLOAT32: AVG_LOOP(float); break;
  case FLAGCX_FLOAT64: AVG_LOOP(double); break;
  case FLAGCX_FLOAT16: {
    uint16_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = fcx_f32_to_f16(fcx_f16_to_f32(p[i]) / (float)nranks);
    break;
  }
  case FLAGCX_BFLOAT16: {
    uint16_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = fcx_f32_to_bf16(fcx_bf16_to_f32(p[i]) / (float)nranks);
    break;
  }
  default: break;
  }
}
