/* Collectives of communicators whose ranks own different device kinds: device
 * buffers pass through pinned host staging memory in chunks, and each chunk is
 * a host collective. Three staging slots rotate so that, while chunk i is on
 * the network, the device->host copy of chunk i+1 and the host->device copy of
 * chunk i-1 run on the adaptor's copy queue:
 *
 *     copy in   [i+1]            [i+2]
 *     network        [  i  ]          [ i+1 ]
 *     copy out  [i-1]            [ i ]
 *
 * Host-memory ranks take part in the same chunk loop (so message patterns
 * match) but hand their own buffers to the network without copies. */
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

typedef struct stage {
  flagcx_comm_t c;
  const fcx_cargs_t *a;
  size_t es;
  int n, r;
  bool zero_copy;   /* the rank's buffers are host memory */
  bool in_place_cl; /* AllGather / ReduceScatter in place on one OpenCL handle */
} stage_t;

static bool has_in(const stage_t *s) { return s->a->coll != FCX_COLL_BROADCAST || s->r == s->a->root; }
static bool has_out(const stage_t *s) {
  if (s->a->coll == FCX_COLL_REDUCE) return s->r == s->a->root;
  if (s->a->coll == FCX_COLL_BROADCAST && s->r == s->a->root) return s->a->send != s->a->recv;
  return true;
}

static size_t slot_blocks(int coll, int n) {
  switch (coll) {
  case FCX_COLL_ALLGATHER:
  case FCX_COLL_REDUCE_SCATTER: return (size_t)n;
  case FCX_COLL_ALLTOALL: return 2 * (size_t)n;
  default: return 1;
  }
}

static flagcx_result_t copy_in(stage_t *s, char *slot, size_t off, size_t len) {
  const fcx_dev_ops_t *d = s->c->dev_ops;
  const fcx_cargs_t *a = s->a;
  fcx_err_t *err = &s->c->err;
  size_t es = s->es, cnt = a->count;
  switch (a->coll) {
  case FCX_COLL_ALLGATHER:
    if (s->in_place_cl) return d->d2h(s->c->dev, slot + (size_t)s->r * len * es, a->recv, ((size_t)s->r * cnt + off) * es, len * es, err);
    return d->d2h(s->c->dev, slot + (size_t)s->r * len * es, a->send, off * es, len * es, err);
  case FCX_COLL_REDUCE_SCATTER:
  case FCX_COLL_ALLTOALL:
    for (int p = 0; p < s->n; p++)
      FCX_TRY(d->d2h(s->c->dev, slot + (size_t)p * len * es, a->send, ((size_t)p * cnt + off) * es, len * es, err));
    return FLAGCX_SUCCESS;
  default: return d->d2h(s->c->dev, slot, a->send, off * es, len * es, err);
  }
}

static flagcx_result_t copy_out(stage_t *s, char *slot, size_t off, size_t len) {
  const fcx_dev_ops_t *d = s->c->dev_ops;
  const fcx_cargs_t *a = s->a;
  fcx_err_t *err = &s->c->err;
  size_t es = s->es, cnt = a->count;
  switch (a->coll) {
  case FCX_COLL_ALLGATHER:
    for (int p = 0; p < s->n; p++)
      FCX_TRY(d->h2d(s->c->dev, a->recv, ((size_t)p * cnt + off) * es, slot + (size_t)p * len * es, len * es, err));
    return FLAGCX_SUCCESS;
  case FCX_COLL_REDUCE_SCATTER: {
    size_t dst = s->in_place_cl ? ((size_t)s->r * cnt + off) * es : off * es;
    return d->h2d(s->c->dev, a->recv, dst, slot + (size_t)s->r * len * es, len * es, err);
  }
  case FCX_COLL_ALLTOALL:
    for (int p = 0; p < s->n; p++)
      FCX_TRY(d->h2d(s->c->dev, a->recv, ((size_t)p * cnt + off) * es, slot + ((size_t)s->n + p) * len * es,
                     len * es, err));
    return FLAGCX_SUCCESS;
  default: return d->h2d(s->c->dev, a->recv, off * es, slot, len * es, err);
  }
}

