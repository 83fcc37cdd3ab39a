/* FlagCX pieces that need no peers: half-precision conversions (against the
 * compiler's _Float16 and an independent bfloat16 rounding), the reduction
 * kernels (against plain reference loops), tuning files, names and error codes,
 * and a one-rank communicator. Usage: comm_unit SCRATCH_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

static int failures;
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                                        \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)

static uint32_t rng = 12345;
static uint32_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static uint32_t fbits(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  return x;
}
static float bitsf(uint32_t x) {
  float f;
  memcpy(&f, &x, 4);
  return f;
}

static void test_half(void) {
  for (uint32_t h = 0; h < 65536; h++) {
    _Float16 ref;
    uint16_t hb = (uint16_t)h;
    memcpy(&ref, &hb, 2);
    float got = fcx_f16_to_f32(hb);
    if (isnan((float)ref)) CHECK(isnan(got), "f16 %04x should decode to NaN", h);
    else CHECK(got == (float)ref, "f16 %04x decodes to %g, expected %g", h, got, (double)(float)ref);
  }
  int bad = 0;
  for (int i = 0; i < 2000000 && bad < 5; i++) {
    uint32_t x = next();
    if (i < 1000) x = (x & 0x807fffffu) | ((uint32_t)(100 + i % 60) << 23); /* the f16 range, subnormals included */
    float f = bitsf(x);
    _Float16 ref = (_Float16)f;
    uint16_t rb;
    memcpy(&rb, &ref, 2);
    uint16_t got = fcx_f32_to_f16(f);
    bool ok = isnan(f) ? ((got & 0x7c00) == 0x7c00 && (got & 0x3ff)) : got == rb;
    if (!ok) bad++;
    CHECK(ok, "f32 %08x (%g) encodes to f16 %04x, expected %04x", x, (double)f, got, rb);
  }
  /* bfloat16: the nearer of the two neighbours, ties to the even one. */
  bad = 0;
  for (int i = 0; i < 2000000 && bad < 5; i++) {
    float f = bitsf(next());
    if (isnan(f) || isinf(f)) continue;
    uint32_t lo = fbits(f) & 0xffff0000u, hi = lo + 0x10000u;
    /* The upper neighbour's value one bfloat16 ulp further out (2^128 past the
     * largest finite value, where rounding up means overflow to infinity). */
    int e = (int)((lo >> 23) & 0xff);
    double ulp = ldexp(1.0, (e ? e : 1) - 127 - 7), lov = (double)bitsf(lo);
    double hiv = lov + (f < 0 ? -ulp : ulp);
    double dl = fabs((double)f - lov), dh = fabs(hiv - (double)f);
    uint16_t want = (uint16_t)((dl < dh || (dl == dh && !((lo >> 16) & 1))) ? lo >> 16 : hi >> 16);
    uint16_t got = fcx_f32_to_bf16(f);
    if (got != want) bad++;
    CHECK(got == want, "f32 %08x encodes to bf16 %04x, expected %04x", fbits(f), got, want);
    CHECK(fcx_bf16_to_f32(got) == bitsf((uint32_t)got << 16), "bf16 decode");
  }
  CHECK(isnan(fcx_bf16_to_f32(fcx_f32_to_bf16(NAN))), "bf16 NaN stays NaN");
}

/* ---- reductions against reference loops ---- */
static double ref_op(flagcx_red_op_t op, double a, double b) {
  switch (op) {
  case FLAGCX_PROD: return a * b;
  case FLAGCX_MIN: return a < b ? a : b;
  case FLAGCX_MAX: return a > b ? a : b;
  default: return a + b;
  }
}

