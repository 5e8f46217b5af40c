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
  /// Observation-window attention probabilities over held keys, in fp32, causal by absolute
  /// position: A[b, h, i, j] = softmax_j(q[b,h,i] . k[b,h/G,j] / sqrt(D)) over the keys with
  /// k_pos[b, h/G, j] >= 0 (held) and k_pos <= q_pos[i]. A w x T product, never T x T.
  /// \param q_obs [B, H_q, w, D] fp32|bf16|fp16 (post-RoPE queries of the observation window)
  /// \param q_pos [w] int64, absolute positions of those queries
  /// \param k     [B, H_kv, T, D] same dtype as q_obs (post-RoPE keys as held)
  /// \param k_pos [B, H_kv, T] int32|int64, absolute positions, -1 = empty slot
  /// \returns     [B, H_q, w, T] fp32, rows sum to 1 (masked entries exactly 0)
  /// \throws c10::Error on mismatched shapes/devices, or H_q not a multiple of H_kv.
  static at::Tensor attention_probs(at::Tensor const& q_obs, at::Tensor const& q_pos, at::Tensor const& k,
                                    at::Tensor const& k_pos);

  /// Heavy-hitter scores of scored past tokens given in position order:
  /// hh = mean_q A + gamma * var_q A (unbiased variance, only when w > 1), then a 1-D average
  /// pool along the token axis (kernel `pool_kernel`, stride 1, zero padding counted), then the
  /// mean over the G query heads of each KV head.
  /// \param probs_past [B, H_q, w, P] fp32, A restricted to past tokens, position order
  /// \returns          [B, H_kv, P] fp32 (unitless)
  static at::Tensor heavy_hitter(at::Tensor const& probs_past, int64_t n_heads_kv, double gamma,
                                 int64_t pool_kernel);

  /// Log of the layer OQ score: log s = log disp / tau1 + log var / tau2 + log kurt / tau3 with
  /// disp = -sum P log(P + 1e-10), var = sum_{b,h,j} var_q P (unbiased; 0 when w = 1),
  /// kurt = sum_{b,h,j} m4 / max(m2, 1e-8)^2 (Pearson, central moments over the queries).
  /// Each term is floored at 1e-300 before the log so degenerate inputs stay finite.
  /// \param probs_before [B, H_q, w, T] fp32; columns of keys inside the observation window
  ///        (or empty) must already be zero.
  static double log_oq_score(at::Tensor const& probs_before, double tau1, double tau2, double tau3);

  /// Origin ratio r = exp(log_s - max_log_s) in (0, 1]; 1 when either is not finite.
  static double origin_ratio(double log_s, double max_log_s);

  /// Origin budget of the past: O = round(r * (C - W)) clipped to [0, C - W].
  static int64_t origin_budget(double ratio, int64_t cache_size, int64_t window_size);
};

}  // namespace akcb
