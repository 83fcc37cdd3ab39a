/* Folding and the constants it leaves (src/passes/fold.c, src/passes/dce.c):
 * (a) CastLike(constant, x) becomes a Cast and folds with the Sqrt after it
 *     (PyTorch's dynamo exporter computes attention's scale so): one node
 *     is left, and the cpu gives x * 2;
 * (b) CastLike(x, like) with x computed becomes Cast(x, to = like's type),
 *     which the cpu runs (f16 in, f32 out);
 * (c) a Transpose of a constant of more than a million elements that it alone
 *     reads folds (its output replaces the constant), and the constant leaves
 *     the graph; read by another node too, it stays a Transpose; a Cast of it
 *     to f32 (four times its bytes) stays a Cast;
 * (d) initializers nothing reads leave the graph, graph inputs' defaults stay
 *     (read or not);
 * (e) the shape constant of a view that CSE dropped leaves the graph (the
 *     dead-code pass after the fusion passes).
 * FLAGOS_FUSE=0 throughout, so that the node counts are the passes' alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fir_util.h"
#include "passes/passes.h"
#include "run_text.h"

#define HEAD "flagir 1\nir_version 8\nopset \"\" 17\n"

static const char k_scale[] = HEAD
    "graph \"g\" (%x: f16[2,3]) -> (%y: f16[2,3]) {\n"
    "  %c: i64[1] = const [4]\n"
    "  %l: f16[1] = CastLike(%c, %x)\n"
    "  %s: f16[1] = Sqrt(%l)\n"
    "  %y: f16[2,3] = Mul(%x, %s)\n"
    "}\n";

static const char k_like[] = HEAD
    "graph \"g\" (%x: f16[3], %like: f32[1]) -> (%y: f32[3]) {\n"
    "  %n: f16[3] = Neg(%x)\n"
    "  %y: f32[3] = CastLike(%n, %like)\n"
    "}\n";

static const char k_unread[] = HEAD
    "graph \"g\" (%x: f32[3], %d: f32[3], %e: f32[3]) -> (%y: f32[3]) {\n"
    "  %d = default tensor<f32[3]> [1.0, 2.0, 3.0]\n"
    "  %e = default tensor<f32[3]> [7.0, 8.0, 9.0]\n"
    "  %u: f32[3] = const [4.0, 5.0, 6.0]\n"
    "  %y: f32[3] = Add(%x, %d)\n"
    "}\n";

static const char k_views[] = HEAD
    "graph \"g\" (%x: f32[6]) -> (%y1: f32[2,3], %y2: f32[2,3]) {\n"
    "  %s1: i64[2] = const [2, 3]\n  %s2: i64[2] = const [2, 3]\n"
    "  %v1: f32[2,3] = Reshape(%x, %s1)\n  %v2: f32[2,3] = Reshape(%x, %s2)\n"
    "  %y1: f32[2,3] = Neg(%v1)\n  %y2: f32[2,3] = Neg(%v2)\n"
    "}\n";

static uint16_t half_of(float f) { /* exact for the small integers used here */
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(((u >> 16) & 0x8000) | ((((u >> 23) & 0xff) - 112) << 10) | ((u >> 13) & 0x3ff));
}

static float float_of(uint16_t h) {
  uint32_t u = ((uint32_t)(h & 0x8000) << 16) | ((uint32_t)(((h >> 10) & 0x1f) + 112) << 23) | ((uint32_t)(h & 0x3ff) << 13);
  float f;
  memcpy(&f, &u, 4);
  return (h & 0x7fff) ? f : 0.0f;
}

