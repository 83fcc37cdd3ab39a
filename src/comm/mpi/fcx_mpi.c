/* libflagcx-mpi.so: the MPI transport of FlagCX. Messages carry the call
 * descriptor in their MPI tag and are received with MPI_ANY_TAG, so a message of
 * another call is seen (and reported) instead of waited for. All waits are
 * non-blocking requests polled against the communicator's timeout. */
#include <mpi.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../fcx_transport.h"

#define ABORT_TAG 0
#define PIECE ((size_t)1 << 30) /* MPI counts are int: big messages go in pieces */

static int we_initialized;
static int dirty; /* requests were abandoned: MPI_Finalize could wait on them forever */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void finalize_at_exit(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin && we_initialized && !dirty) MPI_Finalize();
}

static flagcx_result_t mpi_fail(fcx_err_t *err, int rc, const char *what) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
  return fcx_seterr(err, FLAGCX_ERR_REMOTE, "%s: %s", what, s);
}

static flagcx_result_t plugin_init(int *world_rank, int *world_size, char job[48], fcx_err_t *err) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Init_thread");
    we_initialized = 1;
    atexit(finalize_at_exit);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, world_size);
  const char *ns = getenv("PMIX_NAMESPACE");
  if (!ns) ns = getenv("OMPI_MCA_ess_base_jobid");
  if (!ns) ns = getenv("PMI_KVSNAME");
  snprintf(job, 48, "%.36s/%d", ns ? ns : "world", *world_size);
  return FLAGCX_SUCCESS;
}

/* Waits for one request until the deadline. */
static flagcx_result_t wait_req(MPI_Request *req, int timeout_ms, const char *what, fcx_err_t *err) {
  double deadline = now_ms() + timeout_ms;
  for (;;) {
    int done = 0;
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, what);
    if (done) return FLAGCX_SUCCESS;
    if (now_ms() > deadline) {
      dirty = 1;
      return fcx_seterr(err, FLAGCX_ERR_TIMEOUT, "%s: not every process arrived within %d ms", what, timeout_ms);
    }
    sched_yield();
  }
}

static flagcx_result_t world_allgather(const void *in, void *out, size_t bytes, int timeout_ms, fcx_err_t *err) {
  MPI_Request req;
  int rc = MPI_Iallgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Iallgather");
  return wait_req(&req, timeout_ms, "bootstrap over MPI_COMM_WORLD", err);
}

static flagcx_result_t world_bcast(void *buf, size_t bytes, int root, int timeout_ms, fcx_err_t *err) {
  MPI_Request req;
  int rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Ibcast");
  return wait_req(&req, timeout_ms, "unique id broadcast over MPI_COMM_WORLD", err);
}

typedef struct mpi_tp {
  fcx_transport_t base;
  MPI_Comm comm;
  int tag_ub;
  MPI_Request *reqs;
  int *req_op;
  size_t *req_len;
  int *idx;
  MPI_Status *st;
  int cap;
} mpi_tp_t;

static uint32_t desc_hash(const fcx_desc_t *d) {
  uint64_t h = 1469598103934665603ull;
  uint64_t v[2] = {(uint64_t)(uint32_t)d->root, d->count};
  const unsigned char *p = (const unsigned char *)v;
  for (size_t i = 0; i < sizeof v; i++) h = (h ^ p[i]) * 1099511628211ull;
  return (uint32_t)(h ^ (h >> 32));
}

/* coll 4 bits, dtype 4, op 3, algo 2, seq 6, hash(root, count) 10: decodable
 * for messages when the MPI allows 30-bit tags (Open MPI allows 31). */
static int tag_of(const mpi_tp_t *t, const fcx_desc_t *d) {
  uint32_t x = (uint32_t)(d->coll & 15) | (uint32_t)(d->dtype & 15) << 4 | (uint32_t)(d->op & 7) << 8 |
               (uint32_t)(d->algo & 3) << 11 | (d->seq & 63u) << 13 | (desc_hash(d) & 1023u) << 19;
  if ((int64_t)x + 1 <= t->tag_ub) return (int)x + 1;
  return 1 + (int)(x % (uint32_t)(t->tag_ub - 1));
}

