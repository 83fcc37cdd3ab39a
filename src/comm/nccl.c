/* All-CUDA communicators: calls go straight to NCCL on the user's stream, so
 * FlagCX adds one function call and a table lookup to NCCL's cost. NCCL cannot
 * time out by itself, so a watchdog thread per communicator records an event
 * after every call and aborts the NCCL communicator when one stays incomplete
 * past the timeout or NCCL reports an asynchronous error; the next FlagCX call
 * (or flagcx_comm_get_async_error) returns the error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fcx.h"
#include "nccl_abi.h"

static fcx_nccl_api_t nc;
static pthread_once_t nc_once = PTHREAD_ONCE_INIT;
static fcx_err_t nc_err;
static int nc_version;

static void nc_load(void) {
  if (fcx_nccl_api_load(&nc, &nc_err) != FLAGCX_SUCCESS) return;
  nc.GetVersion(&nc_version);
}

bool fcx_nccl_available(void) {
  pthread_once(&nc_once, nc_load);
  return nc_err.code == FLAGCX_SUCCESS;
}

#define RING 1024

typedef struct pending {
  fcx_cudaEvent_t ev;
  double t;
  uint32_t seq;
  int coll;
} pending_t;

struct fcx_nccl {
  fcx_ncclComm_t comm;
  int dev_index;
  int timeout_ms;
  pthread_t watchdog;
  bool watchdog_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;
  bool aborted; /* by the watchdog: the NCCL communicator is gone */
  pending_t ring[RING];
  unsigned head, tail;
  atomic_int async_code;
  char async_msg[FCX_ERR_MSG];
};

static flagcx_result_t ncfail(fcx_err_t *err, fcx_ncclComm_t comm, fcx_ncclResult_t rc, const char *what) {
  const char *last = comm && nc.GetLastError ? nc.GetLastError(comm) : NULL;
  return fcx_seterr(err, FLAGCX_ERR_DEVICE, "NCCL %s failed: %s%s%s", what, nc.GetErrorString(rc),
                    last && *last ? ": " : "", last ? last : "");
}

