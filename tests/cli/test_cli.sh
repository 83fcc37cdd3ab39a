#!/usr/bin/env bash
# End-to-end checks of the flagos command line as a user meets it: every command
# has --help, the example compiles and runs and matches NumPy's output, and bad
# input (missing, truncated or corrupted files, wrong shapes and dtypes,
# unsupported operators, bad options) gives one clear error and a non-zero exit,
# never a crash.
#   test_cli.sh FLAGOS_BINARY SOURCE_DIR WORK_DIR
set -u
flagos=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
fails=0 checks=0

# expect_fail NAME "regex the error must match" -- command...
expect_fail() {
  local name=$1 pattern=$2
  shift 3
  checks=$((checks + 1))
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "FAIL $name: exited 0, expected an error"; fails=$((fails + 1)); return
  fi
  if [ $rc -ge 128 ]; then
    echo "FAIL $name: crashed (exit $rc): $out"; fails=$((fails + 1)); return
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: error does not match /$pattern/: $out"; fails=$((fails + 1)); return
  fi
  if [ "$(grep -c 'error' <<<"$out")" -ne 1 ]; then
    echo "FAIL $name: expected exactly one error line: $out"; fails=$((fails + 1)); return
  fi
}

expect_ok() {
  local name=$1
  shift
  checks=$((checks + 1))
  local out
  if ! out=$("$@" 2>&1); then
    echo "FAIL $name: $out"; fails=$((fails + 1))
  fi
}

for cmd in compile run ir devices conformance profile bench; do
  checks=$((checks + 1))
  if ! "$flagos" "$cmd" --help | grep -q "^usage: flagos $cmd"; then
    echo "FAIL --help of $cmd"; fails=$((fails + 1))
  fi
done
expect_fail "unknown command" "unknown command 'frobnicate'" -- "$flagos" frobnicate
expect_fail "unknown option" "unknown option '--bogus'" -- "$flagos" compile --bogus

# The example, compiled to one file and run; outputs checked against NumPy's.
expect_ok "compile example" "$flagos" compile "$src/examples/mlp.onnx" -o "$work/mlp.flagos"
expect_ok "run example" "$flagos" run "$work/mlp.flagos" --input "x=$src/examples/mlp_input.npy" --output-dir "$work/out"
checks=$((checks + 1))
if ! python3 - "$work/out/y.npy" "$src/examples/mlp_expected.npy" <<'PY'
import sys, numpy as np
got, ref = np.load(sys.argv[1]), np.load(sys.argv[2])
assert got.dtype == ref.dtype and got.shape == ref.shape, (got.dtype, got.shape)
np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
PY
then echo "FAIL example output differs from NumPy"; fails=$((fails + 1)); fi
# The run prints name, dtype and shape of each output, and the time.
checks=$((checks + 1))
out=$("$flagos" run "$work/mlp.flagos" --input "$src/examples/mlp_input.npy")
if ! grep -q "^y: f32\[3,4\]" <<<"$out" || ! grep -q "run time: " <<<"$out"; then
  echo "FAIL run output: $out"; fails=$((fails + 1)); fi

# --shape fixes the symbolic batch dimension; a run with another batch is refused.
expect_ok "compile with --shape" "$flagos" compile "$src/examples/mlp.onnx" -o "$work/mlp3.flagos" --shape x=3x16
python3 -c "import numpy as np; np.save('$work/x5.npy', np.zeros((5,16), np.float32)); np.save('$work/xi.npy', np.zeros((3,16), np.int32)); np.save('$work/x1d.npy', np.zeros((16,), np.float32))"
expect_fail "wrong batch" "input 'x': expected shape \[3,16\], got \[5,16\]" -- "$flagos" run "$work/mlp3.flagos" --input "x=$work/x5.npy"
expect_fail "wrong rank" "input 'x': expected shape \[batch,16\], got \[16\]" -- "$flagos" run "$work/mlp.flagos" --input "x=$work/x1d.npy"
expect_fail "wrong dtype" "input 'x': expected dtype f32, got i32" -- "$flagos" run "$work/mlp.flagos" --input "x=$work/xi.npy"
expect_fail "bad --shape" "--shape x=3x15: dimension 1 is fixed to 16" -- "$flagos" compile "$src/examples/mlp.onnx" -o "$work/bad.flagos" --shape x=3x15
expect_fail "unknown input name" "no input named 'nope'" -- "$flagos" run "$work/mlp.flagos" --input "nope=$work/x5.npy"
expect_fail "missing input" "input 'x' is missing" -- "$flagos" run "$work/mlp.flagos"

