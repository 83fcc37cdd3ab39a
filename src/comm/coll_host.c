/* Collectives over host memory: picks the algorithm and chunk from the tuning
 * table (or the communicator's override) and runs it. Every rank computes the
 * same choice from the same table, so their message patterns match. */
#include <string.h>

#include "fcx.h"

size_t fcx_chunk_elems(size_t chunk_bytes, size_t esize) {
  size_t n = chunk_bytes / esize;
  return n ? n : 1;
}

void fcx_op_set(fcx_xop_t *op, const fcx_desc_t *d, int peer, int send, const void *buf, size_t bytes) {
  op->desc = *d;
  op->peer = peer;
  op->send = send;
  op->buf = (void *)buf;
  op->bytes = bytes;
}

size_t fcx_coll_bytes(const fcx_cargs_t *a, int nranks) {
  size_t es = flagcx_datatype_size(a->dt);
  switch (a->coll) {
  case FCX_COLL_ALLGATHER:
  case FCX_COLL_REDUCE_SCATTER:
  case FCX_COLL_ALLTOALL: return a->count * es * (size_t)nranks;
  case FCX_COLL_ALLTOALLV: return SIZE_MAX; /* counts differ per rank: all must pick the same rule */
  default: return a->count * es;
  }
}

/* One rank: the collective is a copy. */
static flagcx_result_t local_coll(const fcx_cargs_t *a) {
  size_t es = flagcx_datatype_size(a->dt);
  switch (a->coll) {
  case FCX_COLL_ALLTOALLV:
    if (a->scounts[0] != a->rcounts[0]) return FLAGCX_ERR_INVALID_ARGUMENT;
    memmove((char *)a->recv + a->rdispls[0] * es, (const char *)a->send + a->sdispls[0] * es, a->rcounts[0] * es);
    return FLAGCX_SUCCESS;
  case FCX_COLL_REDUCE:
  case FCX_COLL_BROADCAST:
    if (!a->recv) return FLAGCX_SUCCESS;
    /* fall through */
  default:
    if (a->send != a->recv) memmove(a->recv, a->send, a->count * es);
    return FLAGCX_SUCCESS;
  }
}

flagcx_result_t fcx_host_coll(flagcx_comm_t c, const fcx_cargs_t *in) {
  if (in->coll != FCX_COLL_ALLTOALLV && in->count == 0) return FLAGCX_SUCCESS;
  if (c->nranks == 1) {
    if (local_coll(in) != FLAGCX_SUCCESS)
      return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "all_to_allv: sendcounts[0] != recvcounts[0]");
    return FLAGCX_SUCCESS;
  }
  fcx_cargs_t a = *in;
  const fcx_rule_t *rule = fcx_tune_pick(&c->tune, a.coll, fcx_coll_bytes(&a, c->nranks));
  flagcx_algo_t algo = rule ? (flagcx_algo_t)rule->algo : FLAGCX_ALGO_RING;
  size_t chunk = rule ? (size_t)rule->chunk_bytes : (512u << 10);
  if (c->force_algo != FLAGCX_ALGO_AUTO) algo = c->force_algo;
  if (c->force_chunk) chunk = c->force_chunk;
  algo = fcx_algo_for(a.coll, algo);
  a.desc.algo = (uint8_t)algo;
  switch (a.coll) {
  case FCX_COLL_ALLREDUCE:
    return algo == FLAGCX_ALGO_TREE     ? fcx_tree_allreduce(c, &a, chunk)
           : algo == FLAGCX_ALGO_DIRECT ? fcx_direct_allreduce(c, &a, chunk)
                                        : fcx_ring_allreduce(c, &a, chunk);
  case FCX_COLL_BROADCAST:
    return algo == FLAGCX_ALGO_TREE     ? fcx_tree_broadcast(c, &a, chunk)
           : algo == FLAGCX_ALGO_DIRECT ? fcx_direct_broadcast(c, &a, chunk)
                                        : fcx_ring_broadcast(c, &a, chunk);
  case FCX_COLL_REDUCE:
    return algo == FLAGCX_ALGO_TREE     ? fcx_tree_reduce(c, &a, chunk)
           : algo == FLAGCX_ALGO_DIRECT ? fcx_direct_reduce(c, &a, chunk)
                                        : fcx_ring_reduce(c, &a, chunk);
  case FCX_COLL_ALLGATHER:
    return algo == FLAGCX_ALGO_DIRECT ? fcx_direct_allgather(c, &a, chunk) : fcx_ring_allgather(c, &a, chunk);
  case FCX_COLL_REDUCE_SCATTER:
    return algo == FLAGCX_ALGO_DIRECT ? fcx_direct_reduce_scatter(c, &a, chunk)
                                      : fcx_ring_reduce_scatter(c, &a, chunk);
  case FCX_COLL_ALLTOALL: return fcx_direct_alltoall(c, &a, chunk);
  case FCX_COLL_ALLTOALLV: return fcx_direct_alltoallv(c, &a, chunk);
  default: return fcx_seterr(&c->err, FLAGCX_ERR_INTERNAL, "host collective %d unknown", a.coll);
  }
}
