/* The "conv" library call through cuDNN, opened at run time
 * ($FLAGOS_CUDNN_LIBRARY, else libcudnn.so.9, else .so.8, also under
 * /usr/local/cuda/lib64), so that the plugin loads without it; without it, with
 * FLAGOS_CUDNN=0 or without a device every call answers FLAGOS_ERR_UNSUPPORTED
 * and the host runs the node's kernels (im2col + gemm).
 *
 * The contract (docs/kernel-ir.md): bufs [X, W, (B), Y]; ints [N, C, H, W, K,
 * OH, OW, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, group]; NCHW,
 * Y = conv(X, W) + B with the start pads given; the end pads are whatever
 * gives OH x OW. The graph API takes them as post paddings; the legacy API pads
 * both ends alike, which gives the same values for every output position it
 * computes, and declines where that makes a different output size.
 *
 * Which shapes: by default only those where cuDNN measured faster than the
 * kernels (auto_declines: f16 and f32 convolutions of at least 0.5 GFLOP, with
 * exceptions by kernel size); FLAGOS_CUDNN=1 takes every shape cuDNN can do.
 * f32 (FMA kernels only, no TF32, unless FLAGOS_ALLOW_TF32=1), f16 and bf16
 * (tensor cores, f32 accumulation), f64.
 *
 * Two APIs: f16, bf16 and TF32 go through the graph API (cuda_dnn_graph.c:
 * the convolution with the bias add fused where an engine takes it); f32
 * without TF32, f64, FLAGOS_CUDNN_API=legacy and shapes the graph API has no
 * engine for through the legacy one (cudnnConvolutionForward, the bias by
 * cudnnAddTensor). Either way a shape's first call times the candidates (the
 * graph heuristics' first engines, the legacy heuristic's algorithms) on a
 * stream of the plugin's own into scratch buffers and keeps the fastest, also
 * while the call's stream is being captured into a graph (the runtime captures
 * a session's first run), where nothing may synchronise the captured stream.
 *
 * Per device: one handle, bound to the call's stream before each use; a cache
 * of plans per shape, DNN_WAYS slots per hash; one workspace per stream (the
 * default stream's, then up to 8 more, so a captured graph keeps its own),
 * grown to what the plans need: an algorithm may use up to
 * FLAGOS_CUDNN_WORKSPACE_MB (1024). With 64 MiB (before) the NCHW f16
 * algorithms that transpose to NHWC inside did not fit over ResNet-50's
 * 56x56 outputs at batch 64 (they take 120-150 MiB), nor the fastest f32 3x3
 * ones (80-140 MiB). */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_dnn.h"

#define DNN_CACHE 256
#define DNN_WAYS 4
#define DNN_WS_CAP_MB 1024 /* the default of FLAGOS_CUDNN_WORKSPACE_MB */
#define DNN_WS_STEP ((size_t)1 << 20)
#define DNN_RETIRED 16

/* What a plan depends on. Zeroed before filling, so that padding compares equal. */
typedef struct dnn_key {
  int32_t dtype, tf32, bias, unused;
  int64_t v[16]; /* the call's ints */
} dnn_key_t;

typedef struct dnn_plan {
  bool used;
  bool unsupported; /* no algorithm: the kernels run */
  dnn_key_t key;
  dnn_tensor_t xd, yd, bd;
  dnn_filter_t wd;
  dnn_conv_t cd;
  int algo;
  size_t ws_bytes;
  dnn_gplan_t *g; /* through the graph API; else the legacy descriptors and algo */
} dnn_plan_t;

/* One stream's workspace: grown to what the plans need. */
typedef struct dnn_ws {
  flagos_bstream_t stream; /* NULL: the default stream */
  cu_ptr_t ptr;
  size_t bytes;
} dnn_ws_t;

typedef struct dnn_dev {
  pthread_mutex_t lock; /* the plans and workspaces, and the order of calls through the handle */
  dnn_handle_t h;
  cu_stream_t tune; /* where plans are timed */
  dnn_ws_t ws[CUDA_WS_SLOTS];
  int n_ws;
  /* Outgrown workspaces of other streams: a graph captured there may still use them. */
  cu_ptr_t retired[DNN_RETIRED];
  int n_retired;
  size_t ws_max; /* the most any plan of this device needs */
  dnn_plan_t plans[DNN_CACHE];
} dnn_dev_t;

struct cuda_dnn {
  pthread_mutex_t lock; /* making devs */
  dnn_lib_t lib;
  bool loaded, off, force; /* FLAGOS_CUDNN: "0" off, "1" every shape cuDNN takes, unset the measured rule */
  bool legacy;             /* FLAGOS_CUDNN_API=legacy: no graph API */
  char why[320]; /* why not loaded */
  bool tf32, log;
  size_t ws_cap; /* the most workspace an algorithm may use (FLAGOS_CUDNN_WORKSPACE_MB) */
  char log_path[256]; /* "" : stderr */
  dnn_dev_t *dev[CUDA_MAX_DEVICES];
  atomic_ullong calls, declined;
  atomic_bool told_dtype; /* the log said which dtypes the rule leaves to the kernels */
};

