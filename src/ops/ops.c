/* Helpers every operator uses for its shape rule and its lowering. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops/ops.h"

flagos_status_t ops_err(const ops_ctx_t *c, flagos_code_t code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const fir_node_t *n = c->node;
  return flagos_status_new(code, "%s node '%s': %s", n ? n->op_type : "?", n && n->name ? n->name : "", msg);
}

void ops_set_out(ops_ctx_t *c, int k, flagos_dtype_t dt, int rank, const int64_t *dims) {
  ops_tensor_info_t *o = &c->out[k];
  o->present = true;
  o->kind = FIR_TYPE_TENSOR;
  o->dtype = dt;
  o->rank = rank;
  int64_t n = 1;
  for (int i = 0; i < rank && i < OPS_MAX_RANK; i++) {
    o->dims[i] = dims ? dims[i] : -1;
    if (o->dims[i] < 0) n = -1;
    else if (n >= 0) n *= o->dims[i];
  }
  o->numel = rank < 0 ? -1 : n;
}

flagos_status_t ops_broadcast_shape(ops_ctx_t *c, int first, int n, int *rank, int64_t *dims) {
  int r = 0;
  for (int k = first; k < first + n; k++) {
    if (!ops_has_in(c, k)) continue;
    if (c->in[k].rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d has unknown rank", k);
    if (c->in[k].rank > r) r = c->in[k].rank;
  }
  for (int i = 0; i < r; i++) dims[i] = 1;
  for (int k = first; k < first + n; k++) {
    if (!ops_has_in(c, k)) continue;
    const ops_tensor_info_t *t = &c->in[k];
    int off = r - t->rank;
    for (int j = 0; j < t->rank; j++) {
      int64_t d = t->dims[j], *o = &dims[off + j];
      if (d == 1) continue;
      if (d < 0) {
        if (*o == 1) *o = -1;
        continue;
      }
      if (*o == 1 || *o < 0) *o = d;
      else if (*o != d)
        return ops_err(c, FLAGOS_ERR_SHAPE, "cannot broadcast dimension %d: %lld against %lld", off + j, (long long)*o,
                       (long long)d);
    }
  }
  *rank = r;
  return NULL;
}

int64_t ops_in_int(const ops_ctx_t *c, int k, int64_t i) {
  return fl_load_as_int64(c->in[k].dtype, c->in[k].value, (size_t)i);
}

double ops_in_float(const ops_ctx_t *c, int k, int64_t i) {
  return fl_load_as_double(c->in[k].dtype, c->in[k].value, (size_t)i);
}

flagos_status_t ops_axis(const ops_ctx_t *c, int64_t axis, int rank, int *out) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= (rank > 0 ? rank : 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %lld is out of range for rank %d", (long long)axis, rank);
  *out = (int)a;
  return NULL;
}

bool ops_has_in(const ops_ctx_t *c, int k) { return k >= 0 && k < c->n_in && c->in[k].present; }

/* ---- lowering ---- */
kir_kernel_t *ops_kernel(ops_ctx_t *c, const char *suffix) {
  if (c->n_steps == c->cap_steps) {
    int nc = c->cap_steps ? c->cap_steps * 2 : 4;
    ops_step_t *s = fl_arena_alloc(c->arena, sizeof(*s) * (size_t)nc);
    if (c->n_steps) memcpy(s, c->steps, sizeof(*s) * (size_t)c->n_steps);
    c->steps = s;
    c->cap_steps = nc;
  }
  char name[160];
  snprintf(name, sizeof name, "%s_%s", c->kernel_prefix ? c->kernel_prefix : "k", suffix ? suffix : "main");
  for (char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) *p = '_';
  /* Two kernels of one node must not share a name. */
  for (int i = 0; i < c->n_steps; i++)
    if (strcmp(c->steps[i].kernel->name, name) == 0) {
      size_t l = strlen(name);
      snprintf(name + l, sizeof name - l, "_%d", c->n_steps);
      break;
    }
  kir_kernel_t *k = kir_kernel_create(c->arena, name);
  k->n_syms = c->n_syms;
  ops_step_t *s = &c->steps[c->n_steps++];
  s->kernel = k;
  s->binds = NULL;
  return k;
}

static ops_step_t *step_of(ops_ctx_t *c, kir_kernel_t *kk) {
  for (int i = c->n_steps - 1; i >= 0; i--)
    if (c->steps[i].kernel == kk) return &c->steps[i];
  return NULL;
}

static int add_bound_buf(ops_ctx_t *c, kir_kernel_t *kk, ops_bind_kind_t kind, int index, const char *name,
                         flagos_dtype_t dt, int rank, kir_expr_t **dims) {
  int b = kir_add_buf(kk, name, dt, rank, dims);
  ops_step_t *s = step_of(c, kk);
  /* binds grows with the kernel's buffers; kernels rarely have more than a handful. */
  ops_bind_t *nb = fl_arena_alloc(c->arena, sizeof(*nb) * (size_t)(b + 1));
  if (b) memcpy(nb, s->binds, sizeof(*nb) * (size_t)b);
  nb[b].kind = kind;
  nb[b].index = index;
  s->binds = nb;
  return b;
}

