#pragma once
/// \file hf_config.hpp
/// The Hugging Face `config.json` / `generation_config.json` of the supported decoder models:
/// `llama` (Llama 3 / 3.1 / 3.2) and `qwen3`. Anything the runtime does not implement is refused
/// with an error naming the field, never silently ignored.

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace akcb::models {

/// Decoder family. Both share one forward (llama.hpp); Qwen 3 adds per-head q/k RMSNorm.
enum class ModelArch { kLlama, kQwen3 };

/// RoPE frequency schedule.
enum class RopeType {
  kDefault,  ///< inv_freq_i = theta^(-2i/D)
  kLlama3,   ///< Llama 3.1 band-wise scaling (factor, low/high_freq_factor, original context)
};

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  // kLlama3 only:
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

/// Architecture hyper-parameters from `config.json`.
struct ModelConfig {
  ModelArch arch = ModelArch::kLlama;
  std::string model_type;             ///< as written in config.json ("llama", "qwen3")
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;               ///< num_hidden_layers (L)
  int64_t n_heads = 0;                ///< num_attention_heads (H_q)
  int64_t n_heads_kv = 0;             ///< num_key_value_heads (H_kv)
  int64_t head_dim = 0;               ///< D (explicit `head_dim`, else hidden_size / n_heads)
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  RopeConfig rope;
  /// `torch_dtype` / `dtype` of the checkpoint (Float when absent).
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  ///< from config.json (generation_config.json wins)

  /// Parses and validates a config.json text. `source` names the file in errors.
  /// \throws c10::Error on malformed JSON, missing or invalid fields, or an unsupported feature
  ///         (model_type, rope type, attention/mlp bias, sliding window, hidden_act, ...).
  static ModelConfig from_json(std::string const& text, std::string const& source = "config.json");
  /// Reads `<dir>/config.json`. \throws c10::Error (see from_json), or when the file is unreadable.
  static ModelConfig load(std::string const& model_dir);
};

/// Generation defaults from `generation_config.json` (every field optional).
struct GenerationDefaults {
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;
  std::optional<bool> do_sample;
  std::optional<double> temperature;
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
  std::optional<int64_t> max_new_tokens;

  /// \throws c10::Error on malformed JSON or ill-typed fields.
  static GenerationDefaults from_json(std::string const& text,
                                      std::string const& source = "generation_config.json");
  /// Reads `<dir>/generation_config.json`; all fields empty when the file does not exist.
  static GenerationDefaults load(std::string const& model_dir);
};

/// Reads a whole text file. \throws c10::Error naming the path when it cannot be read.
std::string read_text_file(std::string const& path);

char const* to_string(ModelArch a);

}  // namespace akcb::models