/* (a) */
static void check_scale(void) {
  fir_model_t *m = parse_passed(k_scale);
  if (m) {
    CHECK(m->graph->n_nodes == 1 && count_op(m, "Mul") == 1, "scale: %d nodes left (want the Mul alone)",
          m->graph->n_nodes);
    CHECK(count_op(m, "CastLike") == 0 && count_op(m, "Sqrt") == 0, "scale: CastLike and Sqrt folded");
    fir_model_destroy(m);
  }
  flagos_bundle_t *b;
  flagos_session_t *s;
  flagos_status_t st = text_session(k_scale, "cpu", "cpu", &b, &s);
  static const float xs[6] = {1, -2, 3, 0.5f, 8, -0.25f};
  uint16_t x[6];
  for (int i = 0; i < 6; i++) x[i] = half_of(xs[i]);
  static const int64_t dims[2] = {2, 3};
  flagos_value_t in = tensor_of(FLAGOS_FLOAT16, x, 2, dims), out;
  memset(&out, 0, sizeof out);
  if (!st) st = flagos_session_run(s, &in, 1, &out, 1);
  CHECK(!st, "scale: run: %s", st ? flagos_status_message(st) : "");
  if (!st) {
    const uint16_t *y = out.tensor.data;
    int bad = 0;
    for (int i = 0; i < 6; i++) bad += float_of(y[i]) != 2 * xs[i];
    CHECK(bad == 0, "scale: y = 2 x (%d off)", bad);
  }
  flagos_status_free(st);
  flagos_value_clear(&out);
  text_close(b, s);
}

/* (b) */
static void check_like(void) {
  fir_model_t *m = parse_passed(k_like);
  if (m) {
    const fir_node_t *n = find_op(m, "Cast");
    CHECK(n && n->n_inputs == 1 && fir_attr_int(n, "to", 0) == FLAGOS_FLOAT32,
          "like: CastLike(x, f32) is Cast(x, to = float)");
    CHECK(count_op(m, "CastLike") == 0, "like: no CastLike left");
    fir_model_destroy(m);
  }
  flagos_bundle_t *b;
  flagos_session_t *s;
  flagos_status_t st = text_session(k_like, "cpu", "cpu", &b, &s);
  uint16_t x[3] = {half_of(1.5f), half_of(-2), half_of(0.25f)};
  float like = 7;
  static const int64_t d3[1] = {3}, d1[1] = {1};
  flagos_value_t in[2] = {tensor_of(FLAGOS_FLOAT16, x, 1, d3), tensor_of(FLAGOS_FLOAT32, &like, 1, d1)}, out;
  memset(&out, 0, sizeof out);
  if (!st) st = flagos_session_run(s, in, 2, &out, 1);
  CHECK(!st, "like: run: %s", st ? flagos_status_message(st) : "");
  if (!st) {
    const float *y = out.tensor.data;
    CHECK(out.tensor.dtype == FLAGOS_FLOAT32 && y[0] == -1.5f && y[1] == 2 && y[2] == -0.25f,
          "like: y = float(-x)");
  }
  flagos_status_free(st);
  flagos_value_clear(&out);
  text_close(b, s);
}

/* (c): W u8[R,C] with W[i][j] = (7i + 13j) mod 256, R C > 2^20; T = Transpose(W),
 * y = Add(T, x); with `shared`, a second output Add(W, W) reads W too; with
 * `widen`, T = Cast(W) to f32 instead (x f32[R,C]). */
enum { R = 1025, C = 1024 };

