/* Gradient (ai.onnx.preview.training): the derivative of the tensor named by
 * attribute `y` with respect to each tensor named in `xs`, at the values given
 * as the node's inputs (xs first, then the constants `zs`).
 *
 * The lowering differentiates the part of the graph between xs/zs and y in
 * forward mode: walking back from y through the producers, every value becomes
 * a pair (value, derivative with respect to x_k) of kernel expressions, so one
 * pointwise kernel per output computes dy/dx_k directly from the node's inputs.
 * That covers pointwise subgraphs (Add, Sub, Mul, Div, Neg, Identity, Exp, Log,
 * Sqrt, Tanh, Sigmoid, Relu, Pow) with y of x_k's shape and scalar constants:
 * then the gradient of sum(y), what reverse mode seeds with ones, is the
 * element-wise derivative. Anything else
 * (broadcast reductions, matrix products, control flow) is refused with
 * FLAGOS_ERR_UNSUPPORTED naming the operator: that needs a graph-level autodiff
 * pass, not a lowering. */
#include <string.h>

#include "ops/elementwise.h"
#include "ops/training_internal.h"

#define GRAD_MAX_DEPTH 256

typedef struct grad_names {
  int n_xs, n_zs;
  const char *const *xs, *const *zs;
  const char *y;
} grad_names_t;

static flagos_status_t grad_names(const ops_ctx_t *c, grad_names_t *g) {
  const fir_attr_t *xs = fir_node_attr(c->node, "xs"), *zs = fir_node_attr(c->node, "zs");
  g->y = fir_attr_string(c->node, "y", NULL);
  if (!xs || xs->kind != FIR_ATTR_STRINGS || !g->y)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attributes 'xs' (strings) and 'y' (string) are required");
  g->n_xs = xs->n;
  g->xs = xs->strings;
  g->n_zs = zs && zs->kind == FIR_ATTR_STRINGS ? zs->n : 0;
  g->zs = g->n_zs ? zs->strings : NULL;
  return NULL;
}

flagos_status_t ops_tr_grad_infer(ops_ctx_t *c) {
  grad_names_t g;
  FL_TRY(grad_names(c, &g));
  if (c->n_in != g.n_xs + g.n_zs)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "%d inputs given for %d names in xs and zs", c->n_in, g.n_xs + g.n_zs);
  if (c->n_out > g.n_xs)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "%d outputs but only %d tensors in xs", c->n_out, g.n_xs);
  if (!fir_graph_lookup(c->node->graph, g.y))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "y names '%s', which the graph does not define", g.y);
  for (int k = 0; k < c->n_in; k++) FL_TRY(ops_ew_check_in(c, k, OPS_DT_FLOATS));
  for (int k = 0; k < c->n_out; k++)
    if (c->node->outputs[k]) ops_set_out(c, k, c->in[k].dtype, c->in[k].rank, c->in[k].dims);
  return NULL;
}

/* ---- forward-mode differentiation into kernel expressions ---- */
typedef struct grad_low {
  ops_ctx_t *c;
  fl_arena_t *a;
  kir_kernel_t *k;
  const grad_names_t *g;
  int wrt;                /* the x we differentiate by */
  int rank;
  kir_expr_t **vars;
  flagos_dtype_t cd;      /* compute type */
  int *buf;               /* kernel buffer of each node input, -1 until used */
  /* memo: values already turned into expressions */
  int n_memo;
  const fir_value_t *memo_v[GRAD_MAX_DEPTH];
  kir_expr_t *memo_val[GRAD_MAX_DEPTH], *memo_der[GRAD_MAX_DEPTH];
} grad_low_t;

static kir_expr_t *cf(grad_low_t *L, double v) { return kir_const(L->a, L->cd, v); }
static kir_expr_t *bin(grad_low_t *L, kir_op_t op, kir_expr_t *x, kir_expr_t *y) { return kir_bin(L->a, op, x, y); }

/* y must have x_k's shape: every value between them is then computed at the
 * output's index (pointwise ops only broadcast smaller tensors into it), and the
 * derivative needs no reduction. */
