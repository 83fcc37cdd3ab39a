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

#endif
