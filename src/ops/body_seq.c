/* The body of a fused node run node by node (body_seq.h). */
#include <stdlib.h>
#include <string.h>

#include "ops/body_seq.h"
#include "ops/inlined_int.h"

#define AR (c->arena)

static int input_index(const fir_graph_t *b, const fir_value_t *v) {
  for (int k = 0; k < b->n_inputs; k++)
    if (b->inputs[k] == v) return k;
  return -1;
}

static int output_index(const fir_graph_t *b, const fir_value_t *v) {
  for (int k = 0; k < b->n_outputs; k++)
    if (b->outputs[k] == v) return k;
  return -1;
}

/* The context of the body node that produces v and its output index. */
static const ops_tensor_info_t *produced(const ops_seq_t *s, const fir_graph_t *b, const fir_value_t *v, int upto) {
  for (int i = 0; i < upto; i++)
    for (int o = 0; o < b->nodes[i]->n_outputs; o++)
      if (b->nodes[i]->outputs[o] == v) return &s->sub[i]->out[o];
  return NULL;
}

/* Infers b's nodes in order (each static, with a lowering that runs on the device). */
static flagos_status_t seq_infer(ops_ctx_t *c, const fir_graph_t *b, ops_seq_t *s) {
  s->n = b->n_nodes;
  s->sub = fl_arena_alloc(AR, sizeof(*s->sub) * (size_t)s->n);
  s->def = fl_arena_alloc(AR, sizeof(*s->def) * (size_t)s->n);
  for (int i = 0; i < s->n; i++) {
    const fir_node_t *bn = b->nodes[i];
    const ops_def_t *d = ops_find(bn->op_type, bn->domain);
    if (!d || !d->lower || d->host)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "%s '%s' cannot be part of a fused %s", bn->op_type, bn->name,
                     c->node->op_type);
    ops_tensor_info_t *in = fl_arena_alloc(AR, sizeof(*in) * (size_t)(bn->n_inputs + 1));
    ops_tensor_info_t *out = fl_arena_alloc(AR, sizeof(*out) * (size_t)(bn->n_outputs + 1));
    for (int j = 0; j < bn->n_inputs; j++) {
      const fir_value_t *v = bn->inputs[j];
      int k = v ? input_index(b, v) : -1;
      const ops_tensor_info_t *t = v && k < 0 ? produced(s, b, v, i) : NULL;
      if (!v) ops_info_from_value(&in[j], NULL);
      else if (k >= 0) in[j] = c->in[k];
      else if (t) in[j] = *t;
      else
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "'%s' reads '%s', which neither the node nor the body gives",
                       bn->name, v->name);
    }
    /* the inputs whose values decide its shapes (a Reshape's shape, a Split's sizes) are constants */
    for (int j = 0; j < bn->n_inputs && j < 64; j++)
      if ((d->value_inputs >> j & 1) && in[j].present && !in[j].value)
        return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "%s '%s' in a fused %s needs input %d known at compile time",
                       bn->op_type, bn->name, c->node->op_type, j);
    ops_ctx_t *sc = fl_arena_alloc(AR, sizeof(*sc));
    ops_ctx_init(sc, AR, bn, in, out, c->runtime);
    flagos_status_t st = ops_ctx_infer(sc, d);
    if (st) return flagos_status_wrap(st, "in the body of %s node '%s'", c->node->op_type, c->node->name);
    if (!sc->is_static)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "%s '%s' does not have static shapes", bn->op_type, bn->name);
    s->sub[i] = sc;
    s->def[i] = d;
  }
  return NULL;
}

/* Where the body's values live in the node: the inputs, the outputs, and a
 * temporary for each value one body node hands the next. */
