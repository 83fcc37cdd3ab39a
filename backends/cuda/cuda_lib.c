/* What cuda_blas.c (cuBLASLt) and cuda_dnn.c (cuDNN) share about opening a
 * library at run time and logging their decisions (cuda_internal.h). */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_internal.h"

bool cuda_env_on(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

void *cuda_lib_open(const char *env, const char *const *sonames, int n, const char *what, char *path, size_t path_len,
                    char *why, size_t why_len) {
  const char *e = getenv(env);
  char cand[8][160];
  int nc = 0;
  if (e && *e) {
    snprintf(cand[nc++], sizeof cand[0], "%s", e); /* an explicit library is the only one tried */
  } else {
    for (int i = 0; i < n && nc < 8; i++) snprintf(cand[nc++], sizeof cand[0], "%s", sonames[i]);
    /* The toolkit's default place, for machines whose loader path lacks it. */
    for (int i = 0; i < n && nc < 8; i++) snprintf(cand[nc++], sizeof cand[0], "/usr/local/cuda/lib64/%s", sonames[i]);
  }
  const char *err = NULL;
  for (int i = 0; i < nc; i++) {
    void *h = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
    if (h) {
      snprintf(path, path_len, "%s", cand[i]);
      return h;
    }
    if (!err) err = dlerror();
  }
  snprintf(why, why_len, "no %s (%s): %s", what, nc ? cand[0] : "", err ? err : "not found");
  return NULL;
}

bool cuda_lib_bind(void *h, const char *const *syms, void **const *slots, int n, const char *what, const char *path,
                   char *why, size_t why_len) {
  for (int i = 0; i < n; i++) {
    *slots[i] = dlsym(h, syms[i]);
    if (!*slots[i]) {
      snprintf(why, why_len, "%s (%.200s) has no %s (too old?)", what, path, syms[i]);
      return false;
    }
  }
  return true;
}

bool cuda_log_target(char *path, size_t len) {
  path[0] = 0;
  if (!cuda_env_on("FLAGOS_CUDA_BLAS_LOG")) return false;
  const char *v = getenv("FLAGOS_CUDA_BLAS_LOG");
  if (strcmp(v, "1") != 0) snprintf(path, len, "%s", v);
  return true;
}

void cuda_log(const char *path, const char *fmt, ...) {
  FILE *f = path[0] ? fopen(path, "a") : stderr;
  if (!f) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(f, "flagos cuda[%d]: %s\n", (int)getpid(), line);
  if (f != stderr) fclose(f);
}

flagos_status_t cuda_ws_for(cuda_state_t *s, cuda_ws_set_t *w, int d, flagos_bstream_t stream, size_t bytes,
                            cu_ptr_t *out) {
  *out = 0;
  for (int i = 0; i < w->n; i++)
    if (w->ws[i].stream == stream) {
      *out = w->ws[i].ptr;
      return NULL;
    }
  if (w->n == CUDA_WS_SLOTS) return NULL;
  flagos_status_t st = cuda_alloc_get(s, &s->dev[d], bytes, &w->ws[w->n].ptr);
  if (st) return st;
  w->ws[w->n].stream = stream;
  *out = w->ws[w->n++].ptr;
  return NULL;
}

void cuda_ws_release(cuda_state_t *s, cuda_ws_set_t *w, int d) {
  for (int i = 0; i < w->n; i++) cuda_alloc_put(s, &s->dev[d], w->ws[i].ptr);
  w->n = 0;
}

int cuda_call_device(cuda_state_t *s, flagos_bstream_t stream, const flagos_libcall_t *c, int y) {
  if (stream) return stream->device;
  int first = -1;
  const int order[3] = {y, 0, 1};
  for (int j = 0; j < 3; j++) {
    if (order[j] >= c->n_bufs) continue;
    cu_ptr_t p = (cu_ptr_t)(uintptr_t)c->bufs[order[j]];
    for (int i = 0; i < s->n_devices; i++) {
      if (!s->dev[i].ready) continue;
      if (first < 0) first = i;
      if (cuda_alloc_owns(&s->dev[i].alloc, p)) return i;
    }
  }
  return first < 0 ? 0 : first;
}