static flagos_status_t check_y_shape(grad_low_t *L, const fir_value_t *y) {
  ops_ctx_t *c = L->c;
  const ops_tensor_info_t *o = &c->out[L->wrt];
  const fir_type_t *t = y->type;
  if (!t || t->kind != FIR_TYPE_TENSOR || t->rank < 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "y ('%s') has no known type", y->name);
  bool same = t->rank == o->rank;
  for (int i = 0; same && i < o->rank; i++) same = t->dims[i].value < 0 || o->dims[i] < 0 || t->dims[i].value == o->dims[i];
  if (!same)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED,
                   "y ('%s') and xs[%d] differ in shape: the gradient would need a reduction", y->name, L->wrt);
  return NULL;
}

static flagos_status_t diff(grad_low_t *L, const fir_value_t *v, int depth, kir_expr_t **val, kir_expr_t **der);

static flagos_status_t diff_node(grad_low_t *L, const fir_node_t *n, int depth, kir_expr_t **val, kir_expr_t **der) {
  ops_ctx_t *c = L->c;
  const char *op = n->op_type;
  if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "cannot differentiate %s of domain '%s'", op, n->domain);
  kir_expr_t *a = NULL, *da = NULL, *b = NULL, *db = NULL;
  if (n->n_inputs < 1 || !n->inputs[0]) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "cannot differentiate %s", op);
  FL_TRY(diff(L, n->inputs[0], depth + 1, &a, &da));
  bool binary = strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Mul") == 0 || strcmp(op, "Div") == 0 ||
                strcmp(op, "Pow") == 0;
  if (binary) {
    if (n->n_inputs != 2 || !n->inputs[1]) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "%s without two inputs", op);
    FL_TRY(diff(L, n->inputs[1], depth + 1, &b, &db));
  }
  kir_expr_t *one = cf(L, 1.0), *zero = cf(L, 0.0);
  if (strcmp(op, "Add") == 0) {
    *val = bin(L, KIR_ADD, a, b);
    *der = bin(L, KIR_ADD, da, db);
  } else if (strcmp(op, "Sub") == 0) {
    *val = bin(L, KIR_SUB, a, b);
    *der = bin(L, KIR_SUB, da, db);
  } else if (strcmp(op, "Mul") == 0) {
    *val = bin(L, KIR_MUL, a, b);
    *der = bin(L, KIR_ADD, bin(L, KIR_MUL, da, b), bin(L, KIR_MUL, a, db));
  } else if (strcmp(op, "Div") == 0) {
    *val = bin(L, KIR_DIV, a, b);
    *der = bin(L, KIR_DIV, bin(L, KIR_SUB, bin(L, KIR_MUL, da, b), bin(L, KIR_MUL, a, db)), bin(L, KIR_MUL, b, b));
  } else if (strcmp(op, "Pow") == 0) {
    /* d(a^b) = b a^(b-1) da + a^b log(a) db; the second term only when b varies. */
    *val = bin(L, KIR_POW, a, b);
    *der = bin(L, KIR_MUL, bin(L, KIR_MUL, b, bin(L, KIR_POW, a, bin(L, KIR_SUB, b, one))), da);
    if (!(db->kind == KIR_CONST && db->cf == 0.0))
      *der = bin(L, KIR_ADD, *der, bin(L, KIR_MUL, bin(L, KIR_MUL, *val, kir_un(L->a, KIR_LOG, a)), db));
  } else if (strcmp(op, "Neg") == 0) {
    *val = kir_un(L->a, KIR_NEG, a);
    *der = kir_un(L->a, KIR_NEG, da);
  } else if (strcmp(op, "Identity") == 0) {
    *val = a;
    *der = da;
  } else if (strcmp(op, "Exp") == 0) {
    *val = kir_un(L->a, KIR_EXP, a);
    *der = bin(L, KIR_MUL, da, *val);
  } else if (strcmp(op, "Log") == 0) {
    *val = kir_un(L->a, KIR_LOG, a);
    *der = bin(L, KIR_DIV, da, a);
  } else if (strcmp(op, "Sqrt") == 0) {
    *val = kir_un(L->a, KIR_SQRT, a);
    *der = bin(L, KIR_DIV, da, bin(L, KIR_MUL, cf(L, 2.0), *val));
  } else if (strcmp(op, "Tanh") == 0) {
    *val = kir_un(L->a, KIR_TANH, a);
    *der = bin(L, KIR_MUL, da, bin(L, KIR_SUB, one, bin(L, KIR_MUL, *val, *val)));
  } else if (strcmp(op, "Sigmoid") == 0) {
    *val = bin(L, KIR_DIV, one, bin(L, KIR_ADD, one, kir_un(L->a, KIR_EXP, kir_un(L->a, KIR_NEG, a))));
    *der = bin(L, KIR_MUL, da, bin(L, KIR_MUL, *val, bin(L, KIR_SUB, one, *val)));
  } else if (strcmp(op, "Relu") == 0) {
    kir_expr_t *pos = bin(L, KIR_GT, a, zero);
    *val = kir_select(L->a, pos, a, zero);
    *der = kir_select(L->a, pos, da, zero);
  } else {
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "cannot differentiate through %s (only pointwise arithmetic)", op);
  }
  return NULL;
}

