/* Training family (domain ai.onnx.preview.training): the optimizer update rules
 * Adagrad, Adam and Momentum here, Gradient in training_grad.c.
 *
 * Inputs are R (learning rate, scalar), T (update count, int64 scalar), then n
 * groups of tensors laid out by kind: X_1..X_n, G_1..G_n, then the state tensors
 * (H for Adagrad, V for Momentum, V then H for Adam). Outputs follow the same
 * layout: X_new_1..X_new_n, then the new states. Each group is one pointwise
 * kernel over X_i that stores every output of the group, so a group reads its
 * inputs once. The scalar factors that depend only on R and T are recomputed
 * per element in f64 (a few flops; it keeps the kernel free of a separate
 * scalar step) and the element-wise part runs in the compute type of X. */
#include <math.h>
#include <string.h>

#include "ops/elementwise.h"
#include "ops/training_internal.h"

typedef enum { OPT_ADAGRAD, OPT_ADAM, OPT_MOMENTUM } opt_kind_t;

/* Number of per-group tensors (X, G and the states) of each optimizer. */
static int opt_arity(opt_kind_t k) { return k == OPT_ADAM ? 4 : 3; }

static opt_kind_t opt_of(const ops_ctx_t *c) {
  const char *t = c->node->op_type;
  if (strcmp(t, "Adam") == 0) return OPT_ADAM;
  if (strcmp(t, "Momentum") == 0) return OPT_MOMENTUM;
  return OPT_ADAGRAD;
}

static flagos_status_t check_scalar(ops_ctx_t *c, int k, const char *what, uint64_t allowed) {
  FL_TRY(ops_ew_check_in(c, k, allowed));
  const ops_tensor_info_t *t = &c->in[k];
  if (t->rank > 1 || (t->numel >= 0 && t->numel != 1))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input %d (%s) must be a scalar, has rank %d and %lld elements", k, what,
                   t->rank, (long long)t->numel);
  return NULL;
}

static flagos_status_t infer_optimizer(ops_ctx_t *c) {
  opt_kind_t kind = opt_of(c);
  int per = opt_arity(kind);
  if (c->n_in < 2 + per || (c->n_in - 2) % per != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects R, T and groups of %d tensors, got %d inputs", per,
                   c->n_in);
  int n = (c->n_in - 2) / per, states = per - 2;
  if (c->n_out != n * (1 + states))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "%d tensor group(s) need %d outputs, the node has %d", n,
                   n * (1 + states), c->n_out);
  FL_TRY(check_scalar(c, 0, "R", OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT64)));
  FL_TRY(check_scalar(c, 1, "T", OPS_DT(FLAGOS_INT64)));
  if (kind == OPT_MOMENTUM) {
    const char *mode = fir_attr_string(c->node, "mode", NULL);
    if (!mode || (strcmp(mode, "standard") != 0 && strcmp(mode, "nesterov") != 0))
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute mode must be \"standard\" or \"nesterov\", got %s",
                     mode ? mode : "nothing");
    static const char *const required[] = {"alpha", "beta", "norm_coefficient"};
    for (size_t i = 0; i < FL_ARRAY_LEN(required); i++)
      if (!fir_node_attr(c->node, required[i]))
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing required attribute '%s'", required[i]);
  }
  for (int g = 0; g < n; g++) {
    int xk = 2 + g;
    FL_TRY(ops_ew_check_in(c, xk, OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT64)));
    const ops_tensor_info_t *x = &c->in[xk];
    for (int s = 1; s < per; s++) {
      int k = 2 + s * n + g;
      FL_TRY(ops_ew_check_in(c, k, OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT64)));
      const ops_tensor_info_t *t = &c->in[k];
      if (t->dtype != x->dtype)
        return ops_err(c, FLAGOS_ERR_SHAPE, "input %d is %s but the tensor it updates (input %d) is %s", k,
                       flagos_dtype_name(t->dtype), xk, flagos_dtype_name(x->dtype));
      /* The update is pointwise: the gradient and states have X's shape. */
      bool same = t->rank == x->rank;
      for (int d = 0; same && d < x->rank; d++)
        if (t->dims[d] >= 0 && x->dims[d] >= 0 && t->dims[d] != x->dims[d]) same = false;
      if (!same)
        return ops_err(c, FLAGOS_ERR_SHAPE, "input %d must have the shape of input %d (the tensor it belongs to)", k,
                       xk);
    }
    for (int s = 0; s < 1 + states; s++) ops_set_out(c, s * n + g, x->dtype, x->rank, x->dims);
  }
  return NULL;
}

