#pragma once
/// \file cache_config.hpp
/// CacheConfig: every option of ALGORITHM.md ("Configuration"), validated.

#include <c10/core/ScalarType.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <akcb/error.hpp>

namespace akcb {

/// Cache policy (ALGORITHM.md "Policies"). Chosen at compile time inside the library
/// (AdaptiveCache<policy::X>); this enum is for the edges (CLI, JSON) only.
enum class PolicyKind { kFull, kWindow, kOrigin, kQuant, kMix };

/// Storage of Quantized tokens.
enum class QuantDtype {
  kFp8E4M3,  ///< fp8 e4m3fn, absmax scaled to 448
  kInt8,     ///< symmetric int8, absmax scaled to 127
};

/// What `cache_size` counts (ALGORITHM.md "Budget in bytes").
enum class BudgetMode {
  kTokens,  ///< C counts held tokens (the authors' semantics)
  kBytes,   ///< C tokens' worth of Original bytes; Quantized tokens are cheaper
};

/// Over which layers the max of the layer OQ scores is taken (ALGORITHM.md "Scores").
enum class RatioScope {
  kRunning,  ///< layers 0..l: each layer compresses right after its own prefill attention
  kGlobal,   ///< all layers: compression waits for AdaptiveCache::commit() after the whole forward
};

/// Full configuration of an adaptive cache. Defaults are the product brief's.
struct CacheConfig {
  PolicyKind policy = PolicyKind::kMix;
  int64_t cache_size = 4096;   ///< C: max retained tokens per layer per KV head (window included)
  int64_t window_size = 128;   ///< W: most recent tokens, always Original, never scored
  int64_t sink_tokens = 0;     ///< `window` policy only: first positions pinned (StreamingLLM)
  double tau1 = 0.1;           ///< temperature of the attention-dispersion (entropy) term
  double tau2 = 0.3;           ///< temperature of the variance term
  double tau3 = 0.6;           ///< temperature of the kurtosis term
  double gamma = 1.0;          ///< weight of the variance term of the heavy-hitter score
  double evict_fraction = 0.25;  ///< share of the scored past dropped at a decode compression
  int64_t pool_kernel = 5;     ///< width of the 1-D average pooling of scores (odd)
  QuantDtype quant_dtype = QuantDtype::kFp8E4M3;
  bool compress = true;        ///< master switch; false behaves like `full`
  BudgetMode budget_mode = BudgetMode::kTokens;
  RatioScope ratio_scope = RatioScope::kRunning;

  /// The authors' tuned setting for Llama-3.1-8B / Qwen3 at C = 512..2048 (ALGORITHM.md).
  static CacheConfig authors_tuned() {
    CacheConfig c;
    c.window_size = 32;
    c.tau1 = 7.774;
    c.tau2 = 5.407;
    c.tau3 = 5.528;
    c.gamma = 263.81;
    return c;
  }

