/* Inlining a subgraph as a kernel IR expression (see extra2_subgraph.h).
 *
 * Each subgraph value is described once (dtype, rank, dims as int64 expressions
 * with no loop variable: constants where shapes are static, the caller's symbols
 * otherwise) and its element at an index is built on demand from its producer's
 * rule: pointwise operators (extra2_subgraph_pw.c) combine their inputs'
 * elements at the broadcast index; Shape, Gather, Range, Reshape, Unsqueeze,
 * Squeeze, Expand, Concat, Transpose, Slice and ConstantOfShape remap the index;
 * constants become literals (a select over the flat index for short tensors).
 * Values that decide shapes (Reshape's shape, Range's bounds, axes) must fold to
 * loop-free expressions, and those that decide ranks to constants. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops/extra2_subgraph_int.h"

#define SG_MAX_TABLE 256 /* longest non-uniform constant tensor turned into a select */
#define SG_BUDGET 20000  /* element rules evaluated before the subgraph counts as too large */

/* A constant's data whatever holds it: an initializer, a Constant node's attribute. */
typedef struct sg_const {
  flagos_dtype_t dt;
  int rank;
  const int64_t *dims;
  int64_t numel;
  const void *data;
} sg_const_t;

flagos_status_t ops_sg_err(sg_t *s, const fir_node_t *n, flagos_code_t code, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!n) return ops_err(s->c, code, "in subgraph '%s': %s", s->what, msg);
  return ops_err(s->c, code, "in subgraph '%s', %s node '%s': %s", s->what, n->op_type, n->name, msg);
}

/* ---- small helpers ---- */

static bool pure(const kir_expr_t *e) {
  if (e->kind == KIR_VAR || e->kind == KIR_LOAD || e->kind == KIR_REDUCE) return false;
  for (int i = 0; i < e->n; i++)
    if (!pure(e->a[i])) return false;
  return true;
}

static bool is_one(const kir_expr_t *e) { return kir_is_const(e, 1); }

static bool same_dim(const kir_expr_t *x, const kir_expr_t *y) {
  if (x == y) return true;
  return x->kind == KIR_CONST && y->kind == KIR_CONST && x->ci == y->ci;
}

static kir_expr_t *mk_const(fl_arena_t *a, flagos_dtype_t dt, const void *data, int64_t i) {
  if (dt == FLAGOS_BOOL) return kir_bool(a, fl_load_as_int64(dt, data, (size_t)i) != 0);
  if (flagos_dtype_is_float(dt)) return kir_const(a, dt, fl_load_as_double(dt, data, (size_t)i));
  return kir_const_int(a, dt, fl_load_as_int64(dt, data, (size_t)i));
}

static kir_expr_t *zero_of(fl_arena_t *a, flagos_dtype_t dt) {
  if (dt == FLAGOS_BOOL) return kir_bool(a, false);
  return flagos_dtype_is_float(dt) ? kir_const(a, dt, 0.0) : kir_const_int(a, dt, 0);
}

/* Index of a broadcast operand of rank r inside an index space of rank `rank`. */
kir_expr_t **ops_sg_bcast_idx(sg_t *s, const sg_val_t *in, int rank, kir_expr_t *const *idx) {
  kir_expr_t **o = fl_arena_alloc(s->a, sizeof(*o) * (size_t)(in->rank + 1));
  int off = rank - in->rank;
  for (int j = 0; j < in->rank; j++) {
    kir_expr_t *d = in->dims[j];
    if (is_one(d))
      o[j] = kir_i64(s->a, 0);
    else if (d->kind == KIR_CONST)
      o[j] = idx[off + j];
    else
      o[j] = kir_select(s->a, kir_bin(s->a, KIR_EQ, d, kir_i64(s->a, 1)), kir_i64(s->a, 0), idx[off + j]);
  }
  return o;
}

/* Broadcasts dims (numpy rules); a pair neither constant nor 1 takes the larger. */
flagos_status_t ops_sg_bcast_dims(sg_t *s, const fir_node_t *n, sg_val_t *o, int rank, const kir_expr_t *const *dims) {
  int r = o->rank > rank ? o->rank : rank;
  kir_expr_t *res[OPS_MAX_RANK];
  for (int i = 0; i < r; i++) {
    int ja = i - (r - o->rank), jb = i - (r - rank);
    kir_expr_t *x = ja >= 0 ? o->dims[ja] : kir_i64(s->a, 1);
    kir_expr_t *y = jb >= 0 ? (kir_expr_t *)dims[jb] : kir_i64(s->a, 1);
    if (is_one(x))
      res[i] = y;
    else if (is_one(y) || same_dim(x, y))
      res[i] = x;
    else if (x->kind == KIR_CONST && y->kind == KIR_CONST)
      return BAD(n, "cannot broadcast dimension %d: %lld against %lld", i, (long long)x->ci, (long long)y->ci);
    else
      res[i] = kir_bin(s->a, KIR_MAX, x, y);
  }
  o->rank = r;
  memcpy(o->dims, res, sizeof(res[0]) * (size_t)r);
  return NULL;
}

