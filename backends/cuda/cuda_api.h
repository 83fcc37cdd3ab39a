/* The part of the CUDA driver API the cuda plugin uses, declared here so that the
 * plugin builds without the CUDA toolkit and loads libcuda.so.1 at run time
 * (dlopen + a symbol table): the same binary runs where there is no driver and
 * then reports zero devices. Types and constants follow cuda.h (CUDA 12/13);
 * cuda_api_check.c compares them with the real header where one is installed. */
#ifndef FLAGOS_CUDA_API_H
#define FLAGOS_CUDA_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int cu_result_t;              /* CUresult */
typedef int cu_device_t;              /* CUdevice */
typedef unsigned long long cu_ptr_t;  /* CUdeviceptr */
typedef struct cu_ctx_s *cu_ctx_t;    /* CUcontext */
typedef struct cu_stream_s *cu_stream_t;
typedef struct cu_event_s *cu_event_t;
typedef struct cu_module_s *cu_module_t;
typedef struct cu_func_s *cu_func_t;
typedef struct cu_graph_s *cu_graph_t;           /* CUgraph */
typedef struct cu_graph_exec_s *cu_graph_exec_t; /* CUgraphExec */

enum {
  CU_OK = 0,                          /* CUDA_SUCCESS */
  CU_ERR_OUT_OF_MEMORY = 2,           /* CUDA_ERROR_OUT_OF_MEMORY */
  CU_ERR_NO_DEVICE = 100,             /* CUDA_ERROR_NO_DEVICE */
  CU_ERR_NOT_READY = 600,             /* CUDA_ERROR_NOT_READY */
  CU_ATTR_MAX_THREADS_PER_BLOCK = 1,  /* CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK */
  CU_ATTR_MAX_GRID_DIM_X = 5,         /* CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X */
  CU_ATTR_MULTIPROCESSOR_COUNT = 16,  /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT */
  CU_ATTR_CC_MAJOR = 75,              /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
  CU_ATTR_CC_MINOR = 76,              /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR */
  CU_FUNC_MAX_THREADS_PER_BLOCK = 0,  /* CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK */
  CU_FUNC_MAX_DYNAMIC_SHARED = 8,     /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */
  CU_STREAM_NON_BLOCKING_FLAG = 1,    /* CU_STREAM_NON_BLOCKING */
  CU_EVENT_DEFAULT_FLAG = 0,          /* CU_EVENT_DEFAULT */
  CU_CTX_SCHED_SPIN_FLAG = 1,         /* CU_CTX_SCHED_SPIN */
  CU_CTX_SCHED_YIELD_FLAG = 2,        /* CU_CTX_SCHED_YIELD */
  CU_CTX_SCHED_BLOCKING_FLAG = 4,     /* CU_CTX_SCHED_BLOCKING_SYNC */
  CU_EVENT_DISABLE_TIMING_FLAG = 2,   /* CU_EVENT_DISABLE_TIMING */
  CU_CAPTURE_MODE_RELAXED = 2,        /* CU_STREAM_CAPTURE_MODE_RELAXED */
  CU_JIT_ERROR_LOG = 5,               /* CU_JIT_ERROR_LOG_BUFFER */
  CU_JIT_ERROR_LOG_SIZE = 6           /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */
};

/* One entry per driver function: member name, exported symbol, return and
 * parameter types. Optional entries may be missing from older drivers. */
