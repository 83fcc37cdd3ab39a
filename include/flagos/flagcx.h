/* FlagCX: FlagOS's unified collective communication library.
 *
 * One API, close to NCCL's so that code moves between them by renaming, over:
 *   - NCCL for communicators whose ranks all own CUDA devices (loaded at run time),
 *   - host algorithms (ring, tree, direct) over FlagCX's own TCP transport, or over
 *     MPI when the program was launched by mpirun,
 *   - host staging for communicators whose ranks own different device kinds
 *     (CUDA, OpenCL, CPU): device buffers are copied through pinned host memory in
 *     chunks, the copies of one chunk overlapping the network step of another.
 *
 * Buffers. A buffer argument is what the communicator's device kind uses:
 *   HOST   a pointer to host memory;
 *   CUDA   a CUDA device pointer (pointer arithmetic works as in NCCL);
 *   OPENCL a cl_mem handle cast to void *; the data starts at offset 0 of that
 *          buffer (use clCreateSubBuffer for an offset). "In place" means the same
 *          handle for send and receive; see each call for where the data lies then.
 *
 * Ordering. Calls take a flagcx_stream_t: a cudaStream_t for CUDA, a
 * cl_command_queue for OpenCL, NULL for host buffers.
 *   - On an all-CUDA communicator served by NCCL, calls are enqueued on the stream
 *     and return before the data moved, exactly like NCCL.
 *   - Everywhere else (host buffers, OpenCL, mixed communicators) a call first waits
 *     for the work already queued on the stream, then completes the whole
 *     collective before it returns: when it returns FLAGCX_SUCCESS the receive
 *     buffer holds the result, and work queued on the stream afterwards sees it.
 *
 * Errors. Every call returns a flagcx_result_t; flagcx_last_error() gives the
 * message of the last failure (naming the call, the peer rank and the cause).
 * A communicator that saw a network, timeout or mismatch error is broken: later
 * calls on it fail with FLAGCX_ERR_ABORTED and it can only be destroyed or aborted.
 * No call waits forever for a peer: a call that makes no progress for the timeout
 * (FLAGCX_TIMEOUT_MS, default 30000) fails with FLAGCX_ERR_TIMEOUT.
 *
 * Threads. A communicator is used by one thread at a time; flagcx_comm_abort() may
 * be called from any thread, also while another thread is blocked in a call on it.
 * Group state (flagcx_group_start/end) is per thread.
 *
 * docs/flagcx.md describes algorithms, tuning tables, fault semantics and the
 * environment variables. */
#ifndef FLAGOS_FLAGCX_H
#define FLAGOS_FLAGCX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FLAGCX_API __attribute__((visibility("default")))
#else
#define FLAGCX_API
#endif

#define FLAGCX_VERSION_MAJOR 0
#define FLAGCX_VERSION_MINOR 1
#define FLAGCX_VERSION_PATCH 0
#define FLAGCX_VERSION_CODE (FLAGCX_VERSION_MAJOR * 10000 + FLAGCX_VERSION_MINOR * 100 + FLAGCX_VERSION_PATCH)

typedef enum flagcx_result {
  FLAGCX_SUCCESS = 0,
  FLAGCX_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a bad rank, count, type or option */
  FLAGCX_ERR_INVALID_USAGE = 2,    /* calls in the wrong order (group nesting, use after finalize) */
  FLAGCX_ERR_SYSTEM = 3,           /* the operating system refused (sockets, threads, memory maps) */
  FLAGCX_ERR_REMOTE = 4,           /* a peer closed its connections, died or reported an error */
  FLAGCX_ERR_TIMEOUT = 5,          /* no progress for the communicator's timeout */
  FLAGCX_ERR_MISMATCH = 6,         /* ranks made different calls (collective, count, type, op, root) */
  FLAGCX_ERR_UNAVAILABLE = 7,      /* a library or device is missing (NCCL, CUDA, OpenCL, MPI) */
  FLAGCX_ERR_DEVICE = 8,           /* a device runtime (CUDA, OpenCL, NCCL) returned an error */
  FLAGCX_ERR_ABORTED = 9,          /* the communicator was aborted or broken by an earlier error */
  FLAGCX_ERR_OUT_OF_MEMORY = 10,
  FLAGCX_ERR_INTERNAL = 11,        /* a bug in FlagCX */
  FLAGCX_NUM_RESULTS = 12
} flagcx_result_t;

