# CUDA support. Nothing here needs the CUDA toolkit to build: the cuda target
# opens NVRTC with dlopen when it compiles, and the cuda plugin opens the driver
# (libcuda.so.1) when it loads, reporting zero devices where there is none. When
# the toolkit is found, its NVRTC becomes the first place the compiler looks,
# and the plugin's driver declarations are checked against its cuda.h.
# Include this file after the flagos_codegen target is defined.
option(FLAGOS_CUDA "Build the cuda backend plugin" ON)
set(FLAGOS_CUDA_HEADER_DIR "")
if(FLAGOS_CUDA)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    find_library(FLAGOS_NVRTC_LIBRARY NAMES nvrtc HINTS ${CUDAToolkit_LIBRARY_DIR} NO_CACHE)
    if(FLAGOS_NVRTC_LIBRARY)
      target_compile_definitions(flagos_codegen PRIVATE FLAGOS_NVRTC_DEFAULT="${FLAGOS_NVRTC_LIBRARY}")
      message(STATUS "CUDA ${CUDAToolkit_VERSION}: the cuda target uses NVRTC ${FLAGOS_NVRTC_LIBRARY}")
    else()
      message(STATUS "CUDA ${CUDAToolkit_VERSION} has no NVRTC: the cuda target looks for it at run time")
    endif()
    if(EXISTS "${CUDAToolkit_INCLUDE_DIRS}/cuda.h")
      set(FLAGOS_CUDA_HEADER_DIR "${CUDAToolkit_INCLUDE_DIRS}")
    endif()
  else()
    message(STATUS "CUDA toolkit not found: the cuda plugin is built (it reports zero devices without a driver); "
                   "the cuda target looks for NVRTC at run time (FLAGOS_NVRTC_LIBRARY) and CUDA tests skip")
  endif()
else()
  message(STATUS "FLAGOS_CUDA is OFF: no cuda plugin")
endif()
