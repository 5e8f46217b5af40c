// The invariants of ALGORITHM.md, one test each, over random prefill + decode runs of every
// compressing policy, both budget modes, fp8 and int8.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include <akcb/akcb.hpp>

#include "cache/cache_test_utils.hpp"

namespace {

using namespace akcb;  // NOLINT: test file
using test::RandomRun;

struct Case {
  PolicyKind policy;
  BudgetMode mode;
  QuantDtype qdtype;
};

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (auto p : {PolicyKind::kWindow, PolicyKind::kOrigin, PolicyKind::kQuant, PolicyKind::kMix})
    for (auto m : {BudgetMode::kTokens, BudgetMode::kBytes})
      for (auto q : {QuantDtype::kFp8E4M3, QuantDtype::kInt8}) out.push_back({p, m, q});
  return out;
}

CacheShape shape() { return CacheShape{2, 2, 2, 16, at::kFloat, c10::Device(c10::kCPU)}; }

CacheConfig config(Case const& c) {
  CacheConfig cfg = test::small_config(c.policy, 32, 6);
  cfg.budget_mode = c.mode;
  cfg.quant_dtype = c.qdtype;
  if (c.policy == PolicyKind::kMix) {
    // Global scope: the max is over both layers, so one of them has r < 1 and quantizes. The
    // authors' taus give a ratio strictly inside (0, 1), exercising all three states at once.
    cfg.ratio_scope = RatioScope::kGlobal;
    CacheConfig const tuned = CacheConfig::authors_tuned();
    cfg.tau1 = tuned.tau1;
    cfg.tau2 = tuned.tau2;
    cfg.tau3 = tuned.tau3;
  }
  return cfg;
}

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t>;  // layer, b, h, position

/// Positions held per (b, h) in one block: slots [0, used) with position >= 0.
std::vector<std::pair<Key, int64_t>> held(int64_t layer, at::Tensor const& pos, int64_t used) {
  std::vector<std::pair<Key, int64_t>> out;
  at::Tensor p = pos.narrow(2, 0, used).contiguous();
  auto a = p.accessor<int32_t, 3>();
  for (int64_t b = 0; b < p.size(0); ++b)
    for (int64_t h = 0; h < p.size(1); ++h)
      for (int64_t s = 0; s < used; ++s)
        if (a[b][h][s] >= 0) out.push_back({{layer, b, h, a[b][h][s]}, s});
  return out;
}

class InvariantTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { at::manual_seed(31337); }
};

// 1. States only move down: Original -> Quantized -> Evicted, or Original -> Evicted. A token
//    is quantized once, with its own scale, never re-quantized or promoted.
TEST_P(InvariantTest, Inv1_StatesOnlyMoveDownAndQuantizationIsSticky) {
  AnyCache cache(config(GetParam()), shape());
  RandomRun run;
  std::map<Key, int> state;  // 0 Original, 1 Quantized, 2 Evicted
  std::map<Key, std::pair<at::Tensor, float>> frozen;  // quantized K bytes and scale
  int64_t demotions = 0;
  run.run(cache, {50, 13}, 70, [&](int64_t l) {
    auto const& lc = cache.layer(l);
    std::map<Key, int> now;
    for (auto const& [key, slot] : held(l, lc.pos_orig(), lc.used_orig())) now[key] = 0;
    for (auto const& [key, slot] : held(l, lc.pos_quant(), lc.used_quant())) {
      now[key] = 1;
      auto [ll, b, h, p] = key;
      at::Tensor bytes = lc.k_quant()[b][h][slot].view(at::kByte).clone();
      float const scale = lc.k_scale()[b][h][slot].item<float>();
      auto it = frozen.find(key);
      if (it == frozen.end()) {
        // Quantized once from its own full-precision values: equals quantizing the original row.
        auto ref = ops::quantize_per_token(run.shadows[l].k[b][h][p], cache.config().quant_dtype);
        EXPECT_TRUE(at::equal(bytes, ref.data.view(at::kByte)));
        EXPECT_EQ(scale, ref.scale.item<float>());
        frozen[key] = {bytes, scale};
      } else {
        EXPECT_TRUE(at::equal(bytes, it->second.first)) << "re-quantized token at position " << p;
        EXPECT_EQ(scale, it->second.second);
      }
    }
    for (auto& [key, s] : state) {
      if (std::get<0>(key) != l) continue;
      auto it = now.find(key);
      int const next = it == now.end() ? 2 : it->second;
      EXPECT_GE(next, s) << "token at position " << std::get<3>(key) << " moved up from state " << s << " to " << next;
      if (s == 0 && next == 1) ++demotions;
      s = next;
    }
    for (auto const& [key, s] : now) state.emplace(key, s);
  });
  if (GetParam().policy == PolicyKind::kQuant || GetParam().policy == PolicyKind::kMix) EXPECT_GT(demotions, 0);
}

