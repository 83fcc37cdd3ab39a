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
  X(clEnqueueBarrierWithWaitList) X(clWaitForEvents) X(clReleaseEvent) X(clGetEventProfilingInfo)          \
  X(clRetainMemObject) X(clGetExtensionFunctionAddressForPlatform)

typedef struct ocl_api {
  void *lib;
#define OCL_DECL(f) __typeof__(&f) f;
  OCL_FUNCS(OCL_DECL)
#undef OCL_DECL
} ocl_api_t;

/* cl_khr_command_buffer, declared here (the provisional extension's entry
 * points as of its 0.9 revisions) so the plugin builds against any
 * opencl-headers; resolved per platform with
 * clGetExtensionFunctionAddressForPlatform. */
typedef struct ocl_cb_s *ocl_cb_t; /* cl_command_buffer_khr */
typedef struct ocl_cb_api {
  ocl_cb_t (*create)(cl_uint n_queues, const cl_command_queue *queues, const cl_ulong *props, cl_int *err);
  cl_int (*finalize)(ocl_cb_t cb);
  cl_int (*release)(ocl_cb_t cb);
  cl_int (*enqueue)(cl_uint n_queues, cl_command_queue *queues, ocl_cb_t cb, cl_uint n_wait, const cl_event *wait,
                    cl_event *ev);
  cl_int (*nd_range)(ocl_cb_t cb, cl_command_queue q, const cl_ulong *props, cl_kernel k, cl_uint dims,
                     const size_t *offset, const size_t *global, const size_t *local, cl_uint n_sync,
                     const cl_uint *sync, cl_uint *sync_point, void **mutable_handle);
  bool simultaneous; /* CL_COMMAND_BUFFER_CAPABILITY_SIMULTANEOUS_USE_KHR */
} ocl_cb_api_t;

/* Free device buffers by size class (ocl_alloc.c). */
typedef struct ocl_pool {
  struct ocl_buf **free; /* stacks, one per class, linked through ocl_buf.next */
  int n_classes;
  size_t cached_bytes;
} ocl_pool_t;

typedef struct ocl_capture ocl_capture_t;
typedef struct ocl_gemm_dev ocl_gemm_dev_t; /* ocl_gemm.c's per-device kernels and workspace */
typedef struct ocl_gemm_args ocl_gemm_args_t; /* a product's checked arguments (below) */
typedef struct ocl_conv_args ocl_conv_args_t; /* a convolution's (below) */
typedef struct ocl_conv_dev ocl_conv_dev_t;   /* ocl_conv.c's per-device im2col kernels and workspace */
typedef struct ocl_attn_dev ocl_attn_dev_t;   /* ocl_attention.c's per-device kernels */

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
  bool warp32;          /* an NVIDIA GPU: work-groups run as warps of 32 taking PTX (programs get -DFO_WARP32) */
  bool vec_unaligned;   /* buffers may start on less than 32 bytes (programs get -DFO_VEC_UNALIGNED) */
  bool blas_params;     /* CLBlast parameters applied (ocl_blas.c, under its lock) */
  /* split-K products (ocl_blas_split.c, under its lock): the sum kernel and the workspace */
  cl_program split_prog;
  cl_kernel split_sum;
  cl_mem split_ws;
  size_t split_ws_size;
  ocl_gemm_dev_t *gemm; /* our gemm kernels (ocl_gemm.c), made at the first product */
  ocl_conv_dev_t *conv; /* our convolutions' im2col (ocl_conv.c), made at the first one */
  ocl_attn_dev_t *attn; /* our attention kernels (ocl_attention.c), made at the first call */
  /* Created on first use (under the state's lock). */
  bool ready;
  cl_context ctx;
  cl_command_queue queue; /* the default (NULL) stream */
  /* Queues are made without profiling (it costs on every command on some
   * drivers) until the first event_create asks for timings; the queue it
   * replaces stays alive until shutdown (a command buffer may name it). */
  bool profiling;
  cl_command_queue old_queue;
  bool cb_ok; /* cl_khr_command_buffer usable with this device's queues */
  ocl_cb_api_t cb;
  ocl_pool_t pool;          /* under the state's lock */
  ocl_capture_t *capture;   /* a capture on the default stream, or NULL */
} ocl_device_t;

