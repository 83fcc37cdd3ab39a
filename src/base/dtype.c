#include <math.h>
#include <string.h>

#include "base/base.h"

typedef struct {
  const char *name, *onnx;
  size_t size;
  int is_float, is_int, is_signed;
} dtype_info_t;

static const dtype_info_t k_info[FLAGOS_DTYPE_COUNT] = {
    [FLAGOS_UNDEFINED] = {"undef", "undefined", 0, 0, 0, 0},
    [FLAGOS_FLOAT32] = {"f32", "float", 4, 1, 0, 1},
    [FLAGOS_UINT8] = {"u8", "uint8", 1, 0, 1, 0},
    [FLAGOS_INT8] = {"i8", "int8", 1, 0, 1, 1},
    [FLAGOS_UINT16] = {"u16", "uint16", 2, 0, 1, 0},
    [FLAGOS_INT16] = {"i16", "int16", 2, 0, 1, 1},
    [FLAGOS_INT32] = {"i32", "int32", 4, 0, 1, 1},
    [FLAGOS_INT64] = {"i64", "int64", 8, 0, 1, 1},
    [FLAGOS_STRING] = {"str", "string", sizeof(char *), 0, 0, 0},
    [FLAGOS_BOOL] = {"bool", "bool", 1, 0, 0, 0},
    [FLAGOS_FLOAT16] = {"f16", "float16", 2, 1, 0, 1},
    [FLAGOS_FLOAT64] = {"f64", "double", 8, 1, 0, 1},
    [FLAGOS_UINT32] = {"u32", "uint32", 4, 0, 1, 0},
    [FLAGOS_UINT64] = {"u64", "uint64", 8, 0, 1, 0},
    [FLAGOS_COMPLEX64] = {"c64", "complex64", 8, 0, 0, 1},
    [FLAGOS_COMPLEX128] = {"c128", "complex128", 16, 0, 0, 1},
    [FLAGOS_BFLOAT16] = {"bf16", "bfloat16", 2, 1, 0, 1},
    [FLAGOS_FLOAT8E4M3FN] = {"f8e4m3fn", "float8e4m3fn", 1, 1, 0, 1},
    [FLAGOS_FLOAT8E4M3FNUZ] = {"f8e4m3fnuz", "float8e4m3fnuz", 1, 1, 0, 1},
    [FLAGOS_FLOAT8E5M2] = {"f8e5m2", "float8e5m2", 1, 1, 0, 1},
    [FLAGOS_FLOAT8E5M2FNUZ] = {"f8e5m2fnuz", "float8e5m2fnuz", 1, 1, 0, 1},
    [FLAGOS_UINT4] = {"u4", "uint4", 1, 0, 1, 0},
    [FLAGOS_INT4] = {"i4", "int4", 1, 0, 1, 1},
    [FLAGOS_FLOAT4E2M1] = {"f4e2m1", "float4e2m1", 1, 1, 0, 1},
    [FLAGOS_FLOAT8E8M0] = {"f8e8m0", "float8e8m0", 1, 1, 0, 0},
    [FLAGOS_UINT2] = {"u2", "uint2", 1, 0, 1, 0},
    [FLAGOS_INT2] = {"i2", "int2", 1, 0, 1, 1},
};

static const dtype_info_t *info(flagos_dtype_t dt) {
  return (unsigned)dt < FLAGOS_DTYPE_COUNT ? &k_info[dt] : &k_info[0];
}

size_t flagos_dtype_size(flagos_dtype_t dt) { return info(dt)->size; }
const char *flagos_dtype_name(flagos_dtype_t dt) { return info(dt)->name; }
const char *flagos_dtype_onnx_name(flagos_dtype_t dt) { return info(dt)->onnx; }
int flagos_dtype_is_float(flagos_dtype_t dt) { return info(dt)->is_float; }
int flagos_dtype_is_int(flagos_dtype_t dt) { return info(dt)->is_int; }
int flagos_dtype_is_signed(flagos_dtype_t dt) { return info(dt)->is_signed; }

flagos_dtype_t flagos_dtype_from_name(const char *name) {
  for (int i = 1; i < FLAGOS_DTYPE_COUNT; i++)
    if (strcmp(k_info[i].name, name) == 0) return (flagos_dtype_t)i;
  return FLAGOS_UNDEFINED;
}

float fl_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
  float v;
  if (e == 0) v = ldexpf((float)m, -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = ldexpf((float)(m | 1024), (int)e - 25);
  return sign ? -v : v;
}

