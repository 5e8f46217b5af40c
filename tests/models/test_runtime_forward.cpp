// The Llama 3 / Qwen 3 forward against Hugging Face transformers (logits and greedy tokens), on a
// test-local exact attention and on the AdaptiveCache (every policy), one-shot and chunked; the
// sampler; generation with eviction.
#include "models/test_runtime_common.hpp"

#include <akcb/models/generate.hpp>
#include <akcb/models/llama.hpp>
#include <akcb/models/tokenizer.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <iostream>

namespace {

using akcb::AnyCache;
using akcb::CacheConfig;
using akcb::PolicyKind;
using akcb::models::GenerateOptions;
using akcb::models::LlamaModel;
using akcb::models::LoadOptions;
using akcb::models::LogitsMode;
using akcb::models::Sampler;
using akcb::models::SamplingOptions;
using nlohmann::json;
namespace fs = std::filesystem;

/// transformers' outputs for one checkpoint (reference.json).
struct HfReference {
  at::Tensor input_ids;      // [B, S] int64
  at::Tensor logits;         // [B, S, V] fp32
  at::Tensor greedy_prompt;  // [B, S_g] int64
  at::Tensor greedy;         // [B, N] int64

  static at::Tensor ids(json const& j) {
    std::vector<int64_t> flat;
    for (auto const& row : j)
      for (auto const& v : row) flat.push_back(v.get<int64_t>());
    return at::tensor(flat, at::kLong).view({static_cast<int64_t>(j.size()), -1});
  }
  static HfReference load(fs::path const& dir) {
    json const j = json::parse(akcb_test::read_bytes(dir / "reference.json"));
    HfReference r;
    r.input_ids = ids(j["input_ids"]);
    std::vector<float> flat = j["logits"].get<std::vector<float>>();
    r.logits = at::tensor(flat, at::kFloat).view(j["logits_shape"].get<std::vector<int64_t>>());
    r.greedy_prompt = ids(j["greedy_prompt"]);
    r.greedy = ids(j["greedy"]);
    return r;
  }
};

/// Exact attention kept by the test only (never in the library): concatenated K/V per layer,
/// HF eager numerics (matmul, scale, causal mask by absolute position, fp32 softmax, GQA by repeat).
struct ReferenceAttention {
  std::vector<at::Tensor> k, v;  // per layer [B, H_kv, T, D]
  explicit ReferenceAttention(int64_t n_layers) : k(n_layers), v(n_layers) {}
  at::Tensor operator()(int64_t layer, at::Tensor const& q, at::Tensor const& kn, at::Tensor const& vn, int64_t start) {
    int64_t const T0 = k[layer].defined() ? k[layer].size(2) : 0;
    EXPECT_EQ(start, T0);
    k[layer] = T0 ? at::cat({k[layer], kn}, 2) : kn;
    v[layer] = T0 ? at::cat({v[layer], vn}, 2) : vn;
    int64_t const G = q.size(1) / kn.size(1);
    at::Tensor const kr = k[layer].repeat_interleave(G, 1);
    at::Tensor const vr = v[layer].repeat_interleave(G, 1);
    int64_t const S = q.size(2), T = kr.size(2);
    at::Tensor scores = at::matmul(q, kr.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(q.size(3))));
    at::Tensor const qpos = at::arange(start, start + S, at::kLong).view({S, 1});
    at::Tensor const kpos = at::arange(0, T, at::kLong).view({1, T});
    scores = scores.masked_fill(kpos > qpos, -std::numeric_limits<float>::infinity());
    at::Tensor const p = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
    return at::matmul(p, vr);
  }
};

double max_abs(at::Tensor const& a, at::Tensor const& b) { return (a - b).abs().max().item<double>(); }

std::vector<int64_t> row(at::Tensor const& t, int64_t b) {
  at::Tensor const r = t[b].contiguous();
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()};
}

