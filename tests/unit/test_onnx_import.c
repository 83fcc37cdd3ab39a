/* ONNX importer tests. Expected values come from the Python onnx package
 * (tests/tools/gen_import_facts.py wrote onnx_import_facts.h), never from FlagOS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/onnx/onnx_import.h"
#include "onnx_import_facts.h"

static int failures;
#define CHECK(cond)                                                                                                    \
  do {                                                                                                                 \
    if (!(cond)) {                                                                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                         \
      failures++;                                                                                                      \
    }                                                                                                                  \
  } while (0)
#define CHECK_MSG(cond, ...)                                                                                           \
  do {                                                                                                                 \
    if (!(cond)) {                                                                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                                         \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
      failures++;                                                                                                      \
    }                                                                                                                  \
  } while (0)

static int ok_at(int line, flagos_status_t st, const char *what) {
  if (!st) return 1;
  fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, line, what, flagos_status_message(st));
  flagos_status_free(st);
  failures++;
  return 0;
}
#define OK(expr) ok_at(__LINE__, (expr), #expr)

/* Expects an error with `code` whose message contains `want` (and `want2` when not NULL). */
static void expect_err_at(int line, flagos_status_t st, flagos_code_t code, const char *want, const char *want2) {
  if (!st) {
    fprintf(stderr, "%s:%d: expected an error containing \"%s\", got success\n", __FILE__, line, want);
    failures++;
    return;
  }
  const char *msg = flagos_status_message(st);
  if (flagos_status_code(st) != code || !strstr(msg, want) || (want2 && !strstr(msg, want2))) {
    fprintf(stderr, "%s:%d: got code %d \"%s\"; wanted code %d with \"%s\"%s%s\n", __FILE__, line,
            (int)flagos_status_code(st), msg, (int)code, want, want2 ? " and " : "", want2 ? want2 : "");
    failures++;
  }
  if (strchr(msg, '\n')) {
    fprintf(stderr, "%s:%d: message spans lines: \"%s\"\n", __FILE__, line, msg);
    failures++;
  }
  flagos_status_free(st);
}
#define EXPECT_ERR(st, code, want, want2) expect_err_at(__LINE__, (st), (code), (want), (want2))

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n) {
    fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    exit(2);
  }
  fclose(f);
}

/* ---- conformance models against the Python facts ---- */

static void count_graph(const fir_graph_t *g, int *nodes, int *subgraphs) {
  *nodes += g->n_nodes;
  for (int i = 0; i < g->n_nodes; i++) {
    const fir_node_t *n = g->nodes[i];
    for (int a = 0; a < n->n_attrs; a++) {
      const fir_attr_t *at = &n->attrs[a];
      if (at->kind == FIR_ATTR_GRAPH) {
        CHECK(at->g->parent == g);
        (*subgraphs)++;
        count_graph(at->g, nodes, subgraphs);
      }
      for (int k = 0; at->kind == FIR_ATTR_GRAPHS && k < at->n; k++) {
        (*subgraphs)++;
        count_graph(at->graphs[k], nodes, subgraphs);
      }
    }
  }
}

/* Structural facts every imported graph must satisfy, whatever the model. */
static int check_wiring(const fir_graph_t *g) {
  int bad = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const fir_node_t *n = g->nodes[i];
    for (int k = 0; k < n->n_outputs; k++)
      if (n->outputs[k] && (n->outputs[k]->producer != n || n->outputs[k]->producer_output != k)) bad++;
    for (int k = 0; k < n->n_inputs; k++) {
      const fir_value_t *v = n->inputs[k];
      if (!v) continue;
      /* the input's graph must enclose the node's */
      const fir_graph_t *s = g;
      while (s && s != v->graph) s = s->parent;
      if (!s) bad++;
    }
  }
  for (int i = 0; i < g->n_inputs; i++)
    if (g->inputs[i]->init || g->inputs[i]->producer) bad++;
  return bad;
}

