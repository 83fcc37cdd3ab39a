/* CausalConvWithState (opset 27): a depthwise 1-D convolution over the
 * concatenation [past_state (or zeros), input] along time, with an optional
 * fused SiLU, that also returns the last k-1 positions of that concatenation
 * as the next state. Both outputs read the concatenation through one guarded
 * load, so it is never materialised. */
#include <math.h>
#include <string.h>

#include "ops/conv_internal.h"

#define AR (c->arena)

static bool has_out(const ops_ctx_t *c, int k) { return k < c->node->n_outputs && c->node->outputs[k] != NULL; }

flagos_status_t ops_cv_causal_infer(ops_ctx_t *c) {
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects input and weight");
  const ops_tensor_info_t *X = &c->in[0], *W = &c->in[1];
  flagos_dtype_t dt = X->dtype;
  if (!flagos_dtype_is_float(dt)) return ops_err(c, FLAGOS_ERR_SHAPE, "input must be floating point");
  for (int k = 1; k < 4 && k < c->n_in; k++)
    if (ops_has_in(c, k) && c->in[k].dtype != dt) return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has another dtype", k);
  if (X->rank != 3 || W->rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "input and weight must be 3-D");
  if (W->dims[1] >= 0 && W->dims[1] != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "weight must be (channels, 1, k)");
  if (W->dims[0] >= 0 && X->dims[1] >= 0 && W->dims[0] != X->dims[1])
    return ops_err(c, FLAGOS_ERR_SHAPE, "weight has %lld channels, input %lld", (long long)W->dims[0],
                   (long long)X->dims[1]);
  if (W->dims[2] == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "kernel size must be positive");
  const char *act = fir_attr_string(c->node, "activation", "none");
  if (strcmp(act, "none") && strcmp(act, "silu") && strcmp(act, "swish"))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown activation '%s'", act);
  int64_t km1 = W->dims[2] >= 0 ? W->dims[2] - 1 : -1;
  if (ops_has_in(c, 3)) {
    const ops_tensor_info_t *P = &c->in[3];
    if (P->rank != 3 || (P->dims[2] >= 0 && km1 >= 0 && P->dims[2] != km1))
      return ops_err(c, FLAGOS_ERR_SHAPE, "past_state must be (batch, channels, k - 1)");
  }
  ops_set_out(c, 0, dt, 3, X->dims);
  int64_t sd[3] = {X->dims[0], X->dims[1], km1};
  if (has_out(c, 1)) ops_set_out(c, 1, dt, 3, sd);
  return NULL;
}

/* Element p of the padded sequence [state | input] for (b, ch). */
static kir_expr_t *padded(ops_ctx_t *c, kir_kernel_t *kk, int bx, int bp, kir_expr_t *b, kir_expr_t *ch, kir_expr_t *p,
                          kir_expr_t *km1, flagos_dtype_t dt) {
  kir_expr_t *xi[3] = {b, ch, kir_sub(AR, p, km1)};
  kir_expr_t *x = kir_load(kk, bx, xi);
  kir_expr_t *pi[3] = {b, ch, p};
  kir_expr_t *past = bp >= 0 ? kir_load(kk, bp, pi) : kir_const(AR, dt, 0.0);
  return kir_select(AR, kir_bin(AR, KIR_LT, p, km1), past, x);
}

flagos_status_t ops_cv_causal_lower(ops_ctx_t *c) {
  flagos_dtype_t dt = c->out[0].dtype;
  bool silu = strcmp(fir_attr_string(c->node, "activation", "none"), "none") != 0;
  kir_expr_t *km1 = kir_sub(AR, ops_in_dim(c, 1, 2), kir_i64(AR, 1));
  kir_expr_t *v[3];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "causalconv", v);
  int bx = ops_buf_in(c, kk, 0), bw = ops_buf_in(c, kk, 1);
  int bp = ops_has_in(c, 3) ? ops_buf_in(c, kk, 3) : -1;
  int jv = kir_new_var(kk);
  kir_expr_t *j = kir_var(AR, jv), *K = ops_in_dim(c, 1, 2);
  kir_expr_t *wi[3] = {v[1], kir_i64(AR, 0), j};
  kir_expr_t *term = kir_bin(AR, KIR_MUL, kir_load(kk, bw, wi), padded(c, kk, bx, bp, v[0], v[1], kir_add(AR, v[2], j), km1, dt));
  kir_expr_t *y = kir_reduce(AR, KIR_RSUM, 1, &jv, &K, term);
  if (ops_has_in(c, 2)) {
    int bb = ops_buf_in(c, kk, 2);
    kir_expr_t *bi[1] = {v[1]};
    y = kir_bin(AR, KIR_ADD, y, kir_load(kk, bb, bi));
  }
  if (silu) {
    /* The reference rounds the convolution to the input type, then applies SiLU in float32. */
    kir_expr_t *f = kir_cast(AR, FLAGOS_FLOAT32, kir_cast(AR, dt, y));
    kir_expr_t *one = kir_const(AR, FLAGOS_FLOAT32, 1.0);
    kir_expr_t *sig = kir_bin(AR, KIR_DIV, one, kir_bin(AR, KIR_ADD, one, kir_un(AR, KIR_EXP, kir_un(AR, KIR_NEG, f))));
    y = kir_cast(AR, dt, kir_bin(AR, KIR_MUL, f, sig));
  }
  kir_store(kk, 0, v, y, NULL);
  if (has_out(c, 1)) {
    kir_kernel_t *ks = ops_out_kernel(c, 1, "causalconv_state", v);
    bx = ops_buf_in(c, ks, 0);
    bp = ops_has_in(c, 3) ? ops_buf_in(c, ks, 3) : -1;
    /* present[s] = padded[L + s], L the input length */
    kir_expr_t *p = kir_add(AR, ops_in_dim(c, 0, 2), v[2]);
    kir_store(ks, 0, v, padded(c, ks, bx, bp, v[0], v[1], p, km1, dt), NULL);
  }
  return NULL;
}