// 2. Every held token keeps its absolute position; the next position is the number of tokens
//    processed, never the number held.
TEST_P(InvariantTest, Inv2_AbsolutePositions) {
  AnyCache cache(config(GetParam()), shape());
  RandomRun run;
  int64_t holes_seen = 0;  // steps where heads split their tokens differently between blocks
  run.run(cache, {45}, 100, [&](int64_t l) {
    MaterializedKV m = cache.materialize(l);
    EXPECT_TRUE((m.pos >= 0).all().item<bool>()) << "materialize() is hole-free";
    EXPECT_EQ(m.k.size(2), cache.n_held(l));
    holes_seen += cache.layer(l).has_holes();
    auto [k_want, v_want] = test::expected_rows(run.shadows[l], m, cache.config().quant_dtype);
    // Row contents identify the token: the held row at position p is the row appended at p.
    EXPECT_TRUE(at::equal(m.k, k_want));
    EXPECT_TRUE(at::equal(m.v, v_want));
  });
  // `mix` gives heads different Original/Quantized splits, so the hole-free gather path is exercised.
  if (GetParam().policy == PolicyKind::kMix) EXPECT_GT(holes_seen, 0);
  EXPECT_EQ(cache.n_processed(), 145);
  EXPECT_LT(cache.n_held(0), 145);
  at::Tensor q = at::randn({2, 4, 1, 16}), k = at::randn({2, 2, 1, 16});
  EXPECT_THROW(cache.attend(0, q, k, k, cache.n_held(0)), c10::Error);  // the held count is not a position
  EXPECT_NO_THROW(cache.attend(0, q, k, k, 145));
}

// 3. Attention over the cache equals exact attention over the held tokens (Quantized ones
//    dequantized) at their true positions; for origin/window that is full attention with the
//    evicted keys masked out (checked inside RandomRun at every step).
TEST_P(InvariantTest, Inv3_AttentionEqualsExactAttentionOverHeldTokens) {
  AnyCache cache(config(GetParam()), shape());
  RandomRun run;
  run.run(cache, {40, 1, 17}, 60, [](int64_t) {});
  EXPECT_EQ(run.steps_checked, 2 * 63);
  EXPECT_GT(cache.stats().total.n_compressions, 2);
}

// 4. Per layer and KV head: held <= C (tokens) or payload bytes <= C * b_orig (bytes) after
//    every compression; the window is always held Original.
TEST_P(InvariantTest, Inv4_BudgetAndWindowAfterEveryCompression) {
  Case const c = GetParam();
  AnyCache cache(config(c), shape());
  RandomRun run;
  std::vector<int64_t> seen(2, 0);
  int64_t checked = 0;
  auto check_window = [&](int64_t l) {
    auto const& lc = cache.layer(l);
    int64_t const W = cache.config().window_size, N = lc.n_processed();
    // Window: the last W positions are in the Original block of every (b, h).
    std::set<Key> orig;
    for (auto const& [key, slot] : held(l, lc.pos_orig(), lc.used_orig())) orig.insert(key);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t p = std::max<int64_t>(0, N - W); p < N; ++p)
          EXPECT_TRUE(orig.count({l, b, h, p})) << "window token " << p << " not Original";
  };
  auto check_budget = [&] {
    auto st = cache.stats();
    for (int64_t l = 0; l < 2; ++l) {
      check_window(l);
      {
        // After every step (all compressions done), in both modes: no KV head holds more
        // payload than C * b_orig.
        auto const& lc = cache.layer(l);
        at::Tensor n_o = (lc.pos_orig().narrow(2, 0, lc.used_orig()) >= 0).sum(-1);
        at::Tensor n_q = (lc.pos_quant().narrow(2, 0, lc.used_quant()) >= 0).sum(-1);
        at::Tensor bytes = n_o * lc.orig_token_bytes() + n_q * lc.quant_token_bytes();
        EXPECT_LE(bytes.max().item<int64_t>(), cache.bytes_budget()) << "layer " << l << " at " << lc.n_processed();
        EXPECT_EQ(bytes.max().item<int64_t>(), lc.max_head_payload_bytes());
      }
      if (st.layers[l].n_compressions == seen[l]) continue;  // only right after a compression
      seen[l] = st.layers[l].n_compressions;
      ++checked;
      auto const& lc = cache.layer(l);
      EXPECT_LE(lc.n_held(), cache.budget(l).held_limit(cache.config().window_size));
      if (c.mode == BudgetMode::kTokens || c.policy == PolicyKind::kOrigin || c.policy == PolicyKind::kWindow) {
        EXPECT_LE(lc.n_held(), cache.config().cache_size);
      }
      // Payload bytes per (b, h) against C * b_orig (both modes: tokens mode holds <= C tokens).
      at::Tensor n_o = (lc.pos_orig().narrow(2, 0, lc.used_orig()) >= 0).sum(-1);
      at::Tensor n_q = (lc.pos_quant().narrow(2, 0, lc.used_quant()) >= 0).sum(-1);
      at::Tensor bytes = n_o * lc.orig_token_bytes() + n_q * lc.quant_token_bytes();
      EXPECT_LE(bytes.max().item<int64_t>(), cache.bytes_budget());
    }
  };
  run.run(cache, {50, 20}, 80, check_window, check_budget);
  EXPECT_GT(checked, 2);
}

