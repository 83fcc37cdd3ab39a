/* Whether an OpenCL platform gives a work-group more local memory through a
 * kernel argument (`__local` pointer sized by clSetKernelArg) than it lists
 * as CL_DEVICE_LOCAL_MEM_SIZE. On NVIDIA GPUs that argument is the kernel's
 * dynamic shared memory, which CUDA allows past 48 KiB (227 KiB on an H100)
 * once the function is asked for it; the question is whether NVIDIA's OpenCL
 * does so itself. For each size the probe launches two groups a compute unit
 * that fill the whole buffer, wait at a barrier and read it back reversed, and
 * checks every work-item's sum against the host's; a size the platform
 * refuses prints its error code. It also times a kernel that keeps the buffer
 * in use (to see whether groups still run side by side).
 *
 * Usage: ocl_local_arg_probe [PLATFORM]  (a platform whose name holds PLATFORM,
 * default NVIDIA; its first device). Build and run: scripts/gpu/launch_probe.sh. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_probe.h"

static const char *src =
    "__kernel void fill(__global uint *out, __local uint4 *buf, int n4) {\n"
    "  int l = get_local_id(0), L = get_local_size(0), g = get_group_id(0);\n"
    "  for (int i = l; i < n4; i += L) buf[i] = (uint4)((uint)i, (uint)g, (uint)(i ^ g), (uint)i * 3u + (uint)g);\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  uint acc = 0;\n"
    "  for (int i = l; i < n4; i += L) {\n"
    "    uint4 v = buf[n4 - 1 - i];\n"
    "    acc += v.x * 7u + v.y * 13u + v.z + v.w;\n"
    "  }\n"
    "  out[g * L + l] = acc;\n"
    "}\n";

static int fail(cl_int e, const char *what) {
  if (e == CL_SUCCESS) return 0;
  printf("  %s: error %d\n", what, e);
  return 1;
}

static unsigned expected(int g, int l, int L, int n4) {
  unsigned acc = 0;
  for (int i = l; i < n4; i += L) {
    unsigned j = (unsigned)(n4 - 1 - i);
    acc += j * 7u + (unsigned)g * 13u + (j ^ (unsigned)g) + (j * 3u + (unsigned)g);
  }
  return acc;
}

int main(int argc, char **argv) {
  const char *want = argc > 1 ? argv[1] : "NVIDIA";
  if (probe_help(want, "usage: ocl_local_arg_probe [PLATFORM]\n  local memory a group through a __local kernel "
                       "argument, past the device's listed size\n"))
    return 0;
  cl_device_id dev = probe_device("ocl_local_arg_probe", want, CL_DEVICE_TYPE_ALL);
  if (!dev) return 1;
  cl_uint cus;
  cl_ulong lmem;
  probe_limits(dev, &cus, &lmem);
  cl_int e;
  cl_context ctx;
  cl_command_queue q = probe_queue("", dev, CL_QUEUE_PROFILING_ENABLE, &ctx);
  if (!q) return 1;
  cl_program p = clCreateProgramWithSource(ctx, 1, &src, NULL, &e);
  if (fail(e, "program") || fail(clBuildProgram(p, 1, &dev, "", NULL, NULL), "build")) return 1;
  cl_kernel k = clCreateKernel(p, "fill", &e);
  if (fail(e, "kernel")) return 1;
  const int L = 256, groups = 2 * (int)cus;
  cl_mem out = clCreateBuffer(ctx, CL_MEM_READ_WRITE, (size_t)groups * L * 4, NULL, &e);
  if (fail(e, "buffer")) return 1;
  unsigned *h = malloc((size_t)groups * L * 4);
  const int sizes[] = {16384, 49152, 49168, 65536, 98304, 131072, 163840, 200704, 232448, 233472};
  int worked = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    int bytes = sizes[si], n4 = bytes / 16;
    printf("local %6d bytes:\n", bytes);
    if (fail(clSetKernelArg(k, 0, sizeof out, &out), "arg 0") ||
        fail(clSetKernelArg(k, 1, (size_t)bytes, NULL), "clSetKernelArg(__local)") ||
        fail(clSetKernelArg(k, 2, sizeof n4, &n4), "arg 2"))
      continue;
    cl_ulong kl = 0;
    clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_LOCAL_MEM_SIZE, sizeof kl, &kl, NULL);
    size_t local = (size_t)L, global = local * (size_t)groups;
    memset(h, 0, (size_t)groups * L * 4);
    cl_event ev = NULL;
    if (fail(clEnqueueWriteBuffer(q, out, CL_TRUE, 0, (size_t)groups * L * 4, h, 0, NULL, NULL), "clear") ||
        fail(clEnqueueNDRangeKernel(q, k, 1, NULL, &global, &local, 0, NULL, &ev), "clEnqueueNDRangeKernel") ||
        fail(clFinish(q), "clFinish") ||
        fail(clEnqueueReadBuffer(q, out, CL_TRUE, 0, (size_t)groups * L * 4, h, 0, NULL, NULL), "read")) {
      if (ev) clReleaseEvent(ev);
      continue;
    }
    cl_ulong t0 = 0, t1 = 0;
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(ev);
    int bad = 0;
    for (int g = 0; g < groups; g++)
      for (int l = 0; l < L; l++) bad += h[g * L + l] != expected(g, l, L, n4);
    printf("  CL_KERNEL_LOCAL_MEM_SIZE %llu, %d groups of %d: %s (%d of %d wrong), %.1f us\n", (unsigned long long)kl,
           groups, L, bad ? "WRONG" : "correct", bad, groups * L, (double)(t1 - t0) / 1000);
    if (!bad && (cl_ulong)bytes > lmem) worked++;
  }
  printf("past CL_DEVICE_LOCAL_MEM_SIZE: %d size(s) correct\n", worked);
  return 0;
}
