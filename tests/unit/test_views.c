/* View operators (Reshape, Flatten, Squeeze, Unsqueeze, Identity) without a copy
 * (src/runtime/exec.c take_view): when the view node is the last reader of a
 * buffer its run allocated, the output takes that buffer and no kernel runs;
 * otherwise the node's kernel copies as before. Checked on the cpu, through a
 * bundle file:
 * (a) x -> Add -> Reshape -> Mul: the values are the hand-computed ones and the
 *     profile lists no Reshape group (it launched nothing), twice in a row (the
 *     second run reuses freed buffers);
 * (b) the Add's output is also read by another node after the Reshape (the
 *     graph unfused): the Reshape copies (its group is profiled), and both
 *     outputs are right;
 * (c) FLAGOS_VIEWS=0 makes (a) copy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "compiler/compiler.h"
#include "flagos/flagos.h"

/* y = ((x + x) reshaped to 3x4)^2 */
static const char k_last_reader[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[2,6]) -> (%y: f32[3,4]) {\n"
    "  %shape: i64[2] = const [3, 4]\n"
    "  %a: f32[2,6] = Add(%x, %x)\n"
    "  %r: f32[3,4] = Reshape(%a, %shape)\n"
    "  %y: f32[3,4] = Mul(%r, %r)\n"
    "}\n";

/* The same, with a also read after the Reshape: z = Softmax(a) keeps it alive. */
static const char k_shared[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[2,6]) -> (%y: f32[3,4], %z: f32[2,6]) {\n"
    "  %shape: i64[2] = const [3, 4]\n"
    "  %a: f32[2,6] = Add(%x, %x)\n"
    "  %r: f32[3,4] = Reshape(%a, %shape)\n"
    "  %y: f32[3,4] = Mul(%r, %r)\n"
    "  %z: f32[2,6] = Softmax(%a)\n"
    "}\n";

/* Runs the model twice on the cpu with profiling on; returns how many profiled
 * groups ran Reshape, or -1 on failure. Checks y (and z when n_out is 2). */
static int run(const char *text, const char *name, int n_out) {
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(text, strlen(text), &m);
  char path[256];
  snprintf(path, sizeof path, "/tmp/flagos_test_views_%d_%s.flagos", (int)getpid(), name);
  flagos_compile_options_t o = {.targets = "cpu"};
  void *img = NULL;
  size_t len = 0;
  if (!st) st = compiler_build_bundle(m, &o, &img, &len);
  if (!st) st = fl_write_file(path, img, len);
  free(img);
  if (m) fir_model_destroy(m);
  flagos_bundle_t *b = NULL;
  if (!st) st = flagos_bundle_open(path, &b);
  flagos_session_t *s = NULL;
  flagos_session_options_t so = {.device = "cpu"};
  if (!st) st = flagos_session_create(b, &so, &s);
  if (!st) st = flagos_session_enable_profiling(s, true);
  float x[12];
  for (int i = 0; i < 12; i++) x[i] = (float)i - 5.5f;
  flagos_value_t vin = {.kind = FLAGOS_VALUE_TENSOR}, out[2];
  vin.tensor.dtype = FLAGOS_FLOAT32;
  vin.tensor.rank = 2;
  vin.tensor.dims[0] = 2;
  vin.tensor.dims[1] = 6;
  vin.tensor.data = x;
  vin.tensor.nbytes = sizeof x;
  for (int r = 0; r < 2 && !st; r++) {
    memset(out, 0, sizeof out);
    st = flagos_session_run(s, &vin, 1, out, n_out);
    if (st) break;
    const float *y = out[0].tensor.data;
    CHECK(out[0].tensor.rank == 2 && out[0].tensor.dims[0] == 3 && out[0].tensor.dims[1] == 4, "%s: y is 3x4", name);
    for (int i = 0; i < 12 && y; i++) {
      float want = (2 * x[i]) * (2 * x[i]);
      CHECK(y[i] == want, "%s run %d: y[%d] = %g, want %g", name, r, i, y[i], want);
    }
    if (n_out == 2) {
      const float *z = out[1].tensor.data;
      for (int row = 0; row < 2 && z; row++) {
        float sum = 0;
        for (int j = 0; j < 6; j++) sum += z[row * 6 + j];
        /* softmax of 2x over a row of 6 consecutive values: the largest is 1/sum(e^(-2k)), k = 0..5 */
        double big = 0;
        for (int k = 0; k < 6; k++) big += exp(-2.0 * k);
        CHECK(sum > 0.9999f && sum < 1.0001f, "%s: softmax row %d sums to %g", name, row, sum);
        CHECK(fabs(z[row * 6 + 5] - 1.0 / big) < 1e-6, "%s: z[%d][5] = %g, want %g", name, row,
              z[row * 6 + 5], 1.0 / big);
      }
    }
    for (int k = 0; k < n_out; k++) flagos_value_clear(&out[k]);
  }
  CHECK(!st, "%s: %s", name, st ? flagos_status_message(st) : "");
  int reshapes = -1;
  if (!st) {
    flagos_profile_node_t nodes[16];
    int n = flagos_session_profile_nodes(s, nodes, 16);
    reshapes = 0;
    for (int i = 0; i < n && i < 16; i++) reshapes += strcmp(nodes[i].op, "Reshape") == 0;
  }
  flagos_status_free(st);
  if (s) flagos_session_destroy(s);
  if (b) flagos_bundle_close(b);
  unlink(path);
  return reshapes;
}

int main(void) {
  int n = run(k_last_reader, "last", 1);
  CHECK(n == 0, "the Reshape that is its input's last reader launched nothing (%d Reshape groups profiled)", n);
  /* unfused: inline fusion would run the Add in the Softmax's kernel, which
   * stores a before the Reshape, and the Reshape would be a's last reader */
  setenv("FLAGOS_FUSE", "0", 1);
  n = run(k_shared, "shared", 2);
  unsetenv("FLAGOS_FUSE");
  CHECK(n == 1, "the Reshape of a value read again later copies (%d Reshape groups profiled)", n);
  setenv("FLAGOS_VIEWS", "0", 1);
  n = run(k_last_reader, "off", 1);
  CHECK(n == 1, "FLAGOS_VIEWS=0: the Reshape copies (%d Reshape groups profiled)", n);
  printf("test_views: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
