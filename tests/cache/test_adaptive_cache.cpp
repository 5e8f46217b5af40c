// AdaptiveCache / AnyCache behaviour: exactness of `full`, masked-attention equality of
// `origin` and `window`, GQA storage, chunked prefill, statistics and error handling.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <akcb/akcb.hpp>

#include "cache/cache_test_utils.hpp"
#include "test_errors.hpp"

namespace {

using namespace akcb;  // NOLINT: test file
using test::RandomRun;

class AdaptiveCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { at::manual_seed(99); }
  CacheShape shape(int64_t L = 2, int64_t B = 2, int64_t Hkv = 2, int64_t D = 16) {
    return CacheShape{L, B, Hkv, D, at::kFloat, c10::Device(c10::kCPU)};
  }
};

TEST_F(AdaptiveCacheTest, FullEqualsPlainSdpaBitForBitInFp32) {
  AdaptiveCache<policy::Full> cache(test::small_config(PolicyKind::kFull), shape(1));
  at::Tensor K, V;
  int64_t pos = 0;
  for (int64_t S : {7, 5, 1, 1, 1, 3, 1}) {
    at::Tensor q = at::randn({2, 4, S, 16}), k = at::randn({2, 2, S, 16}), v = at::randn({2, 2, S, 16});
    K = K.defined() ? at::cat({K, k}, 2) : k;
    V = V.defined() ? at::cat({V, v}, 2) : v;
    at::Tensor got = cache.attend(0, q, k, v, pos);
    int64_t const T = pos + S;
    std::optional<at::Tensor> mask;
    if (S > 1) mask = at::ones({S, T}, at::kBool).tril(T - S);
    at::Tensor want = at::scaled_dot_product_attention(q, K, V, mask, 0.0, false, std::nullopt, true);
    EXPECT_TRUE(at::equal(got, want)) << "S=" << S << " diff " << (got - want).abs().max();
    pos += S;
  }
  EXPECT_EQ(cache.n_held(0), pos);
}

TEST_F(AdaptiveCacheTest, OriginAndWindowEqualMaskedFullAttentionOverManyDecodeSteps) {
  for (PolicyKind p : {PolicyKind::kOrigin, PolicyKind::kWindow}) {
    CacheConfig cfg = test::small_config(p, 24, 4);
    if (p == PolicyKind::kWindow) cfg.sink_tokens = 2;
    AnyCache cache(cfg, shape());
    RandomRun run;
    int64_t compressions_seen = 0;
    run.run(cache, {30, 9}, 60, [&](int64_t l) {
      MaterializedKV m = cache.materialize(l);
      EXPECT_EQ(m.n_quant_cols, 0) << "policy " << to_string(p) << " must never quantize";
      if (p == PolicyKind::kWindow) {
        // Sinks are pinned; the rest is the most recent run of positions.
        at::Tensor pos = std::get<0>(m.pos.sort(-1));
        EXPECT_TRUE((pos.narrow(2, 0, 2) == at::tensor({0, 1}, at::kInt)).all().item<bool>());
      }
    });
    compressions_seen = cache.stats().total.n_compressions;
    EXPECT_GT(compressions_seen, 4) << to_string(p);
    EXPECT_EQ(run.steps_checked, 2 * 62);
  }
}

TEST_F(AdaptiveCacheTest, QuantAndMixAttendOverDequantizedHeldTokens) {
  for (PolicyKind p : {PolicyKind::kQuant, PolicyKind::kMix}) {
    for (BudgetMode bm : {BudgetMode::kTokens, BudgetMode::kBytes}) {
      CacheConfig cfg = test::small_config(p, 24, 4);
      cfg.budget_mode = bm;
      cfg.ratio_scope = RatioScope::kGlobal;  // one of the two layers has r < 1
      AnyCache cache(cfg, shape());
      RandomRun run;
      run.run(cache, {40}, 50, [](int64_t) {});
      auto st = cache.stats();
      EXPECT_GT(st.total.n_quantized, 0) << to_string(p) << " " << to_string(bm);
      EXPECT_GT(st.total.n_evicted, 0);
    }
  }
}

