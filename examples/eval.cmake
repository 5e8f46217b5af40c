# akcb-eval: the evaluation harness (issue 5).
find_package(nlohmann_json 3 REQUIRED)
akcb_add_cli(akcb-eval ${CMAKE_CURRENT_LIST_DIR}/akcb_eval.cpp akcb::models)
