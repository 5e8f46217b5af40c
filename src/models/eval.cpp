// Evaluation tasks of akcb-eval: retrieval (greedy, exact match) and perplexity (teacher-forced
// decoding through the compressed cache). See include/akcb/models/eval.hpp.
#include <akcb/models/eval.hpp>

#include <akcb/models/generate.hpp>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

namespace akcb::models {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<nlohmann::json> read_jsonl(std::string const& path) {
  std::ifstream in(path);
  AKCB_CHECK(in.good(), "cannot open ", path);
  std::vector<nlohmann::json> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (nlohmann::json::exception const& e) {
      AKCB_CHECK(false, path, ":", n, ": invalid JSON: ", e.what());
    }
  }
  return out;
}

template <class T>
T field(nlohmann::json const& j, char const* name, std::string const& where) {
  AKCB_CHECK(j.contains(name), where, ": missing field '", name, "'");
  try {
    return j.at(name).get<T>();
  } catch (nlohmann::json::exception const& e) {
    AKCB_CHECK(false, where, ": field '", name, "' has the wrong type: ", e.what());
  }
  return T{};
}

std::vector<std::string> split_words(std::string const& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  std::string t;
  while (in >> t) w.push_back(t);
  return w;
}

/// Snapshot of the cache after a forward: updates the peak.
void observe_memory(AnyCache const& cache, RunMetrics& m) {
  CacheStats const st = cache.stats();
  if (st.total.held_bytes > m.peak_held_bytes) {
    m.peak_held_bytes = st.total.held_bytes;
    m.peak_full_bytes = st.total.full_bytes;
  }
}

void finish_metrics(AnyCache const& cache, RunMetrics& m) {
  m.stats = cache.stats();
  m.end_held_bytes = m.stats.total.held_bytes;
  m.end_full_bytes = m.stats.total.full_bytes;
  m.capacity_bytes = m.stats.total.capacity_bytes;
  m.compress_seconds = m.stats.total.compress_seconds;
}

at::Tensor ids_tensor(std::vector<int64_t> const& ids, int64_t begin, int64_t n, c10::Device dev) {
  return at::tensor(std::vector<int64_t>(ids.begin() + begin, ids.begin() + begin + n), at::kLong)
      .view({1, n})
      .to(dev);  // [1, n] int64
}

}  // namespace

std::vector<RetrievalExample> load_retrieval_jsonl(std::string const& path) {
  std::vector<RetrievalExample> out;
  int64_t n = 0;
  for (auto const& j : read_jsonl(path)) {
    std::string const where = path + " example " + std::to_string(n++);
    RetrievalExample e;
    e.id = field<std::string>(j, "id", where);
    e.task = field<std::string>(j, "task", where);
    e.context_len = field<int64_t>(j, "context_len_tokens", where);
    e.depth = j.contains("depth") ? j.at("depth").get<double>() : 0.0;
    e.prompt = field<std::string>(j, "prompt", where);
    e.answer = field<std::string>(j, "answer", where);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<TextDocument> load_text_jsonl(std::string const& path) {
  std::vector<TextDocument> out;
  int64_t n = 0;
  for (auto const& j : read_jsonl(path)) {
    std::string const where = path + " document " + std::to_string(n++);
    TextDocument d;
    d.id = field<std::string>(j, "id", where);
    d.source = j.contains("source") ? j.at("source").get<std::string>() : "";
    d.text = field<std::string>(j, "text", where);
    out.push_back(std::move(d));
  }
  return out;
}

bool score_exact(std::string const& answer, std::string const& completion) {
  std::string c = completion;
  for (char& ch : c)
    if (ch == ',' || ch == '.') ch = ' ';
  auto const want = split_words(answer);
  auto const got = split_words(c);
  if (got.size() < want.size()) return false;
  return std::equal(want.begin(), want.end(), got.begin());
}

bool score_contains(std::string const& answer, std::string const& completion) {
  for (auto const& w : split_words(answer))
    if (completion.find(w) == std::string::npos) return false;
  return true;
}

double perplexity(double nll_sum, int64_t n_tokens) {
  return n_tokens > 0 ? std::exp(nll_sum / static_cast<double>(n_tokens)) : std::nan("");
}

bool budget_mode_matters(PolicyKind p) { return p == PolicyKind::kQuant || p == PolicyKind::kMix; }

CacheConfig budget_config(CacheConfig base, PolicyKind policy, BudgetMode mode, double fraction, int64_t n_tokens) {
  AKCB_CHECK_VALUE(fraction > 0 && std::isfinite(fraction), "budget fraction must be > 0, got ", fraction);
  AKCB_CHECK_VALUE(n_tokens >= 1, "budget_config: n_tokens must be >= 1, got ", n_tokens);
  base.policy = policy;
  base.budget_mode = mode;
  if (policy == PolicyKind::kFull) {
    base.cache_size = std::max(n_tokens + 1, base.window_size + 1);
  } else {
    auto const c = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n_tokens)));
    base.cache_size = std::max(c, base.window_size + 1);
  }
  if (base.sink_tokens >= base.cache_size - base.window_size) base.sink_tokens = 0;
  return base;
}