static kir_expr_t *numel_of(sg_t *s, const sg_val_t *v) {
  kir_expr_t *n = kir_i64(s->a, 1);
  for (int i = 0; i < v->rank; i++) n = kir_mul(s->a, n, v->dims[i]);
  return n;
}

static kir_expr_t *flat_index(sg_t *s, int rank, kir_expr_t *const *dims, kir_expr_t *const *idx) {
  kir_expr_t *f = kir_i64(s->a, 0);
  for (int i = 0; i < rank; i++) f = kir_add(s->a, kir_mul(s->a, f, dims[i]), idx[i]);
  return f;
}

static void unflatten(sg_t *s, kir_expr_t *flat, int rank, kir_expr_t *const *dims, kir_expr_t **idx) {
  for (int i = rank - 1; i >= 0; i--) {
    idx[i] = i == 0 ? flat : kir_bin(s->a, KIR_MOD, flat, dims[i]);
    flat = kir_bin(s->a, KIR_DIV, flat, dims[i]);
  }
}

/* ---- constants ---- */

static kir_expr_t *const_elem(sg_t *s, const sg_const_t *k, kir_expr_t *const *idx, bool *ok) {
  *ok = true;
  if (k->numel == 1) return mk_const(s->a, k->dt, k->data, 0);
  if (k->numel == 0) return zero_of(s->a, k->dt);
  kir_expr_t *dims[OPS_MAX_RANK];
  for (int i = 0; i < k->rank; i++) dims[i] = kir_i64(s->a, k->dims[i]);
  kir_expr_t *flat = flat_index(s, k->rank, dims, idx);
  if (flat->kind == KIR_CONST) return mk_const(s->a, k->dt, k->data, flat->ci);
  bool uniform = true;
  for (int64_t i = 1; i < k->numel && uniform; i++)
    uniform = fl_load_as_double(k->dt, k->data, (size_t)i) == fl_load_as_double(k->dt, k->data, 0);
  if (uniform) return mk_const(s->a, k->dt, k->data, 0);
  if (k->numel > SG_MAX_TABLE) {
    *ok = false;
    return NULL;
  }
  kir_expr_t *e = mk_const(s->a, k->dt, k->data, k->numel - 1);
  for (int64_t i = k->numel - 2; i >= 0; i--)
    e = kir_select(s->a, kir_bin(s->a, KIR_EQ, flat, kir_i64(s->a, i)), mk_const(s->a, k->dt, k->data, i), e);
  return e;
}

static void const_of_tensor(const fir_tensor_t *t, sg_const_t *k) {
  k->dt = t->dtype;
  k->rank = t->rank;
  k->dims = t->dims;
  k->numel = t->numel;
  k->data = t->data;
}

/* A Constant node's value in any of its attribute spellings. */
static flagos_status_t constant_node(sg_t *s, const fir_node_t *n, sg_const_t *k) {
  static int64_t one_dim[1];
  for (int i = 0; i < n->n_attrs; i++) {
    const fir_attr_t *at = &n->attrs[i];
    if (strcmp(at->name, "value") == 0 && at->kind == FIR_ATTR_TENSOR && at->t) {
      const_of_tensor(at->t, k);
    } else if (strcmp(at->name, "value_float") == 0) {
      *k = (sg_const_t){FLAGOS_FLOAT32, 0, one_dim, 1, &at->f};
    } else if (strcmp(at->name, "value_int") == 0) {
      *k = (sg_const_t){FLAGOS_INT64, 0, one_dim, 1, &at->i};
    } else if (strcmp(at->name, "value_floats") == 0 || strcmp(at->name, "value_ints") == 0) {
      bool f = at->name[6] == 'f';
      int64_t *d = fl_arena_alloc(s->a, sizeof(int64_t));
      d[0] = at->n;
      *k = (sg_const_t){f ? FLAGOS_FLOAT32 : FLAGOS_INT64, 1, d, at->n,
                        f ? (const void *)at->floats : (const void *)at->ints};
    } else {
      continue;
    }
    if (k->dt == FLAGOS_STRING || !k->data) return UNSUP(n, "string or external constants cannot be inlined");
    return NULL;
  }
  return UNSUP(n, "no value attribute this translator understands");
}

/* ---- integer values that decide shapes ---- */

/* Element i of a 0-D or 1-D integer value, as an int64 expression with no loop variable. */
static flagos_status_t int_at(sg_t *s, const fir_node_t *n, const fir_value_t *v, int64_t i, kir_expr_t **out) {
  const sg_val_t *vi = NULL;
  FL_TRY(ops_sg_val_info(s, v, &vi));
  if (!flagos_dtype_is_int(vi->dt)) return BAD(n, "input '%s' must be an integer tensor", v->name);
  if (vi->rank > 1) return BAD(n, "input '%s' must be 0-D or 1-D", v->name);
  kir_expr_t *ix = kir_i64(s->a, i), *e;
  FL_TRY(ops_sg_val_elem(s, v, &ix, &e));
  e = kir_cast(s->a, FLAGOS_INT64, e);
  if (!pure(e)) return UNSUP(n, "input '%s' depends on tensor data, not only on shapes", v->name);
  *out = e;
  return NULL;
}

