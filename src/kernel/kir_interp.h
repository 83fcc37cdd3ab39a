/* A host interpreter of kernel IR: runs one kernel on host buffers with the
 * exact semantics of the C emitter (kir.h, docs/kernel-ir.md), so that what
 * compile time computes (constant folding) is bit for bit what the compiled
 * kernel would compute. Library calls are ignored: the generic body is run. */
#ifndef FLAGOS_KIR_INTERP_H
#define FLAGOS_KIR_INTERP_H

#include "kernel/kir.h"

/* Work limit: points of the iteration space plus iterations of reduction
 * bodies. A kernel that would need more is refused (FLAGOS_ERR_UNSUPPORTED). */
#define KIR_INTERP_MAX_EVALS 50000000

/* Runs kernel k on host buffers (bufs[i] = kernel buffer i, dtype/layout as in
 * FlagOS memory: row-major, sub-byte types one per byte, bool one byte) with the
 * symbol array. bufs[i] must hold the element count that buffer i's dims give
 * with these symbols. Iterations run serially in row-major order (which also
 * satisfies serial kernels). Returns FLAGOS_ERR_UNSUPPORTED (never crashes) for
 * what it cannot evaluate exactly: unsupported dtypes or ops, out-of-range
 * loads or stores, unbound variables or symbols, too much work. */
flagos_status_t kir_interp_run(const kir_kernel_t *k, void *const *bufs, const int64_t *syms, int n_syms);

#endif
