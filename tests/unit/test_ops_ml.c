/* End-to-end values of the training, ml, random and extra1 (NonMaxSuppression)
 * families: each model is compiled for the cpu target and run through the public
 * API.
 *
 * 1. tests/data/ops_ml (written by tests/tools/gen_ops_ml_cases.py) and the
 *    conformance tests of these operators: outputs must match the reference
 *    outputs stored with them (ONNX's reference, onnxruntime, or values worked
 *    out from the spec; the generator says which for each case).
 * 2. tests/data/ops_random: the random operators cannot reproduce NumPy's
 *    generator, so their outputs are checked against the distributions they
 *    draw from (range, mean, variance, frequencies, within many standard
 *    errors), and a seeded model must give the same tensor twice.
 * 3. Models FlagOS must refuse with a message that names why (string maps). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/value_io.h"
#include "runtime/runtime.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                                             \
  do {                                                                                                               \
    checks++;                                                                                                        \
    if (!(cond)) {                                                                                                   \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                           \
      fprintf(stderr, __VA_ARGS__);                                                                                  \
      fputc('\n', stderr);                                                                                           \
      failures++;                                                                                                    \
    }                                                                                                                \
  } while (0)

static bool exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* A compiled model with a session; outputs of the last run. */
typedef struct model {
  flagos_bundle_t *b;
  flagos_session_t *s;
  int ni, no;
  flagos_value_t in[16], out[16];
} model_t;

static void model_close(model_t *m) {
  for (int k = 0; k < m->ni; k++) flagos_value_clear(&m->in[k]);
  for (int k = 0; k < m->no; k++) flagos_value_clear(&m->out[k]);
  flagos_session_destroy(m->s);
  flagos_bundle_close(m->b);
  memset(m, 0, sizeof(*m));
}

/* Compiles dir/model.onnx, loads dir/test_data_set_0/input_K.pb and runs it. */
static flagos_status_t model_run(const char *dir, model_t *m) {
  char path[4096];
  memset(m, 0, sizeof(*m));
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  flagos_compile_options_t co = {.targets = "cpu"};
  FL_TRY(flagos_compile_to_bundle(path, &co, &m->b));
  flagos_session_options_t so = {.device = "cpu"};
  FL_TRY(flagos_session_create(m->b, &so, &m->s));
  fir_graph_t *g = m->b->model->graph;
  m->ni = g->n_inputs;
  m->no = g->n_outputs;
  if (m->ni > 16 || m->no > 16) return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "too many inputs or outputs");
  for (int k = 0; k < m->ni; k++) {
    snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, k);
    FL_TRY(io_load_value(path, g->inputs[k]->type, &m->in[k]));
  }
  return flagos_session_run(m->s, m->in, m->ni, m->out, m->no);
}

static const char *status_text(flagos_status_t st) { return st ? flagos_status_message(st) : "ok"; }

static void compare(const char *name, int k, const flagos_tensor_t *got, const flagos_tensor_t *ref) {
  CHECK(got->dtype == ref->dtype, "%s output %d: dtype %s, expected %s", name, k, flagos_dtype_name(got->dtype),
        flagos_dtype_name(ref->dtype));
  bool same_shape = got->rank == ref->rank;
  for (int i = 0; same_shape && i < ref->rank; i++) same_shape = got->dims[i] == ref->dims[i];
  CHECK(same_shape, "%s output %d: shape differs (rank %d vs %d, first dim %lld vs %lld)", name, k, got->rank,
        ref->rank, (long long)(got->rank ? got->dims[0] : 0), (long long)(ref->rank ? ref->dims[0] : 0));
  if (got->dtype != ref->dtype || !same_shape) return;
  int64_t n = flagos_tensor_numel(ref), bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++) {
    bool ok;
    if (flagos_dtype_is_float(ref->dtype)) {
      double x = fl_load_as_double(ref->dtype, got->data, (size_t)i), y = fl_load_as_double(ref->dtype, ref->data, (size_t)i);
      ok = isnan(y) ? isnan(x) : fabs(x - y) <= 1e-5 + 1e-4 * fabs(y);
    } else {
      ok = fl_load_as_int64(ref->dtype, got->data, (size_t)i) == fl_load_as_int64(ref->dtype, ref->data, (size_t)i);
    }
    if (!ok && first < 0) first = i;
    bad += !ok;
  }
  CHECK(bad == 0, "%s output %d: %lld of %lld values differ, first at %lld: got %.9g, expected %.9g", name, k,
        (long long)bad, (long long)n, (long long)first,
        first >= 0 ? fl_load_as_double(ref->dtype, got->data, (size_t)first) : 0.0,
        first >= 0 ? fl_load_as_double(ref->dtype, ref->data, (size_t)first) : 0.0);
}