static bool dnn_open(dnn_lib_t *l, char *why, size_t why_len) {
  memset(l, 0, sizeof(*l));
  static const char *const names[] = {"libcudnn.so.9", "libcudnn.so.8"};
  void *h = cuda_lib_open("FLAGOS_CUDNN_LIBRARY", names, 2, "cuDNN", l->path, sizeof l->path, why, why_len);
  if (!h) return false;
#define DNN_SYM(name, sym, ret, params) sym,
#define DNN_SLOT(name, sym, ret, params) (void **)&l->name,
  static const char *const syms[] = {DNN_FUNCS(DNN_SYM)};
  void **const slots[] = {DNN_FUNCS(DNN_SLOT)};
#undef DNN_SYM
#undef DNN_SLOT
  if (!cuda_lib_bind(h, syms, slots, (int)(sizeof syms / sizeof syms[0]), "cuDNN", l->path, why, why_len)) {
    dlclose(h);
    memset(l, 0, sizeof(*l));
    return false;
  }
  l->handle = h;
  return true;
}

/* One line of $FLAGOS_CUDA_BLAS_LOG, as cuda_blas.c writes them. */
#define dnn_log(b, ...) cuda_log((b)->log_path, __VA_ARGS__)

/* The library state, made (and the library opened) on the first call. */
static struct cuda_dnn *dnn_get(cuda_state_t *s) {
  pthread_mutex_lock(&s->lock);
  if (!s->dnn) {
    struct cuda_dnn *b = calloc(1, sizeof(*b));
    if (b) {
      pthread_mutex_init(&b->lock, NULL);
      b->tf32 = cuda_env_on("FLAGOS_ALLOW_TF32");
      b->log = cuda_log_target(b->log_path, sizeof b->log_path);
      const char *off = getenv("FLAGOS_CUDNN");
      b->off = off && strcmp(off, "0") == 0;
      b->force = off && *off && !b->off;
      const char *api = getenv("FLAGOS_CUDNN_API");
      b->legacy = api && strcmp(api, "legacy") == 0;
      const char *cap = getenv("FLAGOS_CUDNN_WORKSPACE_MB");
      char *end = NULL;
      long long mb = cap && *cap ? strtoll(cap, &end, 10) : DNN_WS_CAP_MB;
      if (end && (*end || mb < 0)) mb = DNN_WS_CAP_MB;
      b->ws_cap = (size_t)(mb > 65536 ? 65536 : mb) << 20;
      if (b->off)
        snprintf(b->why, sizeof b->why, "cuDNN is off (FLAGOS_CUDNN=0)");
      else
        b->loaded = dnn_open(&b->lib, b->why, sizeof b->why);
      if (b->log && b->loaded)
        dnn_log(b, "cuDNN %zu from %s%s", b->lib.GetVersion(), b->lib.path, b->tf32 ? ", TF32 allowed for f32" : "");
      else if (b->log)
        dnn_log(b, "%s", b->why);
    }
    s->dnn = b;
  }
  pthread_mutex_unlock(&s->lock);
  return s->dnn;
}

static flagos_status_t dnn_check(cuda_state_t *s, dnn_status_t st, const char *what) {
  if (st == DNN_OK) return NULL;
  const char *n = s->dnn && s->dnn->lib.GetErrorString ? s->dnn->lib.GetErrorString(st) : NULL;
  return CUDA_ERR(s, FLAGOS_ERR_BACKEND, "cuda backend: %s failed: %s (%d)", what, n ? n : "unknown status", st);
}

static flagos_status_t declined(cuda_state_t *s, flagos_status_t st) {
  if (s->dnn) atomic_fetch_add(&s->dnn->declined, 1);
  return st;
}


/* Makes device d's handle once; needs its context current. */
static flagos_status_t dev_get(cuda_state_t *s, struct cuda_dnn *b, int d, dnn_dev_t **out) {
  pthread_mutex_lock(&b->lock);
  flagos_status_t st = NULL;
  if (!b->dev[d]) {
    dnn_dev_t *v = calloc(1, sizeof(*v));
    if (!v) {
      st = CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
    } else {
      st = dnn_check(s, b->lib.Create(&v->h), "cudnnCreate");
      if (st) {
        free(v);
      } else {
        pthread_mutex_init(&v->lock, NULL);
        b->dev[d] = v;
      }
    }
  }
  *out = b->dev[d];
  pthread_mutex_unlock(&b->lock);
  return st;
}

/* The workspace of `stream` with at least `need` bytes in *out (0 when none is
 * needed), made or grown to the most any plan of the device needs, so that a
 * stream first seen after the plans were made (a graph capture) allocates once.
 * The default stream's outgrown one goes back to the allocator (its work is in
 * issue order); another stream's is kept until shutdown, as a graph captured
 * there may still use it. *out 0 when every slot is taken: the call is
 * declined. A failed allocation is passed on: the model's next one would fail
 * too. v->lock held. */
