/* The opencl plugin's "conv" library call (docs/kernel-ir.md) through our own
 * kernels, on the devices where they take the gemm call (ocl_gemm_wanted: GPUs,
 * or FLAGOS_OPENCL_GEMM=1).
 *
 * Without the call, a convolution with a bias is three launches: the im2col
 * kernel, a kernel that writes the bias into all of Y, and the gemm call that
 * adds the product to it (beta 1), which reads Y back. Here it is the im2col
 * kernel (none for a pointwise convolution: X already is the patch matrix)
 * and one product whose epilogue adds the bias by row (flags & 16 in
 * ocl_gemm_src.c): a launch less per convolution, and Y written once. At
 * batch 1 on NVIDIA's OpenCL each launch costs the host ~4.4 us; at batch 64
 * ResNet-50's outputs are 2.7 GB, which the bias pass wrote and the product
 * read again.
 *
 * The patch matrix of every image, N x (C kh kw) x (OH OW), goes to a
 * per-device workspace that grows to the largest convolution's; its uses are
 * kept apart by the default queue's order. A convolution queued on another
 * stream gets a buffer of its own, released once queued (OpenCL frees it
 * after the commands that use it). Grouped convolutions (group > 1) are
 * declined: the generic kernels run them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

/* One work-item per element of the patch matrix col[n][c][a][e][o] (a, e:
 * the kernel's row and column; o = i*OW + j, the output's position, in rows
 * of OP >= OH*OW elements), copied as raw bits of T (uint, ushort or ulong:
 * the element's size), zero in the padding and past OH*OW. */
static const char k_im2col_src[] =
    "__kernel void flagos_im2col(__global const T *restrict X, __global T *restrict col, int C, int H, int W,\n"
    "                            int OH, int OW, int KH, int KW, int ph, int pw, int sh, int sw, int dh, int dw,\n"
    "                            int OP, long total) {\n"
    "  long t = get_global_id(0);\n"
    "  if (t >= total) return;\n"
    "  const long at = t;\n"
    "  const int o = t % OP, i = o / OW, j = o % OW;\n"
    "  t /= OP;\n"
    "  const int e = t % KW;\n"
    "  t /= KW;\n"
    "  const int a = t % KH;\n"
    "  t /= KH; /* n * C + c */\n"
    "  const long y = (long)i * sh - ph + (long)a * dh, x = (long)j * sw - pw + (long)e * dw;\n"
    "  col[at] = o < OH * OW && y >= 0 && y < H && x >= 0 && x < W ? X[(t * H + y) * W + x] : (T)0;\n"
    "}\n";

struct ocl_conv_dev {
  pthread_mutex_t lock; /* the im2col kernels' arguments, the workspace, and the order of their uses */
  cl_program prog[3];   /* by element size: 2, 4, 8 bytes */
  cl_kernel im2col[3];
  bool failed[3];       /* could not be built or made: the node's kernels take such convolutions */
  cl_mem ws;
  size_t ws_size;
};

static pthread_mutex_t g_conv_new_lock = PTHREAD_MUTEX_INITIALIZER;

static ocl_conv_dev_t *conv_dev(ocl_device_t *d) {
  pthread_mutex_lock(&g_conv_new_lock);
  if (!d->conv && (d->conv = calloc(1, sizeof(*d->conv)))) pthread_mutex_init(&d->conv->lock, NULL);
  ocl_conv_dev_t *c = d->conv;
  pthread_mutex_unlock(&g_conv_new_lock);
  return c;
}

/* The program and kernel slot for elements of es bytes. */
static int slot(size_t es) { return es == 2 ? 0 : es == 4 ? 1 : 2; }

/* The im2col kernel for elements of es bytes (under c->lock), or NULL where it
 * cannot be had: the build's error is returned once (its log says why), after
 * which such convolutions go to the node's kernels without trying again. */
