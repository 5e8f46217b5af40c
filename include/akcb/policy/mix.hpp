#pragma once
/// \file mix.hpp
/// `mix`: the tri-state split. O_l = round(r_l * (C - W)) past tokens stay Original (r_l from
/// the layer OQ score), the rest of the kept past is Quantized: C - W - O_l tokens in tokens
/// mode, floor((C - W - O_l) * b_orig / b_quant) in bytes mode.
/// Composition: the quantized part is exactly Quant's budget rule applied to what O_l leaves.

#include <akcb/calculator.hpp>
#include <akcb/policy/budget.hpp>

namespace akcb::policy {

struct Mix {
  struct Config {};
  static constexpr PolicyKind kKind = PolicyKind::kMix;
  static constexpr bool kCompresses = true;
  static constexpr bool kUsesScores = true;
  static constexpr bool kUsesOqRatio = true;

  static LayerBudget budget(CacheConfig const& cfg, double origin_ratio, TokenBytes tb) {
    int64_t const o = Calculator::origin_budget(origin_ratio, cfg.cache_size, cfg.window_size);
    return LayerBudget{o, quant_past_tokens(cfg, o, tb), false};
  }
};

}  // namespace akcb::policy