int ops_buf_in(ops_ctx_t *c, kir_kernel_t *kk, int k) {
  const ops_tensor_info_t *t = &c->in[k];
  kir_expr_t *dims[OPS_MAX_RANK];
  for (int d = 0; d < t->rank; d++) dims[d] = ops_in_dim(c, k, d);
  char name[16];
  snprintf(name, sizeof name, "in%d", k);
  return add_bound_buf(c, kk, OPS_BIND_INPUT, k, name, t->dtype, t->rank, dims);
}

int ops_buf_out(ops_ctx_t *c, kir_kernel_t *kk, int k) {
  const ops_tensor_info_t *t = &c->out[k];
  kir_expr_t *dims[OPS_MAX_RANK];
  for (int d = 0; d < t->rank; d++) dims[d] = ops_out_dim(c, k, d);
  char name[16];
  snprintf(name, sizeof name, "out%d", k);
  return add_bound_buf(c, kk, OPS_BIND_OUTPUT, k, name, t->dtype, t->rank, dims);
}

int ops_temp(ops_ctx_t *c, flagos_dtype_t dt, int rank, kir_expr_t *const *dims) {
  if (c->n_temps == c->cap_temps) {
    int nc = c->cap_temps ? c->cap_temps * 2 : 4;
    ops_temp_t *t = fl_arena_alloc(c->arena, sizeof(*t) * (size_t)nc);
    if (c->n_temps) memcpy(t, c->temps, sizeof(*t) * (size_t)c->n_temps);
    c->temps = t;
    c->cap_temps = nc;
  }
  ops_temp_t *t = &c->temps[c->n_temps];
  t->dtype = dt;
  t->rank = rank;
  t->dims = fl_arena_alloc(c->arena, sizeof(*t->dims) * (size_t)(rank > 0 ? rank : 1));
  kir_expr_t *n = kir_i64(c->arena, 1);
  for (int i = 0; i < rank; i++) {
    t->dims[i] = dims[i];
    n = kir_mul(c->arena, n, dims[i]);
  }
  t->numel = n;
  return c->n_temps++;
}

kir_expr_t *ops_temp_dim(ops_ctx_t *c, int t, int d) { return c->temps[t].dims[d]; }

int ops_buf_temp(ops_ctx_t *c, kir_kernel_t *kk, int t) {
  const ops_temp_t *tp = &c->temps[t];
  char name[16];
  snprintf(name, sizeof name, "t%d", t);
  return add_bound_buf(c, kk, OPS_BIND_TEMP, t, name, tp->dtype, tp->rank, tp->dims);
}

int ops_buf_view(ops_ctx_t *c, kir_kernel_t *kk, ops_bind_kind_t kind, int k, int rank, kir_expr_t *const *dims) {
  flagos_dtype_t dt = kind == OPS_BIND_INPUT ? c->in[k].dtype : kind == OPS_BIND_OUTPUT ? c->out[k].dtype : c->temps[k].dtype;
  char name[16];
  snprintf(name, sizeof name, "%s%d", kind == OPS_BIND_INPUT ? "in" : kind == OPS_BIND_OUTPUT ? "out" : "t", k);
  return add_bound_buf(c, kk, kind, k, name, dt, rank, (kir_expr_t **)dims);
}

kir_expr_t *ops_in_dim(ops_ctx_t *c, int k, int d) {
  const ops_tensor_info_t *t = &c->in[k];
  if (t->dims[d] >= 0) return kir_i64(c->arena, t->dims[d]);
  return kir_sym(c->arena, t->sym_base + d);
}

kir_expr_t *ops_out_dim(ops_ctx_t *c, int k, int d) {
  const ops_tensor_info_t *t = &c->out[k];
  if (t->dims[d] >= 0) return kir_i64(c->arena, t->dims[d]);
  return kir_sym(c->arena, t->sym_base + d);
}

kir_expr_t *ops_param(ops_ctx_t *c, int i) {
  if (c->is_static) return kir_i64(c->arena, c->params[i]);
  return kir_sym(c->arena, c->param_base + i);
}

kir_kernel_t *ops_out_kernel(ops_ctx_t *c, int k, const char *suffix, kir_expr_t **vars) {
  kir_kernel_t *kk = ops_kernel(c, suffix);
  int ob = ops_buf_out(c, kk, k);
  kir_set_space(kk, kk->bufs[ob].rank, kk->bufs[ob].dims, vars);
  return kk;
}

kir_expr_t *ops_load_bcast(ops_ctx_t *c, kir_kernel_t *kk, int buf, int k, int rank, kir_expr_t *const *vars) {
  const kir_buf_t *b = &kk->bufs[buf];
  kir_expr_t *idx[OPS_MAX_RANK];
  int off = rank - b->rank;
  for (int j = 0; j < b->rank; j++) {
    kir_expr_t *dim = b->dims[j], *v = vars[off + j];
    if (kir_is_const(dim, 1)) idx[j] = kir_i64(c->arena, 0);
    else if (dim->kind == KIR_CONST) idx[j] = v;
    else idx[j] = kir_select(c->arena, kir_bin(c->arena, KIR_EQ, dim, kir_i64(c->arena, 1)), kir_i64(c->arena, 0), v);
  }
  (void)k;
  return kir_load(kk, buf, idx);
}
