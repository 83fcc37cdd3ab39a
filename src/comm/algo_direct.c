/* Direct algorithms: every rank exchanges with every peer in one batch. One
 * round of latency, so they win for small messages; all-to-all has no other
 * algorithm. Reductions add the ranks' contributions in rank order 0..n-1 on
 * every rank, so all ranks get bit-identical results. */
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

static size_t chunk_len(size_t count, size_t C, size_t base) { return count - base < C ? count - base : C; }

/* A batch array: on the stack for small communicators, else on the heap (*heap, freed by the caller). */
static fcx_xop_t *ops_for(fcx_xop_t *local, size_t nlocal, size_t need, fcx_err_t *err, void **heap) {
  *heap = NULL;
  if (need <= nlocal) return local;
  *heap = malloc(need * sizeof(fcx_xop_t));
  if (!*heap) fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory for %zu transfers", need);
  return *heap;
}

/* out = slot[0] op slot[1] op ... op slot[n-1]. */
static void reduce_slots(const fcx_cargs_t *a, char *out, char *slots, size_t C, int n, size_t len) {
  size_t es = flagcx_datatype_size(a->dt);
  fcx_reduce3(a->dt, a->op, out, slots, slots + C * es, len);
  for (int p = 2; p < n; p++) fcx_reduce_into(a->dt, a->op, out, slots + (size_t)p * C * es, len);
}

flagcx_result_t fcx_direct_allreduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  if (C > a->count) C = a->count;
  char *slots = fcx_scratch(c, (size_t)n * C * es, &c->err);
  if (!slots) return c->err.code;
  fcx_xop_t local[64], *ops;
  void *heap;
  if (!(ops = ops_for(local, 64, 2 * (size_t)n, &c->err, &heap))) return c->err.code;
  flagcx_result_t res = FLAGCX_SUCCESS;
  for (size_t base = 0; base < a->count && res == FLAGCX_SUCCESS; base += C) {
    size_t len = chunk_len(a->count, C, base);
    const char *mine = (const char *)a->send + base * es;
    /* Own data goes to its slot first: in place, recv is about to be overwritten. */
    memcpy(slots + (size_t)r * C * es, mine, len * es);
    int m = 0;
    for (int p = 0; p < n; p++) {
      if (p == r) continue;
      fcx_op_set(&ops[m++], &a->desc, p, 1, slots + (size_t)r * C * es, len * es);
      fcx_op_set(&ops[m++], &a->desc, p, 0, slots + (size_t)p * C * es, len * es);
    }
    res = fcx_xfer(c, ops, m);
    if (res == FLAGCX_SUCCESS) reduce_slots(a, (char *)a->recv + base * es, slots, C, n, len);
  }
  free(heap);
  if (res == FLAGCX_SUCCESS && a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, a->recv, a->count, n);
  return res;
}

flagcx_result_t fcx_direct_broadcast(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  fcx_xop_t local[64], *ops;
  void *heap;
  if (!(ops = ops_for(local, 64, (size_t)n, &c->err, &heap))) return c->err.code;
  flagcx_result_t res = FLAGCX_SUCCESS;
  for (size_t base = 0; base < a->count && res == FLAGCX_SUCCESS; base += C) {
    size_t len = chunk_len(a->count, C, base);
    int m = 0;
    if (r == a->root) {
      for (int p = 0; p < n; p++)
        if (p != r) fcx_op_set(&ops[m++], &a->desc, p, 1, (const char *)a->send + base * es, len * es);
    } else {
      fcx_op_set(&ops[m++], &a->desc, a->root, 0, (char *)a->recv + base * es, len * es);
    }
    res = fcx_xfer(c, ops, m);
  }
  free(heap);
  if (res == FLAGCX_SUCCESS && r == a->root && a->recv && a->recv != a->send)
    memcpy(a->recv, a->send, a->count * es);
  return res;
}

flagcx_result_t fcx_direct_reduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  if (C > a->count) C = a->count;
  if (r != a->root) {
    for (size_t base = 0; base < a->count; base += C) {
      fcx_xop_t op;
      fcx_op_set(&op, &a->desc, a->root, 1, (const char *)a->send + base * es, chunk_len(a->count, C, base) * es);
      FCX_TRY(fcx_xfer(c, &op, 1));
    }
    return FLAGCX_SUCCESS;
  }
  char *slots = fcx_scratch(c, (size_t)n * C * es, &c->err);
  if (!slots) return c->err.code;
  fcx_xop_t local[64], *ops;
  void *heap;
  if (!(ops = ops_for(local, 64, (size_t)n, &c->err, &heap))) return c->err.code;
  flagcx_result_t res = FLAGCX_SUCCESS;
  for (size_t base = 0; base < a->count && res == FLAGCX_SUCCESS; base += C) {
    size_t len = chunk_len(a->count, C, base);
    memcpy(slots + (size_t)r * C * es, (const char *)a->send + base * es, len * es);
    int m = 0;
    for (int p = 0; p < n; p++)
      if (p != r) fcx_op_set(&ops[m++], &a->desc, p, 0, slots + (size_t)p * C * es, len * es);
    res = fcx_xfer(c, ops, m);
    if (res == FLAGCX_SUCCESS) reduce_slots(a, (char *)a->recv + base * es, slots, C, n, len);
  }
  free(heap);
  if (res == FLAGCX_SUCCESS && a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, a->recv, a->count, n);
  return res;
}

