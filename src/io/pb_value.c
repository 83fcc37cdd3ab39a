/* TensorProto / SequenceProto / OptionalProto bytes -> flagos_value_t.
 *
 * SequenceProto and OptionalProto live in onnx-data.proto, which Debian does not
 * ship, so their few fields are read here straight from the wire format:
 *   SequenceProto: 1 name, 2 elem_type, 3 tensor_values, 4 sparse_tensor_values,
 *                  5 sequence_values, 6 map_values, 7 optional_values
 *   OptionalProto: 1 name, 2 elem_type, 3 tensor_value, 4 sparse_tensor_value,
 *                  5 sequence_value, 6 map_value, 7 optional_value
 * elem_type: 0 undefined, 1 tensor, 2 sparse tensor, 3 sequence, 4 map, 5 optional. */
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx_import.h"
#include "io/value_io.h"

#define MAX_DEPTH 64

typedef struct {
  const uint8_t *p, *end;
} wire_t;

static bool varint(wire_t *w, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && w->p < w->end; shift += 7) {
    uint8_t b = *w->p++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

/* Reads the next field; for length-delimited ones, body and len give the bytes. */
static flagos_status_t next_field(wire_t *w, uint32_t *field, uint64_t *ival, const uint8_t **body, size_t *len) {
  uint64_t tag;
  if (!varint(w, &tag) || tag >> 3 == 0 || tag >> 3 > UINT32_MAX) goto bad;
  *field = (uint32_t)(tag >> 3);
  *body = NULL;
  *len = 0;
  switch (tag & 7) {
  case 0:
    if (!varint(w, ival)) goto bad;
    return NULL;
  case 1:
  case 5: {
    size_t n = (tag & 7) == 1 ? 8 : 4;
    if ((size_t)(w->end - w->p) < n) goto bad;
    w->p += n;
    return NULL;
  }
  case 2: {
    uint64_t n;
    if (!varint(w, &n) || n > (uint64_t)(w->end - w->p)) goto bad;
    *body = w->p;
    *len = (size_t)n;
    w->p += n;
    return NULL;
  }
  default: break;
  }
bad:
  return FL_ERR(FLAGOS_ERR_CORRUPT, "protobuf parse failed (truncated or corrupted)");
}

static flagos_status_t decode_tensor(const void *data, size_t size, flagos_tensor_t *out) {
  fir_model_t *m = fir_model_create();
  fir_tensor_t *t;
  flagos_status_t st = onnx_decode_tensor(m, data, size, &t);
  if (!st) st = io_tensor_from_fir(t, out);
  fir_model_destroy(m);
  return st;
}

static const fir_type_t *elem_of(const fir_type_t *t, fir_type_kind_t kind) {
  return t && t->kind == kind ? t->elem : NULL;
}

static flagos_dtype_t tensor_dtype_of(const fir_type_t *t) {
  while (t && t->kind != FIR_TYPE_TENSOR) t = t->elem;
  return t ? t->dtype : FLAGOS_UNDEFINED;
}

static flagos_status_t decode(const uint8_t *data, size_t size, const fir_type_t *expected, int kind, int depth,
                              flagos_value_t *out);

/* Appends an item to a sequence value. */
static flagos_value_t *push_item(flagos_value_t *v) {
  flagos_value_t *items = realloc(v->items, sizeof(*items) * (size_t)(v->n_items + 1));
  if (!items) return NULL;
  v->items = items;
  memset(&items[v->n_items], 0, sizeof(*items));
  return &items[v->n_items++];
}

static flagos_status_t decode_sequence(const uint8_t *data, size_t size, const fir_type_t *expected, int depth,
                                       flagos_value_t *out) {
  out->kind = FLAGOS_VALUE_SEQUENCE;
  out->elem_dtype = tensor_dtype_of(elem_of(expected, FIR_TYPE_SEQUENCE));
  wire_t w = {data, data + size};
  while (w.p < w.end) {
    uint32_t f;
    uint64_t iv = 0;
    const uint8_t *body;
    size_t len;
    FL_TRY(next_field(&w, &f, &iv, &body, &len));
    if (f == 1 || f == 2) continue; /* name; elem_type follows from the fields present */
    if (f == 4 || f == 6)
      return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "sequences of %s are not supported", f == 4 ? "sparse tensors" : "maps");
    if (f != 3 && f != 5 && f != 7) continue;
    if (!body) return FL_ERR(FLAGOS_ERR_CORRUPT, "SequenceProto field %u has the wrong wire type", f);
    flagos_value_t *item = push_item(out);
    if (!item) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    int kind = f == 3 ? FLAGOS_VALUE_TENSOR : f == 5 ? FLAGOS_VALUE_SEQUENCE : FLAGOS_VALUE_OPTIONAL;
    FL_TRY(flagos_status_wrap(decode(body, len, elem_of(expected, FIR_TYPE_SEQUENCE), kind, depth + 1, item),
                              "sequence item %d", out->n_items - 1));
    if (kind == FLAGOS_VALUE_TENSOR && out->n_items == 1) out->elem_dtype = item->tensor.dtype;
  }
  return NULL;
}

