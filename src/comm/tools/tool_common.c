/* Launch and parsing helpers of the FlagCX tools and tests. */
#include "tool_common.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double tool_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int tool_under_mpirun(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL; }

int tool_parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0) return -1;
  switch (*end) {
  case 'k': case 'K': v *= 1024.0; end++; break;
  case 'm': case 'M': v *= 1024.0 * 1024.0; end++; break;
  case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; end++; break;
  default: break;
  }
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return -1;
  *out = (size_t)v;
  return 0;
}

int tool_config(const char *devices, int rank, int local_rank, flagcx_config_t *cfg) {
  flagcx_config_init(cfg);
  const char *list = devices && *devices ? devices : "host";
  int n = 1;
  for (const char *p = list; *p; p++) n += *p == ',';
  int pick = rank % n;
  const char *p = list;
  for (int i = 0; i < pick; i++) p = strchr(p, ',') + 1;
  char name[32];
  size_t len = strcspn(p, ",");
  if (len >= sizeof name) return -1;
  memcpy(name, p, len);
  name[len] = 0;
  int kind = flagcx_device_kind_from_name(name);
  if (kind < 0) return -1;
  cfg->device = (flagcx_device_kind_t)kind;
  /* One GPU per local rank; OpenCL ranks share the default device. */
  cfg->device_index = kind == FLAGCX_DEVICE_CUDA ? local_rank : 0;
  return 0;
}

static int run_rank(const tool_launch_t *l, flagcx_comm_t comm, int rank, int nranks, tool_body_fn body, void *ctx) {
  int rc = body(comm, rank, nranks, ctx);
  if (rc == 0) {
    flagcx_result_t r = flagcx_comm_finalize(comm);
    if (r != FLAGCX_SUCCESS) {
      fprintf(stderr, "rank %d: comm_finalize: %s\n", rank, flagcx_last_error(comm));
      rc = 1;
    }
  }
  flagcx_comm_destroy(comm);
  (void)l;
  return rc;
}

static int local_rank_from_env(int rank) {
  const char *s = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (!s) s = getenv("FLAGCX_LOCAL_RANK");
  return s ? atoi(s) : rank;
}

int tool_run(const tool_launch_t *l, tool_body_fn body, void *ctx) {
  flagcx_config_t cfg;
  if (tool_under_mpirun() || (getenv("FLAGCX_RANK") && getenv("FLAGCX_NRANKS"))) {
    int rank = atoi(getenv("OMPI_COMM_WORLD_RANK") ? getenv("OMPI_COMM_WORLD_RANK")
                    : getenv("PMI_RANK")           ? getenv("PMI_RANK")
                                                   : getenv("FLAGCX_RANK"));
    if (tool_config(l->devices, rank, local_rank_from_env(rank), &cfg) != 0) {
      fprintf(stderr, "bad --device list '%s'\n", l->devices);
      return 2;
    }
    cfg.timeout_ms = l->timeout_ms;
    if (l->prepare && l->prepare(rank, &cfg, ctx) != 0) return 1;
    flagcx_comm_t comm;
    flagcx_result_t r = flagcx_comm_init_env(&comm, &cfg);
    if (r != FLAGCX_SUCCESS) {
      fprintf(stderr, "rank %d: comm_init_env failed: %s: %s\n", rank, flagcx_get_error_string(r),
              flagcx_last_error(NULL));
      return 1;
    }
    int n = 0;
    flagcx_comm_count(comm, &n);
    return run_rank(l, comm, rank, n, body, ctx);
  }
  int nranks = l->nranks > 0 ? l->nranks : 1;
  flagcx_unique_id_t id;
  flagcx_result_t r = flagcx_get_unique_id(&id);
  if (r != FLAGCX_SUCCESS) {
    fprintf(stderr, "get_unique_id: %s\n", flagcx_last_error(NULL));
    return 1;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t *pids = calloc((size_t)nranks, sizeof *pids);
  if (!pids) return 1;
  for (int rank = 0; rank < nranks; rank++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      for (int k = 0; k < rank; k++) kill(pids[k], SIGKILL);
      free(pids);
      return 1;
    }
    if (pid == 0) {
      if (tool_config(l->devices, rank, rank, &cfg) != 0) {
        fprintf(stderr, "bad --device list '%s'\n", l->devices);
        _exit(2);
      }
      cfg.timeout_ms = l->timeout_ms;
      if (l->prepare && l->prepare(rank, &cfg, ctx) != 0) _exit(1);
      flagcx_comm_t comm;
      r = flagcx_comm_init_rank(&comm, nranks, id, rank, &cfg);
      if (r != FLAGCX_SUCCESS) {
        fprintf(stderr, "rank %d: comm_init_rank failed: %s: %s\n", rank, flagcx_get_error_string(r),
                flagcx_last_error(NULL));
        fflush(stderr);
        _exit(1);
      }
      int rc = run_rank(l, comm, rank, nranks, body, ctx);
      fflush(stdout);
      fflush(stderr);
      _exit(rc);
    }
    pids[rank] = pid;
  }
  /* Wait for every rank, but never forever: a rank still alive at the deadline
   * is a hang, which is itself a failure. */
  double deadline = tool_now_s() + (l->deadline_s > 0 ? l->deadline_s : 600);
  int worst = 0, left = nranks;
  while (left > 0) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      left--;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      for (int k = 0; k < nranks; k++)
        if (pids[k] == pid) {
          pids[k] = 0;
          if (code) fprintf(stderr, "rank %d exited with status %d\n", k, code);
        }
      if (code > worst) worst = code;
      continue;
    }
    if (tool_now_s() > deadline) {
      for (int k = 0; k < nranks; k++)
        if (pids[k] > 0) {
          fprintf(stderr, "rank %d still running after %d s: killed (hang)\n", k, l->deadline_s > 0 ? l->deadline_s : 600);
          kill(pids[k], SIGKILL);
        }
      worst = worst ? worst : 124;
      while (waitpid(-1, NULL, 0) > 0) {
      }
      break;
    }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  free(pids);
  return worst;
}
