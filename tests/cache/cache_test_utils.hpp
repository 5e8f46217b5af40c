#pragma once
// Shared helpers of the cache tests: a shadow record of every token appended (full precision)
// and an independent reference attention computed in fp64 from that record.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <akcb/akcb.hpp>

namespace akcb::test {

/// Every K/V row ever appended to one layer, indexed by absolute position.
struct Shadow {
  at::Tensor k, v;  // [B, H_kv, N, D] cache dtype
  void add(at::Tensor const& kn, at::Tensor const& vn) {
    k = k.defined() ? at::cat({k, kn}, 2) : kn.clone();
    v = v.defined() ? at::cat({v, vn}, 2) : vn.clone();
  }
};

/// Rows of the shadow at the positions of `m`'s columns, Quantized columns as
/// dequantize(quantize(original row)) — i.e. what a token quantized once from its own
/// full-precision values must hold.
inline std::pair<at::Tensor, at::Tensor> expected_rows(Shadow const& sh, MaterializedKV const& m, QuantDtype q) {
  at::Tensor pos = m.pos.to(at::kLong);
  at::Tensor idx = pos.clamp_min(0).unsqueeze(-1).expand({-1, -1, -1, sh.k.size(3)});
  at::Tensor k = sh.k.gather(2, idx), v = sh.v.gather(2, idx);
  if (m.n_quant_cols > 0) {
    auto kq = ops::quantize_per_token(k, q);
    auto vq = ops::quantize_per_token(v, q);
    at::Tensor quantized = m.is_quantized().unsqueeze(-1);
    k = at::where(quantized, ops::dequantize_per_token(kq.data, kq.scale, k.scalar_type()), k);
    v = at::where(quantized, ops::dequantize_per_token(vq.data, vq.scale, v.scalar_type()), v);
  }
  at::Tensor hole = (pos < 0).unsqueeze(-1);
  return {k.masked_fill(hole, 0), v.masked_fill(hole, 0)};
}

/// Exact attention in fp64 of q [B, H_q, S, D] (positions qpos [S]) over keys/values
/// [B, H_kv, T, D] with absolute positions kpos [B, H_kv, T] (-1 = absent), GQA by repetition.
inline at::Tensor reference_attention(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v,
                                      at::Tensor const& kpos, at::Tensor const& qpos) {
  int64_t const G = q.size(1) / k.size(1);
  at::Tensor kd = k.to(at::kDouble).repeat_interleave(G, 1), vd = v.to(at::kDouble).repeat_interleave(G, 1);
  at::Tensor logits = at::matmul(q.to(at::kDouble), kd.transpose(2, 3)) / std::sqrt(double(q.size(3)));
  at::Tensor kp = kpos.to(at::kLong).repeat_interleave(G, 1).unsqueeze(2);  // [B, H_q, 1, T]
  at::Tensor allowed = (kp >= 0) & (kp <= qpos.to(at::kLong).view({1, 1, -1, 1}));
  logits = logits.masked_fill(~allowed, -INFINITY);
  return at::matmul(at::softmax(logits, -1), vd);
}

inline CacheConfig small_config(PolicyKind p, int64_t C = 24, int64_t W = 4) {
  CacheConfig c;
  c.policy = p;
  c.cache_size = C;
  c.window_size = W;
  return c;
}

}  // namespace akcb::test

namespace akcb::test {

/// Drives a cache through a prompt (in chunks) and decode steps with random q/k/v, checking
/// after every step that the attention output equals exact fp64 attention over the tokens the
/// cache held at that step (Quantized ones as quantize-once round trips of their own values,
/// at their true positions). Calls `after_step(layer)` after each layer's step.
struct RandomRun {
  int64_t n_layers = 2, batch = 2, n_heads_q = 4, n_heads_kv = 2, head_dim = 16;
  c10::ScalarType dtype = at::kFloat;
  double atol = 2e-5;
  std::vector<Shadow> shadows;
  int64_t steps_checked = 0;

  template <class Cache, class After>
  void run(Cache& cache, std::vector<int64_t> const& chunks, int64_t n_decode, After after_step) {
    run(cache, chunks, n_decode, after_step, [] {});
  }

  /// As above; `after_commit()` runs after each step's commit() (all compressions done).
  template <class Cache, class After, class AfterCommit>
  void run(Cache& cache, std::vector<int64_t> const& chunks, int64_t n_decode, After after_step,
           AfterCommit after_commit) {
    shadows.assign(n_layers, Shadow{});
    std::vector<int64_t> sizes = chunks;
    for (int64_t i = 0; i < n_decode; ++i) sizes.push_back(1);
    for (int64_t S : sizes) {
      int64_t const start = cache.n_processed();
      for (int64_t l = 0; l < n_layers; ++l) {
        // Keys with a shared random direction make attention peaky, so scores are informative.
        // Layers differ in sharpness, so their OQ scores (and `mix` ratios) differ.
        at::Tensor q = (at::randn({batch, n_heads_q, S, head_dim}) * (0.5 + 1.5 * l)).to(dtype);
        at::Tensor k = (at::randn({batch, n_heads_kv, S, head_dim}) * (1 + 2 * at::rand({batch, n_heads_kv, S, 1})))
                           .to(dtype);
        at::Tensor v = at::randn({batch, n_heads_kv, S, head_dim}).to(dtype);
        MaterializedKV pre = cache.materialize(l);
        shadows[l].add(k, v);
        auto [kr, vr] = expected_rows(shadows[l], pre, cache.config().quant_dtype);
        at::Tensor newpos = at::arange(start, start + S, at::kInt).view({1, 1, S}).expand({batch, n_heads_kv, S});
        at::Tensor kpos = at::cat({pre.pos, newpos}, 2);
        at::Tensor kall = at::cat({kr, k}, 2), vall = at::cat({vr, v}, 2);
        at::Tensor qpos = at::arange(start, start + S, at::kLong);
        at::Tensor want = reference_attention(q, kall, vall, kpos, qpos);
        at::Tensor got = cache.attend(l, q, k, v, start);
        ASSERT_EQ(got.sizes(), q.sizes());
        ASSERT_TRUE(at::allclose(got.to(at::kDouble), want, 1e-4, atol))
            << "layer " << l << " step at " << start << " max diff " << (got.to(at::kDouble) - want).abs().max();
        ++steps_checked;
        after_step(l);
      }
      cache.commit();
      after_commit();
    }
  }
};

}  // namespace akcb::test
