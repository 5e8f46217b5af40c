// Calculator: observation probabilities, heavy-hitter scores and the OQ score.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <akcb/calculator.hpp>

namespace {

using akcb::Calculator;

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