static flagos_status_t ws_get(cuda_state_t *s, dnn_dev_t *v, int d, flagos_bstream_t stream, size_t need,
                              cu_ptr_t *out) {
  *out = 0;
  if (need == 0) return NULL;
  dnn_ws_t *w = NULL;
  for (int i = 0; i < v->n_ws && !w; i++)
    if (v->ws[i].stream == stream) w = &v->ws[i];
  if (w && w->bytes >= need) {
    *out = w->ptr;
    return NULL;
  }
  if ((!w && v->n_ws == CUDA_WS_SLOTS) || (w && stream && v->n_retired == DNN_RETIRED)) return NULL;
  size_t want = need > v->ws_max ? need : v->ws_max;
  want = (want + DNN_WS_STEP - 1) / DNN_WS_STEP * DNN_WS_STEP;
  cu_ptr_t p = 0;
  flagos_status_t st = cuda_alloc_get(s, &s->dev[d], want, &p);
  if (st) return st;
  if (!w) {
    w = &v->ws[v->n_ws++];
    w->stream = stream;
  } else if (stream) {
    v->retired[v->n_retired++] = w->ptr;
  } else {
    cuda_alloc_put(s, &s->dev[d], w->ptr);
  }
  w->ptr = p;
  w->bytes = want;
  *out = p;
  return NULL;
}


static void plan_release(struct cuda_dnn *b, dnn_plan_t *p) {
  cuda_dnn_graph_free(p->g);
  if (p->xd) b->lib.DestroyTensor(p->xd);
  if (p->yd) b->lib.DestroyTensor(p->yd);
  if (p->bd) b->lib.DestroyTensor(p->bd);
  if (p->wd) b->lib.DestroyFilter(p->wd);
  if (p->cd) b->lib.DestroyConv(p->cd);
  memset(p, 0, sizeof(*p));
}

static int dnn_type(int32_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT32: return DNN_FLOAT;
  case FLAGOS_FLOAT64: return DNN_DOUBLE;
  case FLAGOS_FLOAT16: return DNN_HALF;
  default: return DNN_BFLOAT16;
  }
}

static const char *dt_name(int32_t dt, bool tf32) {
  return dt == FLAGOS_FLOAT32 ? (tf32 ? "f32 (tf32)" : "f32")
         : dt == FLAGOS_FLOAT64 ? "f64"
         : dt == FLAGOS_FLOAT16 ? "f16"
                                : "bf16";
}

/* "conv f16 N .. C .. HxW -> K .. OHxOW, kernel .., pad .., stride .., dilation .., group ..[, bias]" for the log. */
static const char *shape_text(const dnn_key_t *k, char *buf, size_t cap) {
  const int64_t *iv = k->v;
  snprintf(buf, cap,
           "conv %s N %lld C %lld %lldx%lld -> K %lld %lldx%lld, kernel %lldx%lld, pad %lld/%lld, stride %lld/%lld, "
           "dilation %lld/%lld, group %lld%s",
           dt_name(k->dtype, k->tf32), (long long)iv[0], (long long)iv[1], (long long)iv[2], (long long)iv[3],
           (long long)iv[4], (long long)iv[5], (long long)iv[6], (long long)iv[7], (long long)iv[8], (long long)iv[9],
           (long long)iv[10], (long long)iv[11], (long long)iv[12], (long long)iv[13], (long long)iv[14],
           (long long)iv[15], k->bias ? ", bias" : "");
  return buf;
}

/* An algorithm cuDNN reports may run here: it works, fits the workspace and,
 * for f32 without TF32, does its arithmetic in fp32 FMA. */
static bool usable(const dnn_key_t *k, const dnn_perf_t *r, size_t ws) {
  if (r->status != DNN_OK || r->memory > ws) return false;
  if (k->dtype == FLAGOS_FLOAT32 && !k->tf32 && r->math_type != DNN_FMA_MATH) return false;
  return true;
}

/* Whether the measured rule leaves dtype dt to the kernels (FLAGOS_CUDNN unset). */
static bool dtype_declined(const struct cuda_dnn *b, int32_t dt) {
  return !(dt == FLAGOS_FLOAT16 || (dt == FLAGOS_FLOAT32 && !b->tf32));
}

/* Why a shape is left to the kernels when FLAGOS_CUDNN is unset, or NULL. The
 * rule is what the plugin's own timing (FLAGOS_CUDA_BLAS_LOG) and
 * scripts/gpu/profile.sh (FLAGOS_CUDNN=0: im2col + cuBLASLt per node)
 * measured on an H100 with cuDNN 9.14 for ResNet-50 at batch 64 and 1, ms per
 * convolution (the kernels' figure with the bias):
 *  - f16 through the graph API, bias fused: every 3x3 convolution faster
 *    (56x56 outputs 0.13 against 0.25, 28x28 0.075/0.16, 14x14 0.055/0.20,
 *    7x7 0.057/0.35, strided 0.07-0.11 against 0.16-0.35); 1x1 ones slower
 *    over 56x56 and 28x28 outputs (0.10-0.27 against 0.04-0.14: cuDNN's NCHW
 *    engines transpose through their workspace), 0.8-1.3x over 14x14, faster
 *    over 7x7 (0.04-0.09 against 0.14-0.29); the 7x7 stem of 3 channels
 *    slower (0.71/0.50).
 *  - f32 through the legacy API (FMA; the convolution alone, cudnnAddTensor
 *    adds a pass over the output): 3x3 convolutions of stride 1 faster
 *    (0.18-0.35 against 0.47-0.62), of stride 2 faster over 28x28 at batch 64
 *    (0.46/0.57) but slower over 14x14 and 7x7 (0.54/0.52, 0.71/0.47); the
 *    stem faster (0.73/0.85); 1x1 ones slower at stride 1 (up to 1.45x) and
 *    faster at stride 2 (0.32-0.41 against 0.44-0.47, where im2col copies).
 *  - at batch 1 (every ResNet-50 convolution under 0.5 GFLOP) im2col + gemm
 *    was faster for all but the stem, up to 5x.
 * bf16, f64 and TF32 were not measured. */
