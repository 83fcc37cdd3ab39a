/* Convolutions through cuDNN's graph ("backend") API, for cuda_dnn.c: the
 * convolution, and the bias as a pointwise add fused into the same graph
 * where an engine takes it (else the caller adds it with cudnnAddTensor).
 *
 * Why not the legacy API alone: on an H100 with cuDNN 9.14, for ResNet-50
 * at batch 64 in NCHW f16, the graph API's fastest engine took 0.055-0.13 ms
 * per 3x3 convolution with the bias added, where the fastest legacy algorithm
 * took 0.08-0.17 ms without it (cudnnAddTensor is another pass over the
 * output), and 0.04-0.27 ms per 1x1 one against 0.065-0.47.
 *
 * A plan: the heuristics' (mode A) engine configurations, the first
 * DNN_G_TRY that finalize within the workspace allowed (f32 without TF32:
 * no tensor-core or down-converting engine), each timed (one warm-up, three
 * calls between events) on a stream of the caller's own into scratch buffers
 * allocated in stream order, so that a plan is timed also while the call's
 * stream is being captured into a graph; the fastest is kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_dnn.h"

#define DNN_G_CFGS 12 /* heuristic results asked for */
#define DNN_G_TRY 4   /* finalized plans timed */
#define DNN_G_DESCS 16

struct dnn_gplan {
  const dnn_lib_t *l;
  dnn_bd_t descs[DNN_G_DESCS]; /* tensors, operations, the graph, the chosen configuration */
  int n_descs;
  dnn_bd_t plan;
  bool fused;
  size_t ws;
  int64_t engine;
  float ms;
  dnn_bd_t pack; /* the last variant pack, and what it holds */
  const void *pack_ptrs[4];
  void *pack_ws;
};

typedef struct gb {
  const dnn_lib_t *l;
  dnn_gplan_t *p;
  dnn_status_t r;
  const char *what; /* the step that failed */
} gb_t;

static dnn_bd_t gb_new(gb_t *b, int type, const char *what) {
  dnn_bd_t d = NULL;
  if (b->r != DNN_OK) return NULL;
  if (b->p->n_descs == DNN_G_DESCS) {
    b->r = -1;
    b->what = "too many descriptors";
    return NULL;
  }
  b->r = b->l->BdCreate(type, &d);
  if (b->r != DNN_OK) b->what = what;
  else b->p->descs[b->p->n_descs++] = d;
  return d;
}

static void gb_set(gb_t *b, dnn_bd_t d, int name, int type, int64_t n, const void *v, const char *what) {
  if (b->r != DNN_OK) return;
  b->r = b->l->BdSet(d, name, type, n, v);
  if (b->r != DNN_OK) b->what = what;
}

static void gb_fin(gb_t *b, dnn_bd_t d, const char *what) {
  if (b->r != DNN_OK) return;
  b->r = b->l->BdFinalize(d);
  if (b->r != DNN_OK) b->what = what;
}

