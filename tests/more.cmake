# ONNX conformance through the flagos command line, against the expected-failures
# list of the cpu target: a test not listed must pass, a listed test must fail.
set(CONF_LIST ${CMAKE_CURRENT_SOURCE_DIR}/conformance)
add_test(NAME conformance_node_cpu
  COMMAND $<TARGET_FILE:flagos_cli> conformance ${FLAGOS_CONFORMANCE_DIR}/onnx-node --target cpu
          --expected-failures ${CONF_LIST}/onnx-node.cpu.expected-failures
          --report ${CMAKE_BINARY_DIR}/conformance-node-cpu.json)
add_test(NAME conformance_simple_cpu
  COMMAND $<TARGET_FILE:flagos_cli> conformance ${FLAGOS_CONFORMANCE_DIR}/onnx-simple --target cpu
          --expected-failures ${CONF_LIST}/onnx-simple.cpu.expected-failures
          --report ${CMAKE_BINARY_DIR}/conformance-simple-cpu.json)
set_tests_properties(conformance_node_cpu conformance_simple_cpu PROPERTIES
  LABELS "conformance" TIMEOUT 3600 RUN_SERIAL TRUE
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")
# Under the sanitizers, a sample of the suite (all 1,802 tests take too long there):
# the tests of the most used operators.
add_test(NAME conformance_sample_cpu
  COMMAND $<TARGET_FILE:flagos_cli> conformance ${FLAGOS_CONFORMANCE_DIR}/onnx-node --target cpu
          --filter _add --filter _relu --filter _matmul --filter _reshape --filter _transpose
          --filter _reduce_sum --filter _softmax --filter _conv --filter _gather --filter _slice --filter _cast
          --expected-failures ${CONF_LIST}/onnx-node.cpu.expected-failures)
set_tests_properties(conformance_sample_cpu PROPERTIES LABELS "conformance-sample" TIMEOUT 3600 RUN_SERIAL TRUE
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")

# --filter matches in any case: "RELU" finds test_relu (none before).
add_test(NAME conformance_filter_case
  COMMAND $<TARGET_FILE:flagos_cli> conformance ${FLAGOS_CONFORMANCE_DIR}/onnx-node --target cpu --filter TEST_RELU
          --expected-failures ${CONF_LIST}/onnx-node.cpu.expected-failures)
set_tests_properties(conformance_filter_case PROPERTIES LABELS "unit" PASS_REGULAR_EXPRESSION "[1-9][0-9]* passed, 0 failed"
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")

# The command line as a user meets it (errors included).
add_test(NAME cli COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_cli.sh $<TARGET_FILE:flagos_cli> ${PROJECT_SOURCE_DIR}
         ${CMAKE_CURRENT_BINARY_DIR}/cli-work)
set_tests_properties(cli PROPERTIES LABELS "unit" ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")
# Placement: calibration, compile --sla/--explain, the plan in the bundle, SLA errors (docs/sla.md).
add_test(NAME cli_partition COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_partition_cli.sh $<TARGET_FILE:flagos_cli>
         ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/cli-partition-work)
set_tests_properties(cli_partition PROPERTIES LABELS "unit" TIMEOUT 300
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")
# compile --tune: measured kernel times and host overhead in the plan (docs/sla.md "Tuning").
add_test(NAME cli_tune COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_tune_cli.sh $<TARGET_FILE:flagos_cli>
         ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/cli-tune-work)
# RUN_SERIAL: it compares a prediction with measured run times, which other
# tests running beside it disturb (on a 16-core GPU machine under ctest -j the
# cpu's medians moved between 2.1 and 7.6 ms).
set_tests_properties(cli_tune PROPERTIES LABELS "unit" TIMEOUT 300 RUN_SERIAL TRUE
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")

# A test of tests/cli that runs the flagos binary: python3 SCRIPT FLAGOS WORK_DIR,
# unit-labelled, 77 meaning skipped (no numpy, onnx or onnxruntime).
function(flagos_cli_test name script work timeout)
  add_test(NAME ${name}
    COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/cli/${script} $<TARGET_FILE:flagos_cli>
            ${CMAKE_CURRENT_BINARY_DIR}/${work})
  set_tests_properties(${name} PROPERTIES LABELS "unit" TIMEOUT ${timeout} SKIP_RETURN_CODE 77
    ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")
endfunction()

# One bundle for cpu, cuda and opencl, run on each device kind present (cpu
# always, opencl through PoCL in CI, cuda on a GPU machine) against ONNX Runtime;
# the absent kinds are reported as skipped (tests/cli/test_three_chips.py).
flagos_cli_test(three_chips test_three_chips.py three-chips 900)

# Attention fusion and the opencl "attention" call against ONNX Runtime: cpu,
# and opencl with and without the call where present (tests/cli/test_attention.py).
flagos_cli_test(attention_fusion test_attention.py attention-fusion 600)

# Activation fusion and the opencl gemm/conv calls with an activation against
# NumPy: cpu, and opencl with the call taken, declined and off where present
# (tests/cli/test_activation.py).
flagos_cli_test(activation_fusion test_activation.py activation-fusion 600)

# Norm fusion and the opencl gemm_norm call (a product, its residual Add and
# LayerNormalization) against NumPy: cpu, and opencl with the call taken over
# K slices and unsplit, declined and off where present (tests/cli/test_norm.py).
flagos_cli_test(norm_fusion test_norm.py norm-fusion 600)

# Real architectures exported from PyTorch at test time, compared with ONNX Runtime (tests/models/README.md).
include(${CMAKE_CURRENT_LIST_DIR}/models/models.cmake)

# Operators without ONNX node tests, checked against ONNX Runtime on random inputs.
add_test(NAME ops_vs_onnxruntime
  COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/ops/test_vs_ort.py $<TARGET_FILE:flagos_cli> ${CMAKE_CURRENT_BINARY_DIR}/ops-vs-ort)
set_tests_properties(ops_vs_onnxruntime PROPERTIES LABELS "unit" ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")

# OpenCL. The unit tests exit 77 (skipped) where the plugin or an OpenCL device is
# missing. Every node test runs on the first OpenCL device (PoCL in CI) against the
# opencl expected-failures list: about 11 minutes on 2 cores with cold caches
# (PoCL compiles every kernel; the runner's batches pay PoCL's start-up once per
# 16 tests). A machine with the plugin but no OpenCL platform skips it.
if(TEST test_opencl_basic)
  set_tests_properties(test_opencl_basic PROPERTIES SKIP_RETURN_CODE 77)
endif()
if(TEST test_opencl_blas)
  set_tests_properties(test_opencl_blas PROPERTIES SKIP_RETURN_CODE 77)
endif()
# The same kernels with the vector form's accesses as vloadN/vstoreN (what the
# plugin builds for devices whose buffers may start on less than 32 bytes).
if(TEST test_opencl_basic)
  add_test(NAME test_opencl_basic_vloadn COMMAND test_opencl_basic)
  set_tests_properties(test_opencl_basic_vloadn PROPERTIES LABELS "unit" SKIP_RETURN_CODE 77
    ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends;FLAGOS_OPENCL_BUILD_OPTIONS=-DFO_VEC_UNALIGNED")
endif()
if(TARGET flagos_backend_opencl)
  add_test(NAME conformance_node_opencl
    COMMAND $<TARGET_FILE:flagos_cli> conformance ${FLAGOS_CONFORMANCE_DIR}/onnx-node --target opencl
            --expected-failures ${CONF_LIST}/onnx-node.opencl.expected-failures
            --report ${CMAKE_BINARY_DIR}/conformance-node-opencl.json)
  set_tests_properties(conformance_node_opencl PROPERTIES
    LABELS "conformance" TIMEOUT 3600 RUN_SERIAL TRUE
    SKIP_REGULAR_EXPRESSION "device opencl:0 does not exist \\(0 device"
    ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")
endif()

# The GEMM benchmark's driver (bench/gpu/gemm_bench.c) on the first OpenCL
# device (PoCL in CI), our kernels forced on: it must run and its host check of
# the outputs must pass for the general and the vector kernel, a transpose, a
# batch with a shared operand, the bias epilogue and the gemm_norm call (its
# normalised rows checked too), queued behind a small gate (skips without a
# device).
add_test(NAME gemm_bench_opencl
  COMMAND $<TARGET_FILE:flagos_gemm_bench> --backend opencl --iters 2 --warmup 1 --gate 64
          37x29x53:a 68x132x40:+ 3x36x20x44:bs+ 2x12x8x20:s 68x132x40:n+ 37x64x40:abn)
set_tests_properties(gemm_bench_opencl PROPERTIES LABELS "unit" SKIP_RETURN_CODE 77
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends;FLAGOS_OPENCL_GEMM=1;FLAGOS_OPENCL_BLAS=1;FLAGOS_CACHE_DIR=${CMAKE_BINARY_DIR}/gemm-bench-cache")

# The attention benchmark's driver (bench/gpu/attn_bench.c) on the first OpenCL
# device (PoCL in CI), the call forced on: every output against attention in
# double on the host, for a padding mask with keys and values in both layouts,
# a causal mask over 200 keys in tiles of 64 (FLAGOS_OPENCL_ATTENTION_TILE), a
# sequence of 9 keys and 7 features, and f16 (skips without a device).
add_test(NAME attn_bench_opencl
  COMMAND $<TARGET_FILE:flagos_attn_bench> --backend opencl --iters 2 --warmup 1 --gate 0
          3x70x70x22:mkv 2x33x200x64:c 2x17x9x7:c 12x128x128x64:m)
add_test(NAME attn_bench_opencl_f16
  COMMAND $<TARGET_FILE:flagos_attn_bench> --backend opencl --iters 2 --warmup 1 --gate 0 --dtype f16
          3x70x70x22:m 2x33x200x64:c)
set_tests_properties(attn_bench_opencl attn_bench_opencl_f16 PROPERTIES LABELS "unit" SKIP_RETURN_CODE 77
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends;FLAGOS_OPENCL_ATTENTION=1;FLAGOS_OPENCL_ATTENTION_TILE=64;FLAGOS_CACHE_DIR=${CMAKE_BINARY_DIR}/attn-bench-cache")
