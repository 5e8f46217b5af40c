// akcb-generate: text generation with a Hugging Face Llama 3 / Qwen 3 checkpoint on the adaptive
// KV cache. A thin main over akcb::models: argument parsing, prompt assembly, streaming output,
// progress and the summary. No model logic lives here.
#include <akcb/akcb.hpp>
#include <akcb/models/chat_template.hpp>
#include <akcb/models/generate.hpp>
#include <akcb/models/hf_config.hpp>
#include <akcb/models/llama.hpp>
#include <akcb/models/tokenizer.hpp>

#include "cli_common.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using akcb::examples::dtype_name;
using akcb::examples::strf;
using akcb::models::GenerationDefaults;
using akcb::models::LlamaModel;
using nlohmann::json;

struct Args {
  std::string model_dir;
  std::string prompt, prompt_file, prompt_ids;
  bool chat = false;
  std::string system;
  bool no_think = false;
  int64_t batch = 1;
  // cache
  std::string policy = "mix";
  std::optional<int64_t> cache_size, sink_tokens;
  akcb::examples::CacheOptions cache;  // W, tau, gamma, evict fraction, pooling, quant dtype, scope
  std::string budget_mode = "tokens";
  bool no_compress = false;
  // device
  std::string device = "cpu", dtype = "auto";
  int threads = 0;
  // generation
  int64_t max_new_tokens = -1;
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k;
  uint64_t seed = 0;
  bool greedy = false, sample = false, ignore_eos = false;
  int64_t prefill_chunk = 512;
  // output
  bool json_out = false, no_stream = false, no_progress = false, show_special = false;
};

std::string read_file(std::string const& path) { return akcb::models::read_text_file(path); }

std::vector<int64_t> parse_ids(std::string const& s) {
  std::vector<int64_t> ids;
  std::string tok;
  std::istringstream in(s);
  auto flush = [&] {
    if (tok.empty()) return;
    size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &pos);
    } catch (std::exception const&) {
      pos = 0;
    }
    if (pos != tok.size()) throw CLI::ValidationError("--prompt-ids", "'" + tok + "' is not an integer token id");
    ids.push_back(v);
    tok.clear();
  };
  for (char c : s) {
    if (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '[' || c == ']') flush();
    else tok.push_back(c);
  }
  flush();
  if (ids.empty()) throw CLI::ValidationError("--prompt-ids", "no token ids given");
  return ids;
}

/// A one-line progress bar on stderr.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), t0_(std::chrono::steady_clock::now()) {}
  void operator()(int64_t done, int64_t total) {
    if (!enabled_) return;
    int const width = 40;
    int const fill = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    std::fprintf(stderr, "\rprefill [%s%s] %lld/%lld tokens  %.0f tok/s", std::string(fill, '#').c_str(),
                 std::string(width - fill, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total),
                 s > 0 ? done / s : 0.0);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point t0_;
};

std::string human_bytes(double b) {
  char const* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return strf("%.2f %s", b, units[u]);
}

json layer_json(akcb::LayerStats const& l) {
  return {{"original", l.n_original},       {"quantized", l.n_quantized},
          {"evicted", l.n_evicted},         {"held_bytes", l.held_bytes},
          {"full_bytes", l.full_bytes},     {"capacity_bytes", l.capacity_bytes},
          {"origin_ratio", l.origin_ratio}, {"n_compressions", l.n_compressions},
          {"compress_seconds", l.compress_seconds}};
}

