/* Runs every collective x datatype x reduction op on 2 or more ranks and checks
 * the results against values computed here from the inputs' formula (not by
 * FlagCX): exact comparison for integers and data movement, a tolerance for
 * floating-point reductions.
 *
 *   comm_check --nranks 4 --device host            (forked ranks, TCP)
 *   mpirun -np 4 comm_check --device host,opencl   (mixed communicator)
 *
 * OpenCL ranks make their own context and queue, as an application would, and
 * pass them to FlagCX; their buffers are cl_mem objects filled with OpenCL.
 * CUDA ranks (--device cuda, cuda,host) use FlagCX's flagcx_mem_* helpers and
 * a stream from flagcx_stream_create, so this test needs no CUDA to build. */
#ifdef FLAGCX_TEST_OPENCL
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#else
typedef void *cl_context, *cl_device_id, *cl_command_queue;
#endif
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagos/flagcx.h"
#include "tool_common.h"

typedef struct tdev {
  flagcx_device_kind_t kind;
  cl_context ctx;
  cl_device_id dev;
  cl_command_queue q;
  flagcx_comm_t comm;     /* CUDA: buffers and streams through FlagCX */
  flagcx_stream_t stream; /* CUDA */
} tdev_t;

typedef struct cfg {
  const char *algos;
  size_t chunk, stage_chunk;
  int max_fail;
} cfg_t;

static tdev_t D;
static long checks, failures;
static int my_rank;

