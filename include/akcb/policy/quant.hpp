#pragma once
/// \file quant.hpp
/// `quant`: kept past tokens are all Quantized (the window stays Original). In bytes mode the
/// saved bytes buy Q = floor((C - W) * b_orig / b_quant) past tokens: the case O_l = 0 of `mix`.

#include <akcb/policy/budget.hpp>

namespace akcb::policy {

struct Quant {
  struct Config {};
  static constexpr PolicyKind kKind = PolicyKind::kQuant;
  static constexpr bool kCompresses = true;
  static constexpr bool kUsesScores = true;
  static constexpr bool kUsesOqRatio = false;

  static LayerBudget budget(CacheConfig const& cfg, double /*origin_ratio*/, TokenBytes tb) {
    return LayerBudget{0, quant_past_tokens(cfg, 0, tb), false};
  }
};

}  // namespace akcb::policy
