/* FlagCX internals shared by the files of src/comm (prefix fcx_, hidden symbols).
 * Errors travel as a flagcx_result_t plus a message in an fcx_err_t: the library
 * keeps NCCL's return-code ABI instead of FlagOS's flagos_status_t. */
#ifndef FLAGCX_FCX_H
#define FLAGCX_FCX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flagos/flagcx.h"
#include "fcx_transport.h"

#if defined(__GNUC__)
#define FCX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FCX_PRINTF(f, a)
#endif

#define FCX_TRY(expr)                                                                              \
  do {                                                                                             \
    flagcx_result_t fcx_try_r_ = (expr);                                                           \
    if (fcx_try_r_ != FLAGCX_SUCCESS) return fcx_try_r_;                                           \
  } while (0)

#define FCX_DEFAULT_TIMEOUT_MS 30000
#define FCX_MAX_RANKS 4096

/* ---- util.c ---- */
double fcx_now_ms(void); /* monotonic */
long fcx_env_long(const char *name, long dflt);
const char *fcx_env_str(const char *name); /* NULL when unset or empty */
const char *fcx_coll_name(int coll);
/* Thread-local error of calls without a communicator. */
fcx_err_t *fcx_thread_err(void);
void fcx_debug(const char *fmt, ...) FCX_PRINTF(1, 2); /* FLAGCX_DEBUG=1 */

/* ---- reduce.c: element-wise reductions on host memory ---- */
/* acc[i] = acc[i] op in[i]; AVG reduces as SUM (fcx_avg_finish divides). */
void fcx_reduce_into(flagcx_datatype_t dt, flagcx_red_op_t op, void *acc, const void *in, size_t n);
/* out[i] = a[i] op b[i]; out may alias a or b. */
void fcx_reduce3(flagcx_datatype_t dt, flagcx_red_op_t op, void *out, const void *a, const void *b, size_t n);
void fcx_avg_finish(flagcx_datatype_t dt, void *buf, size_t n, int nranks);
float fcx_f16_to_f32(uint16_t h);
uint16_t fcx_f32_to_f16(float f);
float fcx_bf16_to_f32(uint16_t h);
uint16_t fcx_f32_to_bf16(float f);

/* ---- tune.c: algorithm and chunk per collective and message size ---- */
#define FCX_MAX_RULES 16
typedef struct fcx_rule {
  uint64_t max_bytes; /* applies to messages <= max_bytes; UINT64_MAX: no bound */
  int32_t algo;       /* flagcx_algo_t, never AUTO */
  uint32_t pad;
  uint64_t chunk_bytes;
} fcx_rule_t;

typedef struct fcx_tune {
  int32_t nrules[FCX_NUM_COLLS];
  uint32_t pad;
  fcx_rule_t rules[FCX_NUM_COLLS][FCX_MAX_RULES];
  uint64_t staging_chunk_bytes;
  char source[192]; /* "built-in" or the file and table it came from */
} fcx_tune_t;

void fcx_tune_builtin(fcx_tune_t *t, int nranks);
/* Loads the table for (nranks, transport) from a JSON file. FLAGCX_ERR_UNAVAILABLE
 * (with t untouched) when the file does not exist or has no table for the transport. */
flagcx_result_t fcx_tune_load(fcx_tune_t *t, const char *path, int nranks, const char *transport, fcx_err_t *err);
/* Built-in table, then the file from FLAGCX_TUNE_FILE or ~/.cache/flagos/flagcx-tune.json. */
flagcx_result_t fcx_tune_default(fcx_tune_t *t, int nranks, const char *transport, fcx_err_t *err);
const fcx_rule_t *fcx_tune_pick(const fcx_tune_t *t, int coll, uint64_t bytes);
/* Whether `algo` is implemented for `coll`; when not, the fallback chosen. */
flagcx_algo_t fcx_algo_for(int coll, flagcx_algo_t algo);

