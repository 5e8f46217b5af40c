// safetensors reading: dtypes, single and sharded checkpoints, and clear errors on truncated,
// corrupted or mismatched files (made at test time).
#include "models/test_runtime_common.hpp"

#include <akcb/models/llama.hpp>
#include <akcb/models/safetensors.hpp>

#include <ATen/ATen.h>

namespace {

using akcb::models::LlamaModel;
using akcb::models::SafetensorsCheckpoint;
using akcb::models::SafetensorsFile;
using akcb_test::copy_model;
using akcb_test::fresh_dir;
using akcb_test::hf_reference_dir;
using akcb_test::read_raw;
using akcb_test::write_raw;
using nlohmann::json;
namespace fs = std::filesystem;

TEST(RuntimeSafetensors, DtypesLoadToAnyDtype) {
  SafetensorsCheckpoint const ck = SafetensorsCheckpoint::open_file((hf_reference_dir() / "dtypes" / "dtypes.safetensors").string());
  at::Tensor const expected = ck.load("expected", at::kFloat, at::kCPU);
  EXPECT_EQ(ck.info("t_f16").dtype, at::kHalf);
  EXPECT_EQ(ck.info("t_bf16").dtype, at::kBFloat16);
  for (char const* name : {"t_f32", "t_f16", "t_bf16"}) {
    at::Tensor const t = ck.load(name, at::kFloat, at::kCPU, {2, 3});
    EXPECT_TRUE(at::equal(t, expected)) << name;
    at::Tensor const b = ck.load(name, at::kBFloat16, at::kCPU);
    EXPECT_EQ(b.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(b.to(at::kFloat), expected)) << name;  // values exact in bf16
  }
}

TEST(RuntimeSafetensors, HandWrittenFileAndUnalignedData) {
  fs::path const d = fresh_dir("handwritten");
  // Data offsets deliberately odd (1-byte pad first) so that the loader must copy unaligned data.
  std::string data(1, '\x7f');
  float const vals[3] = {1.5f, -2.0f, 0.25f};
  data.append(reinterpret_cast<char const*>(vals), sizeof(vals));
  json h = {{"__metadata__", {{"format", "pt"}}},
            {"pad", {{"dtype", "I32"}, {"shape", {0}}, {"data_offsets", {0, 0}}}},
            {"w", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {1, 13}}}}};
  write_raw(d / "x.safetensors", h.dump(), data);
  SafetensorsFile const f((d / "x.safetensors").string());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  at::Tensor const w = f.load("w", at::kFloat, at::kCPU);
  EXPECT_TRUE(at::equal(w, at::tensor({1.5f, -2.0f, 0.25f})));
  EXPECT_ERROR_HAS(f.info("nope"), "has no tensor 'nope'");
}

