/* Sibling products (src/passes/merge_products.c, docs/fusion.md):
 * (a) three MatMul + Add(bias) of one input A [2,3,4] by constant W [4,3]
 *     (BERT's query, key and value, small) become one MatMulBias of A by
 *     [4,9] (the three side by side, the biases end to end) and one Split;
 *     the old constants leave the graph; the merged constant's entries are
 *     the old ones at their new places;
 * (b) products sharing one bias merge (the bias leaves the graph unless
 *     another node reads it); a group of two merges and a third product stays when it has no bias;
 *     nothing merges for products of different inputs, of matrices of other
 *     shapes, of a matrix read by another node too or given as a graph input,
 *     nor with FLAGOS_FUSE_MERGE=0 or FLAGOS_FUSE=0;
 * (c) compiled and run on the cpu (and on opencl and cuda where present), the
 *     three outputs equal a double-precision loop over the text's constants,
 *     in f32 and (plain MatMul siblings) in f16;
 * (d) three Gemms with transB (a Linear of a 2-D input) of three views of one
 *     input: the views become one (common subexpressions), the Gemms one with
 *     the matrices one under the other, and the outputs equal a loop;
 * (e) names of 260 characters that share their first 255: two merges, each
 *     with names of its own. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "fir_util.h"
#include "passes/passes.h"
#include "run_text.h"

enum { B = 2, S = 3, K = 4, N = 3, P = 3 };

static float w_of(int p, int k, int j) { return (float)((p * 5 + k * 3 + j * 7) % 9 - 4) * 0.25f; }
static float b_of(int p, int j) { return (float)(p * 3 + j) * 0.5f - 2.0f; }
static float a_of(int i) { return (float)((i * 5) % 13 - 6) * 0.125f; }

/* The model: P products of %a by constants %w<p> [K,N] (with biases %b<p>
 * when bias), their outputs the graph's outputs. dtype "f32" or "f16". */
static char *model(const char *dtype, bool bias) {
  size_t cap = 16384, len = 0;
  char *t = malloc(cap);
#define PUT(...) len += (size_t)snprintf(t + len, cap - len, __VA_ARGS__)
  PUT("flagir 1\nir_version 8\nopset \"\" 17\n");
  PUT("graph \"g\" (%%a: %s[%d,%d,%d]) -> (%%y0: %s[%d,%d,%d], %%y1: %s[%d,%d,%d], %%y2: %s[%d,%d,%d]) {\n", dtype, B, S,
      K, dtype, B, S, N, dtype, B, S, N, dtype, B, S, N);
  for (int p = 0; p < P; p++) {
    bool half = strcmp(dtype, "f16") == 0; /* f16 constants are written as their bytes */
    PUT("  %%w%d: %s[%d,%d] = const %s", p, dtype, K, N, half ? "dense<\"" : "[");
    for (int k = 0; k < K; k++)
      for (int j = 0; j < N; j++) {
        uint16_t h = fl_f32_to_f16(w_of(p, k, j));
        if (half) PUT("%02x%02x", h & 0xff, h >> 8);
        else PUT("%s%g", k + j ? ", " : "", w_of(p, k, j));
      }
    PUT("%s\n", half ? "\">" : "]");
    if (bias) {
      PUT("  %%b%d: %s[%d] = const [", p, dtype, N);
      for (int j = 0; j < N; j++) PUT("%s%g", j ? ", " : "", b_of(p, j));
      PUT("]\n");
      PUT("  %%m%d: %s[%d,%d,%d] = MatMul \"mm%d\" (%%a, %%w%d)\n", p, dtype, B, S, N, p, p);
      PUT("  %%y%d: %s[%d,%d,%d] = Add \"add%d\" (%%m%d, %%b%d)\n", p, dtype, B, S, N, p, p, p);
    } else {
      PUT("  %%y%d: %s[%d,%d,%d] = MatMul \"mm%d\" (%%a, %%w%d)\n", p, dtype, B, S, N, p, p);
    }
  }
  PUT("}\n");
#undef PUT
  return t;
}

