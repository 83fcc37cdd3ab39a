/* Common subexpressions of views (src/passes/cse.c):
 * (a) three Reshapes of one input by equal shape constants (three constant
 *     values, as PyTorch's exporter writes a `view` per reader) become one;
 *     the Softmaxes reading them stay apart (computing nodes are not merged:
 *     fusion may run each in its reader); the model gives NumPy's values on
 *     the cpu;
 * (b) views that differ stay: another attribute (allowzero), another shape
 *     constant; a repeat whose output is a graph output stays; computing
 *     nodes stay: two Transposes of one input, two RandomNormalLike, two
 *     Dropouts;
 * (c) FLAGOS_CSE=0 leaves the graph alone.
 * FLAGOS_FUSE=0 throughout, so that the node counts are the pass's alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fir_util.h"
#include "passes/passes.h"
#include "run_text.h"

#define HEAD "flagir 1\nir_version 8\nopset \"\" 17\n"

/* y_i = -Softmax(Reshape(x, [2,3])) over axis 1 for y1 and y2, over axis 0
 * for y3: the Reshapes become one */
static const char k_views[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[2,3], %y2: f32[2,3], %y3: f32[2,3]) {\n"
    "  %s1: i64[2] = const [2, 3]\n  %s2: i64[2] = const [2, 3]\n  %s3: i64[2] = const [2, 3]\n"
    "  %v1: f32[2,3] = Reshape \"v1\" (%x, %s1)\n  %v2: f32[2,3] = Reshape \"v2\" (%x, %s2)\n"
    "  %v3: f32[2,3] = Reshape \"v3\" (%x, %s3)\n"
    "  %p1: f32[2,3] = Softmax(%v1) {axis = 1}\n  %p2: f32[2,3] = Softmax(%v2) {axis = 1}\n"
    "  %p3: f32[2,3] = Softmax(%v3) {axis = 0}\n"
    "  %y1: f32[2,3] = Neg(%p1)\n  %y2: f32[2,3] = Neg(%p2)\n  %y3: f32[2,3] = Neg(%p3)\n"
    "}\n";

static const char k_other_shape[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[2,3], %y2: f32[3,2]) {\n"
    "  %s1: i64[2] = const [2, 3]\n  %s2: i64[2] = const [3, 2]\n"
    "  %v1: f32[2,3] = Reshape(%x, %s1)\n  %v2: f32[3,2] = Reshape(%x, %s2)\n"
    "  %y1: f32[2,3] = Softmax(%v1) {axis = 1}\n  %y2: f32[3,2] = Softmax(%v2) {axis = 1}\n"
    "}\n";

static const char k_allowzero[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[2,3], %y2: f32[2,3]) {\n"
    "  %s1: i64[2] = const [2, 3]\n  %s2: i64[2] = const [2, 3]\n"
    "  %v1: f32[2,3] = Reshape(%x, %s1) {allowzero = 0}\n  %v2: f32[2,3] = Reshape(%x, %s2) {allowzero = 1}\n"
    "  %y1: f32[2,3] = Neg(%v1)\n  %y2: f32[2,3] = Neg(%v2)\n"
    "}\n";

static const char k_transposes[] = HEAD
    "graph \"g\" (%x: f32[2,3]) -> (%y1: f32[3,2], %y2: f32[3,2]) {\n"
    "  %t1: f32[3,2] = Transpose(%x) {perm = [1, 0]}\n  %t2: f32[3,2] = Transpose(%x) {perm = [1, 0]}\n"
    "  %y1: f32[3,2] = Neg(%t1)\n  %y2: f32[3,2] = Neg(%t2)\n"
    "}\n";

static const char k_views_out[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[2,3], %y2: f32[2,3]) {\n"
    "  %s1: i64[2] = const [2, 3]\n  %s2: i64[2] = const [2, 3]\n"
    "  %y1: f32[2,3] = Reshape(%x, %s1)\n  %y2: f32[2,3] = Reshape(%x, %s2)\n"
    "}\n";

static const char k_random[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[6], %y2: f32[6]) {\n"
    "  %y1: f32[6] = RandomNormalLike(%x)\n  %y2: f32[6] = RandomNormalLike(%x)\n"
    "}\n";

static const char k_dropout[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[6], %y2: f32[6]) {\n"
    "  %d1: f32[6] = Dropout(%x)\n  %d2: f32[6] = Dropout(%x)\n"
    "  %y1: f32[6] = Softmax(%d1)\n  %y2: f32[6] = Softmax(%d2)\n"
    "}\n";

static const char k_outputs[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[6], %y2: f32[6]) {\n"
    "  %y1: f32[6] = Softmax(%x)\n  %y2: f32[6] = Softmax(%x)\n"
    "}\n";

static void check_counts(const char *what, const char *text, const char *op, int want) {
  fir_model_t *m = parse_passed(text);
  if (!m) return;
  CHECK(count_op(m, op) == want, "%s: %d %s nodes (want %d)", what, count_op(m, op), op, want);
  fir_model_destroy(m);
}

/* Runs k_views on the cpu: each output against minus NumPy's softmax of x as [2,3]. */
static void check_values(void) {
  flagos_bundle_t *b;
  flagos_session_t *s;
  flagos_status_t st = text_session(k_views, "cpu", "cpu", &b, &s);
  float x[6] = {0.5f, -1, 2, 0, 1.5f, -0.25f};
  static const int64_t dims[1] = {6};
  flagos_value_t in = tensor_of(FLAGOS_FLOAT32, x, 1, dims), out[3];
  memset(out, 0, sizeof out);
  if (!st) st = flagos_session_run(s, &in, 1, out, 3);
  CHECK(!st, "run: %s", st ? flagos_status_message(st) : "");
  for (int k = 0; k < 3 && !st; k++) {
    const float *y = out[k].tensor.data;
    if (!y || flagos_tensor_numel(&out[k].tensor) != 6) {
      CHECK(false, "output %d: wrong size", k);
      continue;
    }
    int bad = 0;
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 3; j++) {
        double num, den = 0;
        if (k < 2) { /* over the row */
          for (int t = 0; t < 3; t++) den += exp(x[i * 3 + t]);
        } else { /* over the column */
          for (int t = 0; t < 2; t++) den += exp(x[t * 3 + j]);
        }
        num = exp(x[i * 3 + j]);
        bad += fabs(y[i * 3 + j] + num / den) > 1e-6;
      }
    CHECK(bad == 0, "output %d: NumPy's softmax (%d off)", k, bad);
  }
  flagos_status_free(st);
  for (int k = 0; k < 3; k++) flagos_value_clear(&out[k]);
  text_close(b, s);
}

int main(void) {
  setenv("FLAGOS_FUSE", "0", 1);
  check_counts("three views by equal shape constants", k_views, "Reshape", 1);
  check_counts("the Softmaxes of the one view", k_views, "Softmax", 3);
  check_counts("another attribute", k_allowzero, "Reshape", 2);
  check_counts("another shape constant", k_other_shape, "Reshape", 2);
  check_counts("views that are graph outputs", k_views_out, "Reshape", 2);
  check_counts("two Transposes of one input", k_transposes, "Transpose", 2);
  check_counts("a random operator", k_random, "RandomNormalLike", 2);
  check_counts("Dropout", k_dropout, "Dropout", 2);
  check_counts("computing repeats that are graph outputs", k_outputs, "Softmax", 2);
  setenv("FLAGOS_CSE", "0", 1);
  check_counts("FLAGOS_CSE=0", k_views, "Reshape", 3);
  unsetenv("FLAGOS_CSE");
  check_values();
  printf("test_cse: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
