/* libFuzzer target for the value decoders: the first byte picks the reader
 * (.npy, TensorProto, SequenceProto, OptionalProto), the rest is its input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "io/value_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fir_type_t g_seq, g_opt, g_opt_seq, g_tensor;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  g_tensor = (fir_type_t){.kind = FIR_TYPE_TENSOR, .dtype = FLAGOS_FLOAT32, .rank = -1};
  g_seq = (fir_type_t){.kind = FIR_TYPE_SEQUENCE, .rank = -1, .elem = &g_tensor};
  g_opt = (fir_type_t){.kind = FIR_TYPE_OPTIONAL, .rank = -1, .elem = &g_tensor};
  g_opt_seq = (fir_type_t){.kind = FIR_TYPE_OPTIONAL, .rank = -1, .elem = &g_seq};
  const fir_type_t *types[] = {NULL, &g_seq, &g_opt, &g_opt_seq};
  unsigned mode = data[0] % 5;
  flagos_value_t v;
  flagos_status_t st;
  if (mode == 4) {
    flagos_tensor_t t;
    st = io_read_npy(data + 1, size - 1, &t);
    if (!st) {
      v = (flagos_value_t){.kind = FLAGOS_VALUE_TENSOR, .tensor = t};
      flagos_value_clear(&v);
    }
  } else {
    st = io_decode_pb_value(data + 1, size - 1, types[mode], &v);
    if (!st) flagos_value_clear(&v);
  }
  flagos_status_free(st);
  return 0;
}
