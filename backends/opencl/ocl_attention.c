/* The opencl plugin's "attention" library call (docs/kernel-ir.md): attention's
 * scores, softmax and context as one kernel of ours, where the node's own
 * kernels take three launches (src/ops/attention_fused.c). On NVIDIA's OpenCL a
 * launch costs the GPU about 4 us beyond its work (bench/gpu/results-h100-
 * 2026-11-23-s19.md), so two launches fewer a layer is what this is for.
 *
 * A work-group of AT_WG work-items takes up to AT_MAX_ROWS query rows of one
 * batch (AT_ROWS by default, fewer where local memory or the outputs a
 * work-item holds ask for it). It keeps the rows and their scores in local
 * memory; the keys, then the values, pass through a local tile of AT_KT rows,
 * read from global memory once a group in coalesced loads. Scores: a work-item
 * a key of the tile and up to RPT query rows, each key's features read once for
 * all of them. Softmax of each row (max, sum of exponentials, division, in
 * f32) by WG / rows work-items. Context: a work-item holds up to NOUT outputs
 * across the values' tiles. Indices are 32-bit ints (the call is declined where
 * a buffer has 2^31 elements or more). f16 buffers are read and written with
 * vload_half / vstore_half_rte (no cl_khr_fp16 needed); everything in between
 * is f32, where the node's kernels round the scores and the probabilities to
 * f16 on the way through memory.
 *
 * FLAGOS_OPENCL_ATTENTION=1 takes the calls; unset (or anything else) declines
 * them and the node's kernels run (env_off says why). FLAGOS_OPENCL_ATTENTION_ROWS
 * (1, 2, 4, 8, 16 or 32) sets the rows a group takes at most, for measuring. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

#define AT_WG 256       /* work-items of a group */
#define AT_KT 32        /* keys (values) of a tile; a divisor of AT_WG */
#define AT_MAX_ROWS 32  /* query rows of a group at most: RPT = AT_MAX_ROWS / (AT_WG / AT_KT) a work-item */
#define AT_ROWS 16      /* query rows of a group by default */
#define AT_NOUT 8       /* rows of the context a work-item holds: rows <= AT_NOUT * (AT_WG / Dv) */
#define AT_LOCAL_MAX 49152 /* local memory a group takes at most (NVIDIA's limit without opting in to more) */

/* the call's ints (docs/kernel-ir.md) */
enum { A_BATCH, A_SQ, A_SK, A_D, A_DV, A_SQS, A_LDQ, A_TK, A_SKS, A_LDK, A_TV, A_SVS, A_LDV, A_SYS, A_LDY, A_H, A_MB,
       A_MH, A_MI, A_MJ, A_GUARD, A_NINTS };

