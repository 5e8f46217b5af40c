// ops::decode_attention (the CUDA decode path of AdaptiveCache::attend) against LibTorch's
// scaled_dot_product_attention with enable_gqa on the CPU: GQA group sizes 1, 4 and 8, odd key
// counts, batch > 1, keys as narrow views of a larger preallocated block, fp32 and bf16.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include <akcb/ops.hpp>

#include "test_errors.hpp"

namespace {

struct DecodeCase {
  int64_t B, Hq, Hkv, T, D;
};

class DecodeAttention : public ::testing::TestWithParam<DecodeCase> {};

at::Tensor sdpa(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v) {
  return at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, false, std::nullopt, /*enable_gqa=*/true);
}

TEST_P(DecodeAttention, MatchesSdpa) {
  auto const c = GetParam();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7 + c.T);
  at::Tensor q = at::randn({c.B, c.Hq, 1, c.D}, gen);
  // Keys and values live in a block with room for more tokens, as in the cache (strided views).
  at::Tensor kb = at::randn({c.B, c.Hkv, c.T + 13, c.D}, gen) * 2.0;
  at::Tensor vb = at::randn({c.B, c.Hkv, c.T + 13, c.D}, gen);
  at::Tensor k = kb.narrow(2, 0, c.T), v = vb.narrow(2, 0, c.T);
  ASSERT_FALSE(k.is_contiguous());

  at::Tensor const want = sdpa(q, k, v);
  at::Tensor const got = akcb::ops::decode_attention(q, k, v);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);

  // bf16 inputs: transformers' eager numerics (bf16 scores and probabilities) against the fp32
  // result on the same rounded inputs.
  at::Tensor qh = q.to(at::kBFloat16), kh = k.to(at::kBFloat16), vh = v.to(at::kBFloat16);
  at::Tensor const got_h = akcb::ops::decode_attention(qh, kh, vh);
  EXPECT_EQ(got_h.scalar_type(), at::kBFloat16);
  at::Tensor const want_h = sdpa(qh.to(at::kFloat), kh.to(at::kFloat), vh.to(at::kFloat));
  EXPECT_LT((got_h.to(at::kFloat) - want_h).abs().max().item<double>(), 5e-2);
}

INSTANTIATE_TEST_SUITE_P(Shapes, DecodeAttention,
                         ::testing::Values(DecodeCase{1, 4, 4, 1, 64}, DecodeCase{2, 8, 2, 37, 128},
                                           DecodeCase{1, 32, 4, 300, 128}, DecodeCase{3, 4, 1, 129, 256}),
                         [](auto const& info) {
                           auto const& c = info.param;
                           return "B" + std::to_string(c.B) + "_Hq" + std::to_string(c.Hq) + "_Hkv" +
                                  std::to_string(c.Hkv) + "_T" + std::to_string(c.T) + "_D" + std::to_string(c.D);
                         });

TEST(DecodeAttentionErrors, RejectsBadInput) {
  at::Tensor q = at::randn({1, 4, 1, 8}), k = at::randn({1, 2, 5, 8}), v = at::randn({1, 2, 5, 8});
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(at::randn({1, 4, 2, 8}), k, v), "S = 2");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(at::randn({1, 3, 1, 8}), at::randn({1, 2, 5, 8}), v), "not a multiple");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(q, k.to(at::kBFloat16), v), "dtypes differ");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(q, at::randn({1, 2, 0, 8}), at::randn({1, 2, 0, 8})), "T = 0");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(q, at::randn({1, 2, 5, 4}), v), "D");
}

}  // namespace
