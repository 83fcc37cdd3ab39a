/* Loads NCCL's entry points (compiled into libflagcx and into flagcx-bench,
 * which calls NCCL directly for --raw-nccl). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nccl_abi.h"

flagcx_result_t fcx_nccl_api_load(fcx_nccl_api_t *api, fcx_err_t *err) {
  memset(api, 0, sizeof *api);
  const char *env = getenv("FLAGCX_NCCL_LIBRARY");
  const char *names[] = {env && *env ? env : "libnccl.so.2", "libnccl.so"};
  void *h = NULL;
  char why[300] = "";
  for (size_t i = 0; i < 2 && !h; i++) {
    h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h && i == 0) snprintf(why, sizeof why, "%s", dlerror());
  }
  if (!h)
    return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "NCCL is not installed (libnccl.so.2: %s); set FLAGCX_NCCL_LIBRARY",
                      why);
#define NSYM(field, name, required)                                                                \
  do {                                                                                             \
    *(void **)(&api->field) = dlsym(h, name);                                                      \
    if (!api->field && (required))                                                                 \
      return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "the NCCL library lacks %s (too old?)", name); \
  } while (0)
  NSYM(GetVersion, "ncclGetVersion", 1);
  NSYM(GetUniqueId, "ncclGetUniqueId", 1);
  NSYM(CommInitRank, "ncclCommInitRank", 1);
  NSYM(CommDestroy, "ncclCommDestroy", 1);
  NSYM(CommAbort, "ncclCommAbort", 1);
  NSYM(CommGetAsyncError, "ncclCommGetAsyncError", 1);
  NSYM(GetErrorString, "ncclGetErrorString", 1);
  NSYM(GetLastError, "ncclGetLastError", 0);
  NSYM(AllReduce, "ncclAllReduce", 1);
  NSYM(AllGather, "ncclAllGather", 1);
  NSYM(ReduceScatter, "ncclReduceScatter", 1);
  NSYM(Broadcast, "ncclBroadcast", 1);
  NSYM(Reduce, "ncclReduce", 1);
  NSYM(Send, "ncclSend", 1);
  NSYM(Recv, "ncclRecv", 1);
  NSYM(GroupStart, "ncclGroupStart", 1);
  NSYM(GroupEnd, "ncclGroupEnd", 1);
#undef NSYM
  return FLAGCX_SUCCESS;
}
