# Sourced by the scripts in scripts/gpu/ after start.sh:
# what they all need to build FlagOS on a GPU machine without a package registry.
# start.sh has set `repo` (the checkout) and `out` (reports) and defined `say MESSAGE`.
#
# Sourcing it writes $out/env.txt (the machine, its tools and packages), unpacks
# what the machine lacks and sets `pre` (the prefix) and the array `cmake_args`.
# What the machine lacks comes as Debian packages in .debs/ (fetched beforehand
# on a machine with a registry by scripts/gpu/fetch_debs.sh), unpacked with
# `dpkg -x` into .debs/root — never into / — and used from there: headers and
# pkg-config files for the build, protoc-c and pkg-config through wrappers,
# shared libraries through LD_LIBRARY_PATH. A package the system already provides
# (zlib, pkg-config, protoc-c, onnx.proto) is taken from the system.
#
# Functions it defines for later steps:
#   gpu_build DIR LOG TARGET.. configures DIR (RelWithDebInfo, warnings not fatal)
#                              and builds the targets; output appended to LOG; on
#                              a failure says so with LOG's tail and returns 1
# and it exports FLAGOS_CUDA_ARCHS, this GPU's architecture only (faster NVRTC
# compiles), unless the caller set it.
#   gpu_opencl_icd             points the OpenCL ICD loader at NVIDIA's platform
#                              (exports OCL_ICD_VENDORS, FLAGOS_OPENCL_LIBRARY)

gpu_env_report() {
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
             libopenblas0-pthread libopenblas-pthread-dev libgfortran5 pkgconf ocl-icd-libopencl1 opencl-c-headers; do
      printf '%-26s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo -)"
    done
    echo "== headers"; ls /usr/include/zlib.h /usr/include/cjson/cJSON.h /usr/include/protobuf-c/protobuf-c.h \
      /usr/include/onnx/onnx.proto /usr/include/CL/cl.h 2>&1
  } >"$1" 2>&1
}

# True when every shared library (by soname) that the package holds is already
# known to the system's loader.
gpu_system_has() {
  local so sonames
  sonames=$(dpkg-deb -c "$1" | grep -oE '/lib[^/ ]*\.so\.[0-9]+( |$)' | tr -d '/ ' | sort -u)
  [ -n "$sonames" ] || return 1
  for so in $sonames; do
    ldconfig -p | awk -v so="$so" '$1 == so { found = 1 } END { exit !found }' || return 1
  done
  return 0
}

gpu_prefix() {
  pre=$repo/.debs/root
  rm -rf "$pre"
  mkdir -p "$pre/bin"
  local have_zlib=0 n=0 f
  [ -f /usr/include/zlib.h ] && have_zlib=1
  for f in "$repo"/.debs/*.deb; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in zlib1g*) [ $have_zlib = 1 ] && continue ;; esac
    # A shared library the system already has (e.g. libgmp, which the system's
    # compiler itself loads) is not shadowed by Debian's build of it.
    case "$(basename "$f")" in lib*-dev_*) ;; lib*) gpu_system_has "$f" && continue ;; esac
    dpkg -x "$f" "$pre" && n=$((n + 1))
  done
  say "unpacked $n Debian packages into $pre (system zlib headers: $have_zlib)"
  local lib=$pre/usr/lib/x86_64-linux-gnu l so sys
  # A -dev package's libX.so of a skipped runtime package points at nothing:
  # point it at the system's copy instead.
  for l in "$lib"/*.so; do
    [ -L "$l" ] && [ ! -e "$l" ] || continue
    so=$(basename "$(readlink "$l")" | sed -E 's/(\.so\.[0-9]+).*/\1/')
    sys=$(ldconfig -p | awk -v so="$so" '$1 == so { print $NF; exit }')
    [ -n "$sys" ] && ln -sf "$sys" "$l"
  done
  find "$pre" -name '*.pc' -exec sed -i -e "s|=/usr/|=$pre/usr/|g" -e "s|=/usr\$|=$pre/usr|" {} +
  export PKG_CONFIG_PATH=$lib/pkgconfig:$lib/openblas-pthread/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LIBRARY_PATH=$lib:$lib/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}
  local pkgcfg protoc proto
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
  # Image codecs (ImageDecoder) the machine lacks: CMake's FindTIFF/FindJPEG look in the prefix too.
  cmake_args+=(-DCMAKE_PREFIX_PATH="$pre/usr" -DCMAKE_LIBRARY_PATH="$lib")
  # The opencl plugin needs only the Khronos headers (opencl-c-headers) to build.
  [ ! -f /usr/include/CL/cl.h ] && [ -f "$pre/usr/include/CL/cl.h" ] && cmake_args+=(-DFLAGOS_OPENCL_INCLUDE="$pre/usr/include")
  return 0
}

# Warnings do not stop this build: the machine's compiler may be newer than CI's
# and warn where CI's does not (CI keeps -Werror).
gpu_build() {
  local dir=$1 log=$2
  shift 2
  cmake -S "$repo" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLAGOS_WERROR=OFF "${cmake_args[@]}" >>"$log" 2>&1 &&
    ninja -C "$dir" -j "$(nproc)" "$@" >>"$log" 2>&1 && return 0
  say "BUILD FAILED ($(basename "$log"))"
  tail -30 "$log"
  return 1
}

# NVIDIA's OpenCL platform is libnvidia-opencl.so.1 from the driver; the ICD
# loader finds it through a .icd file, which the machine may lack (its driver
# folder is mounted, /etc/OpenCL/vendors is not). A file in the prefix names it,
# so only NVIDIA's platform is listed and opencl:0 is the GPU.
gpu_opencl_icd() {
  local nv="" d loader=""
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /lib/x86_64-linux-gnu; do
    [ -e "$d/libnvidia-opencl.so.1" ] && { nv=$d/libnvidia-opencl.so.1; break; }
  done
  [ -z "$nv" ] && nv=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1 /{print $NF; exit}')
  if [ -z "$nv" ]; then
    say "OpenCL: no libnvidia-opencl.so.1 found; the opencl target will see no NVIDIA device"
    return 1
  fi
  mkdir -p "$pre/etc/OpenCL/vendors"
  echo "$nv" >"$pre/etc/OpenCL/vendors/nvidia.icd"
  export OCL_ICD_VENDORS=$pre/etc/OpenCL/vendors OCL_ICD_FILENAMES=$nv
  for d in "$pre/usr/lib/x86_64-linux-gnu" /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libOpenCL.so.1" ] && { loader=$d/libOpenCL.so.1; break; }
  done
  [ -n "$loader" ] && export FLAGOS_OPENCL_LIBRARY=$loader
  say "OpenCL: platform $nv, loader ${loader:-libOpenCL.so.1 (system)}"
}

gpu_env_report "$out/env.txt"
say "GPU: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)"
gpu_cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
export FLAGOS_CUDA_ARCHS=${FLAGOS_CUDA_ARCHS:-sm_${gpu_cc:-90}}
gpu_prefix
