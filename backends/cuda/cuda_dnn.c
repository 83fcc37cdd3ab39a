/* The "conv" library call through cuDNN, opened at run time
 * ($FLAGOS_CUDNN_LIBRARY, else libcudnn.so.9, else .so.8, also under
 * /usr/local/cuda/lib64), so that the plugin loads without it; without it, with
 * FLAGOS_CUDNN=0 or without a device every call answers FLAGOS_ERR_UNSUPPORTED
 * and the host runs the node's kernels (im2col + gemm).
 *
 * The contract (docs/kernel-ir.md): bufs [X, W, (B), Y]; ints [N, C, H, W, K,
 * OH, OW, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, group]; NCHW,
 * Y = conv(X, W) + B with the start pads given. cuDNN pads both ends alike,
 * which gives the same values for every output position it computes; where
 * the ONNX end pad makes a different output size the call is declined.
 *
 * Which shapes: by default only those where cuDNN measured faster than the
 * kernels (auto_declines: f32 convolutions with a window over a large output);
 * FLAGOS_CUDNN=1 takes every shape cuDNN can do. f32 (FMA kernels only, no
 * TF32, unless FLAGOS_ALLOW_TF32=1), f16 and bf16 (tensor cores, f32
 * accumulation), f64.
 *
 * Per device: one handle, bound to the call's stream before each use; a cache
 * of plans (descriptors and the algorithm) per shape, DNN_WAYS slots per hash;
 * one workspace per stream (as cuda_blas.c does: the default stream's, then up
 * to 8 more (cuda_ws_set_t), so a captured graph keeps its own). The algorithm is
 * chosen on a shape's first call: outside a graph capture (the default
 * stream) cudnnFindConvolutionForwardAlgorithmEx times the candidates on the
 * call's own buffers; in a capture (where nothing may synchronise) the
 * heuristic (cudnnGetConvolutionForwardAlgorithm_v7) picks, and the first call
 * outside one times the shape again. The bias is added by cudnnAddTensor after
 * the convolution. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_dnn.h"
#include "cuda_dnn_api.h"

#define DNN_CACHE 256
#define DNN_WORKSPACE ((size_t)64 << 20)
#define DNN_WAYS 4

/* What a plan depends on. Zeroed before filling, so that padding compares equal. */
typedef struct dnn_key {
  int32_t dtype, tf32, bias, ws, tuned;
  int32_t unused;
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
} dnn_plan_t;

typedef struct dnn_dev {
  pthread_mutex_t lock; /* the plans and workspaces, and the order of calls through the handle */
  dnn_handle_t h;
  cuda_ws_set_t ws; /* per stream */
  dnn_plan_t plans[DNN_CACHE];
} dnn_dev_t;

struct cuda_dnn {
  pthread_mutex_t lock; /* making devs */
  dnn_lib_t lib;
  bool loaded, off, force; /* FLAGOS_CUDNN: "0" off, "1" every shape cuDNN takes, unset the measured rule */
  char why[320]; /* why not loaded */
  bool tf32, log;
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


/* Makes device d's handle and default-stream workspace once; needs its context current. */
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
        cu_ptr_t w0;
        st = cuda_ws_for(s, &v->ws, d, NULL, DNN_WORKSPACE, &w0);
        if (st) {
          b->lib.Destroy(v->h);
          free(v);
        } else {
          pthread_mutex_init(&v->lock, NULL);
          b->dev[d] = v;
        }
      }
    }
  }
  *out = b->dev[d];
  pthread_mutex_unlock(&b->lock);
  return st;
}