static flagos_status_t int_const(sg_t *s, const fir_node_t *n, const fir_value_t *v, int64_t i, int64_t *out) {
  kir_expr_t *e = NULL;
  FL_TRY(int_at(s, n, v, i, &e));
  if (e->kind != KIR_CONST) return UNSUP(n, "input '%s' must be known when the model is compiled", v->name);
  *out = e->ci;
  return NULL;
}

/* Number of entries of a 1-D value (must be a constant: it decides a rank). */
static flagos_status_t int_len(sg_t *s, const fir_node_t *n, const fir_value_t *v, int64_t *len) {
  const sg_val_t *vi = NULL;
  FL_TRY(ops_sg_val_info(s, v, &vi));
  if (vi->rank == 0) return *len = 1, NULL;
  if (vi->rank != 1 || vi->dims[0]->kind != KIR_CONST)
    return UNSUP(n, "the length of input '%s' must be known when the model is compiled", v->name);
  *len = vi->dims[0]->ci;
  if (*len > OPS_MAX_RANK) return UNSUP(n, "input '%s' has more than %d entries", v->name, OPS_MAX_RANK);
  return NULL;
}

/* Axes from input k (opset >= `since`) or from the attribute `axes`; n_axes = -1 when absent. */
static flagos_status_t axes_of(sg_t *s, const fir_node_t *n, int k, int since, int64_t *axes, int *n_axes) {
  *n_axes = -1;
  if (n->opset >= since) {
    if (k >= n->n_inputs || !n->inputs[k]) return NULL;
    int64_t len = 0;
    FL_TRY(int_len(s, n, n->inputs[k], &len));
    for (int64_t i = 0; i < len; i++) FL_TRY(int_const(s, n, n->inputs[k], i, &axes[i]));
    *n_axes = (int)len;
    return NULL;
  }
  const int64_t *a;
  int na = fir_attr_ints(n, "axes", &a);
  if (na > OPS_MAX_RANK) return BAD(n, "too many axes");
  for (int i = 0; i < na; i++) axes[i] = a[i];
  *n_axes = na;
  return NULL;
}

static flagos_status_t norm_axis(sg_t *s, const fir_node_t *n, int64_t ax, int rank, int *out) {
  int64_t a = ax < 0 ? ax + rank : ax;
  if (a < 0 || a >= rank) return BAD(n, "axis %lld is out of range for rank %d", (long long)ax, rank);
  *out = (int)a;
  return NULL;
}

/* ---- describing values ---- */
static flagos_status_t shape_start_end(sg_t *s, const fir_node_t *n, int r, int64_t *start, int64_t *len) {
  int64_t st = n->opset >= 15 ? fir_attr_int(n, "start", 0) : 0, en = n->opset >= 15 ? fir_attr_int(n, "end", r) : r;
  if (st < 0) st += r;
  if (en < 0) en += r;
  st = st < 0 ? 0 : st > r ? r : st;
  en = en < 0 ? 0 : en > r ? r : en;
  *start = st;
  *len = en > st ? en - st : 0;
  (void)s;
  return NULL;
}

/* Slice parameters per input axis: start and step (out = start + i*step). */
typedef struct sg_slice {
  int64_t start[OPS_MAX_RANK], step[OPS_MAX_RANK], len[OPS_MAX_RANK];
  bool sliced[OPS_MAX_RANK];
} sg_slice_t;

static flagos_status_t slice_params(sg_t *s, const fir_node_t *n, const sg_val_t *x, sg_slice_t *p) {
  int64_t st[OPS_MAX_RANK], en[OPS_MAX_RANK], ax[OPS_MAX_RANK], sp[OPS_MAX_RANK];
  int cnt;
  memset(p, 0, sizeof(*p));
  if (n->opset >= 10) {
    if (n->n_inputs < 3) return BAD(n, "expects data, starts and ends");
    int64_t l = 0;
    FL_TRY(int_len(s, n, n->inputs[1], &l));
    cnt = (int)l;
    for (int i = 0; i < cnt; i++) {
      FL_TRY(int_const(s, n, n->inputs[1], i, &st[i]));
      FL_TRY(int_const(s, n, n->inputs[2], i, &en[i]));
      ax[i] = i;
      sp[i] = 1;
      if (n->n_inputs > 3 && n->inputs[3]) FL_TRY(int_const(s, n, n->inputs[3], i, &ax[i]));
      if (n->n_inputs > 4 && n->inputs[4]) FL_TRY(int_const(s, n, n->inputs[4], i, &sp[i]));
    }
  } else {
    const int64_t *a, *b, *c;
    cnt = fir_attr_ints(n, "starts", &a);
    if (cnt < 0 || fir_attr_ints(n, "ends", &b) != cnt || cnt > OPS_MAX_RANK) return BAD(n, "bad starts/ends");
    int nax = fir_attr_ints(n, "axes", &c);
    for (int i = 0; i < cnt; i++) {
      st[i] = a[i];
      en[i] = b[i];
      ax[i] = nax > i ? c[i] : i;
      sp[i] = 1;
    }
  }
  for (int i = 0; i < cnt; i++) {
    int a = 0;
    FL_TRY(norm_axis(s, n, ax[i], x->rank, &a));
    if (x->dims[a]->kind != KIR_CONST) return UNSUP(n, "sliced axis %d must have a size known at compile time", a);
    if (sp[i] == 0) return BAD(n, "step 0");
    int64_t d = x->dims[a]->ci, b = st[i], e = en[i];
    if (b < 0) b += d;
    if (e < 0) e += d;
    if (sp[i] > 0) {
      b = b < 0 ? 0 : b > d ? d : b;
      e = e < 0 ? 0 : e > d ? d : e;
    } else {
      b = b < 0 ? -1 : b > d - 1 ? d - 1 : b;
      e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
    }
    int64_t len = sp[i] > 0 ? (e - b + sp[i] - 1) / sp[i] : (b - e + (-sp[i]) - 1) / (-sp[i]);
    p->sliced[a] = true;
    p->start[a] = b;
    p->step[a] = sp[i];
    p->len[a] = len > 0 ? len : 0;
  }
  return NULL;
}

