/* FusedElementwise (domain ai.flagos): a group of pointwise nodes that the
 * elementwise fusion pass (src/passes/fuse.c) replaced by one node. Its `body`
 * graph holds the original nodes; its inputs and outputs are the node's. The
 * shape rule runs each body node's own rule; the lowering is one kernel over the
 * output shape that loads every input broadcast onto it and builds each body
 * node's element with that node's own lowering run in capture mode
 * (ops_ew_lower_map returns the expression instead of making a kernel), so a
 * fused node computes exactly what its nodes computed, without the round trips
 * through memory and the launches between them. */
#include <string.h>

#include "ops/fused.h"

const fir_graph_t *ops_fused_body(const fir_node_t *n) {
  const fir_attr_t *a = fir_node_attr(n, OPS_FUSED_BODY);
  return a && a->kind == FIR_ATTR_GRAPH ? a->g : NULL;
}

/* Runs the body's nodes in order: their shape rules always (info, one entry per
 * body value), their lowerings in capture mode when ex is given (ex holds the
 * body inputs' element expressions and receives every node's), and their FLOP
 * counts when flops is given (-1 when one is unknown). */
static flagos_status_t run_body(ops_ctx_t *c, kir_expr_t **ex, double *flops, ops_tensor_info_t **info_out) {
  const fir_graph_t *b = ops_fused_body(c->node);
  if (!b) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs a graph attribute '%s'", OPS_FUSED_BODY);
  if (b->n_inputs != c->n_in || b->n_outputs != c->n_out)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "body has %d inputs and %d outputs, the node %d and %d", b->n_inputs,
                   b->n_outputs, c->n_in, c->n_out);
  ops_tensor_info_t *info = fl_arena_alloc(c->arena, sizeof(*info) * (size_t)(b->n_values + 1));
  for (int k = 0; k < c->n_in; k++) {
    if (!ops_has_in(c, k) || c->in[k].kind != FIR_TYPE_TENSOR || c->in[k].rank < 0)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input %d must be a tensor of known rank", k);
    info[b->inputs[k]->id] = c->in[k];
  }
  if (flops) *flops = 0;
  for (int i = 0; i < b->n_nodes; i++) {
    const fir_node_t *bn = b->nodes[i];
    const ops_def_t *d = ops_find(bn->op_type, bn->domain);
    if (!d || !d->lower || d->host || bn->n_outputs != 1 || !bn->outputs[0])
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "body node %s '%s' is not a pointwise operator", bn->op_type, bn->name);
    ops_tensor_info_t *in = fl_arena_alloc(c->arena, sizeof(*in) * (size_t)(bn->n_inputs + 1));
    ops_tensor_info_t *out = fl_arena_alloc(c->arena, sizeof(*out) * 2);
    kir_expr_t **xin = fl_arena_alloc(c->arena, sizeof(*xin) * (size_t)(bn->n_inputs + 1));
    for (int j = 0; j < bn->n_inputs; j++) {
      const fir_value_t *v = bn->inputs[j];
      if (!v) continue;
      if (v->graph != b || !info[v->id].present)
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "body node '%s' reads '%s', which the body does not define", bn->name,
                       v->name);
      in[j] = info[v->id];
      if (ex) xin[j] = ex[v->id];
    }
    ops_ctx_t *sc = fl_arena_alloc(c->arena, sizeof(*sc));
    ops_ctx_init(sc, c->arena, bn, in, out, c->runtime);
    flagos_status_t st = ops_ctx_infer(sc, d);
    if (st) return flagos_status_wrap(st, "in the body of %s node '%s'", c->node->op_type, c->node->name);
    if (flops && *flops >= 0) {
      double f = ops_node_flops(d, sc);
      *flops = f < 0 ? -1 : *flops + f;
    }
    if (ex) {
      sc->capture_in = xin;
      sc->kernel_prefix = c->kernel_prefix;
      FL_TRY(d->lower(sc));
      if (!sc->capture_out || sc->n_steps || sc->n_temps)
        return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "body node %s '%s' does not lower to one pointwise expression",
                       bn->op_type, bn->name);
      /* A separate node rounds its result to the output type at its store. */
      ex[bn->outputs[0]->id] = ops_stored_value(c->arena, sc->capture_out, out[0].dtype);
    }
    out[0].value = NULL;
    info[bn->outputs[0]->id] = out[0];
  }
  for (int k = 0; k < b->n_outputs; k++)
    if (b->outputs[k]->graph != b || !info[b->outputs[k]->id].present)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "body output '%s' is not defined by the body", b->outputs[k]->name);
  *info_out = info;
  return NULL;
}

kir_expr_t *ops_stored_value(fl_arena_t *a, kir_expr_t *e, flagos_dtype_t dt) {
  flagos_dtype_t cdt = kir_compute_dtype(dt);
  /* A narrow float is carried in f32 and rounded only at a cast to it, so the
   * round trip through f32 makes the rounding happen here too. */
  if (cdt != dt && flagos_dtype_is_float(dt) && !(e->kind == KIR_CAST && e->dtype == dt))
    return kir_cast(a, dt, kir_cast(a, cdt, e));
  return e->dtype != dt ? kir_cast(a, dt, e) : e;
}

