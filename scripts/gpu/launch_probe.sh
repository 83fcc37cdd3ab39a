#!/usr/bin/env bash
# What a kernel launch costs the host through NVIDIA's OpenCL
# (bench/gpu/ocl_launch_probe.c): builds the probe against the carried ICD loader
# and headers (.debs, scripts/gpu/fetch_debs.sh) and runs it; writes
# $OUT/launch-probe.txt; then bench/gpu/ocl_residency_probe.c (work-groups
# resident at once on a multiprocessor), $OUT/residency-probe.txt; then
# bench/gpu/ocl_local_arg_probe.c (local memory a group through a __local
# argument, past the device's listed size), $OUT/local-arg-probe.txt; then
# bench/gpu/ocl_cluster_probe.c (thread-block clusters through OpenCL),
# $OUT/cluster-probe.txt. PLATFORM
# picks the platform by name (default NVIDIA).
set -uo pipefail
. "$(dirname "$0")/start.sh"
. "$repo/scripts/gpu/prefix.sh"
gpu_opencl_icd
root=$repo/.debs/root
lib=$root/usr/lib/x86_64-linux-gnu
# builds bench/gpu/NAME.c warning-free against the carried loader and runs it
# with ARGS, its output into $OUT/FILE
probe() {
  local name=$1 file=$2
  shift 2
  cc -O2 -Wall -Wextra -Werror -I"$root/usr/include" "$repo/bench/gpu/$name.c" -o "/tmp/$name" \
    -L"$lib" -l:libOpenCL.so.1 -lpthread -Wl,-rpath,"$lib" || { say "$name: build failed"; exit 1; }
  "/tmp/$name" "$@" | tee "$out/$file"
}
probe ocl_launch_probe launch-probe.txt
probe ocl_residency_probe residency-probe.txt "${PLATFORM:-NVIDIA}"
probe ocl_local_arg_probe local-arg-probe.txt "${PLATFORM:-NVIDIA}"
probe ocl_cluster_probe cluster-probe.txt "${PLATFORM:-NVIDIA}"
