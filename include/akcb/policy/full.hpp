#pragma once
/// \file full.hpp
/// `full`: every token Original, nothing evicted. The baseline of every comparison.

#include <akcb/policy/budget.hpp>

namespace akcb::policy {

struct Full {
  struct Config {};
  static constexpr PolicyKind kKind = PolicyKind::kFull;
  static constexpr bool kCompresses = false;   ///< never evicts or quantizes
  static constexpr bool kUsesScores = false;   ///< needs no heavy-hitter scores
  static constexpr bool kUsesOqRatio = false;  ///< needs no layer OQ score

  static LayerBudget budget(CacheConfig const&, double /*origin_ratio*/, TokenBytes) {
    LayerBudget b;
    b.unbounded = true;
    return b;
  }
};

}  // namespace akcb::policy
