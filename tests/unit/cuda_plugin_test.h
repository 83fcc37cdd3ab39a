/* What the tests of the cuda plugin share (test_cuda_blas.c, test_cuda_dnn.c,
 * test_cuda_copy.c, test_cuda_rowcache.c): loading the plugin and starting it, status checks, f16 and
 * bf16 conversions done here (not by the code under test), element access by
 * dtype and a reproducible random source (static inline: a test uses what it
 * needs). Included by one test file each, after check.h. */
#ifndef FLAGOS_TESTS_CUDA_PLUGIN_TEST_H
#define FLAGOS_TESTS_CUDA_PLUGIN_TEST_H
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "flagos/backend.h"
#include "flagos/flagos.h"

static inline const char *msg(flagos_status_t st) { return st ? flagos_status_message(st) : "(success)"; }
static inline bool is(flagos_status_t st, flagos_code_t code, const char *text) {
  return st && flagos_status_code(st) == code && (!text || strstr(flagos_status_message(st), text));
}

static inline const flagos_backend_t *load_plugin(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/backends/libflagos_backend_cuda.so", FLAGOS_BINARY_DIR);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(h != NULL, "cannot load %s: %s", path, dlerror());
  if (!h) return NULL;
  flagos_backend_entry_fn entry = (flagos_backend_entry_fn)(uintptr_t)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL);
  CHECK(entry != NULL, "no %s in the cuda plugin", FLAGOS_BACKEND_ENTRY_SYMBOL);
  const flagos_backend_t *api = entry ? entry(FLAGOS_BACKEND_ABI_VERSION) : NULL;
  CHECK(api != NULL, "the plugin serves ABI %u", FLAGOS_BACKEND_ABI_VERSION);
  if (!api) return NULL;
  CHECK(api->library_call != NULL, "the cuda plugin provides library_call");
  CHECK(FLAGOS_BACKEND_HAS(api, device_power), "the cuda plugin provides device_power");
  return FLAGOS_BACKEND_HAS(api, device_power) && api->library_call ? api : NULL;
}

static inline void *start(const flagos_backend_t *api) {
  static flagos_host_t host = {FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, "/tmp"};
  void *state = NULL;
  flagos_status_t st = api->init(&host, &state);
  CHECK(!st && state, "init: %s", msg(st));
  flagos_status_free(st);
  return state;
}

static inline uint16_t to_f16(float f) {
  /* Round to nearest even through the bit pattern (normal and subnormal range). */
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  float a = fabsf(f);
  if (a != a) return (uint16_t)(sign | 0x7e00u);
  if (a >= 65520.0f) return (uint16_t)(sign | 0x7c00u);
  if (a < 6.103515625e-05f) return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f)); /* 2^24 */
  int e;
  float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
  uint32_t mant = (uint32_t)lrintf(m * 2048.0f); /* 11 bits with the hidden one */
  if (mant == 2048) {
    mant = 1024;
    e++;
  }
  return (uint16_t)(sign | (uint32_t)(e + 14) << 10 | (mant & 0x3ffu));
}
static inline float from_f16(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? INFINITY : ldexpf((float)(m | 1024), e - 25);
  return (h & 0x8000) ? -v : v;
}
static inline uint16_t to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}
static inline float from_bf16(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

static inline size_t dt_size(int32_t dt) { return dt == FLAGOS_FLOAT64 ? 8 : dt == FLAGOS_FLOAT32 ? 4 : 2; }

static inline void put(void *buf, int32_t dt, size_t i, double v) {
  switch (dt) {
  case FLAGOS_FLOAT64: ((double *)buf)[i] = v; break;
  case FLAGOS_FLOAT32: ((float *)buf)[i] = (float)v; break;
  case FLAGOS_FLOAT16: ((uint16_t *)buf)[i] = to_f16((float)v); break;
  default: ((uint16_t *)buf)[i] = to_bf16((float)v); break;
  }
}
static inline double get(const void *buf, int32_t dt, size_t i) {
  switch (dt) {
  case FLAGOS_FLOAT64: return ((const double *)buf)[i];
  case FLAGOS_FLOAT32: return ((const float *)buf)[i];
  case FLAGOS_FLOAT16: return from_f16(((const uint16_t *)buf)[i]);
  default: return from_bf16(((const uint16_t *)buf)[i]);
  }
}

static inline double rnd(void) {
  static uint64_t rng = 88172645463325252ull;
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0 * 2 - 1;
}

#endif
