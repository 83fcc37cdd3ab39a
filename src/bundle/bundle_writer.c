/* Bundle writer: collects sections, lays them out, and writes the file image
 * either to memory or atomically to disk. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/base.h"
#include "bundle/bundle_format.h"

typedef struct wsection {
  char name[BT_NAME_LEN];
  void *data;
  size_t size;
  uint32_t crc;
  uint64_t offset; /* filled by layout() */
} wsection_t;

struct bundle_writer {
  wsection_t *sec;
  size_t n, cap;
};

uint32_t bundle_crc32(const void *data, size_t size) {
  /* crc32_z takes a z_size_t, so sections past 4 GiB need no chunking. */
  return (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), data, size);
}

bundle_writer_t *bundle_writer_create(void) { return calloc(1, sizeof(bundle_writer_t)); }

void bundle_writer_destroy(bundle_writer_t *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n; i++) free(w->sec[i].data);
  free(w->sec);
  free(w);
}

flagos_status_t bundle_writer_add(bundle_writer_t *w, const char *name, const void *data, size_t size) {
  if (!w || !name) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_writer_add: NULL writer or name");
  size_t len = strnlen(name, BUNDLE_NAME_MAX + 1);
  if (!bundle_name_ok(name, len))
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT,
                  "bundle section name '%.*s%s' is invalid: names are 1..%d bytes of [a-z0-9._-]",
                  (int)(len > BUNDLE_NAME_MAX ? BUNDLE_NAME_MAX : len), name, len > BUNDLE_NAME_MAX ? "..." : "",
                  BUNDLE_NAME_MAX);
  if (!data && size) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle section '%s': NULL data with size %zu", name, size);
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->sec[i].name, name) == 0)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle section '%s' added twice", name);
  if (w->n >= BUNDLE_MAX_SECTIONS)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle has too many sections (at most %u)", BUNDLE_MAX_SECTIONS);
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 8;
    wsection_t *s = realloc(w->sec, cap * sizeof *s);
    if (!s) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory adding bundle section '%s'", name);
    w->sec = s;
    w->cap = cap;
  }
  /* malloc(0) may return NULL; one spare byte keeps every present section non-NULL. */
  void *copy = malloc(size ? size : 1);
  if (!copy) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for bundle section '%s'", size, name);
  if (size) memcpy(copy, data, size);
  wsection_t *s = &w->sec[w->n++];
  memset(s, 0, sizeof *s);
  memcpy(s->name, name, len);
  s->data = copy;
  s->size = size;
  s->crc = bundle_crc32(copy, size);
  return NULL;
}

static uint64_t align_up(uint64_t v) { return (v + BUNDLE_ALIGN - 1) / BUNDLE_ALIGN * BUNDLE_ALIGN; }

/* Assigns offsets and returns the file size; sections follow the table of
 * contents in the order added, each at the next 64-byte boundary, and the file
 * is padded to a multiple of 64 so even an empty last section lies inside it. */
static flagos_status_t layout(bundle_writer_t *w, uint64_t *file_size) {
  uint64_t pos = BUNDLE_HEADER_SIZE + (uint64_t)w->n * BUNDLE_TOC_ENTRY_SIZE;
  for (size_t i = 0; i < w->n; i++) {
    pos = align_up(pos);
    w->sec[i].offset = pos;
    if ((uint64_t)w->sec[i].size > UINT64_MAX - BUNDLE_ALIGN - pos)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle too large at section '%s'", w->sec[i].name);
    pos += w->sec[i].size;
  }
  *file_size = align_up(pos);
  return NULL;
}

/* Header and table of contents: the first toc_end bytes of the file. */
static uint8_t *build_head(const bundle_writer_t *w, uint64_t file_size, size_t *head_size) {
  size_t toc_size = w->n * BUNDLE_TOC_ENTRY_SIZE;
  size_t n = BUNDLE_HEADER_SIZE + toc_size;
  uint8_t *h = calloc(1, n);
  if (!h) return NULL;
  uint8_t *toc = h + BUNDLE_HEADER_SIZE;
  for (size_t i = 0; i < w->n; i++) {
    uint8_t *e = toc + i * BUNDLE_TOC_ENTRY_SIZE;
    memcpy(e + BT_NAME, w->sec[i].name, BT_NAME_LEN);
    bundle_wr64(e + BT_OFFSET, w->sec[i].offset);
    bundle_wr64(e + BT_SIZE, w->sec[i].size);
    bundle_wr64(e + BT_CHECKSUM, w->sec[i].crc);
    bundle_wr32(e + BT_FLAGS, 0);
  }
  memcpy(h + BH_MAGIC, BUNDLE_MAGIC, BUNDLE_MAGIC_LEN);
  bundle_wr32(h + BH_VERSION, BUNDLE_FORMAT_VERSION);
  bundle_wr32(h + BH_HEADER_SIZE, BUNDLE_HEADER_SIZE);
  bundle_wr64(h + BH_FILE_SIZE, file_size);
  bundle_wr64(h + BH_TOC_OFFSET, BUNDLE_HEADER_SIZE);
  bundle_wr32(h + BH_SECTION_COUNT, (uint32_t)w->n);
  bundle_wr32(h + BH_TOC_ENTRY_SIZE, BUNDLE_TOC_ENTRY_SIZE);
  bundle_wr32(h + BH_CHECKSUM_ALGO, BUNDLE_CHECKSUM_CRC32);
  bundle_wr32(h + BH_REQUIRED_FEATURES, 0);
  bundle_wr64(h + BH_TOC_CHECKSUM, bundle_crc32(toc, toc_size));
  bundle_wr32(h + BH_HEADER_CHECKSUM, bundle_crc32(h, BH_HEADER_CHECKSUM));
  *head_size = n;
  return h;
}

