/* Library calls of the cpu backend: "gemm" through OpenBLAS (f32, f64).
 * Anything else answers FLAGOS_ERR_UNSUPPORTED and the host runs the kernel's
 * generic body. The contract is in docs/kernel-ir.md:
 *   bufs [A, B, Y]; ints [batch, M, N, K, transA, transB, strideA, strideB, strideY]
 *   and optionally ldb, lda, ldy (batch strides in elements, 0 = the same
 *   matrix for every batch; ld*: elements between an operand's rows, 0 = packed);
 *   floats [alpha, beta]; row-major;
 *   Y_b = alpha * op(A_b) * op(B_b) + beta * Y_b for each batch b.
 * beta == 0 ignores Y's old contents (NaN included). A call with a bias (a 4th
 * buffer) is declined: OpenBLAS has no epilogue, and the lowering follows such
 * a call with a bias kernel and a plain call. */
#include <limits.h>
#include <string.h>

#include <cblas.h>

#include "cpu_internal.h"
#include "../gemm_fold.h"

static flagos_status_t gemm(cpu_state_t *s, const flagos_libcall_t *c) {
  /* nor an activation (a thirteenth int): the host runs the activation's kernel after the product */
  if (c->n_ints == 13) return CPU_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cpu backend: gemm with an activation is not provided");
  /* BLAS has no bias epilogue: the host runs the bias kernel, then the plain call. */
  bool ints_ok = c->n_ints >= 9 && c->n_ints <= 12;
  if (c->n_bufs == 4 && ints_ok && c->n_floats == 2)
    return CPU_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cpu backend: gemm with a bias is not provided");
  if (c->n_bufs != 3 || !ints_ok || c->n_floats != 2)
    return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "cpu backend: gemm takes 3 buffers, 9 to 12 ints and 2 floats (got %d, %d, %d)", c->n_bufs,
                   c->n_ints, c->n_floats);
  int32_t dt = c->buf_dtypes[0];
  if ((dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT64) || c->buf_dtypes[1] != dt || c->buf_dtypes[2] != dt)
    return CPU_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cpu backend: gemm on dtypes %d/%d/%d is not provided", (int)dt,
                   (int)c->buf_dtypes[1], (int)c->buf_dtypes[2]);
  const int64_t *v = c->ints;
  int64_t batch = v[0], M = v[1], N = v[2], K = v[3], sa = v[6], sb = v[7], sy = v[8];
  int ta = v[4] != 0, tb = v[5] != 0;
  int64_t ld[3]; /* lda, ldb, ldy as given; 0: packed */
  char bad = flagos_gemm_row_strides(v, c->n_ints, M, N, K, ta, tb, ld);
  double alpha = c->floats[0], beta = c->floats[1];
  if (bad)
    return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: gemm with %c's rows %lld apart, shorter than a row",
                   bad, (long long)ld[bad == 'A' ? 0 : bad == 'B' ? 1 : 2]);
  if (ld[0] > INT_MAX || ld[1] > INT_MAX || ld[2] > INT_MAX)
    return CPU_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cpu backend: gemm row stride beyond BLAS's 32-bit range");
  if (batch < 0 || M < 0 || N < 0 || K < 0 || sa < 0 || sb < 0 || sy < 0)
    return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "cpu backend: gemm with a negative size or stride (batch %lld, M %lld, N %lld, K %lld)",
                   (long long)batch, (long long)M, (long long)N, (long long)K);
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
    return CPU_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cpu backend: gemm dims beyond BLAS's 32-bit range");
  if (batch == 0 || M == 0 || N == 0) return NULL;
  if (!c->bufs[0] || !c->bufs[1] || !c->bufs[2])
    return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: gemm with a NULL buffer");
  int m = (int)M, n = (int)N, k = (int)K;
  /* BLAS wants leading dimensions of at least 1 even when a matrix is empty. */
  int lda = ld[0] ? (int)ld[0] : ta ? m : (k > 0 ? k : 1), ldb = ld[1] ? (int)ld[1] : tb ? (k > 0 ? k : 1) : n;
  int ldy = ld[2] ? (int)ld[2] : n;
  enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
  size_t es = dt == FLAGOS_FLOAT32 ? 4 : 8;
  for (int64_t b = 0; b < batch; b++) {
    char *A = (char *)c->bufs[0] + (size_t)(b * sa) * es, *B = (char *)c->bufs[1] + (size_t)(b * sb) * es;
    char *Y = (char *)c->bufs[2] + (size_t)(b * sy) * es;
    for (int i = 0; (beta == 0 || k == 0) && i < m; i++) {
      char *row = Y + (size_t)i * (size_t)ldy * es;
      /* so that NaNs in Y's old contents cannot leak */
      if (beta == 0) memset(row, 0, (size_t)n * es);
      for (int j = 0; k == 0 && beta != 0 && beta != 1 && j < n; j++) {
        if (dt == FLAGOS_FLOAT32) ((float *)row)[j] *= (float)beta;
        else ((double *)row)[j] *= beta;
      }
    }
    if (k == 0) continue;
    if (dt == FLAGOS_FLOAT32)
      cblas_sgemm(CblasRowMajor, opa, opb, m, n, k, (float)alpha, (const float *)A, lda, (const float *)B, ldb,
                  (float)beta, (float *)Y, ldy);
    else
      cblas_dgemm(CblasRowMajor, opa, opb, m, n, k, alpha, (const double *)A, lda, (const double *)B, ldb, beta,
                  (double *)Y, ldy);
  }
  return NULL;
}

flagos_status_t cpu_library_call(void *state, flagos_bstream_t stream, const flagos_libcall_t *call) {
  cpu_state_t *s = state;
  (void)stream;
  if (!call || !call->name) return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: library call without a name");
  if (strcmp(call->name, "gemm") == 0) return gemm(s, call);
  return CPU_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cpu backend: no library call '%s'", call->name);
}
