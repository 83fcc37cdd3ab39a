/* FlagIR text form and verifier: exact print/parse round trips (hand-built
 * models and every conformance model), printed text against hand-written
 * expectations, parse errors with line and column, robustness against damaged
 * text, and the verifier's checks and topological sort. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx_import.h"
#include "ir/ir.h"

static int g_fail;
#define CHECK(c)                                                                                                   \
  do {                                                                                                             \
    if (!(c)) {                                                                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                                        \
      g_fail++;                                                                                                    \
    }                                                                                                              \
  } while (0)

static char *print_model(const fir_model_t *m, bool inline_weights) {
  fl_buf_t b = {0};
  fir_print(&b, m, inline_weights);
  return fl_buf_take(&b);
}

static void show_diff(const char *want, const char *got) {
  size_t i = 0;
  while (want[i] && want[i] == got[i]) i++;
  size_t from = i > 60 ? i - 60 : 0;
  fprintf(stderr, "  differ at byte %zu\n  want: ...%.120s\n  got:  ...%.120s\n", i, want + from, got + from);
}

static bool same_text(const char *want, const char *got) {
  if (strcmp(want, got) == 0) return true;
  show_diff(want, got);
  return false;
}

/* print -> parse -> print must reproduce the text byte for byte; returns the parsed model. */
static fir_model_t *round_trip(const fir_model_t *m, bool inline_weights, const char *what) {
  char *t1 = print_model(m, inline_weights);
  fir_model_t *m2 = NULL;
  flagos_status_t st = fir_parse(t1, strlen(t1), &m2);
  if (st) {
    fprintf(stderr, "%s: parse of printed text failed: %s\n", what, flagos_status_message(st));
    flagos_status_free(st);
    g_fail++;
    free(t1);
    return NULL;
  }
  char *t2 = print_model(m2, inline_weights);
  if (!same_text(t1, t2)) {
    fprintf(stderr, "%s: round trip differs\n", what);
    g_fail++;
  }
  free(t1);
  free(t2);
  return m2;
}

/* ---- a hand-built model that uses every construct ---- */

/* Attribute arrays must live in the model's arena, not on the builder's stack. */
#define DUP(m, arr, n) fl_arena_memdup((m)->arena, (arr), sizeof((arr)[0]) * (n))

static fir_tensor_t *f32_tensor(fir_model_t *m, int rank, const int64_t *dims, const float *v) {
  fir_tensor_t *t = fir_tensor_create(m, FLAGOS_FLOAT32, rank, dims);
  memcpy(t->data, v, t->nbytes);
  return t;
}