static const char *auto_declines(const struct cuda_dnn *b, const dnn_key_t *k) {
  const int64_t *iv = k->v;
  if (dtype_declined(b, k->dtype)) return "only f32 without TF32 and f16 were measured (FLAGOS_CUDNN=1 takes it)";
  bool f16 = k->dtype == FLAGOS_FLOAT16;
  if (f16 && b->legacy) return "f16 through the legacy API measured slower (FLAGOS_CUDNN=1 takes it)";
  double flop = 2.0 * (double)iv[0] * (double)iv[5] * (double)iv[6] * (double)iv[4] * (double)(iv[1] / iv[15]) *
                (double)iv[7] * (double)iv[8];
  if (flop < 5e8) return "a convolution under 0.5 GFLOP measured faster as im2col + gemm (FLAGOS_CUDNN=1 takes it)";
  bool pointwise = iv[7] * iv[8] == 1;
  if (f16 && iv[1] / iv[15] < 16 && !pointwise)
    return "an f16 window over few channels per group measured faster as im2col + gemm (FLAGOS_CUDNN=1 takes it)";
  if (f16 && pointwise && iv[5] * iv[6] > 64)
    return "an f16 1x1 kernel over more than 64 output positions measured faster as a gemm (FLAGOS_CUDNN=1 takes it)";
  if (!f16 && pointwise && iv[11] == 1 && iv[12] == 1)
    return "an f32 1x1 kernel of stride 1 measured faster as a gemm (FLAGOS_CUDNN=1 takes it)";
  if (!f16 && !pointwise && (iv[11] > 1 || iv[12] > 1) && iv[0] * iv[5] * iv[6] < 40000)
    return "an f32 strided window over a small output measured faster as im2col + gemm (FLAGOS_CUDNN=1 takes it)";
  return NULL;
}

/* The device's stream for timing candidates, made on first use (NULL where it cannot be). */
static cu_stream_t tune_stream(cuda_state_t *s, dnn_dev_t *v) {
  if (!v->tune && s->drv.StreamCreate(&v->tune, CU_STREAM_NON_BLOCKING_FLAG) != CU_OK) v->tune = NULL;
  return v->tune;
}

typedef struct ltime {
  struct cuda_dnn *b;
  dnn_dev_t *v;
  dnn_plan_t *p;
  const dnn_perf_t *c;
  const void *x, *w, *one, *zero;
  void *y, *ws;
} ltime_t;

static dnn_status_t run_algo(void *ctx) {
  ltime_t *t = ctx;
  return t->b->lib.Forward(t->v->h, t->one, t->p->xd, t->x, t->p->wd, t->w, t->p->cd, t->c->algo,
                           t->c->memory ? t->ws : NULL, t->c->memory, t->zero, t->p->yd, t->y);
}

/* Times the usable candidates res[cand[0..n)] of the legacy heuristic on the
 * tuning stream into scratch buffers (cuda_dnn_scratch_get: so also while cs is
 * being captured, as the first run of a session is), each with the math type
 * it was listed with; times[i] for res[i] (-1: not timed). The fastest one's
 * index; the heuristic's first where none could be timed. Neither the
 * heuristic's order nor cudnnFindConvolutionForwardAlgorithmEx (used before)
 * serves: Find cannot run in a capture, so a captured graph kept the
 * heuristic's choice, and it times each algorithm once, cold: on ResNet-50 at
 * batch 64 on an H100 its times were up to 3.7x the steady ones (0.72 ms
 * against 0.196) and put a slower algorithm first on some shapes. */
