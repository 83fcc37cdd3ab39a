/* ProductActivation (domain ai.flagos): a product — MatMul, MatMulBias, Gemm
 * or Conv — and the activation that alone reads its output (GELU in its erf
 * or tanh form, ReLU), as one node (src/passes/fuse_activation.c builds it;
 * docs/fusion.md describes it).
 *
 * The `body` graph holds the two nodes, or three with the view between them
 * (PyTorch's exporters reshape a Gemm's 2-D output back: an alias in the body,
 * body_seq.c). The lowering is:
 * - first, where the product's first kernel carries a library call (gemm or
 *   conv, docs/kernel-ir.md), a kernel of no points carrying the same call
 *   with the activation as its last int, writing the node's output (ends_node):
 *   a backend that takes it runs product, bias and activation as one call; one
 *   that declines it launches nothing for it;
 * - then the body's nodes, each by its own lowering, the product's output in a
 *   temporary, its first call now skipping only the product's later kernels
 *   (`skip`), not the activation's: a backend that takes the product's call
 *   but not the activation (cuda, cpu) runs what the two nodes ran before,
 *   launch for launch.
 * Which activation the second node computes is found by evaluating it, in
 * double, at points from -12 to 12 and comparing with each form
 * (ops_activation_of): the exporters write GELU in many ways (an ONNX Gelu, or
 * Div, Erf, Add, Mul, Mul; Pow or Mul for the cube of the tanh form; with
 * Casts around them in f16 models), which elementwise fusion has already made
 * one FusedElementwise node. Static shapes only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/body_seq.h"

#define AR (c->arena)

/* ---- which activation a node computes ---- */

#define ACT_MAX_VALUES 64

/* Values of one evaluation: body or graph values by address. */
typedef struct act_env {
  const fir_value_t *v[ACT_MAX_VALUES];
  double x[ACT_MAX_VALUES];
  int n;
} act_env_t;

static bool env_get(const act_env_t *e, const fir_value_t *v, double *x) {
  for (int i = e->n - 1; i >= 0; i--)
    if (e->v[i] == v) return *x = e->x[i], true;
  return false;
}

static bool env_put(act_env_t *e, const fir_value_t *v, double x) {
  if (e->n == ACT_MAX_VALUES) return false;
  e->v[e->n] = v;
  e->x[e->n++] = x;
  return true;
}

static bool float_dtype(int64_t dt) {
  return dt == FLAGOS_FLOAT16 || dt == FLAGOS_BFLOAT16 || dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT64;
}

/* One pointwise node of one output at inputs x[0..n): false for any other. */
static bool eval_op(const fir_node_t *q, const double *x, int n, double *y) {
  const char *op = q->op_type;
  if (q->domain[0] || q->n_outputs != 1 || n < 1) return false;
  if (n == 1) {
    double a = x[0];
    if (!strcmp(op, "Neg")) *y = -a;
    else if (!strcmp(op, "Abs")) *y = fabs(a);
    else if (!strcmp(op, "Sqrt")) *y = sqrt(a);
    else if (!strcmp(op, "Exp")) *y = exp(a);
    else if (!strcmp(op, "Erf")) *y = erf(a);
    else if (!strcmp(op, "Tanh")) *y = tanh(a);
    else if (!strcmp(op, "Sigmoid")) *y = 1.0 / (1.0 + exp(-a));
    else if (!strcmp(op, "Relu")) *y = a > 0 || isnan(a) ? a : 0.0;
    else if (!strcmp(op, "Identity")) *y = a;
    else if (!strcmp(op, "Cast")) {
      if (!float_dtype(fir_attr_int(q, "to", 0))) return false;
      *y = a;
    } else if (!strcmp(op, "Gelu")) {
      const char *approx = fir_attr_string(q, "approximate", "none");
      if (!strcmp(approx, "tanh")) *y = 0.5 * a * (1.0 + tanh(sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a)));
      else if (!strcmp(approx, "none")) *y = 0.5 * a * (1.0 + erf(a / sqrt(2.0)));
      else return false;
    } else if (!strcmp(op, "Max") || !strcmp(op, "Min")) *y = a;
    else return false;
    return true;
  }
  if (!strcmp(op, "Max") || !strcmp(op, "Min")) {
    bool mx = op[1] == 'a';
    double r = x[0];
    for (int i = 1; i < n; i++) r = isnan(r) || isnan(x[i]) ? NAN : mx ? fmax(r, x[i]) : fmin(r, x[i]);
    *y = r;
    return true;
  }
  if (n != 2) return false;
  double a = x[0], b = x[1];
  if (!strcmp(op, "Add")) *y = a + b;
  else if (!strcmp(op, "Sub")) *y = a - b;
  else if (!strcmp(op, "Mul")) *y = a * b;
  else if (!strcmp(op, "Div")) *y = a / b;
  else if (!strcmp(op, "Pow")) *y = pow(a, b);
  else return false;
  return true;
}

typedef struct act_probe {
  const fir_value_t *x; /* the product's output, as q sees it */
  double x0;
  ops_const_fn konst;
  const void *ctx;
} act_probe_t;

