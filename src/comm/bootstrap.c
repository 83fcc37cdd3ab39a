/* TCP bootstrap from a unique id: the process that made the id runs a small
 * service (a detached thread) that collects every rank's address and hands the
 * full table back; ranks then connect pairwise. Every wait has a deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "fcx.h"
#include "net.h"

#define UID_MAGIC 0x46435855u /* "FCXU" */
#define HELLO_MAGIC 0x46435848u
#define ROOT_IDLE_MS (3600.0 * 1000.0) /* a never-used id's service gives up after an hour */

_Static_assert(sizeof(fcx_uid_t) <= FLAGCX_UNIQUE_ID_BYTES, "unique id too large");

typedef struct root_hello {
  uint32_t magic, version;
  uint8_t nonce[16];
  fcx_rank_info_t info;
} root_hello_t;

typedef struct root_reply {
  int32_t status; /* flagcx_result_t */
  int32_t nranks;
  char msg[248];
} root_reply_t;

typedef struct peer_hello {
  uint32_t magic, version;
  uint8_t nonce[16];
  int32_t from, to;
} peer_hello_t;

typedef struct root_state {
  int lfd;
  uint8_t nonce[16];
} root_state_t;

static void reply_error(int fd, flagcx_result_t code, const char *msg) {
  root_reply_t r;
  memset(&r, 0, sizeof r);
  r.status = code;
  snprintf(r.msg, sizeof r.msg, "%s", msg);
  fcx_net_send_all(fd, &r, sizeof r, fcx_now_ms() + 2000, NULL);
}

static void *root_main(void *arg) {
  root_state_t st = *(root_state_t *)arg;
  free(arg);
  int nranks = -1, arrived = 0, timeout_ms = FCX_DEFAULT_TIMEOUT_MS;
  int *fds = NULL;
  fcx_rank_info_t *infos = NULL;
  double deadline = fcx_now_ms() + ROOT_IDLE_MS;
  for (;;) {
    int fd = -1;
    fcx_err_t err;
    if (fcx_net_accept(st.lfd, deadline, &fd, &err) != FLAGCX_SUCCESS) {
      if (nranks > 0) {
        char msg[200], missing[96] = "";
        size_t off = 0;
        for (int r = 0; r < nranks && off + 8 < sizeof missing; r++)
          if (fds[r] < 0) off += (size_t)snprintf(missing + off, sizeof missing - off, "%s%d", off ? "," : "", r);
        snprintf(msg, sizeof msg, "bootstrap: only %d of %d ranks arrived within %d ms (missing ranks %s)", arrived,
                 nranks, timeout_ms, missing);
        for (int r = 0; r < nranks; r++)
          if (fds[r] >= 0) reply_error(fds[r], FLAGCX_ERR_TIMEOUT, msg);
      }
      break;
    }
    root_hello_t h;
    if (fcx_net_recv_all(fd, &h, sizeof h, fcx_now_ms() + 5000, &err) != FLAGCX_SUCCESS || h.magic != HELLO_MAGIC ||
        memcmp(h.nonce, st.nonce, 16) != 0) {
      close(fd); /* a stray connection, or a rank of another job */
      continue;
    }
    char msg[200];
    const fcx_rank_info_t *in = &h.info;
    if (h.version != FLAGCX_VERSION_CODE || in->magic != FCX_INFO_MAGIC) {
      snprintf(msg, sizeof msg, "bootstrap: rank %d runs FlagCX version %u, the root %d", in->rank, h.version,
               FLAGCX_VERSION_CODE);
      reply_error(fd, FLAGCX_ERR_INVALID_USAGE, msg);
      close(fd);
      continue;
    }
    if (nranks < 0) {
      if (in->nranks < 1 || in->nranks > FCX_MAX_RANKS) {
        reply_error(fd, FLAGCX_ERR_INVALID_ARGUMENT, "bootstrap: invalid number of ranks");
        close(fd);
        continue;
      }
      nranks = in->nranks;
      timeout_ms = in->timeout_ms > 0 ? in->timeout_ms : FCX_DEFAULT_TIMEOUT_MS;
      fds = malloc(sizeof(int) * (size_t)nranks);
      infos = calloc((size_t)nranks, sizeof *infos);
      if (!fds || !infos) break;
      for (int r = 0; r < nranks; r++) fds[r] = -1;
      /* The ranks of one job start together: once one arrived, the rest get the
       * communicator's timeout to follow. */
      deadline = fcx_now_ms() + timeout_ms;
    }
    if (in->nranks != nranks || in->rank < 0 || in->rank >= nranks || fds[in->rank] >= 0) {
      snprintf(msg, sizeof msg,
               in->nranks != nranks ? "bootstrap: rank %d says there are %d ranks, an earlier rank said %d"
                                    : "bootstrap: rank %d (of %d, expected %d) is invalid or arrived twice",
               in->rank, in->nranks, nranks);
      reply_error(fd, in->nranks != nranks ? FLAGCX_ERR_MISMATCH : FLAGCX_ERR_INVALID_ARGUMENT, msg);
      close(fd);
      continue;
    }
    fds[in->rank] = fd;
    infos[in->rank] = *in;
    if (++arrived < nranks) continue;
    root_reply_t ok;
    memset(&ok, 0, sizeof ok);
    ok.nranks = nranks;
    for (int r = 0; r < nranks; r++) {
      double dl = fcx_now_ms() + timeout_ms;
      if (fcx_net_send_all(fds[r], &ok, sizeof ok, dl, &err) == FLAGCX_SUCCESS)
        fcx_net_send_all(fds[r], infos, sizeof *infos * (size_t)nranks, dl, &err);
    }
    break;
  }
  if (fds)
    for (int r = 0; r < nranks; r++)
      if (fds[r] >= 0) close(fds[r]);
  free(fds);
  free(infos);
  close(st.lfd);
  return NULL;
}

