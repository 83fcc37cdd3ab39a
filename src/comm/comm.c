/* Communicator life cycle: bootstrap (TCP from a unique id, or MPI under
 * mpirun), choice of transport and path, the setup every rank takes from rank 0
 * (tuning table, overrides), finalize, destroy and abort. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "fcx.h"
#include "net.h"

/* What rank 0 decides for everyone. */
typedef struct setup_msg {
  fcx_tune_t tune;
  int32_t force_algo;
  int32_t check_calls;
  uint64_t force_chunk;
  uint64_t stage_chunk;
  uint64_t id;
} setup_msg_t;

flagcx_result_t fcx_comm_fail(flagcx_comm_t c, flagcx_result_t code) {
  if (c->broken == FLAGCX_SUCCESS) {
    c->broken = code;
    snprintf(c->broken_msg, sizeof c->broken_msg, "%.880s", c->err.msg);
    /* Peers waiting on this rank learn why at once instead of at their timeout. */
    if (c->tp && code != FLAGCX_ERR_ABORTED && !c->peers_told) {
      char reason[600];
      snprintf(reason, sizeof reason, "%.590s", c->err.msg);
      c->tp->ops->post_abort(c->tp, reason);
      c->peers_told = true;
    }
  }
  return code;
}

flagcx_result_t fcx_xfer(flagcx_comm_t c, fcx_xop_t *ops, int nops) {
  if (nops == 0) return FLAGCX_SUCCESS;
  return c->tp->ops->xfer(c->tp, ops, nops, &c->err);
}

void *fcx_mem_get(flagcx_comm_t c, fcx_mem_t *m, size_t bytes, bool pinned, fcx_err_t *err) {
  if (m->ptr && m->cap >= bytes && m->pinned == pinned) return m->ptr;
  fcx_mem_release(c, m);
  size_t cap = bytes < 4096 ? 4096 : bytes;
  void *p = NULL;
  if (pinned && c->dev_ops) {
    if (c->dev_ops->host_alloc(c->dev, cap, &p, err) != FLAGCX_SUCCESS) return NULL;
  } else {
    p = aligned_alloc(64, (cap + 63) & ~(size_t)63);
    if (!p) {
      fcx_seterr(err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes of scratch)", cap);
      return NULL;
    }
  }
  m->ptr = p;
  m->cap = cap;
  m->pinned = pinned;
  return p;
}

void fcx_mem_release(flagcx_comm_t c, fcx_mem_t *m) {
  if (!m->ptr) return;
  if (m->pinned && c->dev_ops) c->dev_ops->host_free(c->dev, m->ptr);
  else free(m->ptr);
  m->ptr = NULL;
  m->cap = 0;
}

void *fcx_scratch(flagcx_comm_t c, size_t bytes, fcx_err_t *err) { return fcx_mem_get(c, &c->scratch, bytes, false, err); }

static void free_comm(flagcx_comm_t c) {
  if (!c) return;
  fcx_nccl_destroy(c, atomic_load(&c->aborting) != 0);
  if (c->tp) c->tp->ops->destroy(c->tp);
  fcx_mem_release(c, &c->scratch);
  for (int i = 0; i < FCX_STAGE_SLOTS; i++) fcx_mem_release(c, &c->stage[i]);
  fcx_mem_release(c, &c->stage_big);
  if (c->dev && c->dev_ops) c->dev_ops->close(c->dev);
  if (c->wake[0] >= 0) close(c->wake[0]);
  if (c->wake[1] >= 0) close(c->wake[1]);
  pthread_mutex_destroy(&c->busy);
  free(c->kinds);
  free(c);
}

