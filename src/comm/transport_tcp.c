/* The TCP transport: one non-blocking socket per peer, a batch of sends and
 * receives progressed together by one poll() loop, so that a ring step's send
 * and receive (or a whole all-to-all) stream at once without threads.
 *
 * Every message is a 32-byte header (the sender's call descriptor and the
 * payload size) and the payload. The receiver compares the header with its own
 * descriptor: that is how mismatched calls are detected. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fcx.h"
#include "net.h"

#define WIRE_MAGIC 0x4d584346u /* "FCXM" little endian */
#define HDR 32

typedef struct tcp_tp {
  fcx_transport_t base;
  int *fds;
  unsigned char *dirty; /* a message to this peer was cut off: nothing more may be sent */
  struct pollfd *pfd;
  int *pfd_peer;
  int *send_head, *recv_head;
} tcp_tp_t;

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void encode(unsigned char *h, const fcx_desc_t *d, uint64_t bytes) {
  put32(h, WIRE_MAGIC);
  h[4] = d->coll;
  h[5] = d->dtype;
  h[6] = d->op;
  h[7] = d->algo;
  put32(h + 8, (uint32_t)d->root);
  put32(h + 12, d->seq);
  put64(h + 16, d->count);
  put64(h + 24, bytes);
}

static void decode(const unsigned char *h, fcx_desc_t *d, uint64_t *bytes) {
  memset(d, 0, sizeof *d);
  d->coll = h[4];
  d->dtype = h[5];
  d->op = h[6];
  d->algo = h[7];
  d->root = (int32_t)get32(h + 8);
  d->seq = get32(h + 12);
  d->count = get64(h + 16);
  *bytes = get64(h + 24);
}

static void desc_str(const fcx_desc_t *d, uint64_t bytes, char *buf, size_t n) {
  bool red = d->coll == FCX_COLL_ALLREDUCE || d->coll == FCX_COLL_REDUCE || d->coll == FCX_COLL_REDUCE_SCATTER;
  bool rooted = d->coll == FCX_COLL_BROADCAST || d->coll == FCX_COLL_REDUCE;
  char extra[48] = "";
  if (red && rooted) snprintf(extra, sizeof extra, ", %s, root %d", flagcx_red_op_name((flagcx_red_op_t)d->op), d->root);
  else if (red) snprintf(extra, sizeof extra, ", %s", flagcx_red_op_name((flagcx_red_op_t)d->op));
  else if (rooted) snprintf(extra, sizeof extra, ", root %d", d->root);
  snprintf(buf, n, "%s(count %llu, %s%s; %s algorithm, call #%u, %llu bytes)", fcx_coll_name(d->coll),
           (unsigned long long)d->count, flagcx_datatype_name((flagcx_datatype_t)d->dtype), extra,
           flagcx_algo_name((flagcx_algo_t)d->algo), d->seq, (unsigned long long)bytes);
}

static flagcx_result_t check_header(tcp_tp_t *t, fcx_xop_t *op, fcx_err_t *err) {
  fcx_desc_t got;
  uint64_t bytes;
  decode(op->hdr, &got, &bytes);
  int peer = op->peer;
  if (get32(op->hdr) != WIRE_MAGIC)
    return fcx_seterr(err, FLAGCX_ERR_REMOTE, "rank %d sent bytes that are not a FlagCX message", peer);
  if (got.coll == FCX_COLL_ABORT) {
    char reason[600] = "";
    size_t n = bytes < sizeof reason - 1 ? (size_t)bytes : sizeof reason - 1;
    fcx_net_recv_all(t->fds[peer], reason, n, fcx_now_ms() + 1000, NULL);
    reason[n] = 0;
    return fcx_seterr(err, FLAGCX_ERR_REMOTE, "rank %d failed: %s", peer, reason[0] ? reason : "(no reason)");
  }
  fcx_desc_t want = op->desc;
  want.pad = got.pad = 0;
  if (memcmp(&got, &want, sizeof got) != 0 || bytes != op->bytes) {
    char a[200], b[200];
    desc_str(&got, bytes, a, sizeof a);
    desc_str(&op->desc, op->bytes, b, sizeof b);
    return fcx_seterr(err, FLAGCX_ERR_MISMATCH, "calls do not match: rank %d sent %s while rank %d expects %s", peer,
                      a, t->base.rank, b);
  }
  return FLAGCX_SUCCESS;
}

