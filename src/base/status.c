#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

struct flagos_status_s {
  flagos_code_t code;
  char *msg;
};

static char *vformat(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) n = 0;
  char *s = malloc((size_t)n + 1);
  if (!s) return NULL;
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

flagos_status_t flagos_status_new(flagos_code_t code, const char *fmt, ...) {
  flagos_status_t st = calloc(1, sizeof(*st));
  if (!st) {
    fputs("flagos: out of memory\n", stderr);
    abort();
  }
  st->code = code == FLAGOS_OK ? FLAGOS_ERR_INTERNAL : code;
  va_list ap;
  va_start(ap, fmt);
  st->msg = vformat(fmt, ap);
  va_end(ap);
  return st;
}

flagos_code_t flagos_status_code(flagos_status_t st) { return st ? st->code : FLAGOS_OK; }

const char *flagos_status_message(flagos_status_t st) {
  return st ? (st->msg ? st->msg : "(no message)") : "ok";
}

flagos_status_t flagos_status_wrap(flagos_status_t st, const char *fmt, ...) {
  if (!st) return NULL;
  va_list ap;
  va_start(ap, fmt);
  char *prefix = vformat(fmt, ap);
  va_end(ap);
  if (!prefix) return st;
  size_t n = strlen(prefix) + 2 + strlen(st->msg ? st->msg : "") + 1;
  char *m = malloc(n);
  if (m) {
    snprintf(m, n, "%s: %s", prefix, st->msg ? st->msg : "");
    free(st->msg);
    st->msg = m;
  }
  free(prefix);
  return st;
}

void flagos_status_free(flagos_status_t st) {
  if (!st) return;
  free(st->msg);
  free(st);
}
