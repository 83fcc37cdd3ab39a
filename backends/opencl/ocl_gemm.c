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
 * The kernels (ocl_gemm_src.c): each work-group computes a TM x TN tile of Y
 * walking K in steps of TK; both operand tiles go through local memory, the
 * next step's tile is fetched into registers while the current one is
 * multiplied (on tensor cores: copied by cp.async straight into one of
 * STAGES rings of local memory, several steps ahead), and each work-item
 * (each warp, on tensor cores) keeps its block of outputs in registers.
 * Transposes are uniform branches on an argument, so one kernel serves the
 * four cases. Three kernels: the general one (f64, and
 * FLAGOS_OPENCL_GEMM_TILE), the vector one (float4 accesses) and the
 * tensor-core one (f16, PTX mma.sync); a fourth, the warpgroup one (f16,
 * sm_90a's wgmma on compute capability 9.0), only where FLAGOS_OPENCL_WGMMA=1
 * or a tile asks for it (wg_mode). Each tile
 * variant (k_variants) is its own program (the source with its #defines in
 * front), built at a device's first product that needs it, through
 * ocl_module.c's binary cache.
 *
 * Few output tiles (BERT at batch 1 has M = 128) leave most of a large GPU
 * idle: then the product is split over K, slices on the grid's third
 * dimension writing alpha * partial products to a per-device workspace. A
 * second kernel sums them, or (sum_in_kernel, where FLAGOS_OPENCL_SPLIT_SUM=1
 * asks) the group that completes a tile, as an atomic count says
 * (ocl_gemm_pre's GEMM_SPLIT_END, behind PTX's device-wide fence): one launch,
 * which saves host time but costs the device more. Either way the slices
 * are summed in order with beta * Y and the bias: the result does not depend
 * on timing, nor on which way was taken.
 *
 * FLAGOS_OPENCL_GEMM: 1 = ours for every f32/f64/f16 gemm the call takes, on
 * any device (tests, PoCL); 0 = never (CLBlast as before, and f16 to the
 * generic kernel); unset = ours on GPUs. f16 sums in float, rounding once to
 * half at the end (CLBlast's Hgemm sums in half and needs cl_khr_fp16).
 * FLAGOS_OPENCL_GEMM_TILE=i forces variant i of k_variants (measurements,
 * tests); FLAGOS_OPENCL_SPLITK=N forces N K slices on batch-1 products. */
/* the split-K workspace's tile counts (ocl_gemm_pre's GEMM_COUNTS ints, in
 * front of the partial products): a product summed in its kernel has at most
 * this many tiles */
#define GEMM_COUNTS 4096
/* gemm_norm's sum kernel (ocl_gemm_src.c): a group of GEMM_NORM_WG a row, at most GEMM_NORM_MAX columns */
#define GEMM_NORM_WG 256
#define GEMM_NORM_MAX (8 * GEMM_NORM_WG)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

/* Tile shapes: TM x TN outputs a group, K steps of TK, RM x RN a work-item. */
typedef struct {
  int tm, tn, tk, rm, rn;
  bool f64;   /* also built for double */
  bool inter; /* a work-item's outputs interleaved (INTER) */
  bool vec;   /* ocl_gemm_vec (f32 and f16 products with rows on 16-byte boundaries) */
  bool tc;    /* ocl_gemm_tc (f16 products, rows on 16-byte boundaries), warp tiles wm x wn */
  int wm, wn;
  bool wg;    /* with tc: ocl_gemm_wg instead (sm_90a's wgmma), a warpgroup for every 64 rows */
} gemm_variant_t;

static const gemm_variant_t k_variants[] = {
    {128, 128, 8, 8, 8, false, true, false},  /* 0: 256 work-items; GEMM_LARGE */
    {32, 64, 16, 4, 4, true, false, false},   /* 1: 128; GEMM_SMALL */
    {32, 64, 32, 4, 4, true, false, false},   /* 2: 128; GEMM_SMALL_K32 */
    {64, 32, 32, 4, 4, true, false, false},   /* 3: 128 */
    {64, 64, 16, 4, 4, false, true, false},   /* 4: 256; GEMM_MID */
    {128, 128, 16, 8, 8, false, false, true}, /* 5: 256; GEMM_VLARGE */
    {64, 128, 16, 4, 8, false, false, true},  /* 6: 256; GEMM_VWIDE */
    {64, 64, 16, 4, 4, false, false, true},   /* 7: 256; GEMM_VMID */
    {32, 64, 32, 4, 4, false, false, true},   /* 8: 128; GEMM_VSMALL */
    {128, 64, 16, 8, 4, false, false, true},  /* 9: 256 */
    {64, 64, 32, 4, 4, false, false, true},   /* 10: 256 */
    {128, 128, 32, 0, 0, .tc = true, .wm = 64, .wn = 32}, /* 11: 256; GEMM_THUGE */
    {64, 128, 32, 0, 0, .tc = true, .wm = 32, .wn = 64},  /* 12: 128; GEMM_TWIDE */
    {64, 64, 32, 0, 0, .tc = true, .wm = 32, .wn = 32},   /* 13: 128; GEMM_TMID */
    {32, 64, 64, 0, 0, .tc = true, .wm = 16, .wn = 32},   /* 14: 128; GEMM_TSMALL */
    {128, 64, 32, 0, 0, .tc = true, .wm = 64, .wn = 32},  /* 15: 128; GEMM_TLARGE */
    {128, 128, 32, 0, 0, .tc = true, .wg = true},         /* 16: 256; GEMM_WHUGE */
    {64, 128, 32, 0, 0, .tc = true, .wg = true},          /* 17: 128; GEMM_WWIDE */
    {32, 32, 64, 0, 0, .tc = true, .wm = 16, .wn = 16},   /* 18: 128; GEMM_TSQUARE */
};
#define GEMM_NV ((int)(sizeof k_variants / sizeof k_variants[0]))
#define GEMM_LARGE 0
#define GEMM_SMALL 1
#define GEMM_SMALL_K32 2
#define GEMM_MID 4
#define GEMM_VLARGE 5
#define GEMM_VWIDE 6
#define GEMM_VMID 7
#define GEMM_VSMALL 8
#define GEMM_THUGE 11
#define GEMM_TLARGE 15
#define GEMM_TWIDE 12
#define GEMM_TMID 13
#define GEMM_TSMALL 14
#define GEMM_WHUGE 16
#define GEMM_WWIDE 17
#define GEMM_TSQUARE 18

/* Work-items of a variant's group. */
static size_t threads(const gemm_variant_t *t) {
  if (t->wg) return (size_t)(t->tm / 64) * 128;
  return t->tc ? (size_t)(t->tm / t->wm) * (size_t)(t->tn / t->wn) * 32 : (size_t)(t->tm / t->rm) * (size_t)(t->tn / t->rn);
}

typedef struct {
  cl_program prog;
  cl_kernel gemm, sum;
  cl_kernel norm; /* flagos_gemm_sum_norm, made at the program's first gemm_norm */
  bool norm_failed; /* the device cannot run it in groups of GEMM_NORM_WG */
  bool failed; /* built, but the device cannot run it: not tried again */
  cl_int why;
} gemm_prog_t;

struct ocl_gemm_dev {
  pthread_mutex_t lock;      /* kernel arguments are shared: setting them and queuing are one step */
  /* [kind: f32, f64, f16, f16 with mma emulated][variant][transposes]: the
   * tensor-core kernel on the device (kind 2), and the vector kernel on GPUs,
   * are built for each pair of transposes they meet (TRANS, fixed_trans), so
   * that their loads and ldmatrix addresses lose their run-time branches;
   * every other program takes them at run time and sits at [0] */
  gemm_prog_t p[4][GEMM_NV][4];
  int tc;                    /* -1 not yet known; else whether this device takes ocl_gemm_tc */
  int wg;                    /* the same for ocl_gemm_wg */
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
 * H100 (scripts/gpu/gemm.sh; bench/gpu/results-h100-2026-11-22-s8.md). The
 * kernel: tensor cores for f16 where the rows allow (ocl_gemm_tc), else the vector
 * kernel for f32 and f16 (ocl_gemm_vec), else (f64) the general one. The tile (on tensor cores 128x128
 * first where it gives every compute unit 2.5 groups, below): the first of the kernel's two
 * large ones that gives every compute unit a group and wastes at most a
 * quarter of its outputs past M and N (128x128 then 64x64 for the general
 * kernel, 128x128 then 64x128 for the vector one: 4096^3 f32 at 41.8 TFLOP/s
 * against 25 before; 128x64, 64x128, then 64x64 on tensor cores: with the
 * multi-stage kernel 64x128 took ResNet-50's 64-row convolutions at batch 64
 * in 150 us against 188 for 64x64, tenth session); else a 64x64 tile for
 * products with a bias epilogue or a batch (BERT's linear layers and
 * attention) and 32x64 for the rest (on tensor cores: 64x64, and 32x64 with
 * K steps of 64; the general kernel's 32x64 with K steps of 32 and 16, as
 * measured on the models in the sixth session). Batch-1 products with a long K
 * (at least GEMM_SPLIT_K, GEMM_SPLIT_K_TC on tensor cores) are split over K
 * until there are about 2.5 groups per compute unit (slices of at least
 * GEMM_MIN_SLICE, at most GEMM_MAX_SPLIT of them). On tensor cores a K of 768
 * is not worth splitting, and from GEMM_SPLIT_K_TC they are split until there
 * is half a group a compute unit.
 *
 * On tensor cores, batch-1 products with a short K whose 32x32 tiles (K steps
 * of 64, GEMM_TSQUARE) give at most a group a compute unit take them, else
 * those whose 32x64 tiles give at most 1.5: few rows and columns, where the
 * 64x64 tile leaves most of the GPU idle.
 * Measured on an H100 with the device's time a call (flagos_gemm_bench's gate,
 * twenty-fifth session; bench/gpu/results-h100-2026-11-24-s25.md), µs:
 * 128x768x768 with a bias 6.2 against 11.2 for 64x64 (cuBLASLt 4.8), and 10.4
 * against 16.8 as gemm_norm; 128x768x3072 as gemm_norm 15.2 in 4 slices of
 * 64x64 against 19.0 in 16 and 16.9 unsplit in 32x32 tiles; 128x2304x768 and
 * 128x3072x768 (288 and 384 such tiles) took 12.0-13.0 against 11.8-12.0 for
 * 64x64, 11.2-11.9 in 32x64 tiles; 64x3072x768 8.5 in 32x64 against 11.6.
 * From GEMM_SPLIT_K_TC they take 64x64 with or without a bias: 128x768x3072
 * as gemm_norm 15.0 in 4 slices against 16.7 in 2 of 32x64 (12.8 against 14.1
 * as a product). FLAGOS_OPENCL_TC_SQUARE=0 leaves these choices out of the
 * rule. */
#define GEMM_SPLIT_K 512
#define GEMM_SPLIT_K_TC 2048
#define GEMM_MIN_SLICE 128
#define GEMM_MAX_SPLIT 16
static int pick(const ocl_device_t *d, bool f64, bool vec, bool tc, int wg, bool bias, int64_t batch, int64_t M,
                int64_t N, int64_t K, int *parts) {
  *parts = 1;
  const char *tv = getenv("FLAGOS_OPENCL_GEMM_TILE");
  int v = -1;
  if (tv && *tv) {
    v = atoi(tv);
    if (v < 0 || v >= GEMM_NV || (f64 && !k_variants[v].f64) || (k_variants[v].vec && !vec) ||
        (k_variants[v].tc && !tc) || (k_variants[v].wg && !wg))
      v = -1;
  }
  int64_t cu = d->compute_units ? d->compute_units : 1;
  int kind = tc ? 2 : vec ? 1 : 0;
  /* tensor cores: 128x128 where it gives every compute unit 2.5 groups or
   * more (fewer, and its two stages and large groups leave the GPU idle) and
   * wastes at most a quarter of its outputs: 4096^3 f16 in 519 us against 697
   * for 128x64, GPT-2's logits (128x50257x768) in 100 against 112, BERT's
   * 4096x3072x768 in 118 against 140; 4096x768x768 took 69 against 38 (eleventh session) */
  /* wgmma (sm_90a), where FLAGOS_OPENCL_WGMMA=1: 128x128 where it gives every
   * compute unit two groups, else 64x128 where it gives each one, at most a
   * quarter of the outputs wasted */
  const char *we = getenv("FLAGOS_OPENCL_WGMMA");
  bool wg_rule = wg == 1 && we && !strcmp(we, "1");
  for (int i = 0; wg_rule && v < 0 && i < 2; i++) {
    const gemm_variant_t *t = &k_variants[i ? GEMM_WWIDE : GEMM_WHUGE];
    int64_t gm = cdiv(M, t->tm), gn = cdiv(N, t->tn);
    if (gm * gn * batch >= (i ? 1 : 2) * cu && 4 * M * N >= 3 * gm * t->tm * gn * t->tn) v = i ? GEMM_WWIDE : GEMM_WHUGE;
  }
  if (v < 0 && tc) {
    const gemm_variant_t *t = &k_variants[GEMM_THUGE];
    int64_t gm = cdiv(M, t->tm), gn = cdiv(N, t->tn);
    if (2 * gm * gn * batch >= 5 * cu && 4 * M * N >= 3 * gm * t->tm * gn * t->tn) v = GEMM_THUGE;
  }
  if (v < 0 && !f64) {
    /* the first tile that fills the GPU (a group per compute unit) and wastes
     * at most a quarter of its outputs past M and N */
    static const int big[3][3] = {
        {GEMM_LARGE, GEMM_MID, -1}, {GEMM_VLARGE, GEMM_VWIDE, -1}, {GEMM_TLARGE, GEMM_TWIDE, GEMM_TMID}};
    for (int i = 0; i < 3 && v < 0 && big[kind][i] >= 0; i++) {
      const gemm_variant_t *t = &k_variants[big[kind][i]];
      int64_t gm = cdiv(M, t->tm), gn = cdiv(N, t->tn);
      if (gm * gn * batch >= cu && 4 * M * N >= 3 * gm * t->tm * gn * t->tn) v = big[kind][i];
    }
  }
  const char *few = getenv("FLAGOS_OPENCL_TC_SQUARE");
  bool few_rule = tc && batch == 1 && (!few || strcmp(few, "0") != 0);
  if (v < 0 && few_rule && K < GEMM_SPLIT_K_TC) {
    if (cdiv(M, 32) * cdiv(N, 32) <= cu) v = GEMM_TSQUARE;
    else if (2 * cdiv(M, 32) * cdiv(N, 64) <= 3 * cu) v = GEMM_TSMALL;
  }
  if (v < 0 && tc) v = bias || batch > 1 || (few_rule && K >= GEMM_SPLIT_K_TC) ? GEMM_TMID : GEMM_TSMALL;
  if (v < 0 && vec) v = bias || batch > 1 ? GEMM_VMID : GEMM_VSMALL;
  if (v < 0) v = bias || batch > 1 ? GEMM_SMALL_K32 : GEMM_SMALL;
  const char *env = getenv("FLAGOS_OPENCL_SPLITK");
  if (batch != 1) return v;
  if (env && *env) {
    long f = atol(env);
    if (f > 1 && f <= 64 && f <= K) *parts = (int)f;
    return v;
  }
  if (!(d->type & CL_DEVICE_TYPE_GPU) || K < (k_variants[v].tc ? GEMM_SPLIT_K_TC : GEMM_SPLIT_K)) return v;
  int64_t groups = cdiv(M, k_variants[v].tm) * cdiv(N, k_variants[v].tn);
  /* groups a compute unit, times two: 5 (2.5), on tensor cores 1 (a half) */
  int64_t fill = k_variants[v].tc ? 1 : 5;
  for (int f = 2; f <= GEMM_MAX_SPLIT && 2 * groups * *parts < fill * cu; f *= 2) {
    if (K / f < GEMM_MIN_SLICE) break;
    *parts = f;
  }
  return v;
}

/* Stages (K steps in flight) of `stage` bytes that fit beside `reserve` bytes
 * in the device's local memory (NVIDIA's OpenCL gives a work-group 48 KiB),
 * at most four, at least two; FLAGOS_OPENCL_TC_STAGES=N asks for N (2 to 8;
 * a build past the device's local memory fails and the other kernels take
 * the products). */
static int fit_stages(ocl_state_t *s, const ocl_device_t *d, long stage, long reserve) {
  const char *e = getenv("FLAGOS_OPENCL_TC_STAGES");
  if (e && *e) {
    int n = atoi(e);
    if (n >= 2 && n <= 8) return n;
  }
  cl_ulong local = 0;
  if (s->cl.clGetDeviceInfo(d->id, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL) != CL_SUCCESS || !local)
    local = 48 * 1024;
  if (local > 48 * 1024) local = 48 * 1024;
  long n = ((long)local - reserve) / stage;
  return n < 2 ? 2 : n > 4 ? 4 : (int)n;
}

/* The tensor-core kernel's: a stage is both operands' tiles in the kernel's
 * layout (ocl_gemm_src.c: AROOM, BROOM words). */
static int tc_stages(ocl_state_t *s, const ocl_device_t *d, const gemm_variant_t *t, bool emulated) {
  long kw = t->tk / 2 + 4, akw = t->tm / 2 + 4, bkw = t->tn / 2 + 4;
  long aroom = t->tm * kw > t->tk * akw ? t->tm * kw : t->tk * akw;
  long broom = t->tn * kw > t->tk * bkw ? t->tn * kw : t->tk * bkw;
  long warps = (long)(t->tm / t->wm) * (t->tn / t->wn);
  /* the emulation's exchange; slack */
  return fit_stages(s, d, 4 * (aroom + broom), (emulated ? warps * 32 * 6 * 4 : 0) + 1024);
}

/* The warpgroup kernel's: a stage is both operands' tiles, 2 (TM + TN) TK
 * bytes, without padding (ocl_gemm_src.c: AST, BST), and the whole 48 KiB
 * may hold them (128x128: three stages). */
static int wg_stages(ocl_state_t *s, const ocl_device_t *d, const gemm_variant_t *t) {
  return fit_stages(s, d, 2L * (t->tm + t->tn) * t->tk, 0);
}

/* The instruction of the warpgroup kernel on the device (WGMMA(da, db)):
 * m64nTNk16 with TN / 2 float sums a work-item, A and B from local memory
 * through descriptors da and db, D = A B + D, the transposes as immediates (A
 * M-major where transposed, B N-major where not). Behind "//FOWG": ocl_module.c
 * restores it in the PTX. Malloc'ed; NULL when out of memory. */
static char *wgmma_def(int tn, int ta, int tb) {
  int n = tn / 2;
  size_t cap = 400 + (size_t)n * 24;
  char *d = malloc(cap);
  if (!d) return NULL;
  int o = snprintf(d, cap,
                   "#define WGMMA(da, db) asm volatile(\"//FOWG { .reg .pred p; setp.ne.b32 p, %%%d, 0; "
                   "wgmma.mma_async.sync.aligned.m64n%dk16.f32.f16.f16 {",
                   n + 2, tn);
  for (int i = 0; i < n; i++) o += snprintf(d + o, cap - (size_t)o, "%s%%%d", i ? "," : "", i);
  o += snprintf(d + o, cap - (size_t)o, "}, %%%d, %%%d, p, 1, 1, %d, %d; }\" : ", n, n + 1, ta, !tb);
  for (int i = 0; i < n; i++) o += snprintf(d + o, cap - (size_t)o, "%s\"+f\"(acc[%d])", i ? ", " : "", i);
  snprintf(d + o, cap - (size_t)o, " : \"l\"(da), \"l\"(db), \"r\"(1) : \"memory\")\n");
  return d;
}

/* Whether kernel k (kind, variant) is built for its products' transposes:
 * by default the tensor-core kernel on the device and the vector kernel on
 * GPUs; CPU devices and the emulated tensor-core kernel take them at run time
 * (four programs a tile would cost PoCL minutes of compiling).
 * FLAGOS_OPENCL_GEMM_TRANS=0 keeps them a run-time argument everywhere but in
 * the warpgroup kernel on the device, whose instruction takes them as immediates (for
 * measurements), =1 builds both kernels for them on every device (the tests'
 * way to check those programs on PoCL). */
static bool fixed_trans(const ocl_device_t *d, int kind, const gemm_variant_t *t) {
  if (kind == 2 && t->wg) return true; /* the instruction's immediates */
  const char *e = getenv("FLAGOS_OPENCL_GEMM_TRANS");
  if (e && (!strcmp(e, "0") || !strcmp(e, "off"))) return false;
  if (e && !strcmp(e, "1")) return t->tc || t->vec;
  return (kind == 2 && t->tc) || (t->vec && (d->type & CL_DEVICE_TYPE_GPU));
}

/* Whether the device's compiler takes PTX (NVIDIA's): GEMM_FENCE_PTX. */
static bool ptx_fence(const ocl_device_t *d) { return strstr(d->vendor, "NVIDIA") != NULL; }

/* Whether a product split into `parts` slices has them summed by its own
 * kernel (flags & 256) rather than by flagos_gemm_sum. Only when asked
 * (FLAGOS_OPENCL_SPLIT_SUM=1, on every device and dtype; the tests): it saves
 * a launch's host time, which is what the sixteenth session measured (models
 * whose replays the host then paced), but on the device the sum costs more
 * than the second kernel: 128x768x3072 in 4 slices of 64x64 took 22.8 µs
 * against 12.8 with flagos_gemm_sum, 128x768x768 in 2 slices 15.3 against
 * 9.5, and with PTX's fence.acq_rel or one fence a group instead of one a
 * work-item the same (twenty-fifth session, by flagos_gemm_bench's gate).
 * FLAGOS_OPENCL_SPLIT_SUM_MAX=N limits it to products of at most N slices. */
static bool sum_in_kernel(int parts) {
  const char *e = getenv("FLAGOS_OPENCL_SPLIT_SUM"), *mx = getenv("FLAGOS_OPENCL_SPLIT_SUM_MAX");
  if (!e || !*e || !strcmp(e, "0") || !strcmp(e, "off")) return false;
  return !(mx && *mx) || parts <= atoi(mx);
}

/* Builds variant v into p. A source that does not build is an error (the log
 * says why; FLAGOS_OPENCL_GEMM=0 avoids it); a device that cannot run its
 * work-group size marks it failed, and CLBlast takes the products. */
static flagos_status_t build_variant(ocl_state_t *s, ocl_device_t *d, int kind, int v, int trans, gemm_prog_t *p) {
  const gemm_variant_t *t = &k_variants[v];
  size_t nt = threads(t);
  /* reqd_work_group_size past the device's limit fails the build itself on some compilers */
  if (d->max_wg && d->max_wg < nt) {
    *p = (gemm_prog_t){.failed = true, .why = CL_INVALID_WORK_GROUP_SIZE};
    return NULL;
  }
  static const char *const types[4] = {
      "#define T float\n#define C float\n", "#define T double\n#define C double\n#define GEMM_F64 1\n",
      "#define T ushort\n#define C float\n#define GEMM_F16 1\n",
      "#define T ushort\n#define C float\n#define GEMM_F16 1\n#define MMA_EMULATE 1\n"};
  int stages = t->wg ? wg_stages(s, d, t) : t->tc ? tc_stages(s, d, t, kind == 3) : 0;
  char head[400], tr[32] = "";
  if (trans >= 0) snprintf(tr, sizeof tr, "#define TRANS %d\n", trans);
  snprintf(head, sizeof head,
                    "%s%s%s%s#define TM %d\n#define TN %d\n#define TK %d\n#define RM %d\n#define RN %d\n#define WM %d\n"
                    "#define WN %d\n#define STAGES %d\n#define WAITG \"%d\"\n#define GEMM_COUNTS %d\n",
                    types[kind], t->inter ? "#define INTER 1\n" : "", tr, ptx_fence(d) ? "#define GEMM_FENCE_PTX 1\n" : "",
                    t->tm, t->tn, t->tk, t->rm, t->rn, t->wm, t->wn, stages, stages - 2, GEMM_COUNTS);
  /* the device's wgmma (kind 2; transposes fixed: they are the instruction's immediates) */
  bool sm90a = t->wg && kind == 2;
  char *wdef = sm90a && trans >= 0 ? wgmma_def(t->tn, trans & 1, trans >> 1 & 1) : NULL;
  if (sm90a && !wdef) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  const char *parts[6] = {head, wdef ? wdef : "", ocl_gemm_pre, t->tc ? ocl_gemm_async : "",
                          t->wg ? ocl_gemm_wg : t->tc ? ocl_gemm_tc : t->vec ? ocl_gemm_vec : ocl_gemm_general,
                          ocl_gemm_sum};
  size_t n = 1;
  for (int i = 0; i < 6; i++) n += strlen(parts[i]);
  char *src = malloc(n);
  if (!src) {
    free(wdef);
    return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  }
  src[0] = 0;
  for (size_t i = 0, o = 0; i < 6; i++) {
    size_t l = strlen(parts[i]);
    memcpy(src + o, parts[i], l + 1);
    o += l;
  }
  free(wdef);
  bool refused = false;
  flagos_status_t err = ocl_program_build_ex(s, d, src, n - 1, &p->prog, t->tc ? &refused : NULL, sm90a);
  free(src);
  if (err) return err;
  if (refused) {
    *p = (gemm_prog_t){.failed = true, .why = CL_BUILD_PROGRAM_FAILURE};
    return NULL;
  }
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

/* Whether products go to ocl_gemm_tc (under g->lock): 0 no; 1 through PTX's mma.sync,
 * on NVIDIA devices of compute capability 8.0 and later (unless
 * FLAGOS_OPENCL_TENSOR=0, or their compiler refused the kernel before); 2
 * emulated, on any device (FLAGOS_OPENCL_TENSOR=emulate: tests). */
static int tc_mode(ocl_state_t *s, const ocl_device_t *d, ocl_gemm_dev_t *g) {
  const char *e = getenv("FLAGOS_OPENCL_TENSOR");
  if (e && (!strcmp(e, "0") || !strcmp(e, "off"))) return 0;
  if (e && !strcmp(e, "emulate")) return 2;
  if (g->tc < 0) {
    cl_uint major = 0;
    g->tc = strstr(d->vendor, "NVIDIA") && ocl_has_word(d->extensions, "cl_nv_device_attribute_query") &&
            s->cl.clGetDeviceInfo(d->id, 0x4000 /* CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV */, sizeof major, &major,
                                  NULL) == CL_SUCCESS &&
            major >= 8;
  }
  return g->tc;
}

/* Whether products may go to ocl_gemm_wg, given tc_mode's answer tcm (under
 * g->lock): 0 no; 1 through sm_90a's wgmma, on NVIDIA devices of compute
 * capability 9.0 (unless FLAGOS_OPENCL_WGMMA=0, or the program was refused
 * before); 2 emulated (tcm 2). pick's rule takes its tiles only where
 * FLAGOS_OPENCL_WGMMA=1; otherwise they run where FLAGOS_OPENCL_GEMM_TILE
 * asks for them (at twice the mma.sync kernel's time, twelfth session, the
 * kernel is not yet the default). */
static int wg_mode(ocl_state_t *s, const ocl_device_t *d, ocl_gemm_dev_t *g, int tcm) {
  const char *e = getenv("FLAGOS_OPENCL_WGMMA");
  if (!tcm || (e && (!strcmp(e, "0") || !strcmp(e, "off")))) return 0;
  if (tcm == 2) return 2;
  if (g->wg < 0) {
    cl_uint major = 0, minor = 0;
    g->wg = s->cl.clGetDeviceInfo(d->id, 0x4000 /* CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV */, sizeof major, &major,
                                  NULL) == CL_SUCCESS &&
            s->cl.clGetDeviceInfo(d->id, 0x4001 /* ..._MINOR_NV */, sizeof minor, &minor, NULL) == CL_SUCCESS &&
            major == 9 && minor == 0;
  }
  return g->wg;
}

static ocl_gemm_dev_t *gemm_dev(ocl_device_t *d) {
  pthread_mutex_lock(&g_gemm_new_lock);
  if (!d->gemm && (d->gemm = calloc(1, sizeof(*d->gemm)))) {
    pthread_mutex_init(&d->gemm->lock, NULL);
    d->gemm->tc = d->gemm->wg = -1;
  }
  ocl_gemm_dev_t *g = d->gemm;
  pthread_mutex_unlock(&g_gemm_new_lock);
  return g;
}

bool ocl_gemm_tensor_cores(ocl_state_t *s, ocl_device_t *d) {
  ocl_gemm_dev_t *g = gemm_dev(d);
  if (!g) return false;
  pthread_mutex_lock(&g->lock);
  bool tc = tc_mode(s, d, g) != 0;
  pthread_mutex_unlock(&g->lock);
  return tc;
}

/* A workspace of at least `bytes` of partial products behind zeroed counts
 * (under g->lock, on the default queue q, whose order puts the zeros before
 * every use); false where there is no room (no split then). */
static bool split_room(ocl_state_t *s, ocl_device_t *d, ocl_gemm_dev_t *g, cl_command_queue q, size_t bytes) {
  bytes += GEMM_COUNTS * sizeof(cl_int);
  if (g->ws_size >= bytes) return true;
  /* the old workspace may still be read by queued commands: OpenCL frees it after them */
  if (g->ws) s->cl.clReleaseMemObject(g->ws);
  cl_int e;
  static const cl_int zero[GEMM_COUNTS]; /* static: the write need not wait */
  g->ws = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
  if (g->ws && s->cl.clEnqueueWriteBuffer(q, g->ws, CL_FALSE, 0, sizeof zero, zero, 0, NULL, NULL) != CL_SUCCESS) {
    s->cl.clReleaseMemObject(g->ws);
    g->ws = NULL;
  }
  g->ws_size = g->ws ? bytes : 0;
  return g->ws != NULL;
}

/* Under g->lock. */
static cl_int set_args(ocl_state_t *s, cl_kernel k, const void *const *vals, const size_t *sizes, cl_uint n) {
  cl_int e = CL_SUCCESS;
  for (cl_uint i = 0; i < n && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, i, sizes[i], vals[i]);
  return e;
}

/* A plan's own kernel object for kernel `name` of p, with the arguments set; NULL and *e on failure. */
static cl_kernel own_kernel(ocl_state_t *s, const gemm_prog_t *p, const char *name, const void *const *vals,
                            const size_t *sizes, cl_uint n, cl_int *e) {
  cl_kernel k = s->cl.clCreateKernel(p->prog, name, e);
  if (k && (*e = set_args(s, k, vals, sizes, n)) != CL_SUCCESS) {
    s->cl.clReleaseKernel(k);
    k = NULL;
  }
  return k;
}

cl_int ocl_gemm_plan_run(ocl_state_t *s, const ocl_gemm_plan_t *p, cl_command_queue q, ocl_timeline_t *t) {
  cl_int e = CL_SUCCESS;
  for (int l = 0; l < 2; l++)
    if (p->lock[l]) pthread_mutex_lock(p->lock[l]);
  for (int i = 0; i < p->n && e == CL_SUCCESS; i++)
    e = s->cl.clEnqueueNDRangeKernel(q, p->k[i], p->dims[i], NULL, p->global[i], p->local[i], 0, NULL,
                                     t ? ocl_timeline_slot(t, p->k[i]) : NULL);
  for (int l = 1; l >= 0; l--)
    if (p->lock[l]) pthread_mutex_unlock(p->lock[l]);
  return e;
}

bool ocl_gemm_plan_portable(const ocl_gemm_plan_t *p) { return !p->lock[0] && !p->lock[1]; }

void ocl_gemm_plan_release(ocl_state_t *s, ocl_gemm_plan_t *p) {
  for (int i = 0; i < OCL_PLAN_MAX; i++)
    if (p->k[i]) s->cl.clReleaseKernel(p->k[i]);
  for (int i = 0; i < p->n_held; i++) s->cl.clReleaseMemObject(p->held[i]);
  memset(p, 0, sizeof(*p));
}

/* The kernel a trace line names after the tile (the tests count these). */
/* the trace's words for an activation (ocl_gemm_args_t.act) */
static const char *const k_act_label[4] = {"", " gelu", " gelu-tanh", " relu"};

static const char *kernel_label(const gemm_variant_t *t, bool emulated) {
  if (t->vec) return " vec";
  if (!t->tc) return "";
  if (t->wg) return emulated ? " wgmma emulated" : " wgmma";
  return emulated ? " mma emulated" : " mma";
}

flagos_status_t ocl_gemm_run(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, const ocl_gemm_args_t *a,
                             ocl_trace_fn *trace, bool *taken, ocl_gemm_plan_t *plan) {
  *taken = false;
  bool f64 = a->dtype == FLAGOS_FLOAT64, f16 = a->dtype == FLAGOS_FLOAT16;
  int kind = f64 ? 1 : f16 ? 2 : 0;
  /* 32-bit indices within a matrix, with room for the sums past an extent
   * (a row one tile beyond M, a K slice's end beyond K): products up to 2^30 */
  const int64_t lim = (int64_t)1 << 30;
  /* B's rows: N apart (K transposed), or ldb where the caller padded them
   * (ocl_conv.c) or reads B through a transpose (the call's tenth int) */
  int64_t ldb = a->ldb ? a->ldb : a->tb ? a->K : a->N;
  /* A's and Y's rows likewise (the call's eleventh and twelfth ints) */
  int64_t lda = a->lda ? a->lda : a->ta ? a->M : a->K, ldy = a->ldy ? a->ldy : a->N;
  if (a->K <= 0 || a->N <= 0 || a->M <= 0 || a->M > lim / a->K || a->K > lim / a->N || a->M > lim / a->N ||
      (a->tb ? a->N : a->K) > lim / ldb || (a->ta ? a->K : a->M) > lim / lda || a->M > lim / ldy)
    return NULL;
  ocl_gemm_dev_t *g = gemm_dev(d);
  if (!g) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  /* ocl_gemm_vec: float4 loads of an operand whose rows all start on a
   * float4 (f16: 4 halves), element by element of the other one (unless
   * FLAGOS_OPENCL_VEC_UNALIGNED=0, which leaves such products to the general kernel) */
  bool a_al = lda % 4 == 0 && a->sa % 4 == 0, b_al = ldb % 4 == 0 && a->sb % 4 == 0;
  const char *vu = getenv("FLAGOS_OPENCL_VEC_UNALIGNED");
  bool vec = !f64 && ((a_al && b_al) || !vu || (strcmp(vu, "0") != 0 && strcmp(vu, "off") != 0));
  /* and Y's (else the vector kernel writes Y element by element) */
  bool yvec = ldy % 4 == 0 && a->sy % 4 == 0;
  /* ocl_gemm_tc: f16 on rows of whole 16-byte loads, on a device that has mma.sync (or emulated) */
  pthread_mutex_lock(&g->lock);
  int tcm = f16 && lda % 8 == 0 && ldb % 8 == 0 && a->sa % 8 == 0 && a->sb % 8 == 0 ? tc_mode(s, d, g) : 0;
  int wgm = wg_mode(s, d, g, tcm);
  int parts, v, trans = (a->ta ? 1 : 0) | (a->tb ? 2 : 0), tr = -1;
  const gemm_variant_t *t;
  gemm_prog_t *kp = NULL;
  size_t es = f64 ? 8 : 4, mn = (size_t)a->M * (size_t)a->N; /* es: the computed type's size (workspace, alpha) */
  for (;;) {
    v = pick(d, f64, vec, tcm != 0, wgm, a->bias != NULL, a->batch, a->M, a->N, a->K, &parts);
    /* the workspace is shared: only the default queue's order keeps its uses apart */
    if (q != d->queue) parts = 1;
    t = &k_variants[v];
    /* the grid's second and third dimensions: 65535 groups at most on some
     * platforms (NVIDIA's maps them onto CUDA's grid) */
    if (cdiv(a->M, t->tm) > 65535 || (parts > 1 ? parts : a->batch) > 65535) {
      pthread_mutex_unlock(&g->lock);
      return NULL;
    }
    int k = t->tc && tcm == 2 ? 3 : kind;
    tr = fixed_trans(d, k, t) ? trans : -1;
    gemm_prog_t *p = &g->p[k][v][tr < 0 ? 0 : tr];
    flagos_status_t err = NULL;
    if (!p->gemm && !p->failed) {
      err = build_variant(s, d, k, v, tr, p);
      if (err) {
        p->failed = true;
        p->why = CL_BUILD_PROGRAM_FAILURE;
      }
      if (p->failed && trace)
        trace("flagos trace: opencl gemm: '%s' cannot run our %dx%d tile kernel%s (%s): %s instead\n", d->name, t->tm,
              t->tn, t->tc ? " on tensor cores" : "", ocl_error_name(p->why),
              t->tc ? "the other kernels" : "CLBlast or the generic kernel");
    }
    if (p->gemm) {
      kp = p;
      break;
    }
    if (t->wg && !err) {
      /* the same for the warpgroup kernel: the mma.sync one takes over */
      g->wg = 0;
      wgm = 0;
      continue;
    }
    if (t->tc && !err) {
      /* the tensor-core kernel is a fast path: a device whose compiler does
       * not take it (or cannot run it) goes on without it */
      g->tc = 0;
      tcm = 0;
      continue;
    }
    /* The run gets the build's error (with its log) once; after that the
     * variant is marked and CLBlast or the generic kernel takes its products,
     * rather than a build of several seconds failing every call. */
    pthread_mutex_unlock(&g->lock);
    return err;
  }
  if (parts > 1 && !split_room(s, d, g, q, (size_t)parts * mn * es)) parts = 1;
  /* gemm_norm: the slices' sum kernel adds the residual and normalises, a group a row of at most
   * GEMM_NORM_MAX; unsplit (a stream's queue, a short K), it reads the product from Y instead: two
   * launches, as the node's own kernels (the product, then the Add and LayerNormalization) */
  bool norm = a->Z != NULL;
  if (norm && (f64 || a->act || a->batch != 1 || a->N > GEMM_NORM_MAX || ldy != a->N ||
               (d->max_wg && d->max_wg < GEMM_NORM_WG))) {
    pthread_mutex_unlock(&g->lock);
    if (trace)
      trace("flagos trace: opencl gemm_norm declined: %s batch %lld M %lld N %lld K %lld%s on '%s'\n",
            f64 ? "f64" : f16 ? "f16" : "f32", (long long)a->batch, (long long)a->M, (long long)a->N,
            (long long)a->K, a->act ? " with an activation" : "", d->name);
    return NULL;
  }
  if (norm && !kp->norm) {
    cl_int ne;
    kp->norm = s->cl.clCreateKernel(kp->prog, "flagos_gemm_sum_norm", &ne);
    if (!kp->norm) {
      pthread_mutex_unlock(&g->lock);
      return ocl_fail(s, ne, "making the gemm_norm kernel");
    }
    /* groups of GEMM_NORM_WG: a device that cannot run them declines every gemm_norm */
    size_t nwg = 0;
    if (s->cl.clGetKernelWorkGroupInfo(kp->norm, d->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof nwg, &nwg, NULL) !=
            CL_SUCCESS ||
        nwg < GEMM_NORM_WG)
      kp->norm_failed = true;
  }
  if (norm && kp->norm_failed) {
    pthread_mutex_unlock(&g->lock);
    return NULL;
  }
  /* the sum in the product's kernel: a count a tile */
  bool in_kernel = parts > 1 && !norm && sum_in_kernel(parts) && cdiv(a->M, t->tm) * cdiv(a->N, t->tn) <= GEMM_COUNTS;
  int M = (int)a->M, N = (int)a->N, K = (int)a->K;
  float beta32 = (float)a->beta;
  /* beta 0 (as the kernel sees it) must not read Y, whose contents may be NaN */
  int flags = (a->bias ? 1 : 0) | ((f64 ? a->beta != 0 : beta32 != 0) ? 2 : 0) | (parts > 1 ? 4 : 0) | (yvec ? 8 : 0) |
              (a->bias && a->bias_rows ? 16 : 0) | (t->vec && !a_al ? 32 : 0) | (t->vec && !b_al ? 64 : 0) |
              (ldy % 2 == 0 && a->sy % 2 == 0 ? 128 : 0) | /* 128: Y's pairs of halves on 4 bytes */
              (in_kernel ? 256 : 0) | (a->act << 9); /* 512, 1024: the activation */
  /* slices of whole K steps; the last ones may be short or empty */
  int kslice = parts > 1 ? (int)((cdiv(K, parts) + t->tk - 1) / t->tk * t->tk) : K;
  cl_long sa = a->sa, sb = a->sb, sy = parts > 1 ? (cl_long)mn : a->sy;
  float alpha32 = (float)a->alpha;
  const void *alpha = f64 ? (const void *)&a->alpha : &alpha32, *beta = f64 ? (const void *)&a->beta : &beta32;
  /* unused bias and workspace arguments still need valid buffers */
  cl_mem w = parts > 1 ? g->ws : a->Y, bias = a->bias ? a->bias : a->Y;
  int ildb = (int)ldb, ilda = (int)lda, ildy = (int)ldy;
  const void *vals[19] = {&a->A, &a->B, &a->Y, &w, &bias, &M, &N, &K, &trans, &sa, &sb, &sy, alpha, beta, &kslice,
                          &flags, &ildb, &ilda, &ildy};
  size_t sizes[19] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, 8, 8, 8,
                      es, es, 4, 4, 4, 4, 4};
  size_t nt = threads(t);
  size_t global[3] = {(size_t)cdiv(a->N, t->tn) * nt, (size_t)cdiv(a->M, t->tm),
                      parts > 1 ? (size_t)parts : (size_t)a->batch};
  size_t local[3] = {nt, 1, 1};
  int imn = (int)mn, pp = parts;
  const void *sv[9] = {&a->Y, &g->ws, &bias, &imn, &N, &pp, beta, &flags, &ildy};
  size_t ss[9] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, es, 4, 4};
  size_t sl = d->max_wg && d->max_wg < 256 ? d->max_wg : 256, sg = (mn + sl - 1) / sl * sl;
  bool sum = (parts > 1 && !in_kernel) || norm; /* a second kernel, flagos_gemm_sum (or _norm) */
  /* flagos_gemm_sum_norm: the sum's arguments (no slices: the product read from Y, its bias added
   * already), then R, gamma, beta, Z, eps and whether there is a beta */
  float eps32 = (float)a->eps;
  int has_bet = a->beta_ln != NULL, nparts = parts > 1 ? parts : 0, nflags = parts > 1 ? flags : 0;
  cl_mem bet = a->beta_ln ? a->beta_ln : a->gamma;
  const void *nv[15] = {&a->Y, &w, &bias, &imn, &N, &nparts, beta, &nflags, &ildy, &a->R, &a->gamma, &bet, &a->Z,
                        &eps32, &has_bet};
  size_t ns[15] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, es, 4, 4, sizeof(cl_mem),
                   sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4};
  if (norm) {
    sl = GEMM_NORM_WG;
    sg = (size_t)a->M * GEMM_NORM_WG;
  }
  cl_int e = CL_SUCCESS;
  if (plan) {
    /* kernel objects of the plan's own, arguments set once, after what the
     * plan holds already; the buffers they name are retained (clSetKernelArg
     * does not), as a recorded launch's are */
    int i0 = plan->n;
    if (i0 + 2 > OCL_PLAN_MAX || plan->n_held + 9 > OCL_PLAN_HELD) e = CL_OUT_OF_HOST_MEMORY;
    else plan->k[i0] = own_kernel(s, kp, "flagos_gemm", vals, sizes, 19, &e);
    if (e == CL_SUCCESS && sum)
      plan->k[i0 + 1] = norm ? own_kernel(s, kp, "flagos_gemm_sum_norm", nv, ns, 15, &e)
                             : own_kernel(s, kp, "flagos_gemm_sum", sv, ss, 9, &e);
    if (e != CL_SUCCESS) {
      pthread_mutex_unlock(&g->lock);
      return ocl_fail(s, e, "making the gemm kernel's plan");
    }
    plan->n = i0 + (sum ? 2 : 1);
    plan->dims[i0] = 3;
    memcpy(plan->global[i0], global, sizeof global);
    memcpy(plan->local[i0], local, sizeof local);
    if (sum) {
      plan->dims[i0 + 1] = 1;
      plan->global[i0 + 1][0] = sg;
      plan->local[i0 + 1][0] = sl;
    }
    if (parts > 1) plan->lock[1] = &g->lock; /* the split-K workspace, as calls hold it */
    cl_mem held[9] = {a->A, a->B, a->Y, a->bias, parts > 1 ? g->ws : NULL, a->R, a->gamma, a->beta_ln, a->Z};
    for (int i = 0; i < 9; i++)
      if (held[i]) {
        s->cl.clRetainMemObject(held[i]);
        plan->held[plan->n_held++] = held[i];
      }
    plan->q = q;
  } else {
    e = set_args(s, kp->gemm, vals, sizes, 19);
    if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, kp->gemm, 3, NULL, global, local, 0, NULL, NULL);
    cl_kernel sk = norm ? kp->norm : kp->sum;
    if (e == CL_SUCCESS && sum) e = norm ? set_args(s, sk, nv, ns, 15) : set_args(s, sk, sv, ss, 9);
    if (e == CL_SUCCESS && sum) e = s->cl.clEnqueueNDRangeKernel(q, sk, 1, NULL, &sg, &sl, 0, NULL, NULL);
  }
  pthread_mutex_unlock(&g->lock);
  if (e != CL_SUCCESS) return ocl_fail(s, e, "queuing the gemm kernel");
  *taken = true;
  if (trace)
    trace("flagos trace: opencl gemm%s %s: %s batch %lld M %lld N %lld K %lld%s%s%s%s, tile %d (%dx%d/%d%s), %d K "
          "slice%s%s on '%s'%s\n",
          norm ? "_norm" : "", plan ? "planned for replays" : "by flagos", f64 ? "f64" : f16 ? "f16" : "f32", (long long)a->batch, (long long)a->M, (long long)a->N, (long long)a->K,
          a->ta ? " transA" : "", a->tb ? " transB" : "", a->bias ? " bias" : "", k_act_label[a->act & 3], v, t->tm,
          t->tn, t->tk,
          kernel_label(t, tcm == 2), parts, parts > 1 ? "s" : "", in_kernel ? " summed in the kernel" : "",
          d->name, tr >= 0 ? ", built for its transposes" : "");
  return NULL;
}

void ocl_gemm_release(ocl_state_t *s, ocl_device_t *d) {
  ocl_gemm_dev_t *g = d->gemm;
  if (!g) return;
  for (int f = 0; f < 4; f++)
    for (int v = 0; v < GEMM_NV; v++)
      for (int tr = 0; tr < 4; tr++) {
        gemm_prog_t *p = &g->p[f][v][tr];
        if (p->sum) s->cl.clReleaseKernel(p->sum);
        if (p->norm) s->cl.clReleaseKernel(p->norm);
        if (p->gemm) s->cl.clReleaseKernel(p->gemm);
        if (p->prog) s->cl.clReleaseProgram(p->prog);
      }
  if (g->ws) s->cl.clReleaseMemObject(g->ws);
  pthread_mutex_destroy(&g->lock);
  free(g);
  d->gemm = NULL;
}
