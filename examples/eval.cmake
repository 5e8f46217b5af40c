# akcb-eval: the evaluation harness (issue 5).
find_package(nlohmann_json 3 REQUIRED)
add_executable(akcb-eval ${CMAKE_CURRENT_LIST_DIR}/akcb_eval.cpp)
target_link_libraries(akcb-eval PRIVATE akcb::models nlohmann_json::nlohmann_json)
target_include_directories(akcb-eval PRIVATE ${AKCB_CLI11_INCLUDE})
target_compile_options(akcb-eval PRIVATE -Wall -Wextra -Wno-unused-parameter)
install(TARGETS akcb-eval RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