static flagos_status_t im2col_kernel(ocl_state_t *s, ocl_device_t *d, ocl_conv_dev_t *c, size_t es, cl_kernel *out) {
  int i = slot(es);
  *out = NULL;
  if (c->failed[i]) return NULL;
  if (!c->im2col[i]) {
    c->failed[i] = true; /* until it is made */
    static const char *const types[3] = {"#define T ushort\n", "#define T uint\n", "#define T ulong\n"};
    size_t nh = strlen(types[i]), nb = strlen(k_im2col_src);
    char *src = malloc(nh + nb + 1);
    if (!src) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
    memcpy(src, types[i], nh);
    memcpy(src + nh, k_im2col_src, nb + 1);
    flagos_status_t err = ocl_program_build(s, d, src, nh + nb, &c->prog[i]);
    free(src);
    if (err) return err;
    cl_int e;
    c->im2col[i] = s->cl.clCreateKernel(c->prog[i], "flagos_im2col", &e);
    if (!c->im2col[i]) return ocl_fail(s, e, "creating the im2col kernel");
    c->failed[i] = false;
  }
  *out = c->im2col[i];
  return NULL;
}

static int64_t es_of(int32_t dt) { return dt == FLAGOS_FLOAT64 ? 8 : dt == FLAGOS_FLOAT32 ? 4 : 2; }

static bool pointwise(const ocl_conv_args_t *a) {
  return a->kh == 1 && a->kw == 1 && a->sh == 1 && a->sw == 1 && a->ph == 0 && a->pw == 0 && a->oh == a->h &&
         a->ow == a->w;
}