static const char *const coll_names[16] = {"?", "all_reduce", "all_gather", "reduce_scatter", "broadcast",
                                           "reduce", "all_to_all", "all_to_allv", "send/recv", "comm_init",
                                           "comm_finalize", "call check", "?", "?", "?", "abort"};

static void tag_str(const mpi_tp_t *t, int tag, char *buf, size_t n) {
  if (t->tag_ub < (1 << 29)) {
    snprintf(buf, n, "tag %d", tag);
    return;
  }
  static const char *const dts[16] = {"int8",    "uint8",    "int16",   "int32",   "uint32", "int64", "uint64", "float16",
                                      "bfloat16", "float32", "float64", "?",       "?",      "?",     "?",      "?"};
  static const char *const ops[8] = {"sum", "prod", "min", "max", "avg", "?", "?", "?"};
  uint32_t x = (uint32_t)tag - 1;
  snprintf(buf, n, "%s(%s, %s, call #%u mod 64, root/count hash %u)", coll_names[x & 15], dts[x >> 4 & 15],
           ops[x >> 8 & 7], x >> 13 & 63, x >> 19 & 1023);
}

static flagcx_result_t grow(mpi_tp_t *t, int need, fcx_err_t *err) {
  if (need <= t->cap) return FLAGCX_SUCCESS;
  int cap = need * 2;
  MPI_Request *r = realloc(t->reqs, sizeof *r * (size_t)cap);
  if (r) t->reqs = r;
  int *o = realloc(t->req_op, sizeof *o * (size_t)cap);
  if (o) t->req_op = o;
  size_t *l = realloc(t->req_len, sizeof *l * (size_t)cap);
  if (l) t->req_len = l;
  int *ix = realloc(t->idx, sizeof *ix * (size_t)cap);
  if (ix) t->idx = ix;
  MPI_Status *s = realloc(t->st, sizeof *s * (size_t)cap);
  if (s) t->st = s;
  if (!r || !o || !l || !ix || !s) return fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory for MPI requests");
  t->cap = cap;
  return FLAGCX_SUCCESS;
}

/* After an error: receives are cancelled (their buffers are the caller's);
 * sends are left to complete on their own, so that the peer still gets them
 * (and the abort message that follows) instead of waiting for its timeout. */
static void abandon(mpi_tp_t *t, int nreq, const fcx_xop_t *ops) {
  for (int i = 0; i < nreq; i++) {
    if (t->reqs[i] == MPI_REQUEST_NULL) continue;
    if (!ops[t->req_op[i]].send) MPI_Cancel(&t->reqs[i]);
    MPI_Request_free(&t->reqs[i]);
  }
  dirty = 1;
}

