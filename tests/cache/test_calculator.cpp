// Calculator: observation probabilities, heavy-hitter scores and the OQ score.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <akcb/akcb.hpp>
#include <akcb/calculator.hpp>

#include "test_errors.hpp"

namespace {

using akcb::Calculator;

// ---- References: the unsliced formulas, as they were written before slicing -----------------

/// attention_probs computed in one batch (the implementation before slicing).
at::Tensor reference_probs(at::Tensor const& q_obs, at::Tensor const& q_pos, at::Tensor const& k,
                           at::Tensor const& k_pos) {
  int64_t const B = q_obs.size(0), Hq = q_obs.size(1), w = q_obs.size(2), D = q_obs.size(3);
  int64_t const Hkv = k.size(1), T = k.size(2), G = Hq / Hkv;
  at::Tensor qf = q_obs.to(at::kFloat).reshape({B, Hkv, G * w, D});
  at::Tensor kf = k.to(at::kFloat);
  at::Tensor logits = at::matmul(qf, kf.transpose(2, 3)) / std::sqrt(static_cast<double>(D));
  logits = logits.view({B, Hkv, G, w, T});
  at::Tensor kp = k_pos.to(at::kLong).view({B, Hkv, 1, 1, T});
  at::Tensor qp = q_pos.to(at::kLong).view({1, 1, 1, w, 1});
  logits = logits.masked_fill(~((kp >= 0) & (kp <= qp)), -INFINITY);
  return at::nan_to_num(at::softmax(logits, -1), 0.0, 0.0, 0.0).view({B, Hq, w, T});
}

/// disp, var, kurt of the OQ score over the whole tensor at once, in fp64.
Calculator::OqStats reference_stats(at::Tensor const& probs_before) {
  at::Tensor p = probs_before.to(at::kDouble);
  int64_t const w = p.size(2);
  Calculator::OqStats st;
  st.disp = -(p * at::log(p + 1e-10)).sum().item<double>();
  if (w > 1) st.var = p.var(2, /*unbiased=*/true).sum().item<double>();
  at::Tensor c = p - p.mean(2, /*keepdim=*/true);
  st.kurt = (c.pow(4).mean(2) / c.pow(2).mean(2).clamp_min(1e-8).pow(2)).sum().item<double>();
  return st;
}

/// [B, H_kv, T] mask repeated over the G query heads and the rows: [B, H_q, 1, T].
at::Tensor expand_mask(at::Tensor const& before, int64_t G) { return before.repeat_interleave(G, 1).unsqueeze(2); }

/// Relative difference at most `rel` (exactly equal when the reference is 0).
::testing::AssertionResult close_rel(double got, double want, double rel = 1e-12) {
  if (std::abs(got - want) <= rel * std::abs(want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (rel diff "
                                       << std::abs(got - want) / std::abs(want) << ")";
}

/// Random attention-like probabilities [B, H_q, w, T] with zero columns, a constant column
/// (m2 = 0) and a column of tiny spread (m2 below the 1e-8 clamp).
at::Tensor random_probs(int64_t B, int64_t Hq, int64_t w, int64_t T) {
  at::Tensor p = at::softmax(at::randn({B, Hq, w, T}) * 3, -1);
  p.narrow(3, 0, 1).zero_();
  if (T > 2) p.narrow(3, 1, 1).fill_(0.25);
  if (T > 3) p.narrow(3, 2, 1).copy_(0.01 + 1e-6 * at::rand({B, Hq, w, 1}));
  return p;
}

class CalculatorTest : public ::testing::Test {
 protected:
  void SetUp() override { at::manual_seed(2024); }
};

TEST_F(CalculatorTest, ProbabilitiesMatchCausalSoftmaxWithGqa) {
  int64_t const B = 2, Hkv = 2, G = 3, w = 4, T = 9, D = 8;
  at::Tensor q = at::randn({B, Hkv * G, w, D});
  at::Tensor k = at::randn({B, Hkv, T, D});
  at::Tensor kpos = at::arange(T, at::kInt).view({1, 1, T}).expand({B, Hkv, T}).contiguous();
  kpos[1][0][2] = -1;  // a hole
  at::Tensor qpos = at::arange(T - w, T, at::kLong);
  at::Tensor p = Calculator::attention_probs(q, qpos, k, kpos);
  ASSERT_EQ(p.sizes(), (at::IntArrayRef{B, Hkv * G, w, T}));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hkv * G; ++h)
      for (int64_t i = 0; i < w; ++i) {
        at::Tensor logits = at::mv(k[b][h / G], q[b][h][i]) / std::sqrt(double(D));
        at::Tensor allowed = (kpos[b][h / G] >= 0) & (kpos[b][h / G] <= qpos[i]);
        at::Tensor want = at::softmax(logits.masked_fill(~allowed, -INFINITY), 0);
        EXPECT_TRUE(at::allclose(p[b][h][i], want, 1e-5, 1e-6));
      }
  EXPECT_TRUE(at::allclose(p.sum(-1), at::ones({B, Hkv * G, w})));
}

TEST_F(CalculatorTest, HeavyHitterIsMeanPlusGammaVarPooledThenGroupMean) {
  int64_t const B = 1, Hkv = 2, G = 2, w = 3, P = 6;
  at::Tensor a = at::rand({B, Hkv * G, w, P});
  double const gamma = 2.5;
  at::Tensor hh = Calculator::heavy_hitter(a, Hkv, gamma, 3);
  // Hand computation: per head, s_j = mean + gamma * var (unbiased); pool k=3 with zero pad
  // counted (divide by 3 always); then mean over the 2 query heads of each KV head.
  at::Tensor s = a.mean(2) + gamma * a.var(2, true);  // [B, Hq, P]
  at::Tensor padded = at::constant_pad_nd(s, {1, 1});
  at::Tensor pooled = (padded.narrow(2, 0, P) + padded.narrow(2, 1, P) + padded.narrow(2, 2, P)) / 3.0;
  at::Tensor want = pooled.view({B, Hkv, G, P}).mean(2);
  EXPECT_TRUE(at::allclose(hh, want, 1e-5, 1e-7));
  // w = 1: no variance term (it is undefined), and kernel 1 is no pooling.
  at::Tensor a1 = a.narrow(2, 0, 1);
  EXPECT_TRUE(at::allclose(Calculator::heavy_hitter(a1, Hkv, gamma, 1), a1.squeeze(2).view({B, Hkv, G, P}).mean(2)));
}

TEST_F(CalculatorTest, OqScoreEqualsLogOfPlainProductWhenItFits) {
  at::Tensor p = at::softmax(at::randn({1, 2, 4, 16}) * 2, -1);
  double const t1 = 7.774, t2 = 5.407, t3 = 5.528;  // the authors' tuned taus: no overflow
  double const log_s = Calculator::log_oq_score(p, t1, t2, t3);
  at::Tensor pd = p.to(at::kDouble);
  double disp = -(pd * at::log(pd + 1e-10)).sum().item<double>();
  double var = pd.var(2, true).sum().item<double>();
  at::Tensor c = pd - pd.mean(2, true);
  double kurt = (c.pow(4).mean(2) / c.pow(2).mean(2).clamp_min(1e-8).pow(2)).sum().item<double>();
  double plain = std::pow(disp, 1 / t1) * std::pow(var, 1 / t2) * std::pow(kurt, 1 / t3);
  EXPECT_NEAR(log_s, std::log(plain), 1e-9 * std::abs(std::log(plain)) + 1e-9);
}

TEST_F(CalculatorTest, DefaultTausGiveFiniteRatiosInUnitInterval) {
  // With tau1 = 0.1 the plain product overflows fp32 (disp^10); the log domain does not.
  std::vector<double> logs;
  for (int l = 0; l < 8; ++l) {
    at::Tensor p = at::softmax(at::randn({1, 4, 8, 512}) * (0.5 + l), -1);
    double s = Calculator::log_oq_score(p, 0.1, 0.3, 0.6);
    ASSERT_TRUE(std::isfinite(s)) << "layer " << l;
    logs.push_back(s);
  }
  double running = -INFINITY;
  for (double s : logs) {
    running = std::max(running, s);
    double r = Calculator::origin_ratio(s, running);
    EXPECT_GT(r, 0.0);
    EXPECT_LE(r, 1.0);
    EXPECT_TRUE(std::isfinite(r));
    int64_t o = Calculator::origin_budget(r, 4096, 128);
    EXPECT_GE(o, 0);
    EXPECT_LE(o, 4096 - 128);
  }
  // The plain product in fp32 is indeed not representable for these inputs.
  // At realistic sizes (32 query heads, 64 observation queries, 512 keys) disp is ~1e4.
  at::Tensor p = at::softmax(at::randn({1, 32, 64, 512}), -1);
  EXPECT_TRUE(std::isfinite(Calculator::log_oq_score(p, 0.1, 0.3, 0.6)));
  float disp = -(p * at::log(p + 1e-10)).sum().item<float>();
  EXPECT_TRUE(std::isinf(std::pow(disp, 10.0f)));
}

TEST_F(CalculatorTest, DegenerateInputsStayFinite) {
  at::Tensor zeros = at::zeros({1, 1, 1, 4});
  EXPECT_TRUE(std::isfinite(Calculator::log_oq_score(zeros, 0.1, 0.3, 0.6)));
  EXPECT_EQ(Calculator::origin_ratio(-INFINITY, 3.0), 1.0);
  EXPECT_EQ(Calculator::origin_ratio(2.0, 2.0), 1.0);
  EXPECT_GT(Calculator::origin_ratio(-1e300, 0.0), 0.0);
  EXPECT_EQ(Calculator::origin_budget(0.5, 100, 10), 45);
  EXPECT_EQ(Calculator::origin_budget(2.0, 100, 10), 90);
}

// ---- Sliced scoring equals the unsliced formulas ----------------------------------------------

TEST_F(CalculatorTest, AttentionProbsSlicesEqualOneBatch) {
  // Slices of one KV head, of one batch row and the default (one slice) all write the same
  // numbers as the unsliced implementation: the same ops on the same values.
  struct Case {
    int64_t B, Hkv, G, w, T, D;
  };
  for (Case c : {Case{2, 2, 3, 4, 9, 8}, Case{2, 3, 2, 5, 41, 16}, Case{2, 4, 4, 1, 33, 8}, Case{1, 1, 2, 3, 7, 4},
                 Case{5, 1, 2, 3, 11, 8}}) {
    at::Tensor q = at::randn({c.B, c.Hkv * c.G, c.w, c.D});
    at::Tensor k = at::randn({c.B, c.Hkv, c.T, c.D});
    at::Tensor kpos = at::arange(c.T, at::kInt).view({1, 1, c.T}).expand({c.B, c.Hkv, c.T}).contiguous();
    kpos[c.B - 1][c.Hkv - 1][1] = -1;  // a hole
    at::Tensor qpos = at::arange(c.T - c.w, c.T, at::kLong);
    qpos[0] = -5;  // a query that sees no key: its row is all 0, not NaN
    at::Tensor want = reference_probs(q, qpos, k, kpos);
    int64_t const head = (c.G * c.w + c.D) * 4 + 2 * c.w;  // bytes per KV head and column
    for (int64_t slice : {int64_t{1}, head * c.T, head * c.T * c.Hkv, Calculator::kSliceBytes}) {
      at::Tensor got = Calculator::attention_probs(q, qpos, k, kpos, slice);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_TRUE(at::equal(got, want)) << "slice_bytes " << slice << " H_kv " << c.Hkv << " G " << c.G
                                        << " max diff " << (got - want).abs().max().item<float>();
      EXPECT_EQ(got[0].narrow(1, 0, 1).abs().sum().item<float>(), 0.0f);
    }
    // bf16 inputs: the same as the reference too.
    at::Tensor qb = q.to(at::kBFloat16), kb = k.to(at::kBFloat16);
    EXPECT_TRUE(at::equal(Calculator::attention_probs(qb, qpos, kb, kpos, 1), reference_probs(qb, qpos, kb, kpos)));
  }
}

TEST_F(CalculatorTest, SlicedOqStatsEqualUnslicedFormula) {
  double const t1 = 0.1, t2 = 0.3, t3 = 0.6;
  int64_t const B = 2, T = 37;  // T odd
  int n_checked = 0;
  for (int64_t Hkv = 1; Hkv <= 4; ++Hkv)
    for (int64_t G = 1; G <= 4; ++G)
      for (int64_t w : {1, 5}) {
        int64_t const Hq = Hkv * G;
        at::Tensor p = random_probs(B, Hq, w, T);
        at::Tensor const p0 = p.clone();
        at::Tensor before = at::rand({B, Hkv, T}) < 0.7;
        Calculator::OqStats const want = reference_stats(p);
        Calculator::OqStats const want_m = reference_stats(p * expand_mask(before, G));
        double const want_log = std::log(want.disp) / t1 + std::log(std::max(want.var, 1e-300)) / t2 +
                                std::log(std::max(want.kurt, 1e-300)) / t3;
        // One column per slice, some columns, one query head, one KV head, one batch row, all.
        for (int64_t slice : {int64_t{1}, 8 * w * 5, 8 * w * T, 8 * w * G * T, 8 * w * Hq * T, 8 * w * Hq * T * B,
                              Calculator::kSliceBytes}) {
          SCOPED_TRACE(::testing::Message() << "H_kv " << Hkv << " G " << G << " w " << w << " slice " << slice);
          Calculator::OqStats const got = Calculator::oq_stats(p, at::Tensor(), slice);
          EXPECT_TRUE(close_rel(got.disp, want.disp));
          EXPECT_TRUE(close_rel(got.var, want.var));
          EXPECT_TRUE(close_rel(got.kurt, want.kurt));
          EXPECT_TRUE(close_rel(Calculator::log_oq_score(p, t1, t2, t3, slice), want_log));
          Calculator::OqStats const got_m = Calculator::oq_stats(p, before, slice);
          EXPECT_TRUE(close_rel(got_m.disp, want_m.disp));
          EXPECT_TRUE(close_rel(got_m.var, want_m.var));
          EXPECT_TRUE(close_rel(got_m.kurt, want_m.kurt));
          EXPECT_TRUE(close_rel(Calculator::log_oq_score(p, before, t1, t2, t3, slice),
                                Calculator::log_oq_score(p * expand_mask(before, G), t1, t2, t3)));
          ++n_checked;
        }
        if (w == 1) EXPECT_EQ(want.var, 0.0);
        EXPECT_TRUE(at::equal(p, p0)) << "the caller's probabilities were modified";
      }
  EXPECT_EQ(n_checked, 4 * 4 * 2 * 7);
  // A mask that drops everything but a few columns is not the unmasked score.
  at::Tensor p = random_probs(B, 4, 3, T);
  at::Tensor few = at::zeros({B, 2, T}, at::kBool);
  few.narrow(2, 5, 4).fill_(true);
  EXPECT_LT(Calculator::oq_stats(p, few, 64).disp, 0.5 * Calculator::oq_stats(p, at::Tensor(), 64).disp);
}

TEST_F(CalculatorTest, OqStatsOfFp64AndNonContiguousInputs) {
  // fp64 probabilities are not modified in place (the slice is always a copy), and a permuted
  // (non-contiguous) tensor gives the same statistics.
  at::Tensor p = random_probs(2, 6, 4, 21).to(at::kDouble);
  at::Tensor const p0 = p.clone();
  at::Tensor before = at::rand({2, 3, 21}) < 0.5;
  Calculator::OqStats const want = reference_stats(p * expand_mask(before, 2));
  Calculator::OqStats const got = Calculator::oq_stats(p, before, 100);
  EXPECT_TRUE(close_rel(got.disp, want.disp));
  EXPECT_TRUE(close_rel(got.kurt, want.kurt));
  EXPECT_TRUE(at::equal(p, p0));
  at::Tensor pt = p.transpose(2, 3).contiguous().transpose(2, 3);  // same values, other strides
  Calculator::OqStats const got_t = Calculator::oq_stats(pt, before, 100);
  EXPECT_TRUE(close_rel(got_t.var, want.var));
  EXPECT_TRUE(close_rel(got_t.kurt, want.kurt));
  // Empty inputs: all statistics 0, finite log score.
  EXPECT_EQ(Calculator::oq_stats(at::zeros({1, 2, 3, 0})).disp, 0.0);
  EXPECT_TRUE(std::isfinite(Calculator::log_oq_score(at::zeros({1, 2, 3, 0}), 0.1, 0.3, 0.6)));
}

TEST_F(CalculatorTest, SlicedHeavyHitterEqualsGatherThenHeavyHitterBitForBit) {
  int64_t const B = 2, T = 29, P = 19;
  int n_checked = 0;
  for (int64_t Hkv = 1; Hkv <= 4; ++Hkv)
    for (int64_t G = 1; G <= 4; ++G)
      for (int64_t w : {1, 6})
        for (int64_t pool : {1, 5}) {
          int64_t const Hq = Hkv * G;
          at::Tensor p = random_probs(B, Hq, w, T);
          at::Tensor order = at::argsort(at::rand({B, Hkv, T}), int64_t{-1}).narrow(2, 0, P).contiguous();  // [B, H_kv, P]
          at::Tensor idx = order.repeat_interleave(G, 1).unsqueeze(2).expand({-1, -1, w, -1});
          at::Tensor want = Calculator::heavy_hitter(p.gather(3, idx), Hkv, 2.5, pool);
          int64_t const head = G * w * P * 4;  // bytes of one KV head's gather
          for (int64_t slice : {int64_t{1}, head, 2 * head, head * Hkv, head * Hkv * B, Calculator::kSliceBytes}) {
            at::Tensor got = Calculator::heavy_hitter_at(p, order, Hkv, 2.5, pool, slice);
            ASSERT_EQ(got.sizes(), want.sizes());
            EXPECT_TRUE(at::equal(got, want)) << "H_kv " << Hkv << " G " << G << " w " << w << " pool " << pool
                                              << " slice " << slice;
            ++n_checked;
          }
        }
  EXPECT_EQ(n_checked, 4 * 4 * 2 * 2 * 6);
  // No past: [B, H_kv, 0].
  at::Tensor none = Calculator::heavy_hitter_at(at::rand({2, 4, 3, 5}), at::zeros({2, 2, 0}, at::kLong), 2, 1.0, 3, 1);
  EXPECT_EQ(none.sizes(), (at::IntArrayRef{2, 2, 0}));
}

TEST_F(CalculatorTest, MixCacheScoresWithTheMaskedOqScore) {
  // The cache's OQ score of a prefill chunk is the score of P = A over the keys before the
  // observation window, as in the unsliced formula on probs * mask.
  using namespace akcb;  // NOLINT: test scope
  CacheConfig cfg;
  cfg.policy = PolicyKind::kMix;
  cfg.cache_size = 24;
  cfg.window_size = 4;
  int64_t const B = 2, Hkv = 2, G = 2, D = 16, S = 30, w = 4;
  AdaptiveCache<policy::Mix> cache(cfg, CacheShape{1, B, Hkv, D, at::kFloat, c10::Device(c10::kCPU)});
  at::Tensor q = at::randn({B, Hkv * G, S, D}), k = at::randn({B, Hkv, S, D}), v = at::randn({B, Hkv, S, D});
  cache.append(0, k, v, 0);
  MaterializedKV m = cache.materialize(0);
  at::Tensor qpos = at::arange(S - w, S, at::kLong);
  at::Tensor probs = Calculator::attention_probs(q.narrow(2, S - w, w), qpos, m.k, m.pos);
  at::Tensor const probs0 = probs.clone();
  cache.observe_probs(0, probs);
  ASSERT_TRUE(cache.log_oq_score(0).has_value());
  at::Tensor kp = m.pos.to(at::kLong);
  at::Tensor before = (kp >= 0) & (kp < S - w);
  double const want = Calculator::log_oq_score(reference_stats(probs * expand_mask(before, G)), cfg.tau1, cfg.tau2,
                                               cfg.tau3);
  EXPECT_TRUE(close_rel(*cache.log_oq_score(0), want));
  EXPECT_TRUE(at::equal(probs, probs0));
  EXPECT_TRUE(cache.compress(0));
  EXPECT_EQ(cache.n_held(0), cache.held_limit(0));
}

TEST_F(CalculatorTest, SlicedScoringRejectsBadArguments) {
  at::Tensor p = at::rand({1, 4, 2, 5});
  EXPECT_ERROR_HAS(Calculator::oq_stats(p, at::ones({1, 2, 5}, at::kInt)), "bool");
  EXPECT_ERROR_HAS(Calculator::oq_stats(p, at::ones({1, 3, 5}, at::kBool)), "multiple");
  EXPECT_THROW(Calculator::oq_stats(p, at::ones({1, 2, 6}, at::kBool)), c10::Error);
  EXPECT_ERROR_HAS(Calculator::oq_stats(p, at::Tensor(), 0), "slice_bytes");
  EXPECT_ERROR_HAS(Calculator::log_oq_score(p, at::Tensor(), 0.1, 0.3, 0.6), "undefined");
  EXPECT_ERROR_HAS(Calculator::heavy_hitter_at(p, at::zeros({1, 2, 3}, at::kInt), 2, 1.0, 3), "int64");
  EXPECT_THROW(Calculator::heavy_hitter_at(p, at::zeros({1, 3, 3}, at::kLong), 2, 1.0, 3), c10::Error);
  EXPECT_ERROR_HAS(Calculator::heavy_hitter_at(p, at::zeros({1, 2, 3}, at::kLong), 2, 1.0, 4), "odd");
  EXPECT_ERROR_HAS(Calculator::attention_probs(at::randn({1, 4, 2, 8}), at::arange(2), at::randn({1, 2, 5, 8}),
                                               at::zeros({1, 2, 5}, at::kInt), 0),
                   "slice_bytes");
}

TEST_F(CalculatorTest, RejectsMismatchedShapes) {
  at::Tensor q = at::randn({1, 3, 2, 8});
  at::Tensor k = at::randn({1, 2, 5, 8});
  at::Tensor kpos = at::zeros({1, 2, 5}, at::kInt);
  EXPECT_THROW(Calculator::attention_probs(q, at::arange(2), k, kpos), c10::Error);  // 3 % 2 != 0
  EXPECT_THROW(Calculator::attention_probs(at::randn({1, 4, 2, 8}), at::arange(3), k, kpos), c10::Error);
  EXPECT_THROW(Calculator::heavy_hitter(at::rand({1, 4, 2, 5}), 3, 1.0, 5), c10::Error);
  EXPECT_THROW(Calculator::heavy_hitter(at::rand({1, 4, 2, 5}), 2, 1.0, 4), c10::Error);
}

}  // namespace
