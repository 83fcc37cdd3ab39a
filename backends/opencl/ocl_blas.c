/* Library calls of the opencl backend: "conv" through our own kernels
 * (ocl_conv.c, where they take gemm); "gemm" through our own kernels
 * (ocl_gemm.c: by default on GPUs; f32, f64, and f16 summed in float on any
 * device; the bias of a 4-buffer call as an epilogue) or CLBlast (f32, f64
 * where the device has cl_khr_fp64, f16 on request where it has cl_khr_fp16;
 * no bias).
 * CLBlast (libclblast.so.1, or $FLAGOS_CLBLAST) is opened with dlopen at the
 * first call, so the plugin loads and runs its generic kernels without it.
 * The contract is in docs/kernel-ir.md:
 *   bufs [A, B, Y] or [A, B, Y, bias]; ints [batch, M, N, K, transA, transB,
 *   strideA, strideB, strideY] (batch strides in elements, 0 = the same matrix
 *   for every batch); floats [alpha, beta]; row-major;
 *   Y_b = alpha * op(A_b) * op(B_b) + beta * Y_b (+ bias[j]) for each batch b.
 * Whatever CLBlast does not take (other dtypes, K == 0, a device it cannot
 * build for) answers FLAGOS_ERR_UNSUPPORTED before anything is queued, and the
 * host runs the kernel's generic body.
 *
 * FLAGOS_OPENCL_BLAS: 1 = f32 and f64 through the library (ours or CLBlast,
 * FLAGOS_OPENCL_GEMM picks), f16 through ours; 0 = never (the generic kernels only); f16 = also
 * f16 through CLBlast (its Hgemm accumulates in half precision, far less
 * accurate than the generic kernel's f32 sums, so it is opt-in); unset = 1 on
 * GPUs and accelerators, on CPU devices products of at least 2^24 multiply-adds
 * only (blas_mode).
 * FLAGOS_TRACE (any value) prints one line per call made, or refused, to
 * stderr; FLAGOS_OPENCL_BLAS_LOG=FILE appends them to FILE.
 * Before a device's first product, CLBlast gets the tuning parameters of
 * ocl_blas_params.c (FLAGOS_CLBLAST_PARAMS); products with few output tiles
 * and a long K run split over K (ocl_blas_split.c, FLAGOS_OPENCL_SPLITK). */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../gemm_fold.h"
#include "ocl_internal.h"

/* ---- the part of CLBlast's C API used here (clblast_c.h, CLBlast 1.x) ---- */
typedef int blas_status_t; /* CLBlastStatusCode (has negative values: int) */
typedef unsigned blas_enum_t; /* CLBlastLayout, CLBlastTranspose (non-negative: unsigned) */
enum {
  BLAS_SUCCESS = 0,
  BLAS_ROW_MAJOR = 101,
  BLAS_NO_TRANS = 111,
  BLAS_TRANS = 112,
  /* CLBlast's own codes are <= this; the ones above it are OpenCL's */
  BLAS_OWN_CODES = -1000,
  /* refusals that hold for every size on a device */
  BLAS_NOT_IMPLEMENTED = -1024,
  BLAS_LOCAL_MEM = -2046,
  BLAS_NO_HALF = -2045,
  BLAS_NO_DOUBLE = -2044,
  BLAS_DATABASE_ERROR = -2041,
};

/* (layout, transA, transB, m, n, k, alpha, A, offset, ld, B, offset, ld, beta, C, offset, ld, queue, event) */
#define BLAS_GEMM_TYPE(name, T)                                                                                     \
  typedef blas_status_t name(blas_enum_t layout, blas_enum_t a_transpose, blas_enum_t b_transpose, const size_t m, \
                             const size_t n, const size_t k, const T alpha, const cl_mem a_buffer,                   \
                             const size_t a_offset, const size_t a_ld, const cl_mem b_buffer, const size_t b_offset, \
                             const size_t b_ld, const T beta, cl_mem c_buffer, const size_t c_offset,                \
                             const size_t c_ld, cl_command_queue *queue, cl_event *event)
