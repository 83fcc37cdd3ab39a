/* The parts of the CUDA runtime and NCCL ABIs that FlagCX calls, declared here
 * so that FlagCX builds without CUDA and loads both libraries at run time
 * (dlopen). Values are those of the public cuda_runtime_api.h and nccl.h, which
 * are stable across releases. */
#ifndef FLAGCX_NCCL_ABI_H
#define FLAGCX_NCCL_ABI_H

#include <stddef.h>

#include "fcx_transport.h"

typedef int fcx_cudaError_t; /* cudaSuccess = 0 */
typedef void *fcx_cudaStream_t;
typedef void *fcx_cudaEvent_t;
enum {
  FCX_cudaMemcpyHostToDevice = 1,
  FCX_cudaMemcpyDeviceToHost = 2,
  FCX_cudaStreamNonBlocking = 1,
  FCX_cudaEventDisableTiming = 2,
  FCX_cudaHostAllocPortable = 1,
  FCX_cudaErrorNotReady = 600
};

typedef struct fcx_cudart {
  fcx_cudaError_t (*GetDeviceCount)(int *);
  fcx_cudaError_t (*SetDevice)(int);
  fcx_cudaError_t (*Malloc)(void **, size_t);
  fcx_cudaError_t (*Free)(void *);
  fcx_cudaError_t (*HostAlloc)(void **, size_t, unsigned);
  fcx_cudaError_t (*FreeHost)(void *);
  fcx_cudaError_t (*Memcpy)(void *, const void *, size_t, int);
  fcx_cudaError_t (*MemcpyAsync)(void *, const void *, size_t, int, fcx_cudaStream_t);
  fcx_cudaError_t (*StreamCreateWithFlags)(fcx_cudaStream_t *, unsigned);
  fcx_cudaError_t (*StreamDestroy)(fcx_cudaStream_t);
  fcx_cudaError_t (*StreamSynchronize)(fcx_cudaStream_t);
  fcx_cudaError_t (*StreamWaitEvent)(fcx_cudaStream_t, fcx_cudaEvent_t, unsigned);
  fcx_cudaError_t (*EventCreateWithFlags)(fcx_cudaEvent_t *, unsigned);
  fcx_cudaError_t (*EventRecord)(fcx_cudaEvent_t, fcx_cudaStream_t);
  fcx_cudaError_t (*EventSynchronize)(fcx_cudaEvent_t);
  fcx_cudaError_t (*EventQuery)(fcx_cudaEvent_t);
  fcx_cudaError_t (*EventElapsedTime)(float *, fcx_cudaEvent_t, fcx_cudaEvent_t);
  fcx_cudaError_t (*EventDestroy)(fcx_cudaEvent_t);
  const char *(*GetErrorString)(fcx_cudaError_t);
} fcx_cudart_t;

/* The CUDA runtime, loaded once (libcudart.so.13/12/11). NULL with a message if absent. */
const fcx_cudart_t *fcx_cudart(fcx_err_t *err);

/* NCCL */
#define FCX_NCCL_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[FCX_NCCL_UNIQUE_ID_BYTES];
} fcx_ncclUniqueId;
typedef void *fcx_ncclComm_t;
typedef int fcx_ncclResult_t; /* ncclSuccess = 0, ncclInProgress = 7 */
enum {
  FCX_ncclInt8 = 0,
  FCX_ncclUint8 = 1,
  FCX_ncclInt32 = 2,
  FCX_ncclUint32 = 3,
  FCX_ncclInt64 = 4,
  FCX_ncclUint64 = 5,
  FCX_ncclFloat16 = 6,
  FCX_ncclFloat32 = 7,
  FCX_ncclFloat64 = 8,
  FCX_ncclBfloat16 = 9
};
enum { FCX_ncclSum = 0, FCX_ncclProd = 1, FCX_ncclMax = 2, FCX_ncclMin = 3, FCX_ncclAvg = 4 };

typedef struct fcx_nccl_api {
  fcx_ncclResult_t (*GetVersion)(int *);
  fcx_ncclResult_t (*GetUniqueId)(fcx_ncclUniqueId *);
  fcx_ncclResult_t (*CommInitRank)(fcx_ncclComm_t *, int, fcx_ncclUniqueId, int);
  fcx_ncclResult_t (*CommDestroy)(fcx_ncclComm_t);
  fcx_ncclResult_t (*CommAbort)(fcx_ncclComm_t);
  fcx_ncclResult_t (*CommGetAsyncError)(fcx_ncclComm_t, fcx_ncclResult_t *);
  const char *(*GetErrorString)(fcx_ncclResult_t);
  const char *(*GetLastError)(fcx_ncclComm_t); /* NCCL >= 2.13; may be NULL */
  fcx_ncclResult_t (*AllReduce)(const void *, void *, size_t, int, int, fcx_ncclComm_t, fcx_cudaStream_t);
  fcx_ncclResult_t (*AllGather)(const void *, void *, size_t, int, fcx_ncclComm_t, fcx_cudaStream_t);
  fcx_ncclResult_t (*ReduceScatter)(const void *, void *, size_t, int, int, fcx_ncclComm_t, fcx_cudaStream_t);
  fcx_ncclResult_t (*Broadcast)(const void *, void *, size_t, int, int, fcx_ncclComm_t, fcx_cudaStream_t);
  fcx_ncclResult_t (*Reduce)(const void *, void *, size_t, int, int, int, fcx_ncclComm_t, fcx_cudaStream_t);
  fcx_ncclResult_t (*Send)(const void *, size_t, int, int, fcx_ncclComm_t, fcx_cudaStream_t);
  fcx_ncclResult_t (*Recv)(void *, size_t, int, int, fcx_ncclComm_t, fcx_cudaStream_t);
  fcx_ncclResult_t (*GroupStart)(void);
  fcx_ncclResult_t (*GroupEnd)(void);
} fcx_nccl_api_t;

/* Fills api from libnccl.so.2 (or FLAGCX_NCCL_LIBRARY). Used by the library and
 * by flagcx-bench --raw-nccl, which must call NCCL itself. */
flagcx_result_t fcx_nccl_api_load(fcx_nccl_api_t *api, fcx_err_t *err);

#endif
