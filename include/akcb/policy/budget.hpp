#pragma once
/// \file budget.hpp
/// What every policy computes for a layer: how many past tokens it may hold Original and
/// Quantized (ALGORITHM.md "Policies" and "Budget in bytes").

#include <cstdint>
#include <limits>

#include <akcb/cache/cache_config.hpp>

namespace akcb::policy {

/// Per-layer, per-KV-head budget of the scored past (the window comes on top).
struct LayerBudget {
  int64_t origin_past = 0;  ///< O_l: past tokens that may stay Original
  int64_t quant_past = 0;   ///< past tokens held Quantized (C - W - O_l, or Q_l in bytes mode)
  bool unbounded = false;   ///< `full`: never compress

  /// Most tokens a layer holds per KV head before it compresses: W + O_l + Q_l.
  int64_t held_limit(int64_t window) const {
    return unbounded ? std::numeric_limits<int64_t>::max() : window + origin_past + quant_past;
  }
};

/// Bytes of one token's K and V per KV head: Original (model dtype) and Quantized (payload +
/// two fp32 scales). Position metadata is accounted separately (CacheStats).
struct TokenBytes {
  int64_t original = 0;
  int64_t quantized = 0;
};

/// Q_l of ALGORITHM.md: floor((C - W - O_l) * b_orig / b_quant) in bytes mode, else C - W - O_l.
inline int64_t quant_past_tokens(CacheConfig const& cfg, int64_t origin_past, TokenBytes tb) {
  int64_t const rest = cfg.cache_size - cfg.window_size - origin_past;
  if (cfg.budget_mode == BudgetMode::kTokens) return rest;
  return (rest * tb.original) / tb.quantized;
}

}  // namespace akcb::policy