typedef struct ocl_state {
  flagos_host_t host;
  char cache_dir[4096];
  ocl_api_t cl;
  int n_dev;
  ocl_device_t *dev;
  pthread_mutex_t lock;
  bool graphs_off; /* FLAGOS_OPENCL_GRAPHS=0 */
  bool cb_off;     /* FLAGOS_OPENCL_COMMAND_BUFFER=0 */
  int flush_every; /* FLAGOS_OPENCL_FLUSH: a replay's commands between clFlush calls, 0 none (ocl_graph.c) */
} ocl_state_t;

/* Device memory: flagos_devptr_t points to one of these. */
typedef struct ocl_buf {
  cl_mem mem;
  int dev;
  size_t size;      /* as asked; the cl_mem holds its size class's bytes */
  int cls;          /* size class (ocl_alloc.c), -1: not pooled */
  struct ocl_buf *next; /* in a free list */
} ocl_buf_t;

struct flagos_bstream_s {
  int dev;
  cl_command_queue queue;
  ocl_capture_t *capture; /* a capture on this stream, or NULL */
};

struct flagos_bevent_s {
  int dev;
  cl_event ev; /* the last recorded marker, or NULL */
};

#define OCL_ERR(s, code, ...) ((s)->host.status_new((code), __VA_ARGS__))

/* Whether the space-separated list (a device's extensions) holds word. */
bool ocl_has_word(const char *list, const char *word);

/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"). */
const char *ocl_error_name(cl_int e);
/* A status for a failed OpenCL call: "opencl backend: <what>: CL_... (n)". */
flagos_status_t ocl_fail(ocl_state_t *s, cl_int e, const char *what);
/* Checks the device index and creates its context and default queue if needed. */
flagos_status_t ocl_device_ready(ocl_state_t *s, int device, ocl_device_t **out);
/* The queue of stream st, or the default queue of device dev. */
cl_command_queue ocl_queue(ocl_state_t *s, flagos_bstream_t st, int dev);

/* ocl_alloc.c: the caching allocator behind mem_alloc and mem_free */
flagos_status_t ocl_alloc(ocl_state_t *s, ocl_device_t *d, int device, size_t bytes, ocl_buf_t **out);
void ocl_free(ocl_state_t *s, ocl_buf_t *b);
void ocl_pool_drain(ocl_state_t *s, ocl_device_t *d); /* under the lock */

/* ocl_graph.c: capture and replay (the ABI's capture_begin ... graph_destroy).
 * The capture of stream st (NULL: the device's default stream), or NULL. */
ocl_capture_t *ocl_capturing(ocl_state_t *s, flagos_bstream_t st, int dev);
/* Records a launch (arguments retained) or a library call (deep-copied; ours:
 * the product's arguments where our own gemm kernels took it, else NULL;
 * conv: the same for a convolution). */
flagos_status_t ocl_record_kernel(ocl_state_t *s, ocl_capture_t *c, flagos_bkernel_t k, const cl_mem *args,
                                  cl_uint n_args, size_t global, size_t local);
flagos_status_t ocl_record_call(ocl_state_t *s, ocl_capture_t *c, const flagos_libcall_t *call,
                                const ocl_gemm_args_t *ours, const ocl_conv_args_t *conv);
void ocl_cb_load(ocl_state_t *s, ocl_device_t *d);

/* A replay's timeline on the device (ocl_timeline.c, FLAGOS_OPENCL_TIMELINE=1
 * with FLAGOS_TRACE): an event a launch, in order, and the launch's kernel. */
