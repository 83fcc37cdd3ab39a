/* Socket helpers: interface choice, listening, connecting and whole reads and
 * writes with deadlines. Sockets are non-blocking everywhere so that no call can
 * wait past its deadline. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int remaining_ms(double deadline) {
  double r = deadline - fcx_now_ms();
  if (r <= 0) return 0;
  return r > 1e9 ? 1000000000 : (int)r + 1;
}

void fcx_net_addr_str(const struct sockaddr_storage *ss, char *buf, size_t n) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
    port = ntohs(s4->sin_port);
    snprintf(buf, n, "%s:%d", ip, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    port = ntohs(s6->sin6_port);
    snprintf(buf, n, "[%s]:%d", ip, port);
  } else {
    snprintf(buf, n, "(no address)");
  }
}

void fcx_net_to_wire(const struct sockaddr_storage *ss, uint8_t *family, uint16_t *port, uint8_t addr[16]) {
  memset(addr, 0, 16);
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    *family = 6;
    *port = ntohs(s6->sin6_port);
    memcpy(addr, &s6->sin6_addr, 16);
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    *family = 4;
    *port = ntohs(s4->sin_port);
    memcpy(addr, &s4->sin_addr, 4);
  }
}

socklen_t fcx_net_from_wire(uint8_t family, uint16_t port, const uint8_t addr[16], struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (family == 6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    memcpy(&s6->sin6_addr, addr, 16);
    return sizeof *s6;
  }
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  s4->sin_family = AF_INET;
  s4->sin_port = htons(port);
  memcpy(&s4->sin_addr, addr, 4);
  return sizeof *s4;
}

/* FLAGCX_SOCKET_IFNAME: comma-separated name prefixes; a leading '^' turns the list
 * into exclusions. */
static bool ifname_allowed(const char *name, const char *spec) {
  bool exclude = false;
  if (spec[0] == '^') {
    exclude = true;
    spec++;
  }
  bool match = false;
  while (*spec) {
    const char *comma = strchr(spec, ',');
    size_t len = comma ? (size_t)(comma - spec) : strlen(spec);
    if (len > 0 && strncmp(name, spec, len) == 0) match = true;
    spec += len + (comma ? 1 : 0);
  }
  return exclude ? !match : match;
}

flagcx_result_t fcx_net_local_addr(struct sockaddr_storage *ss, socklen_t *len, fcx_err_t *err) {
  const char *spec = fcx_env_str("FLAGCX_SOCKET_IFNAME");
  bool user_spec = spec != NULL;
  if (!spec) spec = "^lo,docker,virbr";
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) != 0)
    return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "cannot list network interfaces: %s", strerror(errno));
  const struct ifaddrs *best = NULL;
  /* IPv4 first, then IPv6: most clusters route IPv4 between their hosts. */
  for (int pass = 0; pass < 2 && !best; pass++) {
    int fam = pass == 0 ? AF_INET : AF_INET6;
    for (const struct ifaddrs *i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != fam || !(i->ifa_flags & IFF_UP)) continue;
      if (fam == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr)) continue;
      if (!ifname_allowed(i->ifa_name, spec)) continue;
      best = i;
      break;
    }
  }
  memset(ss, 0, sizeof *ss);
  if (best) {
    *len = best->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    memcpy(ss, best->ifa_addr, *len);
    fcx_debug("bootstrap interface %s", best->ifa_name);
  } else if (user_spec) {
    freeifaddrs(ifs);
    return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "no network interface matches FLAGCX_SOCKET_IFNAME=%s",
                      spec);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof *s4;
  }
  freeifaddrs(ifs);
  return FLAGCX_SUCCESS;
}

