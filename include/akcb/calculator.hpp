#pragma once
/// \file calculator.hpp
/// Scores of ALGORITHM.md "Scores": observation-window attention probabilities, heavy-hitter
/// scores (mean + gamma * variance over the observation queries, average-pooled along position,
/// averaged over each KV head's query group) and the layer OQ score in the log domain.
/// Source: ARKV (Lei & Ilager, arXiv 2603.08727), with the log-domain fix of ALGORITHM.md.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include <akcb/cache/cache_config.hpp>

namespace akcb {

struct Calculator {
  /// Default bound, in bytes, on one slice of the scoring temporaries (64 MiB). Every function
  /// below that takes `slice_bytes` works through slices of its input whose big temporaries
  /// stay near this size, so that the extra memory of scoring does not grow with the number of
  /// held keys T beyond the one probability tensor [B, H_q, w, T] fp32 (see each function).
  static constexpr int64_t kSliceBytes = int64_t{64} << 20;

  /// Observation-window attention probabilities over held keys, in fp32, causal by absolute
  /// position: A[b, h, i, j] = softmax_j(q[b,h,i] . k[b,h/G,j] / sqrt(D)) over the keys with
  /// k_pos[b, h/G, j] >= 0 (held) and k_pos <= q_pos[i]. A w x T product, never T x T.
  /// A row with no allowed key is all 0 (never NaN). Source: ALGORITHM.md "Scores".
  /// Memory: besides the returned tensor (the only full-size one), the logits, fp32 keys and
  /// masks of one slice of whole KV heads (and batch rows) at a time, each slice's softmax
  /// written straight into its part of the result: about max(slice_bytes, two KV heads'
  /// ((G*w + D) * 4 + 2 * w) * T bytes) -- slices hold at least two KV heads (when there are
  /// two), because at::matmul of a single matrix takes a plain GEMM whose rounding differs from
  /// the batched GEMM of the unsliced product. On the CPU the result is bit for bit that of one
  /// batched computation (tested); on CUDA it is as long as cuBLAS picks the same kernel for the
  /// smaller batch count (not verified here). Keys and logits are upcast to fp32 per slice.
  /// \param q_obs [B, H_q, w, D] fp32|bf16|fp16 (post-RoPE queries of the observation window)
  /// \param q_pos [w] int64, absolute positions of those queries
  /// \param k     [B, H_kv, T, D] same dtype as q_obs (post-RoPE keys as held)
  /// \param k_pos [B, H_kv, T] int32|int64, absolute positions, -1 = empty slot
  /// \param slice_bytes bound on one slice's temporaries (> 0), see above
  /// \returns     [B, H_q, w, T] fp32, rows sum to 1 (masked entries exactly 0)
  /// \throws c10::Error on mismatched shapes/devices, H_q not a multiple of H_kv, or
  ///         slice_bytes <= 0.
  static at::Tensor attention_probs(at::Tensor const& q_obs, at::Tensor const& q_pos, at::Tensor const& k,
                                    at::Tensor const& k_pos, int64_t slice_bytes = kSliceBytes);

  /// Heavy-hitter scores of scored past tokens given in position order:
  /// hh = mean_q A + gamma * var_q A (unbiased variance, only when w > 1), then a 1-D average
  /// pool along the token axis (kernel `pool_kernel`, stride 1, zero padding counted), then the
  /// mean over the G query heads of each KV head. Source: ALGORITHM.md "Scores" (ARKV).
  /// \param probs_past [B, H_q, w, P] fp32, A restricted to past tokens, position order
  /// \returns          [B, H_kv, P] fp32 (unitless)
  /// \throws c10::Error if H_q is not a multiple of n_heads_kv, pool_kernel is not odd and
  ///         positive, or probs_past is not fp32.
  static at::Tensor heavy_hitter(at::Tensor const& probs_past, int64_t n_heads_kv, double gamma,
                                 int64_t pool_kernel);

