#!/usr/bin/env bash
# The GPU benchmark (bench/gpu/README.md): FlagOS on cuda and on OpenCL (NVIDIA's
# platform) against PyTorch eager, torch.compile and cuBLASLt, in one run on one
# GPU, written to $OUT/report.md. Builds FlagOS like scripts/gpu/run.sh (the
# shared set-up is scripts/gpu/prefix.sh).
#
# Environment:
#   BENCH_STAGES    comma-separated, in this order: kernels,matmul,models,suite
#                   (default: all four; a full run does not fit one 10-minute
#                   call: see bench/gpu/README.md for the split)
#   BENCH_BUDGET_S  seconds for the whole script (default 560); each stage gets
#                   at most BENCH_<STAGE>_S (defaults: kernels 240, matmul 150,
#                   models 420, suite 150) of what is left, and skips what does
#                   not fit, saying so in the report
#   BENCH_COMPILE=0 no torch.compile columns; BENCH_COMPILE_MODE (max-autotune)
#   BENCH_OPENCL=0  no FlagOS OpenCL columns; BENCH_FLAGOS (default
#                   cuda=cuda,opencl=opencl:NVIDIA: TARGET=DEVICE pairs; empty:
#                   no FlagOS columns, e.g. for a call given to torch.compile)
#   BENCH_KERNELS   only kernel cases whose name contains one of these (comma-separated)
#   BENCH_MODELS (resnet50,bert,gpt2), BENCH_DTYPES (f32,f16), BENCH_BATCHES
#   (e.g. 1), BENCH_EXPORTER (auto|legacy|dynamo), BENCH_TORCH_RUNS (100)
#   BENCH_WORK      scratch folder (default /tmp/flagos-bench): exported models,
#                   bundles and caches (FlagOS's, TorchInductor's) stay there, so
#                   a second run on the same machine skips export and compiles
#   BENCH_SUITE_ARGS  extra `flagos bench` options (default --max-seconds 1.5)
#   FLAGOS_GPU_BUILD  the build folder (default build-gpu-bench)
set -uo pipefail
. "$(dirname "$0")/start.sh"
budget=${BENCH_BUDGET_S:-560}
stages=${BENCH_STAGES:-kernels,matmul,models,suite}
work=${BENCH_WORK:-/tmp/flagos-bench}
mkdir -p "$work/logs"
export BENCH_WORK=$work BENCH_LOGS=$work/logs BENCH_RESULTS=$work/results.json
rm -f "$BENCH_RESULTS"
py=${PYTHON:-python3}
has() { case ",$stages," in *",$1,"*) return 0 ;; esac; return 1; }

. "$repo/scripts/gpu/prefix.sh"

build=${FLAGOS_GPU_BUILD:-$repo/build-gpu-bench}
targets=(flagos_cli flagos_backend_cpu flagos_backend_cuda)
[ "${BENCH_OPENCL:-1}" = 1 ] && targets+=(flagos_backend_opencl)
if ! gpu_build "$build" "$work/logs/build.log" "${targets[@]}"; then
  (cd "$work" && tar -czf "$out/logs.tar.gz" logs) # the whole log, in logs.tar.gz
  exit 1
fi
say "built ${targets[*]} in $(elapsed)s"
export FLAGOS="$build/flagos" FLAGOS_PLUGIN_PATH=$build/backends
export FLAGOS_CACHE_DIR=${FLAGOS_CACHE_DIR:-$work/flagos-cache}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$work/inductor-cache}
if [ "${BENCH_OPENCL:-1}" = 1 ]; then
  gpu_opencl_icd || export BENCH_OPENCL=0
fi
"$FLAGOS" devices >"$work/logs/devices.txt" 2>&1
say "devices: $(grep -E '^ +[a-z]+:[0-9]' "$work/logs/devices.txt" | sed 's/^ *//' | tr '\n' ';')"

if has matmul; then
  cuda=/usr/local/cuda
  if cc -std=c17 -O2 -Wall -Wextra bench/gpu/cublaslt_bench.c -I"$cuda/include" -L"$cuda/lib64" -lcublasLt -lcudart \
    -Wl,-rpath,"$cuda/lib64" -o "$work/cublaslt_bench" >"$work/logs/cublaslt-build.log" 2>&1; then
    export BENCH_CUBLASLT=$work/cublaslt_bench
  else
    say "cublaslt_bench did not build (logs/cublaslt-build.log)"
  fi
fi

"$py" bench/gpu/bench.py meta 60 >"$work/logs/meta.log" 2>&1 || say "meta: $(tail -1 "$work/logs/meta.log")"

# A stage's share: its default, or what is left of the budget less a reserve
# for the report, whichever is smaller.
share() {
  local want=$1 left=$((budget - $(elapsed) - 25))
  [ "$left" -lt "$want" ] && want=$left
  echo "$want"
}
for s in kernels matmul models; do
  has $s || continue
  def=$(eval echo "\${BENCH_${s^^}_S:-$(case $s in kernels) echo 240 ;; matmul) echo 150 ;; models) echo 420 ;; esac)}")
  secs=$(share "$def")
  if [ "$secs" -lt 30 ]; then
    say "$s: skipped (${secs}s left of the budget)"
    continue
  fi
  say "$s: up to ${secs}s"
  PYTHONUNBUFFERED=1 timeout $((secs + 20)) "$py" bench/gpu/bench.py "$s" "$secs" >"$work/logs/stage-$s.log" 2>&1
  say "$s: exit $? [$(elapsed)s]; $(grep -c '^RESULT' "$work/logs/stage-$s.log") records"
done

if has suite; then
  secs=$(share "${BENCH_SUITE_S:-150}")
  st=cpu,cuda
  [ "${BENCH_OPENCL:-1}" = 1 ] && st=$st,opencl
  if [ "$secs" -ge 30 ]; then
    # shellcheck disable=SC2086
    timeout "$secs" "$FLAGOS" bench bench/suites/default.json --targets $st -o "$work/suite" \
      ${BENCH_SUITE_ARGS---max-seconds 1.5} >"$work/logs/suite.log" 2>&1
    say "suite ($st): exit $? [$(elapsed)s]"
  else
    say "suite: skipped (${secs}s left of the budget)"
  fi
fi

"$py" bench/gpu/report.py "$BENCH_RESULTS" --suite "$work/suite/bench.json" --log "$out/summary.txt" \
  -o "$out/report.md" >"$work/logs/report.log" 2>&1 || say "report: $(tail -2 "$work/logs/report.log")"
cp "$BENCH_RESULTS" "$out/results.json" 2>/dev/null
# At most 8 files come back from the GPU machine: the rest travel as one archive.
(cd "$work" && tar -czf "$out/logs.tar.gz" logs $(ls suite/bench.md suite/bench.json suite/bench.svg 2>/dev/null))
say "done in $(elapsed)s"
