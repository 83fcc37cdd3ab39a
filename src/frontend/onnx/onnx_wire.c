/* A pre-pass over protobuf wire bytes that only measures message nesting.
 * protobuf-c has no recursion limit of its own. */
#include "frontend/onnx/onnx_internal.h"

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

/* Returns false only when nesting goes past the limit; malformed bytes end the
 * scan quietly because protobuf-c reports them better. */
static bool scan(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end, int depth) {
  if (depth > ONNX_MAX_NESTING) return false;
  while (p < end) {
    uint64_t tag, len;
    if (!read_varint(&p, end, &tag)) return true;
    switch (tag & 7) {
    case 0:
      if (!read_varint(&p, end, &len)) return true;
      break;
    case 1:
      if ((size_t)(end - p) < 8) return true;
      p += 8;
      break;
    case 5:
      if ((size_t)(end - p) < 4) return true;
      p += 4;
      break;
    case 2: {
      if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return true;
      const ProtobufCFieldDescriptor *f =
          tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3)) : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && !scan(f->descriptor, p, p + len, depth + 1)) return false;
      p += len;
      break;
    }
    default: return true;
    }
  }
  return true;
}

flagos_status_t onnx_wire_check_depth(const ProtobufCMessageDescriptor *desc, const void *data, size_t size,
                                      const char *what) {
  const uint8_t *p = data;
  if (!scan(desc, p, p + size, 0))
    return FL_ERR(FLAGOS_ERR_CORRUPT, "'%s' nests messages more than %d levels deep (corrupted or hostile file)", what,
                  ONNX_MAX_NESTING);
  return NULL;
}