static flagcx_result_t set_nonblock(int fd, fcx_err_t *err) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "fcntl(O_NONBLOCK): %s", strerror(errno));
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_net_listen(struct sockaddr_storage *ss, socklen_t *len, int backlog, fcx_err_t *err, int *out) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "socket(): %s", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  char where[80];
  fcx_net_addr_str(ss, where, sizeof where);
  if (bind(fd, (struct sockaddr *)ss, *len) != 0 || listen(fd, backlog) != 0) {
    int e = errno;
    close(fd);
    return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "cannot listen on %s: %s", where, strerror(e));
  }
  if (getsockname(fd, (struct sockaddr *)ss, len) != 0) {
    int e = errno;
    close(fd);
    return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "getsockname: %s", strerror(e));
  }
  *out = fd;
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_net_connect(const struct sockaddr_storage *ss, socklen_t len, double deadline, int *out,
                                fcx_err_t *err) {
  char where[80];
  fcx_net_addr_str(ss, where, sizeof where);
  int last = 0;
  for (;;) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "socket(): %s", strerror(errno));
    int rc = connect(fd, (const struct sockaddr *)ss, len);
    if (rc != 0 && errno == EINPROGRESS) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      int n = poll(&p, 1, remaining_ms(deadline));
      if (n == 1) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        rc = soerr ? -1 : 0;
        errno = soerr ? soerr : ETIMEDOUT;
      } else {
        rc = -1;
        errno = ETIMEDOUT;
      }
    }
    if (rc == 0) {
      fcx_net_tune_socket(fd);
      *out = fd;
      return FLAGCX_SUCCESS;
    }
    last = errno;
    close(fd);
    if (fcx_now_ms() >= deadline) break;
    if (last != ECONNREFUSED && last != ETIMEDOUT && last != EAGAIN && last != ECONNRESET && last != EINTR) break;
    usleep(20000); /* the peer's listener may not exist yet */
  }
  flagcx_result_t code = last == ETIMEDOUT ? FLAGCX_ERR_TIMEOUT
                         : last == ECONNREFUSED || last == ECONNRESET ? FLAGCX_ERR_REMOTE
                                                                        : FLAGCX_ERR_SYSTEM;
  return fcx_seterr(err, code, "cannot connect to %s: %s", where, strerror(last));
}

flagcx_result_t fcx_net_accept(int lfd, double deadline, int *out, fcx_err_t *err) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      fcx_net_tune_socket(fd);
      *out = fd;
      return FLAGCX_SUCCESS;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
      return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "accept: %s", strerror(errno));
    int ms = remaining_ms(deadline);
    if (ms == 0) return fcx_seterr(err, FLAGCX_ERR_TIMEOUT, "no connection arrived in time");
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    poll(&p, 1, ms);
  }
}

flagcx_result_t fcx_net_send_all(int fd, const void *buf, size_t n, double deadline, fcx_err_t *err) {
  const char *p = buf;
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k > 0) {
      p += k;
      n -= (size_t)k;
      continue;
    }
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      return fcx_seterr(err, FLAGCX_ERR_REMOTE, "send: %s", strerror(errno));
    int ms = remaining_ms(deadline);
    if (ms == 0) return fcx_seterr(err, FLAGCX_ERR_TIMEOUT, "send timed out");
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    poll(&pf, 1, ms);
  }
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_net_recv_all(int fd, void *buf, size_t n, double deadline, fcx_err_t *err) {
  char *p = buf;
  while (n > 0) {
    ssize_t k = recv(fd, p, n, 0);
    if (k > 0) {
      p += k;
      n -= (size_t)k;
      continue;
    }
    if (k == 0) return fcx_seterr(err, FLAGCX_ERR_REMOTE, "connection closed by the peer");
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      return fcx_seterr(err, FLAGCX_ERR_REMOTE, "recv: %s", strerror(errno));
    int ms = remaining_ms(deadline);
    if (ms == 0) return fcx_seterr(err, FLAGCX_ERR_TIMEOUT, "receive timed out");
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    poll(&pf, 1, ms);
  }
  return FLAGCX_SUCCESS;
}

void fcx_net_tune_socket(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* Larger buffers let a ring step's send and receive both stream without the
   * poll loop waking for every 64 KiB. */
  int sz = (int)fcx_env_long("FLAGCX_SOCKET_BUFFER", 4 << 20);
  if (sz > 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  }
  (void)set_nonblock(fd, NULL);
}