/* the same with a batch stride after each ld, and the batch count before the queue */
#define BLAS_GEMM_SB_TYPE(name, T)                                                                                  \
  typedef blas_status_t name(blas_enum_t layout, blas_enum_t a_transpose, blas_enum_t b_transpose, const size_t m, \
                             const size_t n, const size_t k, const T alpha, const cl_mem a_buffer,                   \
                             const size_t a_offset, const size_t a_ld, const size_t a_stride, const cl_mem b_buffer, \
                             const size_t b_offset, const size_t b_ld, const size_t b_stride, const T beta,          \
                             cl_mem c_buffer, const size_t c_offset, const size_t c_ld, const size_t c_stride,       \
                             const size_t batch_count, cl_command_queue *queue, cl_event *event)
BLAS_GEMM_TYPE(blas_sgemm_t, float);
BLAS_GEMM_TYPE(blas_dgemm_t, double);
BLAS_GEMM_TYPE(blas_hgemm_t, cl_half);
BLAS_GEMM_SB_TYPE(blas_sgemm_sb_t, float);
BLAS_GEMM_SB_TYPE(blas_dgemm_sb_t, double);
BLAS_GEMM_SB_TYPE(blas_hgemm_sb_t, cl_half);
/* CLBlastOverrideParameters is optional: without it CLBlast's own database decides. */
#define BLAS_OVERRIDE "CLBlastOverrideParameters"

/* name in CLBlast, member, type */
#define BLAS_FUNCS(X)                                                                                      \
  X(CLBlastSgemm, sgemm, blas_sgemm_t) X(CLBlastDgemm, dgemm, blas_dgemm_t)                                \
  X(CLBlastHgemm, hgemm, blas_hgemm_t) X(CLBlastSgemmStridedBatched, sgemm_sb, blas_sgemm_sb_t)           \
  X(CLBlastDgemmStridedBatched, dgemm_sb, blas_dgemm_sb_t) X(CLBlastHgemmStridedBatched, hgemm_sb, blas_hgemm_sb_t)

#ifdef OCL_CHECK_CLBLAST
/* Where clblast_c.h is installed (CMake defines OCL_CHECK_CLBLAST), the
 * declarations above are compared with it: a redeclaration with another type
 * does not compile, and the constants must match. Nothing of it is linked. */
#include <clblast_c.h>
#define BLAS_CHECK_DECL(f, m, T) extern T f;
BLAS_FUNCS(BLAS_CHECK_DECL)
#undef BLAS_CHECK_DECL
extern ocl_blas_override_fn CLBlastOverrideParameters;
_Static_assert((unsigned)CLBlastPrecisionSingle == 32u && (unsigned)CLBlastPrecisionHalf == 16u &&
                   (unsigned)CLBlastPrecisionDouble == 64u,
               "CLBlastPrecision values");
#define SAME(a, b) _Static_assert((long long)(a) == (long long)(b), #a " differs from clblast_c.h's " #b)
SAME(BLAS_SUCCESS, CLBlastSuccess);
SAME(BLAS_ROW_MAJOR, CLBlastLayoutRowMajor);
SAME(BLAS_NO_TRANS, CLBlastTransposeNo);
SAME(BLAS_TRANS, CLBlastTransposeYes);
SAME(BLAS_NOT_IMPLEMENTED, CLBlastNotImplemented);
SAME(BLAS_LOCAL_MEM, CLBlastInvalidLocalMemUsage);
SAME(BLAS_NO_HALF, CLBlastNoHalfPrecision);
SAME(BLAS_NO_DOUBLE, CLBlastNoDoublePrecision);
SAME(BLAS_DATABASE_ERROR, CLBlastDatabaseError);
SAME(-1007, CLBlastInsufficientMemoryY); /* the last of CLBlast's own codes, so BLAS_OWN_CODES holds */
SAME(-3, CLBlastOpenCLCompilerNotAvailable);
SAME(-11, CLBlastOpenCLBuildProgramFailure);
_Static_assert(sizeof(blas_status_t) == sizeof(CLBlastStatusCode), "CLBlastStatusCode size");
_Static_assert(sizeof(blas_enum_t) == sizeof(CLBlastLayout) && sizeof(blas_enum_t) == sizeof(CLBlastTranspose),
               "CLBlast enum sizes");
#undef SAME
#endif

typedef struct blas_api {
  void *lib;
  char why[256]; /* why it is not there */
#define BLAS_MEMBER(f, m, T) T *m;
  BLAS_FUNCS(BLAS_MEMBER)
#undef BLAS_MEMBER
  ocl_blas_override_fn *override; /* NULL where CLBlast lacks it */
} blas_api_t;

