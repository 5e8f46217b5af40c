#pragma once
/// \file eval.hpp
/// Evaluation tasks of akcb-eval (issue 5): RULER-style retrieval scored by exact match, long-document
/// perplexity with compression active (teacher-forced decoding through the cache), and the bookkeeping
/// they share (timing, KV bytes held at the end and at the peak, per-layer token states).
///
/// Everything here runs one sequence (batch 1) through a fresh AnyCache per call, greedily, so a
/// result depends only on the model, the cache config and the input: deterministic on one machine
/// for a fixed number of threads.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include <akcb/akcb.hpp>
#include <akcb/models/llama.hpp>
#include <akcb/models/tokenizer.hpp>

namespace akcb::models {

// ------------------------------------------------------------------ data

/// One line of evaldata/<task>_<len>.jsonl (schema: evaldata/README.md).
struct RetrievalExample {
  std::string id;            ///< "<task>_<length>_<index>"
  std::string task;          ///< passkey | multikey | kv | vt
  int64_t context_len = 0;   ///< nominal length in tokens (prompt + 32 <= this)
  double depth = 0;          ///< needle depth as a share of the haystack
  std::string prompt;        ///< ends right before the answer
  std::string answer;        ///< expected continuation, with its leading space
};

/// Reads a retrieval JSONL file. \throws c10::Error naming the file and line on a missing field.
std::vector<RetrievalExample> load_retrieval_jsonl(std::string const& path);

/// One held-out document (evaldata/heldout_docs.jsonl: {"id", "source", "text"}).
struct TextDocument {
  std::string id, source, text;
};
/// \throws c10::Error naming the file and line on a missing field.
std::vector<TextDocument> load_text_jsonl(std::string const& path);

// ------------------------------------------------------------------ metrics

/// ruler.score(): the answer's whitespace-separated words equal the first words of the completion
/// (commas and periods in the completion count as spaces). The primary metric.
bool score_exact(std::string const& answer, std::string const& completion);
/// ruler.score_contains(): every word of the answer occurs somewhere in the completion (RULER's
/// lenient string_match_all).
bool score_contains(std::string const& answer, std::string const& completion);

/// Perplexity from a sum of negative log-likelihoods (nats) over n tokens: exp(nll / n).
double perplexity(double nll_sum, int64_t n_tokens);

/// Which tokens a cache budget counts for a policy (ALGORITHM.md "Budget in bytes"): `full`,
/// `window` and `origin` hold the same tokens in both modes, so a grid runs them once.
bool budget_mode_matters(PolicyKind p);

/// The cache config of `policy` at a budget that is `fraction` of the full KV bytes of a sequence
/// of `n_tokens`: C = max(W + 1, round(fraction * n_tokens)) tokens, i.e. C Original tokens' worth
/// of bytes in `bytes` mode. `full` gets C = n_tokens + 1 (never compresses anyway).
/// \pre 0 < fraction; n_tokens >= 1
CacheConfig budget_config(CacheConfig base, PolicyKind policy, BudgetMode mode, double fraction, int64_t n_tokens);

/// Timing and memory of one sequence's run through a cache.
struct RunMetrics {
  int64_t n_prompt = 0;            ///< tokens prefilled
  int64_t n_decode = 0;            ///< one-token forwards after the prefill
  double prefill_seconds = 0;      ///< prompt forward(s)
  double decode_seconds = 0;       ///< the one-token forwards
  double compress_seconds = 0;     ///< time inside cache compressions (part of the two above)
  int64_t end_held_bytes = 0;      ///< KV bytes held at the end (payload + metadata)
  int64_t end_full_bytes = 0;      ///< a full cache at the same length
  int64_t peak_held_bytes = 0;     ///< max held bytes seen after each forward (after its compression)
  int64_t peak_full_bytes = 0;     ///< full bytes at that moment
  int64_t capacity_bytes = 0;      ///< storage allocated at the end (preallocated, >= held)
  CacheStats stats;                ///< end-of-run statistics (per-layer counts and ratios)
};

// ------------------------------------------------------------------ tasks

struct RetrievalOptions {
  int64_t extra_new_tokens = 4;    ///< decode answer-token-count + this many tokens at most
  int64_t prefill_chunk = 0;       ///< 0: the whole prompt in one forward (SnapKV-style observation)
  std::vector<int64_t> eos_token_ids;  ///< generation stops after one of these
  /// Prompt positions whose survival is measured (run_retrieval fills it with the needle's answer
  /// tokens when empty); see RetrievalResult::kept_after_prefill.
  std::vector<int64_t> track_positions;
};

struct RetrievalResult {
  RunMetrics metrics;
  std::vector<int64_t> tokens;     ///< generated token ids
  std::string completion;          ///< decoded (special tokens skipped)
  bool exact = false;              ///< score_exact
  bool contains = false;           ///< score_contains
  at::Tensor first_logits;         ///< [V] fp32, CPU: logits that chose the first new token
  std::vector<int64_t> tracked;    ///< the tracked prompt positions (e.g. the needle's answer tokens)
  /// Share of (layer, KV head, tracked position) still held (Original or Quantized) after the
  /// prefill; -1 when nothing is tracked. Per layer in kept_after_prefill_per_layer.
  double kept_after_prefill = -1;
  std::vector<double> kept_after_prefill_per_layer;
  /// The same share at the end of generation (after the decode-time compressions: the first
  /// decode step after a prefill at the limit drops evict_fraction of the past); -1 when untracked.
  double kept_at_end = -1;
  std::vector<double> kept_at_end_per_layer;
};

/// Token positions of every occurrence of the answer's words in the prompt (as the tokenizer
/// splits the prompt; boundaries found by encoding prefixes). Empty when the answer does not occur.
std::vector<int64_t> answer_positions(Tokenizer const& tok, RetrievalExample const& ex);

/// Greedy answer of one example through a fresh cache of config `cc`.
/// \throws c10::Error on an invalid config or an empty prompt.
RetrievalResult run_retrieval(LlamaModel const& model, Tokenizer const& tok, CacheConfig const& cc,
                              RetrievalExample const& ex, RetrievalOptions const& opts);

/// Same on token ids (no tokenizer): prompt ids in, `max_new` greedy tokens out (stops at eos).
RetrievalResult run_greedy_ids(LlamaModel const& model, CacheConfig const& cc, std::vector<int64_t> const& prompt,
                               int64_t max_new, RetrievalOptions const& opts);

struct PerplexityResult {
  RunMetrics metrics;
  double nll_sum = 0;              ///< nats, over the scored tokens
  int64_t n_scored = 0;            ///< tokens scored: ids[n_prefix .. n)
  double ppl() const { return perplexity(nll_sum, n_scored); }
};

/// Prefills ids[0, n_prefix) and then feeds ids[n_prefix, n) one token at a time (teacher
/// forcing), so that decode-time compression happens; scores every token from ids[n_prefix] on.
/// \param ids  the document's tokens, n >= n_prefix + 1
/// \throws c10::Error on n_prefix < 1 or too few ids.
PerplexityResult run_perplexity(LlamaModel const& model, CacheConfig const& cc, std::vector<int64_t> const& ids,
                                int64_t n_prefix, int64_t prefill_chunk = 0);

}  // namespace akcb::models
