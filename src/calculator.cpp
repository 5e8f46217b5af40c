#include <akcb/calculator.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <akcb/shapes.hpp>

namespace akcb {

namespace {

/// A slicing of a grid of B rows x U units (heads or head groups) x T columns into slices of nb
/// rows x nu units x nt columns, so that a slice costs at most `budget` bytes when one column of
/// one unit costs `col_bytes`: whole rows of units first, then fewer units, then (if allowed)
/// fewer columns; never less than one column of one unit. Either nu == U or nb == 1, so that a
/// slice of a contiguous [B, U, ...] tensor is contiguous.
struct Slicing {
  int64_t nb, nu, nt;
  bool balanced = false;  ///< rows/units split into near-equal parts of at least nb/nu (see ranges)
};

Slicing plan_slices(int64_t B, int64_t U, int64_t T, int64_t col_bytes, int64_t budget, bool split_columns) {
  int64_t const unit = std::max<int64_t>(1, T * col_bytes);  // one unit of one row, all columns
  int64_t const all = std::max<int64_t>(T, 1);
  if (B * U * unit <= budget) return {B, U, all};
  if (U * unit <= budget) return {std::max<int64_t>(1, budget / (U * unit)), U, all};
  if (unit <= budget) return {1, std::max<int64_t>(1, budget / unit), all};
  if (!split_columns) return {1, 1, all};
  return {1, 1, std::clamp<int64_t>(budget / std::max<int64_t>(1, col_bytes), 1, all)};
}

/// Calls f(start, count) for consecutive ranges covering [0, n): of `step` each (the last one
/// shorter), or, if `balanced`, floor(n / step) near-equal ranges of at least `step` each.
template <class F>
void for_each_range(int64_t n, int64_t step, bool balanced, F&& f) {
  if (n <= 0) return;
  int64_t const k = balanced ? std::max<int64_t>(1, n / step) : (n + step - 1) / step;
  for (int64_t i = 0; i < k; ++i) {
    int64_t const a = balanced ? i * n / k : i * step;
    int64_t const b = balanced ? (i + 1) * n / k : std::min(n, a + step);
    f(a, b - a);
  }
}

/// Calls f(b0, nb, u0, nu, t0, nt) for each slice of the plan, in order (nothing when B, U or T
/// is 0).
template <class F>
void for_each_slice(int64_t B, int64_t U, int64_t T, Slicing const& s, F&& f) {
  for_each_range(B, s.nb, s.balanced, [&](int64_t b0, int64_t nb) {
    for_each_range(U, s.nu, s.balanced, [&](int64_t u0, int64_t nu) {
      for_each_range(T, s.nt, false, [&](int64_t t0, int64_t nt) { f(b0, nb, u0, nu, t0, nt); });
    });
  });
}

}  // namespace

at::Tensor Calculator::attention_probs(at::Tensor const& q_obs, at::Tensor const& q_pos, at::Tensor const& k,
                                       at::Tensor const& k_pos, int64_t slice_bytes) {
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
  AKCB_CHECK(slice_bytes > 0, "attention_probs: slice_bytes must be positive, got ", slice_bytes);
  int64_t const G = Hq / Hkv;
  // The one full-size tensor: the result, [B, H_kv, G*w, T]. Each slice of whole KV heads computes
  // its logits in a temporary and its softmax straight into its part of the result.
  at::Tensor out = at::empty({B, Hkv, G * w, T}, q_obs.options().dtype(at::kFloat));
  if (out.numel() == 0) return out.view({B, Hq, w, T});
  at::Tensor q4 = q_obs.reshape({B, Hkv, G * w, D});                            // q's dtype, small
  at::Tensor qp = q_pos.to(k_pos.device()).to(at::kLong).view({1, 1, 1, w, 1});
  double const scale = std::sqrt(static_cast<double>(D));
  // Per KV head and column: logits G*w fp32, fp32 key D, masks 2w bool.
  Slicing sl = plan_slices(B, Hkv, T, (G * w + D) * 4 + 2 * w, slice_bytes, /*split_columns=*/false);
  // At least two KV heads per slice when there are two: at::matmul of a single matrix runs a
  // plain GEMM, whose rounding differs from the batched GEMM of the unsliced product (measured on
  // the CPU with MKL); two or more take the batched GEMM, which matches it bit for bit.
  // Balanced slices of at least two then leave no single KV head at the end either.
  if (sl.nb * sl.nu == 1 && B * Hkv >= 2) (Hkv >= 2 ? sl.nu : sl.nb) = 2;
  sl.balanced = true;
  for_each_slice(B, Hkv, T, sl, [&](int64_t b0, int64_t nb, int64_t h0, int64_t nh, int64_t, int64_t) {
    at::Tensor qf = q4.narrow(0, b0, nb).narrow(1, h0, nh).to(at::kFloat);      // [nb, nh, G*w, D]
    at::Tensor kf = k.narrow(0, b0, nb).narrow(1, h0, nh).to(at::kFloat);       // [nb, nh, T, D]
    at::Tensor logits = at::matmul(qf, kf.transpose(2, 3));                      // [nb, nh, G*w, T]
    kf = at::Tensor();
    logits.div_(scale);
    at::Tensor kp = k_pos.narrow(0, b0, nb).narrow(1, h0, nh).to(at::kLong).reshape({nb, nh, 1, 1, T});
    logits.view({nb, nh, G, w, T}).masked_fill_((kp < 0) | (kp > qp), -std::numeric_limits<float>::infinity());
    at::Tensor o = out.narrow(0, b0, nb).narrow(1, h0, nh);                      // contiguous (see Slicing)
    at::softmax_out(o, logits, -1);
    // A query with no allowed key would give NaN; it cannot happen for a query that is itself
    // held, but a caller's probabilities must never carry NaN into the scores.
    o.nan_to_num_(0.0, 0.0, 0.0);
  });
  return out.view({B, Hq, w, T});
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

at::Tensor Calculator::heavy_hitter_at(at::Tensor const& probs, at::Tensor const& order, int64_t n_heads_kv,
                                       double gamma, int64_t pool_kernel, int64_t slice_bytes) {
  ShapeEnv env;
  env.bind("H_kv", n_heads_kv).check(probs, {"B", "H_q", "w", "T"}, "probs").check(order, {"B", "H_kv", "P"}, "order");
  int64_t const B = env["B"], Hq = env["H_q"], w = env["w"], P = env["P"];
  AKCB_CHECK(n_heads_kv > 0 && Hq % n_heads_kv == 0, "heavy_hitter_at: H_q = ", Hq, " not a multiple of H_kv = ",
             n_heads_kv);
  AKCB_CHECK(order.scalar_type() == at::kLong, "heavy_hitter_at: order must be int64, got ", order.scalar_type());
  AKCB_CHECK(order.device() == probs.device(), "heavy_hitter_at: probs on ", probs.device(), ", order on ",
             order.device());
  AKCB_CHECK(slice_bytes > 0, "heavy_hitter_at: slice_bytes must be positive, got ", slice_bytes);
  int64_t const G = Hq / n_heads_kv;
  Slicing const sl = plan_slices(B, n_heads_kv, P, G * w * 4, slice_bytes, /*split_columns=*/false);
  auto score = [&](int64_t b0, int64_t nb, int64_t h0, int64_t nh) {
    at::Tensor p = probs.narrow(0, b0, nb).narrow(1, h0 * G, nh * G);           // [nb, nh*G, w, T]
    at::Tensor idx = order.narrow(0, b0, nb).narrow(1, h0, nh).repeat_interleave(G, 1).unsqueeze(2).expand(
        {-1, -1, w, -1});                                                       // [nb, nh*G, w, P]
    return heavy_hitter(p.gather(3, idx), nh, gamma, pool_kernel);              // [nb, nh, P]
  };
  if ((sl.nb == B && sl.nu == n_heads_kv) || P == 0) return score(0, B, 0, n_heads_kv);
  at::Tensor out = at::empty({B, n_heads_kv, P}, probs.options());
  for_each_slice(B, n_heads_kv, P, sl, [&](int64_t b0, int64_t nb, int64_t h0, int64_t nh, int64_t, int64_t) {
    out.narrow(0, b0, nb).narrow(1, h0, nh).copy_(score(b0, nb, h0, nh));
  });
  return out;
}

Calculator::OqStats Calculator::oq_stats(at::Tensor const& probs, at::Tensor const& before, int64_t slice_bytes) {
  ShapeEnv env;
  env.check(probs, {"B", "H_q", "w", "T"}, "probs");
  if (before.defined()) env.check(before, {"B", "H_kv", "T"}, "before");
  int64_t const B = env["B"], Hq = env["H_q"], w = env["w"], T = env["T"];
  int64_t const U = before.defined() ? env["H_kv"] : Hq;  // units: whole KV heads (mask) or query heads
  AKCB_CHECK(Hq % U == 0, "oq_stats: H_q = ", Hq, " is not a multiple of H_kv = ", U);
  AKCB_CHECK(at::isFloatingType(probs.scalar_type()), "oq_stats: probs must be floating point, got ",
             probs.scalar_type());
  if (before.defined()) {
    AKCB_CHECK(before.scalar_type() == at::kBool, "oq_stats: before must be bool, got ", before.scalar_type());
    AKCB_CHECK(before.device() == probs.device(), "oq_stats: probs on ", probs.device(), ", before on ",
               before.device());
  }
  AKCB_CHECK(slice_bytes > 0, "oq_stats: slice_bytes must be positive, got ", slice_bytes);
  int64_t const g = Hq / U;  // query heads per unit
  auto const f64 = probs.options().dtype(at::kDouble);
  if (B * Hq * w * T == 0) return {};
  at::Tensor acc = at::zeros({3}, f64);  // disp, var, kurt partial sums, on the device
  Slicing const sl = plan_slices(B, U, T, g * w * 8, slice_bytes, /*split_columns=*/true);
  for_each_slice(B, U, T, sl, [&](int64_t b0, int64_t nb, int64_t u0, int64_t nu, int64_t t0, int64_t nt) {
    // p: this slice of P in fp64, a copy (never the caller's tensor), [nb, nu*g, w, nt].
    at::Tensor p = probs.narrow(0, b0, nb).narrow(1, u0 * g, nu * g).narrow(3, t0, nt).to(
        at::kDouble, /*non_blocking=*/false, /*copy=*/true, at::MemoryFormat::Contiguous);
    if (before.defined())
      p.view({nb, nu, g, w, nt}).mul_(before.narrow(0, b0, nb).narrow(1, u0, nu).narrow(2, t0, nt).reshape(
          {nb, nu, 1, 1, nt}));
    at::Tensor t = p + 1e-10;
    t.log_().mul_(p);                                                  // P log(P + 1e-10)
    at::Tensor const disp = -t.sum();
    p.sub_(p.mean(2, /*keepdim=*/true));                               // centered over the queries
    at::mul_out(t, p, p);                                              // c^2
    at::Tensor const s2 = t.sum(2);                                    // [nb, nu*g, nt]
    at::Tensor const m4 = t.square_().sum(2).div_(static_cast<double>(w));
    at::Tensor const var = w > 1 ? s2.sum() / static_cast<double>(w - 1) : at::zeros({}, f64);
    at::Tensor const kurt = (m4 / (s2 / static_cast<double>(w)).clamp_min_(1e-8).square_()).sum();
    acc.add_(at::stack({disp, var, kurt}));
  });
  at::Tensor const host = acc.cpu();  // the one synchronization
  double const* a = host.const_data_ptr<double>();
  return {a[0], a[1], a[2]};
}

double Calculator::log_oq_score(OqStats const& st, double tau1, double tau2, double tau3) {
  auto safe_log = [](double x) { return std::log(std::max(x, 1e-300)); };
  return safe_log(st.disp) / tau1 + safe_log(st.var) / tau2 + safe_log(st.kurt) / tau3;
}

double Calculator::log_oq_score(at::Tensor const& probs_before, double tau1, double tau2, double tau3,
                                int64_t slice_bytes) {
  return log_oq_score(oq_stats(probs_before, at::Tensor(), slice_bytes), tau1, tau2, tau3);
}

double Calculator::log_oq_score(at::Tensor const& probs, at::Tensor const& before, double tau1, double tau2,
                                double tau3, int64_t slice_bytes) {
  AKCB_CHECK(before.defined(), "log_oq_score: the mask `before` is undefined");
  return log_oq_score(oq_stats(probs, before, slice_bytes), tau1, tau2, tau3);
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