CacheConfig config_for(PolicyKind p, int64_t cache_size = 256, int64_t window = 16) {
  CacheConfig c;
  c.policy = p;
  c.cache_size = cache_size;
  c.window_size = window;
  return c;
}

class RuntimeForward : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = akcb_test::hf_reference_dir() / GetParam();
    ASSERT_TRUE(fs::exists(dir_ / "reference.json")) << dir_;
    model_ = std::make_unique<LlamaModel>(LlamaModel::load(dir_.string()));
    ref_ = HfReference::load(dir_);
  }
  AnyCache make_cache(CacheConfig const& cfg, int64_t batch) const {
    return AnyCache(cfg, akcb::models::cache_shape_for(*model_, batch));
  }
  /// Greedy generation (no eos) of the reference's greedy prompt.
  at::Tensor greedy(CacheConfig const& cfg, int64_t chunk) const {
    AnyCache cache = make_cache(cfg, ref_.greedy_prompt.size(0));
    GenerateOptions o;
    o.max_new_tokens = ref_.greedy.size(1);
    o.prefill_chunk = chunk;
    auto r = akcb::models::generate(*model_, cache, ref_.greedy_prompt, o);
    EXPECT_EQ(r.stop_reason, "max_new_tokens");
    EXPECT_EQ(cache.n_processed(), ref_.greedy_prompt.size(1) + o.max_new_tokens - 1);
    std::vector<int64_t> flat;
    for (auto const& t : r.tokens) flat.insert(flat.end(), t.begin(), t.end());
    return at::tensor(flat, at::kLong).view({static_cast<int64_t>(r.tokens.size()), -1});
  }
  fs::path dir_;
  std::unique_ptr<LlamaModel> model_;
  HfReference ref_;
};

TEST_P(RuntimeForward, LogitsMatchHfWithExactAttention) {
  ReferenceAttention attn(model_->config().n_layers);
  at::Tensor const logits = model_->forward(ref_.input_ids, 0, std::ref(attn));
  ASSERT_EQ(logits.sizes(), ref_.logits.sizes());
  double const d = max_abs(logits, ref_.logits);
  std::cout << "[ " << GetParam() << " ] exact attention, one-shot: max-abs logit diff vs HF = " << d << "\n";
  EXPECT_LT(d, 1e-4);
}

TEST_P(RuntimeForward, LogitsMatchHfOnFullCache) {
  for (int64_t chunk : {0, 1, 7, 16}) {
    AnyCache cache = make_cache(config_for(PolicyKind::kFull), ref_.input_ids.size(0));
    at::Tensor const logits = akcb::models::prefill(*model_, cache, ref_.input_ids, chunk, LogitsMode::kAll);
    ASSERT_EQ(logits.sizes(), ref_.logits.sizes());
    double const d = max_abs(logits, ref_.logits);
    std::cout << "[ " << GetParam() << " ] policy full, prefill chunk " << chunk << ": max-abs logit diff vs HF = " << d
              << "\n";
    EXPECT_LT(d, 1e-4) << "chunk " << chunk;
    EXPECT_EQ(cache.n_processed(), ref_.input_ids.size(1));
    AnyCache cache2 = make_cache(config_for(PolicyKind::kFull), 2);
    at::Tensor const last = akcb::models::prefill(*model_, cache2, ref_.input_ids, chunk, LogitsMode::kLast);
    EXPECT_LT(max_abs(last.squeeze(1), ref_.logits.select(1, ref_.logits.size(1) - 1)), 1e-4);
  }
}

TEST_P(RuntimeForward, GreedyTokensMatchHf) {
  for (int64_t chunk : {0, 5}) {
    at::Tensor const toks = greedy(config_for(PolicyKind::kFull), chunk);
    for (int64_t b = 0; b < toks.size(0); ++b)
      EXPECT_EQ(row(toks, b), row(ref_.greedy, b)) << "sequence " << b << ", prefill chunk " << chunk;
  }
}

