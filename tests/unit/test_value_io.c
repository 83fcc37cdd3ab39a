/* Value file tests: every conformance .pb decodes to what onnx.numpy_helper reads
 * from it (value_io_facts.h, written by tests/tools/gen_value_facts.py), and .npy
 * files match what numpy itself writes, byte for byte. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/onnx/onnx_import.h"
#include "io/value_io.h"
#include "value_io_facts.h"

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

static void expect_err_at(int line, flagos_status_t st, flagos_code_t code, const char *want, const char *want2) {
  if (!st) {
    fprintf(stderr, "%s:%d: expected an error containing \"%s\", got success\n", __FILE__, line, want);
    failures++;
    return;
  }
  const char *msg = flagos_status_message(st);
  if (flagos_status_code(st) != code || !strstr(msg, want) || (want2 && !strstr(msg, want2))) {
    fprintf(stderr, "%s:%d: got code %d \"%s\"; wanted code %d with \"%s\" %s\n", __FILE__, line,
            (int)flagos_status_code(st), msg, (int)code, want, want2 ? want2 : "");
    failures++;
  }
  flagos_status_free(st);
}
#define EXPECT_ERR(st, code, want, want2) expect_err_at(__LINE__, (st), (code), (want), (want2))

static char g_tmp[] = "/tmp/flagos_value_io_XXXXXX";

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n) {
    fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    exit(2);
  }
  fclose(f);
}

static int read_bytes(const char *path, unsigned char **data, size_t *n) {
  void *d;
  if (!OK(fl_read_file(path, &d, n))) return 0;
  *data = d;
  return 1;
}

/* ---- every conformance .pb against numpy_helper ---- */

typedef struct {
  long long numel, nonfinite, str_bytes;
  double first, sum, sumabs;
  const char *first_str;
  const flagos_tensor_t *first_tensor;
} acc_t;

static double elem(const flagos_tensor_t *t, size_t i) {
  if (t->dtype == FLAGOS_COMPLEX64) return ((const float *)t->data)[i];
  if (t->dtype == FLAGOS_COMPLEX128) return ((const double *)t->data)[i];
  return fl_load_as_double(t->dtype, t->data, i);
}

static void acc_tensor(acc_t *a, const flagos_tensor_t *t) {
  if (!a->first_tensor) a->first_tensor = t;
  int64_t n = flagos_tensor_numel(t);
  CHECK(t->nbytes == (size_t)n * flagos_dtype_size(t->dtype));
  if (t->dtype == FLAGOS_STRING) {
    for (int64_t i = 0; i < n; i++) {
      const char *s = ((char *const *)t->data)[i];
      if (!a->first_str) a->first_str = s;
      a->str_bytes += (long long)strlen(s);
    }
    a->numel += n;
    return;
  }
  int64_t k = t->dtype == FLAGOS_COMPLEX64 || t->dtype == FLAGOS_COMPLEX128 ? 2 * n : n;
  if (a->numel == 0 && k) a->first = elem(t, 0);
  a->numel += n;
  for (int64_t i = 0; i < k; i++) {
    double v = elem(t, (size_t)i);
    if (!isfinite(v)) {
      a->nonfinite++;
      continue;
    }
    a->sum += v;
    a->sumabs += fabs(v);
  }
}

static void acc_sequence(acc_t *a, const flagos_value_t *v) {
  for (int i = 0; i < v->n_items; i++) {
    CHECK(v->items[i].kind == FLAGOS_VALUE_TENSOR);
    acc_tensor(a, &v->items[i].tensor);
  }
}

