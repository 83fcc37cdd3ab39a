/* Loading the CUDA driver at run time: dlopen, then one dlsym per entry of the
 * symbol table (cuda_api.h). Explicit _v2 names are bound where the driver has
 * versioned entry points, as cuda.h's macros would pick them. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"

bool cu_driver_open(cu_driver_t *d, char *why, size_t why_len) {
  memset(d, 0, sizeof(*d));
  const char *cands[3];
  int n = 0;
  /* An explicit driver is the only one tried (tests use it to see no driver). */
  const char *env = getenv("FLAGOS_CUDA_DRIVER");
  if (env && *env) {
    cands[n++] = env;
  } else {
    cands[n++] = "libcuda.so.1";
    cands[n++] = "libcuda.so";
  }
  void *h = NULL;
  const char *err = "";
  for (int i = 0; i < n && !h; i++) {
    h = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) err = dlerror();
  }
  if (!h) {
    snprintf(why, why_len, "no CUDA driver (libcuda.so.1): %s", err ? err : "not found");
    return false;
  }
#define CU_BIND(name, sym, params)                                             \
  *(void **)(&d->name) = dlsym(h, sym);                                        \
  if (!d->name) {                                                              \
    snprintf(why, why_len, "the CUDA driver has no %s (too old a driver?)", sym); \
    dlclose(h);                                                                \
    memset(d, 0, sizeof(*d));                                                  \
    return false;                                                              \
  }
#define CU_BIND_OPT(name, sym, params) *(void **)(&d->name) = dlsym(h, sym);
  CU_DRIVER_FUNCS(CU_BIND, CU_BIND_OPT)
#undef CU_BIND
#undef CU_BIND_OPT
  d->handle = h;
  return true;
}

void cu_driver_close(cu_driver_t *d) {
  if (d->handle) dlclose(d->handle);
  memset(d, 0, sizeof(*d));
}
