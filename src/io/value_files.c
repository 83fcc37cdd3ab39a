/* Values as files: the layout io_save_value writes and io_load_value reads back
 * (README.md in this folder). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/value_io.h"

char *io_escape_name(const char *name) {
  if (!name || !*name) return NULL;
  fl_buf_t b = {0};
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
    fl_buf_puts(&b, name[1] ? "%2E%2E" : "%2E");
    return fl_buf_take(&b);
  }
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
    if (*p == '%' || *p == '/' || *p == '\\' || *p < 0x20 || *p == 0x7f)
      fl_buf_printf(&b, "%%%02X", *p);
    else
      fl_buf_putc(&b, (char)*p);
  }
  return fl_buf_take(&b);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---- loading ---- */

static const fir_type_t *tensor_type_of(const fir_type_t *t) {
  while (t && t->kind != FIR_TYPE_TENSOR) t = t->elem;
  return t;
}

/* .npy files carry types NumPy lacks as raw bits: take them as the expected dtype. */
static void adopt_raw_bits(flagos_tensor_t *t, const fir_type_t *expected) {
  const fir_type_t *et = tensor_type_of(expected);
  if (!et) return;
  flagos_dtype_t want = et->dtype;
  if (want == FLAGOS_BFLOAT16 && t->dtype == FLAGOS_UINT16) {
    t->dtype = want;
    return;
  }
  bool byte_type = want == FLAGOS_FLOAT8E4M3FN || want == FLAGOS_FLOAT8E4M3FNUZ || want == FLAGOS_FLOAT8E5M2 ||
                   want == FLAGOS_FLOAT8E5M2FNUZ || want == FLAGOS_FLOAT8E8M0 || want == FLAGOS_FLOAT4E2M1 ||
                   want == FLAGOS_INT4 || want == FLAGOS_UINT4 || want == FLAGOS_INT2 || want == FLAGOS_UINT2;
  if (!byte_type || t->dtype != FLAGOS_UINT8) return;
  t->dtype = want;
  uint8_t *d = t->data;
  size_t n = (size_t)flagos_tensor_numel(t);
  unsigned bits = want == FLAGOS_INT4 || want == FLAGOS_UINT4 || want == FLAGOS_FLOAT4E2M1 ? 4
                  : want == FLAGOS_INT2 || want == FLAGOS_UINT2                            ? 2
                                                                                           : 8;
  bool sign = want == FLAGOS_INT4 || want == FLAGOS_INT2;
  unsigned mask = (1u << bits) - 1, half = 1u << (bits - 1);
  for (size_t i = 0; bits < 8 && i < n; i++) {
    unsigned v = d[i] & mask;
    d[i] = sign ? (uint8_t)(int8_t)((int)(v ^ half) - (int)half) : (uint8_t)v;
  }
}

static flagos_status_t load_any(const char *path, const fir_type_t *expected, int depth, flagos_value_t *out);