static flagcx_result_t comm_alloc(flagcx_comm_t *out, int nranks, int rank, const flagcx_config_t *config) {
  fcx_err_t *terr = fcx_thread_err();
  if (!out) return fcx_seterr(terr, FLAGCX_ERR_INVALID_ARGUMENT, "comm_init: comm is NULL");
  *out = NULL;
  if (nranks < 1 || nranks > FCX_MAX_RANKS)
    return fcx_seterr(terr, FLAGCX_ERR_INVALID_ARGUMENT, "comm_init: nranks %d outside 1..%d", nranks, FCX_MAX_RANKS);
  if (rank < 0 || rank >= nranks)
    return fcx_seterr(terr, FLAGCX_ERR_INVALID_ARGUMENT, "comm_init: rank %d outside 0..%d", rank, nranks - 1);
  if (config && config->size != sizeof(flagcx_config_t))
    return fcx_seterr(terr, FLAGCX_ERR_INVALID_ARGUMENT,
                      "comm_init: config.size is %zu, expected %zu (initialise it with flagcx_config_init)",
                      config->size, sizeof(flagcx_config_t));
  flagcx_comm_t c = calloc(1, sizeof *c);
  if (!c) return fcx_seterr(terr, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  c->wake[0] = c->wake[1] = -1;
  pthread_mutex_init(&c->busy, NULL);
  if (config) c->cfg = *config;
  else flagcx_config_init(&c->cfg);
  c->rank = rank;
  c->nranks = nranks;
  c->timeout_ms = c->cfg.timeout_ms > 0 ? c->cfg.timeout_ms
                                        : (int)fcx_env_long("FLAGCX_TIMEOUT_MS", FCX_DEFAULT_TIMEOUT_MS);
  if (c->timeout_ms <= 0) c->timeout_ms = FCX_DEFAULT_TIMEOUT_MS;
  if (c->cfg.transport == FLAGCX_TRANSPORT_AUTO) {
    const char *t = fcx_env_str("FLAGCX_TRANSPORT");
    if (t && strcmp(t, "tcp") == 0) c->cfg.transport = FLAGCX_TRANSPORT_TCP;
    else if (t && strcmp(t, "mpi") == 0) c->cfg.transport = FLAGCX_TRANSPORT_MPI;
    else if (t && strcmp(t, "auto") != 0) {
      free_comm(c);
      return fcx_seterr(terr, FLAGCX_ERR_INVALID_ARGUMENT, "FLAGCX_TRANSPORT=%s: expected tcp, mpi or auto", t);
    }
  }
  if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    free_comm(c);
    return fcx_seterr(terr, FLAGCX_ERR_SYSTEM, "pipe: %s", strerror(errno));
  }
  *out = c;
  return FLAGCX_SUCCESS;
}

/* Opens this rank's device and fills the rank's bootstrap record. A device that
 * fails to open is reported to every rank through the record, so that no rank
 * waits for one that has already given up. */
static void local_info(flagcx_comm_t c, fcx_rank_info_t *info, fcx_err_t *dev_err) {
  memset(info, 0, sizeof *info);
  info->magic = FCX_INFO_MAGIC;
  info->version = FLAGCX_VERSION_CODE;
  info->rank = c->rank;
  info->nranks = c->nranks;
  info->kind = c->cfg.device;
  info->dev_index = c->cfg.device_index;
  info->pid = (int32_t)getpid();
  info->transport = c->cfg.transport;
  info->timeout_ms = c->timeout_ms;
  info->mpi_world_rank = -1;
  gethostname(info->host, sizeof info->host - 1);
  c->dev_ops = fcx_dev_ops_for(c->cfg.device);
  dev_err->code = FLAGCX_SUCCESS;
  if (!c->dev_ops) {
    fcx_seterr(dev_err, FLAGCX_ERR_INVALID_ARGUMENT, "config.device %d is not a device kind", (int)c->cfg.device);
  } else if (c->dev_ops->open(&c->cfg, &c->dev, dev_err) != FLAGCX_SUCCESS) {
    c->dev = NULL;
  }
  if (dev_err->code != FLAGCX_SUCCESS) info->kind = -1;
  info->nccl_ok = c->cfg.device == FLAGCX_DEVICE_CUDA && c->cfg.use_nccl >= 0 && fcx_nccl_available();
}

static const char *transport_name(const fcx_transport_t *tp) { return tp->ops->name; }

