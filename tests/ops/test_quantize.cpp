// Per-token quantization round trips (CPU reference path of akcb::ops).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <akcb/ops.hpp>

namespace {

using akcb::QuantDtype;

class QuantizeTest : public ::testing::TestWithParam<std::tuple<QuantDtype, c10::ScalarType>> {
 protected:
  void SetUp() override { at::manual_seed(1234); }
};

// Relative error bound per element: half a step of the format at the row's absmax.
// fp8 e4m3 has 3 mantissa bits: relative rounding error <= 2^-4 of the value (plus the
// subnormal floor); int8: absolute error <= absmax / 127 / 2.
TEST_P(QuantizeTest, RoundTripWithinFormatError) {
  auto [q, dt] = GetParam();
  at::Tensor x = (at::randn({3, 5, 17, 64}) * at::rand({3, 5, 17, 1}) * 10).to(dt);
  auto qt = akcb::ops::quantize_per_token(x, q);
  ASSERT_EQ(qt.scale.sizes(), x.sizes().slice(0, 3));
  EXPECT_EQ(qt.data.scalar_type(), q == QuantDtype::kInt8 ? at::kChar : at::kFloat8_e4m3fn);
  at::Tensor y = akcb::ops::dequantize_per_token(qt.data, qt.scale, at::kFloat);
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor absmax = xf.abs().amax(-1, true);
  at::Tensor err = (y - xf).abs();
  if (q == QuantDtype::kInt8) {
    EXPECT_TRUE((err <= absmax / 127.0 * 0.5 + 1e-6).all().item<bool>()) << err.max();
  } else {
    // e4m3: step is 2^-3 relative in the normal range; subnormal floor at 2^-9 * scale.
    at::Tensor bound = xf.abs() * (1.0 / 16) + qt.scale.unsqueeze(-1) * std::ldexp(1.0, -9) + 1e-7;
    EXPECT_TRUE((err <= bound).all().item<bool>()) << (err - bound).max();
  }
  at::Tensor nmse = ((y - xf).pow(2).sum() / xf.pow(2).sum());
  EXPECT_LT(nmse.item<double>(), q == QuantDtype::kInt8 ? 1e-3 : 3e-3);
}

TEST_P(QuantizeTest, ZeroRowsAndHugeValuesStayFinite) {
  auto [q, dt] = GetParam();
  double const huge = dt == at::kHalf ? 6.0e4 : (dt == at::kBFloat16 ? 3.0e38 : 3.0e38);
  at::Tensor x = at::randn({4, 32}).to(dt);
  x[0].zero_();
  x[1].fill_(huge);
  x[2][3] = -huge;
  x[3].fill_(1e-30);  // absmax underflows once divided by qmax in some dtypes
  auto qt = akcb::ops::quantize_per_token(x, q);
  at::Tensor y = akcb::ops::dequantize_per_token(qt.data, qt.scale, at::kFloat);
  EXPECT_TRUE(at::isfinite(qt.scale).all().item<bool>());
  EXPECT_TRUE(at::isfinite(qt.data.to(at::kFloat)).all().item<bool>());
  EXPECT_TRUE(at::isfinite(y).all().item<bool>());
  EXPECT_EQ(y[0].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(qt.scale[0].item<float>(), 0.0f);
  EXPECT_NEAR(y[1][0].item<double>() / huge, 1.0, 1e-2);
  EXPECT_NEAR(y[2][3].item<double>() / -huge, 1.0, 1e-2);
}

TEST_P(QuantizeTest, AbsmaxMapsToFormatMax) {
  auto [q, dt] = GetParam();
  at::Tensor x = at::randn({8, 128}).to(dt);
  auto qt = akcb::ops::quantize_per_token(x, q);
  float const qmax = akcb::ops::quant_max(q);
  at::Tensor m = qt.data.to(at::kFloat).abs().amax(-1);
  EXPECT_TRUE((m == qmax).all().item<bool>()) << m;
  EXPECT_TRUE(at::allclose(qt.scale, x.to(at::kFloat).abs().amax(-1) / qmax));
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizeTest,
                         ::testing::Combine(::testing::Values(QuantDtype::kFp8E4M3, QuantDtype::kInt8),
                                            ::testing::Values(at::kFloat, at::kBFloat16, at::kHalf)));

TEST(QuantizeErrors, RejectsBadInput) {
  EXPECT_THROW(akcb::ops::quantize_per_token(at::zeros({4, 8}, at::kInt), QuantDtype::kInt8), c10::Error);
  at::Tensor d = at::zeros({4, 8}, at::kChar);
  EXPECT_THROW(akcb::ops::dequantize_per_token(d, at::zeros({5}), at::kFloat), c10::Error);
  EXPECT_THROW(akcb::ops::dequantize_per_token(d, at::zeros({4}, at::kDouble), at::kFloat), c10::Error);
  EXPECT_THROW(akcb::ops::dequantize_per_token(at::zeros({4, 8}), at::zeros({4}), at::kFloat), c10::Error);
  EXPECT_THROW(akcb::ops::dequantize_per_token(d, at::zeros({4}), at::kInt), c10::Error);
}

TEST(QuantizeGather, WritesGatheredRowsAtOffsetAndHolesForMinusOne) {
  at::manual_seed(7);
  at::Tensor src = at::randn({2, 3, 10, 16});
  at::Tensor dst = at::zeros({2, 3, 12, 16}, at::kByte).view(at::kFloat8_e4m3fn);
  at::Tensor scale = at::full({2, 3, 12}, 7.0f);
  at::Tensor index = at::randint(0, 10, {2, 3, 5}, at::kLong);
  index[1][2][4] = -1;
  akcb::ops::quantize_gather_into_(src, index, dst, scale, 4);
  at::Tensor rows = src.gather(2, index.clamp_min(0).unsqueeze(-1).expand({-1, -1, -1, 16}));
  auto ref = akcb::ops::quantize_per_token(rows, QuantDtype::kFp8E4M3);
  at::Tensor got = dst.narrow(2, 4, 5).view(at::kByte), want = ref.data.view(at::kByte);
  EXPECT_TRUE(at::equal(got[0], want[0]));
  EXPECT_TRUE(at::equal(got[1].narrow(1, 0, 4), want[1].narrow(1, 0, 4)));
  EXPECT_EQ(got[1][2][4].sum().item<int64_t>(), 0);
  EXPECT_EQ(scale[1][2][8].item<float>(), 0.0f);
  EXPECT_EQ(scale[0][0][0].item<float>(), 7.0f);  // untouched outside [offset, offset + M)
  EXPECT_EQ(scale[0][0][9].item<float>(), 7.0f);
  // Out of range index and overflowing offset are caller errors.
  at::Tensor bad = index.clone();
  bad[0][0][0] = 10;
  EXPECT_THROW(akcb::ops::quantize_gather_into_(src, bad, dst, scale, 0), c10::Error);
  EXPECT_THROW(akcb::ops::quantize_gather_into_(src, index, dst, scale, 8), c10::Error);
}

}  // namespace

namespace {

// Every fp8 e4m3fn byte dequantizes to exactly its ATen conversion times the scale (NaN bytes
// included: they stay NaN; quantize never produces them).
TEST(Dequantize, Fp8EqualsElementConversionForAllBytes) {
  at::Tensor bytes = at::arange(256, at::kShort).to(at::kByte).view({2, 128});
  at::Tensor data = bytes.view(at::kFloat8_e4m3fn);
  at::Tensor scale = at::tensor({0.5f, 3.0f});
  at::Tensor got = akcb::ops::dequantize_per_token(data, scale, at::kFloat);
  at::Tensor want = data.to(at::kFloat) * scale.unsqueeze(-1);
  EXPECT_TRUE(at::equal(at::nan_to_num(got, 12345.0), at::nan_to_num(want, 12345.0)));
}

}  // namespace