  /// Checks every field. \throws c10::Error naming the field and its value.
  void validate() const {
    AKCB_CHECK_VALUE(window_size >= 1, "CacheConfig.window_size must be >= 1, got ", window_size);
    AKCB_CHECK_VALUE(cache_size > window_size, "CacheConfig.cache_size (", cache_size,
                     ") must be greater than window_size (", window_size, ")");
    AKCB_CHECK_VALUE(sink_tokens >= 0 && sink_tokens < cache_size - window_size,
                     "CacheConfig.sink_tokens must be in [0, cache_size - window_size) = [0, ",
                     cache_size - window_size, "), got ", sink_tokens);
    for (auto [name, v] : {std::pair<char const*, double>{"tau1", tau1}, {"tau2", tau2}, {"tau3", tau3}}) {
      AKCB_CHECK_VALUE(std::isfinite(v) && v > 0, "CacheConfig.", name, " must be finite and > 0, got ", v);
    }
    AKCB_CHECK_VALUE(std::isfinite(gamma) && gamma >= 0, "CacheConfig.gamma must be finite and >= 0, got ", gamma);
    AKCB_CHECK_VALUE(evict_fraction > 0 && evict_fraction < 1,
                     "CacheConfig.evict_fraction must be in (0, 1), got ", evict_fraction);
    AKCB_CHECK_VALUE(pool_kernel >= 1 && pool_kernel % 2 == 1,
                     "CacheConfig.pool_kernel must be odd and >= 1, got ", pool_kernel);
    AKCB_CHECK_VALUE(static_cast<int>(policy) >= 0 && static_cast<int>(policy) <= 4,
                     "CacheConfig.policy has unknown value ", static_cast<int>(policy));
    AKCB_CHECK_VALUE(static_cast<int>(quant_dtype) >= 0 && static_cast<int>(quant_dtype) <= 1,
                     "CacheConfig.quant_dtype has unknown value ", static_cast<int>(quant_dtype));
  }
};

/// Bytes of one stored element of a QuantDtype.
constexpr int64_t quant_elem_bytes(QuantDtype) { return 1; }

/// The ATen dtype that stores a QuantDtype.
inline c10::ScalarType quant_scalar_type(QuantDtype q) {
  switch (q) {
    case QuantDtype::kFp8E4M3: return c10::ScalarType::Float8_e4m3fn;
    case QuantDtype::kInt8: return c10::ScalarType::Char;
  }
  AKCB_CHECK(false, "unknown QuantDtype ", static_cast<int>(q), "; supported: fp8_e4m3, int8");
  return c10::ScalarType::Undefined;
}

// ---- names for the edges (CLI, JSON, logs). Never passed across the op boundary. ----

inline char const* to_string(PolicyKind p) {
  switch (p) {
    case PolicyKind::kFull: return "full";
    case PolicyKind::kWindow: return "window";
    case PolicyKind::kOrigin: return "origin";
    case PolicyKind::kQuant: return "quant";
    case PolicyKind::kMix: return "mix";
  }
  return "?";
}
inline char const* to_string(QuantDtype q) { return q == QuantDtype::kInt8 ? "int8" : "fp8_e4m3"; }
inline char const* to_string(BudgetMode m) { return m == BudgetMode::kBytes ? "bytes" : "tokens"; }
inline char const* to_string(RatioScope s) { return s == RatioScope::kGlobal ? "global" : "running"; }

/// \throws c10::Error listing the accepted names.
inline PolicyKind parse_policy(std::string_view s) {
  for (auto p : {PolicyKind::kFull, PolicyKind::kWindow, PolicyKind::kOrigin, PolicyKind::kQuant, PolicyKind::kMix})
    if (s == to_string(p)) return p;
  AKCB_CHECK_VALUE(false, "unknown policy '", std::string(s), "'; expected one of full, window, origin, quant, mix");
  return PolicyKind::kMix;
}
inline QuantDtype parse_quant_dtype(std::string_view s) {
  if (s == "fp8_e4m3" || s == "fp8") return QuantDtype::kFp8E4M3;
  if (s == "int8") return QuantDtype::kInt8;
  AKCB_CHECK_VALUE(false, "unknown quant_dtype '", std::string(s), "'; expected fp8_e4m3 or int8");
  return QuantDtype::kFp8E4M3;
}
inline BudgetMode parse_budget_mode(std::string_view s) {
  if (s == "tokens") return BudgetMode::kTokens;
  if (s == "bytes") return BudgetMode::kBytes;
  AKCB_CHECK_VALUE(false, "unknown budget_mode '", std::string(s), "'; expected tokens or bytes");
  return BudgetMode::kTokens;
}
inline RatioScope parse_ratio_scope(std::string_view s) {
  if (s == "running") return RatioScope::kRunning;
  if (s == "global") return RatioScope::kGlobal;
  AKCB_CHECK_VALUE(false, "unknown ratio_scope '", std::string(s), "'; expected running or global");
  return RatioScope::kRunning;
}

}  // namespace akcb
