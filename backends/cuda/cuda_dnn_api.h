/* The part of cuDNN's legacy convolution API the cuda plugin uses, declared
 * here so that the plugin builds without cuDNN's headers and opens the library
 * at run time (dlopen + a symbol table, as cuda_blas_api.h does for cuBLASLt).
 * Types and constants follow cudnn.h of cuDNN 8 and 9 (the values used here are
 * the same in both); cuda_dnn_check.c compares them with the real headers
 * where those are installed. */
#ifndef FLAGOS_CUDA_DNN_API_H
#define FLAGOS_CUDA_DNN_API_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_api.h"

typedef int dnn_status_t;                       /* cudnnStatus_t */
typedef struct dnn_ctx_s *dnn_handle_t;         /* cudnnHandle_t */
typedef struct dnn_tensor_s *dnn_tensor_t;      /* cudnnTensorDescriptor_t */
typedef struct dnn_filter_s *dnn_filter_t;      /* cudnnFilterDescriptor_t */
typedef struct dnn_conv_s *dnn_conv_t;          /* cudnnConvolutionDescriptor_t */
typedef void *dnn_bd_t;                         /* cudnnBackendDescriptor_t (the graph API) */
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

/* The graph ("backend") API: descriptor types, attribute types and names,
 * and the enum values used with them (cudnn_graph.h of cuDNN 9; the same in 8). */
enum {
  DNN_BD_POINTWISE = 0,         /* CUDNN_BACKEND_POINTWISE_DESCRIPTOR */
  DNN_BD_CONVOLUTION = 1,       /* CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR */
  DNN_BD_ENGINE = 2,            /* CUDNN_BACKEND_ENGINE_DESCRIPTOR */
  DNN_BD_ENGINECFG = 3,         /* CUDNN_BACKEND_ENGINECFG_DESCRIPTOR */
  DNN_BD_ENGINEHEUR = 4,        /* CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR */
  DNN_BD_PLAN = 5,              /* CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR */
  DNN_BD_OP_CONV_FWD = 10,      /* CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR */
  DNN_BD_OP_POINTWISE = 13,     /* CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR */
  DNN_BD_OPGRAPH = 15,          /* CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR */
  DNN_BD_VARPACK = 16,          /* CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR */
  DNN_BD_TENSOR = 17,           /* CUDNN_BACKEND_TENSOR_DESCRIPTOR */

  DNN_T_HANDLE = 0,             /* CUDNN_TYPE_HANDLE */
  DNN_T_DATA_TYPE = 1,          /* CUDNN_TYPE_DATA_TYPE */
  DNN_T_BOOLEAN = 2,            /* CUDNN_TYPE_BOOLEAN */
  DNN_T_INT64 = 3,              /* CUDNN_TYPE_INT64 */
  DNN_T_FLOAT = 4,              /* CUDNN_TYPE_FLOAT */
  DNN_T_DOUBLE = 5,             /* CUDNN_TYPE_DOUBLE */
  DNN_T_VOID_PTR = 6,           /* CUDNN_TYPE_VOID_PTR */
  DNN_T_CONV_MODE = 7,          /* CUDNN_TYPE_CONVOLUTION_MODE */
  DNN_T_HEUR_MODE = 8,          /* CUDNN_TYPE_HEUR_MODE */
  DNN_T_NUMERICAL_NOTE = 11,    /* CUDNN_TYPE_NUMERICAL_NOTE */
  DNN_T_POINTWISE_MODE = 14,    /* CUDNN_TYPE_POINTWISE_MODE */
  DNN_T_DESCRIPTOR = 15,        /* CUDNN_TYPE_BACKEND_DESCRIPTOR */

