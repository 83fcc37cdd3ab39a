/* Running a model written as FlagIR text, for the unit tests: compile it for a
 * target, open a session on a device, make an input tensor. Include after
 * check.h. */
#ifndef FLAGOS_TESTS_RUN_TEXT_H
#define FLAGOS_TESTS_RUN_TEXT_H
#include <string.h>

#include "bundle/bundle.h"
#include "compiler/compiler.h"
#include "flagos/flagos.h"
#include "ir/ir.h"
#include "runtime/runtime.h"

/* The bundle of text compiled for target and a session on device; on an
 * error both may be NULL (close them with text_close either way). */
static inline flagos_status_t text_session(const char *text, const char *target, const char *device,
                                           flagos_bundle_t **b, flagos_session_t **s) {
  *b = NULL;
  *s = NULL;
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(text, strlen(text), &m);
  void *img = NULL;
  size_t len = 0;
  flagos_compile_options_t o = {.targets = target};
  if (!st) st = compiler_build_bundle(m, &o, &img, &len);
  if (m) fir_model_destroy(m);
  bundle_file_t *f = NULL;
  if (!st) st = bundle_file_from_memory(img, len, true, &f);
  if (!st) st = rt_bundle_from_file(f, b);
  flagos_session_options_t so = {.device = device};
  if (!st) st = flagos_session_create(*b, &so, s);
  return st;
}

static inline void text_close(flagos_bundle_t *b, flagos_session_t *s) {
  if (s) flagos_session_destroy(s);
  if (b) flagos_bundle_close(b);
}

/* A tensor of dtype dt (2 or 4 bytes an element) over data. */
static inline flagos_value_t tensor_of(flagos_dtype_t dt, void *data, int rank, const int64_t *dims) {
  flagos_value_t v = {.kind = FLAGOS_VALUE_TENSOR};
  v.tensor.dtype = dt;
  v.tensor.rank = rank;
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)(v.tensor.dims[i] = dims[i]);
  v.tensor.data = data;
  v.tensor.nbytes = n * flagos_dtype_size(dt);
  return v;
}

#endif