static void plan_release(struct cuda_dnn *b, dnn_plan_t *p) {
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

/* An algorithm cuDNN reports may run here: it works, fits the workspace and,
 * for f32 without TF32, does its arithmetic in fp32 FMA. */
static bool usable(const dnn_key_t *k, const dnn_perf_t *r, size_t ws) {
  if (r->status != DNN_OK || r->memory > ws) return false;
  if (k->dtype == FLAGOS_FLOAT32 && !k->tf32 && r->math_type != DNN_FMA_MATH) return false;
  return true;
}

/* Why a shape is left to the kernels when FLAGOS_CUDNN is unset, or NULL. The
 * rule is what scripts/gpu/profile.sh measured on an H100 (cuDNN 9.14 through
 * this legacy API, ResNet-50, each conv against im2col + cuBLASLt): f32 3x3
 * convolutions over 64x56x56 outputs ran 0.41 ms against 0.65; over 28x28 and
 * 14x14 outputs both took the same, over 7x7 cuDNN 0.69 against 0.47; 1x1
 * convolutions, the 7x7 stem (3 channels) and every f16 one (batch 64 and 1)
 * were slower, f16 2-3x at batch 64 and up to 100x at batch 1, where each call
 * costs cuDNN 0.2-0.4 ms. f64, bf16 and TF32 were not measured. */
static const char *auto_declines(const dnn_key_t *k) {
  const int64_t *iv = k->v;
  if (k->dtype != FLAGOS_FLOAT32 || k->tf32) return "only f32 without TF32 measured faster (FLAGOS_CUDNN=1 takes it)";
  if (iv[7] * iv[8] == 1) return "a 1x1 kernel measured faster as a gemm (FLAGOS_CUDNN=1 takes it)";
  if (iv[1] / iv[15] < 16) return "few channels per group measured faster as im2col + gemm (FLAGOS_CUDNN=1 takes it)";
  if (iv[0] * iv[5] * iv[6] < 100000)
    return "a small output measured no faster through cuDNN (FLAGOS_CUDNN=1 takes it)";
  return NULL;
}

/* Makes the descriptors of key k and chooses the algorithm: timed on the
 * call's buffers (x, w, y) when `tune`, else the heuristic's first. */
static flagos_status_t plan_make(cuda_state_t *s, struct cuda_dnn *b, dnn_dev_t *v, const dnn_key_t *k,
                                 dnn_plan_t *p, const void *x, const void *w, void *y, cu_ptr_t wsp, cu_stream_t cs) {
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
  const char *why = b->force ? NULL : auto_declines(k);
  dnn_status_t r = DNN_OK;
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
    memset(res, 0, sizeof res);
    int got = 0;
    size_t ws = k->ws ? DNN_WORKSPACE : 0;
    if (k->tuned) r = b->lib.SetStream(v->h, cs);
    if (k->tuned && r == DNN_OK)
      r = b->lib.FindAlgo(v->h, p->xd, x, p->wd, w, p->cd, p->yd, y, DNN_FWD_ALGO_COUNT * 2, &got, res,
                          ws ? (void *)(uintptr_t)wsp : NULL, ws);
    else if (!k->tuned)
      r = b->lib.GetAlgo(v->h, p->xd, p->wd, p->cd, p->yd, DNN_FWD_ALGO_COUNT * 2, &got, res);
    int pick = -1;
    for (int i = 0; r == DNN_OK && i < got && pick < 0; i++)
      if (usable(k, &res[i], ws)) pick = i;
    if (r != DNN_OK) {
      why = "cuDNN found no algorithm";
    } else if (pick < 0) {
      why = "no algorithm within the workspace and math allowed";
    } else {
      p->algo = res[pick].algo;
      p->ws_bytes = res[pick].memory;
      /* The math type the chosen algorithm was measured with. */
      r = b->lib.SetConvMath(p->cd, res[pick].math_type);
      if (r != DNN_OK) why = "cuDNN refuses the algorithm's math type";
      if (b->log && !why)
        dnn_log(b,
                "conv %s N %lld C %lld %lldx%lld -> K %lld %lldx%lld, kernel %lldx%lld, pad %lld/%lld, stride "
                "%lld/%lld, dilation %lld/%lld, group %lld%s: cuDNN algo %d (%s%s, %.3f ms, workspace %zu)",
                dt_name(k->dtype, k->tf32), (long long)iv[0], (long long)iv[1], (long long)iv[2], (long long)iv[3],
                (long long)iv[4], (long long)iv[5], (long long)iv[6], (long long)iv[7], (long long)iv[8],
                (long long)iv[9], (long long)iv[10], (long long)iv[11], (long long)iv[12], (long long)iv[13],
                (long long)iv[14], (long long)iv[15], k->bias ? ", bias" : "", p->algo,
                k->tuned ? "timed" : "heuristic",
                res[pick].math_type == DNN_FMA_MATH       ? ", fma"
                : res[pick].math_type == DNN_DEFAULT_MATH ? ""
                                                          : ", tensor ops",
                (double)res[pick].time, p->ws_bytes);
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

/* The plan of k: looked up in DNN_WAYS slots from its hash (ignoring how its
 * algorithm was chosen), made in the first empty one, else in the first slot.
 * A plan chosen by the heuristic is remade, timed, on the first call that may
 * time. v->lock held. */
static flagos_status_t plan_for(cuda_state_t *s, struct cuda_dnn *b, dnn_dev_t *v, dnn_key_t *k, const void *x,
                                const void *w, void *y, cu_ptr_t wsp, cu_stream_t cs, dnn_plan_t **out) {
  int32_t tuned = k->tuned;
  k->tuned = 0;
  size_t base = (size_t)(key_hash(k) % DNN_CACHE);
  dnn_plan_t *p = NULL, *empty = NULL;
  for (size_t i = 0; i < DNN_WAYS && !p; i++) {
    dnn_plan_t *q = &v->plans[(base + i) % DNN_CACHE];
    if (!q->used) {
      if (!empty) empty = q;
      continue;
    }
    dnn_key_t qk = q->key;
    qk.tuned = 0;
    if (memcmp(&qk, k, sizeof qk) == 0) p = q;
  }
  k->tuned = tuned;
  if (p && (p->key.tuned || !tuned || p->unsupported)) {
    *out = p;
    return NULL;
  }
  if (!p) p = empty ? empty : &v->plans[base];
  if (p->used) plan_release(b, p);
  *out = p;
  return plan_make(s, b, v, k, p, x, w, y, wsp, cs);
}

flagos_status_t cuda_dnn_conv(cuda_state_t *s, flagos_bstream_t stream, const flagos_libcall_t *c) {
  struct cuda_dnn *b = dnn_get(s);
  if (!b) return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  if (!b->loaded) return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv: %s", b->why));
  if (s->n_devices == 0)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: conv without a device (%s)", s->why_none));
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
  if (!b->force && (dt != FLAGOS_FLOAT32 || b->tf32)) {
    if (b->log && !atomic_exchange(&b->told_dtype, true))
      dnn_log(b, "conv in %s: left to the kernels, measured faster than cuDNN (FLAGOS_CUDNN=1 takes it)",
              dt_name(dt, b->tf32));
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
  /* The runtime captures graphs on streams of its own; plain runs use the default one. */
  k.tuned = stream == NULL;
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
  st = cuda_ws_for(s, &v->ws, d, stream, DNN_WORKSPACE, &wsp);
  k.ws = wsp != 0;
  if (!st) st = plan_for(s, b, v, &k, X, W, Y, wsp, cs, &p);
  bool ran = false;
  if (!st && !p->unsupported) {
    void *ws = p->ws_bytes ? (void *)(uintptr_t)wsp : NULL;
    dnn_status_t r = b->lib.SetStream(v->h, cs);
    if (r == DNN_OK)
      r = b->lib.Forward(v->h, one, p->xd, X, p->wd, W, p->cd, p->algo, ws, ws ? p->ws_bytes : 0, zero, p->yd, Y);
    if (r == DNN_OK && B) r = b->lib.AddTensor(v->h, one, p->bd, B, one, p->yd, Y);
    if (r != DNN_OK)
      st = dnn_check(s, r, B ? "cudnnConvolutionForward + cudnnAddTensor" : "cudnnConvolutionForward");
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
      cuda_ws_release(s, &v->ws, d);
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
