#!/usr/bin/env bash
# Placement from the command line (docs/sla.md): `flagos devices --calibrate`
# writes a valid profile for cpu (and the first OpenCL device, PoCL in CI, when
# there is one), `flagos devices` shows it, `flagos compile --sla --explain`
# records a plan in the bundle (read back here from the bundle's table of
# contents, not through FlagOS), and bad or unmeetable SLAs give one clear error.
#   test_partition_cli.sh FLAGOS_BINARY SOURCE_DIR WORK_DIR
set -u
flagos=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
export FLAGOS_CACHE_DIR=$work/cache
fails=0 checks=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

expect_fail() { # NAME REGEX -- command...
  local name=$1 pattern=$2
  shift 3
  checks=$((checks + 1))
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then fail "$name: exited 0, expected an error"; return; fi
  if [ $rc -ge 128 ]; then fail "$name: crashed (exit $rc): $out"; return; fi
  if ! grep -qE -- "$pattern" <<<"$out"; then fail "$name: error does not match /$pattern/: $out"; return; fi
  if [ "$(grep -c 'error' <<<"$out")" -ne 1 ]; then fail "$name: expected exactly one error line: $out"; fi
}

targets=cpu
have_ocl=0
if "$flagos" devices 2>/dev/null | grep -q "^  opencl:0 "; then
  targets=cpu,opencl
  have_ocl=1
fi

# ---- calibration ----
checks=$((checks + 1))
t0=$(date +%s)
if ! "$flagos" devices --calibrate --target "$targets" >"$work/calibrate.txt" 2>&1; then
  fail "devices --calibrate: $(cat "$work/calibrate.txt")"
fi
echo "calibration of $targets took $(($(date +%s) - t0)) s"
checks=$((checks + 1))
if ! python3 - "$FLAGOS_CACHE_DIR/profiles.json" "$have_ocl" <<'PY'; then
import json, sys
p = json.load(open(sys.argv[1]))
assert p["format"] == 1 and len(p["date"]) == 20 and p["flagos_version"], p
want = ["cpu:0"] + (["opencl:0"] if sys.argv[2] == "1" else [])
got = {d["device"]: d for d in p["devices"]}
for name in want:
    d = got[name]
    for k in ("name", "vendor", "driver_version", "plugin_version"):
        assert isinstance(d[k], str) and d[k], (name, k)
    assert d["calibrated"] is True, name
    # Plausible for any device: between 10 MFLOP/s and 10 PFLOP/s (an H100's
    # OpenCL device measures 1e14 in f16 since its products run on tensor cores).
    for k in ("f32", "f16"):
        assert 1e7 < d["peak_flops"][k] < 1e16, (name, k, d["peak_flops"][k])
    assert 1e7 < d["memory_bandwidth"] < 1e13, (name, d["memory_bandwidth"])
    assert 1e-8 < d["launch_overhead_s"] < 1e-1, (name, d["launch_overhead_s"])
    assert d["h2d_bandwidth"] > 1e6 and d["d2h_bandwidth"] > 1e6, name
    assert 0 <= d["link_latency_s"] < 1e-1, name
    assert d["memory_bytes"] > 0, name
    pw = d["power"]
    assert pw["active_w"] > 0 and 0 <= pw["idle_w"] <= pw["active_w"], (name, pw)
    assert isinstance(pw["estimated"], bool) and pw["source"], (name, pw)
assert got["cpu:0"]["host_visible"] is True
PY
  fail "profile: $(cat "$FLAGOS_CACHE_DIR/profiles.json")"
fi
checks=$((checks + 1))
"$flagos" devices >"$work/devices.txt" 2>&1
grep -q "profile: $FLAGOS_CACHE_DIR/profiles.json" "$work/devices.txt" && grep -q "GFLOP/s f32" "$work/devices.txt" ||
  fail "devices does not show the profile: $(cat "$work/devices.txt")"
expect_fail "calibrate bad option" "unknown option '--calibrat'" -- "$flagos" devices --calibrat

echo '{"max_latency_ms": 0.000001}' >"$work/fast.json"

# ---- compile with an SLA ----
if [ $have_ocl = 1 ]; then
  # 1 KB of cpu memory cannot hold the first MatMul's weights (2 KB): a split.
  cat >"$work/split.json" <<'EOF'
{"version": 1, "mode": "latency", "objective": {"latency": 1, "lambda": 0, "mu": 0},
 "devices": {"cpu": {"memory_limit_mb": 0.001, "cost_per_hour": 0.1}}}