/* The host collective of one chunk, on staging slots or (zero copy) on the user's buffers. */
static fcx_cargs_t chunk_args(const stage_t *s, char *slot, size_t off, size_t len) {
  const fcx_cargs_t *a = s->a;
  fcx_cargs_t h = *a;
  size_t es = s->es;
  h.count = len;
  if (s->zero_copy) {
    const fcx_dev_ops_t *d = s->c->dev_ops;
    h.send = a->send ? d->host_view(s->c->dev, a->send, off * es) : NULL;
    h.recv = a->recv ? d->host_view(s->c->dev, a->recv, off * es) : NULL;
    h.sstride = h.rstride = a->count;
    return h;
  }
  switch (a->coll) {
  case FCX_COLL_ALLGATHER:
    h.send = slot + (size_t)s->r * len * es;
    h.recv = slot;
    h.rstride = len;
    break;
  case FCX_COLL_REDUCE_SCATTER:
    h.send = slot;
    h.sstride = len;
    h.recv = slot + (size_t)s->r * len * es;
    break;
  case FCX_COLL_ALLTOALL:
    h.send = slot;
    h.recv = slot + (size_t)s->n * len * es;
    h.sstride = h.rstride = len;
    break;
  default: h.send = h.recv = slot; break;
  }
  return h;
}

/* Device buffers must be large enough for what the call touches. */
static flagcx_result_t check_buffers(const stage_t *s) {
  const fcx_dev_ops_t *d = s->c->dev_ops;
  const fcx_cargs_t *a = s->a;
  fcx_err_t *err = &s->c->err;
  size_t es = s->es, one = a->count * es, all = one * (size_t)s->n;
  switch (a->coll) {
  case FCX_COLL_ALLGATHER:
    if (!s->in_place_cl) FCX_TRY(d->check_range(s->c->dev, a->send, 0, one, "sendbuf", err));
    return d->check_range(s->c->dev, a->recv, 0, all, "recvbuf", err);
  case FCX_COLL_REDUCE_SCATTER:
    FCX_TRY(d->check_range(s->c->dev, a->send, 0, all, "sendbuf", err));
    return s->in_place_cl ? FLAGCX_SUCCESS : d->check_range(s->c->dev, a->recv, 0, one, "recvbuf", err);
  case FCX_COLL_ALLTOALL:
    FCX_TRY(d->check_range(s->c->dev, a->send, 0, all, "sendbuf", err));
    return d->check_range(s->c->dev, a->recv, 0, all, "recvbuf", err);
  default:
    if (has_in(s)) FCX_TRY(d->check_range(s->c->dev, a->send, 0, one, "sendbuf", err));
    if (has_out(s) || (a->coll == FCX_COLL_BROADCAST && s->a->send != s->a->recv))
      FCX_TRY(d->check_range(s->c->dev, a->recv, 0, one, "recvbuf", err));
    return FLAGCX_SUCCESS;
  }
}

static flagcx_result_t staged_alltoallv(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream);

