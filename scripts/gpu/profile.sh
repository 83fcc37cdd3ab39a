#!/usr/bin/env bash
# Where a model's time goes on the GPU: exports each model of PROFILE_MODELS
# (NAME:DTYPE:BATCH, space-separated; default the large-batch float16 set of
# bench/gpu) through bench/gpu/models.py and runs `flagos profile --device
# cuda --top N` on it; with PROFILE_OPENCL=1 also `--device opencl:NVIDIA`.
# Writes $OUT/profile-NAME_DTYPE_bBATCH-DEVICE.txt (the EAF table and the
# slowest kernel groups) and $OUT/summary.txt.
#
# Environment: PROFILE_MODELS, PROFILE_TOP (40), PROFILE_RUNS (20),
# PROFILE_OPENCL (0), PROFILE_WORK (/tmp/flagos-profile: exports and caches).
set -uo pipefail
. "$(dirname "$0")/start.sh"
. "$repo/scripts/gpu/prefix.sh"

build=$repo/build-gpu-profile
work=${PROFILE_WORK:-/tmp/flagos-profile}
mkdir -p "$work"
targets=(flagos_cli flagos_backend_cpu flagos_backend_cuda)
[ "${PROFILE_OPENCL:-0}" = 1 ] && targets+=(flagos_backend_opencl)
gpu_build "$build" "$work/build.log" "${targets[@]}" || exit 1
export FLAGOS_PLUGIN_PATH=$build/backends FLAGOS_CACHE_DIR=$work/cache
[ "${PROFILE_OPENCL:-0}" = 1 ] && gpu_opencl_icd
say "built in $(elapsed)s"

for spec in ${PROFILE_MODELS:-bert:f16:32 resnet50:f16:64 gpt2:f16:8}; do
  IFS=: read -r name dtype batch <<<"$spec"
  key=${name}_${dtype}_b$batch
  # An export from an earlier call on this machine is reused.
  [ -f "$work/$key.onnx" ] || python3 - "$work" "$name" "$dtype" "$batch" <<'PY' >>"$out/summary.txt" 2>&1
import sys
sys.path.insert(0, "bench/gpu")
import torch, models
work, name, dtype, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
path = "%s/%s_%s_b%d.onnx" % (work, name, dtype, batch)
m, inputs, outs = models.build(torch, name, dtype, batch, "cuda")
how, err = models.export(torch, m, inputs, outs, path, work + "/export.log", "auto", dtype)
print("export %s: %s%s" % (path, how or err, " (%s)" % err if how and err else ""))
if how:
    # What the exporter wrote: operator counts, and the element types of the
    # products (MatMul, Gemm, Conv), which decide the library path.
    import collections, onnx
    ops = collections.Counter(n.op_type for n in onnx.load(path, load_external_data=False).graph.node)
    print("  ops:", ", ".join("%s %d" % kv for kv in ops.most_common()))
    print("  products by input type:", ", ".join("%s %s: %d" % (k[0], k[1], v)
                                                 for k, v in sorted(models.product_types(path).items())))
PY
  [ -f "$work/$key.onnx" ] || { say "$key: export failed"; continue; }
  devs=cuda
  [ "${PROFILE_OPENCL:-0}" = 1 ] && devs="cuda opencl:NVIDIA"
  for dev in $devs; do
    tgt=${dev%%:*}
    f=$out/profile-$key-$tgt.txt
    timeout 300 "$build/flagos" profile "$work/$key.onnx" --device "$dev" --target "$tgt" \
      --runs "${PROFILE_RUNS:-20}" --top 100000 >"$f.all" 2>&1
    say "$key on $dev: rc $? $(grep -m1 -E "^$tgt" "$f.all" | tr -s ' ' | cut -c1-120)"
    # The slowest PROFILE_TOP groups, then the time per operator type.
    python3 - "$f.all" "${PROFILE_TOP:-40}" >"$f" <<'PY'
import collections, sys
lines = open(sys.argv[1]).read().splitlines()
top, rows, by_op, seen = int(sys.argv[2]), 0, collections.defaultdict(lambda: [0, 0.0]), False
for ln in lines:
    f = ln.split()
    if seen and len(f) >= 6 and f[0] != "group":
        try:
            ms = float(f[-3])
        except ValueError:
            seen = False
        else:
            by_op[f[1]][0] += 1
            by_op[f[1]][1] += ms
            rows += 1
            if rows > top:
                continue
    if "slowest kernel groups" in ln:
        seen, rows = True, 0
    elif seen and rows > top:
        continue
    print(ln)
total = sum(v[1] for v in by_op.values())
print("\nper operator type: groups, ms per run, share of kernel time")
for op, (n, ms) in sorted(by_op.items(), key=lambda kv: -kv[1][1]):
    print("  %-24s %5d %10.4f %6.1f%%" % (op, n, ms, 100 * ms / total if total else 0))
PY
    rm -f "$f.all"
  done
done
say "done"
