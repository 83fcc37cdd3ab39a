/* Code generation: kernel IR -> source -> loadable code.
 *
 * One shared emitter (cg_internal.h) turns kernels into C-family source; a
 * dialect (C with OpenMP today; CUDA C and OpenCL C later) supplies the pieces
 * that differ: kernel signature, how loop points map to threads, type and math
 * function names and the helper prelude. docs/kernel-ir.md states the semantics
 * every dialect keeps. */
#ifndef FLAGOS_CGEN_H
#define FLAGOS_CGEN_H

#include <stddef.h>

#include "base/base.h"
#include "kernel/kir.h"

/* Emits one C translation unit (appended to `out`) defining every kernel as an
 * exported function
 *     void <kernel name>(void *const *bufs, const int64_t *syms);
 * bufs[i] is kernel buffer i (row-major, contiguous); syms the node symbol array.
 * Fails (without touching the kernels) on names that are not C identifiers or are
 * repeated, on dtypes C cannot hold (strings, complex), and on ops a dtype does
 * not support (bit ops on floats...). */
flagos_status_t cgen_c_emit(kir_kernel_t *const *kernels, int n, fl_buf_t *out);

/* Compiles C source to a shared object with the system compiler ($CC, else cc)
 * and returns its bytes (malloc'ed, caller frees). Results are cached in
 * <cache_dir>/c/<hash>.so, keyed by the source, the compiler's identity (path and
 * `--version` output) and the flags; cache writes are atomic. cache_dir NULL
 * means cgen_default_cache_dir(). On a compiler error the status holds the first
 * ~40 lines of its diagnostics. opt_level is clamped to 0..3. */
flagos_status_t cgen_c_compile(const char *src, size_t len, int opt_level, const char *cache_dir, void **so,
                               size_t *so_len);

/* $FLAGOS_CACHE_DIR, else $XDG_CACHE_HOME/flagos, else ~/.cache/flagos; created
 * if missing (a failure to create it shows up later as an uncached compile). */
const char *cgen_default_cache_dir(void);

#endif
