/* The opencl plugin's "attention" library call (docs/kernel-ir.md): attention's
 * scores, softmax and context as one kernel of ours, where the node's own
 * kernels take three launches (src/ops/attention_fused.c). On NVIDIA's OpenCL a
 * launch costs the GPU about 4 us beyond its work (bench/gpu/results-h100-
 * 2026-11-23-s19.md), so two launches fewer a layer is what this is for.
 *
 * The kernel is built for each shape it meets (dtype, D and Dv features, rows a
 * group, keys a tile: attn_variant, at most AT_VARIANTS a device), so that every
 * loop whose extent that fixes is unrolled: a tile's loads are all in flight
 * together, and the products read local memory at constant offsets with no
 * per-row tests (the form before it, with these sizes as arguments, took 27.5 us
 * a call where this takes 11.6: bench/gpu/results-h100-2026-11-24-s22.md).
 * A work-group of AT_WG work-items takes R query rows of one batch (16, else 8
 * or 4 where local memory asks) and keeps them, and their rows of scores, in
 * local memory; the keys, then the values, pass through a local tile of KT keys
 * (all of them where they fit, a multiple of AT_KSTEP). Scores: a work-item R/4
 * rows and KB keys a step, four features at a time (float4, fma). Softmax of
 * each row by AT_WG / R work-items, the first MPF scores of each in registers,
 * their mask terms read at the start so that those loads overlap the rest.
 * Context: a work-item four columns of its rows, four keys a step. Indices are
 * 32-bit ints (the call is declined where a buffer has 2^31 elements or more).
 * f16 buffers are read and written with vload_half / vstore_half_rte (no
 * cl_khr_fp16 needed); everything in between is f32, where the node's kernels
 * round the scores and the probabilities to f16 on the way through memory.
 *
 * FLAGOS_OPENCL_ATTENTION (attn_on) says where the calls are taken;
 * FLAGOS_OPENCL_ATTENTION_ROWS (16, 8 or 4) and FLAGOS_OPENCL_ATTENTION_TILE (a
 * multiple of AT_KSTEP) cap the rows a group and the keys a tile, for the tests
 * and for measuring. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

#define AT_WG 256          /* work-items of a group */
#define AT_ROWS 16         /* query rows of a group by default (and at most); 8 or 4 where local memory asks */
#define AT_KSTEP 64        /* a tile's keys are a multiple of this (the scores' keys side by side: AT_WG / 4) */
#define AT_MPF 16          /* scores of a row a work-item keeps in registers through the softmax, at most */
#define AT_VARIANTS 16     /* kernels built per device (one per dtype, features, rows and tile) */
#define AT_LOCAL_MAX 49152 /* local memory a group takes at most (NVIDIA's limit without opting in to more) */

/* the call's ints (docs/kernel-ir.md) */
enum { A_BATCH, A_SQ, A_SK, A_D, A_DV, A_SQS, A_LDQ, A_TK, A_SKS, A_LDK, A_TV, A_SVS, A_LDV, A_SYS, A_LDY, A_H, A_MB,
       A_MH, A_MI, A_MJ, A_GUARD, A_NINTS, A_OFFQ = A_NINTS, A_OFFK, A_OFFV, A_NINTS_OFF };
#define AT_KINTS (A_NINTS_OFF - A_SQS + 2) /* the kernel's int arguments: sq, sk, then strideQ .. offV */

/* The kernel, built for one dtype (T, LD, ST), D and DV features, R rows a group, tiles of KT keys (a multiple of
 * AT_KSTEP), KB keys a work-item a step and MPF registers of scores (the host's head defines them). Everything
 * whose extent is known here is unrolled: the loads of a tile are all in flight together and the products read
 * local memory at constant offsets, with no per-row tests. */
