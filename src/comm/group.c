/* Groups: calls between flagcx_group_start and flagcx_group_end are queued per
 * thread and run at the outermost end. Sends and receives of one communicator
 * progress as one batch (so two ranks may send to each other); collectives run
 * in the order given. Communicators are served in the order of their ids, the
 * same on every rank. NCCL communicators use NCCL's own group. */
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

typedef struct gop {
  flagcx_comm_t c;
  fcx_cargs_t a;
  flagcx_stream_t stream;
  size_t *arrays; /* AllToAllv counts and displacements, copied */
  bool nccl_done; /* already handed to NCCL inside its group */
  int pos;        /* order of the calls, kept within a communicator */
} gop_t;

typedef struct group {
  int depth;
  gop_t *ops;
  int n, cap;
  bool nccl_started;
} group_t;

static _Thread_local group_t g;

bool fcx_group_active(void) { return g.depth > 0; }

flagcx_result_t fcx_run_call(flagcx_comm_t c, fcx_cargs_t *a, flagcx_stream_t stream) {
  if (c->mode == FCX_MODE_NCCL && fcx_nccl_supports(a)) return fcx_nccl_coll(c, a, stream);
  if (a->coll == FCX_COLL_P2P) return fcx_p2p_batch(c, a, 1, stream);
  if (c->mode == FCX_MODE_HOST) return fcx_host_coll(c, a);
  return fcx_staged_coll(c, a, stream);
}

flagcx_result_t fcx_group_enqueue(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream) {
  if (g.n == g.cap) {
    int cap = g.cap ? 2 * g.cap : 16;
    gop_t *ops = realloc(g.ops, sizeof *ops * (size_t)cap);
    if (!ops) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory for the group");
    g.ops = ops;
    g.cap = cap;
  }
  gop_t *op = &g.ops[g.n];
  memset(op, 0, sizeof *op);
  op->c = c;
  op->a = *a;
  op->stream = stream;
  op->pos = g.n;
  if (a->coll == FCX_COLL_ALLTOALLV) {
    size_t n = (size_t)c->nranks;
    op->arrays = malloc(4 * n * sizeof(size_t));
    if (!op->arrays) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory for the group");
    memcpy(op->arrays, a->scounts, n * sizeof(size_t));
    memcpy(op->arrays + n, a->sdispls, n * sizeof(size_t));
    memcpy(op->arrays + 2 * n, a->rcounts, n * sizeof(size_t));
    memcpy(op->arrays + 3 * n, a->rdispls, n * sizeof(size_t));
    op->a.scounts = op->arrays;
    op->a.sdispls = op->arrays + n;
    op->a.rcounts = op->arrays + 2 * n;
    op->a.rdispls = op->arrays + 3 * n;
  }
  if (c->mode == FCX_MODE_NCCL && fcx_nccl_supports(a)) {
    if (!g.nccl_started) {
      FCX_TRY(fcx_nccl_group_start(&c->err));
      g.nccl_started = true;
    }
    FCX_TRY(fcx_nccl_coll(c, &op->a, stream));
    op->nccl_done = true;
  }
  g.n++;
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_group_start(void) {
  g.depth++;
  return FLAGCX_SUCCESS;
}

static int by_comm_id(const void *x, const void *y) {
  const gop_t *a = x, *b = y;
  if (a->c->id != b->c->id) return a->c->id < b->c->id ? -1 : 1;
  if (a->c != b->c) return a->c < b->c ? -1 : 1; /* equal ids: keep communicators apart */
  return (a->pos > b->pos) - (a->pos < b->pos); /* qsort is not stable */
}

/* Runs the queued calls of one communicator. */
static flagcx_result_t run_comm(gop_t *ops, int n) {
  flagcx_comm_t c = ops[0].c;
  FCX_TRY(fcx_comm_enter(c));
  flagcx_result_t r = FLAGCX_SUCCESS;
  fcx_cargs_t *p2p = malloc(sizeof *p2p * (size_t)n);
  if (!p2p) r = fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  int np = 0;
  for (int i = 0; i < n && r == FLAGCX_SUCCESS; i++) {
    if (ops[i].nccl_done || ops[i].a.coll != FCX_COLL_P2P) continue;
    if (c->dev_ops) r = c->dev_ops->stream_wait(c->dev, ops[i].stream, &c->err);
    p2p[np++] = ops[i].a;
  }
  if (r == FLAGCX_SUCCESS) r = fcx_p2p_batch(c, p2p, np, NULL);
  for (int i = 0; i < n && r == FLAGCX_SUCCESS; i++)
    if (!ops[i].nccl_done && ops[i].a.coll != FCX_COLL_P2P) r = fcx_run_call(c, &ops[i].a, ops[i].stream);
  for (int i = 0; i < n && r == FLAGCX_SUCCESS; i++)
    if (ops[i].nccl_done) fcx_nccl_track(c, ops[i].stream, &ops[i].a);
  free(p2p);
  if (r != FLAGCX_SUCCESS) fcx_comm_fail(c, r);
  fcx_comm_leave(c);
  return r;
}

flagcx_result_t flagcx_group_end(void) {
  fcx_err_t *terr = fcx_thread_err();
  if (g.depth == 0) return fcx_seterr(terr, FLAGCX_ERR_INVALID_USAGE, "group_end without group_start");
  if (--g.depth > 0) return FLAGCX_SUCCESS;
  flagcx_result_t r = FLAGCX_SUCCESS;
  if (g.nccl_started) {
    g.nccl_started = false;
    r = fcx_nccl_group_end(terr);
  }
  qsort(g.ops, (size_t)g.n, sizeof *g.ops, by_comm_id);
  for (int i = 0; i < g.n;) {
    int j = i;
    while (j < g.n && g.ops[j].c == g.ops[i].c) j++;
    flagcx_result_t rc = run_comm(&g.ops[i], j - i);
    if (rc != FLAGCX_SUCCESS && r == FLAGCX_SUCCESS) {
      r = rc;
      *terr = g.ops[i].c->err;
    }
    i = j;
  }
  for (int i = 0; i < g.n; i++) free(g.ops[i].arrays);
  free(g.ops);
  memset(&g, 0, sizeof g);
  return r;
}
