/* The FlagOS bundle: one mmap-able file of named, checksummed, 64-byte aligned
 * sections. This layer is a container only; which sections exist and what they
 * hold is the compiler's business. Byte layout, versioning rules and error
 * messages: docs/bundle-format.md. */
#ifndef FLAGOS_BUNDLE_H
#define FLAGOS_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flagos/status.h"

/* Newest format version this build reads and the only one it writes. */
#define BUNDLE_FORMAT_VERSION 1u
/* Every section (and the table of contents) starts at a multiple of this. */
#define BUNDLE_ALIGN 64u
/* Section names: 1..BUNDLE_NAME_MAX bytes of [a-z0-9._-]. */
#define BUNDLE_NAME_MAX 31

/* ---- writing ---- */

typedef struct bundle_writer bundle_writer_t;

bundle_writer_t *bundle_writer_create(void);
void bundle_writer_destroy(bundle_writer_t *w);
/* Adds a section (data copied; data may be NULL when size is 0). Names: 1..31
 * bytes of [a-z0-9._-]; duplicate names are an error. Sections are laid out in
 * the order they are added. */
flagos_status_t bundle_writer_add(bundle_writer_t *w, const char *name, const void *data, size_t size);
/* Writes atomically (temp file in the same directory + fsync + rename): a
 * failure never leaves a half-written bundle at `path`, and an existing file
 * there stays untouched unless the whole new file made it to disk. */
flagos_status_t bundle_writer_write_file(bundle_writer_t *w, const char *path);
/* The whole file image in memory (caller frees with free()); the image is
 * 64-byte aligned, so sections read from it keep their alignment. */
flagos_status_t bundle_writer_to_memory(bundle_writer_t *w, void **data, size_t *size);

/* ---- reading ---- */

typedef struct bundle_file bundle_file_t;

/* Open options (bit set) for the *_ex functions. */
enum {
  /* Check header, table of contents and every section's checksum at open (the
   * default: a damaged bundle is refused before anything runs). */
  BUNDLE_OPEN_VERIFY_ALL = 0,
  /* Check header and table of contents only; a section's checksum is checked the
   * first time bundle_file_get() hands it out (or by bundle_file_verify()). For
   * tools that read the manifest of a multi-GB bundle without touching weights.
   * bundle_file_section() does NOT verify in this mode. */
  BUNDLE_OPEN_VERIFY_LAZY = 1u << 0
};

/* Opens with mmap (read-only), checks magic, format version, table of contents
 * bounds, alignment and every section's checksum. Errors name the file and the
 * section, e.g. "model.flagos: section 'weights' checksum mismatch (file corrupted)". */
flagos_status_t bundle_file_open(const char *path, bundle_file_t **out);
flagos_status_t bundle_file_open_ex(const char *path, unsigned flags, bundle_file_t **out);
/* Same over a memory image; with take_ownership the image is free()d on close
 * (also when opening fails). Without it the image must outlive the bundle.
 * Section pointers are 64-byte aligned only if `data` is. */
flagos_status_t bundle_file_from_memory(void *data, size_t size, bool take_ownership, bundle_file_t **out);
flagos_status_t bundle_file_from_memory_ex(void *data, size_t size, bool take_ownership, unsigned flags,
                                           bundle_file_t **out);

/* Section bytes, NULL if absent (a present empty section gives a non-NULL
 * pointer and *size 0). `size` may be NULL. */
const void *bundle_file_section(const bundle_file_t *b, const char *name, size_t *size);
/* Like bundle_file_section, but absence is an error (FLAGOS_ERR_NOT_FOUND naming
 * the file and section) and, when opened with BUNDLE_OPEN_VERIFY_LAZY, the
 * section's checksum is checked on first use. Thread-safe. */
flagos_status_t bundle_file_get(bundle_file_t *b, const char *name, const void **data, size_t *size);
/* Checks every section not yet checked (no-op after a default open). */
flagos_status_t bundle_file_verify(bundle_file_t *b);

int bundle_file_num_sections(const bundle_file_t *b);
/* Sections in file order; NULL when i is out of range. */
const char *bundle_file_section_name(const bundle_file_t *b, int i);

typedef struct bundle_section_info {
  const char *name;
  uint64_t offset;   /* from the start of the file */
  uint64_t size;
  uint64_t checksum; /* as stored; CRC-32 in the low 32 bits for format 1 */
  uint32_t flags;
} bundle_section_info_t;
/* Table-of-contents entry i (for `flagos validate` and friends); false when out of range. */
bool bundle_file_section_info(const bundle_file_t *b, int i, bundle_section_info_t *info);
/* The whole image and its size (mapped or in memory). */
const void *bundle_file_data(const bundle_file_t *b, size_t *size);

void bundle_file_close(bundle_file_t *b);

/* CRC-32 (ISO-HDLC, zlib's crc32) over any length: the checksum format 1 uses. */
uint32_t bundle_crc32(const void *data, size_t size);

#endif
