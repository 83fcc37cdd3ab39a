/* Declared shapes against inferred ones (src/passes/infer.c):
 * (a) an intermediate value declared with a static shape its node does not
 *     compute (as torch 2.5's dynamo exporter declares the CPU flash
 *     attention's logsumexp) compiles: the inferred shape is used, a warning
 *     names the value, and the model runs on the cpu with the right values;
 * (b) a graph output declared so is an error naming the output and both
 *     shapes;
 * (c) an intermediate declared with another dtype is an error;
 * (d) after a mismatched dim, a later dim that inference leaves open still
 *     takes the declared value. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "fir_util.h"
#include "passes/passes.h"
#include "run_text.h"

/* e is Expand(0, [2,3]) declared [3,2]; y = x + e + 1 */
static const char k_intermediate[] =
    "flagir 1\nir_version 8\nopset \"\" 17\n"
    "graph \"g\" (%x: f32[2,3]) -> (%y: f32[2,3]) {\n"
    "  %z: f32[] = const [0]\n  %one: f32[] = const [1]\n  %s: i64[2] = const [2, 3]\n"
    "  %e: f32[3,2] = Expand \"ex\" (%z, %s)\n"
    "  %a: f32[2,3] = Add(%x, %e)\n"
    "  %y: f32[2,3] = Add(%a, %one)\n"
    "}\n";

static const char k_output[] =
    "flagir 1\nir_version 8\nopset \"\" 17\n"
    "graph \"g\" (%x: f32[2,3]) -> (%y: f32[3,2]) {\n"
    "  %one: f32[] = const [1]\n"
    "  %y: f32[3,2] = Add \"add\" (%x, %one)\n"
    "}\n";

static const char k_dtype[] =
    "flagir 1\nir_version 8\nopset \"\" 17\n"
    "graph \"g\" (%x: f32[2,3]) -> (%y: f32[2,3]) {\n"
    "  %one: f32[] = const [1]\n"
    "  %a: f16[2,3] = Add \"add\" (%x, %one)\n"
    "  %y: f32[2,3] = Neg(%a)\n"
    "}\n";

static void check_intermediate(void) {
  fir_model_t *m = parse(k_intermediate);
  if (!m) return;
  flagos_status_t st = pass_run_default(m, NULL);
  CHECK(!st, "an intermediate declared with another shape compiles (%s)", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  const fir_value_t *e = fir_graph_lookup(m->graph, "e");
  CHECK(!e || (e->type->rank == 2 && e->type->dims[0].value == 2 && e->type->dims[1].value == 3),
        "the intermediate takes the inferred shape [2,3]");
  fir_model_destroy(m);
  flagos_bundle_t *b;
  flagos_session_t *s;
  st = text_session(k_intermediate, "cpu", "cpu", &b, &s);
  float x[6] = {0, 1, 2, 3, 4, 5};
  static const int64_t dims[2] = {2, 3};
  flagos_value_t in = tensor_of(FLAGOS_FLOAT32, x, 2, dims), out;
  memset(&out, 0, sizeof out);
  if (!st) st = flagos_session_run(s, &in, 1, &out, 1);
  CHECK(!st, "it runs: %s", st ? flagos_status_message(st) : "");
  if (!st && out.tensor.data && flagos_tensor_numel(&out.tensor) == 6) {
    const float *y = out.tensor.data;
    int bad = 0;
    for (int i = 0; i < 6; i++) bad += y[i] != x[i] + 1;
    CHECK(bad == 0, "y = x + 1 (%d wrong)", bad);
  }
  flagos_status_free(st);
  flagos_value_clear(&out);
  text_close(b, s);
}

/* t is declared [3,8]; inferred [2,?]: the mismatch warns, and the second dim,
 * which inference leaves open, still takes the declared 8 */
static const char k_later_dims[] =
    "flagir 1\nir_version 8\nopset \"\" 17\n"
    "graph \"g\" (%x: f32[2,N]) -> (%y: f32[2,?]) {\n"
    "  %t: f32[3,8] = Concat \"cat\" (%x, %x) {axis = 1}\n"
    "  %y: f32[2,?] = Neg(%t)\n"
    "}\n";

static void check_later_dims(void) {
  fir_model_t *m = parse(k_later_dims);
  if (!m) return;
  flagos_status_t st = pass_infer_types(m);
  CHECK(!st, "later dims: inference passes (%s)", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  const fir_value_t *t = fir_graph_lookup(m->graph, "t");
  CHECK(t && t->type->rank == 2 && t->type->dims[0].value == 2 && t->type->dims[1].value == 8,
        "later dims: t is [2,8] (the inferred 2, the declared 8)");
  fir_model_destroy(m);
}

static void check_error(const char *text, const char *what, const char *const *words, int n_words) {
  fir_model_t *m = parse(text);
  if (!m) return;
  flagos_status_t st = pass_run_default(m, NULL);
  const char *msg = st ? flagos_status_message(st) : "";
  int missing = 0;
  for (int i = 0; i < n_words; i++) missing += strstr(msg, words[i]) == NULL;
  CHECK(st && missing == 0, "%s: an error naming it (%s)", what, st ? msg : "none");
  flagos_status_free(st);
  fir_model_destroy(m);
}

int main(void) {
  check_intermediate();
  check_later_dims();
  static const char *const out_words[] = {"'y'", "[2,3]", "[3,2]"};
  check_error(k_output, "a graph output declared with another shape", out_words, 3);
  static const char *const dt_words[] = {"'a'", "f32", "f16"};
  check_error(k_dtype, "an intermediate declared with another dtype", dt_words, 3);
  printf("test_declared_shapes: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