// 5. Memory accounting is exact: held bytes are counted from what the storage holds, capacity is
//    the allocated bytes, and metadata is small next to the payload.
TEST_P(InvariantTest, Inv5_MemoryAccountingIsExact) {
  AnyCache cache(config(GetParam()), shape());
  RandomRun run;
  run.run(cache, {50}, 30, [](int64_t) {});
  auto st = cache.stats();
  int64_t held_sum = 0, cap_sum = 0;
  for (int64_t l = 0; l < 2; ++l) {
    auto const& lc = cache.layer(l);
    int64_t const D = 16;
    int64_t n_o = (lc.pos_orig().narrow(2, 0, lc.used_orig()) >= 0).sum().item<int64_t>();
    int64_t n_q = (lc.pos_quant().narrow(2, 0, lc.used_quant()) >= 0).sum().item<int64_t>();
    int64_t const b_o = 2 * D * lc.k_orig().element_size();
    int64_t const b_q = 2 * D * lc.k_quant().element_size() + 2 * lc.k_scale().element_size();
    int64_t const meta = lc.pos_orig().element_size();
    EXPECT_EQ(st.layers[l].held_bytes, n_o * b_o + n_q * b_q + (n_o + n_q) * meta);
    EXPECT_EQ(st.layers[l].n_original + st.layers[l].n_quantized + st.layers[l].n_evicted, 80 * 2 * 2);
    int64_t cap = 0;
    for (at::Tensor const* t : {&lc.k_orig(), &lc.v_orig(), &lc.pos_orig(), &lc.k_quant(), &lc.v_quant(),
                                &lc.k_scale(), &lc.v_scale(), &lc.pos_quant()})
      cap += t->nbytes();
    EXPECT_EQ(st.layers[l].capacity_bytes, cap);
    EXPECT_LE(st.layers[l].bytes_metadata * 8, st.layers[l].held_bytes);  // 4 bytes a token-head
    held_sum += st.layers[l].held_bytes;
    cap_sum += cap;
  }
  EXPECT_EQ(st.total.held_bytes, held_sum);
  EXPECT_EQ(st.total.capacity_bytes, cap_sum);
  EXPECT_EQ(st.total.full_bytes, 2 * 80 * 2 * 2 * 2 * 16 * 4);
  // After releasing spare slots, capacity is exactly the held bytes plus any hole slots.
  cache.shrink_to_fit();
  auto st2 = cache.stats();
  EXPECT_EQ(st2.total.held_bytes, st.total.held_bytes);
  if (!cache.layer(0).has_holes() && !cache.layer(1).has_holes()) EXPECT_EQ(st2.total.capacity_bytes, st2.total.held_bytes);
  EXPECT_GE(st2.total.capacity_bytes, st2.total.held_bytes);
}

INSTANTIATE_TEST_SUITE_P(Policies, InvariantTest, ::testing::ValuesIn(all_cases()),
                         [](auto const& info) {
                           Case const& c = info.param;
                           return std::string(to_string(c.policy)) + "_" + to_string(c.mode) + "_" +
                                  to_string(c.qdtype);
                         });