static blas_api_t g_blas;
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;

static void blas_load(void) {
  const char *env = getenv("FLAGOS_CLBLAST");
  const char *name = env && *env ? env : "libclblast.so.1";
  /* RTLD_LOCAL: CLBlast is C++ and brings its own symbols, none of them needed by name. */
  g_blas.lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!g_blas.lib) {
    const char *e = dlerror();
    snprintf(g_blas.why, sizeof g_blas.why, "cannot open %s: %s", name, e ? e : "dlopen failed");
    return;
  }
#define BLAS_LOAD(f, m, T)                                                                              \
  {                                                                                                     \
    void *p_ = dlsym(g_blas.lib, #f);                                                                   \
    memcpy(&g_blas.m, &p_, sizeof p_); /* object pointer -> function pointer (POSIX) */                 \
    if (!p_ && !g_blas.why[0]) snprintf(g_blas.why, sizeof g_blas.why, "%s lacks %s", name, #f);        \
  }
  BLAS_FUNCS(BLAS_LOAD)
#undef BLAS_LOAD
  if (g_blas.why[0]) {
    dlclose(g_blas.lib);
    g_blas.lib = NULL;
    return;
  }
  void *o = dlsym(g_blas.lib, BLAS_OVERRIDE);
  memcpy(&g_blas.override, &o, sizeof o);
}

static void blas_load_once(void) {
  blas_load();
  if (!g_blas.lib) ocl_blas_trace("flagos trace: opencl gemm: no CLBlast (%s): generic kernels\n", g_blas.why);
}

/* 0: off, 1: f32/f64, 2: also f16, 3: f32/f64 products of at least
 * BLAS_CPU_MIN_MACS multiply-adds (FLAGOS_OPENCL_BLAS, read on each call: cheap,
 * and tests switch it). Unset: 3 on CPU devices, 1 elsewhere. On PoCL CLBlast's
 * first use of each kernel kind costs seconds of compilation (about 10 s a kind
 * with an empty PoCL cache), which small products (the conformance tests) do not
 * repay, while a model's are 7-10x faster than the generic kernel (BERT-base f32
 * on 2 cores: 3.0 s a run with CLBlast; 3 runs did not finish in 180 s without). */
#define BLAS_CPU_MIN_MACS ((int64_t)1 << 24)
static int blas_mode(const ocl_device_t *d) {
  const char *v = getenv("FLAGOS_OPENCL_BLAS");
  if (!v || !*v) return (d->type & CL_DEVICE_TYPE_CPU) ? 3 : 1;
  if (strcmp(v, "0") == 0 || strcmp(v, "off") == 0) return 0;
  if (strcmp(v, "f16") == 0) return 2;
  return 1;
}

/* (device, dtype) pairs CLBlast could not build for or refused: not retried,
 * since each try would compile its kernels again. */
#define BLAS_MAX_REFUSED 64
static struct {
  cl_device_id dev;
  int32_t dt;
} g_refused[BLAS_MAX_REFUSED];
static int g_n_refused;
static pthread_mutex_t g_refused_lock = PTHREAD_MUTEX_INITIALIZER;

static bool refused(cl_device_id dev, int32_t dt, bool add) {
  bool found = false;
  pthread_mutex_lock(&g_refused_lock);
  for (int i = 0; i < g_n_refused && !found; i++) found = g_refused[i].dev == dev && g_refused[i].dt == dt;
  if (!found && add && g_n_refused < BLAS_MAX_REFUSED) {
    g_refused[g_n_refused].dev = dev;
    g_refused[g_n_refused++].dt = dt;
  }
  pthread_mutex_unlock(&g_refused_lock);
  return found;
}

/* IEEE half bits of v, rounded to nearest even (for CLBlast's cl_half alpha and beta). */
static cl_half half_of(double v) {
  float f = (float)v;
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (cl_half)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return (cl_half)(sign | 0x7c00u); /* 65520 and above round to infinity */
  if (ax < 0x38800000u) {                                    /* below 2^-14: a subnormal half, in units of 2^-24 */
    float a;
    memcpy(&a, &ax, 4);
    return (cl_half)(sign | (uint16_t)nearbyintf(a * 16777216.0f));
  }
  uint32_t r = ax - 0x38000000u; /* exponent bias 127 -> 15 */
  r += 0xfffu + ((r >> 13) & 1u);
  return (cl_half)(sign | (uint16_t)(r >> 13));
}

/* One line to $FLAGOS_OPENCL_BLAS_LOG (appended: `flagos conformance` runs its
 * tests in worker processes whose stderr goes nowhere), else to stderr under
 * FLAGOS_TRACE. */
void ocl_blas_trace(const char *fmt, ...) {
  const char *log = getenv("FLAGOS_OPENCL_BLAS_LOG");
  bool to_log = log && *log;
  if (!to_log && !getenv("FLAGOS_TRACE")) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n >= (int)sizeof line) n = (int)sizeof line - 1;
  if (!to_log) {
    fputs(line, stderr);
    return;
  }
  int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, line, (size_t)n); /* one write: lines of concurrent processes stay whole */
  (void)w;
  close(fd);
}