/* Rank 0's tuning table and overrides go to every rank. */
static flagcx_result_t exchange_setup(flagcx_comm_t c) {
  setup_msg_t *m = calloc(1, sizeof *m);
  if (!m) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  flagcx_result_t r = FLAGCX_SUCCESS;
  if (c->rank == 0) {
    r = fcx_tune_default(&m->tune, c->nranks, transport_name(c->tp), &c->err);
    const char *algo = fcx_env_str("FLAGCX_ALGO");
    m->force_algo = algo ? flagcx_algo_from_name(algo) : FLAGCX_ALGO_AUTO;
    if (m->force_algo < 0) r = fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "FLAGCX_ALGO=%s: expected ring, tree, direct or auto", algo);
    long chunk = fcx_env_long("FLAGCX_CHUNK_BYTES", 0), stage = fcx_env_long("FLAGCX_STAGING_CHUNK_BYTES", 0);
    m->force_chunk = chunk > 0 ? (uint64_t)chunk : 0;
    m->stage_chunk = stage > 0 ? (uint64_t)stage : m->tune.staging_chunk_bytes;
    m->check_calls = (int32_t)fcx_env_long("FLAGCX_CHECK_CALLS", 0);
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
      id = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)fcx_now_ms();
    m->id = id;
  }
  /* Even when rank 0 failed it must send something, or the others would wait. */
  fcx_desc_t d = {.coll = FCX_COLL_SETUP, .root = 0, .count = sizeof *m};
  if (c->rank == 0 && r != FLAGCX_SUCCESS) d.count = 0;
  fcx_xop_t *ops = calloc((size_t)c->nranks, sizeof *ops);
  if (!ops) {
    free(m);
    return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  }
  int k = 0;
  if (c->rank == 0) {
    if (r == FLAGCX_SUCCESS)
      for (int p = 1; p < c->nranks; p++) fcx_op_set(&ops[k++], &d, p, 1, m, sizeof *m);
  } else {
    fcx_op_set(&ops[k++], &d, 0, 0, m, sizeof *m);
  }
  if (r == FLAGCX_SUCCESS) r = fcx_xfer(c, ops, k);
  free(ops);
  if (r == FLAGCX_SUCCESS) {
    c->tune = m->tune;
    c->force_algo = (flagcx_algo_t)m->force_algo;
    c->force_chunk = (size_t)m->force_chunk;
    c->stage_chunk = (size_t)m->stage_chunk;
    c->check_calls = m->check_calls != 0;
    c->id = m->id;
  }
  free(m);
  return r;
}