static fir_value_t *init_value(fir_graph_t *g, const char *name, fir_tensor_t *t) {
  fir_model_t *m = g->model;
  fir_value_t *v = fir_value_create(g, name, fir_type_tensor(m, t->dtype, t->rank, t->dims));
  t->name = v->name;
  v->init = t;
  return v;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static const char k_weird[] = "a\"b\\c\n\t\x01\xff\0z"; /* 11 bytes, one of them NUL */

static fir_model_t *build_everything(void) {
  fir_model_t *m = fir_model_create();
  m->ir_version = 9;
  m->producer = "unit \"test\"\n";
  fir_model_set_opset(m, "", 17);
  fir_model_set_opset(m, "com.microsoft", 1);
  fir_graph_t *g = fir_graph_create(m, NULL, "main graph");
  m->graph = g;
  int64_t d345[] = {3, 4, 5}, d2[] = {2}, d3[] = {3}, d22[] = {2, 2};
  fir_value_t *x = fir_value_create(g, "x", fir_type_tensor(m, FLAGOS_FLOAT32, 3, d345));
  fir_type_t *ty = fir_type_tensor(m, FLAGOS_FLOAT32, 3, d345);
  ty->dims[1].value = -1; /* unknown */
  ty->dims[2].value = -1;
  ty->dims[2].sym = "N";
  fir_value_t *y = fir_value_create(g, "onnx::Add_1", ty);
  fir_type_t *tz = fir_type_tensor(m, FLAGOS_INT64, -1, NULL);
  fir_value_t *z = fir_value_create(g, "weird \"name\"", tz);
  fir_type_t *sq = fir_type_unknown(m);
  sq->kind = FIR_TYPE_SEQUENCE;
  sq->elem = fir_type_tensor(m, FLAGOS_FLOAT32, 1, NULL);
  sq->elem->dims[0].sym = "batch size";
  fir_value_t *s = fir_value_create(g, "s", sq);
  fir_type_t *op = fir_type_unknown(m);
  op->kind = FIR_TYPE_OPTIONAL;
  op->elem = fir_type_clone(m, sq);
  fir_value_t *o = fir_value_create(g, "o", op);
  fir_type_t *mp = fir_type_unknown(m);
  mp->kind = FIR_TYPE_MAP;
  mp->dtype = FLAGOS_STRING;
  mp->elem = fir_type_tensor(m, FLAGOS_BFLOAT16, 0, NULL);
  fir_value_t *mv = fir_value_create(g, "map", mp);
  fir_value_t *u = fir_value_create(g, "u", NULL);
  fir_value_t *cond = fir_value_create(g, "cond", fir_type_tensor(m, FLAGOS_BOOL, 0, NULL));
  fir_value_t *in_list[] = {x, y, z, s, o, mv, u, cond};
  for (size_t i = 0; i < FL_ARRAY_LEN(in_list); i++) fir_graph_add_input(g, in_list[i]);
  /* Initializers: inline, referenced, hex-only dtypes, strings, and an input default. */
  float wv[] = {1.0f, -2.5f};
  fir_value_t *w = init_value(g, "w", f32_tensor(m, 1, d2, wv));
  fir_tensor_t *big = fir_tensor_create(m, FLAGOS_FLOAT32, 2, d22);
  big->ref = 3;
  fir_value_t *wr = init_value(g, "w_ref", big);
  fir_tensor_t *h = fir_tensor_create(m, FLAGOS_FLOAT16, 1, d3);
  uint16_t hv[] = {0x3c00, 0x7e01, 0x8000};
  memcpy(h->data, hv, sizeof hv);
  init_value(g, "half", h);
  fir_tensor_t *st = fir_tensor_create(m, FLAGOS_STRING, 1, d2);
  ((char **)st->data)[0] = fl_arena_memdup(m->arena, k_weird, sizeof k_weird);
  st->string_lens[0] = sizeof k_weird - 1;
  ((char **)st->data)[1] = "";
  init_value(g, "strs", st);
  fir_tensor_t *i4 = fir_tensor_create(m, FLAGOS_INT4, 1, d2);
  ((int8_t *)i4->data)[0] = -8;
  ((int8_t *)i4->data)[1] = 7;
  fir_value_t *i4v = init_value(g, "i4", i4);
  i4v->type = fir_type_unknown(m); /* forces the tensor<...> header */
  fir_tensor_t *i64 = fir_tensor_create(m, FLAGOS_INT64, 0, NULL);
  *(int64_t *)i64->data = INT64_MIN;
  init_value(g, "scalar", i64);
  fir_value_t *dflt = fir_value_create(g, "d", fir_type_tensor(m, FLAGOS_FLOAT32, 1, d2));
  dflt->type->dims[0].value = -1; /* the default's shape is more precise than the input's */
  fir_graph_add_input(g, dflt);
  dflt->init = f32_tensor(m, 1, d2, wv);
  dflt->init->name = dflt->name;

  fir_value_t *sum = fir_value_create(g, "sum", fir_type_tensor(m, FLAGOS_FLOAT32, 3, d345));
  fir_node_create(g, "Add", "", "add0", 2, (fir_value_t *[]){x, y}, 1, &sum);
  fir_value_t *a = fir_value_create(g, "a", NULL);
  fir_node_t *split = fir_node_create(g, "Split", "", "", 2, (fir_value_t *[]){x, NULL}, 2, (fir_value_t *[]){a, NULL});
  fir_node_add_attr(split, "axis", FIR_ATTR_INT)->i = 1;
  fir_value_t *g1 = fir_value_create(g, "g1", NULL);
  fir_node_create(g, "Gelu", "com.microsoft", "gelu node", 1, &sum, 1, &g1);
  fir_value_t *c1 = fir_value_create(g, "c1", NULL);
  fir_node_create(g, "const", "", "", 1, &w, 1, &c1);
  /* Names at the edges of the bare spelling: a lone ':' needs quotes, "::" does not. */
  fir_value_t *odd[] = {fir_value_create(g, "a:b", NULL), fir_value_create(g, "trail::", fir_type_clone(m, w->type)),
                        fir_value_create(g, "-1", NULL), fir_value_create(g, "_", NULL)};
  fir_node_t *odd_node = fir_node_create(g, "Odd", "", "", 1, &c1, 4, odd);
  odd_node->domain = "ai.onnx"; /* the default domain's long name prints as the default */
  fir_node_create(g, "Print", "my.domain-x", "", 2, (fir_value_t *[]){wr, NULL}, 0, NULL);

  /* If with branches reading outer values (sum, and z from the signature). */
  fir_value_t *res = fir_value_create(g, "res", NULL);
  fir_node_t *iff = fir_node_create(g, "If", "", "", 1, &cond, 1, &res);
  fir_graph_t *then_g = fir_graph_create(m, g, "then");
  fir_value_t *t_out = fir_value_create(then_g, "t_out", NULL);
  fir_node_create(then_g, "Neg", "", "", 1, &sum, 1, &t_out);
  fir_graph_add_output(then_g, t_out);
  fir_graph_t *else_g = fir_graph_create(m, g, "else");
  fir_value_t *e_c = init_value(else_g, "e_c", f32_tensor(m, 1, d2, wv));
  fir_graph_add_output(else_g, e_c);
  fir_node_add_attr(iff, "then_branch", FIR_ATTR_GRAPH)->g = then_g;
  fir_node_add_attr(iff, "else_branch", FIR_ATTR_GRAPH)->g = else_g;

  /* One attribute of every kind, and empty lists. */
  fir_value_t *all_out = fir_value_create(g, "all_out", fir_type_tensor(m, FLAGOS_UINT4, 2, d22));
  fir_node_t *all = fir_node_create(g, "All Attrs", "test", "", 1, &u, 1, &all_out);
  fir_node_add_attr(all, "nan_payload", FIR_ATTR_FLOAT)->f = bits_f32(0x7fc00001u);
  fir_node_add_attr(all, "nan", FIR_ATTR_FLOAT)->f = bits_f32(0x7fc00000u);
  fir_node_add_attr(all, "neg_nan", FIR_ATTR_FLOAT)->f = bits_f32(0xffc00000u);
  fir_node_add_attr(all, "ninf", FIR_ATTR_FLOAT)->f = -INFINITY;
  fir_node_add_attr(all, "nzero", FIR_ATTR_FLOAT)->f = -0.0f;
  fir_node_add_attr(all, "denorm", FIR_ATTR_FLOAT)->f = bits_f32(1);
  fir_node_add_attr(all, "three", FIR_ATTR_FLOAT)->f = 3.0f;
  fir_node_add_attr(all, "third", FIR_ATTR_FLOAT)->f = 1.0f / 3.0f;
  fir_node_add_attr(all, "imin", FIR_ATTR_INT)->i = INT64_MIN;
  fir_attr_t *sa = fir_node_add_attr(all, "s", FIR_ATTR_STRING);
  sa->s = k_weird;
  sa->s_len = sizeof k_weird - 1;
  fir_attr_t *ta = fir_node_add_attr(all, "t", FIR_ATTR_TENSOR);
  ta->t = f32_tensor(m, 2, d22, (const float[]){1, 2, 3, 4});
  ta->t->name = "named";
  fir_node_add_attr(all, "sp", FIR_ATTR_SPARSE_TENSOR)->t = f32_tensor(m, 1, d2, wv);
  fir_node_add_attr(all, "tp", FIR_ATTR_TYPE)->tp = fir_type_clone(m, op);
  fir_attr_t *fa = fir_node_add_attr(all, "floats", FIR_ATTR_FLOATS);
  fa->n = 3;
  fa->floats = DUP(m, ((float[]){0.5f, INFINITY, 100000000.0f}), 3);
  fir_attr_t *ia = fir_node_add_attr(all, "ints", FIR_ATTR_INTS);
  ia->n = 2;
  ia->ints = DUP(m, ((int64_t[]){INT64_MAX, -1}), 2);
  fir_attr_t *ssa = fir_node_add_attr(all, "strings", FIR_ATTR_STRINGS);
  ssa->n = 2;
  ssa->strings = DUP(m, ((const char *[]){"", "b c"}), 2);
  fir_attr_t *tsa = fir_node_add_attr(all, "tensors", FIR_ATTR_TENSORS);
  tsa->n = 2;
  tsa->tensors = DUP(m, ((fir_tensor_t *[]){st, h}), 2);
  fir_attr_t *spa = fir_node_add_attr(all, "sparses", FIR_ATTR_SPARSE_TENSORS);
  spa->n = 1;
  spa->tensors = DUP(m, ((fir_tensor_t *[]){i4}), 1);
  fir_attr_t *tya = fir_node_add_attr(all, "types", FIR_ATTR_TYPES);
  tya->n = 2;
  tya->types = DUP(m, ((fir_type_t *[]){ty, mp}), 2);
  fir_graph_t *body = fir_graph_create(m, g, "");
  fir_value_t *bi = fir_value_create(body, "body_in", NULL);
  fir_graph_add_input(body, bi);
  fir_graph_add_output(body, bi);
  fir_attr_t *ga = fir_node_add_attr(all, "graphs", FIR_ATTR_GRAPHS);
  ga->n = 1;
  ga->graphs = DUP(m, ((fir_graph_t *[]){body}), 1);
  static const fir_attr_kind_t empties[] = {FIR_ATTR_FLOATS, FIR_ATTR_INTS, FIR_ATTR_STRINGS, FIR_ATTR_TENSORS,
                                            FIR_ATTR_GRAPHS, FIR_ATTR_SPARSE_TENSORS, FIR_ATTR_TYPES};
  for (size_t i = 0; i < FL_ARRAY_LEN(empties); i++) fir_node_add_attr(all, fl_arena_printf(m->arena, "e%zu", i), empties[i]);

  fir_value_t *k = fir_value_create(g, "k", NULL);
  fir_node_t *cn = fir_node_create(g, "Constant", "", "", 0, NULL, 1, &k);
  fir_node_add_attr(cn, "value", FIR_ATTR_TENSOR)->t = i64;

  fir_graph_add_output(g, sum);
  fir_graph_add_output(g, res);
  fir_graph_add_output(g, x);
  fir_graph_add_output(g, all_out);
  return m;
}

static const fir_attr_t *attr(const fir_model_t *m, const char *op, const char *name) {
  for (int i = 0; i < m->graph->n_nodes; i++)
    if (strcmp(m->graph->nodes[i]->op_type, op) == 0) return fir_node_attr(m->graph->nodes[i], name);
  return NULL;
}

static void test_everything(void) {
  fir_model_t *m = build_everything();
  flagos_status_t st = fir_verify(m);
  CHECK(st == NULL);
  if (st) fprintf(stderr, "verify: %s\n", flagos_status_message(st)), flagos_status_free(st);
  fir_model_t *p = round_trip(m, true, "everything/inline");
  fir_model_t *q = round_trip(m, false, "everything/refs");
  CHECK(p && q);
  if (!p || !q) return;
  st = fir_verify(p);
  CHECK(st == NULL);
  if (st) fprintf(stderr, "verify parsed: %s\n", flagos_status_message(st)), flagos_status_free(st);

  /* Spellings the specification fixes (docs/flagir.md). */
  char *t = print_model(m, false);
  static const char *const k_lines[] = {
      "producer \"unit \\\"test\\\"\\n\"\n",
      "opset \"com.microsoft\" 1\n",
      "graph \"main graph\" (%x: f32[3,4,5], %onnx::Add_1: f32[3,?,N], %\"weird \\\"name\\\"\": i64[*], "
      "%s: seq<f32[\"batch size\"]>, %o: opt<seq<f32[\"batch size\"]>>, %map: map<str, bf16[]>, %u, "
      "%cond: bool[], %d: f32[?]) -> (%sum: f32[3,4,5], %res, %x: f32[3,4,5], %all_out: u4[2,2]) {\n",
      "  %w: f32[2] = const [1.0, -2.5]\n",
      "  %w_ref: f32[2,2] = const @w3\n",
      "  %half: f16[3] = const dense<\"003c017e0080\">\n",
      "  %strs: str[2] = const [\"a\\\"b\\\\c\\n\\t\\x01\\xff\\x00z\", \"\"]\n",
      "  %i4 = const tensor<i4[2]> [-8, 7]\n",
      "  %scalar: i64[] = const [-9223372036854775808]\n",
      "  %d = default tensor<f32[2]> [1.0, -2.5]\n",
      "  %sum: f32[3,4,5] = Add \"add0\" (%x, %onnx::Add_1)\n",
      "  %a, _ = Split(%x, _) {axis = 1}\n",
      "  %g1 = com.microsoft::Gelu \"gelu node\" (%sum)\n",
      "  %c1 = \"const\"(%w)\n",
      "  %\"a:b\", %trail::: f32[2], %-1, %_ = Odd(%c1)\n",
      "  \"my.domain-x\"::Print(%w_ref, _)\n",
      "  %res = If(%cond) {\n    then_branch = graph \"then\" () -> (%t_out) {\n      %t_out = Neg(%sum)\n    },\n"
      "    else_branch = graph \"else\" () -> (%e_c: f32[2]) {\n      %e_c: f32[2] = const [1.0, -2.5]\n    }\n  }\n",
      "  %all_out: u4[2,2] = test::\"All Attrs\"(%u) {\n    nan_payload = nan:0x7fc00001,\n    nan = nan,\n"
      "    neg_nan = nan:0xffc00000,\n    ninf = -inf,\n    nzero = -0.0,\n    denorm = 1.40129846e-45,\n"
      "    three = 3.0,\n    third = 0.333333343,\n    imin = -9223372036854775808,\n"
      "    s = \"a\\\"b\\\\c\\n\\t\\x01\\xff\\x00z\",\n    t = tensor<\"named\": f32[2,2]> [1.0, 2.0, 3.0, 4.0],\n"
      "    sp = sparse tensor<f32[2]> [1.0, -2.5],\n    tp = type<opt<seq<f32[\"batch size\"]>>>,\n"
      "    floats = [0.5, inf, 100000000.0],\n    ints = [9223372036854775807, -1],\n    strings = [\"\", \"b c\"],\n"
      "    tensors = [tensor<\"strs\": str[2]> [\"a\\\"b\\\\c\\n\\t\\x01\\xff\\x00z\", \"\"], tensor<\"half\": f16[3]> dense<\"003c017e0080\">],\n"
      "    sparses = [sparse tensor<\"i4\": i4[2]> [-8, 7]],\n    types = [type<f32[3,?,N]>, type<map<str, bf16[]>>],\n",
      "    graphs = [graph \"\" (%body_in) -> (%body_in) {\n    }],\n    e0 = [] : floats,\n    e1 = [] : ints,\n"
      "    e2 = [] : strings,\n    e3 = [] : tensors,\n    e4 = [] : graphs,\n    e5 = [] : sparse_tensors,\n"
      "    e6 = [] : types\n  }\n",
      "  %k = Constant() {value = tensor<\"scalar\": i64[]> [-9223372036854775808]}\n}\n",
  };
  for (size_t i = 0; i < FL_ARRAY_LEN(k_lines); i++) {
    if (!strstr(t, k_lines[i])) {
      fprintf(stderr, "expected text not printed:\n%s\n", k_lines[i]);
      g_fail++;
    }
  }
  if (g_fail) fprintf(stderr, "---- printed ----\n%s\n", t);
  free(t);

  /* Values survive bit for bit. */
  const fir_attr_t *a = attr(p, "All Attrs", "nan_payload");
  CHECK(a && a->kind == FIR_ATTR_FLOAT && f32_bits(a->f) == 0x7fc00001u);
  a = attr(p, "All Attrs", "neg_nan");
  CHECK(a && f32_bits(a->f) == 0xffc00000u);
  a = attr(p, "All Attrs", "nzero");
  CHECK(a && f32_bits(a->f) == 0x80000000u);
  a = attr(p, "All Attrs", "denorm");
  CHECK(a && f32_bits(a->f) == 1u);
  a = attr(p, "All Attrs", "third");
  CHECK(a && a->f == 1.0f / 3.0f);
  a = attr(p, "All Attrs", "imin");
  CHECK(a && a->kind == FIR_ATTR_INT && a->i == INT64_MIN);
  a = attr(p, "All Attrs", "s");
  CHECK(a && a->s_len == sizeof k_weird - 1 && memcmp(a->s, k_weird, sizeof k_weird - 1) == 0);
  a = attr(p, "All Attrs", "e4");
  CHECK(a && a->kind == FIR_ATTR_GRAPHS && a->n == 0);
  a = attr(p, "All Attrs", "t");
  CHECK(a && a->kind == FIR_ATTR_TENSOR && a->t->name && strcmp(a->t->name, "named") == 0 && a->t->numel == 4 &&
        ((float *)a->t->data)[3] == 4.0f);
  a = attr(p, "All Attrs", "graphs");
  CHECK(a && a->kind == FIR_ATTR_GRAPHS && a->n == 1 && a->graphs[0]->parent == p->graph &&
        a->graphs[0]->outputs[0] == a->graphs[0]->inputs[0]);
  fir_value_t *half = fir_graph_lookup(p->graph, "half");
  CHECK(half && half->init && half->init->dtype == FLAGOS_FLOAT16 && memcmp(half->init->data, "\x00\x3c\x01\x7e\x00\x80", 6) == 0);
  fir_value_t *strs = fir_graph_lookup(p->graph, "strs");
  CHECK(strs && strs->init->string_lens[0] == sizeof k_weird - 1 &&
        memcmp(((char **)strs->init->data)[0], k_weird, sizeof k_weird - 1) == 0);
  fir_value_t *d = fir_graph_lookup(p->graph, "d");
  CHECK(d && d->init && d->type->dims[0].value < 0 && d->init->dims[0] == 2 && p->graph->inputs[8] == d);
  fir_value_t *wr = fir_graph_lookup(q->graph, "w_ref");
  CHECK(wr && wr->init && wr->init->data == NULL && wr->init->ref == 3 && wr->init->numel == 4);
  fir_value_t *wr_inline = fir_graph_lookup(p->graph, "w_ref");
  CHECK(wr_inline && wr_inline->init->data && wr_inline->init->ref == -1);
  /* Outer values seen from a branch resolve to the outer objects. */
  const fir_attr_t *tb = attr(p, "If", "then_branch");
  CHECK(tb && tb->g->nodes[0]->inputs[0] == fir_graph_lookup(p->graph, "sum"));
  fir_model_destroy(m);
  fir_model_destroy(p);
  fir_model_destroy(q);
}

/* ---- hand-written text ---- */

static fir_model_t *parse_ok(const char *text) {
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(text, strlen(text), &m);
  if (st) {
    fprintf(stderr, "unexpected parse error: %s\n", flagos_status_message(st));
    flagos_status_free(st);
    g_fail++;
  }
  return m;
}

/* Out-of-order statements, comments, free spacing, and a subgraph reading an
 * outer value that is defined after the node owning the subgraph. */
static const char k_unsorted[] =
    "flagir 1   # version\n"
    "opset \"\" 13\n"
    "graph \"g\" (%x : f32 [ 2 , M ], %c:bool[]) -> (%out, %r: f32[2,M]) {\n"
    "  %out = Mul(%t, %x)   # %t is defined below\n"
    "  %r = If(%c) {then_branch = graph \"a\" () -> (%late) {}, else_branch = graph \"b\" () -> (%x) {}}\n"
    "  %t: f32[2,M] = Relu \"relu\" (%late)\n"
    "  %late = Abs(%x)\n"
    "}\n";

static void test_hand_written(void) {
  fir_model_t *m = parse_ok(k_unsorted);
  if (!m) return;
  fir_graph_t *g = m->graph;
  CHECK(m->ir_version == 0 && strcmp(m->producer, "") == 0 && m->n_opsets == 1 && m->opsets[0].version == 13);
  CHECK(g->n_nodes == 4 && g->n_inputs == 2 && g->n_outputs == 2);
  fir_value_t *x = fir_graph_lookup(g, "x"), *t = fir_graph_lookup(g, "t"), *r = fir_graph_lookup(g, "r");
  CHECK(x && x->type->kind == FIR_TYPE_TENSOR && x->type->rank == 2 && x->type->dims[0].value == 2 &&
        x->type->dims[1].value < 0 && strcmp(x->type->dims[1].sym, "M") == 0);
  fir_value_t *c = fir_graph_lookup(g, "c");
  CHECK(c && c->type->kind == FIR_TYPE_TENSOR && c->type->dtype == FLAGOS_BOOL && c->type->rank == 0);
  CHECK(g->nodes[0]->inputs[0] == t && g->nodes[0]->inputs[1] == x && strcmp(g->nodes[2]->name, "relu") == 0);
  /* The output's declared type fills in the unknown type of %r. */
  CHECK(r && r->type->kind == FIR_TYPE_TENSOR && r->type->rank == 2);
  CHECK(g->nodes[0]->opset == 13);
  flagos_status_t st = fir_verify(m);
  CHECK(st == NULL);
  if (st) fprintf(stderr, "verify: %s\n", flagos_status_message(st)), flagos_status_free(st);
  /* Sorted stably (of the ready nodes, the earliest first): Abs frees If and
   * Relu; If comes before Relu; Relu frees Mul. */
  const char *want[] = {"Abs", "If", "Relu", "Mul"};
  for (int i = 0; i < 4 && i < g->n_nodes; i++) {
    CHECK(strcmp(g->nodes[i]->op_type, want[i]) == 0);
    CHECK(g->nodes[i]->id == i);
  }
  fir_model_destroy(round_trip(m, true, "hand-written"));
  fir_model_destroy(m);
}

/* ---- parse errors ---- */

typedef struct {
  const char *text, *message;
} bad_text_t;

static const bad_text_t k_bad[] = {
    {"flagir 1\ngraph \"g\" (%x: f32[3]) -> (%x) {\n  %y = Relu(%x\n}\n",
     "line 4, col 1: expected ')' after node inputs, found '}'"},
    {"flagir 2\n", "line 1, col 8: FlagIR text version 2 is not supported (this build reads 1)"},
    {"flagir 1\ngraph \"g\" (%x: f32[3]) -> (%y) {\n  %y = Relu(%z)\n}\n",
     "line 3, col 13: value '%z' is not defined (input 0 of node #0 (Relu))"},
    {"flagir 1\ngraph \"g\" (%x: f33[3]) -> () {}\n", "line 2, col 16: unknown element type 'f33'"},
    {"flagir 1\ngraph \"g\" (%x: f32[3], %x: f32[3]) -> () {}\n",
     "line 2, col 24: value '%x' is already defined in this graph"},
    {"flagir 1\nproducer \"abc\n", "line 2, col 14: raw control byte 0x0a in string; write it as \\x0a"},
    {"flagir 1\nproducer \"abc", "line 2, col 10: unterminated string"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %c: f32[3] = const [1.0, 2.0]\n}\n",
     "line 3, col 22: the tensor has 3 elements but the list holds 2"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %c: f16[2] = const dense<\"003c\">\n}\n",
     "line 3, col 29: dense<...> holds 4 hex digits; a f16 tensor of 2 elements needs 8"},
    {"flagir 1\ngraph \"g\" (%x) -> () {\n  Foo(%x) {a = []}\n}\n",
     "line 3, col 16: an empty list needs its kind, e.g. '[] : ints'"},
    {"flagir 1\ngraph \"g\" (%x) -> () {\n  Foo(%x) {a = 9223372036854775808}\n}\n",
     "line 3, col 16: 9223372036854775808 does not fit in 64 bits"},
    {"flagir 1\ngraph \"g\" (%x) -> () {\n  Foo(%x) {a = 1e39}\n}\n", "line 3, col 16: 1e39 is out of the range of f32"},
    {"flagir 1\ngraph \"g\" (%x) -> () {\n  Foo(%x) {a = [1, \"s\"]}\n}\n",
     "line 3, col 20: expected an element of the same kind as the list's first, found '\"'"},
    {"flagir 1\ngraph \"g\" (%x) -> () {\n  Foo(%x) {a = \"s\" : ints}\n}\n",
     "line 3, col 22: attribute 'a' is written as string but declared ints"},
    {"flagir 1\ngraph \"g\" (%x: f32[3]) -> (%x: f32[4]) {}\n",
     "line 2, col 28: graph output '%x' is declared f32[4] here but f32[3] where it is defined"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %w = const [1.0]\n}\n",
     "line 3, col 14: data without 'tensor<...>' needs a static tensor type on '%w'"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %w: f32[1] = default [1.0]\n}\n",
     "line 3, col 3: 'default' needs '%w' to be an input of this graph"},
    {"flagir 1\ngraph \"g\" () -> () {\n", "line 2, col 20: graph 'g' opened here is never closed with '}'"},
    {"flagir 1\ngraph \"g\" () -> () {}\ngraph", "line 3, col 1: expected the end of the text after the main graph, found 'graph'"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %s = Foo() {x = \"\\q\"}\n}\n",
     "line 3, col 20: unknown escape in string (use \\\" \\\\ \\n \\t \\r or \\xHH)"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %s: f32[2] = const [nan:0x00000001, 1.0]\n}\n",
     "line 3, col 23: 0x1 is not the bit pattern of an f32 NaN"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %s: f16[1] = const [1.0]\n}\n",
     "line 3, col 22: f16 tensors are written as dense<\"hex\">, not as a list"},
    {"flagir 1\ngraph \"g\" () -> () {\n  %s: u8[1] = const [256]\n}\n", "line 3, col 22: 256 is out of range for u8"},
    {"", "line 1, col 1: expected 'flagir <version>' on the first line, found end of input"},
};

