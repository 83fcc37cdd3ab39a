/* Fault scenarios: every surviving rank must get an error, within the
 * communicator's timeout, never hang.
 *
 *   comm_fault --scenario NAME --nranks N [--timeout-ms T]   forks N ranks (TCP)
 *   mpirun -np N comm_fault --scenario NAME                  one rank per process
 *
 * Scenarios: kill (rank 1 is SIGKILLed between all-reduces), stall (rank 1 is
 * alive but late past the timeout), mismatch-count, mismatch-dtype, mismatch-op,
 * mismatch-coll, mismatch-root (rank 1 makes a different call), abort (rank 0
 * aborts while a thread is blocked in a call; its file descriptors must be
 * released), missing-rank (one rank never starts), bad-device (rank 1 cannot
 * open its device).
 *
 * Each rank prints "rank R: OK ..." or "rank R: UNEXPECTED ..." and exits 0 or 1.
 * In fork mode the parent checks every rank and exits 0 when all behaved. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flagos/flagcx.h"

static const char *scenario = "kill";
static int timeout_ms = 2000;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static int ok(int rank, const char *fmt, const char *a, double ms) {
  printf("rank %d: OK %s %s (%.0f ms)\n", rank, fmt, a, ms);
  fflush(stdout);
  return 0;
}

static int unexpected(int rank, const char *what, const char *detail) {
  printf("rank %d: UNEXPECTED %s %s\n", rank, what, detail ? detail : "");
  fflush(stdout);
  return 1;
}

static bool is_fault_error(flagcx_result_t r) {
  return r == FLAGCX_ERR_REMOTE || r == FLAGCX_ERR_TIMEOUT || r == FLAGCX_ERR_MISMATCH || r == FLAGCX_ERR_ABORTED;
}

static flagcx_result_t init(flagcx_comm_t *comm, int nranks, flagcx_unique_id_t *id, int rank, flagcx_config_t *cfg) {
  if (id) return flagcx_comm_init_rank(comm, nranks, *id, rank, cfg);
  return flagcx_comm_init_env(comm, cfg);
}

/* Calls all_reduce until it fails; the failure must come within the timeout
 * (plus scheduling slack) of the call it interrupts. */