/* A scalar constant's value: one element of a numeric tensor. */
static bool scalar_of(const fir_tensor_t *t, double *v) {
  if (!t || !t->data || t->numel != 1 || t->dtype == FLAGOS_STRING || t->dtype == FLAGOS_COMPLEX64 ||
      t->dtype == FLAGOS_COMPLEX128)
    return false;
  *v = fl_load_as_double(t->dtype, t->data, 0);
  return true;
}

/* Node q's output at x = p->x0; q is a pointwise node or a FusedElementwise
 * of them, every input but x a scalar constant. */
static bool eval_node(const act_probe_t *p, const fir_node_t *q, double *y) {
  if (q->n_inputs > 8 || q->n_outputs != 1) return false;
  double in[8];
  for (int k = 0; k < q->n_inputs; k++) {
    const fir_value_t *v = q->inputs[k];
    if (!v) return false;
    if (v == p->x) in[k] = p->x0;
    else if (!scalar_of(p->konst(v, p->ctx), &in[k])) return false;
  }
  if (!fir_node_is(q, OPS_FUSED_DOMAIN, OPS_FUSED_OP)) return eval_op(q, in, q->n_inputs, y);
  const fir_graph_t *b = ops_fused_body(q);
  if (!b || b->n_inputs != q->n_inputs || b->n_outputs != 1) return false;
  act_env_t e = {.n = 0};
  for (int k = 0; k < b->n_inputs; k++)
    if (!env_put(&e, b->inputs[k], in[k])) return false;
  for (int i = 0; i < b->n_nodes; i++) {
    const fir_node_t *bn = b->nodes[i];
    double bx[8], by;
    if (bn->n_inputs > 8 || bn->n_inputs < 1 || bn->n_outputs != 1) return false;
    for (int k = 0; k < bn->n_inputs; k++) {
      const fir_value_t *v = bn->inputs[k];
      if (!v || (!env_get(&e, v, &bx[k]) && !scalar_of(v->init, &bx[k]))) return false;
    }
    if (!eval_op(bn, bx, bn->n_inputs, &by) || !env_put(&e, bn->outputs[0], by)) return false;
  }
  return env_get(&e, b->outputs[0], y);
}

static double act_ref(int act, double x) {
  switch (act) {
  case OPS_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  case OPS_ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  case OPS_ACT_RELU: return x > 0 ? x : 0.0;
  }
  return NAN;
}

int ops_activation_of(const fir_node_t *q, const fir_value_t *x, ops_const_fn konst, const void *ctx,
                      flagos_dtype_t dt) {
  static const double pts[] = {-12, -6, -4, -3, -2.5, -2, -1.5, -1.25, -1, -0.75, -0.5, -0.3, -0.1, -0.01, 0,
                               0.01, 0.1, 0.3, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 12};
  enum { NP = sizeof pts / sizeof pts[0] };
  double y[NP];
  act_probe_t p = {x, 0, konst, ctx};
  for (int i = 0; i < NP; i++) {
    p.x0 = pts[i];
    if (!eval_node(&p, q, &y[i]) || !isfinite(y[i])) return OPS_ACT_NONE;
  }
  /* The node's constants are rounded to its dtype (f16: 0.7979 for sqrt(2/pi)). */
  double tol = dt == FLAGOS_FLOAT16 ? 4e-3 : dt == FLAGOS_BFLOAT16 ? 2e-2 : 1e-6;
  int best = OPS_ACT_NONE;
  double best_err = tol;
  for (int act = OPS_ACT_GELU; act <= OPS_ACT_RELU; act++) {
    double err = 0;
    for (int i = 0; i < NP; i++) {
      double r = act_ref(act, pts[i]);
      err = fmax(err, fabs(y[i] - r) / (1.0 + fabs(r)));
    }
    if (err <= best_err) best = act, best_err = err;
  }
  return best;
}

/* ---- the node ---- */

/* The body: the product, perhaps a view of its output, then the activation
 * giving the node's one output. */
static const fir_graph_t *body_of(const ops_ctx_t *c) {
  const fir_graph_t *b = ops_fused_body(c->node);
  if (!b || (b->n_nodes != 2 && b->n_nodes != 3) || b->n_inputs != c->n_in || b->n_outputs != 1 || c->n_out != 1 ||
      b->outputs[0] != b->nodes[b->n_nodes - 1]->outputs[0] || b->nodes[0]->n_outputs != 1)
    return NULL;
  const fir_node_t *r = b->n_nodes == 3 ? b->nodes[1] : NULL;
  return !r || (fir_node_is_view(r) && r->n_outputs == 1 && r->inputs[0] == b->nodes[0]->outputs[0]) ? b : NULL;
}

static flagos_status_t infer_pa(ops_ctx_t *c) {
  const fir_graph_t *b = body_of(c);
  if (!b)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT,
                   "needs a graph attribute '%s' of two nodes (three with a view between), the last giving the "
                   "node's one output",
                   OPS_FUSED_BODY);
  return ops_seq_infer_outputs(c, b);
}

