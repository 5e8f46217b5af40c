# Tokenizer and chat-template tests (issue 4). The reference fixtures are made at test time by
# tools/tokenizer/make_fixtures.py (HF tokenizers + transformers) in a ctest setup test; the gtest
# cases require it. The test binary is torch-free: it links the akcb_tokenizer objects only.
if(NOT TARGET akcb_tokenizer)
  return()
endif()
find_package(nlohmann_json 3 REQUIRED)

add_test(NAME make_tokenizer_fixtures
  COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/tokenizer/make_fixtures.py
          ${AKCB_FIXTURES_DIR}/tokenizer)
set_tests_properties(make_tokenizer_fixtures PROPERTIES
  FIXTURES_SETUP tokenizer_fixtures LABELS cpu TIMEOUT 600)

add_executable(akcb_tokenizer_tests ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer.cpp)
target_link_libraries(akcb_tokenizer_tests PRIVATE akcb_tokenizer GTest::gtest GTest::gtest_main
  nlohmann_json::nlohmann_json Threads::Threads)
target_compile_definitions(akcb_tokenizer_tests PRIVATE AKCB_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
gtest_discover_tests(akcb_tokenizer_tests
  PROPERTIES LABELS cpu FIXTURES_REQUIRED tokenizer_fixtures
             ENVIRONMENT "AKCB_TOKENIZER_FIXTURES=${AKCB_FIXTURES_DIR}/tokenizer"
  DISCOVERY_TIMEOUT 120)

# akcb-tokenize end to end: the CLI's ids and chat prompts equal the fixtures (HF's).
if(TARGET akcb-tokenize)
  add_test(NAME akcb_tokenize_cli
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/tokenizer/check_cli.py
            $<TARGET_FILE:akcb-tokenize> ${AKCB_FIXTURES_DIR}/tokenizer)
  set_tests_properties(akcb_tokenize_cli PROPERTIES
    FIXTURES_REQUIRED tokenizer_fixtures LABELS cpu TIMEOUT 300)
endif()