/* ---- buffers of the rank's kind ---- */
static void *balloc(size_t bytes) {
  if (bytes == 0) bytes = 1;
#ifdef FLAGCX_TEST_OPENCL
  if (D.kind == FLAGCX_DEVICE_OPENCL) {
    cl_int rc;
    cl_mem m = clCreateBuffer(D.ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    return rc == CL_SUCCESS ? m : NULL;
  }
#endif
  if (D.kind == FLAGCX_DEVICE_CUDA) {
    void *p = NULL;
    return flagcx_mem_alloc(D.comm, bytes, &p) == FLAGCX_SUCCESS ? p : NULL;
  }
  return calloc(1, bytes);
}
static void bfree(void *b) {
  if (!b) return;
#ifdef FLAGCX_TEST_OPENCL
  if (D.kind == FLAGCX_DEVICE_OPENCL) {
    clReleaseMemObject((cl_mem)b);
    return;
  }
#endif
  if (D.kind == FLAGCX_DEVICE_CUDA) flagcx_mem_free(D.comm, b);
  else free(b);
}
/* Writes go on the application's queue without waiting: FlagCX must order its
 * reads after them (the queue is the call's stream). */
static void bwrite(void *b, size_t off, const void *src, size_t n) {
#ifdef FLAGCX_TEST_OPENCL
  if (D.kind == FLAGCX_DEVICE_OPENCL) {
    clEnqueueWriteBuffer(D.q, (cl_mem)b, CL_FALSE, off, n, src, 0, NULL, NULL);
    return;
  }
#endif
  if (D.kind == FLAGCX_DEVICE_CUDA) flagcx_mem_write(D.comm, b, off, src, n);
  else memcpy((char *)b + off, src, n);
}
static void bread(void *b, size_t off, void *dst, size_t n) {
#ifdef FLAGCX_TEST_OPENCL
  if (D.kind == FLAGCX_DEVICE_OPENCL) {
    clEnqueueReadBuffer(D.q, (cl_mem)b, CL_TRUE, off, n, dst, 0, NULL, NULL);
    return;
  }
#endif
  if (D.kind == FLAGCX_DEVICE_CUDA) {
    flagcx_stream_synchronize(D.comm, D.stream); /* NCCL calls are asynchronous */
    flagcx_mem_read(D.comm, dst, b, off, n);
  } else {
    memcpy(dst, (char *)b + off, n);
  }
}
static flagcx_stream_t stream(void) {
  return D.kind == FLAGCX_DEVICE_OPENCL ? (flagcx_stream_t)D.q : D.kind == FLAGCX_DEVICE_CUDA ? D.stream : NULL;
}
/* In place: the same cl_mem, or (host, CUDA) a pointer into the buffer. */
static void *at(void *b, size_t off) { return D.kind == FLAGCX_DEVICE_OPENCL ? b : (char *)b + off; }

/* ---- values ---- */
static bool dt_float(flagcx_datatype_t dt) { return dt >= FLAGCX_FLOAT16; }
static bool dt_signed(flagcx_datatype_t dt) {
  return dt == FLAGCX_INT8 || dt == FLAGCX_INT16 || dt == FLAGCX_INT32 || dt == FLAGCX_INT64 || dt_float(dt);
}
static size_t dsize(flagcx_datatype_t dt) { return flagcx_datatype_size(dt); }

static uint16_t bf16_of(double v) { /* exact for the small integers used */
  float f = (float)v;
  uint32_t x;
  memcpy(&x, &f, 4);
  return (uint16_t)(x >> 16);
}

static void put(flagcx_datatype_t dt, void *p, size_t i, double v) {
  switch (dt) {
  case FLAGCX_INT8: ((int8_t *)p)[i] = (int8_t)(int64_t)v; break;
  case FLAGCX_UINT8: ((uint8_t *)p)[i] = (uint8_t)(int64_t)v; break;
  case FLAGCX_INT16: ((int16_t *)p)[i] = (int16_t)(int64_t)v; break;
  case FLAGCX_INT32: ((int32_t *)p)[i] = (int32_t)(int64_t)v; break;
  case FLAGCX_UINT32: ((uint32_t *)p)[i] = (uint32_t)(int64_t)v; break;
  case FLAGCX_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
  case FLAGCX_UINT64: ((uint64_t *)p)[i] = (uint64_t)(int64_t)v; break;
  case FLAGCX_FLOAT16: {
    _Float16 h = (_Float16)v; /* the compiler's conversion, independent of FlagCX's */
    memcpy((uint16_t *)p + i, &h, 2);
    break;
  }
  case FLAGCX_BFLOAT16: ((uint16_t *)p)[i] = bf16_of(v); break;
  case FLAGCX_FLOAT32: ((float *)p)[i] = (float)v; break;
  default: ((double *)p)[i] = v; break;
  }
}

static double get(flagcx_datatype_t dt, const void *p, size_t i) {
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
    memcpy(&h, (const uint16_t *)p + i, 2);
    return (double)h;
  }
  case FLAGCX_BFLOAT16: {
    uint32_t x = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
  }
  case FLAGCX_FLOAT32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}

/* Reduction inputs: small integers whose sums and products fit every type. */
static double red_in(flagcx_datatype_t dt, flagcx_red_op_t op, int rank, size_t i) {
  bool s = dt_signed(dt);
  switch (op) {
  case FLAGCX_PROD: {
    static const double sv[4] = {-2, -1, 1, 2};
    return s ? sv[(i + (size_t)rank) % 4] : (double)(1 + (i + (size_t)rank) % 3);
  }
  case FLAGCX_MIN:
  case FLAGCX_MAX: return (double)((i * 5 + (size_t)rank * 13) % 23) - (s ? 11 : 0);
  default: return (double)((i * 7 + (size_t)rank * 3) % 11) - (s ? 5 : 0);
  }
}

static double red_want(flagcx_datatype_t dt, flagcx_red_op_t op, int n, size_t i) {
  double acc = red_in(dt, op, 0, i);
  for (int r = 1; r < n; r++) {
    double v = red_in(dt, op, r, i);
    acc = op == FLAGCX_PROD ? acc * v : op == FLAGCX_MIN ? fmin(acc, v) : op == FLAGCX_MAX ? fmax(acc, v) : acc + v;
  }
  if (op == FLAGCX_AVG) acc = dt_float(dt) ? acc / n : (double)((int64_t)acc / n); /* integers truncate */
  return acc;
}

