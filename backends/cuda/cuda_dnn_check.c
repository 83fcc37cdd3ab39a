/* Compile-time check of cuda_dnn_api.h against cuDNN's cudnn.h (built only
 * where that header is installed; nothing of it is linked into the plugin). */
#include <stddef.h>

#include <cudnn.h>

#include "cuda_dnn_api.h"

#define SAME(a, b) _Static_assert((long long)(a) == (long long)(b), #a " differs from cuDNN's " #b)
#define SAME_TYPE(a, b) _Static_assert(__builtin_types_compatible_p(a, b), #a " differs from cuDNN's " #b)
SAME(DNN_OK, CUDNN_STATUS_SUCCESS);
SAME(DNN_NCHW, CUDNN_TENSOR_NCHW);
SAME(DNN_FLOAT, CUDNN_DATA_FLOAT);
SAME(DNN_DOUBLE, CUDNN_DATA_DOUBLE);
SAME(DNN_HALF, CUDNN_DATA_HALF);
SAME(DNN_BFLOAT16, CUDNN_DATA_BFLOAT16);
SAME(DNN_CROSS_CORRELATION, CUDNN_CROSS_CORRELATION);
SAME(DNN_DEFAULT_MATH, CUDNN_DEFAULT_MATH);
SAME(DNN_TENSOR_OP_MATH, CUDNN_TENSOR_OP_MATH);
SAME(DNN_FMA_MATH, CUDNN_FMA_MATH);
SAME(DNN_FWD_ALGO_COUNT, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
_Static_assert(sizeof(dnn_status_t) == sizeof(cudnnStatus_t), "cudnnStatus_t size");
_Static_assert(sizeof(int) == sizeof(cudnnDataType_t) && sizeof(int) == sizeof(cudnnTensorFormat_t) &&
                   sizeof(int) == sizeof(cudnnMathType_t) && sizeof(int) == sizeof(cudnnConvolutionMode_t) &&
                   sizeof(int) == sizeof(cudnnConvolutionFwdAlgo_t) && sizeof(int) == sizeof(cudnnDeterminism_t),
               "enum sizes");
_Static_assert(sizeof(dnn_perf_t) == sizeof(cudnnConvolutionFwdAlgoPerf_t), "cudnnConvolutionFwdAlgoPerf_t size");
SAME(offsetof(dnn_perf_t, status), offsetof(cudnnConvolutionFwdAlgoPerf_t, status));
SAME(offsetof(dnn_perf_t, time), offsetof(cudnnConvolutionFwdAlgoPerf_t, time));
SAME(offsetof(dnn_perf_t, memory), offsetof(cudnnConvolutionFwdAlgoPerf_t, memory));
SAME(offsetof(dnn_perf_t, determinism), offsetof(cudnnConvolutionFwdAlgoPerf_t, determinism));
SAME(offsetof(dnn_perf_t, math_type), offsetof(cudnnConvolutionFwdAlgoPerf_t, mathType));
/* Return types and parameter lists, and that each symbol exists under the name the table binds. */
SAME_TYPE(__typeof__(cudnnGetVersion()), size_t);
SAME_TYPE(__typeof__(cudnnGetErrorString(CUDNN_STATUS_SUCCESS)), const char *);
SAME_TYPE(__typeof__(&cudnnSetStream), cudnnStatus_t (*)(cudnnHandle_t, cudaStream_t));
SAME_TYPE(__typeof__(&cudnnSetTensor4dDescriptor),
          cudnnStatus_t (*)(cudnnTensorDescriptor_t, cudnnTensorFormat_t, cudnnDataType_t, int, int, int, int));
SAME_TYPE(__typeof__(&cudnnSetFilter4dDescriptor),
          cudnnStatus_t (*)(cudnnFilterDescriptor_t, cudnnDataType_t, cudnnTensorFormat_t, int, int, int, int));
SAME_TYPE(__typeof__(&cudnnSetConvolution2dDescriptor),
          cudnnStatus_t (*)(cudnnConvolutionDescriptor_t, int, int, int, int, int, int, cudnnConvolutionMode_t,
                            cudnnDataType_t));
SAME_TYPE(__typeof__(&cudnnSetConvolutionGroupCount), cudnnStatus_t (*)(cudnnConvolutionDescriptor_t, int));
SAME_TYPE(__typeof__(&cudnnSetConvolutionMathType), cudnnStatus_t (*)(cudnnConvolutionDescriptor_t, cudnnMathType_t));
SAME_TYPE(__typeof__(&cudnnGetConvolution2dForwardOutputDim),
          cudnnStatus_t (*)(const cudnnConvolutionDescriptor_t, const cudnnTensorDescriptor_t,
                            const cudnnFilterDescriptor_t, int *, int *, int *, int *));
SAME_TYPE(__typeof__(&cudnnGetConvolutionForwardAlgorithm_v7),
          cudnnStatus_t (*)(cudnnHandle_t, const cudnnTensorDescriptor_t, const cudnnFilterDescriptor_t,
                            const cudnnConvolutionDescriptor_t, const cudnnTensorDescriptor_t, const int, int *,
                            cudnnConvolutionFwdAlgoPerf_t *));
SAME_TYPE(__typeof__(&cudnnFindConvolutionForwardAlgorithmEx),
          cudnnStatus_t (*)(cudnnHandle_t, const cudnnTensorDescriptor_t, const void *, const cudnnFilterDescriptor_t,
                            const void *, const cudnnConvolutionDescriptor_t, const cudnnTensorDescriptor_t, void *,
                            const int, int *, cudnnConvolutionFwdAlgoPerf_t *, void *, size_t));
SAME_TYPE(__typeof__(&cudnnConvolutionForward),
          cudnnStatus_t (*)(cudnnHandle_t, const void *, const cudnnTensorDescriptor_t, const void *,
                            const cudnnFilterDescriptor_t, const void *, const cudnnConvolutionDescriptor_t,
                            cudnnConvolutionFwdAlgo_t, void *, size_t, const void *, const cudnnTensorDescriptor_t,
                            void *));
SAME_TYPE(__typeof__(&cudnnAddTensor),
          cudnnStatus_t (*)(cudnnHandle_t, const void *, const cudnnTensorDescriptor_t, const void *, const void *,
                            const cudnnTensorDescriptor_t, void *));
SAME_TYPE(__typeof__(&cudnnCreate), cudnnStatus_t (*)(cudnnHandle_t *));
SAME_TYPE(__typeof__(&cudnnCreateTensorDescriptor), cudnnStatus_t (*)(cudnnTensorDescriptor_t *));
SAME_TYPE(__typeof__(&cudnnCreateFilterDescriptor), cudnnStatus_t (*)(cudnnFilterDescriptor_t *));
SAME_TYPE(__typeof__(&cudnnCreateConvolutionDescriptor), cudnnStatus_t (*)(cudnnConvolutionDescriptor_t *));
