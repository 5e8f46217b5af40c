# akcb-eval harness tests (issue 5): metric and budget helpers, short-context equality with full on
# the bundled tiny-qwen3, and the CLI's skip-on-rerun.
if(NOT TARGET akcb::models)
  return()
endif()
akcb_add_test(NAME akcb_eval_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_eval.cpp
  LABELS cpu
  LIBS akcb::models)
target_compile_definitions(akcb_eval_tests PRIVATE AKCB_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# The CLI end to end on a tiny grid, twice: the second run must take every cell from the first.
if(TARGET akcb-eval)
  add_test(NAME akcb_eval_cli_rerun
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_eval_cli.sh $<TARGET_FILE:akcb-eval> ${PROJECT_SOURCE_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/eval_cli_out)
  set_tests_properties(akcb_eval_cli_rerun PROPERTIES LABELS cpu TIMEOUT 300)
endif()