/* Data movement inputs: distinct per rank and element, exact in every type. */
static double mov_in(int rank, size_t i) { return (double)((rank * 37 + (long)i * 11) % 251); }

static void fail(const char *what, flagcx_datatype_t dt, const char *extra, size_t i, double got, double want) {
  failures++;
  if (failures <= 20)
    fprintf(stderr, "rank %d: FAIL %s %s %s: element %zu is %g, expected %g\n", my_rank, what,
            flagcx_datatype_name(dt), extra, i, got, want);
}

static void expect(const char *what, flagcx_datatype_t dt, const char *extra, const void *buf, size_t i,
                   double want) {
  checks++;
  double got = get(dt, buf, i);
  unsigned char tmp[8];
  put(dt, tmp, 0, want); /* the expected value as the type holds it */
  double w = get(dt, tmp, 0);
  double tol = dt == FLAGCX_FLOAT16 || dt == FLAGCX_BFLOAT16 ? 1e-2 * (1 + fabs(w))
               : dt_float(dt)                                 ? 1e-6 * (1 + fabs(w))
                                                              : 0;
  if (!(fabs(got - w) <= tol)) fail(what, dt, extra, i, got, w);
}

static bool call_ok(flagcx_result_t r, flagcx_comm_t comm, const char *what) {
  if (r == FLAGCX_SUCCESS) return true;
  fprintf(stderr, "rank %d: %s returned %s: %s\n", my_rank, what, flagcx_get_error_string(r), flagcx_last_error(comm));
  failures++;
  return false;
}

/* ---- the collectives ---- */
static bool test_reductions(flagcx_comm_t comm, int r, int n, flagcx_datatype_t dt, size_t count, bool inplace) {
  size_t es = dsize(dt);
  unsigned char *h = malloc(count * (size_t)n * es + 8);
  void *s = balloc(count * (size_t)n * es), *d = balloc(count * (size_t)n * es);
  bool ok = true;
  char extra[64];
  for (int op = 0; op < FLAGCX_NUM_OPS && ok; op++) {
    flagcx_red_op_t o = (flagcx_red_op_t)op;
    snprintf(extra, sizeof extra, "%s count %zu%s", flagcx_red_op_name(o), count, inplace ? " in place" : "");
    /* all_reduce */
    for (size_t i = 0; i < count; i++) put(dt, h, i, red_in(dt, o, r, i));
    bwrite(inplace ? d : s, 0, h, count * es);
    ok = call_ok(flagcx_all_reduce(inplace ? d : s, d, count, dt, o, comm, stream()), comm, "all_reduce");
    if (!ok) break;
    bread(d, 0, h, count * es);
    for (size_t i = 0; i < count; i++) expect("all_reduce", dt, extra, h, i, red_want(dt, o, n, i));
    /* reduce to the last rank */
    int root = n - 1;
    for (size_t i = 0; i < count; i++) put(dt, h, i, red_in(dt, o, r, i));
    bwrite(inplace ? d : s, 0, h, count * es);
    ok = call_ok(flagcx_reduce(inplace ? d : s, d, count, dt, o, root, comm, stream()), comm, "reduce");
    if (!ok) break;
    if (r == root) {
      bread(d, 0, h, count * es);
      for (size_t i = 0; i < count; i++) expect("reduce", dt, extra, h, i, red_want(dt, o, n, i));
    }
    /* reduce_scatter: block p of rank r holds red_in(.., r, p*count + i) */
    for (size_t i = 0; i < count * (size_t)n; i++) put(dt, h, i, red_in(dt, o, r, i));
    bwrite(inplace ? d : s, 0, h, count * (size_t)n * es);
    void *out = inplace ? at(d, (size_t)r * count * es) : d;
    ok = call_ok(flagcx_reduce_scatter(inplace ? d : s, out, count, dt, o, comm, stream()), comm, "reduce_scatter");
    if (!ok) break;
    bread(d, inplace ? (size_t)r * count * es : 0, h, count * es);
    for (size_t i = 0; i < count; i++) expect("reduce_scatter", dt, extra, h, i, red_want(dt, o, n, (size_t)r * count + i));
  }
  bfree(s);
  bfree(d);
  free(h);
  return ok;
}

