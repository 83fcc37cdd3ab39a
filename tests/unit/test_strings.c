/* String tensors end to end: tests/data/strings/strings.onnx (written by
 * tests/tools/gen_strings_model.py) is compiled for the cpu target and run
 * through the public API with string inputs built here as `char *` arrays; every
 * output (strings, bools, integers, floats) must equal what ONNX's reference
 * implementation computed (tests/unit/strings_facts.h). The run is repeated on
 * the same session, bad string inputs must be refused with a message, and the
 * RE2-to-POSIX rewriting of RegexFullMatch is checked against Python's
 * re.fullmatch on patterns where RE2 and Python agree. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagos/flagos.h"
#include "ops/ops_string.h"
#include "strings_facts.h"

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

static const char *msg(flagos_status_t st) { return st ? flagos_status_message(st) : "ok"; }

/* A tensor viewing caller-owned data (the session must not take it over). */
static flagos_value_t tensor(flagos_dtype_t dt, int rank, const int64_t *dims, const void *data, size_t elem) {
  flagos_value_t v;
  memset(&v, 0, sizeof v);
  v.kind = FLAGOS_VALUE_TENSOR;
  v.tensor.dtype = dt;
  v.tensor.rank = rank;
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= v.tensor.dims[i] = dims[i];
  v.tensor.data = (void *)data;
  v.tensor.nbytes = (size_t)n * elem;
  return v;
}

static bool same_shape(const flagos_tensor_t *t, int rank, const int64_t *dims) {
  if (t->rank != rank) return false;
  for (int i = 0; i < rank; i++)
    if (t->dims[i] != dims[i]) return false;
  return true;
}