RetrievalResult run_greedy_ids(LlamaModel const& model, CacheConfig const& cc, std::vector<int64_t> const& prompt,
                               int64_t max_new, RetrievalOptions const& opts) {
  AKCB_CHECK(!prompt.empty(), "run_greedy_ids: empty prompt");
  AKCB_CHECK(max_new >= 1, "run_greedy_ids: max_new must be >= 1, got ", max_new);
  AnyCache cache(cc, cache_shape_for(model, 1));
  RetrievalResult r;
  RunMetrics& m = r.metrics;
  int64_t const S = static_cast<int64_t>(prompt.size());
  m.n_prompt = S;

  auto t0 = Clock::now();
  at::Tensor logits = prefill(model, cache, ids_tensor(prompt, 0, S, model.device()), opts.prefill_chunk,
                              LogitsMode::kLast);  // [1, 1, V]
  at::Tensor last = logits.select(1, -1).select(0, 0).to(at::kCPU);  // [V] fp32
  m.prefill_seconds = seconds_since(t0);
  observe_memory(cache, m);
  r.first_logits = last;
  // Share of (layer, KV head, tracked position) still held, overall and per layer.
  auto survival = [&](double& overall, std::vector<double>& per_layer) {
    at::Tensor const want = at::tensor(opts.track_positions, at::kLong);  // [P] int64
    int64_t kept = 0, total = 0;
    per_layer.clear();
    for (int64_t l = 0; l < cache.shape().n_layers; ++l) {
      int64_t const heads = cache.shape().batch * cache.shape().n_heads_kv;
      at::Tensor const per_head = cache.layer(l).held_positions().to(at::kCPU).reshape({heads, -1});  // [BH, T]
      int64_t k = 0;
      for (int64_t h = 0; h < heads; ++h) k += at::isin(want, per_head[h]).sum().item<int64_t>();
      per_layer.push_back(static_cast<double>(k) / static_cast<double>(heads * want.numel()));
      kept += k;
      total += heads * want.numel();
    }
    overall = total ? static_cast<double>(kept) / static_cast<double>(total) : -1.0;
  };
  if (!opts.track_positions.empty()) {
    r.tracked = opts.track_positions;
    survival(r.kept_after_prefill, r.kept_after_prefill_per_layer);
  }

  auto t1 = Clock::now();
  for (int64_t step = 0; step < max_new; ++step) {
    int64_t const next = last.argmax().item<int64_t>();
    r.tokens.push_back(next);
    bool const eos = std::find(opts.eos_token_ids.begin(), opts.eos_token_ids.end(), next) != opts.eos_token_ids.end();
    if (eos || step + 1 == max_new) break;
    at::Tensor const id = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(model.device()));
    last = forward_cached(model, cache, id, LogitsMode::kLast).select(1, -1).select(0, 0).to(at::kCPU);
    ++m.n_decode;
    observe_memory(cache, m);
  }
  m.decode_seconds = seconds_since(t1);
  if (!opts.track_positions.empty()) survival(r.kept_at_end, r.kept_at_end_per_layer);
  finish_metrics(cache, m);
  return r;
}

