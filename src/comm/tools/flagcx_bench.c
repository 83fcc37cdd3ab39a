/* flagcx-bench: collective bandwidth in the style of nccl-tests. For every size:
 * time per call, algorithm bandwidth (bytes / time) and bus bandwidth (algbw
 * times the collective's factor, comparable across rank counts), out of place
 * and in place, and a check of the result at every size. --raw-nccl runs the
 * same sizes through NCCL directly in the same process for the ratio. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../nccl_abi.h"
#include "tool_common.h"

enum { OP_ALLREDUCE, OP_ALLGATHER, OP_REDUCE_SCATTER, OP_BROADCAST, OP_REDUCE, OP_ALLTOALL, OP_SENDRECV, NUM_OPS };
static const char *const op_names[NUM_OPS] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast",
                                              "reduce",     "all_to_all", "sendrecv"};

typedef struct opts {
  size_t minb, maxb;
  double factor;
  int ops[NUM_OPS], nops;
  flagcx_datatype_t dt;
  flagcx_red_op_t redop;
  int root, iters, warmup, check, raw_nccl;
  flagcx_algo_t algo;
  size_t chunk;
  bool maxb_set;
} opts_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: flagcx-bench [options]\n"
          "Measures FlagCX collectives like nccl-tests: time, algbw and busbw per size, out of place and in\n"
          "place, with a correctness check at every size.\n"
          "  -b, --minbytes SIZE    smallest message (default 8)\n"
          "  -e, --maxbytes SIZE    largest message (default 64M for host/opencl, 1G for cuda; K/M/G suffixes)\n"
          "  -f, --stepfactor N     size multiplier between steps (default 2)\n"
          "  -o, --op NAME          all_reduce (default), all_gather, reduce_scatter, broadcast, reduce,\n"
          "                         all_to_all, sendrecv, or all\n"
          "  -d, --dtype NAME       int8 uint8 int16 int32 uint32 int64 uint64 float16 bfloat16 float32 float64\n"
          "                         (default float32)\n"
          "  -r, --redop NAME       sum (default), prod, min, max, avg\n"
          "      --root N           root of broadcast and reduce (default 0)\n"
          "  -n, --iters N          timed iterations per size (default 20)\n"
          "  -w, --warmup N         untimed iterations per size (default 5)\n"
          "  -c, --check 0|1        check results at every size (default 1)\n"
          "      --device LIST      host (default), opencl, cuda, or a comma list used round-robin by rank,\n"
          "                         e.g. host,opencl for a mixed communicator\n"
          "      --nranks N         fork N ranks over TCP (default 1) when not launched by mpirun\n"
          "      --algo NAME        force ring, tree or direct on host paths (default: tuning table)\n"
          "      --chunk SIZE       force the chunk size of host algorithms\n"
          "      --timeout-ms N     communicator timeout\n"
          "      --raw-nccl         also run every size through NCCL directly (needs --device cuda)\n"
          "  -h, --help             this text\n"
          "Times are the slowest rank's mean per call; busbw factors: all_reduce 2(n-1)/n, all_gather,\n"
          "reduce_scatter and all_to_all (n-1)/n, broadcast, reduce and sendrecv 1. Exit status 1 when a\n"
          "check fails.\n");
}

/* "allreduce" and "all_reduce" name the same op. */
static bool same_name(const char *a, const char *b) {
  for (;;) {
    while (*a == '_') a++;
    while (*b == '_') b++;
    if (*a != *b) return false;
    if (!*a) return true;
    a++, b++;
  }
}

static double bus_factor(int op, int n) {
  switch (op) {
  case OP_ALLREDUCE: return 2.0 * (n - 1) / n;
  case OP_ALLGATHER:
  case OP_REDUCE_SCATTER:
  case OP_ALLTOALL: return (double)(n - 1) / n;
  default: return 1.0;
  }
}

/* ---- values: small integers, exact in every type ---- */
static bool is_float(flagcx_datatype_t dt) { return dt >= FLAGCX_FLOAT16; }

static double input_value(int op, flagcx_red_op_t redop, int rank, size_t i) {
  bool reduction = op == OP_ALLREDUCE || op == OP_REDUCE_SCATTER || op == OP_REDUCE;
  if (!reduction) return (double)((rank * 131 + (long)(i % 1009)) % 97);
  switch (redop) {
  case FLAGCX_PROD: return 1.0 + (double)((rank + i) % 2);
  case FLAGCX_MIN:
  case FLAGCX_MAX: return (double)((rank * 7 + i) % 13);
  default: return (double)((rank + i) % 5);
  }
}

