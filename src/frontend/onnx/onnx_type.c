/* TypeProto -> fir_type_t. */
#include "frontend/onnx/onnx_internal.h"

static flagos_status_t tensor_type(onnx_ctx_t *c, int32_t elem, bool has_elem, const Onnx__TensorShapeProto *shape,
                                   fir_type_t **out) {
  flagos_dtype_t dt = FLAGOS_UNDEFINED;
  /* Subgraph signatures may leave the element type out; FlagIR infers it later. */
  if (has_elem && elem != 0) FL_TRY(onnx_dtype_check(elem, "type", &dt));
  if (!shape) {
    *out = fir_type_tensor(c->m, dt, -1, NULL);
    return NULL;
  }
  if (shape->n_dim > (1u << 20)) return FL_ERR(FLAGOS_ERR_CORRUPT, "type has %zu dims", shape->n_dim);
  fir_type_t *t = fir_type_tensor(c->m, dt, (int)shape->n_dim, NULL);
  for (size_t i = 0; i < shape->n_dim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = shape->dim[i];
    t->dims[i].value = -1;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0)
      t->dims[i].value = d->dim_value;
    else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param && *d->dim_param)
      t->dims[i].sym = fl_arena_strdup(c->m->arena, d->dim_param);
  }
  *out = t;
  return NULL;
}

flagos_status_t onnx_type_convert(onnx_ctx_t *c, const Onnx__TypeProto *tp, fir_type_t **out) {
  *out = fir_type_unknown(c->m);
  if (!tp) return NULL;
  fir_type_t *t = NULL;
  switch (tp->value_case) {
  case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE:
    FL_TRY(tensor_type(c, tp->tensor_type->elem_type, tp->tensor_type->has_elem_type, tp->tensor_type->shape, &t));
    break;
  case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE:
    /* FlagIR has no sparse type: sparse values are densified on import. */
    FL_TRY(tensor_type(c, tp->sparse_tensor_type->elem_type, tp->sparse_tensor_type->has_elem_type,
                       tp->sparse_tensor_type->shape, &t));
    break;
  case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE:
    t = fir_type_unknown(c->m);
    t->kind = FIR_TYPE_SEQUENCE;
    FL_TRY(onnx_type_convert(c, tp->sequence_type->elem_type, &t->elem));
    break;
  case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE:
    t = fir_type_unknown(c->m);
    t->kind = FIR_TYPE_OPTIONAL;
    FL_TRY(onnx_type_convert(c, tp->optional_type->elem_type, &t->elem));
    break;
  case ONNX__TYPE_PROTO__VALUE_MAP_TYPE:
    t = fir_type_unknown(c->m);
    t->kind = FIR_TYPE_MAP;
    FL_TRY(onnx_dtype_check(tp->map_type->has_key_type ? tp->map_type->key_type : 0, "map key type", &t->dtype));
    FL_TRY(onnx_type_convert(c, tp->map_type->value_type, &t->elem));
    break;
  default: return NULL;
  }
  *out = t;
  return NULL;
}