static const char k_attention_src[] =
    "#define NAN_OR(x, y) (isnan(x) ? (x) : (y))\n"
    "#define DQ ((D + 3) & ~3)\n"   /* features padded to fours: rows read as float4 */
    "#define DVQ ((DV + 3) & ~3)\n"
    "#define KP (DQ + 4)\n"         /* a key's row in the tile: a quarter-warp's float4 reads in different banks */
    "#define RB (R / 4)\n"          /* scores: rows a work-item; 4 blocks of rows, WG / 4 keys side by side */
    "#define KWP (WG / 4)\n"
    "#define CB (DVQ / 4)\n"        /* context: a work-item 4 columns of ORW rows, OR rows side by side */
    "#define OR (WG / CB)\n"
    "#define ORW ((R + OR - 1) / OR)\n"
    "#define LANES (WG / R)\n"      /* softmax: work-items a row */
    "#define TSZ (KT * (KP > DVQ ? KP : DVQ))\n"
    "#define FMA4(a, b, acc) fma((a).w, (b).w, fma((a).z, (b).z, fma((a).y, (b).y, fma((a).x, (b).x, (acc)))))\n"
    "__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))\n"
    "void flagos_attention(__global const T *q, __global const T *k, __global const T *v, __global T *y,\n"
    "                      __global const T *m, int sq, int sk, int sqs, int ldq, int tk, int sks, int ldk, int tv,\n"
    "                      int svs, int ldv, int sys, int ldy, int h, int mb, int mh, int mi, int mj, int guard,\n"
    "                      int oq, int ok, int ov, float alpha, float alpha2, int has_mask, __local float4 *p4) {\n"
    "  __local float4 qs4[R * DQ / 4];\n"
    "  __local float4 t4[TSZ / 4];\n"
    "  __local float red[WG];\n"
    "  __local float stat[2 * R];\n"
    "  __local float *qs = (__local float *)qs4, *t = (__local float *)t4, *p = (__local float *)p4;\n"
    "  const int b = get_group_id(1), r0 = get_group_id(0) * R, tid = get_local_id(0);\n"
    "  const int rows = min(R, sq - r0), skp = (sk + 3) & ~3, skp4 = skp >> 2;\n"
    "  q += oq + b * sqs + r0 * ldq;\n"
    "  k += ok + b * sks;\n"
    "  v += ov + b * svs;\n"
    "  y += b * sys + r0 * ldy;\n"
    "  const int mo = has_mask ? (b / h) * mb + (b % h) * mh + r0 * mi : 0;\n"
    /* the softmax's share of a work-item: row si, keys sl, sl + LANES, ...; the first MPF held in registers from
     * here to the end of the softmax, their mask terms read first so that the loads overlap the rest */
    "  const int si = tid / LANES, sl = tid % LANES;\n"
    "  float x[MPF];\n"
    "\n#pragma unroll\n"
    "  for (int u = 0; u < MPF; u++) {\n"
    "    const int j = sl + u * LANES;\n"
    "    x[u] = has_mask && si < rows && j < sk ? LD(m, mo + si * mi + j * mj) : 0.0f;\n"
    "  }\n"
    /* the group's query rows; rows past the end and the padding zeros */
    "\n#pragma unroll\n"
    "  for (int u = 0; u < (R * DQ + WG - 1) / WG; u++) {\n"
    "    const int e = tid + u * WG, i = e / DQ, c = e % DQ;\n"
    "    if (e < R * DQ) qs[e] = i < rows && c < D ? LD(q, i * ldq + c) : 0.0f;\n"
    "  }\n"
    /* scores, KT keys at a time through the tile: a work-item RB rows and KB keys (KWP apart) a step */
    "  const int jj = tid % KWP, rb = tid / KWP;\n"
    "  for (int j0 = 0; j0 < sk; j0 += KT) {\n"
    "    const int kn = min(KT, sk - j0);\n"
    "    if (j0) barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (tk) {\n"
    "\n#pragma unroll\n"
    "      for (int u = 0; u < (KT * DQ + WG - 1) / WG; u++) {\n"
    "        const int e = tid + u * WG, j = e / DQ, c = e % DQ;\n"
    "        if (e < KT * DQ) t[j * KP + c] = j < kn && c < D ? LD(k, (j0 + j) * ldk + c) : 0.0f;\n"
    "      }\n"
    "    } else {\n"
    "\n#pragma unroll\n"
    "      for (int u = 0; u < (KT * DQ + WG - 1) / WG; u++) {\n"
    "        const int e = tid + u * WG, c = e / KT, j = e % KT;\n"
    "        if (e < KT * DQ) t[j * KP + c] = j < kn && c < D ? LD(k, c * ldk + j0 + j) : 0.0f;\n"
    "      }\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "\n#pragma unroll\n"
    "    for (int jb = 0; jb < KT; jb += KWP * KB) {\n"
    "      float acc[RB][KB];\n"
    "\n#pragma unroll\n"
    "      for (int r = 0; r < RB; r++)\n"
    "\n#pragma unroll\n"
    "        for (int kb = 0; kb < KB; kb++) acc[r][kb] = 0.0f;\n"
    "\n#pragma unroll\n"
    "      for (int c4 = 0; c4 < DQ / 4; c4++) {\n"
    "        float4 kv[KB];\n"
    "\n#pragma unroll\n"
    "        for (int kb = 0; kb < KB; kb++) kv[kb] = t4[(jb + jj + kb * KWP) * (KP / 4) + c4];\n"
    "\n#pragma unroll\n"
    "        for (int r = 0; r < RB; r++) {\n"
    "          const float4 qv = qs4[(rb * RB + r) * (DQ / 4) + c4];\n"
    "\n#pragma unroll\n"
    "          for (int kb = 0; kb < KB; kb++) acc[r][kb] = FMA4(qv, kv[kb], acc[r][kb]);\n"
    "        }\n"
    "      }\n"
    "\n#pragma unroll\n"
    "      for (int r = 0; r < RB; r++)\n"
    "\n#pragma unroll\n"
    "        for (int kb = 0; kb < KB; kb++) {\n"
    "          const int i = rb * RB + r, j = jb + jj + kb * KWP;\n"
    "          if (i < rows && j < kn) p[i * skp + j0 + j] = alpha * acc[r][kb];\n"
    "        }\n"
    "    }\n"
    "  }\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    /* softmax of row si by its lanes (a NaN anywhere in a row makes it NaN, as the node's kernels do); scores past
     * a work-item's first MPF (rows longer than MPF * LANES keys) stay in local memory */
    "  __local float *pi = p + si * skp;\n"
    "  float mx = -INFINITY;\n"
    "  if (si < rows) {\n"
    "\n#pragma unroll\n"
    "    for (int u = 0; u < MPF; u++) {\n"
    "      const int j = sl + u * LANES;\n"
    "      if (j < sk) {\n"
    "        x[u] += pi[j];\n"
    "        mx = NAN_OR(x[u], NAN_OR(mx, fmax(mx, x[u])));\n"
    "      }\n"
    "    }\n"
    "    for (int j = sl + MPF * LANES; j < sk; j += LANES) {\n"
    "      const float s = pi[j] + (has_mask ? LD(m, mo + si * mi + j * mj) : 0.0f);\n"
    "      pi[j] = s;\n"
    "      mx = NAN_OR(s, NAN_OR(mx, fmax(mx, s)));\n"
    "    }\n"
    "  }\n"
    "  red[tid] = mx;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  if (sl == 0 && si < rows) {\n"
    "    for (int u = 1; u < LANES; u++) mx = NAN_OR(red[tid + u], NAN_OR(mx, fmax(mx, red[tid + u])));\n"
    "    stat[si] = mx;\n"
    "  }\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  float sum = 0.0f;\n"
    "  if (si < rows) {\n"
    "    mx = stat[si];\n"
    "\n#pragma unroll\n"
    "    for (int u = 0; u < MPF; u++)\n"
    "      if (sl + u * LANES < sk) {\n"
    "        x[u] = exp(x[u] - mx);\n"
    "        sum += x[u];\n"
    "      }\n"
    "    for (int j = sl + MPF * LANES; j < sk; j += LANES) {\n"
    "      const float e = exp(pi[j] - mx);\n"
    "      pi[j] = e;\n"
    "      sum += e;\n"
    "    }\n"
    "  }\n"
    "  red[tid] = sum;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  if (sl == 0 && si < rows) {\n"
    "    for (int u = 1; u < LANES; u++) sum += red[tid + u];\n"
    "    stat[R + si] = sum;\n"
    "  }\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    /* the probabilities; the padding past the keys, and rows past the end, zeros */
    "  {\n"
    "    const float rcp = si < rows ? 1.0f / stat[R + si] : 0.0f;\n"
    "\n#pragma unroll\n"
    "    for (int u = 0; u < MPF; u++) {\n"
    "      const int j = sl + u * LANES;\n"
    "      if (j < skp) {\n"
    "        const float e = j < sk && si < rows ? x[u] * rcp : 0.0f;\n"
    "        pi[j] = guard && isnan(e) ? 0.0f : e;\n"
    "      }\n"
    "    }\n"
    "    for (int j = sl + MPF * LANES; j < skp; j += LANES) {\n"
    "      const float e = j < sk && si < rows ? pi[j] * rcp : 0.0f;\n"
    "      pi[j] = guard && isnan(e) ? 0.0f : e;\n"
    "    }\n"
    "  }\n"
    /* the context, KT values at a time through the tile (a value a row of DVQ floats, rows past the keys zeros):
     * a work-item 4 columns of ORW rows (OR apart), four keys a step */
    "  const int cb = tid % CB, orr = tid / CB;\n"
    "  float4 out[ORW];\n"
    "\n#pragma unroll\n"
    "  for (int o = 0; o < ORW; o++) out[o] = (float4)(0.0f);\n"
    "  for (int j0 = 0; j0 < sk; j0 += KT) {\n"
    "    const int kn = min(KT, sk - j0);\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (tv) {\n"
    "\n#pragma unroll\n"
    "      for (int u = 0; u < (KT * DVQ + WG - 1) / WG; u++) {\n"
    "        const int e = tid + u * WG, c = e / KT, j = e % KT;\n"
    "        if (e < KT * DVQ) t[j * DVQ + c] = j < kn && c < DV ? LD(v, c * ldv + j0 + j) : 0.0f;\n"
    "      }\n"
    "    } else {\n"
    "\n#pragma unroll\n"
    "      for (int u = 0; u < (KT * DVQ + WG - 1) / WG; u++) {\n"
    "        const int e = tid + u * WG, j = e / DVQ, c = e % DVQ;\n"
    "        if (e < KT * DVQ) t[j * DVQ + c] = j < kn && c < DV ? LD(v, (j0 + j) * ldv + c) : 0.0f;\n"
    "      }\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (orr < OR) {\n"
    "\n#pragma unroll\n"
    "      for (int j = 0; j < KT; j += 4) {\n"
    "        if (j >= kn) break;\n"
    "        const float4 v0 = t4[j * CB + cb], v1 = t4[(j + 1) * CB + cb], v2 = t4[(j + 2) * CB + cb],\n"
    "                     v3 = t4[(j + 3) * CB + cb];\n"
    "\n#pragma unroll\n"
    "        for (int o = 0; o < ORW; o++)\n"
    "          if (ORW * OR == R || orr + o * OR < R) {\n"
    "            const float4 pv = p4[(orr + o * OR) * skp4 + ((j0 + j) >> 2)];\n"
    "            out[o] = fma((float4)(pv.w), v3, fma((float4)(pv.z), v2, fma((float4)(pv.y), v1, fma((float4)(pv.x), v0, out[o]))));\n"
    "          }\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "  if (orr < OR) {\n"
    "\n#pragma unroll\n"
    "    for (int o = 0; o < ORW; o++) {\n"
    "      const int i = orr + o * OR, c = cb * 4;\n"
    "      if (i < rows) {\n"
    "        const float4 r = alpha2 * out[o];\n"
    "        if (c < DV) ST(y, i * ldy + c, r.x);\n"
    "        if (c + 1 < DV) ST(y, i * ldy + c + 1, r.y);\n"
    "        if (c + 2 < DV) ST(y, i * ldy + c + 2, r.z);\n"
    "        if (c + 3 < DV) ST(y, i * ldy + c + 3, r.w);\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "}\n";

