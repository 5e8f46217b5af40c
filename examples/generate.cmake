# akcb-generate: text generation on the adaptive KV cache (issue 3).
find_package(nlohmann_json 3 REQUIRED)
add_executable(akcb-generate ${CMAKE_CURRENT_LIST_DIR}/akcb_generate.cpp)
target_link_libraries(akcb-generate PRIVATE akcb::models nlohmann_json::nlohmann_json)
target_include_directories(akcb-generate PRIVATE ${AKCB_CLI11_INCLUDE})
target_compile_options(akcb-generate PRIVATE -Wall -Wextra -Wno-unused-parameter)
install(TARGETS akcb-generate RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
