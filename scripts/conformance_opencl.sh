#!/usr/bin/env bash
# The full ONNX node-test run on the opencl target: every test compiled for opencl
# and run on an OpenCL device (the first one, or the one given: `opencl:1`,
# `opencl:NVIDIA`, `opencl:pthread`), checked against the opencl expected-failures
# list. CI runs it too (tests/more.cmake, conformance_node_opencl). Through
# PoCL with cold caches it costs about 20 CPU-minutes — PoCL compiles every kernel —
# so about 11 minutes on 2 cores (measured: 627 s, 1,789 passed); FlagOS's and
# PoCL's caches make a second run take a minute or two.
# Extra arguments go to `flagos conformance` (-j, --filter, -v, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FLAGOS_BUILD_DIR:-build}
device=${1:-opencl}
shift || true
export FLAGOS_PLUGIN_PATH=$build/backends
exec "$build/flagos" conformance ../shared/conformance/onnx-node --target opencl --device "$device" \
  --expected-failures tests/conformance/onnx-node.opencl.expected-failures \
  --report "$build/conformance-node-opencl.json" "$@"