static flagos_status_t run(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, const ocl_conv_args_t *a,
                           ocl_trace_fn *trace, bool *taken, ocl_gemm_plan_t *plan) {
  int64_t K = a->c * a->kh * a->kw, O = a->oh * a->ow, es = es_of(a->dtype);
  ocl_gemm_args_t ga = {.dtype = a->dtype, .A = a->W, .B = a->X, .Y = a->Y, .bias = a->bias, .batch = a->n,
                        .M = a->m, .N = O, .K = K, .sa = 0, .sb = K * O, .sy = a->m * O, .bias_rows = true,
                        .alpha = 1, .beta = 0, .act = a->act};
  /* f16 on tensor cores needs B's rows on 16 bytes: where OH*OW is not a
   * multiple of 8 (ResNet-50's 14x14 and 7x7 stages), the patch rows are
   * padded to one (a pointwise convolution then takes the im2col too: a copy,
   * against the float kernels' far slower product) */
  int64_t op = es == 2 && K % 8 == 0 && O % 8 != 0 && ocl_gemm_tensor_cores(s, d) ? (O + 7) / 8 * 8 : O;
  if (pointwise(a) && op == O) return ocl_gemm_run(s, d, q, &ga, trace, taken, plan);
  ocl_conv_dev_t *c = conv_dev(d);
  if (!c) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  /* the kernel's int arguments (the patch matrix's elements are counted in
   * long), and the product's limits (ocl_gemm_run's: 32-bit indices within a
   * matrix, 65535 batches), checked before any workspace is made for it */
  const int64_t lim = INT32_MAX, plim = (int64_t)1 << 30;
  if (a->c > lim || a->h > lim || a->w > lim || op > lim || K > lim || a->ph > lim || a->pw > lim || a->sh > lim ||
      a->sw > lim || a->dh > lim || a->dw > lim || a->n > 65535 || a->m > plim / K || K > plim / op ||
      a->m > plim / O)
    return NULL;
  size_t bytes = (size_t)a->n * (size_t)K * (size_t)op * (size_t)es;
  pthread_mutex_lock(&c->lock);
  cl_kernel k = NULL;
  flagos_status_t err = im2col_kernel(s, d, c, (size_t)es, &k);
  if (err || !k) {
    pthread_mutex_unlock(&c->lock);
    return err;
  }
  /* the shared workspace on the default queue; else a buffer of this call's (or plan's) */
  bool shared = q == d->queue;
  cl_mem col = NULL;
  cl_int e = CL_SUCCESS;
  if (shared && c->ws_size < bytes) {
    if (c->ws) s->cl.clReleaseMemObject(c->ws); /* freed by OpenCL once the commands queued on it are done */
    c->ws = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
    c->ws_size = c->ws ? bytes : 0;
  }
  if (shared) col = c->ws;
  else col = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
  if (!col) {
    /* no room for the patch matrix: the node's own kernels */
    pthread_mutex_unlock(&c->lock);
    if (trace) trace("flagos trace: opencl conv: no room for a %zu-byte patch matrix on '%s'\n", bytes, d->name);
    return NULL;
  }
  int iv[14] = {(int)a->c, (int)a->h, (int)a->w, (int)a->oh, (int)a->ow, (int)a->kh, (int)a->kw,
                (int)a->ph, (int)a->pw, (int)a->sh, (int)a->sw, (int)a->dh, (int)a->dw, (int)op};
  cl_long total = (cl_long)a->n * K * op;
  size_t local = d->max_wg && d->max_wg < 256 ? d->max_wg : 256, global = ((size_t)total + local - 1) / local * local;
  cl_kernel use = k;
  if (plan) {
    use = s->cl.clCreateKernel(c->prog[slot((size_t)es)], "flagos_im2col", &e);
    if (!use) {
      pthread_mutex_unlock(&c->lock);
      return ocl_fail(s, e, "making the im2col kernel's plan");
    }
  }
  e = s->cl.clSetKernelArg(use, 0, sizeof(cl_mem), &a->X);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(use, 1, sizeof(cl_mem), &col);
  for (cl_uint i = 0; i < 14 && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(use, 2 + i, sizeof(int), &iv[i]);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(use, 16, sizeof total, &total);
  if (plan && e == CL_SUCCESS) {
    int i0 = plan->n;
    if (shared) plan->lock[0] = &c->lock; /* replays keep the workspace's uses apart as calls do */
    plan->k[i0] = use;
    plan->dims[i0] = 1;
    plan->global[i0][0] = global;
    plan->local[i0][0] = local;
    plan->n = i0 + 1;
    cl_mem held[2] = {a->X, col};
    for (int i = 0; i < 2; i++) {
      s->cl.clRetainMemObject(held[i]);
      plan->held[plan->n_held++] = held[i];
    }
    use = NULL;
  } else if (e == CL_SUCCESS) {
    e = s->cl.clEnqueueNDRangeKernel(q, use, 1, NULL, &global, &local, 0, NULL, NULL);
  }
  if (use && use != k) s->cl.clReleaseKernel(use);
  if (e != CL_SUCCESS) {
    if (!shared) s->cl.clReleaseMemObject(col);
    pthread_mutex_unlock(&c->lock);
    return ocl_fail(s, e, plan ? "making the im2col kernel's plan" : "queuing the im2col kernel");
  }
  /* the product, still under the lock: no other convolution's patches may reach the workspace before it reads them */
  ga.B = col;
  ga.ldb = op;
  ga.sb = K * op;
  err = ocl_gemm_run(s, d, q, &ga, trace, taken, plan);
  if (!shared) s->cl.clReleaseMemObject(col);
  pthread_mutex_unlock(&c->lock);
  return err;
}

flagos_status_t ocl_conv_run(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, const ocl_conv_args_t *a,
                             ocl_trace_fn *trace, bool *taken, ocl_gemm_plan_t *plan) {
  *taken = false;
  flagos_status_t err = run(s, d, q, a, trace, taken, plan);
  /* Not taken (shapes past the product's 32-bit indices, a kernel the
   * device cannot run, no room for the patches): the node's own kernels
   * compute Y (patches made here were made for nothing). A plan made so far
   * is the caller's to release. */
  if (!err && *taken && trace)
    trace("flagos trace: opencl conv %s: %s N %lld C %lld %lldx%lld -> M %lld %lldx%lld, kernel %lldx%lld%s%s%s on "
          "'%s'\n",
          plan ? "planned for replays" : "by flagos",
          a->dtype == FLAGOS_FLOAT64 ? "f64" : a->dtype == FLAGOS_FLOAT32 ? "f32" : "f16", (long long)a->n,
          (long long)a->c, (long long)a->h, (long long)a->w, (long long)a->m, (long long)a->oh, (long long)a->ow,
          (long long)a->kh, (long long)a->kw, a->bias ? ", bias" : "", pointwise(a) ? ", pointwise" : "",
          a->act == 1 ? ", gelu" : a->act == 2 ? ", gelu-tanh" : a->act == 3 ? ", relu" : "",
          d->name);
  return err;
}

/* True when a product of n extents, times es bytes, fits in `size` bytes. */
static bool fits(size_t size, const int64_t *ext, int n, int64_t es) {
  int64_t t = es;
  for (int i = 0; i < n; i++)
    if (ext[i] < 0 || __builtin_mul_overflow(t, ext[i], &t)) return false;
  return (uint64_t)t <= (uint64_t)size;
}

flagos_status_t ocl_conv_call(ocl_state_t *s, flagos_bstream_t st, const flagos_libcall_t *c, ocl_conv_args_t *took) {
  took->n = -1;
  if ((c->n_bufs != 3 && c->n_bufs != 4) || (c->n_ints != 16 && c->n_ints != 17))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: conv takes 3 or 4 buffers and 16 or 17 ints (got %d, %d)", c->n_bufs, c->n_ints);
  const ocl_buf_t *X = c->bufs[0], *Wt = c->bufs[1], *B = c->n_bufs == 4 ? c->bufs[2] : NULL,
                  *Y = c->bufs[c->n_bufs - 1];
  if (!X || !Wt || !Y || (c->n_bufs == 4 && !B))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: conv with a NULL buffer");
  int dev = st ? st->dev : Y->dev;
  if (dev < 0 || dev >= s->n_dev || X->dev != dev || Wt->dev != dev || Y->dev != dev || (B && B->dev != dev))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: conv on buffers of other devices");
  ocl_device_t *d = &s->dev[dev];
  int32_t dt = c->buf_dtypes[0];
  const int64_t *v = c->ints;
  ocl_conv_args_t a = {.dtype = dt, .X = X->mem, .W = Wt->mem, .bias = B ? B->mem : NULL, .Y = Y->mem,
                       .n = v[0], .c = v[1], .h = v[2], .w = v[3], .m = v[4], .oh = v[5], .ow = v[6], .kh = v[7],
                       .kw = v[8], .ph = v[9], .pw = v[10], .sh = v[11], .sw = v[12], .dh = v[13], .dw = v[14],
                       .act = c->n_ints == 17 ? (int)v[16] : 0};
  if (c->n_ints == 17 && (v[16] < 0 || v[16] > 3))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: conv with activation %lld (0 to 3)",
                   (long long)v[16]);
  if (a.act && !ocl_activation_on())
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: conv with an activation is off (FLAGOS_OPENCL_ACTIVATION=0)");
  if (!ocl_gemm_wanted(d, dt) || (dt == FLAGOS_FLOAT64 && !d->fp64))
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: conv on '%s' is left to the kernels", d->name);
  for (int i = 1; i < c->n_bufs; i++)
    if (c->buf_dtypes[i] != dt)
      return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: conv on mixed dtypes is left to the kernels");
  if (v[15] != 1)
    return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: grouped conv (group %lld) is left to the kernels",
                   (long long)v[15]);
  for (int i = 0; i < 15; i++)
    if (v[i] < 0 || (v[i] == 0 && i != 9 && i != 10))
      return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED,
                     "opencl backend: conv with an empty or negative extent is left to the kernels");
  int64_t es = es_of(dt);
  int64_t xe[4] = {a.n, a.c, a.h, a.w}, we[4] = {a.m, a.c, a.kh, a.kw}, ye[4] = {a.n, a.m, a.oh, a.ow};
  if (!fits(X->size, xe, 4, es) || !fits(Wt->size, we, 4, es) || !fits(Y->size, ye, 4, es) ||
      (B && !fits(B->size, &a.m, 1, es)))
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: conv (N %lld, C %lld, M %lld) overruns its buffers",
                   (long long)a.n, (long long)a.c, (long long)a.m);
  bool taken = false;
  flagos_status_t err = ocl_conv_run(s, d, ocl_queue(s, st, dev), &a, ocl_blas_trace, &taken, NULL);
  if (err) return err;
  if (!taken) return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED, "opencl backend: conv left to the kernels on '%s'", d->name);
  *took = a;
  return NULL;
}

void ocl_conv_release(ocl_state_t *s, ocl_device_t *d) {
  ocl_conv_dev_t *c = d->conv;
  if (!c) return;
  for (int i = 0; i < 3; i++) {
    if (c->im2col[i]) s->cl.clReleaseKernel(c->im2col[i]);
    if (c->prog[i]) s->cl.clReleaseProgram(c->prog[i]);
  }
  if (c->ws) s->cl.clReleaseMemObject(c->ws);
  pthread_mutex_destroy(&c->lock);
  free(c);
  d->conv = NULL;
}