static const char k_f32_defs[] = "#define T float\n#define LD(p, i) ((p)[i])\n#define ST(p, i, x) ((p)[i] = (x))\n";
static const char k_f16_defs[] =
    "#define T half\n#define LD(p, i) vload_half((i), (p))\n#define ST(p, i, x) vstore_half_rte((x), (i), (p))\n";

/* A kernel built for one shape of the call (the head's defines). */
typedef struct {
  int f16, d, dv, rows, kt, kb, mpf;
} attn_shape_t;

typedef struct {
  attn_shape_t sh;
  cl_program prog;
  cl_kernel k;
  bool failed;      /* does not build or run here: calls of this shape are declined */
  size_t local_fix; /* the kernel's own local memory (its arrays), from the device */
} attn_variant_t;

/* Per device: the kernels built so far (under the lock), and the local memory a group may take. */
struct ocl_attn_dev {
  attn_variant_t v[AT_VARIANTS];
  int n;
  int64_t local_max;
};

static pthread_mutex_t g_attn_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same_shape(const attn_shape_t *a, const attn_shape_t *b) {
  return a->f16 == b->f16 && a->d == b->d && a->dv == b->dv && a->rows == b->rows && a->kt == b->kt &&
         a->kb == b->kb && a->mpf == b->mpf;
}