/* Element 0 of a scalar input as a value of compute type dt. */
static kir_expr_t *load_scalar(ops_ctx_t *c, kir_kernel_t *k, int in, flagos_dtype_t dt) {
  kir_expr_t *zero[1] = {kir_i64(c->arena, 0)};
  int b = ops_buf_in(c, k, in);
  return kir_cast(c->arena, dt, kir_load(k, b, zero));
}

static kir_expr_t *fc(ops_ctx_t *c, flagos_dtype_t dt, double v) { return kir_const(c->arena, dt, v); }

static kir_expr_t *add(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_ADD, x, y); }
static kir_expr_t *sub(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_SUB, x, y); }
static kir_expr_t *mul(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_MUL, x, y); }
static kir_expr_t *divide(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_DIV, x, y); }

static flagos_status_t lower_optimizer(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  const fir_node_t *nd = c->node;
  opt_kind_t kind = opt_of(c);
  int per = opt_arity(kind), n = (c->n_in - 2) / per;
  double norm = fir_attr_float(nd, "norm_coefficient", 0.0f);
  for (int g = 0; g < n; g++) {
    int xk = 2 + g;
    flagos_dtype_t dt = c->in[xk].dtype, cd = ops_ew_float_compute(dt);
    kir_expr_t *v[OPS_MAX_RANK];
    kir_kernel_t *k = ops_out_kernel(c, g, "update", v);
    kir_expr_t *x = kir_load(k, ops_buf_in(c, k, xk), v);
    kir_expr_t *grad = kir_load(k, ops_buf_in(c, k, 2 + n + g), v);
    kir_expr_t *r = load_scalar(c, k, 0, FLAGOS_FLOAT64);
    kir_expr_t *t = kir_cast(a, FLAGOS_FLOAT64, load_scalar(c, k, 1, FLAGOS_INT64));
    kir_expr_t *t_pos = kir_bin(a, KIR_GT, t, fc(c, FLAGOS_FLOAT64, 0.0));
    kir_expr_t *g_reg = add(a, mul(a, fc(c, cd, norm), x), grad);
    if (kind == OPT_ADAGRAD) {
      double decay = fir_attr_float(nd, "decay_factor", 0.0f), eps = fir_attr_float(nd, "epsilon", 1e-6f);
      kir_expr_t *h = kir_load(k, ops_buf_in(c, k, 2 + 2 * n + g), v);
      kir_expr_t *rate = divide(a, r, add(a, fc(c, FLAGOS_FLOAT64, 1.0), mul(a, t, fc(c, FLAGOS_FLOAT64, decay))));
      kir_expr_t *h_new = add(a, h, mul(a, g_reg, g_reg));
      kir_expr_t *h_ad = add(a, kir_un(a, KIR_SQRT, h_new), fc(c, cd, eps));
      kir_expr_t *x_new = sub(a, x, divide(a, mul(a, kir_cast(a, cd, rate), g_reg), h_ad));
      kir_store(k, 0, v, x_new, NULL);
      kir_store(k, ops_buf_out(c, k, n + g), v, h_new, NULL);
    } else if (kind == OPT_MOMENTUM) {
      double alpha = fir_attr_float(nd, "alpha", 0.0f), beta = fir_attr_float(nd, "beta", 0.0f);
      bool nesterov = strcmp(fir_attr_string(nd, "mode", "standard"), "nesterov") == 0;
      kir_expr_t *vel = kir_load(k, ops_buf_in(c, k, 2 + 2 * n + g), v);
      /* The first update (T = 0) takes the whole gradient. */
      kir_expr_t *beta_adj = kir_select(a, t_pos, fc(c, cd, beta), fc(c, cd, 1.0));
      kir_expr_t *v_new = add(a, mul(a, fc(c, cd, alpha), vel), mul(a, beta_adj, g_reg));
      kir_expr_t *step = nesterov ? add(a, g_reg, mul(a, fc(c, cd, alpha), v_new)) : v_new;
      kir_store(k, 0, v, sub(a, x, mul(a, kir_cast(a, cd, r), step)), NULL);
      kir_store(k, ops_buf_out(c, k, n + g), v, v_new, NULL);
    } else {
      double alpha = fir_attr_float(nd, "alpha", 0.9f), beta = fir_attr_float(nd, "beta", 0.999f);
      double eps = fir_attr_float(nd, "epsilon", 1e-6f), post = fir_attr_float(nd, "norm_coefficient_post", 0.0f);
      kir_expr_t *vel = kir_load(k, ops_buf_in(c, k, 2 + 2 * n + g), v);
      kir_expr_t *h = kir_load(k, ops_buf_in(c, k, 2 + 3 * n + g), v);
      kir_expr_t *v_new = add(a, mul(a, fc(c, cd, alpha), vel), mul(a, fc(c, cd, 1.0 - alpha), g_reg));
      kir_expr_t *h_new = add(a, mul(a, fc(c, cd, beta), h), mul(a, fc(c, cd, 1.0 - beta), mul(a, g_reg, g_reg)));
      kir_expr_t *h_sqrt = add(a, kir_un(a, KIR_SQRT, h_new), fc(c, cd, eps));
      /* Bias correction of the learning rate once T > 0. */
      kir_expr_t *one = fc(c, FLAGOS_FLOAT64, 1.0);
      kir_expr_t *bias = divide(a, kir_un(a, KIR_SQRT, sub(a, one, kir_bin(a, KIR_POW, fc(c, FLAGOS_FLOAT64, beta), t))),
                                sub(a, one, kir_bin(a, KIR_POW, fc(c, FLAGOS_FLOAT64, alpha), t)));
      kir_expr_t *rate = kir_select(a, t_pos, mul(a, r, bias), r);
      kir_expr_t *x_new = sub(a, x, mul(a, kir_cast(a, cd, rate), divide(a, v_new, h_sqrt)));
      kir_store(k, 0, v, mul(a, fc(c, cd, 1.0 - post), x_new), NULL);
      kir_store(k, ops_buf_out(c, k, n + g), v, v_new, NULL);
      kir_store(k, ops_buf_out(c, k, 2 * n + g), v, h_new, NULL);
    }
  }
  return NULL;
}

static double flops_optimizer(const ops_ctx_t *c) {
  double total = 0;
  int per = opt_arity(opt_of(c)), n = (c->n_in - 2) / per;
  for (int g = 0; g < n; g++)
    if (c->in[2 + g].numel > 0) total += (double)c->in[2 + g].numel * (per == 4 ? 14.0 : 8.0);
  return total;
}

const ops_def_t ops_family_training[] = {
#define OPT_ENTRY(name) \
  {.op_type = name, .domain = "ai.onnx.preview.training", .infer = infer_optimizer, .lower = lower_optimizer, \
   .flops = flops_optimizer}
    OPT_ENTRY("Adagrad"),
    OPT_ENTRY("Adam"),
    OPT_ENTRY("Momentum"),
#undef OPT_ENTRY
    {.op_type = "Gradient", .domain = "ai.onnx.preview.training", .infer = ops_tr_grad_infer,
     .lower = ops_tr_grad_lower},
    {.op_type = NULL},
};
