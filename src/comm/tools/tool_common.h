/* Launch and parsing helpers shared by flagcx-bench, flagcx-tune and the comm
 * tests: one body function runs on every rank, whether the ranks come from
 * mpirun, from FLAGCX_RANK/FLAGCX_NRANKS/FLAGCX_ROOT, or are forked here. */
#ifndef FLAGCX_TOOL_COMMON_H
#define FLAGCX_TOOL_COMMON_H

#include <stddef.h>

#include "flagos/flagcx.h"

typedef struct tool_launch {
  int nranks;          /* fork this many ranks over TCP when not launched by mpirun (0: from the environment) */
  const char *devices; /* "host", "opencl", "cuda", or a comma list used round-robin by rank ("host,opencl") */
  int timeout_ms;      /* communicator timeout, 0: default */
  int deadline_s;      /* fork mode: kill ranks still running after this long (0: 600) */
  /* Called in the rank's process before its communicator is made (after fork),
   * e.g. to create an OpenCL context and put it in cfg. Non-zero: the rank fails. */
  int (*prepare)(int rank, flagcx_config_t *cfg, void *ctx);
} tool_launch_t;

typedef int (*tool_body_fn)(flagcx_comm_t comm, int rank, int nranks, void *ctx);

/* Runs body on every rank; returns this process's exit code (in fork mode, the
 * parent returns 0 only if every rank did). */
int tool_run(const tool_launch_t *launch, tool_body_fn body, void *ctx);
/* The device kind and index rank `rank` uses under `devices`. */
int tool_config(const char *devices, int rank, int local_rank, flagcx_config_t *cfg);
/* "8", "64K", "1M", "1G" -> bytes; -1 on error. */
int tool_parse_size(const char *s, size_t *out);
double tool_now_s(void);
/* Whether this process was launched by mpirun. */
int tool_under_mpirun(void);

#endif
