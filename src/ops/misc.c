/* Fused operators of recent ONNX opsets: SwiGLU (28), CausalConvWithState (27);
 * the family table also lists LinearAttention (misc_linattn.c).
 *
 * SwiGLU is one pointwise kernel. CausalConvWithState is two kernels over its two
 * outputs: a depthwise convolution over the virtual concatenation
 * [past_state | input] (position p < k-1 reads the state, or zero), and the new
 * state, the last k-1 positions of that same concatenation. */
#include <math.h>
#include <string.h>

#include "ops/misc_util.h"

#define AR (c->arena)

/* ---- SwiGLU: Y = A * sigmoid(alpha * A) * B ---- */

static flagos_status_t swiglu_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT_FLOATS));
  const ops_tensor_info_t *A = &c->in[0], *B = &c->in[1];
  if (A->dtype != B->dtype) return ops_err(c, FLAGOS_ERR_SHAPE, "A and B must have the same dtype");
  if (A->rank != B->rank) return ops_err(c, FLAGOS_ERR_SHAPE, "A and B must have the same shape (no broadcasting)");
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < A->rank; i++) {
    if (A->dims[i] >= 0 && B->dims[i] >= 0 && A->dims[i] != B->dims[i])
      return ops_err(c, FLAGOS_ERR_SHAPE, "A and B differ in dim %d (%lld vs %lld); SwiGLU does not broadcast", i,
                     (long long)A->dims[i], (long long)B->dims[i]);
    d[i] = A->dims[i] >= 0 ? A->dims[i] : B->dims[i];
  }
  ops_set_out(c, 0, A->dtype, A->rank, d);
  return NULL;
}

static kir_expr_t *silu(ops_ctx_t *c, kir_expr_t *x, double alpha, flagos_dtype_t round_to) {
  flagos_dtype_t F = x->dtype;
  kir_expr_t *one = ops_fc(c, F, 1.0);
  kir_expr_t *sg = ops_fdiv(c, one, ops_fadd(c, one, kir_un(AR, KIR_EXP, ops_fmul(c, ops_fc(c, F, -alpha), x))));
  /* The reference rounds the sigmoid to the input type before multiplying. */
  if (round_to != F) sg = kir_cast(AR, F, kir_cast(AR, round_to, sg));
  return ops_fmul(c, x, sg);
}

static flagos_status_t swiglu_lower(ops_ctx_t *c) {
  flagos_dtype_t dt = c->out[0].dtype, F = ops_ew_float_compute(dt);
  double alpha = fir_attr_float(c->node, "alpha", 1.0f);
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "swiglu", v);
  int ba = ops_buf_in(c, k, 0), bb = ops_buf_in(c, k, 1);
  kir_expr_t *a = kir_cast(AR, F, kir_load(k, ba, v)), *b = kir_cast(AR, F, kir_load(k, bb, v));
  kir_expr_t *sw = kir_cast(AR, F, kir_cast(AR, dt, silu(c, a, alpha, dt)));
  kir_store(k, 0, v, kir_cast(AR, dt, ops_fmul(c, sw, b)), NULL);
  return NULL;
}

static double swiglu_flops(const ops_ctx_t *c) { return c->out[0].numel < 0 ? 0 : 5.0 * (double)c->out[0].numel; }

/* ---- CausalConvWithState ---- */

enum { CC_IN, CC_W, CC_BIAS, CC_PAST };

static flagos_status_t cc_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 4));
  FL_TRY(ops_ew_check_in(c, CC_IN, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, CC_W, OPS_DT_FLOATS));
  const ops_tensor_info_t *X = &c->in[CC_IN], *W = &c->in[CC_W];
  flagos_dtype_t dt = X->dtype;
  if (X->rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "input must be (batch, channels, length), got rank %d", X->rank);
  if (W->rank != 3 || (W->dims[1] >= 0 && W->dims[1] != 1))
    return ops_err(c, FLAGOS_ERR_SHAPE, "weight must be (channels, 1, k)");
  if (W->dtype != dt) return ops_err(c, FLAGOS_ERR_SHAPE, "weight must have the input's dtype");
  if (X->dims[1] >= 0 && W->dims[0] >= 0 && X->dims[1] != W->dims[0])
    return ops_err(c, FLAGOS_ERR_SHAPE, "input has %lld channels but weight %lld", (long long)X->dims[1], (long long)W->dims[0]);
  if (W->dims[2] == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "the kernel size must be at least 1");
  int64_t ks = W->dims[2];
  if (ops_has_in(c, CC_BIAS)) {
    FL_TRY(ops_ew_check_in(c, CC_BIAS, OPS_DT(dt)));
    if (c->in[CC_BIAS].rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "bias must be 1-D");
  }
  if (ops_has_in(c, CC_PAST)) {
    FL_TRY(ops_ew_check_in(c, CC_PAST, OPS_DT(dt)));
    const ops_tensor_info_t *P = &c->in[CC_PAST];
    if (P->rank != 3 || (ks >= 0 && P->dims[2] >= 0 && P->dims[2] != ks - 1))
      return ops_err(c, FLAGOS_ERR_SHAPE, "past_state must be (batch, channels, k - 1)");
  }
  const char *act = fir_attr_string(c->node, "activation", "none");
  if (strcmp(act, "none") != 0 && strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "activation must be none, silu or swish, got \"%s\"", act);
  ops_set_out(c, 0, dt, 3, X->dims);
  int64_t sd[3] = {X->dims[0], X->dims[1], ks < 0 ? -1 : ks - 1};
  if (ops_has_out(c, 1)) ops_set_out(c, 1, dt, 3, sd);
  return NULL;
}