typedef struct ocl_timeline {
  cl_event *ev;
  cl_kernel *k;
  int n, cap;
} ocl_timeline_t;
bool ocl_timeline_wanted(void);
/* The event slot of the next launch of k (NULL where out of memory: the launch goes without). */
cl_event *ocl_timeline_slot(ocl_timeline_t *t, cl_kernel k);
/* Waits for the launches, prints where the device's time went, and empties t. */
void ocl_timeline_report(ocl_state_t *s, ocl_timeline_t *t);
/* Releases the events a failed replay left, unreported. */
void ocl_timeline_discard(ocl_state_t *s, ocl_timeline_t *t);
void ocl_timeline_free(ocl_timeline_t *t);
/* Drops a capture that never reached capture_end (its stream is destroyed). */
void ocl_capture_discard(ocl_state_t *s, ocl_capture_t *c);
flagos_status_t ocl_capture_begin(void *state, int device, flagos_bstream_t st);
flagos_status_t ocl_capture_end(void *state, int device, flagos_bstream_t st, flagos_bgraph_t *out);
flagos_status_t ocl_graph_launch(void *state, flagos_bgraph_t g, flagos_bstream_t st);
void ocl_graph_destroy(void *state, flagos_bgraph_t g);

/* ocl_module.c */
/* Sets k's arguments and queues it on q (one step under the kernel's lock: a
 * cl_kernel's arguments are shared). */
cl_int ocl_kernel_run(ocl_state_t *s, flagos_bkernel_t k, const cl_mem *args, cl_uint n_args, size_t global,
                      size_t local, cl_command_queue q);
/* A new cl_kernel object for k's kernel (no arguments set), or NULL and *e. */
cl_kernel ocl_kernel_clone(ocl_state_t *s, flagos_bkernel_t k, cl_int *e);
flagos_status_t ocl_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out);
void ocl_module_unload(void *state, flagos_bmodule_t m);
flagos_status_t ocl_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out);
flagos_status_t ocl_launch(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args);
/* Builds OpenCL C source for device d through the binary cache (plugin-made programs such as ocl_gemm.c's). */
flagos_status_t ocl_program_build(ocl_state_t *s, ocl_device_t *d, const char *src, size_t len, cl_program *out);
/* The same; where `refused` is given, a compiler that rejects the source sets
 * it and returns no error (*out NULL, the source kept as <key>.failed.cl): for
 * optional kernels such as ocl_gemm.c's tensor-core one. */
flagos_status_t ocl_program_build_opt(ocl_state_t *s, ocl_device_t *d, const char *src, size_t len, cl_program *out,
                                      bool *refused);
/* The same, sm90a: the source's "//FOWG" instructions (sm_90a's wgmma, behind
 * a PTX comment) restored in the program's PTX, then built for sm_90a
 * (ocl_module.c: patch_sm90a); a device where that fails is `refused`. */
flagos_status_t ocl_program_build_ex(ocl_state_t *s, ocl_device_t *d, const char *src, size_t len, cl_program *out,
                                     bool *refused, bool sm90a);

/* ocl_blas.c: "gemm" through our kernels (ocl_gemm.c) or CLBlast (opened at first use); anything else is
 * FLAGOS_ERR_UNSUPPORTED */
flagos_status_t ocl_library_call(void *state, flagos_bstream_t s, const flagos_libcall_t *call);
/* One trace line to $FLAGOS_OPENCL_BLAS_LOG (appended), else to stderr under FLAGOS_TRACE, else nowhere. */
void ocl_blas_trace(const char *fmt, ...) FLAGOS_PRINTF(1, 2);

/* ocl_blas_params.c: CLBlast tuning parameters for devices its database lacks.
 * CLBlastOverrideParameters (precision: CLBlastPrecision's value, 32 = single). */
typedef int ocl_blas_override_fn(cl_device_id device, const char *kernel, unsigned precision, size_t n,
                                 const char **names, const size_t *values);
typedef void ocl_trace_fn(const char *fmt, ...);
/* Hands the matching lines of the table (built-in or $FLAGOS_CLBLAST_PARAMS)
 * to fn for device d; the number of kernels whose parameters CLBlast took. */
