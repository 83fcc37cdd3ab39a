/* Integer and quantized matrix products: MatMulInteger and QLinearMatMul.
 * Both subtract zero points (per tensor, per row of A, per column of B) and
 * accumulate exactly in int32 (float for float8 operands); QLinearMatMul then
 * requantizes with the scales, rounding half to even and saturating as ONNX's
 * reference does. */
#include <math.h>

#include "ops/linalg_internal.h"

#define AR (c->arena)

static bool is_q8(flagos_dtype_t dt) { return dt == FLAGOS_INT8 || dt == FLAGOS_UINT8; }

static bool is_f8(flagos_dtype_t dt) {
  return dt == FLAGOS_FLOAT8E4M3FN || dt == FLAGOS_FLOAT8E4M3FNUZ || dt == FLAGOS_FLOAT8E5M2 ||
         dt == FLAGOS_FLOAT8E5M2FNUZ;
}

/* A per-tensor or per-row/column parameter (zero point or scale) must be a
 * scalar, or 1-D of `len` elements (len < 0: unknown, accepted). */
static flagos_status_t check_qparam(ops_ctx_t *c, int k, const char *what, int64_t len, const char *along) {
  if (!ops_has_in(c, k)) return NULL;
  const ops_tensor_info_t *t = &c->in[k];
  if (t->rank == 0 || (t->numel == 1)) return NULL;
  if (t->rank == 1 && (t->dims[0] < 0 || len < 0 || t->dims[0] == len)) return NULL;
  return ops_err(c, FLAGOS_ERR_SHAPE, "%s must be a scalar or a 1-D tensor of %lld elements (one per %s)", what,
                 (long long)len, along);
}

/* Loads a per-tensor or 1-D parameter: element `i` when it has more than one element. */
static kir_expr_t *load_qparam(ops_ctx_t *c, kir_kernel_t *kk, int k, kir_expr_t *i) {
  int b = ops_buf_in(c, kk, k);
  const kir_buf_t *bf = &kk->bufs[b];
  kir_expr_t *idx[OPS_MAX_RANK];
  for (int j = 0; j < bf->rank; j++) idx[j] = kir_i64(AR, 0);
  if (bf->rank == 1) idx[0] = ops_la_bcast_index(AR, bf->dims[0], i);
  return kir_load(kk, b, idx);
}

static int64_t rows_of(const ops_tensor_info_t *t) { return t->rank >= 2 ? t->dims[t->rank - 2] : 1; }
static int64_t cols_of(const ops_tensor_info_t *t) { return t->rank >= 2 ? t->dims[t->rank - 1] : 1; }

/* (operand - zero point) in the accumulation type. */
static kir_expr_t *centered(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *zp, flagos_dtype_t acc) {
  x = kir_cast(AR, acc, x);
  if (!zp) return x;
  return kir_bin(AR, KIR_SUB, x, kir_cast(AR, acc, zp));
}

/* Shared body: sum_k (A - za) * (B - zb) over the output index space. ia/ib are
 * the operand inputs, za/zb their zero points (-1: none). */
static kir_expr_t *int_product(ops_ctx_t *c, kir_kernel_t *kk, kir_expr_t **v, int ia, int za, int ib, int zb,
                               flagos_dtype_t acc, kir_expr_t **m_out, kir_expr_t **n_out) {
  const ops_tensor_info_t *A = &c->in[ia], *B = &c->in[ib];
  int ro = c->out[0].rank;
  bool a1 = A->rank == 1, b1 = B->rank == 1;
  int nb = ro - (a1 ? 0 : 1) - (b1 ? 0 : 1);
  kir_expr_t *m = a1 ? NULL : v[nb];
  kir_expr_t *n = b1 ? NULL : v[ro - 1];
  int ba = ops_buf_in(c, kk, ia), bb = ops_buf_in(c, kk, ib);
  kir_expr_t *zav = ops_has_in(c, za) ? load_qparam(c, kk, za, m ? m : kir_i64(AR, 0)) : NULL;
  kir_expr_t *zbv = ops_has_in(c, zb) ? load_qparam(c, kk, zb, n ? n : kir_i64(AR, 0)) : NULL;
  int kv = kir_new_var(kk);
  kir_expr_t *kx = kir_var(AR, kv);
  kir_expr_t *K = ops_in_dim(c, ia, A->rank - 1);
  kir_expr_t *x = centered(c, ops_la_load_operand(c, kk, ba, nb, v, m, kx), zav, acc);
  kir_expr_t *y = centered(c, ops_la_load_operand(c, kk, bb, nb, v, kx, n), zbv, acc);
  *m_out = m ? m : kir_i64(AR, 0);
  *n_out = n ? n : kir_i64(AR, 0);
  return kir_reduce(AR, KIR_RSUM, 1, &kv, &K, kir_bin(AR, KIR_MUL, x, y));
}

/* ---- MatMulInteger ---- */

flagos_status_t ops_la_matmulint_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs A and B");
  if (!is_q8(c->in[0].dtype) || !is_q8(c->in[1].dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "A and B must be int8 or uint8 (got %s and %s)",
                   flagos_dtype_name(c->in[0].dtype), flagos_dtype_name(c->in[1].dtype));
  for (int k = 2; k < 4; k++)
    if (ops_has_in(c, k) && c->in[k].dtype != c->in[k - 2].dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "zero point %d has dtype %s, its operand %s", k,
                     flagos_dtype_name(c->in[k].dtype), flagos_dtype_name(c->in[k - 2].dtype));
  FL_TRY(check_qparam(c, 2, "a_zero_point", rows_of(&c->in[0]), "row of A"));
  FL_TRY(check_qparam(c, 3, "b_zero_point", cols_of(&c->in[1]), "column of B"));
  int r;
  int64_t d[OPS_MAX_RANK];
  FL_TRY(ops_la_matmul_shape(c, 0, 1, &r, d));
  ops_set_out(c, 0, FLAGOS_INT32, r, d);
  return NULL;
}

