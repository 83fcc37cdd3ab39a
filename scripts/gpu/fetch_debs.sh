#!/usr/bin/env bash
# Fetches what scripts/gpu/run.sh needs on a GPU machine without a package
# registry, into .debs/ (git-ignored; carry it to the machine): the Debian
# packages FlagOS builds and links against (downloaded with apt-get download,
# not installed) and the ONNX node tests as one tarball. Run on Debian 12 or a
# close relative with a reachable registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .debs
cd .debs
apt-get download libprotobuf-c1 libprotobuf-c-dev protobuf-c-compiler libprotoc32 libprotobuf32 \
  libcjson1 libcjson-dev libonnx-dev zlib1g zlib1g-dev libopenblas0-pthread libopenblas-pthread-dev \
  libgfortran5 libquadmath0 pkgconf-bin libpkgconf3 pkgconf
conf=${FLAGOS_CONFORMANCE_DIR:-../../shared/conformance}
if [ -d "$conf/onnx-node" ]; then
  tar -cJf onnx-node.tar.xz -C "$conf" onnx-node $( [ -d "$conf/onnx-simple" ] && echo onnx-simple )
fi
du -sh .
