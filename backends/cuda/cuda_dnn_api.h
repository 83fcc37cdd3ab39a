/* The part of cuDNN's legacy convolution API the cuda plugin uses, declared
 * here so that the plugin builds without cuDNN's headers and opens the library
 * at run time (dlopen + a symbol table, as cuda_blas_api.h does for cuBLASLt).
 * Types and constants follow cudnn.h of cuDNN 8 and 9 (the values used here are
 * the same in both); cuda_dnn_check.c compares them with the real headers
 * where those are installed. */
#ifndef FLAGOS_CUDA_DNN_API_H
#define FLAGOS_CUDA_DNN_API_H

#include <stddef.h>

#include "cuda_api.h"

typedef int dnn_status_t;                       /* cudnnStatus_t */
typedef struct dnn_ctx_s *dnn_handle_t;         /* cudnnHandle_t */
typedef struct dnn_tensor_s *dnn_tensor_t;      /* cudnnTensorDescriptor_t */
typedef struct dnn_filter_s *dnn_filter_t;      /* cudnnFilterDescriptor_t */
typedef struct dnn_conv_s *dnn_conv_t;          /* cudnnConvolutionDescriptor_t */
typedef struct dnn_perf {                       /* cudnnConvolutionFwdAlgoPerf_t */
  int algo;                                     /* cudnnConvolutionFwdAlgo_t */
  dnn_status_t status;
  float time;                                   /* ms, from the Find functions */
  size_t memory;                                /* workspace bytes */
  int determinism;                              /* cudnnDeterminism_t */
  int math_type;                                /* cudnnMathType_t */
  int reserved[3];
} dnn_perf_t;

enum {
  DNN_OK = 0,                  /* CUDNN_STATUS_SUCCESS */
  DNN_NCHW = 0,                /* CUDNN_TENSOR_NCHW */
  DNN_FLOAT = 0,               /* CUDNN_DATA_FLOAT */
  DNN_DOUBLE = 1,              /* CUDNN_DATA_DOUBLE */
  DNN_HALF = 2,                /* CUDNN_DATA_HALF */
  DNN_BFLOAT16 = 9,            /* CUDNN_DATA_BFLOAT16 */
  DNN_CROSS_CORRELATION = 1,   /* CUDNN_CROSS_CORRELATION: ONNX Conv does not flip the kernel */
  DNN_DEFAULT_MATH = 0,        /* CUDNN_DEFAULT_MATH */
  DNN_TENSOR_OP_MATH = 1,      /* CUDNN_TENSOR_OP_MATH */
  DNN_FMA_MATH = 3,            /* CUDNN_FMA_MATH: no tensor cores (so no TF32 for f32) */
  DNN_FWD_ALGO_COUNT = 8       /* CUDNN_CONVOLUTION_FWD_ALGO_COUNT */
};

/* One entry per cuDNN function: member, symbol, return type, parameters. */
#define DNN_FUNCS(X)                                                                                          \
  X(GetVersion, "cudnnGetVersion", size_t, (void))                                                            \
  X(GetErrorString, "cudnnGetErrorString", const char *, (dnn_status_t st))                                  \
  X(Create, "cudnnCreate", dnn_status_t, (dnn_handle_t * h))                                                  \
  X(Destroy, "cudnnDestroy", dnn_status_t, (dnn_handle_t h))                                                  \
  X(SetStream, "cudnnSetStream", dnn_status_t, (dnn_handle_t h, cu_stream_t s))                               \
  X(CreateTensor, "cudnnCreateTensorDescriptor", dnn_status_t, (dnn_tensor_t * d))                            \
  X(SetTensor4d, "cudnnSetTensor4dDescriptor", dnn_status_t,                                                  \
    (dnn_tensor_t d, int format, int type, int n, int c, int h, int w))                                       \
  X(DestroyTensor, "cudnnDestroyTensorDescriptor", dnn_status_t, (dnn_tensor_t d))                            \
  X(CreateFilter, "cudnnCreateFilterDescriptor", dnn_status_t, (dnn_filter_t * d))                            \
  X(SetFilter4d, "cudnnSetFilter4dDescriptor", dnn_status_t,                                                  \
    (dnn_filter_t d, int type, int format, int k, int c, int h, int w))                                       \
  X(DestroyFilter, "cudnnDestroyFilterDescriptor", dnn_status_t, (dnn_filter_t d))                            \
  X(CreateConv, "cudnnCreateConvolutionDescriptor", dnn_status_t, (dnn_conv_t * d))                           \
  X(SetConv2d, "cudnnSetConvolution2dDescriptor", dnn_status_t,                                               \
    (dnn_conv_t d, int pad_h, int pad_w, int u, int v, int dil_h, int dil_w, int mode, int compute))          \
  X(SetConvGroups, "cudnnSetConvolutionGroupCount", dnn_status_t, (dnn_conv_t d, int groups))                 \
  X(SetConvMath, "cudnnSetConvolutionMathType", dnn_status_t, (dnn_conv_t d, int math))                       \
  X(DestroyConv, "cudnnDestroyConvolutionDescriptor", dnn_status_t, (dnn_conv_t d))                           \
  X(OutputDim, "cudnnGetConvolution2dForwardOutputDim", dnn_status_t,                                         \
    (dnn_conv_t d, dnn_tensor_t x, dnn_filter_t w, int *n, int *c, int *h, int *wd))                          \
  X(GetAlgo, "cudnnGetConvolutionForwardAlgorithm_v7", dnn_status_t,                                          \
    (dnn_handle_t h, dnn_tensor_t x, dnn_filter_t w, dnn_conv_t d, dnn_tensor_t y, int requested, int *returned, \
     dnn_perf_t *results))                                                                                    \
  X(FindAlgo, "cudnnFindConvolutionForwardAlgorithmEx", dnn_status_t,                                        \
    (dnn_handle_t h, dnn_tensor_t xd, const void *x, dnn_filter_t wd, const void *w, dnn_conv_t d,            \
     dnn_tensor_t yd, void *y, int requested, int *returned, dnn_perf_t *results, void *ws, size_t ws_bytes)) \
  X(Forward, "cudnnConvolutionForward", dnn_status_t,                                                         \
    (dnn_handle_t h, const void *alpha, dnn_tensor_t xd, const void *x, dnn_filter_t wd, const void *w,       \
     dnn_conv_t d, int algo, void *ws, size_t ws_bytes, const void *beta, dnn_tensor_t yd, void *y))          \
  X(AddTensor, "cudnnAddTensor", dnn_status_t,                                                                \
    (dnn_handle_t h, const void *alpha, dnn_tensor_t ad, const void *a, const void *beta, dnn_tensor_t cd,    \
     void *c))

typedef struct dnn_lib {
#define DNN_MEMBER(name, sym, ret, params) ret(*name) params;
  DNN_FUNCS(DNN_MEMBER)
#undef DNN_MEMBER
  void *handle;
  char path[256]; /* the name it was opened under */
} dnn_lib_t;

#endif