/* Reshape's output dims. */
static flagos_status_t reshape_dims(sg_t *s, const fir_node_t *n, const sg_val_t *x, sg_val_t *o) {
  int64_t len = 0;
  kir_expr_t *ent[OPS_MAX_RANK];
  if (n->opset >= 5) {
    if (n->n_inputs < 2 || !n->inputs[1]) return BAD(n, "expects a shape input");
    FL_TRY(int_len(s, n, n->inputs[1], &len));
    for (int64_t i = 0; i < len; i++) FL_TRY(int_at(s, n, n->inputs[1], i, &ent[i]));
  } else {
    const int64_t *sh;
    int ns = fir_attr_ints(n, "shape", &sh);
    if (ns < 0 || ns > OPS_MAX_RANK) return BAD(n, "bad shape attribute");
    len = ns;
    for (int i = 0; i < ns; i++) ent[i] = kir_i64(s->a, sh[i]);
  }
  bool allowzero = n->opset >= 14 && fir_attr_int(n, "allowzero", 0) != 0;
  int infer_at = -1;
  kir_expr_t *known = kir_i64(s->a, 1);
  for (int i = 0; i < len; i++) {
    if (kir_is_const(ent[i], 0) && !allowzero) {
      if (i >= x->rank) return BAD(n, "shape entry %d is 0 but the input has rank %d", i, x->rank);
      ent[i] = x->dims[i];
    } else if (kir_is_const(ent[i], -1)) {
      if (infer_at >= 0) return BAD(n, "more than one -1 in the shape");
      infer_at = i;
      continue;
    }
    known = kir_mul(s->a, known, ent[i]);
  }
  if (infer_at >= 0) ent[infer_at] = kir_bin(s->a, KIR_DIV, numel_of(s, x), known);
  o->rank = (int)len;
  memcpy(o->dims, ent, sizeof(ent[0]) * (size_t)len);
  return NULL;
}