/* After every rank's record is known: validate, connect, choose the path. */
static flagcx_result_t comm_setup(flagcx_comm_t c, const fcx_rank_info_t *all, const fcx_uid_t *uid, int lfd,
                                  const fcx_mpi_plugin_t *mpi) {
  int n = c->nranks;
  for (int p = 0; p < n; p++) {
    if (all[p].kind < 0)
      return fcx_seterr(&c->err, p == c->rank ? c->err.code : FLAGCX_ERR_REMOTE,
                        "rank %d (%s, pid %d) could not open its device", p, all[p].host, all[p].pid);
    if (all[p].transport != all[0].transport)
      return fcx_seterr(&c->err, FLAGCX_ERR_MISMATCH, "ranks 0 and %d ask for different transports (%d, %d)", p,
                        all[0].transport, all[p].transport);
  }
  bool all_mpi = mpi != NULL;
  for (int p = 0; p < n && all_mpi; p++) all_mpi = all[p].mpi_ok && strcmp(all[p].mpi_job, all[0].mpi_job) == 0;
  bool use_mpi = all[0].transport == FLAGCX_TRANSPORT_MPI || (all[0].transport == FLAGCX_TRANSPORT_AUTO && all_mpi);
  if (use_mpi && !all_mpi)
    return fcx_seterr(&c->err, FLAGCX_ERR_UNAVAILABLE,
                      "the MPI transport needs every rank launched by one mpirun with libflagcx-mpi.so loadable");
  if (use_mpi) {
    int *wr = malloc(sizeof(int) * (size_t)n);
    if (!wr) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
    for (int p = 0; p < n; p++) wr[p] = all[p].mpi_world_rank;
    flagcx_result_t r = mpi->transport_create(wr, n, c->rank, &c->tp, &c->err);
    free(wr);
    FCX_TRY(r);
  } else {
    if (lfd < 0 || !uid) return fcx_seterr(&c->err, FLAGCX_ERR_INTERNAL, "TCP transport without a listener");
    int *fds = malloc(sizeof(int) * (size_t)n);
    if (!fds) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
    flagcx_result_t r = fcx_mesh_connect(uid, all, c->rank, n, lfd, c->timeout_ms, fds, &c->err);
    if (r == FLAGCX_SUCCESS) r = fcx_tcp_create(c->rank, n, fds, &c->tp, &c->err);
    if (r != FLAGCX_SUCCESS)
      for (int p = 0; p < n; p++)
        if (fds[p] >= 0) close(fds[p]);
    free(fds);
    FCX_TRY(r);
  }
  c->tp->timeout_ms = c->timeout_ms;
  c->tp->abort_flag = &c->aborting;
  c->tp->wake_fd = c->wake[0];
  c->kinds = malloc(sizeof(int32_t) * (size_t)n);
  if (!c->kinds) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  bool all_host = true, all_nccl = true;
  for (int p = 0; p < n; p++) {
    c->kinds[p] = all[p].kind;
    all_host = all_host && all[p].kind == FLAGCX_DEVICE_HOST;
    all_nccl = all_nccl && all[p].kind == FLAGCX_DEVICE_CUDA && all[p].nccl_ok;
  }
  c->mode = all_host ? FCX_MODE_HOST : all_nccl ? FCX_MODE_NCCL : FCX_MODE_STAGED;
  FCX_TRY(exchange_setup(c));
  if (c->mode == FCX_MODE_NCCL) FCX_TRY(fcx_nccl_init(c));
  int counts[FLAGCX_NUM_DEVICE_KINDS] = {0};
  for (int p = 0; p < n; p++) counts[c->kinds[p]]++;
  char kinds[96] = "";
  size_t off = 0;
  for (int k = 0; k < FLAGCX_NUM_DEVICE_KINDS; k++)
    if (counts[k])
      off += (size_t)snprintf(kinds + off, sizeof kinds - off, "%s%d %s", off ? " + " : "", counts[k],
                              flagcx_device_kind_name((flagcx_device_kind_t)k));
  snprintf(c->describe, sizeof c->describe, "rank %d of %d, path %s, transport %s, ranks: %s, tuning %.150s", c->rank, n,
           c->mode == FCX_MODE_HOST ? "host" : c->mode == FCX_MODE_NCCL ? "nccl" : "staged", transport_name(c->tp),
           kinds, c->tune.source);
  fcx_debug("%s", c->describe);
  return FLAGCX_SUCCESS;
}

static flagcx_result_t fail_init(flagcx_comm_t c, flagcx_result_t r) {
  fcx_err_t *terr = fcx_thread_err();
  if (terr != &c->err) *terr = c->err;
  terr->code = r;
  if (c->tp) c->tp->ops->post_abort(c->tp, c->err.msg);
  free_comm(c);
  return r;
}

static flagcx_result_t init_tcp(flagcx_comm_t c, const fcx_uid_t *uid, const fcx_mpi_plugin_t *mpi,
                                fcx_rank_info_t *mine) {
  int lfd = -1;
  fcx_rank_info_t *all = calloc((size_t)c->nranks, sizeof *all);
  if (!all) return fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  flagcx_result_t r = fcx_listen_for_peers(mine, &lfd, &c->err);
  if (r == FLAGCX_SUCCESS) r = fcx_root_exchange(uid, mine, all, c->timeout_ms, &c->err);
  if (r == FLAGCX_SUCCESS) r = comm_setup(c, all, uid, lfd, mpi);
  if (lfd >= 0) close(lfd);
  free(all);
  return r;
}