static const char k_attention_src[] =
    "#define NAN_OR(x, y) (isnan(x) ? (x) : (y))\n"
    "__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))\n"
    "void NAME(__global const T *q, __global const T *k, __global const T *v, __global T *y, __global const T *m,\n"
    "          int sq, int sk, int d, int dv, int sqs, int ldq, int tk, int sks, int ldk, int tv, int svs, int ldv,\n"
    "          int sys, int ldy, int h, int mb, int mh, int mi, int mj, int guard, float alpha, float alpha2,\n"
    "          int rpg, int has_mask, __local float4 *qs4, __local float4 *p4, __local float4 *t4) {\n"
    "  __local float red[WG];\n"
    "  __local float stat[2 * MAX_ROWS];\n"
    "  __local float *qs = (__local float *)qs4, *p = (__local float *)p4, *t = (__local float *)t4;\n"
    "  const int b = get_group_id(1), r0 = get_group_id(0) * rpg, tid = get_local_id(0);\n"
    "  const int rows = min(rpg, sq - r0);\n"
    /* rows of the features and of the scores padded to fours (zeros), read as float4 */
    "  const int dq = (d + 3) & ~3, skp = (sk + 3) & ~3, kp = dq + 4;\n"
    "  q += b * sqs + r0 * ldq;\n"
    "  k += b * sks;\n"
    "  v += b * svs;\n"
    "  y += b * sys + r0 * ldy;\n"
    "  const int mo = has_mask ? (b / h) * mb + (b % h) * mh + r0 * mi : 0;\n"
    /* the group's query rows; rows past the end and the padding are zeros */
    "  for (int e = tid; e < rpg * dq; e += WG) {\n"
    "    const int i = e / dq, c = e - i * dq;\n"
    "    qs[e] = i < rows && c < d ? LD(q, i * ldq + c) : 0.0f;\n"
    "  }\n"
    /* scores, KT keys at a time through a local tile (a key a row of dq + 4 floats: a quarter-warp's float4 reads
     * fall in different banks); a work-item a key of the tile and up to RPT query rows, four features a step */
    "  const int jj = tid % KT, i0 = tid / KT;\n"
    "  for (int j0 = 0; j0 < sk; j0 += KT) {\n"
    "    const int kn = min(KT, sk - j0);\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (tk) for (int e = tid; e < kn * dq; e += WG) {\n"
    "      const int j = e / dq, c = e - j * dq;\n"
    "      t[j * kp + c] = c < d ? LD(k, (j0 + j) * ldk + c) : 0.0f;\n"
    "    } else for (int e = tid; e < kn * dq; e += WG) {\n"
    "      const int c = e / kn, j = e - c * kn;\n"
    "      t[j * kp + c] = c < d ? LD(k, c * ldk + j0 + j) : 0.0f;\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (jj < kn) {\n"
    "      float acc[RPT];\n"
    "\n#pragma unroll\n"
    "      for (int n = 0; n < RPT; n++) acc[n] = 0.0f;\n"
    "      const __local float4 *kt = t4 + jj * (kp / 4);\n"
    "      for (int c4 = 0; c4 < dq / 4; c4++) {\n"
    "        const float4 kv = kt[c4];\n"
    "\n#pragma unroll\n"
    "        for (int n = 0; n < RPT; n++)\n"
    "          if (i0 + n * (WG / KT) < rpg) {\n"
    "            const float4 qv = qs4[(i0 + n * (WG / KT)) * (dq / 4) + c4];\n"
    "            acc[n] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;\n"
    "          }\n"
    "      }\n"
    "\n#pragma unroll\n"
    "      for (int n = 0; n < RPT; n++) {\n"
    "        const int i = i0 + n * (WG / KT);\n"
    "        if (i < rows) {\n"
    "          float s = alpha * acc[n];\n"
    "          if (has_mask) s += LD(m, mo + i * mi + (j0 + jj) * mj);\n"
    "          p[i * skp + j0 + jj] = s;\n"
    "        }\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    /* softmax: WG / rpg work-items a row; a NaN anywhere in a row makes it NaN, as the node's kernels do */
    "  const int lanes = WG / rpg, i = tid / lanes, l = tid % lanes;\n"
    "  __local float *pi = p + i * skp;\n"
    "  float mx = -INFINITY;\n"
    "  if (i < rows) for (int j = l; j < sk; j += lanes) mx = NAN_OR(pi[j], NAN_OR(mx, fmax(mx, pi[j])));\n"
    "  red[tid] = mx;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  if (l == 0 && i < rows) {\n"
    "    for (int u = 1; u < lanes; u++) mx = NAN_OR(red[tid + u], NAN_OR(mx, fmax(mx, red[tid + u])));\n"
    "    stat[i] = mx;\n"
    "  }\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  float sum = 0.0f;\n"
    "  if (i < rows) {\n"
    "    mx = stat[i];\n"
    "    for (int j = l; j < sk; j += lanes) { const float x = exp(pi[j] - mx); pi[j] = x; sum += x; }\n"
    "  }\n"
    "  red[tid] = sum;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  if (l == 0 && i < rows) {\n"
    "    for (int u = 1; u < lanes; u++) sum += red[tid + u];\n"
    "    stat[MAX_ROWS + i] = sum;\n"
    "  }\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    /* the probabilities; the padding past the keys, and rows past the end, zeros */
    "  if (i < rpg) {\n"
    "    sum = i < rows ? stat[MAX_ROWS + i] : 1.0f;\n"
    "    for (int j = l; j < skp; j += lanes) {\n"
    "      const float x = j < sk && i < rows ? pi[j] / sum : 0.0f;\n"
    "      pi[j] = guard && isnan(x) ? 0.0f : x;\n"
    "    }\n"
    "  }\n"
    /* the context, KT values at a time through a local tile (a value a row of dv floats, rows past the keys
     * zeros): a work-item a column and up to NOUT rows (WG / dv apart), four keys a step */
    "  const int rs = WG / dv, oc = tid % dv, or0 = tid / dv;\n"
    "  float out[NOUT];\n"
    "\n#pragma unroll\n"
    "  for (int n = 0; n < NOUT; n++) out[n] = 0.0f;\n"
    "  for (int j0 = 0; j0 < sk; j0 += KT) {\n"
    "    const int kn = min(KT, sk - j0), kn4 = (kn + 3) & ~3;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (tv) for (int e = tid; e < kn4 * dv; e += WG) {\n"
    "      const int c = e / kn4, j = e - c * kn4;\n"
    "      t[j * dv + c] = j < kn ? LD(v, c * ldv + j0 + j) : 0.0f;\n"
    "    } else for (int e = tid; e < kn4 * dv; e += WG) {\n"
    "      const int j = e / dv, c = e - j * dv;\n"
    "      t[j * dv + c] = j < kn ? LD(v, (j0 + j) * ldv + c) : 0.0f;\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (or0 < rs) for (int j = 0; j < kn4; j += 4) {\n"
    "      const float4 vv = (float4)(t[j * dv + oc], t[(j + 1) * dv + oc], t[(j + 2) * dv + oc], t[(j + 3) * dv + oc]);\n"
    "\n#pragma unroll\n"
    "      for (int n = 0; n < NOUT; n++)\n"
    "        if (or0 + n * rs < rpg) {\n"
    "          const float4 pv = p4[((or0 + n * rs) * skp + j0 + j) / 4];\n"
    "          out[n] += pv.x * vv.x + pv.y * vv.y + pv.z * vv.z + pv.w * vv.w;\n"
    "        }\n"
    "    }\n"
    "  }\n"
    "  if (or0 < rs) {\n"
    "\n#pragma unroll\n"
    "    for (int n = 0; n < NOUT; n++)\n"
    "      if (or0 + n * rs < rows) ST(y, (or0 + n * rs) * ldy + oc, alpha2 * out[n]);\n"
    "  }\n"
    "}\n";

