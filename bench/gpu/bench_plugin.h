/* What the benchmark drivers that call one plugin directly share
 * (gemm_bench.c, attn_bench.c): a clock, the inputs' random numbers, and
 * opening the plugin and its device as a model's run would. Header-only: each
 * driver is one executable. */
#ifndef FLAGOS_BENCH_PLUGIN_H
#define FLAGOS_BENCH_PLUGIN_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "flagos/backend.h"
#include "flagos/flagos.h"

#ifndef FLAGOS_BINARY_DIR
#define FLAGOS_BINARY_DIR "."
#endif

static double bench_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Uniform in [-1, 1) from a 64-bit LCG (the same values on every run). */
static double bench_rnd(uint64_t *st) {
  *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*st >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
}

/* Opens plugin libflagos_backend_BACKEND.so ($FLAGOS_PLUGIN_PATH, else this
 * build's backends folder), initialises it with a kernel cache
 * ($FLAGOS_CACHE_DIR, else /tmp/flagos-TOOL-cache) and checks that it has
 * device dev, library calls and events; name gets the device's name without
 * quotes or backslashes (for JSON). 0, or 77 (said on stderr as TOOL: SKIP)
 * where the plugin or its device is missing. */
static int bench_open_plugin(const char *tool, const char *backend, int dev, const flagos_backend_t **be, void **bst,
                             char *name, size_t cap) {
  char so[1024];
  const char *dir = getenv("FLAGOS_PLUGIN_PATH");
  snprintf(so, sizeof so, "%s/libflagos_backend_%s.so", dir && *dir ? dir : FLAGOS_BINARY_DIR "/backends", backend);
  void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  flagos_backend_entry_fn entry = h ? (flagos_backend_entry_fn)(uintptr_t)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL) : NULL;
  *be = entry ? entry(FLAGOS_BACKEND_ABI_VERSION) : NULL;
  *bst = NULL;
  if (!*be || !(*be)->library_call || !(*be)->event_elapsed_ms) {
    fprintf(stderr, "%s: SKIP: no usable plugin %s (%s)\n", tool, so, h ? "no library call or events" : dlerror());
    return 77;
  }
  static char cache[512];
  const char *cd = getenv("FLAGOS_CACHE_DIR");
  if (cd && *cd) snprintf(cache, sizeof cache, "%s", cd);
  else snprintf(cache, sizeof cache, "/tmp/%s-cache", tool);
  static flagos_host_t host;
  host = (flagos_host_t){FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, cache};
  flagos_status_t st = (*be)->init(&host, bst);
  if (st || !*bst || (*be)->device_count(*bst) <= dev) {
    fprintf(stderr, "%s: SKIP: %s has no device %d%s%s\n", tool, backend, dev, st ? ": " : "",
            st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    if (*bst) (*be)->shutdown(*bst);
    *bst = NULL;
    return 77;
  }
  flagos_device_info_t info;
  memset(&info, 0, sizeof info);
  flagos_status_free((*be)->device_info(*bst, dev, &info));
  size_t o = 0;
  for (const char *p = info.name; *p && o + 1 < cap; p++)
    if (*p != '"' && *p != '\\') name[o++] = *p;
  name[o] = 0;
  return 0;
}

#endif