static void test_parse_errors(void) {
  for (size_t i = 0; i < FL_ARRAY_LEN(k_bad); i++) {
    fir_model_t *m = NULL;
    flagos_status_t st = fir_parse(k_bad[i].text, strlen(k_bad[i].text), &m);
    CHECK(st != NULL && m == NULL);
    if (!st) {
      fir_model_destroy(m);
      continue;
    }
    if (strcmp(flagos_status_message(st), k_bad[i].message) != 0) {
      fprintf(stderr, "case %zu:\n  want: %s\n  got:  %s\n", i, k_bad[i].message, flagos_status_message(st));
      g_fail++;
    }
    flagos_status_free(st);
  }
  /* Nesting is bounded: 200 nested seq<...> are refused, not recursed into. */
  fl_buf_t b = {0};
  fl_buf_puts(&b, "flagir 1\ngraph \"g\" (%x: ");
  for (int i = 0; i < 200; i++) fl_buf_puts(&b, "seq<");
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(b.data, b.len, &m);
  CHECK(st && strstr(flagos_status_message(st), "nesting deeper than 64 levels"));
  flagos_status_free(st);
  fl_buf_free(&b);
}

/* ---- damaged text never crashes ---- */

static void parse_quietly(const char *text, size_t len) {
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(text, len, &m);
  if (st) {
    CHECK(m == NULL && flagos_status_message(st)[0] == 'l'); /* every parse error starts with "line " */
    flagos_status_free(st);
    return;
  }
  /* Whatever parses also prints and verifies without crashing. */
  char *t = print_model(m, true);
  free(t);
  flagos_status_free(fir_verify(m));
  fir_model_destroy(m);
}

