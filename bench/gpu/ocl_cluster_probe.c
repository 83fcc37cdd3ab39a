/* Whether NVIDIA's OpenCL runs thread-block clusters (compute capability 9.0):
 * a kernel in OpenCL C reads its rank in the cluster and a value from a peer
 * group's local memory (PTX's mapa and ld.shared::cluster as inline
 * assembly); the program's PTX gets `.reqnctapercluster 1, 1, CL` on the
 * entry and is built again from it; the probe launches CL groups along the
 * grid's third dimension for each tile of the first two and checks that each
 * group read its peer's values (rank + 1 in the cluster). Without the
 * directive every group is a cluster of one and reads its own. Prints the
 * PTX's .version and .target, and for CL = 1, 2, 4, 8 (with and without
 * `.explicitcluster`) whether the build, the
 * launch and the values held, with the launch's time.
 *
 * Usage: ocl_cluster_probe [PLATFORM]  (default NVIDIA; its first GPU).
 * Build and run: scripts/gpu/launch_probe.sh. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_probe.h"

static const char *src =
    "__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void clu(__global uint *out, __global uint *ranks) {\n"
    "  __local uint s[256];\n"
    "  uint lid = get_local_id(0), rank, nrank, ra, v;\n"
    "  asm volatile(\"mov.u32 %0, %%cluster_ctarank;\" : \"=r\"(rank));\n"
    "  asm volatile(\"mov.u32 %0, %%cluster_nctarank;\" : \"=r\"(nrank));\n"
    "  uint gid = get_group_id(0) + get_num_groups(0) * (get_group_id(1) + get_num_groups(1) * get_group_id(2));\n"
    "  s[lid] = gid * 1000u + lid;\n"
    "  asm volatile(\"barrier.cluster.arrive.release.aligned;\\n\\tbarrier.cluster.wait.acquire.aligned;\" ::: "
    "\"memory\");\n"
    "  uint peer = (rank + 1) % nrank;\n"
    "  asm volatile(\"mapa.shared::cluster.u32 %0, %1, %2;\" : \"=r\"(ra) : \"r\"((uint)(size_t)&s[lid]), "
    "\"r\"(peer));\n"
    "  asm volatile(\"ld.shared::cluster.u32 %0, [%1];\" : \"=r\"(v) : \"r\"(ra) : \"memory\");\n"
    "  asm volatile(\"barrier.cluster.arrive.release.aligned;\\n\\tbarrier.cluster.wait.acquire.aligned;\" ::: "
    "\"memory\");\n"
    "  out[gid * 256 + lid] = v;\n"
    "  if (lid == 0) ranks[gid] = rank | nrank << 8;\n"
    "}\n";

static unsigned char *binary_of(cl_program p, size_t *n) {
  *n = 0;
  if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof *n, n, NULL) != CL_SUCCESS || !*n) return NULL;
  unsigned char *b = malloc(*n + 1);
  unsigned char *bs[1] = {b};
  if (!b || clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bs, bs, NULL) != CL_SUCCESS) {
    free(b);
    return NULL;
  }
  b[*n] = 0;
  return b;
}

/* the PTX text with `.reqnctapercluster 1, 1, cl` before the entry's body (and
 * `.explicitcluster` where explicit); malloc'ed */
static char *with_cluster(const char *ptx, int cl, int explicit) {
  const char *e = strstr(ptx, ".entry clu");
  const char *body = e ? strchr(strchr(e, ')') ? strchr(e, ')') : e, '{') : NULL;
  if (!body) return NULL;
  char dir[64];
  int nd = snprintf(dir, sizeof dir, "%s.reqnctapercluster 1, 1, %d\n", explicit ? ".explicitcluster\n" : "", cl);
  size_t n = strlen(ptx);
  char *o = malloc(n + (size_t)nd + 1);
  if (!o) return NULL;
  size_t at = (size_t)(body - ptx);
  memcpy(o, ptx, at);
  memcpy(o + at, dir, (size_t)nd);
  memcpy(o + at + nd, body, n - at + 1);
  return o;
}

static void print_lines(const char *ptx, const char *prefix) {
  for (const char *p = ptx; (p = strstr(p, prefix)); p++) {
    const char *nl = strchr(p, '\n');
    printf("  %.*s\n", nl ? (int)(nl - p) : (int)strlen(p), p);
  }
}

