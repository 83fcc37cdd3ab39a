/* How many work-groups of one kernel an NVIDIA GPU runs at once on a
 * multiprocessor through NVIDIA's OpenCL, by the local memory and work-items
 * a group asks for: each group spins for a fixed time on the GPU's global
 * timer (inline PTX, as the GEMM's mma.sync) and records its multiprocessor
 * (%smid) and its start and end; the host counts the most groups that
 * overlapped on one multiprocessor. Through CUDA the same groups would be
 * resident as registers, warps and the shared-memory carveout allow (5 of the
 * tensor-core GEMM's 128 work-items and 41 KB on an H100,
 * scripts/gpu/ptx_probe.sh).
 *
 * Usage: ocl_residency_probe [PLATFORM]  (a platform whose name holds PLATFORM,
 * default NVIDIA; its first GPU). Prints one line a configuration: local
 * bytes, work-items, groups launched (2048 work-items' worth a compute unit,
 * the most an H100's multiprocessor holds), the most resident on one
 * multiprocessor, the multiprocessors used, the span in microseconds (20 a
 * wave).
 * Build and run: scripts/gpu/launch_probe.sh. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_probe.h"

enum { SPIN_NS = 20000, MAX_SM = 1024 };

static const char *src =
    "__kernel void spin(__global uint *rec, int ns, int k) {\n"
    "#if SMEM > 0\n"
    "  __local uint pad[SMEM / 4];\n"
    "#endif\n"
    "  ulong t0, t;\n"
    "  asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(t0));\n"
    "  do { asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(t)); } while (t - t0 < (ulong)ns);\n"
    "  uint keep = 0;\n"
    "#if SMEM > 0\n"
    "  for (int i = get_local_id(0); i < SMEM / 4; i += get_local_size(0)) pad[i] = (uint)t + i;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  keep = pad[(get_local_id(0) * 7 + k) % (SMEM / 4)];\n"
    "#endif\n"
    "  if (get_local_id(0) == 0) {\n"
    "    uint sm;\n"
    "    asm volatile(\"mov.u32 %0, %%smid;\" : \"=r\"(sm));\n"
    "    __global uint *r = rec + get_group_id(0) * 5;\n"
    "    r[0] = sm | (keep == 0xffffffffu && k < 0 ? 1u << 31 : 0u);\n"
    "    r[1] = (uint)t0, r[2] = (uint)(t0 >> 32), r[3] = (uint)t, r[4] = (uint)(t >> 32);\n"
    "  }\n"
    "}\n";

static void check(cl_int e, const char *what) {
  if (e == CL_SUCCESS) return;
  fprintf(stderr, "ocl_residency_probe: %s: error %d\n", what, e);
  exit(1);
}

typedef struct {
  unsigned long long t0, t1;
} span_t;

static int by_start(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  return (x->t0 > y->t0) - (x->t0 < y->t0);
}

/* the most of n spans that overlap at one time */
static int most_overlapping(span_t *s, int n) {
  qsort(s, (size_t)n, sizeof *s, by_start);
  int best = 0;
  for (int i = 0; i < n; i++) {
    int c = 0;
    for (int j = 0; j <= i; j++) c += s[j].t1 > s[i].t0;
    if (c > best) best = c;
  }
  return best;
}

