/* The plugins' gemm calls (cpu_gemm.c, cuda_blas.c, ocl_blas.c). The lowering states a
 * MatMul's batch as it is (src/ops/linalg.c; test_matmul_bias checks that), and
 * a library runs one shared B with A and Y contiguous over the batch best as
 * one product of batch*M rows (a linear layer on a batch of sequences: the
 * library's tile and split rules then see it whole). */
#ifndef FLAGOS_BACKENDS_GEMM_FOLD_H
#define FLAGOS_BACKENDS_GEMM_FOLD_H
#include <stdbool.h>
#include <stdint.h>

/* Folds the batch into M where it can (strides in elements, 0 = shared; lda
 * and ldy the rows' strides of A and Y, 0 = packed): A's and Y's batches must
 * continue their rows' stride. */
static inline void flagos_gemm_fold_batch(int64_t *batch, int64_t *M, int64_t K, int64_t N, bool ta, int64_t sa,
                                          int64_t sb, int64_t sy, int64_t lda, int64_t ldy) {
  int64_t ra = lda ? lda : K, ry = ldy ? ldy : N;
  if (*batch > 1 && sb == 0 && !ta && sa == *M * ra && sy == *M * ry) {
    *M *= *batch;
    *batch = 1;
  }
}

/* The call's optional row strides, ints 10 to 12 (docs/kernel-ir.md): ldb,
 * lda, ldy, each 0 (or absent) for packed rows. Fills ld[] = {lda, ldb, ldy}
 * as given (0 kept) and returns 0, or the operand ('A', 'B', 'Y') whose rows
 * would be shorter than a row apart. */
static inline char flagos_gemm_row_strides(const int64_t *v, int n_ints, int64_t M, int64_t N, int64_t K, bool ta,
                                           bool tb, int64_t ld[3]) {
  ld[1] = n_ints > 9 ? v[9] : 0;
  ld[0] = n_ints > 10 ? v[10] : 0;
  ld[2] = n_ints > 11 ? v[11] : 0;
  if (ld[0] < 0 || (ld[0] && ld[0] < (ta ? M : K))) return 'A';
  if (ld[1] < 0 || (ld[1] && ld[1] < (tb ? K : N))) return 'B';
  if (ld[2] < 0 || (ld[2] && ld[2] < N)) return 'Y';
  return 0;
}

#endif