/// With a cache larger than the sequence nothing is compressed: every policy equals `full`.
TEST_P(RuntimeForward, EveryPolicyEqualsFullWhenCacheIsLarger) {
  std::vector<CacheConfig> cfgs;
  for (PolicyKind p : {PolicyKind::kWindow, PolicyKind::kOrigin, PolicyKind::kQuant, PolicyKind::kMix})
    cfgs.push_back(config_for(p));
  CacheConfig bytes = config_for(PolicyKind::kMix);
  bytes.budget_mode = akcb::BudgetMode::kBytes;
  bytes.ratio_scope = akcb::RatioScope::kGlobal;
  cfgs.push_back(bytes);
  CacheConfig tuned = CacheConfig::authors_tuned();
  tuned.cache_size = 256;
  cfgs.push_back(tuned);
  for (int64_t chunk : {0, 7}) {
    AnyCache full = make_cache(config_for(PolicyKind::kFull), 2);
    at::Tensor const want = akcb::models::prefill(*model_, full, ref_.input_ids, chunk, LogitsMode::kAll);
    for (CacheConfig const& cfg : cfgs) {
      std::string const what = std::string(akcb::to_string(cfg.policy)) + "/" + akcb::to_string(cfg.budget_mode) +
                               "/W=" + std::to_string(cfg.window_size) + " chunk " + std::to_string(chunk);
      AnyCache cache = make_cache(cfg, 2);
      at::Tensor const got = akcb::models::prefill(*model_, cache, ref_.input_ids, chunk, LogitsMode::kAll);
      double const d = max_abs(got, want);
      std::cout << "[ " << GetParam() << " ] " << what << ": max-abs diff vs full = " << d << "\n";
      EXPECT_LE(d, 1e-6) << what;
      EXPECT_LT(max_abs(got, ref_.logits), 1e-4) << what;
    }
  }
  for (CacheConfig const& cfg : cfgs) {
    at::Tensor const toks = greedy(cfg, 5);
    EXPECT_TRUE(at::equal(toks, ref_.greedy)) << akcb::to_string(cfg.policy);
  }
}

TEST_P(RuntimeForward, Bf16OnCpuStaysClose) {
  LlamaModel const m = LlamaModel::load(dir_.string(), LoadOptions{at::kCPU, at::kBFloat16});
  EXPECT_EQ(m.dtype(), at::kBFloat16);
  AnyCache cache(config_for(PolicyKind::kFull), akcb::models::cache_shape_for(m, 2));
  at::Tensor const logits = akcb::models::prefill(m, cache, ref_.input_ids, 16, LogitsMode::kAll);
  double const d = max_abs(logits, ref_.logits);
  double const scale = ref_.logits.abs().max().item<double>();
  std::cout << "[ " << GetParam() << " ] bf16 CPU: max-abs logit diff vs HF fp32 = " << d << " (max |logit| " << scale
            << ")\n";
  EXPECT_LT(d, 0.1 * scale);
  // Same argmax for almost every position.
  double const agree = (logits.argmax(-1) == ref_.logits.argmax(-1)).to(at::kFloat).mean().item<double>();
  EXPECT_GT(agree, 0.8);
}

