/* The opencl backend's internals. The plugin includes only the plugin ABI and
 * the Khronos headers; the ICD loader (libOpenCL.so.1) is opened with dlopen, so
 * the plugin loads (and reports zero devices) where no OpenCL is installed. */
#ifndef FLAGOS_OCL_INTERNAL_H
#define FLAGOS_OCL_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <pthread.h>
#include <stdbool.h>

#include "flagos/backend.h"

/* The OpenCL entry points the plugin uses (all OpenCL 1.2). */
#define OCL_FUNCS(X)                                                                                                 \
  X(clGetPlatformIDs) X(clGetPlatformInfo) X(clGetDeviceIDs) X(clGetDeviceInfo) X(clCreateContext)                 \
  X(clReleaseContext) X(clCreateCommandQueue) X(clReleaseCommandQueue) X(clCreateBuffer) X(clReleaseMemObject)     \
  X(clEnqueueWriteBuffer) X(clEnqueueReadBuffer) X(clEnqueueCopyBuffer) X(clFinish) X(clFlush)                     \
  X(clCreateProgramWithSource) X(clCreateProgramWithBinary) X(clBuildProgram) X(clGetProgramBuildInfo)             \
  X(clGetProgramInfo) X(clReleaseProgram) X(clCreateKernel) X(clReleaseKernel) X(clSetKernelArg)                   \
  X(clGetKernelInfo) X(clGetKernelWorkGroupInfo) X(clEnqueueNDRangeKernel) X(clEnqueueMarkerWithWaitList)          \
  X(clEnqueueBarrierWithWaitList) X(clWaitForEvents) X(clReleaseEvent) X(clGetEventProfilingInfo)

typedef struct ocl_api {
  void *lib;
#define OCL_DECL(f) __typeof__(&f) f;
  OCL_FUNCS(OCL_DECL)
#undef OCL_DECL
} ocl_api_t;

typedef struct ocl_device {
  cl_platform_id platform;
  cl_device_id id;
  char name[128], vendor[64], driver[64], version[128];
  char platform_name[128], platform_version[128];
  char *extensions;     /* malloc'ed, space-separated */
  cl_device_type type;
  cl_ulong memory;
  cl_uint compute_units;
  size_t max_wg;
  bool fp64;            /* cl_khr_fp64 (or an OpenCL 3.0 double config) */
  bool div_sqrt;        /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT for float */
  /* Created on first use (under the state's lock). */
  bool ready;
  cl_context ctx;
  cl_command_queue queue; /* the default (NULL) stream */
} ocl_device_t;

typedef struct ocl_state {
  flagos_host_t host;
  char cache_dir[4096];
  ocl_api_t cl;
  int n_dev;
  ocl_device_t *dev;
  pthread_mutex_t lock;
} ocl_state_t;

/* Device memory: flagos_devptr_t points to one of these. */
typedef struct ocl_buf {
  cl_mem mem;
  int dev;
  size_t size;
} ocl_buf_t;

struct flagos_bstream_s {
  int dev;
  cl_command_queue queue;
};

struct flagos_bevent_s {
  int dev;
  cl_event ev; /* the last recorded marker, or NULL */
};

#define OCL_ERR(s, code, ...) ((s)->host.status_new((code), __VA_ARGS__))

/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"). */
const char *ocl_error_name(cl_int e);
/* A status for a failed OpenCL call: "opencl backend: <what>: CL_... (n)". */
flagos_status_t ocl_fail(ocl_state_t *s, cl_int e, const char *what);
/* Checks the device index and creates its context and default queue if needed. */
flagos_status_t ocl_device_ready(ocl_state_t *s, int device, ocl_device_t **out);
/* The queue of stream st, or the default queue of device dev. */
cl_command_queue ocl_queue(ocl_state_t *s, flagos_bstream_t st, int dev);

/* ocl_module.c */
flagos_status_t ocl_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out);
void ocl_module_unload(void *state, flagos_bmodule_t m);
flagos_status_t ocl_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out);
flagos_status_t ocl_launch(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args);

/* ocl_blas.c: "gemm" through CLBlast (opened at first use); anything else is FLAGOS_ERR_UNSUPPORTED */
flagos_status_t ocl_library_call(void *state, flagos_bstream_t s, const flagos_libcall_t *call);

#endif