static const char *dt_name(int32_t dt) {
  return dt == FLAGOS_FLOAT32 ? "f32" : dt == FLAGOS_FLOAT64 ? "f64" : "f16";
}

/* True when (batch-1)*stride + (rows-1)*ld + cols elements of es bytes (ld 0:
 * rows of cols packed) fit in a buffer of `size` bytes. */
static bool fits(size_t size, int64_t batch, int64_t stride, int64_t rows, int64_t cols, int64_t ld, size_t es) {
  int64_t last, mat, n, bytes;
  if (__builtin_mul_overflow(batch - 1, stride, &last) || __builtin_mul_overflow(rows - 1, ld ? ld : cols, &mat) ||
      __builtin_add_overflow(mat, cols, &mat) || __builtin_add_overflow(last, mat, &n) ||
      __builtin_mul_overflow(n, (int64_t)es, &bytes))
    return false;
  return (uint64_t)bytes <= (uint64_t)size;
}

/* Switches read once (plain runs make every call again): FLAGOS_OPENCL_ACTIVATION and FLAGOS_OPENCL_NORM, on
 * unless 0. */
static bool g_activation_on, g_norm_on;
static void read_switches(void) {
  const char *e = getenv("FLAGOS_OPENCL_ACTIVATION"), *n = getenv("FLAGOS_OPENCL_NORM");
  g_activation_on = !(e && strcmp(e, "0") == 0);
  g_norm_on = !(n && strcmp(n, "0") == 0);
}
static pthread_once_t g_switches_once = PTHREAD_ONCE_INIT;

bool ocl_activation_on(void) {
  pthread_once(&g_switches_once, read_switches);
  return g_activation_on;
}

bool ocl_norm_on(void) {
  pthread_once(&g_switches_once, read_switches);
  return g_norm_on;
}

/* gemm_norm's buffers beyond the product's (docs/kernel-ir.md): the residual, scale, bias and output. */
typedef struct norm_bufs {
  const ocl_buf_t *R, *gamma, *beta, *Z;
  double eps;
} norm_bufs_t;

/* *took gets the product's arguments where our kernels took it (took->M < 0
 * otherwise); with norm, the product of a gemm_norm call, taken by our kernels or
 * declined. */