static char *transpose_text(bool shared, bool widen) {
  size_t cap = (size_t)R * C * 2 + 1024;
  char *t = malloc(cap);
  if (!t) return NULL;
  int o = widen ? snprintf(t, cap, HEAD "graph \"g\" (%%x: f32[%d,%d]) -> (%%y: f32[%d,%d]) {\n", R, C, R, C)
                : snprintf(t, cap, HEAD "graph \"g\" (%%x: u8[%d,%d]) -> (%%y: u8[%d,%d]%s) {\n", C, R, C, R,
                           shared ? ", %w2: u8[1025,1024]" : "");
  o += snprintf(t + o, cap - (size_t)o, "  %%W: u8[%d,%d] = const dense<\"", R, C);
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < R; i++)
    for (int j = 0; j < C; j++) {
      unsigned v = (unsigned)(7 * i + 13 * j) & 255u;
      t[o++] = hex[v >> 4];
      t[o++] = hex[v & 15];
    }
  if (widen) {
    snprintf(t + o, cap - (size_t)o, "\">\n  %%T: f32[%d,%d] = Cast(%%W) {to = 1}\n  %%y: f32[%d,%d] = Add(%%T, %%x)\n}\n",
             R, C, R, C);
    return t;
  }
  snprintf(t + o, cap - (size_t)o,
           "\">\n  %%T: u8[%d,%d] = Transpose(%%W) {perm = [1, 0]}\n  %%y: u8[%d,%d] = Add(%%T, %%x)\n%s}\n", C, R, C,
           R, shared ? "  %w2: u8[1025,1024] = Add(%W, %W)\n" : "");
  return t;
}

static void check_transpose(bool shared) {
  const char *what = shared ? "a weight read twice" : "a weight read once";
  char *text = transpose_text(shared, false);
  fir_model_t *m = text ? parse_passed(text) : NULL;
  free(text);
  if (!m) {
    CHECK(false, "%s: no model", what);
    return;
  }
  CHECK(count_op(m, "Transpose") == (shared ? 1 : 0), "%s: %d Transposes (want %d)", what,
        count_op(m, "Transpose"), shared ? 1 : 0);
  CHECK((fir_graph_lookup(m->graph, "W") != NULL) == shared, "%s: the weight %s the graph", what, shared ? "stays in" : "leaves");
  const fir_value_t *t = fir_graph_lookup(m->graph, "T");
  if (!shared) {
    bool ok = t && t->init && t->init->rank == 2 && t->init->dims[0] == C && t->init->dims[1] == R;
    CHECK(ok, "%s: T is a constant [%d, %d]", what, C, R);
    int bad = 0;
    for (int j = 0; ok && j < C; j += 97)
      for (int i = 0; i < R; i += 89)
        bad += ((const uint8_t *)t->init->data)[(size_t)j * R + i] != (uint8_t)((7 * i + 13 * j) & 255);
    CHECK(ok && bad == 0, "%s: T[j][i] = W[i][j] (%d off)", what, bad);
  }
  fir_model_destroy(m);
}

/* (c): a Cast to four times the bytes is not folded past the limit */
static void check_widen(void) {
  char *text = transpose_text(false, true);
  fir_model_t *m = text ? parse_passed(text) : NULL;
  free(text);
  if (!m) {
    CHECK(false, "widen: no model");
    return;
  }
  CHECK(count_op(m, "Cast") == 1 && fir_graph_lookup(m->graph, "W") != NULL, "widen: the Cast to f32 stays, the weight too");
  fir_model_destroy(m);
}

/* (d) */
static void check_unread(void) {
  fir_model_t *m = parse_passed(k_unread);
  if (!m) return;
  CHECK(fir_graph_lookup(m->graph, "u") == NULL, "unread: the unread initializer leaves the graph");
  const fir_value_t *d = fir_graph_lookup(m->graph, "d"), *e = fir_graph_lookup(m->graph, "e");
  CHECK(d && d->init, "unread: the read graph input's default stays");
  CHECK(e && e->init, "unread: the unread graph input's default stays");
  fir_model_destroy(m);
}

/* (e) */
static void check_views(void) {
  fir_model_t *m = parse_passed(k_views);
  if (!m) return;
  int left = (fir_graph_lookup(m->graph, "s1") != NULL) + (fir_graph_lookup(m->graph, "s2") != NULL);
  CHECK(count_op(m, "Reshape") == 1 && left == 1, "views: one Reshape and one shape constant left (%d)", left);
  fir_model_destroy(m);
}

int main(void) {
  setenv("FLAGOS_FUSE", "0", 1);
  check_scale();
  check_like();
  check_transpose(false);
  check_transpose(true);
  check_widen();
  check_unread();
  check_views();
  printf("test_fold_weights: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
