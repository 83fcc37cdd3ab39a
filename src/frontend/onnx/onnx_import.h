/* ONNX frontend: reads ONNX protobuf (through protobuf-c and Debian's onnx.proto)
 * into FlagIR. See README.md in this folder for what is and is not supported. */
#ifndef FLAGOS_ONNX_IMPORT_H
#define FLAGOS_ONNX_IMPORT_H

#include <stddef.h>

#include "ir/ir.h"

/* Reads an ONNX model file into FlagIR. External tensor data is resolved relative to the model's folder. */
flagos_status_t onnx_import_file(const char *path, fir_model_t **out);
/* Same from bytes; base_dir (may be NULL) resolves external data. With base_dir NULL a
 * tensor that keeps its data in an external file is an error. */
flagos_status_t onnx_import_memory(const void *data, size_t size, const char *base_dir, fir_model_t **out);
/* Decodes a serialized TensorProto into a fir_tensor_t allocated in m's arena (used for .pb inputs too).
 * External data is refused (there is no folder to resolve it against). */
flagos_status_t onnx_decode_tensor(fir_model_t *m, const void *data, size_t size, fir_tensor_t **out);

#endif
