// HF config.json / generation_config.json parsing: supported layouts and clear refusals.
#include <gtest/gtest.h>

#include "test_errors.hpp"

#include <akcb/models/hf_config.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace {

using akcb::models::GenerationDefaults;
using akcb::models::ModelArch;
using akcb::models::ModelConfig;
using akcb::models::RopeType;
using akcb_test::error_of;
using nlohmann::json;

/// A Llama 3.2 1B config.json as published (transformers 4.x layout: rope_theta + rope_scaling).
json llama32() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64,
    "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

/// A Qwen3-0.6B config.json as published.
json qwen3() {
  return json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
    "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
}

TEST(RuntimeConfig, Llama32AsPublished) {
  ModelConfig const c = ModelConfig::from_json(llama32().dump());
  EXPECT_EQ(c.arch, ModelArch::kLlama);
  EXPECT_EQ(c.n_layers, 16);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_heads_kv, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.dtype, c10::ScalarType::BFloat16);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  ASSERT_TRUE(c.bos_token_id.has_value());
  EXPECT_EQ(*c.bos_token_id, 128000);
}

TEST(RuntimeConfig, Qwen3AsPublished) {
  ModelConfig const c = ModelConfig::from_json(qwen3().dump());
  EXPECT_EQ(c.arch, ModelArch::kQwen3);
  EXPECT_EQ(c.head_dim, 128);  // explicit, != hidden_size / heads (64)
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));
}

TEST(RuntimeConfig, Transformers5RopeParameters) {
  json j = llama32();
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 12345.0}, {"factor", 8.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 64}};
  j.erase("head_dim");
  ModelConfig const c = ModelConfig::from_json(j.dump());
  EXPECT_DOUBLE_EQ(c.rope.theta, 12345.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 64);
  EXPECT_EQ(c.head_dim, 2048 / 32);  // derived when absent
}

TEST(RuntimeConfig, UnsupportedFeaturesAreNamed) {
  struct Case {
    char const* key;
    json value;
    char const* expect;
  };
  for (Case const& k : {Case{"model_type", "mistral", "model_type 'mistral'"},
                        Case{"attention_bias", true, "attention_bias"},
                        Case{"mlp_bias", true, "mlp_bias"},
                        Case{"hidden_act", "gelu", "hidden_act 'gelu'"},
                        Case{"sliding_window", 4096, "sliding_window"},
                        Case{"quantization_config", json::object({{"quant_method", "awq"}}), "quantization_config"},
                        Case{"rope_scaling", json::object({{"rope_type", "yarn"}, {"factor", 4.0}}), "rope_type 'yarn'"},
                        Case{"num_key_value_heads", 5, "multiple of num_key_value_heads"},
                        Case{"torch_dtype", "float8", "torch_dtype 'float8'"}}) {
    json j = llama32();
    j[k.key] = k.value;
    std::string const msg = error_of([&] { ModelConfig::from_json(j.dump(), "my/config.json"); });
    EXPECT_NE(msg.find(k.expect), std::string::npos) << k.key << ": " << msg;
    EXPECT_NE(msg.find("my/config.json"), std::string::npos) << msg;
  }
  json q = qwen3();
  q["use_sliding_window"] = true;
  EXPECT_NE(error_of([&] { ModelConfig::from_json(q.dump()); }).find("use_sliding_window"), std::string::npos);
  q = qwen3();
  q["layer_types"] = {"full_attention", "sliding_attention"};
  EXPECT_NE(error_of([&] { ModelConfig::from_json(q.dump()); }).find("layer_types[1]"), std::string::npos);
}

TEST(RuntimeConfig, MissingAndMalformed) {
  json j = llama32();
  j.erase("num_hidden_layers");
  EXPECT_NE(error_of([&] { ModelConfig::from_json(j.dump()); }).find("'num_hidden_layers' is missing"),
            std::string::npos);
  j = llama32();
  j["hidden_size"] = "big";
  EXPECT_NE(error_of([&] { ModelConfig::from_json(j.dump()); }).find("'hidden_size' must be an integer"),
            std::string::npos);
  j = llama32();
  j["rope_scaling"].erase("low_freq_factor");
  EXPECT_NE(error_of([&] { ModelConfig::from_json(j.dump()); }).find("low_freq_factor"), std::string::npos);
  EXPECT_NE(error_of([] { ModelConfig::from_json("{\"model_type\": \"llama\",", "c.json"); }).find("invalid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] { ModelConfig::load("/nonexistent/dir"); }).find("/nonexistent/dir/config.json"),
            std::string::npos);
}

TEST(RuntimeConfig, GenerationDefaults) {
  GenerationDefaults const g = GenerationDefaults::from_json(
      R"({"bos_token_id": 1, "do_sample": true, "eos_token_id": [2, 3], "temperature": 0.6, "top_p": 0.9, "top_k": 20})");
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(g.do_sample.value());
  EXPECT_DOUBLE_EQ(g.temperature.value(), 0.6);
  EXPECT_EQ(g.top_k.value(), 20);
  EXPECT_FALSE(g.max_new_tokens.has_value());
  EXPECT_TRUE(GenerationDefaults::load("/nonexistent/dir").eos_token_ids.empty());
  EXPECT_NE(error_of([] { GenerationDefaults::from_json(R"({"eos_token_id": "x"})"); }).find("eos_token_id"),
            std::string::npos);
}

}  // namespace