flagos_status_t ops_la_matmulint_lower(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK], *m, *n;
  kir_kernel_t *kk = ops_out_kernel(c, 0, "matmulint", v);
  kir_expr_t *sum = int_product(c, kk, v, 0, 2, 1, 3, FLAGOS_INT32, &m, &n);
  kir_store(kk, 0, v, sum, NULL);
  return NULL;
}

/* ---- QLinearMatMul ---- */

flagos_status_t ops_la_qlmatmul_infer(ops_ctx_t *c) {
  if (c->n_in < 8)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects 8 inputs, got %d", c->n_in);
  for (int k = 0; k < 8; k++)
    if (!ops_has_in(c, k) && k != 2 && k != 5 && k != 7)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d is required", k);
  flagos_dtype_t ta = c->in[0].dtype, tb = c->in[3].dtype, ts = c->in[1].dtype;
  if (!(is_q8(ta) || is_f8(ta)) || !(is_q8(tb) || is_f8(tb)))
    return ops_err(c, FLAGOS_ERR_SHAPE, "a and b must be 8-bit (got %s and %s)", flagos_dtype_name(ta),
                   flagos_dtype_name(tb));
  if (ts != FLAGOS_FLOAT32 && ts != FLAGOS_FLOAT16 && ts != FLAGOS_BFLOAT16)
    return ops_err(c, FLAGOS_ERR_SHAPE, "scales must be float, float16 or bfloat16 (got %s)", flagos_dtype_name(ts));
  if (c->in[4].dtype != ts || c->in[6].dtype != ts)
    return ops_err(c, FLAGOS_ERR_SHAPE, "a_scale, b_scale and y_scale must share one dtype");
  FL_TRY(check_qparam(c, 1, "a_scale", rows_of(&c->in[0]), "row of a"));
  FL_TRY(check_qparam(c, 2, "a_zero_point", rows_of(&c->in[0]), "row of a"));
  FL_TRY(check_qparam(c, 4, "b_scale", cols_of(&c->in[3]), "column of b"));
  FL_TRY(check_qparam(c, 5, "b_zero_point", cols_of(&c->in[3]), "column of b"));
  FL_TRY(check_qparam(c, 6, "y_scale", cols_of(&c->in[3]), "column of y"));
  FL_TRY(check_qparam(c, 7, "y_zero_point", cols_of(&c->in[3]), "column of y"));
  int r;
  int64_t d[OPS_MAX_RANK];
  FL_TRY(ops_la_matmul_shape(c, 0, 3, &r, d));
  ops_set_out(c, 0, ops_has_in(c, 7) ? c->in[7].dtype : ta, r, d);
  return NULL;
}

/* Rounds a float32 value to the narrow float type dt and back, where the
 * reference computes in dt. */
static kir_expr_t *round_to(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x) {
  if (dt == FLAGOS_FLOAT32) return x;
  return kir_cast(a, FLAGOS_FLOAT32, kir_cast(a, dt, x));
}

flagos_status_t ops_la_qlmatmul_lower(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK], *m, *n;
  kir_kernel_t *kk = ops_out_kernel(c, 0, "qlinearmatmul", v);
  flagos_dtype_t ta = c->in[0].dtype, tb = c->in[3].dtype, ts = c->in[1].dtype, ty = c->out[0].dtype;
  flagos_dtype_t acc = (is_f8(ta) || is_f8(tb)) ? FLAGOS_FLOAT32 : FLAGOS_INT32;
  kir_expr_t *sum = int_product(c, kk, v, 0, 2, 3, 5, acc, &m, &n);
  kir_expr_t *sa = kir_cast(AR, FLAGOS_FLOAT32, load_qparam(c, kk, 1, m));
  kir_expr_t *sb = kir_cast(AR, FLAGOS_FLOAT32, load_qparam(c, kk, 4, n));
  kir_expr_t *sy = kir_cast(AR, FLAGOS_FLOAT32, load_qparam(c, kk, 6, n));
  kir_expr_t *mult = round_to(AR, ts, kir_bin(AR, KIR_DIV, round_to(AR, ts, kir_bin(AR, KIR_MUL, sa, sb)), sy));
  kir_expr_t *d = kir_bin(AR, KIR_MUL, kir_cast(AR, FLAGOS_FLOAT64, sum), kir_cast(AR, FLAGOS_FLOAT64, mult));
  if (ops_has_in(c, 7)) d = kir_bin(AR, KIR_ADD, d, kir_cast(AR, FLAGOS_FLOAT64, load_qparam(c, kk, 7, n)));
  if (is_q8(ty)) {
    double lo = ty == FLAGOS_INT8 ? -128 : 0, hi = ty == FLAGOS_INT8 ? 127 : 255;
    d = kir_un(AR, KIR_ROUND, d);
    d = kir_bin(AR, KIR_MAX, d, kir_const(AR, FLAGOS_FLOAT64, lo));
    d = kir_bin(AR, KIR_MIN, d, kir_const(AR, FLAGOS_FLOAT64, hi));
  }
  kir_store(kk, 0, v, kir_cast(AR, ty, d), NULL);
  return NULL;
}
