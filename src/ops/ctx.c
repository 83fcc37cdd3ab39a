/* Driving an operator's shape rule: the same code path at compile time (partial
 * knowledge) and at run time (concrete shapes), so the symbol layout the lowering
 * assumed is the one the runtime fills. */
#include <string.h>

#include "ops/ops.h"

void ops_ctx_init(ops_ctx_t *c, fl_arena_t *a, const fir_node_t *n, ops_tensor_info_t *in, ops_tensor_info_t *out,
                  bool runtime) {
  memset(c, 0, sizeof(*c));
  c->arena = a;
  c->node = n;
  c->opset = n->opset;
  c->runtime = runtime;
  c->n_in = n->n_inputs;
  c->in = in;
  c->n_out = n->n_outputs;
  c->out = out;
  for (int k = 0; k < n->n_outputs; k++) {
    memset(&out[k], 0, sizeof(out[k]));
    out[k].rank = -1;
    out[k].numel = -1;
  }
}

void ops_info_from_value(ops_tensor_info_t *t, const fir_value_t *v) {
  memset(t, 0, sizeof(*t));
  t->rank = -1;
  t->numel = -1;
  if (!v) return;
  t->present = true;
  const fir_type_t *ty = v->type;
  t->kind = ty->kind;
  if (ty->kind == FIR_TYPE_TENSOR) {
    t->dtype = ty->dtype;
    t->rank = ty->rank;
    int64_t n = ty->rank < 0 ? -1 : 1;
    for (int i = 0; i < ty->rank && i < OPS_MAX_RANK; i++) {
      t->dims[i] = ty->dims[i].value;
      if (t->dims[i] < 0) n = -1;
      else if (n >= 0) n *= t->dims[i];
    }
    t->numel = n;
  } else if ((ty->kind == FIR_TYPE_SEQUENCE || ty->kind == FIR_TYPE_OPTIONAL) && ty->elem) {
    const fir_type_t *e = ty->elem;
    t->elem_kind = e->kind;
    if (e->kind == FIR_TYPE_SEQUENCE && e->elem) e = e->elem; /* optional<sequence<tensor>> */
    t->dtype = e->dtype;
    t->rank = e->kind == FIR_TYPE_TENSOR && e->rank <= OPS_MAX_RANK ? e->rank : -1;
    for (int i = 0; i < t->rank; i++) t->dims[i] = e->dims[i].value;
  }
  if (v->init && v->init->data) {
    t->value = v->init->data;
    t->kind = FIR_TYPE_TENSOR;
    t->dtype = v->init->dtype;
    t->rank = v->init->rank;
    for (int i = 0; i < t->rank && i < OPS_MAX_RANK; i++) t->dims[i] = v->init->dims[i];
    t->numel = v->init->numel;
  }
}

flagos_status_t ops_ctx_infer(ops_ctx_t *c, const ops_def_t *d) {
  for (int k = 0; k < c->n_in; k++)
    if (c->in[k].present && c->in[k].rank > OPS_MAX_RANK)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d has rank %d (at most %d supported)", k, c->in[k].rank, OPS_MAX_RANK);
  c->n_params = 0;
  FL_TRY(d->infer(c));
  int slot = 0;
  bool known = true;
  for (int k = 0; k < c->n_in; k++) {
    ops_tensor_info_t *t = &c->in[k];
    t->sym_base = slot;
    if (!t->present || t->kind != FIR_TYPE_TENSOR) continue;
    if (t->rank < 0) {
      known = false;
      continue;
    }
    slot += t->rank;
    for (int i = 0; i < t->rank; i++)
      if (t->dims[i] < 0) known = false;
    if ((d->value_inputs >> k & 1) && !t->value && k < 64) known = false;
  }
  for (int k = 0; k < c->n_out; k++) {
    ops_tensor_info_t *t = &c->out[k];
    t->sym_base = slot;
    if (!t->present || t->kind != FIR_TYPE_TENSOR) continue;
    if (t->rank < 0) {
      if (c->runtime) return ops_err(c, FLAGOS_ERR_INTERNAL, "output %d has no rank after shape inference", k);
      known = false;
      continue;
    }
    if (t->rank > OPS_MAX_RANK)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output %d has rank %d (at most %d supported)", k, t->rank, OPS_MAX_RANK);
    slot += t->rank;
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
      if (t->dims[i] < 0) {
        known = false;
        n = -1;
      } else if (n >= 0) {
        n *= t->dims[i];
      }
    }
    t->numel = n;
  }
  c->param_base = slot;
  c->n_syms = slot + c->n_params;
  c->is_static = known;
  return NULL;
}

void ops_ctx_fill_syms(const ops_ctx_t *c, int64_t *syms) {
  for (int k = 0; k < c->n_in; k++) {
    const ops_tensor_info_t *t = &c->in[k];
    if (!t->present || t->kind != FIR_TYPE_TENSOR) continue;
    for (int i = 0; i < t->rank; i++) syms[t->sym_base + i] = t->dims[i];
  }
  for (int k = 0; k < c->n_out; k++) {
    const ops_tensor_info_t *t = &c->out[k];
    if (!t->present || t->kind != FIR_TYPE_TENSOR) continue;
    for (int i = 0; i < t->rank; i++) syms[t->sym_base + i] = t->dims[i];
  }
  for (int i = 0; i < c->n_params; i++) syms[c->param_base + i] = c->params[i];
}