static const char k_f32_defs[] =
    "#define T float\n#define NAME flagos_attention_f32\n#define LD(p, i) ((p)[i])\n#define ST(p, i, x) ((p)[i] = (x))\n";
static const char k_f16_defs[] =
    "#define T half\n#define NAME flagos_attention_f16\n#define LD(p, i) vload_half((i), (p))\n"
    "#define ST(p, i, x) vstore_half_rte((x), (i), (p))\n";
static const char k_undefs[] = "#undef T\n#undef NAME\n#undef LD\n#undef ST\n#undef NAN_OR\n";

/* Per device: the program and its two kernels, made at the first call (under the lock). */
struct ocl_attn_dev {
  cl_program prog;
  cl_kernel k[2]; /* f32, f16 */
  bool failed;    /* the program does not build here: calls are declined */
  int64_t local_bytes; /* local memory the kernel's rows, scores and tile may take on the device */
};

static pthread_mutex_t g_attn_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const k_names[2] = {"flagos_attention_f32", "flagos_attention_f16"};

static flagos_status_t attn_kernels(ocl_state_t *s, ocl_device_t *d) {
  if (d->attn && (d->attn->prog || d->attn->failed)) return NULL;
  if (!d->attn && !(d->attn = calloc(1, sizeof(*d->attn))))
    return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  char head[128];
  int nh = snprintf(head, sizeof head, "#define WG %d\n#define KT %d\n#define MAX_ROWS %d\n#define RPT %d\n#define NOUT %d\n",
                    AT_WG, AT_KT, AT_MAX_ROWS, AT_MAX_ROWS / (AT_WG / AT_KT), AT_NOUT);
  size_t nb = strlen(k_attention_src), n32 = strlen(k_f32_defs), n16 = strlen(k_f16_defs), nu = strlen(k_undefs);
  size_t len = (size_t)nh + n32 + nb + nu + n16 + nb;
  char *src = malloc(len + 1);
  if (!src) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  char *w = src;
  memcpy(w, head, (size_t)nh);
  w += nh;
  const char *parts[5] = {k_f32_defs, k_attention_src, k_undefs, k_f16_defs, k_attention_src};
  size_t lens[5] = {n32, nb, nu, n16, nb};
  for (int i = 0; i < 5; i++) {
    memcpy(w, parts[i], lens[i]);
    w += lens[i];
  }
  *w = 0;
  bool refused = false;
  flagos_status_t err = ocl_program_build_opt(s, d, src, len, &d->attn->prog, &refused);
  free(src);
  if (err) return err;
  if (refused) {
    d->attn->failed = true;
    return NULL;
  }
  for (int i = 0; i < 2; i++) {
    cl_int e;
    d->attn->k[i] = s->cl.clCreateKernel(d->attn->prog, k_names[i], &e);
    if (!d->attn->k[i]) return ocl_fail(s, e, "creating the attention kernel");
    size_t wg = 0;
    s->cl.clGetKernelWorkGroupInfo(d->attn->k[i], d->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    if (wg < AT_WG) d->attn->failed = true; /* the device cannot run a group of AT_WG with this kernel */
  }
  /* the device's local memory (at most AT_LOCAL_MAX) less the kernel's own arrays */
  cl_ulong lm = 0;
  s->cl.clGetDeviceInfo(d->id, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lm, &lm, NULL);
  if (lm > AT_LOCAL_MAX) lm = AT_LOCAL_MAX;
  d->attn->local_bytes = (int64_t)lm - (AT_WG + 2 * AT_MAX_ROWS) * 4 - 256;
  return NULL;
}

void ocl_attention_release(ocl_state_t *s, ocl_device_t *d) {
  if (!d->attn) return;
  for (int i = 0; i < 2; i++)
    if (d->attn->k[i]) s->cl.clReleaseKernel(d->attn->k[i]);
  if (d->attn->prog) s->cl.clReleaseProgram(d->attn->prog);
  free(d->attn);
  d->attn = NULL;
}

/* Off unless FLAGOS_OPENCL_ATTENTION=1: on an H100 through NVIDIA's OpenCL this
 * kernel takes about 31 us a call (event time, BERT-base's 12 heads of 128 x 64)
 * and BERT-base f32 from 1.81 to 1.94 ms a run, f16 from 1.26 to 1.34; the
 * three kernels it replaces do their work in less, and the two launches it
 * saves do not make up the difference (bench/gpu/results-h100-2026-11-24-s21.md,
 * which has the kernel's phases measured apart). It stays opt-in until it is
 * faster than what it replaces. */
/* FLAGOS_OPENCL_ATTENTION_ROWS: the rows a group takes at most, a power of two up to AT_MAX_ROWS */
static int rows_cap(void) {
  const char *e = getenv("FLAGOS_OPENCL_ATTENTION_ROWS");
  int r = e ? atoi(e) : AT_ROWS;
  if (r < 1 || r > AT_MAX_ROWS || (r & (r - 1))) r = AT_ROWS;
  return r;
}

static bool env_off(void) {
  const char *e = getenv("FLAGOS_OPENCL_ATTENTION");
  return !(e && strcmp(e, "1") == 0);
}

/* A call checked and made ready to launch: its device, kernel (f32 or f16),
 * arguments and grid. */
typedef struct {
  ocl_device_t *d;
  int f16, rows;
  cl_mem mem[5];
  cl_int ints[A_NINTS - 1]; /* all but the batch, the grid's second axis */
  float alpha, alpha2;
  cl_int has_mask;
  size_t local_bytes[3]; /* the rows, their scores, the tile */
  size_t global[2];
} attn_launch_t;

/* Checks the call and fills *L; *empty where the output has no elements (nothing to queue). */
static flagos_status_t attn_prepare(ocl_state_t *s, const flagos_libcall_t *call, attn_launch_t *L, bool *empty) {
  *empty = false;
  if ((call->n_bufs != 4 && call->n_bufs != 5) || call->n_ints != A_NINTS || call->n_floats != 2)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: attention takes 4 or 5 buffers, %d ints, 2 floats",
                   A_NINTS);
  int32_t dt = call->buf_dtypes[0];
  for (int i = 0; i < call->n_bufs; i++)
    if (!call->bufs[i] || call->buf_dtypes[i] != dt)
      return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: attention's buffers must share one dtype");
  if (dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT16)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: no attention for this dtype");
  const int64_t *x = call->ints;
  for (int i = 0; i < A_NINTS; i++)
    if (x[i] < 0) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: attention int %d is negative", i);
  if (x[A_BATCH] == 0 || x[A_SQ] == 0 || x[A_DV] == 0) {
    *empty = true;
    return NULL;
  }
  if (x[A_SK] == 0 || x[A_D] == 0 || x[A_H] == 0 || x[A_BATCH] > 65535)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention without keys or features, or past 65535 batches");
  for (int i = 0; i < A_NINTS; i++)
    if (x[i] > INT32_MAX) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention int %d past 32 bits", i);
  if (x[A_DV] > AT_WG)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention with more than %d value features", AT_WG);
  const ocl_buf_t *const *b = (const ocl_buf_t *const *)call->bufs;
  flagos_status_t err = ocl_device_ready(s, b[0]->dev, &L->d);
  if (err) return err;
  size_t esz = dt == FLAGOS_FLOAT16 ? 2 : 4;
  for (int i = 0; i < call->n_bufs; i++) {
    if (b[i]->dev != b[0]->dev)
      return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: attention's buffers are on different devices");
    if (b[i]->size / esz > INT32_MAX)
      return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention buffer %d has 2^31 elements or more", i);
  }
  pthread_mutex_lock(&g_attn_lock);
  err = attn_kernels(s, L->d);
  bool failed = !err && L->d->attn->failed;
  int64_t budget = err ? 0 : L->d->attn->local_bytes;
  pthread_mutex_unlock(&g_attn_lock);
  if (err) return err;
  if (failed) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: the attention kernel does not build here");
  /* the rows of a group and their scores in local memory (rows of four floats), and a tile of keys or values */
  int64_t dq = (x[A_D] + 3) & ~3, skp = (x[A_SK] + 3) & ~3, per_row = (dq + skp) * 4;
  int64_t tile = AT_KT * (dq + 4 > x[A_DV] ? dq + 4 : x[A_DV]) * 4, rs = AT_WG / x[A_DV];
  int rows = rows_cap();
  while (rows > 1 && (rows * per_row + tile > budget || rows > AT_NOUT * rs)) rows /= 2;
  if (rows * per_row + tile > budget || rows > AT_NOUT * rs)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention's rows do not fit local memory");
  L->f16 = dt == FLAGOS_FLOAT16;
  L->rows = rows;
  for (int i = 0; i < 5; i++) L->mem[i] = b[i < call->n_bufs ? i : 0]->mem; /* no mask: any buffer, unread */
  for (int i = 1; i < A_NINTS; i++) L->ints[i - 1] = (cl_int)x[i];
  L->alpha = (float)call->floats[0];
  L->alpha2 = (float)call->floats[1];
  L->has_mask = call->n_bufs == 5;
  L->local_bytes[0] = sizeof(float) * (size_t)(rows * dq);
  L->local_bytes[1] = sizeof(float) * (size_t)(rows * skp);
  L->local_bytes[2] = (size_t)tile;
  L->global[0] = (size_t)((x[A_SQ] + rows - 1) / rows) * AT_WG;
  L->global[1] = (size_t)x[A_BATCH];
  return NULL;
}

