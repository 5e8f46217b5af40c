#pragma once
/// \file layer_cache.hpp
/// detail::LayerCache: the storage and bookkeeping of one layer (llama.cpp's split: this class
/// knows nothing of policies; AdaptiveCache<Policy> decides what to keep).
///
/// Storage (preallocated, grown geometrically, compacted in place):
///   Original block   k_orig, v_orig  [B, H_kv, T_max_o, D] model dtype
///                    pos_orig        [B, H_kv, T_max_o]    int32 absolute position, -1 = hole
///   Quantized block  k_quant, v_quant [B, H_kv, T_max_q, D] fp8 e4m3 | int8
///                    k_scale, v_scale [B, H_kv, T_max_q]    fp32 per (batch, KV head, token)
///                    pos_quant        [B, H_kv, T_max_q]    int32, -1 = hole
/// Slots [0, used) of each block are in use; every KV head holds the same number of tokens, but
/// heads may split them differently between the blocks, so a block's shorter heads carry holes
/// (position -1, zero payload) up to the common `used` length. The state of a token is the
/// block it lives in: states only move Original -> Quantized -> Evicted (invariant 1).

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>

#include <akcb/cache/cache_config.hpp>
#include <akcb/cache/cache_stats.hpp>

namespace akcb {

/// Held tokens of a layer as dense tensors, Quantized ones dequantized. Every KV head holds the
/// same number of tokens T, so the layout is hole-free: columns are the Quantized block's used
/// slots, then the Original block's, with the holes of heads that split their tokens differently
/// squeezed out (then `cols` maps each column back to its slot).
struct MaterializedKV {
  at::Tensor k;     // [B, H_kv, T, D] model dtype
  at::Tensor v;     // [B, H_kv, T, D] model dtype
  at::Tensor pos;   // [B, H_kv, T] int32, absolute positions (all >= 0)
  at::Tensor cols;  // [B, H_kv, T] int64 combined slot (quant slots first, then Original), or
                    // undefined when column j is slot j; may be a view with a row stride > T
  int64_t n_quant_cols = 0;  ///< Quantized-block slots in use; without `cols`, the first n_quant_cols columns

  /// Whether column j of head (b, h) is a Quantized token: [B, H_kv, T] bool.
  at::Tensor is_quantized() const;
};

namespace detail {

class LayerCache {
 public:
  LayerCache(int64_t batch, int64_t n_heads_kv, int64_t head_dim, c10::ScalarType dtype, c10::Device device,
             QuantDtype quant_dtype);

  /// Appends S new tokens as Original at positions [n_processed, n_processed + S).
  /// \param k [B, H_kv, S, D] model dtype   \param v [B, H_kv, S, D]   (validated by the caller)
  void append(at::Tensor const& k, at::Tensor const& v);

  /// Dense, hole-free view of the held tokens. No copy when nothing is Quantized and no head
  /// has holes.
  MaterializedKV materialize() const;

  /// Absolute positions of every used slot (Quantized block's, then the Original block's).
  /// \returns [B, H_kv, used_q + used_o] int64, -1 = hole
  at::Tensor held_positions() const;

  /// Columns of the scored past (held tokens with position < n_processed - W) of a layout whose
  /// absolute positions are `pos`, sorted by position per (b, h).
  /// \param pos [B, H_kv, T] int32|int64 (materialize().pos, or held_positions())
  /// \returns [B, H_kv, P] int64 with P = n_held - min(W, n_processed)
  at::Tensor past_order(at::Tensor const& pos, int64_t window) const;

  /// One compression step (ALGORITHM.md "Policies"). Ranks the past by `scores` (higher is
  /// kept), keeps the top `keep` per KV head, gives the Original slots (at most `origin_slots`)
  /// to the highest-ranked kept tokens that are still Original, demotes the other kept Original
  /// tokens to Quantized and evicts the rest. The window (last W positions) stays Original.
  /// \param order  [B, H_kv, P] int64 combined slots (quant slots first, then Original)
  /// \param scores [B, H_kv, P] fp32, aligned with order
  /// \note synchronizes (reads per-head counts to size the compacted blocks).
  void compress(at::Tensor const& order, at::Tensor const& scores, int64_t keep, int64_t origin_slots,
                int64_t window);

