/* Activation functions. Each is a pointwise formula computed in f32 (f64 for
 * double tensors) and rounded once to the tensor's type at the end; where the
 * textbook formula overflows (sigmoid, softplus) a stable equivalent is used. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/elementwise.h"

/* ---- shape rules ---- */

static flagos_status_t infer_float_act(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  return ops_ew_infer_bcast(c, 0, 1, OPS_DT_FLOATS, true, FLAGOS_UNDEFINED);
}

static flagos_status_t infer_relu(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  return ops_ew_infer_bcast(c, 0, 1, OPS_DT_FLOATS | OPS_DT_SINTS, true, FLAGOS_UNDEFINED);
}

static flagos_status_t infer_shrink(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  return ops_ew_infer_bcast(c, 0, 1, OPS_DT_NUMERIC, true, FLAGOS_UNDEFINED);
}

static flagos_status_t infer_gelu(ops_ctx_t *c) {
  FL_TRY(infer_float_act(c));
  const char *ap = fir_attr_string(c->node, "approximate", "none");
  if (strcmp(ap, "none") != 0 && strcmp(ap, "tanh") != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute approximate must be \"none\" or \"tanh\", got \"%s\"", ap);
  return NULL;
}

static flagos_status_t infer_prelu(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  FL_TRY(ops_ew_infer_bcast(c, 0, 2, OPS_DT_FLOATS | OPS_DT_INTS, true, FLAGOS_UNDEFINED));
  /* The slope broadcasts onto X, never the other way round. */
  if (c->out[0].rank != c->in[0].rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "slope of rank %d does not broadcast to X of rank %d", c->in[1].rank,
                   c->in[0].rank);
  for (int d = 0; d < c->in[0].rank; d++)
    if (c->in[0].dims[d] >= 0 && c->out[0].dims[d] != c->in[0].dims[d])
      return ops_err(c, FLAGOS_ERR_SHAPE, "slope dimension %d is larger than X's (%lld)", d,
                     (long long)c->in[0].dims[d]);
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

/* ---- formula helpers: everything in the compute type `cd` ---- */

typedef struct {
  ops_ctx_t *c;
  fl_arena_t *a;
  flagos_dtype_t cd;
} act_t;

static act_t act_begin(ops_ctx_t *c, kir_expr_t *const *x, kir_expr_t **xc) {
  act_t t = {c, c->arena, ops_ew_float_compute(x[0]->dtype)};
  *xc = kir_cast(c->arena, t.cd, x[0]);
  return t;
}
static kir_expr_t *K(act_t *t, double v) { return kir_const(t->a, t->cd, v); }
static kir_expr_t *B(act_t *t, kir_op_t op, kir_expr_t *x, kir_expr_t *y) { return kir_bin(t->a, op, x, y); }
static kir_expr_t *U(act_t *t, kir_op_t op, kir_expr_t *x) { return kir_un(t->a, op, x); }
static kir_expr_t *SEL(act_t *t, kir_expr_t *c, kir_expr_t *x, kir_expr_t *y) { return kir_select(t->a, c, x, y); }
static double attr_f(act_t *t, const char *name, double dflt) { return fir_attr_float(t->c->node, name, (float)dflt); }

/* 1 / (1 + e^-x) without overflow for large |x|. */
static kir_expr_t *sigmoid(act_t *t, kir_expr_t *x) {
  kir_expr_t *e = U(t, KIR_EXP, U(t, KIR_NEG, U(t, KIR_ABS, x)));
  kir_expr_t *pos = B(t, KIR_DIV, K(t, 1.0), B(t, KIR_ADD, K(t, 1.0), e));
  kir_expr_t *neg = B(t, KIR_DIV, e, B(t, KIR_ADD, K(t, 1.0), e));
  return SEL(t, B(t, KIR_GE, x, K(t, 0.0)), pos, neg);
}

/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|). */
static kir_expr_t *softplus(act_t *t, kir_expr_t *x) {
  kir_expr_t *e = U(t, KIR_EXP, U(t, KIR_NEG, U(t, KIR_ABS, x)));
  return B(t, KIR_ADD, B(t, KIR_MAX, x, K(t, 0.0)), U(t, KIR_LOG1P, e));
}

#define ACT(name)                                                                                                   \
  static kir_expr_t *ew_##name(ops_ctx_t *c, kir_expr_t *const *xs);                                              \
  static flagos_status_t lower_##name(ops_ctx_t *c) { return ops_ew_lower_map(c, ew_##name); }                    \
  static kir_expr_t *ew_##name(ops_ctx_t *c, kir_expr_t *const *xs)

#define BEGIN                                                                                                       \
  kir_expr_t *x;                                                                                                    \
  act_t t_ = act_begin(c, xs, &x);                                                                                  \
  act_t *t = &t_;                                                                                                   \
  flagos_dtype_t out_dt = xs[0]->dtype;                                                                             \
  (void)t
#define RETURN(e) return kir_cast(c->arena, out_dt, (e))

