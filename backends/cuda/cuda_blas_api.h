/* The part of cuBLASLt and NVML the cuda plugin uses, declared here so that the
 * plugin builds without the CUDA toolkit and opens both libraries at run time
 * (dlopen + a symbol table, as cuda_api.h does for the driver). Types and
 * constants follow cublasLt.h (CUDA 12/13) and nvml.h; cuda_blas_check.c
 * compares them with the real headers where those are installed. */
#ifndef FLAGOS_CUDA_BLAS_API_H
#define FLAGOS_CUDA_BLAS_API_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_api.h"

/* ---- cuBLASLt ---- */
typedef int lt_status_t;                       /* cublasStatus_t */
typedef struct lt_ctx_s *lt_handle_t;          /* cublasLtHandle_t */
typedef struct lt_desc_s *lt_desc_t;           /* cublasLtMatmulDesc_t */
typedef struct lt_layout_s *lt_layout_t;       /* cublasLtMatrixLayout_t */
typedef struct lt_pref_s *lt_pref_t;           /* cublasLtMatmulPreference_t */
typedef struct lt_algo {                       /* cublasLtMatmulAlgo_t */
  uint64_t data[8];
} lt_algo_t;
typedef struct lt_heuristic {                  /* cublasLtMatmulHeuristicResult_t */
  lt_algo_t algo;
  size_t workspace_size;
  lt_status_t state;
  float waves_count;
  int reserved[4];
} lt_heuristic_t;

enum {
  LT_OK = 0,                      /* CUBLAS_STATUS_SUCCESS */
  LT_ERR_ALLOC_FAILED = 3,        /* CUBLAS_STATUS_ALLOC_FAILED */
  LT_ERR_NOT_SUPPORTED = 15,      /* CUBLAS_STATUS_NOT_SUPPORTED */
  LT_OP_N = 0,                    /* CUBLAS_OP_N */
  LT_OP_T = 1,                    /* CUBLAS_OP_T */
  LT_R_32F = 0,                   /* CUDA_R_32F */
  LT_R_64F = 1,                   /* CUDA_R_64F */
  LT_R_16F = 2,                   /* CUDA_R_16F */
  LT_R_16BF = 14,                 /* CUDA_R_16BF */
  LT_COMPUTE_32F = 68,            /* CUBLAS_COMPUTE_32F */
  LT_COMPUTE_32F_FAST_TF32 = 77,  /* CUBLAS_COMPUTE_32F_FAST_TF32 */
  LT_COMPUTE_64F = 70,            /* CUBLAS_COMPUTE_64F */
  LT_DESC_TRANSA = 3,             /* CUBLASLT_MATMUL_DESC_TRANSA (int32_t) */
  LT_DESC_TRANSB = 4,             /* CUBLASLT_MATMUL_DESC_TRANSB (int32_t) */
  LT_DESC_EPILOGUE = 7,           /* CUBLASLT_MATMUL_DESC_EPILOGUE (uint32_t) */
  LT_DESC_BIAS_POINTER = 8,       /* CUBLASLT_MATMUL_DESC_BIAS_POINTER (const void *) */
  LT_EPILOGUE_DEFAULT = 1,        /* CUBLASLT_EPILOGUE_DEFAULT */
  LT_EPILOGUE_BIAS = 4,           /* CUBLASLT_EPILOGUE_BIAS: adds a vector of D's rows to every column */
  LT_LAYOUT_BATCH_COUNT = 5,      /* CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT (int32_t) */
  LT_LAYOUT_BATCH_STRIDE = 6,     /* CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (int64_t) */
  LT_PREF_MAX_WORKSPACE = 1,      /* CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64_t) */
  LT_PREF_ALIGN_A = 5,            /* CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES (uint32_t) */
  LT_PREF_ALIGN_B = 6,
  LT_PREF_ALIGN_C = 7,
  LT_PREF_ALIGN_D = 8
};