static int type_kind(const fir_type_t *t) {
  switch (t->kind) {
  case FIR_TYPE_TENSOR: return 0;
  case FIR_TYPE_SEQUENCE: return 1;
  case FIR_TYPE_OPTIONAL: return 2;
  case FIR_TYPE_MAP: return 3;
  default: return 4;
  }
}

static void check_type_fact(const char *test, const char *which, const fir_type_t *t, type_fact_t f) {
  CHECK_MSG(type_kind(t) == f.kind, "%s %s kind %d, want %d", test, which, type_kind(t), f.kind);
  if (f.kind == 0) {
    CHECK_MSG((int)t->dtype == f.dtype, "%s %s dtype %d, want %d", test, which, (int)t->dtype, f.dtype);
    CHECK_MSG(t->rank == f.rank, "%s %s rank %d, want %d", test, which, t->rank, f.rank);
  }
}

static void test_conformance_models(void) {
  int imported = 0;
  for (int i = 0; i < N_MODEL_FACTS; i++) {
    const model_fact_t *f = &k_model_facts[i];
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s/model.onnx", FLAGOS_CONFORMANCE_DIR, f->suite, f->test);
    fir_model_t *m;
    if (!OK(onnx_import_file(path, &m))) continue;
    imported++;
    const fir_graph_t *g = m->graph;
    int nodes = 0, subgraphs = 0, inits = 0;
    count_graph(g, &nodes, &subgraphs);
    for (int k = 0; k < g->n_values; k++) inits += g->values[k]->init != NULL;
    CHECK_MSG(g->n_nodes == f->nodes, "%s: %d nodes, want %d", f->test, g->n_nodes, f->nodes);
    CHECK_MSG(nodes == f->nodes_total, "%s: %d nodes in all, want %d", f->test, nodes, f->nodes_total);
    CHECK_MSG(subgraphs == f->subgraphs, "%s: %d subgraphs, want %d", f->test, subgraphs, f->subgraphs);
    CHECK_MSG(g->n_inputs == f->inputs, "%s: %d inputs, want %d", f->test, g->n_inputs, f->inputs);
    CHECK_MSG(g->n_outputs == f->outputs, "%s: %d outputs, want %d", f->test, g->n_outputs, f->outputs);
    CHECK_MSG(inits == f->inits, "%s: %d initializers, want %d", f->test, inits, f->inits);
    CHECK_MSG(fir_model_opset(m, "") == f->opset, "%s: opset %lld, want %lld", f->test,
              (long long)fir_model_opset(m, ""), f->opset);
    CHECK_MSG(m->ir_version == f->ir_version, "%s: ir_version %lld", f->test, (long long)m->ir_version);
    if (g->n_nodes) {
      CHECK_MSG(strcmp(g->nodes[0]->op_type, f->first_op) == 0, "%s: first op %s", f->test, g->nodes[0]->op_type);
      CHECK_MSG(strcmp(g->nodes[g->n_nodes - 1]->op_type, f->last_op) == 0, "%s: last op", f->test);
      if (!*g->nodes[0]->domain && f->opset >= 0)
        CHECK_MSG(g->nodes[0]->opset == f->opset, "%s: node opset %d", f->test, g->nodes[0]->opset);
    }
    if (g->n_inputs) {
      CHECK_MSG(strcmp(g->inputs[0]->name, f->in0_name) == 0, "%s: input 0 is '%s'", f->test, g->inputs[0]->name);
      check_type_fact(f->test, "input 0", g->inputs[0]->type, f->in0);
    }
    if (g->n_outputs) {
      CHECK_MSG(strcmp(g->outputs[0]->name, f->out0_name) == 0, "%s: output 0 is '%s'", f->test, g->outputs[0]->name);
      check_type_fact(f->test, "output 0", g->outputs[0]->type, f->out0);
    }
    CHECK_MSG(check_wiring(g) == 0, "%s: broken wiring", f->test);
    fir_model_destroy(m);
  }
  CHECK(imported == N_MODEL_FACTS);
  CHECK(N_MODEL_FACTS == 1825);
  printf("imported %d of %d conformance models\n", imported, N_MODEL_FACTS);
}