int ocl_blas_params_apply(ocl_state_t *s, const ocl_device_t *d, ocl_blas_override_fn *fn, ocl_trace_fn *trace);
/* ocl_blas_split.c: split-K products. The number of K slices for a product
 * (1: none); begin takes the lock and a workspace of `bytes` for the partial
 * results, sum queues their sum into Y (y = sum + beta*y), end releases the lock. */
int ocl_blas_split_factor(const ocl_device_t *d, int64_t batch, int64_t M, int64_t N, int64_t K);
flagos_status_t ocl_blas_split_begin(ocl_state_t *s, ocl_device_t *d, size_t bytes, cl_mem *ws);
cl_int ocl_blas_split_sum(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, cl_mem y, size_t mn, int parts,
                          float beta);
void ocl_blas_split_end(void);
void ocl_blas_split_release(ocl_state_t *s, ocl_device_t *d);

/* ocl_gemm.c: our own gemm kernels (FLAGOS_OPENCL_GEMM). The call's checked
 * arguments; bias NULL for none. */
struct ocl_gemm_args {
  int32_t dtype; /* FLAGOS_FLOAT32, FLAGOS_FLOAT64 or FLAGOS_FLOAT16 */
  cl_mem A, B, Y, bias;
  int64_t batch, M, N, K, sa, sb, sy;
  bool ta, tb;
  bool bias_rows; /* the bias has a value per row of Y (M values), not per column */
  int64_t ldb;    /* elements between B's rows; 0: K transposed, else N (ocl_conv.c pads rows to 16 bytes; a
                     gemm call's optional tenth int reads B through a transpose) */
  int64_t lda, ldy; /* A's and Y's likewise (0: packed; the call's eleventh and twelfth ints) */
  double alpha, beta;
  int act; /* the activation after the bias (the call's thirteenth int): 0 none, 1 GELU, 2 GELU (tanh), 3 ReLU */
  /* gemm_norm (docs/kernel-ir.md): Y = product + bias + R, Z its LayerNormalization by row (gamma, beta: N
   * values; beta NULL: none); Z NULL for a plain gemm. Taken only where the product is summed over K slices
   * in a second kernel, which then does it all: ocl_gemm_run leaves the others (*taken false) */
  cl_mem R, gamma, beta_ln, Z;
  double eps;
};
/* Whether our kernels take a gemm or conv call's activation (FLAGOS_OPENCL_ACTIVATION=0: no, for
 * measurements and the tests of the runtime's skip: the product's own call, then the activation's kernel). */
bool ocl_activation_on(void);
/* Whether our kernels take gemm_norm calls (FLAGOS_OPENCL_NORM=0: no, for measurements). */
bool ocl_norm_on(void);
/* Whether our kernels take gemm of dtype dt on d rather than CLBlast. */
bool ocl_gemm_wanted(const ocl_device_t *d, int32_t dt);
/* Queues the product on q (*taken true), or leaves it to CLBlast or the
 * generic kernel (*taken false, nothing queued: shapes past 32-bit indices, a
 * device that cannot run the kernel); an error where queuing failed or our
 * source does not build. */
/* A product made ready for replays (ocl_graph.c): kernel objects of its own
 * with every argument set, so that queuing it again is one
 * clEnqueueNDRangeKernel (two when split over K), without the call's checks,
 * choices and argument setting; the buffers it names are retained. */