EOF
  # A fixed profile (not the calibrated one, whose figures move with the load of
  # the machine) makes the rest of the plan certain: the cpu's launches cost 1 us,
  # the opencl device's 20 us plus copies.
  cat >"$work/fixed.json" <<'EOF'
{"format": 1, "date": "2026-01-01T00:00:00Z", "flagos_version": "0.1.0", "devices": [
 {"device": "cpu:0", "host_visible": true, "memory_bytes": 1e9, "peak_flops": {"f32": 1e10, "f16": 1e9},
  "memory_bandwidth": 1e10, "h2d_bandwidth": 1e10, "d2h_bandwidth": 1e10, "link_latency_s": 0,
  "launch_overhead_s": 1e-6, "power": {"active_w": 10, "idle_w": 2, "source": "test", "estimated": true}},
 {"device": "opencl:0", "host_visible": false, "memory_bytes": 1e9, "peak_flops": {"f32": 1e10, "f16": 1e9},
  "memory_bandwidth": 1e10, "h2d_bandwidth": 1e9, "d2h_bandwidth": 1e9, "link_latency_s": 2e-5,
  "launch_overhead_s": 2e-5, "power": {"active_w": 10, "idle_w": 2, "source": "test", "estimated": true}}]}
EOF
  checks=$((checks + 1))
  if ! "$flagos" compile "$src/examples/mlp.onnx" --targets cpu,opencl --sla "$work/split.json" --explain \
      --profile "$work/fixed.json" -o "$work/split.flagos" >"$work/explain.txt" 2>&1; then
    fail "compile --sla: $(cat "$work/explain.txt")"
  fi
  checks=$((checks + 1))
  grep -q "^device opencl:0" "$work/explain.txt" && grep -qE "cross-device copies: [1-9]" "$work/explain.txt" &&
    grep -q "predicted totals" "$work/explain.txt" || fail "explain: $(cat "$work/explain.txt")"
  checks=$((checks + 1))
  if ! python3 - "$work/split.flagos" <<'PY'; then
import json, struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89FLAGOS\n"
toc, count, esize = struct.unpack_from("<Q", b, 24)[0], struct.unpack_from("<I", b, 32)[0], struct.unpack_from("<I", b, 36)[0]
secs = {}
for i in range(count):
    e = toc + i * esize
    name = b[e:e + 32].rstrip(b"\0").decode()
    off, size = struct.unpack_from("<QQ", b, e + 32)
    secs[name] = b[off:off + size]
