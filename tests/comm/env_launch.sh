#!/usr/bin/env bash
# Starts N copies of a command the way a job launcher without MPI would: each
# with FLAGCX_RANK, FLAGCX_NRANKS and FLAGCX_ROOT=127.0.0.1:PORT (rank 0 serves
# the bootstrap there). Fails if any copy fails.  env_launch.sh N COMMAND...
set -u
n=$1
shift
port=$((20000 + (RANDOM % 30000)))
pids=()
for ((r = 0; r < n; r++)); do
  FLAGCX_RANK=$r FLAGCX_NRANKS=$n FLAGCX_ROOT=127.0.0.1:$port "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
