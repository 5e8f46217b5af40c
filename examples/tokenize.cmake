# akcb-tokenize (issue 4): JSON in, JSON out over the tokenizer and chat templates. It links the
# torch-free tokenizer objects only.
if(TARGET akcb_tokenizer)
  find_package(nlohmann_json 3 REQUIRED)
  akcb_add_cli(akcb-tokenize ${CMAKE_CURRENT_LIST_DIR}/akcb_tokenize.cpp akcb_tokenizer)
endif()
