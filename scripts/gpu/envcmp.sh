#!/usr/bin/env bash
# A/B of environment settings on the models that scripts/gpu/bench.sh exported
# and compiled on this machine (its BENCH_WORK folder and FLAGOS_GPU_BUILD
# build): for each model key and each setting, `flagos run BUNDLE --device
# DEVICE --runs N` in turn, the settings interleaved over ENVCMP_ROUNDS rounds
# so that a drift of the machine touches all of them alike. Prints one line a
# run and writes $OUT/envcmp.md (the median of each setting's medians).
#
# Environment:
#   ENVCMP_MODELS  model keys (default "bert_f32_b1 gpt2_f32_b1 resnet50_f32_b1")
#   ENVCMP_ENVS    settings separated by ';', each `NAME=VALUE ...` or `-` for
#                  none (default "-;FLAGOS_OPENCL_GEMM_PLANS=0")
#   ENVCMP_TARGET  the bundle's target (opencl); ENVCMP_DEVICE (opencl:NVIDIA)
#   ENVCMP_RUNS    runs a `flagos run` (default 100); ENVCMP_ROUNDS (default 3)
#   BENCH_WORK     (/tmp/flagos-bench), FLAGOS_GPU_BUILD (build-gpu-bench)
set -uo pipefail
. "$(dirname "$0")/start.sh"
. "$repo/scripts/gpu/prefix.sh"
work=${BENCH_WORK:-/tmp/flagos-bench}
build=${FLAGOS_GPU_BUILD:-$repo/build-gpu-bench}
fl=$build/flagos
[ -x "$fl" ] || { say "no $fl: run scripts/gpu/bench.sh first"; exit 2; }
export FLAGOS_PLUGIN_PATH=$build/backends FLAGOS_CACHE_DIR=${FLAGOS_CACHE_DIR:-$work/flagos-cache}
gpu_opencl_icd || exit 1
tgt=${ENVCMP_TARGET:-opencl}
dev=${ENVCMP_DEVICE:-opencl:NVIDIA}
IFS=';' read -r -a envs <<<"${ENVCMP_ENVS:--;FLAGOS_OPENCL_GEMM_PLANS=0}"
raw=$out/envcmp.tsv
: >"$raw"
for key in ${ENVCMP_MODELS:-bert_f32_b1 gpt2_f32_b1 resnet50_f32_b1}; do
  d=$work/$key
  b=$d/model.$tgt.flagos
  [ -f "$b" ] || { say "$key: no $b (not exported and compiled by bench.sh here)"; continue; }
  ins=()
  for f in "$d"/*.npy; do
    case $(basename "$f") in ref*.npy) ;; *) ins+=(-i "$f") ;; esac
  done
  for r in $(seq "${ENVCMP_ROUNDS:-3}"); do
    for e in "${envs[@]}"; do
      [ "$e" = - ] || read -r -a kv <<<"$e"
      ms=$(env ${kv[@]+"${kv[@]}"} "$fl" run "$b" --device "$dev" "${ins[@]}" --runs "${ENVCMP_RUNS:-100}" 2>&1 |
        sed -n 's/.*run time: median \([0-9.]*\) ms.*/\1/p')
      unset kv
      printf '%s\t%s\t%s\t%s\n' "$key" "$e" "$r" "${ms:-failed}" | tee -a "$raw"
    done
  done
done
python3 - "$raw" >"$out/envcmp.md" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
order = []
for ln in open(sys.argv[1]):
    key, env, _, ms = ln.rstrip("\n").split("\t")
    if (key, env) not in rows:
        order.append((key, env))
    if ms != "failed":
        rows[(key, env)].append(float(ms))
print("| model | setting | median of the runs' medians, ms | runs' medians |")
print("|---|---|---:|---|")
for key, env in order:
    v = rows[(key, env)]
    print("| %s | %s | %s | %s |" % (key, "(none)" if env == "-" else "`%s`" % env,
                                     "%.3f" % statistics.median(v) if v else "failed", " ".join("%.3f" % x for x in v)))
PY
cat "$out/envcmp.md"
