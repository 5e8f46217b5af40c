// Sampler, chunked prefill and the generation loop (see sampler.hpp, generate.hpp).
#include <akcb/models/generate.hpp>

#include <akcb/error.hpp>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <limits>

namespace akcb::models {

// ---------------------------------------------------------------------------------------------
// Sampler

void SamplingOptions::validate() const {
  if (!do_sample) return;
  AKCB_CHECK_VALUE(std::isfinite(temperature) && temperature > 0, "sampling temperature must be > 0, got ",
                   temperature, " (use greedy decoding for temperature 0)");
  AKCB_CHECK_VALUE(top_k >= 0, "sampling top_k must be >= 0 (0 = off), got ", top_k);
  AKCB_CHECK_VALUE(top_p > 0 && top_p <= 1, "sampling top_p must be in (0, 1], got ", top_p);
}

Sampler::Sampler(SamplingOptions const& opts)
    : opts_(opts), gen_(at::make_generator<at::CPUGeneratorImpl>(opts.seed)) {
  opts_.validate();
}

at::Tensor Sampler::sample(at::Tensor const& logits) {
  AKCB_CHECK(logits.dim() == 2 && logits.size(1) > 0, "Sampler::sample: logits must be [B, V], got ", logits.sizes());
  at::Tensor x = logits.to(at::TensorOptions().device(at::kCPU).dtype(at::kFloat));  // [B, V] fp32
  if (!opts_.do_sample) return x.argmax(-1);
  x = x / opts_.temperature;
  int64_t const V = x.size(1);
  float const neg_inf = -std::numeric_limits<float>::infinity();
  if (opts_.top_k > 0 && opts_.top_k < V) {
    at::Tensor const kth = std::get<0>(x.topk(opts_.top_k, -1)).narrow(-1, opts_.top_k - 1, 1);  // [B, 1]
    x = x.masked_fill(x < kth, neg_inf);
  }
  if (opts_.top_p < 1.0) {
    auto [sorted, idx] = x.sort(-1, /*descending=*/true);
    at::Tensor const probs = sorted.softmax(-1);
    // Drop a token when the mass before it already reaches top_p (the most likely one always stays).
    at::Tensor const remove = (probs.cumsum(-1) - probs) >= opts_.top_p;
    sorted = sorted.masked_fill(remove, neg_inf);
    x = at::full_like(x, neg_inf).scatter(-1, idx, sorted);
  }
  at::Tensor const probs = x.softmax(-1);
  return at::multinomial(probs, 1, /*replacement=*/false, gen_).squeeze(-1);
}

// ---------------------------------------------------------------------------------------------
// Running on a cache

CacheShape cache_shape_for(LlamaModel const& model, int64_t batch) {
  CacheShape s;
  s.n_layers = model.config().n_layers;
  s.batch = batch;
  s.n_heads_kv = model.config().n_heads_kv;
  s.head_dim = model.config().head_dim;
  s.dtype = model.dtype();
  s.device = model.device();
  return s;
}

at::Tensor forward_cached(LlamaModel const& model, AnyCache& cache, at::Tensor const& ids, LogitsMode mode) {
  AKCB_CHECK(ids.dim() == 2 && ids.size(0) == cache.shape().batch, "forward_cached: ids must be [B, S] with B = ",
             cache.shape().batch, " (the cache's batch), got ", ids.sizes());
  AKCB_CHECK(cache.shape().n_layers == model.config().n_layers && cache.shape().n_heads_kv == model.config().n_heads_kv &&
                 cache.shape().head_dim == model.config().head_dim,
             "forward_cached: cache shape (L=", cache.shape().n_layers, ", H_kv=", cache.shape().n_heads_kv,
             ", D=", cache.shape().head_dim, ") does not match the model (L=", model.config().n_layers,
             ", H_kv=", model.config().n_heads_kv, ", D=", model.config().head_dim, ")");
  at::Tensor const logits = model.forward(
      ids, cache.n_processed(),
      [&cache](int64_t layer, at::Tensor const& q, at::Tensor const& k, at::Tensor const& v, int64_t start_pos) {
        return cache.attend(layer, q, k, v, start_pos);
      },
      mode);
  cache.commit();
  return logits;
}

at::Tensor prefill(LlamaModel const& model, AnyCache& cache, at::Tensor const& ids, int64_t chunk, LogitsMode mode,
                   ProgressFn const& progress) {
  AKCB_CHECK(ids.dim() == 2 && ids.size(1) > 0, "prefill: ids must be [B, S] with S > 0, got ", ids.sizes());
  AKCB_CHECK(chunk >= 0, "prefill: chunk must be >= 0 (0 = whole prompt), got ", chunk);
  int64_t const S = ids.size(1);
  if (chunk == 0 || chunk >= S) {
    at::Tensor out = forward_cached(model, cache, ids, mode);
    if (progress) progress(S, S);
    return out;
  }
  std::vector<at::Tensor> parts;
  at::Tensor last;
  for (int64_t s = 0; s < S; s += chunk) {
    int64_t const n = std::min(chunk, S - s);
    bool const final_chunk = s + n == S;
    at::Tensor const logits =
        forward_cached(model, cache, ids.narrow(1, s, n), mode == LogitsMode::kAll || final_chunk ? mode : LogitsMode::kLast);
    if (mode == LogitsMode::kAll) parts.push_back(logits);
    else if (final_chunk) last = logits;
    if (progress) progress(s + n, S);
  }
  return mode == LogitsMode::kAll ? at::cat(parts, 1) : last;
}

GenerateResult generate(LlamaModel const& model, AnyCache& cache, at::Tensor const& prompt, GenerateOptions const& opts,
                        TokenFn const& on_token, ProgressFn const& on_prefill) {
  AKCB_CHECK(prompt.dim() == 2 && prompt.size(1) > 0, "generate: prompt must be [B, S] with S > 0, got ",
             prompt.sizes());
  AKCB_CHECK(cache.n_processed() == 0, "generate: the cache already holds ", cache.n_processed(),
             " processed tokens; reset() it first");
  AKCB_CHECK(opts.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ", opts.max_new_tokens);
  Sampler sampler(opts.sampling);
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };

  int64_t const B = prompt.size(0);
  GenerateResult r;
  r.n_prompt = prompt.size(1);
  r.tokens.assign(B, {});
  r.stop_reason = "max_new_tokens";
  if (opts.max_new_tokens == 0) return r;

  auto const t0 = Clock::now();
  at::Tensor logits = prefill(model, cache, prompt.to(at::kLong), opts.prefill_chunk, LogitsMode::kLast, on_prefill);
  std::vector<bool> done(B, false);
  auto is_eos = [&](int64_t t) {
    return std::find(opts.eos_token_ids.begin(), opts.eos_token_ids.end(), t) != opts.eos_token_ids.end();
  };
  auto t_decode = Clock::now();
  bool first = true;
  std::vector<int64_t> step(B);
  while (true) {
    at::Tensor const next = sampler.sample(logits.select(1, 0));  // [B] int64 CPU (synchronizes)
    auto const* p = next.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        step[b] = r.tokens[b].back();  // a finished sequence repeats its eos
        continue;
      }
      step[b] = p[b];
      r.tokens[b].push_back(p[b]);
      if (is_eos(p[b])) done[b] = true;
    }
    ++r.n_steps;
    if (first) {
      t_decode = Clock::now();
      r.prefill_seconds = seconds(t0, t_decode);
      first = false;
    }
    if (on_token && !on_token(step)) {
      r.stop_reason = "callback";
      break;
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) {
      r.stop_reason = "eos";
      break;
    }
    if (r.n_steps >= opts.max_new_tokens) break;
    // On the host: the model checks the id range there (no device synchronization) and copies them over.
    at::Tensor const ids = at::from_blob(step.data(), {B, 1}, at::kLong).clone();
    logits = forward_cached(model, cache, ids, LogitsMode::kLast);
    ++r.n_decode_forwards;
  }
  r.decode_seconds = seconds(t_decode, Clock::now());
  return r;
}

}  // namespace akcb::models
