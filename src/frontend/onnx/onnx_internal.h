/* Shared between the files of the ONNX frontend; not for other folders. */
#ifndef FLAGOS_ONNX_INTERNAL_H
#define FLAGOS_ONNX_INTERNAL_H

#include <stdio.h>

#include "frontend/onnx/onnx_import.h"
#include "onnx/onnx.pb-c.h"

/* Deepest message nesting accepted before protobuf-c sees the bytes: protobuf-c and
 * the converters recurse once per level, so a crafted file could otherwise
 * exhaust the stack. Real models nest a few dozen levels at most. */
#define ONNX_MAX_NESTING 200
/* A sparse tensor densifies to at most this many bytes: its dense size is not
 * bounded by the file size, so a tiny file could otherwise ask for terabytes. */
#define ONNX_MAX_DENSE_BYTES ((size_t)1 << 30)

/* Name -> value table for the whole model: FlagIR wants value names unique in the
 * model, and lookups must not be linear in the model size. */
typedef struct onnx_names {
  fir_value_t **slots;
  size_t cap, count;
} onnx_names_t;

typedef struct onnx_ctx {
  fir_model_t *m;
  const char *base_dir; /* folder of the model file; NULL refuses external data */
  onnx_names_t names;
} onnx_ctx_t;

void onnx_names_free(onnx_names_t *t);
fir_value_t *onnx_names_get(const onnx_names_t *t, const char *name);

/* Readable name for messages: "(unnamed)" for NULL or "". */
const char *onnx_show(const char *name);

/* onnx_wire.c: checks nesting depth of a serialized message against its schema. */
flagos_status_t onnx_wire_check_depth(const ProtobufCMessageDescriptor *desc, const void *data, size_t size,
                                      const char *what);

/* onnx_tensor.c */
/* Checks an ONNX element type number; `what` names the tensor or value for the message. */
flagos_status_t onnx_dtype_check(int32_t dt, const char *what, flagos_dtype_t *out);
flagos_status_t onnx_tensor_convert(onnx_ctx_t *c, const Onnx__TensorProto *tp, fir_tensor_t **out);
/* Densifies a SparseTensorProto; the result is named after its values tensor. */
flagos_status_t onnx_sparse_convert(onnx_ctx_t *c, const Onnx__SparseTensorProto *sp, fir_tensor_t **out);

/* onnx_external.c: opens a tensor's external data file, checks that it holds the
 * `size` bytes the tensor needs and leaves it positioned at them. */
flagos_status_t onnx_external_open(onnx_ctx_t *c, const Onnx__TensorProto *tp, size_t size, FILE **out);

/* onnx_type.c: NULL tp gives an unknown type. */
flagos_status_t onnx_type_convert(onnx_ctx_t *c, const Onnx__TypeProto *tp, fir_type_t **out);

/* onnx_graph.c: fills g (already created, parent set) from gp. */
flagos_status_t onnx_graph_convert(onnx_ctx_t *c, fir_graph_t *g, const Onnx__GraphProto *gp);

/* onnx_attr.c */
flagos_status_t onnx_attr_convert(onnx_ctx_t *c, fir_node_t *n, const Onnx__AttributeProto *a);

#endif
