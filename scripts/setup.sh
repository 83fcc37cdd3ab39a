#!/usr/bin/env bash
# Installs what FlagOS needs on Debian 12 (bookworm): build tools and the Debian
# packages it links against, plus the Python packages the tests use as
# independent references. Safe to run again: it installs only what is missing.
set -euo pipefail

debs=(build-essential cmake ninja-build pkg-config python3 python3-pip
      libprotobuf-c-dev protobuf-c-compiler libonnx-dev libcjson-dev
      libopenblas-dev zlib1g-dev libglpk-dev
      libjpeg62-turbo-dev libpng-dev libtiff-dev libwebp-dev libopenjp2-7-dev
      openmpi-bin libopenmpi-dev pocl-opencl-icd ocl-icd-opencl-dev opencl-headers
      libclblast-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Test-only references (ONNX's Python package reads models for the import tests).
if [ "${FLAGOS_SKIP_PIP:-0}" != 1 ]; then
  py_missing=()
  for m in onnx numpy; do
    python3 -c "import $m" 2>/dev/null || py_missing+=("$m")
  done
  if [ ${#py_missing[@]} -gt 0 ]; then
    echo "setup: pip installing ${py_missing[*]}"
    python3 -m pip install -q "${py_missing[@]}" 2>/dev/null \
      || python3 -m pip install -q --break-system-packages "${py_missing[@]}"
  fi
  # The model suite exports from PyTorch and compares with ONNX Runtime. PyPI's torch
  # brings CUDA wheels (about 3 GB to download, 5 GB installed); only PyPI is reachable here.
  req="$(dirname "$0")/../tests/models/requirements.txt"
  if ! python3 -c "import torch, torchvision, onnx, onnxruntime" 2>/dev/null; then
    echo "setup: pip installing the model suite's references (torch: ~3 GB download)"
    python3 -m pip install -q --no-cache-dir -r "$req" 2>/dev/null \
      || python3 -m pip install -q --no-cache-dir --break-system-packages -r "$req"
  fi
fi
echo "setup: done"
