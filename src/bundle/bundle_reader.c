/* Bundle reader: maps a file (or takes a memory image), validates every field
 * before trusting it, and hands out section bytes in place.
 *
 * The file is hostile until proven otherwise: every offset and size is checked
 * for overflow before it is added or compared, and nothing is read outside
 * [0, size). The order of checks is chosen so the message names the most
 * useful cause: bad magic before anything else, the header's own checksum
 * before its version (a flipped version byte is damage, not a newer file),
 * the table of contents before the sections, truncation before checksums. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "bundle/bundle_format.h"

enum { SEC_UNCHECKED = 0, SEC_GOOD = 1, SEC_BAD = 2 };

typedef struct rsection {
  char name[BT_NAME_LEN];
  uint64_t offset, size, checksum;
  uint32_t flags;
  atomic_int state;
} rsection_t;

typedef enum { IMG_MAPPED, IMG_OWNED, IMG_BORROWED } img_kind_t;

struct bundle_file {
  char *path; /* for messages */
  const uint8_t *base;
  size_t size;
  img_kind_t kind;
  unsigned flags;
  uint32_t n;
  rsection_t *sec;
  uint32_t *by_name; /* indices sorted by name, for lookup and duplicate checks */
};

#define CORRUPT(b, ...) bundle_err((b), FLAGOS_ERR_CORRUPT, __VA_ARGS__)
#define UNSUPPORTED(b, ...) bundle_err((b), FLAGOS_ERR_UNSUPPORTED, __VA_ARGS__)

static flagos_status_t bundle_err(const bundle_file_t *b, flagos_code_t code, const char *fmt, ...) FLAGOS_PRINTF(3, 4);
static flagos_status_t bundle_err(const bundle_file_t *b, flagos_code_t code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return flagos_status_new(code, "%s: %s", b->path, msg);
}

static unsigned long long ull(uint64_t v) { return (unsigned long long)v; }

/* Header: everything up to and including the table of contents' own checksum. */
typedef struct header {
  uint32_t version, header_size, count, entry_size, algo, features;
  uint64_t file_size, toc_offset, toc_end, toc_checksum;
} header_t;

static flagos_status_t check_header(const bundle_file_t *b, header_t *h) {
  const uint8_t *p = b->base;
  size_t L = b->size;
  if (L == 0) return CORRUPT(b, "is empty (0 bytes), not a FlagOS bundle");
  if (memcmp(p, BUNDLE_MAGIC, L < BUNDLE_MAGIC_LEN ? L : BUNDLE_MAGIC_LEN) != 0)
    return CORRUPT(b, "is not a FlagOS bundle (bad magic)");
  if (L < BUNDLE_HEADER_SIZE)
    return CORRUPT(b, "truncated: the header needs %u bytes but the file has %zu bytes", BUNDLE_HEADER_SIZE, L);
  h->header_size = bundle_rd32(p + BH_HEADER_SIZE);
  if (h->header_size < BUNDLE_HEADER_SIZE || h->header_size > BUNDLE_MAX_HEADER_SIZE || h->header_size % 8)
    return CORRUPT(b, "header size %u is invalid (file corrupted)", h->header_size);
  if (L < h->header_size)
    return CORRUPT(b, "truncated: the header needs %u bytes but the file has %zu bytes", h->header_size, L);
  size_t hc = h->header_size - 4;
  if (bundle_rd32(p + hc) != bundle_crc32(p, hc)) return CORRUPT(b, "header checksum mismatch (file corrupted)");

  h->version = bundle_rd32(p + BH_VERSION);
  if (h->version == 0) return CORRUPT(b, "format version 0 is invalid (file corrupted)");
  if (h->version > BUNDLE_FORMAT_VERSION)
    return UNSUPPORTED(b, "format version %u is newer than this FlagOS supports (%u)", h->version, BUNDLE_FORMAT_VERSION);
  h->algo = bundle_rd32(p + BH_CHECKSUM_ALGO);
  if (h->algo != BUNDLE_CHECKSUM_CRC32)
    return UNSUPPORTED(b, "checksum algorithm %u is not supported by this FlagOS (it knows %u, CRC-32)", h->algo,
                       BUNDLE_CHECKSUM_CRC32);
  h->features = bundle_rd32(p + BH_REQUIRED_FEATURES);
  if (h->features & ~BUNDLE_KNOWN_REQUIRED_FEATURES)
    return UNSUPPORTED(b, "needs format features 0x%x that this FlagOS does not support",
                       h->features & ~BUNDLE_KNOWN_REQUIRED_FEATURES);

  h->file_size = bundle_rd64(p + BH_FILE_SIZE);
  h->toc_offset = bundle_rd64(p + BH_TOC_OFFSET);
  h->count = bundle_rd32(p + BH_SECTION_COUNT);
  h->entry_size = bundle_rd32(p + BH_TOC_ENTRY_SIZE);
  h->toc_checksum = bundle_rd64(p + BH_TOC_CHECKSUM);
  if (h->file_size < h->header_size)
    return CORRUPT(b, "header records a file size of %llu bytes, less than the header itself (file corrupted)",
                   ull(h->file_size));
  if (h->toc_offset < h->header_size || h->toc_offset % BUNDLE_ALIGN)
    return CORRUPT(b, "table of contents offset %llu is invalid (file corrupted)", ull(h->toc_offset));
  if (h->entry_size < BUNDLE_TOC_ENTRY_SIZE || h->entry_size > BUNDLE_MAX_TOC_ENTRY_SIZE || h->entry_size % 8)
    return CORRUPT(b, "table of contents entry size %u is invalid (file corrupted)", h->entry_size);
  if (h->count > BUNDLE_MAX_SECTIONS)
    return CORRUPT(b, "%u sections is more than a bundle may hold (%u) (file corrupted)", h->count, BUNDLE_MAX_SECTIONS);
  /* count and entry_size are bounded above, so neither product nor sum can wrap
   * unless toc_offset is near 2^64; that is compared against file_size first. */
  uint64_t toc_size = (uint64_t)h->count * h->entry_size;
  if (h->toc_offset > h->file_size || toc_size > h->file_size - h->toc_offset)
    return CORRUPT(b, "table of contents (bytes %llu..%llu) ends beyond the file size the header records (%llu) "
                   "(file corrupted)", ull(h->toc_offset), ull(h->toc_offset) + ull(toc_size), ull(h->file_size));
  h->toc_end = h->toc_offset + toc_size;
  if (L < h->toc_end)
    return CORRUPT(b, "truncated: the table of contents ends at byte %llu but the file has %zu bytes", ull(h->toc_end), L);
  uint64_t crc = bundle_crc32(p + h->toc_offset, (size_t)toc_size);
  if (crc != h->toc_checksum) return CORRUPT(b, "table of contents checksum mismatch (file corrupted)");
  return NULL;
}