/// A small cache: compression runs during prefill and decode, positions stay absolute.
TEST_P(RuntimeForward, GeneratesWithEviction) {
  for (PolicyKind p : {PolicyKind::kWindow, PolicyKind::kOrigin, PolicyKind::kQuant, PolicyKind::kMix}) {
   for (akcb::QuantDtype qd : {akcb::QuantDtype::kFp8E4M3, akcb::QuantDtype::kInt8}) {
    if (qd == akcb::QuantDtype::kInt8 && (p == PolicyKind::kWindow || p == PolicyKind::kOrigin)) continue;
    SCOPED_TRACE(std::string(akcb::to_string(p)) + "/" + akcb::to_string(qd));
    CacheConfig cfg = config_for(p, 24, 8);
    cfg.quant_dtype = qd;
    AnyCache cache = make_cache(cfg, 2);
    GenerateOptions o;
    o.max_new_tokens = 30;
    o.prefill_chunk = 16;
    int64_t steps = 0;
    akcb::models::GenerateResult r;
    std::string const err = akcb_test::error_of([&] {
      r = akcb::models::generate(*model_, cache, ref_.input_ids, o, [&](std::vector<int64_t> const& t) {
        EXPECT_EQ(t.size(), 2u);
        ++steps;
        return true;
      });
    });
    if (!err.empty()) {
      ADD_FAILURE() << "generation threw: " << err.substr(0, 300);
      continue;
    }
    EXPECT_EQ(steps, 30);
    EXPECT_EQ(cache.n_processed(), ref_.input_ids.size(1) + 29) << akcb::to_string(p);
    akcb::CacheStats const st = cache.stats();
    for (auto const& l : st.layers) {
      EXPECT_LE(l.n_original + l.n_quantized, 24 * 2 * model_->config().n_heads_kv) << akcb::to_string(p);
      EXPECT_GT(l.n_evicted, 0) << akcb::to_string(p);
    }
    for (auto const& t : r.tokens)
      for (int64_t id : t) EXPECT_TRUE(id >= 0 && id < model_->config().vocab_size);
   }
  }
}