/* Runs one case folder and compares every output with output_K.pb. */
static void run_case(const char *root, const char *name) {
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  model_t m;
  flagos_status_t st = model_run(dir, &m);
  CHECK(!st, "%s: %s", name, status_text(st));
  if (!st) {
    fir_graph_t *g = m.b->model->graph;
    for (int k = 0; k < m.no; k++) {
      flagos_value_t ref = {0};
      snprintf(path, sizeof path, "%s/test_data_set_0/output_%d.pb", dir, k);
      flagos_status_t e = io_load_value(path, g->outputs[k]->type, &ref);
      CHECK(!e, "%s: reading %s: %s", name, path, status_text(e));
      if (!e) compare(name, k, &m.out[k].tensor, &ref.tensor);
      flagos_value_clear(&ref);
      flagos_status_free(e);
    }
  }
  flagos_status_free(st);
  model_close(&m);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Case folders of root whose name contains one of the substrings (all when NULL). */
static void run_all(const char *root, const char *const *filters) {
  DIR *d = opendir(root);
  CHECK(d != NULL, "cannot open %s", root);
  if (!d) return;
  char *names[512];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 512) {
    if (e->d_name[0] == '.') continue;
    bool want = !filters;
    for (int i = 0; filters && filters[i] && !want; i++) want = strstr(e->d_name, filters[i]) != NULL;
    if (want) names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof(*names), cmp_str);
  for (int i = 0; i < n; i++) {
    run_case(root, names[i]);
    free(names[i]);
  }
}

/* ---- statistics of the random operators ---- */
typedef struct stats {
  double mean, var, lo, hi;
  int64_t n;
} stats_t;

static stats_t stats_of(const flagos_tensor_t *t, int64_t first, int64_t count, int64_t stride) {
  stats_t s = {0, 0, INFINITY, -INFINITY, 0};
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < count; i++) {
    double x = fl_load_as_double(t->dtype, t->data, (size_t)(first + i * stride));
    sum += x;
    sq += x * x;
    if (x < s.lo) s.lo = x;
    if (x > s.hi) s.hi = x;
  }
  s.n = count;
  s.mean = sum / (double)count;
  s.var = sq / (double)count - s.mean * s.mean;
  return s;
}

/* |x - want| within k standard errors se. */
static bool near(double x, double want, double se) { return fabs(x - want) <= 6.0 * se + 1e-12; }

static model_t run_random(const char *root, const char *name, flagos_dtype_t dt, int64_t numel) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  model_t m;
  flagos_status_t st = model_run(dir, &m);
  CHECK(!st, "%s: %s", name, status_text(st));
  if (!st) {
    CHECK(m.out[0].tensor.dtype == dt, "%s: dtype %s, expected %s", name, flagos_dtype_name(m.out[0].tensor.dtype),
          flagos_dtype_name(dt));
    CHECK(flagos_tensor_numel(&m.out[0].tensor) == numel, "%s: %lld elements, expected %lld", name,
          (long long)flagos_tensor_numel(&m.out[0].tensor), (long long)numel);
  }
  flagos_status_free(st);
  if (st || m.out[0].tensor.dtype != dt || flagos_tensor_numel(&m.out[0].tensor) != numel) {
    model_close(&m);
    m.b = NULL;
  }
  return m;
}

