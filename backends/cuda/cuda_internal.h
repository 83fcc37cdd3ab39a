/* What the cuda plugin's files share. */
#ifndef FLAGOS_CUDA_INTERNAL_H
#define FLAGOS_CUDA_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "cuda_api.h"
#include "flagos/backend.h"

#define CUDA_MAX_DEVICES 64

/* Caching allocator (cuda_alloc.c): freed blocks are kept per size class and
 * handed out again. Blocks are reused in issue order on the device's default
 * stream, which is where the runtime orders all work today. */
#define CUDA_ALLOC_CLASSES 256
typedef struct cuda_block {
  cu_ptr_t ptr;
  struct cuda_block *next;
} cuda_block_t;

typedef struct cuda_live {
  cu_ptr_t ptr; /* 0: empty slot; ~0: deleted */
  int cls;
} cuda_live_t;

typedef struct cuda_alloc {
  pthread_mutex_t lock;
  cuda_block_t *free_list[CUDA_ALLOC_CLASSES];
  cuda_live_t *live; /* open addressing, keyed by pointer */
  size_t live_cap, live_n, live_used;
  size_t cached_bytes, live_bytes;
} cuda_alloc_t;

/* Pinned staging buffers for copies (cuda_staging.c): a few page-locked host
 * buffers per device, each busy until the event recorded after its copy. */
#define CUDA_STAGING_SLOTS 8
typedef struct cuda_staging_slot {
  void *host;     /* cuMemHostAlloc'ed, cap bytes */
  size_t cap;
  cu_event_t done; /* recorded after the last copy from it */
  bool pending;    /* done was recorded and may not have completed */
  bool busy;       /* handed out */
} cuda_staging_slot_t;
/* Threads that split large copies through the buffers (cuda_staging.c), one
 * pool for the plugin's devices (they share the host's memory bandwidth),
 * started on the first such copy and kept until shutdown. */
#define CUDA_COPY_THREADS_MAX 8
struct cuda_par_copy;
typedef struct cuda_copy_pool {
  pthread_mutex_t lock;
  pthread_cond_t wake; /* a copy was queued, or stop */
  pthread_cond_t idle; /* a worker left a copy */
  struct cuda_par_copy *jobs; /* copies with chunks nobody has taken yet */
  pthread_t th[CUDA_COPY_THREADS_MAX];
  int n_threads;       /* started */
  bool started, stop;
} cuda_copy_pool_t;
typedef struct cuda_staging {
  pthread_mutex_t lock;
  cuda_staging_slot_t slot[CUDA_STAGING_SLOTS];
} cuda_staging_t;

typedef struct cuda_device {
  cu_device_t dev;
  int sm;              /* compute capability as major*10+minor */
  int sm_count;
  int max_grid_x;
  bool ready;          /* context and default stream made (on first use) */
  cu_ctx_t ctx;
  cu_stream_t stream;  /* what a NULL stream means */
  cuda_alloc_t alloc;
  cuda_staging_t staging;
} cuda_device_t;

typedef struct cuda_state {
  flagos_host_t host;
  cu_driver_t drv;
  bool have_driver;
  bool sync_launches; /* $FLAGOS_CUDA_SYNC: wait after each launch, so errors name their kernel */
  char why_none[512]; /* why there are no devices */
  int n_devices;
  pthread_mutex_t lock; /* guards making contexts, and blas and nvml */
  cuda_device_t dev[CUDA_MAX_DEVICES];
  cuda_copy_pool_t copy_pool;
  struct cuda_blas *blas; /* cuda_blas.c, made on the first library call */
  struct cuda_dnn *dnn;   /* cuda_dnn.c, made on the first conv call */
  struct cuda_nvml *nvml; /* cuda_nvml.c, made on the first device_power */
} cuda_state_t;

#define CUDA_ERR(s, code, ...) ((s)->host.status_new((code), __VA_ARGS__))

/* cuda_backend.c */
/* A status naming the driver error, or NULL when rc is CU_OK. */
flagos_status_t cuda_check(cuda_state_t *s, cu_result_t rc, const char *what);
/* Makes device d's context current on this thread (creating it once). */
flagos_status_t cuda_use(cuda_state_t *s, int d);
struct flagos_bstream_s {
  int device;
  cu_stream_t st;
};

/* cuda_alloc.c */
void cuda_alloc_init(cuda_alloc_t *a);
/* Needs the device's context current. */
flagos_status_t cuda_alloc_get(cuda_state_t *s, cuda_device_t *dv, size_t bytes, cu_ptr_t *out);
void cuda_alloc_put(cuda_state_t *s, cuda_device_t *dv, cu_ptr_t p);
bool cuda_alloc_owns(cuda_alloc_t *a, cu_ptr_t p);
/* Returns every cached block to the driver. */
void cuda_alloc_trim(cuda_state_t *s, cuda_device_t *dv);
void cuda_alloc_destroy(cuda_state_t *s, cuda_device_t *dv);