flagcx_result_t fcx_staged_coll(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream) {
  if (a->coll == FCX_COLL_ALLTOALLV) return staged_alltoallv(c, a, stream);
  if (a->count == 0) return FLAGCX_SUCCESS;
  const fcx_dev_ops_t *d = c->dev_ops;
  stage_t s = {.c = c, .a = a, .es = flagcx_datatype_size(a->dt), .n = c->nranks, .r = c->rank};
  s.zero_copy = d->host_view(c->dev, a->recv ? a->recv : a->send, 0) != NULL;
  s.in_place_cl = c->cfg.device == FLAGCX_DEVICE_OPENCL && a->send == a->recv &&
                  (a->coll == FCX_COLL_ALLGATHER || a->coll == FCX_COLL_REDUCE_SCATTER);
  size_t C = fcx_chunk_elems(c->stage_chunk, s.es);
  size_t K = (a->count + C - 1) / C;
  if (s.zero_copy) {
    for (size_t k = 0; k < K; k++) {
      size_t off = k * C, len = a->count - off < C ? a->count - off : C;
      fcx_cargs_t h = chunk_args(&s, NULL, off, len);
      FCX_TRY(fcx_host_coll(c, &h));
    }
    return FLAGCX_SUCCESS;
  }
  FCX_TRY(check_buffers(&s));
  FCX_TRY(d->stream_wait(c->dev, stream, &c->err));
  size_t slot_bytes = slot_blocks(a->coll, s.n) * (K > 1 ? C : a->count) * s.es;
  char *slot[FCX_STAGE_SLOTS];
  for (int i = 0; i < FCX_STAGE_SLOTS; i++) {
    slot[i] = fcx_mem_get(c, &c->stage[i], slot_bytes, true, &c->err);
    if (!slot[i]) return c->err.code;
  }
  void *in_mark[FCX_STAGE_SLOTS] = {NULL}, *out_mark[FCX_STAGE_SLOTS] = {NULL};
  bool in = has_in(&s), out = has_out(&s);
  flagcx_result_t r = FLAGCX_SUCCESS;
#define CHUNK(k) ((k) * C), (a->count - (k) * C < C ? a->count - (k) * C : C)
  if (in) {
    r = copy_in(&s, slot[0], CHUNK(0));
    if (r == FLAGCX_SUCCESS) r = d->mark(c->dev, &in_mark[0], &c->err);
  }
  for (size_t k = 0; k < K && r == FLAGCX_SUCCESS; k++) {
    int cur = (int)(k % FCX_STAGE_SLOTS), nxt = (int)((k + 1) % FCX_STAGE_SLOTS);
    if (in && k + 1 < K) {
      /* The next slot was last used by chunk k-2, whose copy out must be done. */
      r = d->wait(c->dev, out_mark[nxt], &c->err);
      out_mark[nxt] = NULL;
      if (r == FLAGCX_SUCCESS) r = copy_in(&s, slot[nxt], CHUNK(k + 1));
      if (r == FLAGCX_SUCCESS) r = d->mark(c->dev, &in_mark[nxt], &c->err);
    } else if (!in && k + 1 < K) {
      r = d->wait(c->dev, out_mark[nxt], &c->err);
      out_mark[nxt] = NULL;
    }
    if (r != FLAGCX_SUCCESS) break;
    r = d->wait(c->dev, in_mark[cur], &c->err);
    in_mark[cur] = NULL;
    if (r != FLAGCX_SUCCESS) break;
    fcx_cargs_t h = chunk_args(&s, slot[cur], CHUNK(k));
    r = fcx_host_coll(c, &h);
    if (r == FLAGCX_SUCCESS && out) {
      r = copy_out(&s, slot[cur], CHUNK(k));
      if (r == FLAGCX_SUCCESS) r = d->mark(c->dev, &out_mark[cur], &c->err);
    }
  }
#undef CHUNK
  /* Markers still held are waited for (and freed) whatever happened: the slots
   * must be idle before anyone reuses them. */
  for (int i = 0; i < FCX_STAGE_SLOTS; i++) {
    fcx_err_t e2;
    flagcx_result_t r1 = d->wait(c->dev, in_mark[i], &e2);
    flagcx_result_t r2 = d->wait(c->dev, out_mark[i], r == FLAGCX_SUCCESS ? &c->err : &e2);
    if (r == FLAGCX_SUCCESS && r1 != FLAGCX_SUCCESS) r = fcx_seterr(&c->err, r1, "%s", e2.msg);
    if (r == FLAGCX_SUCCESS) r = r2;
  }
  if (r != FLAGCX_SUCCESS) {
    fcx_err_t e2;
    d->drain(c->dev, &e2);
  }
  return r;
}

static size_t extent(const size_t *counts, const size_t *displs, int n) {
  size_t e = 0;
  for (int p = 0; p < n; p++)
    if (counts[p] && displs[p] + counts[p] > e) e = displs[p] + counts[p];
  return e;
}

/* Counts differ per peer, so there is no common chunk grid to pipeline on:
 * whole buffers are staged. */
static flagcx_result_t staged_alltoallv(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream) {
  const fcx_dev_ops_t *d = c->dev_ops;
  if (d->host_view(c->dev, a->recv, 0)) return fcx_host_coll(c, a);
  size_t es = flagcx_datatype_size(a->dt);
  size_t se = extent(a->scounts, a->sdispls, c->nranks), re = extent(a->rcounts, a->rdispls, c->nranks);
  FCX_TRY(d->check_range(c->dev, a->send, 0, se * es, "sendbuf", &c->err));
  FCX_TRY(d->check_range(c->dev, a->recv, 0, re * es, "recvbuf", &c->err));
  FCX_TRY(d->stream_wait(c->dev, stream, &c->err));
  char *tmp = fcx_mem_get(c, &c->stage_big, (se + re) * es, true, &c->err);
  if (!tmp) return c->err.code;
  flagcx_result_t r = FLAGCX_SUCCESS;
  for (int p = 0; p < c->nranks && r == FLAGCX_SUCCESS; p++)
    if (a->scounts[p]) r = d->d2h(c->dev, tmp + a->sdispls[p] * es, a->send, a->sdispls[p] * es, a->scounts[p] * es, &c->err);
  if (r == FLAGCX_SUCCESS) r = d->drain(c->dev, &c->err);
  fcx_cargs_t h = *a;
  h.send = tmp;
  h.recv = tmp + se * es;
  if (r == FLAGCX_SUCCESS) r = fcx_host_coll(c, &h);
  for (int p = 0; p < c->nranks && r == FLAGCX_SUCCESS; p++)
    if (a->rcounts[p])
      r = d->h2d(c->dev, a->recv, a->rdispls[p] * es, (char *)h.recv + a->rdispls[p] * es, a->rcounts[p] * es, &c->err);
  fcx_err_t e2;
  flagcx_result_t r2 = d->drain(c->dev, r == FLAGCX_SUCCESS ? &c->err : &e2);
  return r != FLAGCX_SUCCESS ? r : r2;
}

