/* Library calls of the cuda backend: "gemm" through cuBLASLt, opened at run
 * time ($FLAGOS_CUBLASLT, else libcublasLt.so.13, else .so.12, also under
 * /usr/local/cuda/lib64), so that the plugin loads without it; without it every
 * call answers FLAGOS_ERR_UNSUPPORTED and the host runs the generic kernel.
 *
 * The contract (docs/kernel-ir.md), row-major:
 *   bufs [A, B, Y]; ints [batch, M, N, K, transA, transB, strideA, strideB, strideY];
 *   floats [alpha, beta]; Y_b = alpha * op(A_b) * op(B_b) + beta * Y_b;
 *   an optional 4th buffer, a bias of N values, is added to every row of Y_b.
 * cuBLASLt is column-major, and a row-major M×N matrix is the column-major N×M
 * one with the same bytes, so Y^T = op(B)^T op(A)^T is computed: cuBLASLt's A
 * is our B, its B our A. Our bias of N values is then one value per row of
 * cuBLASLt's N×M D, which is what CUBLASLT_EPILOGUE_BIAS adds (to every column,
 * and with a bias batch stride of 0, the default, to every batch).
 *
 * f32 (fp32 arithmetic; TF32 tensor cores only with FLAGOS_ALLOW_TF32=1), f16
 * and bf16 (fp32 accumulation and scaling), f64. Each shape's descriptors and
 * algorithm are chosen once and kept per device (a 4-way cache): for
 * products of at least BLAS_TUNE_FLOP, the heuristic's candidates are timed at
 * the first call (plan_tune) and the fastest kept (FLAGOS_CUDA_BLAS_TUNE=0:
 * the heuristic's first, untimed).
 * Each stream gets its own 32 MiB workspace from the device's allocator (the
 * default stream's, then up to 8 more: cuda_ws_set_t), so that work on two streams
 * never shares one; a graph captured on a stream keeps that stream's workspace,
 * which is safe while replays of graphs captured on one stream do not overlap
 * (the runtime replays on the default stream). Beyond that, calls run without
 * a workspace. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gemm_fold.h"
#include "cuda_blas_api.h"
#include "cuda_internal.h"

#define BLAS_CACHE 256
#define BLAS_WAYS 4
#define BLAS_WORKSPACE ((size_t)32 << 20)
/* Candidates the heuristic is asked for; products of at least BLAS_TUNE_FLOP
 * time each candidate once on their first call and keep the fastest (the
 * heuristic's first choice is 2-8% off the best at 8192^3 on an H100). */
#define BLAS_TUNE_ALGOS 8
#define BLAS_TUNE_FLOP 4e9

/* What a plan depends on. Zeroed before filling, so that padding compares equal. */
typedef struct blas_key {
  int32_t dtype, tf32, ws, ta, tb, beta0;
  uint32_t align_a, align_b, align_y, align_bias; /* align_bias 0: no bias */
  int64_t batch, m, n, k, sa, sb, sy;
  int64_t lda, ldb, ldy; /* the rows' strides where the call gives them, else 0 (packed) */
} blas_key_t;

typedef struct blas_plan {
  bool used;
  bool unsupported; /* cuBLASLt offers no algorithm: the generic kernel runs */
  bool tuned;       /* the candidates were timed (or there was nothing to time) */
  blas_key_t key;
  lt_desc_t op;
  lt_layout_t la, lb, ly;
  lt_algo_t algo;
  size_t ws_bytes;
  int n_cand; /* the heuristic's other candidates, kept until timed */
  lt_heuristic_t *cand;
} blas_plan_t;

typedef struct blas_dev {
  pthread_mutex_t lock; /* the plans and workspaces, and the order of calls through the handle */
  lt_handle_t h;
  cuda_ws_set_t ws; /* per stream */
  blas_plan_t plans[BLAS_CACHE];
  cu_stream_t tune_stream; /* plan_tune's, made on its first use */
  unsigned evict;          /* plan_find's turn */
} blas_dev_t;

struct cuda_blas {
  pthread_mutex_t lock; /* making devs */
  lt_lib_t lib;
  bool loaded;
  char why[320]; /* why not loaded */
  bool tf32, log, tune;
  char log_path[256]; /* "" : stderr */
  blas_dev_t *dev[CUDA_MAX_DEVICES];
  atomic_ullong calls, declined;
};