static flagcx_result_t check_recv(mpi_tp_t *t, fcx_xop_t *op, const MPI_Status *st, size_t want, int rc_in_status,
                                  fcx_err_t *err) {
  int peer = op->peer;
  if (st->MPI_TAG == ABORT_TAG) {
    int got = 0;
    MPI_Get_count(st, MPI_CHAR, &got);
    char reason[520];
    size_t n = got > 0 ? (size_t)got : 0;
    if (n > op->bytes) n = op->bytes;
    if (n > sizeof reason - 1) n = sizeof reason - 1;
    memcpy(reason, op->buf, n);
    reason[n] = 0;
    return fcx_seterr(err, FLAGCX_ERR_REMOTE, "rank %d failed: %s", peer, n ? reason : "(reason did not fit)");
  }
  int expect = tag_of(t, &op->desc);
  if (st->MPI_TAG != expect) {
    char a[160], b[160];
    tag_str(t, st->MPI_TAG, a, sizeof a);
    tag_str(t, expect, b, sizeof b);
    return fcx_seterr(err, FLAGCX_ERR_MISMATCH, "calls do not match: rank %d sent a message of %s while rank %d expects %s",
                      peer, a, t->base.rank, b);
  }
  if (rc_in_status && st->MPI_ERROR != MPI_SUCCESS) {
    if (st->MPI_ERROR == MPI_ERR_TRUNCATE)
      return fcx_seterr(err, FLAGCX_ERR_MISMATCH,
                        "calls do not match: rank %d sent more than the %zu bytes rank %d expects", peer, want,
                        t->base.rank);
    return mpi_fail(err, st->MPI_ERROR, "receive");
  }
  int got = 0;
  MPI_Get_count(st, MPI_BYTE, &got);
  if ((size_t)got != want)
    return fcx_seterr(err, FLAGCX_ERR_MISMATCH, "calls do not match: rank %d sent %d bytes, rank %d expects %zu", peer,
                      got, t->base.rank, want);
  return FLAGCX_SUCCESS;
}

static flagcx_result_t mpi_xfer(fcx_transport_t *base, fcx_xop_t *ops, int nops, fcx_err_t *err) {
  mpi_tp_t *t = (mpi_tp_t *)base;
  int nreq = 0;
  for (int i = 0; i < nops; i++) {
    size_t pieces = ops[i].bytes ? (ops[i].bytes + PIECE - 1) / PIECE : 1;
    nreq += (int)pieces;
  }
  if (grow(t, nreq, err) != FLAGCX_SUCCESS) return err->code;
  int k = 0;
  for (int i = 0; i < nops; i++) {
    fcx_xop_t *op = &ops[i];
    op->state = 0;
    size_t off = 0;
    do {
      size_t len = op->bytes - off < PIECE ? op->bytes - off : PIECE;
      char *p = (char *)op->buf + off;
      int rc = op->send ? MPI_Isend(p, (int)len, MPI_BYTE, op->peer, tag_of(t, &op->desc), t->comm, &t->reqs[k])
                        : MPI_Irecv(p, (int)len, MPI_BYTE, op->peer, MPI_ANY_TAG, t->comm, &t->reqs[k]);
      if (rc != MPI_SUCCESS) {
        abandon(t, k, ops);
        return mpi_fail(err, rc, op->send ? "MPI_Isend" : "MPI_Irecv");
      }
      t->req_op[k] = i;
      t->req_len[k] = len;
      k++;
      off += len;
    } while (off < op->bytes);
  }
  int left = nreq, idle = 0;
  double last = now_ms();
  while (left > 0) {
    int outcount = 0;
    int rc = MPI_Testsome(nreq, t->reqs, &outcount, t->idx, t->st);
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
      abandon(t, nreq, ops);
      return mpi_fail(err, rc, "MPI_Testsome");
    }
    if (outcount == MPI_UNDEFINED) break;
    for (int j = 0; j < outcount; j++) {
      int q = t->idx[j];
      fcx_xop_t *op = &ops[t->req_op[q]];
      flagcx_result_t r = FLAGCX_SUCCESS;
      if (!op->send) r = check_recv(t, op, &t->st[j], t->req_len[q], rc == MPI_ERR_IN_STATUS, err);
      else if (rc == MPI_ERR_IN_STATUS && t->st[j].MPI_ERROR != MPI_SUCCESS)
        r = mpi_fail(err, t->st[j].MPI_ERROR, "send");
      if (r != FLAGCX_SUCCESS) {
        abandon(t, nreq, ops);
        return r;
      }
    }
    left -= outcount;
    if (outcount > 0) {
      last = now_ms();
      idle = 0;
      continue;
    }
    if (atomic_load(base->abort_flag)) {
      abandon(t, nreq, ops);
      return fcx_seterr(err, FLAGCX_ERR_ABORTED, "the communicator was aborted");
    }
    if (++idle > 64) {
      if (now_ms() - last > base->timeout_ms) {
        abandon(t, nreq, ops);
        return fcx_seterr(err, FLAGCX_ERR_TIMEOUT, "rank %d: no progress for %d ms in %s over MPI (%d of %d messages pending)",
                          base->rank, base->timeout_ms, coll_names[ops[0].desc.coll & 15], left, nreq);
      }
      /* Ranks may share cores (mpirun --oversubscribe): yield, and after a long
       * wait (a slow or dead peer) sleep briefly instead of burning a core. */
      if (idle > 20000) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
      } else {
        sched_yield();
      }
    }
  }
  for (int i = 0; i < nops; i++) ops[i].state = 1;
  return FLAGCX_SUCCESS;
}

