/* TensorProto and SparseTensorProto -> fir_tensor_t.
 *
 * ONNX spreads tensor data over many fields (see onnx.proto, TensorProto): raw_data
 * (little-endian, sub-byte types packed), typed repeated fields where narrow types
 * ride in int32_data, or an external file. FlagOS memory keeps one element per
 * byte for sub-byte types, so packed data is unpacked here, signed types
 * sign-extended. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx_internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "raw_data is little-endian; a big-endian host needs byte swaps");

const char *onnx_show(const char *name) { return name && *name ? name : "(unnamed)"; }

flagos_status_t onnx_dtype_check(int32_t dt, const char *what, flagos_dtype_t *out) {
  if (dt > FLAGOS_UNDEFINED && dt < FLAGOS_DTYPE_COUNT) {
    *out = (flagos_dtype_t)dt;
    return NULL;
  }
  if (dt == 27 || dt == 28)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s has element type %d (%s), which FlagOS does not support", what, dt,
                  dt == 27 ? "float6e2m3" : "float6e3m2");
  if (dt == 0) return FL_ERR(FLAGOS_ERR_CORRUPT, "%s has no element type (UNDEFINED)", what);
  return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s has unknown element type %d", what, dt);
}

/* Bits one element takes in ONNX's packed (file) form. */
static size_t packed_bits(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_INT4:
  case FLAGOS_UINT4:
  case FLAGOS_FLOAT4E2M1: return 4;
  case FLAGOS_INT2:
  case FLAGOS_UINT2: return 2;
  default: return flagos_dtype_size(dt) * 8;
  }
}

static flagos_status_t check_dims(const char *what, size_t n_dims, const int64_t *dims, int64_t *numel) {
  if (n_dims > (1u << 20)) return FL_ERR(FLAGOS_ERR_CORRUPT, "%s has %zu dims", what, n_dims);
  /* Bound the element count so that every byte size computed from it fits. */
  const int64_t limit = INT64_C(1) << 59;
  int64_t n = 1;
  for (size_t i = 0; i < n_dims; i++) {
    if (dims[i] < 0) return FL_ERR(FLAGOS_ERR_CORRUPT, "%s has negative dim %lld", what, (long long)dims[i]);
    if (dims[i] > 0 && n > limit / dims[i])
      return FL_ERR(FLAGOS_ERR_CORRUPT, "%s has dims whose element count overflows", what);
    n *= dims[i];
  }
  *numel = n;
  return NULL;
}

static void describe(fl_buf_t *b, flagos_dtype_t dt, size_t n_dims, const int64_t *dims) {
  fl_buf_printf(b, "%s[", flagos_dtype_onnx_name(dt));
  for (size_t i = 0; i < n_dims; i++) fl_buf_printf(b, "%s%lld", i ? "," : "", (long long)dims[i]);
  fl_buf_putc(b, ']');
}

static flagos_status_t size_mismatch(const Onnx__TensorProto *tp, flagos_dtype_t dt, const char *field, size_t have,
                                     size_t need, const char *unit) {
  fl_buf_t b = {0};
  describe(&b, dt, tp->n_dims, tp->dims);
  flagos_status_t st = FL_ERR(FLAGOS_ERR_CORRUPT, "tensor '%s' (%s) holds %zu %s in %s but its dims need %zu",
                              onnx_show(tp->name), b.data, have, unit, field, need);
  fl_buf_free(&b);
  return st;
}

/* Unpacks ONNX's packed form (raw bytes, or int32_data narrowed to bytes) into one
 * element per byte; `src` holds at least ceil(n * packed_bits / 8) bytes. */
