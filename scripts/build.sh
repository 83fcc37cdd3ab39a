#!/usr/bin/env bash
# Configures and builds FlagOS into build/ (or the folder in $FLAGOS_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${FLAGOS_BUILD_DIR:-build}"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="${FLAGOS_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
ninja -C "$dir"