static void check_merged(void) {
  char *text = model("f32", true);
  fir_model_t *m = parse_passed(text);
  free(text);
  if (!m) return;
  const fir_node_t *mb = find_op(m, "MatMulBias"), *sp = find_op(m, "Split");
  CHECK(count_op(m, "MatMulBias") == 1 && count_op(m, "Split") == 1 && m->graph->n_nodes == 2,
        "one MatMulBias and one Split (%d nodes)", m->graph->n_nodes);
  for (int p = 0; p < P; p++) {
    char w[8], b[8];
    snprintf(w, sizeof w, "w%d", p);
    snprintf(b, sizeof b, "b%d", p);
    CHECK(!fir_graph_lookup(m->graph, w) && !fir_graph_lookup(m->graph, b), "constants %s and %s left the graph", w, b);
  }
  if (!mb || !sp) {
    fir_model_destroy(m);
    return;
  }
  const fir_value_t *w = mb->inputs[1], *bias = mb->inputs[2];
  CHECK(w->init && w->init->rank == 2 && w->init->dims[0] == K && w->init->dims[1] == P * N, "the merged matrix is [%d,%d]",
        K, P * N);
  CHECK(bias->init && bias->init->numel == P * N, "the merged bias holds %d values", P * N);
  if (w->init && w->init->numel == K * P * N && bias->init && bias->init->numel == P * N) {
    const float *wd = w->init->data, *bd = bias->init->data;
    int bad = 0;
    for (int p = 0; p < P; p++)
      for (int j = 0; j < N; j++) {
        bad += bd[p * N + j] != b_of(p, j);
        for (int k = 0; k < K; k++) bad += wd[k * P * N + p * N + j] != w_of(p, k, j);
      }
    CHECK(bad == 0, "the merged constants hold the old ones side by side (%d misplaced)", bad);
  }
  CHECK(sp->n_outputs == P && fir_attr_int(sp, "axis", -9) == 2, "the Split cuts the last axis in %d", P);
  for (int p = 0; p < P && sp->n_outputs == P; p++) {
    char y[8];
    snprintf(y, sizeof y, "y%d", p);
    CHECK(sp->outputs[p] && strcmp(sp->outputs[p]->name, y) == 0, "the Split's output %d is %s", p, y);
  }
  fir_model_destroy(m);
}

/* Cases where nothing (or less) merges: want_mb MatMulBias, want_mm MatMul and
 * want_split Split nodes after the passes. */
