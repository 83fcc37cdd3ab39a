#!/usr/bin/env bash
# Builds FlagOS on a machine with an NVIDIA GPU and no package registry, then runs
# the cuda conformance run, the same run through NVIDIA's OpenCL platform and the
# unit tests, writing reports to $OUT (default ./out). The benchmark is
# scripts/gpu/bench.sh, FlagCX's GPU checks scripts/gpu/comm.sh.
#
# What the machine lacks comes as Debian packages in .debs/ (fetched beforehand
# on a machine with a registry by scripts/gpu/fetch_debs.sh), unpacked with
# `dpkg -x` into .debs/root — never into / — and used from there: headers and
# pkg-config files for the build, protoc-c and pkg-config through wrappers,
# shared libraries through LD_LIBRARY_PATH. A package the system already provides
# (zlib, pkg-config, protoc-c, onnx.proto) is taken from the system. The ONNX
# node tests come as .debs/onnx-node.tar.xz when ../shared/conformance is absent.
#
# Environment: OUT (reports), FLAGOS_GPU_BUDGET_S (seconds after which optional
# steps are skipped, default 400), FLAGOS_GPU_STAGES (default cuda,opencl,unit),
# FLAGOS_GPU_FILTER (conformance --filter, e.g. test_add), FLAGOS_GPU_TEST_TIMEOUT
# (seconds a unit test may take, default 420: test_opencl_blas builds dozens of
# programs with a cold cache, past 300 s on one H100), FLAGOS_GPU_BUILD (the
# build folder, default build-gpu; bench.sh takes the same variable, so the two
# can share one build in one call).
set -uo pipefail
. "$(dirname "$0")/start.sh"
budget=${FLAGOS_GPU_BUDGET_S:-400}

# ---- the machine, and Debian packages into a prefix ----
. "$repo/scripts/gpu/prefix.sh"

# ---- conformance data ----
conf=$repo/../shared/conformance
if [ ! -d "$conf/onnx-node" ] && [ -f "$repo/.debs/onnx-node.tar.xz" ]; then
  mkdir -p "$conf" 2>/dev/null || conf=$repo/.debs/conformance
  mkdir -p "$conf" && tar -xJf "$repo/.debs/onnx-node.tar.xz" -C "$conf"
fi
say "conformance data: $conf ($(ls "$conf/onnx-node" 2>/dev/null | wc -l) tests)"

# ---- build ----
build=${FLAGOS_GPU_BUILD:-$repo/build-gpu}
jobs=$(nproc)
# The command line and the plugins first; the rest (unit tests) after the
# conformance run, as far as it builds.
# Warnings do not stop this build: the machine's compiler may be newer than CI's
# and warn where CI's does not (CI keeps -Werror).
if ! cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLAGOS_WERROR=OFF "${cmake_args[@]}" >"$out/build.log" 2>&1 ||
  ! ninja -C "$build" -j "$jobs" flagos_cli flagos_backend_cpu flagos_backend_cuda >>"$out/build.log" 2>&1; then
  say "BUILD FAILED (build.log)"
  tail -40 "$out/build.log"
  exit 1
fi
say "built flagos and the plugins in $(elapsed)s"
export FLAGOS_PLUGIN_PATH=$build/backends
"$build/flagos" devices >"$out/devices.txt" 2>&1
say "devices: $(tr '\n' ' ' <"$out/devices.txt")"

stages=,${FLAGOS_GPU_STAGES:-cuda,opencl,unit},
has_stage() { case $stages in *,$1,*) return 0 ;; esac; return 1; }
export FLAGOS_CACHE_DIR=/tmp/flagos-cache
filter=()
[ -n "${FLAGOS_GPU_FILTER:-}" ] && filter=(--filter "$FLAGOS_GPU_FILTER")

# One conformance run: TARGET DEVICE NAME (reports conformance-NAME.{json,txt}).
conformance() {
  local target=$1 device=$2 name=$3 xf=() limit
  [ -f "$repo/tests/conformance/onnx-node.$target.expected-failures" ] &&
    xf=(--expected-failures "$repo/tests/conformance/onnx-node.$target.expected-failures")
  limit=$((budget - $(elapsed) - 30))
  [ $limit -lt 60 ] && limit=60
  timeout "$limit" "$build/flagos" conformance "$conf/onnx-node" --target "$target" --device "$device" -j "$jobs" \
    --timeout 60 "${filter[@]}" "${xf[@]}" --report "$out/conformance-$name.json" >"$out/conformance-$name.txt" 2>&1
  say "$name conformance: $(tail -2 "$out/conformance-$name.txt" | tr '\n' ' ') [$(elapsed)s]"
  grep -E '^(FAIL|UNEXPECTED)' "$out/conformance-$name.txt" | sed -E 's/^FAIL [^:]*: //' | cut -c1-70 | sort | uniq -c |
    sort -rn | head -15 | tee -a "$out/summary.txt"
}

# ---- cuda conformance (kernels launched as users run them: graphs on; FLAGOS_CUDA_SYNC=1 names a failing kernel) ----
has_stage cuda && conformance cuda cuda:0 cuda

# ---- the same through NVIDIA's OpenCL platform ----
if has_stage opencl && [ "$(elapsed)" -lt "$budget" ]; then
  ninja -C "$build" -j "$jobs" flagos_backend_opencl >>"$out/build.log" 2>&1 || say "the opencl plugin did not build"
  gpu_opencl_icd && conformance opencl opencl:0 opencl-nvidia
fi

# ---- unit tests (three_chips among them: one bundle on cpu, cuda and opencl) ----
if has_stage unit && [ "$(elapsed)" -lt "$budget" ]; then
  ninja -C "$build" -j "$jobs" -k 0 >>"$out/build.log" 2>&1 || say "some other targets failed to build (build.log)"
  gpu_opencl_icd >/dev/null 2>&1 || true
  left=$((budget - $(elapsed)))
  timeout "$left" ctest --test-dir "$build" -L unit -j "$jobs" --timeout "${FLAGOS_GPU_TEST_TIMEOUT:-420}" \
    --output-on-failure >"$out/ctest.log" 2>&1
  say "unit tests: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)"
  grep -E "^[0-9]+% tests|\*\*\*Failed|\*\*\*Timeout|Failed  |Not Run|Skipped" "$out/ctest.log" | head -20 | tee -a "$out/summary.txt"
else
  say "unit tests skipped (stages $stages, budget ${budget}s, elapsed $(elapsed)s)"
fi
# Sources NVRTC refused, and ctest's full log, for a closer look.
(cd / && tar -czf "$out/extra.tar.gz" --ignore-failed-read $(ls /tmp/flagos-cache/cuda/*.failed.cu 2>/dev/null | head -20) \
  "$build/Testing/Temporary/LastTest.log" 2>/dev/null)
say "done in $(elapsed)s"