static void test_damage(void) {
  fir_model_t *m = build_everything();
  char *text = print_model(m, true);
  size_t n = strlen(text);
  /* Every prefix (copied, so reading past the length would be caught by ASan). */
  for (size_t len = 0; len < n; len++) {
    char *pre = malloc(len ? len : 1);
    memcpy(pre, text, len);
    parse_quietly(pre, len);
    free(pre);
  }
  /* Byte mutations from a fixed-seed generator. */
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  char *mut = malloc(n + 8);
  static const char k_bytes[] = "%\"\\{}[]()<>,:=_-#@?\n 0x9.e";
  for (int iter = 0; iter < 4000; iter++) {
    memcpy(mut, text, n);
    size_t len = n;
    for (int k = 0; k < 3; k++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      size_t pos = (size_t)(seed >> 33) % len;
      char c = (seed >> 20) & 1 ? k_bytes[(seed >> 8) % (sizeof k_bytes - 1)] : (char)(seed >> 12);
      switch ((seed >> 40) % 3) {
      case 0: mut[pos] = c; break;
      case 1: memmove(mut + pos, mut + pos + 1, len - pos - 1), len--; break;
      default: memmove(mut + pos + 1, mut + pos, len - pos), mut[pos] = c, len++; break;
      }
    }
    parse_quietly(mut, len);
  }
  free(mut);
  free(text);
  fir_model_destroy(m);
}