/* ---- the hand-built model: every tensor encoding ---- */

static double elem(const fir_tensor_t *t, int64_t i) {
  if (t->dtype == FLAGOS_COMPLEX64) return ((const float *)t->data)[i];
  if (t->dtype == FLAGOS_COMPLEX128) return ((const double *)t->data)[i];
  return fl_load_as_double(t->dtype, t->data, (size_t)i);
}

static void test_special_model(void) {
  fir_model_t *m;
  if (!OK(onnx_import_memory(k_special_model, sizeof k_special_model, NULL, &m))) return;
  const fir_graph_t *g = m->graph;
  CHECK(strcmp(m->producer, "gen_import_facts") == 0);
  CHECK(fir_model_opset(m, "") == 21);
  for (size_t i = 0; i < sizeof k_init_facts / sizeof k_init_facts[0]; i++) {
    const init_fact_t *f = &k_init_facts[i];
    const fir_value_t *v = fir_graph_lookup(g, f->name);
    CHECK_MSG(v && v->init, "initializer %s missing", f->name);
    if (!v || !v->init) continue;
    const fir_tensor_t *t = v->init;
    CHECK_MSG((int)t->dtype == f->dtype && t->rank == f->rank, "%s: dtype %d rank %d", f->name, (int)t->dtype, t->rank);
    CHECK(v->type->kind == FIR_TYPE_TENSOR && v->type->dtype == t->dtype && v->type->rank == t->rank);
    for (int d = 0; d < f->rank && d < t->rank; d++) CHECK_MSG(t->dims[d] == f->dims[d], "%s dim %d", f->name, d);
    if (f->n < 0) continue;
    int64_t n = t->dtype == FLAGOS_COMPLEX64 || t->dtype == FLAGOS_COMPLEX128 ? 2 * t->numel : t->numel;
    CHECK_MSG(n == f->n, "%s: %lld values, want %d", f->name, (long long)n, f->n);
    CHECK(t->nbytes == (size_t)t->numel * flagos_dtype_size(t->dtype));
    for (int64_t k = 0; k < n && k < f->n; k++)
      CHECK_MSG(elem(t, k) == f->vals[k], "%s[%lld] = %.17g, want %.17g", f->name, (long long)k, elem(t, k),
                f->vals[k]);
  }
  /* int4/int2 are one byte per element, sign-extended: check the bytes too */
  const fir_tensor_t *i4 = fir_graph_lookup(g, "i4_raw")->init;
  CHECK(i4->nbytes == 5 && ((int8_t *)i4->data)[0] == -8 && ((int8_t *)i4->data)[1] == -1 &&
        ((int8_t *)i4->data)[3] == 7);
  const fir_tensor_t *u4 = fir_graph_lookup(g, "u4_fields")->init;
  CHECK(((uint8_t *)u4->data)[0] == 15 && ((uint8_t *)u4->data)[2] == 9);
  const fir_tensor_t *i2 = fir_graph_lookup(g, "i2_raw")->init;
  CHECK(((int8_t *)i2->data)[0] == -2 && ((int8_t *)i2->data)[5] == -2);
  const fir_tensor_t *s = fir_graph_lookup(g, "str_fields")->init;
  CHECK(s->dtype == FLAGOS_STRING && s->numel == 3);
  if (s->numel == 3) {
    const char *const *sv = s->data;
    CHECK(s->string_lens[0] == 3 && strcmp(sv[0], "abc") == 0);
    CHECK(s->string_lens[1] == 0 && sv[1][0] == 0);
    CHECK(s->string_lens[2] == 3 && memcmp(sv[2], "x\0y", 3) == 0);
  }
  const fir_tensor_t *sc = fir_graph_lookup(g, "scalar_f32")->init;
  CHECK(sc->rank == 0 && sc->numel == 1);
  /* "scalar_f32" is both an input and an initializer: it must not stay an input */
  CHECK(g->n_inputs == 4);
  if (g->n_inputs == 4) {
    const fir_type_t *x = g->inputs[0]->type;
    CHECK(strcmp(g->inputs[0]->name, "X") == 0 && x->kind == FIR_TYPE_TENSOR && x->dtype == FLAGOS_FLOAT32 &&
          x->rank == 3);
    if (x->rank == 3) {
      CHECK(x->dims[0].value < 0 && x->dims[0].sym && strcmp(x->dims[0].sym, "N") == 0);
      CHECK(x->dims[1].value < 0 && x->dims[1].sym == NULL);
      CHECK(x->dims[2].value == 3 && x->dims[2].sym == NULL);
    }
    const fir_type_t *sq = g->inputs[1]->type;
    CHECK(sq->kind == FIR_TYPE_SEQUENCE && sq->elem && sq->elem->kind == FIR_TYPE_TENSOR &&
          sq->elem->dtype == FLAGOS_INT64 && sq->elem->rank == 1 && sq->elem->dims[0].value == 2);
    const fir_type_t *op = g->inputs[2]->type;
    CHECK(op->kind == FIR_TYPE_OPTIONAL && op->elem && op->elem->dtype == FLAGOS_BOOL && op->elem->rank == -1);
    const fir_type_t *mp = g->inputs[3]->type;
    CHECK(mp->kind == FIR_TYPE_MAP && mp->dtype == FLAGOS_STRING && mp->elem && mp->elem->kind == FIR_TYPE_TENSOR &&
          mp->elem->dtype == FLAGOS_FLOAT32 && mp->elem->rank == 0);
  }
  CHECK(g->n_nodes == 1 && g->nodes[0]->inputs[0] == g->inputs[0] && g->nodes[0]->outputs[0] == g->outputs[0]);
  CHECK(g->outputs[0]->type->kind == FIR_TYPE_TENSOR && g->outputs[0]->type->rank == 3);
  fir_model_destroy(m);
}

