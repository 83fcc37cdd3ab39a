/* FlagOS's own GEMM for the opencl plugin's "gemm" library call (issue 5).
 *
 * On NVIDIA's OpenCL a CLBlast call costs 16-22 us of host time (it makes its
 * cl_kernel on every call, looks up its database...), against about 4.4 us for
 * one clEnqueueNDRangeKernel: at batch 1 that host time, not the GPU, bounds a
 * model. Here a product is clSetKernelArg on kernels made once per device and
 * one clEnqueueNDRangeKernel (a second, the sum, when split over K); the bias
 * of a 4-buffer call is an epilogue, so MatMulBias and Gemm with a bias row end
 * their node in one launch.
 *
 * The kernel (k_src): each work-group computes a TM x TN tile of Y walking K in
 * steps of TK; both operand tiles go through local memory (k-major, padded so
 * the transposing stores of row-major A and column-major B spread over banks),
 * the next step's tile is fetched into registers while the current one is
 * multiplied, and each work-item keeps an RM x RN block of outputs in
 * registers. Transposes are uniform branches on an argument, so one kernel
 * serves the four cases. Each tile variant (k_variants) is its own program
 * (the source with its #defines in front), built at a device's first product
 * that needs it, through ocl_module.c's binary cache.
 *
 * Few output tiles (BERT at batch 1 has M = 128) leave most of a large GPU
 * idle: then the product is split over K, slices on the grid's third
 * dimension writing alpha * partial products to a per-device workspace, and a
 * second kernel sums them with beta * Y and the bias (no atomics: the result
 * does not depend on timing).
 *
 * FLAGOS_OPENCL_GEMM: 1 = ours for every f32/f64/f16 gemm the call takes, on
 * any device (tests, PoCL); 0 = never (CLBlast as before, and f16 to the
 * generic kernel); unset = ours on GPUs. f16 sums in float, rounding once to
 * half at the end (CLBlast's Hgemm sums in half and needs cl_khr_fp16).
 * FLAGOS_OPENCL_GEMM_TILE=i forces variant i of k_variants (measurements,
 * tests); FLAGOS_OPENCL_SPLITK=N forces N K slices on batch-1 products. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

/* The kernels. Defined in front by the host: T (the buffers' element: float,
 * double, or ushort holding half bits), C (the type computed in: float or
 * double), TM, TN, TK, RM, RN; GEMM_F64 for double, GEMM_F16 for half. Half
 * values are read and written with vload_half/vstore_half_rte, which every
 * OpenCL device has (no cl_khr_fp16 needed: NVIDIA's platform lacks it), and
 * summed in float. The work-group is NT = (TM/RM)*(TN/RN) work-items, x along
 * N. Indices within a matrix are int (the host keeps M*K, K*N and M*N below
 * 2^31); batch offsets are long. */
