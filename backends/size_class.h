/* The size classes of the plugins' caching allocators (cuda_alloc.c,
 * ocl_alloc.c): 256 bytes, then four classes per power of two (a request is
 * rounded up to a quarter of the power of two below it), so a block wastes at
 * most a quarter of its size and a class index stays a few hundred at most. */
#ifndef FLAGOS_BACKENDS_SIZE_CLASS_H
#define FLAGOS_BACKENDS_SIZE_CLASS_H
#include <stddef.h>

/* The class of a request of n bytes; *csize the bytes a block of it holds. */
static inline int flagos_size_class(size_t n, size_t *csize) {
  if (n <= 256) {
    *csize = 256;
    return 0;
  }
  int lg = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^lg < n <= 2^(lg+1) */
  size_t step = (size_t)1 << (lg - 2);
  size_t k = (n + step - 1) / step; /* 5..8 */
  *csize = k * step;
  return 1 + (lg - 8) * 4 + (int)(k - 5);
}

/* The bytes a block of class cls holds. */
static inline size_t flagos_class_bytes(int cls) {
  if (cls == 0) return 256;
  int lg = (cls - 1) / 4 + 8, k = (cls - 1) % 4 + 5;
  return (size_t)k << (lg - 2);
}

#endif