ACT(relu) {
  if (flagos_dtype_is_int(xs[0]->dtype)) return kir_bin(c->arena, KIR_MAX, xs[0], kir_const_int(c->arena, xs[0]->dtype, 0));
  BEGIN;
  RETURN(B(t, KIR_MAX, x, K(t, 0.0)));
}

ACT(leaky_relu) {
  BEGIN;
  RETURN(SEL(t, B(t, KIR_LT, x, K(t, 0.0)), B(t, KIR_MUL, x, K(t, attr_f(t, "alpha", 0.01))), x));
}

ACT(elu) {
  BEGIN;
  kir_expr_t *neg = B(t, KIR_MUL, K(t, attr_f(t, "alpha", 1.0)), U(t, KIR_EXPM1, x));
  RETURN(SEL(t, B(t, KIR_LT, x, K(t, 0.0)), neg, x));
}

ACT(selu) {
  BEGIN;
  double alpha = attr_f(t, "alpha", 1.67326319217681884765625), gamma = attr_f(t, "gamma", 1.05070102214813232421875);
  kir_expr_t *neg = B(t, KIR_MUL, K(t, alpha * gamma), U(t, KIR_EXPM1, x));
  RETURN(SEL(t, B(t, KIR_GT, x, K(t, 0.0)), B(t, KIR_MUL, K(t, gamma), x), neg));
}

ACT(celu) {
  BEGIN;
  double alpha = attr_f(t, "alpha", 1.0);
  kir_expr_t *neg = B(t, KIR_MUL, K(t, alpha), U(t, KIR_EXPM1, B(t, KIR_DIV, x, K(t, alpha))));
  RETURN(B(t, KIR_ADD, B(t, KIR_MAX, x, K(t, 0.0)), B(t, KIR_MIN, neg, K(t, 0.0))));
}

ACT(sigmoid) {
  BEGIN;
  RETURN(sigmoid(t, x));
}

ACT(hard_sigmoid) {
  BEGIN;
  kir_expr_t *y = B(t, KIR_ADD, B(t, KIR_MUL, K(t, attr_f(t, "alpha", 0.2)), x), K(t, attr_f(t, "beta", 0.5)));
  RETURN(B(t, KIR_MAX, B(t, KIR_MIN, y, K(t, 1.0)), K(t, 0.0)));
}

ACT(hard_swish) {
  BEGIN;
  kir_expr_t *y = B(t, KIR_ADD, B(t, KIR_MUL, K(t, 1.0 / 6.0), x), K(t, 0.5));
  RETURN(B(t, KIR_MUL, x, B(t, KIR_MAX, B(t, KIR_MIN, y, K(t, 1.0)), K(t, 0.0))));
}

ACT(softplus) {
  BEGIN;
  RETURN(softplus(t, x));
}

ACT(softsign) {
  BEGIN;
  RETURN(B(t, KIR_DIV, x, B(t, KIR_ADD, K(t, 1.0), U(t, KIR_ABS, x))));
}

ACT(gelu) {
  BEGIN;
  if (strcmp(fir_attr_string(c->node, "approximate", "none"), "tanh") == 0) {
    /* 0.5 x (1 + tanh(u)) = x * sigmoid(2u): no cancellation for negative x. */
    kir_expr_t *x3 = B(t, KIR_MUL, B(t, KIR_MUL, x, x), x);
    kir_expr_t *u = B(t, KIR_MUL, K(t, sqrt(2.0 / M_PI)), B(t, KIR_ADD, x, B(t, KIR_MUL, K(t, 0.044715), x3)));
    RETURN(B(t, KIR_MUL, x, sigmoid(t, B(t, KIR_MUL, K(t, 2.0), u))));
  }
  kir_expr_t *inner = U(t, KIR_ERF, B(t, KIR_MUL, x, K(t, M_SQRT1_2)));
  RETURN(B(t, KIR_MUL, B(t, KIR_MUL, K(t, 0.5), x), B(t, KIR_ADD, K(t, 1.0), inner)));
}

ACT(mish) {
  BEGIN;
  RETURN(B(t, KIR_MUL, x, U(t, KIR_TANH, softplus(t, x))));
}

ACT(swish) {
  BEGIN;
  RETURN(B(t, KIR_MUL, x, sigmoid(t, B(t, KIR_MUL, K(t, attr_f(t, "alpha", 1.0)), x))));
}

ACT(thresholded_relu) {
  BEGIN;
  RETURN(SEL(t, B(t, KIR_GT, x, K(t, attr_f(t, "alpha", 1.0))), x, K(t, 0.0)));
}

ACT(tanh) {
  BEGIN;
  RETURN(U(t, KIR_TANH, x));
}

/* Shrink takes integer tensors too: they are computed in double and truncated. */
ACT(shrink) {
  flagos_dtype_t out_dt = xs[0]->dtype;
  act_t t_ = {c, c->arena, flagos_dtype_is_int(out_dt) ? FLAGOS_FLOAT64 : ops_ew_float_compute(out_dt)};
  act_t *t = &t_;
  kir_expr_t *x = kir_cast(c->arena, t->cd, xs[0]);
  double lambd = attr_f(t, "lambd", 0.5), bias = attr_f(t, "bias", 0.0);
  kir_expr_t *hi = SEL(t, B(t, KIR_GT, x, K(t, lambd)), B(t, KIR_SUB, x, K(t, bias)), K(t, 0.0));
  RETURN(SEL(t, B(t, KIR_LT, x, K(t, -lambd)), B(t, KIR_ADD, x, K(t, bias)), hi));
}