static flagos_status_t seq_place(ops_ctx_t *c, const fir_graph_t *b, ops_seq_t *s) {
  s->where = fl_arena_alloc(AR, sizeof(*s->where) * (size_t)(b->n_values + 1));
  for (int i = 0; i < b->n_values; i++) s->where[i].index = -1;
  for (int k = 0; k < b->n_inputs; k++) s->where[b->inputs[k]->id] = (ops_bind_t){OPS_BIND_INPUT, k};
  s->alias = fl_arena_alloc(AR, sizeof(bool) * (size_t)(s->n + 1));
  for (int i = 0; i < s->n; i++) {
    const fir_node_t *bn = b->nodes[i];
    if (fir_node_is_view(bn) && bn->n_outputs == 1 && bn->outputs[0] && output_index(b, bn->outputs[0]) < 0 &&
        bn->n_inputs >= 1 && bn->inputs[0] && s->where[bn->inputs[0]->id].index >= 0) {
      s->alias[i] = true;
      s->where[bn->outputs[0]->id] = s->where[bn->inputs[0]->id];
      continue;
    }
    for (int o = 0; o < bn->n_outputs; o++) {
      const fir_value_t *v = b->nodes[i]->outputs[o];
      if (!v) continue;
      int k = 0;
      while (k < b->n_outputs && b->outputs[k] != v) k++;
      if (k < b->n_outputs) {
        s->where[v->id] = (ops_bind_t){OPS_BIND_OUTPUT, k};
        continue;
      }
      const ops_tensor_info_t *t = &s->sub[i]->out[o];
      kir_expr_t *dims[OPS_MAX_RANK];
      for (int d = 0; d < t->rank; d++) dims[d] = kir_i64(AR, t->dims[d]);
      s->where[v->id] = (ops_bind_t){OPS_BIND_TEMP, ops_temp(c, t->dtype, t->rank, dims)};
    }
  }
  return NULL;
}

/* Body node i lowered, its kernels appended to c's steps with their buffers
 * bound to where the body's values live. */
static flagos_status_t seq_lower_one(ops_ctx_t *c, const fir_graph_t *b, ops_seq_t *s, int i) {
  ops_ctx_t *sc = s->sub[i];
  const fir_node_t *bn = b->nodes[i];
  if (s->alias[i]) return NULL; /* a view: its output is its input's bytes */
  sc->kernel_prefix = fl_arena_printf(AR, "%s_%d", c->kernel_prefix ? c->kernel_prefix : "k", i);
  FL_TRY(s->def[i]->lower(sc));
  int *tmap = fl_arena_alloc(AR, sizeof(int) * (size_t)(sc->n_temps + 1));
  for (int t = 0; t < sc->n_temps; t++) {
    int64_t ne;
    if (!kir_eval_int(sc->temps[t].numel, NULL, 0, &ne))
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "a temporary of '%s' has no static size", bn->name);
    tmap[t] = ops_temp(c, sc->temps[t].dtype, sc->temps[t].rank, sc->temps[t].dims);
  }
  for (int k = 0; k < sc->n_steps; k++) {
    const ops_step_t *st = &sc->steps[k];
    kir_kernel_t *kk = st->kernel;
    /* the kernel joins the node's symbol array: it must read none of its own */
    scan_t scan = {.buf = -1};
    ops_inl_scan_kernel(kk, &scan);
    if (scan.syms)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "kernel %s of '%s' reads runtime symbols", kk->name, bn->name);
    ops_bind_t *binds = fl_arena_alloc(AR, sizeof(*binds) * (size_t)(kk->n_bufs + 1));
    for (int j = 0; j < kk->n_bufs; j++) {
      ops_bind_t bd = st->binds[j];
      const fir_value_t *v = bd.kind == OPS_BIND_INPUT ? bn->inputs[bd.index] : bd.kind == OPS_BIND_OUTPUT ? bn->outputs[bd.index] : NULL;
      binds[j] = bd.kind == OPS_BIND_TEMP ? (ops_bind_t){OPS_BIND_TEMP, tmap[bd.index]} : v ? s->where[v->id] : (ops_bind_t){OPS_BIND_TEMP, -1};
      if (binds[j].index < 0)
        return ops_err(c, FLAGOS_ERR_INTERNAL, "buffer %d of kernel %s has no place in the fused node", j, kk->name);
    }
    /* The node's own step, holding the body's kernel (its name, under the sub-prefix, unique in the node). */
    ops_kernel(c, NULL);
    kk->n_syms = c->n_syms;
    c->steps[c->n_steps - 1].kernel = kk;
    c->steps[c->n_steps - 1].binds = binds;
  }
  return NULL;
}

