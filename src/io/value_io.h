/* Reading input values from files and writing output values to files, for the
 * command line and the conformance runner. File layout: README.md in this folder. */
#ifndef FLAGOS_VALUE_IO_H
#define FLAGOS_VALUE_IO_H

#include <stddef.h>

#include "flagos/flagos.h"
#include "ir/ir.h"

/* Loads a .npy or .pb (TensorProto / SequenceProto / OptionalProto) file into a flagos_value_t whose memory the
 * caller frees with flagos_value_clear(). `expected` (may be NULL) is the graph input's type: it says which
 * proto a .pb holds (tensor/sequence/optional) and lets a .npy of raw bits (uint16 for bfloat16, uint8 for
 * float8/int4/uint4/float4) be taken as the expected dtype. A folder is read as a sequence (0.npy, 1.npy ...)
 * and a file ending in ".none" as an empty optional: the layout io_save_value writes. */
flagos_status_t io_load_value(const char *path, const fir_type_t *expected, flagos_value_t *out);
/* Same for a TensorProto/SequenceProto/OptionalProto held in memory. */
flagos_status_t io_decode_pb_value(const void *data, size_t size, const fir_type_t *expected, flagos_value_t *out);
/* Writes value `v` named `name` into directory `dir` (created if missing): <name>.npy for tensors; dtypes NumPy
 * lacks (bfloat16, float8 types, e8m0, int4, uint4, float4, int2, uint2) as the raw bits in the smallest unsigned
 * integer holding one element (uint16 for bfloat16, uint8 for the others, one element per byte); strings as NumPy
 * unicode arrays (<U{maxlen}); a sequence as folder <name>/ holding 0.npy, 1.npy ...; an empty optional as an
 * empty file <name>.none; a present optional as its content. The name is escaped with io_escape_name(). */
flagos_status_t io_save_value(const char *dir, const char *name, const flagos_value_t *v);
/* File-name form of a value name (malloc'ed, caller frees): '%', '/', '\' and control characters become
 * %XX (two upper-case hex digits), and "." / ".." become "%2E" / "%2E%2E"; everything else is kept.
 * NULL for an empty name. */
char *io_escape_name(const char *name);

flagos_status_t io_read_npy(const void *data, size_t size, flagos_tensor_t *out); /* allocates out->data */
flagos_status_t io_write_npy(const char *path, const flagos_tensor_t *t);

/* Copies a FlagIR constant into a malloc'ed host tensor (strings duplicated). */
flagos_status_t io_tensor_from_fir(const fir_tensor_t *src, flagos_tensor_t *out);

#endif