/* ---- devices: one adaptor (vtable) per device kind ---- */
typedef struct fcx_dev fcx_dev_t;
typedef struct fcx_dev_ops {
  flagcx_device_kind_t kind;
  const char *name;
  flagcx_result_t (*open)(const flagcx_config_t *cfg, fcx_dev_t **dev, fcx_err_t *err);
  void (*close)(fcx_dev_t *dev);
  /* Host memory the device copies fastest (page-locked where the runtime has it). */
  flagcx_result_t (*host_alloc)(fcx_dev_t *dev, size_t bytes, void **ptr, fcx_err_t *err);
  void (*host_free)(fcx_dev_t *dev, void *ptr);
  flagcx_result_t (*mem_alloc)(fcx_dev_t *dev, size_t bytes, void **buf, fcx_err_t *err);
  flagcx_result_t (*mem_free)(fcx_dev_t *dev, void *buf, fcx_err_t *err);
  /* The host address of buf + off when buffers are host memory (zero copy); NULL otherwise. */
  void *(*host_view)(fcx_dev_t *dev, const void *buf, size_t off);
  /* Fails with a message when [off, off + bytes) is outside buf (where the runtime knows sizes). */
  flagcx_result_t (*check_range)(fcx_dev_t *dev, const void *buf, size_t off, size_t bytes, const char *what,
                                 fcx_err_t *err);
  /* Copies issued after this start after the work queued on `stream`. */
  flagcx_result_t (*stream_wait)(fcx_dev_t *dev, flagcx_stream_t stream, fcx_err_t *err);
  /* Asynchronous copies on the adaptor's own copy queue, executed in issue order. */
  flagcx_result_t (*d2h)(fcx_dev_t *dev, void *dst, const void *src, size_t src_off, size_t bytes, fcx_err_t *err);
  flagcx_result_t (*h2d)(fcx_dev_t *dev, void *dst, size_t dst_off, const void *src, size_t bytes, fcx_err_t *err);
  /* A marker after all copies issued so far; wait blocks until it is passed and frees it. */
  flagcx_result_t (*mark)(fcx_dev_t *dev, void **marker, fcx_err_t *err);
  flagcx_result_t (*wait)(fcx_dev_t *dev, void *marker, fcx_err_t *err);
  /* Waits for every copy issued (also after errors, so buffers can be freed). */
  flagcx_result_t (*drain)(fcx_dev_t *dev, fcx_err_t *err);
  flagcx_result_t (*stream_create)(fcx_dev_t *dev, flagcx_stream_t *stream, fcx_err_t *err);
  flagcx_result_t (*stream_destroy)(fcx_dev_t *dev, flagcx_stream_t stream, fcx_err_t *err);
  flagcx_result_t (*stream_sync)(fcx_dev_t *dev, flagcx_stream_t stream, fcx_err_t *err);
} fcx_dev_ops_t;

extern const fcx_dev_ops_t fcx_dev_host_ops;
extern const fcx_dev_ops_t fcx_dev_opencl_ops;
extern const fcx_dev_ops_t fcx_dev_cuda_ops;
const fcx_dev_ops_t *fcx_dev_ops_for(flagcx_device_kind_t kind);
/* CUDA adaptor internals the NCCL path needs: the device index. */
int fcx_dev_cuda_index(fcx_dev_t *dev);

/* ---- the communicator ---- */
enum { FCX_MODE_HOST = 0, FCX_MODE_STAGED = 1, FCX_MODE_NCCL = 2 };

typedef struct fcx_nccl fcx_nccl_t;

/* Scratch host memory of one communicator, grown on demand. */
typedef struct fcx_mem {
  void *ptr;
  size_t cap;
  bool pinned; /* from the device adaptor's host_alloc */
} fcx_mem_t;

#define FCX_STAGE_SLOTS 3

