# Options of the AKCB build. Each defaults to what a top-level developer build wants.
include(CheckLanguage)

option(AKCB_BUILD_TESTS "Build the GoogleTest suite" ${PROJECT_IS_TOP_LEVEL})
option(AKCB_BUILD_EXAMPLES "Build the generation / evaluation binaries" ${PROJECT_IS_TOP_LEVEL})
option(AKCB_BUILD_MODELS "Build akcb::models (HF config, safetensors, tokenizer, Llama 3 / Qwen 3)" ON)
option(AKCB_BUILD_BENCHMARKS "Build Google Benchmark programs under tests/bench" OFF)
option(AKCB_BUILD_FUZZERS "Build libFuzzer targets (needs clang)" OFF)

# CUDA: on when nvcc is found; the LibTorch found must be CUDA-enabled as well (checked later).
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_akcb_cuda_default ON)
else()
  set(_akcb_cuda_default OFF)
endif()
option(AKCB_WITH_CUDA "Compile the CUDA kernels (kernels/)" ${_akcb_cuda_default})

if(AKCB_WITH_CUDA AND NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # Never hard-coded in targets: the user passes -DCMAKE_CUDA_ARCHITECTURES=90 for the H200.
  # A CPU-only machine that just checks the kernels compile gets one modern architecture.
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

find_program(AKCB_CCACHE ccache)
if(AKCB_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${AKCB_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${AKCB_CCACHE})
endif()

# akcb_add_test(NAME <name> SOURCES ... LABELS ... [LIBS ...])
# One gtest binary per area; tests are discovered so that ctest lists each case.
function(akcb_add_test)
  cmake_parse_arguments(T "" "NAME" "SOURCES;LABELS;LIBS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE akcb::akcb GTest::gtest GTest::gtest_main fmt::fmt ${T_LIBS})
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_precompile_headers(${T_NAME} REUSE_FROM akcb_pch)
  set_target_properties(${T_NAME} PROPERTIES POSITION_INDEPENDENT_CODE OFF)  # same flags as akcb_pch
  gtest_discover_tests(${T_NAME} PROPERTIES LABELS "${T_LABELS}" DISCOVERY_TIMEOUT 120)
endfunction()