static bool same_double(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

static void dims_text(const flagos_tensor_t *t, char *buf, size_t cap) {
  buf[0] = 0;
  for (int i = 0; i < t->rank; i++) {
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%lld", i ? "x" : "", (long long)t->dims[i]);
  }
}

static void check_pb(const pb_fact_t *f, const fir_type_t *type, const char *path) {
  flagos_value_t v;
  if (!OK(io_load_value(path, type, &v))) return;
  const char *what = path;
  CHECK_MSG((int)v.kind == f->kind, "%s: kind %d", what, (int)v.kind);
  acc_t a = {0};
  if (v.kind == FLAGOS_VALUE_TENSOR) {
    acc_tensor(&a, &v.tensor);
  } else if (v.kind == FLAGOS_VALUE_SEQUENCE) {
    CHECK_MSG(v.n_items == f->n_items, "%s: %d items, want %d", what, v.n_items, f->n_items);
    acc_sequence(&a, &v);
    if (v.n_items) CHECK(v.elem_dtype == v.items[0].tensor.dtype);
  } else {
    CHECK_MSG((int)v.present == f->present, "%s: present %d", what, (int)v.present);
    if (v.present && v.n_items == 1) {
      CHECK(v.items[0].kind == FLAGOS_VALUE_SEQUENCE);
      CHECK_MSG(v.items[0].n_items == f->n_items, "%s: %d items", what, v.items[0].n_items);
      acc_sequence(&a, &v.items[0]);
    } else if (v.present) {
      acc_tensor(&a, &v.tensor);
    }
  }
  if (a.first_tensor) {
    char dims[256];
    dims_text(a.first_tensor, dims, sizeof dims);
    CHECK_MSG((int)a.first_tensor->dtype == f->dtype, "%s: dtype %d, want %d", what, (int)a.first_tensor->dtype,
              f->dtype);
    CHECK_MSG(a.first_tensor->rank == f->rank && strcmp(dims, f->dims) == 0, "%s: dims %s, want %s", what, dims,
              f->dims);
  } else {
    CHECK_MSG(f->rank < 0, "%s: no tensor decoded", what);
  }
  CHECK_MSG(a.numel == f->numel, "%s: %lld elements, want %lld", what, a.numel, f->numel);
  CHECK_MSG(a.nonfinite == f->nonfinite, "%s: %lld non-finite, want %lld", what, a.nonfinite, f->nonfinite);
  CHECK_MSG(same_double(a.first, f->first), "%s: first %.17g, want %.17g", what, a.first, f->first);
  double tol = 1e-9 * f->sumabs + 1e-300;
  CHECK_MSG(fabs(a.sum - f->sum) <= tol, "%s: sum %.17g, want %.17g", what, a.sum, f->sum);
  CHECK_MSG(fabs(a.sumabs - f->sumabs) <= tol, "%s: sum|x| %.17g, want %.17g", what, a.sumabs, f->sumabs);
  CHECK_MSG(a.str_bytes == f->str_bytes, "%s: %lld string bytes, want %lld", what, a.str_bytes, f->str_bytes);
  if (f->first_str) CHECK_MSG(a.first_str && strcmp(a.first_str, f->first_str) == 0, "%s: first string", what);
  flagos_value_clear(&v);
  CHECK(v.tensor.data == NULL && v.items == NULL && v.n_items == 0);
}

static void test_conformance_pb(void) {
  int checked = 0;
  fir_model_t *m = NULL;
  const char *loaded = "";
  for (int i = 0; i < N_PB_FACTS; i++) {
    const pb_fact_t *f = &k_pb_facts[i];
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s/%s", FLAGOS_CONFORMANCE_DIR, f->suite, f->test);
    if (strcmp(loaded, f->test) != 0) {
      fir_model_destroy(m);
      m = NULL;
      loaded = f->test;
      snprintf(path, sizeof path, "%s/model.onnx", dir);
      if (!OK(onnx_import_file(path, &m))) continue;
    }
    if (!m) continue;
    int idx = atoi(strchr(f->file, '_') + 1);
    bool in = strncmp(f->file, "input", 5) == 0;
    const fir_graph_t *g = m->graph;
    CHECK(idx < (in ? g->n_inputs : g->n_outputs));
    if (idx >= (in ? g->n_inputs : g->n_outputs)) continue;
    const fir_type_t *type = (in ? g->inputs : g->outputs)[idx]->type;
    snprintf(path, sizeof path, "%s/test_data_set_0/%s", dir, f->file);
    check_pb(f, type, path);
    checked++;
  }
  fir_model_destroy(m);
  CHECK(checked == N_PB_FACTS);
  printf("decoded %d of %d conformance .pb files\n", checked, N_PB_FACTS);
}

/* ---- .npy written by numpy ---- */

static void test_npy_reader(void) {
  flagos_tensor_t t;
  if (OK(io_read_npy(k_npy_f32_2x3, sizeof k_npy_f32_2x3, &t))) {
    CHECK(t.dtype == FLAGOS_FLOAT32 && t.rank == 2 && t.dims[0] == 2 && t.dims[1] == 3 && t.nbytes == 24);
    for (int i = 0; i < 6; i++) CHECK(((float *)t.data)[i] == (float)i / 4);
    free(t.data);
  }
  if (OK(io_read_npy(k_npy_i64_scalar, sizeof k_npy_i64_scalar, &t))) {
    CHECK(t.dtype == FLAGOS_INT64 && t.rank == 0 && *(int64_t *)t.data == -5);
    free(t.data);
  }
  if (OK(io_read_npy(k_npy_bool_4, sizeof k_npy_bool_4, &t))) {
    const uint8_t *b = t.data;
    CHECK(t.dtype == FLAGOS_BOOL && t.dims[0] == 4 && b[0] == 1 && b[1] == 0 && b[2] == 1 && b[3] == 1);
    free(t.data);
  }
  if (OK(io_read_npy(k_npy_u16_1, sizeof k_npy_u16_1, &t))) {
    CHECK(t.dtype == FLAGOS_UINT16 && *(uint16_t *)t.data == 65535);
    free(t.data);
  }
  if (OK(io_read_npy(k_npy_c64_2, sizeof k_npy_c64_2, &t))) {
    const float *c = t.data;
    CHECK(t.dtype == FLAGOS_COMPLEX64 && t.dims[0] == 2 && c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == -4);
    free(t.data);
  }
  if (OK(io_read_npy(k_npy_f16_3, sizeof k_npy_f16_3, &t))) {
    const uint16_t *h = t.data;
    CHECK(t.dtype == FLAGOS_FLOAT16 && h[0] == 0x3800 && h[1] == 0xbc00 && h[2] == 0x7bff);
    free(t.data);
  }
  flagos_value_t v = {0};
  if (OK(io_read_npy(k_npy_str_2, sizeof k_npy_str_2, &v.tensor))) {
    char **s = v.tensor.data;
    CHECK(v.tensor.dtype == FLAGOS_STRING && v.tensor.dims[0] == 2);
    CHECK(strcmp(s[0], "h\xc3\xa9llo") == 0 && strcmp(s[1], "\xf0\x9f\x98\x80x") == 0);
    flagos_value_clear(&v);
  }
  if (OK(io_read_npy(k_npy_bytes_2, sizeof k_npy_bytes_2, &v.tensor))) {
    char **s = v.tensor.data;
    CHECK(v.tensor.dtype == FLAGOS_STRING && strcmp(s[0], "ab") == 0 && strcmp(s[1], "c") == 0);
    flagos_value_clear(&v);
  }
  if (OK(io_read_npy(k_npy_empty_0x3, sizeof k_npy_empty_0x3, &t))) {
    CHECK(t.dtype == FLAGOS_FLOAT64 && t.rank == 2 && t.dims[0] == 0 && t.dims[1] == 3 && t.nbytes == 0);
    free(t.data);
  }
  if (OK(io_read_npy(k_npy_v2_i32, sizeof k_npy_v2_i32, &t))) {
    CHECK(t.dtype == FLAGOS_INT32 && t.dims[0] == 3 && ((int32_t *)t.data)[2] == 2);
    free(t.data);
  }
  if (OK(io_read_npy(k_npy_v3_i32, sizeof k_npy_v3_i32, &t))) {
    CHECK(t.dtype == FLAGOS_INT32 && t.dims[0] == 3 && ((int32_t *)t.data)[1] == 1);
    free(t.data);
  }
  EXPECT_ERR(io_read_npy(k_npy_bigendian, sizeof k_npy_bigendian, &t), FLAGOS_ERR_UNSUPPORTED, "big-endian", ">f4");
  EXPECT_ERR(io_read_npy(k_npy_fortran, sizeof k_npy_fortran, &t), FLAGOS_ERR_UNSUPPORTED, "Fortran", NULL);
  EXPECT_ERR(io_read_npy(k_npy_f32_2x3, sizeof k_npy_f32_2x3 - 1, &t), FLAGOS_ERR_CORRUPT, "truncated", NULL);
  EXPECT_ERR(io_read_npy(k_npy_f32_2x3, 40, &t), FLAGOS_ERR_CORRUPT, "truncated .npy header", NULL);
  EXPECT_ERR(io_read_npy("hello world!", 12, &t), FLAGOS_ERR_CORRUPT, "not a .npy", NULL);
  unsigned char bad[sizeof k_npy_f32_2x3];
  memcpy(bad, k_npy_f32_2x3, sizeof bad);
  memcpy(bad + 10, "{'descr': '<q9'", 15);
  EXPECT_ERR(io_read_npy(bad, sizeof bad, &t), FLAGOS_ERR_UNSUPPORTED, "dtype '<q9'", NULL);
  memcpy(bad, k_npy_f32_2x3, sizeof bad);
  bad[10] = '[';
  EXPECT_ERR(io_read_npy(bad, sizeof bad, &t), FLAGOS_ERR_CORRUPT, "header", NULL);

  /* a truncated file names the file */
  char path[256];
  snprintf(path, sizeof path, "%s/short.npy", g_tmp);
  write_bytes(path, k_npy_f32_2x3, sizeof k_npy_f32_2x3 - 5);
  EXPECT_ERR(io_load_value(path, NULL, &v), FLAGOS_ERR_CORRUPT, "short.npy", "truncated");
  CHECK(v.tensor.data == NULL);
}

/* ---- .npy written by FlagOS: byte-identical to numpy's own files ---- */

static void check_same_file(const char *path, const unsigned char *want, size_t n, const char *what) {
  unsigned char *got;
  size_t gn;
  if (!read_bytes(path, &got, &gn)) return;
  CHECK_MSG(gn == n && memcmp(got, want, n) == 0, "%s: written .npy differs from numpy's (%zu vs %zu bytes)", what, gn,
            n);
  free(got);
}

static void test_npy_writer_matches_numpy(void) {
  char path[256];
  snprintf(path, sizeof path, "%s/w.npy", g_tmp);
  float f[6];
  for (int i = 0; i < 6; i++) f[i] = (float)i / 4;
  flagos_tensor_t t = {.dtype = FLAGOS_FLOAT32, .rank = 2, .dims = {2, 3}, .data = f, .nbytes = sizeof f};
  if (OK(io_write_npy(path, &t))) check_same_file(path, k_npy_f32_2x3, sizeof k_npy_f32_2x3, "f32[2,3]");
  int64_t s = -5;
  t = (flagos_tensor_t){.dtype = FLAGOS_INT64, .rank = 0, .data = &s, .nbytes = 8};
  if (OK(io_write_npy(path, &t))) check_same_file(path, k_npy_i64_scalar, sizeof k_npy_i64_scalar, "i64 scalar");
  uint8_t b[4] = {1, 0, 1, 1};
  t = (flagos_tensor_t){.dtype = FLAGOS_BOOL, .rank = 1, .dims = {4}, .data = b, .nbytes = 4};
  if (OK(io_write_npy(path, &t))) check_same_file(path, k_npy_bool_4, sizeof k_npy_bool_4, "bool[4]");
  float c[4] = {1, 2, 3, -4};
  t = (flagos_tensor_t){.dtype = FLAGOS_COMPLEX64, .rank = 1, .dims = {2}, .data = c, .nbytes = 16};
  if (OK(io_write_npy(path, &t))) check_same_file(path, k_npy_c64_2, sizeof k_npy_c64_2, "c64[2]");
  uint16_t h[3] = {0x3800, 0xbc00, 0x7bff};
  t = (flagos_tensor_t){.dtype = FLAGOS_FLOAT16, .rank = 1, .dims = {3}, .data = h, .nbytes = 6};
  if (OK(io_write_npy(path, &t))) check_same_file(path, k_npy_f16_3, sizeof k_npy_f16_3, "f16[3]");
  char *strs[2] = {"h\xc3\xa9llo", "\xf0\x9f\x98\x80x"};
  t = (flagos_tensor_t){.dtype = FLAGOS_STRING, .rank = 1, .dims = {2}, .data = strs, .nbytes = sizeof strs};
  if (OK(io_write_npy(path, &t))) check_same_file(path, k_npy_str_2, sizeof k_npy_str_2, "str[2]");
  t = (flagos_tensor_t){.dtype = FLAGOS_FLOAT64, .rank = 2, .dims = {0, 3}, .data = NULL, .nbytes = 0};
  if (OK(io_write_npy(path, &t))) check_same_file(path, k_npy_empty_0x3, sizeof k_npy_empty_0x3, "f64[0,3]");
}

/* ---- round trip for every dtype ---- */

static void test_npy_round_trip(void) {
  char path[256];
  snprintf(path, sizeof path, "%s/rt.npy", g_tmp);
  fir_model_t *m = fir_model_create(); /* owns the `expected` types */
  for (int dt = 1; dt < FLAGOS_DTYPE_COUNT; dt++) {
    if (dt == FLAGOS_STRING) continue;
    size_t es = flagos_dtype_size((flagos_dtype_t)dt), n = 7;
    unsigned char data[7 * 16];
    for (size_t i = 0; i < n * es; i++) data[i] = (unsigned char)(i * 37 + (size_t)dt);
    /* keep the values FlagOS memory can hold for the narrow types */
    for (size_t i = 0; i < n; i++) {
      if (dt == FLAGOS_BOOL) data[i] &= 1;
      if (dt == FLAGOS_INT4) data[i] = (unsigned char)(int8_t)((int)(i % 16) - 8);
      if (dt == FLAGOS_UINT4 || dt == FLAGOS_FLOAT4E2M1) data[i] &= 15;
      if (dt == FLAGOS_INT2) data[i] = (unsigned char)(int8_t)((int)(i % 4) - 2);
      if (dt == FLAGOS_UINT2) data[i] &= 3;
    }
    flagos_tensor_t t = {.dtype = (flagos_dtype_t)dt, .rank = 2, .dims = {1, 7}, .data = data, .nbytes = n * es};
    if (!OK(io_write_npy(path, &t))) continue;
    /* what the file holds: numpy's dtype, or the raw bits for types numpy lacks */
    fir_type_t *exp = fir_type_tensor(m, (flagos_dtype_t)dt, 2, (int64_t[]){1, 7});
    flagos_value_t v;
    if (!OK(io_load_value(path, NULL, &v))) continue;
    bool raw = dt == FLAGOS_BFLOAT16 || dt >= FLAGOS_FLOAT8E4M3FN;
    flagos_dtype_t file_dt = dt == FLAGOS_BFLOAT16 ? FLAGOS_UINT16 : raw ? FLAGOS_UINT8 : (flagos_dtype_t)dt;
    CHECK_MSG(v.tensor.dtype == file_dt, "%s written as %s", flagos_dtype_name(dt), flagos_dtype_name(v.tensor.dtype));
    if (dt == FLAGOS_INT4 || dt == FLAGOS_INT2) {
      unsigned mask = dt == FLAGOS_INT4 ? 15 : 3;
      for (size_t i = 0; i < n; i++) CHECK(((uint8_t *)v.tensor.data)[i] == (data[i] & mask));
    } else {
      CHECK_MSG(v.tensor.nbytes == n * es && memcmp(v.tensor.data, data, n * es) == 0, "%s bytes",
                flagos_dtype_name(dt));
    }
    flagos_value_clear(&v);
    /* with the graph's type, the raw bits come back as the real dtype */
    if (OK(io_load_value(path, exp, &v))) {
      CHECK_MSG(v.tensor.dtype == (flagos_dtype_t)dt && v.tensor.rank == 2 && v.tensor.dims[1] == 7,
                "%s read back as %s", flagos_dtype_name(dt), flagos_dtype_name(v.tensor.dtype));
      CHECK_MSG(memcmp(v.tensor.data, data, n * es) == 0, "%s values", flagos_dtype_name(dt));
      flagos_value_clear(&v);
    }
  }
  fir_model_destroy(m);

  /* strings round trip through UTF-32 */
  flagos_value_t v = {.kind = FLAGOS_VALUE_TENSOR};
  char *strs[3] = {"", "\xe4\xb8\xad\xe6\x96\x87", "plain ascii"};
  flagos_tensor_t st = {.dtype = FLAGOS_STRING, .rank = 1, .dims = {3}, .data = strs, .nbytes = sizeof strs};
  if (OK(io_write_npy(path, &st)) && OK(io_load_value(path, NULL, &v))) {
    CHECK(v.tensor.dtype == FLAGOS_STRING && v.tensor.dims[0] == 3);
    for (int i = 0; i < 3 && v.tensor.dims[0] == 3; i++) CHECK(strcmp(((char **)v.tensor.data)[i], strs[i]) == 0);
    flagos_value_clear(&v);
  }
}

/* ---- sequences, optionals, names ---- */

static int exists(const char *dir, const char *name, off_t *size) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat sb;
  if (stat(p, &sb) != 0) return 0;
  if (size) *size = sb.st_size;
  return S_ISDIR(sb.st_mode) ? 2 : 1;
}