static const char k_src[] =
    "#ifdef GEMM_F64\n"
    "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
    "#endif\n"
    "#ifdef GEMM_F16\n"
    "#define LD(p, i) vload_half(0, (__global const half *)((p) + (i)))\n"
    "#define ST(p, i, v) vstore_half_rte((v), 0, (__global half *)((p) + (i)))\n"
    "#else\n"
    "#define LD(p, i) ((p)[i])\n"
    "#define ST(p, i, v) ((p)[i] = (v))\n"
    "#endif\n"
    "#define NT ((TM / RM) * (TN / RN))\n"
    "#define LA (TM * TK / NT)\n"
    "#define LB (TN * TK / NT)\n"
    "#define PAD 4\n"
    "#if NT % TM != 0 || NT % TN != 0 || NT % TK != 0\n"
    "#error \"a tile's rows, columns and K step must divide the work-group\"\n"
    "#endif\n"
    "/* a work-item's outputs: adjacent (4-wide local reads), or INTER: TM/RM rows\n"
    " * and TN/RN columns apart (conflict-free scalar reads, coalesced stores) */\n"
    "#ifdef INTER\n"
    "#define ROW(i) (ty + (i) * (TM / RM))\n"
    "#define COL(j) (tx + (j) * (TN / RN))\n"
    "#else\n"
    "#define ROW(i) (ty * RM + (i))\n"
    "#define COL(j) (tx * RN + (j))\n"
    "#endif\n"
    "__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))\n"
    "void flagos_gemm(__global const T *restrict A, __global const T *restrict B, __global T *Y, __global C *W,\n"
    "                 __global const T *restrict bias, int M, int N, int K, int trans, long sa, long sb,\n"
    "                 long sy, C alpha, C beta, int kslice, int flags) {\n"
    "  __local C As[TK][TM + PAD] __attribute__((aligned(16)));\n"
    "  __local C Bs[TK][TN + PAD] __attribute__((aligned(16)));\n"
    "  const int tid = get_local_id(0);\n"
    "  const int tx = tid % (TN / RN), ty = tid / (TN / RN);\n"
    "  const int n0 = get_group_id(0) * TN, m0 = get_group_id(1) * TM;\n"
    "  const int z = get_group_id(2);\n"
    "  const int split = flags & 4;\n"
    "  const long b = split ? 0 : z;\n"
    "  A += b * sa;\n"
    "  B += b * sb;\n"
    "  /* split over K: slice z's partial products go to the workspace W */\n"
    "  if (split)\n"
    "    W += (long)z * sy;\n"
    "  else\n"
    "    Y += (long)z * sy;\n"
    "  const int kbeg = split ? z * kslice : 0;\n"
    "  const int ke = split ? min(K, kbeg + kslice) : K;\n"
    "  const int ta = trans & 1, tb = (trans >> 1) & 1;\n"
    "  /* element e of this work-item's share of a tile: A's row ia + e*dia and step\n"
    "   * ka + e*dka, B's column jb + e*djb and step kb + e*dkb; consecutive\n"
    "   * work-items take consecutive addresses of the operand's contiguous dimension\n"
    "   * so that global reads coalesce */\n"
    "  const int ia = ta ? tid % TM : tid / TK, ka = ta ? tid / TM : tid % TK;\n"
    "  const int dia = ta ? 0 : NT / TK, dka = ta ? NT / TM : 0;\n"
    "  const int rsA = ta ? 1 : K, ksA = ta ? M : 1;\n"
    "  const int jb = tb ? tid / TK : tid % TN, kb = tb ? tid % TK : tid / TN;\n"
    "  const int djb = tb ? NT / TK : 0, dkb = tb ? 0 : NT / TN;\n"
    "  const int csB = tb ? K : 1, ksB = tb ? 1 : N;\n"
    "  C acc[RM][RN];\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < RM; i++)\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < RN; j++) acc[i][j] = 0;\n"
    "  C ra[LA], rb[LB];\n"
    "#define FETCH(k0)                                                            \\\n"
    "  {                                                                          \\\n"
    "    _Pragma(\"unroll\") for (int e = 0; e < LA; e++) {                         \\\n"
    "      int r = m0 + ia + e * dia, k = (k0) + ka + e * dka;                    \\\n"
    "      ra[e] = r < M && k < ke ? LD(A, r * rsA + k * ksA) : (C)0;             \\\n"
    "    }                                                                        \\\n"
    "    _Pragma(\"unroll\") for (int e = 0; e < LB; e++) {                         \\\n"
    "      int c = n0 + jb + e * djb, k = (k0) + kb + e * dkb;                    \\\n"
    "      rb[e] = c < N && k < ke ? LD(B, c * csB + k * ksB) : (C)0;             \\\n"
    "    }                                                                        \\\n"
    "  }\n"
    "  FETCH(kbeg)\n"
    "  for (int k0 = kbeg; k0 < ke; k0 += TK) {\n"
    "#pragma unroll\n"
    "    for (int e = 0; e < LA; e++) As[ka + e * dka][ia + e * dia] = ra[e];\n"
    "#pragma unroll\n"
    "    for (int e = 0; e < LB; e++) Bs[kb + e * dkb][jb + e * djb] = rb[e];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (k0 + TK < ke) FETCH(k0 + TK)\n"
    "#pragma unroll\n"
    "    for (int kk = 0; kk < TK; kk++) {\n"
    "      C a[RM], c[RN];\n"
    "#pragma unroll\n"
    "      for (int i = 0; i < RM; i++) a[i] = As[kk][ROW(i)];\n"
    "#pragma unroll\n"
    "      for (int j = 0; j < RN; j++) c[j] = Bs[kk][COL(j)];\n"
    "#pragma unroll\n"
    "      for (int i = 0; i < RM; i++)\n"
    "#pragma unroll\n"
    "        for (int j = 0; j < RN; j++) acc[i][j] = mad(a[i], c[j], acc[i][j]);\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  }\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < RM; i++) {\n"
    "    int m = m0 + ROW(i);\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < RN; j++) {\n"
    "      int n = n0 + COL(j);\n"
    "      if (m < M && n < N) {\n"
    "        C v = alpha * acc[i][j];\n"
    "        if (split) {\n"
    "          W[m * N + n] = v;\n"
    "        } else {\n"
    "          /* beta 0 ignores Y's old contents (NaN included), as the gemm contract says */\n"
    "          if (flags & 2) v += beta * LD(Y, m * N + n);\n"
    "          if (flags & 1) v += LD(bias, n);\n"
    "          ST(Y, m * N + n, v);\n"
    "        }\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "}\n"
    "\n"
    "__kernel void flagos_gemm_sum(__global T *Y, __global const C *restrict W, __global const T *restrict bias,\n"
    "                              int mn, int n, int parts, C beta, int flags) {\n"
    "  int i = get_global_id(0);\n"
    "  if (i >= mn) return;\n"
    "  C acc = 0;\n"
    "  for (int p = 0; p < parts; p++) acc += W[(long)p * mn + i];\n"
    "  if (flags & 2) acc += beta * LD(Y, i);\n"
    "  if (flags & 1) acc += LD(bias, i % n);\n"
    "  ST(Y, i, acc);\n"
    "}\n";

