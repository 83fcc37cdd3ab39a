/* Bundle container tests. The layout is checked against the byte offsets of
 * docs/bundle-format.md with this file's own little-endian decoding, and every
 * checksum against zlib's crc32() called here directly, so the tests do not
 * trust the writer to check the reader (or the other way round). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "bundle/bundle.h"

static int failures;
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)
#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    flagos_status_t st_ = (expr);                                                                  \
    if (st_) {                                                                                     \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, flagos_status_message(st_)); \
      flagos_status_free(st_);                                                                     \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

/* Expects an error with `code` whose message contains every one of the
 * NUL-separated fragments in `want` (a single string in most calls). */
static int expect_err_at(int line, flagos_status_t st, flagos_code_t code, const char *want) {
  int ok = 1;
  if (!st) {
    fprintf(stderr, "%s:%d: expected an error containing \"%s\", got success\n", __FILE__, line, want);
    failures++;
    return 0;
  }
  const char *msg = flagos_status_message(st);
  if (flagos_status_code(st) != code) {
    fprintf(stderr, "%s:%d: expected code %d, got %d (%s)\n", __FILE__, line, (int)code, (int)flagos_status_code(st), msg);
    ok = 0;
  }
  if (!strstr(msg, want)) {
    fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, line, msg, want);
    ok = 0;
  }
  if (!ok) failures++;
  flagos_status_free(st);
  return ok;
}
#define EXPECT_ERR(st, code, want) expect_err_at(__LINE__, (st), (code), (want))

/* ---- independent reading of the documented layout ---- */
static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }
static uint32_t zcrc(const void *p, size_t n) { return (uint32_t)crc32(crc32(0, Z_NULL, 0), p, (uInt)n); }

/* Recomputes the TOC checksum (header bytes 48..55, over the TOC's original
 * extent) and the header checksum (bytes 60..63) after a test edits a field, so
 * the edit reaches the check it targets instead of being caught as damage. */
static void reseal(uint8_t *img, size_t toc, size_t toc_len) {
  put64(img + 48, zcrc(img + toc, toc_len));
  put32(img + 60, zcrc(img, 60));
}

static uint8_t *dup_bytes(const void *p, size_t n) {
  uint8_t *d = malloc(n ? n : 1);
  if (n) memcpy(d, p, n);
  return d;
}

static flagos_status_t open_mem(const void *img, size_t n) {
  bundle_file_t *b = NULL;
  flagos_status_t st = bundle_file_from_memory(dup_bytes(img, n), n, true, &b);
  bundle_file_close(b);
  return st;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = (uint8_t)x;
  }
}

static char tmpdir[256];
static char *tpath(const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
  return b;
}