static int legacy_time(cuda_state_t *s, struct cuda_dnn *b, dnn_dev_t *v, dnn_plan_t *p, const dnn_perf_t *res,
                       const int *cand, int n, cu_stream_t cs, float *times) {
  const dnn_key_t *k = &p->key;
  size_t max_ws = 0;
  for (int i = 0; i < n; i++)
    if (res[cand[i]].memory > max_ws) max_ws = res[cand[i]].memory;
  dnn_gctx_t g = {s, &b->lib, v->h, cs, tune_stream(s, v), b->ws_cap, b->log, b->log_path};
  dnn_scratch_t sc;
  size_t es = k->dtype == FLAGOS_FLOAT64 ? 8 : k->dtype == FLAGOS_FLOAT32 ? 4 : 2;
  if (!cuda_dnn_scratch_get(&g, k->v, es, max_ws, &sc)) return cand[0];
  double one64 = 1, zero64 = 0;
  float one32 = 1, zero32 = 0;
  bool f64 = k->dtype == FLAGOS_FLOAT64;
  ltime_t t = {b, v, p, NULL, sc.ptr[0], sc.ptr[1], f64 ? (const void *)&one64 : (const void *)&one32,
               f64 ? (const void *)&zero64 : (const void *)&zero32, sc.ptr[2], sc.ws};
  int best = -1;
  for (int i = 0; i < n; i++) {
    t.c = &res[cand[i]];
    if (b->lib.SetConvMath(p->cd, t.c->math_type) != DNN_OK) continue;
    float ms = cuda_dnn_time(&g, run_algo, &t);
    times[cand[i]] = ms;
    if (ms >= 0 && (best < 0 || ms < times[best])) best = cand[i];
  }
  cuda_dnn_scratch_put(&g, &sc);
  return best < 0 ? cand[0] : best;
}

/* One log line with each of the heuristic's results: algorithm, time (-1: not
 * timed), workspace, math (d default, t tensor ops, c tensor ops with
 * conversion, f fma), "x" for those not usable here; a failed one's status. */
static void log_candidates(struct cuda_dnn *b, const dnn_key_t *k, const dnn_perf_t *res, const float *times,
                           int got) {
  char line[400];
  size_t n = 0;
  for (int i = 0; i < got && n + 48 < sizeof line; i++) {
    static const char math[] = "dtcf";
    int m = res[i].math_type >= 0 && res[i].math_type < 4 ? res[i].math_type : 0;
    int w = res[i].status != DNN_OK
                ? snprintf(line + n, sizeof line - n, " %d:status%d", res[i].algo, res[i].status)
                : snprintf(line + n, sizeof line - n, " %d:%.3fms/%.0fM/%c%s", res[i].algo, (double)times[i],
                           (double)res[i].memory / 1048576.0, math[m], usable(k, &res[i], b->ws_cap) ? "" : "x");
    if (w > 0) n += (size_t)w;
  }
  const int64_t *iv = k->v;
  dnn_log(b, "conv %s N %lld C %lld %lldx%lld -> K %lld kernel %lldx%lld stride %lld, legacy algorithms:%s",
          dt_name(k->dtype, k->tf32), (long long)iv[0], (long long)iv[1], (long long)iv[2], (long long)iv[3],
          (long long)iv[4], (long long)iv[7], (long long)iv[8], (long long)iv[11], n ? line : " none");
}

/* Plan p of key k through the graph API: true when made (p->g), timed on the
 * device's tuning stream whether or not cs is being captured. */
static bool graph_plan(cuda_state_t *s, struct cuda_dnn *b, dnn_dev_t *v, const dnn_key_t *k, dnn_plan_t *p,
                       cu_stream_t cs) {
  dnn_gctx_t g = {s, &b->lib, v->h, cs, tune_stream(s, v), b->ws_cap, b->log, b->log_path};
  char why[200];
  p->g = cuda_dnn_graph_make(&g, k->dtype, k->tf32, k->bias, k->v, why, sizeof why);
  const int64_t *iv = k->v;
  if (!p->g) {
    if (b->log)
      dnn_log(b, "conv %s N %lld C %lld %lldx%lld -> K %lld kernel %lldx%lld: %s; the legacy API instead",
              dt_name(k->dtype, k->tf32), (long long)iv[0], (long long)iv[1], (long long)iv[2], (long long)iv[3],
              (long long)iv[4], (long long)iv[7], (long long)iv[8], why);
    return false;
  }
  p->ws_bytes = cuda_dnn_graph_ws(p->g);
  if (p->ws_bytes > v->ws_max) v->ws_max = p->ws_bytes;
  char sh[320];
  if (b->log)
    dnn_log(b, "%s: cuDNN graph engine %lld (%.4f ms%s, workspace %zu)", shape_text(k, sh, sizeof sh),
            cuda_dnn_graph_engine(p->g), (double)cuda_dnn_graph_ms(p->g),
            !k->bias ? "" : cuda_dnn_graph_fused(p->g) ? ", bias fused" : ", bias by cudnnAddTensor", p->ws_bytes);
  return true;
}

/* Makes the plan of key k: through the graph API for f16, bf16 and TF32, else
 * (or where it has no engine) the legacy descriptors and the fastest of the
 * legacy heuristic's algorithms; timed on the device's tuning stream (cs is
 * the call's stream, drained first unless it is being captured). */