/* ---- verifier ---- */

static void expect_verify_error(fir_model_t *m, const char *want) {
  flagos_status_t st = fir_verify(m);
  CHECK(st != NULL);
  if (st && strcmp(flagos_status_message(st), want) != 0) {
    fprintf(stderr, "verify:\n  want: %s\n  got:  %s\n", want, flagos_status_message(st));
    g_fail++;
  }
  flagos_status_free(st);
  fir_model_destroy(m);
}

static fir_model_t *small_model(fir_graph_t **g, fir_value_t **x) {
  fir_model_t *m = fir_model_create();
  *g = fir_graph_create(m, NULL, "g");
  m->graph = *g;
  *x = fir_value_create(*g, "x", NULL);
  fir_graph_add_input(*g, *x);
  return m;
}

static void test_verify(void) {
  fir_graph_t *g;
  fir_value_t *x;
  fir_model_t *m = small_model(&g, &x);
  fir_value_t *v1 = fir_value_create(g, "v", NULL), *v2 = fir_value_create(g, "v", NULL);
  fir_node_create(g, "Relu", "", "n1", 1, &x, 1, &v1);
  fir_node_create(g, "Abs", "", "n2", 1, &x, 1, &v2);
  expect_verify_error(m, "value 'v' is defined twice: as output 0 of node 'n1' (Relu) and as output 0 of node 'n2' (Abs)");

  m = small_model(&g, &x);
  fir_value_t *ghost = fir_value_create(g, "ghost", NULL), *y = fir_value_create(g, "y", NULL);
  fir_node_create(g, "Relu", "", "", 1, &ghost, 1, &y);
  expect_verify_error(m, "input 0 ('ghost') of node #0 (Relu) is not defined");

  m = small_model(&g, &x);
  fir_value_t *a = fir_value_create(g, "a", NULL), *b = fir_value_create(g, "b", NULL);
  fir_node_create(g, "Relu", "", "r", 1, &b, 1, &a);
  fir_node_create(g, "Abs", "", "q", 1, &a, 1, &b);
  fir_graph_add_output(g, a);
  expect_verify_error(m, "graph 'g' has a cycle: node 'r' (Relu) needs 'b' from node 'q' (Abs) needs 'a' from node 'r' (Relu)");

  /* A subgraph reading the output of its own node is a cycle too. */
  m = small_model(&g, &x);
  fir_value_t *out = fir_value_create(g, "out", NULL);
  fir_node_t *loop = fir_node_create(g, "If", "", "if", 1, &x, 1, &out);
  fir_graph_t *br = fir_graph_create(m, g, "br");
  fir_graph_add_output(br, out);
  fir_node_add_attr(loop, "then_branch", FIR_ATTR_GRAPH)->g = br;
  expect_verify_error(m, "graph 'g' has a cycle: node 'if' (If) needs 'out' from node 'if' (If)");

  m = small_model(&g, &x);
  fir_graph_add_output(g, fir_value_create(g, "never", NULL));
  expect_verify_error(m, "output 0 ('never') of graph 'g' is not defined");

  /* A value of one branch is not visible from its sibling. */
  m = small_model(&g, &x);
  fir_value_t *r = fir_value_create(g, "r", NULL);
  fir_node_t *iff = fir_node_create(g, "If", "", "", 1, &x, 1, &r);
  fir_graph_t *ga = fir_graph_create(m, g, "a"), *gb = fir_graph_create(m, g, "b");
  fir_value_t *ia = fir_value_create(ga, "ia", NULL);
  fir_node_create(ga, "Neg", "", "", 1, &x, 1, &ia);
  fir_graph_add_output(ga, ia);
  fir_value_t *ib = fir_value_create(gb, "ib", NULL);
  fir_node_create(gb, "Neg", "", "neg b", 1, &ia, 1, &ib);
  fir_graph_add_output(gb, ib);
  fir_node_add_attr(iff, "then_branch", FIR_ATTR_GRAPH)->g = ga;
  fir_node_add_attr(iff, "else_branch", FIR_ATTR_GRAPH)->g = gb;
  expect_verify_error(m, "input 0 ('ia') of node 'neg b' (Neg) in graph 'b' is defined in graph 'a', which does not "
                         "enclose graph 'b'");

  m = small_model(&g, &x);
  fir_node_add_attr(fir_node_create(g, "Foo", "", "n", 1, &x, 0, NULL), "k", FIR_ATTR_UNDEFINED);
  expect_verify_error(m, "attribute 'k' of node 'n' (Foo) has no kind (undefined)");

  m = small_model(&g, &x);
  int64_t d2[] = {2};
  fir_value_t *w = fir_value_create(g, "w", NULL);
  w->init = fir_tensor_create(m, FLAGOS_FLOAT32, 1, d2);
  w->init->numel = 3;
  expect_verify_error(m, "initializer 'w': tensor says it has 3 elements but its dims make 2");

  /* A sorted, valid graph keeps its order. */
  m = small_model(&g, &x);
  fir_value_t *p1 = fir_value_create(g, "p1", NULL), *p2 = fir_value_create(g, "p2", NULL);
  fir_node_t *n1 = fir_node_create(g, "Neg", "", "", 1, &x, 1, &p1);
  fir_node_t *n2 = fir_node_create(g, "Neg", "", "", 1, &x, 1, &p2);
  fir_graph_add_output(g, p2);
  CHECK(fir_verify(m) == NULL && g->nodes[0] == n1 && g->nodes[1] == n2);
  fir_model_destroy(m);
}