/* Name field: 1..31 valid bytes, then NUL bytes to the end of the field, so one
 * name has exactly one encoding (byte-identical files for identical bundles). */
static int parse_name(const uint8_t *field, char *out) {
  size_t n = 0;
  while (n < BT_NAME_LEN && field[n]) n++;
  if (n == BT_NAME_LEN || !bundle_name_ok((const char *)field, n)) return 0;
  for (size_t i = n; i < BT_NAME_LEN; i++)
    if (field[i]) return 0;
  memcpy(out, field, n);
  out[n] = 0;
  return 1;
}

/* [start, end) lies inside the image: callers checked it against the file size. */
static flagos_status_t check_zero(const bundle_file_t *b, uint64_t start, uint64_t end) {
  for (uint64_t i = start; i < end; i++)
    if (b->base[i]) return CORRUPT(b, "non-zero padding byte at offset %llu (file corrupted)", ull(i));
  return NULL;
}

static int cmp_name_idx(const void *a, const void *b, void *ctx) {
  const rsection_t *s = ctx;
  return strcmp(s[*(const uint32_t *)a].name, s[*(const uint32_t *)b].name);
}

static flagos_status_t check_toc(bundle_file_t *b, const header_t *h) {
  b->n = h->count;
  b->sec = calloc(h->count ? h->count : 1, sizeof *b->sec);
  b->by_name = calloc(h->count ? h->count : 1, sizeof *b->by_name);
  if (!b->sec || !b->by_name) return bundle_err(b, FLAGOS_ERR_OUT_OF_MEMORY, "out of memory reading the table of contents");
  uint64_t prev_end = h->toc_end;
  for (uint32_t i = 0; i < h->count; i++) {
    const uint8_t *e = b->base + h->toc_offset + (uint64_t)i * h->entry_size;
    rsection_t *s = &b->sec[i];
    atomic_init(&s->state, SEC_UNCHECKED);
    if (!parse_name(e + BT_NAME, s->name))
      return CORRUPT(b, "section %u has an invalid name (file corrupted)", i);
    s->offset = bundle_rd64(e + BT_OFFSET);
    s->size = bundle_rd64(e + BT_SIZE);
    s->checksum = bundle_rd64(e + BT_CHECKSUM);
    s->flags = bundle_rd32(e + BT_FLAGS);
    uint32_t unknown = s->flags & BUNDLE_FLAGS_REQUIRED_MASK & ~BUNDLE_KNOWN_REQUIRED_FLAGS;
    if (unknown)
      return UNSUPPORTED(b, "section '%s' uses flags 0x%x that this FlagOS does not support", s->name, unknown);
    if (s->offset % BUNDLE_ALIGN)
      return CORRUPT(b, "section '%s' offset %llu is not a multiple of %u (file corrupted)", s->name, ull(s->offset),
                     BUNDLE_ALIGN);
    if (s->offset > h->file_size || s->size > h->file_size - s->offset)
      return CORRUPT(b, "section '%s' (offset %llu, %llu bytes) ends beyond the file size the header records (%llu) "
                     "(file corrupted)", s->name, ull(s->offset), ull(s->size), ull(h->file_size));
    /* Sections are stored in file order without overlap, which also keeps them
     * clear of the header and the table of contents. */
    if (s->offset < prev_end)
      return CORRUPT(b, "section '%s' at offset %llu overlaps the data before it (which ends at byte %llu) "
                     "(file corrupted)", s->name, ull(s->offset), ull(prev_end));
    prev_end = s->offset + s->size;
    if (h->algo == BUNDLE_CHECKSUM_CRC32 && s->checksum > UINT32_MAX)
      return CORRUPT(b, "section '%s' has a checksum wider than 32 bits (file corrupted)", s->name);
    b->by_name[i] = i;
  }

  /* Truncation is reported by naming the first section the file cuts short; the
   * header's file size is trusted by now (its checksum matched). */
  if ((uint64_t)b->size < h->file_size) {
    for (uint32_t i = 0; i < h->count; i++)
      if (b->sec[i].offset + b->sec[i].size > (uint64_t)b->size)
        return CORRUPT(b, "truncated: section '%s' ends at byte %llu but the file has %zu bytes", b->sec[i].name,
                       ull(b->sec[i].offset + b->sec[i].size), b->size);
    return CORRUPT(b, "truncated: the header records %llu bytes but the file has %zu bytes", ull(h->file_size), b->size);
  }
  if ((uint64_t)b->size > h->file_size)
    return CORRUPT(b, "%llu unexpected bytes after the end the header records (%llu bytes) (file corrupted)",
                   ull((uint64_t)b->size - h->file_size), ull(h->file_size));

  /* Padding carries no checksum of its own, so it must be zero: then every byte
   * of a bundle is covered by a check and no damaged byte goes unnoticed. */
  FL_TRY(check_zero(b, h->header_size, h->toc_offset));
  uint64_t pos = h->toc_end;
  for (uint32_t i = 0; i < h->count; i++) {
    FL_TRY(check_zero(b, pos, b->sec[i].offset));
    pos = b->sec[i].offset + b->sec[i].size;
  }
  FL_TRY(check_zero(b, pos, h->file_size));

  qsort_r(b->by_name, h->count, sizeof *b->by_name, cmp_name_idx, b->sec);
  for (uint32_t i = 1; i < h->count; i++)
    if (strcmp(b->sec[b->by_name[i - 1]].name, b->sec[b->by_name[i]].name) == 0)
      return CORRUPT(b, "section name '%s' appears twice (file corrupted)", b->sec[b->by_name[i]].name);
  return NULL;
}