static flagcx_result_t lost(tcp_tp_t *t, int peer, const char *what, int e, fcx_err_t *err) {
  (void)t;
  if (e == 0)
    return fcx_seterr(err, FLAGCX_ERR_REMOTE,
                      "rank %d closed its connection while this rank was %s (it exited, crashed, aborted or "
                      "destroyed its communicator)",
                      peer, what);
  return fcx_seterr(err, FLAGCX_ERR_REMOTE, "connection to rank %d lost while %s: %s", peer, what, strerror(e));
}

/* Moves as many bytes of op as the socket takes now. *moved tells whether any did. */
static flagcx_result_t step(tcp_tp_t *t, fcx_xop_t *op, bool *moved, fcx_err_t *err) {
  int fd = t->fds[op->peer];
  size_t total = HDR + op->bytes;
  while (op->moved < total) {
    ssize_t k;
    if (op->send) {
      struct iovec iov[2];
      int niov = 0;
      if (op->moved < HDR) {
        iov[niov++] = (struct iovec){op->hdr + op->moved, HDR - op->moved};
        if (op->bytes) iov[niov++] = (struct iovec){op->buf, op->bytes};
      } else {
        iov[niov++] = (struct iovec){(char *)op->buf + (op->moved - HDR), total - op->moved};
      }
      struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
      k = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else if (op->moved < HDR) {
      k = recv(fd, op->hdr + op->moved, HDR - op->moved, MSG_DONTWAIT);
    } else {
      k = recv(fd, (char *)op->buf + (op->moved - HDR), total - op->moved, MSG_DONTWAIT);
    }
    if (k > 0) {
      bool header_done = !op->send && op->moved < HDR && op->moved + (size_t)k >= HDR;
      op->moved += (size_t)k;
      *moved = true;
      if (header_done) FCX_TRY(check_header(t, op, err));
      continue;
    }
    if (k == 0 && !op->send) return lost(t, op->peer, "receiving", 0, err);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return FLAGCX_SUCCESS;
    if (k < 0 && errno == EINTR) continue;
    return lost(t, op->peer, op->send ? "sending" : "receiving", k < 0 ? errno : 0, err);
  }
  op->state = 1;
  return FLAGCX_SUCCESS;
}

static flagcx_result_t stalled(tcp_tp_t *t, fcx_xop_t *ops, int nops, fcx_err_t *err) {
  char what[600];
  size_t off = 0;
  int shown = 0;
  for (int i = 0; i < nops && shown < 4; i++) {
    if (ops[i].state) continue;
    off += (size_t)snprintf(what + off, sizeof what - off, "%s%s %zu bytes %s rank %d", shown ? "; " : "",
                            ops[i].send ? "sending" : "receiving", ops[i].bytes, ops[i].send ? "to" : "from",
                            ops[i].peer);
    if (off >= sizeof what) break;
    shown++;
  }
  return fcx_seterr(err, FLAGCX_ERR_TIMEOUT, "rank %d: no progress for %d ms in %s call #%u (%s)", t->base.rank,
                    t->base.timeout_ms, fcx_coll_name(ops[0].desc.coll), ops[0].desc.seq, what);
}

static flagcx_result_t tcp_xfer(fcx_transport_t *base, fcx_xop_t *ops, int nops, fcx_err_t *err) {
  tcp_tp_t *t = (tcp_tp_t *)base;
  int n = base->nranks;
  for (int i = 0; i < nops; i++) {
    ops[i].moved = 0;
    ops[i].state = 0;
    if (ops[i].peer < 0 || ops[i].peer >= n || ops[i].peer == base->rank || t->fds[ops[i].peer] < 0)
      return fcx_seterr(err, FLAGCX_ERR_INTERNAL, "transport: bad peer %d", ops[i].peer);
    if (ops[i].send) encode(ops[i].hdr, &ops[i].desc, ops[i].bytes);
  }
  double last = fcx_now_ms();
  flagcx_result_t r = FLAGCX_SUCCESS;
  for (;;) {
    if (atomic_load(base->abort_flag)) {
      r = fcx_seterr(err, FLAGCX_ERR_ABORTED, "the communicator was aborted");
      break;
    }
    /* Ops to one peer in one direction run in batch order: only the first
     * unfinished one of each (peer, direction) may move. */
    for (int p = 0; p < n; p++) t->send_head[p] = t->recv_head[p] = -1;
    int pending = 0;
    for (int i = 0; i < nops; i++) {
      if (ops[i].state) continue;
      pending++;
      int *head = ops[i].send ? &t->send_head[ops[i].peer] : &t->recv_head[ops[i].peer];
      if (*head < 0) *head = i;
    }
    if (pending == 0) break;
    bool moved = false;
    int npfd = 0;
    for (int p = 0; p < n && r == FLAGCX_SUCCESS; p++) {
      short ev = 0;
      if (t->recv_head[p] >= 0) {
        r = step(t, &ops[t->recv_head[p]], &moved, err);
        if (!ops[t->recv_head[p]].state) ev |= POLLIN;
      }
      if (r == FLAGCX_SUCCESS && t->send_head[p] >= 0) {
        r = step(t, &ops[t->send_head[p]], &moved, err);
        if (!ops[t->send_head[p]].state) ev |= POLLOUT;
      }
      if (ev) {
        t->pfd[npfd] = (struct pollfd){.fd = t->fds[p], .events = ev};
        t->pfd_peer[npfd++] = p;
      }
    }
    if (r != FLAGCX_SUCCESS) break;
    double now = fcx_now_ms();
    if (moved) {
      last = now;
      continue; /* heads may have advanced: look again before sleeping */
    }
    if (npfd == 0) continue;
    double left = last + base->timeout_ms - now;
    if (left <= 0) {
      r = stalled(t, ops, nops, err);
      break;
    }
    if (base->wake_fd >= 0) t->pfd[npfd++] = (struct pollfd){.fd = base->wake_fd, .events = POLLIN};
    int ms = left > 1e9 ? 1000000000 : (int)left + 1;
    if (poll(t->pfd, (nfds_t)npfd, ms) < 0 && errno != EINTR) {
      r = fcx_seterr(err, FLAGCX_ERR_SYSTEM, "poll: %s", strerror(errno));
      break;
    }
  }
  if (r != FLAGCX_SUCCESS)
    for (int i = 0; i < nops; i++)
      if (ops[i].send && !ops[i].state && ops[i].moved > 0) t->dirty[ops[i].peer] = 1;
  return r;
}

static void tcp_post_abort(fcx_transport_t *base, const char *reason) {
  tcp_tp_t *t = (tcp_tp_t *)base;
  size_t len = strlen(reason);
  if (len > 512) len = 512;
  fcx_desc_t d = {.coll = FCX_COLL_ABORT};
  unsigned char h[HDR];
  encode(h, &d, len);
  for (int p = 0; p < base->nranks; p++) {
    if (t->fds[p] < 0) continue;
    if (!t->dirty[p]) {
      struct iovec iov[2] = {{h, HDR}, {(void *)reason, len}};
      struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
      ssize_t k = sendmsg(t->fds[p], &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k >= 0 && (size_t)k < HDR + len) t->dirty[p] = 1;
    }
    /* Peers blocked on this rank see the reason, then end of stream. */
    shutdown(t->fds[p], SHUT_RDWR);
  }
}

static void tcp_destroy(fcx_transport_t *base) {
  tcp_tp_t *t = (tcp_tp_t *)base;
  if (!t) return;
  for (int p = 0; p < base->nranks; p++)
    if (t->fds[p] >= 0) close(t->fds[p]);
  free(t->fds);
  free(t->dirty);
  free(t->pfd);
  free(t->pfd_peer);
  free(t->send_head);
  free(t->recv_head);
  free(t);
}

static const fcx_transport_ops_t tcp_ops = {"tcp", tcp_xfer, tcp_post_abort, tcp_destroy};

flagcx_result_t fcx_tcp_create(int rank, int nranks, int *fds, fcx_transport_t **out, fcx_err_t *err) {
  tcp_tp_t *t = calloc(1, sizeof *t);
  size_t n = (size_t)nranks;
  if (t) {
    t->fds = malloc(sizeof(int) * n);
    t->dirty = calloc(n, 1);
    t->pfd = malloc(sizeof(struct pollfd) * (n + 1));
    t->pfd_peer = malloc(sizeof(int) * (n + 1));
    t->send_head = malloc(sizeof(int) * n);
    t->recv_head = malloc(sizeof(int) * n);
  }
  if (!t || !t->fds || !t->dirty || !t->pfd || !t->pfd_peer || !t->send_head || !t->recv_head) {
    if (t) {
      t->base.nranks = 0;
      tcp_destroy(&t->base);
    }
    return fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory for the TCP transport");
  }
  memcpy(t->fds, fds, sizeof(int) * n);
  t->base.ops = &tcp_ops;
  t->base.rank = rank;
  t->base.nranks = nranks;
  t->base.wake_fd = -1;
  *out = &t->base;
  return FLAGCX_SUCCESS;
}