flagcx_result_t flagcx_get_unique_id(flagcx_unique_id_t *id) {
  fcx_err_t *terr = fcx_thread_err();
  if (!id) return fcx_seterr(terr, FLAGCX_ERR_INVALID_ARGUMENT, "get_unique_id: id is NULL");
  memset(id, 0, sizeof *id);
  fcx_uid_t uid;
  FCX_TRY(fcx_uid_make(&uid, 0, true, terr));
  memcpy(id->internal, &uid, sizeof uid);
  return FLAGCX_SUCCESS;
}

/* MPI is used when the launcher is mpirun and the transport allows it. */
static const fcx_mpi_plugin_t *mpi_if_launched(flagcx_comm_t c, fcx_rank_info_t *mine, fcx_err_t *err) {
  if (!fcx_launched_by_mpirun() || c->cfg.transport == FLAGCX_TRANSPORT_TCP) return NULL;
  const fcx_mpi_plugin_t *mpi = fcx_mpi_plugin(err);
  int wr = -1, ws = 0;
  if (mpi && mpi->init(&wr, &ws, mine->mpi_job, err) == FLAGCX_SUCCESS) {
    mine->mpi_ok = 1;
    mine->mpi_world_rank = wr;
    return mpi;
  }
  fcx_debug("MPI transport unavailable: %s", err->msg);
  return NULL;
}

