#pragma once
/// \file ops.hpp
/// The only seam between the header-only cache and compiled code. Each op validates its
/// inputs (shapes, dtypes, devices), then routes by device: CUDA tensors to akcb::cuda::
/// (kernels/, compiled when AKCB_WITH_CUDA), CPU tensors to the akcb::cpu:: reference, which is
/// always built and is the oracle of the CUDA tests.
///
/// Quantization (ALGORITHM.md "states"): one fp32 scale per token row (per (batch, KV head,
/// token) for cache blocks): scale = absmax(row) / qmax, qmax = 448 (fp8 e4m3fn) or 127 (int8);
/// q = saturate(round(x / scale)); x' = q * scale. An all-zero row has scale 0 and dequantizes to
/// zeros. Values are clamped to ±qmax before conversion, so no NaN or inf is ever produced from
/// finite input. Inputs must be finite: a row holding NaN quantizes to device-dependent bytes
/// (the CPU reference writes a zero row with scale 0, the CUDA kernel skips NaN in the absmax),
/// and checking every K/V row for NaN would cost a device sync per call, so it is not checked.

#include <ATen/core/Tensor.h>

#include <cstdint>

#include <akcb/cache/cache_config.hpp>

namespace akcb::ops {

/// Largest representable magnitude of a QuantDtype (448 for fp8 e4m3fn, 127 for int8).
constexpr float quant_max(QuantDtype q) { return q == QuantDtype::kInt8 ? 127.0f : 448.0f; }

/// Tokens quantized per row.
struct QuantizedTokens {
  at::Tensor data;   // [..., D] float8_e4m3fn | int8, same device as the input
  at::Tensor scale;  // [...] fp32, absmax / qmax per row
};

/// Per-token (per-row) absmax quantization.
/// \param x  [..., D] fp32|bf16|fp16, cpu|cuda; any strides
/// \param q  target storage
/// \returns  data [..., D] (contiguous) and scale [...] fp32
/// \throws c10::Error on an unsupported dtype or a 0-dim input.
/// Complexity O(numel); no host sync.
QuantizedTokens quantize_per_token(at::Tensor const& x, QuantDtype q);

/// Inverse of quantize_per_token: out[..., d] = data[..., d] * scale[...], cast to `out_dtype`.
/// \param data   [..., D] float8_e4m3fn|int8
/// \param scale  [...] fp32
/// \param out_dtype fp32|bf16|fp16
/// \throws c10::Error on mismatched shapes, dtypes or devices.
at::Tensor dequantize_per_token(at::Tensor const& data, at::Tensor const& scale, c10::ScalarType out_dtype);

/// Demotion/append in one pass: gathers token rows of `src` by `index`, quantizes each row with
/// its own scale and writes them to slots [offset, offset + M) of `dst` / `dst_scale`.
/// Entries of `index` equal to -1 write an all-zero row with scale 0 (a hole).
/// \param src       [B, H_kv, T_src, D] fp32|bf16|fp16 (token rows contiguous in D)
/// \param index     [B, H_kv, M] int64, values in [-1, T_src)
/// \param dst       [B, H_kv, T_max, D] float8_e4m3fn|int8, contiguous
/// \param dst_scale [B, H_kv, T_max] fp32, contiguous
/// \param offset    first destination slot; offset + M <= T_max
/// \throws c10::Error on mismatched shapes/dtypes/devices, an index out of range, or overflow.
/// \note synchronizes on CUDA only to validate `index` bounds when `check_index` is true.
void quantize_gather_into_(at::Tensor const& src, at::Tensor const& index, at::Tensor& dst,
                           at::Tensor& dst_scale, int64_t offset, bool check_index = true);

/// In-place compaction along the token dimension (dim 2):
///   x[b, h, i, ...] = x[b, h, index[b, h, i], ...]   for i < K,
/// with rows whose index is -1 zero-filled. Within each (b, h) the valid indices must be
/// strictly increasing and precede the -1 entries, so index[b, h, i] >= i and the move is
/// safe in place (kept rows only move towards the front; no full-size temporary).
/// \param x      [B, H_kv, T_max, ...] any dtype, contiguous
/// \param index  [B, H_kv, K] int64, K <= T_max
/// \throws c10::Error on mismatched shapes/devices, a non-contiguous x, or (check_index) an
///         index that is out of range or not strictly increasing.
/// \note with check_index the CUDA path synchronizes once to read the validation result.
void compact_tokens_(at::Tensor& x, at::Tensor const& index, bool check_index = true);

/// A layer's two storage blocks (detail::LayerCache's tensors), read by gather_held_tokens.
struct HeldBlocks {
  at::Tensor k_orig, v_orig;       ///< [B, H_kv, cap_o, D] fp32|bf16|fp16, contiguous
  at::Tensor pos_orig;             ///< [B, H_kv, cap_o] int32, contiguous
  at::Tensor k_quant, v_quant;     ///< [B, H_kv, cap_q, D] float8_e4m3fn|int8, contiguous
  at::Tensor k_scale, v_scale;     ///< [B, H_kv, cap_q] fp32, contiguous
  at::Tensor pos_quant;            ///< [B, H_kv, cap_q] int32, contiguous
  int64_t used_orig = 0;           ///< slots [0, used_orig) of the Original block in use
  int64_t used_quant = 0;          ///< slots [0, used_quant) of the Quantized block in use
};

/// Dense keys, values and positions of held tokens.
struct DenseKV {
  at::Tensor k, v;  ///< [B, H_kv, T, D] the Original block's dtype, contiguous
  at::Tensor pos;   ///< [B, H_kv, T] int32, contiguous
};

/// The materialization of AdaptiveCache's held tokens in one pass: output column j of head (b, h)
/// is combined slot s = cols[b, h, j] (Quantized slots [0, used_quant) first, then Original slots
/// used_quant + [0, used_orig)), or s = j when `cols` is undefined (then T = used_quant +
/// used_orig). A Quantized slot is dequantized (q * scale in fp32, rounded to the model dtype, as
/// dequantize_per_token), an Original one copied; its position comes along.
/// CPU: dequantize_per_token + at::cat + gather (the reference). CUDA: one kernel for K, V and
/// positions (a decode step of a compressed layer then costs one launch here instead of ~15).
/// \param b     the blocks (shapes above; dtypes and devices checked)
/// \param cols  [B, H_kv, T] int64 combined slots in [0, used_quant + used_orig), or undefined;
///              not range-checked (a device sync): callers build it from the blocks' positions.
///              Any strides; on CUDA read in place when only its rows are strided (a narrowed
///              buffer, as the cache's column map), else copied dense first
/// \returns     k, v [B, H_kv, T, D], pos [B, H_kv, T]
/// \throws c10::Error on mismatched shapes, dtypes or devices, or used_* beyond the capacities.
DenseKV gather_held_tokens(HeldBlocks const& b, at::Tensor const& cols);

/// Attention of one new query per sequence (a decode step) over held keys, with grouped-query
/// heads handled by a reshape instead of repeating K and V:
///   out[b, h, 0] = softmax(q[b, h, 0] . k[b, h / G, t] / sqrt(D) over t) . v[b, h / G, t],  G = H_q / H_kv.
/// No mask: every held key precedes the query (AdaptiveCache::materialize() is hole-free).
/// Numerics as transformers' eager attention (`eager_attention_forward`): scores by a batched
/// matmul in the input dtype (fp32 accumulation on CUDA), softmax in fp32, cast back, times V.
/// Used by cache_attention for the CUDA decode steps FlashAttention-2 does not take (fp32, head
/// dims not a multiple of 8 or above 256): two batched GEMMs and a softmax for any T, without
/// at::scaled_dot_product_attention's per-shape backend selection.
/// \param q  [B, H_q, 1, D] fp32|bf16|fp16
/// \param k  [B, H_kv, T, D] q's dtype and device; last dimension contiguous, any other strides
/// \param v  [B, H_kv, T, D] same as k
/// \returns  [B, H_q, 1, D] q's dtype
/// \throws c10::Error on mismatched shapes, dtypes or devices, S != 1, T == 0 or H_q % H_kv != 0.
at::Tensor decode_attention(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v);

/// Attention of S new queries over T held keys whose last S are the queries' own tokens: a
/// prefill chunk (S > 1) or a decode step (S == 1) over a cache (FlashInfer's "prefill / decode
/// with KV cache"; causal mask aligned to the bottom right): query i (0-based in the chunk)
/// attends to keys j <= T - S + i,
///   out[b, h, i] = softmax_j(q[b, h, i] . k[b, h / G, j] / sqrt(D)) . v[b, h / G, j],  G = H_q / H_kv.
/// Routing:
///  - CUDA, bf16 / fp16, D % 8 == 0, D <= 256: LibTorch's FlashAttention-2 kernel
///    (`at::_scaled_dot_product_flash_attention`, whose is_causal is bottom-right aligned, as in
///    torch.nn.attention.bias.causal_lower_right; grouped-query heads natively; for S == 1 its
///    split-KV decode path): no mask tensor, O(S * H_q) extra memory, no per-shape preparation
///    (at::scaled_dot_product_attention on CUDA measured 64-70 ms at every new key count on the
///    H200, docs/BENCHMARKS.md);
///  - other CUDA decode steps (fp32, other head dims): decode_attention;
///  - otherwise (CPU; CUDA prefill chunks in fp32 or other head dims):
///    at::scaled_dot_product_attention with a [S, T] boolean mask (none when S == 1) and enable_gqa.
/// On CUDA, inputs whose pointer or outer strides are not 16-byte aligned are copied first (the
/// kernels load 16-byte vectors).
/// \param q  [B, H_q, S, D] fp32|bf16|fp16, last dimension contiguous
/// \param k  [B, H_kv, T, D] q's dtype and device, T >= S; last dimension contiguous, any other strides
/// \param v  [B, H_kv, T, D] same as k
/// \returns  [B, H_q, S, D] q's dtype
/// \throws c10::Error on mismatched shapes, dtypes or devices, T < S, or H_q % H_kv != 0.
at::Tensor cache_attention(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v);

/// True when this build of the library contains the CUDA kernels.
bool cuda_kernels_available();

}  // namespace akcb::ops
