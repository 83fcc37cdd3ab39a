#!/usr/bin/env bash
# Builds FlagOS on a machine with an NVIDIA GPU and no package registry, then runs
# the cuda conformance run and the unit tests, writing reports to $OUT (default
# ./out).
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
# steps are skipped, default 400), FLAGOS_GPU_SKIP_UNIT=1 (no unit tests),
# FLAGOS_GPU_FILTER (conformance --filter, e.g. test_add).
set -uo pipefail
t_start=$(date +%s)
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
out=${OUT:-$repo/out}
mkdir -p "$out"
budget=${FLAGOS_GPU_BUDGET_S:-400}
elapsed() { echo $(($(date +%s) - t_start)); }
say() { echo "[$(elapsed)s] $*" | tee -a "$out/summary.txt"; }
: >"$out/summary.txt"

# ---- the machine ----
{
  echo "== nvidia-smi"; nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv 2>&1
  echo "== os"; head -2 /etc/os-release
  echo "== tools"
  for t in cc gcc cmake ninja pkg-config pkgconf protoc-c nvcc python3; do
    printf '%-10s %s\n' "$t" "$(command -v $t || echo MISSING)"
  done
  cmake --version | head -1
  echo "== packages the system has"
  for p in libprotobuf-c1 libprotobuf-c-dev protobuf-c-compiler libcjson1 libcjson-dev libonnx-dev zlib1g zlib1g-dev \
           libopenblas0-pthread libopenblas-pthread-dev libgfortran5 pkgconf; do
    printf '%-26s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo -)"
  done
  echo "== headers"; ls /usr/include/zlib.h /usr/include/cjson/cJSON.h /usr/include/protobuf-c/protobuf-c.h \
    /usr/include/onnx/onnx.proto 2>&1
} >"$out/env.txt" 2>&1
say "GPU: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)"

# ---- Debian packages into a prefix ----
pre=$repo/.debs/root
rm -rf "$pre"
mkdir -p "$pre/bin"
have_zlib=0
[ -f /usr/include/zlib.h ] && have_zlib=1
n=0
for f in "$repo"/.debs/*.deb; do
  [ -e "$f" ] || continue
  case "$(basename "$f")" in zlib1g*) [ $have_zlib = 1 ] && continue ;; esac
  dpkg -x "$f" "$pre" && n=$((n + 1))
done
say "unpacked $n Debian packages into $pre (system zlib headers: $have_zlib)"
lib=$pre/usr/lib/x86_64-linux-gnu
find "$pre" -name '*.pc' -exec sed -i -e "s|=/usr/|=$pre/usr/|g" -e "s|=/usr\$|=$pre/usr|" {} +
export PKG_CONFIG_PATH=$lib/pkgconfig:$lib/openblas-pthread/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export LD_LIBRARY_PATH=$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LIBRARY_PATH=$lib:$lib/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}
pkgcfg=$(command -v pkg-config || true)
if [ -z "$pkgcfg" ]; then
  printf '#!/bin/sh\nexec %s "$@"\n' "$pre/usr/bin/pkgconf" >"$pre/bin/pkg-config"
  chmod +x "$pre/bin/pkg-config"
  pkgcfg=$pre/bin/pkg-config
fi
protoc=$(command -v protoc-c || echo "$pre/usr/bin/protoc-c")
proto=/usr/include/onnx/onnx.proto
[ -f $proto ] || proto=$pre/usr/include/onnx/onnx.proto
cmake_args=(-DPKG_CONFIG_EXECUTABLE="$pkgcfg" -DPROTOC_C="$protoc" -DONNX_PROTO="$proto")
[ $have_zlib = 1 ] || cmake_args+=(-DZLIB_ROOT="$pre/usr")

# ---- conformance data ----
conf=$repo/../shared/conformance
if [ ! -d "$conf/onnx-node" ] && [ -f "$repo/.debs/onnx-node.tar.xz" ]; then
  mkdir -p "$conf" 2>/dev/null || conf=$repo/.debs/conformance
  mkdir -p "$conf" && tar -xJf "$repo/.debs/onnx-node.tar.xz" -C "$conf"
fi
say "conformance data: $conf ($(ls "$conf/onnx-node" 2>/dev/null | wc -l) tests)"

# ---- build ----
build=$repo/build-gpu
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

# ---- cuda conformance ----
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
export FLAGOS_CUDA_ARCHS=${FLAGOS_CUDA_ARCHS:-sm_${cc:-90}} # this machine's architecture only: faster compiles
export FLAGOS_CACHE_DIR=/tmp/flagos-cache FLAGOS_CUDA_SYNC=1
filter=()
[ -n "${FLAGOS_GPU_FILTER:-}" ] && filter=(--filter "$FLAGOS_GPU_FILTER")
xf=()
[ -f "$repo/tests/conformance/onnx-node.cuda.expected-failures" ] &&
  xf=(--expected-failures "$repo/tests/conformance/onnx-node.cuda.expected-failures")
dev=()
"$build/flagos" conformance --help 2>&1 | grep -q -- --device && dev=(--device cuda:0)
conf_limit=$((budget - $(elapsed) - 30))
[ $conf_limit -lt 60 ] && conf_limit=60
timeout "$conf_limit" "$build/flagos" conformance "$conf/onnx-node" --target cuda "${dev[@]}" -j "$jobs" --timeout 60 "${filter[@]}" "${xf[@]}" \
  --report "$out/conformance-cuda.json" >"$out/conformance-cuda.txt" 2>&1
say "cuda conformance ($FLAGOS_CUDA_ARCHS): $(tail -1 "$out/conformance-cuda.txt") [$(elapsed)s]"
grep -E '^(FAIL|UNEXPECTED)' "$out/conformance-cuda.txt" | sed -E 's/^FAIL [^:]*: //' | cut -c1-70 | sort | uniq -c |
  sort -rn | head -15 | tee -a "$out/summary.txt"

# ---- unit tests ----
if [ "${FLAGOS_GPU_SKIP_UNIT:-0}" != 1 ] && [ "$(elapsed)" -lt "$budget" ]; then
  ninja -C "$build" -j "$jobs" -k 0 >>"$out/build.log" 2>&1 || say "some other targets failed to build (build.log)"
  left=$((budget - $(elapsed)))
  timeout "$left" ctest --test-dir "$build" -L unit -j "$jobs" --timeout 120 --output-on-failure >"$out/ctest.log" 2>&1
  say "unit tests: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)"
else
  say "unit tests skipped (budget ${budget}s, elapsed $(elapsed)s)"
fi
# Sources NVRTC refused, and ctest's full log, for a closer look.
(cd / && tar -czf "$out/extra.tar.gz" --ignore-failed-read $(ls /tmp/flagos-cache/cuda/*.failed.cu 2>/dev/null | head -20) \
  "$build/Testing/Temporary/LastTest.log" 2>/dev/null)
say "done in $(elapsed)s"