# Missing, truncated and corrupted files.
expect_fail "missing model" "cannot open '$work/none.onnx'" -- "$flagos" compile "$work/none.onnx" -o "$work/none.flagos"
head -c 100 "$src/examples/mlp.onnx" > "$work/trunc.onnx"
expect_fail "truncated model" "not a valid ONNX model" -- "$flagos" compile "$work/trunc.onnx" -o "$work/t.flagos"
expect_fail "missing bundle" "no such file|cannot open" -- "$flagos" run "$work/none.flagos"
size=$(stat -c %s "$work/mlp.flagos")
head -c $((size / 2)) "$work/mlp.flagos" > "$work/half.flagos"
expect_fail "truncated bundle" "truncated" -- "$flagos" run "$work/half.flagos" --input "$src/examples/mlp_input.npy"
cp "$work/mlp.flagos" "$work/flip.flagos"
printf '\x55' | dd of="$work/flip.flagos" bs=1 seek=$((size - 100)) conv=notrunc status=none
expect_fail "corrupted bundle" "checksum mismatch" -- "$flagos" run "$work/flip.flagos" --input "$src/examples/mlp_input.npy"
head -c 50 "$src/examples/mlp_input.npy" > "$work/trunc.npy"
expect_fail "truncated npy" "trunc.npy" -- "$flagos" run "$work/mlp.flagos" --input "$work/trunc.npy"
# The bundle being written is never left half-done: a failed compile keeps the old file.
cp "$work/mlp.flagos" "$work/keep.flagos"
expect_fail "failed compile keeps old bundle" "not a valid ONNX model" -- "$flagos" compile "$work/trunc.onnx" -o "$work/keep.flagos"
checks=$((checks + 1))
cmp -s "$work/mlp.flagos" "$work/keep.flagos" || { echo "FAIL old bundle was changed"; fails=$((fails + 1)); }

# An operator FlagOS does not know: the error names op type, domain, opset and node.
python3 - "$work/unsup.onnx" <<'PY'
import sys, onnx
from onnx import helper, TensorProto
n = helper.make_node("FrobnicateOp", ["x"], ["y"], name="frob1", domain="com.example")
g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 3)])
onnx.save(m, sys.argv[1])
PY
expect_fail "unsupported operator" "unsupported operator FrobnicateOp \(domain 'com.example', opset 3\) at node 'frob1'" -- "$flagos" compile "$work/unsup.onnx" -o "$work/u.flagos"

# FlagIR text: print, parse back, print identically; parse errors name line and column.
expect_ok "ir print" sh -c "'$flagos' ir '$src/examples/mlp.onnx' -o '$work/mlp.fir'"
expect_ok "ir round trip" sh -c "'$flagos' ir '$work/mlp.fir' -o '$work/mlp2.fir' && cmp '$work/mlp.fir' '$work/mlp2.fir'"
printf 'flagir 1\ngraph "g" (%%x: f32[2]) -> (%%y: f32[2]) {\n  %%y = Relu(%%x\n}\n' > "$work/bad.fir"
expect_fail "ir parse error" "line 4, col" -- "$flagos" ir "$work/bad.fir"

echo "$((checks - fails)) passed, $fails failed"
[ $fails -eq 0 ]
