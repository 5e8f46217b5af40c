# akcb-generate: text generation on the adaptive KV cache (issue 3).
find_package(nlohmann_json 3 REQUIRED)
akcb_add_cli(akcb-generate ${CMAKE_CURRENT_LIST_DIR}/akcb_generate.cpp akcb::models)