static void check_uniform(const char *root, const char *name, flagos_dtype_t dt, int64_t n, double lo, double hi) {
  model_t m = run_random(root, name, dt, n);
  if (!m.b) return;
  stats_t s = stats_of(&m.out[0].tensor, 0, n, 1);
  double w = hi - lo, sd = w / sqrt(12.0);
  CHECK(s.lo >= lo && s.hi < hi, "%s: values span [%g, %g], outside [%g, %g)", name, s.lo, s.hi, lo, hi);
  CHECK(near(s.mean, (lo + hi) / 2, sd / sqrt((double)n)), "%s: mean %g, expected %g", name, s.mean, (lo + hi) / 2);
  /* the variance of a uniform sample has standard error ~ w^2 / sqrt(180 n) */
  CHECK(near(s.var, sd * sd, w * w / sqrt(180.0 * (double)n)), "%s: variance %g, expected %g", name, s.var, sd * sd);
  CHECK(s.hi - s.lo > 0.99 * w, "%s: values cover only [%g, %g]", name, s.lo, s.hi);
  model_close(&m);
}

static void check_normal(const char *root, const char *name, flagos_dtype_t dt, int64_t n, double mean, double scale) {
  model_t m = run_random(root, name, dt, n);
  if (!m.b) return;
  stats_t s = stats_of(&m.out[0].tensor, 0, n, 1);
  CHECK(near(s.mean, mean, scale / sqrt((double)n)), "%s: mean %g, expected %g", name, s.mean, mean);
  CHECK(near(s.var, scale * scale, scale * scale * sqrt(2.0 / (double)n)), "%s: variance %g, expected %g", name, s.var,
        scale * scale);
  /* Tails: about 0.27% of a normal sample lies beyond 3 sigma. */
  int64_t beyond = 0;
  for (int64_t i = 0; i < n; i++)
    beyond += fabs(fl_load_as_double(dt, m.out[0].tensor.data, (size_t)i) - mean) > 3 * scale;
  double p = 0.0026998;
  CHECK(near((double)beyond / (double)n, p, sqrt(p * (1 - p) / (double)n)), "%s: %lld of %lld beyond 3 sigma", name,
        (long long)beyond, (long long)n);
  model_close(&m);
}

