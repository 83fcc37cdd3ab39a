/* The caching allocator: cuMemAlloc is slow (and synchronises), and the runtime
 * allocates and frees every intermediate value on every run, so freed blocks go
 * to a free list of their size class and are handed out again.
 *
 * Size classes: backends/size_class.h (shared with the opencl plugin's pool); a
 * class index is a few hundred at most, so the free lists are an array. When the driver runs out of memory, the cached blocks are
 * returned to it and the allocation is tried once more. */
#include <stdlib.h>
#include <string.h>

#include "../size_class.h"
#include "cuda_internal.h"

#define DELETED (~(cu_ptr_t)0)

void cuda_alloc_init(cuda_alloc_t *a) {
  memset(a, 0, sizeof(*a));
  pthread_mutex_init(&a->lock, NULL);
}

static size_t hash_ptr(cu_ptr_t p) {
  p ^= p >> 33;
  p *= 0xff51afd7ed558ccdull;
  p ^= p >> 33;
  return (size_t)p;
}

static cuda_live_t *live_find(cuda_alloc_t *a, cu_ptr_t p) {
  if (!a->live_cap || !p || p == DELETED) return NULL;
  size_t m = a->live_cap - 1;
  for (size_t i = hash_ptr(p) & m;; i = (i + 1) & m) {
    if (a->live[i].ptr == 0) return NULL;
    if (a->live[i].ptr == p) return &a->live[i];
  }
}

static bool live_insert(cuda_alloc_t *a, cu_ptr_t p, int cls) {
  if ((a->live_used + 1) * 2 > a->live_cap) {
    size_t nc = a->live_cap ? a->live_cap : 256;
    while ((a->live_n + 1) * 4 > nc) nc *= 2; /* rehash also drops tombstones */
    cuda_live_t *nl = calloc(nc, sizeof(*nl));
    if (!nl) return false;
    for (size_t i = 0; i < a->live_cap; i++) {
      cu_ptr_t q = a->live[i].ptr;
      if (!q || q == DELETED) continue;
      size_t j = hash_ptr(q) & (nc - 1);
      while (nl[j].ptr) j = (j + 1) & (nc - 1);
      nl[j] = a->live[i];
    }
    free(a->live);
    a->live = nl;
    a->live_cap = nc;
    a->live_used = a->live_n;
  }
  size_t m = a->live_cap - 1, i = hash_ptr(p) & m;
  while (a->live[i].ptr && a->live[i].ptr != DELETED) i = (i + 1) & m;
  if (!a->live[i].ptr) a->live_used++;
  a->live[i].ptr = p;
  a->live[i].cls = cls;
  a->live_n++;
  return true;
}

/* Frees the cached blocks (lock held). Work queued on the default stream may
 * still use a block the runtime has already freed: wait for it first. */
static void trim_locked(cuda_state_t *s, cuda_device_t *dv) {
  cuda_alloc_t *a = &dv->alloc;
  s->drv.StreamSynchronize(dv->stream);
  for (int c = 0; c < CUDA_ALLOC_CLASSES; c++) {
    while (a->free_list[c]) {
      cuda_block_t *b = a->free_list[c];
      a->free_list[c] = b->next;
      s->drv.MemFree(b->ptr);
      a->cached_bytes -= flagos_class_bytes(c);
      free(b);
    }
  }
}

flagos_status_t cuda_alloc_get(cuda_state_t *s, cuda_device_t *dv, size_t bytes, cu_ptr_t *out) {
  cuda_alloc_t *a = &dv->alloc;
  *out = 0;
  if (bytes > ((size_t)1 << 48))
    return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: cannot allocate %zu bytes", bytes);
  size_t csize;
  int cls = flagos_size_class(bytes, &csize);
  flagos_status_t st = NULL;
  pthread_mutex_lock(&a->lock);
  cu_ptr_t p = 0;
  cuda_block_t *b = a->free_list[cls];
  if (b) {
    a->free_list[cls] = b->next;
    a->cached_bytes -= csize;
    p = b->ptr;
    free(b);
  } else {
    cu_result_t rc = s->drv.MemAlloc(&p, csize);
    if (rc == CU_ERR_OUT_OF_MEMORY && a->cached_bytes) {
      trim_locked(s, dv);
      rc = s->drv.MemAlloc(&p, csize);
    }
    if (rc == CU_ERR_OUT_OF_MEMORY)
      st = CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: cannot allocate %zu bytes on the device (%zu in use)",
                    bytes, a->live_bytes);
    else
      st = cuda_check(s, rc, "cuMemAlloc");
  }
  if (!st && !live_insert(a, p, cls)) {
    s->drv.MemFree(p);
    st = CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of host memory");
  }
  if (!st) {
    a->live_bytes += csize;
    *out = p;
  }
  pthread_mutex_unlock(&a->lock);
  return st;
}

void cuda_alloc_put(cuda_state_t *s, cuda_device_t *dv, cu_ptr_t p) {
  cuda_alloc_t *a = &dv->alloc;
  pthread_mutex_lock(&a->lock);
  cuda_live_t *l = live_find(a, p);
  if (l) {
    int cls = l->cls;
    l->ptr = DELETED;
    a->live_n--;
    a->live_bytes -= flagos_class_bytes(cls);
    cuda_block_t *b = malloc(sizeof(*b));
    if (b) {
      b->ptr = p;
      b->next = a->free_list[cls];
      a->free_list[cls] = b;
      a->cached_bytes += flagos_class_bytes(cls);
    } else {
      s->drv.StreamSynchronize(dv->stream);
      s->drv.MemFree(p);
    }
  }
  pthread_mutex_unlock(&a->lock);
}

bool cuda_alloc_owns(cuda_alloc_t *a, cu_ptr_t p) {
  pthread_mutex_lock(&a->lock);
  bool r = live_find(a, p) != NULL;
  pthread_mutex_unlock(&a->lock);
  return r;
}

void cuda_alloc_trim(cuda_state_t *s, cuda_device_t *dv) {
  pthread_mutex_lock(&dv->alloc.lock);
  trim_locked(s, dv);
  pthread_mutex_unlock(&dv->alloc.lock);
}

void cuda_alloc_destroy(cuda_state_t *s, cuda_device_t *dv) {
  cuda_alloc_t *a = &dv->alloc;
  pthread_mutex_lock(&a->lock);
  trim_locked(s, dv);
  for (size_t i = 0; i < a->live_cap; i++)
    if (a->live[i].ptr && a->live[i].ptr != DELETED) s->drv.MemFree(a->live[i].ptr);
  free(a->live);
  a->live = NULL;
  a->live_cap = a->live_n = a->live_used = 0;
  pthread_mutex_unlock(&a->lock);
  pthread_mutex_destroy(&a->lock);
}