static flagos_status_t node_info(sg_t *s, const fir_node_t *n, int k, sg_val_t *o) {
  const char *op = n->op_type;
  if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
    return UNSUP(n, "operators of domain '%s' cannot be inlined", n->domain);
  if (k != 0) return UNSUP(n, "only the first output of this operator can be inlined");
  if (ops_sg_is_pointwise(op)) return ops_sg_pointwise_info(s, n, o);
  if (strcmp(op, "Constant") == 0) {
    sg_const_t c;
    FL_TRY(constant_node(s, n, &c));
    o->dt = c.dt;
    o->rank = c.rank;
    for (int i = 0; i < c.rank; i++) o->dims[i] = kir_i64(s->a, c.dims[i]);
    return NULL;
  }
  const sg_val_t *x = NULL;
  if (n->n_inputs > 0 && n->inputs[0]) FL_TRY(ops_sg_val_info(s, n->inputs[0], &x));
  if (!x && strcmp(op, "Range") != 0) return BAD(n, "input 0 is missing");
  if (strcmp(op, "Shape") == 0 || strcmp(op, "Size") == 0) {
    o->dt = FLAGOS_INT64;
    if (op[1] == 'i') return o->rank = 0, NULL;
    int64_t st = 0, len = 0;
    FL_TRY(shape_start_end(s, n, x->rank, &st, &len));
    o->rank = 1;
    o->dims[0] = kir_i64(s->a, len);
    return NULL;
  }
  if (strcmp(op, "Gather") == 0) {
    const sg_val_t *ix = NULL;
    if (n->n_inputs < 2 || !n->inputs[1]) return BAD(n, "expects indices");
    FL_TRY(ops_sg_val_info(s, n->inputs[1], &ix));
    if (!flagos_dtype_is_int(ix->dt)) return BAD(n, "indices must be integers");
    int ax = 0;
    FL_TRY(norm_axis(s, n, fir_attr_int(n, "axis", 0), x->rank, &ax));
    if (x->rank - 1 + ix->rank > OPS_MAX_RANK) return BAD(n, "output rank too large");
    o->dt = x->dt;
    o->rank = 0;
    for (int i = 0; i < ax; i++) o->dims[o->rank++] = x->dims[i];
    for (int i = 0; i < ix->rank; i++) o->dims[o->rank++] = ix->dims[i];
    for (int i = ax + 1; i < x->rank; i++) o->dims[o->rank++] = x->dims[i];
    return NULL;
  }
  if (strcmp(op, "Range") == 0) {
    const sg_val_t *in[3];
    if (n->n_inputs != 3) return BAD(n, "expects start, limit and delta");
    for (int i = 0; i < 3; i++) {
      if (!n->inputs[i]) return BAD(n, "input %d is missing", i);
      FL_TRY(ops_sg_val_info(s, n->inputs[i], &in[i]));
      if (in[i]->rank != 0 || in[i]->dt != in[0]->dt)
        return BAD(n, "start, limit and delta must be scalars of one dtype");
    }
    kir_expr_t *v[3], *zero = kir_i64(s->a, 0), *cnt;
    for (int i = 0; i < 3; i++) {
      FL_TRY(ops_sg_val_elem(s, n->inputs[i], NULL, &v[i]));
      if (!pure(v[i])) return UNSUP(n, "start, limit and delta must not depend on tensor data");
    }
    if (flagos_dtype_is_float(in[0]->dt)) {
      cnt = kir_cast(s->a, FLAGOS_INT64,
                     kir_un(s->a, KIR_CEIL, kir_bin(s->a, KIR_DIV, kir_bin(s->a, KIR_SUB, v[1], v[0]), v[2])));
    } else if (flagos_dtype_is_int(in[0]->dt)) {
      for (int i = 0; i < 3; i++) v[i] = kir_cast(s->a, FLAGOS_INT64, v[i]);
      if (kir_is_const(v[2], 0)) return BAD(n, "delta is 0");
      cnt = kir_un(s->a, KIR_NEG, kir_bin(s->a, KIR_FLOORDIV, kir_sub(s->a, v[0], v[1]), v[2]));
    } else {
      return BAD(n, "start, limit and delta must be numbers");
    }
    o->dt = in[0]->dt;
    o->rank = 1;
    o->dims[0] = kir_bin(s->a, KIR_MAX, cnt, zero);
    return NULL;
  }
  o->dt = x->dt;
  if (strcmp(op, "Reshape") == 0) return reshape_dims(s, n, x, o);
  if (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0) {
    int64_t axes[OPS_MAX_RANK];
    int na = -1;
    FL_TRY(axes_of(s, n, 1, 13, axes, &na));
    bool un = op[0] == 'U';
    bool mark[OPS_MAX_RANK] = {false};
    int orank = un ? x->rank + (na > 0 ? na : 0) : x->rank;
    if (un && na < 1) return BAD(n, "needs axes");
    if (orank > OPS_MAX_RANK) return BAD(n, "output rank too large");
    for (int i = 0; i < na; i++) {
      int a = 0;
      FL_TRY(norm_axis(s, n, axes[i], orank, &a));
      if (mark[a]) return BAD(n, "axis %d given twice", a);
      mark[a] = true;
    }
    if (!un && na < 0)
      for (int i = 0; i < x->rank; i++) {
        if (x->dims[i]->kind != KIR_CONST) return UNSUP(n, "squeezing every size-1 axis needs static dims");
        mark[i] = x->dims[i]->ci == 1;
      }
    o->rank = 0;
    for (int i = 0, j = 0; i < orank; i++) {
      if (un)
        o->dims[o->rank++] = mark[i] ? kir_i64(s->a, 1) : x->dims[j++];
      else if (!mark[i])
        o->dims[o->rank++] = x->dims[i];
      else if (x->dims[i]->kind == KIR_CONST && x->dims[i]->ci != 1)
        return BAD(n, "axis %d has size %lld, not 1", i, (long long)x->dims[i]->ci);
    }
    return NULL;
  }
  if (strcmp(op, "Expand") == 0) {
    int64_t len = 0;
    kir_expr_t *sh[OPS_MAX_RANK];
    if (n->n_inputs < 2 || !n->inputs[1]) return BAD(n, "expects a shape input");
    FL_TRY(int_len(s, n, n->inputs[1], &len));
    for (int64_t i = 0; i < len; i++) FL_TRY(int_at(s, n, n->inputs[1], i, &sh[i]));
    o->rank = x->rank;
    memcpy(o->dims, x->dims, sizeof(x->dims[0]) * (size_t)x->rank);
    return ops_sg_bcast_dims(s, n, o, (int)len, (const kir_expr_t *const *)sh);
  }
  if (strcmp(op, "Concat") == 0) {
    int ax = 0;
    FL_TRY(norm_axis(s, n, fir_attr_int(n, "axis", 0), x->rank, &ax));
    o->rank = x->rank;
    memcpy(o->dims, x->dims, sizeof(x->dims[0]) * (size_t)x->rank);
    for (int i = 1; i < n->n_inputs; i++) {
      const sg_val_t *y = NULL;
      if (!n->inputs[i]) return BAD(n, "input %d is missing", i);
      FL_TRY(ops_sg_val_info(s, n->inputs[i], &y));
      if (y->rank != x->rank || y->dt != x->dt) return BAD(n, "inputs differ in rank or dtype");
      o->dims[ax] = kir_add(s->a, o->dims[ax], y->dims[ax]);
    }
    return NULL;
  }
  if (strcmp(op, "Transpose") == 0) {
    const int64_t *perm;
    int np = fir_attr_ints(n, "perm", &perm);
    if (np >= 0 && np != x->rank) return BAD(n, "perm has %d entries for rank %d", np, x->rank);
    o->rank = x->rank;
    for (int i = 0; i < x->rank; i++) {
      int64_t p = np >= 0 ? perm[i] : x->rank - 1 - i;
      if (p < 0 || p >= x->rank) return BAD(n, "bad perm");
      o->dims[i] = x->dims[p];
    }
    return NULL;
  }
  if (strcmp(op, "Slice") == 0) {
    sg_slice_t p;
    FL_TRY(slice_params(s, n, x, &p));
    o->rank = x->rank;
    for (int i = 0; i < x->rank; i++) o->dims[i] = p.sliced[i] ? kir_i64(s->a, p.len[i]) : x->dims[i];
    return NULL;
  }
  if (strcmp(op, "ConstantOfShape") == 0) {
    int64_t len = 0;
    FL_TRY(int_len(s, n, n->inputs[0], &len));
    const fir_attr_t *va = fir_node_attr(n, "value");
    o->dt = va && va->kind == FIR_ATTR_TENSOR && va->t ? va->t->dtype : FLAGOS_FLOAT32;
    if (o->dt == FLAGOS_STRING) return UNSUP(n, "string values cannot be inlined");
    o->rank = (int)len;
    for (int64_t i = 0; i < len; i++) FL_TRY(int_at(s, n, n->inputs[0], i, &o->dims[i]));
    return NULL;
  }
  return UNSUP(n, "this operator cannot be inlined into a kernel expression");
}

