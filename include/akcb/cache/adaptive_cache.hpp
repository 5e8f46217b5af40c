#pragma once
/// \file adaptive_cache.hpp
/// AdaptiveCache<Policy>: a per-layer KV cache held inside a token or byte budget (ALGORITHM.md).
///
/// Plug-in use (one call per attention layer and step, then commit() once per forward):
/// \code
///   akcb::AdaptiveCache<akcb::policy::Mix> cache(cfg, {n_layers, B, H_kv, D, at::kBFloat16, device});
///   at::Tensor out = cache.attend(layer, q, k, v, start_pos);   // q,k post-RoPE
///   ...
///   cache.commit();
/// \endcode
/// Lower level (own attention kernel): append() -> materialize() -> your attention ->
/// observe() (or observe_probs()) -> compress().
///
/// Semantics:
///  - A call with S > 1 new tokens is a prefill chunk: its last w = min(S, W) queries are the
///    observation window; the layer OQ score is (re)computed from them (mix), and a layer over
///    its limit is compressed to exactly its budget. A call with S == 1 is a decode step: the
///    current query observes, and an over-limit layer keeps floor((1 - evict_fraction) * past).
///  - Compression happens after the attention of the step that overflowed, so that step sees
///    every token (as in the authors' prefill).
///  - ratio_scope = global defers prefill compressions to commit(), when every layer's OQ score
///    is known.
/// Thread safety: none (one cache per sequence batch, driven by one thread).

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include <akcb/cache/cache_config.hpp>
#include <akcb/cache/cache_stats.hpp>
#include <akcb/cache/layer_cache.hpp>
#include <akcb/calculator.hpp>
#include <akcb/ops.hpp>
#include <akcb/error.hpp>
#include <akcb/policy/full.hpp>
#include <akcb/policy/mix.hpp>
#include <akcb/policy/origin.hpp>
#include <akcb/policy/policy_traits.hpp>
#include <akcb/policy/quant.hpp>
#include <akcb/policy/window.hpp>
#include <akcb/shapes.hpp>

namespace akcb {

/// Geometry of the cache: fixed for its lifetime.
struct CacheShape {
  int64_t n_layers = 1;     ///< L
  int64_t batch = 1;        ///< B (sequences of equal length)
  int64_t n_heads_kv = 1;   ///< H_kv
  int64_t head_dim = 64;    ///< D
  c10::ScalarType dtype = at::kFloat;      ///< K/V dtype: fp32, bf16 or fp16
  c10::Device device = c10::Device(c10::kCPU);
};

template <class Policy>
class AdaptiveCache {
  static_assert(detail::is_cache_policy_v<Policy>, "Policy does not satisfy the cache-policy interface");

 public:
  using policy_type = Policy;

  /// \throws c10::Error on an invalid config (field and value named) or shape.
  AdaptiveCache(CacheConfig const& cfg, CacheShape const& shape) : cfg_(cfg), shape_(shape) {
    cfg_.validate();
    AKCB_CHECK_VALUE(shape.n_layers >= 1 && shape.batch >= 1 && shape.n_heads_kv >= 1 && shape.head_dim >= 1,
                     "CacheShape must have positive sizes, got n_layers=", shape.n_layers, " batch=", shape.batch,
                     " n_heads_kv=", shape.n_heads_kv, " head_dim=", shape.head_dim);
    AKCB_CHECK_VALUE(shape.dtype == at::kFloat || shape.dtype == at::kBFloat16 || shape.dtype == at::kHalf,
                     "CacheShape.dtype must be fp32, bf16 or fp16, got ", shape.dtype);
    layers_.reserve(shape.n_layers);
    for (int64_t l = 0; l < shape.n_layers; ++l)
      layers_.emplace_back(shape.batch, shape.n_heads_kv, shape.head_dim, shape.dtype, shape.device, cfg.quant_dtype);
    scoring_.resize(shape.n_layers);
  }

  // ---------------------------------------------------------------------------------------
  // Plug-in attention

