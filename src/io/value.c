/* Ownership of flagos_value_t: tensor data is malloc'ed; a string tensor is a
 * malloc'ed `char **` whose strings are malloc'ed one by one; items are a
 * malloc'ed array of values owned the same way. */
#include <stdlib.h>
#include <string.h>

#include "io/value_io.h"

int64_t flagos_tensor_numel(const flagos_tensor_t *t) {
  if (!t || t->rank < 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < t->rank && i < FLAGOS_MAX_RANK; i++) n *= t->dims[i];
  return n;
}

static void tensor_clear(flagos_tensor_t *t) {
  if (t->dtype == FLAGOS_STRING && t->data) {
    /* nbytes says how many pointers were allocated (FlagOS allocates them zeroed
     * before filling, so a half-built value clears safely); the dims are the
     * fallback for values built by callers who left nbytes at 0. */
    size_t n = t->nbytes ? t->nbytes / sizeof(char *) : (size_t)flagos_tensor_numel(t);
    for (size_t i = 0; i < n; i++) free(((char **)t->data)[i]);
  }
  free(t->data);
}

void flagos_value_clear(flagos_value_t *v) {
  if (!v) return;
  tensor_clear(&v->tensor);
  for (int i = 0; i < v->n_items && v->items; i++) flagos_value_clear(&v->items[i]);
  free(v->items);
  memset(v, 0, sizeof(*v));
}

flagos_status_t io_tensor_from_fir(const fir_tensor_t *src, flagos_tensor_t *out) {
  memset(out, 0, sizeof(*out));
  if (src->rank > FLAGOS_MAX_RANK || src->rank < 0)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "tensor '%s' has rank %d; FlagOS values have at most %d dims",
                  src->name ? src->name : "", src->rank, FLAGOS_MAX_RANK);
  if (!src->data && src->numel > 0)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "tensor '%s' holds no data", src->name ? src->name : "");
  out->dtype = src->dtype;
  out->rank = src->rank;
  for (int i = 0; i < src->rank; i++) out->dims[i] = src->dims[i];
  size_t n = (size_t)src->numel, bytes = n * flagos_dtype_size(src->dtype);
  out->data = calloc(bytes ? bytes : 1, 1);
  if (!out->data) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes", bytes);
  out->nbytes = bytes;
  if (src->dtype != FLAGOS_STRING) {
    if (bytes) memcpy(out->data, src->data, bytes);
    return NULL;
  }
  char **dst = out->data;
  for (size_t i = 0; i < n; i++) {
    const char *s = ((char *const *)src->data)[i];
    size_t len = src->string_lens ? src->string_lens[i] : strlen(s);
    dst[i] = malloc(len + 1);
    if (!dst[i]) {
      tensor_clear(out);
      memset(out, 0, sizeof(*out));
      return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate a string of %zu bytes", len);
    }
    if (len) memcpy(dst[i], s, len);
    dst[i][len] = 0;
  }
  return NULL;
}