flagos_status_t ops_sg_val_info(sg_t *s, const fir_value_t *v, const sg_val_t **out) {
  for (int i = 0; i < s->n_vals; i++)
    if (s->vals[i].v == v) return *out = &s->vals[i], NULL;
  sg_val_t o;
  memset(&o, 0, sizeof o);
  o.v = v;
  int gi = -1;
  for (int i = 0; i < s->g->n_inputs; i++)
    if (s->g->inputs[i] == v) gi = i;
  if (gi >= 0) {
    if (gi >= s->n_in) return UNSUP(NULL, "input '%s' is not bound", v->name);
    o.dt = s->ins[gi].dtype;
    o.rank = s->ins[gi].rank;
    memcpy(o.dims, s->ins[gi].dims, sizeof(o.dims[0]) * (size_t)o.rank);
  } else if (v->init) {
    if (!v->init->data || v->init->dtype == FLAGOS_STRING)
      return UNSUP(NULL, "constant '%s' has no inline data or is a string", v->name);
    o.dt = v->init->dtype;
    o.rank = v->init->rank;
    if (o.rank > OPS_MAX_RANK) return UNSUP(NULL, "constant '%s' has too many dims", v->name);
    for (int i = 0; i < o.rank; i++) o.dims[i] = kir_i64(s->a, v->init->dims[i]);
  } else if (v->producer && v->graph == s->g) {
    FL_TRY(node_info(s, v->producer, v->producer_output, &o));
  } else {
    return UNSUP(NULL, "value '%s' comes from outside the subgraph and is not a constant", v->name);
  }
  if (s->n_vals == s->cap_vals) {
    int nc = s->cap_vals ? s->cap_vals * 2 : 16;
    sg_val_t *nv = fl_arena_alloc(s->a, sizeof(*nv) * (size_t)nc);
    if (s->n_vals) memcpy(nv, s->vals, sizeof(*nv) * (size_t)s->n_vals);
    s->vals = nv;
    s->cap_vals = nc;
  }
  s->vals[s->n_vals] = o;
  *out = &s->vals[s->n_vals++];
  return NULL;
}

