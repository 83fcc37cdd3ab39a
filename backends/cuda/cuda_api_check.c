/* Compile-time check of cuda_api.h against the toolkit's cuda.h (built only where
 * the toolkit is installed; nothing of it is linked into the plugin). */
#include <cuda.h>

#include "cuda_api.h"

#define SAME(a, b) _Static_assert((long long)(a) == (long long)(b), #a " differs from cuda.h's " #b)
SAME(CU_OK, CUDA_SUCCESS);
SAME(CU_ERR_OUT_OF_MEMORY, CUDA_ERROR_OUT_OF_MEMORY);
SAME(CU_ERR_NO_DEVICE, CUDA_ERROR_NO_DEVICE);
SAME(CU_ERR_NOT_READY, CUDA_ERROR_NOT_READY);
SAME(CU_EVENT_DISABLE_TIMING_FLAG, CU_EVENT_DISABLE_TIMING);
SAME(CU_CAPTURE_MODE_RELAXED, CU_STREAM_CAPTURE_MODE_RELAXED);
SAME(CU_ATTR_MAX_THREADS_PER_BLOCK, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
SAME(CU_ATTR_MAX_GRID_DIM_X, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X);
SAME(CU_ATTR_MULTIPROCESSOR_COUNT, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
SAME(CU_ATTR_CC_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
SAME(CU_ATTR_CC_MINOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
SAME(CU_FUNC_MAX_THREADS_PER_BLOCK, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
SAME(CU_FUNC_MAX_DYNAMIC_SHARED, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
SAME(CU_STREAM_NON_BLOCKING_FLAG, CU_STREAM_NON_BLOCKING);
SAME(CU_EVENT_DEFAULT_FLAG, CU_EVENT_DEFAULT);
SAME(CU_CTX_SCHED_SPIN_FLAG, CU_CTX_SCHED_SPIN);
SAME(CU_CTX_SCHED_YIELD_FLAG, CU_CTX_SCHED_YIELD);
SAME(CU_CTX_SCHED_BLOCKING_FLAG, CU_CTX_SCHED_BLOCKING_SYNC);
SAME(CU_JIT_ERROR_LOG, CU_JIT_ERROR_LOG_BUFFER);
SAME(CU_JIT_ERROR_LOG_SIZE, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
_Static_assert(sizeof(cu_ptr_t) == sizeof(CUdeviceptr), "CUdeviceptr size");
_Static_assert(sizeof(cu_device_t) == sizeof(CUdevice), "CUdevice size");
_Static_assert(sizeof(cu_result_t) == sizeof(CUresult), "CUresult size");
_Static_assert(sizeof(int) == sizeof(CUdevice_attribute) && sizeof(int) == sizeof(CUjit_option), "enum sizes");
_Static_assert(sizeof(int) == sizeof(CUstreamCaptureMode), "enum sizes");
/* cuda_blas.c reads cuStreamIsCapturing's status as an int, 0 meaning no capture. */
_Static_assert(sizeof(int) == sizeof(CUstreamCaptureStatus) && CU_STREAM_CAPTURE_STATUS_NONE == 0, "capture status");
_Static_assert(sizeof(cu_graph_t) == sizeof(CUgraph) && sizeof(cu_graph_exec_t) == sizeof(CUgraphExec), "graph handles");