static void check_random(const char *root) {
  check_uniform(root, "random_uniform_seeded", FLAGOS_FLOAT64, 60000, -2.0, 3.0);
  check_uniform(root, "random_uniform_f16", FLAGOS_FLOAT16, 50000, 0.0, 1.0);
  check_uniform(root, "random_uniform_like", FLAGOS_FLOAT32, 20000, 10.0, 11.0);
  check_normal(root, "random_normal_seeded", FLAGOS_FLOAT32, 50000, 1.5, 2.0);
  check_normal(root, "random_normal_like_f64", FLAGOS_FLOAT64, 20000, -1.0, 0.5);

  /* Bernoulli: column j of p holds probability {0, .1, .5, .9, 1}[j]. */
  static const double probs[5] = {0.0, 0.1, 0.5, 0.9, 1.0};
  const char *bern[2] = {"bernoulli_probabilities", "bernoulli_to_bool"};
  flagos_dtype_t bdt[2] = {FLAGOS_FLOAT32, FLAGOS_BOOL};
  for (int b = 0; b < 2; b++) {
    model_t m = run_random(root, bern[b], bdt[b], 20000);
    if (!m.b) continue;
    for (int j = 0; j < 5; j++) {
      stats_t s = stats_of(&m.out[0].tensor, j, 4000, 5);
      double p = probs[j];
      CHECK(s.lo >= 0 && s.hi <= 1, "%s: values outside {0, 1}", bern[b]);
      CHECK(near(s.mean, p, sqrt(p * (1 - p) / 4000.0)), "%s: frequency %g for probability %g", bern[b], s.mean, p);
    }
    model_close(&m);
  }

  /* Multinomial: row 0 has probabilities .1 .2 .3 .4, row 1 .7 0 .2 .1. */
  static const double mp[2][4] = {{0.1, 0.2, 0.3, 0.4}, {0.7, 0.0, 0.2, 0.1}};
  model_t m = run_random(root, "multinomial_two_rows", FLAGOS_INT64, 80000);
  if (m.b) {
    const int64_t *y = m.out[0].tensor.data;
    for (int r = 0; r < 2; r++) {
      int64_t cnt[4] = {0}, bad = 0;
      for (int64_t i = 0; i < 40000; i++) {
        int64_t c = y[r * 40000 + i];
        if (c < 0 || c > 3) bad++;
        else cnt[c]++;
      }
      CHECK(bad == 0, "multinomial: %lld class indices out of range", (long long)bad);
      for (int c = 0; c < 4; c++) {
        double p = mp[r][c], f = (double)cnt[c] / 40000.0;
        CHECK(near(f, p, sqrt(p * (1 - p) / 40000.0)), "multinomial row %d: class %d frequency %g, expected %g", r, c, f,
              p);
      }
    }
    model_close(&m);
  }

  /* A seeded model repeats itself; the two halves of its output do not. */
  model_t a = run_random(root, "random_normal_seeded", FLAGOS_FLOAT32, 50000);
  model_t b = run_random(root, "random_normal_seeded", FLAGOS_FLOAT32, 50000);
  if (a.b && b.b) {
    CHECK(memcmp(a.out[0].tensor.data, b.out[0].tensor.data, a.out[0].tensor.nbytes) == 0,
          "random_normal_seeded: two runs with the same seed differ");
    CHECK(memcmp(a.out[0].tensor.data, (const char *)a.out[0].tensor.data + 100000, 100000) != 0,
          "random_normal_seeded: the generator repeats within one tensor");
  }
  if (a.b) model_close(&a);
  if (b.b) model_close(&b);
}

/* String LabelEncoder runs in the runtime's host operators (src/runtime/host_strings_num.c):
 * it must compile and run rather than be refused. Its outputs are checked by conformance. */
static void check_string_label_encoder(const char *conf) {
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/onnx-node/test_ai_onnx_ml_label_encoder_string_int", conf);
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  if (!exists(path)) return;
  model_t m;
  flagos_status_t st = model_run(dir, &m);
  CHECK(!st, "string LabelEncoder: expected it to run, got: %s", status_text(st));
  flagos_status_free(st);
  model_close(&m);
}

int main(void) {
  char root[4096];
  snprintf(root, sizeof root, "%s/tests/data/ops_ml", FLAGOS_SOURCE_DIR);
  run_all(root, NULL);
  char conf[4096];
  snprintf(conf, sizeof conf, "%s/onnx-node", FLAGOS_CONFORMANCE_DIR);
  if (exists(conf)) {
    static const char *const mine[] = {"test_nonmaxsuppression_", "test_adagrad", "test_adam", "test_momentum",
                                       "test_nesterov_momentum", "test_ai_onnx_ml_binarizer",
                                       "test_ai_onnx_ml_array_feature_extractor", "test_ai_onnx_ml_tree_ensemble", NULL};
    run_all(conf, mine);
  } else {
    fprintf(stderr, "note: %s not found, ONNX's node tests skipped\n", conf);
  }
  snprintf(root, sizeof root, "%s/tests/data/ops_random", FLAGOS_SOURCE_DIR);
  check_random(root);
  check_string_label_encoder(FLAGOS_CONFORMANCE_DIR);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