static flagos_status_t diff(grad_low_t *L, const fir_value_t *v, int depth, kir_expr_t **val, kir_expr_t **der) {
  ops_ctx_t *c = L->c;
  if (depth > GRAD_MAX_DEPTH)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the path from xs to y is longer than %d operators", GRAD_MAX_DEPTH);
  for (int i = 0; i < L->n_memo; i++)
    if (L->memo_v[i] == v) {
      *val = L->memo_val[i];
      *der = L->memo_der[i];
      return NULL;
    }
  const grad_names_t *g = L->g;
  int in = -1;
  for (int i = 0; i < g->n_xs && in < 0; i++)
    if (strcmp(g->xs[i], v->name) == 0) in = i;
  for (int i = 0; i < g->n_zs && in < 0; i++)
    if (strcmp(g->zs[i], v->name) == 0) in = g->n_xs + i;
  if (in >= 0) {
    /* The node's input stands for this name: its value, not the graph's. */
    if (L->buf[in] < 0) L->buf[in] = ops_buf_in(c, L->k, in);
    *val = kir_cast(L->a, L->cd, ops_load_bcast(c, L->k, L->buf[in], in, L->rank, L->vars));
    *der = cf(L, in == L->wrt ? 1.0 : 0.0);
  } else if (v->init && v->init->data && v->init->numel == 1) {
    *val = cf(L, fl_load_as_double(v->init->dtype, v->init->data, 0));
    *der = cf(L, 0.0);
  } else if (v->producer) {
    FL_TRY(diff_node(L, v->producer, depth, val, der));
  } else {
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "y depends on '%s', which is neither in xs nor in zs", v->name);
  }
  if (L->n_memo < GRAD_MAX_DEPTH) {
    L->memo_v[L->n_memo] = v;
    L->memo_val[L->n_memo] = *val;
    L->memo_der[L->n_memo++] = *der;
  }
  return NULL;
}

flagos_status_t ops_tr_grad_lower(ops_ctx_t *c) {
  grad_names_t g;
  FL_TRY(grad_names(c, &g));
  const fir_value_t *y = fir_graph_lookup(c->node->graph, g.y);
  if (!y) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "y names '%s', which the graph does not define", g.y);
  for (int k = 0; k < c->n_out; k++) {
    if (!c->node->outputs[k]) continue;
    grad_low_t *L = fl_arena_alloc(c->arena, sizeof(*L));
    memset(L, 0, sizeof(*L));
    kir_expr_t *v[OPS_MAX_RANK], *val, *der;
    L->c = c;
    L->a = c->arena;
    L->g = &g;
    L->wrt = k;
    L->rank = c->out[k].rank;
    L->vars = v;
    L->cd = ops_ew_float_compute(c->out[k].dtype);
    L->buf = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(c->n_in > 0 ? c->n_in : 1));
    for (int i = 0; i < c->n_in; i++) L->buf[i] = -1;
    L->k = ops_out_kernel(c, k, "grad", v);
    FL_TRY(check_y_shape(L, y));
    FL_TRY(diff(L, y, 0, &val, &der));
    kir_store(L->k, 0, v, der, NULL);
  }
  return NULL;
}
