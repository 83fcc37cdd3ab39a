/* Internal helpers shared by every layer: arenas, growable strings, hashing, file
 * reading. Internal symbols carry short module prefixes and hidden visibility;
 * only include/flagos/ declares exported (flagos_) symbols. */
#ifndef FLAGOS_BASE_H
#define FLAGOS_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flagos/status.h"

#define FL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define FL_UNUSED(x) ((void)(x))

/* Shorthand for returning a fresh error. */
#define FL_ERR(code, ...) flagos_status_new((code), __VA_ARGS__)
/* Propagate a non-NULL status. */
#define FL_TRY(expr)                                                                               \
  do {                                                                                             \
    flagos_status_t fl_try_st_ = (expr);                                                           \
    if (fl_try_st_) return fl_try_st_;                                                             \
  } while (0)

/* ---- arena: many small allocations freed together ---- */
typedef struct fl_arena fl_arena_t;
fl_arena_t *fl_arena_create(void);
void fl_arena_destroy(fl_arena_t *a);
/* Zeroed, 16-byte aligned. Aborts only when the system is out of memory. */
void *fl_arena_alloc(fl_arena_t *a, size_t n);
char *fl_arena_strdup(fl_arena_t *a, const char *s);
char *fl_arena_strndup(fl_arena_t *a, const char *s, size_t n);
void *fl_arena_memdup(fl_arena_t *a, const void *p, size_t n);
char *fl_arena_printf(fl_arena_t *a, const char *fmt, ...) FLAGOS_PRINTF(2, 3);

/* ---- growable byte/string buffer (heap, caller frees with fl_buf_free) ---- */
typedef struct fl_buf {
  char *data;
  size_t len;
  size_t cap;
} fl_buf_t;
void fl_buf_reserve(fl_buf_t *b, size_t extra);
void fl_buf_append(fl_buf_t *b, const void *p, size_t n);
void fl_buf_puts(fl_buf_t *b, const char *s);
void fl_buf_printf(fl_buf_t *b, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
void fl_buf_vprintf(fl_buf_t *b, const char *fmt, va_list ap);
void fl_buf_putc(fl_buf_t *b, char c);
/* Pads with zero bytes until len is a multiple of `align`. */
void fl_buf_align(fl_buf_t *b, size_t align);
void fl_buf_free(fl_buf_t *b);
/* Returns the NUL-terminated contents and resets the buffer; caller frees. */
char *fl_buf_take(fl_buf_t *b);

/* ---- hashing ---- */
uint64_t fl_hash64(const void *p, size_t n, uint64_t seed); /* FNV-1a 64, for cache keys */
/* A pointer's bits mixed (MurmurHash3's finaliser), for tables keyed by address. */
static inline size_t fl_hash_ptr(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (size_t)x;
}

/* ---- files ---- */
/* Reads a whole file. On failure returns a status naming the path and the reason. */
flagos_status_t fl_read_file(const char *path, void **data, size_t *size);
flagos_status_t fl_write_file(const char *path, const void *data, size_t size);
/* Folder for caches (kernels, program binaries); see buf.c for the order of lookup. */
const char *fl_default_cache_dir(void);
/* mkdir -p */
flagos_status_t fl_mkdirs(const char *path);

/* ---- dtypes: conversions between storage and float, used by hosts (I/O, comparisons) ---- */
float fl_f16_to_f32(uint16_t h);
uint16_t fl_f32_to_f16(float f);
float fl_bf16_to_f32(uint16_t h);
uint16_t fl_f32_to_bf16(float f); /* round to nearest even */
/* Reads element i of a buffer of `dt` as double (numeric types only, sub-byte unpacked). */
double fl_load_as_double(flagos_dtype_t dt, const void *data, size_t i);
/* Reads element i of an integer or bool buffer as int64. */
int64_t fl_load_as_int64(flagos_dtype_t dt, const void *data, size_t i);
/* Decode one float8/float4/e8m0 byte to float (exact). */
float fl_f8_to_f32(flagos_dtype_t dt, uint8_t v);

#endif
