/* libFuzzer target: arbitrary bytes as an ONNX model. The importer must answer
 * with a model or a status, never crash, leak or read out of bounds. With no
 * base folder, external data is refused, so the fuzzer never opens files. */
#include <stddef.h>
#include <stdint.h>

#include "frontend/onnx/onnx_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fir_model_t *m = NULL;
  flagos_status_t st = onnx_import_memory(data, size, NULL, &m);
  if (st) {
    /* a status always carries a message */
    if (!flagos_status_message(st)[0]) __builtin_trap();
    flagos_status_free(st);
    if (m) __builtin_trap();
    return 0;
  }
  fir_model_destroy(m);
  return 0;
}