static bool test_movement(flagcx_comm_t comm, int r, int n, flagcx_datatype_t dt, size_t count, bool inplace) {
  size_t es = dsize(dt), all = count * (size_t)n;
  unsigned char *h = malloc(all * es + 8);
  void *s = balloc(all * es), *d = balloc(all * es);
  bool ok = true;
  char extra[64];
  snprintf(extra, sizeof extra, "count %zu%s", count, inplace ? " in place" : "");
  /* broadcast from rank 0 and from the last rank */
  for (int root = 0; root < n && ok; root += n - 1) {
    for (size_t i = 0; i < count; i++) put(dt, h, i, r == root ? mov_in(root, i) : -1);
    bwrite(inplace ? d : s, 0, h, count * es);
    if (!inplace) bwrite(d, 0, h, count * es); /* stale data the broadcast must overwrite */
    ok = call_ok(flagcx_broadcast(inplace ? d : s, d, count, dt, root, comm, stream()), comm, "broadcast");
    if (!ok) break;
    bread(d, 0, h, count * es);
    for (size_t i = 0; i < count; i++) expect("broadcast", dt, extra, h, i, mov_in(root, i));
    if (root == n - 1 || n == 1) break;
  }
  /* all_gather */
  if (ok) {
    for (size_t i = 0; i < count; i++) put(dt, h, i, mov_in(r, i));
    bwrite(inplace ? d : s, inplace ? (size_t)r * count * es : 0, h, count * es);
    ok = call_ok(flagcx_all_gather(inplace ? at(d, (size_t)r * count * es) : s, d, count, dt, comm, stream()), comm,
                 "all_gather");
  }
  if (ok) {
    bread(d, 0, h, all * es);
    for (size_t i = 0; i < all; i++) expect("all_gather", dt, extra, h, i, mov_in((int)(i / count), i % count));
  }
  /* all_to_all: rank r's block p element i is mov_in(r, p*count + i) */
  if (ok && !inplace) {
    for (size_t i = 0; i < all; i++) put(dt, h, i, mov_in(r, i));
    bwrite(s, 0, h, all * es);
    ok = call_ok(flagcx_all_to_all(s, d, count, dt, comm, stream()), comm, "all_to_all");
    if (ok) {
      bread(d, 0, h, all * es);
      for (size_t i = 0; i < all; i++)
        expect("all_to_all", dt, extra, h, i, mov_in((int)(i / count), (size_t)r * count + i % count));
    }
  }
  bfree(s);
  bfree(d);
  free(h);
  return ok;
}

/* all_to_allv with uneven counts and gaps between blocks. */
static bool test_alltoallv(flagcx_comm_t comm, int r, int n, flagcx_datatype_t dt, size_t base) {
  size_t es = dsize(dt);
  size_t sc[64], sd[64], rc[64], rd[64], stot = 0, rtot = 0;
  for (int p = 0; p < n; p++) {
    sc[p] = base * (size_t)(1 + (r * 2 + p) % 4) + (size_t)p;
    rc[p] = base * (size_t)(1 + (p * 2 + r) % 4) + (size_t)r;
    sd[p] = stot;
    rd[p] = rtot;
    stot += sc[p] + 1;
    rtot += rc[p] + 2;
  }
  unsigned char *h = calloc(stot + rtot + 8, es);
  void *s = balloc(stot * es), *d = balloc(rtot * es);
  for (int p = 0; p < n; p++)
    for (size_t j = 0; j < sc[p]; j++) put(dt, h, sd[p] + j, mov_in(r * 8 + p, j));
  bwrite(s, 0, h, stot * es);
  bool ok = call_ok(flagcx_all_to_allv(s, sc, sd, d, rc, rd, dt, comm, stream()), comm, "all_to_allv");
  if (ok) {
    bread(d, 0, h, rtot * es);
    for (int p = 0; p < n; p++)
      for (size_t j = 0; j < rc[p]; j++) expect("all_to_allv", dt, "", h, rd[p] + j, mov_in(p * 8 + r, j));
  }
  bfree(s);
  bfree(d);
  free(h);
  return ok;
}