TEST_F(AdaptiveCacheTest, LargeBudgetEqualsFullForEveryPolicy) {
  for (PolicyKind p : {PolicyKind::kWindow, PolicyKind::kOrigin, PolicyKind::kQuant, PolicyKind::kMix}) {
    at::manual_seed(5);
    AnyCache full(test::small_config(PolicyKind::kFull, 1000, 4), shape(1));
    AnyCache other(test::small_config(p, 1000, 4), shape(1));
    int64_t pos = 0;
    for (int64_t S : {17, 1, 1, 1, 8, 1}) {
      at::Tensor q = at::randn({2, 4, S, 16}), k = at::randn({2, 2, S, 16}), v = at::randn({2, 2, S, 16});
      EXPECT_TRUE(at::equal(full.attend(0, q, k, v, pos), other.attend(0, q, k, v, pos))) << to_string(p);
      full.commit();
      other.commit();
      pos += S;
    }
    EXPECT_EQ(other.stats().total.n_quantized, 0);
  }
}

TEST_F(AdaptiveCacheTest, ChunkedPrefillEqualsOneShotForFull) {
  at::Tensor q = at::randn({1, 4, 24, 16}), k = at::randn({1, 2, 24, 16}), v = at::randn({1, 2, 24, 16});
  AnyCache one(test::small_config(PolicyKind::kFull), shape(1, 1));
  AnyCache chunked(test::small_config(PolicyKind::kFull), shape(1, 1));
  at::Tensor a = one.attend(0, q, k, v, 0);
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < 24; s += 5) {
    int64_t n = std::min<int64_t>(5, 24 - s);
    parts.push_back(chunked.attend(0, q.narrow(2, s, n), k.narrow(2, s, n), v.narrow(2, s, n), s));
  }
  EXPECT_TRUE(at::allclose(a, at::cat(parts, 2), 1e-5, 1e-6));
}

TEST_F(AdaptiveCacheTest, GqaStorageHoldsKvHeadsOnly) {
  AdaptiveCache<policy::Mix> cache(test::small_config(PolicyKind::kMix), shape(1, 1, 2, 16));
  at::Tensor q = at::randn({1, 8, 40, 16});  // G = 4
  cache.attend(0, q, at::randn({1, 2, 40, 16}), at::randn({1, 2, 40, 16}), 0);
  auto const& lc = cache.layer(0);
  EXPECT_EQ(lc.k_orig().size(1), 2);
  EXPECT_EQ(lc.k_quant().size(1), 2);
  EXPECT_EQ(lc.k_scale().size(1), 2);
  EXPECT_EQ(cache.materialize(0).k.size(1), 2);
}

