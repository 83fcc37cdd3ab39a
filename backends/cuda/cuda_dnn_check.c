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
/* The graph API. */
SAME(DNN_BD_POINTWISE, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
SAME(DNN_BD_CONVOLUTION, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
SAME(DNN_BD_ENGINE, CUDNN_BACKEND_ENGINE_DESCRIPTOR);
SAME(DNN_BD_ENGINECFG, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
SAME(DNN_BD_ENGINEHEUR, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
SAME(DNN_BD_PLAN, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
SAME(DNN_BD_OP_CONV_FWD, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
SAME(DNN_BD_OP_POINTWISE, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
SAME(DNN_BD_OPGRAPH, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
SAME(DNN_BD_VARPACK, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
SAME(DNN_BD_TENSOR, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
SAME(DNN_T_HANDLE, CUDNN_TYPE_HANDLE);
SAME(DNN_T_DATA_TYPE, CUDNN_TYPE_DATA_TYPE);
SAME(DNN_T_BOOLEAN, CUDNN_TYPE_BOOLEAN);
SAME(DNN_T_INT64, CUDNN_TYPE_INT64);
SAME(DNN_T_FLOAT, CUDNN_TYPE_FLOAT);
SAME(DNN_T_DOUBLE, CUDNN_TYPE_DOUBLE);
SAME(DNN_T_VOID_PTR, CUDNN_TYPE_VOID_PTR);
SAME(DNN_T_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE);
SAME(DNN_T_HEUR_MODE, CUDNN_TYPE_HEUR_MODE);
SAME(DNN_T_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE);
SAME(DNN_T_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE);
SAME(DNN_T_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR);
SAME(DNN_A_POINTWISE_MODE, CUDNN_ATTR_POINTWISE_MODE);
SAME(DNN_A_POINTWISE_PREC, CUDNN_ATTR_POINTWISE_MATH_PREC);
SAME(DNN_A_CONV_COMP_TYPE, CUDNN_ATTR_CONVOLUTION_COMP_TYPE);
SAME(DNN_A_CONV_MODE, CUDNN_ATTR_CONVOLUTION_CONV_MODE);
SAME(DNN_A_CONV_DILATIONS, CUDNN_ATTR_CONVOLUTION_DILATIONS);
SAME(DNN_A_CONV_STRIDES, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES);
SAME(DNN_A_CONV_POST_PAD, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS);
SAME(DNN_A_CONV_PRE_PAD, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS);
SAME(DNN_A_CONV_DIMS, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS);
SAME(DNN_A_HEUR_MODE, CUDNN_ATTR_ENGINEHEUR_MODE);
SAME(DNN_A_HEUR_GRAPH, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
SAME(DNN_A_HEUR_RESULTS, CUDNN_ATTR_ENGINEHEUR_RESULTS);
SAME(DNN_A_CFG_ENGINE, CUDNN_ATTR_ENGINECFG_ENGINE);
SAME(DNN_A_PLAN_HANDLE, CUDNN_ATTR_EXECUTION_PLAN_HANDLE);
SAME(DNN_A_PLAN_CFG, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
SAME(DNN_A_PLAN_WS, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE);
SAME(DNN_A_CONV_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA);
SAME(DNN_A_CONV_BETA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA);
SAME(DNN_A_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC);
SAME(DNN_A_CONV_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W);
SAME(DNN_A_CONV_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X);
SAME(DNN_A_CONV_Y, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y);
SAME(DNN_A_PW_DESC, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR);
SAME(DNN_A_PW_X, CUDNN_ATTR_OPERATION_POINTWISE_XDESC);
SAME(DNN_A_PW_B, CUDNN_ATTR_OPERATION_POINTWISE_BDESC);
SAME(DNN_A_PW_Y, CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
SAME(DNN_A_GRAPH_HANDLE, CUDNN_ATTR_OPERATIONGRAPH_HANDLE);
SAME(DNN_A_GRAPH_OPS, CUDNN_ATTR_OPERATIONGRAPH_OPS);
SAME(DNN_A_TENSOR_ALIGN, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT);
SAME(DNN_A_TENSOR_TYPE, CUDNN_ATTR_TENSOR_DATA_TYPE);
SAME(DNN_A_TENSOR_DIMS, CUDNN_ATTR_TENSOR_DIMENSIONS);
SAME(DNN_A_TENSOR_STRIDES, CUDNN_ATTR_TENSOR_STRIDES);
SAME(DNN_A_TENSOR_ID, CUDNN_ATTR_TENSOR_UNIQUE_ID);
SAME(DNN_A_TENSOR_VIRTUAL, CUDNN_ATTR_TENSOR_IS_VIRTUAL);
SAME(DNN_A_PACK_IDS, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
SAME(DNN_A_PACK_PTRS, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
SAME(DNN_A_PACK_WS, CUDNN_ATTR_VARIANT_PACK_WORKSPACE);
SAME(DNN_A_ENGINE_INDEX, CUDNN_ATTR_ENGINE_GLOBAL_INDEX);
SAME(DNN_A_ENGINE_NOTES, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE);
SAME(DNN_HEUR_MODE_A, CUDNN_HEUR_MODE_A);
SAME(DNN_POINTWISE_ADD, CUDNN_POINTWISE_ADD);
SAME(DNN_NOTE_TENSOR_CORE, CUDNN_NUMERICAL_NOTE_TENSOR_CORE);
SAME(DNN_NOTE_DOWN_CONVERT, CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS);
SAME(DNN_NOTE_COUNT, CUDNN_NUMERICAL_NOTE_TYPE_COUNT);
_Static_assert(sizeof(int) == sizeof(cudnnBackendDescriptorType_t) && sizeof(int) == sizeof(cudnnBackendAttributeName_t) &&
                   sizeof(int) == sizeof(cudnnBackendAttributeType_t) && sizeof(int) == sizeof(cudnnBackendNumericalNote_t),
               "graph API enum sizes");
SAME_TYPE(dnn_bd_t, cudnnBackendDescriptor_t);
SAME_TYPE(__typeof__(&cudnnBackendCreateDescriptor),
          cudnnStatus_t (*)(cudnnBackendDescriptorType_t, cudnnBackendDescriptor_t *));
SAME_TYPE(__typeof__(&cudnnBackendSetAttribute),
          cudnnStatus_t (*)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t, cudnnBackendAttributeType_t, int64_t,
                            const void *));
SAME_TYPE(__typeof__(&cudnnBackendGetAttribute),
          cudnnStatus_t (*)(cudnnBackendDescriptor_t const, cudnnBackendAttributeName_t, cudnnBackendAttributeType_t,
                            int64_t, int64_t *, void *));
SAME_TYPE(__typeof__(&cudnnBackendExecute),
          cudnnStatus_t (*)(cudnnHandle_t, cudnnBackendDescriptor_t, cudnnBackendDescriptor_t));
SAME_TYPE(__typeof__(&cudnnBackendFinalize), cudnnStatus_t (*)(cudnnBackendDescriptor_t));
SAME_TYPE(__typeof__(&cudnnBackendDestroyDescriptor), cudnnStatus_t (*)(cudnnBackendDescriptor_t));
