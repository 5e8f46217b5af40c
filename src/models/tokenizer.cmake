# Tokenizer and chat templates (issue 4). Torch-free: compiled once as an object library that
# akcb_models takes in and that the tokenizer tests, the benchmark and akcb-tokenize link directly
# (so they build while the rest of akcb_models is in progress).
add_library(akcb_tokenizer OBJECT
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chat_template.cpp)
target_include_directories(akcb_tokenizer PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>)
target_compile_features(akcb_tokenizer PUBLIC cxx_std_17)
target_link_libraries(akcb_tokenizer PUBLIC nlohmann_json::nlohmann_json PkgConfig::PCRE2 PkgConfig::UTF8PROC)
target_compile_options(akcb_tokenizer PRIVATE -Wall -Wextra -Wno-unused-parameter)
target_sources(akcb_models PRIVATE $<TARGET_OBJECTS:akcb_tokenizer>)