static flagos_status_t gemm(ocl_state_t *s, flagos_bstream_t st, const flagos_libcall_t *c, ocl_gemm_args_t *took,
                            const norm_bufs_t *norm) {
  took->M = -1;
  if ((c->n_bufs != 3 && c->n_bufs != 4) || c->n_ints < 9 || c->n_ints > 13 || c->n_floats != 2)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: gemm takes 3 or 4 buffers, 9 to 13 ints and 2 floats (got %d, %d, %d)", c->n_bufs,
                   c->n_ints, c->n_floats);
  const int64_t *v = c->ints;
  int64_t batch = v[0], M = v[1], N = v[2], K = v[3], sa = v[6], sb = v[7], sy = v[8];
  bool ta = v[4] != 0, tb = v[5] != 0;
  int64_t ld[3]; /* lda, ldb, ldy: the rows apart; 0: packed */
  char bad = flagos_gemm_row_strides(v, c->n_ints, M, N, K, ta, tb, ld);
  double alpha = c->floats[0], beta = c->floats[1];
  int64_t act = c->n_ints == 13 ? c->ints[12] : 0;
  if (act < 0 || act > 3)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: gemm with activation %lld (0 to 3)", (long long)act);
  if (act && !ocl_activation_on())
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: gemm with an activation is off (FLAGOS_OPENCL_ACTIVATION=0)");
  if (bad)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: gemm with %c's rows %lld apart, shorter than a row",
                   bad, (long long)ld[bad == 'A' ? 0 : bad == 'B' ? 1 : 2]);
  if (batch < 0 || M < 0 || N < 0 || K < 0 || sa < 0 || sb < 0 || sy < 0)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: gemm with a negative size or stride (batch %lld, M %lld, N %lld, K %lld)",
                   (long long)batch, (long long)M, (long long)N, (long long)K);
  if (batch == 0 || M == 0 || N == 0) return NULL;
  const ocl_buf_t *A = c->bufs[0], *B = c->bufs[1], *Y = c->bufs[2], *bias = c->n_bufs == 4 ? c->bufs[3] : NULL;
  if (!A || !B || !Y || (c->n_bufs == 4 && !bias))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: gemm with a NULL buffer");
  int dev = st ? st->dev : Y->dev;
  if (dev < 0 || dev >= s->n_dev || A->dev != dev || B->dev != dev || Y->dev != dev || (bias && bias->dev != dev))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: gemm on buffers of devices %d, %d, %d (stream on %d)", A->dev, B->dev, Y->dev, dev);
  ocl_device_t *d = &s->dev[dev];
  int mode = blas_mode(d);
  if (mode == 0) {
    const char *ev = getenv("FLAGOS_OPENCL_BLAS");
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: CLBlast is off for '%s' (FLAGOS_OPENCL_BLAS %s)",
                   d->name, ev ? ev : "");
  }
  /* in double: the product of four int64 extents may pass INT64_MAX */
  double macs = (double)batch * (double)M * (double)N * (double)K;
  if (mode == 3 && macs < (double)BLAS_CPU_MIN_MACS)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED,
                   "opencl backend: a gemm of %.0f multiply-adds on CPU device '%s' is left to the kernel (CLBlast "
                   "from %lld, FLAGOS_OPENCL_BLAS unset)",
                   macs, d->name, (long long)BLAS_CPU_MIN_MACS);
  int32_t dt = c->buf_dtypes[0];
  bool ours = ocl_gemm_wanted(d, dt);
  bool dt_ok = dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT64 || (dt == FLAGOS_FLOAT16 && (mode == 2 || ours));
  if (!dt_ok || c->buf_dtypes[1] != dt || c->buf_dtypes[2] != dt || (bias && c->buf_dtypes[3] != dt))
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: gemm on dtypes %d/%d/%d is not provided", (int)dt,
                   (int)c->buf_dtypes[1], (int)c->buf_dtypes[2]);
  /* CLBlast refuses K == 0 (Y = beta*Y, which the generic body does), and
   * batches that all write one Y. */
  if (K == 0) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: gemm with K = 0 is left to the kernel");
  if (batch > 1 && sy == 0)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: batched gemm into one Y is left to the kernel");
  size_t es = dt == FLAGOS_FLOAT64 ? 8 : dt == FLAGOS_FLOAT32 ? 4 : 2;
  if (!fits(A->size, batch, sa, ta ? K : M, ta ? M : K, ld[0], es) ||
      !fits(B->size, batch, sb, tb ? N : K, tb ? K : N, ld[1], es) || !fits(Y->size, batch, sy, M, N, ld[2], es) ||
      (bias && !fits(bias->size, 1, 0, 1, N, 0, es)))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: gemm (batch %lld, M %lld, N %lld, K %lld) overruns its buffers", (long long)batch,
                   (long long)M, (long long)N, (long long)K);

  if (dt == FLAGOS_FLOAT64 && !d->fp64)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: '%s' has no cl_khr_fp64", d->name);
  /* BERT's FFN output product at batch 32, f32, on an H100: 0.62 ms as 32
   * products of 128 rows, 0.49 as one of 4096 (eleventh session) */
  flagos_gemm_fold_batch(&batch, &M, K, N, ta, sa, sb, sy, ld[0], ld[2]);
  /* Our own kernels (ocl_gemm.c) where wanted (f16 needs no cl_khr_fp16 there);
   * CLBlast for what they leave. */
  if (norm) {
    const ocl_buf_t *nbuf[4] = {norm->R, norm->gamma, norm->beta, norm->Z};
    for (int i = 0; i < 4; i++)
      if (nbuf[i] && (nbuf[i]->dev != dev || !fits(nbuf[i]->size, 1, 0, 1, i == 1 || i == 2 ? N : M * N, 0, es)))
        return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                       "opencl backend: gemm_norm's %s is on another device or smaller than the product's %s",
                       i == 0 ? "residual" : i == 1 ? "scale" : i == 2 ? "bias" : "output", i == 1 || i == 2 ? "row" : "output");
    if (!ours || !ocl_norm_on())
      return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: gemm_norm is left to the kernels (%s)",
                     ours ? "FLAGOS_OPENCL_NORM=0" : "our gemm kernels are off here");
  }
  if (ours) {
    ocl_gemm_args_t ga = {.dtype = dt, .A = A->mem, .B = B->mem, .Y = Y->mem, .bias = bias ? bias->mem : NULL,
                          .batch = batch, .M = M, .N = N, .K = K, .sa = sa, .sb = sb, .sy = sy,
                          .ta = ta, .tb = tb, .alpha = alpha, .beta = beta, .lda = ld[0], .ldb = ld[1],
                          .ldy = ld[2], .act = (int)act};
    if (norm) {
      ga.R = norm->R->mem;
      ga.gamma = norm->gamma->mem;
      ga.beta_ln = norm->beta ? norm->beta->mem : NULL;
      ga.Z = norm->Z->mem;
      ga.eps = norm->eps;
    }
    bool taken = false;
    flagos_status_t err = ocl_gemm_run(s, d, ocl_queue(s, st, dev), &ga, ocl_blas_trace, &taken, NULL);
    if (!err && taken) *took = ga;
    if (err || taken) return err;
  }
  if (norm)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED,
                   "opencl backend: gemm_norm where the product is not summed over K slices is left to the kernels");
  /* CLBlast has no activation: the host runs the node's kernels (the product's call without it, then the activation). */
  if (act) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: gemm with an activation is left to the kernels");
  if (dt == FLAGOS_FLOAT16 && mode != 2)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: f16 gemm through CLBlast is opt-in (FLAGOS_OPENCL_BLAS=f16)");
  if (dt == FLAGOS_FLOAT16 && !ocl_has_word(d->extensions, "cl_khr_fp16"))
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: '%s' has no cl_khr_fp16", d->name);
  /* CLBlast has no bias epilogue: the host runs the bias kernel, then the plain call. */
  if (bias) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: gemm with a bias is left to the kernels");
  pthread_once(&g_blas_once, blas_load_once);
  if (!g_blas.lib) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: no CLBlast (%s)", g_blas.why);
  if (refused(d->id, dt, false))
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: CLBlast refused %s gemm on '%s' before", dt_name(dt),
                   d->name);

  /* CLBlast's parameters for devices its database lacks (ocl_blas_params.c),
   * once per device, before its first product compiles anything. */
  pthread_mutex_lock(&g_refused_lock);
  if (!d->blas_params) {
    d->blas_params = true;
    if (g_blas.override) ocl_blas_params_apply(s, d, g_blas.override, ocl_blas_trace);
    else ocl_blas_trace("flagos trace: opencl gemm: this CLBlast has no %s: its own parameters only\n", BLAS_OVERRIDE);
  }
  pthread_mutex_unlock(&g_refused_lock);

  cl_command_queue q = ocl_queue(s, st, dev);
  blas_enum_t opa = ta ? BLAS_TRANS : BLAS_NO_TRANS, opb = tb ? BLAS_TRANS : BLAS_NO_TRANS;
  size_t m = (size_t)M, n = (size_t)N, k = (size_t)K;
  size_t lda = ld[0] ? (size_t)ld[0] : ta ? m : k, ldb = ld[1] ? (size_t)ld[1] : tb ? k : n;
  size_t ldy = ld[2] ? (size_t)ld[2] : n, nb = (size_t)batch;
  size_t xa = (size_t)sa, xb = (size_t)sb, xy = (size_t)sy;
  blas_status_t r;
  /* Few output tiles and a long K: S products over K slices, then their sum
   * (ocl_blas_split.c). Only on the device's default queue, whose order keeps
   * the shared workspace's uses apart. The sum writes Y's rows packed. */
  int parts = dt == FLAGOS_FLOAT32 && q == d->queue && ldy == n ? ocl_blas_split_factor(d, batch, M, N, K) : 1;
  if (parts > 1) {
    cl_mem ws = NULL;
    size_t ks = k / (size_t)parts;
    flagos_status_t err = ocl_blas_split_begin(s, d, (size_t)parts * m * n * es, &ws);
    if (err) return err;
    /* slice j: columns j*ks.. of A (rows of A stored transposed), rows j*ks.. of B (columns of B transposed) */
    r = g_blas.sgemm_sb(BLAS_ROW_MAJOR, opa, opb, m, n, ks, (float)alpha, A->mem, 0, lda, ta ? ks * lda : ks, B->mem,
                        0, ldb, tb ? ks : ks * ldb, 0.0f, ws, 0, n, m * n, (size_t)parts, &q, NULL);
    cl_int e = r == BLAS_SUCCESS ? ocl_blas_split_sum(s, d, q, Y->mem, m * n, parts, (float)beta) : CL_SUCCESS;
    ocl_blas_split_end();
    if (r == BLAS_SUCCESS && e != CL_SUCCESS) return ocl_fail(s, e, "split-K sum");
    if (r == BLAS_SUCCESS)
      ocl_blas_trace("flagos trace: opencl gemm by CLBlast: f32 M %lld N %lld K %lld%s%s in %d K slices on '%s'\n",
                     (long long)M, (long long)N, (long long)K, ta ? " transA" : "", tb ? " transB" : "", parts,
                     d->name);
    /* a refusal falls through to the plain call below, which answers for itself */
    if (r == BLAS_SUCCESS) return NULL;
  }
  if (dt == FLAGOS_FLOAT32)
    r = nb == 1 ? g_blas.sgemm(BLAS_ROW_MAJOR, opa, opb, m, n, k, (float)alpha, A->mem, 0, lda, B->mem, 0, ldb,
                               (float)beta, Y->mem, 0, ldy, &q, NULL)
                : g_blas.sgemm_sb(BLAS_ROW_MAJOR, opa, opb, m, n, k, (float)alpha, A->mem, 0, lda, xa, B->mem, 0, ldb,
                                  xb, (float)beta, Y->mem, 0, ldy, xy, nb, &q, NULL);
  else if (dt == FLAGOS_FLOAT64)
    r = nb == 1 ? g_blas.dgemm(BLAS_ROW_MAJOR, opa, opb, m, n, k, alpha, A->mem, 0, lda, B->mem, 0, ldb, beta, Y->mem,
                               0, ldy, &q, NULL)
                : g_blas.dgemm_sb(BLAS_ROW_MAJOR, opa, opb, m, n, k, alpha, A->mem, 0, lda, xa, B->mem, 0, ldb, xb,
                                  beta, Y->mem, 0, ldy, xy, nb, &q, NULL);
  else
    r = nb == 1 ? g_blas.hgemm(BLAS_ROW_MAJOR, opa, opb, m, n, k, half_of(alpha), A->mem, 0, lda, B->mem, 0, ldb,
                               half_of(beta), Y->mem, 0, ldy, &q, NULL)
                : g_blas.hgemm_sb(BLAS_ROW_MAJOR, opa, opb, m, n, k, half_of(alpha), A->mem, 0, lda, xa, B->mem, 0,
                                  ldb, xb, half_of(beta), Y->mem, 0, ldy, xy, nb, &q, NULL);
  if (r == BLAS_SUCCESS) {
    ocl_blas_trace("flagos trace: opencl gemm by CLBlast: %s batch %lld M %lld N %lld K %lld%s%s on '%s'\n",
                   dt_name(dt), (long long)batch, (long long)M, (long long)N, (long long)K, ta ? " transA" : "",
                   tb ? " transB" : "", d->name);
    return NULL;
  }
  /* CLBlast's own codes and build failures come before anything is queued:
   * the generic body runs instead (and the pair is not tried again). An
   * OpenCL error while queuing may have left Y half written: an error. */
  if (r <= BLAS_OWN_CODES || r == CL_BUILD_PROGRAM_FAILURE || r == CL_COMPILER_NOT_AVAILABLE) {
    bool whole_device = r == CL_BUILD_PROGRAM_FAILURE || r == CL_COMPILER_NOT_AVAILABLE || r == BLAS_NOT_IMPLEMENTED ||
                        r == BLAS_NO_HALF || r == BLAS_NO_DOUBLE || r == BLAS_DATABASE_ERROR || r == BLAS_LOCAL_MEM;
    if (whole_device) refused(d->id, dt, true);
    ocl_blas_trace("flagos trace: opencl gemm: CLBlast refused %s on '%s' (status %d)%s\n", dt_name(dt), d->name, r,
                   whole_device ? ": generic kernels from now on" : "");
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: CLBlast refused %s gemm (status %d)", dt_name(dt), r);
  }
  return ocl_fail(s, r, "CLBlast gemm");
}

