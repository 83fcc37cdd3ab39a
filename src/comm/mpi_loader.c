/* Finds and loads libflagcx-mpi.so, the MPI transport. Keeping MPI in a plugin
 * means libflagcx itself never depends on an MPI library: programs that do not
 * run under mpirun never load one. */
#include <dlfcn.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

#ifndef FLAGCX_PLUGIN_BUILD_DIR
#define FLAGCX_PLUGIN_BUILD_DIR ""
#endif
#ifndef FLAGCX_PLUGIN_INSTALL_DIR
#define FLAGCX_PLUGIN_INSTALL_DIR ""
#endif
#define PLUGIN_NAME "libflagcx-mpi.so"

bool fcx_launched_by_mpirun(void) {
  return fcx_env_str("OMPI_COMM_WORLD_SIZE") != NULL || fcx_env_str("PMI_SIZE") != NULL;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const fcx_mpi_plugin_t *plugin;
static char load_error[FCX_ERR_MSG];

static void *try_open(const char *path, char *why, size_t n) {
  /* RTLD_GLOBAL: Open MPI's own components look up libmpi's symbols globally. */
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!h) snprintf(why, n, "%s", dlerror());
  return h;
}

static void load(void) {
  char cand[4][1024];
  int nc = 0;
  const char *env = fcx_env_str("FLAGCX_MPI_PLUGIN");
  if (env) snprintf(cand[nc++], sizeof cand[0], "%s", env);
  Dl_info info;
  if (dladdr((void *)&fcx_launched_by_mpirun, &info) && info.dli_fname) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", info.dli_fname);
    snprintf(cand[nc++], sizeof cand[0], "%s/" PLUGIN_NAME, dirname(tmp));
  }
  if (FLAGCX_PLUGIN_BUILD_DIR[0]) snprintf(cand[nc++], sizeof cand[0], "%s/" PLUGIN_NAME, FLAGCX_PLUGIN_BUILD_DIR);
  if (FLAGCX_PLUGIN_INSTALL_DIR[0])
    snprintf(cand[nc++], sizeof cand[0], "%s/" PLUGIN_NAME, FLAGCX_PLUGIN_INSTALL_DIR);
  char why[512] = "no candidate path";
  void *h = NULL;
  for (int i = 0; i < nc && !h; i++) h = try_open(cand[i], why, sizeof why);
  if (!h && !env) h = try_open(PLUGIN_NAME, why, sizeof why);
  if (!h) {
    snprintf(load_error, sizeof load_error, "cannot load the MPI transport %s (%s); set FLAGCX_MPI_PLUGIN",
             PLUGIN_NAME, why);
    return;
  }
  fcx_mpi_plugin_fn fn = (fcx_mpi_plugin_fn)dlsym(h, "flagcx_mpi_plugin");
  const fcx_mpi_plugin_t *p = fn ? fn() : NULL;
  if (!p || p->abi != FCX_MPI_PLUGIN_ABI) {
    snprintf(load_error, sizeof load_error, "%s is not a FlagCX MPI plugin of ABI %d", PLUGIN_NAME,
             FCX_MPI_PLUGIN_ABI);
    return;
  }
  plugin = p;
}

const fcx_mpi_plugin_t *fcx_mpi_plugin(fcx_err_t *err) {
  pthread_once(&once, load);
  if (!plugin) fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "%s", load_error);
  return plugin;
}