/// CUDA runs the same code: fp32 matches HF like the CPU, bf16/fp16 stay close, and every policy
/// generates with eviction. Skipped without a CUDA device.
TEST_P(RuntimeForward, CudaMatchesHf) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  c10::Device const cuda(at::kCUDA);  // unindexed on purpose: the model normalizes it
  double const scale = ref_.logits.abs().max().item<double>();
  for (c10::ScalarType dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    SCOPED_TRACE(std::string("dtype ") + c10::toString(dt));
    LlamaModel const m = LlamaModel::load(dir_.string(), LoadOptions{cuda, dt});
    EXPECT_TRUE(m.inv_freq().is_cuda());
    for (int64_t chunk : {0, 7}) {
      AnyCache cache(config_for(PolicyKind::kFull), akcb::models::cache_shape_for(m, 2));
      at::Tensor const logits = akcb::models::prefill(m, cache, ref_.input_ids, chunk, LogitsMode::kAll).cpu();
      double const d = max_abs(logits, ref_.logits);
      std::cout << "[ " << GetParam() << " ] CUDA " << c10::toString(dt) << " chunk " << chunk
                << ": max-abs logit diff vs HF fp32 = " << d << "\n";
      if (dt == at::kFloat) {
        EXPECT_LT(d, 1e-4);
      } else {
        EXPECT_LT(d, 0.1 * scale);
        EXPECT_GT((logits.argmax(-1) == ref_.logits.argmax(-1)).to(at::kFloat).mean().item<double>(), 0.8);
      }
    }
    if (dt == at::kFloat) {
      AnyCache cache(config_for(PolicyKind::kFull), akcb::models::cache_shape_for(m, 2));
      GenerateOptions o;
      o.max_new_tokens = ref_.greedy.size(1);
      o.prefill_chunk = 5;
      auto const r = akcb::models::generate(m, cache, ref_.greedy_prompt, o);
      for (size_t b = 0; b < r.tokens.size(); ++b) EXPECT_EQ(r.tokens[b], row(ref_.greedy, b)) << "sequence " << b;
    }
    if (!akcb::ops::cuda_kernels_available()) {
      std::cout << "[ " << GetParam() << " ] CUDA eviction not run: this build has no CUDA kernels (AKCB_WITH_CUDA)\n";
      continue;
    }
    for (PolicyKind p : {PolicyKind::kWindow, PolicyKind::kOrigin, PolicyKind::kQuant, PolicyKind::kMix}) {
      AnyCache cache(config_for(p, 24, 8), akcb::models::cache_shape_for(m, 2));
      GenerateOptions o;
      o.max_new_tokens = 30;
      o.prefill_chunk = 16;
      std::string const err = akcb_test::error_of([&] { akcb::models::generate(m, cache, ref_.input_ids, o); });
      EXPECT_TRUE(err.empty()) << akcb::to_string(p) << ": " << err.substr(0, 300);
      EXPECT_EQ(cache.n_processed(), ref_.input_ids.size(1) + 29) << akcb::to_string(p);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, RuntimeForward, ::testing::Values("llama_tied", "llama_untied", "qwen3"));

// The shipped checkpoints (models/tiny-llama3, models/tiny-qwen3; issue 7): the C++ tokenizer gives
// transformers' ids on held-out text, and the forward gives transformers' fp32 logits on the first
// 512 of them (full rows at the last positions, the argmax at every position where HF's top two are
// apart by more than 1e-3) and its greedy continuation. References: make_reference.py --bundled.
TEST(RuntimeBundled, TokenizerLogitsAndGreedyMatchHf) {
  json const manifest = json::parse(akcb_test::read_bytes(akcb_test::hf_reference_dir() / "manifest.json"));
  if (!manifest.contains("bundled") || manifest["bundled"].empty()) GTEST_SKIP() << "no bundled checkpoint in models/";
  for (auto const& entry : manifest["bundled"]) {
    std::string const name = entry["name"].get<std::string>();
    SCOPED_TRACE(name);
    json const j = json::parse(akcb_test::read_bytes(akcb_test::hf_reference_dir() / name / "reference.json"));
    std::string const model_dir = j["model_dir"].get<std::string>();

    auto const tok = akcb::models::Tokenizer::from_dir(model_dir);
    std::vector<int32_t> const ids32 = tok.encode(j["text"].get<std::string>());
    std::vector<int64_t> const got_ids(ids32.begin(), ids32.end());
    EXPECT_EQ(got_ids, j["text_ids"].get<std::vector<int64_t>>()) << "tokenization differs from transformers";

    LlamaModel const model = LlamaModel::load(model_dir);  // fp32 compute on CPU
    at::Tensor const input = HfReference::ids(j["input_ids"]);
    int64_t const S = input.size(1), tail = j["tail"].get<int64_t>(), V = j["vocab"].get<int64_t>();
    AnyCache cache(config_for(PolicyKind::kFull, S + 64), akcb::models::cache_shape_for(model, 1));
    at::Tensor const logits = akcb::models::prefill(model, cache, input, 512 / 4, LogitsMode::kAll)[0];
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{S, V}));
    at::Tensor const ref_tail = at::tensor(j["tail_logits"].get<std::vector<float>>(), at::kFloat).view({tail, V});
    double const d = max_abs(logits.narrow(0, S - tail, tail), ref_tail);
    std::cout << "[ " << name << " ] " << S << " tokens of held-out text, last " << tail
              << " positions: max-abs logit diff vs HF = " << d << "\n";
    EXPECT_LT(d, 1e-4);
    auto const want_argmax = j["argmax"].get<std::vector<int64_t>>();
    auto const gap = j["top2_gap"].get<std::vector<double>>();
    at::Tensor const am = logits.argmax(-1).contiguous();
    int64_t checked = 0, differ = 0;
    for (int64_t s = 0; s < S; ++s) {
      if (gap[s] <= 1e-3) continue;
      ++checked;
      differ += am[s].item<int64_t>() != want_argmax[s];
    }
    EXPECT_EQ(differ, 0) << "of " << checked << " positions";
    EXPECT_GT(checked, S * 9 / 10);

    AnyCache gen_cache(config_for(PolicyKind::kFull, S + 64), akcb::models::cache_shape_for(model, 1));
    GenerateOptions o;
    auto const want_greedy = j["greedy"].get<std::vector<int64_t>>();
    o.max_new_tokens = static_cast<int64_t>(want_greedy.size());
    auto const r = akcb::models::generate(model, gen_cache, input, o);
    EXPECT_EQ(r.tokens[0], want_greedy);
  }
}