struct flagcx_comm {
  int rank, nranks;
  flagcx_config_t cfg;
  int mode;
  int timeout_ms;
  uint64_t id; /* same on all ranks; orders communicators inside a group */
  int32_t *kinds; /* device kind of every rank */
  fcx_transport_t *tp;
  const fcx_dev_ops_t *dev_ops;
  fcx_dev_t *dev;
  fcx_nccl_t *nccl;
  fcx_tune_t tune;
  flagcx_algo_t force_algo;
  size_t force_chunk;
  size_t stage_chunk;
  uint32_t seq; /* collectives issued; part of every message header */
  bool check_calls; /* NCCL path: verify call descriptors over the host transport first */
  fcx_err_t err;
  flagcx_result_t broken; /* first fatal error, FLAGCX_SUCCESS while healthy */
  bool peers_told;        /* post_abort already sent */
  char broken_msg[FCX_ERR_MSG - 128]; /* the first fatal error's message */
  bool finalized;
  atomic_int aborting;
  int wake[2]; /* pipe that wakes a call blocked in poll() when abort starts */
  pthread_mutex_t busy; /* held by the thread inside a call */
  fcx_mem_t scratch;
  fcx_mem_t stage[FCX_STAGE_SLOTS];
  fcx_mem_t stage_big;
  char describe[320];
};

/* Marks the communicator broken with the error now in c->err, tells the peers
 * (best effort) and returns the code. */
flagcx_result_t fcx_comm_fail(flagcx_comm_t c, flagcx_result_t code);
void *fcx_scratch(flagcx_comm_t c, size_t bytes, fcx_err_t *err);
void *fcx_mem_get(flagcx_comm_t c, fcx_mem_t *m, size_t bytes, bool pinned, fcx_err_t *err);
void fcx_mem_release(flagcx_comm_t c, fcx_mem_t *m);
/* One batch over the communicator's transport with its timeout and abort flag. */
flagcx_result_t fcx_xfer(flagcx_comm_t c, fcx_xop_t *ops, int nops);

/* ---- coll_host.c / algo_*.c: collectives over host memory ---- */
typedef struct fcx_cargs {
  int coll; /* FCX_COLL_* */
  flagcx_datatype_t dt;
  flagcx_red_op_t op;
  int root;
  const void *send;
  void *recv;
  /* AllReduce, Broadcast, Reduce, P2P: elements in the buffer. AllGather,
   * ReduceScatter, AllToAll: elements in one rank's block. */
  size_t count;
  /* Elements between consecutive rank blocks: of recv for AllGather and AllToAll,
   * of send for ReduceScatter and AllToAll. */
  size_t sstride, rstride;
  const size_t *scounts, *sdispls, *rcounts, *rdispls; /* AllToAllv */
  int peer;                                          /* P2P */
  fcx_desc_t desc;                                   /* what goes into every message header */
} fcx_cargs_t;

