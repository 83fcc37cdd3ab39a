/* Socket helpers of the TCP bootstrap and transport (net.c). */
#ifndef FLAGCX_NET_H
#define FLAGCX_NET_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "fcx.h"

/* The address peers should use to reach this process: the first interface that
 * FLAGCX_SOCKET_IFNAME allows (default: not loopback, not docker), else loopback. */
flagcx_result_t fcx_net_local_addr(struct sockaddr_storage *ss, socklen_t *len, fcx_err_t *err);
/* A non-blocking listening socket on ss's address (port taken from ss, 0: any). */
flagcx_result_t fcx_net_listen(struct sockaddr_storage *ss, socklen_t *len, int backlog, fcx_err_t *err, int *fd);
/* Connects within the deadline, retrying while the peer is not listening yet. */
flagcx_result_t fcx_net_connect(const struct sockaddr_storage *ss, socklen_t len, double deadline_ms, int *fd,
                                fcx_err_t *err);
/* Accepts one connection before the deadline. */
flagcx_result_t fcx_net_accept(int listen_fd, double deadline_ms, int *fd, fcx_err_t *err);
/* Whole reads and writes on non-blocking sockets, bounded by the deadline. */
flagcx_result_t fcx_net_send_all(int fd, const void *buf, size_t n, double deadline_ms, fcx_err_t *err);
flagcx_result_t fcx_net_recv_all(int fd, void *buf, size_t n, double deadline_ms, fcx_err_t *err);
/* Socket options of data connections: no Nagle, large buffers. */
void fcx_net_tune_socket(int fd);
void fcx_net_addr_str(const struct sockaddr_storage *ss, char *buf, size_t n);
void fcx_net_to_wire(const struct sockaddr_storage *ss, uint8_t *family, uint16_t *port, uint8_t addr[16]);
socklen_t fcx_net_from_wire(uint8_t family, uint16_t port, const uint8_t addr[16], struct sockaddr_storage *ss);

#endif
