#pragma once
/// \file any_cache.hpp
/// AnyCache: the runtime choice of policy for binaries and model code (STYLE.md: runtime
/// choice only at the edge). A std::variant of the five AdaptiveCache instantiations; each call
/// is one std::visit (a jump table), no virtual calls in the hot path.

#include <variant>

#include <akcb/cache/adaptive_cache.hpp>

namespace akcb {

class AnyCache {
 public:
  using Variant = std::variant<AdaptiveCache<policy::Full>, AdaptiveCache<policy::Window>, AdaptiveCache<policy::Origin>,
                               AdaptiveCache<policy::Quant>, AdaptiveCache<policy::Mix>>;

  /// Builds the cache for cfg.policy. \throws c10::Error on an invalid config or shape.
  AnyCache(CacheConfig const& cfg, CacheShape const& shape) : v_(make(cfg, shape)) {}

  /// \see AdaptiveCache::attend. q [B, H_q, S, D], k/v [B, H_kv, S, D] post-RoPE; returns [B, H_q, S, D].
  at::Tensor attend(int64_t layer, at::Tensor const& q, at::Tensor const& k, at::Tensor const& v, int64_t start_pos) {
    return std::visit([&](auto& c) { return c.attend(layer, q, k, v, start_pos); }, v_);
  }
  void append(int64_t layer, at::Tensor const& k, at::Tensor const& v, int64_t start_pos) {
    std::visit([&](auto& c) { c.append(layer, k, v, start_pos); }, v_);
  }
  MaterializedKV materialize(int64_t layer) const {
    return std::visit([&](auto const& c) { return c.materialize(layer); }, v_);
  }
  void observe(int64_t layer, at::Tensor const& q_obs) {
    std::visit([&](auto& c) { c.observe(layer, q_obs); }, v_);
  }
  void observe_probs(int64_t layer, at::Tensor const& probs) {
    std::visit([&](auto& c) { c.observe_probs(layer, probs); }, v_);
  }
  bool compress(int64_t layer) {
    return std::visit([&](auto& c) { return c.compress(layer); }, v_);
  }
  void commit() {
    std::visit([](auto& c) { c.commit(); }, v_);
  }
  CacheStats stats() const {
    return std::visit([](auto const& c) { return c.stats(); }, v_);
  }
  void shrink_to_fit() {
    std::visit([](auto& c) { c.shrink_to_fit(); }, v_);
  }
  void reset() {
    std::visit([](auto& c) { c.reset(); }, v_);
  }
  int64_t n_processed() const {
    return std::visit([](auto const& c) { return c.n_processed(); }, v_);
  }
  int64_t n_held(int64_t layer) const {
    return std::visit([&](auto const& c) { return c.n_held(layer); }, v_);
  }
  policy::LayerBudget budget(int64_t layer) const {
    return std::visit([&](auto const& c) { return c.budget(layer); }, v_);
  }
  int64_t bytes_budget() const {
    return std::visit([](auto const& c) { return c.bytes_budget(); }, v_);
  }
  CacheConfig const& config() const {
    return std::visit([](auto const& c) -> CacheConfig const& { return c.config(); }, v_);
  }
  CacheShape const& shape() const {
    return std::visit([](auto const& c) -> CacheShape const& { return c.shape(); }, v_);
  }
  PolicyKind policy() const { return config().policy; }
  /// Storage of one layer (read-only), e.g. for tests and memory inspection.
  detail::LayerCache const& layer(int64_t l) const {
    return std::visit([&](auto const& c) -> detail::LayerCache const& { return c.layer(l); }, v_);
  }

  /// The typed cache, for code that wants the compile-time policy back.
  Variant& variant() { return v_; }
  Variant const& variant() const { return v_; }

 private:
  static Variant make(CacheConfig const& cfg, CacheShape const& shape) {
    cfg.validate();
    switch (cfg.policy) {
      case PolicyKind::kFull: return AdaptiveCache<policy::Full>(cfg, shape);
      case PolicyKind::kWindow: return AdaptiveCache<policy::Window>(cfg, shape);
      case PolicyKind::kOrigin: return AdaptiveCache<policy::Origin>(cfg, shape);
      case PolicyKind::kQuant: return AdaptiveCache<policy::Quant>(cfg, shape);
      case PolicyKind::kMix: return AdaptiveCache<policy::Mix>(cfg, shape);
    }
    AKCB_CHECK_VALUE(false, "unknown policy ", static_cast<int>(cfg.policy));
    return AdaptiveCache<policy::Full>(cfg, shape);
  }
  Variant v_;
};

}  // namespace akcb