/* ---- attributes of every kind ---- */

static void test_attributes(void) {
  fir_model_t *m;
  if (!OK(onnx_import_memory(k_attr_model, sizeof k_attr_model, NULL, &m))) return;
  const fir_graph_t *g = m->graph;
  CHECK(g->n_nodes == 1);
  if (g->n_nodes != 1) return;
  const fir_node_t *n = g->nodes[0];
  CHECK(strcmp(n->op_type, "Everything") == 0 && strcmp(n->domain, "test.domain") == 0 && n->opset == 3);
  CHECK(strcmp(n->name, "every") == 0);
  CHECK(n->n_inputs == 2 && n->inputs[0] == g->inputs[0] && n->inputs[1] == NULL);
  CHECK(n->n_outputs == 2 && n->outputs[0] == g->outputs[0] && n->outputs[1] == NULL);
  CHECK(n->n_attrs == 14);
  CHECK(fir_attr_float(n, "f", 0) == 0.25f);
  CHECK(fir_attr_int(n, "i", 0) == -7);
  const fir_attr_t *a = fir_node_attr(n, "s");
  CHECK(a && a->kind == FIR_ATTR_STRING && a->s_len == 8 && memcmp(a->s, "nul\0byte", 8) == 0);
  a = fir_node_attr(n, "t");
  CHECK(a && a->kind == FIR_ATTR_TENSOR && a->t->dtype == FLAGOS_INT64 && a->t->numel == 2 &&
        ((int64_t *)a->t->data)[0] == 5 && ((int64_t *)a->t->data)[1] == -6 && strcmp(a->t->name, "tv") == 0);
  a = fir_node_attr(n, "g");
  CHECK(a && a->kind == FIR_ATTR_GRAPH && a->g->parent == g && strcmp(a->g->name, "body") == 0);
  if (a && a->kind == FIR_ATTR_GRAPH) {
    const fir_graph_t *sg = a->g;
    CHECK(sg->n_inputs == 1 && sg->n_outputs == 1 && sg->n_nodes == 1);
    /* the body's Add reads the outer graph's value itself */
    CHECK(sg->n_nodes == 1 && sg->nodes[0]->inputs[0] == sg->inputs[0] && sg->nodes[0]->inputs[1] == g->inputs[0]);
    CHECK(sg->n_outputs == 1 && sg->outputs[0]->producer == sg->nodes[0]);
  }
  a = fir_node_attr(n, "sp");
  CHECK(a && a->kind == FIR_ATTR_SPARSE_TENSOR && a->t && a->t->numel == 4 && a->t->dtype == FLAGOS_FLOAT32);
  if (a && a->t && a->t->numel == 4) {
    const float *d = a->t->data;
    CHECK(d[0] == 0 && d[1] == 0 && d[2] == 9.0f && d[3] == 0);
  }
  a = fir_node_attr(n, "tp");
  CHECK(a && a->kind == FIR_ATTR_TYPE && a->tp->dtype == FLAGOS_FLOAT16 && a->tp->rank == 2 &&
        a->tp->dims[0].value == 2 && a->tp->dims[1].sym && strcmp(a->tp->dims[1].sym, "K") == 0);
  const float *fs;
  CHECK(fir_attr_floats(n, "fs", &fs) == 2 && fs[0] == 1.0f && fs[1] == -0.5f);
  const int64_t *is;
  CHECK(fir_attr_ints(n, "is", &is) == 3 && is[0] == 3 && is[2] == 5);
  a = fir_node_attr(n, "ss");
  CHECK(a && a->kind == FIR_ATTR_STRINGS && a->n == 2 && a->string_lens[1] == 2 && strcmp(a->strings[1], "bc") == 0);
  a = fir_node_attr(n, "ts");
  CHECK(a && a->kind == FIR_ATTR_TENSORS && a->n == 2 && a->tensors[1]->dtype == FLAGOS_INT32 &&
        ((int32_t *)a->tensors[1]->data)[1] == 2 && ((float *)a->tensors[0]->data)[0] == 2.0f);
  a = fir_node_attr(n, "gs");
  CHECK(a && a->kind == FIR_ATTR_GRAPHS && a->n == 1 && a->graphs[0]->parent == g && a->graphs[0]->n_nodes == 1 &&
        a->graphs[0]->nodes[0]->inputs[0] == g->inputs[0]);
  a = fir_node_attr(n, "sps");
  CHECK(a && a->kind == FIR_ATTR_SPARSE_TENSORS && a->n == 1 && ((float *)a->tensors[0]->data)[2] == 9.0f);
  a = fir_node_attr(n, "tps");
  CHECK(a && a->kind == FIR_ATTR_TYPES && a->n == 1 && a->types[0]->kind == FIR_TYPE_SEQUENCE &&
        a->types[0]->elem->dtype == FLAGOS_INT8 && a->types[0]->elem->rank == -1);
  fir_model_destroy(m);
}

