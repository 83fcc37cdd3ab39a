/* libFuzzer target for the bundle reader. Not part of the library build (the
 * folder's CMake glob is not recursive); tests/fuzz can add it when FLAGOS_FUZZ
 * is on, or build it by hand: clang -fsanitize=fuzzer,address,undefined with
 * -Iinclude -Isrc, this file, the .c files of src/bundle and src/base, -lz -lm.
 *
 * Checksums would stop a fuzzer at the header almost every time, so when the
 * first input byte is odd the harness recomputes the header and table-of-contents
 * checksums (as a forger would) and the fuzzer reaches every field check. */
#include <stdlib.h>
#include <string.h>

#include "bundle/bundle.h"
#include "bundle/bundle_format.h"

static void reseal(uint8_t *p, size_t n) {
  if (n < BUNDLE_HEADER_SIZE) return;
  uint64_t toc = bundle_rd64(p + BH_TOC_OFFSET);
  uint64_t len = (uint64_t)bundle_rd32(p + BH_SECTION_COUNT) * bundle_rd32(p + BH_TOC_ENTRY_SIZE);
  if (toc <= n && len <= n - toc) bundle_wr64(p + BH_TOC_CHECKSUM, bundle_crc32(p + toc, (size_t)len));
  uint32_t hs = bundle_rd32(p + BH_HEADER_SIZE);
  if (hs >= 8 && hs <= n) bundle_wr32(p + hs - 4, bundle_crc32(p, hs - 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned mode = data[0];
  size_t n = size - 1;
  uint8_t *img = malloc(n ? n : 1);
  if (!img) return 0;
  memcpy(img, data + 1, n);
  if (mode & 1) reseal(img, n);
  bundle_file_t *b = NULL;
  flagos_status_t st =
      bundle_file_from_memory_ex(img, n, true, (mode & 2) ? BUNDLE_OPEN_VERIFY_LAZY : BUNDLE_OPEN_VERIFY_ALL, &b);
  if (st) {
    (void)flagos_status_message(st);
    flagos_status_free(st);
    return 0;
  }
  volatile unsigned sink = 0;
  for (int i = 0; i < bundle_file_num_sections(b); i++) {
    const char *name = bundle_file_section_name(b, i);
    size_t sz = 0;
    const uint8_t *p = bundle_file_section(b, name, &sz);
    if (sz) sink += p[0] + p[sz - 1]; /* the reader vouched for these bytes */
    const void *q;
    st = bundle_file_get(b, name, &q, &sz);
    flagos_status_free(st);
  }
  flagos_status_free(bundle_file_verify(b));
  bundle_file_close(b);
  (void)sink;
  return 0;
}