ACT(prelu) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t dt = xs[0]->dtype;
  if (flagos_dtype_is_int(dt)) {
    kir_expr_t *zero = kir_const_int(a, dt, 0);
    return kir_select(a, kir_bin(a, KIR_LT, xs[0], zero), kir_bin(a, KIR_MUL, xs[0], xs[1]), xs[0]);
  }
  BEGIN;
  kir_expr_t *s = kir_cast(a, t->cd, xs[1]);
  RETURN(SEL(t, B(t, KIR_LT, x, K(t, 0.0)), B(t, KIR_MUL, x, s), x));
}

/* ---- Clip: bounds are attributes before opset 11 and optional scalar inputs after ---- */

static flagos_status_t infer_clip(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, c->opset >= 11 ? 3 : 1));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_NUMERIC));
  for (int k = 1; k < c->n_in; k++) {
    if (!ops_has_in(c, k)) continue;
    FL_TRY(ops_ew_check_in(c, k, OPS_DT_NUMERIC));
    if (c->in[k].dtype != c->in[0].dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "%s has dtype %s but input has %s", k == 1 ? "min" : "max",
                     flagos_dtype_onnx_name(c->in[k].dtype), flagos_dtype_onnx_name(c->in[0].dtype));
    if (c->in[k].numel > 1)
      return ops_err(c, FLAGOS_ERR_SHAPE, "%s must be a scalar, got %lld elements", k == 1 ? "min" : "max",
                     (long long)c->in[k].numel);
  }
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static flagos_status_t lower_clip(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  kir_expr_t *v[OPS_MAX_RANK], *zeros[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "main", v);
  flagos_dtype_t dt = c->in[0].dtype;
  kir_expr_t *y = kir_load(k, ops_buf_in(c, k, 0), v);
  for (int d = 0; d < OPS_MAX_RANK; d++) zeros[d] = kir_i64(a, 0);
  kir_expr_t *lo = NULL, *hi = NULL;
  if (c->opset >= 11) {
    if (ops_has_in(c, 1)) lo = kir_load(k, ops_buf_in(c, k, 1), zeros);
    if (ops_has_in(c, 2)) hi = kir_load(k, ops_buf_in(c, k, 2), zeros);
  } else {
    const fir_attr_t *amin = fir_node_attr(c->node, "min"), *amax = fir_node_attr(c->node, "max");
    if (amin) lo = kir_const(a, dt, amin->f);
    if (amax) hi = kir_const(a, dt, amax->f);
  }
  /* Max then Min: when min > max every element becomes max, as the spec says. */
  if (lo) y = kir_bin(a, KIR_MAX, y, lo);
  if (hi) y = kir_bin(a, KIR_MIN, y, hi);
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

static double flops_per_elem(const ops_ctx_t *c, double per) {
  return c->out[0].numel > 0 ? per * (double)c->out[0].numel : 0.0;
}
static double flops_4(const ops_ctx_t *c) { return flops_per_elem(c, 4.0); }
static double flops_8(const ops_ctx_t *c) { return flops_per_elem(c, 8.0); }

const ops_def_t ops_family_activation[] = {
    OPS_EW_DEF("Relu", infer_relu, lower_relu, NULL),
    OPS_EW_DEF("LeakyRelu", infer_float_act, lower_leaky_relu, NULL),
    OPS_EW_DEF("Elu", infer_float_act, lower_elu, flops_4),
    OPS_EW_DEF("Selu", infer_float_act, lower_selu, flops_4),
    OPS_EW_DEF("Celu", infer_float_act, lower_celu, flops_4),
    OPS_EW_DEF("Sigmoid", infer_float_act, lower_sigmoid, flops_4),
    OPS_EW_DEF("HardSigmoid", infer_float_act, lower_hard_sigmoid, flops_4),
    OPS_EW_DEF("HardSwish", infer_float_act, lower_hard_swish, flops_4),
    OPS_EW_DEF("Softplus", infer_float_act, lower_softplus, flops_4),
    OPS_EW_DEF("Softsign", infer_float_act, lower_softsign, flops_4),
    OPS_EW_DEF("Gelu", infer_gelu, lower_gelu, flops_8),
    OPS_EW_DEF("Mish", infer_float_act, lower_mish, flops_8),
    OPS_EW_DEF("Swish", infer_float_act, lower_swish, flops_4),
    OPS_EW_DEF("ThresholdedRelu", infer_float_act, lower_thresholded_relu, NULL),
    OPS_EW_DEF("Shrink", infer_shrink, lower_shrink, NULL),
    OPS_EW_DEF("PRelu", infer_prelu, lower_prelu, NULL),
    OPS_EW_DEF("Clip", infer_clip, lower_clip, NULL),
    OPS_EW_DEF("Tanh", infer_float_act, lower_tanh, flops_4),
    OPS_EW_END,
};