/* A packed NCHW tensor (or [1, K, 1, 1] for the bias). */
static dnn_bd_t tensor(gb_t *b, int64_t id, int type, const int64_t dims[4], bool virt) {
  int64_t strides[4] = {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
  int64_t align = 16;
  dnn_bd_t t = gb_new(b, DNN_BD_TENSOR, "tensor descriptor");
  gb_set(b, t, DNN_A_TENSOR_TYPE, DNN_T_DATA_TYPE, 1, &type, "tensor data type");
  gb_set(b, t, DNN_A_TENSOR_DIMS, DNN_T_INT64, 4, dims, "tensor dimensions");
  gb_set(b, t, DNN_A_TENSOR_STRIDES, DNN_T_INT64, 4, strides, "tensor strides");
  gb_set(b, t, DNN_A_TENSOR_ID, DNN_T_INT64, 1, &id, "tensor id");
  gb_set(b, t, DNN_A_TENSOR_ALIGN, DNN_T_INT64, 1, &align, "tensor alignment");
  if (virt) {
    bool yes = true;
    gb_set(b, t, DNN_A_TENSOR_VIRTUAL, DNN_T_BOOLEAN, 1, &yes, "virtual tensor");
  }
  gb_fin(b, t, "tensor finalize");
  return t;
}

static int data_type(int32_t dt) {
  return dt == FLAGOS_FLOAT32 ? DNN_FLOAT : dt == FLAGOS_FLOAT16 ? DNN_HALF : DNN_BFLOAT16;
}

/* The operation graph of the convolution, with the bias add when `fused`. */
static dnn_bd_t build_graph(gb_t *b, dnn_handle_t h, int32_t dt, bool fused, const int64_t *iv) {
  int type = data_type(dt), f32 = DNN_FLOAT;
  int64_t xd[4] = {iv[0], iv[1], iv[2], iv[3]}, wd[4] = {iv[4], iv[1] / iv[15], iv[7], iv[8]};
  int64_t yd[4] = {iv[0], iv[4], iv[5], iv[6]}, bd[4] = {1, iv[4], 1, 1};
  dnn_bd_t x = tensor(b, 1, type, xd, false), w = tensor(b, 2, type, wd, false);
  dnn_bd_t y = tensor(b, 3, type, yd, false);
  dnn_bd_t bias = fused ? tensor(b, 4, type, bd, false) : NULL;
  dnn_bd_t acc = fused ? tensor(b, 5, f32, yd, true) : y; /* the convolution's output before the bias */

  /* ONNX's end pads: whatever gives OH x OW (docs/kernel-ir.md); cuDNN takes them as post paddings. */
  int64_t pre[2] = {iv[9], iv[10]}, str[2] = {iv[11], iv[12]}, dil[2] = {iv[13], iv[14]}, post[2];
  for (int i = 0; i < 2; i++) {
    int64_t in = iv[2 + i], k = iv[7 + i], out = iv[5 + i];
    post[i] = (out - 1) * str[i] + dil[i] * (k - 1) + 1 - in - pre[i];
    if (post[i] < 0) post[i] = 0; /* a remainder the stride drops: the output size is the same */
  }
  int64_t dims = 2;
  int mode = DNN_CROSS_CORRELATION;
  dnn_bd_t conv = gb_new(b, DNN_BD_CONVOLUTION, "convolution descriptor");
  gb_set(b, conv, DNN_A_CONV_COMP_TYPE, DNN_T_DATA_TYPE, 1, &f32, "convolution compute type");
  gb_set(b, conv, DNN_A_CONV_MODE, DNN_T_CONV_MODE, 1, &mode, "convolution mode");
  gb_set(b, conv, DNN_A_CONV_DIMS, DNN_T_INT64, 1, &dims, "convolution dimensions");
  gb_set(b, conv, DNN_A_CONV_DILATIONS, DNN_T_INT64, 2, dil, "convolution dilations");
  gb_set(b, conv, DNN_A_CONV_STRIDES, DNN_T_INT64, 2, str, "convolution strides");
  gb_set(b, conv, DNN_A_CONV_PRE_PAD, DNN_T_INT64, 2, pre, "convolution pre paddings");
  gb_set(b, conv, DNN_A_CONV_POST_PAD, DNN_T_INT64, 2, post, "convolution post paddings");
  gb_fin(b, conv, "convolution finalize");

  float one = 1, zero = 0;
  dnn_bd_t op = gb_new(b, DNN_BD_OP_CONV_FWD, "convolution operation");
  gb_set(b, op, DNN_A_CONV_X, DNN_T_DESCRIPTOR, 1, &x, "operation X");
  gb_set(b, op, DNN_A_CONV_W, DNN_T_DESCRIPTOR, 1, &w, "operation W");
  gb_set(b, op, DNN_A_CONV_Y, DNN_T_DESCRIPTOR, 1, &acc, "operation Y");
  gb_set(b, op, DNN_A_CONV_DESC, DNN_T_DESCRIPTOR, 1, &conv, "operation convolution");
  gb_set(b, op, DNN_A_CONV_ALPHA, DNN_T_FLOAT, 1, &one, "operation alpha");
  gb_set(b, op, DNN_A_CONV_BETA, DNN_T_FLOAT, 1, &zero, "operation beta");
  gb_fin(b, op, "convolution operation finalize");
  dnn_bd_t ops[2] = {op, NULL};
  if (fused) {
    int add = DNN_POINTWISE_ADD;
    dnn_bd_t pw = gb_new(b, DNN_BD_POINTWISE, "pointwise descriptor");
    gb_set(b, pw, DNN_A_POINTWISE_MODE, DNN_T_POINTWISE_MODE, 1, &add, "pointwise mode");
    gb_set(b, pw, DNN_A_POINTWISE_PREC, DNN_T_DATA_TYPE, 1, &f32, "pointwise precision");
    gb_fin(b, pw, "pointwise finalize");
    dnn_bd_t pop = gb_new(b, DNN_BD_OP_POINTWISE, "pointwise operation");
    gb_set(b, pop, DNN_A_PW_DESC, DNN_T_DESCRIPTOR, 1, &pw, "pointwise operation descriptor");
    gb_set(b, pop, DNN_A_PW_X, DNN_T_DESCRIPTOR, 1, &acc, "pointwise X");
    gb_set(b, pop, DNN_A_PW_B, DNN_T_DESCRIPTOR, 1, &bias, "pointwise B");
    gb_set(b, pop, DNN_A_PW_Y, DNN_T_DESCRIPTOR, 1, &y, "pointwise Y");
    gb_fin(b, pop, "pointwise operation finalize");
    ops[1] = pop;
  }
  dnn_bd_t g = gb_new(b, DNN_BD_OPGRAPH, "operation graph");
  gb_set(b, g, DNN_A_GRAPH_HANDLE, DNN_T_HANDLE, 1, &h, "graph handle");
  gb_set(b, g, DNN_A_GRAPH_OPS, DNN_T_DESCRIPTOR, fused ? 2 : 1, ops, "graph operations");
  gb_fin(b, g, "graph finalize");
  return g;
}

/* Whether engine configuration cfg may run: f32 without TF32 takes no engine
 * that uses tensor cores or converts its inputs down. Its engine's index in *idx. */
static bool cfg_allowed(const dnn_lib_t *l, dnn_bd_t cfg, bool strict_f32, int64_t *idx) {
  *idx = -1;
  dnn_bd_t e = NULL;
  if (l->BdCreate(DNN_BD_ENGINE, &e) != DNN_OK) return !strict_f32;
  int64_t n = 0;
  bool ok = true;
  if (l->BdGet(cfg, DNN_A_CFG_ENGINE, DNN_T_DESCRIPTOR, 1, &n, &e) == DNN_OK && n == 1) {
    l->BdGet(e, DNN_A_ENGINE_INDEX, DNN_T_INT64, 1, &n, idx);
    int notes[DNN_NOTE_COUNT];
    n = 0;
    if (l->BdGet(e, DNN_A_ENGINE_NOTES, DNN_T_NUMERICAL_NOTE, DNN_NOTE_COUNT, &n, notes) != DNN_OK)
      ok = !strict_f32;
    for (int64_t i = 0; i < n && i < DNN_NOTE_COUNT && strict_f32; i++)
      if (notes[i] == DNN_NOTE_TENSOR_CORE || notes[i] == DNN_NOTE_DOWN_CONVERT) ok = false;
  } else {
    ok = !strict_f32;
  }
  l->BdDestroy(e);
  return ok;
}

static dnn_bd_t make_pack(const dnn_lib_t *l, bool fused, const void *const ptrs[4], void *ws) {
  static const int64_t ids[4] = {1, 2, 3, 4};
  dnn_bd_t pk = NULL;
  if (l->BdCreate(DNN_BD_VARPACK, &pk) != DNN_OK) return NULL;
  dnn_status_t r = l->BdSet(pk, DNN_A_PACK_IDS, DNN_T_INT64, fused ? 4 : 3, ids);
  if (r == DNN_OK) r = l->BdSet(pk, DNN_A_PACK_PTRS, DNN_T_VOID_PTR, fused ? 4 : 3, ptrs);
  if (r == DNN_OK) r = l->BdSet(pk, DNN_A_PACK_WS, DNN_T_VOID_PTR, 1, &ws);
  if (r == DNN_OK) r = l->BdFinalize(pk);
  if (r != DNN_OK) {
    l->BdDestroy(pk);
    return NULL;
  }
  return pk;
}

bool cuda_dnn_scratch_get(const dnn_gctx_t *g, const int64_t *iv, size_t es, size_t ws, dnn_scratch_t *sc) {
  cuda_state_t *s = g->s;
  memset(sc, 0, sizeof(*sc));
  if (!g->tune || !s->drv.MemAllocAsync || !s->drv.MemFreeAsync) return false;
  size_t sz[4] = {(size_t)(iv[0] * iv[1] * iv[2] * iv[3]) * es, (size_t)(iv[4] * (iv[1] / iv[15]) * iv[7] * iv[8]) * es,
                  (size_t)(iv[0] * iv[4] * iv[5] * iv[6]) * es, (size_t)iv[4] * es};
  size_t off[4], total = 0;
  for (int i = 0; i < 4; i++) {
    off[i] = total;
    total += (sz[i] + 255) & ~(size_t)255;
  }
  int capturing = 1;
  if (s->drv.StreamIsCapturing && s->drv.StreamIsCapturing(g->cs, &capturing) != CU_OK) capturing = 1;
  /* Outside a capture, earlier work leaves the GPU first, so it does not share it with the timing. */
  if (!capturing && s->drv.StreamSynchronize(g->cs) != CU_OK) return false;
  if (s->drv.MemAllocAsync(&sc->base, total + ws, g->tune) != CU_OK) {
    sc->base = 0;
    return false;
  }
  for (int i = 0; i < 4; i++) sc->ptr[i] = (void *)(uintptr_t)(sc->base + off[i]);
  sc->ws = ws ? (void *)(uintptr_t)(sc->base + total) : NULL;
  if (g->lib->SetStream(g->h, g->tune) != DNN_OK) {
    cuda_dnn_scratch_put(g, sc);
    return false;
  }
  return true;
}

void cuda_dnn_scratch_put(const dnn_gctx_t *g, dnn_scratch_t *sc) {
  if (sc->base) g->s->drv.MemFreeAsync(sc->base, g->tune);
  memset(sc, 0, sizeof(*sc));
}

float cuda_dnn_time(const dnn_gctx_t *g, dnn_status_t (*run)(void *ctx), void *ctx) {
  cuda_state_t *s = g->s;
  cu_event_t e0 = NULL, e1 = NULL;
  float ms = -1;
  if (s->drv.EventCreate(&e0, 0) == CU_OK && s->drv.EventCreate(&e1, 0) == CU_OK) {
    dnn_status_t r = run(ctx); /* the warm-up */
    bool ok = r == DNN_OK && s->drv.EventRecord(e0, g->tune) == CU_OK;
    for (int j = 0; j < 3 && ok && r == DNN_OK; j++) r = run(ctx);
    float t = 0;
    if (ok && s->drv.EventRecord(e1, g->tune) == CU_OK && s->drv.EventSynchronize(e1) == CU_OK &&
        s->drv.EventElapsedTime(&t, e0, e1) == CU_OK && r == DNN_OK)
      ms = t / 3;
    if (!ok || r != DNN_OK) s->drv.StreamSynchronize(g->tune); /* nothing stays in flight on a failure */
  }
  if (e1) s->drv.EventDestroy(e1);
  if (e0) s->drv.EventDestroy(e0);
  return ms;
}

typedef struct gtime {
  const dnn_gctx_t *g;
  dnn_bd_t plan, pack;
} gtime_t;

static dnn_status_t run_plan(void *ctx) {
  gtime_t *t = ctx;
  return t->g->lib->BdExecute(t->g->h, t->plan, t->pack);
}

/* Each of n plans timed on g->tune into scratch buffers; the index of the
 * fastest (its time per call in times[]), or 0 untimed where the scratch
 * cannot be had. */
static int time_plans(const dnn_gctx_t *g, dnn_bd_t *plans, const size_t *ws, int n, bool fused, const int64_t *iv,
                      size_t es, float *times) {
  for (int i = 0; i < n; i++) times[i] = -1;
  size_t max_ws = 0;
  for (int i = 0; i < n; i++)
    if (ws[i] > max_ws) max_ws = ws[i];
  dnn_scratch_t sc;
  if (n < 1 || !cuda_dnn_scratch_get(g, iv, es, max_ws, &sc)) return 0;
  const void *ptrs[4] = {sc.ptr[0], sc.ptr[1], sc.ptr[2], sc.ptr[3]};
  int best = 0;
  for (int i = 0; i < n; i++) {
    gtime_t t = {g, plans[i], make_pack(g->lib, fused, ptrs, sc.ws)};
    if (!t.pack) continue;
    times[i] = cuda_dnn_time(g, run_plan, &t);
    g->lib->BdDestroy(t.pack);
    if (times[i] >= 0 && (times[best] < 0 || times[i] < times[best])) best = i;
  }
  cuda_dnn_scratch_put(g, &sc);
  return times[best] < 0 ? 0 : best;
}

void cuda_dnn_graph_free(dnn_gplan_t *p) {
  if (!p) return;
  const dnn_lib_t *l = p->l;
  if (p->pack) l->BdDestroy(p->pack);
  if (p->plan) l->BdDestroy(p->plan);
  for (int i = p->n_descs - 1; i >= 0; i--) l->BdDestroy(p->descs[i]);
  free(p);
}

/* One graph form (fused bias or not): its plan, or NULL with *why. */
static dnn_gplan_t *make_form(const dnn_gctx_t *g, int32_t dt, bool tf32, bool fused, const int64_t *iv, char *why,
                              size_t why_len) {
  const dnn_lib_t *l = g->lib;
  dnn_gplan_t *p = calloc(1, sizeof(*p));
  if (!p) {
    snprintf(why, why_len, "out of memory");
    return NULL;
  }
  p->l = l;
  p->fused = fused;
  gb_t b = {l, p, DNN_OK, NULL};
  dnn_bd_t graph = build_graph(&b, g->h, dt, fused, iv);
  int mode = DNN_HEUR_MODE_A;
  dnn_bd_t heur = gb_new(&b, DNN_BD_ENGINEHEUR, "heuristics descriptor");
  gb_set(&b, heur, DNN_A_HEUR_GRAPH, DNN_T_DESCRIPTOR, 1, &graph, "heuristics graph");
  gb_set(&b, heur, DNN_A_HEUR_MODE, DNN_T_HEUR_MODE, 1, &mode, "heuristics mode");
  gb_fin(&b, heur, "heuristics finalize");
  dnn_bd_t cfgs[DNN_G_CFGS] = {0};
  int64_t n_cfg = 0;
  for (int i = 0; i < DNN_G_CFGS && b.r == DNN_OK; i++) {
    b.r = l->BdCreate(DNN_BD_ENGINECFG, &cfgs[i]);
    if (b.r != DNN_OK) b.what = "engine configuration descriptor";
  }
  if (b.r == DNN_OK) {
    b.r = l->BdGet(heur, DNN_A_HEUR_RESULTS, DNN_T_DESCRIPTOR, DNN_G_CFGS, &n_cfg, cfgs);
    if (b.r != DNN_OK) b.what = "heuristics results";
  }
  dnn_bd_t plans[DNN_G_TRY];
  size_t ws[DNN_G_TRY];
  int64_t idx[DNN_G_TRY];
  int cfg_of[DNN_G_TRY], n = 0, refused = 0, too_big = 0, finalize_failed = 0;
  bool strict = dt == FLAGOS_FLOAT32 && !tf32;
  for (int64_t i = 0; b.r == DNN_OK && i < n_cfg && i < DNN_G_CFGS && n < DNN_G_TRY; i++) {
    int64_t e;
    if (!cfg_allowed(l, cfgs[i], strict, &e)) {
      refused++;
      continue;
    }
    dnn_bd_t pl = NULL;
    if (l->BdCreate(DNN_BD_PLAN, &pl) != DNN_OK) continue;
    dnn_status_t r = l->BdSet(pl, DNN_A_PLAN_HANDLE, DNN_T_HANDLE, 1, &g->h);
    if (r == DNN_OK) r = l->BdSet(pl, DNN_A_PLAN_CFG, DNN_T_DESCRIPTOR, 1, &cfgs[i]);
    if (r == DNN_OK) r = l->BdFinalize(pl);
    int64_t w = 0, got = 0;
    if (r == DNN_OK) r = l->BdGet(pl, DNN_A_PLAN_WS, DNN_T_INT64, 1, &got, &w);
    if (r != DNN_OK || w < 0 || (size_t)w > g->ws_cap) {
      if (r != DNN_OK) finalize_failed++;
      else too_big++;
      l->BdDestroy(pl);
      continue;
    }
    plans[n] = pl;
    ws[n] = (size_t)w;
    idx[n] = e;
    cfg_of[n++] = (int)i;
  }
  if (b.r != DNN_OK) {
    snprintf(why, why_len, "graph API: %s failed (status %d)", b.what ? b.what : "?", b.r);
  } else if (n == 0) {
    snprintf(why, why_len,
             "graph API: no engine of %lld (%d refused for TF32, %d over the workspace, %d did not finalize)",
             (long long)n_cfg, refused, too_big, finalize_failed);
  }
  float times[DNN_G_TRY];
  int pick = n ? time_plans(g, plans, ws, n, fused, iv, dt == FLAGOS_FLOAT32 ? 4 : 2, times) : -1;
  if (g->log && n) {
    char line[256];
    size_t o = 0;
    for (int i = 0; i < n && o + 40 < sizeof line; i++) {
      int w = snprintf(line + o, sizeof line - o, " e%lld:%.3fms/%.0fM", (long long)idx[i], (double)times[i],
                       (double)ws[i] / 1048576.0);
      if (w > 0) o += (size_t)w;
    }
    cuda_log(g->log_path, "conv %s N %lld C %lld %lldx%lld -> K %lld kernel %lldx%lld stride %lld%s, graph API (%lld configurations):%s",
             dt == FLAGOS_FLOAT32 ? (tf32 ? "f32 (tf32)" : "f32") : dt == FLAGOS_FLOAT16 ? "f16" : "bf16",
             (long long)iv[0], (long long)iv[1], (long long)iv[2], (long long)iv[3], (long long)iv[4],
             (long long)iv[7], (long long)iv[8], (long long)iv[11], fused ? ", bias fused" : "", (long long)n_cfg,
             line);
  }
  for (int i = 0; i < n; i++)
    if (i != pick) l->BdDestroy(plans[i]);
  if (n) {
    p->plan = plans[pick];
    p->ws = ws[pick];
    p->engine = idx[pick];
    p->ms = times[pick];
    /* The chosen configuration stays with the plan; the others go. */
    if (p->n_descs < DNN_G_DESCS) {
      p->descs[p->n_descs++] = cfgs[cfg_of[pick]];
      cfgs[cfg_of[pick]] = NULL;
    }
  }
  for (int i = 0; i < DNN_G_CFGS; i++)
    if (cfgs[i]) l->BdDestroy(cfgs[i]);
  if (!n) {
    cuda_dnn_graph_free(p);
    return NULL;
  }
  return p;
}

dnn_gplan_t *cuda_dnn_graph_make(const dnn_gctx_t *g, int32_t dt, bool tf32, bool bias, const int64_t *iv, char *why,
                                 size_t why_len) {
  snprintf(why, why_len, "graph API not tried");
  if (dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT16 && dt != FLAGOS_BFLOAT16) {
    snprintf(why, why_len, "graph API: f64 goes through the legacy API");
    return NULL;
  }
  dnn_gplan_t *p = bias ? make_form(g, dt, tf32, true, iv, why, why_len) : NULL;
  if (!p) p = make_form(g, dt, tf32, false, iv, why, why_len);
  return p;
}

size_t cuda_dnn_graph_ws(const dnn_gplan_t *p) { return p->ws; }
bool cuda_dnn_graph_fused(const dnn_gplan_t *p) { return p->fused; }
float cuda_dnn_graph_ms(const dnn_gplan_t *p) { return p->ms; }
long long cuda_dnn_graph_engine(const dnn_gplan_t *p) { return (long long)p->engine; }

dnn_status_t cuda_dnn_graph_run(dnn_handle_t h, dnn_gplan_t *p, const void *x, const void *w, const void *b, void *y,
                                void *ws) {
  const void *ptrs[4] = {x, w, y, p->fused ? b : NULL};
  if (!p->pack || memcmp(ptrs, p->pack_ptrs, sizeof ptrs) != 0 || ws != p->pack_ws) {
    if (p->pack) p->l->BdDestroy(p->pack);
    p->pack = make_pack(p->l, p->fused, ptrs, ws);
    if (!p->pack) return -1;
    memcpy(p->pack_ptrs, ptrs, sizeof ptrs);
    p->pack_ws = ws;
  }
  return p->l->BdExecute(h, p->plan, p->pack);
}
