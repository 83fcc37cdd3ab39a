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
  libgfortran5 libquadmath0 pkgconf-bin libpkgconf3 pkgconf \
  libglpk40 libglpk-dev libamd2 libcolamd2 libsuitesparseconfig5 libgmp10 libltdl7
# Image codecs for ImageDecoder (libtiff, libwebp, libopenjp2 and what libtiff links).
apt-get download libtiff-dev libtiff6 libtiffxx6 libwebp-dev libwebp7 libwebpdemux2 libwebpmux3 libopenjp2-7 \
  libopenjp2-7-dev libdeflate0 libdeflate-dev libjbig0 libjbig-dev liblerc4 liblerc-dev libjpeg62-turbo \
  libjpeg62-turbo-dev libzstd-dev liblzma-dev
# OpenCL on NVIDIA (scripts/gpu/bench.sh): the Khronos headers and the ICD loader;
# CLBlast for the opencl plugin's gemm (opened at run time; its header checks ocl_blas.c).
apt-get download opencl-c-headers ocl-icd-libopencl1 libclblast1 libclblast-dev
# CLBlast's tuners (clblast_tuner_xgemm, _xgemm_direct, ...), for FLAGOS_CLBLAST_PARAMS
# files (backends/opencl/README.md); unpacked into the prefix's usr/bin, never needed to build.
apt-get download clblast-utils
conf=${FLAGOS_CONFORMANCE_DIR:-../../shared/conformance}
if [ -d "$conf/onnx-node" ]; then
  tar -cJf onnx-node.tar.xz -C "$conf" onnx-node $( [ -d "$conf/onnx-simple" ] && echo onnx-simple )
fi
du -sh .