static bool lt_open(lt_lib_t *l, char *why, size_t why_len) {
  memset(l, 0, sizeof(*l));
  static const char *const names[] = {"libcublasLt.so.13", "libcublasLt.so.12"};
  void *h = cuda_lib_open("FLAGOS_CUBLASLT", names, 2, "cuBLASLt", l->path, sizeof l->path, why, why_len);
  if (!h) return false;
#define LT_SYM(name, sym, ret, params) sym,
#define LT_SLOT(name, sym, ret, params) (void **)&l->name,
  static const char *const syms[] = {LT_FUNCS(LT_SYM)};
  void **const slots[] = {LT_FUNCS(LT_SLOT)};
#undef LT_SYM
#undef LT_SLOT
  if (!cuda_lib_bind(h, syms, slots, (int)(sizeof syms / sizeof syms[0]), "cuBLASLt", l->path, why, why_len)) {
    dlclose(h);
    memset(l, 0, sizeof(*l));
    return false;
  }
  l->handle = h;
  return true;
}

#define blas_log(b, ...) cuda_log((b)->log_path, __VA_ARGS__)

/* The library state, made (and the library opened) on the first call. */
static struct cuda_blas *blas_get(cuda_state_t *s) {
  pthread_mutex_lock(&s->lock);
  if (!s->blas) {
    struct cuda_blas *b = calloc(1, sizeof(*b));
    if (b) {
      pthread_mutex_init(&b->lock, NULL);
      b->tf32 = cuda_env_on("FLAGOS_ALLOW_TF32");
      b->log = cuda_log_target(b->log_path, sizeof b->log_path);
      const char *tune = getenv("FLAGOS_CUDA_BLAS_TUNE");
      b->tune = !(tune && strcmp(tune, "0") == 0);
      b->loaded = lt_open(&b->lib, b->why, sizeof b->why);
      if (b->log && b->loaded)
        blas_log(b, "cuBLASLt %zu from %s%s", b->lib.GetVersion(), b->lib.path,
                 b->tf32 ? ", TF32 allowed for f32" : "");
      else if (b->log)
        blas_log(b, "%s", b->why);
    }
    s->blas = b;
  }
  pthread_mutex_unlock(&s->lock);
  return s->blas;
}

static const char *lt_name(struct cuda_blas *b, lt_status_t st) {
  const char *n = b->lib.GetStatusName ? b->lib.GetStatusName(st) : NULL;
  return n ? n : "unknown status";
}

static flagos_status_t lt_check(cuda_state_t *s, lt_status_t st, const char *what) {
  if (st == LT_OK) return NULL;
  flagos_code_t code = st == LT_ERR_NOT_SUPPORTED ? FLAGOS_ERR_UNSUPPORTED
                       : st == LT_ERR_ALLOC_FAILED ? FLAGOS_ERR_OUT_OF_MEMORY
                                                   : FLAGOS_ERR_BACKEND;
  return CUDA_ERR(s, code, "cuda backend: %s failed: %s (%d)", what, lt_name(s->blas, st), st);
}


