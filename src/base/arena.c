#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* Chunks grow geometrically; large requests get a chunk of their own. */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} chunk_t;

struct fl_arena {
  chunk_t *head;
  size_t next_cap;
};

static void oom(void) {
  fputs("flagos: out of memory\n", stderr);
  abort();
}

fl_arena_t *fl_arena_create(void) {
  fl_arena_t *a = calloc(1, sizeof(*a));
  if (!a) oom();
  a->next_cap = 16384;
  return a;
}

void fl_arena_destroy(fl_arena_t *a) {
  if (!a) return;
  chunk_t *c = a->head;
  while (c) {
    chunk_t *n = c->next;
    free(c);
    c = n;
  }
  free(a);
}

void *fl_arena_alloc(fl_arena_t *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  chunk_t *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = a->next_cap;
    if (n > cap / 4) {
      /* Large block: its own chunk, placed behind the head so the head keeps filling. */
      chunk_t *big = malloc(sizeof(chunk_t) + n);
      if (!big) oom();
      big->used = n;
      big->cap = n;
      if (c) {
        big->next = c->next;
        c->next = big;
      } else {
        big->next = NULL;
        a->head = big;
      }
      memset(big->data, 0, n);
      return big->data;
    }
    c = malloc(sizeof(chunk_t) + cap);
    if (!c) oom();
    c->used = 0;
    c->cap = cap;
    c->next = a->head;
    a->head = c;
    if (a->next_cap < (1u << 24)) a->next_cap *= 2;
  }
  void *p = c->data + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

char *fl_arena_strndup(fl_arena_t *a, const char *s, size_t n) {
  char *d = fl_arena_alloc(a, n + 1);
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

char *fl_arena_strdup(fl_arena_t *a, const char *s) {
  if (!s) return NULL;
  return fl_arena_strndup(a, s, strlen(s));
}

void *fl_arena_memdup(fl_arena_t *a, const void *p, size_t n) {
  void *d = fl_arena_alloc(a, n);
  if (n) memcpy(d, p, n);
  return d;
}

char *fl_arena_printf(fl_arena_t *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = fl_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
  vsnprintf(s, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap2);
  va_end(ap2);
  return s;
}
