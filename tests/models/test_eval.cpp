// akcb-eval harness (issue 5): metrics on hand-made cases, budget arithmetic, and on the bundled
// tiny-qwen3 with a short context: budget > context equals full exactly (tokens and logits) for
// every policy and budget mode, teacher-forced perplexity equals one full forward, memory figures.
#include <akcb/akcb.hpp>
#include <akcb/models/eval.hpp>
#include <akcb/models/generate.hpp>
#include <akcb/models/llama.hpp>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

namespace {

namespace am = akcb::models;
using akcb::BudgetMode;
using akcb::CacheConfig;
using akcb::PolicyKind;

TEST(EvalMetrics, ExactMatchFollowsRulerScore) {
  EXPECT_TRUE(am::score_exact(" 48213", " 48213"));
  EXPECT_TRUE(am::score_exact(" 48213", " 48213. Remember"));
  EXPECT_TRUE(am::score_exact(" 48213", "48213,"));
  EXPECT_FALSE(am::score_exact(" 48213", " 482135"));  // extra digits are wrong
  EXPECT_FALSE(am::score_exact(" 48213", " The pass key is 48213"));
  EXPECT_FALSE(am::score_exact(" 48213", ""));
  EXPECT_TRUE(am::score_exact(" ABCDE FGHIJ", " ABCDE, FGHIJ and more"));
  EXPECT_FALSE(am::score_exact(" ABCDE FGHIJ", " ABCDE"));
}

TEST(EvalMetrics, ContainsIsLenient) {
  EXPECT_TRUE(am::score_contains(" 48213", " 482135"));
  EXPECT_TRUE(am::score_contains(" 48213", " The pass key is 48213"));
  EXPECT_TRUE(am::score_contains(" ABCDE FGHIJ", "FGHIJ ABCDE"));
  EXPECT_FALSE(am::score_contains(" ABCDE FGHIJ", " ABCDE"));
}

TEST(EvalMetrics, Perplexity) {
  EXPECT_DOUBLE_EQ(am::perplexity(0.0, 5), 1.0);
  EXPECT_NEAR(am::perplexity(2.0 * std::log(3.0), 2), 3.0, 1e-12);
  EXPECT_TRUE(std::isnan(am::perplexity(1.0, 0)));
}

TEST(EvalBudget, FractionOfFullBytes) {
  CacheConfig base;
  base.window_size = 32;
  auto c = am::budget_config(base, PolicyKind::kMix, BudgetMode::kBytes, 0.25, 2000);
  EXPECT_EQ(c.cache_size, 500);
  EXPECT_EQ(c.policy, PolicyKind::kMix);
  EXPECT_EQ(c.budget_mode, BudgetMode::kBytes);
  EXPECT_EQ(am::budget_config(base, PolicyKind::kWindow, BudgetMode::kTokens, 0.125, 100).cache_size, 33);  // >= W + 1
  EXPECT_GT(am::budget_config(base, PolicyKind::kFull, BudgetMode::kTokens, 0.25, 100).cache_size, 100);
  EXPECT_TRUE(am::budget_mode_matters(PolicyKind::kMix));
  EXPECT_TRUE(am::budget_mode_matters(PolicyKind::kQuant));
  EXPECT_FALSE(am::budget_mode_matters(PolicyKind::kOrigin));
  EXPECT_THROW(am::budget_config(base, PolicyKind::kMix, BudgetMode::kTokens, 0.0, 100), c10::Error);
}

class EvalTinyQwen3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    model_ = std::make_unique<am::LlamaModel>(am::LlamaModel::load(AKCB_SOURCE_DIR "/models/tiny-qwen3"));
    at::manual_seed(0);
    auto r = at::randint(0, model_->config().vocab_size, {160}, at::kLong);
    prompt_.assign(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
  }
  static void TearDownTestSuite() { model_.reset(); }
  static CacheConfig base() {
    CacheConfig c;
    c.window_size = 8;
    return c;
  }
  static std::unique_ptr<am::LlamaModel> model_;
  static std::vector<int64_t> prompt_;
};
std::unique_ptr<am::LlamaModel> EvalTinyQwen3::model_;
std::vector<int64_t> EvalTinyQwen3::prompt_;

TEST_F(EvalTinyQwen3, BudgetAboveContextEqualsFull) {
  am::RetrievalOptions o;
  int64_t const n_new = 6;
  auto const full = am::run_greedy_ids(*model_, am::budget_config(base(), PolicyKind::kFull, BudgetMode::kTokens, 1, 200),
                                       prompt_, n_new, o);
  ASSERT_EQ(static_cast<int64_t>(full.tokens.size()), n_new);
  for (PolicyKind p : {PolicyKind::kWindow, PolicyKind::kOrigin, PolicyKind::kQuant, PolicyKind::kMix})
    for (BudgetMode m : {BudgetMode::kTokens, BudgetMode::kBytes}) {
      // C = 2 x (prompt + new): nothing is ever compressed
      auto const cc = am::budget_config(base(), p, m, 2.0, static_cast<int64_t>(prompt_.size()) + n_new);
      auto const r = am::run_greedy_ids(*model_, cc, prompt_, n_new, o);
      EXPECT_EQ(r.tokens, full.tokens) << akcb::to_string(p) << " " << akcb::to_string(m);
      EXPECT_TRUE(at::equal(r.first_logits, full.first_logits)) << akcb::to_string(p) << " " << akcb::to_string(m);
      EXPECT_EQ(r.metrics.end_held_bytes, full.metrics.end_held_bytes);
      EXPECT_EQ(r.metrics.stats.total.n_evicted, 0);
      EXPECT_EQ(r.metrics.stats.total.n_quantized, 0);
    }
}