#define CU_DRIVER_FUNCS(X, OPT)                                                                          \
  X(Init, "cuInit", (unsigned flags))                                                                  \
  X(DriverGetVersion, "cuDriverGetVersion", (int *v))                                                  \
  X(GetErrorName, "cuGetErrorName", (cu_result_t e, const char **s))                                    \
  X(DeviceGetCount, "cuDeviceGetCount", (int *n))                                                      \
  X(DeviceGet, "cuDeviceGet", (cu_device_t * d, int ordinal))                                          \
  X(DeviceGetName, "cuDeviceGetName", (char *name, int len, cu_device_t d))                            \
  X(DeviceGetAttribute, "cuDeviceGetAttribute", (int *v, int attr, cu_device_t d))                     \
  X(DeviceTotalMem, "cuDeviceTotalMem_v2", (size_t * bytes, cu_device_t d))                            \
  X(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (cu_ctx_t * c, cu_device_t d))                       \
  X(PrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (cu_device_t d))                                \
  X(CtxSetCurrent, "cuCtxSetCurrent", (cu_ctx_t c))                                                    \
  X(MemAlloc, "cuMemAlloc_v2", (cu_ptr_t * p, size_t bytes))                                           \
  X(MemFree, "cuMemFree_v2", (cu_ptr_t p))                                                             \
  X(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", (cu_ptr_t dst, const void *src, size_t n, cu_stream_t s)) \
  X(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", (void *dst, cu_ptr_t src, size_t n, cu_stream_t s))       \
  X(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", (cu_ptr_t dst, cu_ptr_t src, size_t n, cu_stream_t s))    \
  X(StreamCreate, "cuStreamCreate", (cu_stream_t * s, unsigned flags))                                 \
  X(StreamDestroy, "cuStreamDestroy_v2", (cu_stream_t s))                                              \
  X(StreamSynchronize, "cuStreamSynchronize", (cu_stream_t s))                                         \
  X(StreamWaitEvent, "cuStreamWaitEvent", (cu_stream_t s, cu_event_t e, unsigned flags))               \
  X(EventCreate, "cuEventCreate", (cu_event_t * e, unsigned flags))                                    \
  X(EventDestroy, "cuEventDestroy_v2", (cu_event_t e))                                                 \
  X(EventRecord, "cuEventRecord", (cu_event_t e, cu_stream_t s))                                       \
  X(EventSynchronize, "cuEventSynchronize", (cu_event_t e))                                            \
  X(EventElapsedTime, "cuEventElapsedTime", (float *ms, cu_event_t a, cu_event_t b))                   \
  X(ModuleLoadDataEx, "cuModuleLoadDataEx", (cu_module_t * m, const void *image, unsigned n, int *opts, void **vals)) \
  X(ModuleUnload, "cuModuleUnload", (cu_module_t m))                                                   \
  X(ModuleGetFunction, "cuModuleGetFunction", (cu_func_t * f, cu_module_t m, const char *name))        \
  X(FuncGetAttribute, "cuFuncGetAttribute", (int *v, int attr, cu_func_t f))                           \
  X(LaunchKernel, "cuLaunchKernel",                                                                    \
    (cu_func_t f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,        \
     unsigned shmem, cu_stream_t s, void **params, void **extra))                                      \
  X(MemHostAlloc, "cuMemHostAlloc", (void **p, size_t bytes, unsigned flags))                          \
  X(MemFreeHost, "cuMemFreeHost", (void *p))                                                           \
  X(EventQuery, "cuEventQuery", (cu_event_t e))                                                        \
  OPT(FuncGetParamInfo, "cuFuncGetParamInfo", (cu_func_t f, size_t i, size_t *off, size_t *size))     \
  /* kernels that take dynamic shared memory (cuda_module.c); without them      \
   * they run without it, reading memory instead */                                                    \
  OPT(ModuleGetGlobal, "cuModuleGetGlobal_v2", (cu_ptr_t * p, size_t *bytes, cu_module_t m, const char *name)) \
  OPT(FuncSetAttribute, "cuFuncSetAttribute", (cu_func_t f, int attr, int v))                          \
  /* graphs (cuda_graph.c); without them the plugin does not capture */                               \
  OPT(StreamBeginCapture, "cuStreamBeginCapture_v2", (cu_stream_t s, int mode))                        \
  OPT(StreamEndCapture, "cuStreamEndCapture", (cu_stream_t s, cu_graph_t *g))                          \
  OPT(GraphInstantiate, "cuGraphInstantiateWithFlags", (cu_graph_exec_t * e, cu_graph_t g, unsigned long long flags)) \
  OPT(GraphLaunch, "cuGraphLaunch", (cu_graph_exec_t e, cu_stream_t s))                                \
  OPT(GraphExecDestroy, "cuGraphExecDestroy", (cu_graph_exec_t e))                                     \
  OPT(GraphDestroy, "cuGraphDestroy", (cu_graph_t g))                                                  \
  /* timing cuBLASLt's candidates beside a capture (cuda_blas.c) */                                     \
  OPT(StreamIsCapturing, "cuStreamIsCapturing", (cu_stream_t s, int *status))                          \
  OPT(MemAllocAsync, "cuMemAllocAsync", (cu_ptr_t * p, size_t bytes, cu_stream_t s))                   \
  OPT(MemFreeAsync, "cuMemFreeAsync", (cu_ptr_t p, cu_stream_t s))                                    \
  /* how a waiting host thread waits (cuda_backend.c, FLAGOS_CUDA_SCHED) */                             \
  OPT(PrimaryCtxSetFlags, "cuDevicePrimaryCtxSetFlags_v2", (cu_device_t d, unsigned flags))

typedef struct cu_driver {
#define CU_MEMBER(name, sym, params) cu_result_t(*name) params;
  CU_DRIVER_FUNCS(CU_MEMBER, CU_MEMBER)
#undef CU_MEMBER
  void *handle;
  int version; /* cuDriverGetVersion: 13000 for 13.0 */
} cu_driver_t;

/* Opens the driver ($FLAGOS_CUDA_DRIVER, else libcuda.so.1, else libcuda.so) and
 * binds every required entry. On failure returns false with the reason in why. */
bool cu_driver_open(cu_driver_t *d, char *why, size_t why_len);
void cu_driver_close(cu_driver_t *d);

#endif
