/* Names, clocks, environment, and the error strings of the public API. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fcx.h"

double fcx_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

const char *fcx_env_str(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

long fcx_env_long(const char *name, long dflt) {
  const char *v = fcx_env_str(name);
  if (!v) return dflt;
  char *end = NULL;
  long x = strtol(v, &end, 0);
  if (end == v) return dflt;
  /* Sizes may carry a binary suffix (FLAGCX_CHUNK_BYTES=512K). */
  if (*end == 'k' || *end == 'K') x <<= 10;
  else if (*end == 'm' || *end == 'M') x <<= 20;
  else if (*end == 'g' || *end == 'G') x <<= 30;
  return x;
}

void fcx_debug(const char *fmt, ...) {
  static int level = -1;
  if (level < 0) level = (int)fcx_env_long("FLAGCX_DEBUG", 0);
  if (level <= 0) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "flagcx: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static _Thread_local fcx_err_t thread_err;
fcx_err_t *fcx_thread_err(void) { return &thread_err; }

const char *fcx_coll_name(int coll) {
  switch (coll) {
  case FCX_COLL_ALLREDUCE: return "all_reduce";
  case FCX_COLL_ALLGATHER: return "all_gather";
  case FCX_COLL_REDUCE_SCATTER: return "reduce_scatter";
  case FCX_COLL_BROADCAST: return "broadcast";
  case FCX_COLL_REDUCE: return "reduce";
  case FCX_COLL_ALLTOALL: return "all_to_all";
  case FCX_COLL_ALLTOALLV: return "all_to_allv";
  case FCX_COLL_P2P: return "send/recv";
  case FCX_COLL_SETUP: return "comm_init";
  case FCX_COLL_FINALIZE: return "comm_finalize";
  case FCX_COLL_CHECK: return "call check";
  case FCX_COLL_ABORT: return "abort";
  default: return "unknown call";
  }
}

const char *flagcx_get_error_string(flagcx_result_t r) {
  switch (r) {
  case FLAGCX_SUCCESS: return "success";
  case FLAGCX_ERR_INVALID_ARGUMENT: return "invalid argument";
  case FLAGCX_ERR_INVALID_USAGE: return "invalid usage";
  case FLAGCX_ERR_SYSTEM: return "system error";
  case FLAGCX_ERR_REMOTE: return "remote error (a peer failed or went away)";
  case FLAGCX_ERR_TIMEOUT: return "timeout";
  case FLAGCX_ERR_MISMATCH: return "mismatched calls across ranks";
  case FLAGCX_ERR_UNAVAILABLE: return "unavailable (library or device missing)";
  case FLAGCX_ERR_DEVICE: return "device runtime error";
  case FLAGCX_ERR_ABORTED: return "communicator aborted";
  case FLAGCX_ERR_OUT_OF_MEMORY: return "out of memory";
  case FLAGCX_ERR_INTERNAL: return "internal error";
  default: return "unknown result code";
  }
}

flagcx_result_t flagcx_get_version(int *version) {
  if (!version) return FLAGCX_ERR_INVALID_ARGUMENT;
  *version = FLAGCX_VERSION_CODE;
  return FLAGCX_SUCCESS;
}

static const size_t dt_size[FLAGCX_NUM_DATATYPES] = {1, 1, 2, 4, 4, 8, 8, 2, 2, 4, 8};
static const char *const dt_name[FLAGCX_NUM_DATATYPES] = {
    "int8", "uint8", "int16", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32", "float64"};
static const char *const op_name[FLAGCX_NUM_OPS] = {"sum", "prod", "min", "max", "avg"};
static const char *const kind_name[FLAGCX_NUM_DEVICE_KINDS] = {"host", "cuda", "opencl"};
static const char *const algo_name[4] = {"auto", "ring", "tree", "direct"};

size_t flagcx_datatype_size(flagcx_datatype_t dt) {
  return (unsigned)dt < FLAGCX_NUM_DATATYPES ? dt_size[dt] : 0;
}
const char *flagcx_datatype_name(flagcx_datatype_t dt) {
  return (unsigned)dt < FLAGCX_NUM_DATATYPES ? dt_name[dt] : "invalid-datatype";
}
const char *flagcx_red_op_name(flagcx_red_op_t op) {
  return (unsigned)op < FLAGCX_NUM_OPS ? op_name[op] : "invalid-op";
}
const char *flagcx_device_kind_name(flagcx_device_kind_t k) {
  return (unsigned)k < FLAGCX_NUM_DEVICE_KINDS ? kind_name[k] : "invalid-device";
}
const char *flagcx_algo_name(flagcx_algo_t a) { return (unsigned)a < 4 ? algo_name[a] : "invalid-algo"; }

static int find_name(const char *const *names, int n, const char *s) {
  if (!s) return -1;
  for (int i = 0; i < n; i++)
    if (strcasecmp(names[i], s) == 0) return i;
  return -1;
}

int flagcx_datatype_from_name(const char *s) {
  static const struct {
    const char *alias;
    int dt;
  } aliases[] = {{"char", FLAGCX_INT8},   {"i8", FLAGCX_INT8},      {"u8", FLAGCX_UINT8},  {"i16", FLAGCX_INT16},
                 {"int", FLAGCX_INT32},   {"i32", FLAGCX_INT32},    {"u32", FLAGCX_UINT32}, {"i64", FLAGCX_INT64},
                 {"u64", FLAGCX_UINT64},  {"half", FLAGCX_FLOAT16}, {"f16", FLAGCX_FLOAT16}, {"bf16", FLAGCX_BFLOAT16},
                 {"float", FLAGCX_FLOAT32}, {"f32", FLAGCX_FLOAT32}, {"double", FLAGCX_FLOAT64}, {"f64", FLAGCX_FLOAT64}};
  int i = find_name(dt_name, FLAGCX_NUM_DATATYPES, s);
  if (i >= 0 || !s) return i;
  for (size_t k = 0; k < sizeof aliases / sizeof aliases[0]; k++)
    if (strcasecmp(aliases[k].alias, s) == 0) return aliases[k].dt;
  return -1;
}
int flagcx_red_op_from_name(const char *s) { return find_name(op_name, FLAGCX_NUM_OPS, s); }
int flagcx_device_kind_from_name(const char *s) {
  if (s && strcasecmp(s, "cpu") == 0) return FLAGCX_DEVICE_HOST;
  return find_name(kind_name, FLAGCX_NUM_DEVICE_KINDS, s);
}
int flagcx_algo_from_name(const char *s) { return find_name(algo_name, 4, s); }

void flagcx_config_init(flagcx_config_t *c) {
  if (!c) return;
  memset(c, 0, sizeof *c);
  c->size = sizeof *c;
  c->device = FLAGCX_DEVICE_HOST;
  c->transport = FLAGCX_TRANSPORT_AUTO;
}
