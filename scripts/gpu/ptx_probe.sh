#!/usr/bin/env bash
# The OpenCL GEMM's tensor-core programs run through CUDA
# (bench/gpu/ptx_gemm_probe.c): for each tile variant of PROBE_TILES, the
# program that NVIDIA's OpenCL compiler built for it (taken from a kernel cache
# of its own) is timed on each product of PROBE_SHAPES through NVIDIA's OpenCL
# (flagos_gemm_bench, gated, the tile forced) and through CUDA: a graph of
# back-to-back launches, with the driver's shared-memory carveout and with 20%
# (room for one group of these tiles; each line's "resident" says), and with
# PROBE_SPLIT=P also split over K in P slices (the partial products only, and
# summed by the last slice in the product's kernel). With PROBE_NCU=1 Nsight
# Compute profiles the first product (and cuBLASLt's kernel on it). Writes
# $OUT/probe.jsonl, $OUT/opencl.jsonl, $OUT/ncu-*.txt; a probe's failure (its
# outputs wrong: the launch ran the wrong work) goes to $OUT/probe-errors.txt.
#
# Environment:
#   PROBE_SHAPES  f16 products MxNxK (default "128x2304x768 128x768x768")
#   PROBE_TILES   tensor-core variants of ocl_gemm.c (default "13 14 18")
#   PROBE_SPLIT   slices over K for the split runs (default none)
#   PROBE_NCU     1: Nsight Compute's sections on the first product
#   FLAGOS_GPU_BUILD (build-gpu-bench)
set -uo pipefail
. "$(dirname "$0")/start.sh"
. "$repo/scripts/gpu/prefix.sh"
build=${FLAGOS_GPU_BUILD:-$repo/build-gpu-bench}
gpu_build "$build" "$out/probe-build.log" flagos_backend_cuda flagos_backend_opencl flagos_gemm_bench || exit 1
gpu_opencl_icd || exit 1
export FLAGOS_PLUGIN_PATH=$build/backends
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
probe=$work/ptx_gemm_probe
cc -O2 -Wall -Wextra -Werror "$repo/bench/gpu/ptx_gemm_probe.c" -I/usr/local/cuda/include \
  -L/usr/local/cuda/lib64/stubs -lcuda -lm -o "$probe" 2>"$out/probe-cc.txt" || { say "probe: build failed (probe-cc.txt)"; exit 1; }
if [ "${PROBE_NCU:-0}" = 1 ] && ! command -v ncu >/dev/null; then
  say "PROBE_NCU=1 but no ncu on this machine: no profiles"