static void unpack_sub_byte(flagos_dtype_t dt, const uint8_t *src, int64_t n, uint8_t *dst) {
  bool sign = dt == FLAGOS_INT4 || dt == FLAGOS_INT2;
  if (packed_bits(dt) == 4) {
    for (int64_t i = 0; i < n; i++) {
      unsigned v = (src[i >> 1] >> ((i & 1) * 4)) & 15u;
      dst[i] = sign ? (uint8_t)(int8_t)((int)(v ^ 8u) - 8) : (uint8_t)v;
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      unsigned v = (src[i >> 2] >> ((i & 3) * 2)) & 3u;
      dst[i] = sign ? (uint8_t)(int8_t)((int)(v ^ 2u) - 2) : (uint8_t)v;
    }
  }
}

static bool is_sub_byte(flagos_dtype_t dt) { return packed_bits(dt) < 8; }

/* `ext` is the opened external file, positioned at the data, or NULL for raw_data. */
static flagos_status_t from_raw(const Onnx__TensorProto *tp, fir_tensor_t *t, FILE *ext) {
  size_t need = (size_t)(((uint64_t)t->numel * packed_bits(t->dtype) + 7) / 8);
  bool direct = !is_sub_byte(t->dtype) && t->dtype != FLAGOS_BOOL;
  const uint8_t *src = tp->raw_data.data;
  void *tmp = NULL;
  if (ext) {
    void *dst = t->data;
    if (!direct) {
      dst = tmp = malloc(need ? need : 1);
      if (!tmp)
        return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for tensor '%s'", need, onnx_show(tp->name));
    }
    if (need && fread(dst, 1, need, ext) != need) {
      free(tmp);
      return FL_ERR(FLAGOS_ERR_IO, "cannot read the external data of tensor '%s'", onnx_show(tp->name));
    }
    if (direct) return NULL;
    src = tmp;
  }
  if (is_sub_byte(t->dtype))
    unpack_sub_byte(t->dtype, src, t->numel, t->data);
  else if (t->dtype == FLAGOS_BOOL)
    for (int64_t i = 0; i < t->numel; i++) ((uint8_t *)t->data)[i] = src[i] != 0;
  else if (need)
    memcpy(t->data, src, need);
  free(tmp);
  return NULL;
}

/* Typed repeated fields. Narrow types ride in int32_data, one element per entry
 * except the sub-byte types, whose entries each hold one packed byte. */