int main(int argc, char **argv) {
  const char *want = argc > 1 ? argv[1] : "NVIDIA";
  if (probe_help(want, "usage: ocl_residency_probe [PLATFORM]\n  work-groups resident on a multiprocessor at once, "
                       "by local memory and work-items\n"))
    return 0;
  cl_device_id dev = probe_device("ocl_residency_probe", want, CL_DEVICE_TYPE_GPU);
  if (!dev) return 1;
  cl_uint cus;
  cl_ulong lmem;
  probe_limits(dev, &cus, &lmem);
  cl_int e;
  cl_context ctx;
  cl_command_queue q = probe_queue("", dev, 0, &ctx);
  if (!q) return 1;
  /* as many groups as a multiprocessor's 2048 work-items could hold, so that the count is the device's limit */
  const int most_groups = (2048 / 128) * (int)cus;
  cl_mem rec = clCreateBuffer(ctx, CL_MEM_READ_WRITE, (size_t)most_groups * 5 * 4, NULL, &e);
  check(e, "buffer");
  unsigned *h = malloc((size_t)most_groups * 5 * 4);
  span_t *per = malloc(sizeof(span_t) * (size_t)most_groups);
  int *count = malloc(sizeof(int) * MAX_SM);
  const int smems[] = {0, 1024, 8192, 20480, 41984, 49152};
  const size_t wis[] = {128, 256, 512};
  for (size_t si = 0; si < sizeof smems / sizeof smems[0]; si++) {
    if ((cl_ulong)smems[si] > lmem) continue;
    char opt[64];
    snprintf(opt, sizeof opt, "-DSMEM=%d", smems[si]);
    cl_program p = clCreateProgramWithSource(ctx, 1, &src, NULL, &e);
    check(e, "program");
    if (clBuildProgram(p, 1, &dev, opt, NULL, NULL) != CL_SUCCESS) {
      char log[4096] = "";
      clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
      fprintf(stderr, "ocl_residency_probe: build %s failed:\n%s\n", opt, log);
      return 1;
    }
    cl_kernel k = clCreateKernel(p, "spin", &e);
    check(e, "kernel");
    int ns = SPIN_NS, kk = 1;
    check(clSetKernelArg(k, 0, sizeof rec, &rec), "arg");
    check(clSetKernelArg(k, 1, sizeof ns, &ns), "arg");
    check(clSetKernelArg(k, 2, sizeof kk, &kk), "arg");
    for (size_t wi = 0; wi < sizeof wis / sizeof wis[0]; wi++) {
      const int groups = (int)(2048 / wis[wi]) * (int)cus;
      size_t local = wis[wi], global = local * (size_t)groups;
      for (int rep = 0; rep < 2; rep++) /* the first launch warms up */
        check(clEnqueueNDRangeKernel(q, k, 1, NULL, &global, &local, 0, NULL, NULL), "launch");
      check(clEnqueueReadBuffer(q, rec, CL_TRUE, 0, (size_t)groups * 5 * 4, h, 0, NULL, NULL), "read");
      unsigned long long lo = ~0ull, hi = 0;
      int most = 0, used = 0;
      memset(count, 0, sizeof(int) * MAX_SM);
      for (int g = 0; g < groups; g++) {
        unsigned sm = h[g * 5] & 0x7fffffffu;
        if (sm < MAX_SM && count[sm]++ == 0) used++;
        unsigned long long t0 = h[g * 5 + 1] | (unsigned long long)h[g * 5 + 2] << 32;
        unsigned long long t1 = h[g * 5 + 3] | (unsigned long long)h[g * 5 + 4] << 32;
        if (t0 < lo) lo = t0;
        if (t1 > hi) hi = t1;
      }
      for (unsigned sm = 0; sm < MAX_SM; sm++) {
        if (!count[sm]) continue;
        int n = 0;
        for (int g = 0; g < groups; g++)
          if ((h[g * 5] & 0x7fffffffu) == sm) {
            per[n].t0 = h[g * 5 + 1] | (unsigned long long)h[g * 5 + 2] << 32;
            per[n].t1 = h[g * 5 + 3] | (unsigned long long)h[g * 5 + 4] << 32;
            n++;
          }
        int m = most_overlapping(per, n);
        if (m > most) most = m;
      }
      printf("local %6d bytes, %4zu work-items: %d groups, at most %d at once on a multiprocessor, %d used, %.1f us\n",
             smems[si], local, groups, most, used, (double)(hi - lo) / 1000);
    }
    clReleaseKernel(k);
    clReleaseProgram(p);
  }
  return 0;
}
