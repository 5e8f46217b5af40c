# akcb-tokenize (issue 4): JSON in, JSON out over the tokenizer and chat templates. It links the
# torch-free tokenizer objects only.
if(TARGET akcb_tokenizer)
  find_package(nlohmann_json 3 REQUIRED)
  add_executable(akcb-tokenize ${CMAKE_CURRENT_LIST_DIR}/akcb_tokenize.cpp)
  target_link_libraries(akcb-tokenize PRIVATE akcb_tokenizer nlohmann_json::nlohmann_json)
  target_include_directories(akcb-tokenize PRIVATE ${AKCB_CLI11_INCLUDE})
  install(TARGETS akcb-tokenize)
endif()