static void mpi_post_abort(fcx_transport_t *base, const char *reason) {
  mpi_tp_t *t = (mpi_tp_t *)base;
  int len = (int)strnlen(reason, 512);
  for (int p = 0; p < base->nranks; p++) {
    if (p == base->rank) continue;
    MPI_Request req;
    if (MPI_Isend((void *)reason, len, MPI_CHAR, p, ABORT_TAG, t->comm, &req) == MPI_SUCCESS) MPI_Request_free(&req);
  }
  dirty = 1;
}

static void mpi_destroy(fcx_transport_t *base) {
  mpi_tp_t *t = (mpi_tp_t *)base;
  if (!t) return;
  int fin = 0;
  MPI_Finalized(&fin);
  /* After an error a peer may never match pending messages: freeing could wait. */
  if (!fin && !dirty && t->comm != MPI_COMM_NULL) MPI_Comm_free(&t->comm);
  free(t->reqs);
  free(t->req_op);
  free(t->req_len);
  free(t->idx);
  free(t->st);
  free(t);
}

static const fcx_transport_ops_t mpi_ops = {"mpi", mpi_xfer, mpi_post_abort, mpi_destroy};

static flagcx_result_t transport_create(const int *world_ranks, int nranks, int rank, fcx_transport_t **out,
                                        fcx_err_t *err) {
  mpi_tp_t *t = calloc(1, sizeof *t);
  if (!t) return fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  t->comm = MPI_COMM_NULL;
  int wsize = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &wsize);
  bool identity = nranks == wsize;
  for (int i = 0; i < nranks && identity; i++) identity = world_ranks[i] == i;
  int rc;
  if (identity) {
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &t->comm);
  } else {
    MPI_Group world, sub;
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    MPI_Group_incl(world, nranks, world_ranks, &sub);
    rc = MPI_Comm_create_group(MPI_COMM_WORLD, sub, 0x4643, &t->comm);
    MPI_Group_free(&sub);
    MPI_Group_free(&world);
  }
  if (rc != MPI_SUCCESS) {
    free(t);
    return mpi_fail(err, rc, "creating the MPI communicator");
  }
  MPI_Comm_set_errhandler(t->comm, MPI_ERRORS_RETURN);
  int *ub = NULL, flag = 0;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
  t->tag_ub = flag && ub ? *ub : 32767;
  int crank = -1;
  MPI_Comm_rank(t->comm, &crank);
  if (crank != rank) {
    MPI_Comm_free(&t->comm);
    free(t);
    return fcx_seterr(err, FLAGCX_ERR_INTERNAL, "MPI rank %d is not FlagCX rank %d", crank, rank);
  }
  t->base.ops = &mpi_ops;
  t->base.rank = rank;
  t->base.nranks = nranks;
  t->base.wake_fd = -1;
  *out = &t->base;
  return FLAGCX_SUCCESS;
}

static const fcx_mpi_plugin_t plugin = {FCX_MPI_PLUGIN_ABI, plugin_init, world_allgather, world_bcast,
                                        transport_create};

__attribute__((visibility("default"))) const fcx_mpi_plugin_t *flagcx_mpi_plugin(void) { return &plugin; }