static flagos_status_t load_folder(const char *path, const fir_type_t *expected, int depth, flagos_value_t *out) {
  out->kind = FLAGOS_VALUE_SEQUENCE;
  const fir_type_t *elem = expected && expected->kind == FIR_TYPE_SEQUENCE ? expected->elem : NULL;
  out->elem_dtype = tensor_type_of(elem) ? tensor_type_of(elem)->dtype : FLAGOS_UNDEFINED;
  static const char *const k_ext[] = {".npy", ".pb", "", ".none"};
  for (int i = 0;; i++) {
    char *found = NULL;
    for (size_t k = 0; k < FL_ARRAY_LEN(k_ext) && !found; k++) {
      struct stat sb;
      fl_buf_t b = {0};
      fl_buf_printf(&b, "%s/%d%s", path, i, k_ext[k]);
      if (stat(b.data, &sb) == 0)
        found = fl_buf_take(&b);
      else
        fl_buf_free(&b);
    }
    if (!found) return NULL;
    flagos_value_t *items = realloc(out->items, sizeof(*items) * (size_t)(out->n_items + 1));
    if (!items) {
      free(found);
      return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    out->items = items;
    memset(&items[out->n_items], 0, sizeof(*items));
    flagos_status_t st = load_any(found, elem, depth + 1, &items[out->n_items++]);
    free(found);
    if (st) return st;
    if (items[out->n_items - 1].kind == FLAGOS_VALUE_TENSOR && out->elem_dtype == FLAGOS_UNDEFINED)
      out->elem_dtype = items[out->n_items - 1].tensor.dtype;
  }
}

static flagos_status_t load_any(const char *path, const fir_type_t *expected, int depth, flagos_value_t *out) {
  memset(out, 0, sizeof(*out));
  if (depth > 64) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "'%s': folders nested too deep", path);
  struct stat sb;
  if (stat(path, &sb) != 0)
    return FL_ERR(errno == ENOENT ? FLAGOS_ERR_NOT_FOUND : FLAGOS_ERR_IO, "cannot open '%s': %s", path,
                  strerror(errno));
  if (S_ISDIR(sb.st_mode)) return load_folder(path, expected, depth, out);
  if (ends_with(path, ".none")) {
    out->kind = FLAGOS_VALUE_OPTIONAL;
    out->present = false;
    const fir_type_t *et = tensor_type_of(expected);
    out->elem_dtype = et ? et->dtype : FLAGOS_UNDEFINED;
    return NULL;
  }
  void *data;
  size_t size;
  FL_TRY(fl_read_file(path, &data, &size));
  flagos_status_t st;
  if (ends_with(path, ".npy")) {
    flagos_tensor_t t;
    st = io_read_npy(data, size, &t);
    if (!st) {
      adopt_raw_bits(&t, expected);
      if (expected && expected->kind == FIR_TYPE_OPTIONAL) {
        out->kind = FLAGOS_VALUE_OPTIONAL;
        out->present = true;
        out->elem_dtype = t.dtype;
      }
      out->tensor = t;
    }
  } else {
    st = io_decode_pb_value(data, size, expected, out);
  }
  free(data);
  return flagos_status_wrap(st, "'%s'", path);
}

flagos_status_t io_load_value(const char *path, const fir_type_t *expected, flagos_value_t *out) {
  flagos_status_t st = load_any(path, expected, 0, out);
  if (st) flagos_value_clear(out);
  return st;
}

/* ---- saving ---- */

static flagos_status_t save(const char *dir, const char *name, const flagos_value_t *v, int depth) {
  if (depth > 64) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "value '%s' is nested too deep", name);
  char *esc = io_escape_name(name);
  if (!esc) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cannot save a value with an empty name");
  fl_buf_t path = {0};
  fl_buf_printf(&path, "%s/%s", dir, esc);
  free(esc);
  flagos_status_t st = NULL;
  switch (v->kind) {
  case FLAGOS_VALUE_TENSOR:
    fl_buf_puts(&path, ".npy");
    st = io_write_npy(path.data, &v->tensor);
    break;
  case FLAGOS_VALUE_SEQUENCE:
    st = fl_mkdirs(path.data);
    for (int i = 0; !st && i < v->n_items; i++) {
      char idx[16];
      snprintf(idx, sizeof idx, "%d", i);
      st = save(path.data, idx, &v->items[i], depth + 1);
    }
    break;
  case FLAGOS_VALUE_OPTIONAL:
    if (!v->present) {
      fl_buf_puts(&path, ".none");
      st = fl_write_file(path.data, "", 0);
    } else if (v->n_items > 0) {
      st = save(dir, name, &v->items[0], depth + 1);
    } else {
      fl_buf_puts(&path, ".npy");
      st = io_write_npy(path.data, &v->tensor);
    }
    break;
  default: st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "value '%s' has unknown kind %d", name, (int)v->kind);
  }
  fl_buf_free(&path);
  return st;
}

flagos_status_t io_save_value(const char *dir, const char *name, const flagos_value_t *v) {
  FL_TRY(fl_mkdirs(dir));
  return save(dir, name, v, 0);
}
