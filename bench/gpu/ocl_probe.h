/* What the OpenCL probes of this folder share (ocl_residency_probe.c,
 * ocl_local_arg_probe.c, ocl_cluster_probe.c): `--help`, and the device a
 * probe runs on, the first of TYPE on the first platform whose name holds
 * WANT, its limits, and a context and queue on it. Include after CL/cl.h. */
#ifndef FLAGOS_BENCH_OCL_PROBE_H
#define FLAGOS_BENCH_OCL_PROBE_H

#include <stdio.h>
#include <string.h>

/* 1 where ARG asks for help (USAGE printed on stdout), else 0 */
static inline int probe_help(const char *arg, const char *usage) {
  if (strcmp(arg, "--help") && strcmp(arg, "-h")) return 0;
  fputs(usage, stdout);
  return 1;
}

/* the device, or NULL with PROG's error on stderr */
static inline cl_device_id probe_device(const char *prog, const char *want, cl_device_type type) {
  cl_platform_id ps[16];
  cl_uint np = 0;
  if (clGetPlatformIDs(16, ps, &np) != CL_SUCCESS || np == 0) {
    fprintf(stderr, "%s: no OpenCL platform\n", prog);
    return NULL;
  }
  if (np > 16) np = 16;
  cl_device_id dev = NULL;
  for (cl_uint i = 0; i < np && !dev; i++) {
    char name[256] = "";
    clGetPlatformInfo(ps[i], CL_PLATFORM_NAME, sizeof name, name, NULL);
    if (strstr(name, want) && clGetDeviceIDs(ps[i], type, 1, &dev, NULL) != CL_SUCCESS) dev = NULL;
  }
  if (!dev)
    fprintf(stderr, "%s: no %s on a platform named like '%s'\n", prog, type == CL_DEVICE_TYPE_GPU ? "GPU" : "device",
            want);
  return dev;
}

/* the device's compute units and local memory a group, printed on stdout */
static inline void probe_limits(cl_device_id dev, cl_uint *cus, cl_ulong *lmem) {
  *cus = 0;
  *lmem = 0;
  clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof *cus, cus, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof *lmem, lmem, NULL);
  printf("compute units %u, CL_DEVICE_LOCAL_MEM_SIZE %llu bytes\n", *cus, (unsigned long long)*lmem);
}

/* a context on DEV (*ctx) and a queue on it with PROPS; NULL where either
 * fails, the error on stdout after WHAT (the context released) */
static inline cl_command_queue probe_queue(const char *what, cl_device_id dev, cl_command_queue_properties props,
                                           cl_context *ctx) {
  cl_int e = CL_SUCCESS;
  *ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
  cl_command_queue q = *ctx ? clCreateCommandQueue(*ctx, dev, props, &e) : NULL;
  if (!q) {
    printf("%scontext or queue: error %d\n", what, e);
    if (*ctx) clReleaseContext(*ctx);
    *ctx = NULL;
  }
  return q;
}

#endif