/* What a body value is in the node n whose body b holds it: the node's input
 * for a body input, else itself. */
const fir_value_t *ops_seq_outer(const fir_graph_t *b, const fir_node_t *n, const fir_value_t *v) {
  for (int k = 0; k < b->n_inputs && k < n->n_inputs; k++)
    if (b->inputs[k] == v) return n->inputs[k];
  return v;
}

double ops_seq_flops(const ops_ctx_t *c) {
  const fir_graph_t *b = ops_fused_body(c->node);
  if (!b) return -1;
  ops_ctx_t tmp = *c; /* seq_infer only reads the node and its inputs */
  ops_seq_t s;
  flagos_status_t st = seq_infer(&tmp, b, &s);
  if (st) {
    flagos_status_free(st);
    return -1;
  }
  double sum = 0;
  for (int i = 0; i < s.n; i++) {
    double f = ops_node_flops(s.def[i], s.sub[i]);
    if (f < 0) return -1;
    sum += f;
  }
  return sum;
}

flagos_status_t ops_seq_infer_outputs(ops_ctx_t *c, const fir_graph_t *b) {
  ops_seq_t s;
  FL_TRY(seq_infer(c, b, &s));
  for (int k = 0; k < b->n_outputs; k++) {
    const ops_tensor_info_t *t = produced(&s, b, b->outputs[k], s.n);
    if (!t || !t->present || t->kind != FIR_TYPE_TENSOR)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the body's output %d is not a tensor its nodes produce", k);
    ops_set_out(c, k, t->dtype, t->rank, t->dims);
  }
  return NULL;
}

const char *ops_seq_trial(fl_arena_t *a, const fir_node_t *n, ops_seq_lower_fn lower) {
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * (size_t)(n->n_outputs + 1));
  for (int k = 0; k < n->n_inputs; k++) ops_info_from_value(&in[k], n->inputs[k]);
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  ops_ctx_init(c, a, n, in, out, false);
  c->kernel_prefix = "trial";
  const char *why_not = NULL;
  flagos_status_t st = ops_ctx_infer(c, ops_find(n->op_type, n->domain));
  if (!st) st = lower(c, &why_not);
  if (st) {
    why_not = fl_arena_strdup(a, flagos_status_message(st));
    flagos_status_free(st);
  }
  return why_not;
}

flagos_status_t ops_seq_lower_all(ops_ctx_t *c, const fir_graph_t *b, ops_seq_t *s, int *first) {
  FL_TRY(seq_infer(c, b, s));
  FL_TRY(seq_place(c, b, s));
  for (int i = 0; i < b->n_nodes; i++) {
    first[i] = c->n_steps;
    FL_TRY(seq_lower_one(c, b, s, i));
  }
  first[b->n_nodes] = c->n_steps;
  return NULL;
}

void ops_seq_call_first(ops_ctx_t *c, kir_libcall_t *product_call, int at, int end) {
  ops_step_t call = c->steps[c->n_steps - 1];
  call.kernel->libcall->ends_node = true;
  if (product_call && product_call->ends_node) {
    product_call->ends_node = false;
    product_call->skip = end - at - 1;
  }
  memmove(&c->steps[1], &c->steps[0], sizeof(call) * (size_t)(c->n_steps - 1));
  c->steps[0] = call;
}

bool ops_seq_call_on(const char *env) {
  const char *e = getenv(env);
  return !(e && strcmp(e, "0") == 0);
}