static void test_save_layout(void) {
  char *e = io_escape_name("a/b%c\\d\n");
  CHECK(e && strcmp(e, "a%2Fb%25c%5Cd%0A") == 0);
  free(e);
  e = io_escape_name("x:0.y");
  CHECK(e && strcmp(e, "x:0.y") == 0);
  free(e);
  e = io_escape_name("..");
  CHECK(e && strcmp(e, "%2E%2E") == 0);
  free(e);
  e = io_escape_name(".");
  CHECK(e && strcmp(e, "%2E") == 0);
  free(e);
  CHECK(io_escape_name("") == NULL);

  char out[256];
  snprintf(out, sizeof out, "%s/out/deeper", g_tmp);
  float a[2] = {1, 2}, b[1] = {3};
  flagos_value_t items[2] = {{.kind = FLAGOS_VALUE_TENSOR,
                              .tensor = {.dtype = FLAGOS_FLOAT32, .rank = 1, .dims = {2}, .data = a, .nbytes = 8}},
                             {.kind = FLAGOS_VALUE_TENSOR,
                              .tensor = {.dtype = FLAGOS_FLOAT32, .rank = 1, .dims = {1}, .data = b, .nbytes = 4}}};
  flagos_value_t seq = {.kind = FLAGOS_VALUE_SEQUENCE, .n_items = 2, .items = items, .elem_dtype = FLAGOS_FLOAT32};
  CHECK(OK(io_save_value(out, "seq/out", &seq)));
  char seqdir[512];
  snprintf(seqdir, sizeof seqdir, "%s/seq%%2Fout", out);
  CHECK(exists(out, "seq%2Fout", NULL) == 2 && exists(seqdir, "0.npy", NULL) == 1 &&
        exists(seqdir, "1.npy", NULL) == 1);
  CHECK(exists(seqdir, "2.npy", NULL) == 0);
  flagos_value_t back;
  if (OK(io_load_value(seqdir, NULL, &back))) {
    CHECK(back.kind == FLAGOS_VALUE_SEQUENCE && back.n_items == 2 && back.elem_dtype == FLAGOS_FLOAT32);
    if (back.n_items == 2) CHECK(back.items[1].tensor.dims[0] == 1 && ((float *)back.items[1].tensor.data)[0] == 3);
    flagos_value_clear(&back);
  }
  flagos_value_t none = {.kind = FLAGOS_VALUE_OPTIONAL, .present = false, .elem_dtype = FLAGOS_INT32};
  CHECK(OK(io_save_value(out, "maybe", &none)));
  off_t sz = -1;
  CHECK(exists(out, "maybe.none", &sz) == 1 && sz == 0);
  char p[512];
  snprintf(p, sizeof p, "%s/maybe.none", out);
  fir_model_t *m = fir_model_create();
  fir_type_t *opt = fir_type_unknown(m);
  opt->kind = FIR_TYPE_OPTIONAL;
  opt->elem = fir_type_tensor(m, FLAGOS_INT32, 0, NULL);
  if (OK(io_load_value(p, opt, &back))) {
    CHECK(back.kind == FLAGOS_VALUE_OPTIONAL && !back.present && back.elem_dtype == FLAGOS_INT32);
    flagos_value_clear(&back);
  }
  flagos_value_t some = {.kind = FLAGOS_VALUE_OPTIONAL, .present = true, .tensor = items[0].tensor};
  CHECK(OK(io_save_value(out, "some", &some)));
  CHECK(exists(out, "some.npy", NULL) == 1);
  snprintf(p, sizeof p, "%s/some.npy", out);
  if (OK(io_load_value(p, opt, &back))) {
    CHECK(back.kind == FLAGOS_VALUE_OPTIONAL && back.present && back.tensor.dtype == FLAGOS_FLOAT32);
    flagos_value_clear(&back);
  }
  flagos_value_t inner = seq;
  flagos_value_t some_seq = {.kind = FLAGOS_VALUE_OPTIONAL, .present = true, .n_items = 1, .items = &inner};
  CHECK(OK(io_save_value(out, "someseq", &some_seq)));
  snprintf(p, sizeof p, "%s/someseq", out);
  CHECK(exists(p, "1.npy", NULL) == 1);
  fir_model_destroy(m);
  EXPECT_ERR(io_save_value(out, "", &seq), FLAGOS_ERR_INVALID_ARGUMENT, "empty name", NULL);
}