static int write_raw(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = n == 0 || fwrite(p, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

static uint8_t *read_raw(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *d = malloc(len > 0 ? (size_t)len : 1);
  *n = fread(d, 1, (size_t)len, f);
  fclose(f);
  return d;
}

/* ---- the sections of the round-trip bundle ---- */
typedef struct tsec {
  const char *name;
  size_t size;
  uint8_t *data;
} tsec_t;

static tsec_t big[] = {
    {"manifest", 0, NULL}, {"s0", 0, NULL},  {"s1", 1, NULL},          {"s63", 63, NULL},
    {"s64", 64, NULL},     {"s65", 65, NULL}, {"weights", 1u << 20, NULL}, {"kernels.cpu", 4097, NULL},
    {"a_b-c.9", 3, NULL},
};
#define NBIG ((int)(sizeof big / sizeof big[0]))
static const char manifest_json[] = "{\"format\":\"flagos\",\"inputs\":[\"x\"]}";

static bundle_writer_t *make_big(void) {
  bundle_writer_t *w = bundle_writer_create();
  for (int i = 0; i < NBIG; i++) {
    if (!big[i].data) {
      if (strcmp(big[i].name, "manifest") == 0) {
        big[i].size = strlen(manifest_json);
        big[i].data = dup_bytes(manifest_json, big[i].size);
      } else {
        big[i].data = malloc(big[i].size ? big[i].size : 1);
        fill(big[i].data, big[i].size, (uint32_t)i + 7);
      }
    }
    CHECK_OK(bundle_writer_add(w, big[i].name, big[i].data, big[i].size));
  }
  return w;
}

static void test_crc(void) {
  /* The CRC-32 check value from the catalogue of parametrised CRCs (CRC-32/ISO-HDLC). */
  CHECK(zcrc("123456789", 9) == 0xCBF43926u);
  CHECK(bundle_crc32("123456789", 9) == 0xCBF43926u);
  CHECK(bundle_crc32("", 0) == 0);
  CHECK(bundle_crc32("a", 1) == 0xE8B7BE43u);
}

/* Walks the image with the documented offsets; returns the number of problems. */
static void check_layout(const uint8_t *img, size_t n, const tsec_t *secs, int nsec) {
  static const uint8_t magic[8] = {0x89, 'F', 'L', 'A', 'G', 'O', 'S', '\n'};
  CHECK(n >= 64);
  CHECK(memcmp(img, magic, 8) == 0);
  CHECK(le32(img + 8) == 1);                  /* format version */
  CHECK(le32(img + 12) == 64);                /* header size */
  CHECK(le64(img + 16) == n);                 /* file size */
  CHECK(le64(img + 24) == 64);                /* TOC offset */
  CHECK(le32(img + 32) == (uint32_t)nsec);    /* section count */
  CHECK(le32(img + 36) == 64);                /* TOC entry size */
  CHECK(le32(img + 40) == 1);                 /* checksum algorithm: CRC-32 */
  CHECK(le32(img + 44) == 0);                 /* required features */
  CHECK(le64(img + 48) == zcrc(img + 64, (size_t)nsec * 64));
  CHECK(le32(img + 56) == 0);                 /* reserved */
  CHECK(le32(img + 60) == zcrc(img, 60));
  CHECK(n % 64 == 0);
  uint64_t prev_end = 64 + (uint64_t)nsec * 64;
  for (int i = 0; i < nsec; i++) {
    const uint8_t *e = img + 64 + 64 * i;
    size_t len = strlen(secs[i].name);
    CHECK(memcmp(e, secs[i].name, len) == 0);
    for (size_t k = len; k < 32; k++) CHECK(e[k] == 0);
    uint64_t off = le64(e + 32), size = le64(e + 40);
    CHECK(off % 64 == 0);
    CHECK(off == (prev_end + 63) / 64 * 64); /* packed: next boundary after the previous data */
    CHECK(size == secs[i].size);
    CHECK(le64(e + 48) == zcrc(secs[i].data, secs[i].size));
    CHECK(le32(e + 56) == 0 && le32(e + 60) == 0);
    for (uint64_t k = prev_end; k < off; k++) CHECK(img[k] == 0);
    if (off + size <= n) CHECK(memcmp(img + off, secs[i].data, secs[i].size) == 0);
    prev_end = off + size;
  }
  for (uint64_t k = prev_end; k < n; k++) CHECK(img[k] == 0);
}

static void check_contents(bundle_file_t *b, const tsec_t *secs, int nsec) {
  CHECK(bundle_file_num_sections(b) == nsec);
  for (int i = 0; i < nsec; i++) {
    const char *nm = bundle_file_section_name(b, i);
    CHECK(nm && strcmp(nm, secs[i].name) == 0);
    size_t sz = 12345;
    const uint8_t *p = bundle_file_section(b, secs[i].name, &sz);
    CHECK(p != NULL);
    CHECK(sz == secs[i].size);
    CHECK(((uintptr_t)p) % 64 == 0);
    if (p && sz == secs[i].size) CHECK(memcmp(p, secs[i].data, sz) == 0);
    bundle_section_info_t info;
    CHECK(bundle_file_section_info(b, i, &info));
    CHECK(info.offset % 64 == 0 && info.size == secs[i].size);
    CHECK(info.checksum == zcrc(secs[i].data, secs[i].size));
    const void *g = NULL;
    CHECK_OK(bundle_file_get(b, secs[i].name, &g, &sz));
    CHECK(g == p);
  }
  size_t sz = 99;
  CHECK(bundle_file_section(b, "absent", &sz) == NULL && sz == 0);
  CHECK(bundle_file_section(b, "s", NULL) == NULL);
  CHECK(bundle_file_section_name(b, nsec) == NULL);
  CHECK(bundle_file_section_name(b, -1) == NULL);
  const void *g;
  EXPECT_ERR(bundle_file_get(b, "absent", &g, NULL), FLAGOS_ERR_NOT_FOUND, "no section 'absent'");
}

static void test_round_trip(void) {
  bundle_writer_t *w = make_big();
  void *img = NULL;
  size_t n = 0;
  CHECK_OK(bundle_writer_to_memory(w, &img, &n));
  CHECK(((uintptr_t)img) % 64 == 0);
  check_layout(img, n, big, NBIG);

  char *path = tpath("model.flagos");
  CHECK_OK(bundle_writer_write_file(w, path));
  size_t fn = 0;
  uint8_t *file = read_raw(path, &fn);
  CHECK(file && fn == n && memcmp(file, img, n) == 0);
  free(file);
  bundle_writer_destroy(w);

  bundle_file_t *b = NULL;
  CHECK_OK(bundle_file_open(path, &b));
  if (b) {
    check_contents(b, big, NBIG);
    size_t sz;
    CHECK(bundle_file_data(b, &sz) != NULL && sz == n);
    bundle_file_close(b);
  }
  b = NULL;
  CHECK_OK(bundle_file_from_memory(img, n, false, &b));
  if (b) check_contents(b, big, NBIG);
  bundle_file_close(b);
  b = NULL;
  CHECK_OK(bundle_file_from_memory(img, n, true, &b)); /* img freed by close */
  if (b) check_contents(b, big, NBIG);
  bundle_file_close(b);

  /* An empty bundle is valid: header only. */
  w = bundle_writer_create();
  CHECK_OK(bundle_writer_to_memory(w, &img, &n));
  CHECK(n == 64);
  check_layout(img, n, NULL, 0);
  b = NULL;
  CHECK_OK(bundle_file_from_memory(img, n, true, &b));
  CHECK(b && bundle_file_num_sections(b) == 0);
  bundle_file_close(b);
  bundle_writer_destroy(w);
}

/* A bundle small enough to damage at every byte: header, 3-entry TOC, and
 * sections that leave padding between them. */
static tsec_t small[] = {{"manifest", 10, NULL}, {"flagir", 70, NULL}, {"weights", 5, NULL}};
#define NSMALL 3

static uint8_t *make_small(size_t *n) {
  bundle_writer_t *w = bundle_writer_create();
  for (int i = 0; i < NSMALL; i++) {
    if (!small[i].data) {
      small[i].data = malloc(small[i].size);
      fill(small[i].data, small[i].size, 100u + (uint32_t)i);
    }
    CHECK_OK(bundle_writer_add(w, small[i].name, small[i].data, small[i].size));
  }
  void *img = NULL;
  CHECK_OK(bundle_writer_to_memory(w, &img, n));
  bundle_writer_destroy(w);
  return img;
}

static void test_small_layout(void) {
  size_t n;
  uint8_t *img = make_small(&n);
  /* Hand-computed: TOC ends at 64+3*64=256; manifest 256..266, flagir 320..390,
   * weights 448..453, file padded to 512. */
  CHECK(n == 512);
  CHECK(le64(img + 64 + 32) == 256 && le64(img + 128 + 32) == 320 && le64(img + 192 + 32) == 448);
  check_layout(img, n, small, NSMALL);
  free(img);
}

static void test_truncation(void) {
  size_t n;
  uint8_t *img = make_small(&n);
  const char *path = tpath("trunc.flagos");
  for (size_t len = 0; len < n; len++) {
    char want[160];
    if (len == 0)
      snprintf(want, sizeof want, "is empty (0 bytes)");
    else if (len < 64)
      snprintf(want, sizeof want, "truncated: the header needs 64 bytes but the file has %zu bytes", len);
    else if (len < 256)
      snprintf(want, sizeof want, "truncated: the table of contents ends at byte 256 but the file has %zu bytes", len);
    else {
      /* The first section the cut reaches, per the hand-computed layout. */
      static const struct { const char *name; size_t end; } ends[] = {{"manifest", 266}, {"flagir", 390}, {"weights", 453}};
      int k = 0;
      while (k < 3 && ends[k].end <= len) k++;
      if (k < 3)
        snprintf(want, sizeof want, "truncated: section '%s' ends at byte %zu but the file has %zu bytes", ends[k].name,
                 ends[k].end, len);
      else
        snprintf(want, sizeof want, "truncated: the header records 512 bytes but the file has %zu bytes", len);
    }
    EXPECT_ERR(open_mem(img, len), FLAGOS_ERR_CORRUPT, want);
    /* The same through a real file and mmap. */
    CHECK(write_raw(path, img, len) == 0);
    char want_file[200];
    snprintf(want_file, sizeof want_file, "trunc.flagos: %s", want); /* the file's name leads */
    bundle_file_t *b = NULL;
    EXPECT_ERR(bundle_file_open(path, &b), FLAGOS_ERR_CORRUPT, want_file);
    CHECK(b == NULL);
  }
  /* Extra bytes after the recorded end are damage too. */
  uint8_t *longer = calloc(1, n + 3);
  memcpy(longer, img, n);
  EXPECT_ERR(open_mem(longer, n + 3), FLAGOS_ERR_CORRUPT, "3 unexpected bytes after the end the header records (512 bytes)");
  free(longer);
  free(img);
}

static void test_flips(void) {
  size_t n;
  uint8_t *img = make_small(&n);
  CHECK_OK(open_mem(img, n));
  for (size_t i = 0; i < n; i++) {
    for (int bit = 0; bit < 8; bit += 7) {
      img[i] ^= (uint8_t)(1u << bit);
      char want[128];
      flagos_code_t code = FLAGOS_ERR_CORRUPT;
      if (i < 8)
        snprintf(want, sizeof want, "is not a FlagOS bundle (bad magic)");
      else if (i >= 12 && i < 16)
        /* A damaged header size is either implausible or moves the checksum. */
        snprintf(want, sizeof want, "%s", bit == 0 && i == 12 ? "header size 65 is invalid" : "header");
      else if (i < 64)
        snprintf(want, sizeof want, "header checksum mismatch (file corrupted)");
      else if (i < 256)
        snprintf(want, sizeof want, "table of contents checksum mismatch (file corrupted)");
      else if (i < 266)
        snprintf(want, sizeof want, "section 'manifest' checksum mismatch (file corrupted)");
      else if (i >= 320 && i < 390)
        snprintf(want, sizeof want, "section 'flagir' checksum mismatch (file corrupted)");
      else if (i >= 448 && i < 453)
        snprintf(want, sizeof want, "section 'weights' checksum mismatch (file corrupted)");
      else
        snprintf(want, sizeof want, "non-zero padding byte at offset %zu (file corrupted)", i);
      EXPECT_ERR(open_mem(img, n), code, want);
      img[i] ^= (uint8_t)(1u << bit);
    }
  }
  CHECK_OK(open_mem(img, n)); /* every flip was undone */
  free(img);
}

/* Deterministic random damage: any change of 1..4 adjacent bytes is caught
 * (CRC-32 detects every burst of up to 32 bits; padding must be zero), and no
 * input, however damaged, may crash the reader. */
static void test_random_damage(void) {
  size_t n;
  uint8_t *img = make_small(&n);
  uint8_t *work = malloc(n + 64);
  uint32_t x = 12345;
#define RND() (x ^= x << 13, x ^= x >> 17, x ^= x << 5, x)
  for (int it = 0; it < 20000; it++) {
    memcpy(work, img, n);
    size_t len = n;
    size_t at = RND() % n, k = 1 + RND() % 4;
    int changed = 0;
    for (size_t j = 0; j < k && at + j < n; j++) {
      uint8_t v = (uint8_t)RND();
      if (v != work[at + j]) changed = 1;
      work[at + j] = v;
    }
    if (it % 3 == 0) {
      len = RND() % (n + 64);
      if (len > n) memset(work + n, (int)(RND() & 1), len - n);
      if (len != n) changed = 1;
    }
    flagos_status_t st = open_mem(work, len);
    if (changed)
      CHECK(st != NULL);
    else
      CHECK(st == NULL);
    flagos_status_free(st);
  }
#undef RND
  free(work);
  free(img);
}

/* Field-level checks reached with consistent checksums (what a buggy writer or
 * a deliberate forgery would produce). */
static void test_crafted(void) {
  size_t n;
  uint8_t *img = make_small(&n);
  uint8_t *w = malloc(n + 4096);
  const uint64_t E0 = 64, E1 = 128, E2 = 192; /* TOC entries */
#define EDIT(stmt, code, want)                                                                     \
  do {                                                                                             \
    memcpy(w, img, n);                                                                             \
    size_t wn = n;                                                                                 \
    (void)wn;                                                                                      \
    stmt;                                                                                          \
    reseal(w, 64, 192);                                                                            \
    EXPECT_ERR(open_mem(w, wn), code, want);                                                       \
  } while (0)

  EDIT(put32(w + 8, 7), FLAGOS_ERR_UNSUPPORTED, "format version 7 is newer than this FlagOS supports (1)");
  EDIT(put32(w + 8, 0), FLAGOS_ERR_CORRUPT, "format version 0 is invalid");
  EDIT(put32(w + 40, 2), FLAGOS_ERR_UNSUPPORTED, "checksum algorithm 2 is not supported");
  EDIT(put32(w + 44, 0x10), FLAGOS_ERR_UNSUPPORTED, "needs format features 0x10");
  EDIT(put64(w + 16, 32), FLAGOS_ERR_CORRUPT, "less than the header itself");
  EDIT(put64(w + 16, 1024), FLAGOS_ERR_CORRUPT, "truncated: the header records 1024 bytes but the file has 512 bytes");
  EDIT(put64(w + 24, 96), FLAGOS_ERR_CORRUPT, "table of contents offset 96 is invalid");
  EDIT(put64(w + 24, 32), FLAGOS_ERR_CORRUPT, "table of contents offset 32 is invalid");
  EDIT(put64(w + 24, UINT64_MAX - 63), FLAGOS_ERR_CORRUPT, "ends beyond the file size");
  EDIT(put32(w + 36, 60), FLAGOS_ERR_CORRUPT, "table of contents entry size 60 is invalid");
  EDIT(put32(w + 36, 1u << 31), FLAGOS_ERR_CORRUPT, "table of contents entry size 2147483648 is invalid");
  EDIT(put32(w + 32, 100000), FLAGOS_ERR_CORRUPT, "100000 sections is more than a bundle may hold");
  EDIT(put32(w + 32, 65536), FLAGOS_ERR_CORRUPT, "table of contents (bytes 64..4194368) ends beyond");
  EDIT(put32(w + 12, 4104), FLAGOS_ERR_CORRUPT, "header size 4104 is invalid");
  EDIT(put32(w + 12, 72), FLAGOS_ERR_CORRUPT, "header checksum mismatch"); /* checksum now read at 68 */
  /* Section entries. */
  EDIT(put64(w + E1 + 32, 330), FLAGOS_ERR_CORRUPT, "section 'flagir' offset 330 is not a multiple of 64");
  EDIT(put64(w + E1 + 32, 256), FLAGOS_ERR_CORRUPT, "section 'flagir' at offset 256 overlaps the data before it (which ends at byte 266)");
  EDIT(put64(w + E0 + 32, 192), FLAGOS_ERR_CORRUPT, "section 'manifest' at offset 192 overlaps the data before it (which ends at byte 256)");
  EDIT(put64(w + E2 + 40, UINT64_MAX), FLAGOS_ERR_CORRUPT, "section 'weights' (offset 448, 18446744073709551615 bytes) ends beyond");
  EDIT(put64(w + E2 + 32, UINT64_MAX - 63), FLAGOS_ERR_CORRUPT, "section 'weights' (offset 18446744073709551552, 5 bytes) ends beyond");
  EDIT(put64(w + E2 + 40, 65), FLAGOS_ERR_CORRUPT, "section 'weights' (offset 448, 65 bytes) ends beyond the file size the header records (512)");
  EDIT(put64(w + E2 + 48, 1ull << 32), FLAGOS_ERR_CORRUPT, "section 'weights' has a checksum wider than 32 bits");
  EDIT(put32(w + E1 + 56, 1), FLAGOS_ERR_UNSUPPORTED, "section 'flagir' uses flags 0x1 that this FlagOS does not support");
  EDIT(put64(w + E2 + 48, le64(w + E2 + 48) ^ 1), FLAGOS_ERR_CORRUPT, "section 'weights' checksum mismatch");
  EDIT(put64(w + E1 + 40, 71), FLAGOS_ERR_CORRUPT, "section 'flagir' checksum mismatch");
  /* Names: bad characters, no terminator, garbage after the terminator, empty, duplicates. */
  EDIT(w[E1] = 'F', FLAGOS_ERR_CORRUPT, "section 1 has an invalid name");
  EDIT(w[E1 + 2] = '/', FLAGOS_ERR_CORRUPT, "section 1 has an invalid name");
  EDIT(memset(w + E0, 'a', 32), FLAGOS_ERR_CORRUPT, "section 0 has an invalid name");
  EDIT(w[E0 + 20] = 'x', FLAGOS_ERR_CORRUPT, "section 0 has an invalid name");
  EDIT(memset(w + E2, 0, 32), FLAGOS_ERR_CORRUPT, "section 2 has an invalid name");
  EDIT((memset(w + E2, 0, 32), memcpy(w + E2, "manifest", 8)), FLAGOS_ERR_CORRUPT, "section name 'manifest' appears twice");
  /* Trailing bytes, even zero ones, with a consistent header. */
  EDIT((memset(w + n, 0, 64), wn = n + 64), FLAGOS_ERR_CORRUPT, "64 unexpected bytes after the end");
#undef EDIT

  /* What a reader must accept: optional (high 16) flag bits and reserved fields
   * are ignored, so later writers can use them without a version bump. */
  memcpy(w, img, n);
  put32(w + E1 + 56, 0x80000000u);
  put32(w + E1 + 60, 0xdeadbeef);
  put32(w + 56, 0x12345678);
  reseal(w, 64, 192);
  bundle_file_t *b = NULL;
  CHECK_OK(bundle_file_from_memory(w, n, false, &b));
  bundle_section_info_t info;
  CHECK(b && bundle_file_section_info(b, 1, &info) && info.flags == 0x80000000u);
  bundle_file_close(b);
  free(w);
  free(img);
}

/* A file laid out by hand from the spec with the room it leaves for growth:
 * 128-byte TOC entries, the TOC after a zero gap, sections in a non-packed
 * layout. A format-1 reader must accept it. */
static void test_hand_built(void) {
  uint8_t f[1024] = {0};
  static const uint8_t magic[8] = {0x89, 'F', 'L', 'A', 'G', 'O', 'S', '\n'};
  memcpy(f, magic, 8);
  put32(f + 8, 1);
  put32(f + 12, 64);
  put64(f + 16, 1000);    /* file size: need not be a multiple of 64 */
  put64(f + 24, 128);     /* TOC after a zero gap */
  put32(f + 32, 2);
  put32(f + 36, 128);     /* entries larger than format 1's 64 bytes */
  put32(f + 40, 1);
  uint8_t *e0 = f + 128, *e1 = f + 256;
  memcpy(e0, "zeta", 4);
  put64(e0 + 32, 512);
  put64(e0 + 40, 11);
  memcpy(f + 512, "hello world", 11);
  put64(e0 + 48, zcrc("hello world", 11));
  memset(e0 + 64, 0xAB, 64); /* fields a later minor revision might add */
  memcpy(e1, "alpha", 5);
  put64(e1 + 32, 960);
  put64(e1 + 40, 40);
  memset(f + 960, 7, 40);
  put64(e1 + 48, zcrc(f + 960, 40));
  reseal(f, 128, 256);
  bundle_file_t *b = NULL;
  CHECK_OK(bundle_file_from_memory(f, 1000, false, &b));
  if (b) {
    size_t sz;
    const char *p = bundle_file_section(b, "zeta", &sz);
    CHECK(p && sz == 11 && memcmp(p, "hello world", 11) == 0);
    CHECK(bundle_file_section(b, "alpha", &sz) == (const void *)(f + 960) && sz == 40);
    CHECK(strcmp(bundle_file_section_name(b, 0), "zeta") == 0);
    bundle_file_close(b);
  }
  f[100] = 1; /* in the gap between header and TOC */
  EXPECT_ERR(open_mem(f, 1000), FLAGOS_ERR_CORRUPT, "non-zero padding byte at offset 100");
  f[100] = 0;
  /* A newer version with a larger header still reports its version, because the
   * header checksum sits in the header's last 4 bytes in every version. */
  uint8_t g[256] = {0};
  memcpy(g, magic, 8);
  put32(g + 8, 2);
  put32(g + 12, 128);
  put32(g + 124, zcrc(g, 124));
  EXPECT_ERR(open_mem(g, 256), FLAGOS_ERR_UNSUPPORTED, "format version 2 is newer than this FlagOS supports (1)");
}

static void test_writer_errors(void) {
  bundle_writer_t *w = bundle_writer_create();
  uint8_t d[4] = {1, 2, 3, 4};
  CHECK_OK(bundle_writer_add(w, "manifest", d, 4));
  EXPECT_ERR(bundle_writer_add(w, "manifest", d, 2), FLAGOS_ERR_INVALID_ARGUMENT, "'manifest' added twice");
  static const char *bad[] = {"", "Manifest", "a b", "x/y", "caf\xc3\xa9", "tab\t", "abcdefghijklmnopqrstuvwxyz012345"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    EXPECT_ERR(bundle_writer_add(w, bad[i], d, 1), FLAGOS_ERR_INVALID_ARGUMENT, "is invalid: names are 1..31 bytes");
  EXPECT_ERR(bundle_writer_add(w, "nul", NULL, 3), FLAGOS_ERR_INVALID_ARGUMENT, "NULL data");
  CHECK_OK(bundle_writer_add(w, "abcdefghijklmnopqrstuvwxyz01234", d, 1)); /* 31 bytes */
  CHECK_OK(bundle_writer_add(w, "0.9_-z", d, 0));
  CHECK_OK(bundle_writer_add(w, "empty", NULL, 0));
  void *img;
  size_t n;
  CHECK_OK(bundle_writer_to_memory(w, &img, &n));
  bundle_file_t *b = NULL;
  CHECK_OK(bundle_file_from_memory(img, n, true, &b));
  CHECK(b && bundle_file_num_sections(b) == 4); /* failed adds left nothing behind */
  size_t sz = 9;
  CHECK(b && bundle_file_section(b, "empty", &sz) != NULL && sz == 0);
  bundle_file_close(b);
  bundle_writer_destroy(w);
}

static int count_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  int k = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".tmp")) k++;
  if (d) closedir(d);
  return k;
}

