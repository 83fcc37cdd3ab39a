#!/usr/bin/env bash
# Builds FlagOS and runs the whole test suite: unit tests and ONNX conformance in a
# normal build, then the unit tests and a conformance sample under AddressSanitizer
# and UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
./scripts/build.sh
ctest --test-dir build --output-on-failure -j "$jobs" -E conformance_sample
if [ "${FLAGOS_SKIP_ASAN:-0}" != 1 ]; then
  FLAGOS_BUILD_DIR=build-asan FLAGOS_BUILD_TYPE=Debug ./scripts/build.sh -DFLAGOS_SANITIZE=ON
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -L "unit|conformance-sample"
fi