static double stored(int dt, const unsigned char *p, int i) {
  switch (dt) {
  case FLAGCX_INT8: return ((const int8_t *)p)[i];
  case FLAGCX_UINT8: return ((const uint8_t *)p)[i];
  case FLAGCX_INT16: return ((const int16_t *)p)[i];
  case FLAGCX_INT32: return ((const int32_t *)p)[i];
  case FLAGCX_UINT32: return ((const uint32_t *)p)[i];
  case FLAGCX_INT64: return (double)((const int64_t *)p)[i];
  case FLAGCX_UINT64: return (double)((const uint64_t *)p)[i];
  case FLAGCX_FLOAT16: {
    _Float16 h;
    memcpy(&h, p + 2 * i, 2);
    return (double)h;
  }
  case FLAGCX_BFLOAT16: return bitsf((uint32_t)((const uint16_t *)p)[i] << 16);
  case FLAGCX_FLOAT32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}

static void test_reduce(void) {
  enum { N = 257 };
  for (int dt = 0; dt < FLAGCX_NUM_DATATYPES; dt++) {
    for (int op = 0; op < FLAGCX_NUM_OPS; op++) {
      unsigned char a[N * 8], b[N * 8], out[N * 8];
      double va[N], vb[N];
      for (int i = 0; i < N; i++) {
        /* Values that overflow the narrow integer types check the wrap-around. */
        va[i] = (double)((int)(next() % 301) - 150);
        vb[i] = (double)((int)(next() % 301) - 150);
        if (dt == FLAGCX_UINT8 || dt == FLAGCX_UINT32 || dt == FLAGCX_UINT64) va[i] = fabs(va[i]), vb[i] = fabs(vb[i]);
        if (dt >= FLAGCX_FLOAT16) va[i] /= 8, vb[i] /= 8;
        switch (dt) {
        case FLAGCX_INT8: ((int8_t *)a)[i] = (int8_t)va[i], ((int8_t *)b)[i] = (int8_t)vb[i]; break;
        case FLAGCX_UINT8: ((uint8_t *)a)[i] = (uint8_t)va[i], ((uint8_t *)b)[i] = (uint8_t)vb[i]; break;
        case FLAGCX_INT16: ((int16_t *)a)[i] = (int16_t)va[i], ((int16_t *)b)[i] = (int16_t)vb[i]; break;
        case FLAGCX_INT32: ((int32_t *)a)[i] = (int32_t)va[i], ((int32_t *)b)[i] = (int32_t)vb[i]; break;
        case FLAGCX_UINT32: ((uint32_t *)a)[i] = (uint32_t)va[i], ((uint32_t *)b)[i] = (uint32_t)vb[i]; break;
        case FLAGCX_INT64: ((int64_t *)a)[i] = (int64_t)va[i], ((int64_t *)b)[i] = (int64_t)vb[i]; break;
        case FLAGCX_UINT64: ((uint64_t *)a)[i] = (uint64_t)va[i], ((uint64_t *)b)[i] = (uint64_t)vb[i]; break;
        case FLAGCX_FLOAT16: {
          _Float16 x = (_Float16)va[i], y = (_Float16)vb[i];
          memcpy(a + 2 * i, &x, 2), memcpy(b + 2 * i, &y, 2);
          break;
        }
        case FLAGCX_BFLOAT16: /* multiples of 1/8 below 19 are exact in bfloat16 */
          ((uint16_t *)a)[i] = (uint16_t)(fbits((float)va[i]) >> 16), ((uint16_t *)b)[i] = (uint16_t)(fbits((float)vb[i]) >> 16);
          break;
        case FLAGCX_FLOAT32: ((float *)a)[i] = (float)va[i], ((float *)b)[i] = (float)vb[i]; break;
        default: ((double *)a)[i] = va[i], ((double *)b)[i] = vb[i]; break;
        }
      }
      /* The reference works on the values as stored (narrow integers wrapped). */
      for (int i = 0; i < N; i++) {
        va[i] = stored(dt, a, i);
        vb[i] = stored(dt, b, i);
      }
      fcx_reduce3((flagcx_datatype_t)dt, (flagcx_red_op_t)op, out, a, b, N);
      if (op == FLAGCX_AVG) fcx_avg_finish((flagcx_datatype_t)dt, out, N, 3);
      int bad = 0;
      for (int i = 0; i < N && bad < 3; i++) {
        double r = ref_op((flagcx_red_op_t)op, va[i], vb[i]);
        bool ok;
        switch (dt) {
        case FLAGCX_INT8: {
          int8_t w = (int8_t)(int64_t)r;
          if (op == FLAGCX_AVG) w = (int8_t)(w / 3);
          ok = ((int8_t *)out)[i] == w;
          break;
        }
        case FLAGCX_UINT8: {
          uint8_t w = (uint8_t)(int64_t)r;
          if (op == FLAGCX_AVG) w = (uint8_t)(w / 3);
          ok = ((uint8_t *)out)[i] == w;
          break;
        }
        case FLAGCX_INT16: {
          int16_t w = (int16_t)(int64_t)r;
          if (op == FLAGCX_AVG) w = (int16_t)(w / 3);
          ok = ((int16_t *)out)[i] == w;
          break;
        }
        case FLAGCX_INT32: ok = ((int32_t *)out)[i] == (int32_t)(op == FLAGCX_AVG ? (int64_t)r / 3 : (int64_t)r); break;
        case FLAGCX_UINT32: ok = ((uint32_t *)out)[i] == (uint32_t)(op == FLAGCX_AVG ? (int64_t)r / 3 : (int64_t)r); break;
        case FLAGCX_INT64: ok = ((int64_t *)out)[i] == (op == FLAGCX_AVG ? (int64_t)r / 3 : (int64_t)r); break;
        case FLAGCX_UINT64: ok = ((uint64_t *)out)[i] == (uint64_t)(op == FLAGCX_AVG ? (int64_t)r / 3 : (int64_t)r); break;
        case FLAGCX_FLOAT16: {
          _Float16 w = (_Float16)(float)r, g;
          if (op == FLAGCX_AVG) w = (_Float16)((float)w / 3.0f);
          memcpy(&g, out + 2 * i, 2);
          ok = g == w;
          break;
        }
        case FLAGCX_BFLOAT16: {
          float g = bitsf((uint32_t)((uint16_t *)out)[i] << 16), w = (float)r;
          if (op == FLAGCX_AVG) w /= 3.0f;
          ok = fabsf(g - w) <= fabsf(w) / 128.0f; /* products may need rounding: 8 bits of precision */
          break;
        }
        case FLAGCX_FLOAT32: ok = ((float *)out)[i] == (op == FLAGCX_AVG ? (float)r / 3.0f : (float)r); break;
        default: ok = ((double *)out)[i] == (op == FLAGCX_AVG ? r / 3 : r); break;
        }
        if (!ok) bad++;
        CHECK(ok, "%s %s element %d: inputs %g, %g", flagcx_datatype_name((flagcx_datatype_t)dt),
              flagcx_red_op_name((flagcx_red_op_t)op), i, va[i], vb[i]);
      }
    }
  }
}

/* ---- tuning files ---- */
static char dir[512];

static const char *write_file(const char *name, const char *text) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

static void test_tune(void) {
  fcx_tune_t t;
  fcx_err_t err;
  fcx_tune_builtin(&t, 4);
  CHECK(fcx_tune_pick(&t, FCX_COLL_ALLREDUCE, 1024)->algo == FLAGCX_ALGO_DIRECT, "built-in: 1 KiB all_reduce is direct");
  CHECK(fcx_tune_pick(&t, FCX_COLL_ALLREDUCE, 100000)->algo == FLAGCX_ALGO_TREE, "built-in: 100 KB all_reduce is tree");
  CHECK(fcx_tune_pick(&t, FCX_COLL_ALLREDUCE, 1u << 30)->algo == FLAGCX_ALGO_RING, "built-in: 1 GiB all_reduce is ring");
  CHECK(fcx_tune_pick(&t, FCX_COLL_ALLTOALL, 10)->algo == FLAGCX_ALGO_DIRECT, "all_to_all is direct");
  CHECK(fcx_algo_for(FCX_COLL_ALLGATHER, FLAGCX_ALGO_TREE) == FLAGCX_ALGO_RING, "no tree all_gather: ring instead");

  const char *good = write_file("tune-good.json",
      "{\"format\": \"flagcx-tune\", \"version\": 1, \"tables\": ["
      " {\"nranks\": 4, \"transport\": \"tcp\", \"staging_chunk_bytes\": 65536, \"rules\": {"
      "   \"all_reduce\": [{\"max_bytes\": 100, \"algo\": \"tree\", \"chunk_bytes\": 4096},"
      "                    {\"max_bytes\": 5000, \"algo\": \"direct\", \"chunk_bytes\": 8192},"
      "                    {\"algo\": \"ring\", \"chunk_bytes\": 16384}],"
      "   \"all_gather\": [{\"algo\": \"tree\", \"chunk_bytes\": 2048}]}},"
      " {\"nranks\": 8, \"transport\": \"tcp\", \"rules\": {\"broadcast\": [{\"algo\": \"direct\", \"chunk_bytes\": 1024}]}},"
      " {\"nranks\": 2, \"transport\": \"mpi\", \"rules\": {\"reduce\": [{\"algo\": \"ring\", \"chunk_bytes\": 3072}]}}]}");
  fcx_tune_builtin(&t, 4);
  CHECK(fcx_tune_load(&t, good, 4, "tcp", &err) == FLAGCX_SUCCESS, "load: %s", err.msg);
  const fcx_rule_t *r = fcx_tune_pick(&t, FCX_COLL_ALLREDUCE, 100);
  CHECK(r->algo == FLAGCX_ALGO_TREE && r->chunk_bytes == 4096, "100 B rule");
  r = fcx_tune_pick(&t, FCX_COLL_ALLREDUCE, 101);
  CHECK(r->algo == FLAGCX_ALGO_DIRECT && r->chunk_bytes == 8192, "101 B rule");
  r = fcx_tune_pick(&t, FCX_COLL_ALLREDUCE, 1u << 30);
  CHECK(r->algo == FLAGCX_ALGO_RING && r->chunk_bytes == 16384, "open rule");
  CHECK(fcx_tune_pick(&t, FCX_COLL_ALLGATHER, 10)->algo == FLAGCX_ALGO_RING, "tree all_gather in a file becomes ring");
  CHECK(fcx_tune_pick(&t, FCX_COLL_BROADCAST, 10)->algo == FLAGCX_ALGO_DIRECT, "built-in rules stay for other collectives");
  CHECK(t.staging_chunk_bytes == 65536, "staging chunk from the file");
  CHECK(strstr(t.source, "tune-good.json") && strstr(t.source, "4 ranks"), "source names the file: %s", t.source);
  fcx_tune_builtin(&t, 7);
  CHECK(fcx_tune_load(&t, good, 7, "tcp", &err) == FLAGCX_SUCCESS, "nearest table");
  CHECK(fcx_tune_pick(&t, FCX_COLL_BROADCAST, 1u << 30)->chunk_bytes == 1024, "7 ranks use the 8-rank table");
  fcx_tune_builtin(&t, 2);
  CHECK(fcx_tune_load(&t, good, 2, "mpi", &err) == FLAGCX_SUCCESS, "mpi table");
  CHECK(fcx_tune_pick(&t, FCX_COLL_REDUCE, 5)->chunk_bytes == 3072, "the mpi table's rule");
  CHECK(fcx_tune_load(&t, good, 2, "ib", &err) == FLAGCX_ERR_UNAVAILABLE, "no table for a transport");

  char missing[600];
  snprintf(missing, sizeof missing, "%s/does-not-exist.json", dir);
  CHECK(fcx_tune_load(&t, missing, 2, "tcp", &err) == FLAGCX_ERR_UNAVAILABLE, "a missing file is not an error");
  struct {
    const char *name, *text, *needle;
  } bad[] = {
      {"bad-json.json", "{\"format\": ", "not valid JSON"},
      {"bad-format.json", "{\"format\": \"other\", \"tables\": []}", "flagcx-tune"},
      {"bad-coll.json", "{\"format\": \"flagcx-tune\", \"tables\": [{\"nranks\": 2, \"transport\": \"tcp\", \"rules\": "
                        "{\"allreduce_x\": [{\"algo\": \"ring\", \"chunk_bytes\": 1}]}}]}", "unknown collective 'allreduce_x'"},
      {"bad-algo.json", "{\"format\": \"flagcx-tune\", \"tables\": [{\"nranks\": 2, \"transport\": \"tcp\", \"rules\": "
                        "{\"all_reduce\": [{\"algo\": \"fast\", \"chunk_bytes\": 1}]}}]}", "\"algo\" must be"},
      {"bad-order.json", "{\"format\": \"flagcx-tune\", \"tables\": [{\"nranks\": 2, \"transport\": \"tcp\", \"rules\": "
                         "{\"all_reduce\": [{\"max_bytes\": 10, \"algo\": \"ring\", \"chunk_bytes\": 1}, "
                         "{\"max_bytes\": 5, \"algo\": \"tree\", \"chunk_bytes\": 1}]}}]}", "must grow"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *p = write_file(bad[i].name, bad[i].text);
    fcx_tune_builtin(&t, 2);
    flagcx_result_t rc = fcx_tune_load(&t, p, 2, "tcp", &err);
    CHECK(rc == FLAGCX_ERR_INVALID_ARGUMENT, "%s: code %d", bad[i].name, rc);
    CHECK(strstr(err.msg, bad[i].needle) && strstr(err.msg, bad[i].name), "%s: message '%s'", bad[i].name, err.msg);
    CHECK(fcx_tune_pick(&t, FCX_COLL_ALLREDUCE, 1u << 30)->algo == FLAGCX_ALGO_RING, "%s: table untouched", bad[i].name);
  }
}

static void test_names(void) {
  for (int r = 0; r < FLAGCX_NUM_RESULTS; r++)
    CHECK(strcmp(flagcx_get_error_string((flagcx_result_t)r), "unknown result code") != 0, "error string %d", r);
  CHECK(strcmp(flagcx_get_error_string((flagcx_result_t)99), "unknown result code") == 0, "unknown code");
  for (int d = 0; d < FLAGCX_NUM_DATATYPES; d++)
    CHECK(flagcx_datatype_from_name(flagcx_datatype_name((flagcx_datatype_t)d)) == d, "datatype name %d", d);
  CHECK(flagcx_datatype_size(FLAGCX_BFLOAT16) == 2 && flagcx_datatype_size(FLAGCX_UINT64) == 8, "sizes");
  CHECK(flagcx_datatype_from_name("half") == FLAGCX_FLOAT16 && flagcx_datatype_from_name("nope") == -1, "aliases");
  CHECK(flagcx_red_op_from_name("avg") == FLAGCX_AVG && flagcx_algo_from_name("tree") == FLAGCX_ALGO_TREE, "ops");
  CHECK(flagcx_device_kind_from_name("cpu") == FLAGCX_DEVICE_HOST, "cpu is host");
  fcx_uid_t uid;
  fcx_err_t err;
  CHECK(fcx_parse_hostport("127.0.0.1:29500", &uid, &err) == FLAGCX_SUCCESS && uid.port == 29500, "host:port");
  CHECK(fcx_parse_hostport("localhost", &uid, &err) == FLAGCX_ERR_INVALID_ARGUMENT, "no port");
  CHECK(fcx_parse_hostport("h:99999", &uid, &err) == FLAGCX_ERR_INVALID_ARGUMENT && strstr(err.msg, "bad port"),
        "bad port: %s", err.msg);
}

/* One rank: every collective is a copy, and argument errors are reported. */
static void test_one_rank(void) {
  flagcx_unique_id_t id;
  flagcx_comm_t c;
  CHECK(flagcx_get_unique_id(&id) == FLAGCX_SUCCESS, "unique id: %s", flagcx_last_error(NULL));
  flagcx_config_t cfg;
  flagcx_config_init(&cfg);
  cfg.size = 3;
  CHECK(flagcx_comm_init_rank(&c, 1, id, 0, &cfg) == FLAGCX_ERR_INVALID_ARGUMENT &&
            strstr(flagcx_last_error(NULL), "config.size"),
        "config size checked: %s", flagcx_last_error(NULL));
  CHECK(flagcx_comm_init_rank(&c, 2, id, 2, NULL) == FLAGCX_ERR_INVALID_ARGUMENT, "rank out of range");
  if (flagcx_comm_init_rank(&c, 1, id, 0, NULL) != FLAGCX_SUCCESS) {
    CHECK(0, "one-rank init: %s", flagcx_last_error(NULL));
    return;
  }
  CHECK(strstr(flagcx_comm_describe(c), "path host"), "describe: %s", flagcx_comm_describe(c));
  int32_t a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {0};
  CHECK(flagcx_all_reduce(a, b, 6, FLAGCX_INT32, FLAGCX_AVG, c, NULL) == FLAGCX_SUCCESS && b[5] == 6, "all_reduce");
  memset(b, 0, sizeof b);
  CHECK(flagcx_all_gather(a, b, 3, FLAGCX_INT32, c, NULL) == FLAGCX_SUCCESS && b[2] == 3 && b[3] == 0, "all_gather");
  size_t cnt[1] = {2}, sd[1] = {1}, rd[1] = {3};
  memset(b, 0, sizeof b);
  CHECK(flagcx_all_to_allv(a, cnt, sd, b, cnt, rd, FLAGCX_INT32, c, NULL) == FLAGCX_SUCCESS && b[3] == 2 && b[4] == 3,
        "all_to_allv");
  CHECK(flagcx_group_end() == FLAGCX_ERR_INVALID_USAGE, "group_end without start");
  CHECK(flagcx_all_reduce(a, b, 6, (flagcx_datatype_t)42, FLAGCX_SUM, c, NULL) == FLAGCX_ERR_INVALID_ARGUMENT &&
            strstr(flagcx_last_error(c), "datatype"),
        "bad datatype: %s", flagcx_last_error(c));
  /* A failed call breaks the communicator (its peers were told). */
  CHECK(flagcx_all_reduce(a, b, 6, FLAGCX_INT32, FLAGCX_SUM, c, NULL) == FLAGCX_ERR_ABORTED &&
            strstr(flagcx_last_error(c), "datatype"),
        "broken after an error: %s", flagcx_last_error(c));
  flagcx_all_reduce(a, b, 6, FLAGCX_INT32, FLAGCX_SUM, c, NULL);
  const char *again = flagcx_last_error(c), *first = strstr(again, "unusable");
  CHECK(first && !strstr(first + 1, "unusable"), "the first error is kept, not nested: %s", again);
  flagcx_result_t async;
  CHECK(flagcx_comm_get_async_error(c, &async) == FLAGCX_SUCCESS && async == FLAGCX_ERR_INVALID_ARGUMENT, "async error");
  CHECK(flagcx_comm_destroy(c) == FLAGCX_SUCCESS, "destroy");
  CHECK(flagcx_all_reduce(a, b, 1, FLAGCX_INT32, FLAGCX_SUM, NULL, NULL) == FLAGCX_ERR_INVALID_ARGUMENT, "NULL comm");
}

int main(int argc, char **argv) {
  snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : ".");
  test_half();
  test_reduce();
  test_tune();
  test_names();
  test_one_rank();
  if (failures) {
    fprintf(stderr, "comm_unit: %d failures\n", failures);
    return 1;
  }
  printf("comm_unit: all checks passed\n");
  return 0;
}
