// detail::LayerCache: storage, append, materialization and the compaction step of one layer.
#include <akcb/cache/layer_cache.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include <akcb/error.hpp>
#include <akcb/ops.hpp>

namespace akcb {

at::Tensor MaterializedKV::is_quantized() const {
  if (cols.defined()) return cols < n_quant_cols;
  at::Tensor col = at::arange(pos.size(2), pos.options().dtype(at::kLong));
  return (col < n_quant_cols).expand_as(pos);
}

}  // namespace akcb

namespace akcb::detail {
namespace {

constexpr int64_t kSlotGranule = 64;  // capacities are rounded up to a multiple of this

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/// dst[b, h, i] = first + i for i < n, in every (b, h) (dst [B, H, n], any integer dtype, a view
/// into a block): one fill when n == 1 (a decode step: one launch), else an arange broadcast.
void write_range(at::Tensor dst, int64_t first) {
  int64_t const n = dst.size(2);
  if (n == 1) {
    dst.fill_(first);
  } else {
    dst.copy_(at::arange(first, first + n, dst.options()).expand_as(dst));
  }
}

/// flags [B, H, U] bool -> [B, H, K] int64: per (b, h) the indices of the set flags in ascending
/// order followed by -1, K = the largest count over (b, h). Also returns the total count.
std::pair<at::Tensor, int64_t> flags_to_index(at::Tensor const& flags) {
  int64_t const U = flags.size(2);
  at::Tensor counts = flags.sum(-1);                                       // [B, H]
  int64_t const K = U == 0 ? 0 : counts.max().item<int64_t>();
  int64_t const total = counts.sum().item<int64_t>();
  at::Tensor ar = at::arange(U, flags.options().dtype(at::kLong)).expand_as(flags);
  at::Tensor key = at::where(flags, ar, at::full_like(ar, U));
  at::Tensor idx = std::get<0>(key.sort(-1)).narrow(2, 0, K);
  idx = at::where(idx == U, at::full_like(idx, -1), idx);
  return {idx.contiguous(), total};
}

/// Sets flags[b, h, idx[b, h, i]] for the entries where sel[b, h, i]; flags has U slots.
at::Tensor scatter_flags(at::Tensor const& idx, at::Tensor const& sel, int64_t U) {
  at::Tensor tmp = at::zeros({idx.size(0), idx.size(1), U + 1}, idx.options().dtype(at::kByte));
  at::Tensor where = at::where(sel, idx, at::full_like(idx, U));          // unselected -> dump slot U
  tmp.scatter_(2, where, 1);
  return tmp.narrow(2, 0, U).to(at::kBool);
}

/// Grows (or shrinks) a [B, H, cap, ...] tensor to `slots` along dim 2, keeping [0, keep).
at::Tensor resized(at::Tensor const& t, int64_t slots, int64_t keep, at::TensorOptions opts,
                   at::IntArrayRef trailing, double fill) {
  std::vector<int64_t> shape{t.defined() ? t.size(0) : 0, t.defined() ? t.size(1) : 0, slots};
  shape.insert(shape.end(), trailing.begin(), trailing.end());
  at::Tensor out = at::full(shape, fill, opts);
  if (keep > 0) out.narrow(2, 0, keep).copy_(t.narrow(2, 0, keep));
  return out;
}

}  // namespace

LayerCache::LayerCache(int64_t batch, int64_t n_heads_kv, int64_t head_dim, c10::ScalarType dtype,
                       c10::Device device, QuantDtype quant_dtype)
    : B_(batch), H_(n_heads_kv), D_(head_dim), dtype_(dtype), device_(device), quant_dtype_(quant_dtype) {
  reset();
}

void LayerCache::reset() {
  auto const opts = at::TensorOptions().device(device_);
  k_orig_ = at::empty({B_, H_, 0, D_}, opts.dtype(dtype_));
  v_orig_ = at::empty({B_, H_, 0, D_}, opts.dtype(dtype_));
  pos_orig_ = at::empty({B_, H_, 0}, opts.dtype(at::kInt));
  k_quant_ = at::empty({B_, H_, 0, D_}, opts.dtype(quant_scalar_type(quant_dtype_)));
  v_quant_ = at::empty({B_, H_, 0, D_}, opts.dtype(quant_scalar_type(quant_dtype_)));
  k_scale_ = at::empty({B_, H_, 0}, opts.dtype(at::kFloat));
  v_scale_ = at::empty({B_, H_, 0}, opts.dtype(at::kFloat));
  pos_quant_ = at::empty({B_, H_, 0}, opts.dtype(at::kInt));
  cap_o_ = cap_q_ = used_o_ = used_q_ = n_processed_ = n_held_ = last_append_len_ = 0;
  has_holes_ = false;
  cols_ = at::Tensor();
  n_cols_ = 0;
  max_head_payload_bytes_ = 0;
}

int64_t LayerCache::orig_token_bytes() const { return 2 * D_ * static_cast<int64_t>(c10::elementSize(dtype_)); }
int64_t LayerCache::quant_token_bytes() const {
  return 2 * D_ * quant_elem_bytes(quant_dtype_) + 2 * static_cast<int64_t>(sizeof(float));
}

void LayerCache::reserve_orig_(int64_t slots) {
  auto const opts = at::TensorOptions().device(device_);
  int64_t const D = D_;
  k_orig_ = resized(k_orig_, slots, used_o_, opts.dtype(dtype_), {D}, 0.0);
  v_orig_ = resized(v_orig_, slots, used_o_, opts.dtype(dtype_), {D}, 0.0);
  pos_orig_ = resized(pos_orig_, slots, used_o_, opts.dtype(at::kInt), {}, -1.0);
  cap_o_ = slots;
}

void LayerCache::reserve_quant_(int64_t slots) {
  auto const opts = at::TensorOptions().device(device_);
  auto const qt = quant_scalar_type(quant_dtype_);
  int64_t const D = D_;
  // fp8 tensors cannot be created by at::full on every backend: allocate as bytes, view as fp8.
  auto make_q = [&](at::Tensor const& old) {
    at::Tensor out = at::zeros({B_, H_, slots, D}, opts.dtype(at::kByte)).view(qt);
    if (used_q_ > 0) out.narrow(2, 0, used_q_).copy_(old.narrow(2, 0, used_q_));
    return out;
  };
  k_quant_ = make_q(k_quant_);
  v_quant_ = make_q(v_quant_);
  k_scale_ = resized(k_scale_, slots, used_q_, opts.dtype(at::kFloat), {}, 0.0);
  v_scale_ = resized(v_scale_, slots, used_q_, opts.dtype(at::kFloat), {}, 0.0);
  pos_quant_ = resized(pos_quant_, slots, used_q_, opts.dtype(at::kInt), {}, -1.0);
  cap_q_ = slots;
}

void LayerCache::append(at::Tensor const& k, at::Tensor const& v) {
  int64_t const S = k.size(2);
  if (used_o_ + S > cap_o_) {
    // Geometric growth keeps appends amortized O(1); compaction later releases what is freed.
    int64_t const want = std::max<int64_t>(used_o_ + S, cap_o_ + cap_o_ / 2);
    reserve_orig_(round_up(want, kSlotGranule));
  }
  k_orig_.narrow(2, used_o_, S).copy_(k);
  v_orig_.narrow(2, used_o_, S).copy_(v);
  write_range(pos_orig_.narrow(2, used_o_, S), n_processed_);
  used_o_ += S;
  max_head_payload_bytes_ += S * orig_token_bytes();
  n_held_ += S;
  n_processed_ += S;
  last_append_len_ = S;
}

MaterializedKV LayerCache::materialize() const {
  MaterializedKV m;
  if (used_q_ == 0 && !has_holes_) {  // the Original block as it is: views, no copy
    m.k = k_orig_.narrow(2, 0, used_o_);
    m.v = v_orig_.narrow(2, 0, used_o_);
    m.pos = pos_orig_.narrow(2, 0, used_o_);
    return m;
  }
  // Holes are squeezed out: per head, its n_held valid columns in slot order. Attention then needs
  // no per-head mask (a [B, H_q, S, T] mask would cost more than the keys themselves).
  if (has_holes_) m.cols = held_columns_();
  ops::HeldBlocks const blocks{k_orig_, v_orig_, pos_orig_, k_quant_, v_quant_, k_scale_, v_scale_, pos_quant_,
                               used_o_, used_q_};
  ops::DenseKV d = ops::gather_held_tokens(blocks, m.cols);
  m.k = std::move(d.k);
  m.v = std::move(d.v);
  m.pos = std::move(d.pos);
  m.n_quant_cols = used_q_;
  return m;
}

at::Tensor LayerCache::held_columns_() const {
  auto const cols_opts = at::TensorOptions().device(device_).dtype(at::kLong);
  if (!cols_.defined()) {
    // Once per compression: a stable sort of the hole flags of every used slot, into a buffer with
    // room for the tokens the Original block takes before it has to grow.
    at::Tensor hole = (held_positions() < 0).to(at::kByte);                                    // [B, H, Uq + Uo]
    at::Tensor sorted = std::get<1>(hole.sort(/*stable=*/true, -1, false));
    cols_ = resized(sorted, n_held_ + (cap_o_ - used_o_), n_held_, cols_opts, {}, -1.0);
    n_cols_ = n_held_;
  }
  int64_t const extra = n_held_ - n_cols_;
  if (extra > 0) {
    // Tokens appended since took the last `extra` Original slots in every head: the combined
    // slots just below used_q_ + used_o_, the same in every head.
    if (n_held_ > cols_.size(2))  // the Original block grew past the room: grow geometrically
      cols_ = resized(cols_, std::max(n_held_, cols_.size(2) + cols_.size(2) / 2), n_cols_, cols_opts, {}, -1.0);
    write_range(cols_.narrow(2, n_cols_, extra), used_q_ + used_o_ - extra);
    n_cols_ = n_held_;
  }
  return cols_.narrow(2, 0, n_held_);  // a view: row stride cols_.size(2)
}

at::Tensor LayerCache::held_positions() const {
  return at::cat({pos_quant_.narrow(2, 0, used_q_), pos_orig_.narrow(2, 0, used_o_)}, 2).to(at::kLong);
}

at::Tensor LayerCache::past_order(at::Tensor const& positions, int64_t window) const {
  int64_t const T = positions.size(2);
  int64_t const P = n_held_ - std::min(window, n_processed_);
  at::Tensor pos = positions.to(at::kLong);
  int64_t const first_window_pos = n_processed_ - window;
  at::Tensor is_past = (pos >= 0) & (pos < first_window_pos);
  at::Tensor key = at::where(is_past, pos, at::full_like(pos, std::numeric_limits<int64_t>::max()));
  at::Tensor order = std::get<1>(key.sort(/*stable=*/true, -1, false));   // [B, H_kv, T]
  AKCB_ASSERT(P >= 0 && P <= T, "past count ", P, " outside [0, ", T, "]");
  return order.narrow(2, 0, P).contiguous();
}

void LayerCache::compress(at::Tensor const& order, at::Tensor const& scores, int64_t keep, int64_t origin_slots,
                          int64_t window) {
  int64_t const P = order.size(2);
  AKCB_ASSERT(scores.sizes() == order.sizes(), "scores ", scores.sizes(), " vs order ", order.sizes());
  keep = std::clamp<int64_t>(keep, 0, P);
  int64_t const Uq = used_q_, Uo = used_o_;
  cols_ = at::Tensor();  // slots move: the hole-squeezing column map is rebuilt on the next materialize()

  // Rank the past; `kept` are combined column indices in rank order (best first).
  at::Tensor top = std::get<1>(scores.topk(keep, -1, /*largest=*/true, /*sorted=*/true));   // [B, H, keep]
  at::Tensor kept = order.gather(2, top);                                                     // [B, H, keep]
  at::Tensor is_orig = kept >= Uq;
  at::Tensor orig_rank = is_orig.to(at::kLong).cumsum(-1);
  at::Tensor stays_orig = is_orig & (orig_rank <= origin_slots);
  at::Tensor demoted = is_orig & ~stays_orig;
  at::Tensor stays_quant = ~is_orig;

  at::Tensor orig_slot = (kept - Uq).clamp_min(0);
  at::Tensor pos_o = pos_orig_.narrow(2, 0, Uo);
  at::Tensor in_window = pos_o >= (n_processed_ - window);     // holes (-1) are never in the window
  at::Tensor keep_o = scatter_flags(orig_slot, stays_orig, Uo) | in_window;
  at::Tensor demote_o = scatter_flags(orig_slot, demoted, Uo);
  at::Tensor keep_q = scatter_flags(kept.clamp_max(std::max<int64_t>(Uq - 1, 0)), stays_quant, Uq);

  auto [q_idx, n_q] = flags_to_index(keep_q);       // [B, H, Kq]
  auto [d_idx, n_d] = flags_to_index(demote_o);     // [B, H, M]
  auto [o_idx, n_o] = flags_to_index(keep_o);       // [B, H, Ko]
  int64_t const Kq = q_idx.size(2), M = d_idx.size(2), Ko = o_idx.size(2);

  // 1. Quantized block: drop evicted tokens in place.
  if (Uq > 0) {
    for (at::Tensor* t : {&k_quant_, &v_quant_, &k_scale_, &v_scale_, &pos_quant_})
      ops::compact_tokens_(*t, q_idx, /*check_index=*/false);
    pos_quant_.narrow(2, 0, Kq).masked_fill_(q_idx < 0, -1);
  }
  used_q_ = Kq;
  // 2. Demote: quantize the chosen Original tokens, one scale per (b, h, token), behind them.
  if (M > 0) {
    if (Kq + M > cap_q_) reserve_quant_(round_up(std::max<int64_t>(Kq + M, cap_q_ + cap_q_ / 4), kSlotGranule));
    ops::quantize_gather_into_(k_orig_, d_idx, k_quant_, k_scale_, Kq, /*check_index=*/false);
    ops::quantize_gather_into_(v_orig_, d_idx, v_quant_, v_scale_, Kq, /*check_index=*/false);
    at::Tensor dpos = pos_orig_.gather(2, d_idx.clamp_min(0));
    pos_quant_.narrow(2, Kq, M).copy_(at::where(d_idx >= 0, dpos, at::full_like(dpos, -1)));
    used_q_ = Kq + M;
  }
  // 3. Original block: keep the window and the Original survivors, in place.
  for (at::Tensor* t : {&k_orig_, &v_orig_, &pos_orig_}) ops::compact_tokens_(*t, o_idx, /*check_index=*/false);
  pos_orig_.narrow(2, 0, Ko).masked_fill_(o_idx < 0, -1);
  used_o_ = Ko;

  n_held_ = std::min(window, n_processed_) + keep;
  at::Tensor head_bytes = (pos_orig_.narrow(2, 0, used_o_) >= 0).sum(-1) * orig_token_bytes() +
                          (pos_quant_.narrow(2, 0, used_q_) >= 0).sum(-1) * quant_token_bytes();   // [B, H]
  max_head_payload_bytes_ = head_bytes.max().item<int64_t>();
  int64_t const heads = B_ * H_;
  has_holes_ = (Ko * heads != n_o) || (used_q_ * heads != n_q + n_d);
  AKCB_ASSERT(n_o + n_q + n_d == n_held_ * heads, "held count mismatch after compression: ", n_o, " + ", n_q, " + ",
              n_d, " != ", n_held_, " * ", heads);
}

void LayerCache::shrink_to_fit(int64_t spare_o, int64_t spare_q) {
  if (cap_o_ != used_o_ + spare_o) reserve_orig_(used_o_ + spare_o);
  if (cap_q_ != used_q_ + spare_q) reserve_quant_(used_q_ + spare_q);
}

LayerStats LayerCache::stats() const {
  LayerStats s;
  s.n_original = (pos_orig_.narrow(2, 0, used_o_) >= 0).sum().item<int64_t>();
  s.n_quantized = (pos_quant_.narrow(2, 0, used_q_) >= 0).sum().item<int64_t>();
  s.n_evicted = n_processed_ * B_ * H_ - s.n_original - s.n_quantized;
  s.bytes_original = s.n_original * orig_token_bytes();
  s.bytes_quantized = s.n_quantized * quant_token_bytes();
  s.bytes_metadata = (s.n_original + s.n_quantized) * static_cast<int64_t>(sizeof(int32_t));
  s.held_bytes = s.bytes_original + s.bytes_quantized + s.bytes_metadata;
  s.full_bytes = n_processed_ * B_ * H_ * orig_token_bytes();
  for (at::Tensor const* t : {&k_orig_, &v_orig_, &pos_orig_, &k_quant_, &v_quant_, &k_scale_, &v_scale_, &pos_quant_})
    s.capacity_bytes += static_cast<int64_t>(t->nbytes());
  return s;
}

}  // namespace akcb::detail
