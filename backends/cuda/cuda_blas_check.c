/* Compile-time check of cuda_blas_api.h against the toolkit's cublasLt.h, and
 * against nvml.h where that is installed too (built only where the toolkit is;
 * nothing of it is linked into the plugin). */
#include <stddef.h>

#include <cublasLt.h>

#include "cuda_blas_api.h"

#define SAME(a, b) _Static_assert((long long)(a) == (long long)(b), #a " differs from the toolkit's " #b)
#define SAME_TYPE(a, b) _Static_assert(__builtin_types_compatible_p(a, b), #a " differs from the toolkit's " #b)
SAME(LT_OK, CUBLAS_STATUS_SUCCESS);
SAME(LT_ERR_ALLOC_FAILED, CUBLAS_STATUS_ALLOC_FAILED);
SAME(LT_ERR_NOT_SUPPORTED, CUBLAS_STATUS_NOT_SUPPORTED);
SAME(LT_OP_N, CUBLAS_OP_N);
SAME(LT_OP_T, CUBLAS_OP_T);
SAME(LT_R_32F, CUDA_R_32F);
SAME(LT_R_64F, CUDA_R_64F);
SAME(LT_R_16F, CUDA_R_16F);
SAME(LT_R_16BF, CUDA_R_16BF);
SAME(LT_COMPUTE_32F, CUBLAS_COMPUTE_32F);
SAME(LT_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_32F_FAST_TF32);
SAME(LT_COMPUTE_64F, CUBLAS_COMPUTE_64F);
SAME(LT_DESC_TRANSA, CUBLASLT_MATMUL_DESC_TRANSA);
SAME(LT_DESC_TRANSB, CUBLASLT_MATMUL_DESC_TRANSB);
SAME(LT_DESC_EPILOGUE, CUBLASLT_MATMUL_DESC_EPILOGUE);
SAME(LT_DESC_BIAS_POINTER, CUBLASLT_MATMUL_DESC_BIAS_POINTER);
SAME(LT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_DEFAULT);
SAME(LT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_BIAS);
_Static_assert(sizeof(uint32_t) == sizeof(cublasLtEpilogue_t), "cublasLtEpilogue_t size");
SAME(LT_LAYOUT_BATCH_COUNT, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT);
SAME(LT_LAYOUT_BATCH_STRIDE, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
SAME(LT_PREF_MAX_WORKSPACE, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
SAME(LT_PREF_ALIGN_A, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES);
SAME(LT_PREF_ALIGN_B, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES);
SAME(LT_PREF_ALIGN_C, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES);
SAME(LT_PREF_ALIGN_D, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES);
_Static_assert(sizeof(lt_status_t) == sizeof(cublasStatus_t), "cublasStatus_t size");
_Static_assert(sizeof(int) == sizeof(cublasComputeType_t) && sizeof(int) == sizeof(cudaDataType_t) &&
                   sizeof(int) == sizeof(cublasLtMatmulDescAttributes_t) &&
                   sizeof(int) == sizeof(cublasLtMatrixLayoutAttribute_t) &&
                   sizeof(int) == sizeof(cublasLtMatmulPreferenceAttributes_t),
               "enum sizes");
_Static_assert(sizeof(lt_algo_t) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t size");
_Static_assert(sizeof(lt_heuristic_t) == sizeof(cublasLtMatmulHeuristicResult_t), "heuristic result size");
SAME(offsetof(lt_heuristic_t, workspace_size), offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize));
SAME(offsetof(lt_heuristic_t, state), offsetof(cublasLtMatmulHeuristicResult_t, state));
SAME(offsetof(lt_heuristic_t, waves_count), offsetof(cublasLtMatmulHeuristicResult_t, wavesCount));
/* Return types, and that each symbol exists under the name the table binds. */
SAME_TYPE(__typeof__(cublasLtGetVersion()), size_t);
SAME_TYPE(__typeof__(cublasLtGetStatusName(CUBLAS_STATUS_SUCCESS)), const char *);
SAME_TYPE(__typeof__(&cublasLtMatmulAlgoGetHeuristic),
          cublasStatus_t (*)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                             cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatmulPreference_t, int,
                             cublasLtMatmulHeuristicResult_t[], int *));
SAME_TYPE(__typeof__(&cublasLtMatrixLayoutCreate),
          cublasStatus_t (*)(cublasLtMatrixLayout_t *, cudaDataType, uint64_t, uint64_t, int64_t));
SAME_TYPE(__typeof__(&cublasLtMatmul),
          cublasStatus_t (*)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void *, const void *,
                             cublasLtMatrixLayout_t, const void *, cublasLtMatrixLayout_t, const void *, const void *,
                             cublasLtMatrixLayout_t, void *, cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t *,
                             void *, size_t, cudaStream_t));

#if __has_include(<nvml.h>)
#include <nvml.h>
SAME(NVML_OK, NVML_SUCCESS);
SAME(NVML_ERR_NOT_SUPPORTED, NVML_ERROR_NOT_SUPPORTED);
SAME(NVML_PCI_BUS_ID_LEN, NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE);
_Static_assert(sizeof(nvml_return_t) == sizeof(nvmlReturn_t), "nvmlReturn_t size");
SAME_TYPE(__typeof__(&nvmlDeviceGetTotalEnergyConsumption), nvmlReturn_t (*)(nvmlDevice_t, unsigned long long *));
SAME_TYPE(__typeof__(&nvmlDeviceGetPowerUsage), nvmlReturn_t (*)(nvmlDevice_t, unsigned int *));
SAME_TYPE(__typeof__(&nvmlDeviceGetEnforcedPowerLimit), nvmlReturn_t (*)(nvmlDevice_t, unsigned int *));
SAME_TYPE(__typeof__(&nvmlDeviceGetHandleByPciBusId_v2), nvmlReturn_t (*)(const char *, nvmlDevice_t *));
#endif
