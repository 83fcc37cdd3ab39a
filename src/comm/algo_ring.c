/* Ring algorithms: every rank sends to its right neighbour and receives from
 * its left, each step one batch so both directions stream at once. Bandwidth
 * optimal (each rank moves 2(n-1)/n of the data in an all-reduce); latency grows
 * with the number of ranks. Work is cut into chunks so the temporary buffers
 * stay small; every rank cuts alike, so messages match one to one. */
#include <string.h>

#include "fcx.h"

typedef struct span {
  size_t off, len;
} span_t;

/* Elements of segment `seg` when `count` is cut into n nearly equal segments. */
static span_t segment(size_t count, int n, int seg) {
  size_t lo = count * (size_t)seg / (size_t)n, hi = count * (size_t)(seg + 1) / (size_t)n;
  return (span_t){lo, hi - lo};
}

/* The base-th chunk of a segment (empty past its end). */
static span_t slice(span_t s, size_t base, size_t C) {
  if (base >= s.len) return (span_t){s.off, 0};
  size_t len = s.len - base < C ? s.len - base : C;
  return (span_t){s.off + base, len};
}

flagcx_result_t fcx_ring_allreduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank, right = (r + 1) % n, left = (r - 1 + n) % n;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  char *buf = a->recv;
  if (a->send != a->recv) memcpy(buf, a->send, a->count * es);
  size_t maxseg = (a->count + (size_t)n - 1) / (size_t)n;
  if (C > maxseg) C = maxseg;
  char *tmp = fcx_scratch(c, C * es, &c->err);
  if (!tmp) return c->err.code;
  for (size_t base = 0; base < maxseg; base += C) {
    /* Reduce-scatter: after n-1 steps rank r holds segment r+1 fully reduced. */
    for (int s = 0; s < n - 1; s++) {
      span_t so = slice(segment(a->count, n, (r - s + n) % n), base, C);
      span_t ri = slice(segment(a->count, n, (r - s - 1 + n) % n), base, C);
      fcx_xop_t ops[2];
      int k = 0;
      if (so.len) fcx_op_set(&ops[k++], &a->desc, right, 1, buf + so.off * es, so.len * es);
      if (ri.len) fcx_op_set(&ops[k++], &a->desc, left, 0, tmp, ri.len * es);
      FCX_TRY(fcx_xfer(c, ops, k));
      if (ri.len) fcx_reduce_into(a->dt, a->op, buf + ri.off * es, tmp, ri.len);
    }
    /* All-gather of the reduced segments. */
    for (int s = 0; s < n - 1; s++) {
      span_t so = slice(segment(a->count, n, (r + 1 - s + n) % n), base, C);
      span_t ri = slice(segment(a->count, n, (r - s + n) % n), base, C);
      fcx_xop_t ops[2];
      int k = 0;
      if (so.len) fcx_op_set(&ops[k++], &a->desc, right, 1, buf + so.off * es, so.len * es);
      if (ri.len) fcx_op_set(&ops[k++], &a->desc, left, 0, buf + ri.off * es, ri.len * es);
      FCX_TRY(fcx_xfer(c, ops, k));
    }
  }
  if (a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, buf, a->count, n);
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_ring_allgather(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank, right = (r + 1) % n, left = (r - 1 + n) % n;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  char *out = a->recv;
  char *mine = out + (size_t)r * a->rstride * es;
  if (a->send != mine) memcpy(mine, a->send, a->count * es);
  for (size_t base = 0; base < a->count; base += C) {
    size_t len = a->count - base < C ? a->count - base : C;
    for (int s = 0; s < n - 1; s++) {
      int sb = (r - s + n) % n, rb = (r - s - 1 + n) % n;
      fcx_xop_t ops[2];
      fcx_op_set(&ops[0], &a->desc, right, 1, out + ((size_t)sb * a->rstride + base) * es, len * es);
      fcx_op_set(&ops[1], &a->desc, left, 0, out + ((size_t)rb * a->rstride + base) * es, len * es);
      FCX_TRY(fcx_xfer(c, ops, 2));
    }
  }
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_ring_reduce_scatter(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank, right = (r + 1) % n, left = (r - 1 + n) % n;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  if (C > a->count) C = a->count;
  const char *in = a->send;
  char *tmp = fcx_scratch(c, 3 * C * es, &c->err);
  if (!tmp) return c->err.code;
  char *acc[2] = {tmp + C * es, tmp + 2 * C * es};
  for (size_t base = 0; base < a->count; base += C) {
    size_t len = a->count - base < C ? a->count - base : C;
    /* Step s sends the partial sum of block r-s-1 and receives that of block
     * r-s-2, adding this rank's own part; the last step lands on block r. */
    const char *out = in + ((size_t)((r - 1 + n) % n) * a->sstride + base) * es;
    for (int s = 0; s < n - 1; s++) {
      int rb = (r - s - 2 + 2 * n) % n;
      fcx_xop_t ops[2];
      fcx_op_set(&ops[0], &a->desc, right, 1, out, len * es);
      fcx_op_set(&ops[1], &a->desc, left, 0, tmp, len * es);
      FCX_TRY(fcx_xfer(c, ops, 2));
      const char *own = in + ((size_t)rb * a->sstride + base) * es;
      char *dst = s == n - 2 ? (char *)a->recv + base * es : acc[s & 1];
      fcx_reduce3(a->dt, a->op, dst, tmp, own, len);
      out = dst;
    }
  }
  if (a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, a->recv, a->count, n);
  return FLAGCX_SUCCESS;
}

/* Broadcast along the chain root, root+1, ...: chunk k arrives while chunk k-1
 * moves on, so the chain streams. */
flagcx_result_t fcx_ring_broadcast(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank, v = (r - a->root + n) % n;
  int next = (r + 1) % n, prev = (r - 1 + n) % n;
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  size_t K = (a->count + C - 1) / C;
  const char *src = v == 0 ? a->send : a->recv;
  for (size_t k = 0; k <= K; k++) {
    fcx_xop_t ops[2];
    int m = 0;
    if (v == 0) {
      if (k == K) break;
      size_t len = a->count - k * C < C ? a->count - k * C : C;
      fcx_op_set(&ops[m++], &a->desc, next, 1, src + k * C * es, len * es);
    } else {
      if (k < K) {
        size_t len = a->count - k * C < C ? a->count - k * C : C;
        fcx_op_set(&ops[m++], &a->desc, prev, 0, (char *)a->recv + k * C * es, len * es);
      }
      if (k > 0 && v < n - 1) {
        size_t len = a->count - (k - 1) * C < C ? a->count - (k - 1) * C : C;
        fcx_op_set(&ops[m++], &a->desc, next, 1, (char *)a->recv + (k - 1) * C * es, len * es);
      }
    }
    FCX_TRY(fcx_xfer(c, ops, m));
  }
  if (v == 0 && a->recv && a->recv != a->send) memcpy(a->recv, a->send, a->count * es);
  return FLAGCX_SUCCESS;
}

/* Reduce along the chain root+n-1 -> ... -> root+1 -> root, pipelined by chunk. */
flagcx_result_t fcx_ring_reduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  int n = c->nranks, r = c->rank, v = (r - a->root + n) % n;
  int up = (r + 1) % n, down = (r - 1 + n) % n; /* receive from v+1, send to v-1 */
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  if (C > a->count) C = a->count;
  size_t K = (a->count + C - 1) / C;
  const char *in = a->send;
  bool leaf = v == n - 1;
  char *tmp = NULL, *acc[2] = {NULL, NULL};
  if (!leaf) {
    tmp = fcx_scratch(c, 3 * C * es, &c->err);
    if (!tmp) return c->err.code;
    acc[0] = tmp + C * es;
    acc[1] = tmp + 2 * C * es;
  }
  const char *prev_out = NULL;
  size_t prev_len = 0;
  for (size_t k = 0; k <= K; k++) {
    size_t len = k < K ? (a->count - k * C < C ? a->count - k * C : C) : 0;
    fcx_xop_t ops[2];
    int m = 0;
    if (leaf) {
      if (k == K) break;
      fcx_op_set(&ops[m++], &a->desc, down, 1, in + k * C * es, len * es);
      FCX_TRY(fcx_xfer(c, ops, m));
      continue;
    }
    if (k < K) fcx_op_set(&ops[m++], &a->desc, up, 0, tmp, len * es);
    if (v > 0 && prev_out) fcx_op_set(&ops[m++], &a->desc, down, 1, prev_out, prev_len * es);
    FCX_TRY(fcx_xfer(c, ops, m));
    if (k == K) break;
    char *dst = v == 0 ? (char *)a->recv + k * C * es : acc[k & 1];
    fcx_reduce3(a->dt, a->op, dst, tmp, in + k * C * es, len);
    prev_out = dst;
    prev_len = len;
  }
  if (v == 0 && a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, a->recv, a->count, n);
  return FLAGCX_SUCCESS;
}
