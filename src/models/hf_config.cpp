// Parsing of Hugging Face config.json / generation_config.json (see hf_config.hpp).
#include <akcb/models/hf_config.hpp>

#include <akcb/error.hpp>

#include <nlohmann/json.hpp>

#include "file_util.hpp"

#include <fstream>
#include <sstream>

namespace akcb::models {
namespace {

using nlohmann::json;

json parse_json(std::string const& text, std::string const& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (json::exception const& e) {
    AKCB_CHECK(false, source, ": invalid JSON: ", e.what());
  }
  AKCB_CHECK(j.is_object(), source, ": top level must be a JSON object, got ", j.type_name());
  return j;
}

bool has_value(json const& j, char const* key) { return j.contains(key) && !j.at(key).is_null(); }

int64_t get_int(json const& j, char const* key, std::string const& source) {
  AKCB_CHECK(has_value(j, key), source, ": required field '", key, "' is missing");
  json const& v = j.at(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double const d = v.get<double>();
    AKCB_CHECK(d == static_cast<double>(static_cast<int64_t>(d)), source, ": field '", key,
               "' must be an integer, got ", d);
    return static_cast<int64_t>(d);
  }
  AKCB_CHECK(false, source, ": field '", key, "' must be an integer, got ", v.dump());
  return 0;
}

int64_t get_int_or(json const& j, char const* key, int64_t fallback, std::string const& source) {
  return has_value(j, key) ? get_int(j, key, source) : fallback;
}

double get_double(json const& j, char const* key, std::string const& source) {
  AKCB_CHECK(has_value(j, key), source, ": required field '", key, "' is missing");
  json const& v = j.at(key);
  AKCB_CHECK(v.is_number(), source, ": field '", key, "' must be a number, got ", v.dump());
  return v.get<double>();
}

double get_double_or(json const& j, char const* key, double fallback, std::string const& source) {
  return has_value(j, key) ? get_double(j, key, source) : fallback;
}

bool get_bool_or(json const& j, char const* key, bool fallback, std::string const& source) {
  if (!has_value(j, key)) return fallback;
  json const& v = j.at(key);
  AKCB_CHECK(v.is_boolean(), source, ": field '", key, "' must be a boolean, got ", v.dump());
  return v.get<bool>();
}

std::string get_string_or(json const& j, char const* key, std::string fallback, std::string const& source) {
  if (!has_value(j, key)) return fallback;
  json const& v = j.at(key);
  AKCB_CHECK(v.is_string(), source, ": field '", key, "' must be a string, got ", v.dump());
  return v.get<std::string>();
}

/// `eos_token_id`: null, an integer or a list of integers.
std::vector<int64_t> get_token_ids(json const& j, char const* key, std::string const& source) {
  std::vector<int64_t> out;
  if (!has_value(j, key)) return out;
  json const& v = j.at(key);
  if (v.is_number_integer()) {
    out.push_back(v.get<int64_t>());
  } else {
    AKCB_CHECK(v.is_array(), source, ": field '", key, "' must be an integer or a list of integers, got ",
               v.dump());
    for (json const& e : v) {
      AKCB_CHECK(e.is_number_integer(), source, ": field '", key, "' must hold integers, got ", e.dump());
      out.push_back(e.get<int64_t>());
    }
  }
  return out;
}

c10::ScalarType parse_torch_dtype(std::string const& s, std::string const& source) {
  if (s == "float32" || s == "float") return c10::ScalarType::Float;
  if (s == "bfloat16") return c10::ScalarType::BFloat16;
  if (s == "float16" || s == "half") return c10::ScalarType::Half;
  AKCB_CHECK(false, source, ": unsupported torch_dtype '", s, "'; supported: float32, bfloat16, float16");
  return c10::ScalarType::Float;
}

RopeConfig parse_rope(json const& j, std::string const& source) {
  RopeConfig r;
  // transformers >= 5 writes `rope_parameters` (theta inside); checkpoints of the Llama 3 era
  // write `rope_theta` + `rope_scaling` (null for the default schedule).
  json params = json::object();
  char const* field = "rope_scaling";
  if (has_value(j, "rope_parameters")) {
    params = j.at("rope_parameters");
    field = "rope_parameters";
  } else if (has_value(j, "rope_scaling")) {
    params = j.at("rope_scaling");
  }
  AKCB_CHECK(params.is_object(), source, ": field '", field, "' must be an object or null, got ", params.dump());
  std::string const where = source + " " + field;
  r.theta = get_double_or(params, "rope_theta", get_double_or(j, "rope_theta", 10000.0, source), where);
  AKCB_CHECK(r.theta > 1.0, source, ": rope_theta must be > 1, got ", r.theta);
  std::string type = get_string_or(params, "rope_type", get_string_or(params, "type", "default", where), where);
  double const partial = get_double_or(params, "partial_rotary_factor",
                                       get_double_or(j, "partial_rotary_factor", 1.0, source), where);
  AKCB_CHECK(partial == 1.0, source, ": partial_rotary_factor ", partial, " is not supported (only 1.0)");
  if (type == "default") {
    r.type = RopeType::kDefault;
  } else if (type == "llama3") {
    r.type = RopeType::kLlama3;
    r.factor = get_double(params, "factor", where);
    r.low_freq_factor = get_double(params, "low_freq_factor", where);
    r.high_freq_factor = get_double(params, "high_freq_factor", where);
    r.original_max_position_embeddings = get_int(params, "original_max_position_embeddings", where);
    AKCB_CHECK(r.factor >= 1.0 && r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor &&
                   r.original_max_position_embeddings > 0,
               where, ": invalid llama3 rope scaling (factor ", r.factor, ", low_freq_factor ", r.low_freq_factor,
               ", high_freq_factor ", r.high_freq_factor, ", original_max_position_embeddings ",
               r.original_max_position_embeddings, ")");
  } else {
    AKCB_CHECK(false, where, ": rope_type '", type, "' is not supported; supported: default, llama3");
  }
  return r;
}

}  // namespace

char const* to_string(ModelArch a) { return a == ModelArch::kQwen3 ? "qwen3" : "llama"; }

std::string read_text_file(std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  AKCB_CHECK(in.good(), "cannot open '", path, "' for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  AKCB_CHECK(!in.bad(), "error while reading '", path, "'");
  return ss.str();
}

ModelConfig ModelConfig::from_json(std::string const& text, std::string const& source) {
  json const j = parse_json(text, source);
  ModelConfig c;
  c.model_type = get_string_or(j, "model_type", "", source);
  AKCB_CHECK(!c.model_type.empty(), source, ": required field 'model_type' is missing");
  if (c.model_type == "llama") {
    c.arch = ModelArch::kLlama;
  } else if (c.model_type == "qwen3") {
    c.arch = ModelArch::kQwen3;
  } else {
    AKCB_CHECK(false, source, ": model_type '", c.model_type, "' is not supported; supported: llama, qwen3");
  }

  c.vocab_size = get_int(j, "vocab_size", source);
  c.hidden_size = get_int(j, "hidden_size", source);
  c.intermediate_size = get_int(j, "intermediate_size", source);
  c.n_layers = get_int(j, "num_hidden_layers", source);
  c.n_heads = get_int(j, "num_attention_heads", source);
  c.n_heads_kv = get_int_or(j, "num_key_value_heads", c.n_heads, source);
  for (auto [name, v] : {std::pair<char const*, int64_t>{"vocab_size", c.vocab_size},
                         {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size},
                         {"num_hidden_layers", c.n_layers},
                         {"num_attention_heads", c.n_heads},
                         {"num_key_value_heads", c.n_heads_kv}}) {
    AKCB_CHECK(v > 0, source, ": field '", name, "' must be > 0, got ", v);
  }
  AKCB_CHECK(c.n_heads % c.n_heads_kv == 0, source, ": num_attention_heads (", c.n_heads,
             ") must be a multiple of num_key_value_heads (", c.n_heads_kv, ")");
  if (has_value(j, "head_dim")) {
    c.head_dim = get_int(j, "head_dim", source);
  } else {
    AKCB_CHECK(c.hidden_size % c.n_heads == 0, source, ": hidden_size (", c.hidden_size,
               ") is not a multiple of num_attention_heads (", c.n_heads, ") and head_dim is absent");
    c.head_dim = c.hidden_size / c.n_heads;
  }
  AKCB_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, source, ": head_dim must be even and > 0, got ", c.head_dim);
  c.max_position_embeddings = get_int_or(j, "max_position_embeddings", 0, source);
  c.rms_norm_eps = get_double_or(j, "rms_norm_eps", 1e-6, source);
  AKCB_CHECK(c.rms_norm_eps > 0, source, ": rms_norm_eps must be > 0, got ", c.rms_norm_eps);
  c.tie_word_embeddings = get_bool_or(j, "tie_word_embeddings", false, source);
  c.rope = parse_rope(j, source);
  std::string const dtype = get_string_or(j, "torch_dtype", get_string_or(j, "dtype", "float32", source), source);
  c.dtype = parse_torch_dtype(dtype, source);
  if (has_value(j, "bos_token_id")) c.bos_token_id = get_int(j, "bos_token_id", source);
  c.eos_token_ids = get_token_ids(j, "eos_token_id", source);

  // Features the forward does not implement: refuse them by name.
  std::string const act = get_string_or(j, "hidden_act", "silu", source);
  AKCB_CHECK(act == "silu", source, ": hidden_act '", act, "' is not supported; supported: silu");
  AKCB_CHECK(!get_bool_or(j, "attention_bias", false, source), source,
             ": attention_bias = true is not supported (q/k/v/o projections without bias only)");
  AKCB_CHECK(!get_bool_or(j, "mlp_bias", false, source), source, ": mlp_bias = true is not supported");
  AKCB_CHECK(!has_value(j, "quantization_config"), source,
             ": quantized checkpoints (quantization_config) are not supported; use bf16/fp16/fp32 weights");
  AKCB_CHECK(!get_bool_or(j, "use_sliding_window", false, source), source,
             ": use_sliding_window = true is not supported (full attention only)");
  if (c.arch == ModelArch::kLlama) {
    AKCB_CHECK(!has_value(j, "sliding_window"), source, ": sliding_window is not supported for llama");
  }
  if (has_value(j, "layer_types")) {
    json const& lt = j.at("layer_types");
    AKCB_CHECK(lt.is_array(), source, ": field 'layer_types' must be a list");
    for (size_t i = 0; i < lt.size(); ++i) {
      AKCB_CHECK(lt[i].is_string() && lt[i].get<std::string>() == "full_attention", source, ": layer_types[", i,
                 "] = ", lt[i].dump(), " is not supported (full_attention only)");
    }
  }
  return c;
}

ModelConfig ModelConfig::load(std::string const& model_dir) {
  std::string const path = detail::join_path(model_dir, "config.json");
  return from_json(read_text_file(path), path);
}

GenerationDefaults GenerationDefaults::from_json(std::string const& text, std::string const& source) {
  json const j = parse_json(text, source);
  GenerationDefaults g;
  g.eos_token_ids = get_token_ids(j, "eos_token_id", source);
  if (has_value(j, "bos_token_id")) g.bos_token_id = get_int(j, "bos_token_id", source);
  if (has_value(j, "do_sample")) g.do_sample = get_bool_or(j, "do_sample", false, source);
  if (has_value(j, "temperature")) g.temperature = get_double(j, "temperature", source);
  if (has_value(j, "top_k")) g.top_k = get_int(j, "top_k", source);
  if (has_value(j, "top_p")) g.top_p = get_double(j, "top_p", source);
  if (has_value(j, "max_new_tokens")) g.max_new_tokens = get_int(j, "max_new_tokens", source);
  return g;
}

GenerationDefaults GenerationDefaults::load(std::string const& model_dir) {
  std::string const path = detail::join_path(model_dir, "generation_config.json");
  if (!detail::path_exists(path)) return {};
  return from_json(read_text_file(path), path);
}

}  // namespace akcb::models