static uint16_t to_half(double v) { /* exact for the small integers used here */
  if (v == 0) return 0;
  int e = 0;
  double m = frexp(v, &e); /* v = m * 2^e, 0.5 <= m < 1 */
  uint16_t man = (uint16_t)((m * 2.0 - 1.0) * 1024.0);
  return (uint16_t)(((e - 1 + 15) << 10) | man);
}
static double from_half(uint16_t h) {
  int e = (h >> 10) & 31;
  double m = h & 1023;
  double v = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);
  return (h & 0x8000) ? -v : v;
}
static uint16_t to_bf16(double v) {
  float f = (float)v;
  uint32_t x;
  memcpy(&x, &f, 4);
  return (uint16_t)(x >> 16);
}
static double from_bf16(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

static void store(flagcx_datatype_t dt, void *p, size_t i, double v) {
  switch (dt) {
  case FLAGCX_INT8: ((int8_t *)p)[i] = (int8_t)(int64_t)v; break;
  case FLAGCX_UINT8: ((uint8_t *)p)[i] = (uint8_t)(uint64_t)v; break;
  case FLAGCX_INT16: ((int16_t *)p)[i] = (int16_t)(int64_t)v; break;
  case FLAGCX_INT32: ((int32_t *)p)[i] = (int32_t)(int64_t)v; break;
  case FLAGCX_UINT32: ((uint32_t *)p)[i] = (uint32_t)(uint64_t)v; break;
  case FLAGCX_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
  case FLAGCX_UINT64: ((uint64_t *)p)[i] = (uint64_t)v; break;
  case FLAGCX_FLOAT16: ((uint16_t *)p)[i] = to_half(v); break;
  case FLAGCX_BFLOAT16: ((uint16_t *)p)[i] = to_bf16(v); break;
  case FLAGCX_FLOAT32: ((float *)p)[i] = (float)v; break;
  default: ((double *)p)[i] = v; break;
  }
}

static double load(flagcx_datatype_t dt, const void *p, size_t i) {
  switch (dt) {
  case FLAGCX_INT8: return ((const int8_t *)p)[i];
  case FLAGCX_UINT8: return ((const uint8_t *)p)[i];
  case FLAGCX_INT16: return ((const int16_t *)p)[i];
  case FLAGCX_INT32: return ((const int32_t *)p)[i];
  case FLAGCX_UINT32: return ((const uint32_t *)p)[i];
  case FLAGCX_INT64: return (double)((const int64_t *)p)[i];
  case FLAGCX_UINT64: return (double)((const uint64_t *)p)[i];
  case FLAGCX_FLOAT16: return from_half(((const uint16_t *)p)[i]);
  case FLAGCX_BFLOAT16: return from_bf16(((const uint16_t *)p)[i]);
  case FLAGCX_FLOAT32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}

/* The reduction of input_value over all ranks, as the type stores it. */
static double expected_reduction(const opts_t *o, int op, int n, size_t i) {
  double acc = input_value(op, o->redop, 0, i);
  for (int r = 1; r < n; r++) {
    double v = input_value(op, o->redop, r, i);
    switch (o->redop) {
    case FLAGCX_PROD: acc *= v; break;
    case FLAGCX_MIN: acc = v < acc ? v : acc; break;
    case FLAGCX_MAX: acc = v > acc ? v : acc; break;
    default: acc += v; break;
    }
  }
  if (o->redop == FLAGCX_AVG) acc = is_float(o->dt) ? acc / n : (double)((int64_t)acc / n);
  /* Values wrap in small integer types exactly as stored */
  unsigned char tmp[8];
  store(o->dt, tmp, 0, acc);
  return load(o->dt, tmp, 0);
}

/* ---- one benchmark context ---- */
typedef struct bench {
  opts_t *o;
  flagcx_comm_t comm;
  flagcx_device_kind_t kind;
  int rank, n;
  flagcx_stream_t stream;
  void *sendbuf, *recvbuf;
  size_t bufbytes;
  unsigned char *host;
  fcx_nccl_api_t nccl;
  fcx_ncclComm_t ncomm;
  bool have_nccl;
  void *scalar; /* one float64 on the device, for reductions of timings and error counts */
  unsigned char *junk; /* poison written over receive buffers before each check */
} bench_t;

/* Elements per rank block for the op at `bytes` (nccl-tests' size convention). */
static size_t op_count(int op, size_t bytes, size_t es, int n) {
  size_t count = bytes / es;
  if (op == OP_ALLGATHER || op == OP_REDUCE_SCATTER || op == OP_ALLTOALL) count /= (size_t)n;
  return count;
}

static void *offset_ptr(bench_t *b, void *buf, size_t off) {
  return b->kind == FLAGCX_DEVICE_OPENCL ? buf : (char *)buf + off; /* cl_mem: in place means the same handle */
}

static flagcx_result_t run_op(bench_t *b, int op, size_t count, bool in_place, bool raw) {
  opts_t *o = b->o;
  size_t es = flagcx_datatype_size(o->dt);
  void *recv = b->recvbuf;
  const void *send = b->sendbuf;
  if (in_place) {
    size_t off = op == OP_ALLGATHER ? (size_t)b->rank * count * es : 0;
    send = offset_ptr(b, recv, off);
    if (op == OP_REDUCE_SCATTER) {
      send = recv;
      recv = offset_ptr(b, b->recvbuf, (size_t)b->rank * count * es);
    }
  }
  if (raw) {
    fcx_ncclResult_t rc = 0;
    static const int dtmap[] = {FCX_ncclInt8,  FCX_ncclUint8,   -1,               FCX_ncclInt32,
                                FCX_ncclUint32, FCX_ncclInt64,  FCX_ncclUint64,   FCX_ncclFloat16,
                                FCX_ncclBfloat16, FCX_ncclFloat32, FCX_ncclFloat64};
    static const int opmap[] = {FCX_ncclSum, FCX_ncclProd, FCX_ncclMin, FCX_ncclMax, FCX_ncclAvg};
    int dt = dtmap[o->dt], rop = opmap[o->redop];
    fcx_nccl_api_t *nc = &b->nccl;
    switch (op) {
    case OP_ALLREDUCE: rc = nc->AllReduce(send, recv, count, dt, rop, b->ncomm, b->stream); break;
    case OP_ALLGATHER: rc = nc->AllGather(send, recv, count, dt, b->ncomm, b->stream); break;
    case OP_REDUCE_SCATTER: rc = nc->ReduceScatter(send, recv, count, dt, rop, b->ncomm, b->stream); break;
    case OP_BROADCAST: rc = nc->Broadcast(send, recv, count, dt, o->root, b->ncomm, b->stream); break;
    case OP_REDUCE: rc = nc->Reduce(send, recv, count, dt, rop, o->root, b->ncomm, b->stream); break;
    case OP_ALLTOALL:
      nc->GroupStart();
      for (int p = 0; p < b->n; p++) {
        nc->Send((const char *)b->sendbuf + (size_t)p * count * es, count, dt, p, b->ncomm, b->stream);
        nc->Recv((char *)b->recvbuf + (size_t)p * count * es, count, dt, p, b->ncomm, b->stream);
      }
      rc = nc->GroupEnd();
      break;
    default: {
      int peer_to = (b->rank + 1) % b->n, peer_from = (b->rank - 1 + b->n) % b->n;
      nc->GroupStart();
      nc->Send(b->sendbuf, count, dt, peer_to, b->ncomm, b->stream);
      nc->Recv(b->recvbuf, count, dt, peer_from, b->ncomm, b->stream);
      rc = nc->GroupEnd();
    }
    }
    return rc == 0 ? FLAGCX_SUCCESS : FLAGCX_ERR_DEVICE;
  }
  switch (op) {
  case OP_ALLREDUCE: return flagcx_all_reduce(send, recv, count, o->dt, o->redop, b->comm, b->stream);
  case OP_ALLGATHER: return flagcx_all_gather(send, recv, count, o->dt, b->comm, b->stream);
  case OP_REDUCE_SCATTER: return flagcx_reduce_scatter(send, recv, count, o->dt, o->redop, b->comm, b->stream);
  case OP_BROADCAST: return flagcx_broadcast(send, recv, count, o->dt, o->root, b->comm, b->stream);
  case OP_REDUCE: return flagcx_reduce(send, recv, count, o->dt, o->redop, o->root, b->comm, b->stream);
  case OP_ALLTOALL: return flagcx_all_to_all(b->sendbuf, b->recvbuf, count, o->dt, b->comm, b->stream);
  default: {
    int to = (b->rank + 1) % b->n, from = (b->rank - 1 + b->n) % b->n;
    flagcx_group_start();
    flagcx_send(b->sendbuf, count, o->dt, to, b->comm, b->stream);
    flagcx_recv(b->recvbuf, count, o->dt, from, b->comm, b->stream);
    return flagcx_group_end();
  }
  }
}

/* Fills the send side (or, in place, the receive buffer) with this rank's input. */
static flagcx_result_t fill(bench_t *b, int op, size_t count, bool in_place) {
  opts_t *o = b->o;
  size_t es = flagcx_datatype_size(o->dt);
  size_t blocks = op == OP_REDUCE_SCATTER || op == OP_ALLTOALL ? (size_t)b->n : 1;
  size_t nelem = count * blocks;
  for (size_t i = 0; i < nelem; i++) store(o->dt, b->host, i, input_value(op, o->redop, b->rank, i));
  size_t off = in_place && op == OP_ALLGATHER ? (size_t)b->rank * count * es : 0;
  void *dst = in_place ? b->recvbuf : b->sendbuf;
  /* Out of place, the receive buffer is poisoned so stale results cannot pass. */
  if (!in_place) {
    size_t out = op == OP_ALLGATHER || op == OP_ALLTOALL ? count * (size_t)b->n * es : count * es;
    flagcx_result_t r = flagcx_mem_write(b->comm, b->recvbuf, 0, b->junk, out < b->bufbytes ? out : b->bufbytes);
    if (r) return r;
  }
  return flagcx_mem_write(b->comm, dst, off, b->host, nelem * es);
}

static long check(bench_t *b, int op, size_t count, bool in_place) {
  opts_t *o = b->o;
  size_t es = flagcx_datatype_size(o->dt);
  size_t nelem = count;
  size_t off = 0;
  if (op == OP_ALLGATHER || op == OP_ALLTOALL) nelem = count * (size_t)b->n;
  if (op == OP_REDUCE_SCATTER && in_place) off = (size_t)b->rank * count * es;
  if ((op == OP_REDUCE && b->rank != o->root)) return 0;
  if (flagcx_mem_read(b->comm, b->host, b->recvbuf, off, nelem * es) != FLAGCX_SUCCESS) return (long)nelem;
  long wrong = 0;
  double tol = o->dt == FLAGCX_FLOAT16 || o->dt == FLAGCX_BFLOAT16 ? 1e-2 : 1e-6;
  for (size_t i = 0; i < nelem; i++) {
    double want;
    switch (op) {
    case OP_ALLREDUCE:
    case OP_REDUCE: want = expected_reduction(o, op, b->n, i); break;
    case OP_REDUCE_SCATTER: want = expected_reduction(o, op, b->n, (size_t)b->rank * count + i); break;
    case OP_BROADCAST: want = input_value(op, o->redop, o->root, i); break;
    case OP_ALLGATHER: want = input_value(op, o->redop, (int)(i / count), i % count); break;
    case OP_ALLTOALL: want = input_value(op, o->redop, (int)(i / count), (size_t)b->rank * count + i % count); break;
    default: want = input_value(op, o->redop, (b->rank - 1 + b->n) % b->n, i); break;
    }
    if (op != OP_ALLREDUCE && op != OP_REDUCE && op != OP_REDUCE_SCATTER) {
      unsigned char tmp[8];
      store(o->dt, tmp, 0, want);
      want = load(o->dt, tmp, 0);
    }
    double got = load(o->dt, b->host, i);
    if (is_float(o->dt) ? fabs(got - want) > tol * (1.0 + fabs(want)) : got != want) wrong++;
  }
  return wrong;
}

/* A value reduced over ranks, through FlagCX itself. */
static double over_ranks(bench_t *b, double v, flagcx_red_op_t op) {
  double out = v;
  if (flagcx_mem_write(b->comm, b->scalar, 0, &v, sizeof v) == FLAGCX_SUCCESS &&
      flagcx_all_reduce(b->scalar, b->scalar, 1, FLAGCX_FLOAT64, op, b->comm, b->stream) == FLAGCX_SUCCESS &&
      flagcx_stream_synchronize(b->comm, b->stream) == FLAGCX_SUCCESS)
    flagcx_mem_read(b->comm, &out, b->scalar, 0, sizeof out);
  return out;
}

static int time_op(bench_t *b, int op, size_t count, bool in_place, bool raw, double *us) {
  opts_t *o = b->o;
  for (int i = 0; i < o->warmup; i++)
    if (run_op(b, op, count, in_place, raw) != FLAGCX_SUCCESS) return -1;
  if (flagcx_stream_synchronize(b->comm, b->stream) != FLAGCX_SUCCESS) return -1;
  double t0 = tool_now_s();
  for (int i = 0; i < o->iters; i++)
    if (run_op(b, op, count, in_place, raw) != FLAGCX_SUCCESS) return -1;
  if (flagcx_stream_synchronize(b->comm, b->stream) != FLAGCX_SUCCESS) return -1;
  *us = over_ranks(b, (tool_now_s() - t0) * 1e6 / o->iters, FLAGCX_MAX);
  return 0;
}

static long global_wrong(bench_t *b, long wrong) { return (long)over_ranks(b, (double)wrong, FLAGCX_SUM); }

static int init_raw_nccl(bench_t *b) {
  fcx_err_t err;
  if (fcx_nccl_api_load(&b->nccl, &err) != FLAGCX_SUCCESS) {
    if (b->rank == 0) fprintf(stderr, "flagcx-bench: --raw-nccl: %s\n", err.msg);
    return -1;
  }
  fcx_ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (b->rank == 0 && b->nccl.GetUniqueId(&id) != 0) return -1;
  void *dev = NULL;
  if (flagcx_mem_alloc(b->comm, sizeof id, &dev) || flagcx_mem_write(b->comm, dev, 0, &id, sizeof id) ||
      flagcx_broadcast(dev, dev, sizeof id, FLAGCX_UINT8, 0, b->comm, b->stream) ||
      flagcx_stream_synchronize(b->comm, b->stream) || flagcx_mem_read(b->comm, &id, dev, 0, sizeof id))
    return -1;
  flagcx_mem_free(b->comm, dev);
  if (b->nccl.CommInitRank(&b->ncomm, b->n, id, b->rank) != 0) return -1;
  b->have_nccl = true;
  return 0;
}

static int bench_body(flagcx_comm_t comm, int rank, int n, void *ctx) {
  opts_t *o = ctx;
  bench_t b = {.o = o, .comm = comm, .rank = rank, .n = n};
  flagcx_comm_device(comm, &b.kind, NULL);
  size_t es = flagcx_datatype_size(o->dt);
  if (!o->maxb_set) o->maxb = b.kind == FLAGCX_DEVICE_CUDA ? (1u << 30) : (64u << 20);
  if (o->algo != FLAGCX_ALGO_AUTO || o->chunk) flagcx_comm_set_algorithm(comm, o->algo, o->chunk);
  /* Buffers hold the largest size; all_gather's send side is a 1/n share of it. */
  b.bufbytes = o->maxb + (size_t)n * es;
  if (flagcx_stream_create(comm, &b.stream) || flagcx_mem_alloc(comm, b.bufbytes, &b.sendbuf) ||
      flagcx_mem_alloc(comm, b.bufbytes, &b.recvbuf) || flagcx_mem_alloc(comm, sizeof(double), &b.scalar) ||
      !(b.host = malloc(b.bufbytes)) || !(b.junk = malloc(b.bufbytes))) {
    fprintf(stderr, "rank %d: cannot allocate %zu-byte buffers: %s\n", rank, b.bufbytes, flagcx_last_error(comm));
    return 1;
  }
  memset(b.junk, 0xA5, b.bufbytes);
  if (o->raw_nccl && (b.kind != FLAGCX_DEVICE_CUDA || init_raw_nccl(&b) != 0)) {
    if (rank == 0 && b.kind != FLAGCX_DEVICE_CUDA) fprintf(stderr, "flagcx-bench: --raw-nccl needs --device cuda\n");
    return 2;
  }
  if (rank == 0) {
    printf("# flagcx-bench: %d ranks; %s\n", n, flagcx_comm_describe(comm));
    printf("# dtype %s, redop %s, root %d, iters %d, warmup %d, check %s\n", flagcx_datatype_name(o->dt),
           flagcx_red_op_name(o->redop), o->root, o->iters, o->warmup, o->check ? "on" : "off");
  }
  long total_wrong = 0;
  int failed = 0;
  for (int k = 0; k < o->nops && !failed; k++) {
    int op = o->ops[k];
    if (rank == 0) {
      printf("#\n# %s\n", op_names[op]);
      printf("# %12s %12s %9s %6s %5s   %10s %8s %8s %7s   %10s %8s %8s %7s%s\n", "size", "count", "type", "redop",
             "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong",
             b.have_nccl ? "   nccl-time nccl-busbw  ratio" : "");
      printf("# %12s %12s %9s %6s %5s   %10s %8s %8s %7s   %10s %8s %8s %7s%s\n", "(B)", "(elements)", "", "", "",
             "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "", b.have_nccl ? "        (us)     (GB/s)    (%)" : "");
    }
    for (size_t size = o->minb; size <= o->maxb && !failed; size = (size_t)ceil((double)size * o->factor)) {
      size_t count = op_count(op, size, es, n);
      if (count == 0) continue;
      size_t bytes = op == OP_ALLGATHER || op == OP_REDUCE_SCATTER || op == OP_ALLTOALL ? count * es * (size_t)n
                                                                                      : count * es;
      double t[2] = {0, 0};
      long wrong[2] = {0, 0};
      for (int ip = 0; ip < 2 && !failed; ip++) {
        bool in_place = ip == 1;
        if ((op == OP_ALLTOALL || op == OP_SENDRECV) && in_place) {
          t[ip] = -1; /* not defined in place */
          continue;
        }
        if (fill(&b, op, count, in_place) != FLAGCX_SUCCESS) failed = 1;
        if (!failed && o->check) {
          if (run_op(&b, op, count, in_place, false) != FLAGCX_SUCCESS ||
              flagcx_stream_synchronize(comm, b.stream) != FLAGCX_SUCCESS)
            failed = 1;
          else wrong[ip] = global_wrong(&b, check(&b, op, count, in_place));
        }
        if (!failed && time_op(&b, op, count, in_place, false, &t[ip]) != 0) failed = 1;
      }
      if (failed) {
        fprintf(stderr, "rank %d: %s of %zu bytes failed: %s\n", rank, op_names[op], bytes, flagcx_last_error(comm));
        break;
      }
      double nccl_us = 0;
      if (b.have_nccl && time_op(&b, op, count, false, true, &nccl_us) != 0) {
        fprintf(stderr, "rank %d: NCCL %s of %zu bytes failed\n", rank, op_names[op], bytes);
        failed = 1;
        break;
      }
      total_wrong += wrong[0] + wrong[1];
      if (rank == 0) {
        double bf = bus_factor(op, n);
        printf("  %12zu %12zu %9s %6s %5d", bytes, count, flagcx_datatype_name(o->dt),
               op == OP_ALLREDUCE || op == OP_REDUCE || op == OP_REDUCE_SCATTER ? flagcx_red_op_name(o->redop) : "none",
               op == OP_BROADCAST || op == OP_REDUCE ? o->root : -1);
        for (int ip = 0; ip < 2; ip++) {
          if (t[ip] < 0) {
            printf("   %10s %8s %8s %7s", "n/a", "", "", "");
            continue;
          }
          double algbw = (double)bytes / (t[ip] * 1e-6) / 1e9;
          printf("   %10.2f %8.3f %8.3f %7ld", t[ip], algbw, algbw * bf, wrong[ip]);
        }
        if (b.have_nccl) {
          double nbus = (double)bytes / (nccl_us * 1e-6) / 1e9 * bf;
          double ours = (double)bytes / (t[0] * 1e-6) / 1e9 * bf;
          printf("   %10.2f %10.3f %6.1f", nccl_us, nbus, 100.0 * ours / nbus);
        }
        printf("\n");
        fflush(stdout);
      }
    }
  }
  if (rank == 0 && !failed)
    printf("# out-of-bounds values: %ld (%s)\n", total_wrong, total_wrong ? "FAILED" : "OK");
  if (b.have_nccl) b.nccl.CommDestroy(b.ncomm);
  flagcx_mem_free(comm, b.sendbuf);
  flagcx_mem_free(comm, b.recvbuf);
  flagcx_mem_free(comm, b.scalar);
  flagcx_stream_destroy(comm, b.stream);
  free(b.host);
  free(b.junk);
  return failed ? 1 : total_wrong ? 1 : 0;
}

int main(int argc, char **argv) {
  opts_t o = {.minb = 8, .maxb = 64u << 20, .factor = 2, .dt = FLAGCX_FLOAT32, .redop = FLAGCX_SUM, .iters = 20,
              .warmup = 5, .check = 1};
  tool_launch_t l = {.devices = "host"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, lng) (strcmp(a, s) == 0 || strcmp(a, lng) == 0)
    if (ARG("-h", "--help")) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "--raw-nccl") == 0) {
      o.raw_nccl = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "flagcx-bench: %s needs a value (see --help)\n", a);
      return 2;
    }
    i++;
    size_t sz;
    if (ARG("-b", "--minbytes") && tool_parse_size(v, &sz) == 0) o.minb = sz ? sz : 1;
    else if (ARG("-e", "--maxbytes") && tool_parse_size(v, &sz) == 0) o.maxb = sz, o.maxb_set = true;
    else if (ARG("-f", "--stepfactor") && atof(v) > 1) o.factor = atof(v);
    else if (ARG("-n", "--iters") && atoi(v) > 0) o.iters = atoi(v);
    else if (ARG("-w", "--warmup") && atoi(v) >= 0) o.warmup = atoi(v);
    else if (ARG("-c", "--check")) o.check = atoi(v);
    else if (strcmp(a, "--root") == 0) o.root = atoi(v);
    else if (strcmp(a, "--device") == 0) l.devices = v;
    else if (strcmp(a, "--nranks") == 0 && atoi(v) > 0) l.nranks = atoi(v);
    else if (strcmp(a, "--timeout-ms") == 0) l.timeout_ms = atoi(v);
    else if (strcmp(a, "--chunk") == 0 && tool_parse_size(v, &sz) == 0) o.chunk = sz;
    else if (strcmp(a, "--algo") == 0 && flagcx_algo_from_name(v) >= 0) o.algo = (flagcx_algo_t)flagcx_algo_from_name(v);
    else if (ARG("-d", "--dtype") && flagcx_datatype_from_name(v) >= 0) o.dt = (flagcx_datatype_t)flagcx_datatype_from_name(v);
    else if (ARG("-r", "--redop") && flagcx_red_op_from_name(v) >= 0) o.redop = (flagcx_red_op_t)flagcx_red_op_from_name(v);
    else if (ARG("-o", "--op")) {
      if (strcmp(v, "all") == 0) {
        for (int k = 0; k < NUM_OPS; k++) o.ops[k] = k;
        o.nops = NUM_OPS;
        continue;
      }
      int found = -1;
      for (int k = 0; k < NUM_OPS; k++)
        if (same_name(v, op_names[k])) found = k;
      if (found < 0) {
        fprintf(stderr, "flagcx-bench: unknown op '%s' (see --help)\n", v);
        return 2;
      }
      o.ops[o.nops++ % NUM_OPS] = found;
    } else {
      fprintf(stderr, "flagcx-bench: bad option or value: %s %s (see --help)\n", a, v);
      return 2;
    }
#undef ARG
  }
  if (o.nops == 0) o.ops[o.nops++] = OP_ALLREDUCE;
  if (o.minb > o.maxb && o.maxb_set) {
    fprintf(stderr, "flagcx-bench: --minbytes is larger than --maxbytes\n");
    return 2;
  }
  if (o.raw_nccl && !strstr(l.devices, "cuda")) {
    fprintf(stderr, "flagcx-bench: --raw-nccl needs --device cuda\n");
    return 2;
  }
  if (o.raw_nccl && o.dt == FLAGCX_INT16) {
    fprintf(stderr, "flagcx-bench: --raw-nccl: NCCL has no int16\n");
    return 2;
  }
  if (o.raw_nccl) {
    fcx_nccl_api_t api;
    fcx_err_t err;
    if (fcx_nccl_api_load(&api, &err) != FLAGCX_SUCCESS) { /* fail before any rank starts */
      fprintf(stderr, "flagcx-bench: --raw-nccl: %s\n", err.msg);
      return 2;
    }
  }
  return tool_run(&l, bench_body, &o);
}