/* Makes device d's handle and workspace once; needs its context current. */
static flagos_status_t dev_get(cuda_state_t *s, struct cuda_blas *b, int d, blas_dev_t **out) {
  pthread_mutex_lock(&b->lock);
  flagos_status_t st = NULL;
  if (!b->dev[d]) {
    blas_dev_t *v = calloc(1, sizeof(*v));
    if (!v) {
      st = CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
    } else {
      st = lt_check(s, b->lib.Create(&v->h), "cublasLtCreate");
      if (st) {
        free(v);
      } else {
        /* A device that cannot spare 32 MiB is out of memory for the model's next
         * allocation too, so the error is passed on (and asked again next time). */
        cu_ptr_t w0;
        st = cuda_ws_for(s, &v->ws, d, NULL, BLAS_WORKSPACE, &w0);
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


static void plan_release(struct cuda_blas *b, blas_plan_t *p) {
  if (p->op) b->lib.DescDestroy(p->op);
  if (p->la) b->lib.LayoutDestroy(p->la);
  if (p->lb) b->lib.LayoutDestroy(p->lb);
  if (p->ly) b->lib.LayoutDestroy(p->ly);
  free(p->cand);
  memset(p, 0, sizeof(*p));
}

/* The largest power of two (at most 256) dividing every address of a matrix
 * over the batch, which limits the algorithms cuBLASLt may choose. */
static uint32_t align_of(const void *p, int64_t stride, int64_t batch, size_t es) {
  uint64_t v = (uint64_t)(uintptr_t)p | 256;
  if (batch > 1 && stride) v |= (uint64_t)stride * es;
  return (uint32_t)(v & -v);
}

static int lt_type(int32_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT32: return LT_R_32F;
  case FLAGOS_FLOAT64: return LT_R_64F;
  case FLAGOS_FLOAT16: return LT_R_16F;
  default: return LT_R_16BF;
  }
}

static lt_status_t layout(struct cuda_blas *b, lt_layout_t *l, int type, int64_t rows, int64_t cols, int64_t batch,
                          int64_t stride, int64_t ld) {
  lt_status_t r = b->lib.LayoutCreate(l, type, (uint64_t)rows, (uint64_t)cols, ld ? ld : rows);
  if (r == LT_OK && batch > 1) {
    int32_t n = (int32_t)batch;
    r = b->lib.LayoutSet(*l, LT_LAYOUT_BATCH_COUNT, &n, sizeof n);
    if (r == LT_OK) r = b->lib.LayoutSet(*l, LT_LAYOUT_BATCH_STRIDE, &stride, sizeof stride);
  }
  return r;
}

/* Makes the descriptors of key k and asks the heuristic for one algorithm. */
static flagos_status_t plan_make(cuda_state_t *s, struct cuda_blas *b, blas_dev_t *v, const blas_key_t *k,
                                 const void *bias, blas_plan_t *p) {
  memset(p, 0, sizeof(*p));
  p->used = true;
  p->key = *k;
  int type = lt_type(k->dtype);
  int compute = k->dtype == FLAGOS_FLOAT64 ? LT_COMPUTE_64F
                : k->tf32                  ? LT_COMPUTE_32F_FAST_TF32
                                           : LT_COMPUTE_32F;
  int scale = k->dtype == FLAGOS_FLOAT64 ? LT_R_64F : LT_R_32F;
  /* cuBLASLt's A is our B and its B our A (see the top of the file); each
   * layout describes the matrix as stored, column-major, before its op. */
  int32_t opa = k->tb ? LT_OP_T : LT_OP_N, opb = k->ta ? LT_OP_T : LT_OP_N;
  lt_status_t r = b->lib.DescCreate(&p->op, compute, scale);
  if (r == LT_OK) r = b->lib.DescSet(p->op, LT_DESC_TRANSA, &opa, sizeof opa);
  if (r == LT_OK) r = b->lib.DescSet(p->op, LT_DESC_TRANSB, &opb, sizeof opb);
  if (r == LT_OK && k->align_bias) {
    uint32_t epi = LT_EPILOGUE_BIAS;
    r = b->lib.DescSet(p->op, LT_DESC_EPILOGUE, &epi, sizeof epi);
    /* The heuristic reads the pointer's alignment; the call sets its own pointer. */
    if (r == LT_OK) r = b->lib.DescSet(p->op, LT_DESC_BIAS_POINTER, &bias, sizeof bias);
  }
  if (r == LT_OK) r = layout(b, &p->la, type, k->tb ? k->k : k->n, k->tb ? k->n : k->k, k->batch, k->sb, k->ldb);
  if (r == LT_OK) r = layout(b, &p->lb, type, k->ta ? k->m : k->k, k->ta ? k->k : k->m, k->batch, k->sa, k->lda);
  if (r == LT_OK) r = layout(b, &p->ly, type, k->n, k->m, k->batch, k->sy, k->ldy);
  lt_pref_t pref = NULL;
  if (r == LT_OK) r = b->lib.PrefCreate(&pref);
  uint64_t ws = k->ws ? BLAS_WORKSPACE : 0;
  if (r == LT_OK) r = b->lib.PrefSet(pref, LT_PREF_MAX_WORKSPACE, &ws, sizeof ws);
  if (r == LT_OK) r = b->lib.PrefSet(pref, LT_PREF_ALIGN_A, &k->align_b, sizeof k->align_b);
  if (r == LT_OK) r = b->lib.PrefSet(pref, LT_PREF_ALIGN_B, &k->align_a, sizeof k->align_a);
  if (r == LT_OK) r = b->lib.PrefSet(pref, LT_PREF_ALIGN_C, &k->align_y, sizeof k->align_y);
  if (r == LT_OK) r = b->lib.PrefSet(pref, LT_PREF_ALIGN_D, &k->align_y, sizeof k->align_y);
  lt_heuristic_t res[BLAS_TUNE_ALGOS];
  memset(res, 0, sizeof res);
  int got = 0;
  double flop = 2.0 * (double)k->batch * (double)k->m * (double)k->n * (double)k->k;
  int want = b->tune && flop >= BLAS_TUNE_FLOP ? BLAS_TUNE_ALGOS : 1;
  if (r == LT_OK) r = b->lib.AlgoGetHeuristic(v->h, p->op, p->la, p->lb, p->ly, p->ly, pref, want, res, &got);
  if (pref) b->lib.PrefDestroy(pref);
  if (r == LT_OK && (got < 1 || res[0].state != LT_OK)) r = LT_ERR_NOT_SUPPORTED;
  if (r == LT_ERR_NOT_SUPPORTED) {
    /* Remembered, so that the shape does not ask again. */
    p->unsupported = true;
  } else if (r != LT_OK) {
    flagos_status_t st = lt_check(s, r, "preparing a cuBLASLt matmul");
    plan_release(b, p);
    return st;
  } else {
    p->algo = res[0].algo;
    p->ws_bytes = res[0].workspace_size;
    int n = 0;
    for (int i = 0; i < got; i++) n += res[i].state == LT_OK;
    p->tuned = n < 2;
    if (!p->tuned) {
      p->cand = malloc(sizeof(*p->cand) * (size_t)n);
      if (!p->cand) {
        p->tuned = true;
      } else {
        for (int i = 0; i < got; i++)
          if (res[i].state == LT_OK) p->cand[p->n_cand++] = res[i];
      }
    }
  }
  if (b->log)
    blas_log(b, "gemm %s batch %lld, %lldx%lldx%lld, %c%c, align %u/%u/%u%s%s: %s",
            k->dtype == FLAGOS_FLOAT32 ? (k->tf32 ? "f32 (tf32)" : "f32")
            : k->dtype == FLAGOS_FLOAT64 ? "f64"
            : k->dtype == FLAGOS_FLOAT16 ? "f16"
                                         : "bf16",
            (long long)k->batch, (long long)k->m, (long long)k->n, (long long)k->k, k->ta ? 'T' : 'N',
            k->tb ? 'T' : 'N', k->align_a, k->align_b, k->align_y, k->ws ? "" : ", no workspace",
            k->align_bias ? ", bias epilogue" : "",
            p->unsupported ? "no cuBLASLt algorithm, generic kernel"
            : p->tuned     ? "cuBLASLt"
                           : "cuBLASLt, candidates to time");
  return NULL;
}

/* Times each of p's candidates once and keeps the fastest. The timing runs on
 * a stream of its own, into a scratch output and workspace allocated in stream
 * order (nothing here synchronises the device), so it may happen while the
 * call's stream is being captured into a graph (the first run of a session is
 * captured): A and B then hold whatever they hold, which does not change the
 * time. Outside a capture the call's stream is drained first so that earlier
 * kernels do not share the GPU with the timing. Whatever fails leaves the
 * heuristic's first choice. */
static void plan_tune(cuda_state_t *s, struct cuda_blas *b, blas_dev_t *v, blas_plan_t *p,
                      const flagos_libcall_t *c, const void *pa, const void *pb, size_t y_bytes, cu_stream_t cs) {
  p->tuned = true;
  int capturing = 1;
  if (!s->drv.StreamIsCapturing || !s->drv.MemAllocAsync || !s->drv.MemFreeAsync ||
      s->drv.StreamIsCapturing(cs, &capturing) != CU_OK)
    goto done;
  if (!v->tune_stream && s->drv.StreamCreate(&v->tune_stream, CU_STREAM_NON_BLOCKING_FLAG) != CU_OK) {
    v->tune_stream = NULL;
    goto done;
  }
  if (!capturing && s->drv.StreamSynchronize(cs) != CU_OK) goto done;
  cu_stream_t ts = v->tune_stream;
  size_t ws_off = (y_bytes + 255) & ~(size_t)255;
  cu_ptr_t y = 0;
  if (s->drv.MemAllocAsync(&y, ws_off + BLAS_WORKSPACE, ts) != CU_OK) goto done;
  void *yp = (void *)(uintptr_t)y, *ws = (void *)(uintptr_t)(y + ws_off);
  cu_event_t e0 = NULL, e1 = NULL;
  bool ok = s->drv.EventCreate(&e0, 0) == CU_OK && s->drv.EventCreate(&e1, 0) == CU_OK;
  int best = -1;
  float best_ms = 0, first_ms = -1;
  for (int i = 0; ok && i < p->n_cand; i++) {
    const lt_heuristic_t *h = &p->cand[i];
    size_t wb = h->workspace_size;
    lt_status_t r = b->lib.Matmul(v->h, p->op, pa, c->bufs[1], p->la, c->bufs[0], p->lb, pb, yp, p->ly, yp, p->ly,
                                  &h->algo, wb ? ws : NULL, wb, ts);
    if (r != LT_OK) continue;
    s->drv.EventRecord(e0, ts);
    for (int j = 0; j < 3 && r == LT_OK; j++)
      r = b->lib.Matmul(v->h, p->op, pa, c->bufs[1], p->la, c->bufs[0], p->lb, pb, yp, p->ly, yp, p->ly, &h->algo,
                        wb ? ws : NULL, wb, ts);
    float ms = 0;
    if (s->drv.EventRecord(e1, ts) != CU_OK || s->drv.EventSynchronize(e1) != CU_OK ||
        s->drv.EventElapsedTime(&ms, e0, e1) != CU_OK) {
      ok = false;
      break;
    }
    if (r != LT_OK) continue;
    if (i == 0) first_ms = ms;
    if (best < 0 || ms < best_ms) {
      best = i;
      best_ms = ms;
    }
  }
  if (ok && best >= 0) {
    p->algo = p->cand[best].algo;
    p->ws_bytes = p->cand[best].workspace_size;
    if (b->log)
      blas_log(b, "gemm %lldx%lldx%lld batch %lld: candidate %d of %d fastest, %.4f ms (the heuristic's first %.4f ms)",
               (long long)p->key.m, (long long)p->key.n, (long long)p->key.k, (long long)p->key.batch, best + 1,
               p->n_cand, best_ms / 3, first_ms / 3);
  }
  if (e1) s->drv.EventDestroy(e1);
  if (e0) s->drv.EventDestroy(e0);
  s->drv.MemFreeAsync(y, ts);
done:
  free(p->cand);
  p->cand = NULL;
  p->n_cand = 0;
}

static uint64_t key_hash(const blas_key_t *k) {
  const unsigned char *p = (const unsigned char *)k;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof(*k); i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* The plan of key k, or the slot to make it in: BLAS_WAYS slots from the key's
 * hash, the first free one, else the next in turn is released (two shapes that
 * alternate, as a model's attention products do, would thrash one slot). */
static blas_plan_t *plan_find(struct cuda_blas *b, blas_dev_t *v, const blas_key_t *k) {
  uint64_t h = key_hash(k);
  blas_plan_t *fresh = NULL;
  for (int i = 0; i < BLAS_WAYS; i++) {
    blas_plan_t *p = &v->plans[(h + (uint64_t)i) % BLAS_CACHE];
    if (p->used && memcmp(&p->key, k, sizeof *k) == 0) return p;
    if (!p->used && !fresh) fresh = p;
  }
  if (fresh) return fresh;
  blas_plan_t *p = &v->plans[(h + v->evict++ % BLAS_WAYS) % BLAS_CACHE];
  plan_release(b, p);
  return p;
}

static flagos_status_t declined(cuda_state_t *s, flagos_status_t st) {
  if (s->blas) atomic_fetch_add(&s->blas->declined, 1);
  return st;
}

static flagos_status_t gemm(cuda_state_t *s, flagos_bstream_t stream, const flagos_libcall_t *c) {
  /* an activation after the product (a thirteenth int, docs/kernel-ir.md): the host runs its kernel instead */
  if (c->n_ints == 13)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: gemm with an activation is not provided"));
  if ((c->n_bufs != 3 && c->n_bufs != 4) || c->n_ints < 9 || c->n_ints > 12 || c->n_floats != 2 || !c->bufs ||
      !c->ints || !c->floats || !c->buf_dtypes)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                    "cuda backend: gemm takes 3 buffers (4 with a bias), 9 to 12 ints and 2 floats (got %d, %d, %d)",
                    c->n_bufs, c->n_ints, c->n_floats);
  int32_t dt = c->buf_dtypes[0];
  bool known = dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT64 || dt == FLAGOS_FLOAT16 || dt == FLAGOS_BFLOAT16;
  const void *bias = c->n_bufs == 4 ? c->bufs[3] : NULL;
  if (!known || c->buf_dtypes[1] != dt || c->buf_dtypes[2] != dt || (c->n_bufs == 4 && c->buf_dtypes[3] != dt))
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: gemm on dtypes %d/%d/%d is not provided",
                                (int)dt, (int)c->buf_dtypes[1], (int)c->buf_dtypes[2]));
  const int64_t *iv = c->ints;
  int64_t batch = iv[0], M = iv[1], N = iv[2], K = iv[3], sa = iv[6], sb = iv[7], sy = iv[8];
  int ta = iv[4] != 0, tb = iv[5] != 0;
  int64_t ld[3]; /* lda, ldb, ldy; 0: packed */
  char bad = flagos_gemm_row_strides(iv, c->n_ints, M, N, K, ta, tb, ld);
  if (bad)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: gemm with %c's rows %lld apart, shorter than a row",
                    bad, (long long)ld[bad == 'A' ? 0 : bad == 'B' ? 1 : 2]);
  if (batch < 0 || M < 0 || N < 0 || K < 0 || sa < 0 || sb < 0 || sy < 0)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                    "cuda backend: gemm with a negative size or stride (batch %lld, M %lld, N %lld, K %lld)",
                    (long long)batch, (long long)M, (long long)N, (long long)K);
  if (batch == 0 || M == 0 || N == 0) return NULL;
  if (!c->bufs[0] || !c->bufs[1] || !c->bufs[2] || (c->n_bufs == 4 && !bias))
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: gemm with a NULL buffer");
  /* K == 0 (Y = beta*Y) and batches writing one Y are rare: the generic kernel serves them. */
  if (K == 0 || (sy == 0 && batch > 1))
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: gemm with K = 0 or a shared Y"));
  struct cuda_blas *b = blas_get(s);
  if (!b) return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  if (!b->loaded) return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: %s", b->why));
  if (s->n_devices == 0)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: gemm without a device (%s)", s->why_none));
  flagos_gemm_fold_batch(&batch, &M, K, N, ta, sa, sb, sy, ld[0], ld[2]);
  if (batch > INT32_MAX)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: gemm batch beyond cuBLASLt's 32-bit count"));
  int d = cuda_call_device(s, stream, c, 2);
  flagos_status_t st = cuda_use(s, d);
  if (st) return st;
  blas_dev_t *v = NULL;
  st = dev_get(s, b, d, &v);
  if (st) return st;

  size_t es = dt == FLAGOS_FLOAT64 ? 8 : dt == FLAGOS_FLOAT32 ? 4 : 2;
  double alpha = c->floats[0], beta = c->floats[1];
  blas_key_t k;
  memset(&k, 0, sizeof k);
  k.dtype = dt;
  k.tf32 = dt == FLAGOS_FLOAT32 && b->tf32;
  k.ta = ta;
  k.tb = tb;
  k.beta0 = beta == 0;
  k.align_a = align_of(c->bufs[0], sa, batch, es);
  k.align_b = align_of(c->bufs[1], sb, batch, es);
  k.align_y = align_of(c->bufs[2], sy, batch, es);
  uint32_t *al[3] = {&k.align_a, &k.align_b, &k.align_y};
  for (int i = 0; i < 3; i++) {
    if (!ld[i]) continue;
    uint32_t rows = align_of(c->bufs[i], ld[i], 2, es); /* the rows' alignment too */
    if (rows < *al[i]) *al[i] = rows;
  }
  k.lda = ld[0];
  k.ldb = ld[1];
  k.ldy = ld[2];
  k.align_bias = bias ? align_of(bias, 0, 1, es) : 0;
  k.batch = batch;
  k.m = M;
  k.n = N;
  k.k = K;
  if (batch > 1) {
    k.sa = sa;
    k.sb = sb;
    k.sy = sy;
  }
  /* Scale factors in the matmul's scale type: double for f64, else float. */
  float fa = (float)alpha, fb = (float)beta;
  const void *pa = dt == FLAGOS_FLOAT64 ? (const void *)&alpha : (const void *)&fa;
  const void *pb = dt == FLAGOS_FLOAT64 ? (const void *)&beta : (const void *)&fb;
  cu_stream_t cs = stream ? stream->st : s->dev[d].stream;

  pthread_mutex_lock(&v->lock);
  cu_ptr_t wsp = 0;
  st = cuda_ws_for(s, &v->ws, d, stream, BLAS_WORKSPACE, &wsp);
  k.ws = wsp != 0;
  blas_plan_t *p = st ? NULL : plan_find(b, v, &k);
  if (!st && !p->used) st = plan_make(s, b, v, &k, bias, p);
  lt_status_t r = LT_OK;
  if (!st && p->unsupported) {
    r = LT_ERR_NOT_SUPPORTED;
  } else if (!st) {
    /* The plan's descriptor is shared by the calls of one shape: each sets its bias. */
    if (bias) r = b->lib.DescSet(p->op, LT_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (r == LT_OK && !p->tuned) {
      int64_t mat = (M - 1) * (ld[2] ? ld[2] : N) + N, ny = batch > 1 ? (batch - 1) * sy + mat : mat;
      plan_tune(s, b, v, p, c, pa, pb, (size_t)ny * es, cs);
    }
    void *ws = k.ws && p->ws_bytes ? (void *)(uintptr_t)wsp : NULL;
    if (r == LT_OK)
      r = b->lib.Matmul(v->h, p->op, pa, c->bufs[1], p->la, c->bufs[0], p->lb, pb, c->bufs[2], p->ly, c->bufs[2],
                        p->ly, &p->algo, ws, ws ? p->ws_bytes : 0, cs);
  }
  pthread_mutex_unlock(&v->lock);
  if (st) return st;
  if (r == LT_ERR_NOT_SUPPORTED)
    return declined(s, CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: cuBLASLt has no algorithm for this gemm"));
  if (r != LT_OK) return lt_check(s, r, "cublasLtMatmul");
  atomic_fetch_add(&b->calls, 1);
  if (s->sync_launches) st = cuda_check(s, s->drv.StreamSynchronize(cs), "gemm through cuBLASLt (stream synchronize)");
  return st;
}

flagos_status_t cuda_library_call(void *state, flagos_bstream_t stream, const flagos_libcall_t *call) {
  cuda_state_t *s = state;
  if (!call || !call->name)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: library call without a name");
  if (strcmp(call->name, "gemm") == 0) return gemm(s, stream, call);
  return CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: no library call '%s'", call->name);
}

void cuda_blas_shutdown(cuda_state_t *s) {
  struct cuda_blas *b = s->blas;
  if (!b) return;
  if (b->log)
    blas_log(b, "%llu gemm call(s) through cuBLASLt, %llu declined",
            (unsigned long long)atomic_load(&b->calls), (unsigned long long)atomic_load(&b->declined));
  for (int d = 0; d < CUDA_MAX_DEVICES; d++) {
    blas_dev_t *v = b->dev[d];
    if (!v) continue;
    if (d < s->n_devices && s->dev[d].ready && s->drv.CtxSetCurrent(s->dev[d].ctx) == CU_OK) {
      s->drv.StreamSynchronize(s->dev[d].stream);
      for (int i = 0; i < BLAS_CACHE; i++)
        if (v->plans[i].used) plan_release(b, &v->plans[i]);
      cuda_ws_release(s, &v->ws, d);
      b->lib.Destroy(v->h);
      if (v->tune_stream) s->drv.StreamDestroy(v->tune_stream);
    }
    pthread_mutex_destroy(&v->lock);
    free(v);
  }
  /* cuBLASLt stays loaded, as the driver does: it may have threads of its own. */
  pthread_mutex_destroy(&b->lock);
  free(b);
  s->blas = NULL;
}
