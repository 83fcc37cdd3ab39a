/* The plugins' gemm calls (cuda_blas.c, ocl_blas.c): the lowering states a
 * MatMul's batch as it is (src/ops/linalg.c; test_matmul_bias checks that), and
 * a library runs one shared B with A and Y contiguous over the batch best as
 * one product of batch*M rows (a linear layer on a batch of sequences: the
 * library's tile and split rules then see it whole). */
#ifndef FLAGOS_BACKENDS_GEMM_FOLD_H
#define FLAGOS_BACKENDS_GEMM_FOLD_H
#include <stdbool.h>
#include <stdint.h>

/* Folds the batch into M where it can (strides in elements, 0 = shared). */
static inline void flagos_gemm_fold_batch(int64_t *batch, int64_t *M, int64_t K, int64_t N, bool ta, int64_t sa,
                                          int64_t sb, int64_t sy) {
  if (*batch > 1 && sb == 0 && !ta && sa == *M * K && sy == *M * N) {
    *M *= *batch;
    *batch = 1;
  }
}

#endif