  /// Reallocates both blocks to `used` slots (+ `spare_o` / `spare_q`), releasing the rest.
  void shrink_to_fit(int64_t spare_o = 0, int64_t spare_q = 0);

  LayerStats stats() const;  ///< counts and bytes; synchronizes on CUDA

  int64_t n_processed() const { return n_processed_; }
  int64_t n_held() const { return n_held_; }         ///< per KV head (equal for all heads)
  int64_t used_orig() const { return used_o_; }
  int64_t used_quant() const { return used_q_; }
  int64_t capacity_orig() const { return cap_o_; }
  int64_t capacity_quant() const { return cap_q_; }
  bool has_holes() const { return has_holes_; }
  /// Largest K+V payload (Original + Quantized, scales included) held by one (b, h), in bytes.
  /// Exact: recomputed at each compression (one host sync there), advanced on append.
  int64_t max_head_payload_bytes() const { return max_head_payload_bytes_; }
  int64_t last_append_len() const { return last_append_len_; }

  /// The storage tensors (for tests and advanced users).
  at::Tensor const& k_orig() const { return k_orig_; }
  at::Tensor const& v_orig() const { return v_orig_; }
  at::Tensor const& pos_orig() const { return pos_orig_; }
  at::Tensor const& k_quant() const { return k_quant_; }
  at::Tensor const& v_quant() const { return v_quant_; }
  at::Tensor const& k_scale() const { return k_scale_; }
  at::Tensor const& v_scale() const { return v_scale_; }
  at::Tensor const& pos_quant() const { return pos_quant_; }

  int64_t orig_token_bytes() const;   ///< 2 * D * sizeof(dtype)
  int64_t quant_token_bytes() const;  ///< 2 * D * sizeof(qdtype) + 2 * sizeof(float)

  void reset();

 private:
  void reserve_orig_(int64_t slots);  // keeps slots [0, used_o_)
  void reserve_quant_(int64_t slots); // keeps slots [0, used_q_)
  /// [B, H, n_held] int64 (a view of cols_, rows strided by its capacity): per head, the combined
  /// slots of its held tokens in slot order (holes squeezed out). Built by one sort after a
  /// compression; tokens appended since are written after it in place (their slots follow in
  /// every head: one fill per decode step).
  at::Tensor held_columns_() const;

  int64_t B_, H_, D_;
  c10::ScalarType dtype_;
  c10::Device device_;
  QuantDtype quant_dtype_;

  at::Tensor k_orig_, v_orig_;      // [B, H_kv, T_max_o, D] dtype
  at::Tensor pos_orig_;             // [B, H_kv, T_max_o] int32
  at::Tensor k_quant_, v_quant_;    // [B, H_kv, T_max_q, D] fp8|int8
  at::Tensor k_scale_, v_scale_;    // [B, H_kv, T_max_q] fp32
  at::Tensor pos_quant_;            // [B, H_kv, T_max_q] int32
  int64_t cap_o_ = 0, cap_q_ = 0;
  int64_t used_o_ = 0, used_q_ = 0;
  int64_t n_processed_ = 0;
  int64_t n_held_ = 0;
  int64_t last_append_len_ = 0;
  bool has_holes_ = false;
  int64_t max_head_payload_bytes_ = 0;
  // held_columns_()'s buffer, undefined until built after a compression (materialize() is const;
  // thread safety: none, as the class): the first n_cols_ columns are filled, the rest is room for
  // appended tokens. Views handed out are never written again (appends write past them; a
  // compression or growth allocates a new buffer).
  mutable at::Tensor cols_;  // [B, H, capacity] int64
  mutable int64_t n_cols_ = 0;
};

}  // namespace detail
}  // namespace akcb
