/* The collective and point-to-point entry points: argument checks, the call
 * descriptor every message of the call will carry, then a group queue or an
 * immediate run. A call that fails breaks the communicator and tells the peers,
 * so that no rank waits for a partner that already gave up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

static bool is_reduction(int coll) {
  return coll == FCX_COLL_ALLREDUCE || coll == FCX_COLL_REDUCE || coll == FCX_COLL_REDUCE_SCATTER;
}

static bool is_rooted(int coll) { return coll == FCX_COLL_BROADCAST || coll == FCX_COLL_REDUCE; }

static flagcx_result_t bad(flagcx_comm_t c, const char *call, const char *fmt, const char *what) {
  char msg[300];
  snprintf(msg, sizeof msg, fmt, what);
  return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "%s (rank %d): %s", call, c->rank, msg);
}

static flagcx_result_t validate(flagcx_comm_t c, fcx_cargs_t *a) {
  const char *call = fcx_coll_name(a->coll);
  if ((unsigned)a->dt >= FLAGCX_NUM_DATATYPES) return bad(c, call, "datatype %s is not a flagcx_datatype_t", "");
  if (is_reduction(a->coll) && (unsigned)a->op >= FLAGCX_NUM_OPS)
    return bad(c, call, "reduction op %s is not a flagcx_red_op_t", "");
  if (is_rooted(a->coll) && (a->root < 0 || a->root >= c->nranks))
    return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "%s (rank %d): root %d outside 0..%d", call, c->rank,
                      a->root, c->nranks - 1);
  size_t es = flagcx_datatype_size(a->dt);
  size_t blocks = a->coll == FCX_COLL_ALLGATHER || a->coll == FCX_COLL_REDUCE_SCATTER || a->coll == FCX_COLL_ALLTOALL
                      ? (size_t)c->nranks
                      : 1;
  if (a->count > SIZE_MAX / es / blocks) return bad(c, call, "count is too large%s", "");
  if (a->coll == FCX_COLL_ALLTOALLV) {
    if (!a->scounts || !a->sdispls || !a->rcounts || !a->rdispls)
      return bad(c, call, "sendcounts, sdispls, recvcounts and rdispls must all be given%s", "");
    bool any_s = false, any_r = false;
    for (int p = 0; p < c->nranks; p++) {
      any_s = any_s || a->scounts[p];
      any_r = any_r || a->rcounts[p];
    }
    if ((any_s && !a->send) || (any_r && !a->recv)) return bad(c, call, "a buffer is NULL%s", "");
    if (a->send == a->recv && any_s) return bad(c, call, "sendbuf and recvbuf must differ (not in place)%s", "");
    return FLAGCX_SUCCESS;
  }
  if (a->count == 0) return FLAGCX_SUCCESS;
  bool need_send = a->coll != FCX_COLL_BROADCAST || c->rank == a->root;
  bool need_recv = a->coll != FCX_COLL_REDUCE || c->rank == a->root;
  if (a->coll == FCX_COLL_P2P) {
    if (a->peer < 0 || a->peer >= c->nranks || a->peer == c->rank)
      return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "%s (rank %d): peer %d must be another rank (0..%d)",
                        a->send ? "send" : "recv", c->rank, a->peer, c->nranks - 1);
    return a->send || a->recv ? FLAGCX_SUCCESS : bad(c, call, "the buffer is NULL%s", "");
  }
  if (need_send && !a->send) return bad(c, call, "sendbuf is NULL%s", "");
  if (need_recv && !a->recv) return bad(c, call, "recvbuf is NULL%s", "");
  if (a->coll == FCX_COLL_ALLTOALL && a->send == a->recv)
    return bad(c, call, "sendbuf and recvbuf must differ (not in place)%s", "");
  return FLAGCX_SUCCESS;
}

static flagcx_result_t submit(flagcx_comm_t c, fcx_cargs_t *a, flagcx_stream_t stream) {
  FCX_TRY(fcx_comm_enter(c));
  flagcx_result_t r = validate(c, a);
  if (r == FLAGCX_SUCCESS) {
    fcx_desc_t *d = &a->desc;
    memset(d, 0, sizeof *d);
    d->coll = (uint8_t)a->coll;
    d->dtype = (uint8_t)a->dt;
    d->op = is_reduction(a->coll) ? (uint8_t)a->op : 0;
    d->root = is_rooted(a->coll) ? a->root : -1;
    d->count = a->coll == FCX_COLL_ALLTOALLV ? 0 : a->count;
    if (a->coll != FCX_COLL_P2P) d->seq = c->seq++;
    a->sstride = a->rstride = a->count;
    c->err.msg[0] = 0;
    r = fcx_group_active() ? fcx_group_enqueue(c, a, stream) : fcx_run_call(c, a, stream);
  }
  if (r != FLAGCX_SUCCESS) fcx_comm_fail(c, r);
  fcx_comm_leave(c);
  return r;
}

flagcx_result_t flagcx_all_reduce(const void *sendbuf, void *recvbuf, size_t count, flagcx_datatype_t dtype,
                                  flagcx_red_op_t op, flagcx_comm_t comm, flagcx_stream_t stream) {
  fcx_cargs_t a = {.coll = FCX_COLL_ALLREDUCE, .dt = dtype, .op = op, .send = sendbuf, .recv = recvbuf, .count = count};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_all_gather(const void *sendbuf, void *recvbuf, size_t sendcount, flagcx_datatype_t dtype,
                                  flagcx_comm_t comm, flagcx_stream_t stream) {
  fcx_cargs_t a = {.coll = FCX_COLL_ALLGATHER, .dt = dtype, .send = sendbuf, .recv = recvbuf, .count = sendcount};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_reduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount, flagcx_datatype_t dtype,
                                      flagcx_red_op_t op, flagcx_comm_t comm, flagcx_stream_t stream) {
  fcx_cargs_t a = {
      .coll = FCX_COLL_REDUCE_SCATTER, .dt = dtype, .op = op, .send = sendbuf, .recv = recvbuf, .count = recvcount};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_broadcast(const void *sendbuf, void *recvbuf, size_t count, flagcx_datatype_t dtype, int root,
                                 flagcx_comm_t comm, flagcx_stream_t stream) {
  fcx_cargs_t a = {
      .coll = FCX_COLL_BROADCAST, .dt = dtype, .root = root, .send = sendbuf, .recv = recvbuf, .count = count};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_reduce(const void *sendbuf, void *recvbuf, size_t count, flagcx_datatype_t dtype,
                              flagcx_red_op_t op, int root, flagcx_comm_t comm, flagcx_stream_t stream) {
  fcx_cargs_t a = {.coll = FCX_COLL_REDUCE,
                   .dt = dtype,
                   .op = op,
                   .root = root,
                   .send = sendbuf,
                   .recv = recvbuf,
                   .count = count};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_all_to_all(const void *sendbuf, void *recvbuf, size_t count, flagcx_datatype_t dtype,
                                  flagcx_comm_t comm, flagcx_stream_t stream) {
  fcx_cargs_t a = {.coll = FCX_COLL_ALLTOALL, .dt = dtype, .send = sendbuf, .recv = recvbuf, .count = count};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_all_to_allv(const void *sendbuf, const size_t *sendcounts, const size_t *sdispls,
                                   void *recvbuf, const size_t *recvcounts, const size_t *rdispls,
                                   flagcx_datatype_t dtype, flagcx_comm_t comm, flagcx_stream_t stream) {
  fcx_cargs_t a = {.coll = FCX_COLL_ALLTOALLV,
                   .dt = dtype,
                   .send = sendbuf,
                   .recv = recvbuf,
                   .scounts = sendcounts,
                   .sdispls = sdispls,
                   .rcounts = recvcounts,
                   .rdispls = rdispls};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_send(const void *sendbuf, size_t count, flagcx_datatype_t dtype, int peer, flagcx_comm_t comm,
                            flagcx_stream_t stream) {
  /* A zero-byte send needs no buffer, but a non-NULL one marks the direction. */
  fcx_cargs_t a = {.coll = FCX_COLL_P2P, .dt = dtype, .send = sendbuf ? sendbuf : count ? NULL : "", .count = count,
                   .peer = peer};
  return submit(comm, &a, stream);
}

flagcx_result_t flagcx_recv(void *recvbuf, size_t count, flagcx_datatype_t dtype, int peer, flagcx_comm_t comm,
                            flagcx_stream_t stream) {
  static char empty;
  fcx_cargs_t a = {.coll = FCX_COLL_P2P, .dt = dtype, .recv = recvbuf ? recvbuf : count ? NULL : &empty,
                   .count = count, .peer = peer};
  return submit(comm, &a, stream);
}
