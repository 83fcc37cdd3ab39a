/* Entry points: ModelProto bytes -> fir_model_t. */
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx_internal.h"

static flagos_status_t convert_model(onnx_ctx_t *c, const Onnx__ModelProto *mp) {
  fir_model_t *m = c->m;
  if (mp->has_ir_version) m->ir_version = mp->ir_version;
  m->producer = fl_arena_strdup(m->arena, mp->producer_name ? mp->producer_name : "");
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
    const char *d = o->domain && strcmp(o->domain, "ai.onnx") != 0 ? o->domain : "";
    fir_model_set_opset(m, d, o->has_version ? o->version : 1);
  }
  /* Functions (mp->functions) are not expanded: a node calling one reaches the
   * compiler as an operator it does not know, which it reports. */
  if (!mp->graph) return FL_ERR(FLAGOS_ERR_CORRUPT, "the model has no graph (is this an ONNX model?)");
  m->graph = fir_graph_create(m, NULL, mp->graph->name ? mp->graph->name : "");
  return onnx_graph_convert(c, m->graph, mp->graph);
}

static flagos_status_t import_bytes(const void *data, size_t size, const char *base_dir, const char *what,
                                    fir_model_t **out) {
  *out = NULL;
  if (!data && size) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "no model bytes");
  static const uint8_t empty[1];
  if (!data) data = empty;
  FL_TRY(onnx_wire_check_depth(&onnx__model_proto__descriptor, data, size, what));
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, data);
  if (!mp)
    return FL_ERR(FLAGOS_ERR_CORRUPT,
                  "'%s' is not a valid ONNX model (protobuf parse failed; the file may be truncated or corrupted)",
                  what);
  onnx_ctx_t c = {.m = fir_model_create(), .base_dir = base_dir};
  flagos_status_t st = convert_model(&c, mp);
  onnx_names_free(&c.names);
  onnx__model_proto__free_unpacked(mp, NULL);
  if (st) {
    fir_model_destroy(c.m);
    return flagos_status_wrap(st, "%s", what);
  }
  *out = c.m;
  return NULL;
}

flagos_status_t onnx_import_memory(const void *data, size_t size, const char *base_dir, fir_model_t **out) {
  return import_bytes(data, size, base_dir, "<memory>", out);
}

flagos_status_t onnx_import_file(const char *path, fir_model_t **out) {
  *out = NULL;
  void *data;
  size_t size;
  FL_TRY(fl_read_file(path, &data, &size));
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) {
    free(data);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  flagos_status_t st = import_bytes(data, size, dir, path, out);
  free(dir);
  free(data);
  return st;
}

flagos_status_t onnx_decode_tensor(fir_model_t *m, const void *data, size_t size, fir_tensor_t **out) {
  *out = NULL;
  static const uint8_t empty[1];
  if (!data) data = empty;
  FL_TRY(onnx_wire_check_depth(&onnx__tensor_proto__descriptor, data, size, "TensorProto"));
  Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, size, data);
  if (!tp)
    return FL_ERR(FLAGOS_ERR_CORRUPT, "not a valid TensorProto (protobuf parse failed; truncated or corrupted?)");
  onnx_ctx_t c = {.m = m};
  flagos_status_t st = onnx_tensor_convert(&c, tp, out);
  onnx__tensor_proto__free_unpacked(tp, NULL);
  return st;
}
