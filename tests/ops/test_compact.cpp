// In-place compaction (CPU reference path of akcb::ops::compact_tokens_).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <akcb/ops.hpp>

namespace {

// Random sorted keep sets of different sizes per (b, h), padded with -1.
at::Tensor random_index(int64_t B, int64_t H, int64_t T, int64_t K) {
  at::Tensor idx = at::full({B, H, K}, -1, at::kLong);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      int64_t const n = at::randint(0, K + 1, {1}).item<int64_t>();
      at::Tensor pick = std::get<0>(at::randperm(T).narrow(0, 0, n).sort());
      idx[b][h].narrow(0, 0, n).copy_(pick);
    }
  return idx;
}

class CompactTest : public ::testing::TestWithParam<std::tuple<c10::ScalarType, int64_t>> {
 protected:
  void SetUp() override { at::manual_seed(42); }
};

TEST_P(CompactTest, MatchesGatherAndZeroFillsHoles) {
  auto [dt, T] = GetParam();
  int64_t const B = 2, H = 3, D = 8, K = std::max<int64_t>(1, T / 2 + 1);
  at::Tensor x = at::randn({B, H, T, D}).to(dt);
  at::Tensor before = x.clone();
  at::Tensor idx = random_index(B, H, T, K);
  akcb::ops::compact_tokens_(x, idx);
  at::Tensor want = before.gather(2, idx.clamp_min(0).unsqueeze(-1).expand({-1, -1, -1, D}));
  want.masked_fill_((idx < 0).unsqueeze(-1), 0);
  EXPECT_TRUE(at::equal(x.narrow(2, 0, K), want));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CompactTest,
                         ::testing::Combine(::testing::Values(at::kFloat, at::kBFloat16, at::kHalf, at::kInt),
                                            ::testing::Values<int64_t>(1, 2, 7, 33, 64)));

TEST(Compact, ThreeDimensionalPositions) {
  at::Tensor pos = at::arange(20, at::kInt).view({1, 2, 10});
  at::Tensor idx = at::tensor({1, 4, 9, -1, 0, 2, 3, 5}, at::kLong).view({1, 2, 4});
  akcb::ops::compact_tokens_(pos, idx);
  EXPECT_TRUE(at::equal(pos.narrow(2, 0, 4), at::tensor({1, 4, 9, 0, 10, 12, 13, 15}, at::kInt).view({1, 2, 4})));
}

TEST(Compact, RejectsUnsafeIndex) {
  at::Tensor x = at::randn({1, 1, 8, 4});
  at::Tensor snapshot = x.clone();
  // Not increasing: an in-place move would read overwritten rows.
  EXPECT_THROW(akcb::ops::compact_tokens_(x, at::tensor({3, 1}, at::kLong).view({1, 1, 2})), c10::Error);
  // Out of range, valid after a hole, too many, wrong batch.
  EXPECT_THROW(akcb::ops::compact_tokens_(x, at::tensor({0, 8}, at::kLong).view({1, 1, 2})), c10::Error);
  EXPECT_THROW(akcb::ops::compact_tokens_(x, at::tensor({-1, 2}, at::kLong).view({1, 1, 2})), c10::Error);
  EXPECT_THROW(akcb::ops::compact_tokens_(x, at::zeros({1, 1, 9}, at::kLong)), c10::Error);
  EXPECT_THROW(akcb::ops::compact_tokens_(x, at::zeros({2, 1, 1}, at::kLong)), c10::Error);
  EXPECT_TRUE(at::equal(x, snapshot));  // nothing the caller owns was touched
}

}  // namespace