TEST(RuntimeModel, ForwardChecksItsInputs) {
  LlamaModel const m = LlamaModel::load((akcb_test::hf_reference_dir() / "llama_tied").string());
  ReferenceAttention attn(m.config().n_layers);
  EXPECT_ERROR_HAS(m.forward(at::full({1, 3}, 256, at::kLong), 0, std::ref(attn)), "token ids must be in [0, 256)");
  EXPECT_ERROR_HAS(m.forward(at::zeros({3}, at::kLong), 0, std::ref(attn)), "ids must have 2 dimensions");
  EXPECT_ERROR_HAS(m.forward(at::zeros({1, 3}, at::kInt), 0, std::ref(attn)), "ids must be int64");
  auto bad = [](int64_t, at::Tensor const& q, at::Tensor const&, at::Tensor const&, int64_t) { return q.narrow(2, 0, 1); };
  EXPECT_ERROR_HAS(m.forward(at::zeros({1, 3}, at::kLong), 0, bad), "attention output");
  // The cache refuses a start position other than the tokens it has processed.
  AnyCache cache(config_for(PolicyKind::kFull), akcb::models::cache_shape_for(m, 1));
  EXPECT_ERROR_HAS(m.forward(at::zeros({1, 3}, at::kLong), 5,
                             [&](int64_t l, at::Tensor const& q, at::Tensor const& k, at::Tensor const& v, int64_t s) {
                               return cache.attend(l, q, k, v, s);
                             }),
                   "must equal the tokens processed so far");
  AnyCache batch3(config_for(PolicyKind::kFull), akcb::models::cache_shape_for(m, 3));
  EXPECT_ERROR_HAS(akcb::models::forward_cached(m, batch3, at::zeros({2, 4}, at::kLong)), "the cache's batch");
}

// LlamaModel::from_config (random weights, no checkpoint; the model of tests/bench/bench_e2e.cpp):
// the same tensors as a checkpoint of that config, N(0, init_std^2) projections from the default
// generator, and the runtime's forward over them.
TEST(RuntimeModel, FromConfigMakesTheCheckpointsTensors) {
  for (char const* name : {"llama_tied", "llama_untied", "qwen3"}) {
    SCOPED_TRACE(name);
    fs::path const dir = akcb_test::hf_reference_dir() / name;
    akcb::models::ModelConfig const cfg = akcb::models::ModelConfig::load(dir.string());
    LlamaModel const loaded = LlamaModel::load(dir.string());
    at::manual_seed(3);
    LlamaModel const m = LlamaModel::from_config(cfg);
    // Same tensors and sizes as the checkpoint (a tied lm_head counted once, qwen3's q/k norms present).
    EXPECT_EQ(m.weight_bytes(), loaded.weight_bytes());
    EXPECT_EQ(m.dtype(), at::kFloat);
    EXPECT_TRUE(at::equal(m.inv_freq(), loaded.inv_freq()));
    at::Tensor const ids = at::randint(0, cfg.vocab_size, {2, 9}, at::kLong);
    ReferenceAttention attn(cfg.n_layers);
    at::Tensor const logits = m.forward(ids, 0, std::ref(attn));
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 9, cfg.vocab_size}));
    EXPECT_TRUE(logits.isfinite().all().item<bool>());
    EXPECT_GT(logits.abs().max().item<float>(), 0.0f);
    // Reproducible from the seed; another seed, other weights.
    at::manual_seed(3);
    LlamaModel const again = LlamaModel::from_config(cfg);
    ReferenceAttention attn2(cfg.n_layers);
    EXPECT_TRUE(at::equal(again.forward(ids, 0, std::ref(attn2)), logits));
    at::manual_seed(4);
    LlamaModel const other = LlamaModel::from_config(cfg);
    ReferenceAttention attn3(cfg.n_layers);
    EXPECT_FALSE(at::equal(other.forward(ids, 0, std::ref(attn3)), logits));
    // init_std scales every projection: at 0 the embeddings, hence every hidden state and logit, are 0.
    LlamaModel const zero = LlamaModel::from_config(cfg, {}, 0.0);
    ReferenceAttention attn4(cfg.n_layers);
    EXPECT_EQ(zero.forward(ids, 0, std::ref(attn4)).abs().max().item<float>(), 0.0f);
  }
}