/* Send/recv: a ring inside a group, then pairs without a group. */
static bool test_p2p(flagcx_comm_t comm, int r, int n, flagcx_datatype_t dt, size_t count) {
  size_t es = dsize(dt);
  unsigned char *h = malloc(count * es + 8);
  void *s = balloc(count * es), *d = balloc(count * es);
  for (size_t i = 0; i < count; i++) put(dt, h, i, mov_in(r, i));
  bwrite(s, 0, h, count * es);
  int to = (r + 1) % n, from = (r - 1 + n) % n;
  flagcx_group_start();
  flagcx_send(s, count, dt, to, comm, stream());
  flagcx_recv(d, count, dt, from, comm, stream());
  bool ok = call_ok(flagcx_group_end(), comm, "group(send, recv)");
  if (ok) {
    bread(d, 0, h, count * es);
    for (size_t i = 0; i < count; i++) expect("send/recv ring", dt, "", h, i, mov_in(from, i));
  }
  int peer = r ^ 1;
  if (ok && peer < n) {
    flagcx_result_t rr;
    if (r % 2 == 0) {
      rr = flagcx_send(s, count, dt, peer, comm, stream());
      if (rr == FLAGCX_SUCCESS) rr = flagcx_recv(d, count, dt, peer, comm, stream());
    } else {
      rr = flagcx_recv(d, count, dt, peer, comm, stream());
      if (rr == FLAGCX_SUCCESS) rr = flagcx_send(s, count, dt, peer, comm, stream());
    }
    ok = call_ok(rr, comm, "send/recv pair");
    if (ok) {
      bread(d, 0, h, count * es);
      for (size_t i = 0; i < count; i++) expect("send/recv pair", dt, "", h, i, mov_in(peer, i));
    }
  }
  bfree(s);
  bfree(d);
  free(h);
  return ok;
}

/* A group mixing a collective with sends and receives. */
static bool test_group_mix(flagcx_comm_t comm, int r, int n) {
  int32_t h[4];
  void *a = balloc(sizeof h), *s = balloc(sizeof h), *d = balloc(sizeof h);
  for (int i = 0; i < 4; i++) h[i] = r + i;
  bwrite(a, 0, h, sizeof h);
  bwrite(s, 0, h, sizeof h);
  flagcx_group_start();
  flagcx_all_reduce(a, a, 4, FLAGCX_INT32, FLAGCX_SUM, comm, stream());
  flagcx_send(s, 4, FLAGCX_INT32, (r + 1) % n, comm, stream());
  flagcx_recv(d, 4, FLAGCX_INT32, (r - 1 + n) % n, comm, stream());
  bool ok = call_ok(flagcx_group_end(), comm, "group(all_reduce, send, recv)");
  if (ok) {
    bread(a, 0, h, sizeof h);
    for (int i = 0; i < 4; i++) expect("group all_reduce", FLAGCX_INT32, "", h, (size_t)i, n * (n - 1) / 2 + n * i);
    bread(d, 0, h, sizeof h);
    for (int i = 0; i < 4; i++) expect("group recv", FLAGCX_INT32, "", h, (size_t)i, (r - 1 + n) % n + i);
  }
  bfree(a);
  bfree(s);
  bfree(d);
  return ok;
}