/* Element p of the concatenation [past_state (or zeros) | input] for (b, ch). */
static kir_expr_t *cc_padded(ops_ctx_t *c, kir_kernel_t *k, int bx, int bp, kir_expr_t *b, kir_expr_t *ch, kir_expr_t *p,
                             kir_expr_t *km1) {
  kir_expr_t *xi[3] = {b, ch, kir_sub(AR, p, km1)};
  kir_expr_t *x = kir_load(k, bx, xi);
  kir_expr_t *st = kir_const(AR, x->dtype, 0.0);
  if (bp >= 0) {
    kir_expr_t *pi[3] = {b, ch, p};
    st = kir_load(k, bp, pi);
  }
  return kir_select(AR, kir_bin(AR, KIR_LT, p, km1), st, x);
}

static flagos_status_t cc_lower(ops_ctx_t *c) {
  flagos_dtype_t dt = c->out[0].dtype, F = ops_ew_float_compute(dt);
  bool act = strcmp(fir_attr_string(c->node, "activation", "none"), "none") != 0;
  kir_expr_t *km1 = kir_sub(AR, ops_in_dim(c, CC_W, 2), kir_i64(AR, 1));
  kir_expr_t *v[3];
  kir_kernel_t *k = ops_out_kernel(c, 0, "causalconv", v);
  int bx = ops_buf_in(c, k, CC_IN), bw = ops_buf_in(c, k, CC_W);
  int bp = ops_has_in(c, CC_PAST) ? ops_buf_in(c, k, CC_PAST) : -1;
  int tv = kir_new_var(k);
  kir_expr_t *t = kir_var(AR, tv);
  kir_expr_t *wi[3] = {v[1], kir_i64(AR, 0), t};
  kir_expr_t *x = cc_padded(c, k, bx, bp, v[0], v[1], kir_add(AR, v[2], t), km1);
  kir_expr_t *ext = ops_in_dim(c, CC_W, 2);
  kir_expr_t *y = kir_reduce(AR, KIR_RSUM, 1, &tv, &ext,
                             ops_fmul(c, kir_cast(AR, F, kir_load(k, bw, wi)), kir_cast(AR, F, x)));
  if (ops_has_in(c, CC_BIAS)) {
    int bb = ops_buf_in(c, k, CC_BIAS);
    kir_expr_t *bi[1] = {v[1]};
    y = ops_fadd(c, y, kir_cast(AR, F, kir_load(k, bb, bi)));
  }
  /* The convolution's result is rounded to the data type before the activation. */
  y = kir_cast(AR, F, kir_cast(AR, dt, y));
  if (act) y = silu(c, y, 1.0, F);
  kir_store(k, 0, v, kir_cast(AR, dt, y), NULL);
  if (!ops_has_out(c, 1)) return NULL;
  k = ops_out_kernel(c, 1, "causalconv_state", v);
  bx = ops_buf_in(c, k, CC_IN);
  bp = ops_has_in(c, CC_PAST) ? ops_buf_in(c, k, CC_PAST) : -1;
  kir_store(k, 0, v, cc_padded(c, k, bx, bp, v[0], v[1], kir_add(AR, ops_in_dim(c, CC_IN, 2), v[2]), km1), NULL);
  return NULL;
}

static double cc_flops(const ops_ctx_t *c) {
  int64_t ks = c->in[CC_W].dims[2];
  return c->out[0].numel < 0 || ks < 0 ? 0 : 2.0 * (double)c->out[0].numel * (double)ks;
}

const ops_def_t ops_family_misc[] = {
    {"SwiGLU", "", 0, swiglu_infer, swiglu_lower, swiglu_flops},
    {"CausalConvWithState", "", 0, cc_infer, cc_lower, cc_flops},
    {"LinearAttention", "", 0, ops_linattn_infer, ops_linattn_lower, ops_linattn_flops},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
