#include <akcb/calculator.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <akcb/shapes.hpp>

namespace akcb {

at::Tensor Calculator::attention_probs(at::Tensor const& q_obs, at::Tensor const& q_pos, at::Tensor const& k,
                                       at::Tensor const& k_pos) {
  ShapeEnv env;
  env.check(q_obs, {"B", "H_q", "w", "D"}, "q_obs")
      .check(q_pos, {"w"}, "q_pos")
      .check(k, {"B", "H_kv", "T", "D"}, "k")
      .check(k_pos, {"B", "H_kv", "T"}, "k_pos");
  int64_t const B = env["B"], Hq = env["H_q"], Hkv = env["H_kv"], w = env["w"], T = env["T"], D = env["D"];
  AKCB_CHECK(Hq % Hkv == 0, "attention_probs: H_q = ", Hq, " is not a multiple of H_kv = ", Hkv);
  AKCB_CHECK(q_obs.device() == k.device() && k.device() == k_pos.device(),
             "attention_probs: q_obs, k and k_pos must be on one device, got ", q_obs.device(), ", ", k.device(),
             ", ", k_pos.device());
  int64_t const G = Hq / Hkv;
  at::Tensor qf = q_obs.to(at::kFloat).reshape({B, Hkv, G * w, D});          // [B, H_kv, G*w, D]
  at::Tensor kf = k.to(at::kFloat);                                         // [B, H_kv, T, D]
  at::Tensor logits = at::matmul(qf, kf.transpose(2, 3)) / std::sqrt(static_cast<double>(D));  // [B, H_kv, G*w, T]
  logits = logits.view({B, Hkv, G, w, T});
  at::Tensor kp = k_pos.to(at::kLong).view({B, Hkv, 1, 1, T});
  at::Tensor qp = q_pos.to(k_pos.device()).to(at::kLong).view({1, 1, 1, w, 1});
  at::Tensor allowed = (kp >= 0) & (kp <= qp);                               // [B, H_kv, 1, w, T]
  logits = logits.masked_fill(~allowed, -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(logits, -1);
  // A query with no allowed key would give NaN; it cannot happen for a query that is itself held,
  // but a caller's probabilities must never carry NaN into the scores.
  probs = at::nan_to_num(probs, 0.0, 0.0, 0.0);
  return probs.view({B, Hq, w, T});
}

at::Tensor Calculator::heavy_hitter(at::Tensor const& probs_past, int64_t n_heads_kv, double gamma,
                                    int64_t pool_kernel) {
  ShapeEnv env;
  env.check(probs_past, {"B", "H_q", "w", "P"}, "probs_past");
  int64_t const B = env["B"], Hq = env["H_q"], w = env["w"], P = env["P"];
  AKCB_CHECK(n_heads_kv > 0 && Hq % n_heads_kv == 0, "heavy_hitter: H_q = ", Hq, " not a multiple of H_kv = ",
             n_heads_kv);
  AKCB_CHECK(pool_kernel >= 1 && pool_kernel % 2 == 1, "heavy_hitter: pool_kernel must be odd, got ", pool_kernel);
  AKCB_CHECK(probs_past.scalar_type() == at::kFloat, "heavy_hitter: probs must be fp32, got ", probs_past.scalar_type());
  if (P == 0) return at::zeros({B, n_heads_kv, 0}, probs_past.options());
  at::Tensor hh = probs_past.mean(2);                                          // [B, H_q, P]
  if (w > 1 && gamma != 0.0) hh = hh + gamma * probs_past.var(2, /*unbiased=*/true);
  if (pool_kernel > 1) {
    hh = at::avg_pool1d(hh.reshape({B * Hq, 1, P}), {pool_kernel}, {1}, {pool_kernel / 2},
                        /*ceil_mode=*/false, /*count_include_pad=*/true)
             .view({B, Hq, P});
  }
  return hh.view({B, n_heads_kv, Hq / n_heads_kv, P}).mean(2);                 // [B, H_kv, P]
}

double Calculator::log_oq_score(at::Tensor const& probs_before, double tau1, double tau2, double tau3) {
  ShapeEnv env;
  env.check(probs_before, {"B", "H_q", "w", "T"}, "probs_before");
  at::Tensor p = probs_before.to(at::kDouble);
  int64_t const w = env["w"];
  double const disp = -(p * at::log(p + 1e-10)).sum().item<double>();
  double var = 0.0;
  if (w > 1) var = p.var(2, /*unbiased=*/true).sum().item<double>();
  at::Tensor centered = p - p.mean(2, /*keepdim=*/true);
  at::Tensor m2 = centered.pow(2).mean(2);
  at::Tensor m4 = centered.pow(4).mean(2);
  double const kurt = (m4 / m2.clamp_min(1e-8).pow(2)).sum().item<double>();
  auto safe_log = [](double x) { return std::log(std::max(x, 1e-300)); };
  return safe_log(disp) / tau1 + safe_log(var) / tau2 + safe_log(kurt) / tau3;
}

double Calculator::origin_ratio(double log_s, double max_log_s) {
  if (!std::isfinite(log_s) || !std::isfinite(max_log_s)) return 1.0;
  double const r = std::exp(std::min(0.0, log_s - max_log_s));
  // exp of a very negative difference underflows to 0; keep the ratio in (0, 1].
  return std::max(r, std::numeric_limits<double>::min());
}

int64_t Calculator::origin_budget(double ratio, int64_t cache_size, int64_t window_size) {
  int64_t const past = cache_size - window_size;
  auto const o = static_cast<int64_t>(std::llround(ratio * static_cast<double>(past)));
  return std::clamp<int64_t>(o, 0, past);
}

}  // namespace akcb