/* One entry per cuBLASLt function: member, symbol, return type, parameters. */
#define LT_FUNCS(X)                                                                                          \
  X(Create, "cublasLtCreate", lt_status_t, (lt_handle_t * h))                                                \
  X(Destroy, "cublasLtDestroy", lt_status_t, (lt_handle_t h))                                                \
  X(GetVersion, "cublasLtGetVersion", size_t, (void))                                                        \
  X(GetStatusName, "cublasLtGetStatusName", const char *, (lt_status_t st))                                  \
  X(DescCreate, "cublasLtMatmulDescCreate", lt_status_t, (lt_desc_t * d, int compute, int scale))            \
  X(DescDestroy, "cublasLtMatmulDescDestroy", lt_status_t, (lt_desc_t d))                                    \
  X(DescSet, "cublasLtMatmulDescSetAttribute", lt_status_t, (lt_desc_t d, int attr, const void *v, size_t n)) \
  X(LayoutCreate, "cublasLtMatrixLayoutCreate", lt_status_t,                                                 \
    (lt_layout_t * l, int type, uint64_t rows, uint64_t cols, int64_t ld))                                   \
  X(LayoutDestroy, "cublasLtMatrixLayoutDestroy", lt_status_t, (lt_layout_t l))                              \
  X(LayoutSet, "cublasLtMatrixLayoutSetAttribute", lt_status_t,                                              \
    (lt_layout_t l, int attr, const void *v, size_t n))                                                      \
  X(PrefCreate, "cublasLtMatmulPreferenceCreate", lt_status_t, (lt_pref_t * p))                              \
  X(PrefDestroy, "cublasLtMatmulPreferenceDestroy", lt_status_t, (lt_pref_t p))                              \
  X(PrefSet, "cublasLtMatmulPreferenceSetAttribute", lt_status_t, (lt_pref_t p, int attr, const void *v, size_t n)) \
  X(AlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic", lt_status_t,                                         \
    (lt_handle_t h, lt_desc_t op, lt_layout_t a, lt_layout_t b, lt_layout_t c, lt_layout_t d, lt_pref_t p,   \
     int requested, lt_heuristic_t *results, int *returned))                                                 \
  X(Matmul, "cublasLtMatmul", lt_status_t,                                                                   \
    (lt_handle_t h, lt_desc_t op, const void *alpha, const void *A, lt_layout_t a, const void *B,            \
     lt_layout_t b, const void *beta, const void *C, lt_layout_t c, void *D, lt_layout_t d,                  \
     const lt_algo_t *algo, void *workspace, size_t workspace_bytes, cu_stream_t stream))

typedef struct lt_lib {
#define LT_MEMBER(name, sym, ret, params) ret(*name) params;
  LT_FUNCS(LT_MEMBER)
#undef LT_MEMBER
  void *handle;
  char path[256]; /* the name it was opened under */
} lt_lib_t;

/* ---- NVML ---- */
typedef int nvml_return_t;                 /* nvmlReturn_t */
typedef struct nvml_device_s *nvml_device_t; /* nvmlDevice_t */
enum {
  NVML_OK = 0,                   /* NVML_SUCCESS */
  NVML_ERR_NOT_SUPPORTED = 3,    /* NVML_ERROR_NOT_SUPPORTED */
  NVML_PCI_BUS_ID_LEN = 32       /* NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE */
};

#define NVML_FUNCS(X)                                                                                  \
  X(Init, "nvmlInit_v2", nvml_return_t, (void))                                                        \
  X(Shutdown, "nvmlShutdown", nvml_return_t, (void))                                                   \
  X(ErrorString, "nvmlErrorString", const char *, (nvml_return_t r))                                   \
  X(DeviceByPciBusId, "nvmlDeviceGetHandleByPciBusId_v2", nvml_return_t, (const char *bus, nvml_device_t *d)) \
  X(PowerUsage, "nvmlDeviceGetPowerUsage", nvml_return_t, (nvml_device_t d, unsigned *mw))             \
  X(TotalEnergy, "nvmlDeviceGetTotalEnergyConsumption", nvml_return_t, (nvml_device_t d, unsigned long long *mj)) \
  X(EnforcedPowerLimit, "nvmlDeviceGetEnforcedPowerLimit", nvml_return_t, (nvml_device_t d, unsigned *mw))

typedef struct nvml_lib {
#define NVML_MEMBER(name, sym, ret, params) ret(*name) params;
  NVML_FUNCS(NVML_MEMBER)
#undef NVML_MEMBER
  void *handle;
} nvml_lib_t;

#endif
