/* Stream capture and graph replay (the plugin ABI's capture_begin, capture_end,
 * graph_launch, graph_destroy). The capture is relaxed: the runtime may allocate
 * (cuMemAlloc through the caching allocator) while it records, and other threads
 * are not restricted. Kernel parameters are copied into the graph when a launch
 * is recorded, so a replay runs on the buffers and symbols of the recording.
 *
 * Refused (FLAGOS_ERR_UNSUPPORTED) with FLAGOS_CUDA_GRAPHS=0, with
 * FLAGOS_CUDA_SYNC=1 (a synchronisation after each launch cannot be recorded),
 * and on a driver without the graph entries. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

struct flagos_bgraph_s {
  int device;
  cu_graph_t graph;
  cu_graph_exec_t exec;
};

static cu_stream_t stream_of(cuda_state_t *s, int device, flagos_bstream_t t) {
  return t ? t->st : s->dev[device].stream;
}

flagos_status_t cuda_capture_begin(void *state, int device, flagos_bstream_t t) {
  cuda_state_t *s = state;
  const char *env = getenv("FLAGOS_CUDA_GRAPHS");
  if (env && strcmp(env, "0") == 0)
    return CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: graphs disabled (FLAGOS_CUDA_GRAPHS=0)");
  if (s->sync_launches)
    return CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: no graphs with FLAGOS_CUDA_SYNC");
  flagos_status_t st = cuda_use(s, device);
  if (st) return st;
  if (!s->drv.StreamBeginCapture || !s->drv.StreamEndCapture || !s->drv.GraphInstantiate || !s->drv.GraphLaunch ||
      !s->drv.GraphExecDestroy || !s->drv.GraphDestroy)
    return CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: the driver has no graph capture");
  if (t && t->device != device)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: capture on a stream of another device");
  return cuda_check(s, s->drv.StreamBeginCapture(stream_of(s, device, t), CU_CAPTURE_MODE_RELAXED),
                    "cuStreamBeginCapture");
}

flagos_status_t cuda_capture_end(void *state, int device, flagos_bstream_t t, flagos_bgraph_t *out) {
  cuda_state_t *s = state;
  *out = NULL;
  flagos_status_t st = cuda_use(s, device);
  if (st) return st;
  cu_graph_t g = NULL;
  /* Fails (and returns no graph) when the capture was invalidated, e.g. by a
   * call that cannot be recorded. */
  st = cuda_check(s, s->drv.StreamEndCapture(stream_of(s, device, t), &g), "cuStreamEndCapture");
  if (st) {
    if (g) s->drv.GraphDestroy(g);
    return st;
  }
  cu_graph_exec_t e = NULL;
  st = cuda_check(s, s->drv.GraphInstantiate(&e, g, 0), "cuGraphInstantiate");
  flagos_bgraph_t r = st ? NULL : calloc(1, sizeof(*r));
  if (!st && !r) st = CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  if (st) {
    if (e) s->drv.GraphExecDestroy(e);
    s->drv.GraphDestroy(g);
    return st;
  }
  r->device = device;
  r->graph = g;
  r->exec = e;
  *out = r;
  return NULL;
}

flagos_status_t cuda_graph_launch(void *state, flagos_bgraph_t g, flagos_bstream_t t) {
  cuda_state_t *s = state;
  if (!g) return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: launch of a NULL graph");
  flagos_status_t st = cuda_use(s, g->device);
  if (st) return st;
  return cuda_check(s, s->drv.GraphLaunch(g->exec, stream_of(s, g->device, t)), "cuGraphLaunch");
}

void cuda_graph_destroy(void *state, flagos_bgraph_t g) {
  cuda_state_t *s = state;
  if (!g) return;
  /* A graph still running is freed by the driver when it completes. */
  if (g->device >= 0 && g->device < s->n_devices && s->dev[g->device].ready &&
      s->drv.CtxSetCurrent(s->dev[g->device].ctx) == CU_OK) {
    s->drv.GraphExecDestroy(g->exec);
    s->drv.GraphDestroy(g->graph);
  }
  free(g);
}