typedef enum flagcx_datatype {
  FLAGCX_INT8 = 0,
  FLAGCX_UINT8 = 1,
  FLAGCX_INT16 = 2,
  FLAGCX_INT32 = 3,
  FLAGCX_UINT32 = 4,
  FLAGCX_INT64 = 5,
  FLAGCX_UINT64 = 6,
  FLAGCX_FLOAT16 = 7,
  FLAGCX_BFLOAT16 = 8,
  FLAGCX_FLOAT32 = 9,
  FLAGCX_FLOAT64 = 10,
  FLAGCX_NUM_DATATYPES = 11
} flagcx_datatype_t;

/* Integer sums and products wrap around (two's complement); integer AVG is the sum
 * divided by the number of ranks, truncated toward zero. float16 and bfloat16 are
 * reduced in float32 and rounded to nearest even after every step. */
typedef enum flagcx_red_op {
  FLAGCX_SUM = 0,
  FLAGCX_PROD = 1,
  FLAGCX_MIN = 2,
  FLAGCX_MAX = 3,
  FLAGCX_AVG = 4,
  FLAGCX_NUM_OPS = 5
} flagcx_red_op_t;

typedef enum flagcx_device_kind {
  FLAGCX_DEVICE_HOST = 0,
  FLAGCX_DEVICE_CUDA = 1,
  FLAGCX_DEVICE_OPENCL = 2,
  FLAGCX_NUM_DEVICE_KINDS = 3
} flagcx_device_kind_t;

typedef enum flagcx_transport {
  FLAGCX_TRANSPORT_AUTO = 0, /* MPI when launched by mpirun and the MPI plugin loads, else TCP */
  FLAGCX_TRANSPORT_TCP = 1,
  FLAGCX_TRANSPORT_MPI = 2
} flagcx_transport_t;

typedef enum flagcx_algo {
  FLAGCX_ALGO_AUTO = 0, /* from the tuning table */
  FLAGCX_ALGO_RING = 1,
  FLAGCX_ALGO_TREE = 2,
  FLAGCX_ALGO_DIRECT = 3
} flagcx_algo_t;

/* A cudaStream_t, a cl_command_queue, or NULL for host buffers. */
typedef void *flagcx_stream_t;

typedef struct flagcx_comm *flagcx_comm_t;

#define FLAGCX_UNIQUE_ID_BYTES 128
/* Made by flagcx_get_unique_id on one process and passed to every rank (by MPI,
 * a file, a pipe...). It holds the address of a bootstrap service run by the
 * process that made it, which must stay alive until all ranks have initialised.
 * One id serves one communicator. All ranks must run the same FlagCX version on
 * hosts of the same byte order. */
typedef struct flagcx_unique_id {
  char internal[FLAGCX_UNIQUE_ID_BYTES];
} flagcx_unique_id_t;

/* Options of one rank. Initialise with flagcx_config_init(); zeroed fields mean
 * "default". Ranks may differ in device fields; the other fields must agree. */
typedef struct flagcx_config {
  size_t size;                 /* sizeof(flagcx_config_t), set by flagcx_config_init */
  flagcx_device_kind_t device;  /* what this rank's buffers are */
  int device_index;            /* CUDA device ordinal; OpenCL device index when cl_context is NULL */
  void *cl_context;            /* OpenCL: the cl_context the buffers live in; NULL lets FlagCX pick */
  void *cl_device;             /* OpenCL: the cl_device_id to copy through (with cl_context) */
  int timeout_ms;              /* 0: FLAGCX_TIMEOUT_MS or 30000 */
  flagcx_transport_t transport; /* host data path; AUTO: FLAGCX_TRANSPORT or the launcher */
  int use_nccl;                /* all-CUDA communicators: 1 use NCCL (default), -1 never */
} flagcx_config_t;

FLAGCX_API void flagcx_config_init(flagcx_config_t *config);

/* ---- errors ---- */
FLAGCX_API const char *flagcx_get_error_string(flagcx_result_t result);
/* The message of the last error on `comm`, or of the calling thread's last failed
 * call that had no communicator (init, group end) when comm is NULL. Never NULL;
 * "" when there was none. Valid until the next call on the same comm or thread. */
