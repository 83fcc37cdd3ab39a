/* Byte layout of a bundle, shared by the writer and the reader. The tables in
 * docs/bundle-format.md are the specification; these constants must match them. */
#ifndef FLAGOS_BUNDLE_FORMAT_H
#define FLAGOS_BUNDLE_FORMAT_H

#include <stdint.h>
#include <string.h>

#include "bundle/bundle.h"

/* "\x89FLAGOS\n": the high first byte catches 7-bit transfers and text files,
 * the trailing newline catches newline translation. */
#define BUNDLE_MAGIC "\x89" "FLAGOS\n"
#define BUNDLE_MAGIC_LEN 8

/* Header (format 1). Offsets 0 (magic), 8 (version), 12 (header size) and the
 * last 4 bytes of the header (its checksum) are frozen for every future version,
 * so any reader can check a newer header before it reports the version. */
#define BH_MAGIC 0
#define BH_VERSION 8
#define BH_HEADER_SIZE 12
#define BH_FILE_SIZE 16
#define BH_TOC_OFFSET 24
#define BH_SECTION_COUNT 32
#define BH_TOC_ENTRY_SIZE 36
#define BH_CHECKSUM_ALGO 40
#define BH_REQUIRED_FEATURES 44
#define BH_TOC_CHECKSUM 48
#define BH_RESERVED 56
#define BH_HEADER_CHECKSUM 60 /* header_size - 4 in general */
#define BUNDLE_HEADER_SIZE 64u

/* Table-of-contents entry (format 1). */
#define BT_NAME 0
#define BT_NAME_LEN 32
#define BT_OFFSET 32
#define BT_SIZE 40
#define BT_CHECKSUM 48
#define BT_FLAGS 56
#define BT_RESERVED 60
#define BUNDLE_TOC_ENTRY_SIZE 64u

/* Limits a reader enforces so a hostile file cannot make it allocate or loop
 * without bound. */
#define BUNDLE_MAX_SECTIONS 65536u
#define BUNDLE_MAX_HEADER_SIZE 4096u
#define BUNDLE_MAX_TOC_ENTRY_SIZE 4096u

#define BUNDLE_CHECKSUM_CRC32 1u
/* Section flags: the low 16 bits change how the bytes must be read (a reader
 * refuses bits it does not know); the high 16 bits are hints it may ignore. */
#define BUNDLE_FLAGS_REQUIRED_MASK 0x0000ffffu
#define BUNDLE_KNOWN_REQUIRED_FLAGS 0u
#define BUNDLE_KNOWN_REQUIRED_FEATURES 0u

static inline uint32_t bundle_rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t bundle_rd64(const uint8_t *p) {
  return (uint64_t)bundle_rd32(p) | (uint64_t)bundle_rd32(p + 4) << 32;
}
static inline void bundle_wr32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void bundle_wr64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* 1..31 bytes of [a-z0-9._-]; `n` is the length. */
static inline int bundle_name_ok(const char *s, size_t n) {
  if (n < 1 || n > BUNDLE_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) return 0;
  }
  return 1;
}

#endif