  /// Appends the new tokens, returns attention of `q` over every held token (Quantized ones
  /// dequantized on the fly), causal by absolute position, GQA, scale 1/sqrt(D); then scores and
  /// compresses this layer per policy.
  /// \param layer     in [0, L)
  /// \param q         [B, H_q, S, D] cache dtype, post-RoPE; H_q a multiple of H_kv
  /// \param k         [B, H_kv, S, D] cache dtype, post-RoPE
  /// \param v         [B, H_kv, S, D] cache dtype
  /// \param start_pos absolute position of the first new token; must equal n_processed(layer)
  /// \returns         [B, H_q, S, D] cache dtype
  /// \throws c10::Error on any mismatch (shapes, dtypes, devices, position, layer); the cache is
  ///         left unchanged then.
  at::Tensor attend(int64_t layer, at::Tensor const& q, at::Tensor const& k, at::Tensor const& v, int64_t start_pos) {
    check_step_(layer, &q, k, v, start_pos);
    detail::LayerCache& lc = layers_[layer];
    lc.append(k, v);
    MaterializedKV m = lc.materialize();
    // materialize() is hole-free and every held key precedes the new chunk, which sits in its last
    // S = q.size(2) columns: causal attention aligned to the bottom right, the same for every head
    // (ops::cache_attention: FlashAttention-2 on CUDA in bf16/fp16, for prefill chunks and decode
    // steps alike; it never goes through at::scaled_dot_product_attention's per-shape backend
    // preparation on CUDA, which measured tens of milliseconds per new key count on the H200).
    at::Tensor out = ops::cache_attention(q, m.k, m.v);
    if (compresses_()) {
      score_(layer, m, q, start_pos);
      if (!defers_(layer)) compress_if_over_(layer);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Lower-level API

  /// Appends k/v (Original) at positions [start_pos, start_pos + S). Shapes as in attend().
  void append(int64_t layer, at::Tensor const& k, at::Tensor const& v, int64_t start_pos) {
    check_step_(layer, nullptr, k, v, start_pos);
    layers_[layer].append(k, v);
    scoring_[layer].pending = false;
  }

  /// Held tokens of `layer`, Quantized ones dequantized. \see MaterializedKV
  MaterializedKV materialize(int64_t layer) const {
    check_layer_(layer);
    return layers_[layer].materialize();
  }

  /// Scores the layer from the observation queries of the last append (the last
  /// w = min(S, W) of them are used): the layer OQ score after a prefill chunk (mix) and, when
  /// the layer is over its limit, the ranking that compress() will use. Call after append().
  /// \param q_obs [B, H_q, S_obs, D] post-RoPE queries of the newest tokens (S_obs >= 1)
  void observe(int64_t layer, at::Tensor const& q_obs) {
    check_layer_(layer);
    ShapeEnv env;
    bind_(env);
    env.check(q_obs, {"B", "H_q", "S", "D"}, "q_obs");
    check_tensor_(q_obs, "q_obs");
    AKCB_CHECK(env["H_q"] % shape_.n_heads_kv == 0, "q_obs has ", env["H_q"], " heads, not a multiple of H_kv = ",
               shape_.n_heads_kv);
    detail::LayerCache const& lc = layers_[layer];
    int64_t const S = std::min(q_obs.size(2), lc.last_append_len());
    AKCB_CHECK(S >= 1, "observe: nothing appended to layer ", layer, " yet");
    at::Tensor q = q_obs.narrow(2, q_obs.size(2) - S, S);
    if (compresses_()) score_(layer, lc.materialize(), q, lc.n_processed() - S);
  }

  /// As observe(), from attention probabilities the caller computed over materialize()'s columns.
  /// \param probs [B, H_q, w, T] fp32: rows of the last w new queries (positions n_processed-w..)
  void observe_probs(int64_t layer, at::Tensor const& probs) {
    check_layer_(layer);
    detail::LayerCache& lc = layers_[layer];
    ShapeEnv env;
    bind_(env);
    env.bind("T", lc.n_held());
    env.check(probs, {"B", "H_q", "w", "T"}, "probs");
    AKCB_CHECK(probs.scalar_type() == at::kFloat, "probs must be fp32, got ", probs.scalar_type());
    AKCB_CHECK(probs.device() == shape_.device, "probs on ", probs.device(), ", cache on ", shape_.device);
    AKCB_CHECK(env["H_q"] % shape_.n_heads_kv == 0, "probs has ", env["H_q"], " heads, not a multiple of H_kv");
    AKCB_CHECK(env["w"] >= 1 && env["w"] <= lc.last_append_len(), "probs has w = ", env["w"],
               " observation rows, but the last append had ", lc.last_append_len(), " tokens");
    if (compresses_()) score_probs_(layer, lc.materialize(), probs, probs.size(2));
  }

  /// Runs work deferred to the end of a forward (global-scope prefill compressions) and resets
  /// the running max of the OQ scores. Call once after all layers of a forward.
  void commit() {
    if (cfg_.ratio_scope == RatioScope::kGlobal) {
      double mx = -std::numeric_limits<double>::infinity();
      for (auto const& s : scoring_)
        if (s.log_oq) mx = std::max(mx, *s.log_oq);
      for (auto& s : scoring_)
        if (s.log_oq) s.ratio = Calculator::origin_ratio(*s.log_oq, mx);
      for (int64_t l = 0; l < n_layers(); ++l) compress_if_over_(l);
    }
    running_max_log_oq_ = -std::numeric_limits<double>::infinity();
  }

  /// Compresses `layer` now if it holds more than its limit, using the ranking of its last
  /// observe() (the window policy ranks by recency and needs none). Returns whether it compressed.
  /// \throws c10::Error if the policy needs scores and none were observed since the last append.
  bool compress(int64_t layer) {
    check_layer_(layer);
    if (!compresses_() || (layers_[layer].n_held() <= held_limit(layer) && !over_bytes_(layer))) return false;
    if constexpr (Policy::kUsesScores) {
      AKCB_CHECK(scoring_[layer].pending, "compress(", layer, "): no scores observed since the last append; call "
                 "observe() or observe_probs() first");
    } else {
      if (!scoring_[layer].pending) rank_(layer, layers_[layer].materialize(), std::nullopt);
    }
    return compress_if_over_(layer);
  }

  // ---------------------------------------------------------------------------------------
  // Budgets, statistics, bookkeeping

  /// The budget of `layer` now (depends on its origin ratio for `mix`).
  policy::LayerBudget budget(int64_t layer) const {
    check_layer_(layer);
    if (!compresses_()) return policy::Full::budget(cfg_, 1.0, token_bytes_());
    return Policy::budget(cfg_, scoring_[layer].ratio, token_bytes_());
  }
  int64_t held_limit(int64_t layer) const { return budget(layer).held_limit(cfg_.window_size); }

  /// Bytes one KV head may hold in a layer (bytes mode) = C * b_orig.
  int64_t bytes_budget() const { return cfg_.cache_size * token_bytes_().original; }

  /// \note synchronizes on CUDA (counts are read from the position tensors).
  CacheStats stats() const {
    CacheStats st;
    st.batch = shape_.batch;
    st.n_heads_kv = shape_.n_heads_kv;
    st.n_processed = n_processed();
    double ratio_sum = 0;
    for (int64_t l = 0; l < n_layers(); ++l) {
      LayerStats s = layers_[l].stats();
      auto const b = budget(l);
      s.origin_ratio = scoring_[l].ratio;
      s.origin_budget = b.unbounded ? -1 : b.origin_past;
      s.quant_budget = b.unbounded ? -1 : b.quant_past;
      s.n_compressions = scoring_[l].n_compressions;
      s.compress_seconds = scoring_[l].compress_seconds;
      LayerStats& t = st.total;
      t.n_original += s.n_original;
      t.n_quantized += s.n_quantized;
      t.n_evicted += s.n_evicted;
      t.bytes_original += s.bytes_original;
      t.bytes_quantized += s.bytes_quantized;
      t.bytes_metadata += s.bytes_metadata;
      t.held_bytes += s.held_bytes;
      t.full_bytes += s.full_bytes;
      t.capacity_bytes += s.capacity_bytes;
      t.n_compressions += s.n_compressions;
      t.compress_seconds += s.compress_seconds;
      ratio_sum += s.origin_ratio;
      st.layers.push_back(s);
    }
    st.total.origin_ratio = ratio_sum / static_cast<double>(n_layers());
    return st;
  }

  /// Releases spare slots of every layer (capacity_bytes then equals the bytes of used slots).
  void shrink_to_fit() {
    for (auto& l : layers_) l.shrink_to_fit();
  }

  /// Forgets every token; keeps the configuration.
  void reset() {
    for (auto& l : layers_) l.reset();
    for (auto& s : scoring_) s = LayerScoring{};
    running_max_log_oq_ = -std::numeric_limits<double>::infinity();
  }

  int64_t n_layers() const { return shape_.n_layers; }
  /// Tokens processed per sequence (the next RoPE position), as seen by layer 0.
  int64_t n_processed() const { return layers_.front().n_processed(); }
  int64_t n_processed(int64_t layer) const {
    check_layer_(layer);
    return layers_[layer].n_processed();
  }
  int64_t n_held(int64_t layer) const {
    check_layer_(layer);
    return layers_[layer].n_held();
  }
  CacheConfig const& config() const { return cfg_; }
  CacheShape const& shape() const { return shape_; }
  detail::LayerCache const& layer(int64_t l) const {
    check_layer_(l);
    return layers_[l];
  }
  /// Log OQ score of a layer from its latest prefill chunk, if any.
  std::optional<double> log_oq_score(int64_t layer) const {
    check_layer_(layer);
    return scoring_[layer].log_oq;
  }

 private:
  struct LayerScoring {
    std::optional<double> log_oq;   // from the latest prefill chunk (mix)
    double ratio = 1.0;             // r_l
    bool pending = false;           // scores held, compression due
    bool pending_prefill = false;
    at::Tensor order;               // [B, H_kv, P] int64 combined columns, position order
    at::Tensor scores;              // [B, H_kv, P] fp32
    int64_t n_compressions = 0;
    double compress_seconds = 0;
  };

  bool compresses_() const { return Policy::kCompresses && cfg_.compress; }

  policy::TokenBytes token_bytes_() const {
    return {layers_.front().orig_token_bytes(), layers_.front().quant_token_bytes()};
  }

  void check_layer_(int64_t layer) const {
    AKCB_CHECK_INDEX(layer >= 0 && layer < n_layers(), "layer index ", layer, " out of range [0, ", n_layers(), ")");
  }
  void check_tensor_(at::Tensor const& t, char const* name) const {
    AKCB_CHECK(t.scalar_type() == shape_.dtype, name, " has dtype ", t.scalar_type(), " but the cache holds ",
               shape_.dtype);
    AKCB_CHECK(t.device() == shape_.device, name, " is on ", t.device(), " but the cache is on ", shape_.device);
  }
  void bind_(ShapeEnv& env) const {
    env.bind("B", shape_.batch).bind("H_kv", shape_.n_heads_kv).bind("D", shape_.head_dim);
  }
  void check_step_(int64_t layer, at::Tensor const* q, at::Tensor const& k, at::Tensor const& v,
                   int64_t start_pos) const {
    check_layer_(layer);
    ShapeEnv env;
    bind_(env);
    env.check(k, {"B", "H_kv", "S", "D"}, "k").check(v, {"B", "H_kv", "S", "D"}, "v");
    check_tensor_(k, "k");
    check_tensor_(v, "v");
    if (q) {
      env.check(*q, {"B", "H_q", "S", "D"}, "q");
      check_tensor_(*q, "q");
      AKCB_CHECK(env["H_q"] % shape_.n_heads_kv == 0, "q has H_q = ", env["H_q"],
                 " heads, not a multiple of H_kv = ", shape_.n_heads_kv);
    }
    AKCB_CHECK(env["S"] >= 1, "no new tokens (S = 0)");
    int64_t const expect = layers_[layer].n_processed();
    AKCB_CHECK(start_pos == expect, "layer ", layer, ": start_pos ", start_pos, " must equal the tokens processed so far (",
               expect, "); positions are absolute and may not go backwards or skip");
  }

  /// A global-scope prefill chunk of `mix` waits for commit(), when all OQ scores are known.
  bool defers_(int64_t layer) const {
    return Policy::kUsesOqRatio && cfg_.ratio_scope == RatioScope::kGlobal && layers_[layer].last_append_len() > 1;
  }

  /// A layer that holds no more than min(C, limit) tokens cannot be over its limit whatever its
  /// ratio turns out to be (bytes-mode limits only grow past C).
  bool maybe_over_(int64_t layer) const {
    return layers_[layer].n_held() > std::min(cfg_.cache_size, held_limit(layer)) || over_bytes_(layer);
  }

  /// Exactly the condition under which compress_if_over_() compresses, with the layer's current
  /// budget: over the token limit W + O_l + Q_l, or (bytes mode) over the bytes.
  bool over_limit_(int64_t layer) const {
    return layers_[layer].n_held() > budget(layer).held_limit(cfg_.window_size) || over_bytes_(layer);
  }

  /// bytes mode: some KV head holds more payload than C * b_orig (possible below the token
  /// limit, since new and unscored tokens are Original).
  bool over_bytes_(int64_t layer) const {
    return cfg_.budget_mode == BudgetMode::kBytes && layers_[layer].max_head_payload_bytes() > bytes_budget();
  }

  /// Scoring after a step whose newest queries are `q` [B, H_q, S, D], at absolute positions
  /// [q_start, q_start + S).
  void score_(int64_t layer, MaterializedKV const& m, at::Tensor const& q, int64_t q_start) {
    detail::LayerCache const& lc = layers_[layer];
    bool const need_oq = Policy::kUsesOqRatio && lc.last_append_len() > 1;
    // After a prefill chunk the layer's limit may still change (global ratio scope: at commit()),
    // so rank whenever it might be over; after a decode step the limit is known, so rank only when
    // compress_if_over_() will compress now. (In bytes mode a layer holds more than C tokens, and
    // ranking it at every decode step cost more than the rest of the step.)
    bool const rank_now = lc.last_append_len() > 1 ? maybe_over_(layer) : over_limit_(layer);
    bool const need_probs = need_oq || (Policy::kUsesScores && rank_now);
    if (!need_probs) {
      if (rank_now) rank_(layer, m, std::nullopt);
      return;
    }
    int64_t const S = q.size(2);
    int64_t const w = std::min(S, cfg_.window_size);
    // The observation window's positions, made only here: a decode step that does not rank needs none.
    at::Tensor qpos = at::arange(q_start + S - w, q_start + S, at::TensorOptions().dtype(at::kLong).device(q.device()));
    at::Tensor probs = Calculator::attention_probs(q.narrow(2, S - w, w), qpos, m.k, m.pos);
    score_probs_(layer, m, probs, w);
  }

  /// Scoring from observation probabilities [B, H_q, w, T] over m's columns. Besides `probs`,
  /// it allocates only slices of bounded size (Calculator::kSliceBytes) and [B, H_kv, T] masks.
  void score_probs_(int64_t layer, MaterializedKV const& m, at::Tensor const& probs, int64_t w) {
    detail::LayerCache const& lc = layers_[layer];
    LayerScoring& sc = scoring_[layer];
    if (Policy::kUsesOqRatio && lc.last_append_len() > 1) {
      // P = A over the keys before the observation window (position < n_processed - w).
      at::Tensor kp = m.pos.to(at::kLong);
      at::Tensor before = (kp >= 0) & (kp < lc.n_processed() - w);                   // [B, H_kv, T]
      // The masked probabilities are never materialized whole: log_oq_score masks per slice.
      double const log_s = Calculator::log_oq_score(probs, before, cfg_.tau1, cfg_.tau2, cfg_.tau3);
      sc.log_oq = log_s;
      if (cfg_.ratio_scope == RatioScope::kRunning) {
        running_max_log_oq_ = std::max(running_max_log_oq_, log_s);
        sc.ratio = Calculator::origin_ratio(log_s, running_max_log_oq_);
      }
    }
    if (maybe_over_(layer)) rank_(layer, m, probs);
  }

  /// Ranks the scored past of m's columns: heavy-hitter scores from `probs` (over m's columns,
  /// scored per slice of KV heads by Calculator::heavy_hitter_at), or recency for `window`; keeps
  /// the ranking in combined-slot terms for compress.
  void rank_(int64_t layer, MaterializedKV const& m, std::optional<at::Tensor> const& probs) {
    detail::LayerCache const& lc = layers_[layer];
    LayerScoring& sc = scoring_[layer];
    auto const t0 = std::chrono::steady_clock::now();
    at::Tensor order = lc.past_order(m.pos, cfg_.window_size);                       // [B, H_kv, P] m's columns
    at::Tensor scores;                                                               // [B, H_kv, P]
    if constexpr (Policy::kUsesScores) {
      AKCB_ASSERT(probs.has_value(), "scores needed but no probabilities");
      // heavy_hitter of probs gathered at `order`, gathered per slice of KV heads so that the
      // [B, H_q, w, P] gather is never whole.
      scores = Calculator::heavy_hitter_at(*probs, order, shape_.n_heads_kv, cfg_.gamma, cfg_.pool_kernel);
    } else {
      // Recency: later positions rank higher; the first sink_tokens positions above everything.
      at::Tensor pos = m.pos.to(at::kLong).gather(2, order);
      at::Tensor sink = pos < cfg_.sink_tokens;
      scores = pos.to(at::kDouble) + sink.to(at::kDouble) * 1e12;  // fp64 keeps positions distinct
    }
    sc.order = m.cols.defined() ? m.cols.gather(2, order) : order;                  // combined slots
    sc.scores = scores;
    sc.pending = true;
    sc.pending_prefill = lc.last_append_len() > 1;
    sc.compress_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  /// Runs the compression prepared by rank_() if the layer is over its limit.
  bool compress_if_over_(int64_t layer) {
    detail::LayerCache& lc = layers_[layer];
    LayerScoring& sc = scoring_[layer];
    if (!sc.pending) return false;
    sc.pending = false;
    auto const b = budget(layer);
    bool const over_tokens = lc.n_held() > b.held_limit(cfg_.window_size);
    if (!over_limit_(layer)) return false;
    auto const t0 = std::chrono::steady_clock::now();
    int64_t const P = sc.order.size(2);
    int64_t keep = P, origin_slots = b.origin_past;
    if (over_tokens) {
      keep = sc.pending_prefill
                 ? b.origin_past + b.quant_past
                 : static_cast<int64_t>(std::floor((1.0 - cfg_.evict_fraction) * static_cast<double>(P)));
    } else {
      // bytes mode, within the token limit but over the bytes: evict nothing, demote Original
      // past tokens beyond the Original budget. P <= O_l + Q_l, so (W + O_l) Original and the
      // rest Quantized fit in C * b_orig. In decode, demote evict_fraction of O_l more, so that
      // the tokens leaving the window do not trigger this again at every step.
      if (!sc.pending_prefill)
        origin_slots -= static_cast<int64_t>(std::ceil(cfg_.evict_fraction * static_cast<double>(b.origin_past)));
    }
    lc.compress(sc.order, sc.scores, std::min(keep, P), std::max<int64_t>(origin_slots, 0), cfg_.window_size);
    // Release the Original block's slack, keeping room for the tokens appended before the next
    // compression (room ~ 1 after a prefill compression, ~ evict_fraction * past after a decode
    // one). In a chunked prefill every layer would otherwise keep its high-water mark (held
    // Original + one chunk) until the end: at 32 layers x 2048 tokens x 4 KiB (Llama-3-8B shape,
    // bf16) that is 0.25 GiB of the peak memory. The next chunk's append reallocates the block
    // (one copy of the held Original tokens of one layer at a time, small against the chunk's
    // forward). Slack below one chunk of kShrinkSlackSlots is kept (no reallocation for it).
    constexpr int64_t kShrinkSlackSlots = 64;
    int64_t const room = std::max<int64_t>(b.held_limit(cfg_.window_size) + 1 - lc.n_held(), 1);
    if (lc.capacity_orig() > lc.used_orig() + room + kShrinkSlackSlots)
      lc.shrink_to_fit(room, lc.capacity_quant() - lc.used_quant());
    sc.order = at::Tensor();
    sc.scores = at::Tensor();
    ++sc.n_compressions;
    sc.compress_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return true;
  }

  CacheConfig cfg_;
  CacheShape shape_;
  std::vector<detail::LayerCache> layers_;
  std::vector<LayerScoring> scoring_;
  double running_max_log_oq_ = -std::numeric_limits<double>::infinity();
};

// Compiled once in src/cache/adaptive_cache.cpp.
extern template class AdaptiveCache<policy::Full>;
extern template class AdaptiveCache<policy::Window>;
extern template class AdaptiveCache<policy::Origin>;
extern template class AdaptiveCache<policy::Quant>;
extern template class AdaptiveCache<policy::Mix>;
}  // namespace akcb