// materialize() keeps the hole-squeezing column map from one compression to the next and extends
// it by the appended tokens; at every step it must equal the map rebuilt from scratch (a stable
// sort of the hole flags of all used slots), and the dense tensors the blocks gathered through it.
TEST_F(AdaptiveCacheTest, MaterializeWithCachedColumnsEqualsFreshGather) {
  // The cached map against the map rebuilt from scratch and the dense tensors gathered through it.
  auto check = [](AnyCache const& cache, int64_t l, std::string const& where, int64_t* holes_seen) {
    auto const& lc = cache.layer(l);
    MaterializedKV const m = cache.materialize(l);
    at::Tensor const slot_pos = lc.held_positions();  // [B, H, Uq + Uo]
    at::Tensor cols;
    if (lc.has_holes()) {
      ++*holes_seen;
      cols = std::get<1>((slot_pos < 0).to(at::kByte).sort(true, -1, false)).narrow(2, 0, lc.n_held());
      ASSERT_TRUE(m.cols.defined()) << where;
      ASSERT_TRUE(at::equal(m.cols, cols)) << where;
    }
    ops::HeldBlocks const b{lc.k_orig(),  lc.v_orig(),  lc.pos_orig(),  lc.k_quant(), lc.v_quant(),
                            lc.k_scale(), lc.v_scale(), lc.pos_quant(), lc.used_orig(), lc.used_quant()};
    ops::DenseKV const want = ops::gather_held_tokens(b, cols);
    ASSERT_TRUE(at::equal(m.k, want.k) && at::equal(m.v, want.v) && at::equal(m.pos, want.pos)) << where;
    ASSERT_TRUE((m.pos >= 0).all().item<bool>()) << "a hole reached the dense view; " << where;
  };
  for (PolicyKind p : {PolicyKind::kMix, PolicyKind::kOrigin, PolicyKind::kQuant}) {
    // Four layers: those below the running max OQ score get ratios < 1 and quantize, and their
    // decode compressions leave heads with different Original / Quantized splits (holes).
    int64_t const L = 4;
    AnyCache cache(test::small_config(p, 24, 4), shape(L, 2, 3, 16));
    int64_t pos = 0, holes_seen = 0;
    for (int step = 0; step < 60; ++step) {
      // Decode steps, and every 7th step a chunk of 48 appended through the lower-level API and
      // checked before it is scored: several columns appended at once, more than the map's room
      // after the last compression (its buffer grows).
      int64_t const S = step == 0 ? 40 : step % 7 == 3 ? 48 : 1;
      for (int64_t l = 0; l < L; ++l) {
        at::Tensor const q = at::randn({2, 6, S, 16}), k = at::randn({2, 3, S, 16}), v = at::randn({2, 3, S, 16});
        if (S == 48) {
          cache.append(l, k, v, pos);
          check(cache, l, std::string(to_string(p)) + " step " + std::to_string(step) + " layer " + std::to_string(l) +
                              " after a 48-token append", &holes_seen);
          cache.observe(l, q);
          cache.compress(l);
        } else {
          cache.attend(l, q, k, v, pos);
        }
      }
      cache.commit();
      pos += S;
      for (int64_t l = 0; l < L; ++l)
        check(cache, l, std::string(to_string(p)) + " step " + std::to_string(step) + " layer " + std::to_string(l), &holes_seen);
    }
    if (p == PolicyKind::kMix) EXPECT_GT(holes_seen, 0) << "the scenario never produced holes";
  }
}

TEST_F(AdaptiveCacheTest, LowerLevelApiMatchesAttend) {
  CacheConfig cfg = test::small_config(PolicyKind::kMix, 24, 4);
  AdaptiveCache<policy::Mix> a(cfg, shape(1)), b(cfg, shape(1));
  int64_t pos = 0;
  for (int64_t S : {30, 1, 1, 1, 1, 1, 1, 1}) {
    at::Tensor q = at::randn({2, 4, S, 16}), k = at::randn({2, 2, S, 16}), v = at::randn({2, 2, S, 16});
    at::Tensor out_a = a.attend(0, q, k, v, pos);
    b.append(0, k, v, pos);
    EXPECT_EQ(b.materialize(0).pos.size(2), b.layer(0).used_quant() + b.layer(0).used_orig());
    b.observe(0, q);
    b.compress(0);
    a.commit();
    b.commit();
    EXPECT_EQ(a.n_held(0), b.n_held(0));
    EXPECT_TRUE(at::equal(a.materialize(0).pos, b.materialize(0).pos));
    pos += S;
  }
  // A policy that needs scores refuses to compress without them.
  b.append(0, at::randn({2, 2, 30, 16}), at::randn({2, 2, 30, 16}), pos);
  EXPECT_THROW(b.compress(0), c10::Error);
}

