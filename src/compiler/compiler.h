/* The compiler driver: ONNX -> FlagIR -> passes -> kernel IR -> code per target ->
 * one bundle. Manifest schema: docs/manifest.md. */
#ifndef FLAGOS_COMPILER_H
#define FLAGOS_COMPILER_H

#include "flagos/flagos.h"
#include "ir/ir.h"

#define FLAGOS_MANIFEST_FORMAT 1

/* Compiles an imported model into a bundle image in memory (malloc'ed). */
flagos_status_t compiler_build_bundle(fir_model_t *m, const flagos_compile_options_t *opts, void **image, size_t *size);
/* Parses "cpu", "cpu,cuda" into a list; error names an unknown target. */
flagos_status_t compiler_parse_targets(const char *spec, const char **targets, int max, int *n);

#endif