uint16_t fl_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
  if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to infinity */
  if (ax < 0x38800000u) {                       /* subnormal or zero in f16 */
    float a;
    memcpy(&a, &ax, 4);
    /* a * 2^24 rounded to nearest even gives the subnormal mantissa */
    float r = nearbyintf(a * 16777216.0f);
    return sign | (uint16_t)r;
  }
  uint32_t e = (ax >> 23) - 112, m = ax & 0x7fffff;
  uint32_t h = (e << 10) | (m >> 13);
  uint32_t rest = m & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
  return sign | (uint16_t)h;
}

float fl_bf16_to_f32(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

uint16_t fl_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

float fl_f8_to_f32(flagos_dtype_t dt, uint8_t v) {
  int s = v >> 7;
  float r;
  switch (dt) {
  case FLAGOS_FLOAT8E4M3FN: {
    int e = (v >> 3) & 15, m = v & 7;
    if (e == 15 && m == 7) return NAN;
    r = e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(8 + m), e - 10);
    break;
  }
  case FLAGOS_FLOAT8E4M3FNUZ: {
    if (v == 0x80) return NAN;
    int e = (v >> 3) & 15, m = v & 7;
    r = e == 0 ? ldexpf((float)m, -10) : ldexpf((float)(8 + m), e - 11);
    break;
  }
  case FLAGOS_FLOAT8E5M2:
    return fl_f16_to_f32((uint16_t)(v << 8));
  case FLAGOS_FLOAT8E5M2FNUZ: {
    if (v == 0x80) return NAN;
    int e = (v >> 2) & 31, m = v & 3;
    r = e == 0 ? ldexpf((float)m, -17) : ldexpf((float)(4 + m), e - 18);
    break;
  }
  case FLAGOS_FLOAT8E8M0:
    return v == 255 ? NAN : ldexpf(1.0f, (int)v - 127);
  case FLAGOS_FLOAT4E2M1: {
    s = (v >> 3) & 1;
    int e = (v >> 1) & 3, m = v & 1;
    r = e == 0 ? 0.5f * (float)m : ldexpf((float)(2 + m), e - 2);
    break;
  }
  default:
    return NAN;
  }
  return s ? -r : r;
}

double fl_load_as_double(flagos_dtype_t dt, const void *data, size_t i) {
  switch (dt) {
  case FLAGOS_FLOAT32: return ((const float *)data)[i];
  case FLAGOS_FLOAT64: return ((const double *)data)[i];
  case FLAGOS_FLOAT16: return fl_f16_to_f32(((const uint16_t *)data)[i]);
  case FLAGOS_BFLOAT16: return fl_bf16_to_f32(((const uint16_t *)data)[i]);
  case FLAGOS_FLOAT8E4M3FN:
  case FLAGOS_FLOAT8E4M3FNUZ:
  case FLAGOS_FLOAT8E5M2:
  case FLAGOS_FLOAT8E5M2FNUZ:
  case FLAGOS_FLOAT8E8M0:
  case FLAGOS_FLOAT4E2M1: return fl_f8_to_f32(dt, ((const uint8_t *)data)[i]);
  case FLAGOS_UINT64: return (double)((const uint64_t *)data)[i];
  default: return (double)fl_load_as_int64(dt, data, i);
  }
}

int64_t fl_load_as_int64(flagos_dtype_t dt, const void *data, size_t i) {
  switch (dt) {
  case FLAGOS_UINT8:
  case FLAGOS_BOOL:
  case FLAGOS_UINT4:
  case FLAGOS_UINT2: return ((const uint8_t *)data)[i];
  case FLAGOS_INT8:
  case FLAGOS_INT4:
  case FLAGOS_INT2: return ((const int8_t *)data)[i];
  case FLAGOS_UINT16: return ((const uint16_t *)data)[i];
  case FLAGOS_INT16: return ((const int16_t *)data)[i];
  case FLAGOS_INT32: return ((const int32_t *)data)[i];
  case FLAGOS_INT64: return ((const int64_t *)data)[i];
  case FLAGOS_UINT32: return ((const uint32_t *)data)[i];
  case FLAGOS_UINT64: return (int64_t)((const uint64_t *)data)[i];
  case FLAGOS_FLOAT32:
  case FLAGOS_FLOAT64:
  case FLAGOS_FLOAT16:
  case FLAGOS_BFLOAT16: return (int64_t)fl_load_as_double(dt, data, i);
  default: return 0;
  }
}