static void check_refused(void) {
  static const struct {
    const char *what, *text;
    int mb, mm, split;
  } cases[] = {
      {"different inputs",
       "flagir 1\nir_version 8\nopset \"\" 17\n"
       "graph \"g\" (%a: f32[3,4], %c: f32[3,4]) -> (%y0: f32[3,2], %y1: f32[3,2]) {\n"
       "  %w0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %w1: f32[4,2] = const [8, 7, 6, 5, 4, 3, 2, 1]\n"
       "  %y0: f32[3,2] = MatMul(%a, %w0)\n  %y1: f32[3,2] = MatMul(%c, %w1)\n}\n",
       0, 2, 0},
      {"matrices of other shapes",
       "flagir 1\nir_version 8\nopset \"\" 17\n"
       "graph \"g\" (%a: f32[3,4]) -> (%y0: f32[3,2], %y1: f32[3,1]) {\n"
       "  %w0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %w1: f32[4,1] = const [8, 7, 6, 5]\n"
       "  %y0: f32[3,2] = MatMul(%a, %w0)\n  %y1: f32[3,1] = MatMul(%a, %w1)\n}\n",
       0, 2, 0},
      {"a matrix another node reads",
       "flagir 1\nir_version 8\nopset \"\" 17\n"
       "graph \"g\" (%a: f32[3,4], %c: f32[4,2]) -> (%y0: f32[3,2], %y1: f32[3,2], %z: f32[4,2]) {\n"
       "  %w0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %w1: f32[4,2] = const [8, 7, 6, 5, 4, 3, 2, 1]\n"
       "  %y0: f32[3,2] = MatMul(%a, %w0)\n  %y1: f32[3,2] = MatMul(%a, %w1)\n  %z: f32[4,2] = Mul(%w1, %c)\n}\n",
       0, 2, 0},
      {"a matrix given as a graph input",
       "flagir 1\nir_version 8\nopset \"\" 17\n"
       "graph \"g\" (%a: f32[3,4], %w1: f32[4,2]) -> (%y0: f32[3,2], %y1: f32[3,2]) {\n"
       "  %w0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n"
       "  %y0: f32[3,2] = MatMul(%a, %w0)\n  %y1: f32[3,2] = MatMul(%a, %w1)\n}\n",
       0, 2, 0},
      {"two with a bias, one without",
       "flagir 1\nir_version 8\nopset \"\" 17\n"
       "graph \"g\" (%a: f32[3,4]) -> (%y0: f32[3,2], %y1: f32[3,2], %y2: f32[3,2]) {\n"
       "  %w0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %w1: f32[4,2] = const [8, 7, 6, 5, 4, 3, 2, 1]\n"
       "  %w2: f32[4,2] = const [1, 1, 2, 2, 3, 3, 4, 4]\n"
       "  %b0: f32[2] = const [1, 2]\n  %b1: f32[2] = const [3, 4]\n"
       "  %m0: f32[3,2] = MatMul(%a, %w0)\n  %y0: f32[3,2] = Add(%m0, %b0)\n"
       "  %m1: f32[3,2] = MatMul(%a, %w1)\n  %y1: f32[3,2] = Add(%m1, %b1)\n"
       "  %y2: f32[3,2] = MatMul(%a, %w2)\n}\n",
       1, 1, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fir_model_t *m = parse_passed(cases[i].text);
    if (!m) continue;
    int mb = count_op(m, "MatMulBias"), mm = count_op(m, "MatMul"), sp = count_op(m, "Split");
    CHECK(mb == cases[i].mb && mm == cases[i].mm && sp == cases[i].split,
          "%s: %d MatMulBias, %d MatMul, %d Split (want %d, %d, %d)", cases[i].what, mb, mm, sp, cases[i].mb,
          cases[i].mm, cases[i].split);
    fir_model_destroy(m);
  }
  static const char *const off[2] = {"FLAGOS_FUSE_MERGE", "FLAGOS_FUSE"};
  for (int i = 0; i < 2; i++) {
    setenv(off[i], "0", 1);
    char *text = model("f32", true);
    fir_model_t *m = parse_passed(text);
    free(text);
    if (m) {
      CHECK(count_op(m, "Split") == 0 && count_op(m, "MatMulBias") + count_op(m, "MatMul") == P,
            "%s=0 leaves the %d products apart", off[i], P);
      fir_model_destroy(m);
    }
    unsetenv(off[i]);
  }
}

/* One bias shared by the products (PyTorch's exporter stores equal biases
 * once): they merge, and the bias leaves the graph unless another node reads it. */
static void check_shared_bias(void) {
  static const char *const texts[2] = {
      "flagir 1\nir_version 8\nopset \"\" 17\n"
      "graph \"g\" (%a: f32[3,4]) -> (%y0: f32[3,2], %y1: f32[3,2]) {\n"
      "  %w0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %w1: f32[4,2] = const [8, 7, 6, 5, 4, 3, 2, 1]\n"
      "  %b: f32[2] = const [0.5, -1]\n"
      "  %m0: f32[3,2] = MatMul(%a, %w0)\n  %y0: f32[3,2] = Add(%m0, %b)\n"
      "  %m1: f32[3,2] = MatMul(%a, %w1)\n  %y1: f32[3,2] = Add(%m1, %b)\n}\n",
      "flagir 1\nir_version 8\nopset \"\" 17\n"
      "graph \"g\" (%a: f32[3,4], %c: f32[2]) -> (%y0: f32[3,2], %y1: f32[3,2], %z: f32[2]) {\n"
      "  %w0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %w1: f32[4,2] = const [8, 7, 6, 5, 4, 3, 2, 1]\n"
      "  %b: f32[2] = const [0.5, -1]\n"
      "  %m0: f32[3,2] = MatMul(%a, %w0)\n  %y0: f32[3,2] = Add(%m0, %b)\n"
      "  %m1: f32[3,2] = MatMul(%a, %w1)\n  %y1: f32[3,2] = Add(%m1, %b)\n  %z: f32[2] = Mul(%b, %c)\n}\n",
  };
  for (int i = 0; i < 2; i++) {
    fir_model_t *m = parse_passed(texts[i]);
    if (!m) continue;
    const fir_node_t *mb = find_op(m, "MatMulBias");
    CHECK(count_op(m, "MatMulBias") == 1 && count_op(m, "Split") == 1, "shared bias %d: the products merge", i);
    CHECK((fir_graph_lookup(m->graph, "b") != NULL) == (i == 1), "shared bias %d: the bias %s", i,
          i ? "stays for its other reader" : "leaves the graph");
    if (mb && mb->inputs[2]->init && mb->inputs[2]->init->numel == 4) {
      const float *d = mb->inputs[2]->init->data;
      CHECK(d[0] == 0.5f && d[1] == -1 && d[2] == 0.5f && d[3] == -1, "shared bias %d: copied for each product", i);
    }
    fir_model_destroy(m);
  }
}

/* Runs the model on device: the P outputs against a double-precision loop. */
static void check_values(const char *target, const char *device, bool half) {
  char *text = model(half ? "f16" : "f32", !half);
  flagos_bundle_t *b;
  flagos_session_t *s;
  flagos_status_t st = text_session(text, target, device, &b, &s);
  free(text);
  if (st && strcmp(target, "cpu") != 0) { /* no such device here */
    if (!half) printf("test_merge_products: %s skipped (%s)\n", target, flagos_status_message(st));
    flagos_status_free(st);
    text_close(b, s);
    return;
  }
  float af[B * S * K];
  uint16_t ah[B * S * K];
  for (int i = 0; i < B * S * K; i++) {
    af[i] = a_of(i);
    ah[i] = fl_f32_to_f16(af[i]);
  }
  static const int64_t adims[3] = {B, S, K};
  flagos_value_t in = tensor_of(half ? FLAGOS_FLOAT16 : FLAGOS_FLOAT32, half ? (void *)ah : (void *)af, 3, adims),
                 out[P];
  memset(out, 0, sizeof out);
  if (!st) st = flagos_session_run(s, &in, 1, out, P);
  CHECK(!st, "%s%s: %s", device, half ? " f16" : "", st ? flagos_status_message(st) : "");
  for (int p = 0; p < P && !st; p++) {
    const flagos_tensor_t *y = &out[p].tensor;
    if (!y->data || flagos_tensor_numel(y) != B * S * N || y->dtype != in.tensor.dtype) {
      CHECK(false, "%s: output %d has the wrong size or type", device, p);
      continue;
    }
    int bad = 0;
    double worst = 0;
    for (int r = 0; r < B * S; r++)
      for (int j = 0; j < N; j++) {
        double want = half ? 0 : b_of(p, j);
        for (int k = 0; k < K; k++) want += (double)af[r * K + k] * w_of(p, k, j);
        int i = r * N + j;
        double got = half ? fl_f16_to_f32(((const uint16_t *)y->data)[i]) : ((const float *)y->data)[i];
        double err = fabs(got - want), tol = half ? 4e-3 * (1 + fabs(want)) : 1e-6 * (1 + fabs(want));
        if (err > worst) worst = err;
        bad += !(err <= tol);
      }
    CHECK(bad == 0, "%s%s: output %d equals the loop (%d off, worst %g)", device, half ? " f16" : "", p, bad, worst);
  }
  flagos_status_free(st);
  for (int p = 0; p < P; p++) flagos_value_clear(&out[p]);
  text_close(b, s);
}

/* Gemm with transB, as PyTorch's exporters write a Linear of a 2-D input, on
 * three views of one input (a Reshape each, by shape constants of their own):
 * the views become one (common subexpressions), then the three Gemms one, with
 * the matrices [2,4] one under the other, [6,4]; the outputs against a loop. */
static const char k_gemm[] =
    "flagir 1\nir_version 8\nopset \"\" 17\n"
    "graph \"g\" (%x: f32[1,3,4]) -> (%y0: f32[3,2], %y1: f32[3,2], %y2: f32[3,2]) {\n"
    "  %s0: i64[2] = const [3, 4]\n  %s1: i64[2] = const [3, 4]\n  %s2: i64[2] = const [3, 4]\n"
    "  %w0: f32[2,4] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %w1: f32[2,4] = const [-1, 0, 1, 0, 2, 2, -2, 1]\n"
    "  %w2: f32[2,4] = const [0.5, 0, 0, 0.5, 1, -1, 1, -1]\n"
    "  %b0: f32[2] = const [1, -1]\n  %b1: f32[2] = const [0.5, 0.25]\n  %b2: f32[2] = const [0, 3]\n"
    "  %v0: f32[3,4] = Reshape(%x, %s0)\n  %v1: f32[3,4] = Reshape(%x, %s1)\n  %v2: f32[3,4] = Reshape(%x, %s2)\n"
    "  %y0: f32[3,2] = Gemm \"g0\" (%v0, %w0, %b0) {transB = 1}\n"
    "  %y1: f32[3,2] = Gemm \"g1\" (%v1, %w1, %b1) {transB = 1}\n"
    "  %y2: f32[3,2] = Gemm \"g2\" (%v2, %w2, %b2) {transB = 1}\n"
    "}\n";

static void check_gemm(const char *target, const char *device) {
  static const float w[3][8] = {{1, 2, 3, 4, 5, 6, 7, 8}, {-1, 0, 1, 0, 2, 2, -2, 1}, {0.5f, 0, 0, 0.5f, 1, -1, 1, -1}};
  static const float bias[3][2] = {{1, -1}, {0.5f, 0.25f}, {0, 3}};
  if (strcmp(target, "cpu") == 0) {
    fir_model_t *m = parse_passed(k_gemm);
    if (m) {
      CHECK(count_op(m, "Gemm") == 1 && count_op(m, "Split") == 1 && count_op(m, "Reshape") <= 1,
            "Gemm views: one Gemm and one Split (%d Gemm, %d Split, %d Reshape)", count_op(m, "Gemm"),
            count_op(m, "Split"), count_op(m, "Reshape"));
      const fir_node_t *gm = find_op(m, "Gemm");
      CHECK(gm && gm->inputs[1]->type->dims[0].value == 6 && gm->inputs[1]->type->dims[1].value == 4 &&
                fir_attr_int(gm, "transB", 0) == 1,
            "Gemm views: the merged matrix is [6,4], transposed");
      fir_model_destroy(m);
    }
  }
  flagos_bundle_t *b;
  flagos_session_t *s;
  flagos_status_t st = text_session(k_gemm, target, device, &b, &s);
  if (st && strcmp(target, "cpu") != 0) {
    flagos_status_free(st);
    text_close(b, s);
    return;
  }
  float x[12];
  for (int i = 0; i < 12; i++) x[i] = a_of(i);
  static const int64_t xdims[3] = {1, 3, 4};
  flagos_value_t in = tensor_of(FLAGOS_FLOAT32, x, 3, xdims), out[3];
  memset(out, 0, sizeof out);
  if (!st) st = flagos_session_run(s, &in, 1, out, 3);
  CHECK(!st, "Gemm views on %s: %s", device, st ? flagos_status_message(st) : "");
  for (int p = 0; p < 3 && !st; p++) {
    const float *y = out[p].tensor.data;
    if (!y || flagos_tensor_numel(&out[p].tensor) != 6) {
      CHECK(false, "Gemm views on %s: output %d has the wrong size", device, p);
      continue;
    }
    int bad = 0;
    for (int r = 0; r < 3; r++)
      for (int j = 0; j < 2; j++) {
        double want = bias[p][j];
        for (int k = 0; k < 4; k++) want += (double)x[r * 4 + k] * w[p][j * 4 + k];
        bad += fabs(y[r * 2 + j] - want) > 1e-6 * (1 + fabs(want));
      }
    CHECK(bad == 0, "Gemm views on %s: output %d equals the loop (%d off)", device, p, bad);
  }
  flagos_status_free(st);
  for (int p = 0; p < 3; p++) flagos_value_clear(&out[p]);
  text_close(b, s);
}

/* Names of 260 characters sharing all but their last: the merged constants'
 * and nodes still get names of their own (fresh names need room for their
 * suffix), and the pass ends. */
static void check_long_names(void) {
  char w[262], text[4096];
  memset(w, 'w', 260);
  w[260] = 0;
  snprintf(text, sizeof text,
           "flagir 1\nir_version 8\nopset \"\" 17\n"
           "graph \"g\" (%%a: f32[3,4], %%c: f32[3,4]) -> (%%y0: f32[3,2], %%y1: f32[3,2], %%y2: f32[3,2], %%y3: f32[3,2]) {\n"
           "  %%%s0: f32[4,2] = const [1, 2, 3, 4, 5, 6, 7, 8]\n  %%%s1: f32[4,2] = const [8, 7, 6, 5, 4, 3, 2, 1]\n"
           "  %%%s2: f32[4,2] = const [1, 1, 2, 2, 3, 3, 4, 4]\n  %%%s3: f32[4,2] = const [0, 1, 0, 1, 0, 1, 0, 1]\n"
           "  %%y0: f32[3,2] = MatMul \"%s_a\" (%%a, %%%s0)\n  %%y1: f32[3,2] = MatMul \"%s_b\" (%%a, %%%s1)\n"
           "  %%y2: f32[3,2] = MatMul \"%s_c\" (%%c, %%%s2)\n  %%y3: f32[3,2] = MatMul \"%s_d\" (%%c, %%%s3)\n}\n",
           w, w, w, w, w, w, w, w, w, w, w, w);
  fir_model_t *m = parse_passed(text);
  if (!m) return;
  CHECK(count_op(m, "MatMul") == 2 && count_op(m, "Split") == 2, "long names: two merges (%d MatMul, %d Split)",
        count_op(m, "MatMul"), count_op(m, "Split"));
  fir_model_destroy(m);
}

int main(void) {
  check_merged();
  check_refused();
  check_shared_bias();
  check_long_names();
  static const char *const targets[3] = {"cpu", "opencl", "cuda"};
  for (int t = 0; t < 3; t++) {
    check_values(targets[t], targets[t], false);
    check_values(targets[t], targets[t], true);
    check_gemm(targets[t], targets[t]);
  }
  printf("test_merge_products: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