flagcx_result_t fcx_host_coll(flagcx_comm_t c, const fcx_cargs_t *a);
size_t fcx_coll_bytes(const fcx_cargs_t *a, int nranks); /* the size the tuning table is keyed on */
flagcx_result_t fcx_ring_allreduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_ring_broadcast(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_ring_reduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_ring_allgather(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_ring_reduce_scatter(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_tree_allreduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_tree_broadcast(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_tree_reduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_direct_allreduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_direct_broadcast(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_direct_reduce(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_direct_allgather(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_direct_reduce_scatter(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_direct_alltoall(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
flagcx_result_t fcx_direct_alltoallv(flagcx_comm_t c, const fcx_cargs_t *a, size_t chunk);
/* Chunk size in elements for a byte chunk (at least one element). */
size_t fcx_chunk_elems(size_t chunk_bytes, size_t esize);
/* Fills one batch entry. */
void fcx_op_set(fcx_xop_t *op, const fcx_desc_t *d, int peer, int send, const void *buf, size_t bytes);

/* ---- stage.c: device buffers through host staging ---- */
flagcx_result_t fcx_staged_coll(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream);
/* Sends and receives that progress together (one call, or a group's). Staged
 * communicators copy device buffers whole and cut messages by the staging chunk. */
flagcx_result_t fcx_p2p_batch(flagcx_comm_t c, const fcx_cargs_t *ops, int nops, flagcx_stream_t stream);

/* ---- nccl.c: all-CUDA communicators ---- */
bool fcx_nccl_available(void);
flagcx_result_t fcx_nccl_init(flagcx_comm_t c);
/* Whether NCCL can serve this call (types NCCL lacks go through staging). */
bool fcx_nccl_supports(const fcx_cargs_t *a);
flagcx_result_t fcx_nccl_coll(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream);
/* Watches a call's completion (the group end does this for grouped calls). */
void fcx_nccl_track(flagcx_comm_t c, flagcx_stream_t stream, const fcx_cargs_t *a);
flagcx_result_t fcx_nccl_group_start(fcx_err_t *err);
flagcx_result_t fcx_nccl_group_end(fcx_err_t *err);
flagcx_result_t fcx_nccl_check(flagcx_comm_t c); /* watchdog's verdict */
/* Waits until every tracked NCCL call completed (or failed, or the timeout passed). */
flagcx_result_t fcx_nccl_quiesce(flagcx_comm_t c);
void fcx_nccl_destroy(flagcx_comm_t c, bool abort);

/* ---- bootstrap.c ---- */
typedef struct fcx_rank_info {
  uint32_t magic, version;
  int32_t rank, nranks;
  int32_t kind, dev_index, nccl_ok, pid;
  int32_t transport; /* requested flagcx_transport_t */
  int32_t mpi_ok;    /* this rank can use the MPI plugin (launched by mpirun) */
  int32_t mpi_world_rank;
  int32_t timeout_ms;
  uint8_t family, pad[3];
  uint16_t port, pad2;
  uint8_t addr[16];
  char mpi_job[48];
  char host[64];
} fcx_rank_info_t;

#define FCX_INFO_MAGIC 0x46435849u /* "FCXI" */

typedef struct fcx_uid {
  uint32_t magic, version;
  uint8_t family, pad[3];
  uint16_t port, pad2;
  uint8_t addr[16];
  uint8_t nonce[16];
} fcx_uid_t;

flagcx_result_t fcx_uid_make(fcx_uid_t *uid, int port, bool start_root, fcx_err_t *err);
/* Runs the bootstrap service for `uid` in a detached thread until every rank got the table. */
flagcx_result_t fcx_root_start(const fcx_uid_t *uid, int listen_fd, fcx_err_t *err);
/* Opens this rank's listening socket and fills the address part of info. */
flagcx_result_t fcx_listen_for_peers(fcx_rank_info_t *info, int *listen_fd, fcx_err_t *err);
/* Sends info to the root of uid and receives every rank's info. */
flagcx_result_t fcx_root_exchange(const fcx_uid_t *uid, const fcx_rank_info_t *mine, fcx_rank_info_t *all,
                                  int timeout_ms, fcx_err_t *err);
/* Connects every pair of ranks; fds[p] is the socket to rank p (-1 for self). */
flagcx_result_t fcx_mesh_connect(const fcx_uid_t *uid, const fcx_rank_info_t *all, int rank, int nranks,
                                 int listen_fd, int timeout_ms, int *fds, fcx_err_t *err);
flagcx_result_t fcx_parse_hostport(const char *s, fcx_uid_t *uid, fcx_err_t *err);

/* ---- transport_tcp.c ---- */
flagcx_result_t fcx_tcp_create(int rank, int nranks, int *fds, fcx_transport_t **out, fcx_err_t *err);

/* ---- mpi_loader.c ---- */
const fcx_mpi_plugin_t *fcx_mpi_plugin(fcx_err_t *err); /* NULL with a message when unavailable */
bool fcx_launched_by_mpirun(void);

/* ---- comm.c ---- */
flagcx_result_t fcx_comm_enter(flagcx_comm_t c);
void fcx_comm_leave(flagcx_comm_t c);

/* ---- group.c ---- */
bool fcx_group_active(void);
flagcx_result_t fcx_group_enqueue(flagcx_comm_t c, const fcx_cargs_t *a, flagcx_stream_t stream);
/* Runs one call now (outside a group). */
flagcx_result_t fcx_run_call(flagcx_comm_t c, fcx_cargs_t *a, flagcx_stream_t stream);

#endif
