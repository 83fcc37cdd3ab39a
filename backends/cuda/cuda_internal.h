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

typedef struct cuda_device {
  cu_device_t dev;
  int sm;              /* compute capability as major*10+minor */
  int sm_count;
  int max_grid_x;
  bool ready;          /* context and default stream made (on first use) */
  cu_ctx_t ctx;
  cu_stream_t stream;  /* what a NULL stream means */
  cuda_alloc_t alloc;
} cuda_device_t;

typedef struct cuda_state {
  flagos_host_t host;
  cu_driver_t drv;
  bool have_driver;
  bool sync_launches; /* $FLAGOS_CUDA_SYNC: wait after each launch, so errors name their kernel */
  char why_none[512]; /* why there are no devices */
  int n_devices;
  pthread_mutex_t lock; /* guards making contexts */
  cuda_device_t dev[CUDA_MAX_DEVICES];
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

/* cuda_module.c */
flagos_status_t cuda_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out);
void cuda_module_unload(void *state, flagos_bmodule_t m);
flagos_status_t cuda_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out);
flagos_status_t cuda_launch(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args);

#endif
