# Model runtime tests (issue 3): HF config parsing, safetensors validation, the Llama 3 / Qwen 3
# forward against transformers, and generation on every cache policy.
#
# The setup test make_hf_reference creates tiny random checkpoints with transformers'
# save_pretrained (never committed) plus their reference logits and greedy continuations; every
# discovered gtest case of akcb_model_tests requires it (fixture hf_reference).
if(NOT TARGET akcb::models)
  return()
endif()
find_package(nlohmann_json 3 REQUIRED)

set(AKCB_HF_REFERENCE_DIR ${AKCB_FIXTURES_DIR}/hf_reference)
add_test(NAME make_hf_reference
  COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/hf_reference/make_reference.py
          --out ${AKCB_HF_REFERENCE_DIR}
          --bundled ${PROJECT_SOURCE_DIR}/models/tiny-llama3 ${PROJECT_SOURCE_DIR}/models/tiny-qwen3
          --bundled-text ${PROJECT_SOURCE_DIR}/evaldata/heldout_docs.jsonl)
set_tests_properties(make_hf_reference PROPERTIES FIXTURES_SETUP hf_reference LABELS cpu TIMEOUT 600)

akcb_add_test(NAME akcb_model_tests
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/test_runtime_config.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_runtime_safetensors.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_runtime_forward.cpp
  LABELS cpu
  LIBS akcb::models nlohmann_json::nlohmann_json)
target_compile_definitions(akcb_model_tests PRIVATE AKCB_HF_REFERENCE_DIR="${AKCB_HF_REFERENCE_DIR}")

# akcb_add_test discovers the cases at build time, so their names are only known to ctest. This
# include file runs after the discovered list (variable akcb_model_tests_TESTS) and adds the
# fixture requirement to each case.
set(_akcb_rt_fixture_file ${CMAKE_CURRENT_BINARY_DIR}/akcb_model_tests_fixture.cmake)
file(WRITE ${_akcb_rt_fixture_file}
  "foreach(_t IN LISTS akcb_model_tests_TESTS)\n"
  "  set_tests_properties(\"\${_t}\" PROPERTIES FIXTURES_REQUIRED hf_reference)\n"
  "endforeach()\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${_akcb_rt_fixture_file})

# akcb-generate end to end on a fixture checkpoint: token-id prompt, greedy, JSON summary.
if(TARGET akcb-generate)
  add_test(NAME akcb_generate_cli
    COMMAND akcb-generate -m ${AKCB_HF_REFERENCE_DIR}/llama_tied --prompt-ids "5, 17, 42, 99, 7, 3"
            -n 8 --greedy --policy mix --cache-size 8 --window-size 2 --prefill-chunk 4 --json)
  set_tests_properties(akcb_generate_cli PROPERTIES FIXTURES_REQUIRED hf_reference LABELS cpu TIMEOUT 120
    PASS_REGULAR_EXPRESSION "\"stop_reason\": \"(max_new_tokens|eos)\"")
endif()
