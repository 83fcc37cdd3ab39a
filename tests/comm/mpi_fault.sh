#!/usr/bin/env bash
# Runs a comm_fault scenario under mpirun and checks that every surviving rank
# reported the error it should ("rank R: OK") and that the job ended within a
# time limit (mpirun itself reports the killed rank with a non-zero status, so
# its exit code alone says nothing).
#   mpi_fault.sh MPIRUN NRANKS LIMIT_S COMM_FAULT SCENARIO [TIMEOUT_MS]
set -u
mpirun=$1 n=$2 limit=$3 prog=$4 scenario=$5 tmo=${6:-2000}
survivors=$n
[ "$scenario" = kill ] && survivors=$((n - 1))
start=$(date +%s)
# --enable-recovery keeps the other ranks running after one dies, so that what
# they do about it (FlagCX's error) can be seen.
out=$(timeout "$limit" "$mpirun" --oversubscribe --allow-run-as-root --enable-recovery -np "$n" \
      "$prog" --scenario "$scenario" --timeout-ms "$tmo" 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "mpirun exit status $rc after ${elapsed}s"
if [ $rc -eq 124 ]; then echo "FAILED: the job hung (killed after ${limit}s)"; exit 1; fi
oks=$(grep -c ': OK ' <<<"$out")
if grep -q 'UNEXPECTED' <<<"$out" || [ "$oks" -ne "$survivors" ]; then
  echo "FAILED: $oks of $survivors surviving ranks reported the expected error"
  exit 1
fi
echo "passed: $oks ranks reported the error"