static void test_files(void) {
  bundle_file_t *b = NULL;
  EXPECT_ERR(bundle_file_open(tpath("missing.flagos"), &b), FLAGOS_ERR_NOT_FOUND, "missing.flagos: no such file");
  CHECK(b == NULL);
  EXPECT_ERR(bundle_file_open(tmpdir, &b), FLAGOS_ERR_INVALID_ARGUMENT, "is a directory, not a FlagOS bundle");
  EXPECT_ERR(bundle_file_open("/dev/null", &b), FLAGOS_ERR_INVALID_ARGUMENT, "/dev/null: is not a regular file");
  CHECK(write_raw(tpath("empty.flagos"), "", 0) == 0);
  EXPECT_ERR(bundle_file_open(tpath("empty.flagos"), &b), FLAGOS_ERR_CORRUPT, "empty.flagos: is empty (0 bytes), not a FlagOS bundle");
  const char text[] = "ir_version: 8\nproducer_name: \"pytorch\"\n this is a text file, long enough to hold a header......";
  CHECK(write_raw(tpath("text.flagos"), text, sizeof text) == 0);
  EXPECT_ERR(bundle_file_open(tpath("text.flagos"), &b), FLAGOS_ERR_CORRUPT, "text.flagos: is not a FlagOS bundle (bad magic)");
  CHECK(write_raw(tpath("short.flagos"), "\x89" "FLA", 4) == 0);
  EXPECT_ERR(bundle_file_open(tpath("short.flagos"), &b), FLAGOS_ERR_CORRUPT, "truncated: the header needs 64 bytes but the file has 4 bytes");
  CHECK(write_raw(tpath("short2.flagos"), "\x89" "FLX", 4) == 0);
  EXPECT_ERR(bundle_file_open(tpath("short2.flagos"), &b), FLAGOS_ERR_CORRUPT, "bad magic");

  /* Damage through the file path names the file and the section. */
  size_t n;
  uint8_t *img = make_small(&n);
  img[450] ^= 0x20;
  CHECK(write_raw(tpath("model.flagos"), img, n) == 0);
  EXPECT_ERR(bundle_file_open(tpath("model.flagos"), &b), FLAGOS_ERR_CORRUPT, "model.flagos: section 'weights' checksum mismatch (file corrupted)");

  /* Lazy verification: header and TOC still checked at open, sections on use. */
  CHECK_OK(bundle_file_open_ex(tpath("model.flagos"), BUNDLE_OPEN_VERIFY_LAZY, &b));
  if (b) {
    const void *p;
    size_t sz;
    CHECK_OK(bundle_file_get(b, "manifest", &p, &sz));
    CHECK(sz == 10 && memcmp(p, small[0].data, 10) == 0);
    EXPECT_ERR(bundle_file_get(b, "weights", &p, &sz), FLAGOS_ERR_CORRUPT, "section 'weights' checksum mismatch");
    CHECK(p == NULL);
    EXPECT_ERR(bundle_file_get(b, "weights", &p, &sz), FLAGOS_ERR_CORRUPT, "section 'weights' checksum mismatch");
    EXPECT_ERR(bundle_file_verify(b), FLAGOS_ERR_CORRUPT, "section 'weights' checksum mismatch");
    bundle_file_close(b);
    b = NULL;
  }
  img[450] ^= 0x20;
  img[20] ^= 1;
  EXPECT_ERR(bundle_file_from_memory_ex(dup_bytes(img, n), n, true, BUNDLE_OPEN_VERIFY_LAZY, &b), FLAGOS_ERR_CORRUPT,
             "<memory bundle>: header checksum mismatch");
  img[20] ^= 1;
  CHECK_OK(bundle_file_from_memory_ex(img, n, false, BUNDLE_OPEN_VERIFY_LAZY, &b));
  if (b) CHECK_OK(bundle_file_verify(b));
  bundle_file_close(b);
  b = NULL;

  /* Atomic writes. */
  bundle_writer_t *w = bundle_writer_create();
  CHECK_OK(bundle_writer_add(w, "weights", img, n));
  EXPECT_ERR(bundle_writer_write_file(w, tpath("no/such/dir/m.flagos")), FLAGOS_ERR_NOT_FOUND, "cannot write bundle");
  CHECK(mkdir(tpath("adir"), 0755) == 0);
  EXPECT_ERR(bundle_writer_write_file(w, tpath("adir")), FLAGOS_ERR_IO, "rename failed");
  CHECK(count_tmp_files(tmpdir) == 0);

  /* A write that fails midway (file size limit) leaves the old bundle intact. */
  const char *good = tpath("good.flagos");
  CHECK(write_raw(good, img, n) == 0);
  bundle_writer_t *huge = bundle_writer_create();
  size_t hn = 1u << 20;
  uint8_t *hd = calloc(1, hn);
  CHECK_OK(bundle_writer_add(huge, "weights", hd, hn));
  free(hd);
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  struct rlimit lim = old;
  lim.rlim_cur = 100000;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
    flagos_status_t st = bundle_writer_write_file(huge, good);
    setrlimit(RLIMIT_FSIZE, &old);
    EXPECT_ERR(st, FLAGOS_ERR_IO, "good.flagos");
    size_t gn;
    uint8_t *g = read_raw(good, &gn);
    CHECK(g && gn == n && memcmp(g, img, n) == 0);
    free(g);
    CHECK(count_tmp_files(tmpdir) == 0);
  } else {
    fprintf(stderr, "note: setrlimit failed, skipping the partial-write test\n");
  }
  signal(SIGXFSZ, prev);
  /* Replacing an existing bundle works and the result opens. */
  CHECK_OK(bundle_writer_write_file(huge, good));
  CHECK_OK(bundle_file_open(good, &b));
  size_t sz = 0;
  CHECK(b && bundle_file_section(b, "weights", &sz) && sz == hn);
  bundle_file_close(b);
  CHECK(count_tmp_files(tmpdir) == 0);
  bundle_writer_destroy(huge);
  bundle_writer_destroy(w);
  free(img);
}

static void cleanup_dir(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[600];
  while (d && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (unlink(p) != 0) rmdir(p);
  }
  if (d) closedir(d);
  rmdir(dir);
}

int main(void) {
  const char *t = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/flagos_test_bundle_XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_crc();
  test_round_trip();
  test_small_layout();
  test_truncation();
  test_flips();
  test_random_damage();
  test_crafted();
  test_hand_built();
  test_writer_errors();
  test_files();
  cleanup_dir(tmpdir);
  for (int i = 0; i < NBIG; i++) free(big[i].data);
  for (int i = 0; i < NSMALL; i++) free(small[i].data);
  if (failures) {
    fprintf(stderr, "test_bundle: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_bundle: ok\n");
  return 0;
}