/* Tile shapes: TM x TN outputs a group, K steps of TK, RM x RN a work-item. */
typedef struct {
  int tm, tn, tk, rm, rn;
  bool f64;   /* also built for double */
  bool inter; /* a work-item's outputs interleaved (INTER) */
} gemm_variant_t;

static const gemm_variant_t k_variants[] = {
    {128, 128, 8, 8, 8, false, true}, /* 0: 256 work-items; GEMM_LARGE */
    {32, 64, 16, 4, 4, true, false},  /* 1: 128; GEMM_SMALL */
    {32, 64, 32, 4, 4, true, false},  /* 2: 128; GEMM_SMALL_K32 */
    {64, 32, 32, 4, 4, true, false},  /* 3: 128 */
    {64, 64, 16, 4, 4, false, true},  /* 4: 256 */
};
#define GEMM_NV ((int)(sizeof k_variants / sizeof k_variants[0]))
#define GEMM_LARGE 0
#define GEMM_SMALL 1
#define GEMM_SMALL_K32 2

typedef struct {
  cl_program prog;
  cl_kernel gemm, sum;
  bool failed; /* built, but the device cannot run it: not tried again */
  cl_int why;
} gemm_prog_t;

struct ocl_gemm_dev {
  pthread_mutex_t lock;      /* kernel arguments are shared: setting them and queuing are one step */
  gemm_prog_t p[3][GEMM_NV]; /* [kind: f32, f64, f16][variant] */
  cl_mem ws;                 /* split-K partial products */
  size_t ws_size;
};

static pthread_mutex_t g_gemm_new_lock = PTHREAD_MUTEX_INITIALIZER;

