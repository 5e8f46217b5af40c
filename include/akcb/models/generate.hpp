#pragma once
/// \file generate.hpp
/// Running a LlamaModel on an AnyCache: the single attention call site (forward_cached), chunked
/// prefill, and the generation loop (greedy or sampled, eos / max_new_tokens, streaming callback).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <akcb/akcb.hpp>
#include <akcb/models/llama.hpp>
#include <akcb/models/sampler.hpp>

namespace akcb::models {

/// The cache geometry of `model` for a batch of `batch` sequences (its device and dtype).
CacheShape cache_shape_for(LlamaModel const& model, int64_t batch);

/// One forward of `ids` at the cache's next position (start_pos = cache.n_processed()), attention
/// through cache.attend, then cache.commit().
/// \param ids [B, S] int64; B must equal the cache's batch
/// \returns   [B, S, V] (kAll) or [B, 1, V] (kLast) fp32 logits
/// \throws c10::Error on a shape/device mismatch between model, ids and cache.
at::Tensor forward_cached(LlamaModel const& model, AnyCache& cache, at::Tensor const& ids,
                          LogitsMode mode = LogitsMode::kLast);

/// Called after each prefill chunk with (tokens done, tokens total).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

/// Runs a prompt through the cache in chunks of `chunk` tokens (0: all at once).
/// \param ids [B, S] int64
/// \returns   [B, S, V] (kAll) or [B, 1, V] (kLast) fp32 logits
at::Tensor prefill(LlamaModel const& model, AnyCache& cache, at::Tensor const& ids, int64_t chunk,
                   LogitsMode mode = LogitsMode::kLast, ProgressFn const& progress = {});

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  std::vector<int64_t> eos_token_ids;  ///< a sequence stops after emitting one of these
  int64_t prefill_chunk = 512;         ///< 0: whole prompt in one forward
};

/// Called once per step with the new token of every sequence ([B] values; a finished sequence
/// repeats its eos). Return false to stop generating.
using TokenFn = std::function<bool(std::vector<int64_t> const& tokens)>;

struct GenerateResult {
  std::vector<std::vector<int64_t>> tokens;  ///< [B][n] new tokens per sequence, up to and including eos
  int64_t n_prompt = 0;                      ///< prompt tokens per sequence
  int64_t n_steps = 0;                       ///< tokens generated per sequence (steps run)
  int64_t n_decode_forwards = 0;             ///< one-token forwards after the prefill
  double prefill_seconds = 0;                ///< prompt forward(s) + first token
  double decode_seconds = 0;                 ///< the rest
  std::string stop_reason;                   ///< "eos", "max_new_tokens" or "callback"
};

/// Generates from `prompt` (equal-length prompts, [B, S] int64) with a fresh or reset cache.
/// \pre cache.n_processed() == 0 (the prompt starts at position 0)
/// \throws c10::Error on invalid options or shapes.
GenerateResult generate(LlamaModel const& model, AnyCache& cache, at::Tensor const& prompt,
                        GenerateOptions const& opts, TokenFn const& on_token = {},
                        ProgressFn const& on_prefill = {});

}  // namespace akcb::models