#define OCL_PLAN_MAX 3  /* kernels: a convolution's im2col, the product, the split-K sum */
#define OCL_PLAN_HELD 11 /* buffers */
typedef struct ocl_gemm_plan {
  cl_kernel k[OCL_PLAN_MAX]; /* queued in order */
  cl_uint dims[OCL_PLAN_MAX];
  size_t global[OCL_PLAN_MAX][3], local[OCL_PLAN_MAX][3];
  int n;
  cl_mem held[OCL_PLAN_HELD];
  int n_held;
  cl_command_queue q; /* the queue it was made for (the shared workspaces need the default one) */
  /* the locks of the shared workspaces it uses (a convolution's patches, then
   * split-K's partial products), held while it is queued, as calls hold them */
  pthread_mutex_t *lock[2];
} ocl_gemm_plan_t;
/* With plan NULL: queues the product on q (*taken true), or leaves it to
 * CLBlast or the generic kernel (*taken false, nothing queued: shapes past
 * 32-bit indices, a device that cannot run the kernel); an error where queuing
 * failed or our source does not build. With a plan (zeroed, or holding a
 * convolution's im2col): the same choices, but nothing is queued and the
 * product's kernels are added to *plan (*taken true); on an error the caller
 * releases the plan. */
flagos_status_t ocl_gemm_run(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, const ocl_gemm_args_t *a,
                             ocl_trace_fn *trace, bool *taken, ocl_gemm_plan_t *plan);
/* Whether f16 products on d go to the tensor-core kernel (mma.sync, or emulated) where their rows allow. */
bool ocl_gemm_tensor_cores(ocl_state_t *s, ocl_device_t *d);
/* Queues the plan's kernels on q; with t (a replay's timeline, or NULL) each
 * launch's event goes into it. */
cl_int ocl_gemm_plan_run(ocl_state_t *s, const ocl_gemm_plan_t *p, cl_command_queue q, ocl_timeline_t *t);
/* Whether a plan may be queued on any queue of its device: it uses no shared workspace (no lock). */
bool ocl_gemm_plan_portable(const ocl_gemm_plan_t *p);
void ocl_gemm_plan_release(ocl_state_t *s, ocl_gemm_plan_t *p);
void ocl_gemm_release(ocl_state_t *s, ocl_device_t *d);
/* ocl_gemm_src.c and ocl_gemm_src_tc.c: the kernels' OpenCL C sources (the
 * common prelude, the general and vector kernels, the split-K sum; the
 * tensor-core and warpgroup kernels and what they share). */
extern const char ocl_gemm_pre[], ocl_gemm_general[], ocl_gemm_vec[], ocl_gemm_async[], ocl_gemm_tc[], ocl_gemm_wg[],
    ocl_gemm_sum[];

/* ocl_conv.c: the "conv" library call through our kernels (im2col into a
 * workspace, then the product with the bias by row). The call's checked
 * arguments (2-D, NCHW, group 1): */
struct ocl_conv_args {
  int32_t dtype;
  cl_mem X, W, bias, Y; /* bias NULL for none */
  int64_t n, c, h, w, m, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw;
  int act; /* the activation after the bias (the call's seventeenth int), as ocl_gemm_args_t's */
};
/* The call: NULL and *took filled where our kernels took it (took->n < 0
 * otherwise); FLAGOS_ERR_UNSUPPORTED where they leave it to the node's kernels. */
flagos_status_t ocl_conv_call(ocl_state_t *s, flagos_bstream_t st, const flagos_libcall_t *c, ocl_conv_args_t *took);
/* As ocl_gemm_run, for a convolution (a plan gets its im2col, then the product). */
flagos_status_t ocl_conv_run(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, const ocl_conv_args_t *a,
                             ocl_trace_fn *trace, bool *taken, ocl_gemm_plan_t *plan);
void ocl_conv_release(ocl_state_t *s, ocl_device_t *d);

/* ocl_attention.c: the "attention" library call through our kernel (FLAGOS_ERR_UNSUPPORTED where it declines);
 * ocl_attention_plan makes a call the capture took into a plan of one kernel for q's replays (nothing for an
 * empty output). */
flagos_status_t ocl_attention_call(ocl_state_t *s, flagos_bstream_t st, const flagos_libcall_t *call);
flagos_status_t ocl_attention_plan(ocl_state_t *s, cl_command_queue q, const flagos_libcall_t *call,
                                   ocl_gemm_plan_t *plan);
void ocl_attention_release(ocl_state_t *s, ocl_device_t *d);

#endif
