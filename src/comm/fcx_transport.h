/* The host data path seen by the algorithms: batches of sends and receives that
 * progress together. Two implementations: TCP (transport_tcp.c) and MPI (the
 * libflagcx-mpi.so plugin, mpi/fcx_mpi.c). This header is the plugin ABI, so it
 * holds only plain C types; bump FCX_MPI_PLUGIN_ABI on any change. */
#ifndef FLAGCX_FCX_TRANSPORT_H
#define FLAGCX_FCX_TRANSPORT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "flagos/flagcx.h"

#define FCX_MPI_PLUGIN_ABI 1
#define FCX_ERR_MSG 1024

typedef struct fcx_err {
  flagcx_result_t code;
  char msg[FCX_ERR_MSG];
} fcx_err_t;

/* Sets the error and returns its code. */
flagcx_result_t fcx_seterr(fcx_err_t *e, flagcx_result_t code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Collective kinds as they travel in message headers. */
enum {
  FCX_COLL_NONE = 0,
  FCX_COLL_ALLREDUCE = 1,
  FCX_COLL_ALLGATHER = 2,
  FCX_COLL_REDUCE_SCATTER = 3,
  FCX_COLL_BROADCAST = 4,
  FCX_COLL_REDUCE = 5,
  FCX_COLL_ALLTOALL = 6,
  FCX_COLL_ALLTOALLV = 7,
  FCX_COLL_P2P = 8,
  FCX_COLL_SETUP = 9,    /* communicator setup after bootstrap */
  FCX_COLL_FINALIZE = 10,
  FCX_COLL_CHECK = 11,   /* call descriptors compared before an NCCL call */
  FCX_NUM_COLLS = 12,
  FCX_COLL_ABORT = 15    /* "I failed": the payload is the reason */
};

/* What a rank believes the current call is. The receiver of every message
 * compares the sender's descriptor with its own: a difference is a mismatch. */
typedef struct fcx_desc {
  uint8_t coll, dtype, op, algo;
  int32_t root;
  uint32_t seq;
  uint32_t pad;
  uint64_t count; /* 0 where counts legitimately differ per rank (AllToAllv) */
} fcx_desc_t;

/* One send or receive of a batch. */
typedef struct fcx_xop {
  fcx_desc_t desc;
  int peer;
  int send; /* 1 send, 0 receive */
  void *buf;
  size_t bytes;
  /* progress, owned by the transport */
  size_t moved;
  int state;
  int nreq;
  unsigned char hdr[32];
} fcx_xop_t;

typedef struct fcx_transport fcx_transport_t;

typedef struct fcx_transport_ops {
  const char *name;
  /* Runs every op of the batch to completion. Fails on the first error, with
   * FLAGCX_ERR_TIMEOUT when nothing moved for timeout_ms, FLAGCX_ERR_ABORTED when
   * *abort_flag became set (a write to wake_fd wakes a blocked wait), and
   * FLAGCX_ERR_MISMATCH when a message's descriptor or size is not the expected one. */
  flagcx_result_t (*xfer)(fcx_transport_t *t, fcx_xop_t *ops, int nops, fcx_err_t *err);
  /* Best effort: tells every peer that this rank failed (with reason) and breaks
   * the connections, so that peers waiting on this rank fail at once. */
  void (*post_abort)(fcx_transport_t *t, const char *reason);
  void (*destroy)(fcx_transport_t *t);
} fcx_transport_ops_t;

struct fcx_transport {
  const fcx_transport_ops_t *ops;
  int rank, nranks;
  int timeout_ms;
  atomic_int *abort_flag;
  int wake_fd; /* read end of the communicator's wake pipe, -1 when none */
};

/* Entry points of the MPI plugin (flagcx_mpi_plugin() returns this table). */
typedef struct fcx_mpi_plugin {
  int abi;
  /* Initialises MPI unless the program already did. job: an id shared by the
   * processes of one mpirun launch. */
  flagcx_result_t (*init)(int *world_rank, int *world_size, char job[48], fcx_err_t *err);
  /* Collectives over MPI_COMM_WORLD for bootstrap, bounded by timeout_ms. */
  flagcx_result_t (*world_allgather)(const void *in, void *out, size_t bytes, int timeout_ms, fcx_err_t *err);
  flagcx_result_t (*world_bcast)(void *buf, size_t bytes, int root, int timeout_ms, fcx_err_t *err);
  /* A transport over the given world ranks (world_ranks[i] is comm rank i). */
  flagcx_result_t (*transport_create)(const int *world_ranks, int nranks, int rank, fcx_transport_t **out,
                                      fcx_err_t *err);
} fcx_mpi_plugin_t;

typedef const fcx_mpi_plugin_t *(*fcx_mpi_plugin_fn)(void);

#endif