static flagos_status_t plan_make(cuda_state_t *s, struct cuda_dnn *b, dnn_dev_t *v, const dnn_key_t *k,
                                 dnn_plan_t *p, cu_stream_t cs) {
  memset(p, 0, sizeof(*p));
  p->used = true;
  p->key = *k;
  const int64_t *iv = k->v;
  int type = dnn_type(k->dtype), compute = k->dtype == FLAGOS_FLOAT64 ? DNN_DOUBLE : DNN_FLOAT;
  /* f32 without TF32: FMA kernels only. f16/bf16: tensor cores (the default
   * math type gave cuDNN 9.14 on an H100 no tensor-core algorithm for NCHW
   * f16, 2-3x slower than im2col + cuBLASLt). */
  int math = k->dtype == FLAGOS_FLOAT32 && !k->tf32 ? DNN_FMA_MATH
             : k->dtype == FLAGOS_FLOAT16 || k->dtype == FLAGOS_BFLOAT16 ? DNN_TENSOR_OP_MATH
                                                                          : DNN_DEFAULT_MATH;
  int G = (int)iv[15];
  const char *why = b->force ? NULL : auto_declines(b, k);
  dnn_status_t r = DNN_OK;
  /* f32 without TF32 stays with the legacy API: the graph API's heuristics
   * offered no engine without tensor cores for ResNet-50's 3x3 convolutions at
   * batch 64 and a slower one (0.92 ms against 0.73) for its 7x7 stem. */
  bool graph = k->dtype == FLAGOS_FLOAT16 || k->dtype == FLAGOS_BFLOAT16 || k->tf32;
  if (!why && !b->legacy && graph) {
    if (graph_plan(s, b, v, k, p, cs) && k->bias && !cuda_dnn_graph_fused(p->g)) {
      /* The bias, where the plan does not add it, as the legacy path adds it. */
      r = b->lib.CreateTensor(&p->yd);
      if (r == DNN_OK) r = b->lib.CreateTensor(&p->bd);
      if (r == DNN_OK) r = b->lib.SetTensor4d(p->yd, DNN_NCHW, type, (int)iv[0], (int)iv[4], (int)iv[5], (int)iv[6]);
      if (r == DNN_OK) r = b->lib.SetTensor4d(p->bd, DNN_NCHW, type, 1, (int)iv[4], 1, 1);
      if (r != DNN_OK) {
        plan_release(b, p);
        p->used = true;
        p->key = *k;
        r = DNN_OK;
      }
    }
    if (p->g) return NULL;
    if (!b->force && k->dtype == FLAGOS_FLOAT16) why = "no graph plan, and f16 through the legacy API measured slower";
  }
  if (!why) {
    r = b->lib.CreateTensor(&p->xd);
    if (r == DNN_OK) r = b->lib.CreateTensor(&p->yd);
    if (r == DNN_OK) r = b->lib.CreateFilter(&p->wd);
    if (r == DNN_OK) r = b->lib.CreateConv(&p->cd);
    if (r == DNN_OK) r = b->lib.SetTensor4d(p->xd, DNN_NCHW, type, (int)iv[0], (int)iv[1], (int)iv[2], (int)iv[3]);
    if (r == DNN_OK) r = b->lib.SetTensor4d(p->yd, DNN_NCHW, type, (int)iv[0], (int)iv[4], (int)iv[5], (int)iv[6]);
    if (r == DNN_OK)
      r = b->lib.SetFilter4d(p->wd, type, DNN_NCHW, (int)iv[4], (int)(iv[1] / G), (int)iv[7], (int)iv[8]);
    if (r == DNN_OK)
      r = b->lib.SetConv2d(p->cd, (int)iv[9], (int)iv[10], (int)iv[11], (int)iv[12], (int)iv[13], (int)iv[14],
                           DNN_CROSS_CORRELATION, compute);
    if (r == DNN_OK && G > 1) r = b->lib.SetConvGroups(p->cd, G);
    if (r == DNN_OK) r = b->lib.SetConvMath(p->cd, math);
    if (r == DNN_OK && k->bias) {
      r = b->lib.CreateTensor(&p->bd);
      if (r == DNN_OK) r = b->lib.SetTensor4d(p->bd, DNN_NCHW, type, 1, (int)iv[4], 1, 1);
    }
  }
  int on = 0, oc = 0, oh = 0, ow = 0;
  if (!why && r == DNN_OK) r = b->lib.OutputDim(p->cd, p->xd, p->wd, &on, &oc, &oh, &ow);
  if (why) {
    /* left to the kernels by the measured rule */
  } else if (r != DNN_OK) {
    why = "cuDNN refuses the descriptors";
  } else if (oh != iv[5] || ow != iv[6]) {
    why = "the end pads differ from the start pads";
  } else {
    dnn_perf_t res[DNN_FWD_ALGO_COUNT * 2];
    float times[DNN_FWD_ALGO_COUNT * 2];
    memset(res, 0, sizeof res);
    int got = 0, cand[DNN_FWD_ALGO_COUNT * 2], n_cand = 0;
    r = b->lib.GetAlgo(v->h, p->xd, p->wd, p->cd, p->yd, DNN_FWD_ALGO_COUNT * 2, &got, res);
    for (int i = 0; r == DNN_OK && i < got && i < DNN_FWD_ALGO_COUNT * 2; i++) {
      times[i] = -1;
      if (usable(k, &res[i], b->ws_cap)) cand[n_cand++] = i;
    }
    int pick = n_cand ? cand[0] : -1;
    if (n_cand > 1) pick = legacy_time(s, b, v, p, res, cand, n_cand, cs, times);
    if (b->log && r == DNN_OK) log_candidates(b, k, res, times, got);
    if (r != DNN_OK) {
      why = "cuDNN found no algorithm";
    } else if (pick < 0) {
      why = "no algorithm within the workspace and math allowed";
    } else {
      p->algo = res[pick].algo;
      p->ws_bytes = res[pick].memory;
      if (p->ws_bytes > v->ws_max) v->ws_max = p->ws_bytes;
      /* The math type the chosen algorithm was measured with. */
      r = b->lib.SetConvMath(p->cd, res[pick].math_type);
      if (r != DNN_OK) why = "cuDNN refuses the algorithm's math type";
      char sh[320];
      if (b->log && !why)
        dnn_log(b, "%s: cuDNN algo %d (%s%s, %.4f ms, workspace %zu)", shape_text(k, sh, sizeof sh), p->algo,
                times[pick] >= 0 ? "timed" : "the heuristic's first",
                res[pick].math_type == DNN_FMA_MATH       ? ", fma"
                : res[pick].math_type == DNN_DEFAULT_MATH ? ""
                                                          : ", tensor ops",
                (double)times[pick], p->ws_bytes);
    }
  }
  if (why) {
    /* Remembered, so that the shape does not ask again; the kernels serve it. */
    plan_release(b, p);
    p->used = true;
    p->key = *k;
    p->unsupported = true;
    if (b->log)
      dnn_log(b, "conv %s N %lld C %lld %lldx%lld -> K %lld %lldx%lld, kernel %lldx%lld, group %lld: %s, kernels",
              dt_name(k->dtype, k->tf32), (long long)iv[0], (long long)iv[1], (long long)iv[2], (long long)iv[3],
              (long long)iv[4], (long long)iv[5], (long long)iv[6], (long long)iv[7], (long long)iv[8],
              (long long)iv[15], why);
  }
  return NULL;
}