/* ---- scale: a long chain written backwards, a node with many attributes ---- */

static void test_large(void) {
  enum { N = 20000, A = 5000 };
  fl_buf_t b = {0};
  fl_buf_puts(&b, "flagir 1\ngraph \"big\" (%v0: f32[1]) -> (%v20000) {\n");
  for (int i = N; i >= 1; i--) fl_buf_printf(&b, "  %%v%d = Neg \"n%d\" (%%v%d)\n", i, i, i - 1);
  fl_buf_puts(&b, "  Many(%v0) {");
  for (int i = 0; i < A; i++) fl_buf_printf(&b, "%sa%d = %d", i ? ", " : "", i, i);
  fl_buf_puts(&b, "}\n}\n");
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(b.data, b.len, &m);
  CHECK(st == NULL);
  fl_buf_free(&b);
  if (st) {
    fprintf(stderr, "large: %s\n", flagos_status_message(st));
    flagos_status_free(st);
    return;
  }
  st = fir_verify(m);
  CHECK(st == NULL);
  flagos_status_free(st);
  fir_graph_t *g = m->graph;
  /* n1 and Many are ready first; n1 is earlier in the text, and each node it
   * frees is earlier than Many too, so the chain n1..nN comes out before Many. */
  CHECK(g->n_nodes == N + 1 && strcmp(g->nodes[N]->op_type, "Many") == 0 && g->nodes[N]->n_attrs == A);
  CHECK(g->nodes[N]->attrs[A - 1].kind == FIR_ATTR_INT && g->nodes[N]->attrs[A - 1].i == A - 1);
  bool chain = true;
  for (int i = 1; i <= N && chain; i++) chain = strcmp(g->nodes[i - 1]->name, fl_arena_printf(m->arena, "n%d", i)) == 0;
  CHECK(chain);
  fir_model_destroy(round_trip(m, true, "large"));
  fir_model_destroy(m);
}