flagcx_result_t fcx_direct_allgather(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  char *out = a->recv;
  char *mine = out + (size_t)r * a->rstride * es;
  if (a->send != mine) memcpy(mine, a->send, a->count * es);
  fcx_xop_t local[64], *ops;
  void *heap;
  if (!(ops = ops_for(local, 64, 2 * (size_t)n, &c->err, &heap))) return c->err.code;
  flagcx_result_t res = FLAGCX_SUCCESS;
  for (size_t base = 0; base < a->count && res == FLAGCX_SUCCESS; base += C) {
    size_t len = chunk_len(a->count, C, base);
    int m = 0;
    for (int p = 0; p < n; p++) {
      if (p == r) continue;
      fcx_op_set(&ops[m++], &a->desc, p, 1, mine + base * es, len * es);
      fcx_op_set(&ops[m++], &a->desc, p, 0, out + ((size_t)p * a->rstride + base) * es, len * es);
    }
    res = fcx_xfer(c, ops, m);
  }
  free(heap);
  return res;
}

flagcx_result_t fcx_direct_reduce_scatter(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  if (C > a->count) C = a->count;
  char *slots = fcx_scratch(c, (size_t)n * C * es, &c->err);
  if (!slots) return c->err.code;
  fcx_xop_t local[64], *ops;
  void *heap;
  if (!(ops = ops_for(local, 64, 2 * (size_t)n, &c->err, &heap))) return c->err.code;
  const char *in = a->send;
  flagcx_result_t res = FLAGCX_SUCCESS;
  for (size_t base = 0; base < a->count && res == FLAGCX_SUCCESS; base += C) {
    size_t len = chunk_len(a->count, C, base);
    memcpy(slots + (size_t)r * C * es, in + ((size_t)r * a->sstride + base) * es, len * es);
    int m = 0;
    for (int p = 0; p < n; p++) {
      if (p == r) continue;
      fcx_op_set(&ops[m++], &a->desc, p, 1, in + ((size_t)p * a->sstride + base) * es, len * es);
      fcx_op_set(&ops[m++], &a->desc, p, 0, slots + (size_t)p * C * es, len * es);
    }
    res = fcx_xfer(c, ops, m);
    if (res == FLAGCX_SUCCESS) reduce_slots(a, (char *)a->recv + base * es, slots, C, n, len);
  }
  free(heap);
  if (res == FLAGCX_SUCCESS && a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, a->recv, a->count, n);
  return res;
}

flagcx_result_t fcx_direct_alltoall(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  const char *in = a->send;
  char *out = a->recv;
  memcpy(out + (size_t)r * a->rstride * es, in + (size_t)r * a->sstride * es, a->count * es);
  fcx_xop_t local[64], *ops;
  void *heap;
  if (!(ops = ops_for(local, 64, 2 * (size_t)n, &c->err, &heap))) return c->err.code;
  flagcx_result_t res = FLAGCX_SUCCESS;
  for (size_t base = 0; base < a->count && res == FLAGCX_SUCCESS; base += C) {
    size_t len = chunk_len(a->count, C, base);
    int m = 0;
    /* Staggered peer order spreads the load instead of everyone hitting rank 0 first. */
    for (int s = 1; s < n; s++) {
      int to = (r + s) % n, from = (r - s + n) % n;
      fcx_op_set(&ops[m++], &a->desc, to, 1, in + ((size_t)to * a->sstride + base) * es, len * es);
      fcx_op_set(&ops[m++], &a->desc, from, 0, out + ((size_t)from * a->rstride + base) * es, len * es);
    }
    res = fcx_xfer(c, ops, m);
  }
  free(heap);
  return res;
}

flagcx_result_t fcx_direct_alltoallv(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  if (a->scounts[r] != a->rcounts[r])
    return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT,
                      "all_to_allv: rank %d sends itself %zu elements but expects to receive %zu", r, a->scounts[r],
                      a->rcounts[r]);
  const char *in = a->send;
  char *out = a->recv;
  memmove(out + a->rdispls[r] * es, in + a->sdispls[r] * es, a->rcounts[r] * es);
  fcx_xop_t local[64], *ops;
  void *heap;
  if (!(ops = ops_for(local, 64, 2 * (size_t)n, &c->err, &heap))) return c->err.code;
  flagcx_result_t res = FLAGCX_SUCCESS;
  /* Each pair cuts its messages by the same chunk: both sides know the count. */
  for (size_t base = 0; res == FLAGCX_SUCCESS; base += C) {
    int m = 0;
    for (int s = 1; s < n; s++) {
      int to = (r + s) % n, from = (r - s + n) % n;
      if (base < a->scounts[to])
        fcx_op_set(&ops[m++], &a->desc, to, 1, in + (a->sdispls[to] + base) * es,
                   chunk_len(a->scounts[to], C, base) * es);
      if (base < a->rcounts[from])
        fcx_op_set(&ops[m++], &a->desc, from, 0, out + (a->rdispls[from] + base) * es,
                   chunk_len(a->rcounts[from], C, base) * es);
    }
    if (m == 0) break;
    res = fcx_xfer(c, ops, m);
  }
  free(heap);
  return res;
}