// budget_mode = bytes: mix and quant hold more tokens than in tokens mode, never more bytes
// than the budget; origin is unchanged.
TEST(BudgetModeBytes, BuysMoreTokensForQuantizingPoliciesOnly) {
  for (PolicyKind p : {PolicyKind::kQuant, PolicyKind::kMix, PolicyKind::kOrigin}) {
    std::map<BudgetMode, int64_t> held_tokens;
    for (BudgetMode m : {BudgetMode::kTokens, BudgetMode::kBytes}) {
      at::manual_seed(11);
      CacheConfig cfg = test::small_config(p, 64, 8);
      cfg.budget_mode = m;
      cfg.ratio_scope = RatioScope::kGlobal;
      // Three layers: the max is over all, so two of them have r < 1.
      CacheShape s{3, 1, 2, 64, at::kBFloat16, c10::Device(c10::kCPU)};
      AnyCache cache(cfg, s);
      for (int64_t l = 0; l < 3; ++l)
        cache.attend(l, (at::randn({1, 4, 200, 64}) * (1.0 + l)).to(at::kBFloat16),
                     at::randn({1, 2, 200, 64}).to(at::kBFloat16), at::randn({1, 2, 200, 64}).to(at::kBFloat16), 0);
      cache.commit();
      held_tokens[m] = 0;
      for (int64_t l = 0; l < 3; ++l) {
        held_tokens[m] += cache.n_held(l);
        auto const& lc = cache.layer(l);
        at::Tensor n_o = (lc.pos_orig().narrow(2, 0, lc.used_orig()) >= 0).sum(-1);
        at::Tensor n_q = (lc.pos_quant().narrow(2, 0, lc.used_quant()) >= 0).sum(-1);
        at::Tensor bytes = n_o * lc.orig_token_bytes() + n_q * lc.quant_token_bytes();
        EXPECT_LE(bytes.max().item<int64_t>(), cache.bytes_budget()) << to_string(p) << " " << to_string(m);
        if (m == BudgetMode::kTokens) EXPECT_EQ(cache.n_held(l), 64);
      }
    }
    if (p == PolicyKind::kOrigin) {
      EXPECT_EQ(held_tokens[BudgetMode::kBytes], held_tokens[BudgetMode::kTokens]);
    } else {
      EXPECT_GT(held_tokens[BudgetMode::kBytes], held_tokens[BudgetMode::kTokens]) << to_string(p);
    }
  }
  // The exact count for quant: W + floor((C - W) * b_orig / b_quant); bf16 D=64: 256 vs 136 bytes.
  CacheConfig cfg = test::small_config(PolicyKind::kQuant, 64, 8);
  cfg.budget_mode = BudgetMode::kBytes;
  AnyCache cache(cfg, CacheShape{1, 1, 2, 64, at::kBFloat16, c10::Device(c10::kCPU)});
  EXPECT_EQ(cache.budget(0).held_limit(8), 8 + (56 * 256) / 136);
}

}  // namespace

namespace {

// bytes mode: a prompt shorter than the token limit (W + O_l + Q_l) but over C * b_orig is
// brought within the byte budget by demotion alone, and every decode step stays within it.
TEST(BudgetModeBytes, NeverMoreBytesThanTheBudgetAfterAnyStep) {
  for (PolicyKind p : {PolicyKind::kQuant, PolicyKind::kMix}) {
    at::manual_seed(3);
    CacheConfig cfg = test::small_config(p, 64, 8);
    cfg.budget_mode = BudgetMode::kBytes;
    cfg.ratio_scope = RatioScope::kGlobal;
    CacheShape s{2, 1, 2, 64, at::kBFloat16, c10::Device(c10::kCPU)};
    AnyCache cache(cfg, s);
    int64_t pos = 0, max_held = 0, demote_only = 0;
    std::vector<int64_t> steps{100};
    for (int i = 0; i < 150; ++i) steps.push_back(1);
    for (int64_t S : steps) {
      for (int64_t l = 0; l < 2; ++l) {
        cache.attend(l, (at::randn({1, 4, S, 64}) * (1.0 + l)).to(at::kBFloat16),
                     at::randn({1, 2, S, 64}).to(at::kBFloat16), at::randn({1, 2, S, 64}).to(at::kBFloat16), pos);
      }
      cache.commit();
      pos += S;
      for (int64_t l = 0; l < 2; ++l) {
        auto const& lc = cache.layer(l);
        at::Tensor n_o = (lc.pos_orig().narrow(2, 0, lc.used_orig()) >= 0).sum(-1);
        at::Tensor n_q = (lc.pos_quant().narrow(2, 0, lc.used_quant()) >= 0).sum(-1);
        at::Tensor bytes = n_o * lc.orig_token_bytes() + n_q * lc.quant_token_bytes();
        ASSERT_LE(bytes.max().item<int64_t>(), cache.bytes_budget()) << to_string(p) << " layer " << l << " at " << pos;
        max_held = std::max(max_held, lc.n_held());
        if (lc.n_processed() == lc.n_held() && n_q.sum().item<int64_t>() > 0) ++demote_only;
      }
    }
    EXPECT_EQ(pos, 250);
    EXPECT_GT(max_held, 64) << to_string(p) << ": bytes mode holds more tokens than C";
    EXPECT_GT(demote_only, 0) << to_string(p) << ": the 100-token prompt fits the token limit, so bytes alone compressed it";
  }
}

}  // namespace
