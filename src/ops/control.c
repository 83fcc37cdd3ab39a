/* Control flow: If, Loop, Scan. Their shape rules live here; they run in the
 * runtime (host ops), which executes the subgraphs' own plans. */
#include <string.h>

#include "ops/ops.h"

static const fir_graph_t *graph_attr(const ops_ctx_t *c, const char *name) {
  const fir_attr_t *a = fir_node_attr(c->node, name);
  return a && a->kind == FIR_ATTR_GRAPH ? a->g : NULL;
}

/* Output k takes the type t (tensor, sequence or optional). */
static void set_from_type(ops_ctx_t *c, int k, const fir_type_t *t) {
  ops_tensor_info_t *o = &c->out[k];
  memset(o, 0, sizeof(*o));
  o->present = true;
  o->rank = -1;
  o->numel = -1;
  if (!t || t->kind == FIR_TYPE_UNKNOWN) {
    o->kind = FIR_TYPE_TENSOR;
    return;
  }
  o->kind = t->kind;
  const fir_type_t *e = t;
  if (t->kind != FIR_TYPE_TENSOR && t->elem) {
    o->elem_kind = t->elem->kind;
    e = t->elem;
    if (e->kind == FIR_TYPE_SEQUENCE && e->elem) e = e->elem;
  }
  o->dtype = e->dtype;
  o->rank = e->kind == FIR_TYPE_TENSOR && e->rank <= OPS_MAX_RANK ? e->rank : -1;
  for (int i = 0; i < o->rank; i++) o->dims[i] = e->dims[i].value;
}

static flagos_status_t infer_if(ops_ctx_t *c) {
  const fir_graph_t *th = graph_attr(c, "then_branch"), *el = graph_attr(c, "else_branch");
  if (!th || !el) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs then_branch and else_branch subgraphs");
  if (th->n_outputs != c->n_out || el->n_outputs != c->n_out)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "branches give %d and %d outputs, the node has %d", th->n_outputs,
                   el->n_outputs, c->n_out);
  for (int k = 0; k < c->n_out; k++) {
    set_from_type(c, k, th->outputs[k]->type);
    ops_tensor_info_t e;
    ops_tensor_info_t *o = &c->out[k];
    ops_tensor_info_t save = *o;
    set_from_type(c, k, el->outputs[k]->type);
    e = *o;
    *o = save;
    if (e.dtype != o->dtype && e.dtype && o->dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "output %d is %s in then_branch but %s in else_branch", k,
                     flagos_dtype_name(o->dtype), flagos_dtype_name(e.dtype));
    if (e.rank != o->rank) o->rank = -1;
    for (int i = 0; i < o->rank; i++)
      if (e.dims[i] != o->dims[i]) o->dims[i] = -1;
  }
  return NULL;
}

static flagos_status_t infer_loop(ops_ctx_t *c) {
  const fir_graph_t *body = graph_attr(c, "body");
  if (!body) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs a body subgraph");
  int carried = c->n_in - 2;
  if (carried < 0 || body->n_inputs != carried + 2 || body->n_outputs < carried + 1)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "body takes %d inputs and gives %d outputs for %d loop-carried values",
                   body->n_inputs, body->n_outputs, carried);
  if (c->n_out != body->n_outputs - 1)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "has %d outputs, the body gives %d", c->n_out, body->n_outputs - 1);
  for (int k = 0; k < c->n_out; k++) {
    set_from_type(c, k, body->outputs[k + 1]->type);
    ops_tensor_info_t *o = &c->out[k];
    if (k < carried) {
      /* A carried value may change shape from one iteration to the next. */
      for (int i = 0; i < o->rank; i++)
        if (!ops_has_in(c, k + 2) || c->in[k + 2].rank != o->rank || c->in[k + 2].dims[i] != o->dims[i]) o->dims[i] = -1;
    } else if (o->kind == FIR_TYPE_TENSOR && o->rank >= 0 && o->rank < OPS_MAX_RANK) {
      for (int i = o->rank; i > 0; i--) o->dims[i] = o->dims[i - 1];
      o->dims[0] = -1; /* scan outputs are stacked over the iterations */
      o->rank++;
    }
  }
  return NULL;
}

