/* Linear algebra: MatMul and Gemm (plus the family table; Einsum, Det and the
 * integer/quantized matmuls live in linalg_*.c).
 *
 * Every product is a reduction over K in kernel IR. Float32/float64 products
 * whose batch structure flattens to (batch, strideA, strideB, strideY) also carry
 * the "gemm" library call, which a backend with a BLAS may run instead.
 * MatMulBias (domain ai.flagos, made by src/passes/fuse_bias.c) is MatMul plus
 * a bias broadcast onto the product; a row-vector bias, as Gemm's C of N values,
 * rides on the gemm call as its epilogue where the backend has one (cuda). */
#include <math.h>
#include <string.h>

#include "ops/linalg_bias.h"
#include "ops/linalg_internal.h"

#define AR (c->arena)

kir_expr_t *ops_la_bcast_index(fl_arena_t *a, kir_expr_t *dim, kir_expr_t *v) {
  if (kir_is_const(dim, 1)) return kir_i64(a, 0);
  if (dim->kind == KIR_CONST) return v;
  return kir_select(a, kir_bin(a, KIR_EQ, dim, kir_i64(a, 1)), kir_i64(a, 0), v);
}

flagos_status_t ops_la_matmul_shape(ops_ctx_t *c, int ia, int ib, int *rank, int64_t *dims) {
  const ops_tensor_info_t *A = &c->in[ia], *B = &c->in[ib];
  if (A->rank < 1 || B->rank < 1)
    return ops_err(c, FLAGOS_ERR_SHAPE, "matmul operands need rank >= 1 (got %d and %d)", A->rank, B->rank);
  int64_t ka = A->dims[A->rank - 1], kb = B->dims[B->rank == 1 ? 0 : B->rank - 2];
  if (ka >= 0 && kb >= 0 && ka != kb)
    return ops_err(c, FLAGOS_ERR_SHAPE, "inner dimensions differ: %lld and %lld", (long long)ka, (long long)kb);
  int ba = A->rank > 2 ? A->rank - 2 : 0, bb = B->rank > 2 ? B->rank - 2 : 0;
  int nb = ba > bb ? ba : bb;
  for (int j = 0; j < nb; j++) {
    int64_t da = j - (nb - ba) >= 0 ? A->dims[j - (nb - ba)] : 1;
    int64_t db = j - (nb - bb) >= 0 ? B->dims[j - (nb - bb)] : 1;
    int64_t o;
    if (da == 1) o = db;
    else if (db == 1) o = da;
    else if (da < 0) o = db; /* unknown against known non-1: must equal it */
    else if (db < 0) o = da;
    else if (da != db)
      return ops_err(c, FLAGOS_ERR_SHAPE, "batch dimension %d does not broadcast: %lld against %lld", j,
                     (long long)da, (long long)db);
    else o = da;
    dims[j] = o;
  }
  int r = nb;
  if (A->rank >= 2) dims[r++] = A->dims[A->rank - 2];
  if (B->rank >= 2) dims[r++] = B->dims[B->rank - 1];
  *rank = r;
  return NULL;
}

kir_expr_t *ops_la_load_operand(ops_ctx_t *c, kir_kernel_t *kk, int buf, int nb, kir_expr_t *const *bvars,
                                kir_expr_t *row, kir_expr_t *col) {
  const kir_buf_t *b = &kk->bufs[buf];
  kir_expr_t *idx[OPS_MAX_RANK];
  int mat = b->rank >= 2 ? 2 : 1;
  int bat = b->rank - mat;
  for (int j = 0; j < bat; j++) idx[j] = ops_la_bcast_index(AR, b->dims[j], bvars[nb - bat + j]);
  if (mat == 2) {
    idx[bat] = row;
    idx[bat + 1] = col;
  } else {
    idx[bat] = row ? row : col;
  }
  return kir_load(kk, buf, idx);
}

/* ---- MatMul ---- */

