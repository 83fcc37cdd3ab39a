# FlagCX tests (tests/comm). Included from tests/CMakeLists.txt; the targets
# flagcx, flagcx_static, flagcx_bench and flagcx_tune come from src/comm.
#   - comm_unit: one process, internal pieces (conversions, reductions, tuning files, errors)
#   - comm_tcp_*: ranks forked by the test over FlagCX's TCP transport
#   - comm_mpi_*: 2 and 4 ranks under mpirun over the MPI transport (host, PoCL OpenCL, mixed)
#   - comm_fault_*: killed, stalled and mismatched ranks must end in errors, never hangs
#   - comm_tool_*: flagcx-bench and flagcx-tune as users run them
set(FLAGCX_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(FLAGCX_SRC_DIR ${CMAKE_CURRENT_LIST_DIR}/../../src/comm ABSOLUTE)
find_package(Threads REQUIRED)
find_package(OpenCL)
find_program(FLAGCX_MPIRUN NAMES mpirun mpiexec)

# Loopback only, no tuning file from the user's cache, and Open MPI allowed as root (CI runs as root).
set(FLAGCX_TEST_ENV "FLAGCX_SOCKET_IFNAME=lo;FLAGCX_TUNE_FILE=none;OMPI_MCA_btl_vader_single_copy_mechanism=none")

add_executable(comm_unit ${FLAGCX_TEST_DIR}/comm_unit.c)
target_link_libraries(comm_unit PRIVATE flagcx_static m)
add_test(NAME comm_unit COMMAND comm_unit ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(comm_unit PROPERTIES LABELS "comm;unit" TIMEOUT 60 ENVIRONMENT "${FLAGCX_TEST_ENV}")

add_executable(comm_fault ${FLAGCX_TEST_DIR}/comm_fault.c)
target_link_libraries(comm_fault PRIVATE flagcx Threads::Threads)

# comm_check drives host and CUDA buffers through FlagCX's own helpers and
# OpenCL buffers (when the ICD loader is installed) through OpenCL itself.
add_executable(comm_check ${FLAGCX_TEST_DIR}/comm_check.c ${FLAGCX_SRC_DIR}/tools/tool_common.c)
target_include_directories(comm_check PRIVATE ${FLAGCX_SRC_DIR}/tools)
target_link_libraries(comm_check PRIVATE flagcx m)
if(OpenCL_FOUND)
  target_compile_definitions(comm_check PRIVATE FLAGCX_TEST_OPENCL)
  target_link_libraries(comm_check PRIVATE OpenCL::OpenCL)
else()
  message(STATUS "FlagCX tests: no OpenCL ICD loader (apt-get install ocl-icd-opencl-dev pocl-opencl-icd); "
                 "OpenCL and mixed checks are not defined")
endif()
set(ALL_ALGOS auto,ring,tree,direct)
add_test(NAME comm_tcp_host_2 COMMAND comm_check --nranks 2 --device host --algos ${ALL_ALGOS})
add_test(NAME comm_tcp_host_4 COMMAND comm_check --nranks 4 --device host --algos ${ALL_ALGOS})
# Ranks started by a launcher that only sets FLAGCX_RANK/NRANKS/ROOT.
add_test(NAME comm_env_host_2 COMMAND ${FLAGCX_TEST_DIR}/env_launch.sh 2 $<TARGET_FILE:comm_check> --device host)
set(comm_tests comm_tcp_host_2 comm_tcp_host_4 comm_env_host_2)
if(OpenCL_FOUND)
  add_test(NAME comm_tcp_mixed_3 COMMAND comm_check --nranks 3 --device opencl,host,host)
  list(APPEND comm_tests comm_tcp_mixed_3)
endif()
if(FLAGCX_MPIRUN AND TARGET flagcx_mpi)
  # Under mpirun with FlagCX's TCP data path (MPI only carries the unique id).
  add_test(NAME comm_mpi_tcp_host_2 COMMAND ${CMAKE_COMMAND} -E env FLAGCX_TRANSPORT=tcp
           ${FLAGCX_MPIRUN} --oversubscribe --allow-run-as-root -np 2 $<TARGET_FILE:comm_check> --device host)
  list(APPEND comm_tests comm_mpi_tcp_host_2)
  foreach(n 2 4)
    foreach(dev host opencl mixed)
      if(NOT dev STREQUAL "host" AND NOT OpenCL_FOUND)
        continue()
      endif()
      set(devs ${dev})
      set(algos auto)
      if(dev STREQUAL "mixed")
        set(devs host,opencl)
      elseif(dev STREQUAL "host")
        set(algos ${ALL_ALGOS})
      endif()
      add_test(NAME comm_mpi_${dev}_${n}
               COMMAND ${FLAGCX_MPIRUN} --oversubscribe --allow-run-as-root -np ${n}
                       $<TARGET_FILE:comm_check> --device ${devs} --algos ${algos})
      list(APPEND comm_tests comm_mpi_${dev}_${n})
    endforeach()
  endforeach()
endif()
set_tests_properties(${comm_tests} PROPERTIES LABELS "comm" TIMEOUT 180 ENVIRONMENT "${FLAGCX_TEST_ENV}")

# Sub-communicators from unique ids broadcast with MPI, and a group over two communicators.
find_package(MPI COMPONENTS C)
if(FLAGCX_MPIRUN AND MPI_C_FOUND AND TARGET flagcx_mpi)
  add_executable(comm_mpi_sub ${FLAGCX_TEST_DIR}/comm_mpi_sub.c)
  target_link_libraries(comm_mpi_sub PRIVATE flagcx MPI::MPI_C)
  add_test(NAME comm_mpi_sub_4 COMMAND ${FLAGCX_MPIRUN} --oversubscribe --allow-run-as-root -np 4
                                       $<TARGET_FILE:comm_mpi_sub>)
  set_tests_properties(comm_mpi_sub_4 PROPERTIES LABELS "comm" TIMEOUT 60 ENVIRONMENT "${FLAGCX_TEST_ENV}")
endif()

set(fault_tests)
foreach(s kill stall mismatch-count mismatch-dtype mismatch-op mismatch-coll mismatch-root abort missing-rank
          bad-device)
  add_test(NAME comm_fault_tcp_${s} COMMAND comm_fault --scenario ${s} --nranks 4 --timeout-ms 2000)
  list(APPEND fault_tests comm_fault_tcp_${s})
endforeach()
if(FLAGCX_MPIRUN AND TARGET flagcx_mpi)
  foreach(s kill stall mismatch-count mismatch-coll abort)
    add_test(NAME comm_fault_mpi_${s}
             COMMAND ${FLAGCX_TEST_DIR}/mpi_fault.sh ${FLAGCX_MPIRUN} 4 60 $<TARGET_FILE:comm_fault> ${s} 2000)
    list(APPEND fault_tests comm_fault_mpi_${s})
  endforeach()
endif()
set_tests_properties(${fault_tests} PROPERTIES LABELS "comm" TIMEOUT 90 ENVIRONMENT "${FLAGCX_TEST_ENV}")

# The tools as users meet them: --help, a checked benchmark, a tuning run whose
# table the library then reads, and --raw-nccl without NCCL (an error, not a crash).
add_test(NAME comm_tool_bench_help COMMAND flagcx_bench --help)
add_test(NAME comm_tool_tune_help COMMAND flagcx_tune --help)
set_tests_properties(comm_tool_bench_help comm_tool_tune_help PROPERTIES PASS_REGULAR_EXPRESSION "usage:")
add_test(NAME comm_tool_bench COMMAND flagcx_bench --nranks 2 -b 8 -e 256K -f 4 -n 2 -w 1 -o all)
set(bench_tests comm_tool_bench)
if(OpenCL_FOUND)
  add_test(NAME comm_tool_bench_mixed COMMAND flagcx_bench --nranks 2 --device host,opencl -b 8 -e 1M -f 8 -n 2 -w 1
                                              -o all -d bfloat16)
  list(APPEND bench_tests comm_tool_bench_mixed)
endif()
set_tests_properties(${bench_tests} PROPERTIES PASS_REGULAR_EXPRESSION
                     "out-of-bounds values: 0 \\(OK\\)" FAIL_REGULAR_EXPRESSION "FAILED|failed")
add_test(NAME comm_tool_raw_nccl COMMAND flagcx_bench --nranks 2 --device cuda --raw-nccl -e 1K -n 1 -w 0)
set_tests_properties(comm_tool_raw_nccl PROPERTIES PASS_REGULAR_EXPRESSION
                     "NCCL is not installed|no CUDA device is visible|out-of-bounds values: 0 \\(OK\\)")
add_test(NAME comm_tool_tune
         COMMAND sh -c "rm -f tune.json && $<TARGET_FILE:flagcx_tune> --nranks 2 --quick -e 64K -n 2 -o tune.json && \
FLAGCX_TUNE_FILE=tune.json $<TARGET_FILE:flagcx_bench> --nranks 2 -e 4K -n 1 -w 0"
         WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(comm_tool_tune PROPERTIES PASS_REGULAR_EXPRESSION "tuning tune.json \\(table for 2 ranks\\)")
set_tests_properties(comm_tool_bench_help comm_tool_tune_help ${bench_tests} comm_tool_raw_nccl
                     comm_tool_tune PROPERTIES LABELS "comm" TIMEOUT 120 ENVIRONMENT "${FLAGCX_TEST_ENV}")