/* A gemm_norm call (docs/kernel-ir.md): bufs [A, B, Y, R, gamma, beta, Z] or
 * with the product's bias last, ints the product's twelve then whether beta
 * is there, floats alpha, beta and epsilon: the product through gemm() with
 * the rest for its split sum. */
static flagos_status_t gemm_norm(ocl_state_t *s, flagos_bstream_t st, const flagos_libcall_t *c, ocl_gemm_args_t *took) {
  took->M = -1;
  if ((c->n_bufs != 7 && c->n_bufs != 8) || c->n_ints != 13 || c->n_floats != 3)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: gemm_norm takes 7 or 8 buffers, 13 ints and 3 floats (got %d, %d, %d)", c->n_bufs,
                   c->n_ints, c->n_floats);
  for (int i = 0; i < c->n_bufs; i++)
    if (!c->bufs[i]) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: gemm_norm with a NULL buffer");
  for (int i = 3; i < 7; i++)
    if (c->buf_dtypes[i] != c->buf_dtypes[0])
      return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: gemm_norm's buffers must share one dtype");
  if (c->ints[12] != 0 && c->ints[12] != 1)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: gemm_norm's thirteenth int is 0 or 1");
  if (!(c->floats[2] >= 0))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: gemm_norm with a negative or NaN epsilon");
  flagos_devptr_t bufs[4] = {c->bufs[0], c->bufs[1], c->bufs[2], c->n_bufs == 8 ? c->bufs[7] : NULL};
  int32_t dts[4] = {c->buf_dtypes[0], c->buf_dtypes[1], c->buf_dtypes[2], c->n_bufs == 8 ? c->buf_dtypes[7] : 0};
  flagos_libcall_t g = {.name = "gemm", .bufs = bufs, .buf_dtypes = dts, .n_bufs = c->n_bufs == 8 ? 4 : 3,
                        .ints = c->ints, .n_ints = 12, .floats = c->floats, .n_floats = 2};
  norm_bufs_t nb = {c->bufs[3], c->bufs[4], c->ints[12] ? c->bufs[5] : NULL, c->bufs[6], c->floats[2]};
  return gemm(s, st, &g, took, &nb);
}

