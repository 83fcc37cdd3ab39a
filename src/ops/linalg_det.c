/* Det: determinants of the trailing n x n matrices.
 *
 * n <= 3 uses the cofactor formula in one pointwise kernel. Larger n runs
 * Gaussian elimination with partial pivoting as a sequence of kernels (for each
 * column: pick the pivot row, then swap and eliminate into the other of two
 * scratch matrices), so it needs n at compile time. Work is in float32 (float64
 * for float64 inputs). */
#include <math.h>

#include "ops/linalg_internal.h"

#define AR (c->arena)
#define DET_MAX_LU 256

flagos_status_t ops_la_det_infer(ops_ctx_t *c) {
  if (c->n_in != 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects one input");
  const ops_tensor_info_t *x = &c->in[0];
  if (!flagos_dtype_is_float(x->dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input must be floating point (got %s)", flagos_dtype_name(x->dtype));
  if (x->rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input must have rank >= 2 (got %d)", x->rank);
  int64_t n1 = x->dims[x->rank - 2], n2 = x->dims[x->rank - 1];
  if (n1 >= 0 && n2 >= 0 && n1 != n2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "matrices must be square (got %lld x %lld)", (long long)n1, (long long)n2);
  ops_set_out(c, 0, x->dtype, x->rank - 2, x->dims);
  return NULL;
}

static kir_expr_t *at(ops_ctx_t *c, kir_kernel_t *kk, int buf, int nb, kir_expr_t *const *bv, kir_expr_t *i,
                      kir_expr_t *j, flagos_dtype_t ct) {
  kir_expr_t *idx[OPS_MAX_RANK + 2];
  for (int q = 0; q < nb; q++) idx[q] = bv[q];
  idx[nb] = i;
  idx[nb + 1] = j;
  return kir_cast(AR, ct, kir_load(kk, buf, idx));
}

static kir_expr_t *small_det(ops_ctx_t *c, kir_kernel_t *kk, int b, int nb, kir_expr_t *const *v, int n,
                             flagos_dtype_t ct) {
#define E(i, j) at(c, kk, b, nb, v, kir_i64(AR, i), kir_i64(AR, j), ct)
#define MUL(x, y) kir_bin(AR, KIR_MUL, x, y)
#define SUB(x, y) kir_bin(AR, KIR_SUB, x, y)
#define ADD(x, y) kir_bin(AR, KIR_ADD, x, y)
  if (n == 0) return kir_const(AR, ct, 1.0);
  if (n == 1) return E(0, 0);
  if (n == 2) return SUB(MUL(E(0, 0), E(1, 1)), MUL(E(0, 1), E(1, 0)));
  kir_expr_t *m0 = SUB(MUL(E(1, 1), E(2, 2)), MUL(E(1, 2), E(2, 1)));
  kir_expr_t *m1 = SUB(MUL(E(1, 0), E(2, 2)), MUL(E(1, 2), E(2, 0)));
  kir_expr_t *m2 = SUB(MUL(E(1, 0), E(2, 1)), MUL(E(1, 1), E(2, 0)));
  return ADD(SUB(MUL(E(0, 0), m0), MUL(E(0, 1), m1)), MUL(E(0, 2), m2));
#undef E
#undef MUL
#undef SUB
#undef ADD
}

/* Matrix size unknown at compile time: the same elimination in one serial
 * kernel over (batch, column k, phase, i, j), working in place on a scratch
 * copy. Phases, each a separate iteration so the serial order sequences them:
 * 0 pick the pivot, 1-3 swap rows k and p through a row buffer, 4 eliminate. */
static flagos_status_t det_serial(ops_ctx_t *c) {
  const ops_tensor_info_t *x = &c->in[0];
  int nb = x->rank - 2;
  flagos_dtype_t ct = x->dtype == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  kir_expr_t *v[OPS_MAX_RANK + 3], *mdims[OPS_MAX_RANK], *bdims[OPS_MAX_RANK + 1];
  for (int q = 0; q < x->rank; q++) mdims[q] = ops_in_dim(c, 0, q);
  for (int q = 0; q < nb; q++) bdims[q] = mdims[q];
  kir_expr_t *N = mdims[nb + 1];
  int ta = ops_temp(c, ct, x->rank, mdims);
  bdims[nb] = N;
  int trow = ops_temp(c, ct, nb + 1, bdims);
  int tpiv = ops_temp(c, FLAGOS_INT64, nb, bdims);
  int tsign = ops_temp(c, ct, nb, bdims);
  {
    kir_kernel_t *kk = ops_kernel(c, "det_copy");
    int t = ops_buf_temp(c, kk, ta), b = ops_buf_in(c, kk, 0);
    kir_set_space(kk, x->rank, mdims, v);
    kir_store(kk, t, v, kir_cast(AR, ct, kir_load(kk, b, v)), NULL);
  }
  kir_kernel_t *kk = ops_kernel(c, "det_lu");
  kk->serial = true;
  int ba = ops_buf_temp(c, kk, ta), br = ops_buf_temp(c, kk, trow), bp = ops_buf_temp(c, kk, tpiv),
      bs = ops_buf_temp(c, kk, tsign);
  kir_expr_t *space[OPS_MAX_RANK + 3];
  for (int q = 0; q < nb; q++) space[q] = mdims[q];
  space[nb] = N;
  space[nb + 1] = kir_i64(AR, 5);
  space[nb + 2] = N;
  space[nb + 3] = N;
  kir_set_space(kk, nb + 4, space, v);
  kir_expr_t *K = v[nb], *ph = v[nb + 1], *i = v[nb + 2], *j = v[nb + 3];
  kir_expr_t *zero = kir_i64(AR, 0);
  kir_expr_t *at_ph[5];
  for (int q = 0; q < 5; q++) at_ph[q] = kir_bin(AR, KIR_EQ, ph, kir_i64(AR, q));
  kir_expr_t *first = kir_bin(AR, KIR_AND, kir_bin(AR, KIR_EQ, i, zero), kir_bin(AR, KIR_EQ, j, zero));
  kir_expr_t *row0 = kir_bin(AR, KIR_EQ, i, zero);
  kir_expr_t *p = kir_load(kk, bp, v);
  /* phase 0: pivot and sign */
  int r1 = kir_new_var(kk), r2 = kir_new_var(kk);
  kir_expr_t *R1 = kir_var(AR, r1), *R2 = kir_var(AR, r2);
  kir_expr_t *mx = kir_reduce(AR, KIR_RMAX, 1, &r1, &N,
                              kir_select(AR, kir_bin(AR, KIR_GE, R1, K),
                                         kir_un(AR, KIR_ABS, at(c, kk, ba, nb, v, R1, K, ct)), kir_const(AR, ct, -1.0)));
  kir_expr_t *is_p = kir_bin(AR, KIR_AND, kir_bin(AR, KIR_GE, R2, K),
                             kir_bin(AR, KIR_EQ, kir_un(AR, KIR_ABS, at(c, kk, ba, nb, v, R2, K, ct)), mx));
  kir_expr_t *pnew = kir_reduce(AR, KIR_RMIN, 1, &r2, &N, kir_select(AR, is_p, R2, N));
  pnew = kir_select(AR, kir_bin(AR, KIR_EQ, pnew, N), K, pnew);
  kir_store(kk, bp, v, pnew, kir_bin(AR, KIR_AND, at_ph[0], first));
  kir_expr_t *prev = kir_select(AR, kir_bin(AR, KIR_EQ, K, zero), kir_const(AR, ct, 1.0), kir_load(kk, bs, v));
  kir_expr_t *flip = kir_select(AR, kir_bin(AR, KIR_NE, p, K), kir_const(AR, ct, -1.0), kir_const(AR, ct, 1.0));
  /* The sign is updated in phase 1, once the pivot of phase 0 is stored. */
  kir_store(kk, bs, v, kir_bin(AR, KIR_MUL, prev, flip), kir_bin(AR, KIR_AND, at_ph[1], first));
  /* phases 1-3: swap rows k and p */
  kir_expr_t *ri[OPS_MAX_RANK + 1];
  for (int q = 0; q < nb; q++) ri[q] = v[q];
  ri[nb] = j;
  kir_store(kk, br, ri, at(c, kk, ba, nb, v, K, j, ct), kir_bin(AR, KIR_AND, at_ph[1], row0));
  kir_expr_t *ik[OPS_MAX_RANK + 2], *ip[OPS_MAX_RANK + 2];
  for (int q = 0; q < nb; q++) ik[q] = ip[q] = v[q];
  ik[nb] = K;
  ip[nb] = p;
  ik[nb + 1] = ip[nb + 1] = j;
  kir_store(kk, ba, ik, at(c, kk, ba, nb, v, p, j, ct), kir_bin(AR, KIR_AND, at_ph[2], row0));
  kir_store(kk, ba, ip, kir_load(kk, br, ri), kir_bin(AR, KIR_AND, at_ph[3], row0));
  /* phase 4: eliminate below the pivot (column k itself is left as is: only the diagonal is read later) */
  kir_expr_t *akk = at(c, kk, ba, nb, v, K, K, ct);
  kir_expr_t *ij[OPS_MAX_RANK + 2];
  for (int q = 0; q < nb; q++) ij[q] = v[q];
  ij[nb] = i;
  ij[nb + 1] = j;
  kir_expr_t *elim = kir_bin(AR, KIR_SUB, at(c, kk, ba, nb, v, i, j, ct),
                             kir_bin(AR, KIR_MUL, kir_bin(AR, KIR_DIV, at(c, kk, ba, nb, v, i, K, ct), akk),
                                     at(c, kk, ba, nb, v, K, j, ct)));
  kir_expr_t *cond = kir_bin(AR, KIR_AND, at_ph[4], kir_bin(AR, KIR_AND, kir_bin(AR, KIR_GT, i, K), kir_bin(AR, KIR_GT, j, K)));
  cond = kir_bin(AR, KIR_AND, cond, kir_bin(AR, KIR_NE, akk, kir_const(AR, ct, 0.0)));
  kir_store(kk, ba, ij, elim, cond);

  kir_kernel_t *kf = ops_out_kernel(c, 0, "det", v);
  ba = ops_buf_temp(c, kf, ta);
  bs = ops_buf_temp(c, kf, tsign);
  int d = kir_new_var(kf);
  kir_expr_t *D = kir_var(AR, d);
  kir_expr_t *prod = kir_reduce(AR, KIR_RPROD, 1, &d, &N, at(c, kf, ba, nb, v, D, D, ct));
  /* n = 0: the empty product, sign never set */
  kir_expr_t *sg = kir_select(AR, kir_bin(AR, KIR_EQ, N, zero), kir_const(AR, ct, 1.0), kir_load(kf, bs, v));
  kir_store(kf, 0, v, kir_cast(AR, c->out[0].dtype, kir_bin(AR, KIR_MUL, sg, prod)), NULL);
  return NULL;
}

flagos_status_t ops_la_det_lower(ops_ctx_t *c) {
  const ops_tensor_info_t *x = &c->in[0];
  int nb = x->rank - 2;
  int64_t n = x->dims[x->rank - 1];
  if (n < 0) n = x->dims[x->rank - 2];
  flagos_dtype_t ct = x->dtype == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  flagos_dtype_t ot = c->out[0].dtype;
  kir_expr_t *v[OPS_MAX_RANK];
  if (n >= 0 && n <= 3) {
    kir_kernel_t *kk = ops_out_kernel(c, 0, "det", v);
    int b = ops_buf_in(c, kk, 0);
    kir_store(kk, 0, v, kir_cast(AR, ot, small_det(c, kk, b, nb, v, (int)n, ct)), NULL);
    return NULL;
  }
  if (n < 0) return det_serial(c);
  if (n > DET_MAX_LU)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "matrices larger than %d x %d are not supported", DET_MAX_LU,
                   DET_MAX_LU);

  kir_expr_t *mdims[OPS_MAX_RANK];
  for (int q = 0; q < x->rank; q++) mdims[q] = ops_in_dim(c, 0, q);
  int tm[2] = {ops_temp(c, ct, x->rank, mdims), ops_temp(c, ct, x->rank, mdims)};
  kir_expr_t *bdims[OPS_MAX_RANK];
  for (int q = 0; q < nb; q++) bdims[q] = mdims[q];
  int tpiv = ops_temp(c, FLAGOS_INT64, nb, bdims);
  int tsign = ops_temp(c, ct, nb, bdims);
  kir_expr_t *N = kir_i64(AR, n);

  /* Copy in, converting to the working type. */
  {
    kir_kernel_t *kk = ops_kernel(c, "det_copy");
    int t = ops_buf_temp(c, kk, tm[0]);
    int b = ops_buf_in(c, kk, 0);
    kir_set_space(kk, x->rank, mdims, v);
    kir_store(kk, t, v, kir_cast(AR, ct, kir_load(kk, b, v)), NULL);
  }
  for (int64_t k = 0; k < n; k++) {
    int src = (int)(k & 1), dst = 1 - src;
    kir_expr_t *K = kir_i64(AR, k);
    /* Pivot: the first row r >= k with the largest |a[r][k]|. */
    {
      kir_kernel_t *kk = ops_kernel(c, "det_pivot");
      int ta = ops_buf_temp(c, kk, tm[src]);
      int tp = ops_buf_temp(c, kk, tpiv);
      int ts = ops_buf_temp(c, kk, tsign);
      kir_set_space(kk, nb, bdims, v);
      int r1 = kir_new_var(kk), r2 = kir_new_var(kk);
      kir_expr_t *R1 = kir_var(AR, r1), *R2 = kir_var(AR, r2);
      kir_expr_t *mx = kir_reduce(AR, KIR_RMAX, 1, &r1, &N,
                                  kir_select(AR, kir_bin(AR, KIR_GE, R1, K),
                                             kir_un(AR, KIR_ABS, at(c, kk, ta, nb, v, R1, K, ct)),
                                             kir_const(AR, ct, -1.0)));
      kir_expr_t *is_p = kir_bin(AR, KIR_AND, kir_bin(AR, KIR_GE, R2, K),
                                 kir_bin(AR, KIR_EQ, kir_un(AR, KIR_ABS, at(c, kk, ta, nb, v, R2, K, ct)), mx));
      kir_expr_t *p = kir_reduce(AR, KIR_RMIN, 1, &r2, &N, kir_select(AR, is_p, R2, N));
      /* A NaN column matches no row; keep the diagonal then. */
      p = kir_select(AR, kir_bin(AR, KIR_EQ, p, N), K, p);
      kir_store(kk, tp, v, p, NULL);
      kir_expr_t *flip = kir_select(AR, kir_bin(AR, KIR_NE, p, K), kir_const(AR, ct, -1.0), kir_const(AR, ct, 1.0));
      kir_expr_t *prev = k == 0 ? kir_const(AR, ct, 1.0) : kir_load(kk, ts, v);
      kir_store(kk, ts, v, kir_bin(AR, KIR_MUL, prev, flip), NULL);
    }
    /* Swap rows k and p, then eliminate column k below the diagonal. */
    {
      kir_kernel_t *kk = ops_kernel(c, "det_elim");
      int ta = ops_buf_temp(c, kk, tm[src]);
      int tb = ops_buf_temp(c, kk, tm[dst]);
      int tp = ops_buf_temp(c, kk, tpiv);
      kir_set_space(kk, x->rank, mdims, v);
      kir_expr_t *i = v[nb], *j = v[nb + 1];
      kir_expr_t *p = kir_load(kk, tp, v);
      kir_expr_t *ri = kir_select(AR, kir_bin(AR, KIR_EQ, i, K), p, kir_select(AR, kir_bin(AR, KIR_EQ, i, p), K, i));
      kir_expr_t *aij = at(c, kk, ta, nb, v, ri, j, ct);
      kir_expr_t *aik = at(c, kk, ta, nb, v, ri, K, ct);
      kir_expr_t *akj = at(c, kk, ta, nb, v, p, j, ct);
      kir_expr_t *akk = at(c, kk, ta, nb, v, p, K, ct);
      kir_expr_t *zero = kir_const(AR, ct, 0.0);
      kir_expr_t *elim = kir_bin(AR, KIR_SUB, aij, kir_bin(AR, KIR_MUL, kir_bin(AR, KIR_DIV, aik, akk), akj));
      kir_expr_t *below = kir_bin(AR, KIR_AND, kir_bin(AR, KIR_GT, i, K), kir_bin(AR, KIR_NE, akk, zero));
      kir_store(kk, tb, v, kir_select(AR, below, elim, aij), NULL);
    }
  }
  kir_kernel_t *kk = ops_out_kernel(c, 0, "det", v);
  int ta = ops_buf_temp(c, kk, tm[n & 1]);
  int ts = ops_buf_temp(c, kk, tsign);
  int d = kir_new_var(kk);
  kir_expr_t *D = kir_var(AR, d);
  kir_expr_t *prod = kir_reduce(AR, KIR_RPROD, 1, &d, &N, at(c, kk, ta, nb, v, D, D, ct));
  kir_store(kk, 0, v, kir_cast(AR, ot, kir_bin(AR, KIR_MUL, kir_load(kk, ts, v), prod)), NULL);
  return NULL;
}
