/* The plugin registry: the one piece of process-wide state FlagOS keeps. Plugins
 * are found as libflagos_backend_<name>.so in $FLAGOS_PLUGIN_PATH (colon-separated),
 * then the build tree's and the install prefix's plugin folders. */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"

#ifndef FLAGOS_PLUGIN_DIR
#define FLAGOS_PLUGIN_DIR ""
#endif
#ifndef FLAGOS_INSTALL_PLUGIN_DIR
#define FLAGOS_INSTALL_PLUGIN_DIR ""
#endif

#define MAX_PLUGINS 16
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static rt_backend_t g_loaded[MAX_PLUGINS];
static int g_n_loaded;

static int search_dirs(const char **dirs, int max, char *envbuf, size_t envlen) {
  int n = 0;
  const char *env = getenv("FLAGOS_PLUGIN_PATH");
  if (env && *env) {
    snprintf(envbuf, envlen, "%s", env);
    for (char *save = NULL, *d = strtok_r(envbuf, ":", &save); d && n < max - 2; d = strtok_r(NULL, ":", &save))
      dirs[n++] = d;
  }
  if (FLAGOS_PLUGIN_DIR[0] && n < max) dirs[n++] = FLAGOS_PLUGIN_DIR;
  if (FLAGOS_INSTALL_PLUGIN_DIR[0] && n < max) dirs[n++] = FLAGOS_INSTALL_PLUGIN_DIR;
  return n;
}

static flagos_status_t load_plugin(const char *name, rt_backend_t *out) {
  const char *dirs[16];
  char envbuf[4096];
  int nd = search_dirs(dirs, 16, envbuf, sizeof envbuf);
  char path[4096], tried[1024] = "";
  for (int i = 0; i < nd; i++) {
    snprintf(path, sizeof path, "%s/libflagos_backend_%s.so", dirs[i], name);
    if (access(path, R_OK) != 0) {
      size_t l = strlen(tried);
      snprintf(tried + l, sizeof tried - l, "%s%s", l ? ", " : "", dirs[i]);
      continue;
    }
    /* The cpu plugin's kernels use OpenMP, and GOMP's default is to spin between
     * parallel regions, which takes the cores from OpenBLAS's own threads inside
     * the next GEMM: on a 16-core Xeon BERT-base ran 3,050 ms per request with
     * spinning and 144 ms with passive waiting (element-wise kernels pay tens of
     * microseconds more). libgomp reads the policy once, when it is loaded —
     * with the cpu plugin — so it is set here, unless the user chose one. */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return FL_ERR(FLAGOS_ERR_BACKEND, "cannot load backend plugin '%s': %s", path, dlerror());
    flagos_backend_entry_fn entry = (flagos_backend_entry_fn)(uintptr_t)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL);
    if (!entry) {
      dlclose(h);
      return FL_ERR(FLAGOS_ERR_BACKEND, "'%s' is not a FlagOS backend (no %s)", path, FLAGOS_BACKEND_ENTRY_SYMBOL);
    }
    const flagos_backend_t *api = entry(FLAGOS_BACKEND_ABI_VERSION);
    if (!api || api->abi_version != FLAGOS_BACKEND_ABI_VERSION || api->struct_size < FLAGOS_BACKEND_MIN_STRUCT_SIZE) {
      dlclose(h);
      return FL_ERR(FLAGOS_ERR_BACKEND, "backend plugin '%s' does not provide ABI version %u", path,
                    FLAGOS_BACKEND_ABI_VERSION);
    }
    static flagos_host_t host = {FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, NULL};
    host.cache_dir = fl_default_cache_dir();
    void *state = NULL;
    flagos_status_t st = api->init(&host, &state);
    if (st) return flagos_status_wrap(st, "backend '%s' failed to start", name);
    out->api = api;
    out->state = state;
    out->name = api->name;
    return NULL;
  }
  return FL_ERR(FLAGOS_ERR_NOT_FOUND, "no backend plugin '%s' (looked for libflagos_backend_%s.so in: %s)", name, name,
                tried[0] ? tried : "no plugin folders; set FLAGOS_PLUGIN_PATH");
}

flagos_status_t rt_backend_get(const char *name, rt_backend_t **out) {
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_n_loaded; i++)
    if (strcmp(g_loaded[i].name, name) == 0) {
      *out = &g_loaded[i];
      pthread_mutex_unlock(&g_lock);
      return NULL;
    }
  flagos_status_t st = NULL;
  if (g_n_loaded == MAX_PLUGINS) st = FL_ERR(FLAGOS_ERR_BACKEND, "too many backend plugins loaded");
  if (!st) st = load_plugin(name, &g_loaded[g_n_loaded]);
  if (!st) *out = &g_loaded[g_n_loaded++];
  pthread_mutex_unlock(&g_lock);
  return st;
}

int rt_backend_list(const char **out, int max) {
  const char *dirs[16];
  char envbuf[4096];
  int nd = search_dirs(dirs, 16, envbuf, sizeof envbuf), n = 0;
  static char names[16][64];
  for (int i = 0; i < nd; i++) {
    DIR *d = opendir(dirs[i]);
    if (!d) continue;
    struct dirent *e;
    while ((e = readdir(d)) && n < max && n < 16) {
      const char *p = "libflagos_backend_";
      size_t pl = strlen(p), l = strlen(e->d_name);
      if (l <= pl + 3 || strncmp(e->d_name, p, pl) != 0 || strcmp(e->d_name + l - 3, ".so") != 0) continue;
      snprintf(names[n], sizeof names[n], "%.*s", (int)(l - pl - 3), e->d_name + pl);
      bool dup = false;
      for (int j = 0; j < n; j++)
        if (strcmp(names[j], names[n]) == 0) dup = true;
      if (!dup) {
        out[n] = names[n];
        n++;
      }
    }
    closedir(d);
  }
  return n;
}