flagcx_result_t flagcx_comm_init_rank(flagcx_comm_t *out, int nranks, flagcx_unique_id_t id, int rank,
                                      const flagcx_config_t *config) {
  flagcx_comm_t c;
  FCX_TRY(comm_alloc(&c, nranks, rank, config));
  fcx_rank_info_t mine;
  fcx_err_t dev_err, mpi_err;
  local_info(c, &mine, &dev_err);
  const fcx_mpi_plugin_t *mpi = mpi_if_launched(c, &mine, &mpi_err);
  fcx_uid_t uid;
  memcpy(&uid, id.internal, sizeof uid);
  flagcx_result_t r = init_tcp(c, &uid, mpi, &mine);
  if (dev_err.code != FLAGCX_SUCCESS) { /* this rank's own device failed: say why */
    c->err = dev_err;
    r = dev_err.code;
  }
  if (r != FLAGCX_SUCCESS) return fail_init(c, r);
  *out = c;
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_comm_init_env(flagcx_comm_t *out, const flagcx_config_t *config) {
  fcx_err_t *terr = fcx_thread_err();
  if (!out) return fcx_seterr(terr, FLAGCX_ERR_INVALID_ARGUMENT, "comm_init_env: comm is NULL");
  if (fcx_launched_by_mpirun()) {
    const fcx_mpi_plugin_t *mpi = fcx_mpi_plugin(terr);
    if (!mpi) return terr->code;
    int wr, ws;
    char job[48];
    FCX_TRY(mpi->init(&wr, &ws, job, terr));
    flagcx_comm_t c;
    FCX_TRY(comm_alloc(&c, ws, wr, config));
    int timeout = c->timeout_ms;
    if (c->cfg.transport == FLAGCX_TRANSPORT_TCP) {
      /* MPI only carries the unique id; the data path is FlagCX's TCP. */
      free_comm(c);
      flagcx_unique_id_t id;
      memset(&id, 0, sizeof id);
      flagcx_result_t r = wr == 0 ? flagcx_get_unique_id(&id) : FLAGCX_SUCCESS;
      int ok = r == FLAGCX_SUCCESS;
      /* Rank 0 failing still broadcasts (an empty id), so the others fail too instead of waiting. */
      FCX_TRY(mpi->world_bcast(&id, sizeof id, 0, timeout, terr));
      if (!ok) return r;
      return flagcx_comm_init_rank(out, ws, id, wr, config);
    }
    fcx_rank_info_t mine;
    fcx_err_t dev_err;
    local_info(c, &mine, &dev_err);
    mine.mpi_ok = 1;
    mine.mpi_world_rank = wr;
    memcpy(mine.mpi_job, job, sizeof mine.mpi_job);
    fcx_rank_info_t *all = calloc((size_t)ws, sizeof *all);
    if (!all) return fail_init(c, fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory"));
    flagcx_result_t r = mpi->world_allgather(&mine, all, sizeof mine, timeout, &c->err);
    if (r == FLAGCX_SUCCESS) r = comm_setup(c, all, NULL, -1, mpi);
    free(all);
    if (dev_err.code != FLAGCX_SUCCESS) {
      c->err = dev_err;
      r = dev_err.code;
    }
    if (r != FLAGCX_SUCCESS) return fail_init(c, r);
    *out = c;
    return FLAGCX_SUCCESS;
  }
  const char *root = fcx_env_str("FLAGCX_ROOT");
  long rank = fcx_env_long("FLAGCX_RANK", -1), nranks = fcx_env_long("FLAGCX_NRANKS", -1);
  if (!root || rank < 0 || nranks < 1)
    return fcx_seterr(terr, FLAGCX_ERR_INVALID_USAGE,
                      "comm_init_env: not launched by mpirun, and FLAGCX_RANK, FLAGCX_NRANKS and FLAGCX_ROOT=host:port "
                      "are not all set");
  fcx_uid_t uid;
  FCX_TRY(fcx_parse_hostport(root, &uid, terr));
  if (rank == 0) {
    /* Rank 0 serves the bootstrap on the given port, on every interface. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (uid.family == 6) {
      struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons(uid.port);
      s6->sin6_addr = in6addr_any;
      len = sizeof *s6;
    } else {
      struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
      s4->sin_family = AF_INET;
      s4->sin_port = htons(uid.port);
      s4->sin_addr.s_addr = htonl(INADDR_ANY);
      len = sizeof *s4;
    }
    int lfd;
    FCX_TRY(fcx_net_listen(&ss, &len, 1024, terr, &lfd));
    flagcx_result_t r = fcx_root_start(&uid, lfd, terr);
    if (r != FLAGCX_SUCCESS) {
      close(lfd);
      return r;
    }
  }
  flagcx_unique_id_t id;
  memset(&id, 0, sizeof id);
  memcpy(id.internal, &uid, sizeof uid);
  return flagcx_comm_init_rank(out, (int)nranks, id, (int)rank, config);
}

flagcx_result_t fcx_comm_enter(flagcx_comm_t c) {
  if (!c) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm is NULL");
  if (atomic_load(&c->aborting)) return fcx_seterr(&c->err, FLAGCX_ERR_ABORTED, "the communicator is being aborted");
  pthread_mutex_lock(&c->busy);
  if (c->nccl && c->broken == FLAGCX_SUCCESS) {
    flagcx_result_t r = fcx_nccl_check(c);
    if (r != FLAGCX_SUCCESS) fcx_comm_fail(c, r);
  }
  if (c->broken != FLAGCX_SUCCESS) {
    fcx_seterr(&c->err, FLAGCX_ERR_ABORTED, "the communicator is unusable after an earlier error: %s", c->broken_msg);
    pthread_mutex_unlock(&c->busy);
    return FLAGCX_ERR_ABORTED;
  }
  if (c->finalized) {
    pthread_mutex_unlock(&c->busy);
    return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_USAGE, "the communicator was finalized");
  }
  return FLAGCX_SUCCESS;
}

void fcx_comm_leave(flagcx_comm_t c) { pthread_mutex_unlock(&c->busy); }

flagcx_result_t flagcx_comm_finalize(flagcx_comm_t c) {
  FCX_TRY(fcx_comm_enter(c));
  /* Everything this rank enqueued on NCCL must be finished before it says so. */
  flagcx_result_t r = c->nccl ? fcx_nccl_quiesce(c) : FLAGCX_SUCCESS;
  fcx_xop_t *ops = calloc(2 * (size_t)c->nranks, sizeof *ops);
  if (!ops && r == FLAGCX_SUCCESS) r = fcx_seterr(&c->err, FLAGCX_ERR_OUT_OF_MEMORY, "out of memory");
  fcx_desc_t d = {.coll = FCX_COLL_FINALIZE, .root = -1, .seq = c->seq};
  int m = 0;
  for (int p = 0; p < c->nranks && ops; p++) {
    if (p == c->rank) continue;
    fcx_op_set(&ops[m++], &d, p, 1, NULL, 0);
    fcx_op_set(&ops[m++], &d, p, 0, NULL, 0);
  }
  if (r == FLAGCX_SUCCESS) r = fcx_xfer(c, ops, m);
  free(ops);
  if (r != FLAGCX_SUCCESS) fcx_comm_fail(c, r);
  else c->finalized = true;
  fcx_comm_leave(c);
  return r;
}

flagcx_result_t flagcx_comm_destroy(flagcx_comm_t c) {
  if (!c) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm_destroy: comm is NULL");
  pthread_mutex_lock(&c->busy);
  pthread_mutex_unlock(&c->busy);
  free_comm(c);
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_comm_abort(flagcx_comm_t c) {
  if (!c) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm_abort: comm is NULL");
  atomic_store(&c->aborting, 1);
  /* Wake a call blocked in poll(); NCCL's abort makes its kernels return. */
  char one = 1;
  if (write(c->wake[1], &one, 1) < 0) { /* the pipe is full: a wake-up is already pending */
  }
  pthread_mutex_lock(&c->busy);
  if (c->tp && !c->peers_told) {
    char reason[64];
    snprintf(reason, sizeof reason, "rank %d aborted its communicator", c->rank);
    c->tp->ops->post_abort(c->tp, reason);
  }
  pthread_mutex_unlock(&c->busy);
  free_comm(c);
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_comm_count(flagcx_comm_t c, int *count) {
  if (!c || !count) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm_count: NULL argument");
  *count = c->nranks;
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_comm_user_rank(flagcx_comm_t c, int *rank) {
  if (!c || !rank) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm_user_rank: NULL argument");
  *rank = c->rank;
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_comm_device(flagcx_comm_t c, flagcx_device_kind_t *kind, int *index) {
  if (!c) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm_device: comm is NULL");
  if (kind) *kind = c->cfg.device;
  if (index) *index = c->cfg.device_index;
  return FLAGCX_SUCCESS;
}

const char *flagcx_comm_describe(flagcx_comm_t c) { return c ? c->describe : "(no communicator)"; }

const char *flagcx_last_error(flagcx_comm_t c) { return c ? c->err.msg : fcx_thread_err()->msg; }

flagcx_result_t flagcx_comm_get_async_error(flagcx_comm_t c, flagcx_result_t *async_error) {
  if (!c || !async_error) return FLAGCX_ERR_INVALID_ARGUMENT;
  if (c->broken == FLAGCX_SUCCESS && c->nccl) {
    flagcx_result_t r = fcx_nccl_check(c);
    if (r != FLAGCX_SUCCESS) fcx_comm_fail(c, r);
  }
  *async_error = c->broken;
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_comm_set_algorithm(flagcx_comm_t c, flagcx_algo_t algo, size_t chunk_bytes) {
  if (!c) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm_set_algorithm: comm is NULL");
  if ((unsigned)algo > FLAGCX_ALGO_DIRECT)
    return fcx_seterr(&c->err, FLAGCX_ERR_INVALID_ARGUMENT, "comm_set_algorithm: algorithm %d unknown", (int)algo);
  c->force_algo = algo;
  c->force_chunk = chunk_bytes;
  return FLAGCX_SUCCESS;
}

flagcx_result_t flagcx_comm_set_staging_chunk(flagcx_comm_t c, size_t chunk_bytes) {
  if (!c) return fcx_seterr(fcx_thread_err(), FLAGCX_ERR_INVALID_ARGUMENT, "comm_set_staging_chunk: comm is NULL");
  c->stage_chunk = chunk_bytes ? chunk_bytes : (size_t)c->tune.staging_chunk_bytes;
  return FLAGCX_SUCCESS;
}