#define EXPECT_SHAPE(out, name)                                                                                      \
  CHECK(same_shape(&(out).tensor, out_##name##_rank, out_##name##_dims), "%s: shape rank %d dims[0] %lld", #name,   \
        (out).tensor.rank, (long long)(out).tensor.dims[0])

static void expect_strings(const flagos_value_t *v, const char *name, flagos_dtype_t dt, const char *const *want,
                           int64_t n) {
  CHECK(v->tensor.dtype == dt, "%s: dtype %s", name, flagos_dtype_name(v->tensor.dtype));
  if (v->tensor.dtype != FLAGOS_STRING || flagos_tensor_numel(&v->tensor) != n) return;
  char **got = v->tensor.data;
  for (int64_t i = 0; i < n; i++)
    CHECK(strcmp(got[i], want[i]) == 0, "%s[%lld]: \"%s\", expected \"%s\"", name, (long long)i, got[i], want[i]);
}

static void expect_ints(const flagos_value_t *v, const char *name, flagos_dtype_t dt, const int64_t *want, int64_t n) {
  CHECK(v->tensor.dtype == dt, "%s: dtype %s", name, flagos_dtype_name(v->tensor.dtype));
  if (v->tensor.dtype != dt || flagos_tensor_numel(&v->tensor) != n) return;
  for (int64_t i = 0; i < n; i++) {
    int64_t g = dt == FLAGOS_INT64 ? ((int64_t *)v->tensor.data)[i] : ((int32_t *)v->tensor.data)[i];
    CHECK(g == want[i], "%s[%lld]: %lld, expected %lld", name, (long long)i, (long long)g, (long long)want[i]);
  }
}

static void expect_bools(const flagos_value_t *v, const char *name, const uint8_t *want, int64_t n) {
  CHECK(v->tensor.dtype == FLAGOS_BOOL, "%s: dtype %s", name, flagos_dtype_name(v->tensor.dtype));
  if (v->tensor.dtype != FLAGOS_BOOL || flagos_tensor_numel(&v->tensor) != n) return;
  for (int64_t i = 0; i < n; i++)
    CHECK(((uint8_t *)v->tensor.data)[i] == want[i], "%s[%lld]: %d, expected %d", name, (long long)i,
          ((uint8_t *)v->tensor.data)[i], want[i]);
}

#define N(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

static void check_outputs(flagos_value_t *o) {
  int k = 0;
  EXPECT_SHAPE(o[k], norm);
  expect_strings(&o[k++], "norm", FLAGOS_STRING, out_norm, N(out_norm));
  EXPECT_SHAPE(o[k], shout);
  expect_strings(&o[k++], "shout", FLAGOS_STRING, out_shout, N(out_shout));
  EXPECT_SHAPE(o[k], match);
  expect_bools(&o[k++], "match", out_match, N(out_match));
  EXPECT_SHAPE(o[k], is_brown);
  expect_bools(&o[k++], "is_brown", out_is_brown, N(out_is_brown));
  EXPECT_SHAPE(o[k], ids);
  expect_ints(&o[k++], "ids", FLAGOS_INT64, out_ids, N(out_ids));
  EXPECT_SHAPE(o[k], parts);
  expect_strings(&o[k++], "parts", FLAGOS_STRING, out_parts, N(out_parts));
  EXPECT_SHAPE(o[k], counts);
  expect_ints(&o[k++], "counts", FLAGOS_INT64, out_counts, N(out_counts));
  EXPECT_SHAPE(o[k], nums_str);
  expect_strings(&o[k++], "nums_str", FLAGOS_STRING, out_nums_str, N(out_nums_str));
  EXPECT_SHAPE(o[k], nums64_str);
  expect_strings(&o[k++], "nums64_str", FLAGOS_STRING, out_nums64_str, N(out_nums64_str));
  EXPECT_SHAPE(o[k], ints_str);
  expect_strings(&o[k++], "ints_str", FLAGOS_STRING, out_ints_str, N(out_ints_str));
  EXPECT_SHAPE(o[k], flags_str);
  expect_strings(&o[k++], "flags_str", FLAGOS_STRING, out_flags_str, N(out_flags_str));
  EXPECT_SHAPE(o[k], codes_f);
  CHECK(o[k].tensor.dtype == FLAGOS_FLOAT32, "codes_f: dtype %s", flagos_dtype_name(o[k].tensor.dtype));
  if (o[k].tensor.dtype == FLAGOS_FLOAT32 && flagos_tensor_numel(&o[k].tensor) == N(out_codes_f))
    for (int64_t i = 0; i < N(out_codes_f); i++)
      CHECK(((float *)o[k].tensor.data)[i] == (float)out_codes_f[i], "codes_f[%lld]: %g, expected %g", (long long)i,
            ((float *)o[k].tensor.data)[i], out_codes_f[i]);
  k++;
  EXPECT_SHAPE(o[k], codes_i32);
  expect_ints(&o[k++], "codes_i32", FLAGOS_INT32, out_codes_i32, N(out_codes_i32));
  EXPECT_SHAPE(o[k], codes_back);
  expect_strings(&o[k++], "codes_back", FLAGOS_STRING, out_codes_back, N(out_codes_back));
}

static void check_model(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/data/strings/strings.onnx", FLAGOS_SOURCE_DIR);
  flagos_bundle_t *b = NULL;
  flagos_session_t *s = NULL;
  flagos_status_t st = flagos_compile_to_bundle(path, NULL, &b);
  CHECK(!st, "compile %s: %s", path, msg(st));
  if (!st) st = flagos_session_create(b, NULL, &s);
  CHECK(!st, "session: %s", msg(st));
  if (st) {
    flagos_status_free(st);
    flagos_bundle_close(b);
    return;
  }
  float nums[N(in_nums)];
  for (int64_t i = 0; i < N(in_nums); i++) nums[i] = (float)in_nums[i];
  flagos_value_t in[8] = {
      tensor(FLAGOS_STRING, in_words_rank, in_words_dims, in_words, sizeof(char *)),
      tensor(FLAGOS_STRING, in_sentences_rank, in_sentences_dims, in_sentences, sizeof(char *)),
      tensor(FLAGOS_FLOAT32, in_nums_rank, in_nums_dims, nums, sizeof(float)),
      tensor(FLAGOS_FLOAT64, in_nums64_rank, in_nums64_dims, in_nums64, sizeof(double)),
      tensor(FLAGOS_INT64, in_ints_rank, in_ints_dims, in_ints, sizeof(int64_t)),
      tensor(FLAGOS_BOOL, in_flags_rank, in_flags_dims, in_flags, 1),
      tensor(FLAGOS_STRING, in_codes_rank, in_codes_dims, in_codes, sizeof(char *)),
      tensor(FLAGOS_STRING, in_codes_i_rank, in_codes_i_dims, in_codes_i, sizeof(char *)),
  };
  in[0].tensor.nbytes = 0; /* callers may leave nbytes at 0 for strings: the dims say how many */
  flagos_value_t out[14];
  for (int rep = 0; rep < 2; rep++) {
    memset(out, 0, sizeof out);
    st = flagos_session_run(s, in, 8, out, 14);
    CHECK(!st, "run %d: %s", rep, msg(st));
    if (!st) check_outputs(out);
    flagos_status_free(st);
    for (int k = 0; k < 14; k++) flagos_value_clear(&out[k]);
  }
  /* The inputs were only read. */
  CHECK(strcmp(in_words[0], "The") == 0 && ((const char *const *)in[0].tensor.data)[4] == in_words[4],
        "the caller's strings were changed");

  /* A NULL string element and a numeric tensor where strings are expected are refused. */
  const char *holey[5] = {"a", NULL, "b", "c", "d"};
  flagos_value_t bad[8];
  memcpy(bad, in, sizeof bad);
  bad[0] = tensor(FLAGOS_STRING, in_words_rank, in_words_dims, holey, sizeof(char *));
  memset(out, 0, sizeof out);
  st = flagos_session_run(s, bad, 8, out, 14);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT && strstr(msg(st), "NULL"),
        "NULL string element: got %s", msg(st));
  flagos_status_free(st);
  bad[0] = tensor(FLAGOS_FLOAT32, in_nums_rank, in_nums_dims, nums, sizeof(float));
  st = flagos_session_run(s, bad, 8, out, 14);
  CHECK(st && strstr(msg(st), "words"), "float tensor for a string input: got %s", msg(st));
  flagos_status_free(st);
  /* A string that is not a number cannot be cast to one. */
  const char *junk[4] = {"1", "2", "three", "4"};
  memcpy(bad, in, sizeof bad);
  bad[6] = tensor(FLAGOS_STRING, in_codes_rank, in_codes_dims, junk, sizeof(char *));
  st = flagos_session_run(s, bad, 8, out, 14);
  CHECK(st && strstr(msg(st), "three"), "Cast of \"three\" to float: got %s", msg(st));
  flagos_status_free(st);

  flagos_session_destroy(s);
  flagos_bundle_close(b);
}