static int body(flagcx_comm_t comm, int r, int n, void *ctx) {
  cfg_t *c = ctx;
  my_rank = r;
  D.comm = comm;
  if (D.kind == FLAGCX_DEVICE_CUDA && flagcx_stream_create(comm, &D.stream) != FLAGCX_SUCCESS) {
    fprintf(stderr, "rank %d: stream_create: %s\n", r, flagcx_last_error(comm));
    return 1;
  }
  if (r == 0) printf("# %s\n", flagcx_comm_describe(comm));
  static const size_t counts[] = {1, 7, 1031};
  char algos[128];
  snprintf(algos, sizeof algos, "%s", c->algos);
  flagcx_comm_set_staging_chunk(comm, c->stage_chunk);
  bool ok = true;
  for (char *tok = strtok(algos, ","); tok && ok; tok = strtok(NULL, ",")) {
    int algo = flagcx_algo_from_name(tok);
    if (algo < 0) {
      fprintf(stderr, "unknown algorithm %s\n", tok);
      return 2;
    }
    /* A small chunk makes every algorithm cut messages into several pieces. */
    flagcx_comm_set_algorithm(comm, (flagcx_algo_t)algo, algo == FLAGCX_ALGO_AUTO ? 0 : c->chunk);
    long before = checks;
    for (int dt = 0; dt < FLAGCX_NUM_DATATYPES && ok; dt++)
      for (size_t k = 0; k < sizeof counts / sizeof counts[0] && ok; k++)
        for (int ip = 0; ip < 2 && ok; ip++) {
          ok = test_reductions(comm, r, n, (flagcx_datatype_t)dt, counts[k], ip);
          if (ok) ok = test_movement(comm, r, n, (flagcx_datatype_t)dt, counts[k], ip);
          if (ok && ip == 0) ok = test_alltoallv(comm, r, n, (flagcx_datatype_t)dt, counts[k]);
          if (ok && ip == 0) ok = test_p2p(comm, r, n, (flagcx_datatype_t)dt, counts[k]);
        }
    if (ok) ok = test_group_mix(comm, r, n);
    if (r == 0) printf("# algorithm %s: %ld checks\n", tok, checks - before);
  }
  printf("rank %d (%s): %ld values checked, %ld failures\n", r, flagcx_device_kind_name(D.kind), checks, failures);
  if (D.stream) flagcx_stream_destroy(comm, D.stream);
  return ok && failures == 0 ? 0 : 1;
}

static int prepare(int rank, flagcx_config_t *cfg, void *ctx) {
  (void)rank, (void)ctx;
  D.kind = cfg->device;
  if (D.kind != FLAGCX_DEVICE_OPENCL) return 0;
#ifndef FLAGCX_TEST_OPENCL
  fprintf(stderr, "rank %d: this comm_check was built without OpenCL\n", rank);
  return 1;
#else
  cl_platform_id plat;
  cl_uint np = 0;
  if (clGetPlatformIDs(1, &plat, &np) != CL_SUCCESS || np == 0 ||
      clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &D.dev, NULL) != CL_SUCCESS) {
    fprintf(stderr, "rank %d: no OpenCL device (install pocl-opencl-icd)\n", rank);
    return 1;
  }
  cl_int rc;
  D.ctx = clCreateContext(NULL, 1, &D.dev, NULL, NULL, &rc);
  D.q = D.ctx ? clCreateCommandQueue(D.ctx, D.dev, 0, &rc) : NULL;
  if (!D.q) return 1;
  cfg->cl_context = D.ctx;
  cfg->cl_device = D.dev;
  return 0;
#endif
}

int main(int argc, char **argv) {
  cfg_t c = {.algos = "auto", .chunk = 256, .stage_chunk = 512};
  tool_launch_t l = {.devices = "host", .deadline_s = 300, .prepare = prepare};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--nranks") == 0) l.nranks = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--device") == 0) l.devices = argv[i + 1];
    else if (strcmp(argv[i], "--algos") == 0) c.algos = argv[i + 1];
    else if (strcmp(argv[i], "--chunk") == 0) c.chunk = (size_t)atol(argv[i + 1]);
    else if (strcmp(argv[i], "--stage-chunk") == 0) c.stage_chunk = (size_t)atol(argv[i + 1]);
    else {
      fprintf(stderr, "usage: comm_check [--nranks N] [--device LIST] [--algos auto,ring,tree,direct] [--chunk B] "
                      "[--stage-chunk B]\n");
      return 2;
    }
  }
  return tool_run(&l, body, &c);
}