int main(int argc, char **argv) {
  const char *want = argc > 1 ? argv[1] : "NVIDIA";
  if (probe_help(want, "usage: ocl_cluster_probe [PLATFORM]\n  thread-block clusters through OpenCL: a peer's local "
                       "memory read by mapa\n"))
    return 0;
  cl_device_id dev = probe_device("ocl_cluster_probe", want, CL_DEVICE_TYPE_GPU);
  if (!dev) return 1;
  cl_int e;
  cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
  if (!ctx) {
    printf("context: error %d\n", e);
    return 1;
  }
  cl_program p = clCreateProgramWithSource(ctx, 1, &src, NULL, &e);
  if (clBuildProgram(p, 1, &dev, "", NULL, NULL) != CL_SUCCESS) {
    char log[8192] = "";
    clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
    printf("the source did not build:\n%s\n", log);
    return 1;
  }
  size_t n;
  char *ptx = (char *)binary_of(p, &n);
  if (!ptx || !strstr(ptx, ".entry clu")) {
    printf("the program's binary is not PTX text\n");
    return 1;
  }
  printf("built from OpenCL C; the PTX says:\n");
  print_lines(ptx, ".version");
  print_lines(ptx, ".target");
  enum { TILES = 64 };
  const int cls[] = {1, 2, 4, 8};
  for (size_t ci = 0; ci < 2 * sizeof cls / sizeof cls[0]; ci++) {
    int cl = cls[ci % 4], groups = TILES * cl, explicit = ci >= 4;
    if (ci == 0 || ci == 4) printf("%s:\n", explicit ? ".explicitcluster and .reqnctapercluster" : ".reqnctapercluster");
    char *ptx2 = with_cluster(ptx, cl, explicit);
    if (ci == 5 && ptx2 && strstr(ptx2, ".entry clu")) {
      const char *h = strstr(ptx2, ".entry clu"), *b = strchr(strstr(h, ".reqnctapercluster"), '{');
      printf("  the entry's head: %.*s\n", b ? (int)(b - h + 1) : 0, h);
    }
    const unsigned char *bin = (const unsigned char *)ptx2;
    size_t n2 = ptx2 ? strlen(ptx2) + 1 : 0;
    /* a context and queue of its own: a refused launch may leave them unusable */
    cl_int bst = CL_SUCCESS;
    char what[32];
    snprintf(what, sizeof what, "cluster %d: ", cl);
    cl_context c2;
    cl_command_queue q2 = probe_queue(what, dev, CL_QUEUE_PROFILING_ENABLE, &c2);
    if (!q2) {
      free(ptx2);
      continue;
    }
    cl_program p2 = ptx2 ? clCreateProgramWithBinary(c2, 1, &dev, &n2, &bin, &bst, &e) : NULL;
    if (!p2 || e != CL_SUCCESS || bst != CL_SUCCESS || clBuildProgram(p2, 1, &dev, "", NULL, NULL) != CL_SUCCESS) {
      char log[8192] = "";
      if (p2) clGetProgramBuildInfo(p2, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
      printf("cluster %d: the PTX with the directive did not build (%d %d): %s\n", cl, e, bst, log);
      if (p2) clReleaseProgram(p2);
      clReleaseCommandQueue(q2);
      clReleaseContext(c2);
      free(ptx2);
      continue;
    }
    cl_kernel k = clCreateKernel(p2, "clu", &e);
    cl_mem out = clCreateBuffer(c2, CL_MEM_READ_WRITE, (size_t)groups * 256 * 4, NULL, &e);
    cl_mem rk = clCreateBuffer(c2, CL_MEM_READ_WRITE, (size_t)groups * 4, NULL, &e);
    clSetKernelArg(k, 0, sizeof out, &out);
    clSetKernelArg(k, 1, sizeof rk, &rk);
    size_t local[3] = {256, 1, 1}, global[3] = {256 * 8, TILES / 8, (size_t)cl};
    cl_event ev = NULL;
    e = clEnqueueNDRangeKernel(q2, k, 3, NULL, global, local, 0, NULL, NULL);
    if (e == CL_SUCCESS) e = clEnqueueNDRangeKernel(q2, k, 3, NULL, global, local, 0, NULL, &ev);
    if (e == CL_SUCCESS) e = clFinish(q2);
    if (e != CL_SUCCESS) {
      printf("cluster %d: launch error %d\n", cl, e);
    } else {
      unsigned *h = malloc((size_t)groups * 256 * 4), *r = malloc((size_t)groups * 4);
      clEnqueueReadBuffer(q2, out, CL_TRUE, 0, (size_t)groups * 256 * 4, h, 0, NULL, NULL);
      clEnqueueReadBuffer(q2, rk, CL_TRUE, 0, (size_t)groups * 4, r, 0, NULL, NULL);
      int bad = 0, badrank = 0;
      for (int gid = 0; gid < groups; gid++) {
        int z = gid / TILES, peer = gid % TILES + TILES * ((z + 1) % cl);
        badrank += (int)(r[gid] & 255) != z || (int)(r[gid] >> 8) != cl;
        for (int l = 0; l < 256; l++) bad += h[gid * 256 + l] != (unsigned)peer * 1000u + (unsigned)l;
      }
      cl_ulong t0 = 0, t1 = 0;
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
      printf("cluster %d: %d groups, ranks %s (first group rank %u of %u), peers' values %s (%d wrong), %.1f us\n", cl,
             groups, badrank ? "WRONG" : "as asked", r[0] & 255, r[0] >> 8, bad ? "WRONG" : "read", bad,
             (double)(t1 - t0) / 1000);
      free(h);
      free(r);
    }
    if (ev) clReleaseEvent(ev);
    clReleaseMemObject(out);
    clReleaseMemObject(rk);
    clReleaseKernel(k);
    clReleaseProgram(p2);
    clReleaseCommandQueue(q2);
    clReleaseContext(c2);
    free(ptx2);
  }
  free(ptx);
  clReleaseProgram(p);
  clReleaseContext(ctx);
  return 0;
}
