#pragma once
/// \file cache_stats.hpp
/// Memory and activity statistics of an adaptive cache. Token counts are token-heads: summed
/// over batch and KV heads (a token held by all 8 KV heads of one sequence counts 8).

#include <cstdint>
#include <vector>

namespace akcb {

struct LayerStats {
  int64_t n_original = 0;       ///< held Original token-heads
  int64_t n_quantized = 0;      ///< held Quantized token-heads
  int64_t n_evicted = 0;        ///< processed but no longer held
  int64_t bytes_original = 0;   ///< n_original * 2 * D * sizeof(dtype)   (K and V)
  int64_t bytes_quantized = 0;  ///< n_quantized * (2 * D * sizeof(qdtype) + 2 * 4)  (K, V, two fp32 scales)
  int64_t bytes_metadata = 0;   ///< (n_original + n_quantized) * 4  (int32 absolute position)
  int64_t held_bytes = 0;       ///< bytes_original + bytes_quantized + bytes_metadata
  int64_t full_bytes = 0;       ///< what a full bf16/fp16/fp32 cache would hold: processed * 2 * D * sizeof(dtype)
  int64_t capacity_bytes = 0;   ///< bytes of the storage tensors allocated (>= held_bytes)
  double origin_ratio = 1.0;    ///< r_l (1 when the policy does not use it or before prefill)
  int64_t origin_budget = 0;    ///< O_l, past tokens that may stay Original (per KV head)
  int64_t quant_budget = 0;     ///< past tokens held Quantized at most (per KV head)
  int64_t n_compressions = 0;   ///< compressions run on this layer
  double compress_seconds = 0;  ///< wall time spent in them (host clock)
};

struct CacheStats {
  std::vector<LayerStats> layers;
  LayerStats total;             ///< sums (origin_ratio: mean over layers)
  int64_t n_processed = 0;      ///< tokens processed per sequence
  int64_t batch = 0;
  int64_t n_heads_kv = 0;
};

}  // namespace akcb
