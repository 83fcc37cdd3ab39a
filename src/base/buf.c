#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>

#include "base/base.h"

void fl_buf_reserve(fl_buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) {
    fputs("flagos: out of memory\n", stderr);
    abort();
  }
  b->data = d;
  b->cap = cap;
  b->data[b->len] = 0; /* a taken buffer is a string even when nothing was appended */
}

void fl_buf_append(fl_buf_t *b, const void *p, size_t n) {
  fl_buf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}

void fl_buf_puts(fl_buf_t *b, const char *s) { fl_buf_append(b, s, strlen(s)); }

void fl_buf_putc(fl_buf_t *b, char c) { fl_buf_append(b, &c, 1); }

void fl_buf_vprintf(fl_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n <= 0) return;
  fl_buf_reserve(b, (size_t)n);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void fl_buf_printf(fl_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fl_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void fl_buf_align(fl_buf_t *b, size_t align) {
  static const char zeros[64];
  while (b->len % align) {
    size_t n = align - b->len % align;
    fl_buf_append(b, zeros, n > sizeof zeros ? sizeof zeros : n);
  }
}

void fl_buf_free(fl_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *fl_buf_take(fl_buf_t *b) {
  fl_buf_reserve(b, 0);
  char *d = b->data;
  b->data = NULL;
  b->len = b->cap = 0;
  return d;
}

uint64_t fl_hash64(const void *p, size_t n, uint64_t seed) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull ^ seed;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 1099511628211ull;
  }
  return h;
}

flagos_status_t fl_read_file(const char *path, void **data, size_t *size) {
  *data = NULL;
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return FL_ERR(errno == ENOENT ? FLAGOS_ERR_NOT_FOUND : FLAGOS_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return FL_ERR(FLAGOS_ERR_IO, "'%s' is not a regular file", path);
  }
  size_t n = (size_t)st.st_size;
  unsigned char *d = malloc(n + 1);
  if (!d) {
    fclose(f);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to read '%s'", n, path);
  }
  if (n && fread(d, 1, n, f) != n) {
    free(d);
    fclose(f);
    return FL_ERR(FLAGOS_ERR_IO, "cannot read '%s'", path);
  }
  d[n] = 0;
  fclose(f);
  *data = d;
  *size = n;
  return NULL;
}

flagos_status_t fl_write_file(const char *path, const void *data, size_t size) {
  /* Write to a temporary name and rename, so a failed write never leaves a half file. */
  size_t n = strlen(path) + 16;
  char *tmp = malloc(n);
  if (!tmp) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  snprintf(tmp, n, "%s.tmp%d", path, (int)(size % 9973));
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    flagos_status_t st = FL_ERR(FLAGOS_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    free(tmp);
    return st;
  }
  int ok = (size == 0 || fwrite(data, 1, size, f) == size);
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    flagos_status_t st = FL_ERR(FLAGOS_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    remove(tmp);
    free(tmp);
    return st;
  }
  free(tmp);
  return NULL;
}

flagos_status_t fl_mkdirs(const char *path) {
  char *p = strdup(path);
  if (!p) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (char *s = p + 1; *s; s++) {
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0777);
      *s = '/';
    }
  }
  int r = mkdir(p, 0777);
  int err = errno;
  free(p);
  if (r != 0 && err != EEXIST) return FL_ERR(FLAGOS_ERR_IO, "cannot create directory '%s': %s", path, strerror(err));
  return NULL;
}

static char g_cache_path[4096];
static pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;

static void cache_dir_init(void) {
  const char *e = getenv("FLAGOS_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
  if (e && *e) snprintf(g_cache_path, sizeof g_cache_path, "%s", e);
  else if (x && *x) snprintf(g_cache_path, sizeof g_cache_path, "%s/flagos", x);
  else if (h && *h) snprintf(g_cache_path, sizeof g_cache_path, "%s/.cache/flagos", h);
  else snprintf(g_cache_path, sizeof g_cache_path, "/tmp/flagos-cache");
}

/* $FLAGOS_CACHE_DIR, else $XDG_CACHE_HOME/flagos, else ~/.cache/flagos, else /tmp/flagos-cache.
 * Computed once per process; not created here. */
const char *fl_default_cache_dir(void) {
  pthread_once(&g_cache_once, cache_dir_init);
  return g_cache_path;
}
