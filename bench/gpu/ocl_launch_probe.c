/* What one kernel launch costs the host on an OpenCL platform (the thirteenth
 * session's measurements, bench/gpu/results-h100-2026-11-23-s13.md): kernels
 * that do nothing, with 0, 2, 4 and 8 buffer arguments, one kernel object or
 * 300 of them; the same buffer in every argument; a real add of 98304 floats,
 * its arguments set once or at every launch; 2 and 4 host threads queuing on
 * queues of their own; 282 launches queued behind a user event, then released.
 * Prints host microseconds a launch (the enqueue calls) and to the end of the
 * work (clFinish).
 *
 * Build and run: scripts/gpu/launch_probe.sh (the platform whose name holds
 * PLATFORM, default NVIDIA; the first GPU device, else any). */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { R = 3000, GATED = 282 };

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static const char *src =
    "__kernel void k0(int n) { if (get_global_id(0) == (1 << 30)) n++; }\n"
    "__kernel void k2(__global float *a, __global float *b, int n) {\n"
    "  if (get_global_id(0) == (1 << 30)) a[0] = b[0]; }\n"
    "__kernel void k4(__global float *a, __global float *b, __global float *c, __global float *d, int n) {\n"
    "  if (get_global_id(0) == (1 << 30)) a[0] = b[0] + c[0] + d[0]; }\n"
    "__kernel void k8(__global float *a, __global float *b, __global float *c, __global float *d,\n"
    "                 __global float *e, __global float *f, __global float *g, __global float *h, int n) {\n"
    "  if (get_global_id(0) == (1 << 30)) a[0] = b[0] + c[0] + d[0] + e[0] + f[0] + g[0] + h[0]; }\n"
    "__kernel void k4i(__global float *a, __global float *b, __global float *c, __global float *d,\n"
    "                  int i0, int i1, int i2, int i3, int i4, int i5, int i6, int i7, int i8, int i9, int i10,\n"
    "                  int i11, int i12, int i13, int i14) {\n"
    "  if (get_global_id(0) == (1 << 30)) a[i0] = b[i1] + c[i2] + d[i3 + i4 + i5 + i6 + i7 + i8 + i9 + i10 + i11 +\n"
    "                                              i12 + i13 + i14]; }\n"
    "__kernel void k1i(__global float *a, int i0, int i1, int i2, int i3, int i4, int i5, int i6, int i7, int i8,\n"
    "                  int i9, int i10, int i11, int i12, int i13, int i14) {\n"
    "  if (get_global_id(0) == (1 << 30)) a[i0] = a[i1] + a[i2] + a[i3 + i4 + i5 + i6 + i7 + i8 + i9 + i10 + i11 +\n"
    "                                              i12 + i13 + i14]; }\n"
    "__kernel void add(__global const float *a, __global const float *b, __global float *c, int n) {\n"
    "  int i = get_global_id(0); if (i < n) c[i] = a[i] + b[i]; }\n";

static cl_command_queue qs[4];
static cl_kernel ks[4];
static const size_t g_add = 98304, g_empty = 256 * 384, lsz = 256;

static void check(cl_int e, const char *what) {
  if (e != CL_SUCCESS) {
    fprintf(stderr, "ocl_launch_probe: %s failed (%d)\n", what, (int)e);
    exit(1);
  }
}

/* R launches of time() from n kernel objects: host and end-of-work us a launch */
static void timed(cl_command_queue q, cl_kernel *k, int n, size_t global, const char *what) {
  for (int i = 0; i < 200; i++) check(clEnqueueNDRangeKernel(q, k[i % n], 1, NULL, &global, &lsz, 0, NULL, NULL), "warm-up");
  clFinish(q);
  double t0 = now_us();
  for (int i = 0; i < R; i++) check(clEnqueueNDRangeKernel(q, k[i % n], 1, NULL, &global, &lsz, 0, NULL, NULL), "launch");
  double t1 = now_us();
  clFinish(q);
  double t2 = now_us();
  printf("%-44s host %5.2f us a launch, done %5.2f\n", what, (t1 - t0) / R, (t2 - t0) / R);
}

static void *queue_add(void *p) {
  int t = (int)(long)p;
  for (int i = 0; i < R; i++) clEnqueueNDRangeKernel(qs[t], ks[t], 1, NULL, &g_add, &lsz, 0, NULL, NULL);
  clFlush(qs[t]);
  return NULL;
}