static void check_regex(void) {
  for (size_t i = 0; i < sizeof k_regex_cases / sizeof k_regex_cases[0]; i++) {
    const regex_case_t *c = &k_regex_cases[i];
    ops_str_regex_t re;
    flagos_status_t st = ops_str_regex_compile(c->pattern, &re);
    CHECK(!st, "pattern \"%s\": %s", c->pattern, msg(st));
    if (st) {
      flagos_status_free(st);
      continue;
    }
    bool m = ops_str_regex_full_match(&re, c->subject);
    char *posix = NULL;
    bool icase;
    flagos_status_free(ops_str_regex_to_posix(c->pattern, &posix, &icase));
    CHECK(m == (c->full_match != 0), "pattern \"%s\" (POSIX \"%s\") on \"%s\": %d, expected %d", c->pattern,
          posix ? posix : "?", c->subject, m, c->full_match);
    free(posix);
    ops_str_regex_free(&re);
  }
  for (size_t i = 0; i < sizeof k_regex_refused / sizeof k_regex_refused[0]; i++) {
    ops_str_regex_t re;
    flagos_status_t st = ops_str_regex_compile(k_regex_refused[i], &re);
    CHECK(st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED && strstr(msg(st), "RegexFullMatch"),
          "pattern \"%s\" should be refused as unsupported, got: %s", k_regex_refused[i], msg(st));
    if (!st) ops_str_regex_free(&re);
    flagos_status_free(st);
  }
}

int main(void) {
  check_model();
  check_regex();
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
