# Evaluation tasks of akcb-eval (issue 5): retrieval, perplexity, run metrics.
target_sources(akcb_models PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/eval.cpp
)