bool ocl_gemm_wanted(const ocl_device_t *d, int32_t dt) {
  if (dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT64 && dt != FLAGOS_FLOAT16) return false;
  const char *v = getenv("FLAGOS_OPENCL_GEMM");
  if (v && *v) return strcmp(v, "0") != 0 && strcmp(v, "off") != 0;
  return (d->type & CL_DEVICE_TYPE_GPU) != 0;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The variant and number of K slices for a product, from measurements on an
 * H100 (backends/opencl/README.md). The large tile reuses each loaded value
 * most, but only products with at least 1.5 of its tiles per compute unit fill
 * the GPU with it (2048^3: 676 us against 713 with the small tile). Others take
 * a 32x64 tile, K steps of 32 for products with a bias epilogue or a batch (BERT's
 * linear layers and attention: 3.03 ms a run against 3.25 with steps of 16),
 * steps of 16 for the rest (ResNet-50's convolutions: 1.72-1.77 ms against
 * 1.85-1.87 with steps of 32; a single-shape benchmark did not separate the
 * two, so this follows the models). Batch-1 products with a long K (at least
 * GEMM_SPLIT_K) are split over K until there are about 2.5 groups per compute
 * unit (slices of at least GEMM_MIN_SLICE, at most GEMM_MAX_SPLIT of them). */
#define GEMM_SPLIT_K 512
#define GEMM_MIN_SLICE 128
#define GEMM_MAX_SPLIT 16
static int pick(const ocl_device_t *d, bool f64, bool bias, int64_t batch, int64_t M, int64_t N, int64_t K,
                int *parts) {
  *parts = 1;
  const char *tv = getenv("FLAGOS_OPENCL_GEMM_TILE");
  int v = -1;
  if (tv && *tv) {
    v = atoi(tv);
    if (v < 0 || v >= GEMM_NV || (f64 && !k_variants[v].f64)) v = -1;
  }
  int64_t cu = d->compute_units ? d->compute_units : 1;
  const gemm_variant_t *lg = &k_variants[GEMM_LARGE];
  if (v < 0 && !f64 && 2 * cdiv(M, lg->tm) * cdiv(N, lg->tn) * batch >= 3 * cu) v = GEMM_LARGE;
  if (v < 0) v = bias || batch > 1 ? GEMM_SMALL_K32 : GEMM_SMALL;
  const char *env = getenv("FLAGOS_OPENCL_SPLITK");
  if (batch != 1) return v;
  if (env && *env) {
    long f = atol(env);
    if (f > 1 && f <= 64 && f <= K) *parts = (int)f;
    return v;
  }
  if (!(d->type & CL_DEVICE_TYPE_GPU) || K < GEMM_SPLIT_K) return v;
  int64_t groups = cdiv(M, k_variants[v].tm) * cdiv(N, k_variants[v].tn);
  for (int f = 2; f <= GEMM_MAX_SPLIT && 2 * groups * *parts < 5 * cu; f *= 2) {
    if (K / f < GEMM_MIN_SLICE) break;
    *parts = f;
  }
  return v;
}

/* Builds variant v into p. A source that does not build is an error (the log
 * says why; FLAGOS_OPENCL_GEMM=0 avoids it); a device that cannot run its
 * work-group size marks it failed, and CLBlast takes the products. */
static flagos_status_t build_variant(ocl_state_t *s, ocl_device_t *d, int kind, int v, gemm_prog_t *p) {
  const gemm_variant_t *t = &k_variants[v];
  size_t nt = (size_t)(t->tm / t->rm) * (size_t)(t->tn / t->rn);
  /* reqd_work_group_size past the device's limit fails the build itself on some compilers */
  if (d->max_wg && d->max_wg < nt) {
    *p = (gemm_prog_t){.failed = true, .why = CL_INVALID_WORK_GROUP_SIZE};
    return NULL;
  }
  static const char *const types[3] = {"#define T float\n#define C float\n",
                                       "#define T double\n#define C double\n#define GEMM_F64 1\n",
                                       "#define T ushort\n#define C float\n#define GEMM_F16 1\n"};
  char head[256];
  int hn = snprintf(head, sizeof head, "%s%s#define TM %d\n#define TN %d\n#define TK %d\n#define RM %d\n#define RN %d\n",
                    types[kind], t->inter ? "#define INTER 1\n" : "", t->tm, t->tn, t->tk, t->rm, t->rn);
  size_t n = (size_t)hn + sizeof k_src;
  char *src = malloc(n);
  if (!src) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  memcpy(src, head, (size_t)hn);
  memcpy(src + hn, k_src, sizeof k_src);
  flagos_status_t err = ocl_program_build(s, d, src, n - 1, &p->prog);
  free(src);
  if (err) return err;
  cl_int e;
  p->gemm = s->cl.clCreateKernel(p->prog, "flagos_gemm", &e);
  if (p->gemm) p->sum = s->cl.clCreateKernel(p->prog, "flagos_gemm_sum", &e);
  size_t wg = 0;
  if (p->sum) e = s->cl.clGetKernelWorkGroupInfo(p->gemm, d->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
  if (e == CL_SUCCESS && wg < nt) e = CL_INVALID_WORK_GROUP_SIZE;
  if (e != CL_SUCCESS) {
    if (p->sum) s->cl.clReleaseKernel(p->sum);
    if (p->gemm) s->cl.clReleaseKernel(p->gemm);
    s->cl.clReleaseProgram(p->prog);
    *p = (gemm_prog_t){.failed = true, .why = e};
  }
  return NULL;
}

static ocl_gemm_dev_t *gemm_dev(ocl_device_t *d) {
  pthread_mutex_lock(&g_gemm_new_lock);
  if (!d->gemm && (d->gemm = calloc(1, sizeof(*d->gemm)))) pthread_mutex_init(&d->gemm->lock, NULL);
  ocl_gemm_dev_t *g = d->gemm;
  pthread_mutex_unlock(&g_gemm_new_lock);
  return g;
}

/* A workspace of at least `bytes` (under g->lock); false where there is no room (no split then). */
static bool split_room(ocl_state_t *s, ocl_device_t *d, ocl_gemm_dev_t *g, size_t bytes) {
  if (g->ws_size >= bytes) return true;
  /* the old workspace may still be read by queued commands: OpenCL frees it after them */
  if (g->ws) s->cl.clReleaseMemObject(g->ws);
  cl_int e;
  g->ws = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
  g->ws_size = g->ws ? bytes : 0;
  return g->ws != NULL;
}

/* Under g->lock. */
static cl_int set_args(ocl_state_t *s, cl_kernel k, const void *const *vals, const size_t *sizes, cl_uint n) {
  cl_int e = CL_SUCCESS;
  for (cl_uint i = 0; i < n && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, i, sizes[i], vals[i]);
  return e;
}

flagos_status_t ocl_gemm_run(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, const ocl_gemm_args_t *a,
                             ocl_trace_fn *trace, bool *taken) {
  *taken = false;
  bool f64 = a->dtype == FLAGOS_FLOAT64, f16 = a->dtype == FLAGOS_FLOAT16;
  int kind = f64 ? 1 : f16 ? 2 : 0;
  /* 32-bit indices within a matrix, with room for the sums past an extent
   * (a row one tile beyond M, a K slice's end beyond K): products up to 2^30 */
  const int64_t lim = (int64_t)1 << 30;
  if (a->K <= 0 || a->N <= 0 || a->M > lim / a->K || a->K > lim / a->N || a->M > lim / a->N) return NULL;
  ocl_gemm_dev_t *g = gemm_dev(d);
  if (!g) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  int parts;
  int v = pick(d, f64, a->bias != NULL, a->batch, a->M, a->N, a->K, &parts);
  /* the workspace is shared: only the default queue's order keeps its uses apart */
  if (q != d->queue) parts = 1;
  const gemm_variant_t *t = &k_variants[v];
  /* the grid's second and third dimensions: 65535 groups at most on some
   * platforms (NVIDIA's maps them onto CUDA's grid) */
  if (cdiv(a->M, t->tm) > 65535 || (parts > 1 ? parts : a->batch) > 65535) return NULL;
  size_t es = f64 ? 8 : 4, mn = (size_t)a->M * (size_t)a->N; /* es: the computed type's size (workspace, alpha) */
  pthread_mutex_lock(&g->lock);
  gemm_prog_t *p = &g->p[kind][v];
  if (!p->gemm && !p->failed) {
    flagos_status_t err = build_variant(s, d, kind, v, p);
    if (err) {
      /* The run gets the build's error (with its log) once; after that the
       * variant is marked and CLBlast or the generic kernel takes its products,
       * rather than a build of several seconds failing every call. */
      p->failed = true;
      p->why = CL_BUILD_PROGRAM_FAILURE;
      pthread_mutex_unlock(&g->lock);
      return err;
    }
    if (p->failed && trace)
      trace("flagos trace: opencl gemm: '%s' cannot run our %dx%d tile kernel (%s): CLBlast or the generic kernel "
            "instead\n",
            d->name, t->tm, t->tn, ocl_error_name(p->why));
  }
  if (!p->gemm) {
    pthread_mutex_unlock(&g->lock);
    return NULL;
  }
  if (parts > 1 && !split_room(s, d, g, (size_t)parts * mn * es)) parts = 1;
  int M = (int)a->M, N = (int)a->N, K = (int)a->K, trans = (a->ta ? 1 : 0) | (a->tb ? 2 : 0);
  float beta32 = (float)a->beta;
  /* beta 0 (as the kernel sees it) must not read Y, whose contents may be NaN */
  int flags = (a->bias ? 1 : 0) | ((f64 ? a->beta != 0 : beta32 != 0) ? 2 : 0) | (parts > 1 ? 4 : 0);
  /* slices of whole K steps; the last ones may be short or empty */
  int kslice = parts > 1 ? (int)((cdiv(K, parts) + t->tk - 1) / t->tk * t->tk) : K;
  cl_long sa = a->sa, sb = a->sb, sy = parts > 1 ? (cl_long)mn : a->sy;
  float alpha32 = (float)a->alpha;
  const void *alpha = f64 ? (const void *)&a->alpha : &alpha32, *beta = f64 ? (const void *)&a->beta : &beta32;
  /* unused bias and workspace arguments still need valid buffers */
  cl_mem w = parts > 1 ? g->ws : a->Y, bias = a->bias ? a->bias : a->Y;
  const void *vals[16] = {&a->A, &a->B, &a->Y, &w, &bias, &M, &N, &K, &trans, &sa, &sb, &sy, alpha, beta, &kslice,
                          &flags};
  size_t sizes[16] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, 8, 8, 8,
                      es, es, 4, 4};
  size_t nt = (size_t)(t->tm / t->rm) * (size_t)(t->tn / t->rn);
  size_t global[3] = {(size_t)cdiv(a->N, t->tn) * nt, (size_t)cdiv(a->M, t->tm),
                      parts > 1 ? (size_t)parts : (size_t)a->batch};
  size_t local[3] = {nt, 1, 1};
  cl_int e = set_args(s, p->gemm, vals, sizes, 16);
  if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, p->gemm, 3, NULL, global, local, 0, NULL, NULL);
  if (e == CL_SUCCESS && parts > 1) {
    int imn = (int)mn, pp = parts;
    const void *sv[8] = {&a->Y, &g->ws, &bias, &imn, &N, &pp, beta, &flags};
    size_t ss[8] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, es, 4};
    e = set_args(s, p->sum, sv, ss, 8);
    size_t sl = d->max_wg && d->max_wg < 256 ? d->max_wg : 256, sg = (mn + sl - 1) / sl * sl;
    if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, p->sum, 1, NULL, &sg, &sl, 0, NULL, NULL);
  }
  pthread_mutex_unlock(&g->lock);
  if (e != CL_SUCCESS) return ocl_fail(s, e, "queuing the gemm kernel");
  *taken = true;
  if (trace)
    trace("flagos trace: opencl gemm by flagos: %s batch %lld M %lld N %lld K %lld%s%s%s, tile %dx%d/%d, %d K slice%s "
          "on '%s'\n",
          f64 ? "f64" : f16 ? "f16" : "f32", (long long)a->batch, (long long)a->M, (long long)a->N, (long long)a->K,
          a->ta ? " transA" : "", a->tb ? " transB" : "", a->bias ? " bias" : "", t->tm, t->tn, t->tk, parts,
          parts > 1 ? "s" : "", d->name);
  return NULL;
}

void ocl_gemm_release(ocl_state_t *s, ocl_device_t *d) {
  ocl_gemm_dev_t *g = d->gemm;
  if (!g) return;
  for (int f = 0; f < 3; f++)
    for (int v = 0; v < GEMM_NV; v++) {
      gemm_prog_t *p = &g->p[f][v];
      if (p->sum) s->cl.clReleaseKernel(p->sum);
      if (p->gemm) s->cl.clReleaseKernel(p->gemm);
      if (p->prog) s->cl.clReleaseProgram(p->prog);
    }
  if (g->ws) s->cl.clReleaseMemObject(g->ws);
  pthread_mutex_destroy(&g->lock);
  free(g);
  d->gemm = NULL;
}