FLAGCX_API const char *flagcx_last_error(flagcx_comm_t comm);
/* The error that broke the communicator, FLAGCX_SUCCESS while it is healthy. */
FLAGCX_API flagcx_result_t flagcx_comm_get_async_error(flagcx_comm_t comm, flagcx_result_t *async_error);
FLAGCX_API flagcx_result_t flagcx_get_version(int *version);

/* ---- communicators ---- */
FLAGCX_API flagcx_result_t flagcx_get_unique_id(flagcx_unique_id_t *unique_id);
/* Collective over the nranks ranks: each calls it once with its own rank.
 * config may be NULL (host buffers, defaults). */
FLAGCX_API flagcx_result_t flagcx_comm_init_rank(flagcx_comm_t *comm, int nranks, flagcx_unique_id_t unique_id,
                                                int rank, const flagcx_config_t *config);
/* A communicator over all processes of the launch, found from the environment:
 *   - under mpirun (OMPI_COMM_WORLD_RANK/SIZE): MPI_COMM_WORLD's ranks, bootstrapped
 *     through MPI (FlagCX initialises MPI if the program has not);
 *   - otherwise FLAGCX_RANK, FLAGCX_NRANKS and FLAGCX_ROOT=host:port, where rank 0
 *     runs the bootstrap service on that port. */
FLAGCX_API flagcx_result_t flagcx_comm_init_env(flagcx_comm_t *comm, const flagcx_config_t *config);
/* Collective: waits until every rank has finished its calls, so that destroying
 * afterwards never cuts a peer short. Later calls fail with INVALID_USAGE. */
FLAGCX_API flagcx_result_t flagcx_comm_finalize(flagcx_comm_t comm);
/* Frees the communicator. Local; peers still waiting on this rank get an error. */
FLAGCX_API flagcx_result_t flagcx_comm_destroy(flagcx_comm_t comm);
/* Stops every call in progress on the communicator (they return
 * FLAGCX_ERR_ABORTED), closes its connections and frees it. Local. */
FLAGCX_API flagcx_result_t flagcx_comm_abort(flagcx_comm_t comm);
FLAGCX_API flagcx_result_t flagcx_comm_count(flagcx_comm_t comm, int *count);
FLAGCX_API flagcx_result_t flagcx_comm_user_rank(flagcx_comm_t comm, int *rank);
FLAGCX_API flagcx_result_t flagcx_comm_device(flagcx_comm_t comm, flagcx_device_kind_t *kind, int *index);
/* A one-line description: path (nccl, host, staged), transport, device kinds. */
FLAGCX_API const char *flagcx_comm_describe(flagcx_comm_t comm);
/* Forces an algorithm and chunk size for the host paths (AUTO, 0 restores the
 * tuning table). Every rank must make the same call at the same point. */
FLAGCX_API flagcx_result_t flagcx_comm_set_algorithm(flagcx_comm_t comm, flagcx_algo_t algo, size_t chunk_bytes);
/* Sets the staging chunk of mixed communicators (0: the table's). Same call on all ranks. */
FLAGCX_API flagcx_result_t flagcx_comm_set_staging_chunk(flagcx_comm_t comm, size_t chunk_bytes);

/* ---- collectives (NCCL's argument order) ---- */
FLAGCX_API flagcx_result_t flagcx_all_reduce(const void *sendbuf, void *recvbuf, size_t count, flagcx_datatype_t dtype,
                                            flagcx_red_op_t op, flagcx_comm_t comm, flagcx_stream_t stream);
/* recvbuf holds nranks * sendcount elements, rank r's at r * sendcount. In place:
 * sendbuf == recvbuf + rank * sendcount (OpenCL: the same handle). */
FLAGCX_API flagcx_result_t flagcx_all_gather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                            flagcx_datatype_t dtype, flagcx_comm_t comm, flagcx_stream_t stream);
/* sendbuf holds nranks * recvcount elements. In place: recvbuf == sendbuf + rank *
 * recvcount (OpenCL: the same handle, the result at rank * recvcount). */
FLAGCX_API flagcx_result_t flagcx_reduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                                flagcx_datatype_t dtype, flagcx_red_op_t op, flagcx_comm_t comm,
                                                flagcx_stream_t stream);