/* The device's table, made at the first call. */
static flagos_status_t attn_dev(ocl_state_t *s, ocl_device_t *d) {
  if (d->attn) return NULL;
  if (!(d->attn = calloc(1, sizeof(*d->attn))))
    return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  cl_ulong lm = 0;
  s->cl.clGetDeviceInfo(d->id, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lm, &lm, NULL);
  d->attn->local_max = lm > AT_LOCAL_MAX ? AT_LOCAL_MAX : (int64_t)lm;
  return NULL;
}

/* The kernel for shape *sh on device d, built at its first use; *out NULL where it cannot be had here. */
static flagos_status_t attn_variant(ocl_state_t *s, ocl_device_t *d, const attn_shape_t *sh, attn_variant_t **out) {
  *out = NULL;
  ocl_attn_dev_t *a = d->attn;
  for (int i = 0; i < a->n; i++)
    if (same_shape(&a->v[i].sh, sh)) {
      *out = a->v[i].failed ? NULL : &a->v[i];
      return NULL;
    }
  if (a->n == AT_VARIANTS) return NULL; /* a model with this many shapes of attention: the node's kernels */
  attn_variant_t *v = &a->v[a->n];
  memset(v, 0, sizeof *v);
  v->sh = *sh;
  char head[256];
  int nh = snprintf(head, sizeof head,
                    "#define WG %d\n#define D %d\n#define DV %d\n#define R %d\n#define KT %d\n#define KB %d\n"
                    "#define MPF %d\n",
                    AT_WG, sh->d, sh->dv, sh->rows, sh->kt, sh->kb, sh->mpf);
  const char *defs = sh->f16 ? k_f16_defs : k_f32_defs;
  size_t nd = strlen(defs), nb = strlen(k_attention_src), len = (size_t)nh + nd + nb;
  char *src = malloc(len + 1);
  if (!src) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  memcpy(src, head, (size_t)nh);
  memcpy(src + nh, defs, nd);
  memcpy(src + nh + nd, k_attention_src, nb + 1);
  bool refused = false;
  flagos_status_t err = ocl_program_build_opt(s, d, src, len, &v->prog, &refused);
  free(src);
  if (err) return err;
  a->n++;
  if (refused) {
    v->failed = true;
    return NULL;
  }
  cl_int e;
  v->k = s->cl.clCreateKernel(v->prog, "flagos_attention", &e);
  if (!v->k) {
    v->failed = true;
    return ocl_fail(s, e, "creating the attention kernel");
  }
  size_t wg = 0;
  cl_ulong lf = 0;
  s->cl.clGetKernelWorkGroupInfo(v->k, d->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
  s->cl.clGetKernelWorkGroupInfo(v->k, d->id, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lf, &lf, NULL);
  v->local_fix = (size_t)lf;
  if (wg < AT_WG) v->failed = true; /* the device cannot run a group of AT_WG with this kernel */
  *out = v->failed ? NULL : v;
  return NULL;
}

void ocl_attention_release(ocl_state_t *s, ocl_device_t *d) {
  if (!d->attn) return;
  for (int i = 0; i < d->attn->n; i++) {
    if (d->attn->v[i].k) s->cl.clReleaseKernel(d->attn->v[i].k);
    if (d->attn->v[i].prog) s->cl.clReleaseProgram(d->attn->v[i].prog);
  }
  free(d->attn);
  d->attn = NULL;
}

/* FLAGOS_OPENCL_ATTENTION: 1 takes the calls on every device, 0 on none; unset, on GPUs and accelerators and not
 * on CPU devices, where it was never measured (the cpu backend is the one for CPUs). On an H100 through NVIDIA's
 * OpenCL this kernel takes BERT-base's 12 heads of 128 x 64 in 11.6 us a call (f32; 13.8 f16) against 27.5 for
 * the form before it, and a run of BERT-base or GPT-2 at batch 1 is 0.07-0.09 ms faster than with the node's
 * three kernels (bench/gpu/results-h100-2026-11-24-s22.md). */
static bool attn_on(const ocl_device_t *d) {
  const char *e = getenv("FLAGOS_OPENCL_ATTENTION");
  if (e && *e) return strcmp(e, "0") != 0;
  return !(d->type & CL_DEVICE_TYPE_CPU);
}

/* FLAGOS_OPENCL_ATTENTION_ROWS: the rows a group takes at most (16, 8 or 4) */
static int rows_cap(void) {
  const char *e = getenv("FLAGOS_OPENCL_ATTENTION_ROWS");
  int r = e ? atoi(e) : AT_ROWS;
  return r == 4 || r == 8 || r == 16 ? r : AT_ROWS;
}

/* FLAGOS_OPENCL_ATTENTION_TILE: the keys of a tile at most (a multiple of AT_KSTEP; unset: all that fit), for the
 * tests to take the tiled path on short sequences and for measuring */
static int64_t tile_cap(void) {
  const char *e = getenv("FLAGOS_OPENCL_ATTENTION_TILE");
  int64_t t = e ? atoll(e) : 0;
  return t >= AT_KSTEP && t % AT_KSTEP == 0 ? t : INT32_MAX;
}

/* Local memory a group of sh takes, its scores' rows of skp floats included (before the kernel is built: the
 * arrays as the source declares them). */
static int64_t attn_local(const attn_shape_t *sh, int64_t skp) {
  int64_t dq = (sh->d + 3) & ~3, dvq = (sh->dv + 3) & ~3, kp = dq + 4;
  return 4 * (sh->rows * dq + sh->kt * (kp > dvq ? kp : dvq) + AT_WG + 2 * sh->rows + sh->rows * skp);
}

/* A call checked and made ready to launch: its device, kernel, arguments and grid. */
typedef struct {
  ocl_device_t *d;
  attn_variant_t *v;
  cl_mem mem[5];
  cl_int ints[AT_KINTS]; /* sq, sk, then strideQ .. nan_to_zero, offQ, offK, offV */
  float alpha, alpha2;
  cl_int has_mask;
  size_t p_bytes; /* the scores' rows in local memory */
  size_t global[2];
} attn_launch_t;

/* Checks the call and fills *L; *empty where the output has no elements (nothing to queue). */
static flagos_status_t attn_prepare(ocl_state_t *s, const flagos_libcall_t *call, attn_launch_t *L, bool *empty) {
  *empty = false;
  if ((call->n_bufs != 4 && call->n_bufs != 5) || (call->n_ints != A_NINTS && call->n_ints != A_NINTS_OFF) ||
      call->n_floats != 2)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: attention takes 4 or 5 buffers, %d or %d ints, 2 floats", A_NINTS, A_NINTS_OFF);
  int32_t dt = call->buf_dtypes[0];
  for (int i = 0; i < call->n_bufs; i++)
    if (!call->bufs[i] || call->buf_dtypes[i] != dt)
      return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: attention's buffers must share one dtype");
  if (dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT16)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: no attention for this dtype");
  int64_t x[A_NINTS_OFF] = {0}; /* the offsets 0 where the call has none */
  memcpy(x, call->ints, sizeof(int64_t) * (size_t)call->n_ints);
  for (int i = 0; i < A_NINTS_OFF; i++)
    if (x[i] < 0) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: attention int %d is negative", i);
  if (x[A_BATCH] == 0 || x[A_SQ] == 0 || x[A_DV] == 0) {
    *empty = true;
    return NULL;
  }
  if (x[A_SK] == 0 || x[A_D] == 0 || x[A_H] == 0 || x[A_BATCH] > 65535)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention without keys or features, or past 65535 batches");
  for (int i = 0; i < A_NINTS_OFF; i++)
    if (x[i] > INT32_MAX) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention int %d past 32 bits", i);
  if (x[A_DV] > AT_WG || x[A_D] > AT_WG)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention with more than %d features", AT_WG);
  const ocl_buf_t *const *b = (const ocl_buf_t *const *)call->bufs;
  flagos_status_t err = ocl_device_ready(s, b[0]->dev, &L->d);
  if (err) return err;
  if (!attn_on(L->d))
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention calls off on '%s' (FLAGOS_OPENCL_ATTENTION=1 "
                   "takes them on every device)", L->d->name);
  size_t esz = dt == FLAGOS_FLOAT16 ? 2 : 4;
  for (int i = 0; i < call->n_bufs; i++) {
    if (b[i]->dev != b[0]->dev)
      return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: attention's buffers are on different devices");
    if (b[i]->size / esz > INT32_MAX)
      return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention buffer %d has 2^31 elements or more", i);
  }
  /* the last element each operand's strides reach lies inside its buffer (all ints below 2^31: no overflow) */
  int64_t nb = x[A_BATCH] - 1, last[4] = {
      x[A_OFFQ] + nb * x[A_SQS] + (x[A_SQ] - 1) * x[A_LDQ] + x[A_D] - 1,
      x[A_OFFK] + nb * x[A_SKS] + (x[A_TK] ? (x[A_SK] - 1) * x[A_LDK] + x[A_D] - 1 : (x[A_D] - 1) * x[A_LDK] + x[A_SK] - 1),
      x[A_OFFV] + nb * x[A_SVS] + (x[A_TV] ? (x[A_DV] - 1) * x[A_LDV] + x[A_SK] - 1 : (x[A_SK] - 1) * x[A_LDV] + x[A_DV] - 1),
      nb * x[A_SYS] + (x[A_SQ] - 1) * x[A_LDY] + x[A_DV] - 1};
  for (int i = 0; i < 4; i++)
    if ((size_t)last[i] >= b[i]->size / esz)
      return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                     "opencl backend: attention's %s reach element %lld of a buffer of %zu", i == 0 ? "query" : i == 1 ? "keys" : i == 2 ? "values" : "output",
                     (long long)last[i], b[i]->size / esz);
  /* the shape: as many rows as fit (16, else 8, else 4) with a tile of all the keys, or at least 128 of them
   * (64 with 4 rows); the scores' rows of the group stay in local memory whole */
  int64_t skp = (x[A_SK] + 3) & ~3, all = (skp + AT_KSTEP - 1) / AT_KSTEP * AT_KSTEP, cap = tile_cap();
  if (all > cap) all = cap;
  pthread_mutex_lock(&g_attn_lock);
  err = attn_dev(s, L->d);
  int64_t budget = err ? 0 : L->d->attn->local_max;
  attn_shape_t sh = {dt == FLAGOS_FLOAT16, (int)x[A_D], (int)x[A_DV], 0, 0, 0, 0};
  for (int rows = rows_cap(); rows >= 4 && !err; rows /= 2) {
    sh.rows = rows;
    sh.kt = (int)all;
    while (sh.kt > AT_KSTEP && attn_local(&sh, skp) > budget) sh.kt -= AT_KSTEP;
    if (attn_local(&sh, skp) <= budget && (sh.kt == all || sh.kt >= 2 * AT_KSTEP || rows == 4)) break;
    sh.kt = 0;
  }
  L->v = NULL;
  if (!err && sh.kt) {
    sh.kb = sh.kt % (2 * AT_KSTEP) == 0 ? 2 : 1;
    int lanes = AT_WG / sh.rows, mpf = (sh.kt + lanes - 1) / lanes;
    sh.mpf = mpf < AT_MPF ? mpf : AT_MPF;
    err = attn_variant(s, L->d, &sh, &L->v);
  }
  pthread_mutex_unlock(&g_attn_lock);
  if (err) return err;
  if (!sh.kt) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention's rows do not fit local memory");
  L->p_bytes = sizeof(float) * (size_t)(sh.rows * skp);
  if (!L->v || L->v->local_fix + L->p_bytes > (size_t)budget)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED,
                   "opencl backend: the attention kernel for this shape does not build or fit here (or %d shapes "
                   "were built already)",
                   AT_VARIANTS);
  for (int i = 0; i < 5; i++) L->mem[i] = b[i < call->n_bufs ? i : 0]->mem; /* no mask: any buffer, unread */
  L->ints[0] = (cl_int)x[A_SQ];
  L->ints[1] = (cl_int)x[A_SK];
  for (int i = A_SQS; i < A_NINTS_OFF; i++) L->ints[2 + i - A_SQS] = (cl_int)x[i];
  L->alpha = (float)call->floats[0];
  L->alpha2 = (float)call->floats[1];
  L->has_mask = call->n_bufs == 5;
  L->global[0] = (size_t)((x[A_SQ] + sh.rows - 1) / sh.rows) * AT_WG;
  L->global[1] = (size_t)x[A_BATCH];
  return NULL;
}