/* Scan 8: a leading batch axis on every input and output, scan inputs scanned
 * along axis 1, an optional sequence_lens first input. */
static flagos_status_t infer_scan8(ops_ctx_t *c, const fir_graph_t *body) {
  int m = (int)fir_attr_int(c->node, "num_scan_inputs", -1);
  int ns = c->n_in - 1 - m;
  if (m < 1 || ns < 0 || body->n_inputs != ns + m || body->n_outputs != c->n_out)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "inputs, outputs and body do not agree (num_scan_inputs %d)", m);
  const ops_tensor_info_t *s0 = &c->in[1 + ns];
  int64_t batch = s0->rank >= 2 ? s0->dims[0] : -1, len = s0->rank >= 2 ? s0->dims[1] : -1;
  for (int k = 0; k < c->n_out; k++) {
    set_from_type(c, k, body->outputs[k]->type);
    ops_tensor_info_t *o = &c->out[k];
    int extra = k < ns ? 1 : 2;
    if (o->rank < 0 || o->rank + extra > OPS_MAX_RANK) {
      o->rank = -1;
      continue;
    }
    for (int i = o->rank - 1; i >= 0; i--) o->dims[i + extra] = o->dims[i];
    o->dims[0] = batch;
    if (extra == 2) o->dims[1] = len;
    o->rank += extra;
  }
  return NULL;
}

static flagos_status_t infer_scan(ops_ctx_t *c) {
  const fir_graph_t *body = graph_attr(c, "body");
  if (!body) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs a body subgraph");
  if (c->opset < 9) return infer_scan8(c, body);
  int m = (int)fir_attr_int(c->node, "num_scan_inputs", -1);
  int n_state = c->n_in - m;
  if (m < 1 || n_state < 0 || body->n_inputs != c->n_in || body->n_outputs != c->n_out)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "inputs, outputs and body do not agree (num_scan_inputs %d)", m);
  const int64_t *in_axes, *out_axes;
  int n_in_axes = fir_attr_ints(c->node, "scan_input_axes", &in_axes);
  int n_out_axes = fir_attr_ints(c->node, "scan_output_axes", &out_axes);
  const ops_tensor_info_t *s0 = &c->in[n_state];
  int64_t len = -1;
  if (s0->rank > 0) {
    int ax;
    FL_TRY(ops_axis(c, n_in_axes > 0 ? in_axes[0] : 0, s0->rank, &ax));
    len = s0->dims[ax];
  }
  for (int k = 0; k < c->n_out; k++) {
    set_from_type(c, k, body->outputs[k]->type);
    ops_tensor_info_t *o = &c->out[k];
    if (k < n_state) {
      if (ops_has_in(c, k) && c->in[k].rank == o->rank) memcpy(o->dims, c->in[k].dims, sizeof(int64_t) * (size_t)o->rank);
      continue;
    }
    if (o->rank < 0 || o->rank >= OPS_MAX_RANK) continue;
    int j = k - n_state, ax;
    FL_TRY(ops_axis(c, n_out_axes > j ? out_axes[j] : 0, o->rank + 1, &ax));
    for (int i = o->rank; i > ax; i--) o->dims[i] = o->dims[i - 1];
    o->dims[ax] = len;
    o->rank++;
  }
  return NULL;
}

const ops_def_t ops_family_control[] = {
    {"If", "", 1, infer_if, NULL, NULL, true},
    {"Loop", "", 0, infer_loop, NULL, NULL, true},
    {"Scan", "", 0, infer_scan, NULL, NULL, true},
    {NULL, NULL, 0, NULL, NULL, NULL, false},
};