TEST(RuntimeModel, FromConfigDrawsFromTheInitStd) {
  // The final RMSNorm (weight 1) leaves hidden states of unit RMS whatever the weights, so the
  // logits' spread is lm_head's: about init_std * sqrt(hidden) for an untied N(0, init_std^2) head.
  akcb::models::ModelConfig const cfg =
      akcb::models::ModelConfig::load((akcb_test::hf_reference_dir() / "llama_untied").string());
  at::Tensor const ids = at::randint(0, cfg.vocab_size, {2, 8}, at::kLong);
  auto spread = [&](double s) {
    at::manual_seed(11);
    LlamaModel const m = LlamaModel::from_config(cfg, {}, s);
    ReferenceAttention attn(cfg.n_layers);
    return m.forward(ids, 0, std::ref(attn)).std().item<double>();
  };
  double const want = std::sqrt(static_cast<double>(cfg.hidden_size));
  for (double s : {0.02, 0.05, 0.2}) EXPECT_NEAR(spread(s) / (s * want), 1.0, 0.15) << "init_std " << s;
}

TEST(RuntimeModel, FromConfigRejectsBadInput) {
  akcb::models::ModelConfig cfg =
      akcb::models::ModelConfig::load((akcb_test::hf_reference_dir() / "llama_tied").string());
  akcb::models::ModelConfig bad = cfg;
  bad.n_heads_kv = 0;
  EXPECT_ERROR_HAS(LlamaModel::from_config(bad), "n_heads_kv must be > 0, got 0");
  bad = cfg;
  bad.n_heads_kv = cfg.n_heads + 1;
  EXPECT_ERROR_HAS(LlamaModel::from_config(bad), "must be a multiple of n_heads_kv");
  bad = cfg;
  bad.head_dim = 7;
  EXPECT_ERROR_HAS(LlamaModel::from_config(bad), "head_dim must be even");
  EXPECT_ERROR_HAS(LlamaModel::from_config(cfg, {}, -1.0), "init_std must be finite and >= 0, got -1");
  EXPECT_ERROR_HAS(LlamaModel::from_config(cfg, {}, std::nan("")), "init_std must be finite");
  EXPECT_ERROR_HAS(LlamaModel::from_config(cfg, LoadOptions{at::kCPU, at::kInt}), "compute dtype must be");
}

TEST(RuntimeModel, Llama3RopeFrequenciesMatchTransformersFormula) {
  akcb::models::ModelConfig c;
  c.head_dim = 128;
  c.rope.type = akcb::models::RopeType::kLlama3;
  c.rope.theta = 500000.0;
  c.rope.factor = 8.0;
  c.rope.low_freq_factor = 1.0;
  c.rope.high_freq_factor = 4.0;
  c.rope.original_max_position_embeddings = 8192;
  at::Tensor const f = LlamaModel::rope_inv_freq(c);
  ASSERT_EQ(f.numel(), 64);
  auto const* p = f.data_ptr<float>();
  for (int64_t i = 0; i < 64; ++i) {
    double const base = 1.0 / std::pow(500000.0, 2.0 * i / 128.0);
    double const wavelen = 2 * M_PI / base;
    double want = base;
    if (wavelen > 8192.0) want = base / 8.0;
    else if (wavelen >= 8192.0 / 4.0) {
      double const s = (8192.0 / wavelen - 1.0) / 3.0;
      want = (1 - s) * base / 8.0 + s * base;
    }
    EXPECT_NEAR(p[i], want, 1e-6 * want + 1e-12) << i;
  }
}

