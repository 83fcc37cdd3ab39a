/* cuda_dnn.c: the "conv" library call through cuDNN; cuda_dnn_graph.c: its
 * plans through cuDNN's graph API. */
#ifndef FLAGOS_CUDA_DNN_H
#define FLAGOS_CUDA_DNN_H

#include "cuda_dnn_api.h"
#include "cuda_internal.h"

/* The "conv" call (docs/kernel-ir.md); FLAGOS_ERR_UNSUPPORTED where cuDNN is
 * absent or off, there is no device, or the shape is left to the kernels. */
flagos_status_t cuda_dnn_conv(cuda_state_t *s, flagos_bstream_t stream, const flagos_libcall_t *call);
/* Before the contexts go: frees descriptors, workspaces and handles. */
void cuda_dnn_shutdown(cuda_state_t *s);

/* What making a graph plan needs: the handle, the call's stream cs (drained
 * before timing unless it is being captured), a stream of its own to time on,
 * the most workspace a plan may take, and the log. */
typedef struct dnn_gctx {
  cuda_state_t *s;
  const dnn_lib_t *lib;
  dnn_handle_t h;
  cu_stream_t cs, tune;
  size_t ws_cap;
  bool log;
  const char *log_path;
} dnn_gctx_t;

/* A convolution's plan through the graph API (cuda_dnn_graph.c). */
typedef struct dnn_gplan dnn_gplan_t;
/* The fastest of the heuristics' first engines for the call's ints iv (the
 * bias fused where an engine takes it, when `bias`), or NULL with *why. */
dnn_gplan_t *cuda_dnn_graph_make(const dnn_gctx_t *g, int32_t dtype, bool tf32, bool bias, const int64_t *iv,
                                 char *why, size_t why_len);
size_t cuda_dnn_graph_ws(const dnn_gplan_t *p);
/* Whether the plan adds the bias itself (else the caller adds it). */
bool cuda_dnn_graph_fused(const dnn_gplan_t *p);
float cuda_dnn_graph_ms(const dnn_gplan_t *p);
long long cuda_dnn_graph_engine(const dnn_gplan_t *p);
/* Runs the plan on h's stream; b is read only by a fused plan; ws holds cuda_dnn_graph_ws bytes. */
dnn_status_t cuda_dnn_graph_run(dnn_handle_t h, dnn_gplan_t *p, const void *x, const void *w, const void *b, void *y,
                                void *ws);
void cuda_dnn_graph_free(dnn_gplan_t *p);

/* Scratch buffers for timing a convolution of ints iv (element size es) on
 * g->tune: X, W, Y and B in ptr[], `ws` workspace bytes, allocated in stream
 * order there (so also while g->cs is being captured), g->h bound to g->tune;
 * g->cs drained first unless it is being captured. False where they cannot be had. */
typedef struct dnn_scratch {
  cu_ptr_t base;
  void *ptr[4];
  void *ws;
} dnn_scratch_t;
bool cuda_dnn_scratch_get(const dnn_gctx_t *g, const int64_t *iv, size_t es, size_t ws, dnn_scratch_t *sc);
void cuda_dnn_scratch_put(const dnn_gctx_t *g, dnn_scratch_t *sc);
/* ms per call of run(ctx) on g->tune: one warm-up, three calls between events; -1 where it fails. */
float cuda_dnn_time(const dnn_gctx_t *g, dnn_status_t (*run)(void *ctx), void *ctx);

#endif