  DNN_A_POINTWISE_MODE = 0,     /* CUDNN_ATTR_POINTWISE_MODE */
  DNN_A_POINTWISE_PREC = 1,     /* CUDNN_ATTR_POINTWISE_MATH_PREC */
  DNN_A_CONV_COMP_TYPE = 100,   /* CUDNN_ATTR_CONVOLUTION_COMP_TYPE */
  DNN_A_CONV_MODE = 101,        /* CUDNN_ATTR_CONVOLUTION_CONV_MODE */
  DNN_A_CONV_DILATIONS = 102,   /* CUDNN_ATTR_CONVOLUTION_DILATIONS */
  DNN_A_CONV_STRIDES = 103,     /* CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES */
  DNN_A_CONV_POST_PAD = 104,    /* CUDNN_ATTR_CONVOLUTION_POST_PADDINGS */
  DNN_A_CONV_PRE_PAD = 105,     /* CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS */
  DNN_A_CONV_DIMS = 106,        /* CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS */
  DNN_A_HEUR_MODE = 200,        /* CUDNN_ATTR_ENGINEHEUR_MODE */
  DNN_A_HEUR_GRAPH = 201,       /* CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH */
  DNN_A_HEUR_RESULTS = 202,     /* CUDNN_ATTR_ENGINEHEUR_RESULTS */
  DNN_A_CFG_ENGINE = 300,       /* CUDNN_ATTR_ENGINECFG_ENGINE */
  DNN_A_PLAN_HANDLE = 400,      /* CUDNN_ATTR_EXECUTION_PLAN_HANDLE */
  DNN_A_PLAN_CFG = 401,         /* CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG */
  DNN_A_PLAN_WS = 402,          /* CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE */
  DNN_A_CONV_ALPHA = 700,       /* CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA */
  DNN_A_CONV_BETA = 701,        /* CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA */
  DNN_A_CONV_DESC = 702,        /* CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC */
  DNN_A_CONV_W = 703,           /* CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W */
  DNN_A_CONV_X = 704,           /* CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X */
  DNN_A_CONV_Y = 705,           /* CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y */
  DNN_A_PW_DESC = 750,          /* CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR */
  DNN_A_PW_X = 751,             /* CUDNN_ATTR_OPERATION_POINTWISE_XDESC */
  DNN_A_PW_B = 752,             /* CUDNN_ATTR_OPERATION_POINTWISE_BDESC */
  DNN_A_PW_Y = 753,             /* CUDNN_ATTR_OPERATION_POINTWISE_YDESC */
  DNN_A_GRAPH_HANDLE = 800,     /* CUDNN_ATTR_OPERATIONGRAPH_HANDLE */
  DNN_A_GRAPH_OPS = 801,        /* CUDNN_ATTR_OPERATIONGRAPH_OPS */
  DNN_A_TENSOR_ALIGN = 900,     /* CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT */
  DNN_A_TENSOR_TYPE = 901,      /* CUDNN_ATTR_TENSOR_DATA_TYPE */
  DNN_A_TENSOR_DIMS = 902,      /* CUDNN_ATTR_TENSOR_DIMENSIONS */
  DNN_A_TENSOR_STRIDES = 903,   /* CUDNN_ATTR_TENSOR_STRIDES */
  DNN_A_TENSOR_ID = 906,        /* CUDNN_ATTR_TENSOR_UNIQUE_ID */
  DNN_A_TENSOR_VIRTUAL = 907,   /* CUDNN_ATTR_TENSOR_IS_VIRTUAL */
  DNN_A_PACK_IDS = 1000,        /* CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS */
  DNN_A_PACK_PTRS = 1001,       /* CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS */
  DNN_A_PACK_WS = 1003,         /* CUDNN_ATTR_VARIANT_PACK_WORKSPACE */
  DNN_A_ENGINE_INDEX = 1301,    /* CUDNN_ATTR_ENGINE_GLOBAL_INDEX */
  DNN_A_ENGINE_NOTES = 1303,    /* CUDNN_ATTR_ENGINE_NUMERICAL_NOTE */

  DNN_HEUR_MODE_A = 3,          /* CUDNN_HEUR_MODE_A */
  DNN_POINTWISE_ADD = 0,        /* CUDNN_POINTWISE_ADD */
  DNN_NOTE_TENSOR_CORE = 0,     /* CUDNN_NUMERICAL_NOTE_TENSOR_CORE */
  DNN_NOTE_DOWN_CONVERT = 1,    /* CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS */
  DNN_NOTE_COUNT = 10           /* CUDNN_NUMERICAL_NOTE_TYPE_COUNT (of cuDNN 9; a bound for reading notes) */
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
  X(Forward, "cudnnConvolutionForward", dnn_status_t,                                                         \
    (dnn_handle_t h, const void *alpha, dnn_tensor_t xd, const void *x, dnn_filter_t wd, const void *w,       \
     dnn_conv_t d, int algo, void *ws, size_t ws_bytes, const void *beta, dnn_tensor_t yd, void *y))          \
  X(AddTensor, "cudnnAddTensor", dnn_status_t,                                                                \
    (dnn_handle_t h, const void *alpha, dnn_tensor_t ad, const void *a, const void *beta, dnn_tensor_t cd,    \
     void *c))                                                                                                \
  X(BdCreate, "cudnnBackendCreateDescriptor", dnn_status_t, (int type, dnn_bd_t *d))                          \
  X(BdDestroy, "cudnnBackendDestroyDescriptor", dnn_status_t, (dnn_bd_t d))                                   \
  X(BdFinalize, "cudnnBackendFinalize", dnn_status_t, (dnn_bd_t d))                                           \
  X(BdSet, "cudnnBackendSetAttribute", dnn_status_t,                                                          \
    (dnn_bd_t d, int name, int type, int64_t count, const void *values))                                      \
  X(BdGet, "cudnnBackendGetAttribute", dnn_status_t,                                                          \
    (dnn_bd_t d, int name, int type, int64_t requested, int64_t *count, void *values))                        \
  X(BdExecute, "cudnnBackendExecute", dnn_status_t, (dnn_handle_t h, dnn_bd_t plan, dnn_bd_t pack))

typedef struct dnn_lib {
#define DNN_MEMBER(name, sym, ret, params) ret(*name) params;
  DNN_FUNCS(DNN_MEMBER)
#undef DNN_MEMBER
  void *handle;
  char path[256]; /* the name it was opened under */
} dnn_lib_t;

#endif