  /// heavy_hitter() of the columns `order` of `probs`, i.e. of
  /// probs.gather(3, order repeated over each KV head's G query heads and the w rows), without
  /// materializing that [B, H_q, w, P] gather whole: it is gathered and scored per slice of whole
  /// KV heads (and batch rows), so the extra memory is about max(slice_bytes, one KV head's
  /// G * w * P * 4 bytes) plus [B, H_q, P]-sized score temporaries of one slice. The scores are the same ops on the same values as the unsliced call
  /// (bit for bit on the CPU, which the tests check).
  /// \param probs [B, H_q, w, T] fp32 attention probabilities (e.g. from attention_probs)
  /// \param order [B, H_kv, P] int64 column indices into T (the scored past, position order)
  /// \returns     [B, H_kv, P] fp32
  /// \throws c10::Error on mismatched shapes/devices, a non-int64 order, or as heavy_hitter().
  static at::Tensor heavy_hitter_at(at::Tensor const& probs, at::Tensor const& order, int64_t n_heads_kv,
                                    double gamma, int64_t pool_kernel, int64_t slice_bytes = kSliceBytes);

  /// The three statistics of the layer OQ score (ALGORITHM.md "Scores", ARKV), in fp64:
  /// disp = -sum P log(P + 1e-10), var = sum_{b,h,j} var_q P (unbiased; 0 when w = 1),
  /// kurt = sum_{b,h,j} m4 / max(m2, 1e-8)^2 (Pearson, central moments over the queries).
  struct OqStats {
    double disp = 0;
    double var = 0;
    double kurt = 0;
  };

  /// OqStats of P = probs * before (the mask broadcast over each KV head's G query heads and the
  /// w rows), or of P = probs when `before` is undefined. Every statistic is a sum over columns
  /// (b, h, j) of a quantity of that column's w values, so it is computed per slice of
  /// (batch rows, whole KV heads -- or query heads without a mask --, and columns j), in fp64,
  /// with the partial sums kept on the device and one host synchronization at the end (the only
  /// one). Extra memory: two fp64 slices of at most max(slice_bytes, g * w * 8) bytes each
  /// (the floor is one column of one unit: g = G query heads with a mask, 1 without) plus
  /// per-column moments of one slice (1/w of it); neither the masked product nor an fp64 copy
  /// of the whole input is ever made.
  /// var is sum_j (sum_i c_ij^2) / (w - 1) from the centered slice c (two-pass), m2 and m4
  /// likewise; the result equals the unsliced formula up to fp64 summation order (the tests
  /// require relative 1e-12).
  /// \param probs  [B, H_q, w, T] floating point (fp32 from attention_probs), not modified
  /// \param before [B, H_kv, T] bool, true = column counted (keys before the observation window),
  ///               H_q a multiple of H_kv; or undefined (every column counted)
  /// \throws c10::Error on mismatched shapes/devices, a non-bool mask, or slice_bytes <= 0.
  static OqStats oq_stats(at::Tensor const& probs, at::Tensor const& before = at::Tensor(),
                          int64_t slice_bytes = kSliceBytes);

  /// Log of the layer OQ score from its statistics: log s = log disp / tau1 + log var / tau2 +
  /// log kurt / tau3, each term floored at 1e-300 before the log so degenerate inputs stay
  /// finite (the log-domain fix of ALGORITHM.md: with tau1 = 0.1 the plain product overflows).
  static double log_oq_score(OqStats const& st, double tau1, double tau2, double tau3);

  /// Log of the layer OQ score of probs_before: log_oq_score(oq_stats(probs_before), taus).
  /// \param probs_before [B, H_q, w, T] fp32; columns of keys inside the observation window
  ///        (or empty) must already be zero.
  /// \throws c10::Error as oq_stats().
  static double log_oq_score(at::Tensor const& probs_before, double tau1, double tau2, double tau3,
                             int64_t slice_bytes = kSliceBytes);

  /// Log of the layer OQ score of probs * before, as log_oq_score(probs * before', taus) with
  /// before' = before repeated over the G query heads of each KV head and over the w rows, but
  /// without materializing that product (see oq_stats() for the memory bound).
  /// \param probs  [B, H_q, w, T] fp32 over all held columns
  /// \param before [B, H_kv, T] bool, the columns of keys before the observation window
  /// \throws c10::Error as oq_stats().
  static double log_oq_score(at::Tensor const& probs, at::Tensor const& before, double tau1, double tau2,
                             double tau3, int64_t slice_bytes = kSliceBytes);

  /// Origin ratio r = exp(log_s - max_log_s) in (0, 1]; 1 when either is not finite.
  static double origin_ratio(double log_s, double max_log_s);

  /// Origin budget of the past: O = round(r * (C - W)) clipped to [0, C - W].
  static int64_t origin_budget(double ratio, int64_t cache_size, int64_t window_size);
};

}  // namespace akcb