static cl_int attn_set_args(ocl_state_t *s, cl_kernel k, const attn_launch_t *L) {
  cl_int e = CL_SUCCESS, rpg = L->rows;
  cl_uint arg = 0;
  for (int i = 0; i < 5 && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, arg++, sizeof(cl_mem), &L->mem[i]);
  for (int i = 0; i < A_NINTS - 1 && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, arg++, sizeof(cl_int), &L->ints[i]);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, sizeof L->alpha, &L->alpha);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, sizeof L->alpha2, &L->alpha2);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, sizeof rpg, &rpg);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(k, arg++, sizeof L->has_mask, &L->has_mask);
  for (int i = 0; i < 3 && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, arg++, L->local_bytes[i], NULL);
  return e;
}

static void attn_trace(const flagos_libcall_t *call, const attn_launch_t *L, const char *tail) {
  const int64_t *x = call->ints;
  ocl_blas_trace("flagos trace: opencl attention: %s batch %lld Sq %lld Sk %lld D %lld Dv %lld%s%s, %d rows a group on '%s'%s\n",
                 L->f16 ? "f16" : "f32", (long long)x[A_BATCH], (long long)x[A_SQ], (long long)x[A_SK],
                 (long long)x[A_D], (long long)x[A_DV], x[A_TK] ? " K^T" : "", x[A_TV] ? " V^T" : "", L->rows,
                 L->d->name, tail);
}

flagos_status_t ocl_attention_call(ocl_state_t *s, flagos_bstream_t st, const flagos_libcall_t *call) {
  if (env_off()) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: attention calls off (FLAGOS_OPENCL_ATTENTION=1 turns them on)");
  attn_launch_t L;
  bool empty;
  flagos_status_t err = attn_prepare(s, call, &L, &empty);
  if (err || empty) return err;
  cl_command_queue q = ocl_queue(s, st, ((const ocl_buf_t *)call->bufs[0])->dev);
  /* traced on a profiling queue (FLAGOS_OPENCL_PROFILING=1): the kernel's time on the device, waited for */
  bool timed = L.d->profiling && getenv("FLAGOS_TRACE") && q == L.d->queue;
  cl_event ev = NULL;
  size_t local[2] = {AT_WG, 1};
  pthread_mutex_lock(&g_attn_lock); /* the device's kernel object: its arguments are this call's until queued */
  cl_kernel k = L.d->attn->k[L.f16];
  cl_int e = attn_set_args(s, k, &L);
  if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, k, 2, NULL, L.global, local, 0, NULL, timed ? &ev : NULL);
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
  cl_kernel k = s->cl.clCreateKernel(L.d->attn->prog, k_names[L.f16], &e);
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