flagcx_result_t fcx_root_start(const fcx_uid_t *uid, int lfd, fcx_err_t *err) {
  root_state_t *st = malloc(sizeof *st);
  if (!st) return fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  st->lfd = lfd;
  memcpy(st->nonce, uid->nonce, 16);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t th;
  int rc = pthread_create(&th, &attr, root_main, st);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    free(st);
    return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "cannot start the bootstrap thread: %s", strerror(rc));
  }
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_uid_make(fcx_uid_t *uid, int port, bool start_root, fcx_err_t *err) {
  memset(uid, 0, sizeof *uid);
  uid->magic = UID_MAGIC;
  uid->version = FLAGCX_VERSION_CODE;
  if (getrandom(uid->nonce, sizeof uid->nonce, 0) != (ssize_t)sizeof uid->nonce) {
    /* No entropy source: time and pid still separate concurrent jobs. */
    double t = fcx_now_ms();
    pid_t pid = getpid();
    memcpy(uid->nonce, &t, sizeof t);
    memcpy(uid->nonce + 8, &pid, sizeof pid);
  }
  struct sockaddr_storage ss;
  socklen_t len;
  FCX_TRY(fcx_net_local_addr(&ss, &len, err));
  if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
  int lfd;
  FCX_TRY(fcx_net_listen(&ss, &len, 1024, err, &lfd));
  fcx_net_to_wire(&ss, &uid->family, &uid->port, uid->addr);
  if (!start_root) {
    close(lfd);
    return FLAGCX_SUCCESS;
  }
  flagcx_result_t r = fcx_root_start(uid, lfd, err);
  if (r != FLAGCX_SUCCESS) close(lfd);
  return r;
}