static flagos_status_t verify_section(const bundle_file_t *b, rsection_t *s) {
  int st = atomic_load_explicit(&s->state, memory_order_acquire);
  if (st == SEC_UNCHECKED) {
    uint32_t crc = bundle_crc32(b->base + s->offset, (size_t)s->size);
    st = crc == s->checksum ? SEC_GOOD : SEC_BAD;
    /* Two threads may race to check the same section; both reach the same verdict. */
    atomic_store_explicit(&s->state, st, memory_order_release);
  }
  if (st == SEC_BAD) return CORRUPT(b, "section '%s' checksum mismatch (file corrupted)", s->name);
  return NULL;
}

flagos_status_t bundle_file_verify(bundle_file_t *b) {
  if (!b) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_file_verify: NULL bundle");
  for (uint32_t i = 0; i < b->n; i++) FL_TRY(verify_section(b, &b->sec[i]));
  return NULL;
}

/* Takes over `img` per `kind` and validates it; on failure releases everything. */
static flagos_status_t open_image(const char *path, const uint8_t *img, size_t size, img_kind_t kind, unsigned flags,
                                  bundle_file_t **out) {
  bundle_file_t *b = calloc(1, sizeof *b);
  char *p = strdup(path);
  if (!b || !p) {
    free(b);
    free(p);
    if (kind == IMG_MAPPED) munmap((void *)img, size);
    if (kind == IMG_OWNED) free((void *)img);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  b->path = p;
  b->base = img;
  b->size = size;
  b->kind = kind;
  b->flags = flags;
  header_t h = {0};
  flagos_status_t st = check_header(b, &h);
  if (!st) st = check_toc(b, &h);
  if (!st && !(flags & BUNDLE_OPEN_VERIFY_LAZY)) st = bundle_file_verify(b);
  if (st) {
    bundle_file_close(b);
    return st;
  }
  *out = b;
  return NULL;
}

flagos_status_t bundle_file_open_ex(const char *path, unsigned flags, bundle_file_t **out) {
  if (!out) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_file_open: NULL output");
  *out = NULL;
  if (!path || !*path) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_file_open: empty path");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return FL_ERR(FLAGOS_ERR_NOT_FOUND, "%s: no such file", path);
    return FL_ERR(FLAGOS_ERR_IO, "%s: cannot open: %s", path, strerror(e));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return FL_ERR(FLAGOS_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(sb.st_mode)) {
    close(fd);
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: is a directory, not a FlagOS bundle", path);
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: is not a regular file, so it cannot be a FlagOS bundle", path);
  }
  if ((uint64_t)sb.st_size > SIZE_MAX) {
    close(fd);
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s: too large to map", path);
  }
  size_t size = (size_t)sb.st_size;
  if (size == 0) {
    /* mmap refuses zero bytes; the message must still say what is wrong. */
    close(fd);
    bundle_file_t tmp = {.path = (char *)path};
    return CORRUPT(&tmp, "is empty (0 bytes), not a FlagOS bundle");
  }
  /* MAP_PRIVATE: if someone rewrites the file in place we keep reading what we
   * validated for pages already touched. Writers replace bundles by rename, so
   * the mapped inode itself is never changed by FlagOS. */
  void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (m == MAP_FAILED) return FL_ERR(FLAGOS_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(e));
  return open_image(path, m, size, IMG_MAPPED, flags, out);
}

flagos_status_t bundle_file_open(const char *path, bundle_file_t **out) {
  return bundle_file_open_ex(path, BUNDLE_OPEN_VERIFY_ALL, out);
}

flagos_status_t bundle_file_from_memory_ex(void *data, size_t size, bool take_ownership, unsigned flags,
                                           bundle_file_t **out) {
  if (!out) {
    if (take_ownership) free(data);
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_file_from_memory: NULL output");
  }
  *out = NULL;
  if (!data && size) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_file_from_memory: NULL data");
  static const uint8_t empty[1];
  const uint8_t *img = data ? data : empty;
  return open_image("<memory bundle>", img, size, take_ownership && data ? IMG_OWNED : IMG_BORROWED, flags, out);
}

flagos_status_t bundle_file_from_memory(void *data, size_t size, bool take_ownership, bundle_file_t **out) {
  return bundle_file_from_memory_ex(data, size, take_ownership, BUNDLE_OPEN_VERIFY_ALL, out);
}

static rsection_t *find(const bundle_file_t *b, const char *name) {
  if (!b || !name) return NULL;
  uint32_t lo = 0, hi = b->n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    int c = strcmp(b->sec[b->by_name[mid]].name, name);
    if (c == 0) return &b->sec[b->by_name[mid]];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

const void *bundle_file_section(const bundle_file_t *b, const char *name, size_t *size) {
  rsection_t *s = find(b, name);
  if (size) *size = s ? (size_t)s->size : 0;
  return s ? b->base + s->offset : NULL;
}

flagos_status_t bundle_file_get(bundle_file_t *b, const char *name, const void **data, size_t *size) {
  if (data) *data = NULL;
  if (size) *size = 0;
  if (!b || !name || !data) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bundle_file_get: NULL argument");
  rsection_t *s = find(b, name);
  if (!s) return bundle_err(b, FLAGOS_ERR_NOT_FOUND, "has no section '%s'", name);
  FL_TRY(verify_section(b, s));
  *data = b->base + s->offset;
  if (size) *size = (size_t)s->size;
  return NULL;
}

int bundle_file_num_sections(const bundle_file_t *b) { return b ? (int)b->n : 0; }

const char *bundle_file_section_name(const bundle_file_t *b, int i) {
  if (!b || i < 0 || (uint32_t)i >= b->n) return NULL;
  return b->sec[i].name;
}

bool bundle_file_section_info(const bundle_file_t *b, int i, bundle_section_info_t *info) {
  if (!b || !info || i < 0 || (uint32_t)i >= b->n) return false;
  const rsection_t *s = &b->sec[i];
  info->name = s->name;
  info->offset = s->offset;
  info->size = s->size;
  info->checksum = s->checksum;
  info->flags = s->flags;
  return true;
}

const void *bundle_file_data(const bundle_file_t *b, size_t *size) {
  if (size) *size = b ? b->size : 0;
  return b ? b->base : NULL;
}

void bundle_file_close(bundle_file_t *b) {
  if (!b) return;
  if (b->kind == IMG_MAPPED) munmap((void *)b->base, b->size);
  if (b->kind == IMG_OWNED) free((void *)b->base);
  free(b->sec);
  free(b->by_name);
  free(b->path);
  free(b);
}
