#pragma once
/// \file window.hpp
/// `window`: keep the most recent C tokens, all Original (StreamingLLM-like; `sink_tokens`
/// first positions pinned). Unlike the authors' code, which kept only W tokens, this holds C so
/// that it is compared at equal memory (ALGORITHM.md "Fixes").

#include <akcb/policy/budget.hpp>

namespace akcb::policy {

struct Window {
  struct Config {
    int64_t sink_tokens = 0;
  };
  static constexpr PolicyKind kKind = PolicyKind::kWindow;
  static constexpr bool kCompresses = true;
  static constexpr bool kUsesScores = false;   ///< ranks by recency (sinks first), not by attention
  static constexpr bool kUsesOqRatio = false;

  static LayerBudget budget(CacheConfig const& cfg, double /*origin_ratio*/, TokenBytes) {
    return LayerBudget{cfg.cache_size - cfg.window_size, 0, false};
  }
};

}  // namespace akcb::policy