static flagos_status_t from_fields(onnx_ctx_t *c, const Onnx__TensorProto *tp, fir_tensor_t *t) {
  size_t n = (size_t)t->numel;
  switch (t->dtype) {
  case FLAGOS_STRING:
    if (tp->n_string_data != n) return size_mismatch(tp, t->dtype, "string_data", tp->n_string_data, n, "values");
    for (size_t i = 0; i < n; i++) {
      ((char **)t->data)[i] = fl_arena_strndup(
          c->m->arena, tp->string_data[i].data ? (const char *)tp->string_data[i].data : "", tp->string_data[i].len);
      t->string_lens[i] = tp->string_data[i].len;
    }
    return NULL;
  case FLAGOS_FLOAT32:
  case FLAGOS_COMPLEX64: {
    size_t k = t->dtype == FLAGOS_COMPLEX64 ? 2 * n : n;
    if (tp->n_float_data != k) return size_mismatch(tp, t->dtype, "float_data", tp->n_float_data, k, "values");
    if (k) memcpy(t->data, tp->float_data, k * sizeof(float));
    return NULL;
  }
  case FLAGOS_FLOAT64:
  case FLAGOS_COMPLEX128: {
    size_t k = t->dtype == FLAGOS_COMPLEX128 ? 2 * n : n;
    if (tp->n_double_data != k) return size_mismatch(tp, t->dtype, "double_data", tp->n_double_data, k, "values");
    if (k) memcpy(t->data, tp->double_data, k * sizeof(double));
    return NULL;
  }
  case FLAGOS_INT64:
    if (tp->n_int64_data != n) return size_mismatch(tp, t->dtype, "int64_data", tp->n_int64_data, n, "values");
    if (n) memcpy(t->data, tp->int64_data, n * sizeof(int64_t));
    return NULL;
  case FLAGOS_UINT64:
  case FLAGOS_UINT32:
    if (tp->n_uint64_data != n) return size_mismatch(tp, t->dtype, "uint64_data", tp->n_uint64_data, n, "values");
    for (size_t i = 0; i < n; i++) {
      if (t->dtype == FLAGOS_UINT64)
        ((uint64_t *)t->data)[i] = tp->uint64_data[i];
      else
        ((uint32_t *)t->data)[i] = (uint32_t)tp->uint64_data[i];
    }
    return NULL;
  default: break;
  }
  /* Everything else lives in int32_data. */
  if (is_sub_byte(t->dtype)) {
    size_t need = (size_t)(((uint64_t)n * packed_bits(t->dtype) + 7) / 8);
    if (tp->n_int32_data != need)
      return size_mismatch(tp, t->dtype, "int32_data (one packed byte each)", tp->n_int32_data, need, "values");
    uint8_t *bytes = malloc(need ? need : 1);
    if (!bytes)
      return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for tensor '%s'", need, onnx_show(tp->name));
    for (size_t i = 0; i < need; i++) bytes[i] = (uint8_t)tp->int32_data[i];
    unpack_sub_byte(t->dtype, bytes, t->numel, t->data);
    free(bytes);
    return NULL;
  }
  if (tp->n_int32_data != n) return size_mismatch(tp, t->dtype, "int32_data", tp->n_int32_data, n, "values");
  for (size_t i = 0; i < n; i++) {
    int32_t v = tp->int32_data[i];
    switch (flagos_dtype_size(t->dtype)) {
    case 1: ((uint8_t *)t->data)[i] = t->dtype == FLAGOS_BOOL ? (uint8_t)(v != 0) : (uint8_t)v; break;
    case 2: ((uint16_t *)t->data)[i] = (uint16_t)v; break;
    default: ((int32_t *)t->data)[i] = v; break;
    }
  }
  return NULL;
}

flagos_status_t onnx_tensor_convert(onnx_ctx_t *c, const Onnx__TensorProto *tp, fir_tensor_t **out) {
  *out = NULL;
  char what[300];
  snprintf(what, sizeof what, "tensor '%s'", onnx_show(tp->name));
  flagos_dtype_t dt;
  FL_TRY(onnx_dtype_check(tp->has_data_type ? tp->data_type : 0, what, &dt));
  int64_t numel;
  FL_TRY(check_dims(what, tp->n_dims, tp->dims, &numel));
  if (tp->segment)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s is a segment of a larger tensor, which FlagOS does not support", what);
  bool external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  bool raw = external || tp->has_raw_data;
  size_t need = (size_t)(((uint64_t)numel * packed_bits(dt) + 7) / 8);
  if (raw && dt == FLAGOS_STRING)
    return FL_ERR(FLAGOS_ERR_CORRUPT, "%s of type string keeps its data in %s; strings must use string_data", what,
                  external ? "an external file" : "raw_data");
  if (!raw && numel > 0) {
    /* The values sit in repeated fields protobuf-c already holds in memory, so
     * their count bounds the allocation; check it before allocating. */
    size_t have = tp->n_float_data + tp->n_int32_data + tp->n_int64_data + tp->n_double_data + tp->n_uint64_data +
                  tp->n_string_data;
    if (have == 0) return size_mismatch(tp, dt, "any data field", 0, (size_t)numel, "values");
    if ((uint64_t)numel > (uint64_t)have * 4 + 8)
      return size_mismatch(tp, dt, "its data fields", have, (size_t)numel, "values");
  }
  if (tp->has_raw_data && !external && tp->raw_data.len != need)
    return size_mismatch(tp, dt, "raw_data", tp->raw_data.len, need, "bytes");
  FILE *ext = NULL;
  if (external) FL_TRY(onnx_external_open(c, tp, need, &ext));
  fir_tensor_t *t = fir_tensor_create(c->m, dt, (int)tp->n_dims, tp->dims);
  t->name = fl_arena_strdup(c->m->arena, tp->name ? tp->name : "");
  flagos_status_t st = raw ? from_raw(tp, t, ext) : from_fields(c, tp, t);
  if (ext) fclose(ext);
  if (st) return st;
  *out = t;
  return NULL;
}