/* FNV-1a over the key, then a 64-bit finaliser: FNV's low bits alone depend
 * only on the low bits of each byte, and the keys differ in few of them (a
 * direct-mapped cache of 256 slots put three of ResNet-50's 3x3 shapes in one
 * slot, which replanned them on every run). */
static uint64_t key_hash(const dnn_key_t *k) {
  const unsigned char *p = (const unsigned char *)k;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof(*k); i++) h = (h ^ p[i]) * 1099511628211ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 33);
}

/* The plan of k: looked up in DNN_WAYS slots from its hash, made in the first
 * empty one, else in the first slot. v->lock held. */
static flagos_status_t plan_for(cuda_state_t *s, struct cuda_dnn *b, dnn_dev_t *v, const dnn_key_t *k,
                                cu_stream_t cs, dnn_plan_t **out) {
  size_t base = (size_t)(key_hash(k) % DNN_CACHE);
  dnn_plan_t *p = NULL, *empty = NULL;
  for (size_t i = 0; i < DNN_WAYS && !p; i++) {
    dnn_plan_t *q = &v->plans[(base + i) % DNN_CACHE];
    if (!q->used) {
      if (!empty) empty = q;
      continue;
    }
    if (memcmp(&q->key, k, sizeof(*k)) == 0) p = q;
  }
  *out = p;
  if (p) return NULL;
  p = empty ? empty : &v->plans[base];
  if (p->used) plan_release(b, p);
  *out = p;
  return plan_make(s, b, v, k, p, cs);
}

