#!/usr/bin/env bash
# Builds FlagOS, compiles the example model into one bundle and runs it on the cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
./build/flagos compile examples/mlp.onnx -o build/mlp.flagos
./build/flagos run build/mlp.flagos --input x=examples/mlp_input.npy --output-dir build/example-out
./build/examples/run_model build/mlp.flagos examples/mlp_input.npy examples/mlp_expected.npy
