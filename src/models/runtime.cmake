# akcb::models runtime: HF config, safetensors loader, Llama 3 / Qwen 3 forward, generation loop.
target_sources(akcb_models PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/hf_config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/safetensors.cpp
  ${CMAKE_CURRENT_LIST_DIR}/llama.cpp
  ${CMAKE_CURRENT_LIST_DIR}/generate.cpp
)