/* A body value's constant: the node's input it is, if that is an initializer. */
typedef struct outer_ctx {
  const fir_graph_t *b;
  const fir_node_t *n;
} outer_ctx_t;

static const fir_tensor_t *outer_const(const fir_value_t *v, const void *ctx) {
  const outer_ctx_t *o = ctx;
  const fir_value_t *w = ops_seq_outer(o->b, o->n, v);
  return w ? w->init : NULL;
}

/* The kernel of no points carrying the product's call (step `at`'s) with the
 * activation, writing the node's output; NULL, or why not. `p` is where the
 * product's output lives (a temporary). */
static const char *act_call(ops_ctx_t *c, int at, int end, ops_bind_t p, int act) {
  const ops_step_t *st = &c->steps[at];
  kir_libcall_t *lc = st->kernel->libcall;
  if (!lc) return "the product's first kernel carries no library call";
  bool gemm = strcmp(lc->name, "gemm") == 0, conv = strcmp(lc->name, "conv") == 0;
  if (!(gemm && lc->n_ints >= 9 && lc->n_ints <= 12) && !(conv && lc->n_ints == 16))
    return "the product's call is not gemm (9 to 12 ints) or conv (16 ints)";
  if (!lc->ends_node && end - at != 1) return "the product's call does not compute its whole output";
  int n_ints = gemm ? 13 : 17;
  kir_expr_t **ints = fl_arena_alloc(AR, sizeof(*ints) * (size_t)n_ints);
  for (int i = 0; i < n_ints - 1; i++) {
    int64_t v;
    ints[i] = i < lc->n_ints ? lc->ints[i] : kir_i64(AR, 0);
    if (!kir_eval_int(ints[i], NULL, 0, &v)) return "the call's ints are not constants";
  }
  ints[n_ints - 1] = kir_i64(AR, act);
  int outs = 0;
  for (int i = 0; i < lc->n_bufs; i++) {
    ops_bind_t bd = st->binds[lc->bufs[i]];
    bool is_p = bd.kind == OPS_BIND_TEMP && p.kind == OPS_BIND_TEMP && bd.index == p.index;
    if (!is_p && bd.kind != OPS_BIND_INPUT) return "the call reads a temporary of the product";
    outs += is_p;
  }
  if (outs != 1) return "the call does not write the product's output once";
  kir_kernel_t *kk = ops_kernel(c, "act");
  int *bufs = fl_arena_alloc(AR, sizeof(int) * (size_t)(lc->n_bufs + 1));
  for (int i = 0; i < lc->n_bufs; i++) {
    ops_bind_t bd = st->binds[lc->bufs[i]];
    bufs[i] = bd.kind == OPS_BIND_INPUT ? ops_buf_in(c, kk, bd.index) : ops_buf_out(c, kk, 0);
  }
  kir_expr_t *ext = kir_i64(AR, 0), *var;
  kir_set_space(kk, 1, &ext, &var);
  kir_set_libcall(kk, lc->name, lc->n_bufs, bufs, n_ints, ints, lc->n_floats, lc->floats);
  /* the product's own call, taken, now skips the product's later kernels only */
  ops_seq_call_first(c, lc, at, end);
  return NULL;
}

static flagos_status_t lower_body(ops_ctx_t *c, const char **why_not) {
  const fir_graph_t *b = body_of(c);
  if (!b)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs a graph attribute '%s' of two or three nodes", OPS_FUSED_BODY);
  ops_seq_t s;
  int first[4];
  FL_TRY(ops_seq_lower_all(c, b, &s, first));
  /* the activation reads the product's output, or the view of it (an alias: no kernel, the same bytes) */
  const fir_value_t *pv = b->nodes[0]->outputs[0], *x = b->n_nodes == 3 ? b->nodes[1]->outputs[0] : pv;
  outer_ctx_t oc = {b, c->node};
  int act = ops_activation_of(b->nodes[b->n_nodes - 1], x, outer_const, &oc, c->out[0].dtype);
  if (!ops_seq_call_on("FLAGOS_ACTIVATION_CALL")) *why_not = "FLAGOS_ACTIVATION_CALL=0";
  else if (b->n_nodes == 3 && !s.alias[1]) *why_not = "the node between the product and the activation is not a view";
  else if (!act) *why_not = "the last node is not GELU (erf or tanh form) or ReLU of the product's output";
  else if (first[1] == first[0]) *why_not = "the product has no kernel";
  else if (c->out[0].dtype != s.sub[0]->out[0].dtype) *why_not = "the activation changes the dtype";
  else *why_not = act_call(c, first[0], first[1], s.where[pv->id], act);
  return NULL;
}

static flagos_status_t lower_pa(ops_ctx_t *c) {
  const char *why_not;
  return lower_body(c, &why_not);
}

const char *ops_product_act_why_not(fl_arena_t *a, const fir_node_t *n) { return ops_seq_trial(a, n, lower_body); }

const ops_def_t ops_family_product_act[] = {
    {.op_type = OPS_PRODUCT_ACT_OP, .domain = OPS_FUSED_DOMAIN, .infer = infer_pa, .lower = lower_pa,
     .flops = ops_seq_flops},
    {.op_type = NULL},
};