fi
gb=$build/flagos_gemm_bench
# Nsight Compute's full set on one kernel: the details page and, from the raw
# metrics, the warps' stall reasons (cycles a warp spent stalled per issued
# instruction, by reason) and the bytes moved, into $out/ncu-NAME.txt
ncu_report() {
  local name=$1
  shift
  ncu --set full -f -o "$work/$name" "$@" >"$out/ncu-$name.log" 2>&1 || { tail -5 "$out/ncu-$name.log"; return; }
  {
    ncu -i "$work/$name.ncu-rep" --page details
    echo "== raw: stalls and bytes"
    ncu -i "$work/$name.ncu-rep" --page raw |
      grep -E 'stalled.*(ratio|pct)|dram__bytes_read\.sum |lts__t_bytes\.sum |hmma.*pct|gpu__time_duration\.sum '
  } >"$out/ncu-$name.txt" 2>&1
  # the SASS instructions where the warps' stall samples fall, most first
  ncu -i "$work/$name.ncu-rep" --page source --csv --print-source sass >"$work/$name-sass.csv" 2>&1 &&
    python3 - "$work/$name-sass.csv" >"$out/ncu-$name-sass.txt" 2>&1 <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head = next((i for i, r in enumerate(rows) if "Source" in r), None)
samp = None if head is None else next(
    (i for i, c in enumerate(rows[head]) if c.startswith("Warp Stall Sampling (All")), None)
if samp is None:
    sys.exit("no Source and Warp Stall Sampling columns in ncu's source page (%s)" % sys.argv[1])
cols = rows[head]
src = cols.index("Source")
addr = cols.index("Address") if "Address" in cols else 0
body = [r for r in rows[head + 1:] if len(r) == len(cols)]
def num(r):
    try:
        return float(r[samp].replace(",", "") or 0)
    except ValueError:
        return 0.0
total = sum(num(r) for r in body)
print("%d instructions, %d stall samples" % (len(body), total))
for r in sorted(body, key=num, reverse=True)[:60]:
    print("%6d %5.1f%%  %s  %s" % (num(r), 100 * num(r) / max(total, 1), r[addr], r[src]))
print("== in program order, with samples")
for r in body:
    print("%6d  %s  %s" % (num(r), r[addr], r[src]))
PY
}
read -r -a shapes <<<"${PROBE_SHAPES:-128x2304x768 128x768x768}"
[ "${#shapes[@]}" -gt 0 ] || { say "PROBE_SHAPES names no product"; exit 2; }
: >"$out/probe.jsonl"
: >"$out/opencl.jsonl"
for t in ${PROBE_TILES:-13 14 18}; do
  cache=$work/cache-$t
  # the variant's tile as the plugin's trace gives it ("tile 18 (32x32/64 mma)"): TM, TN, TK
  geo=$(FLAGOS_TRACE=1 FLAGOS_CACHE_DIR=$cache FLAGOS_OPENCL_GEMM_TILE=$t "$gb" --backend opencl --dtype f16 \
    --gate 0 --iters 5 "${shapes[0]}:+" 2>&1 >/dev/null | sed -n "s/.*, tile $t (\([0-9]*\)x\([0-9]*\)\/\([0-9]*\) mma[^)]*).*/\1 \2 \3/p" |
    head -1)
  [ -n "$geo" ] || { say "tile $t: not a tensor-core (mma) variant the plugin took for ${shapes[0]}"; continue; }
  read -r tm tn tk <<<"$geo"
  ptx=""
  for f in "$cache"/opencl/*.bin; do
    # NVIDIA's OpenCL passes the launch's offsets in %envreg0-5 (zeros here) and
    # its group counts in %envreg6-8; CUDA sets neither
    tail -c +17 "$f" | tr -d '\000' |
      sed -E 's/%envreg[0-5]\b/0/g; s/%envreg6\b/%nctaid.x/g; s/%envreg7\b/%nctaid.y/g; s/%envreg8\b/%nctaid.z/g' \
        >"$work/x.ptx"
    if grep -q '%envreg' "$work/x.ptx"; then
      say "tile $t: the PTX reads launch registers this script does not know ($(grep -o '%envreg[0-9]*' "$work/x.ptx" | sort -u | tr '\n' ' '))"
      continue 2
    fi
    grep -q '\.entry flagos_gemm(' "$work/x.ptx" && { ptx=$work/t$t.ptx; mv "$work/x.ptx" "$ptx"; break; }
  done
  [ -n "$ptx" ] || { say "tile $t: no program with flagos_gemm in $cache"; continue; }
  nt=$(sed -n 's/^\.reqntid \([0-9]*\).*/\1/p' "$ptx" | head -1) # the work-items of its groups
  cp "$ptx" "$out/t$t.ptx"
  for s in "${shapes[@]}"; do
    IFS=x read -r m n k <<<"$s"
    FLAGOS_CACHE_DIR=$cache FLAGOS_OPENCL_GEMM_TILE=$t "$gb" --backend opencl --dtype f16 --iters 200 \
      --label "tile $t" "$s:+" >>"$out/opencl.jsonl" 2>>"$out/probe-errors.txt"
    for run in "129 0 -1 1" "129 0 20 1" ${PROBE_SPLIT:+"129 0 -1 $PROBE_SPLIT" "385 0 -1 $PROBE_SPLIT"}; do
      "$probe" "$ptx" "$m" "$n" "$k" "$tm" "$tn" "$nt" $run "$tk" 2>>"$out/probe-errors.txt" |
        sed "s/^{/{\"variant\": $t, /" | tee -a "$out/probe.jsonl"
    done
  done
  if [ "${PROBE_NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
    IFS=x read -r m n k <<<"${shapes[0]}"
    ncu_report "t$t-${shapes[0]}" -k flagos_gemm -c 1 "$probe" "$ptx" "$m" "$n" "$k" "$tm" "$tn" "$nt"
    [ -n "${PROBE_SPLIT:-}" ] && ncu_report "t$t-${shapes[0]}-split$PROBE_SPLIT-in-kernel" -k flagos_gemm -c 1 \
      "$probe" "$ptx" "$m" "$n" "$k" "$tm" "$tn" "$nt" 385 0 -1 "$PROBE_SPLIT" "$tk"
  fi
done
if [ "${PROBE_NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
  ncu_report "cublaslt-${shapes[0]}" -k 'regex:gemm|xmma|cutlass|sm90|nvjet' --launch-skip 3 -c 1 \
    "$gb" --backend cuda --dtype f16 --gate 0 --iters 10 --check 0 "${shapes[0]}:+"
fi
say "done in $(elapsed)s"
