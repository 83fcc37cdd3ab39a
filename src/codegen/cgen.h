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

/* ---- OpenCL C (dialect_opencl.c) ---- */
/* Emits one OpenCL C program (appended to `out`) defining every kernel as
 *     __kernel void <kernel name>(__global T *b0, ..., __global const long *fo_syms)
 * (every kernel buffer in order, then the symbol array unless the kernel reads no
 * symbol), covering its points with
 * any 1-D NDRange (a loop striding by the global size). Serial and rank-0 kernels
 * declare reqd_work_group_size(1,1,1) and must be launched as one work-item. A
 * program with f64 data starts with the line "//! requires cl_khr_fp64". Fails as
 * cgen_c_emit does. */
flagos_status_t cgen_opencl_emit(kir_kernel_t *const *kernels, int n, fl_buf_t *out);

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

/* ---- CUDA C (dialect_cuda.c, compile_cuda.c) ---- */

/* Emits one CUDA C translation unit (appended to `out`) defining every kernel as
 *     extern "C" __global__ void <name>(T0 *b0, ..., int64_t S0, ...);
 * buffers then symbols as individual parameters (docs/kernel-ir.md, "The CUDA
 * kernel ABI"). Fails as cgen_c_emit does, and when a kernel has more buffers and
 * symbols than CUDA can pass. */
flagos_status_t cgen_cuda_emit(kir_kernel_t *const *kernels, int n, fl_buf_t *out);

/* The container cgen_cuda_compile produces (little-endian): a 16-byte header
 * (magic, version, entry count), entries of 24 bytes (kind, sm, offset, size),
 * then the payloads, each 16-byte aligned; PTX payloads end with a NUL. */
#define CGEN_CUDA_MAGIC "FLOSCUDA"
#define CGEN_CUDA_VERSION 1u
#define CGEN_CUDA_HEADER_SIZE 16
#define CGEN_CUDA_ENTRY_SIZE 24
#define CGEN_CUDA_CUBIN 1u
#define CGEN_CUDA_PTX 2u
#define CGEN_CUDA_DEFAULT_ARCHS "sm_80,sm_86,sm_89,sm_90,compute_90"

/* $FLAGOS_CUDA_ARCHS if set, else CGEN_CUDA_DEFAULT_ARCHS. */
const char *cgen_cuda_archs(void);

/* Compiles CUDA C with NVRTC (loaded with dlopen: $FLAGOS_NVRTC_LIBRARY, the
 * toolkit found at configure time, then libnvrtc.so.13/.12/.so) once per entry
 * of `archs` ("sm_80,...,compute_90"; NULL: cgen_cuda_archs()) and returns the
 * container (malloc'ed). Cached in <cache_dir>/cuda/<hash>.fatbin, keyed by the
 * source, NVRTC's version, the options and the architectures; on a compile error
 * the source is kept as <hash>.failed.cu and the status holds the first ~40
 * lines of NVRTC's log. cache_dir NULL means cgen_default_cache_dir(). */
flagos_status_t cgen_cuda_compile(const char *src, size_t len, const char *archs, const char *cache_dir, void **blob,
                                  size_t *blob_len);

/* Whether NVRTC can be loaded (and its version). */
bool cgen_cuda_available(int *major, int *minor);

/* Checks a container's structure (magic, version, entries inside it). */
flagos_status_t cgen_cuda_container_check(const void *data, size_t size);

#endif