TEST_F(EvalTinyQwen3, CompressedRunAccounting) {
  am::RetrievalOptions o;
  auto const cc = am::budget_config(base(), PolicyKind::kMix, BudgetMode::kTokens, 0.25, 160);
  ASSERT_EQ(cc.cache_size, 40);
  auto const r = am::run_greedy_ids(*model_, cc, prompt_, 4, o);
  auto const& m = r.metrics;
  EXPECT_EQ(m.n_prompt, 160);
  EXPECT_EQ(m.n_decode, 3);
  EXPECT_LT(m.end_held_bytes, m.end_full_bytes);
  EXPECT_GE(m.peak_held_bytes, m.end_held_bytes);
  EXPECT_GE(m.capacity_bytes, m.end_held_bytes);
  EXPECT_GT(m.stats.total.n_evicted, 0);
  EXPECT_GT(m.stats.total.n_compressions, 0);
  EXPECT_EQ(m.end_full_bytes, m.stats.total.full_bytes);
  EXPECT_GT(m.prefill_seconds, 0.0);
  // token-heads: every processed token of every layer and KV head is in exactly one state
  int64_t const heads = model_->config().n_heads_kv;
  for (auto const& l : m.stats.layers) EXPECT_EQ(l.n_original + l.n_quantized + l.n_evicted, (160 + 3) * heads);
}

TEST_F(EvalTinyQwen3, NeedleSurvivalCountsHeldPositions) {
  am::RetrievalOptions o;
  o.track_positions = {0, 125, 150};
  // full: everything held, after the prefill and at the end
  auto const f = am::run_greedy_ids(*model_, am::budget_config(base(), PolicyKind::kFull, BudgetMode::kTokens, 1, 170),
                                    prompt_, 4, o);
  EXPECT_DOUBLE_EQ(f.kept_after_prefill, 1.0);
  EXPECT_DOUBLE_EQ(f.kept_at_end, 1.0);
  // window, C = 40, W = 8: the prefill keeps positions 120..159 (0 is gone); the first decode step
  // holds 41 > 40 tokens and keeps floor(0.75 * 33) = 24 past tokens + the window: 129..160 (125 is gone)
  auto const w = am::run_greedy_ids(*model_, am::budget_config(base(), PolicyKind::kWindow, BudgetMode::kTokens, 0.25, 160),
                                    prompt_, 4, o);
  EXPECT_EQ(w.tracked, o.track_positions);
  EXPECT_DOUBLE_EQ(w.kept_after_prefill, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(w.kept_at_end, 1.0 / 3.0);
  ASSERT_EQ(static_cast<int64_t>(w.kept_at_end_per_layer.size()), model_->config().n_layers);
  for (double v : w.kept_at_end_per_layer) EXPECT_DOUBLE_EQ(v, 1.0 / 3.0);
  // nothing tracked: -1
  auto const u = am::run_greedy_ids(*model_, am::budget_config(base(), PolicyKind::kWindow, BudgetMode::kTokens, 0.25, 160),
                                    prompt_, 2, am::RetrievalOptions{});
  EXPECT_EQ(u.kept_after_prefill, -1.0);
  EXPECT_EQ(u.kept_at_end, -1.0);
}

TEST_F(EvalTinyQwen3, TeacherForcedPerplexityOfFullEqualsOneForward) {
  std::vector<int64_t> ids(prompt_.begin(), prompt_.begin() + 64);
  int64_t const prefix = 16;
  auto const r = am::run_perplexity(*model_, am::budget_config(base(), PolicyKind::kFull, BudgetMode::kTokens, 1, 64),
                                    ids, prefix);
  EXPECT_EQ(r.n_scored, 64 - prefix);
  EXPECT_EQ(r.metrics.n_decode, 64 - prefix - 1);
  // reference: one forward over all ids with logits of every position
  akcb::AnyCache cache(am::budget_config(base(), PolicyKind::kFull, BudgetMode::kTokens, 1, 64),
                       am::cache_shape_for(*model_, 1));
  auto const t = at::tensor(ids, at::kLong).view({1, 64});
  auto const logp = at::log_softmax(am::forward_cached(*model_, cache, t, am::LogitsMode::kAll)[0], -1);  // [64, V]
  double nll = 0;
  for (int64_t i = prefix; i < 64; ++i) nll -= logp[i - 1][ids[i]].item<double>();
  EXPECT_NEAR(r.nll_sum, nll, 1e-3 * std::fabs(nll));
  EXPECT_NEAR(r.ppl(), std::exp(nll / (64 - prefix)), 1e-3 * r.ppl());
  // a compressed cache scores the same tokens
  auto const c = am::run_perplexity(*model_, am::budget_config(base(), PolicyKind::kMix, BudgetMode::kBytes, 0.25, 64),
                                    ids, prefix);
  EXPECT_EQ(c.n_scored, r.n_scored);
  EXPECT_TRUE(std::isfinite(c.ppl()));
  EXPECT_LT(c.metrics.end_held_bytes, c.metrics.end_full_bytes);
}

}  // namespace