/* ---- conformance models ---- */

static const char k_test_add[] =
    "flagir 1\nir_version 7\nproducer \"backend-test\"\nopset \"\" 14\n"
    "graph \"test_add\" (%x: f32[3,4,5], %y: f32[3,4,5]) -> (%sum: f32[3,4,5]) {\n"
    "  %sum: f32[3,4,5] = Add(%x, %y)\n}\n";

static const char k_test_if[] =
    "flagir 1\nir_version 6\nproducer \"backend-test\"\nopset \"\" 11\n"
    "graph \"test_if\" (%cond: bool[]) -> (%res: f32[5]) {\n"
    "  %res: f32[5] = If(%cond) {\n"
    "    else_branch = graph \"else_body\" () -> (%else_out: f32[5]) {\n"
    "      %else_out: f32[5] = Constant() {value = tensor<f32[5]> [5.0, 4.0, 3.0, 2.0, 1.0]}\n"
    "    },\n"
    "    then_branch = graph \"then_body\" () -> (%then_out: f32[5]) {\n"
    "      %then_out: f32[5] = Constant() {value = tensor<f32[5]> [1.0, 2.0, 3.0, 4.0, 5.0]}\n"
    "    }\n"
    "  }\n}\n";

static void test_conformance_dir(const char *sub, int *n_ok, int *n_import_failed) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", FLAGOS_CONFORMANCE_DIR, sub);
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "cannot open %s\n", dir);
    g_fail++;
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, e->d_name);
    fir_model_t *m = NULL;
    flagos_status_t st = onnx_import_file(path, &m);
    if (st) {
      /* Import coverage is the frontend's test; here it only limits what can be round-tripped. */
      (*n_import_failed)++;
      flagos_status_free(st);
      continue;
    }
    int before = g_fail;
    fir_model_t *p = round_trip(m, true, e->d_name), *q = round_trip(m, false, e->d_name);
    if (p) {
      st = fir_verify(p);
      if (st) {
        fprintf(stderr, "%s: verify of parsed model: %s\n", e->d_name, flagos_status_message(st));
        flagos_status_free(st);
        g_fail++;
      }
    }
    if (strcmp(e->d_name, "test_add") == 0 || strcmp(e->d_name, "test_if") == 0) {
      char *t = print_model(m, true);
      if (!same_text(strcmp(e->d_name, "test_add") == 0 ? k_test_add : k_test_if, t)) g_fail++;
      free(t);
    }
    if (g_fail == before) (*n_ok)++;
    fir_model_destroy(m);
    fir_model_destroy(p);
    fir_model_destroy(q);
  }
  closedir(d);
}

static void test_conformance(void) {
  int ok = 0, failed_import = 0;
  test_conformance_dir("onnx-node", &ok, &failed_import);
  test_conformance_dir("onnx-simple", &ok, &failed_import);
  printf("conformance round trip: %d models ok, %d not importable\n", ok, failed_import);
  CHECK(ok > 1700);
}

int main(void) {
  test_everything();
  test_hand_written();
  test_parse_errors();
  test_verify();
  test_damage();
  test_large();
  test_conformance();
  if (g_fail) fprintf(stderr, "%d check(s) failed\n", g_fail);
  else printf("all FlagIR text checks passed\n");
  return g_fail != 0;
}
