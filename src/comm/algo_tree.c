/* Binomial-tree algorithms: log2(n) levels, so latency grows slowly with the
 * number of ranks; chunks are pipelined down (broadcast) or up (reduce) the
 * tree. All-reduce is a reduce to rank 0 followed by a broadcast from it. */
#include <string.h>

#include "fcx.h"

#define MAX_CHILDREN 13 /* log2(FCX_MAX_RANKS) + 1 */

typedef struct tree {
  int parent; /* -1 at the root */
  int nchild;
  int child[MAX_CHILDREN];
} tree_t;

/* The binomial tree rooted at `root`, in ranks relative to it. Children are
 * listed nearest subtree last, the order in which their sums are added. */
static tree_t binomial(int rank, int n, int root) {
  tree_t t = {.parent = -1};
  int v = (rank - root + n) % n, mask = 1;
  while (mask < n) {
    if (v & mask) {
      t.parent = (v - mask + root) % n;
      break;
    }
    mask <<= 1;
  }
  for (mask >>= 1; mask > 0; mask >>= 1)
    if (v + mask < n) t.child[t.nchild++] = (v + mask + root) % n;
  return t;
}

static size_t chunk_len(size_t count, size_t C, size_t k) { return count - k * C < C ? count - k * C : C; }

flagcx_result_t fcx_tree_broadcast(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  tree_t t = binomial(c->rank, c->nranks, a->root);
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  size_t K = (a->count + C - 1) / C;
  const char *src = t.parent < 0 ? a->send : a->recv;
  fcx_xop_t ops[MAX_CHILDREN + 1];
  for (size_t k = 0; k <= K; k++) {
    int m = 0;
    if (t.parent < 0) {
      if (k == K) break;
      for (int i = 0; i < t.nchild; i++)
        fcx_op_set(&ops[m++], &a->desc, t.child[i], 1, src + k * C * es, chunk_len(a->count, C, k) * es);
    } else {
      if (k < K) fcx_op_set(&ops[m++], &a->desc, t.parent, 0, (char *)a->recv + k * C * es,
                            chunk_len(a->count, C, k) * es);
      if (k > 0)
        for (int i = 0; i < t.nchild; i++)
          fcx_op_set(&ops[m++], &a->desc, t.child[i], 1, src + (k - 1) * C * es,
                     chunk_len(a->count, C, k - 1) * es);
    }
    FCX_TRY(fcx_xfer(c, ops, m));
  }
  if (t.parent < 0 && a->recv && a->recv != a->send) memcpy(a->recv, a->send, a->count * es);
  return FLAGCX_SUCCESS;
}

/* Reduce up the tree; the root writes a->recv. `keep_avg` leaves the sum
 * undivided (all-reduce divides after its broadcast). */
static flagcx_result_t tree_reduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk, int root) {
  tree_t t = binomial(c->rank, c->nranks, root);
  size_t es = flagcx_datatype_size(a->dt), C = fcx_chunk_elems(chunk, es);
  if (C > a->count) C = a->count;
  size_t K = (a->count + C - 1) / C;
  const char *in = a->send;
  fcx_xop_t ops[MAX_CHILDREN + 1];
  if (t.nchild == 0) { /* a leaf sends its own data */
    for (size_t k = 0; k < K; k++) {
      fcx_op_set(&ops[0], &a->desc, t.parent, 1, in + k * C * es, chunk_len(a->count, C, k) * es);
      FCX_TRY(fcx_xfer(c, ops, 1));
    }
    return FLAGCX_SUCCESS;
  }
  char *tmp = fcx_scratch(c, ((size_t)t.nchild + 2) * C * es, &c->err);
  if (!tmp) return c->err.code;
  char *acc[2] = {tmp + (size_t)t.nchild * C * es, tmp + ((size_t)t.nchild + 1) * C * es};
  const char *prev_out = NULL;
  size_t prev_len = 0;
  for (size_t k = 0; k <= K; k++) {
    int m = 0;
    size_t len = k < K ? chunk_len(a->count, C, k) : 0;
    if (k < K)
      for (int i = 0; i < t.nchild; i++)
        fcx_op_set(&ops[m++], &a->desc, t.child[i], 0, tmp + (size_t)i * C * es, len * es);
    if (t.parent >= 0 && prev_out) fcx_op_set(&ops[m++], &a->desc, t.parent, 1, prev_out, prev_len * es);
    FCX_TRY(fcx_xfer(c, ops, m));
    if (k == K) break;
    char *dst = t.parent < 0 ? (char *)a->recv + k * C * es : acc[k & 1];
    fcx_reduce3(a->dt, a->op, dst, in + k * C * es, tmp, len);
    for (int i = 1; i < t.nchild; i++) fcx_reduce_into(a->dt, a->op, dst, tmp + (size_t)i * C * es, len);
    prev_out = dst;
    prev_len = len;
  }
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_tree_reduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  FCX_TRY(tree_reduce(c, a, chunk, a->root));
  if (c->rank == a->root && a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, a->recv, a->count, c->nranks);
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_tree_allreduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk) {
  FCX_TRY(tree_reduce(c, a, chunk, 0));
  if (c->rank == 0 && a->op == FLAGCX_AVG) fcx_avg_finish(a->dt, a->recv, a->count, c->nranks);
  fcx_cargs_t b = *a;
  b.root = 0;
  b.send = a->recv;
  return fcx_tree_broadcast(c, &b, chunk);
}