TEST_F(AdaptiveCacheTest, BadInputThrowsAndLeavesCacheUsable) {
  AnyCache cache(test::small_config(PolicyKind::kMix), shape());
  at::Tensor q = at::randn({2, 4, 3, 16}), k = at::randn({2, 2, 3, 16}), v = at::randn({2, 2, 3, 16});
  cache.attend(0, q, k, v, 0);
  cache.attend(1, q, k, v, 0);
  cache.commit();
  auto const before = cache.stats();
  auto expect_throw_mentioning = [&](auto fn, std::string const& needle) { EXPECT_ERROR_HAS(fn(), needle); };
  expect_throw_mentioning([&] { cache.attend(0, q, k.narrow(3, 0, 8), v, 3); }, "k");              // head dim
  expect_throw_mentioning([&] { cache.attend(0, q, k, v.narrow(2, 0, 2), 3); }, "v");              // S mismatch
  expect_throw_mentioning([&] { cache.attend(0, at::randn({2, 3, 3, 16}), k, v, 3); }, "H_q");      // GQA
  expect_throw_mentioning([&] { cache.attend(0, q.to(at::kDouble), k, v, 3); }, "dtype");
  expect_throw_mentioning([&] { cache.attend(0, q, k.to(at::kBFloat16), v, 3); }, "dtype");
  expect_throw_mentioning([&] { cache.attend(0, q, k, v, 2); }, "start_pos 2");                     // backwards
  expect_throw_mentioning([&] { cache.attend(0, q, k, v, 4); }, "start_pos 4");                     // gap
  expect_throw_mentioning([&] { cache.attend(2, q, k, v, 3); }, "layer index 2");
  expect_throw_mentioning([&] { cache.attend(-1, q, k, v, 3); }, "layer index -1");
  expect_throw_mentioning([&] { cache.attend(0, q.narrow(0, 0, 1), k.narrow(0, 0, 1), v.narrow(0, 0, 1), 3); }, "B");
  expect_throw_mentioning([&] { cache.attend(0, q.narrow(2, 0, 0), k.narrow(2, 0, 0), v.narrow(2, 0, 0), 3); }, "S = 0");
  CacheConfig bad = test::small_config(PolicyKind::kMix, 4, 8);
  expect_throw_mentioning([&] { AnyCache c(bad, shape()); }, "cache_size (4)");
  // The cache is unchanged and keeps working.
  auto const after = cache.stats();
  EXPECT_EQ(after.n_processed, before.n_processed);
  EXPECT_EQ(after.total.held_bytes, before.total.held_bytes);
  EXPECT_NO_THROW(cache.attend(0, q, k, v, 3));
  EXPECT_NO_THROW(cache.attend(1, q, k, v, 3));
  EXPECT_EQ(cache.n_processed(), 6);
}

TEST_F(AdaptiveCacheTest, HalfPrecisionDtypesRun) {
  for (auto dt : {at::kBFloat16, at::kHalf}) {
    CacheShape s = shape();
    s.dtype = dt;
    AnyCache cache(test::small_config(PolicyKind::kMix), s);
    RandomRun run;
    run.dtype = dt;
    run.atol = 2e-2;
    run.run(cache, {40}, 30, [](int64_t) {});
    EXPECT_GT(cache.stats().total.n_quantized, 0);
  }
}

TEST_F(AdaptiveCacheTest, GlobalScopeDefersPrefillCompressionToCommit) {
  CacheConfig cfg = test::small_config(PolicyKind::kMix, 24, 4);
  cfg.ratio_scope = RatioScope::kGlobal;
  AdaptiveCache<policy::Mix> cache(cfg, shape());
  at::Tensor q = at::randn({2, 4, 40, 16});
  for (int64_t l = 0; l < 2; ++l) cache.attend(l, q, at::randn({2, 2, 40, 16}), at::randn({2, 2, 40, 16}), 0);
  EXPECT_EQ(cache.n_held(0), 40);  // nothing compressed before commit
  cache.commit();
  EXPECT_EQ(cache.n_held(0), 24);
  EXPECT_EQ(cache.n_held(1), 24);
  // The max is over all layers: at least one layer has ratio 1.
  auto st = cache.stats();
  EXPECT_DOUBLE_EQ(std::max(st.layers[0].origin_ratio, st.layers[1].origin_ratio), 1.0);
}

TEST_F(AdaptiveCacheTest, RunningScopeFirstLayerKeepsRatioOne) {
  AdaptiveCache<policy::Mix> cache(test::small_config(PolicyKind::kMix, 24, 4), shape(3));
  for (int64_t l = 0; l < 3; ++l)
    cache.attend(l, at::randn({2, 4, 40, 16}) * (l + 1), at::randn({2, 2, 40, 16}), at::randn({2, 2, 40, 16}), 0);
  cache.commit();
  auto st = cache.stats();
  EXPECT_DOUBLE_EQ(st.layers[0].origin_ratio, 1.0);
  for (auto const& s : st.layers) {
    EXPECT_GT(s.origin_ratio, 0.0);
    EXPECT_LE(s.origin_ratio, 1.0);
    EXPECT_EQ(s.origin_budget, Calculator::origin_budget(s.origin_ratio, 24, 4));
  }
}

}  // namespace
