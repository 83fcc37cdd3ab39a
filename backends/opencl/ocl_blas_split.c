/* Split-K for the opencl plugin's CLBlast gemm (ocl_blas.c). CLBlast gives
 * each work-group one output tile and walks all of K, so a product with few
 * output tiles and a long K keeps most of a large GPU idle: on an H100 (132
 * compute units), BERT-base's 128x768x3072 (FFN out) has 96 tiles of 32x32 and
 * ResNet-50's 512x49x4608 (layer4 3x3 convolution) 32. Such a product runs as
 * S products over slices of K (one strided-batched CLBlast call into a
 * workspace of S partial results), then one kernel of ours sums them into Y.
 *
 * FLAGOS_OPENCL_SPLITK: unset = on GPUs, S chosen by split_factor; 0 = off;
 * N = S of N (where N divides K) on every device and product (tests, PoCL). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

/* Every use of a device's workspace and sum kernel is between the lock and
 * its release, with the product and the sum queued on the same in-order queue. */
static pthread_mutex_t g_split_lock = PTHREAD_MUTEX_INITIALIZER;

#define SPLIT_TILE 32     /* the output tile of CLBlast's direct kernel (WGD) on the parameters we give it */
#define SPLIT_MIN_K 128   /* shortest K slice worth a product of its own */
#define SPLIT_MAX 16

int ocl_blas_split_factor(const ocl_device_t *d, int64_t batch, int64_t M, int64_t N, int64_t K) {
  /* the sum kernel indexes Y with 32-bit unsigned integers */
  if (batch != 1 || M <= 0 || N <= 0 || K <= 0 || M > (int64_t)UINT32_MAX / N) return 1;
  const char *env = getenv("FLAGOS_OPENCL_SPLITK");
  if (env && *env) {
    long f = atol(env);
    return f > 1 && f <= 64 && K % f == 0 ? (int)f : 1;
  }
  if (!(d->type & CL_DEVICE_TYPE_GPU) || d->compute_units == 0) return 1;
  int64_t tiles = ((M + SPLIT_TILE - 1) / SPLIT_TILE) * ((N + SPLIT_TILE - 1) / SPLIT_TILE);
  /* Two groups per compute unit hide some of each group's memory latency. */
  int64_t want = 2 * (int64_t)d->compute_units;
  if (tiles >= want) return 1;
  int best = 1;
  for (int f = 2; f <= SPLIT_MAX; f *= 2) {
    if (K % f != 0 || K / f < SPLIT_MIN_K) break;
    best = f;
    if (tiles * f >= want) break;
  }
  return best;
}

static const char k_sum_src[] =
    "__kernel void flagos_splitk_sum(__global float *y, __global const float *w, uint mn, uint parts,\n"
    "                                float beta) {\n"
    "  uint i = get_global_id(0);\n"
    "  if (i >= mn) return;\n"
    "  float acc = 0.0f;\n"
    "  for (uint j = 0; j < parts; j++) acc += w[(size_t)j * mn + i];\n"
    /* beta 0 ignores Y's old contents (NaN included), as the gemm contract says */
    "  y[i] = beta == 0.0f ? acc : acc + beta * y[i];\n"
    "}\n";

/* The device's sum kernel, built at first use (under the lock). */
static cl_int sum_kernel(ocl_state_t *s, ocl_device_t *d) {
  if (d->split_sum) return CL_SUCCESS;
  const char *src = k_sum_src;
  cl_int e;
  cl_program p = s->cl.clCreateProgramWithSource(d->ctx, 1, &src, NULL, &e);
  if (!p) return e;
  e = s->cl.clBuildProgram(p, 1, &d->id, "", NULL, NULL);
  cl_kernel k = e == CL_SUCCESS ? s->cl.clCreateKernel(p, "flagos_splitk_sum", &e) : NULL;
  if (!k) {
    s->cl.clReleaseProgram(p);
    return e;
  }
  d->split_prog = p;
  d->split_sum = k;
  return CL_SUCCESS;
}

flagos_status_t ocl_blas_split_begin(ocl_state_t *s, ocl_device_t *d, size_t bytes, cl_mem *ws) {
  pthread_mutex_lock(&g_split_lock);
  cl_int e = sum_kernel(s, d);
  if (e != CL_SUCCESS) {
    pthread_mutex_unlock(&g_split_lock);
    return ocl_fail(s, e, "cannot build the split-K sum kernel");
  }
  if (d->split_ws_size < bytes) {
    /* The old workspace may still be read by queued commands: OpenCL frees it after them. */
    if (d->split_ws) s->cl.clReleaseMemObject(d->split_ws);
    d->split_ws_size = 0;
    d->split_ws = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (!d->split_ws) {
      pthread_mutex_unlock(&g_split_lock);
      return ocl_fail(s, e, "cannot allocate the split-K workspace");
    }
    d->split_ws_size = bytes;
  }
  *ws = d->split_ws;
  return NULL;
}

cl_int ocl_blas_split_sum(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, cl_mem y, size_t mn, int parts,
                          float beta) {
  cl_uint n = (cl_uint)mn, p = (cl_uint)parts;
  cl_int e = s->cl.clSetKernelArg(d->split_sum, 0, sizeof y, &y);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(d->split_sum, 1, sizeof d->split_ws, &d->split_ws);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(d->split_sum, 2, sizeof n, &n);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(d->split_sum, 3, sizeof p, &p);
  if (e == CL_SUCCESS) e = s->cl.clSetKernelArg(d->split_sum, 4, sizeof beta, &beta);
  size_t local = d->max_wg && d->max_wg < 256 ? d->max_wg : 256, global = (mn + local - 1) / local * local;
  if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, d->split_sum, 1, NULL, &global, &local, 0, NULL, NULL);
  return e;
}

void ocl_blas_split_end(void) { pthread_mutex_unlock(&g_split_lock); }

void ocl_blas_split_release(ocl_state_t *s, ocl_device_t *d) {
  if (d->split_sum) s->cl.clReleaseKernel(d->split_sum);
  if (d->split_prog) s->cl.clReleaseProgram(d->split_prog);
  if (d->split_ws) s->cl.clReleaseMemObject(d->split_ws);
  d->split_sum = NULL;
  d->split_prog = NULL;
  d->split_ws = NULL;
  d->split_ws_size = 0;
}