static flagos_status_t matmul_infer_ab(ops_ctx_t *c) {
  if (!ops_has_in(c, 0) || !ops_has_in(c, 1)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs A and B");
  if (c->in[0].dtype != c->in[1].dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input dtypes differ: %s and %s", flagos_dtype_name(c->in[0].dtype),
                   flagos_dtype_name(c->in[1].dtype));
  flagos_dtype_t dt = c->in[0].dtype;
  if (!flagos_dtype_is_float(dt) && !flagos_dtype_is_int(dt))
    return ops_err(c, FLAGOS_ERR_SHAPE, "unsupported dtype %s", flagos_dtype_name(dt));
  int r;
  int64_t d[OPS_MAX_RANK];
  FL_TRY(ops_la_matmul_shape(c, 0, 1, &r, d));
  ops_set_out(c, 0, dt, r, d);
  return NULL;
}

double ops_la_matmul_flops(const ops_ctx_t *c) {
  const ops_tensor_info_t *A = &c->in[0];
  int64_t k = A->rank >= 1 ? A->dims[A->rank - 1] : -1;
  if (k < 0 || c->out[0].numel < 0) return 0;
  return 2.0 * (double)c->out[0].numel * (double)k;
}

static flagos_status_t matmul_infer(ops_ctx_t *c) {
  if (c->n_in != 2) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects 2 inputs, got %d", c->n_in);
  return matmul_infer_ab(c);
}

/* How an operand's batch dims map onto the flattened output batch for the
 * library call: 0 none (one matrix for all), 1 one matrix per output batch
 * entry, -1 anything else (broadcast inside the batch, or unknown). */
static int batch_mode(const ops_ctx_t *c, int k, int other, int nb) {
  const ops_tensor_info_t *t = &c->in[k];
  int bat = t->rank > 2 ? t->rank - 2 : 0;
  bool ones = true;
  for (int j = 0; j < bat; j++)
    if (t->dims[j] != 1) ones = false;
  if (ones) return 0;
  if (bat != nb) return -1;
  bool equal = true;
  for (int j = 0; j < bat; j++)
    if (t->dims[j] < 0 || t->dims[j] != c->out[0].dims[j]) equal = false;
  if (equal) return 1;
  const ops_tensor_info_t *o = &c->in[other];
  int obat = o->rank > 2 ? o->rank - 2 : 0;
  for (int j = 0; j < obat; j++)
    if (o->dims[j] != 1) return -1;
  return 1; /* the other operand has no batch, so the output batch is this one's */
}

static kir_expr_t *prod_dims(ops_ctx_t *c, int k, int from, int to, bool out) {
  kir_expr_t *p = kir_i64(AR, 1);
  for (int j = from; j < to; j++) p = kir_mul(AR, p, out ? ops_out_dim(c, k, j) : ops_in_dim(c, k, j));
  return p;
}

/* Whether input k is a vector of the output's last dim N (shape [N], or [1, ..., 1, N]),
 * as the gemm call's bias must be. */
static bool bias_is_row(const ops_ctx_t *c, int k) {
  const ops_tensor_info_t *b = &c->in[k], *o = &c->out[0];
  if (b->rank < 1 || o->rank < 1) return false;
  int64_t n = o->dims[o->rank - 1];
  if (n < 0 || b->dims[b->rank - 1] != n) return false;
  for (int j = 0; j + 1 < b->rank; j++)
    if (b->dims[j] != 1) return false;
  return true;
}

/* MatMul, and MatMulBias when `bias` names the bias input (else -1). With the
 * gemm call the bias goes first (Y = bias, carrying the gemm call with the bias
 * as its epilogue, marked ends_node), then Y += A*B carrying the plain call with
 * beta = 1; without it one kernel adds the bias to the sum. */
static flagos_status_t matmul_lower_common(ops_ctx_t *c, int bias) {
  const ops_tensor_info_t *A = &c->in[0], *B = &c->in[1];
  int ro = c->out[0].rank;
  bool a1 = A->rank == 1, b1 = B->rank == 1;
  int nb = ro - (a1 ? 0 : 1) - (b1 ? 0 : 1);
  flagos_dtype_t dt = c->out[0].dtype;
  /* f16/bf16 too: a backend with such a GEMM (cuda) takes it, others decline. */
  bool lib = dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT64 || dt == FLAGOS_FLOAT16 || dt == FLAGOS_BFLOAT16;
  int ma = lib ? batch_mode(c, 0, 1, nb) : -1, mb = lib ? batch_mode(c, 1, 0, nb) : -1;
  lib = lib && ma >= 0 && mb >= 0;
  kir_expr_t *K = ops_in_dim(c, 0, A->rank - 1);
  kir_expr_t *M = a1 ? kir_i64(AR, 1) : ops_in_dim(c, 0, A->rank - 2);
  kir_expr_t *N = b1 ? kir_i64(AR, 1) : ops_in_dim(c, 1, B->rank - 1);
  kir_expr_t *ints[9] = {NULL};
  if (lib) {
    kir_expr_t *gi[9] = {
        prod_dims(c, 0, 0, nb, true), M, N, K, kir_i64(AR, 0), kir_i64(AR, 0),
        ma ? kir_mul(AR, M, K) : kir_i64(AR, 0), mb ? kir_mul(AR, K, N) : kir_i64(AR, 0), kir_mul(AR, M, N)};
    memcpy(ints, gi, sizeof ints);
  }
  kir_expr_t *v[OPS_MAX_RANK];
  bool first = bias >= 0 && lib;
  if (first) {
    kir_kernel_t *kc = ops_out_kernel(c, 0, "bias", v);
    int bc = ops_buf_in(c, kc, bias);
    kir_store(kc, 0, v, ops_load_bcast(c, kc, bc, bias, ro, v), NULL);
    if (bias_is_row(c, bias) && !b1) {
      int bufs[4] = {ops_buf_in(c, kc, 0), ops_buf_in(c, kc, 1), 0, bc};
      double fl[2] = {1.0, 0.0};
      kir_set_libcall(kc, "gemm", 4, bufs, 9, ints, 2, fl);
      kc->libcall->ends_node = true;
    }
  }
  kir_kernel_t *kk = ops_out_kernel(c, 0, "matmul", v);
  int ba = ops_buf_in(c, kk, 0), bb = ops_buf_in(c, kk, 1);
  kir_expr_t *m = a1 ? NULL : v[nb];
  kir_expr_t *n = b1 ? NULL : v[ro - 1];
  int kv = kir_new_var(kk);
  kir_expr_t *kx = kir_var(AR, kv);
  kir_expr_t *x = ops_la_load_operand(c, kk, ba, nb, v, m, kx);
  kir_expr_t *y = ops_la_load_operand(c, kk, bb, nb, v, kx, n);
  kir_expr_t *sum = kir_reduce(AR, KIR_RSUM, 1, &kv, &K, kir_bin(AR, KIR_MUL, x, y));
  if (first) sum = kir_bin(AR, KIR_ADD, sum, kir_load(kk, 0, v));
  else if (bias >= 0) sum = kir_bin(AR, KIR_ADD, sum, ops_load_bcast(c, kk, ops_buf_in(c, kk, bias), bias, ro, v));
  kir_store(kk, 0, v, sum, NULL);
  if (!lib) return NULL;
  int bufs[3] = {ba, bb, 0};
  double fl[2] = {1.0, first ? 1.0 : 0.0};
  kir_set_libcall(kk, "gemm", 3, bufs, 9, ints, 2, fl);
  return NULL;
}

static flagos_status_t matmul_lower(ops_ctx_t *c) { return matmul_lower_common(c, -1); }

/* ---- MatMulBias (ai.flagos): MatMul(A, B) + bias, made by the fusion pass ---- */

static flagos_status_t matmul_bias_infer(ops_ctx_t *c) {
  if (c->n_in != 3 || !ops_has_in(c, 2))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects 3 inputs (A, B, bias), got %d", c->n_in);
  FL_TRY(matmul_infer_ab(c));
  const ops_tensor_info_t *b = &c->in[2], *o = &c->out[0];
  if (b->dtype != o->dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "bias dtype %s differs from the product's %s", flagos_dtype_name(b->dtype),
                   flagos_dtype_name(o->dtype));
  /* The bias broadcasts onto the product without growing it. */
  if (b->rank > o->rank) return ops_err(c, FLAGOS_ERR_SHAPE, "bias has rank %d above the product's %d", b->rank, o->rank);
  for (int j = 0; j < b->rank; j++) {
    int64_t d = b->dims[j], w = o->dims[o->rank - b->rank + j];
    if (d != 1 && (d < 0 || d != w))
      return ops_err(c, FLAGOS_ERR_SHAPE, "bias dimension %d (%lld) does not broadcast onto %lld", j, (long long)d,
                     (long long)w);
  }
  return NULL;
}

static flagos_status_t matmul_bias_lower(ops_ctx_t *c) { return matmul_lower_common(c, 2); }

static double matmul_bias_flops(const ops_ctx_t *c) {
  double f = ops_la_matmul_flops(c);
  return f > 0 ? f + (double)c->out[0].numel : f;
}

/* ---- Gemm ---- */

static flagos_status_t gemm_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs A and B");
  const ops_tensor_info_t *A = &c->in[0], *B = &c->in[1];
  if (A->rank != 2 || B->rank != 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "A and B must be 2-D (got ranks %d and %d)", A->rank, B->rank);
  if (A->dtype != B->dtype || (ops_has_in(c, 2) && c->in[2].dtype != A->dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input dtypes differ");
  bool ta = fir_attr_int(c->node, "transA", 0) != 0, tb = fir_attr_int(c->node, "transB", 0) != 0;
  int64_t M = A->dims[ta ? 1 : 0], K = A->dims[ta ? 0 : 1], K2 = B->dims[tb ? 1 : 0], N = B->dims[tb ? 0 : 1];
  if (K >= 0 && K2 >= 0 && K != K2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "inner dimensions differ: %lld and %lld", (long long)K, (long long)K2);
  if (ops_has_in(c, 2)) {
    const ops_tensor_info_t *C = &c->in[2];
    if (C->rank > 2) return ops_err(c, FLAGOS_ERR_SHAPE, "C has rank %d (at most 2)", C->rank);
    int64_t want[2] = {M, N};
    for (int j = 0; j < C->rank; j++) {
      int64_t d = C->dims[j], w = want[2 - C->rank + j];
      if (d >= 0 && d != 1 && w >= 0 && d != w)
        return ops_err(c, FLAGOS_ERR_SHAPE, "C dimension %d (%lld) does not broadcast to %lld", j, (long long)d,
                       (long long)w);
    }
  }
  int64_t d[2] = {M, N};
  ops_set_out(c, 0, A->dtype, 2, d);
  return NULL;
}

static double gemm_flops(const ops_ctx_t *c) {
  bool ta = fir_attr_int(c->node, "transA", 0) != 0;
  int64_t K = c->in[0].dims[ta ? 0 : 1];
  if (K < 0 || c->out[0].numel < 0) return 0;
  return 2.0 * (double)c->out[0].numel * (double)K;
}

static flagos_status_t gemm_lower(ops_ctx_t *c) {
  flagos_dtype_t dt = c->out[0].dtype;
  bool ta = fir_attr_int(c->node, "transA", 0) != 0, tb = fir_attr_int(c->node, "transB", 0) != 0;
  double alpha = fir_attr_float(c->node, "alpha", 1.0f), beta = fir_attr_float(c->node, "beta", 1.0f);
  bool has_c = ops_has_in(c, 2) && beta != 0.0;
  /* f16/bf16 too: a backend with such a GEMM (cuda) takes it, others decline. */
  bool blas = dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT64 || dt == FLAGOS_FLOAT16 || dt == FLAGOS_BFLOAT16;
  kir_expr_t *v[2];

  /* With a BLAS the bias goes first (Y = beta*C), then Y += alpha*A*B in place. */
  if (has_c && blas) {
    kir_kernel_t *kc = ops_out_kernel(c, 0, "bias", v);
    int bc = ops_buf_in(c, kc, 2);
    kir_expr_t *cv = ops_load_bcast(c, kc, bc, 2, 2, v);
    kir_store(kc, 0, v, kir_bin(AR, KIR_MUL, kir_const(AR, dt, beta), cv), NULL);
    /* A row-vector C with beta == 1 is the gemm call's bias: a backend that
     * takes it computes the whole node in one call (ends_node). */
    if (beta == 1.0 && bias_is_row(c, 2)) {
      kir_expr_t *ints[9] = {kir_i64(AR, 1), ops_out_dim(c, 0, 0), ops_out_dim(c, 0, 1), ops_in_dim(c, 0, ta ? 0 : 1),
                             kir_i64(AR, ta), kir_i64(AR, tb), kir_i64(AR, 0), kir_i64(AR, 0), kir_i64(AR, 0)};
      int bufs[4] = {ops_buf_in(c, kc, 0), ops_buf_in(c, kc, 1), 0, bc};
      double fl[2] = {alpha, 0.0};
      kir_set_libcall(kc, "gemm", 4, bufs, 9, ints, 2, fl);
      kc->libcall->ends_node = true;
    }
  }
  kir_kernel_t *kk = ops_out_kernel(c, 0, "gemm", v);
  int ba = ops_buf_in(c, kk, 0), bb = ops_buf_in(c, kk, 1);
  int kv = kir_new_var(kk);
  kir_expr_t *kx = kir_var(AR, kv);
  kir_expr_t *K = ops_in_dim(c, 0, ta ? 0 : 1);
  kir_expr_t *ia[2] = {ta ? kx : v[0], ta ? v[0] : kx};
  kir_expr_t *ib[2] = {tb ? v[1] : kx, tb ? kx : v[1]};
  kir_expr_t *prod = kir_bin(AR, KIR_MUL, kir_load(kk, ba, ia), kir_load(kk, bb, ib));
  kir_expr_t *acc = kir_reduce(AR, KIR_RSUM, 1, &kv, &K, prod);
  if (alpha != 1.0) acc = kir_bin(AR, KIR_MUL, kir_const(AR, dt, alpha), acc);
  if (has_c) {
    kir_expr_t *cv;
    if (blas) {
      cv = kir_load(kk, 0, v);
    } else {
      int bc = ops_buf_in(c, kk, 2);
      cv = ops_load_bcast(c, kk, bc, 2, 2, v);
      if (beta != 1.0) cv = kir_bin(AR, KIR_MUL, kir_const(AR, dt, beta), cv);
    }
    acc = kir_bin(AR, KIR_ADD, acc, cv);
  }
  kir_store(kk, 0, v, acc, NULL);
  if (!blas) return NULL;
  kir_expr_t *M = ops_out_dim(c, 0, 0), *N = ops_out_dim(c, 0, 1);
  kir_expr_t *ints[9] = {kir_i64(AR, 1), M, N, K, kir_i64(AR, ta), kir_i64(AR, tb),
                         kir_i64(AR, 0), kir_i64(AR, 0), kir_i64(AR, 0)};
  int bufs[3] = {ba, bb, 0};
  double fl[2] = {alpha, has_c ? 1.0 : 0.0};
  kir_set_libcall(kk, "gemm", 3, bufs, 9, ints, 2, fl);
  return NULL;
}

const ops_def_t ops_family_linalg[] = {
    {"MatMul", "", 0, matmul_infer, matmul_lower, ops_la_matmul_flops},
    {"Gemm", "", 0, gemm_infer, gemm_lower, gemm_flops},
    {OPS_LA_MATMUL_BIAS, OPS_LA_MATMUL_BIAS_DOMAIN, 0, matmul_bias_infer, matmul_bias_lower, matmul_bias_flops},
    {"MatMulInteger", "", 0, ops_la_matmulint_infer, ops_la_matmulint_lower, ops_la_matmul_flops},
    {"QLinearMatMul", "", 0, ops_la_qlmatmul_infer, ops_la_qlmatmul_lower, ops_la_matmul_flops},
    {"Einsum", "", 0, ops_la_einsum_infer, ops_la_einsum_lower, ops_la_einsum_flops},
    {"Det", "", 0, ops_la_det_infer, ops_la_det_lower, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