std::vector<int64_t> answer_positions(Tokenizer const& tok, RetrievalExample const& ex) {
  std::vector<int64_t> out;
  for (auto const& w : split_words(ex.answer)) {
    for (size_t at = ex.prompt.find(w); at != std::string::npos; at = ex.prompt.find(w, at + w.size())) {
      auto const a = static_cast<int64_t>(tok.encode(ex.prompt.substr(0, at), true).size());
      auto const b = static_cast<int64_t>(tok.encode(ex.prompt.substr(0, at + w.size()), true).size());
      for (int64_t p = a; p < b; ++p)
        if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

RetrievalResult run_retrieval(LlamaModel const& model, Tokenizer const& tok, CacheConfig const& cc,
                              RetrievalExample const& ex, RetrievalOptions const& opts_in) {
  RetrievalOptions opts = opts_in;
  if (opts.track_positions.empty()) opts.track_positions = answer_positions(tok, ex);
  std::vector<int32_t> const enc = tok.encode(ex.prompt, /*add_special_tokens=*/true);
  std::vector<int32_t> const ans = tok.encode(ex.answer, /*add_special_tokens=*/false);
  std::vector<int64_t> const ids(enc.begin(), enc.end());
  int64_t const max_new = static_cast<int64_t>(ans.size()) + std::max<int64_t>(opts.extra_new_tokens, 0);
  RetrievalResult r = run_greedy_ids(model, cc, ids, std::max<int64_t>(max_new, 1), opts);
  r.completion = tok.decode(std::vector<int32_t>(r.tokens.begin(), r.tokens.end()), /*skip_special_tokens=*/true);
  r.exact = score_exact(ex.answer, r.completion);
  r.contains = score_contains(ex.answer, r.completion);
  return r;
}

PerplexityResult run_perplexity(LlamaModel const& model, CacheConfig const& cc, std::vector<int64_t> const& ids,
                                int64_t n_prefix, int64_t prefill_chunk) {
  int64_t const n = static_cast<int64_t>(ids.size());
  AKCB_CHECK(n_prefix >= 1 && n > n_prefix, "run_perplexity: need 1 <= n_prefix < n, got n_prefix=", n_prefix,
             " n=", n);
  AnyCache cache(cc, cache_shape_for(model, 1));
  PerplexityResult r;
  RunMetrics& m = r.metrics;
  m.n_prompt = n_prefix;

  auto nll_of = [&](at::Tensor const& logits_v, int64_t target) {  // logits_v [V] fp32
    return -at::log_softmax(logits_v.to(at::kFloat), 0)[target].item<double>();
  };
  auto t0 = Clock::now();
  at::Tensor logits = prefill(model, cache, ids_tensor(ids, 0, n_prefix, model.device()), prefill_chunk,
                              LogitsMode::kLast);  // [1, 1, V]
  m.prefill_seconds = seconds_since(t0);
  observe_memory(cache, m);
  r.nll_sum += nll_of(logits.select(1, -1).select(0, 0), ids[n_prefix]);
  ++r.n_scored;

  auto t1 = Clock::now();
  for (int64_t t = n_prefix; t + 1 < n; ++t) {
    logits = forward_cached(model, cache, ids_tensor(ids, t, 1, model.device()), LogitsMode::kLast);
    ++m.n_decode;
    observe_memory(cache, m);
    r.nll_sum += nll_of(logits.select(1, -1).select(0, 0), ids[t + 1]);
    ++r.n_scored;
  }
  m.decode_seconds = seconds_since(t1);
  finish_metrics(cache, m);
  return r;
}

}  // namespace akcb::models
