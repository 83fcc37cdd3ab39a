# The model suite (tests/models/README.md): real architectures exported from
# PyTorch at test time, run through FlagOS on the cpu and compared with ONNX
# Runtime. One ctest test per model, so that ctest -j runs them side by side and
# names the model that fails. Needs the Python packages of
# tests/models/requirements.txt (scripts/setup.sh installs them).
#   included from tests/more.cmake: include(${CMAKE_CURRENT_LIST_DIR}/models/models.cmake)
set(FLAGOS_MODELS_DIR ${CMAKE_CURRENT_LIST_DIR})
find_program(FLAGOS_PYTHON3 NAMES python3 DOC "Python interpreter of the model suite")
set(FLAGOS_MODELS resnet resnet_dynamic_batch mobilenet_v3 vit bert gpt2 lstm unet rwkv detection)
foreach(model ${FLAGOS_MODELS})
  add_test(NAME model_${model}
    COMMAND ${FLAGOS_PYTHON3} ${FLAGOS_MODELS_DIR}/run_models.py ${model}
            --flagos $<TARGET_FILE:flagos_cli> --work-dir ${CMAKE_BINARY_DIR}/models
            --json ${CMAKE_BINARY_DIR}/models/${model}.json)
endforeach()
# The list above must name every model of models.py, and nothing else.
add_test(NAME model_list
  COMMAND ${FLAGOS_PYTHON3} ${FLAGOS_MODELS_DIR}/run_models.py --check-list ${FLAGOS_MODELS}
          --flagos $<TARGET_FILE:flagos_cli> --work-dir ${CMAKE_BINARY_DIR}/models)
list(TRANSFORM FLAGOS_MODELS PREPEND model_ OUTPUT_VARIABLE model_tests)
set_tests_properties(${model_tests} model_list PROPERTIES LABELS "models" TIMEOUT 300
  ENVIRONMENT "FLAGOS_PLUGIN_PATH=${CMAKE_BINARY_DIR}/backends")