static void test_pb_errors(void) {
  flagos_value_t v;
  char path[512];
  snprintf(path, sizeof path, "%s/missing.pb", g_tmp);
  EXPECT_ERR(io_load_value(path, NULL, &v), FLAGOS_ERR_NOT_FOUND, "missing.pb", "No such file");
  /* a cut copy of a real input */
  char src[1024];
  snprintf(src, sizeof src, "%s/onnx-node/test_abs/test_data_set_0/input_0.pb", FLAGOS_CONFORMANCE_DIR);
  unsigned char *d;
  size_t n;
  if (read_bytes(src, &d, &n)) {
    snprintf(path, sizeof path, "%s/cut.pb", g_tmp);
    write_bytes(path, d, n - 7);
    EXPECT_ERR(io_load_value(path, NULL, &v), FLAGOS_ERR_CORRUPT, "cut.pb", NULL);
    free(d);
  }
  /* a sequence whose tensor is cut */
  snprintf(src, sizeof src, "%s/onnx-node/test_sequence_insert_at_back/test_data_set_0/input_0.pb",
           FLAGOS_CONFORMANCE_DIR);
  fir_model_t *m = fir_model_create();
  fir_type_t *seq = fir_type_unknown(m);
  seq->kind = FIR_TYPE_SEQUENCE;
  seq->elem = fir_type_tensor(m, FLAGOS_INT64, -1, NULL);
  if (read_bytes(src, &d, &n)) {
    CHECK(OK(io_decode_pb_value(d, n, seq, &v)));
    CHECK(v.kind == FLAGOS_VALUE_SEQUENCE && v.n_items == 3 && v.elem_dtype == FLAGOS_INT64);
    flagos_value_clear(&v);
    EXPECT_ERR(io_decode_pb_value(d, n - 3, seq, &v), FLAGOS_ERR_CORRUPT, "protobuf parse failed", NULL);
    CHECK(v.items == NULL && v.n_items == 0);
    free(d);
  }
  /* an empty sequence keeps its element type from the graph */
  if (OK(io_decode_pb_value("", 0, seq, &v))) {
    CHECK(v.kind == FLAGOS_VALUE_SEQUENCE && v.n_items == 0 && v.elem_dtype == FLAGOS_INT64);
    flagos_value_clear(&v);
  }
  fir_model_destroy(m);
  /* a tensor whose raw data is one byte short: dims [2] float, 7 bytes */
  static const unsigned char short_raw[] = {0x08, 0x02, 0x10, 0x01, 0x4a, 0x07, 0, 0, 0x80, 0x3f, 0, 0, 0};
  EXPECT_ERR(io_decode_pb_value(short_raw, sizeof short_raw, NULL, &v), FLAGOS_ERR_CORRUPT, "holds 7 bytes", NULL);
  /* a string tensor's data survives clearing (ASan checks the frees) */
  static const unsigned char strs[] = {0x08, 0x02, 0x10, 0x08, 0x32, 0x02, 'h', 'i', 0x32, 0x00};
  if (OK(io_decode_pb_value(strs, sizeof strs, NULL, &v))) {
    CHECK(v.tensor.dtype == FLAGOS_STRING && strcmp(((char **)v.tensor.data)[0], "hi") == 0 &&
          ((char **)v.tensor.data)[1][0] == 0);
    flagos_value_clear(&v);
  }
}

static void remove_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[1024];
      snprintf(p, sizeof p, "%s/%s", path, e->d_name);
      remove_tree(p);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

int main(void) {
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 2;
  }
  test_conformance_pb();
  test_npy_reader();
  test_npy_writer_matches_numpy();
  test_npy_round_trip();
  test_save_layout();
  test_pb_errors();
  remove_tree(g_tmp);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  puts("test_value_io: all checks passed");
  return 0;
}