static flagos_status_t decode_optional(const uint8_t *data, size_t size, const fir_type_t *expected, int depth,
                                       flagos_value_t *out) {
  out->kind = FLAGOS_VALUE_OPTIONAL;
  out->elem_dtype = tensor_dtype_of(elem_of(expected, FIR_TYPE_OPTIONAL));
  wire_t w = {data, data + size};
  while (w.p < w.end) {
    uint32_t f;
    uint64_t iv = 0;
    const uint8_t *body;
    size_t len;
    FL_TRY(next_field(&w, &f, &iv, &body, &len));
    if (f == 4 || f == 6)
      return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "optionals holding %s are not supported",
                    f == 4 ? "sparse tensors" : "maps");
    if (f != 3 && f != 5 && f != 7) continue;
    if (!body) return FL_ERR(FLAGOS_ERR_CORRUPT, "OptionalProto field %u has the wrong wire type", f);
    if (out->present) return FL_ERR(FLAGOS_ERR_CORRUPT, "OptionalProto holds more than one value");
    out->present = true;
    const fir_type_t *inner = elem_of(expected, FIR_TYPE_OPTIONAL);
    if (f == 3) {
      FL_TRY(decode_tensor(body, len, &out->tensor));
      out->elem_dtype = out->tensor.dtype;
      continue;
    }
    flagos_value_t *item = push_item(out);
    if (!item) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    FL_TRY(decode(body, len, inner, f == 5 ? FLAGOS_VALUE_SEQUENCE : FLAGOS_VALUE_OPTIONAL, depth + 1, item));
    if (item->elem_dtype) out->elem_dtype = item->elem_dtype;
  }
  return NULL;
}

static flagos_status_t decode(const uint8_t *data, size_t size, const fir_type_t *expected, int kind, int depth,
                              flagos_value_t *out) {
  memset(out, 0, sizeof(*out));
  if (depth > MAX_DEPTH) return FL_ERR(FLAGOS_ERR_CORRUPT, "values nested more than %d levels deep", MAX_DEPTH);
  switch (kind) {
  case FLAGOS_VALUE_SEQUENCE: return decode_sequence(data, size, expected, depth, out);
  case FLAGOS_VALUE_OPTIONAL: return decode_optional(data, size, expected, depth, out);
  default: out->kind = FLAGOS_VALUE_TENSOR; return decode_tensor(data, size, &out->tensor);
  }
}

flagos_status_t io_decode_pb_value(const void *data, size_t size, const fir_type_t *expected, flagos_value_t *out) {
  int kind = FLAGOS_VALUE_TENSOR;
  if (expected && expected->kind == FIR_TYPE_SEQUENCE)
    kind = FLAGOS_VALUE_SEQUENCE;
  else if (expected && expected->kind == FIR_TYPE_OPTIONAL)
    kind = FLAGOS_VALUE_OPTIONAL;
  else if (expected && expected->kind == FIR_TYPE_MAP)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "map values are not supported");
  static const uint8_t empty[1];
  flagos_status_t st = decode(data ? data : empty, data ? size : 0, expected, kind, 0, out);
  if (st) flagos_value_clear(out);
  return st;
}