static cl_int attn_set_args(ocl_state_t *s, cl_kernel k, const attn_launch_t *L) {
  cl_int e = CL_SUCCESS;
  cl_uint arg = 0;
  for (int i = 0; i < 5 && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, arg++, sizeof(cl_mem), &L->mem[i]);
  for (int i = 0; i < AT_KINTS && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, arg++, sizeof(cl_int), &L->ints[i]);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, sizeof L->alpha, &L->alpha);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, sizeof L->alpha2, &L->alpha2);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, sizeof L->has_mask, &L->has_mask);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, L->p_bytes, NULL);
  return e;
}

static void attn_trace(const flagos_libcall_t *call, const attn_launch_t *L, const char *tail) {
  const int64_t *x = call->ints;
  ocl_blas_trace("flagos trace: opencl attention: %s batch %lld Sq %lld Sk %lld D %lld Dv %lld%s%s, %d rows a group, "
                 "tiles of %d keys on '%s'%s\n",
                 L->v->sh.f16 ? "f16" : "f32", (long long)x[A_BATCH], (long long)x[A_SQ], (long long)x[A_SK],
                 (long long)x[A_D], (long long)x[A_DV], x[A_TK] ? " K^T" : "", x[A_TV] ? " V^T" : "", L->v->sh.rows,
                 L->v->sh.kt, L->d->name, tail);
}