/// Each corruption of a small valid file and the words its error must contain.
TEST(RuntimeSafetensors, CorruptedHeadersAreRefused) {
  fs::path const d = fresh_dir("corrupt");
  std::string const data(24, '\0');  // room for [2, 3] fp32
  auto entry = [](char const* dtype, json shape, uint64_t b, uint64_t e) {
    return json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", {b, e}}};
  };
  struct Case {
    char const* name;
    std::string header;
    std::string data;
    int64_t len_override;
    char const* expect;
  };
  std::vector<Case> cases{
      {"bad_dtype", json{{"w", entry("F99", {2, 3}, 0, 24)}}.dump(), data, -1, "unsupported dtype 'F99'"},
      {"fp8_dtype", json{{"w", entry("F8_E4M3", {2, 3}, 0, 6)}}.dump(), data, -1, "unsupported dtype 'F8_E4M3'"},
      {"size_mismatch", json{{"w", entry("F32", {2, 4}, 0, 24)}}.dump(), data, -1, "needs 32 bytes"},
      {"past_end", json{{"w", entry("F32", {2, 3}, 8, 32)}}.dump(), data, -1, "past the end of the file"},
      {"reversed", json{{"w", entry("F32", {0}, 8, 4)}}.dump(), data, -1, "reversed"},
      {"overlap", json{{"a", entry("F32", {3}, 0, 12)}, {"b", entry("F32", {3}, 8, 20)}}.dump(), data, -1, "overlap"},
      {"negative_shape", json{{"w", entry("F32", {-2, 3}, 0, 24)}}.dump(), data, -1, "non-negative"},
      {"not_object", json{{"w", 5}}.dump(), data, -1, "must be an object"},
      {"bad_json", std::string("{\"w\": {\"dtype\": "), data, -1, "not valid JSON"},
      {"header_past_end", json{{"w", entry("F32", {2, 3}, 0, 24)}}.dump(), data, 1000, "points past the end"},
      {"header_huge", json{{"w", entry("F32", {2, 3}, 0, 24)}}.dump(), data, int64_t(1) << 40, "header length"},
  };
  for (Case const& c : cases) {
    fs::path const p = d / (std::string(c.name) + ".safetensors");
    write_raw(p, c.header, c.data, c.len_override);
    std::string const msg = akcb_test::error_of([&] { SafetensorsFile f(p.string()); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find(p.string()), std::string::npos) << c.name << " must name the file: " << msg;
  }
  akcb_test::write_bytes(d / "empty.safetensors", "");
  EXPECT_ERROR_HAS(SafetensorsFile((d / "empty.safetensors").string()), "too small");
  EXPECT_ERROR_HAS(SafetensorsFile((d / "absent.safetensors").string()), "cannot open");
}

TEST(RuntimeSafetensors, TruncatedModelFile) {
  fs::path const d = copy_model("llama_tied", "truncated");
  std::string const b = akcb_test::read_bytes(d / "model.safetensors");
  akcb_test::write_bytes(d / "model.safetensors", b.substr(0, b.size() - 100));
  std::string const msg = akcb_test::error_of([&] { LlamaModel::load(d.string()); });
  EXPECT_NE(msg.find("past the end of the file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  // Truncated inside the header.
  akcb_test::write_bytes(d / "model.safetensors", b.substr(0, 200));
  EXPECT_ERROR_HAS(LlamaModel::load(d.string()), "points past the end of the file");
}

TEST(RuntimeSafetensors, MissingTensorIsNamed) {
  fs::path const d = copy_model("llama_tied", "missing");
  auto raw = read_raw(d / "model.safetensors");
  raw.header.erase("model.layers.1.mlp.up_proj.weight");
  write_raw(d / "model.safetensors", raw);
  std::string const msg = akcb_test::error_of([&] { LlamaModel::load(d.string()); });
  EXPECT_NE(msg.find("'model.layers.1.mlp.up_proj.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lacks 1 expected"), std::string::npos) << msg;
}

TEST(RuntimeSafetensors, WrongShapeIsNamed) {
  fs::path const d = copy_model("llama_tied", "wrong_shape");
  auto raw = read_raw(d / "model.safetensors");
  auto& e = raw.header["model.layers.2.self_attn.k_proj.weight"];
  e["shape"] = {e["shape"][1], e["shape"][0]};  // same bytes, transposed shape
  write_raw(d / "model.safetensors", raw);
  std::string const msg = akcb_test::error_of([&] { LlamaModel::load(d.string()); });
  EXPECT_NE(msg.find("'model.layers.2.self_attn.k_proj.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape [64, 32] does not match the config's [32, 64]"), std::string::npos) << msg;
}

TEST(RuntimeSafetensors, ConfigCheckpointMismatch) {
  fs::path const d = copy_model("qwen3", "mismatch");
  json cfg = json::parse(akcb_test::read_bytes(d / "config.json"));
  cfg["intermediate_size"] = 128;  // the weights say 96
  akcb_test::write_bytes(d / "config.json", cfg.dump());
  EXPECT_ERROR_HAS(LlamaModel::load(d.string()), "mlp.gate_proj.weight': shape [96, 64] does not match the config's [128, 64]");
  cfg["intermediate_size"] = 96;
  cfg["tie_word_embeddings"] = false;  // an untied model needs lm_head.weight
  akcb_test::write_bytes(d / "config.json", cfg.dump());
  EXPECT_ERROR_HAS(LlamaModel::load(d.string()), "'lm_head.weight'");
}

TEST(RuntimeSafetensors, IntegerWeightIsRefused) {
  fs::path const d = copy_model("llama_tied", "int_weight");
  auto raw = read_raw(d / "model.safetensors");
  raw.header["model.norm.weight"]["dtype"] = "I32";  // same element size, wrong kind
  write_raw(d / "model.safetensors", raw);
  EXPECT_ERROR_HAS(LlamaModel::load(d.string()), "'model.norm.weight': dtype Int is not a floating type");
}

TEST(RuntimeSafetensors, ShardedCheckpoint) {
  fs::path const src = hf_reference_dir() / "llama_untied";
  ASSERT_TRUE(fs::exists(src / "model.safetensors.index.json"));
  SafetensorsCheckpoint const ck = SafetensorsCheckpoint::open(src.string());
  EXPECT_TRUE(ck.contains("lm_head.weight"));
  EXPECT_TRUE(ck.contains("model.layers.2.mlp.down_proj.weight"));
  EXPECT_NE(ck.file_of("lm_head.weight").path(), ck.file_of("model.embed_tokens.weight").path());

  fs::path const d = copy_model("llama_untied", "sharded_bad");
  json idx = json::parse(akcb_test::read_bytes(d / "model.safetensors.index.json"));
  std::string const shard_of_lm = idx["weight_map"]["lm_head.weight"];
  std::string const shard_of_emb = idx["weight_map"]["model.embed_tokens.weight"];
  json bad = idx;
  bad["weight_map"]["lm_head.weight"] = shard_of_emb;  // points at the wrong shard
  akcb_test::write_bytes(d / "model.safetensors.index.json", bad.dump());
  EXPECT_ERROR_HAS(SafetensorsCheckpoint::open(d.string()), "does not contain it");
  bad = idx;
  bad["weight_map"]["lm_head.weight"] = "../elsewhere.safetensors";
  akcb_test::write_bytes(d / "model.safetensors.index.json", bad.dump());
  EXPECT_ERROR_HAS(SafetensorsCheckpoint::open(d.string()), "plain file name");
  akcb_test::write_bytes(d / "model.safetensors.index.json", idx.dump());
  fs::remove(d / shard_of_lm);
  EXPECT_ERROR_HAS(LlamaModel::load(d.string()), shard_of_lm + "' named by");
  akcb_test::write_bytes(d / "model.safetensors.index.json", "{\"weight_map\": [");
  EXPECT_ERROR_HAS(SafetensorsCheckpoint::open(d.string()), "invalid JSON");
  fs::path const empty = fresh_dir("no_weights");
  EXPECT_ERROR_HAS(SafetensorsCheckpoint::open(empty.string()), "neither model.safetensors nor");
}

}  // namespace