/* ---- external data ---- */

static void test_external_data(void) {
  char dir[] = "/tmp/flagos_onnx_ext_XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    failures++;
    return;
  }
  char model[600], weights[600], link[600], outside[600];
  snprintf(model, sizeof model, "%s/sub/model.onnx", dir);
  snprintf(weights, sizeof weights, "%s/sub/weights.bin", dir);
  snprintf(link, sizeof link, "%s/sub/link.bin", dir);
  snprintf(outside, sizeof outside, "%s/weights.bin", dir);
  char sub[600];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  mkdir(sub, 0700);
  write_bytes(model, k_ext_good, sizeof k_ext_good);
  write_bytes(weights, k_ext_weights, sizeof k_ext_weights);
  write_bytes(outside, k_ext_weights, sizeof k_ext_weights);

  fir_model_t *m;
  if (OK(onnx_import_file(model, &m))) {
    const fir_tensor_t *w1 = fir_graph_lookup(m->graph, "w1")->init;
    const fir_tensor_t *w2 = fir_graph_lookup(m->graph, "w2")->init;
    CHECK(w1->dtype == FLAGOS_FLOAT32 && w1->numel == 4);
    for (int i = 0; i < 4 && w1->numel == 4; i++) CHECK(((float *)w1->data)[i] == (float)k_ext_w1[i]);
    CHECK(w2->dtype == FLAGOS_INT4 && w2->numel == 3);
    for (int i = 0; i < 3 && w2->numel == 3; i++) CHECK(((int8_t *)w2->data)[i] == (int8_t)k_ext_w2[i]);
    CHECK(m->graph->n_inputs == 1);
    fir_model_destroy(m);
  }
  /* from memory without a folder: a clear refusal */
  EXPECT_ERR(onnx_import_memory(k_ext_good, sizeof k_ext_good, NULL, &m), FLAGOS_ERR_INVALID_ARGUMENT, "external file",
             "'w1'");
  CHECK(m == NULL);
  /* from memory with the folder: works */
  if (OK(onnx_import_memory(k_ext_good, sizeof k_ext_good, sub, &m))) fir_model_destroy(m);

  write_bytes(model, k_ext_dotdot, sizeof k_ext_dotdot);
  EXPECT_ERR(onnx_import_file(model, &m), FLAGOS_ERR_INVALID_ARGUMENT, "'..'", "w1");
  write_bytes(model, k_ext_absolute, sizeof k_ext_absolute);
  EXPECT_ERR(onnx_import_file(model, &m), FLAGOS_ERR_INVALID_ARGUMENT, "absolute", "/etc/passwd");
  write_bytes(model, k_ext_missing, sizeof k_ext_missing);
  EXPECT_ERR(onnx_import_file(model, &m), FLAGOS_ERR_NOT_FOUND, "nothere.bin", "No such file");
  write_bytes(model, k_ext_badlen, sizeof k_ext_badlen);
  EXPECT_ERR(onnx_import_file(model, &m), FLAGOS_ERR_CORRUPT, "holds 12 bytes but its dims need 16", "'w1'");
  write_bytes(model, k_ext_pastend, sizeof k_ext_pastend);
  EXPECT_ERR(onnx_import_file(model, &m), FLAGOS_ERR_CORRUPT, "past the end", "'w1'");
  /* a link inside the folder pointing outside it */
  if (symlink(outside, link) == 0) {
    write_bytes(model, k_ext_link, sizeof k_ext_link);
    EXPECT_ERR(onnx_import_file(model, &m), FLAGOS_ERR_INVALID_ARGUMENT, "outside the model's folder", "link.bin");
    unlink(link);
  } else {
    perror("symlink");
    failures++;
  }
  /* a truncated weights file */
  write_bytes(model, k_ext_good, sizeof k_ext_good);
  write_bytes(weights, k_ext_weights, 10);
  EXPECT_ERR(onnx_import_file(model, &m), FLAGOS_ERR_CORRUPT, "truncated", "weights.bin");
  unlink(model);
  unlink(weights);
  unlink(outside);
  rmdir(sub);
  rmdir(dir);
}