flagos_status_t ocl_attention_call(ocl_state_t *s, flagos_bstream_t st, const flagos_libcall_t *call) {
  attn_launch_t L;
  bool empty;
  flagos_status_t err = attn_prepare(s, call, &L, &empty);
  if (err || empty) return err;
  cl_command_queue q = ocl_queue(s, st, ((const ocl_buf_t *)call->bufs[0])->dev);
  /* traced on a profiling queue (FLAGOS_OPENCL_PROFILING=1): the kernel's time on the device, waited for */
  bool timed = L.d->profiling && getenv("FLAGOS_TRACE") && q == L.d->queue;
  cl_event ev = NULL;
  size_t local[2] = {AT_WG, 1};
  pthread_mutex_lock(&g_attn_lock); /* the variant's kernel object: its arguments are this call's until queued */
  cl_int e = attn_set_args(s, L.v->k, &L);
  if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, L.v->k, 2, NULL, L.global, local, 0, NULL, timed ? &ev : NULL);
  pthread_mutex_unlock(&g_attn_lock);
  if (e != CL_SUCCESS) return ocl_fail(s, e, "queuing the attention kernel");
  double us = -1;
  if (ev) {
    cl_ulong t0 = 0, t1 = 0;
    if (s->cl.clWaitForEvents(1, &ev) == CL_SUCCESS &&
        s->cl.clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
        s->cl.clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS)
      us = (double)(t1 - t0) / 1e3;
    s->cl.clReleaseEvent(ev);
  }
  char when[48] = "";
  if (us >= 0) snprintf(when, sizeof when, ", %.1f us on the device", us);
  attn_trace(call, &L, when);
  return NULL;
}

flagos_status_t ocl_attention_plan(ocl_state_t *s, cl_command_queue q, const flagos_libcall_t *call,
                                   ocl_gemm_plan_t *plan) {
  attn_launch_t L;
  bool empty;
  flagos_status_t err = attn_prepare(s, call, &L, &empty);
  if (err || empty) return err;
  cl_int e;
  cl_kernel k = s->cl.clCreateKernel(L.v->prog, "flagos_attention", &e);
  if (!k) return ocl_fail(s, e, "making the attention kernel's plan");
  e = attn_set_args(s, k, &L);
  if (e != CL_SUCCESS) {
    s->cl.clReleaseKernel(k);
    return ocl_fail(s, e, "making the attention kernel's plan");
  }
  plan->k[0] = k;
  plan->dims[0] = 2;
  plan->global[0][0] = L.global[0];
  plan->global[0][1] = L.global[1];
  plan->local[0][0] = AT_WG;
  plan->local[0][1] = 1;
  plan->n = 1;
  plan->q = q;
  for (int i = 0; i < call->n_bufs; i++) {
    s->cl.clRetainMemObject(L.mem[i]);
    plan->held[plan->n_held++] = L.mem[i];
  }
  attn_trace(call, &L, ", planned for replays");
  return NULL;
}