static void *watchdog_main(void *arg) {
  fcx_nccl_t *n = arg;
  const fcx_cudart_t *rt = fcx_cudart(NULL);
  rt->SetDevice(n->dev_index);
  pthread_mutex_lock(&n->mu);
  while (!n->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&n->cv, &n->mu, &ts);
    if (n->stop || n->aborted) continue;
    char msg[FCX_ERR_MSG] = "";
    flagcx_result_t code = FLAGCX_SUCCESS;
    fcx_ncclResult_t st = 0;
    if (nc.CommGetAsyncError(n->comm, &st) == 0 && st != 0 && st != 7) {
      code = FLAGCX_ERR_REMOTE;
      snprintf(msg, sizeof msg, "NCCL reported an asynchronous error: %s", nc.GetErrorString(st));
    }
    while (code == FLAGCX_SUCCESS && n->head != n->tail) {
      pending_t *p = &n->ring[n->tail % RING];
      fcx_cudaError_t q = rt->EventQuery(p->ev);
      if (q == 0) {
        rt->EventDestroy(p->ev);
        n->tail++;
        continue;
      }
      if (q == FCX_cudaErrorNotReady && fcx_now_ms() - p->t <= n->timeout_ms) break;
      code = q == FCX_cudaErrorNotReady ? FLAGCX_ERR_TIMEOUT : FLAGCX_ERR_DEVICE;
      snprintf(msg, sizeof msg,
               q == FCX_cudaErrorNotReady
                   ? "NCCL %s call #%u did not complete within %d ms (a peer died, hangs, or made another call)"
                   : "NCCL %s call #%u failed on the device (%d ms limit)",
               fcx_coll_name(p->coll), p->seq, n->timeout_ms);
    }
    if (code != FLAGCX_SUCCESS) {
      snprintf(n->async_msg, sizeof n->async_msg, "%.900s; the communicator was aborted", msg);
      atomic_store(&n->async_code, code);
      nc.CommAbort(n->comm); /* makes NCCL's kernels return so streams drain */
      n->aborted = true;
    }
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

flagcx_result_t fcx_nccl_init(flagcx_comm_t c) {
  if (!fcx_nccl_available()) return fcx_seterr(&c->err, nc_err.code, "%s", nc_err.msg);
  const fcx_cudart_t *rt = fcx_cudart(&c->err);
  if (!rt) return c->err.code;
  fcx_nccl_t *n = calloc(1, sizeof *n);
  if (!n) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  n->dev_index = fcx_dev_cuda_index(c->dev);
  n->timeout_ms = c->timeout_ms;
  pthread_mutex_init(&n->mu, NULL);
  pthread_cond_init(&n->cv, NULL);
  c->nccl = n;
  /* NCCL's own id travels over FlagCX's bootstrap transport. */
  fcx_ncclUniqueId id;
  memset(&id, 0, sizeof id);
  fcx_desc_t d = {.coll = FCX_COLL_SETUP, .root = 0, .count = sizeof id};
  if (c->rank == 0) {
    fcx_ncclResult_t rc = nc.GetUniqueId(&id);
    if (rc != 0) return ncfail(&c->err, NULL, rc, "ncclGetUniqueId");
  }
  fcx_xop_t *ops = calloc((size_t)c->nranks, sizeof *ops);
  if (!ops) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  int m = 0;
  if (c->rank == 0) {
    for (int p = 1; p < c->nranks; p++) fcx_op_set(&ops[m++], &d, p, 1, &id, sizeof id);
  } else {
    fcx_op_set(&ops[m++], &d, 0, 0, &id, sizeof id);
  }
  flagcx_result_t r = fcx_xfer(c, ops, m);
  free(ops);
  if (r != FLAGCX_SUCCESS) return r;
  fcx_cudaError_t crc = rt->SetDevice(n->dev_index);
  if (crc != 0) return fcx_seterr(&c->err, FLAGCX_ERR_DEVICE, "cudaSetDevice(%d): %s", n->dev_index, rt->GetErrorString(crc));
  fcx_ncclResult_t rc = nc.CommInitRank(&n->comm, c->nranks, id, c->rank);
  if (rc != 0) {
    n->comm = NULL;
    return ncfail(&c->err, NULL, rc, "ncclCommInitRank");
  }
  if (pthread_create(&n->watchdog, NULL, watchdog_main, n) != 0)
    return fcx_seterr(&c->err, FLAGCX_ERR_SYSTEM, "cannot start the NCCL watchdog thread");
  n->watchdog_started = true;
  return FLAGCX_SUCCESS;
}

static int nccl_dtype(flagcx_datatype_t dt) {
  switch (dt) {
  case FLAGCX_INT8: return FCX_ncclInt8;
  case FLAGCX_UINT8: return FCX_ncclUint8;
  case FLAGCX_INT32: return FCX_ncclInt32;
  case FLAGCX_UINT32: return FCX_ncclUint32;
  case FLAGCX_INT64: return FCX_ncclInt64;
  case FLAGCX_UINT64: return FCX_ncclUint64;
  case FLAGCX_FLOAT16: return FCX_ncclFloat16;
  case FLAGCX_BFLOAT16: return FCX_ncclBfloat16;
  case FLAGCX_FLOAT32: return FCX_ncclFloat32;
  case FLAGCX_FLOAT64: return FCX_ncclFloat64;
  default: return -1; /* int16: NCCL has no 16-bit integer */
  }
}

static int nccl_op(flagcx_red_op_t op) {
  switch (op) {
  case FLAGCX_SUM: return FCX_ncclSum;
  case FLAGCX_PROD: return FCX_ncclProd;
  case FLAGCX_MIN: return FCX_ncclMin;
  case FLAGCX_MAX: return FCX_ncclMax;
  default: return FCX_ncclAvg;
  }
}

bool fcx_nccl_supports(const fcx_cargs_t *a) {
  if (nccl_dtype(a->dt) < 0) return false;
  if (a->op == FLAGCX_AVG && nc_version < 21000) return false; /* ncclAvg arrived in 2.10 */
  if (a->dt == FLAGCX_BFLOAT16 && nc_version < 21000) return false;
  return true;
}

/* Descriptors compared over the host transport (FLAGCX_CHECK_CALLS=1): costs a
 * round trip, catches mismatched calls that would make NCCL hang. */
static flagcx_result_t check_call(flagcx_comm_t c, const fcx_cargs_t *a) {
  fcx_xop_t *ops = calloc(2 * (size_t)c->nranks, sizeof *ops);
  if (!ops) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  int m = 0;
  for (int p = 0; p < c->nranks; p++) {
    if (p == c->rank) continue;
    fcx_op_set(&ops[m++], &a->desc, p, 1, NULL, 0);
    fcx_op_set(&ops[m++], &a->desc, p, 0, NULL, 0);
  }
  flagcx_result_t r = fcx_xfer(c, ops, m);
  free(ops);
  return r;
}

void fcx_nccl_track(flagcx_comm_t c, flagcx_stream_t stream, const fcx_cargs_t *a) {
  fcx_nccl_t *n = c->nccl;
  if (!n) return;
  const fcx_cudart_t *rt = fcx_cudart(NULL);
  fcx_cudaEvent_t ev;
  if (rt->EventCreateWithFlags(&ev, FCX_cudaEventDisableTiming) != 0) return;
  if (rt->EventRecord(ev, stream) != 0) {
    rt->EventDestroy(ev);
    return;
  }
  pthread_mutex_lock(&n->mu);
  if (n->head - n->tail < RING) {
    n->ring[n->head % RING] = (pending_t){ev, fcx_now_ms(), a->desc.seq, a->coll};
    n->head++;
  } else {
    rt->EventDestroy(ev); /* the watchdog is behind by RING calls: track the others */
  }
  pthread_mutex_unlock(&n->mu);
}

flagcx_result_t fcx_nccl_coll(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream) {
  fcx_nccl_t *n = c->nccl;
  if (c->check_calls && a->coll != FCX_COLL_P2P) FCX_TRY(check_call(c, a));
  const fcx_cudart_t *rt = fcx_cudart(&c->err);
  rt->SetDevice(n->dev_index);
  int dt = nccl_dtype(a->dt), op = nccl_op(a->op);
  size_t es = flagcx_datatype_size(a->dt);
  fcx_ncclResult_t rc = 0;
  switch (a->coll) {
  case FCX_COLL_ALLREDUCE: rc = nc.AllReduce(a->send, a->recv, a->count, dt, op, n->comm, stream); break;
  case FCX_COLL_ALLGATHER: rc = nc.AllGather(a->send, a->recv, a->count, dt, n->comm, stream); break;
  case FCX_COLL_REDUCE_SCATTER: rc = nc.ReduceScatter(a->send, a->recv, a->count, dt, op, n->comm, stream); break;
  case FCX_COLL_BROADCAST: rc = nc.Broadcast(a->send, a->recv, a->count, dt, a->root, n->comm, stream); break;
  case FCX_COLL_REDUCE: rc = nc.Reduce(a->send, a->recv, a->count, dt, op, a->root, n->comm, stream); break;
  case FCX_COLL_P2P:
    rc = a->send ? nc.Send(a->send, a->count, dt, a->peer, n->comm, stream)
                 : nc.Recv(a->recv, a->count, dt, a->peer, n->comm, stream);
    break;
  case FCX_COLL_ALLTOALL:
  case FCX_COLL_ALLTOALLV:
    rc = nc.GroupStart();
    for (int p = 0; p < c->nranks && rc == 0; p++) {
      size_t sc = a->coll == FCX_COLL_ALLTOALL ? a->count : a->scounts[p];
      size_t rcnt = a->coll == FCX_COLL_ALLTOALL ? a->count : a->rcounts[p];
      size_t so = a->coll == FCX_COLL_ALLTOALL ? (size_t)p * a->count : a->sdispls[p];
      size_t ro = a->coll == FCX_COLL_ALLTOALL ? (size_t)p * a->count : a->rdispls[p];
      if (sc) rc = nc.Send((const char *)a->send + so * es, sc, dt, p, n->comm, stream);
      if (rc == 0 && rcnt) rc = nc.Recv((char *)a->recv + ro * es, rcnt, dt, p, n->comm, stream);
    }
    {
      fcx_ncclResult_t rc2 = nc.GroupEnd();
      if (rc == 0) rc = rc2;
    }
    break;
  default: return fcx_seterr(&c->err, FLAGCX_ERR_INTERNAL, "NCCL path: call %d unknown", a->coll);
  }
  if (rc != 0) return ncfail(&c->err, n->comm, rc, fcx_coll_name(a->coll));
  if (!fcx_group_active()) fcx_nccl_track(c, stream, a);
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_nccl_group_start(fcx_err_t *err) {
  if (!fcx_nccl_available()) return FLAGCX_SUCCESS;
  fcx_ncclResult_t rc = nc.GroupStart();
  return rc == 0 ? FLAGCX_SUCCESS : ncfail(err, NULL, rc, "ncclGroupStart");
}

flagcx_result_t fcx_nccl_group_end(fcx_err_t *err) {
  if (!fcx_nccl_available()) return FLAGCX_SUCCESS;
  fcx_ncclResult_t rc = nc.GroupEnd();
  return rc == 0 ? FLAGCX_SUCCESS : ncfail(err, NULL, rc, "ncclGroupEnd");
}

flagcx_result_t fcx_nccl_check(flagcx_comm_t c) {
  fcx_nccl_t *n = c->nccl;
  if (!n) return FLAGCX_SUCCESS;
  flagcx_result_t code = (flagcx_result_t)atomic_load(&n->async_code);
  if (code == FLAGCX_SUCCESS) return FLAGCX_SUCCESS;
  pthread_mutex_lock(&n->mu);
  fcx_seterr(&c->err, code, "%s", n->async_msg);
  pthread_mutex_unlock(&n->mu);
  return code;
}

flagcx_result_t fcx_nccl_quiesce(flagcx_comm_t c) {
  fcx_nccl_t *n = c->nccl;
  for (;;) {
    FCX_TRY(fcx_nccl_check(c));
    pthread_mutex_lock(&n->mu);
    bool idle = n->head == n->tail;
    pthread_mutex_unlock(&n->mu);
    if (idle) return FLAGCX_SUCCESS;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL); /* the watchdog retires events every 100 ms and enforces the timeout */
  }
}

void fcx_nccl_destroy(flagcx_comm_t c, bool abort) {
  fcx_nccl_t *n = c->nccl;
  if (!n) return;
  if (n->watchdog_started) {
    pthread_mutex_lock(&n->mu);
    n->stop = true;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->watchdog, NULL);
  }
  if (n->comm && !n->aborted) {
    if (abort) nc.CommAbort(n->comm);
    else nc.CommDestroy(n->comm);
  }
  const fcx_cudart_t *rt = fcx_cudart(NULL);
  if (rt)
    for (; n->tail != n->head; n->tail++) rt->EventDestroy(n->ring[n->tail % RING].ev);
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->cv);
  free(n);
  c->nccl = NULL;
}
