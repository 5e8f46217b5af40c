#pragma once
/// \file origin.hpp
/// `origin`: eviction only (H2O / SnapKV-like). Kept past tokens are all Original; the ranking
/// is the heavy-hitter score. Unchanged by budget_mode.

#include <akcb/policy/budget.hpp>

namespace akcb::policy {

struct Origin {
  struct Config {};
  static constexpr PolicyKind kKind = PolicyKind::kOrigin;
  static constexpr bool kCompresses = true;
  static constexpr bool kUsesScores = true;
  static constexpr bool kUsesOqRatio = false;

  static LayerBudget budget(CacheConfig const& cfg, double /*origin_ratio*/, TokenBytes) {
    return LayerBudget{cfg.cache_size - cfg.window_size, 0, false};
  }
};

}  // namespace akcb::policy
