#!/usr/bin/env bash
# FlagCX on a machine with NVIDIA GPUs (issue 8): builds libflagcx and its tools,
# then on the GPUs present runs
#   - comm_check (every collective, dtype and op, exact/tolerance checks) over
#     CUDA buffers (NCCL path) and over a mixed cuda+host communicator (staged);
#   - flagcx-bench from 8 B to 1 GiB with --raw-nccl (FlagCX against NCCL called
#     directly, same run) for all_reduce, all_gather, reduce_scatter, broadcast;
#   - flagcx-bench on the mixed cuda+host communicator.
# Reports go to $OUT (default ./out): summary.txt, comm-summary.md and
# comm-logs.tar.gz (one log per step). COMM_BENCH_OPS (default: the four below)
# and COMM_BENCH_MIXED=0 narrow the benchmark.
# Needs 2 GPUs for the NCCL steps; NCCL_NVLS_ENABLE=0 is forced (see the device notes).
set -uo pipefail
. "$(dirname "$0")/start.sh"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
. "$repo/scripts/gpu/prefix.sh"

build=$repo/build-gpu-comm
if ! cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLAGOS_WERROR=OFF "${cmake_args[@]}" >"$out/comm-build.log" 2>&1 ||
  ! ninja -C "$build" -j "$(nproc)" flagcx flagcx_bench flagcx_tune comm_check comm_unit >>"$out/comm-build.log" 2>&1; then
  say "BUILD FAILED (comm-build.log)"; tail -30 "$out/comm-build.log"; exit 1
fi
say "built libflagcx and its tools"

# NCCL and the CUDA runtime: the toolkit's, else the ones PyTorch's wheels bring.
find_lib() {
  for d in /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    f=$(find "$d" -maxdepth 5 -name "$1" 2>/dev/null | head -1)
    [ -n "$f" ] && { echo "$f"; return; }
  done
}
nccl=$(find_lib 'libnccl.so.2*')
cudart=$(find_lib 'libcudart.so.1[0-9]*')
[ -n "$nccl" ] && export FLAGCX_NCCL_LIBRARY=$nccl
[ -n "$cudart" ] && export FLAGCX_CUDART_LIBRARY=$cudart
say "NCCL: ${nccl:-none}; CUDA runtime: ${cudart:-none}"
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c GPU)
say "GPUs: $ngpu ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)); topology:"
nvidia-smi topo -m >"$out/topo.txt" 2>&1; head -5 "$out/topo.txt" | tee -a "$out/summary.txt"

rc=0
step() { # name, then the command
  local name=$1; shift
  local t0=$(date +%s)
  timeout "${STEP_TIMEOUT:-240}" "$@" >"$out/$name.log" 2>&1
  local r=$?
  [ $r = 0 ] || rc=1
  say "$name: exit $r in $(($(date +%s) - t0))s"
}
export FLAGCX_SOCKET_IFNAME=lo FLAGCX_TUNE_FILE=none
t=$build/tests
step comm_unit "$t/comm_unit" "$build"
if [ "$ngpu" -ge 2 ]; then
  step check_cuda_2 "$t/comm_check" --nranks 2 --device cuda
  step check_mixed_cuda_host_2 "$t/comm_check" --nranks 2 --device cuda,host
  step check_mixed_cuda_host_host_3 "$t/comm_check" --nranks 3 --device cuda,host,host
  for op in ${COMM_BENCH_OPS-all_reduce all_gather reduce_scatter broadcast}; do
    step "bench_nccl_$op" "$build/flagcx-bench" --nranks 2 --device cuda -b 8 -e 1G -f 2 -o $op -n 20 -w 5 --raw-nccl
  done
  [ "${COMM_BENCH_MIXED:-1}" = 1 ] && step bench_mixed_all_reduce "$build/flagcx-bench" --nranks 2 --device cuda,host -b 1K -e 256M -f 4 -o all_reduce -n 5 -w 2
else
  step check_mixed_cuda_host_2 "$t/comm_check" --nranks 2 --device cuda,host
  say "fewer than 2 GPUs: the NCCL steps are skipped"
fi

# The summary: the large-message rows (>= 64 MiB) of each NCCL comparison.
{
  echo "# FlagCX on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x $ngpu"
  echo
  for f in "$out"/bench_*.log; do
    [ -e "$f" ] || continue
    echo "## $(basename "$f" .log)"; echo; echo '```'; grep -E '^#|^ *[0-9]' "$f" | tail -30; echo '```'; echo
  done
  for f in "$out"/check_*.log "$out"/comm_unit.log; do
    [ -e "$f" ] || continue
    echo "## $(basename "$f" .log)"; echo; echo '```'; tail -15 "$f"; echo '```'; echo
  done
} >"$out/comm-summary.md"
# At most a few files come back from the GPU machine: the logs travel as one archive.
(cd "$out" && tar -czf comm-logs.tar.gz ./*.log topo.txt env.txt && rm -f ./*.log)
say "done in $(elapsed)s (exit $rc)"
exit $rc