flagos_status_t ocl_library_call(void *state, flagos_bstream_t st, const flagos_libcall_t *call) {
  ocl_state_t *s = state;
  if (!call || !call->name)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: library call without a name");
  bool is_conv = strcmp(call->name, "conv") == 0, is_attention = strcmp(call->name, "attention") == 0;
  bool is_norm = strcmp(call->name, "gemm_norm") == 0;
  if (strcmp(call->name, "gemm") != 0 && !is_conv && !is_attention && !is_norm)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: no library call '%s'", call->name);
  /* Inside a capture the call runs once here as well (ocl_graph.c says why) and is recorded. */
  const ocl_buf_t *y = call->n_bufs > 0 ? call->bufs[call->n_bufs - 1] : NULL;
  ocl_capture_t *cap = ocl_capturing(s, st, st ? st->dev : y ? y->dev : -1);
  /* FLAGOS_OPENCL_GRAPH_BLAS=0: captures take the generic kernels, so that a
   * whole run fits one command buffer (library calls are not recorded into one). */
  const char *gb = getenv("FLAGOS_OPENCL_GRAPH_BLAS");
  if (cap && gb && strcmp(gb, "0") == 0)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: no library gemm in captures (FLAGOS_OPENCL_GRAPH_BLAS=0)");
  ocl_gemm_args_t ours;
  ocl_conv_args_t conv;
  ours.M = -1;
  flagos_status_t err = is_attention ? ocl_attention_call(s, st, call)
                        : is_conv    ? ocl_conv_call(s, st, call, &conv)
                        : is_norm    ? gemm_norm(s, st, call, &ours)
                                     : gemm(s, st, call, &ours, NULL);
  if (!err && cap) err = ocl_record_call(s, cap, call, ours.M >= 0 ? &ours : NULL, is_conv ? &conv : NULL);
  return err;
}

