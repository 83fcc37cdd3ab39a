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
cc -O2 -Wall -Wextra -Werror -I"$root/usr/include" "$repo/bench/gpu/ocl_launch_probe.c" -o /tmp/ocl_launch_probe \
  -L"$lib" -l:libOpenCL.so.1 -lpthread -Wl,-rpath,"$lib" || { say "probe: build failed"; exit 1; }
/tmp/ocl_launch_probe | tee "$out/launch-probe.txt"
cc -O2 -Wall -Wextra -Werror -I"$root/usr/include" "$repo/bench/gpu/ocl_residency_probe.c" -o /tmp/ocl_residency_probe \
  -L"$lib" -l:libOpenCL.so.1 -Wl,-rpath,"$lib" || { say "residency probe: build failed"; exit 1; }
/tmp/ocl_residency_probe "${PLATFORM:-NVIDIA}" | tee "$out/residency-probe.txt"
cc -O2 -Wall -Wextra -Werror -I"$root/usr/include" "$repo/bench/gpu/ocl_local_arg_probe.c" -o /tmp/ocl_local_arg_probe \
  -L"$lib" -l:libOpenCL.so.1 -Wl,-rpath,"$lib" || { say "local argument probe: build failed"; exit 1; }
/tmp/ocl_local_arg_probe "${PLATFORM:-NVIDIA}" | tee "$out/local-arg-probe.txt"
cc -O2 -Wall -Wextra -Werror -I"$root/usr/include" "$repo/bench/gpu/ocl_cluster_probe.c" -o /tmp/ocl_cluster_probe \
  -L"$lib" -l:libOpenCL.so.1 -Wl,-rpath,"$lib" || { say "cluster probe: build failed"; exit 1; }
/tmp/ocl_cluster_probe "${PLATFORM:-NVIDIA}" | tee "$out/cluster-probe.txt"