flagcx_result_t fcx_parse_hostport(const char *s, fcx_uid_t *uid, fcx_err_t *err) {
  memset(uid, 0, sizeof *uid);
  uid->magic = UID_MAGIC;
  uid->version = FLAGCX_VERSION_CODE;
  char host[256];
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || (size_t)(colon - s) >= sizeof host)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "FLAGCX_ROOT='%s' is not host:port", s);
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [v6]:port */
    memmove(host, host + 1, strlen(host));
    host[strlen(host) - 1] = 0;
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port > 65535)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "FLAGCX_ROOT='%s': bad port", s);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0 || !res)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "FLAGCX_ROOT='%s': cannot resolve '%s': %s", s, host,
                      gai_strerror(rc));
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
  fcx_net_to_wire(&ss, &uid->family, &uid->port, uid->addr);
  /* All ranks derive the same nonce from the root string (FNV-1a), which keeps
   * jobs on different roots apart. */
  uint64_t h = 1469598103934665603ull;
  for (const char *p = s; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
  memcpy(uid->nonce, &h, 8);
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_listen_for_peers(fcx_rank_info_t *info, int *lfd, fcx_err_t *err) {
  struct sockaddr_storage ss;
  socklen_t len;
  FCX_TRY(fcx_net_local_addr(&ss, &len, err));
  FCX_TRY(fcx_net_listen(&ss, &len, FCX_MAX_RANKS, err, lfd));
  fcx_net_to_wire(&ss, &info->family, &info->port, info->addr);
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_root_exchange(const fcx_uid_t *uid, const fcx_rank_info_t *mine, fcx_rank_info_t *all,
                                  int timeout_ms, fcx_err_t *err) {
  if (uid->magic != UID_MAGIC)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "the unique id was not made by flagcx_get_unique_id");
  if (uid->version != FLAGCX_VERSION_CODE)
    return fcx_seterr(err, FLAGCX_ERR_INVALID_USAGE, "the unique id comes from FlagCX version %u, this is %d",
                      uid->version, FLAGCX_VERSION_CODE);
  struct sockaddr_storage ss;
  socklen_t len = fcx_net_from_wire(uid->family, uid->port, uid->addr, &ss);
  char where[80];
  fcx_net_addr_str(&ss, where, sizeof where);
  /* A little longer than the root's own limit, so that its message (which names
   * the missing ranks) arrives before this rank gives up on its own. */
  double deadline = fcx_now_ms() + timeout_ms + 2000;
  int fd;
  flagcx_result_t r = fcx_net_connect(&ss, len, deadline, &fd, err);
  if (r != FLAGCX_SUCCESS)
    return fcx_seterr(err, r, "bootstrap: rank %d cannot reach the root at %s: %s", mine->rank, where, err->msg);
  root_hello_t h;
  memset(&h, 0, sizeof h);
  h.magic = HELLO_MAGIC;
  h.version = FLAGCX_VERSION_CODE;
  memcpy(h.nonce, uid->nonce, 16);
  h.info = *mine;
  root_reply_t rep;
  r = fcx_net_send_all(fd, &h, sizeof h, deadline, err);
  if (r == FLAGCX_SUCCESS) r = fcx_net_recv_all(fd, &rep, sizeof rep, deadline, err);
  if (r == FLAGCX_SUCCESS && rep.status != FLAGCX_SUCCESS) {
    rep.msg[sizeof rep.msg - 1] = 0;
    r = fcx_seterr(err, (flagcx_result_t)rep.status, "%s", rep.msg);
  } else if (r == FLAGCX_SUCCESS && rep.nranks != mine->nranks) {
    r = fcx_seterr(err, FLAGCX_ERR_MISMATCH, "bootstrap: the root reports %d ranks, this rank expected %d",
                   rep.nranks, mine->nranks);
  } else if (r == FLAGCX_SUCCESS) {
    r = fcx_net_recv_all(fd, all, sizeof *all * (size_t)mine->nranks, deadline, err);
  } else {
    r = fcx_seterr(err, r, "bootstrap: rank %d, waiting for the root at %s: %s", mine->rank, where, err->msg);
  }
  close(fd);
  return r;
}

static flagcx_result_t hello_exchange(int fd, const fcx_uid_t *uid, int from, int to, double deadline,
                                      fcx_err_t *err) {
  peer_hello_t h = {.magic = HELLO_MAGIC, .version = FLAGCX_VERSION_CODE, .from = from, .to = to};
  memcpy(h.nonce, uid->nonce, 16);
  return fcx_net_send_all(fd, &h, sizeof h, deadline, err);
}

flagcx_result_t fcx_mesh_connect(const fcx_uid_t *uid, const fcx_rank_info_t *all, int rank, int nranks, int lfd,
                                 int timeout_ms, int *fds, fcx_err_t *err) {
  double deadline = fcx_now_ms() + timeout_ms;
  for (int p = 0; p < nranks; p++) fds[p] = -1;
  /* Lower ranks are dialled, higher ranks dial us: every listener exists before
   * the root hands out the table, so the connects cannot wait on an accept. */
  for (int p = 0; p < rank; p++) {
    struct sockaddr_storage ss;
    socklen_t len = fcx_net_from_wire(all[p].family, all[p].port, all[p].addr, &ss);
    flagcx_result_t r = fcx_net_connect(&ss, len, deadline, &fds[p], err);
    if (r == FLAGCX_SUCCESS) r = hello_exchange(fds[p], uid, rank, p, deadline, err);
    if (r != FLAGCX_SUCCESS) return fcx_seterr(err, r, "rank %d cannot connect to rank %d: %s", rank, p, err->msg);
  }
  int expected = nranks - 1 - rank;
  while (expected > 0) {
    int fd;
    flagcx_result_t r = fcx_net_accept(lfd, deadline, &fd, err);
    if (r != FLAGCX_SUCCESS)
      return fcx_seterr(err, r, "rank %d: %d higher rank(s) did not connect within %d ms", rank, expected,
                        timeout_ms);
    peer_hello_t h;
    if (fcx_net_recv_all(fd, &h, sizeof h, deadline, err) != FLAGCX_SUCCESS || h.magic != HELLO_MAGIC ||
        memcmp(h.nonce, uid->nonce, 16) != 0 || h.to != rank || h.from <= rank || h.from >= nranks ||
        fds[h.from] >= 0) {
      close(fd);
      continue;
    }
    fds[h.from] = fd;
    expected--;
  }
  return FLAGCX_SUCCESS;
}
