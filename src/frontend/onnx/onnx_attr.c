/* AttributeProto -> fir_attr_t, subgraphs included. */
#include <string.h>

#include "frontend/onnx/onnx_internal.h"

/* IR version 1 files may leave `type` out; the field that is set tells it. */
static int infer_kind(const Onnx__AttributeProto *a) {
  if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) return (int)a->type;
  if (a->has_f) return FIR_ATTR_FLOAT;
  if (a->has_i) return FIR_ATTR_INT;
  if (a->has_s) return FIR_ATTR_STRING;
  if (a->t) return FIR_ATTR_TENSOR;
  if (a->g) return FIR_ATTR_GRAPH;
  if (a->sparse_tensor) return FIR_ATTR_SPARSE_TENSOR;
  if (a->tp) return FIR_ATTR_TYPE;
  if (a->n_floats) return FIR_ATTR_FLOATS;
  if (a->n_ints) return FIR_ATTR_INTS;
  if (a->n_strings) return FIR_ATTR_STRINGS;
  if (a->n_tensors) return FIR_ATTR_TENSORS;
  if (a->n_graphs) return FIR_ATTR_GRAPHS;
  if (a->n_sparse_tensors) return FIR_ATTR_SPARSE_TENSORS;
  if (a->n_type_protos) return FIR_ATTR_TYPES;
  return FIR_ATTR_UNDEFINED;
}

static flagos_status_t subgraph(onnx_ctx_t *c, fir_node_t *n, const Onnx__GraphProto *gp, fir_graph_t **out) {
  fir_graph_t *g = fir_graph_create(c->m, n->graph, gp->name ? gp->name : "");
  FL_TRY(flagos_status_wrap(onnx_graph_convert(c, g, gp), "in subgraph '%s'", onnx_show(gp->name)));
  *out = g;
  return NULL;
}

static flagos_status_t list_len(size_t n, int *out) {
  if (n > INT32_MAX) return FL_ERR(FLAGOS_ERR_CORRUPT, "list of %zu entries", n);
  *out = (int)n;
  return NULL;
}

static flagos_status_t convert(onnx_ctx_t *c, fir_node_t *n, const Onnx__AttributeProto *a, fir_attr_t *at) {
  fl_arena_t *ar = c->m->arena;
  switch (at->kind) {
  case FIR_ATTR_FLOAT: at->f = a->f; return NULL;
  case FIR_ATTR_INT: at->i = a->i; return NULL;
  case FIR_ATTR_STRING:
    at->s = fl_arena_strndup(ar, a->s.data ? (const char *)a->s.data : "", a->s.len);
    at->s_len = a->s.len;
    return NULL;
  case FIR_ATTR_TENSOR:
    if (!a->t) return FL_ERR(FLAGOS_ERR_CORRUPT, "TENSOR attribute holds no tensor");
    return onnx_tensor_convert(c, a->t, &at->t);
  case FIR_ATTR_SPARSE_TENSOR:
    if (!a->sparse_tensor) return FL_ERR(FLAGOS_ERR_CORRUPT, "SPARSE_TENSOR attribute holds no tensor");
    return onnx_sparse_convert(c, a->sparse_tensor, &at->t);
  case FIR_ATTR_GRAPH:
    if (!a->g) return FL_ERR(FLAGOS_ERR_CORRUPT, "GRAPH attribute holds no graph");
    return subgraph(c, n, a->g, &at->g);
  case FIR_ATTR_TYPE:
    if (!a->tp) return FL_ERR(FLAGOS_ERR_CORRUPT, "TYPE_PROTO attribute holds no type");
    return onnx_type_convert(c, a->tp, &at->tp);
  case FIR_ATTR_FLOATS:
    FL_TRY(list_len(a->n_floats, &at->n));
    at->floats = fl_arena_memdup(ar, a->floats, sizeof(float) * a->n_floats);
    return NULL;
  case FIR_ATTR_INTS:
    FL_TRY(list_len(a->n_ints, &at->n));
    at->ints = fl_arena_memdup(ar, a->ints, sizeof(int64_t) * a->n_ints);
    return NULL;
  case FIR_ATTR_STRINGS:
    FL_TRY(list_len(a->n_strings, &at->n));
    at->strings = fl_arena_alloc(ar, sizeof(char *) * (a->n_strings + 1));
    at->string_lens = fl_arena_alloc(ar, sizeof(size_t) * (a->n_strings + 1));
    for (size_t i = 0; i < a->n_strings; i++) {
      at->strings[i] =
          fl_arena_strndup(ar, a->strings[i].data ? (const char *)a->strings[i].data : "", a->strings[i].len);
      at->string_lens[i] = a->strings[i].len;
    }
    return NULL;
  case FIR_ATTR_TENSORS:
    FL_TRY(list_len(a->n_tensors, &at->n));
    at->tensors = fl_arena_alloc(ar, sizeof(fir_tensor_t *) * (a->n_tensors + 1));
    for (size_t i = 0; i < a->n_tensors; i++)
      FL_TRY(flagos_status_wrap(onnx_tensor_convert(c, a->tensors[i], &at->tensors[i]), "tensor #%zu", i));
    return NULL;
  case FIR_ATTR_SPARSE_TENSORS:
    FL_TRY(list_len(a->n_sparse_tensors, &at->n));
    at->tensors = fl_arena_alloc(ar, sizeof(fir_tensor_t *) * (a->n_sparse_tensors + 1));
    for (size_t i = 0; i < a->n_sparse_tensors; i++)
      FL_TRY(
          flagos_status_wrap(onnx_sparse_convert(c, a->sparse_tensors[i], &at->tensors[i]), "sparse tensor #%zu", i));
    return NULL;
  case FIR_ATTR_GRAPHS:
    FL_TRY(list_len(a->n_graphs, &at->n));
    at->graphs = fl_arena_alloc(ar, sizeof(fir_graph_t *) * (a->n_graphs + 1));
    for (size_t i = 0; i < a->n_graphs; i++) FL_TRY(subgraph(c, n, a->graphs[i], &at->graphs[i]));
    return NULL;
  case FIR_ATTR_TYPES:
    FL_TRY(list_len(a->n_type_protos, &at->n));
    at->types = fl_arena_alloc(ar, sizeof(fir_type_t *) * (a->n_type_protos + 1));
    for (size_t i = 0; i < a->n_type_protos; i++) FL_TRY(onnx_type_convert(c, a->type_protos[i], &at->types[i]));
    return NULL;
  default: return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "unknown attribute type %d", (int)at->kind);
  }
}

flagos_status_t onnx_attr_convert(onnx_ctx_t *c, fir_node_t *n, const Onnx__AttributeProto *a) {
  const char *name = a->name ? a->name : "";
  if (!*name) return FL_ERR(FLAGOS_ERR_CORRUPT, "an attribute has no name");
  if (a->ref_attr_name && *a->ref_attr_name)
    return FL_ERR(FLAGOS_ERR_CORRUPT,
                  "attribute '%s' refers to function attribute '%s'; such references are only valid inside a "
                  "function body",
                  name, a->ref_attr_name);
  int kind = infer_kind(a);
  if (kind == FIR_ATTR_UNDEFINED) return FL_ERR(FLAGOS_ERR_CORRUPT, "attribute '%s' has no type and no value", name);
  if (fir_node_attr(n, name)) return FL_ERR(FLAGOS_ERR_CORRUPT, "attribute '%s' is given twice", name);
  fir_attr_t *at = fir_node_add_attr(n, name, (fir_attr_kind_t)kind);
  return flagos_status_wrap(convert(c, n, a, at), "attribute '%s'", name);
}
