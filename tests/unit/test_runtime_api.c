/* The runtime C API (include/flagos/flagos.h) on the example model: bundle I/O
 * info, runs with FlagOS-allocated and caller-owned outputs compared with NumPy's
 * output (examples/mlp_expected.npy, written by examples/make_mlp.py), and the
 * errors a caller can provoke. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagos/flagos.h"
#include "io/value_io.h"

#include "check.h"

static flagos_tensor_t load_npy(const char *path) {
  flagos_value_t v;
  memset(&v, 0, sizeof v);
  flagos_status_t st = io_load_value(path, NULL, &v);
  if (st) {
    fprintf(stderr, "cannot read %s: %s\n", path, flagos_status_message(st));
    exit(2);
  }
  return v.tensor;
}

static double max_diff(const flagos_tensor_t *a, const flagos_tensor_t *b) {
  double w = 0;
  int64_t n = flagos_tensor_numel(b);
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)((float *)a->data)[i] - (double)((float *)b->data)[i]);
    if (!(d <= w)) w = d; /* NaN counts as the worst */
  }
  return w;
}

static bool msg_has(flagos_status_t st, const char *text) { return st && strstr(flagos_status_message(st), text); }

int main(void) {
  char model[4096], in_path[4096], ref_path[4096], bundle[4096];
  snprintf(model, sizeof model, "%s/examples/mlp.onnx", FLAGOS_SOURCE_DIR);
  snprintf(in_path, sizeof in_path, "%s/examples/mlp_input.npy", FLAGOS_SOURCE_DIR);
  snprintf(ref_path, sizeof ref_path, "%s/examples/mlp_expected.npy", FLAGOS_SOURCE_DIR);
  snprintf(bundle, sizeof bundle, "%s/tests/test_runtime_api.flagos", FLAGOS_BINARY_DIR);

  flagos_status_t st = flagos_compile_file(model, bundle, NULL);
  CHECK(!st, "compile: %s", flagos_status_message(st));
  flagos_status_free(st);
  flagos_bundle_t *b = NULL;
  st = flagos_bundle_open(bundle, &b);
  CHECK(!st, "open: %s", flagos_status_message(st));
  if (st) return 1;

  CHECK(flagos_bundle_num_inputs(b) == 1 && flagos_bundle_num_outputs(b) == 1, "one input and one output");
  flagos_io_info_t ii, oi;
  CHECK(!flagos_bundle_input(b, 0, &ii), "input info");
  CHECK(strcmp(ii.name, "x") == 0 && ii.dtype == FLAGOS_FLOAT32 && ii.rank == 2, "input x: f32 rank 2");
  CHECK(ii.dims[0] == -1 && ii.dim_names[0] && strcmp(ii.dim_names[0], "batch") == 0 && ii.dims[1] == 16,
        "input dims [batch,16]");
  CHECK(!flagos_bundle_output(b, 0, &oi), "output info");
  CHECK(strcmp(oi.name, "y") == 0 && oi.rank == 2 && oi.dims[1] == 4, "output y: [batch,4]");
  st = flagos_bundle_input(b, 3, &ii);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT, "input 3 does not exist");
  flagos_status_free(st);

  flagos_session_t *s = NULL;
  flagos_session_options_t bad = {.device = "cpu:7"};
  st = flagos_session_create(b, &bad, &s);
  CHECK(msg_has(st, "cpu:7 does not exist"), "missing device named: %s", flagos_status_message(st));
  flagos_status_free(st);
  st = flagos_session_create(b, NULL, &s);
  CHECK(!st, "session: %s", flagos_status_message(st));
  if (st) return 1;

  flagos_tensor_t x = load_npy(in_path), ref = load_npy(ref_path);
  flagos_value_t in = {.kind = FLAGOS_VALUE_TENSOR, .tensor = x};

  /* FlagOS allocates the output. */
  flagos_value_t out;
  memset(&out, 0, sizeof out);
  st = flagos_session_run(s, &in, 1, &out, 1);
  CHECK(!st, "run: %s", flagos_status_message(st));
  flagos_status_free(st);
  CHECK(out.kind == FLAGOS_VALUE_TENSOR && out.tensor.dtype == FLAGOS_FLOAT32 && out.tensor.rank == 2 &&
            out.tensor.dims[0] == 3 && out.tensor.dims[1] == 4,
        "output is f32[3,4]");
  if (!st) CHECK(max_diff(&out.tensor, &ref) < 1e-5, "output differs from NumPy by %g", max_diff(&out.tensor, &ref));
  flagos_value_clear(&out);

  /* The caller owns the output buffer. */
  float buf[12] = {0};
  flagos_value_t own;
  memset(&own, 0, sizeof own);
  own.kind = FLAGOS_VALUE_TENSOR;
  own.tensor.data = buf;
  own.tensor.nbytes = sizeof buf;
  st = flagos_session_run(s, &in, 1, &own, 1);
  CHECK(!st, "run into caller buffer: %s", flagos_status_message(st));
  flagos_status_free(st);
  CHECK(own.tensor.data == buf && own.tensor.rank == 2 && own.tensor.dims[0] == 3, "written in place, shape set");
  if (!st) CHECK(max_diff(&own.tensor, &ref) < 1e-5, "caller buffer differs from NumPy by %g", max_diff(&own.tensor, &ref));

  /* Too small a caller buffer is an error naming the output and the bytes it needs. */
  float small[4];
  flagos_value_t tiny;
  memset(&tiny, 0, sizeof tiny);
  tiny.kind = FLAGOS_VALUE_TENSOR;
  tiny.tensor.data = small;
  tiny.tensor.nbytes = sizeof small;
  st = flagos_session_run(s, &in, 1, &tiny, 1);
  CHECK(msg_has(st, "output 'y' needs 48 bytes, the caller's buffer has 16"), "small buffer: %s",
        flagos_status_message(st));
  flagos_status_free(st);

  /* A second batch size runs through the same bundle (the batch dim is symbolic). */
  float x1[16];
  for (int i = 0; i < 16; i++) x1[i] = ((float *)x.data)[16 + i]; /* row 1 of the reference input */
  flagos_value_t in1 = {.kind = FLAGOS_VALUE_TENSOR};
  in1.tensor.dtype = FLAGOS_FLOAT32;
  in1.tensor.rank = 2;
  in1.tensor.dims[0] = 1;
  in1.tensor.dims[1] = 16;
  in1.tensor.data = x1;
  in1.tensor.nbytes = sizeof x1;
  memset(&out, 0, sizeof out);
  st = flagos_session_run(s, &in1, 1, &out, 1);
  CHECK(!st, "batch 1: %s", flagos_status_message(st));
  flagos_status_free(st);
  if (!st) {
    double w = 0;
    for (int j = 0; j < 4; j++) w = fmax(w, fabs(((float *)out.tensor.data)[j] - ((float *)ref.data)[4 + j]));
    CHECK(out.tensor.dims[0] == 1 && w < 1e-5, "batch-1 row matches row 1 of NumPy's output (%g)", w);
  }
  flagos_value_clear(&out);

  /* Wrong inputs are refused with the input's name, the expected and the given shape or dtype. */
  in1.tensor.dims[1] = 8;
  memset(&out, 0, sizeof out);
  st = flagos_session_run(s, &in1, 1, &out, 1);
  CHECK(msg_has(st, "input 'x': expected shape [batch,16], got [1,8]"), "shape error: %s", flagos_status_message(st));
  flagos_status_free(st);
  in1.tensor.dims[1] = 16;
  in1.tensor.dtype = FLAGOS_INT32;
  st = flagos_session_run(s, &in1, 1, &out, 1);
  CHECK(msg_has(st, "input 'x': expected dtype f32, got i32"), "dtype error: %s", flagos_status_message(st));
  flagos_status_free(st);
  st = flagos_session_run(s, &in, 0, &out, 1);
  CHECK(msg_has(st, "takes 1 input(s), 0 given"), "count error: %s", flagos_status_message(st));
  flagos_status_free(st);

  flagos_session_destroy(s);
  flagos_bundle_close(b);
  free(x.data);
  free(ref.data);
  remove(bundle);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
