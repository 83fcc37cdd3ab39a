/* Sequences and optionals: shape rules here, execution in the runtime (host ops). */
#include <string.h>

#include "ops/ops.h"

static void set_kind(ops_ctx_t *c, int k, fir_type_kind_t kind, flagos_dtype_t dt, int rank, const int64_t *dims) {
  ops_tensor_info_t *o = &c->out[k];
  memset(o, 0, sizeof(*o));
  o->present = true;
  o->kind = kind;
  o->elem_kind = FIR_TYPE_TENSOR;
  o->dtype = dt;
  o->rank = rank;
  o->numel = -1;
  for (int i = 0; i < rank && dims; i++) o->dims[i] = dims[i];
  for (int i = 0; i < rank && !dims; i++) o->dims[i] = -1;
}

static flagos_status_t need_seq(const ops_ctx_t *c, int k) {
  if (!ops_has_in(c, k) || c->in[k].kind != FIR_TYPE_SEQUENCE)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input %d must be a sequence", k);
  return NULL;
}

static flagos_status_t infer_empty(ops_ctx_t *c) {
  set_kind(c, 0, FIR_TYPE_SEQUENCE, (flagos_dtype_t)fir_attr_int(c->node, "dtype", FLAGOS_FLOAT32), -1, NULL);
  return NULL;
}

