// ops::decode_attention (the CUDA decode path of AdaptiveCache::attend) against LibTorch's
// scaled_dot_product_attention with enable_gqa on the CPU: GQA group sizes 1, 4 and 8, odd key
// counts, batch > 1, keys as narrow views of a larger preallocated block, fp32 and bf16.
// ops::cache_attention (its CPU routing) against an fp64 reference written out here: explicit
// bottom-right causal mask, K and V repeated per query group, softmax in fp64.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
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

/// out[b, h, i] = softmax_j(q . k / sqrt(D)) v over keys j <= T - S + i of KV head h / G, in fp64.
at::Tensor prefill_reference(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v) {
  int64_t const S = q.size(2), T = k.size(2), G = q.size(1) / k.size(1), D = q.size(3);
  at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble).repeat_interleave(G, 1), vd = v.to(at::kDouble).repeat_interleave(G, 1);
  at::Tensor s = at::matmul(qd, kd.transpose(2, 3)) / std::sqrt(static_cast<double>(D));  // [B, H_q, S, T]
  at::Tensor i = at::arange(S, at::kLong).view({S, 1}), j = at::arange(T, at::kLong).view({1, T});
  s = s.masked_fill(j > i + (T - S), -std::numeric_limits<double>::infinity());
  return at::matmul(at::softmax(s, -1), vd);
}

struct PrefillCase {
  int64_t B, Hq, Hkv, S, T, D;
};

class CacheAttention : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(CacheAttention, MatchesFp64Reference) {
  auto const c = GetParam();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11 + c.T + c.S);
  at::Tensor q = at::randn({c.B, c.S, c.Hq, c.D}, gen).transpose(1, 2);  // the models' layout: strided heads
  at::Tensor kb = at::randn({c.B, c.Hkv, c.T + 5, c.D}, gen) * 2.0;
  at::Tensor vb = at::randn({c.B, c.Hkv, c.T + 5, c.D}, gen);
  at::Tensor k = kb.narrow(2, 0, c.T), v = vb.narrow(2, 0, c.T);
  at::Tensor const want = prefill_reference(q, k, v);
  at::Tensor const got = akcb::ops::cache_attention(q, k, v);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-5);
  // Query 0 of the chunk sees exactly keys 0 .. T - S: changing key and value T - S + 1 (when it
  // exists) must not change its output, while changing value T - S must.
  if (c.S > 1) {
    at::Tensor k2 = k.clone(), v2 = v.clone();
    k2.narrow(2, c.T - c.S + 1, 1).mul_(-3.0);
    v2.narrow(2, c.T - c.S + 1, 1).add_(5.0);
    EXPECT_TRUE(at::equal(akcb::ops::cache_attention(q, k2, v2).narrow(2, 0, 1), got.narrow(2, 0, 1)));
    at::Tensor v3 = v.clone();
    v3.narrow(2, c.T - c.S, 1).add_(5.0);
    EXPECT_FALSE(at::equal(akcb::ops::cache_attention(q, k, v3).narrow(2, 0, 1), got.narrow(2, 0, 1)));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CacheAttention,
                         ::testing::Values(PrefillCase{1, 4, 4, 1, 1, 64}, PrefillCase{2, 8, 2, 37, 37, 64},
                                           PrefillCase{2, 8, 2, 37, 101, 128}, PrefillCase{1, 32, 8, 5, 300, 128},
                                           PrefillCase{3, 4, 1, 17, 129, 256}, PrefillCase{1, 6, 3, 1, 50, 36}),
                         [](auto const& info) {
                           auto const& c = info.param;
                           return "B" + std::to_string(c.B) + "_Hq" + std::to_string(c.Hq) + "_Hkv" +
                                  std::to_string(c.Hkv) + "_S" + std::to_string(c.S) + "_T" + std::to_string(c.T) +
                                  "_D" + std::to_string(c.D);
                         });

TEST(CacheAttentionErrors, RejectsBadInput) {
  at::Tensor q = at::randn({1, 4, 3, 8}), k = at::randn({1, 2, 5, 8}), v = at::randn({1, 2, 5, 8});
  EXPECT_ERROR_HAS(akcb::ops::cache_attention(at::randn({1, 4, 6, 8}), k, v), "T >= S");
  EXPECT_ERROR_HAS(akcb::ops::cache_attention(at::randn({1, 3, 3, 8}), k, v), "not a multiple");
  EXPECT_ERROR_HAS(akcb::ops::cache_attention(q, k.to(at::kHalf), v), "dtypes differ");
  EXPECT_ERROR_HAS(akcb::ops::cache_attention(q, at::randn({1, 2, 5, 4}), v), "D");
  EXPECT_ERROR_HAS(akcb::ops::cache_attention(q, at::randn({1, 2, 8, 5}).transpose(2, 3), v), "contiguous in D");
  EXPECT_ERROR_HAS(akcb::ops::cache_attention(q.to(at::kInt), k.to(at::kInt), v.to(at::kInt)), "fp32, bf16 or fp16");
}

TEST(DecodeAttentionErrors, RejectsBadInput) {
  at::Tensor q = at::randn({1, 4, 1, 8}), k = at::randn({1, 2, 5, 8}), v = at::randn({1, 2, 5, 8});
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(at::randn({1, 4, 2, 8}), k, v), "S = 2");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(at::randn({1, 3, 1, 8}), at::randn({1, 2, 5, 8}), v), "not a multiple");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(q, k.to(at::kBFloat16), v), "dtypes differ");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(q, at::randn({1, 2, 0, 8}), at::randn({1, 2, 0, 8})), "T = 0");
  EXPECT_ERROR_HAS(akcb::ops::decode_attention(q, at::randn({1, 2, 5, 4}), v), "D");
}

}  // namespace