/* ---- elements ---- */
static flagos_status_t node_elem(sg_t *s, const fir_node_t *n, const sg_val_t *o, kir_expr_t *const *idx,
                                 kir_expr_t **out) {
  fl_arena_t *a = s->a;
  const char *op = n->op_type;
  if (ops_sg_is_pointwise(op)) return ops_sg_pointwise_elem(s, n, o, idx, out);
  if (strcmp(op, "Constant") == 0) {
    sg_const_t c;
    bool ok;
    FL_TRY(constant_node(s, n, &c));
    *out = const_elem(s, &c, idx, &ok);
    return ok ? NULL : UNSUP(n, "a constant of %lld elements indexed by position is too large", (long long)c.numel);
  }
  const fir_value_t *xv = n->n_inputs > 0 ? n->inputs[0] : NULL;
  const sg_val_t *x = NULL;
  if (xv) FL_TRY(ops_sg_val_info(s, xv, &x));
  kir_expr_t *ix[OPS_MAX_RANK];
  if (strcmp(op, "Shape") == 0) {
    int64_t st = 0, len = 0;
    FL_TRY(shape_start_end(s, n, x->rank, &st, &len));
    kir_expr_t *e = len > 0 ? x->dims[st + len - 1] : kir_i64(a, 0);
    for (int64_t j = len - 2; j >= 0; j--)
      e = kir_select(a, kir_bin(a, KIR_EQ, idx[0], kir_i64(a, j)), x->dims[st + j], e);
    return *out = e, NULL;
  }
  if (strcmp(op, "Size") == 0) return *out = numel_of(s, x), NULL;
  if (strcmp(op, "Gather") == 0) {
    const sg_val_t *iv = NULL;
    FL_TRY(ops_sg_val_info(s, n->inputs[1], &iv));
    int ax = 0;
    FL_TRY(norm_axis(s, n, fir_attr_int(n, "axis", 0), x->rank, &ax));
    kir_expr_t *ii = NULL;
    FL_TRY(ops_sg_val_elem(s, n->inputs[1], idx + ax, &ii));
    ii = kir_cast(a, FLAGOS_INT64, ii);
    kir_expr_t *d = x->dims[ax];
    ii = kir_select(a, kir_bin(a, KIR_LT, ii, kir_i64(a, 0)), kir_add(a, ii, d), ii);
    int r = 0;
    for (int i = 0; i < ax; i++) ix[r++] = idx[i];
    ix[r++] = ii;
    for (int i = ax + 1; i < x->rank; i++) ix[r++] = idx[i - 1 + iv->rank];
    kir_expr_t *e = NULL;
    FL_TRY(ops_sg_val_elem(s, xv, ix, &e));
    if (ii->kind != KIR_CONST) {
      /* An index from data may be out of range: give 0 rather than read outside. */
      kir_expr_t *in = kir_bin(a, KIR_AND, kir_bin(a, KIR_GE, ii, kir_i64(a, 0)), kir_bin(a, KIR_LT, ii, d));
      e = kir_select(a, in, e, zero_of(a, e->dtype));
    }
    return *out = e, NULL;
  }
  if (strcmp(op, "Range") == 0) {
    kir_expr_t *st = NULL, *dl = NULL;
    FL_TRY(ops_sg_val_elem(s, n->inputs[0], NULL, &st));
    FL_TRY(ops_sg_val_elem(s, n->inputs[2], NULL, &dl));
    return *out = kir_bin(a, KIR_ADD, st, kir_bin(a, KIR_MUL, kir_cast(a, o->dt, idx[0]), dl)), NULL;
  }
  if (strcmp(op, "Reshape") == 0) {
    /* When only size-1 dims are added or removed, the index maps directly. */
    int nx = 0, no = 0, px[OPS_MAX_RANK], po[OPS_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
      if (!is_one(x->dims[i])) px[nx++] = i;
    for (int i = 0; i < o->rank; i++)
      if (!is_one(o->dims[i])) po[no++] = i;
    bool direct = nx == no;
    for (int i = 0; direct && i < nx; i++) direct = same_dim(x->dims[px[i]], o->dims[po[i]]);
    if (direct) {
      for (int i = 0; i < x->rank; i++) ix[i] = kir_i64(a, 0);
      for (int i = 0; i < nx; i++) ix[px[i]] = idx[po[i]];
    } else {
      unflatten(s, flat_index(s, o->rank, o->dims, idx), x->rank, x->dims, ix);
    }
    return ops_sg_val_elem(s, xv, ix, out);
  }
  if (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0) {
    /* Walk both shapes: dims of x appear in order in o, 1s are added or dropped. */
    int64_t axes[OPS_MAX_RANK];
    int na = -1;
    FL_TRY(axes_of(s, n, 1, 13, axes, &na));
    bool un = op[0] == 'U', mark[OPS_MAX_RANK] = {false};
    int big = un ? o->rank : x->rank;
    for (int i = 0; i < na; i++) {
      int ax = 0;
      FL_TRY(norm_axis(s, n, axes[i], big, &ax));
      mark[ax] = true;
    }
    if (!un && na < 0)
      for (int i = 0; i < x->rank; i++) mark[i] = is_one(x->dims[i]);
    for (int i = 0, j = 0; i < big; i++) {
      if (un) {
        if (!mark[i]) ix[j++] = idx[i];
      } else {
        ix[i] = mark[i] ? kir_i64(a, 0) : idx[j++];
      }
    }
    return ops_sg_val_elem(s, xv, ix, out);
  }
  if (strcmp(op, "Expand") == 0) return ops_sg_val_elem(s, xv, ops_sg_bcast_idx(s, x, o->rank, idx), out);
  if (strcmp(op, "Concat") == 0) {
    int ax = 0;
    FL_TRY(norm_axis(s, n, fir_attr_int(n, "axis", 0), x->rank, &ax));
    kir_expr_t *offs[64] = {NULL}, *parts[64] = {NULL};
    int np = n->n_inputs;
    if (np < 1 || np > 64) return UNSUP(n, "Concat of %d inputs", np);
    kir_expr_t *off = kir_i64(a, 0);
    for (int i = 0; i < np; i++) {
      const sg_val_t *y = NULL;
      FL_TRY(ops_sg_val_info(s, n->inputs[i], &y));
      for (int d = 0; d < o->rank; d++) ix[d] = d == ax ? kir_sub(a, idx[d], off) : idx[d];
      FL_TRY(ops_sg_val_elem(s, n->inputs[i], ix, &parts[i]));
      offs[i] = off;
      off = kir_add(a, off, y->dims[ax]);
    }
    kir_expr_t *e = parts[np - 1];
    for (int i = np - 2; i >= 0; i--) e = kir_select(a, kir_bin(a, KIR_LT, idx[ax], offs[i + 1]), parts[i], e);
    return *out = e, NULL;
  }
  if (strcmp(op, "Transpose") == 0) {
    const int64_t *perm;
    int np = fir_attr_ints(n, "perm", &perm);
    for (int i = 0; i < x->rank; i++) ix[np >= 0 ? perm[i] : x->rank - 1 - i] = idx[i];
    return ops_sg_val_elem(s, xv, ix, out);
  }
  if (strcmp(op, "Slice") == 0) {
    sg_slice_t p;
    FL_TRY(slice_params(s, n, x, &p));
    for (int i = 0; i < x->rank; i++)
      ix[i] = p.sliced[i] ? kir_add(a, kir_i64(a, p.start[i]), kir_mul(a, idx[i], kir_i64(a, p.step[i]))) : idx[i];
    return ops_sg_val_elem(s, xv, ix, out);
  }
  if (strcmp(op, "ConstantOfShape") == 0) {
    const fir_attr_t *va = fir_node_attr(n, "value");
    if (va && va->kind == FIR_ATTR_TENSOR && va->t && va->t->numel >= 1 && va->t->data)
      return *out = mk_const(a, va->t->dtype, va->t->data, 0), NULL;
    return *out = kir_const(a, FLAGOS_FLOAT32, 0.0), NULL;
  }
  return UNSUP(n, "this operator cannot be inlined into a kernel expression");
}

flagos_status_t ops_sg_val_elem(sg_t *s, const fir_value_t *v, kir_expr_t *const *idx, kir_expr_t **out) {
  const sg_val_t *vi = NULL;
  FL_TRY(ops_sg_val_info(s, v, &vi));
  for (int i = 0; i < s->n_memo; i++) {
    const sg_memo_t *m = &s->memo[i];
    if (m->v != v) continue;
    bool same = true;
    for (int j = 0; j < vi->rank && same; j++) same = m->idx[j] == idx[j];
    if (same) return *out = m->e, NULL;
  }
  if (--s->budget < 0) return UNSUP(NULL, "the subgraph is too large to inline");
  kir_expr_t *e = NULL;
  int gi = -1;
  for (int i = 0; i < s->g->n_inputs; i++)
    if (s->g->inputs[i] == v) gi = i;
  if (gi >= 0) {
    e = s->ins[gi].elem(s->ins[gi].user, gi, idx);
  } else if (v->init) {
    sg_const_t c;
    bool ok;
    const_of_tensor(v->init, &c);
    e = const_elem(s, &c, idx, &ok);
    if (!ok)
      return UNSUP(NULL, "constant '%s' of %lld elements indexed by position is too large", v->name,
                   (long long)c.numel);
  } else {
    FL_TRY(node_elem(s, v->producer, vi, idx, &e));
  }
  if (e->dtype != vi->dt) {
    /* A producer's rule that computed in another type (e.g. Shape's dims) gives the declared one. */
    e = kir_cast(s->a, vi->dt, e);
  }
  if (s->n_memo == s->cap_memo) {
    int nc = s->cap_memo ? s->cap_memo * 2 : 32;
    sg_memo_t *nm = fl_arena_alloc(s->a, sizeof(*nm) * (size_t)nc);
    if (s->n_memo) memcpy(nm, s->memo, sizeof(*nm) * (size_t)s->n_memo);
    s->memo = nm;
    s->cap_memo = nc;
  }
  sg_memo_t *m = &s->memo[s->n_memo++];
  m->v = v;
  for (int j = 0; j < vi->rank; j++) m->idx[j] = idx[j];
  m->e = e;
  return *out = e, NULL;
}

flagos_status_t ops_sg_inline(ops_ctx_t *c, const fir_graph_t *g, const char *what, int n_in, const ops_sg_input_t *ins,
                              int out, int rank, kir_expr_t *const *idx, flagos_dtype_t want, kir_expr_t **res) {
  sg_t s = {.c = c, .a = c->arena, .g = g, .what = what, .n_in = n_in, .ins = ins, .budget = SG_BUDGET};
  if (g->n_inputs != n_in)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "subgraph '%s' takes %d inputs, expected %d", what, g->n_inputs,
                   n_in);
  if (out < 0 || out >= g->n_outputs)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "subgraph '%s' has no output %d", what, out);
  const fir_value_t *ov = g->outputs[out];
  const sg_val_t *oi = NULL;
  FL_TRY(ops_sg_val_info(&s, ov, &oi));
  if (oi->rank > rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "subgraph '%s': output '%s' has rank %d, more than %d", what, ov->name,
                   oi->rank, rank);
  kir_expr_t *e = NULL;
  FL_TRY(ops_sg_val_elem(&s, ov, ops_sg_bcast_idx(&s, oi, rank, idx), &e));
  if (e->dtype != want) {
    if (e->dtype == FLAGOS_BOOL || want == FLAGOS_BOOL)
      return ops_err(c, FLAGOS_ERR_SHAPE, "subgraph '%s': output '%s' is %s, expected %s", what, ov->name,
                     flagos_dtype_name(e->dtype), flagos_dtype_name(want));
    e = kir_cast(c->arena, want, e);
  }
  *res = e;
  return NULL;
}