static flagos_status_t infer_construct(ops_ctx_t *c) {
  if (c->n_in < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs at least one input");
  const ops_tensor_info_t *a = &c->in[0];
  int64_t dims[OPS_MAX_RANK];
  int rank = a->rank;
  for (int i = 0; i < rank; i++) dims[i] = a->dims[i];
  for (int k = 1; k < c->n_in; k++) {
    if (c->in[k].dtype != a->dtype) return ops_err(c, FLAGOS_ERR_SHAPE, "inputs differ in dtype");
    if (c->in[k].rank != rank) rank = -1;
    for (int i = 0; i < rank; i++)
      if (c->in[k].dims[i] != dims[i]) dims[i] = -1;
  }
  set_kind(c, 0, FIR_TYPE_SEQUENCE, a->dtype, rank, dims);
  return NULL;
}

static flagos_status_t infer_seq_same(ops_ctx_t *c) {
  FL_TRY(need_seq(c, 0));
  int rank = c->in[0].rank;
  int64_t dims[OPS_MAX_RANK];
  for (int i = 0; i < rank; i++) dims[i] = c->in[0].dims[i];
  if (strcmp(c->node->op_type, "SequenceInsert") == 0 && ops_has_in(c, 1)) {
    if (c->in[1].dtype != c->in[0].dtype) return ops_err(c, FLAGOS_ERR_SHAPE, "tensor and sequence differ in dtype");
    if (c->in[1].rank != rank) rank = -1;
    for (int i = 0; i < rank; i++)
      if (c->in[1].dims[i] != dims[i]) dims[i] = -1;
  }
  set_kind(c, 0, FIR_TYPE_SEQUENCE, c->in[0].dtype, rank, dims);
  return NULL;
}

static flagos_status_t infer_at(ops_ctx_t *c) {
  FL_TRY(need_seq(c, 0));
  set_kind(c, 0, FIR_TYPE_TENSOR, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static flagos_status_t infer_length(ops_ctx_t *c) {
  FL_TRY(need_seq(c, 0));
  set_kind(c, 0, FIR_TYPE_TENSOR, FLAGOS_INT64, 0, NULL);
  return NULL;
}

static flagos_status_t infer_concat(ops_ctx_t *c) {
  FL_TRY(need_seq(c, 0));
  int new_axis = (int)fir_attr_int(c->node, "new_axis", 0);
  int rank = c->in[0].rank < 0 ? -1 : c->in[0].rank + (new_axis ? 1 : 0);
  if (rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the rank of the sequence's tensors is unknown");
  set_kind(c, 0, FIR_TYPE_TENSOR, c->in[0].dtype, rank, NULL);
  return NULL;
}

static flagos_status_t infer_split(ops_ctx_t *c) {
  const ops_tensor_info_t *x = &c->in[0];
  int rank = x->rank;
  if (!ops_has_in(c, 1) && !fir_attr_int(c->node, "keepdims", 1)) rank--;
  set_kind(c, 0, FIR_TYPE_SEQUENCE, x->dtype, rank, NULL);
  return NULL;
}

static flagos_status_t infer_map(ops_ctx_t *c) {
  const fir_attr_t *a = fir_node_attr(c->node, "body");
  if (!a || a->kind != FIR_ATTR_GRAPH) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs a body subgraph");
  const fir_graph_t *b = a->g;
  if (b->n_outputs != c->n_out) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "body outputs differ from the node's");
  for (int k = 0; k < c->n_out; k++) {
    const fir_type_t *t = b->outputs[k]->type;
    if (t->kind == FIR_TYPE_TENSOR) {
      int64_t dims[OPS_MAX_RANK];
      for (int i = 0; i < t->rank && i < OPS_MAX_RANK; i++) dims[i] = t->dims[i].value;
      set_kind(c, k, FIR_TYPE_SEQUENCE, t->dtype, t->rank, dims);
    } else {
      set_kind(c, k, FIR_TYPE_SEQUENCE, FLAGOS_UNDEFINED, -1, NULL);
    }
  }
  return NULL;
}

static flagos_status_t infer_optional(ops_ctx_t *c) {
  if (ops_has_in(c, 0)) {
    const ops_tensor_info_t *x = &c->in[0];
    set_kind(c, 0, FIR_TYPE_OPTIONAL, x->dtype, x->rank, x->dims);
    c->out[0].elem_kind = x->kind == FIR_TYPE_SEQUENCE ? FIR_TYPE_SEQUENCE : FIR_TYPE_TENSOR;
    return NULL;
  }
  const fir_attr_t *a = fir_node_attr(c->node, "type");
  if (!a || a->kind != FIR_ATTR_TYPE || !a->tp)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "an Optional without input needs the 'type' attribute");
  const fir_type_t *t = a->tp, *e = t;
  fir_type_kind_t ek = t->kind;
  if (t->kind == FIR_TYPE_SEQUENCE && t->elem) e = t->elem;
  int64_t dims[OPS_MAX_RANK];
  int rank = e->kind == FIR_TYPE_TENSOR ? e->rank : -1;
  for (int i = 0; i < rank && i < OPS_MAX_RANK; i++) dims[i] = e->dims[i].value;
  set_kind(c, 0, FIR_TYPE_OPTIONAL, e->dtype, rank, dims);
  c->out[0].elem_kind = ek;
  return NULL;
}

static flagos_status_t infer_has(ops_ctx_t *c) {
  set_kind(c, 0, FIR_TYPE_TENSOR, FLAGOS_BOOL, 0, NULL);
  return NULL;
}

static flagos_status_t infer_get(ops_ctx_t *c) {
  if (!ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs an input");
  const ops_tensor_info_t *x = &c->in[0];
  fir_type_kind_t k = x->kind == FIR_TYPE_OPTIONAL ? x->elem_kind : x->kind;
  set_kind(c, 0, k == FIR_TYPE_SEQUENCE ? FIR_TYPE_SEQUENCE : FIR_TYPE_TENSOR, x->dtype, x->rank, x->dims);
  return NULL;
}

const ops_def_t ops_family_sequence[] = {
    {"SequenceEmpty", "", 0, infer_empty, NULL, NULL, true},
    {"SequenceConstruct", "", 0, infer_construct, NULL, NULL, true},
    {"SequenceInsert", "", 0, infer_seq_same, NULL, NULL, true},
    {"SequenceErase", "", 0, infer_seq_same, NULL, NULL, true},
    {"SequenceAt", "", 0, infer_at, NULL, NULL, true},
    {"SequenceLength", "", 0, infer_length, NULL, NULL, true},
    {"ConcatFromSequence", "", 0, infer_concat, NULL, NULL, true},
    {"SplitToSequence", "", 0, infer_split, NULL, NULL, true},
    {"SequenceMap", "", 0, infer_map, NULL, NULL, true},
    {"Optional", "", 0, infer_optional, NULL, NULL, true},
    {"OptionalHasElement", "", 0, infer_has, NULL, NULL, true},
    {"OptionalGetElement", "", 0, infer_get, NULL, NULL, true},
    {NULL, NULL, 0, NULL, NULL, NULL, false},
};