/* cuda_blas.c: library calls ("gemm") through cuBLASLt */
flagos_status_t cuda_library_call(void *state, flagos_bstream_t s, const flagos_libcall_t *call);
/* Before the contexts go: frees descriptors and workspaces. */
void cuda_blas_shutdown(cuda_state_t *s);

/* cuda_nvml.c: device_power through NVML */
flagos_status_t cuda_device_power(void *state, int device, flagos_power_info_t *out);
void cuda_nvml_shutdown(cuda_state_t *s);

/* cuda_staging.c: copies through pinned buffers. Each returns false when it did
 * not copy (too large, no buffer free, no pinned memory); the caller then copies
 * from pageable memory. d2h waits for the data (for the default stream). */
void cuda_copy_pool_init(cuda_copy_pool_t *p);
void cuda_copy_pool_destroy(cuda_copy_pool_t *p); /* stops and joins the threads */
void cuda_staging_init(cuda_staging_t *g);
void cuda_staging_destroy(cuda_state_t *s, cuda_device_t *dv);
bool cuda_staging_h2d(cuda_state_t *s, cuda_device_t *dv, cu_stream_t cs, cu_ptr_t dst, const void *src, size_t bytes,
                      flagos_status_t *st);
bool cuda_staging_d2h(cuda_state_t *s, cuda_device_t *dv, cu_stream_t cs, void *dst, cu_ptr_t src, size_t bytes,
                      flagos_status_t *st);

/* cuda_graph.c: stream capture and graph replay */
flagos_status_t cuda_capture_begin(void *state, int device, flagos_bstream_t t);
flagos_status_t cuda_capture_end(void *state, int device, flagos_bstream_t t, flagos_bgraph_t *out);
flagos_status_t cuda_graph_launch(void *state, flagos_bgraph_t g, flagos_bstream_t t);
void cuda_graph_destroy(void *state, flagos_bgraph_t g);

/* cuda_module.c */
flagos_status_t cuda_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out);
void cuda_module_unload(void *state, flagos_bmodule_t m);
flagos_status_t cuda_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out);
flagos_status_t cuda_launch(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args);

/* Run-time libraries (cuda_lib.c), for cuda_blas.c and cuda_dnn.c. */
bool cuda_env_on(const char *name); /* set, non-empty and not "0" */
/* Opens $env alone when it is set, else each of the n sonames, then the same
 * names under /usr/local/cuda/lib64 (machines whose loader path lacks the
 * toolkit). Returns the handle with the name opened in path, or NULL with
 * "no WHAT (first candidate): first loader error" in why. */
void *cuda_lib_open(const char *env, const char *const *sonames, int n, const char *what, char *path, size_t path_len,
                    char *why, size_t why_len);
/* Binds *slots[i] = dlsym(h, syms[i]) for each i; false (why says which
 * symbol WHAT at path lacks) at the first one missing. */
bool cuda_lib_bind(void *h, const char *const *syms, void **const *slots, int n, const char *what, const char *path,
                   char *why, size_t why_len);
/* Whether $FLAGOS_CUDA_BLAS_LOG asks for the library calls' log, and where it
 * goes: path "" for stderr ("1"), else the file it names (conformance runs tests
 * in children whose stderr is discarded). */
bool cuda_log_target(char *path, size_t len);
/* Writes "flagos cuda[PID]: LINE" to path ("" : stderr). */
void cuda_log(const char *path, const char *fmt, ...) FLAGOS_PRINTF(2, 3);

/* Per-stream workspaces of a library (cuBLASLt, cuDNN) on one device: the
 * default stream's (slot 0, made with the device's handle), then one per other
 * stream up to CUDA_WS_SLOTS, so that work on two streams never shares one (a
 * graph captured on a stream keeps that stream's). Guarded by the caller. */
#define CUDA_WS_SLOTS 9
typedef struct cuda_ws_set {
  struct {
    flagos_bstream_t stream; /* NULL: the default stream */
    cu_ptr_t ptr;
  } ws[CUDA_WS_SLOTS];
  int n;
} cuda_ws_set_t;
/* The workspace of `stream` (bytes each) from device d's allocator, made on its
 * first use; *out 0 when every slot is taken (the call then runs without one). */
flagos_status_t cuda_ws_for(cuda_state_t *s, cuda_ws_set_t *w, int d, flagos_bstream_t stream, size_t bytes,
                            cu_ptr_t *out);
void cuda_ws_release(cuda_state_t *s, cuda_ws_set_t *w, int d);
/* The device a library call runs on: the stream's, else the one whose allocator
 * handed out buffer y (the output), then buffer 0 or 1, else the first device in use. */
int cuda_call_device(cuda_state_t *s, flagos_bstream_t stream, const flagos_libcall_t *c, int y);

#endif