int run(Args const& a) {
  if (a.threads > 0) at::set_num_threads(a.threads);
  c10::Device const device(a.device);
  AKCB_CHECK(!device.is_cuda() || at::hasCUDA(), "--device ", a.device, ": this LibTorch has no CUDA device available");

  // ---- model, tokenizer, defaults
  akcb::models::ModelConfig const mcfg = akcb::models::ModelConfig::load(a.model_dir);
  akcb::models::LoadOptions lo;
  lo.device = device;
  if (auto const dt = akcb::examples::parse_dtype(a.dtype)) lo.dtype = *dt;
  auto const t_load0 = std::chrono::steady_clock::now();
  LlamaModel const model = LlamaModel::load(a.model_dir, lo);
  double const load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load0).count();
  GenerationDefaults const gd = GenerationDefaults::load(a.model_dir);

  bool const need_tokenizer = a.prompt_ids.empty() || !a.no_stream || a.json_out;
  std::optional<akcb::models::Tokenizer> tok;
  if (::access((a.model_dir + "/tokenizer.json").c_str(), R_OK) == 0) {
    tok = akcb::models::Tokenizer::from_dir(a.model_dir);
  } else if (need_tokenizer && a.prompt_ids.empty()) {
    AKCB_CHECK(false, a.model_dir, " has no tokenizer.json; give the prompt as --prompt-ids");
  }

  // ---- prompt
  std::vector<int64_t> ids;
  if (!a.prompt_ids.empty()) {
    AKCB_CHECK(!a.chat, "--chat needs a text prompt (--prompt or --prompt-file), not --prompt-ids");
    ids = parse_ids(a.prompt_ids);
  } else {
    std::string const text = a.prompt_file.empty() ? a.prompt : read_file(a.prompt_file);
    std::vector<int32_t> enc;
    if (a.chat) {
      auto const tmpl = akcb::models::ChatTemplate::from_tokenizer(*tok);
      std::vector<akcb::models::ChatMessage> msgs;
      if (!a.system.empty()) msgs.push_back({"system", a.system, std::nullopt});
      msgs.push_back({"user", text, std::nullopt});
      akcb::models::ChatOptions co;
      if (a.no_think) co.enable_thinking = false;
      enc = tok->encode(tmpl.render(msgs, co), /*add_special_tokens=*/false);
    } else {
      enc = tok->encode(text, /*add_special_tokens=*/true);
    }
    ids.assign(enc.begin(), enc.end());
  }
  AKCB_CHECK(!ids.empty(), "the prompt encodes to zero tokens");
  int64_t const S = static_cast<int64_t>(ids.size());
  at::Tensor const prompt = at::tensor(ids, at::kLong).view({1, S}).repeat({a.batch, 1});  // [B, S]

  // ---- cache
  akcb::CacheConfig cc = a.cache.to_config();
  cc.policy = akcb::parse_policy(a.policy);
  if (a.cache_size) cc.cache_size = *a.cache_size;
  if (a.sink_tokens) cc.sink_tokens = *a.sink_tokens;
  cc.budget_mode = akcb::parse_budget_mode(a.budget_mode);
  cc.compress = !a.no_compress;
  akcb::AnyCache cache(cc, akcb::models::cache_shape_for(model, a.batch));

  // ---- generation options: generation_config.json, then the command line
  akcb::models::GenerateOptions go;
  go.prefill_chunk = a.prefill_chunk;
  go.max_new_tokens = a.max_new_tokens >= 0 ? a.max_new_tokens : gd.max_new_tokens.value_or(128);
  auto& sp = go.sampling;
  sp.do_sample = gd.do_sample.value_or(false);
  sp.temperature = a.temperature.value_or(gd.temperature.value_or(1.0));
  sp.top_k = a.top_k.value_or(gd.top_k.value_or(0));
  sp.top_p = a.top_p.value_or(gd.top_p.value_or(1.0));
  sp.seed = a.seed;
  if (a.sample) sp.do_sample = true;
  if (a.greedy || (a.temperature && *a.temperature == 0.0)) sp.do_sample = false;
  if (!a.ignore_eos) {
    go.eos_token_ids = !gd.eos_token_ids.empty() ? gd.eos_token_ids : mcfg.eos_token_ids;
    if (tok && tok->eos_id() &&
        std::find(go.eos_token_ids.begin(), go.eos_token_ids.end(), *tok->eos_id()) == go.eos_token_ids.end())
      go.eos_token_ids.push_back(*tok->eos_id());
  }

  // ---- run, streaming sequence 0
  bool const stream = !a.json_out && !a.no_stream && tok.has_value();
  std::optional<akcb::models::IncrementalDecoder> dec;
  if (stream) dec.emplace(*tok, !a.show_special);
  auto on_token = [&](std::vector<int64_t> const& t) {
    if (dec) {
      std::cout << dec->push(static_cast<int32_t>(t[0])) << std::flush;
    }
    return true;
  };
  bool const show_bar = !a.no_progress && go.prefill_chunk > 0 && S > go.prefill_chunk && ::isatty(2) == 1;
  ProgressBar bar(show_bar);
  akcb::models::GenerateResult const r =
      akcb::models::generate(model, cache, prompt, go, on_token, [&](int64_t d, int64_t t) { bar(d, t); });
  if (dec) std::cout << dec->finish() << "\n" << std::flush;

  // ---- summary
  akcb::CacheStats const st = cache.stats();
  double const prefill_tps = r.prefill_seconds > 0 ? static_cast<double>(a.batch * S) / r.prefill_seconds : 0.0;
  double const decode_tps =
      r.decode_seconds > 0 ? static_cast<double>(a.batch * r.n_decode_forwards) / r.decode_seconds : 0.0;
  double const ratio = st.total.full_bytes > 0 ? static_cast<double>(st.total.held_bytes) / st.total.full_bytes : 0.0;
  std::vector<std::string> texts;
  if (tok) {
    for (auto const& t : r.tokens) texts.push_back(tok->decode(std::vector<int32_t>(t.begin(), t.end()), !a.show_special));
  }

  if (a.json_out) {
    json j;
    j["model"] = {{"dir", a.model_dir},
                  {"model_type", mcfg.model_type},
                  {"n_layers", mcfg.n_layers},
                  {"n_heads", mcfg.n_heads},
                  {"n_heads_kv", mcfg.n_heads_kv},
                  {"head_dim", mcfg.head_dim},
                  {"weight_bytes", model.weight_bytes()},
                  {"load_seconds", load_s}};
    j["device"] = model.device().str();
    j["dtype"] = dtype_name(model.dtype());
    j["cache"] = {{"policy", akcb::to_string(cc.policy)}, {"cache_size", cc.cache_size},
                  {"window_size", cc.window_size},        {"sink_tokens", cc.sink_tokens},
                  {"tau", {cc.tau1, cc.tau2, cc.tau3}},   {"gamma", cc.gamma},
                  {"evict_fraction", cc.evict_fraction},  {"pool_kernel", cc.pool_kernel},
                  {"quant_dtype", akcb::to_string(cc.quant_dtype)}, {"budget_mode", akcb::to_string(cc.budget_mode)},
                  {"ratio_scope", akcb::to_string(cc.ratio_scope)}, {"compress", cc.compress}};
    j["generation"] = {{"max_new_tokens", go.max_new_tokens}, {"do_sample", sp.do_sample},
                       {"temperature", sp.temperature},       {"top_k", sp.top_k},
                       {"top_p", sp.top_p},                   {"seed", sp.seed},
                       {"eos_token_ids", go.eos_token_ids},   {"prefill_chunk", go.prefill_chunk}};
    j["batch"] = a.batch;
    j["prompt_tokens"] = S;
    j["new_tokens"] = r.n_steps;
    j["stop_reason"] = r.stop_reason;
    j["prefill_seconds"] = r.prefill_seconds;
    j["decode_seconds"] = r.decode_seconds;
    j["prefill_tokens_per_second"] = prefill_tps;
    j["decode_tokens_per_second"] = decode_tps;
    j["kv"] = {{"held_bytes", st.total.held_bytes},
               {"full_bytes", st.total.full_bytes},
               {"capacity_bytes", st.total.capacity_bytes},
               {"held_over_full", ratio},
               {"original", st.total.n_original},
               {"quantized", st.total.n_quantized},
               {"evicted", st.total.n_evicted},
               {"n_compressions", st.total.n_compressions},
               {"compress_seconds", st.total.compress_seconds}};
    json layers = json::array();
    for (auto const& l : st.layers) layers.push_back(layer_json(l));
    j["layers"] = layers;
    j["tokens"] = r.tokens;
    j["prompt_ids"] = ids;
    if (tok) {
      j["text"] = texts.empty() ? "" : texts[0];
      j["texts"] = texts;
    }
    std::cout << j.dump(1) << std::endl;
    return 0;
  }

  if (!stream) {
    for (size_t b = 0; b < r.tokens.size(); ++b) {
      if (r.tokens.size() > 1) std::cout << "--- sequence " << b << " ---\n";
      if (tok) std::cout << texts[b] << "\n";
      else {
        for (int64_t t : r.tokens[b]) std::cout << t << ' ';
        std::cout << "\n";
      }
    }
  } else if (r.tokens.size() > 1) {
    for (size_t b = 1; b < r.tokens.size(); ++b) std::cout << "--- sequence " << b << " ---\n" << texts[b] << "\n";
  }
  using ll = long long;
  std::cout << "\n=== akcb-generate summary ===\n"
            << strf("model        %s (%s, L=%lld, H_q=%lld, H_kv=%lld, D=%lld) on %s %s, loaded in %.2f s\n",
                    a.model_dir.c_str(), mcfg.model_type.c_str(), ll(mcfg.n_layers), ll(mcfg.n_heads),
                    ll(mcfg.n_heads_kv), ll(mcfg.head_dim), model.device().str().c_str(), dtype_name(model.dtype()).c_str(),
                    load_s)
            << strf("cache        policy=%s cache_size=%lld window=%lld quant=%s budget=%s ratio_scope=%s%s\n",
                    akcb::to_string(cc.policy), ll(cc.cache_size), ll(cc.window_size), akcb::to_string(cc.quant_dtype),
                    akcb::to_string(cc.budget_mode), akcb::to_string(cc.ratio_scope),
                    cc.compress ? "" : " (compression off)")
            << strf("tokens       batch %lld x prompt %lld + new %lld (stop: %s)\n", ll(a.batch), ll(S),
                    ll(r.n_steps), r.stop_reason.c_str())
            << strf("prefill      %.3f s, %.1f tokens/s\n", r.prefill_seconds, prefill_tps)
            << strf("decode       %.3f s, %.1f tokens/s (%lld steps)\n", r.decode_seconds, decode_tps,
                    ll(r.n_decode_forwards))
            << strf("KV cache     held %s vs full %s at the same length: ratio %.3f (allocated %s)\n",
                    human_bytes(static_cast<double>(st.total.held_bytes)).c_str(),
                    human_bytes(static_cast<double>(st.total.full_bytes)).c_str(), ratio,
                    human_bytes(static_cast<double>(st.total.capacity_bytes)).c_str());
  std::cout << strf("%5s %10s %10s %10s %12s %8s %6s\n", "layer", "original", "quantized", "evicted", "held", "r_l",
                    "compr");
  for (size_t l = 0; l < st.layers.size(); ++l) {
    auto const& s = st.layers[l];
    std::cout << strf("%5zu %10lld %10lld %10lld %12s %8.3f %6lld\n", l, ll(s.n_original), ll(s.n_quantized),
                      ll(s.n_evicted), human_bytes(static_cast<double>(s.held_bytes)).c_str(), s.origin_ratio,
                      ll(s.n_compressions));
  }
  std::cout << "(token counts are token-heads: summed over batch and KV heads)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{
      "akcb-generate: generate text with a Hugging Face Llama 3 / Qwen 3 checkpoint on the AKCB adaptive KV cache.\n"
      "Prints the continuation as it is produced, then a summary (tokens, prefill/decode speed, KV bytes held\n"
      "against a full cache at the same length, per-layer Original/Quantized/Evicted token-heads)."};
  app.get_formatter()->column_width(34);
  app.add_option("-m,--model", a.model_dir, "Model directory (config.json, *.safetensors, tokenizer.json)")
      ->required()
      ->check(CLI::ExistingDirectory);
  auto* g_prompt = app.add_option_group("prompt", "Exactly one of these");
  g_prompt->add_option("-p,--prompt", a.prompt, "Prompt text");
  g_prompt->add_option("--prompt-file", a.prompt_file, "Read the prompt text from a file")->check(CLI::ExistingFile);
  g_prompt->add_option("--prompt-ids", a.prompt_ids, "Prompt as token ids, e.g. \"128000, 791, 2294\"");
  g_prompt->require_option(1);
  app.add_flag("--chat", a.chat, "Wrap the prompt as a user message in the tokenizer's chat template");
  app.add_option("--system", a.system, "System message (with --chat)");
  app.add_flag("--no-think", a.no_think, "Qwen 3 chat: disable thinking (empty <think> block)");
  app.add_option("--batch", a.batch, "Run B copies of the prompt as one batch")->check(CLI::Range(1, 4096));

  auto* gc = app.add_option_group("cache", "KV cache (ALGORITHM.md)");
  gc->add_option("--policy", a.policy, "full | window | origin | quant | mix")->capture_default_str();
  gc->add_option("--cache-size", a.cache_size, "C: token budget per layer and KV head, window included [4096]");
  gc->add_option("--sink-tokens", a.sink_tokens, "window policy: first positions pinned (StreamingLLM) [0]");
  akcb::examples::add_cache_options(gc, a.cache, akcb::CacheConfig{}.window_size);
  gc->add_option("--budget-mode", a.budget_mode, "tokens (C counts tokens) | bytes (C tokens' worth of bytes)")
      ->capture_default_str();
  gc->add_flag("--no-compress", a.no_compress, "Master switch off: behaves like policy full");

  auto* gd = app.add_option_group("device", "Device and precision");
  gd->add_option("--device", a.device, "cpu | cuda | cuda:N")->capture_default_str();
  gd->add_option("--dtype", a.dtype, "auto (fp32 on CPU, checkpoint dtype or bf16 on CUDA) | fp32 | bf16 | fp16")
      ->capture_default_str();
  gd->add_option("--threads", a.threads, "CPU threads (0: LibTorch default)");

  auto* gg = app.add_option_group("generation", "Generation (defaults from generation_config.json)");
  gg->add_option("-n,--max-new-tokens", a.max_new_tokens, "Tokens to generate [generation_config or 128]");
  gg->add_flag("--greedy", a.greedy, "Greedy decoding (argmax), whatever generation_config.json says");
  gg->add_flag("--sample", a.sample, "Sample (temperature / top-k / top-p)");
  gg->add_option("--temperature", a.temperature, "Sampling temperature (0 = greedy)");
  gg->add_option("--top-k", a.top_k, "Keep the k most likely tokens (0 = off)");
  gg->add_option("--top-p", a.top_p, "Nucleus sampling mass in (0, 1]");
  gg->add_option("--seed", a.seed, "Seed of the sampler")->capture_default_str();
  gg->add_flag("--ignore-eos", a.ignore_eos, "Do not stop at eos tokens");
  gg->add_option("--prefill-chunk", a.prefill_chunk, "Prompt tokens per prefill forward (0 = all at once)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);

  auto* go = app.add_option_group("output", "Output");
  go->add_flag("--json", a.json_out, "Print the summary and the text as one JSON object (no streaming)");
  go->add_flag("--no-stream", a.no_stream, "Print the text at the end instead of as it is produced");
  go->add_flag("--no-progress", a.no_progress, "No prefill progress bar (shown on a terminal stderr when the prompt spans several chunks)");
  go->add_flag("--show-special", a.show_special, "Print special tokens (e.g. <|eot_id|>) in the text");
  app.footer(
      "Examples:\n"
      "  akcb-generate -m models/tiny-llama3 -p \"Once upon a time\" -n 64 --policy mix --cache-size 256 --window-size 32\n"
      "  akcb-generate -m Llama-3.2-1B-Instruct --chat -p \"Explain KV caches.\" --device cuda --dtype bf16 --json");

  return akcb::examples::run_main(app, "akcb-generate", argc, argv, [&] { return run(a); });
}
