/* Helpers shared by the partition files. */
#ifndef FLAGOS_PART_INTERNAL_H
#define FLAGOS_PART_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>

/* Allocation failure is not an input error: like fl_buf and the arenas, the
 * partitioner stops rather than threading out-of-memory through every loop. */
static inline void *part_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    fputs("flagos: out of memory\n", stderr);
    abort();
  }
  return p;
}

static inline void *part_realloc(void *p, size_t size) {
  void *q = realloc(p, size ? size : 1);
  if (!q) {
    fputs("flagos: out of memory\n", stderr);
    abort();
  }
  return q;
}

#endif