static int until_error(flagcx_comm_t comm, int rank, const char *what, size_t count) {
  float buf[1024];
  for (int i = 0; i < 1024; i++) buf[i] = (float)i;
  double start = now_ms();
  for (int it = 0; now_ms() - start < 4.0 * timeout_ms + 10000; it++) {
    double t0 = now_ms();
    flagcx_result_t r = flagcx_all_reduce(buf, buf, count, FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
    double dt = now_ms() - t0;
    if (r == FLAGCX_SUCCESS) continue;
    if (!is_fault_error(r)) return unexpected(rank, "error code", flagcx_get_error_string(r));
    if (dt > timeout_ms + 2000.0) return unexpected(rank, "error came too late:", flagcx_last_error(comm));
    return ok(rank, what, flagcx_last_error(comm), dt);
  }
  return unexpected(rank, "no error", "the calls kept succeeding");
}

typedef struct blocked {
  flagcx_comm_t comm;
  flagcx_result_t r;
  double returned;
} blocked_t;

static void *blocked_call(void *arg) {
  blocked_t *b = arg;
  float x[16] = {0};
  b->r = flagcx_all_reduce(x, x, 16, FLAGCX_FLOAT32, FLAGCX_SUM, b->comm, NULL);
  b->returned = now_ms();
  return NULL;
}

/* A mismatched call by rank 1, then a normal one: every rank must fail by the
 * second call, and within the timeout of the call that failed. */
static int mismatch(flagcx_comm_t comm, int rank, int n) {
  enum { N = 64 };
  static float a[N * 16], b[N * 16];
  bool odd = rank == 1;
  double t0 = now_ms();
  flagcx_result_t r;
  if (strcmp(scenario, "mismatch-count") == 0)
    r = flagcx_all_reduce(a, b, odd ? N + 1 : N, FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
  else if (strcmp(scenario, "mismatch-dtype") == 0)
    r = flagcx_all_reduce(a, b, N, odd ? FLAGCX_INT32 : FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
  else if (strcmp(scenario, "mismatch-op") == 0)
    r = flagcx_all_reduce(a, b, N, FLAGCX_FLOAT32, odd ? FLAGCX_MAX : FLAGCX_SUM, comm, NULL);
  else if (strcmp(scenario, "mismatch-coll") == 0)
    r = odd ? flagcx_all_gather(a, b, N / n, FLAGCX_FLOAT32, comm, NULL)
            : flagcx_all_reduce(a, b, N, FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
  else
    r = flagcx_broadcast(a, b, N, FLAGCX_FLOAT32, odd ? 1 : 0, comm, NULL);
  double dt = now_ms() - t0;
  if (r != FLAGCX_SUCCESS) {
    if (!is_fault_error(r)) return unexpected(rank, "error code", flagcx_get_error_string(r));
    if (dt > timeout_ms + 2000.0) return unexpected(rank, "error came too late:", flagcx_last_error(comm));
    return ok(rank, "mismatch reported:", flagcx_last_error(comm), dt);
  }
  /* This rank's part of the call was complete (e.g. a root that only sends); the
   * next call on the communicator must fail. */
  t0 = now_ms();
  r = flagcx_all_reduce(a, b, N, FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
  dt = now_ms() - t0;
  if (r == FLAGCX_SUCCESS) return unexpected(rank, "no error", "after a mismatched call");
  if (!is_fault_error(r)) return unexpected(rank, "error code", flagcx_get_error_string(r));
  if (dt > timeout_ms + 2000.0) return unexpected(rank, "error came too late:", flagcx_last_error(comm));
  return ok(rank, "mismatch reported on the next call:", flagcx_last_error(comm), dt);
}

static int run_rank(int rank, int n, flagcx_unique_id_t *id) {
  flagcx_config_t cfg;
  flagcx_config_init(&cfg);
  cfg.timeout_ms = timeout_ms;
  flagcx_comm_t comm = NULL;
  if (strcmp(scenario, "bad-device") == 0) {
    if (rank == 1) {
      cfg.device = FLAGCX_DEVICE_OPENCL;
      cfg.device_index = 99;
    }
    double t0 = now_ms();
    flagcx_result_t r = init(&comm, n, id, rank, &cfg);
    double dt = now_ms() - t0;
    if (r == FLAGCX_SUCCESS) return unexpected(rank, "init succeeded", "despite rank 1's device");
    if (dt > timeout_ms) return unexpected(rank, "init failed too late:", flagcx_last_error(NULL));
    return ok(rank, "init failed:", flagcx_last_error(NULL), dt);
  }
  if (strcmp(scenario, "missing-rank") == 0) {
    double t0 = now_ms();
    flagcx_result_t r = init(&comm, n + 1, id, rank, &cfg);
    double dt = now_ms() - t0;
    if (r == FLAGCX_SUCCESS) return unexpected(rank, "init succeeded", "without the last rank");
    if (dt > timeout_ms + 4000.0) return unexpected(rank, "init failed too late:", flagcx_last_error(NULL));
    if (!strstr(flagcx_last_error(NULL), "missing")) return unexpected(rank, "message lacks the missing rank:", flagcx_last_error(NULL));
    return ok(rank, "init failed:", flagcx_last_error(NULL), dt);
  }
  flagcx_unique_id_t *use = id;
  if (strcmp(scenario, "abort") == 0) {
    /* A first communicator loads what stays loaded (MPI, plugins); the second
     * is the one whose resources must all come back. */
    if (init(&comm, n, id, rank, &cfg) != FLAGCX_SUCCESS) return unexpected(rank, "init:", flagcx_last_error(NULL));
    flagcx_comm_destroy(comm);
    use = id ? &id[1] : NULL;
  }
  int fds_before = count_fds();
  flagcx_result_t r = init(&comm, n, use, rank, &cfg);
  if (r != FLAGCX_SUCCESS) return unexpected(rank, "init:", flagcx_last_error(NULL));
  if (strcmp(scenario, "kill") == 0) {
    if (rank == 1) {
      float x[1024] = {0};
      for (int i = 0; i < 5; i++) flagcx_all_reduce(x, x, 1024, FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
      raise(SIGKILL);
    }
    int rc = until_error(comm, rank, "peer death reported:", 1024);
    flagcx_comm_destroy(comm);
    return rc;
  }
  if (strcmp(scenario, "stall") == 0) {
    if (rank == 1) {
      /* Late past the others' timeout. Its own call may still complete (the
       * others sent their data before giving up); the next one must fail. */
      sleep_ms(2 * timeout_ms + 500);
      float x[16] = {0};
      flagcx_result_t r1 = flagcx_all_reduce(x, x, 16, FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
      if (r1 == FLAGCX_SUCCESS) r1 = flagcx_all_reduce(x, x, 16, FLAGCX_FLOAT32, FLAGCX_SUM, comm, NULL);
      int rc = r1 == FLAGCX_SUCCESS ? unexpected(rank, "late calls succeeded", "")
                                    : ok(rank, "late call failed:", flagcx_last_error(comm), 0);
      flagcx_comm_destroy(comm);
      return rc;
    }
    int rc = until_error(comm, rank, "stalled peer reported:", 16);
    flagcx_comm_destroy(comm);
    return rc;
  }
  if (strcmp(scenario, "abort") == 0) {
    if (rank != 0) {
      sleep_ms(1000);
      int rc = until_error(comm, rank, "aborted peer reported:", 16);
      flagcx_comm_destroy(comm);
      return rc;
    }
    blocked_t b = {.comm = comm};
    pthread_t th;
    pthread_create(&th, NULL, blocked_call, &b);
    sleep_ms(300); /* the thread is now blocked: no peer joins the call */
    double t0 = now_ms();
    flagcx_comm_abort(comm);
    pthread_join(th, NULL);
    double dt = b.returned - t0;
    int fds_after = count_fds();
    if (b.r != FLAGCX_ERR_ABORTED) return unexpected(rank, "blocked call returned", flagcx_get_error_string(b.r));
    if (dt > 1000) return unexpected(rank, "blocked call returned late", "");
    if (fds_after != fds_before) {
      char msg[96];
      snprintf(msg, sizeof msg, "%d open before the communicator, %d after abort", fds_before, fds_after);
      return unexpected(rank, "file descriptors leaked:", msg);
    }
    return ok(rank, "abort ended the blocked call and released its descriptors", "", dt);
  }
  if (strncmp(scenario, "mismatch", 8) == 0) {
    int rc = mismatch(comm, rank, n);
    flagcx_comm_destroy(comm);
    return rc;
  }
  return unexpected(rank, "unknown scenario", scenario);
}

int main(int argc, char **argv) {
  int nranks = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--scenario") == 0) scenario = argv[i + 1];
    else if (strcmp(argv[i], "--nranks") == 0) nranks = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--timeout-ms") == 0) timeout_ms = atoi(argv[i + 1]);
  }
  if (getenv("OMPI_COMM_WORLD_RANK")) {
    int rank = atoi(getenv("OMPI_COMM_WORLD_RANK")), n = atoi(getenv("OMPI_COMM_WORLD_SIZE"));
    return run_rank(rank, n, NULL);
  }
  /* Fork mode. Two ids: the abort scenario makes two communicators. */
  flagcx_unique_id_t ids[2];
  if (flagcx_get_unique_id(&ids[0]) != FLAGCX_SUCCESS || flagcx_get_unique_id(&ids[1]) != FLAGCX_SUCCESS) {
    fprintf(stderr, "get_unique_id: %s\n", flagcx_last_error(NULL));
    return 1;
  }
  int procs = nranks;
  pid_t pids[64];
  fflush(stdout);
  for (int r = 0; r < procs; r++) {
    pids[r] = fork();
    if (pids[r] == 0) _exit(run_rank(r, nranks, ids));
  }
  double deadline = now_ms() + 4.0 * timeout_ms + 20000;
  int bad = 0;
  for (int r = 0; r < procs; r++) {
    int status = 0;
    for (;;) {
      pid_t p = waitpid(pids[r], &status, WNOHANG);
      if (p == pids[r]) break;
      if (now_ms() > deadline) {
        printf("rank %d: UNEXPECTED hang: killed after the deadline\n", r);
        kill(pids[r], SIGKILL);
        waitpid(pids[r], &status, 0);
        bad++;
        status = -1;
        break;
      }
      sleep_ms(5);
    }
    if (status == -1) continue;
    bool victim = strcmp(scenario, "kill") == 0 && r == 1;
    if (victim) {
      if (!WIFSIGNALED(status)) bad++, printf("rank 1: UNEXPECTED the victim was not killed\n");
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      printf("rank %d: UNEXPECTED exit status %d\n", r, status);
      bad++;
    }
  }
  printf("%s: %s\n", scenario, bad ? "FAILED" : "passed");
  return bad ? 1 : 0;
}