flagos_status_t bundle_writer_to_memory(bundle_writer_t *w, void **data, size_t *size) {
  if (!w || !data || !size) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_writer_to_memory: NULL argument");
  *data = NULL;
  *size = 0;
  uint64_t fsize = 0;
  FL_TRY(layout(w, &fsize));
  if (fsize > SIZE_MAX) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "bundle of %llu bytes does not fit in memory", (unsigned long long)fsize);
  size_t head_size = 0;
  uint8_t *head = build_head(w, fsize, &head_size);
  /* fsize is a multiple of 64, as aligned_alloc wants. */
  uint8_t *img = head ? aligned_alloc(BUNDLE_ALIGN, (size_t)fsize) : NULL;
  if (!img) {
    free(head);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %llu bytes for a bundle image", (unsigned long long)fsize);
  }
  memset(img, 0, (size_t)fsize);
  memcpy(img, head, head_size);
  free(head);
  for (size_t i = 0; i < w->n; i++)
    if (w->sec[i].size) memcpy(img + w->sec[i].offset, w->sec[i].data, w->sec[i].size);
  *data = img;
  *size = (size_t)fsize;
  return NULL;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    /* Some kernels cap one write near 2 GiB; ask for less and loop. */
    ssize_t k = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (k == 0) {
      errno = EIO;
      return -1;
    }
    c += k;
    n -= (size_t)k;
  }
  return 0;
}

static int write_zeros(int fd, size_t n) {
  static const char zeros[BUNDLE_ALIGN];
  while (n) {
    size_t k = n > sizeof zeros ? sizeof zeros : n;
    if (write_all(fd, zeros, k)) return -1;
    n -= k;
  }
  return 0;
}

/* Best effort: makes the rename itself durable. A failure here cannot undo the
 * rename, and the file is complete either way. */
static void sync_parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

flagos_status_t bundle_writer_write_file(bundle_writer_t *w, const char *path) {
  if (!w || !path || !*path) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_writer_write_file: NULL writer or empty path");
  uint64_t fsize = 0;
  FL_TRY(layout(w, &fsize));
  size_t head_size = 0;
  uint8_t *head = build_head(w, fsize, &head_size);
  if (!head) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory writing '%s'", path);

  /* The temporary lives next to the target so rename() stays within one file
   * system; O_EXCL with a per-process, per-writer name keeps concurrent writers
   * apart, and mode 0666 lets the umask decide permissions as for any new file. */
  size_t tn = strlen(path) + 64;
  char *tmp = malloc(tn);
  if (!tmp) {
    free(head);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory writing '%s'", path);
  }
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    snprintf(tmp, tn, "%s.tmp-%ld-%lx-%d", path, (long)getpid(), (unsigned long)(uintptr_t)w, attempt);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    flagos_status_t st = FL_ERR(errno == ENOENT ? FLAGOS_ERR_NOT_FOUND : FLAGOS_ERR_IO,
                                "cannot write bundle '%s': cannot create '%s': %s", path, tmp, strerror(errno));
    free(tmp);
    free(head);
    return st;
  }

  const char *what = "write";
  int err = 0;
  uint64_t pos = head_size;
  if (write_all(fd, head, head_size)) err = errno;
  for (size_t i = 0; !err && i < w->n; i++) {
    const wsection_t *s = &w->sec[i];
    if (write_zeros(fd, (size_t)(s->offset - pos)) || write_all(fd, s->data, s->size)) err = errno;
    pos = s->offset + s->size;
  }
  if (!err && write_zeros(fd, (size_t)(fsize - pos))) err = errno;
  /* Without fsync a crash after rename could leave the new name pointing at
   * blocks that never reached the disk. */
  if (!err && fsync(fd)) {
    err = errno;
    what = "fsync";
  }
  if (close(fd) && !err) {
    err = errno;
    what = "close";
  }
  if (!err && rename(tmp, path)) {
    err = errno;
    what = "rename";
  }
  free(head);
  if (err) {
    unlink(tmp);
    flagos_status_t st = FL_ERR(FLAGOS_ERR_IO, "cannot write bundle '%s': %s failed: %s", path, what, strerror(err));
    free(tmp);
    return st;
  }
  free(tmp);
  sync_parent_dir(path);
  return NULL;
}