/* ---- broken models and files ---- */

#define BROKEN(name, code, want, want2)                                                                                \
  do {                                                                                                                 \
    fir_model_t *m_ = (fir_model_t *)1;                                                                                \
    EXPECT_ERR(onnx_import_memory(k_broken_##name, sizeof k_broken_##name, NULL, &m_), code, want, want2);             \
    CHECK(m_ == NULL);                                                                                                 \
  } while (0)

/* Prepends a length-delimited field around buf[*start..end). */
static void wrap(unsigned char *buf, size_t *start, size_t end, unsigned field) {
  size_t len = end - *start;
  unsigned char tmp[16];
  int n = 0;
  tmp[n++] = (unsigned char)(field << 3 | 2);
  do {
    unsigned char b = len & 0x7f;
    len >>= 7;
    tmp[n++] = (unsigned char)(b | (len ? 0x80 : 0));
  } while (len);
  *start -= (size_t)n;
  memcpy(buf + *start, tmp, (size_t)n);
}

/* ModelProto{graph{input{name:"x", type: seq<seq<...<tensor>...>>}}}, `depth` sequences deep. */
static size_t nested_model(unsigned char *buf, size_t cap, int depth) {
  size_t end = cap, start = cap;
  static const unsigned char tensor_type[] = {0x0a, 0x02, 0x08, 0x01}; /* TypeProto{tensor_type{elem_type:1}} */
  start -= sizeof tensor_type;
  memcpy(buf + start, tensor_type, sizeof tensor_type);
  for (int i = 0; i < depth; i++) {
    wrap(buf, &start, end, 1); /* Sequence.elem_type */
    wrap(buf, &start, end, 4); /* TypeProto.sequence_type */
  }
  wrap(buf, &start, end, 2); /* ValueInfoProto.type */
  static const unsigned char name[] = {0x0a, 0x01, 'x'};
  start -= sizeof name;
  memcpy(buf + start, name, sizeof name);
  wrap(buf, &start, end, 11); /* GraphProto.input */
  wrap(buf, &start, end, 7);  /* ModelProto.graph */
  memmove(buf, buf + start, end - start);
  return end - start;
}

static void test_errors(void) {
  fir_model_t *m = (fir_model_t *)1;
  EXPECT_ERR(onnx_import_file("/nonexistent/x.onnx", &m), FLAGOS_ERR_NOT_FOUND,
             "cannot open '/nonexistent/x.onnx': No such file or directory", NULL);
  CHECK(m == NULL);

  char garbage[] = "/tmp/flagos_onnx_garbage_XXXXXX";
  int fd = mkstemp(garbage);
  CHECK(fd >= 0);
  if (fd >= 0) {
    unsigned char junk[512];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    junk[0] = 0xff; /* field 31, wire type 7: invalid at once */
    CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close(fd);
    EXPECT_ERR(onnx_import_file(garbage, &m), FLAGOS_ERR_CORRUPT, "is not a valid ONNX model (protobuf parse failed",
               garbage);
    unlink(garbage);
  }

  /* truncated copies of a model with subgraphs (the Python parser rejects these cuts too) */
  char src[1024];
  snprintf(src, sizeof src, "%s/onnx-node/test_if/model.onnx", FLAGOS_CONFORMANCE_DIR);
  void *data;
  size_t size;
  if (OK(fl_read_file(src, &data, &size))) {
    CHECK(size == 321);
    size_t cuts[] = {size / 2, size - 1, size - 3, 10};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
      char trunc[] = "/tmp/flagos_onnx_trunc_XXXXXX";
      int tfd = mkstemp(trunc);
      if (tfd < 0) continue;
      CHECK(write(tfd, data, cuts[i]) == (ssize_t)cuts[i]);
      close(tfd);
      EXPECT_ERR(onnx_import_file(trunc, &m), FLAGOS_ERR_CORRUPT, "the file may be truncated or corrupted", trunc);
      unlink(trunc);
    }
    free(data);
  }

  BROKEN(undefined_input, FLAGOS_ERR_CORRUPT, "node 'adder' (Add): input 'ghost' is not defined", NULL);
  BROKEN(duplicate_output, FLAGOS_ERR_CORRUPT, "'Y' is defined twice", NULL);
  BROKEN(sibling_collision, FLAGOS_ERR_CORRUPT, "'tmp' is defined twice", "then");
  BROKEN(bad_dtype, FLAGOS_ERR_UNSUPPORTED, "tensor 'w' has unknown element type 99", NULL);
  BROKEN(float6, FLAGOS_ERR_UNSUPPORTED, "tensor 'w6' has element type 27 (float6e2m3)", NULL);
  BROKEN(short_data, FLAGOS_ERR_CORRUPT,
         "tensor 'short_w' (float[2,3]) holds 5 values in float_data but its dims need 6", NULL);
  BROKEN(short_raw, FLAGOS_ERR_CORRUPT, "tensor 'raw_w' (int32[4]) holds 15 bytes in raw_data but its dims need 16",
         NULL);
  BROKEN(ref_attr, FLAGOS_ERR_CORRUPT, "'outer_alpha'", "refnode");
  BROKEN(no_graph, FLAGOS_ERR_CORRUPT, "no graph", NULL);
  BROKEN(undefined_output, FLAGOS_ERR_CORRUPT, "graph output 'Y' is not defined", NULL);
  BROKEN(bad_input_type, FLAGOS_ERR_UNSUPPORTED, "graph input 'X'", "77");
  BROKEN(subgraph_leak, FLAGOS_ERR_CORRUPT, "node 'leaky' (Add): input 'tmp' is defined in subgraph 'then'", NULL);

  /* consumer listed before producer: imports, wired to the right value */
  if (OK(onnx_import_memory(k_unsorted_model, sizeof k_unsorted_model, NULL, &m))) {
    const fir_graph_t *g = m->graph;
    CHECK(g->n_nodes == 2 && strcmp(g->nodes[0]->name, "second") == 0);
    if (g->n_nodes == 2) {
      CHECK(g->nodes[0]->inputs[0] == g->nodes[1]->outputs[0] && g->nodes[0]->inputs[0]->producer == g->nodes[1]);
      const fir_type_t *t = g->nodes[1]->outputs[0]->type; /* from value_info */
      CHECK(t->kind == FIR_TYPE_TENSOR && t->dtype == FLAGOS_FLOAT32 && t->rank == 1 && t->dims[0].value == 2);
    }
    fir_model_destroy(m);
  }

  /* nesting: modest depth imports, hostile depth is refused before protobuf-c recurses */
  size_t cap = 1 << 20;
  unsigned char *buf = malloc(cap);
  size_t n = nested_model(buf, cap, 40);
  if (OK(onnx_import_memory(buf, n, NULL, &m))) {
    const fir_type_t *t = m->graph->inputs[0]->type;
    int depth = 0;
    while (t->kind == FIR_TYPE_SEQUENCE) t = t->elem, depth++;
    CHECK(depth == 40 && t->kind == FIR_TYPE_TENSOR && t->dtype == FLAGOS_FLOAT32);
    fir_model_destroy(m);
  }
  n = nested_model(buf, cap, 20000);
  EXPECT_ERR(onnx_import_memory(buf, n, NULL, &m), FLAGOS_ERR_CORRUPT, "levels deep", NULL);
  free(buf);

  /* empty input: parses as an empty ModelProto, which has no graph */
  EXPECT_ERR(onnx_import_memory("", 0, NULL, &m), FLAGOS_ERR_CORRUPT, "no graph", NULL);

  /* onnx_decode_tensor on bytes that are not a TensorProto */
  fir_model_t *tm = fir_model_create();
  fir_tensor_t *t;
  static const unsigned char bad_tensor[] = {0x0f, 0xff, 0xff};
  EXPECT_ERR(onnx_decode_tensor(tm, bad_tensor, sizeof bad_tensor, &t), FLAGOS_ERR_CORRUPT, "TensorProto", NULL);
  /* dims [2] float with raw_data of 8 bytes: 1.0, -2.0 */
  static const unsigned char good_tensor[] = {0x08, 0x02, 0x10, 0x01, 0x4a, 0x08, 0x00,
                                              0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
  if (OK(onnx_decode_tensor(tm, good_tensor, sizeof good_tensor, &t)))
    CHECK(t->dtype == FLAGOS_FLOAT32 && t->numel == 2 && ((float *)t->data)[0] == 1.0f &&
          ((float *)t->data)[1] == -2.0f);
  fir_model_destroy(tm);
}

int main(void) {
  test_conformance_models();
  test_special_model();
  test_attributes();
  test_external_data();
  test_errors();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  puts("test_onnx_import: all checks passed");
  return 0;
}