plan, man = json.loads(secs["plan"]), json.loads(secs["manifest"])
assert json.loads(secs["sla"])["devices"]["cpu"]["memory_limit_mb"] == 0.001
assert man["plan"] == {"section": "plan", "sla": "sla"}, man.get("plan")
assert plan["format"] == 1 and plan["devices"] == ["cpu:0", "opencl:0"] and plan["mode"] == "latency"
groups = [n["group"] for n in man["nodes"] if not n.get("host")]
assert [g["group"] for g in plan["groups"]] == groups, plan["groups"]
assert [g["node"] for g in plan["groups"]] == sorted(g["node"] for g in plan["groups"])
devs = {g["group"]: g["device"] for g in plan["groups"]}
assert devs["n0_MatMulBias"] == 1, devs      # its 2 KB of weights do not fit in 1 KB
assert set(devs.values()) == {0, 1}, devs     # and the rest is cheaper on the cpu
assert plan["predicted"]["memory_bytes"][0] <= 1048.576, plan["predicted"]
assert plan["predicted"]["transfer_bytes"] > 0
PY
    fail "plan section of split.flagos"
  fi
  # The bundle runs its plan (without --device: fc1 on opencl, the rest on the
  # cpu, as FLAGOS_TRACE shows), on one device with --device, and placed again
  # at run time with --sla; each gives the example's output.
  same() { python3 -c "import sys, numpy as np; sys.exit(0 if np.allclose(np.load('$1/y.npy'), np.load('$src/examples/mlp_expected.npy'), rtol=1e-4, atol=1e-5) else 1)"; }
  checks=$((checks + 1))
  FLAGOS_TRACE=1 "$flagos" run "$work/split.flagos" --input "x=$src/examples/mlp_input.npy" --output-dir "$work/out" \
    >"$work/run.txt" 2>&1 && same "$work/out" || fail "run of the planned bundle: $(tail -3 "$work/run.txt")"
  checks=$((checks + 1))
  [ "$(grep -c 'runs on slot 1' "$work/run.txt")" = 1 ] && [ "$(grep -c 'runs on slot 0' "$work/run.txt")" = 2 ] ||
    fail "the planned run did not follow the plan: $(grep 'runs on slot' "$work/run.txt")"
  for dev in cpu opencl; do
    checks=$((checks + 1))
    FLAGOS_TRACE=1 "$flagos" run "$work/split.flagos" --device $dev --input "x=$src/examples/mlp_input.npy" \
      --output-dir "$work/out_$dev" >"$work/run_$dev.txt" 2>&1 && same "$work/out_$dev" &&
      ! grep -q 'runs on slot' "$work/run_$dev.txt" || fail "run --device $dev of the planned bundle"
  done
  checks=$((checks + 1))
  "$flagos" compile "$src/examples/mlp.onnx" --targets cpu,opencl -o "$work/both.flagos" >/dev/null 2>&1 &&
    cp "$work/fixed.json" "$FLAGOS_CACHE_DIR/profiles.json" &&
    FLAGOS_TRACE=1 "$flagos" run "$work/both.flagos" --sla "$work/split.json" --input "x=$src/examples/mlp_input.npy" \
      --output-dir "$work/out_sla" >"$work/run_sla.txt" 2>&1 && same "$work/out_sla" &&
    grep -q 'runs on slot 1' "$work/run_sla.txt" || fail "run --sla: $(tail -3 "$work/run_sla.txt")"
  expect_fail "run --sla unmeetable" "the SLA cannot be met" -- \
    "$flagos" run "$work/both.flagos" --sla "$work/fast.json" --input "x=$src/examples/mlp_input.npy"
fi

expect_fail "unmeetable latency" "the SLA cannot be met: max_latency_ms = 1e-06 but the best achievable latency is [0-9.e+-]+ ms" -- \
  "$flagos" compile "$src/examples/mlp.onnx" --targets "$targets" --sla "$work/fast.json" -o "$work/x.flagos"
echo '{"max_avg_power_w": 0.001}' >"$work/cool.json"
expect_fail "unmeetable power" "max_avg_power_w = 0.001 but the best achievable average power is [0-9.e+-]+ W" -- \
  "$flagos" compile "$src/examples/mlp.onnx" --targets "$targets" --sla "$work/cool.json" -o "$work/x.flagos"
echo '{"mode": "fastest"}' >"$work/bad.json"
expect_fail "bad SLA" "bad.json: field 'mode' must be" -- \
  "$flagos" compile "$src/examples/mlp.onnx" --sla "$work/bad.json" -o "$work/x.flagos"
expect_fail "missing SLA" "cannot open '$work/none.json'" -- \
  "$flagos" compile "$src/examples/mlp.onnx" --sla "$work/none.json" -o "$work/x.flagos"
expect_fail "explain without sla" "--explain and --profile need --sla" -- \
  "$flagos" compile "$src/examples/mlp.onnx" --explain -o "$work/x.flagos"
checks=$((checks + 1))
[ ! -e "$work/x.flagos" ] || fail "a failed compile left $work/x.flagos"

# The schema agrees with the parser on these files (where Python has jsonschema).
if python3 -c "import jsonschema" 2>/dev/null; then
  checks=$((checks + 1))
  python3 - "$src/docs/sla.schema.json" "$work" <<'PY' || fail "docs/sla.schema.json disagrees with the parser"
import json, os, sys, jsonschema
v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
w = sys.argv[2]
for ok in ("split.json", "fast.json", "cool.json"):
    if os.path.exists(os.path.join(w, ok)):
        errs = list(v.iter_errors(json.load(open(os.path.join(w, ok)))))
        assert not errs, (ok, errs)
assert list(v.iter_errors(json.load(open(os.path.join(w, "bad.json"))))), "bad.json passes the schema"
for bad in ({"max_latency_ms": -1}, {"objective": {"lamda": 1}}, {"devices": {"cpu": {"price": 1}}}, {"forbidden": "cpu"}):
    assert list(v.iter_errors(bad)), bad
PY
fi

echo "$checks checks, $fails failures"
[ $fails -eq 0 ]