int main(void) {
  const char *want = getenv("PLATFORM") ? getenv("PLATFORM") : "NVIDIA";
  cl_platform_id ps[16], p = NULL;
  cl_uint np = 0;
  check(clGetPlatformIDs(16, ps, &np), "clGetPlatformIDs");
  for (cl_uint i = 0; i < np && !p; i++) {
    char name[256] = "";
    clGetPlatformInfo(ps[i], CL_PLATFORM_NAME, sizeof name, name, NULL);
    if (strstr(name, want)) p = ps[i];
  }
  if (!p) {
    fprintf(stderr, "ocl_launch_probe: no platform named '%s'\n", want);
    return 1;
  }
  cl_device_id d;
  if (clGetDeviceIDs(p, CL_DEVICE_TYPE_GPU, 1, &d, NULL) != CL_SUCCESS) check(clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 1, &d, NULL), "devices");
  char dn[256] = "";
  clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof dn, dn, NULL);
  printf("device: %s\n", dn);
  cl_int e;
  cl_context ctx = clCreateContext(NULL, 1, &d, NULL, NULL, &e);
  check(e, "clCreateContext");
  for (int i = 0; i < 4; i++) {
    qs[i] = clCreateCommandQueue(ctx, d, 0, &e);
    check(e, "clCreateCommandQueue");
  }
  cl_program pr = clCreateProgramWithSource(ctx, 1, &src, NULL, &e);
  check(e, "clCreateProgramWithSource");
  check(clBuildProgram(pr, 1, &d, "", NULL, NULL), "clBuildProgram");
  cl_mem b[16];
  for (int i = 0; i < 16; i++) {
    b[i] = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 1 << 22, NULL, &e);
    check(e, "clCreateBuffer");
  }
  static const char *names[4] = {"k0", "k2", "k4", "k8"};
  static const int nbuf[4] = {0, 2, 4, 8};
  int n = 98304;
  static cl_kernel many[300];
  for (int t = 0; t < 4; t++)
    for (int distinct = 0; distinct < 2; distinct++) {
      int nk = distinct ? 300 : 1;
      for (int j = 0; j < nk; j++) {
        many[j] = clCreateKernel(pr, names[t], &e);
        check(e, "clCreateKernel");
        for (int a = 0; a < nbuf[t]; a++) clSetKernelArg(many[j], (cl_uint)a, sizeof(cl_mem), &b[(a + j) % 8]);
        clSetKernelArg(many[j], (cl_uint)nbuf[t], sizeof n, &n);
      }
      char what[96];
      snprintf(what, sizeof what, "empty, %d buffers, %d kernel object%s", nbuf[t], nk, nk > 1 ? "s" : "");
      timed(qs[0], many, nk, g_empty, what);
      for (int j = 0; j < nk; j++) clReleaseKernel(many[j]);
    }
  cl_kernel k4 = clCreateKernel(pr, "k4", &e);
  check(e, "clCreateKernel");
  for (int a = 0; a < 4; a++) clSetKernelArg(k4, (cl_uint)a, sizeof(cl_mem), &b[0]);
  clSetKernelArg(k4, 4, sizeof n, &n);
  timed(qs[0], &k4, 1, g_empty, "empty, one buffer in all 4 arguments");
  /* sixteenth session: sub-buffers of one buffer, int arguments, many live buffers */
  cl_mem sub[4];
  for (int a = 0; a < 4; a++) {
    cl_buffer_region rg = {(size_t)a << 20, 1 << 20};
    sub[a] = clCreateSubBuffer(b[8], CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &rg, &e);
    check(e, "clCreateSubBuffer");
    clSetKernelArg(k4, (cl_uint)a, sizeof(cl_mem), &sub[a]);
  }
  timed(qs[0], &k4, 1, g_empty, "empty, 4 sub-buffers of one buffer");
  cl_kernel k4i = clCreateKernel(pr, "k4i", &e), k1i = clCreateKernel(pr, "k1i", &e);
  check(e, "clCreateKernel");
  for (int a = 0; a < 4; a++) clSetKernelArg(k4i, (cl_uint)a, sizeof(cl_mem), &b[a]);
  for (int a = 0; a < 15; a++) clSetKernelArg(k4i, (cl_uint)(4 + a), sizeof n, &n);
  clSetKernelArg(k1i, 0, sizeof(cl_mem), &b[0]);
  for (int a = 0; a < 15; a++) clSetKernelArg(k1i, (cl_uint)(1 + a), sizeof n, &n);
  timed(qs[0], &k4i, 1, g_empty, "empty, 4 buffers and 15 ints");
  timed(qs[0], &k1i, 1, g_empty, "empty, 1 buffer and 15 ints");
  static cl_mem live[1000];
  for (int i = 0; i < 1000; i++) {
    live[i] = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 1 << 16, NULL, &e);
    check(e, "clCreateBuffer");
  }
  for (int a = 0; a < 4; a++) clSetKernelArg(k4, (cl_uint)a, sizeof(cl_mem), &b[a]);
  timed(qs[0], &k4, 1, g_empty, "empty, 4 buffers, 1000 more buffers live");
  for (int a = 0; a < 4; a++) clSetKernelArg(k4, (cl_uint)a, sizeof(cl_mem), &live[a * 250]);
  timed(qs[0], &k4, 1, g_empty, "empty, 4 of 1000 small buffers");
  for (int t = 0; t < 4; t++) {
    ks[t] = clCreateKernel(pr, "add", &e);
    check(e, "clCreateKernel");
    for (int a = 0; a < 3; a++) clSetKernelArg(ks[t], (cl_uint)a, sizeof(cl_mem), &b[t * 4 + a]);
    clSetKernelArg(ks[t], 3, sizeof n, &n);
  }
  timed(qs[0], ks, 1, g_add, "add of 98304 floats (3 buffers)");
  double t0 = now_us();
  for (int i = 0; i < R; i++) {
    for (int a = 0; a < 3; a++) clSetKernelArg(ks[0], (cl_uint)a, sizeof(cl_mem), &b[(a + i) % 8]);
    clEnqueueNDRangeKernel(qs[0], ks[0], 1, NULL, &g_add, &lsz, 0, NULL, NULL);
  }
  double t1 = now_us();
  clFinish(qs[0]);
  printf("%-44s host %5.2f us a launch, done %5.2f\n", "add, its arguments set at every launch", (t1 - t0) / R,
         (now_us() - t0) / R);
  for (int nt = 1; nt <= 4; nt *= 2) {
    pthread_t th[4];
    t0 = now_us();
    for (int t = 0; t < nt; t++) pthread_create(&th[t], NULL, queue_add, (void *)(long)t);
    for (int t = 0; t < nt; t++) pthread_join(th[t], NULL);
    t1 = now_us();
    for (int t = 0; t < nt; t++) clFinish(qs[t]);
    printf("add, %d thread%s on queues of their own: %5.2f us a launch (host, all threads), done %5.2f\n", nt,
           nt > 1 ? "s" : "", (t1 - t0) / (R * nt), (now_us() - t0) / (R * nt));
  }
  for (int rep = 0; rep < 3; rep++) {
    cl_event u = clCreateUserEvent(ctx, &e);
    check(e, "clCreateUserEvent");
    t0 = now_us();
    clEnqueueNDRangeKernel(qs[0], ks[0], 1, NULL, &g_add, &lsz, 1, &u, NULL);
    for (int i = 1; i < GATED; i++) clEnqueueNDRangeKernel(qs[0], ks[0], 1, NULL, &g_add, &lsz, 0, NULL, NULL);
    clFlush(qs[0]);
    t1 = now_us();
    clSetUserEventStatus(u, CL_COMPLETE);
    clFinish(qs[0]);
    double t2 = now_us();
    printf("add, %d behind a user event: queued in %.1f us, released to done %.1f us (%.2f a launch)\n", GATED, t1 - t0,
           t2 - t1, (t2 - t1) / GATED);
    clReleaseEvent(u);
  }
  for (int rep = 0; rep < 2; rep++) {
    t0 = now_us();
    for (int i = 0; i < GATED; i++) clEnqueueNDRangeKernel(qs[0], ks[0], 1, NULL, &g_add, &lsz, 0, NULL, NULL);
    t1 = now_us();
    clFinish(qs[0]);
    printf("add, %d in a row: queued in %.1f us, done at %.1f us\n", GATED, t1 - t0, now_us() - t0);
  }
  return 0;
}