/* Flat index of sparse entry k, or -1 when out of range. */
static int64_t sparse_index(const fir_tensor_t *idx, int64_t k, const int64_t *dims, int rank, int64_t numel) {
  if (idx->rank == 1) {
    int64_t i = fl_load_as_int64(idx->dtype, idx->data, (size_t)k);
    return i >= 0 && i < numel ? i : -1;
  }
  int64_t flat = 0;
  for (int d = 0; d < rank; d++) {
    int64_t i = fl_load_as_int64(idx->dtype, idx->data, (size_t)(k * rank + d));
    if (i < 0 || i >= dims[d]) return -1;
    flat = flat * dims[d] + i;
  }
  return flat;
}

flagos_status_t onnx_sparse_convert(onnx_ctx_t *c, const Onnx__SparseTensorProto *sp, fir_tensor_t **out) {
  *out = NULL;
  if (!sp->values) return FL_ERR(FLAGOS_ERR_CORRUPT, "sparse tensor without values");
  const char *name = onnx_show(sp->values->name);
  if (!sp->indices) return FL_ERR(FLAGOS_ERR_CORRUPT, "sparse tensor '%s' has no indices", name);
  fir_tensor_t *vals, *idx;
  FL_TRY(flagos_status_wrap(onnx_tensor_convert(c, sp->values, &vals), "values of sparse tensor '%s'", name));
  FL_TRY(flagos_status_wrap(onnx_tensor_convert(c, sp->indices, &idx), "indices of sparse tensor '%s'", name));
  char what[300];
  snprintf(what, sizeof what, "sparse tensor '%s'", name);
  int64_t numel;
  FL_TRY(check_dims(what, sp->n_dims, sp->dims, &numel));
  int rank = (int)sp->n_dims;
  size_t esize = flagos_dtype_size(vals->dtype);
  if ((uint64_t)numel > ONNX_MAX_DENSE_BYTES / esize)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s would take more than %zu bytes once densified", what,
                  ONNX_MAX_DENSE_BYTES);
  if (vals->rank != 1) return FL_ERR(FLAGOS_ERR_CORRUPT, "%s: values must be 1-D, not rank %d", what, vals->rank);
  int64_t nnz = vals->numel;
  if (!flagos_dtype_is_int(idx->dtype)) return FL_ERR(FLAGOS_ERR_CORRUPT, "%s: indices must be integers", what);
  bool linear = idx->rank == 1 && idx->numel == nnz;
  bool coords = idx->rank == 2 && idx->dims[0] == nnz && idx->dims[1] == rank;
  if (!linear && !coords)
    return FL_ERR(FLAGOS_ERR_CORRUPT, "%s: indices must have shape [%lld] or [%lld, %d]", what, (long long)nnz,
                  (long long)nnz, rank);
  fir_tensor_t *t = fir_tensor_create(c->m, vals->dtype, rank, sp->dims);
  t->name = vals->name;
  if (t->dtype == FLAGOS_STRING)
    for (int64_t i = 0; i < numel; i++) ((const char **)t->data)[i] = "";
  for (int64_t k = 0; k < nnz; k++) {
    int64_t at = sparse_index(idx, k, sp->dims, rank, numel);
    if (at < 0) return FL_ERR(FLAGOS_ERR_CORRUPT, "%s: index of entry %lld is out of range", what, (long long)k);
    memcpy((char *)t->data + (size_t)at * esize, (const char *)vals->data + (size_t)k * esize, esize);
    if (t->dtype == FLAGOS_STRING) t->string_lens[at] = vals->string_lens[k];
  }
  *out = t;
  return NULL;
}