TEST(RuntimeSampler, GreedyTopKTopPAndSeed) {
  at::Tensor const logits = at::randn({4, 50}, at::TensorOptions().dtype(at::kFloat));
  at::Tensor const argmax = logits.argmax(-1);
  EXPECT_TRUE(at::equal(Sampler(SamplingOptions{}).sample(logits), argmax));
  SamplingOptions k1;
  k1.do_sample = true;
  k1.top_k = 1;
  EXPECT_TRUE(at::equal(Sampler(k1).sample(logits), argmax));
  SamplingOptions p0;
  p0.do_sample = true;
  p0.top_p = 1e-6;
  EXPECT_TRUE(at::equal(Sampler(p0).sample(logits), argmax));
  SamplingOptions s;
  s.do_sample = true;
  s.temperature = 0.8;
  s.top_k = 5;
  s.top_p = 0.95;
  s.seed = 1234;
  Sampler a(s), b(s);
  at::Tensor const top5 = std::get<1>(logits.topk(5, -1));
  for (int i = 0; i < 20; ++i) {
    at::Tensor const ta = a.sample(logits);
    EXPECT_TRUE(at::equal(ta, b.sample(logits)));
    EXPECT_TRUE((top5 == ta.unsqueeze(1)).any(1).all().item<bool>());  // within the top-k
  }
  SamplingOptions bad = s;
  bad.temperature = 0;
  EXPECT_ERROR_HAS(Sampler{bad}, "temperature");
  bad = s;
  bad.top_p = 1.5;
  EXPECT_ERROR_HAS(Sampler{bad}, "top_p");
}

TEST(RuntimeGenerate, StopsAtEos) {
  fs::path const dir = akcb_test::hf_reference_dir() / "llama_tied";
  LlamaModel const m = LlamaModel::load(dir.string());
  HfReference const ref = HfReference::load(dir);
  AnyCache cache(config_for(PolicyKind::kMix), akcb::models::cache_shape_for(m, 1));
  GenerateOptions o;
  o.max_new_tokens = 20;
  o.eos_token_ids = {ref.greedy[0][3].item<int64_t>()};  // the 4th greedy token acts as eos
  at::Tensor const prompt = ref.greedy_prompt.narrow(0, 0, 1);
  auto r = akcb::models::generate(m, cache, prompt, o);
  EXPECT_EQ(r.stop_reason, "eos");
  ASSERT_LE(r.tokens[0].size(), 4u);
  EXPECT_EQ(r.tokens[0].back(), o.eos_token_ids[0]);
  // A batch: the sequence that meets eos stops (and repeats it), the other runs on.
  AnyCache cache2(config_for(PolicyKind::kMix), akcb::models::cache_shape_for(m, 2));
  o.eos_token_ids = {ref.greedy[1][3].item<int64_t>()};
  r = akcb::models::generate(m, cache2, ref.greedy_prompt, o, [&](std::vector<int64_t> const& t) {
    EXPECT_EQ(t.size(), 2u);
    return true;
  });
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<int64_t> const want = row(ref.greedy, b);
    auto const hit = std::find(want.begin(), want.begin() + o.max_new_tokens, o.eos_token_ids[0]);
    size_t const n = hit == want.begin() + o.max_new_tokens ? o.max_new_tokens : hit - want.begin() + 1;
    EXPECT_EQ(r.tokens[b], std::vector<int64_t>(want.begin(), want.begin() + n)) << "sequence " << b;
  }
  bool const both_stop = r.tokens[0].size() < 20u && r.tokens[1].size() < 20u;
  EXPECT_EQ(r.stop_reason, both_stop ? "eos" : "max_new_tokens");
  cache.reset();
  o.eos_token_ids.clear();
  int n = 0;
  r = akcb::models::generate(m, cache, prompt, o, [&](auto const&) { return ++n < 3; });
  EXPECT_EQ(r.stop_reason, "callback");
  EXPECT_EQ(r.tokens[0].size(), 3u);
  EXPECT_ERROR_HAS(akcb::models::generate(m, cache, prompt, o), "reset() it first");
}

}  // namespace
