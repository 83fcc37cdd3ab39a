#!/usr/bin/env bash
# Placement on a GPU machine (issue 6): BERT-base (float32, sequence 128, batch 1,
# random weights) compiled for cpu and cuda and placed by three SLAs —
#   latency  the objective is latency alone: expected on the GPU;
#   power    max_avg_power_w between the CPU-only plan's predicted power and the
#            GPU plan's: expected on the CPU;
#   memory   cuda memory_limit_mb at 40% of the model's weights: expected split;
# each plan's predicted latency (flagos compile --explain, with profiles measured
# by flagos devices --calibrate on this machine) against its measured median
# latency (flagos run --runs). Writes $OUT/place.md and the --explain texts.
# PLACE_TUNE=1 (the default) compiles with --tune: the kernel groups measured on
# the CPU and the GPU replace the roofline (docs/sla.md "Tuning"); PLACE_TUNE=0
# plans with the calibrated roofline alone.
set -uo pipefail
. "$(dirname "$0")/start.sh"
. "$repo/scripts/gpu/prefix.sh"

build=$repo/build-gpu-place
work=${PLACE_WORK:-/tmp/flagos-place}
mkdir -p "$work"
gpu_build "$build" "$work/build.log" flagos_cli flagos_backend_cpu flagos_backend_cuda || exit 1
export FLAGOS_PLUGIN_PATH=$build/backends FLAGOS_CACHE_DIR=$work/cache
fl=$build/flagos
tune=()
[ "${PLACE_TUNE:-1}" = 1 ] && tune=(--tune)
say "built in $(elapsed)s"

# The model and its input, through bench/gpu/models.py.
python3 - "$work" <<'PY' >>"$out/summary.txt" 2>&1
import sys, os
sys.path.insert(0, "bench/gpu")
import numpy as np, torch, models
work = sys.argv[1]
m, inputs, outs = models.build(torch, "bert", "f32", 1, "cpu", small=os.environ.get("PLACE_SMALL") == "1")
how, err = models.export(torch, m, inputs, outs, work + "/bert.onnx", work + "/export.log", "legacy")
print("export:", how or err)
np.save(work + "/input_ids.npy", inputs["input_ids"].numpy())
PY
[ -f "$work/bert.onnx" ] || { say "export failed"; exit 1; }
say "exported BERT-base ($(du -m "$work/bert.onnx" | cut -f1) MB)"

"$fl" devices --calibrate --target cpu,cuda -o "$work/profiles.json" >"$out/calibrate.txt" 2>&1
say "calibrated: $(tr '\n' ' ' <"$out/calibrate.txt" | cut -c1-400)"

# plan NAME SLA_JSON: compile, explain, run; prints one table row.
rows=()
plan() {
  local name=$1 sla=$2
  echo "$sla" >"$work/sla-$name.json"
  if ! "$fl" compile "$work/bert.onnx" --targets cpu,cuda --sla "$work/sla-$name.json" --profile "$work/profiles.json" \
    "${tune[@]}" --explain -o "$work/bert-$name.flagos" >"$out/explain-$name.txt" 2>&1; then
    say "$name: compile failed: $(tail -3 "$out/explain-$name.txt" | tr '\n' ' ')"
    rows+=("| $name | \`$sla\` | failed | | | | | |")
    return
  fi
  local pred pw groups
  pred=$(awk '/^  latency/ {print $2}' "$out/explain-$name.txt")
  pw=$(awk '/^  average power/ {print $3}' "$out/explain-$name.txt")
  groups=$(awk '/^device / {d=$2} /groups, busy/ {printf "%s %s; ", d, $1}' "$out/explain-$name.txt")
  "$fl" run "$work/bert-$name.flagos" --input "input_ids=$work/input_ids.npy" --runs 100 >"$out/run-$name.txt" 2>&1
  local meas
  meas=$(sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' "$out/run-$name.txt")
  local ratio="" sync=""
  [ -n "$meas" ] && [ -n "$pred" ] && ratio=$(python3 -c "print('%.2f' % ($meas / $pred))")
  say "$name: groups $groups predicted ${pred} ms, ${pw} W; measured ${meas:-failed} ms"
  [ -z "$meas" ] && tail -3 "$out/run-$name.txt" | tee -a "$out/summary.txt"
  # A split plan copies between devices: the same runs with the copies made in
  # turn on the run's thread, for the difference the copy thread makes.
  if [ "$(grep -c '^device ' "$out/explain-$name.txt")" -gt 1 ]; then
    FLAGOS_ASYNC_COPIES=0 "$fl" run "$work/bert-$name.flagos" --input "input_ids=$work/input_ids.npy" --runs 100 \
      >"$out/run-$name-sync.txt" 2>&1
    sync=$(sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' "$out/run-$name-sync.txt")
    say "$name: copies in turn (FLAGOS_ASYNC_COPIES=0): ${sync:-failed} ms"
  fi
  rows+=("| $name | \`$sla\` | $groups | $pred | ${meas:-failed} | $ratio | ${sync:-} | $pw |")
}

plan latency '{"objective": {"latency": 1}}'
p_gpu=$(awk '/^  average power/ {print $3}' "$out/explain-latency.txt")
# The power the CPU-only plan draws, from a plan that may not use the GPU.
echo '{"objective": {"latency": 1}, "forbidden": ["cuda"]}' >"$work/sla-cpuonly.json"
"$fl" compile "$work/bert.onnx" --targets cpu,cuda --sla "$work/sla-cpuonly.json" \
  --profile "$work/profiles.json" "${tune[@]}" --explain -o "$work/bert-cpuonly.flagos" >"$out/explain-cpuonly.txt" 2>&1
p_cpu=$(awk '/^  average power/ {print $3}' "$out/explain-cpuonly.txt")
limit=$(python3 -c "print(round(($p_cpu + $p_gpu) / 2, 1))" 2>/dev/null || echo 100)
say "predicted power: GPU plan ${p_gpu} W, CPU-only plan ${p_cpu} W; power limit ${limit} W"
plan power "{\"objective\": {\"latency\": 1}, \"max_avg_power_w\": $limit}"
weights_mb=$(python3 -c "import os; print(int(os.path.getsize('$work/bert.onnx') / 2**20))")
mem=$((weights_mb * 2 / 5))
plan memory "{\"objective\": {\"latency\": 1}, \"devices\": {\"cuda\": {\"memory_limit_mb\": $mem}}}"

{
  echo "# Placement of BERT-base (float32, sequence 128, batch 1) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) + CPU"
  echo
  echo "Profiles: \`flagos devices --calibrate\` on this machine ($out/calibrate.txt). Predicted: \`flagos compile --explain\`"
  echo "(${tune[*]:-no --tune}: times $([ ${#tune[@]} -gt 0 ] && echo "measured on both devices" || echo "from the roofline"));"
  echo "measured: median of 100 runs of \`flagos run\` (inputs uploaded and outputs downloaded each run)."
  echo
  echo "| SLA | JSON | groups per device | predicted ms | measured ms | measured / predicted | measured ms, copies in turn | predicted W |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  for r in "${rows[@]}"; do echo "$r"; done
} >"$out/place.md"
cat "$out/place.md"
say "done in $(elapsed)s"
