# libFuzzer targets for the tokenizer (issue 4): fuzz_tokenizer_json (tokenizer.json parsing) and
# fuzz_encode (encoding, decoding, chat rendering). Built only with AKCB_BUILD_FUZZERS=ON and clang;
# tools/tokenizer/run_fuzz.sh configures such a build and runs each for a bounded time.
if(NOT AKCB_BUILD_FUZZERS)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(WARNING "AKCB_BUILD_FUZZERS needs clang (libFuzzer); compiler is ${CMAKE_CXX_COMPILER_ID}: no fuzzers")
  return()
endif()
find_package(nlohmann_json 3 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(AKCB_FUZZ_PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(AKCB_FUZZ_UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

foreach(_fuzzer fuzz_tokenizer_json fuzz_encode)
  # The tokenizer sources are compiled again, instrumented, into each fuzzer.
  add_executable(${_fuzzer} ${CMAKE_CURRENT_LIST_DIR}/${_fuzzer}.cpp
    ${PROJECT_SOURCE_DIR}/src/models/tokenizer.cpp
    ${PROJECT_SOURCE_DIR}/src/models/chat_template.cpp)
  target_include_directories(${_fuzzer} PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(${_fuzzer} PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1)
  target_link_options(${_fuzzer} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${_fuzzer} PRIVATE nlohmann_json::nlohmann_json PkgConfig::AKCB_FUZZ_PCRE2 PkgConfig::AKCB_FUZZ_UTF8PROC)
  set_target_properties(${_fuzzer} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz)
endforeach()