flagos_status_t cuda_dnn_conv(cuda_state_t *s, flagos_bstream_t stream, const flagos_libcall_t *c) {
  struct cuda_dnn *b = dnn_get(s);
  if (!b) return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  if (!b->loaded) return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv: %s", b->why));
  if (s->n_devices == 0)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv without a device (%s)", s->why_none));
  if (c->n_ints == 17)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv with an activation is not provided"));
  if ((c->n_bufs != 3 && c->n_bufs != 4) || c->n_ints != 16 || !c->bufs || !c->ints || !c->buf_dtypes)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                    "cuda backend: conv takes 3 or 4 buffers and 16 ints (got %d and %d)", c->n_bufs, c->n_ints);
  int32_t dt = c->buf_dtypes[0];
  bool known = dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT64 || dt == FLAGOS_FLOAT16 || dt == FLAGOS_BFLOAT16;
  for (int i = 1; i < c->n_bufs; i++) known = known && c->buf_dtypes[i] == dt;
  if (!known)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv on dtype %d is not provided", (int)dt));
  const int64_t *iv = c->ints;
  for (int i = 0; i < 16; i++)
    if (iv[i] < 0 || iv[i] > INT32_MAX)
      return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv int %d (%lld) outside cuDNN's range", i,
                                  (long long)iv[i]));
  int64_t N = iv[0], C = iv[1], K = iv[4], G = iv[15];
  if (N == 0 || K == 0 || iv[5] == 0 || iv[6] == 0) return NULL; /* an empty output */
  if (C == 0 || G == 0 || C % G || K % G || iv[7] == 0 || iv[8] == 0 || iv[11] == 0 || iv[12] == 0 || iv[13] == 0 ||
      iv[14] == 0)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv with an empty sum or a zero step"));
  for (int i = 0; i < c->n_bufs; i++)
    if (!c->bufs[i]) return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: conv with a NULL buffer");
  /* The measured rule's dtype part (auto_declines), before any handle is made. */
  if (!b->force && dtype_declined(b, dt)) {
    if (b->log && !atomic_exchange(&b->told_dtype, true))
      dnn_log(b, "conv in %s: left to the kernels, not measured (FLAGOS_CUDNN=1 takes it)", dt_name(dt, b->tf32));
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv in %s left to the kernels",
                                dt_name(dt, b->tf32)));
  }
  int d = cuda_call_device(s, stream, c, c->n_bufs - 1);
  flagos_status_t st = cuda_use(s, d);
  if (st) return st;
  dnn_dev_t *v = NULL;
  st = dev_get(s, b, d, &v);
  if (st) return st;

  dnn_key_t k;
  memset(&k, 0, sizeof k);
  k.dtype = dt;
  k.tf32 = dt == FLAGOS_FLOAT32 && b->tf32;
  k.bias = c->n_bufs == 4;
  memcpy(k.v, iv, sizeof k.v);
  cu_stream_t cs = stream ? stream->st : s->dev[d].stream;
  const void *X = c->bufs[0], *W = c->bufs[1], *B = k.bias ? c->bufs[2] : NULL;
  void *Y = c->bufs[c->n_bufs - 1];
  double one64 = 1, zero64 = 0;
  float one32 = 1, zero32 = 0;
  const void *one = dt == FLAGOS_FLOAT64 ? (const void *)&one64 : (const void *)&one32;
  const void *zero = dt == FLAGOS_FLOAT64 ? (const void *)&zero64 : (const void *)&zero32;

  pthread_mutex_lock(&v->lock);
  cu_ptr_t wsp = 0;
  dnn_plan_t *p = NULL;
  st = plan_for(s, b, v, &k, cs, &p);
  if (!st && !p->unsupported) st = ws_get(s, v, d, stream, p->ws_bytes, &wsp);
  /* The graph plans' tensors promise 16-byte alignment. */
  bool aligned = !p || !p->g || (((uintptr_t)X | (uintptr_t)W | (uintptr_t)Y | (uintptr_t)(B ? B : Y)) & 15) == 0;
  bool ran = false;
  if (!st && !p->unsupported && aligned && (wsp || !p->ws_bytes)) {
    void *ws = p->ws_bytes ? (void *)(uintptr_t)wsp : NULL;
    dnn_status_t r = b->lib.SetStream(v->h, cs);
    if (r == DNN_OK && p->g) {
      r = cuda_dnn_graph_run(v->h, p->g, X, W, B, Y, ws);
      if (cuda_dnn_graph_fused(p->g)) B = NULL;
    } else if (r == DNN_OK) {
      r = b->lib.Forward(v->h, one, p->xd, X, p->wd, W, p->cd, p->algo, ws, ws ? p->ws_bytes : 0, zero, p->yd, Y);
    }
    if (r == DNN_OK && B) r = b->lib.AddTensor(v->h, one, p->bd, B, one, p->yd, Y);
    if (r != DNN_OK)
      st = dnn_check(s, r, p->g ? "cudnnBackendExecute (+ cudnnAddTensor)"
                           : B  ? "cudnnConvolutionForward + cudnnAddTensor"
                                : "cudnnConvolutionForward");
    ran = !st;
  }
  pthread_mutex_unlock(&v->lock);
  if (st) return st;
  if (!ran)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: cuDNN has no algorithm for this conv"));
  atomic_fetch_add(&b->calls, 1);
  if (s->sync_launches) st = cuda_check(s, s->drv.StreamSynchronize(cs), "conv through cuDNN (stream synchronize)");
  return st;
}

void cuda_dnn_shutdown(cuda_state_t *s) {
  struct cuda_dnn *b = s->dnn;
  if (!b) return;
  if (b->log && b->loaded)
    dnn_log(b, "%llu conv call(s) through cuDNN, %llu declined", (unsigned long long)atomic_load(&b->calls),
            (unsigned long long)atomic_load(&b->declined));
  for (int d = 0; d < CUDA_MAX_DEVICES; d++) {
    dnn_dev_t *v = b->dev[d];
    if (!v) continue;
    if (d < s->n_devices && s->dev[d].ready && s->drv.CtxSetCurrent(s->dev[d].ctx) == CU_OK) {
      s->drv.StreamSynchronize(s->dev[d].stream);
      for (int i = 0; i < DNN_CACHE; i++)
        if (v->plans[i].used) plan_release(b, &v->plans[i]);
      for (int i = 0; i < v->n_ws; i++) cuda_alloc_put(s, &s->dev[d], v->ws[i].ptr);
      for (int i = 0; i < v->n_retired; i++) cuda_alloc_put(s, &s->dev[d], v->retired[i]);
      if (v->tune) s->drv.StreamDestroy(v->tune);
      b->lib.Destroy(v->h);
    }
    pthread_mutex_destroy(&v->lock);
    free(v);
  }
  /* cuDNN stays loaded, as cuBLASLt does: it may have threads of its own. */
  pthread_mutex_destroy(&b->lock);
  free(b);
  s->dnn = NULL;
}