/* sendbuf is read on the root only. */
FLAGCX_API flagcx_result_t flagcx_broadcast(const void *sendbuf, void *recvbuf, size_t count, flagcx_datatype_t dtype,
                                           int root, flagcx_comm_t comm, flagcx_stream_t stream);
/* recvbuf is written on the root only. */
FLAGCX_API flagcx_result_t flagcx_reduce(const void *sendbuf, void *recvbuf, size_t count, flagcx_datatype_t dtype,
                                        flagcx_red_op_t op, int root, flagcx_comm_t comm, flagcx_stream_t stream);
/* count elements to and from each peer; both buffers hold nranks * count. Not in place. */
FLAGCX_API flagcx_result_t flagcx_all_to_all(const void *sendbuf, void *recvbuf, size_t count,
                                            flagcx_datatype_t dtype, flagcx_comm_t comm, flagcx_stream_t stream);
/* Counts and displacements in elements, one per rank. Not in place. */
FLAGCX_API flagcx_result_t flagcx_all_to_allv(const void *sendbuf, const size_t *sendcounts, const size_t *sdispls,
                                             void *recvbuf, const size_t *recvcounts, const size_t *rdispls,
                                             flagcx_datatype_t dtype, flagcx_comm_t comm, flagcx_stream_t stream);
/* Point to point. Outside a group a send returns once its data left (host paths:
 * once the peer started receiving); two ranks sending to each other must put the
 * sends and receives in one group. */
FLAGCX_API flagcx_result_t flagcx_send(const void *sendbuf, size_t count, flagcx_datatype_t dtype, int peer,
                                      flagcx_comm_t comm, flagcx_stream_t stream);
FLAGCX_API flagcx_result_t flagcx_recv(void *recvbuf, size_t count, flagcx_datatype_t dtype, int peer,
                                      flagcx_comm_t comm, flagcx_stream_t stream);
/* Calls between start and end are queued and run at the end: sends and receives
 * of one communicator progress together, collectives run in the order given.
 * Groups nest; the outermost end runs them and returns the first error. */
FLAGCX_API flagcx_result_t flagcx_group_start(void);
FLAGCX_API flagcx_result_t flagcx_group_end(void);

/* ---- device memory and streams of the communicator's device kind ----
 * For tools and tests that should not link CUDA or OpenCL themselves. */
FLAGCX_API flagcx_result_t flagcx_mem_alloc(flagcx_comm_t comm, size_t bytes, void **buf);
FLAGCX_API flagcx_result_t flagcx_mem_free(flagcx_comm_t comm, void *buf);
/* Synchronous copies between host memory and a buffer of the communicator's kind. */
FLAGCX_API flagcx_result_t flagcx_mem_write(flagcx_comm_t comm, void *dst, size_t dst_offset, const void *src,
                                           size_t bytes);
FLAGCX_API flagcx_result_t flagcx_mem_read(flagcx_comm_t comm, void *dst, const void *src, size_t src_offset,
                                          size_t bytes);
FLAGCX_API flagcx_result_t flagcx_stream_create(flagcx_comm_t comm, flagcx_stream_t *stream);
FLAGCX_API flagcx_result_t flagcx_stream_destroy(flagcx_comm_t comm, flagcx_stream_t stream);
FLAGCX_API flagcx_result_t flagcx_stream_synchronize(flagcx_comm_t comm, flagcx_stream_t stream);

/* ---- names, for tools and messages ---- */
FLAGCX_API size_t flagcx_datatype_size(flagcx_datatype_t dtype);             /* 0 when unknown */
FLAGCX_API const char *flagcx_datatype_name(flagcx_datatype_t dtype);        /* "float32", "bfloat16"... */
FLAGCX_API const char *flagcx_red_op_name(flagcx_red_op_t op);               /* "sum", "avg"... */
FLAGCX_API const char *flagcx_device_kind_name(flagcx_device_kind_t kind);   /* "host", "cuda", "opencl" */
FLAGCX_API const char *flagcx_algo_name(flagcx_algo_t algo);                 /* "auto", "ring"... */
/* Inverses of the above; return -1 when the name is unknown. */
FLAGCX_API int flagcx_datatype_from_name(const char *name);
FLAGCX_API int flagcx_red_op_from_name(const char *name);
FLAGCX_API int flagcx_device_kind_from_name(const char *name);
FLAGCX_API int flagcx_algo_from_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif
