#!/usr/bin/env bash
# Runs a GPU job longer than one device call (10 minutes) on a machine that stays
# held between calls: the first call starts it detached, later calls wait on it.
#
#   scripts/gpu/detach.sh start CMD [ARG...]   starts CMD in a process session of
#       its own (it outlives the call), with OUT=$DETACH_DIR/out, and returns
#   scripts/gpu/detach.sh wait SECONDS [FILE...]
#       waits up to SECONDS for it to end, prints the end of its log, and copies
#       into $OUT the files at the top of its OUT and each FILE given (e.g. a
#       results file that is rewritten as the job goes), six at most, and all
#       it has written with its log as detached.tar.gz (the device brings back
#       8 files), so a machine lost between calls loses only what came after
#       the last wait
#
# A held machine goes back when it is idle for its warm time (30 s), so each wait
# must follow the last call at once. DETACH_DIR defaults to /tmp/detached.
set -uo pipefail
dir=${DETACH_DIR:-/tmp/detached}
case ${1:-} in
start)
  shift
  [ $# -gt 0 ] || { echo "detach.sh start: no command" >&2; exit 2; }
  rm -rf "$dir" && mkdir -p "$dir/out" || exit 1
  OUT=$dir/out setsid nohup bash -c '"$@"; echo $? >"$0/rc"' "$dir" "$@" >"$dir/log" 2>&1 </dev/null &
  echo "detach: started '$*' (pid $!), log $dir/log"
  ;;
wait)
  secs=${2:-560}
  shift $(($# < 2 ? $# : 2))
  [ -d "$dir" ] || { echo "detach.sh wait: nothing started ($dir missing)" >&2; exit 2; }
  t0=$(date +%s)
  while [ ! -f "$dir/rc" ] && [ $(($(date +%s) - t0)) -lt "$secs" ]; do sleep 5; done
  tail -c 8000 "$dir/log"
  out=${OUT:-./out}
  mkdir -p "$out"
  n=0
  for f in "$dir"/out/* "$@"; do
    [ -f "$f" ] || continue
    if [ $n -lt 6 ]; then cp "$f" "$out/" && n=$((n + 1)); fi
  done
  (cd "$dir" && tar -czf "$out/detached.tar.gz" out log 2>/dev/null)
  if [ -f "$dir/rc" ]; then
    echo "detach: finished, exit $(cat "$dir/rc")"
  else
    echo "detach: still running after $(($(date +%s) - t0)) s of this wait"
  fi
  ;;
*)
  echo "usage: detach.sh start CMD [ARG...] | detach.sh wait SECONDS [FILE...]" >&2
  exit 2
  ;;
esac