static flagos_status_t infer_fused(ops_ctx_t *c) {
  ops_tensor_info_t *info;
  FL_TRY(run_body(c, NULL, NULL, &info));
  const fir_graph_t *b = ops_fused_body(c->node);
  for (int k = 0; k < c->n_out; k++) {
    const ops_tensor_info_t *t = &info[b->outputs[k]->id];
    if (t->kind != FIR_TYPE_TENSOR || t->rank != info[b->outputs[0]->id].rank)
      return ops_err(c, FLAGOS_ERR_SHAPE, "output %d does not have output 0's rank", k);
    ops_set_out(c, k, t->dtype, t->rank, t->dims);
    for (int d = 0; d < t->rank; d++)
      if (t->dims[d] != c->out[0].dims[d] || t->dims[d] < 0)
        return ops_err(c, FLAGOS_ERR_SHAPE, "output %d is not of output 0's static shape (dim %d)", k, d);
  }
  /* One kernel over the output shape loads each input broadcast onto it. */
  for (int k = 0; k < c->n_in; k++) {
    const ops_tensor_info_t *t = &c->in[k];
    int off = c->out[0].rank - t->rank;
    if (off < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has a higher rank than the outputs", k);
    for (int d = 0; d < t->rank; d++)
      if (t->dims[d] != 1 && t->dims[d] != c->out[0].dims[off + d])
        return ops_err(c, FLAGOS_ERR_SHAPE, "input %d does not broadcast to the outputs (dim %d)", k, d);
  }
  return NULL;
}

static flagos_status_t lower_fused(ops_ctx_t *c) {
  const fir_graph_t *b = ops_fused_body(c->node);
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "main", v);
  int r = c->out[0].rank;
  kir_expr_t **ex = fl_arena_alloc(c->arena, sizeof(*ex) * (size_t)(b->n_values + 1));
  for (int k = 0; k < c->n_in; k++) {
    int buf = ops_buf_in(c, kk, k);
    ex[b->inputs[k]->id] = ops_load_bcast(c, kk, buf, k, r, v);
  }
  ops_tensor_info_t *info;
  FL_TRY(run_body(c, ex, NULL, &info));
  for (int k = 0; k < c->n_out; k++) {
    int buf = k == 0 ? 0 : ops_buf_out(c, kk, k); /* ops_out_kernel bound output 0 first */
    kir_store(kk, buf, v, ex[b->outputs[k]->id], NULL);
  }
  return NULL;
}

static double flops_fused(const ops_ctx_t *c) {
  ops_ctx_t tmp = *c; /* run_body only reads the node and its inputs */
  ops_tensor_info_t *info;
  double f;
  flagos_status_t st = run_body(&tmp, NULL, &f, &info);
  if (st) {
    flagos_status_free(st);
    return -1;
  }
  return f;
}

bool ops_fused_can_fuse(fl_arena_t *a, const fir_node_t *n) {
  const ops_def_t *d = ops_find(n->op_type, n->domain);
  /* The runtime gives a fused node no input values, so no body rule may need one. */
  if (!d || !d->lower || d->host || d->value_inputs || n->n_outputs != 1 || !n->outputs[0]) return false;
  for (int i = 0; i < n->n_attrs; i++)
    if (n->attrs[i].kind == FIR_ATTR_GRAPH || n->attrs[i].kind == FIR_ATTR_GRAPHS) return false;
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * 2);
  for (int k = 0; k < n->n_inputs; k++) ops_info_from_value(&in[k], n->inputs[k]);
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  ops_ctx_init(c, a, n, in, out, false);
  flagos_status_t st = ops_ctx_infer(c, d);
  if (st) {
    flagos_status_free(st);
    return false;
  }
  if (!c->is_static) return false;
  /* Loads stand for the inputs: constants would let the expression builders
   * fold (and an integer division by a constant zero is no trial to run). */
  kir_kernel_t *k = kir_kernel_create(a, "trial");
  kir_expr_t **xin = fl_arena_alloc(a, sizeof(*xin) * (size_t)(n->n_inputs + 1));
  for (int j = 0; j < n->n_inputs; j++) {
    if (!in[j].present) continue;
    if (in[j].kind != FIR_TYPE_TENSOR) return false;
    xin[j] = kir_load(k, kir_add_buf(k, "x", in[j].dtype, 0, NULL), NULL);
  }
  c->capture_in = xin;
  c->kernel_prefix = "trial";
  st = d->lower(c);
  if (st) {
    flagos_status_free(st);
    return false;
  }
  return c->capture_out && c->n_steps == 0 && c->n_temps == 0;
}

const ops_def_t ops_family_fused[] = {
    {.op_type = OPS_FUSED_OP, .domain = OPS_FUSED_DOMAIN, .infer = infer_fused, .lower = lower_fused, .flops = flops_fused},
    {.op_type = NULL},
};
