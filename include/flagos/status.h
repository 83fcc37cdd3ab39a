/* FlagOS status values and element types: the vocabulary every public header shares. */
#ifndef FLAGOS_STATUS_H
#define FLAGOS_STATUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FLAGOS_API __attribute__((visibility("default")))
#define FLAGOS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FLAGOS_API
#define FLAGOS_PRINTF(f, a)
#endif

typedef enum flagos_code {
  FLAGOS_OK = 0,
  FLAGOS_ERR_INVALID_ARGUMENT = 1, /* the caller passed something wrong */
  FLAGOS_ERR_NOT_FOUND = 2,        /* a file, name, device or symbol does not exist */
  FLAGOS_ERR_UNSUPPORTED = 3,      /* valid input this build cannot handle */
  FLAGOS_ERR_IO = 4,               /* the operating system refused a read or write */
  FLAGOS_ERR_CORRUPT = 5,          /* a file is truncated, damaged or of another version */
  FLAGOS_ERR_SHAPE = 6,            /* shapes or dtypes do not agree */
  FLAGOS_ERR_OUT_OF_MEMORY = 7,
  FLAGOS_ERR_BACKEND = 8,          /* a device, driver or compiler failed */
  FLAGOS_ERR_INTERNAL = 9          /* a bug in FlagOS */
} flagos_code_t;

/* A status is NULL on success; otherwise it owns a code and a message and must be
 * released with flagos_status_free(). Functions that can fail return one. */
typedef struct flagos_status_s *flagos_status_t;

FLAGOS_API flagos_status_t flagos_status_new(flagos_code_t code, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
FLAGOS_API flagos_code_t flagos_status_code(flagos_status_t st);
FLAGOS_API const char *flagos_status_message(flagos_status_t st);
/* Prefixes the message with context ("in node 'x': ...") and returns the same status. */
FLAGOS_API flagos_status_t flagos_status_wrap(flagos_status_t st, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
FLAGOS_API void flagos_status_free(flagos_status_t st);

/* Element types. The numbering is ONNX's TensorProto.DataType, so files and
 * FlagIR agree without a table. */
typedef enum flagos_dtype {
  FLAGOS_UNDEFINED = 0,
  FLAGOS_FLOAT32 = 1,
  FLAGOS_UINT8 = 2,
  FLAGOS_INT8 = 3,
  FLAGOS_UINT16 = 4,
  FLAGOS_INT16 = 5,
  FLAGOS_INT32 = 6,
  FLAGOS_INT64 = 7,
  FLAGOS_STRING = 8,
  FLAGOS_BOOL = 9,
  FLAGOS_FLOAT16 = 10,
  FLAGOS_FLOAT64 = 11,
  FLAGOS_UINT32 = 12,
  FLAGOS_UINT64 = 13,
  FLAGOS_COMPLEX64 = 14,
  FLAGOS_COMPLEX128 = 15,
  FLAGOS_BFLOAT16 = 16,
  FLAGOS_FLOAT8E4M3FN = 17,
  FLAGOS_FLOAT8E4M3FNUZ = 18,
  FLAGOS_FLOAT8E5M2 = 19,
  FLAGOS_FLOAT8E5M2FNUZ = 20,
  FLAGOS_UINT4 = 21,
  FLAGOS_INT4 = 22,
  FLAGOS_FLOAT4E2M1 = 23,
  FLAGOS_FLOAT8E8M0 = 24,
  FLAGOS_UINT2 = 25,
  FLAGOS_INT2 = 26,
  FLAGOS_DTYPE_COUNT = 27
} flagos_dtype_t;

/* Bytes one element takes in FlagOS memory. Sub-byte types (int4, uint4, float4,
 * int2, uint2) take one byte each: they are unpacked on load and packed only when
 * written to ONNX files. Strings are stored as `char *` (owned, NUL-terminated). */
FLAGOS_API size_t flagos_dtype_size(flagos_dtype_t dt);
/* Short name used in FlagIR text and messages: "f32", "bf16", "f8e4m3fn", "i4", "str"... */
FLAGOS_API const char *flagos_dtype_name(flagos_dtype_t dt);
/* Inverse of flagos_dtype_name; FLAGOS_UNDEFINED when unknown. */
FLAGOS_API flagos_dtype_t flagos_dtype_from_name(const char *name);
/* ONNX's own spelling ("float", "bfloat16", "float8e4m3fn"...), for messages. */
FLAGOS_API const char *flagos_dtype_onnx_name(flagos_dtype_t dt);
FLAGOS_API int flagos_dtype_is_float(flagos_dtype_t dt);   /* any floating type, float8/4 included */
FLAGOS_API int flagos_dtype_is_int(flagos_dtype_t dt);     /* signed or unsigned integer, bool excluded */
FLAGOS_API int flagos_dtype_is_signed(flagos_dtype_t dt);

#ifdef __cplusplus
}
#endif
#endif
