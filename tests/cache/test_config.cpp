// CacheConfig validation: every bad field names itself and its value.
#include <gtest/gtest.h>

#include <akcb/cache/cache_config.hpp>

#include "test_errors.hpp"

namespace {

using akcb::CacheConfig;

void expect_error_mentions(CacheConfig const& c, std::string const& needle) {
  EXPECT_ERROR_HAS(c.validate(), needle);
}

TEST(CacheConfig, DefaultsAndAuthorsSettingAreValid) {
  EXPECT_NO_THROW(CacheConfig{}.validate());
  EXPECT_NO_THROW(CacheConfig::authors_tuned().validate());
  CacheConfig d;
  EXPECT_EQ(d.cache_size, 4096);
  EXPECT_EQ(d.window_size, 128);
  EXPECT_EQ(d.policy, akcb::PolicyKind::kMix);
}

TEST(CacheConfig, RejectsEachBadField) {
  CacheConfig c;
  c.window_size = 0;
  expect_error_mentions(c, "window_size");
  c = {};
  c.cache_size = 128;  // == window
  expect_error_mentions(c, "cache_size (128)");
  c = {};
  c.tau2 = 0;
  expect_error_mentions(c, "tau2");
  c = {};
  c.tau3 = std::nan("");
  expect_error_mentions(c, "tau3");
  c = {};
  c.gamma = -1;
  expect_error_mentions(c, "gamma");
  c = {};
  c.evict_fraction = 1.0;
  expect_error_mentions(c, "evict_fraction");
  c = {};
  c.pool_kernel = 4;
  expect_error_mentions(c, "pool_kernel");
  c = {};
  c.sink_tokens = 5000;
  expect_error_mentions(c, "sink_tokens");
  c = {};
  c.policy = static_cast<akcb::PolicyKind>(9);
  expect_error_mentions(c, "policy");
  c = {};
  c.quant_dtype = static_cast<akcb::QuantDtype>(7);
  expect_error_mentions(c, "quant_dtype");
}

TEST(CacheConfig, ParsesNamesAndRejectsUnknown) {
  EXPECT_EQ(akcb::parse_policy("window"), akcb::PolicyKind::kWindow);
  EXPECT_EQ(akcb::parse_quant_dtype("int8"), akcb::QuantDtype::kInt8);
  EXPECT_EQ(akcb::parse_budget_mode("bytes"), akcb::BudgetMode::kBytes);
  EXPECT_EQ(akcb::parse_ratio_scope("global"), akcb::RatioScope::kGlobal);
  EXPECT_THROW(akcb::parse_policy("h2o"), c10::Error);
  EXPECT_THROW(akcb::parse_quant_dtype("fp4"), c10::Error);
  for (auto p : {akcb::PolicyKind::kFull, akcb::PolicyKind::kWindow, akcb::PolicyKind::kOrigin,
                 akcb::PolicyKind::kQuant, akcb::PolicyKind::kMix})
    EXPECT_EQ(akcb::parse_policy(akcb::to_string(p)), p);
}

}  // namespace