flagcx_result_t fcx_p2p_batch(flagcx_comm_t c, const fcx_cargs_t *ops, int nops, flagcx_stream_t stream) {
  if (nops == 0) return FLAGCX_SUCCESS;
  const fcx_dev_ops_t *d = c->dev_ops;
  size_t *boff = calloc((size_t)nops, sizeof *boff);
  fcx_xop_t *x = calloc((size_t)nops, sizeof *x);
  char **host = calloc((size_t)nops, sizeof *host);
  flagcx_result_t r = FLAGCX_SUCCESS;
  if (!boff || !x || !host) r = fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory for %d transfers", nops);
  bool staged = c->mode != FCX_MODE_HOST;
  size_t total = 0;
  bool copies = false;
  for (int i = 0; i < nops && r == FLAGCX_SUCCESS; i++) {
    const void *buf = ops[i].send ? ops[i].send : ops[i].recv;
    size_t bytes = ops[i].count * flagcx_datatype_size(ops[i].dt);
    host[i] = d->host_view(c->dev, buf, 0);
    if (!host[i] && bytes) {
      r = d->check_range(c->dev, buf, 0, bytes, ops[i].send ? "sendbuf" : "recvbuf", &c->err);
      boff[i] = total;
      total += (bytes + 63) & ~(size_t)63;
      copies = true;
    }
  }
  char *tmp = NULL;
  if (r == FLAGCX_SUCCESS && copies) {
    r = d->stream_wait(c->dev, stream, &c->err);
    if (r == FLAGCX_SUCCESS && !(tmp = fcx_mem_get(c, &c->stage_big, total, true, &c->err))) r = c->err.code;
    for (int i = 0; i < nops && r == FLAGCX_SUCCESS; i++) {
      size_t bytes = ops[i].count * flagcx_datatype_size(ops[i].dt);
      if (host[i] || !bytes) continue;
      host[i] = tmp + boff[i];
      if (ops[i].send) r = d->d2h(c->dev, host[i], ops[i].send, 0, bytes, &c->err);
    }
    if (r == FLAGCX_SUCCESS) r = d->drain(c->dev, &c->err);
  }
  /* Staged communicators cut messages by the staging chunk on every rank, so a
   * device rank and a host rank agree on message sizes. */
  size_t chunk = staged ? c->stage_chunk : SIZE_MAX;
  for (size_t base = 0; r == FLAGCX_SUCCESS; base += chunk) {
    int m = 0;
    for (int i = 0; i < nops; i++) {
      size_t bytes = ops[i].count * flagcx_datatype_size(ops[i].dt);
      if (base >= bytes && !(base == 0 && bytes == 0)) continue;
      size_t len = bytes - base < chunk ? bytes - base : chunk;
      fcx_op_set(&x[m++], &ops[i].desc, ops[i].peer, ops[i].send != NULL, host[i] ? host[i] + base : NULL, len);
    }
    if (m == 0) break;
    r = fcx_xfer(c, x, m);
    if (chunk == SIZE_MAX) break;
  }
  for (int i = 0; i < nops && r == FLAGCX_SUCCESS && copies; i++) {
    size_t bytes = ops[i].count * flagcx_datatype_size(ops[i].dt);
    if (ops[i].send || !bytes || d->host_view(c->dev, ops[i].recv, 0)) continue;
    r = d->h2d(c->dev, ops[i].recv, 0, host[i], bytes, &c->err);
  }
  if (copies) {
    fcx_err_t e2;
    flagcx_result_t r2 = d->drain(c->dev, r == FLAGCX_SUCCESS ? &c->err : &e2);
    if (r == FLAGCX_SUCCESS) r = r2;
  }
  free(boff);
  free(x);
  free(host);
  return r;
}
