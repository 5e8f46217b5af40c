// CPU reference implementations of akcb::ops (see include/akcb/ops.hpp for the contracts).
#include "cpu/ops_cpu.hpp"

#include <ATen/ATen.h>

namespace akcb::cpu {

ops::QuantizedTokens quantize_per_token(at::Tensor const& x, QuantDtype q) {
  float const qmax = ops::quant_max(q);
  at::Tensor xf = x.to(at::kFloat);                                  // [..., D]
  at::Tensor scale = xf.abs().amax(-1) / qmax;                        // [...]
  // x / scale with scale == 0 (all-zero row, or an absmax that underflows) mapped to 0.
  at::Tensor safe = at::where(scale > 0, scale, at::ones_like(scale));
  at::Tensor y = (xf / safe.unsqueeze(-1)).clamp(-qmax, qmax);
  y = at::where((scale > 0).unsqueeze(-1), y, at::zeros_like(y));
  scale = at::where(scale > 0, scale, at::zeros_like(scale));
  at::Tensor data = q == QuantDtype::kInt8 ? y.round().to(at::kChar) : y.to(at::kFloat8_e4m3fn);
  return {data.contiguous(), scale.contiguous()};
}

at::Tensor dequantize_per_token(at::Tensor const& data, at::Tensor const& scale, c10::ScalarType out_dtype) {
  // fp8 -> fp32 element conversion is a scalar loop in ATen's CPU kernels; a 256-entry table of
  // the same conversions, indexed by the stored byte, gives identical values several times faster.
  at::Tensor values;
  // The table is for CPU tensors; elsewhere (the "libtorch" rows of bench_kernels run this
  // reference on CUDA tensors) the plain conversion is used.
  if (data.scalar_type() == at::kFloat8_e4m3fn && data.is_cpu()) {
    static at::Tensor const lut = at::arange(256, at::kShort).to(at::kByte).view(at::kFloat8_e4m3fn).to(at::kFloat);
    values = lut.index_select(0, data.contiguous().view(at::kByte).flatten().to(at::kInt)).view(data.sizes());
  } else {
    values = data.to(at::kFloat);
  }
  return (values * scale.unsqueeze(-1)).to(out_dtype);
}

void quantize_gather_into_(at::Tensor const& src, at::Tensor const& index, at::Tensor& dst, at::Tensor& dst_scale,
                           int64_t offset) {
  int64_t const M = index.size(2);
  if (M == 0) return;
  QuantDtype const q = dst.scalar_type() == at::kChar ? QuantDtype::kInt8 : QuantDtype::kFp8E4M3;
  at::Tensor valid = index >= 0;                                      // [B, H, M]
  at::Tensor idx = index.clamp_min(0);
  at::Tensor rows = src.gather(2, idx.unsqueeze(-1).expand({-1, -1, -1, src.size(3)}));  // [B, H, M, D]
  rows = at::where(valid.unsqueeze(-1), rows, at::zeros_like(rows));
  ops::QuantizedTokens qt = quantize_per_token(rows, q);
  dst.narrow(2, offset, M).copy_(qt.data);
  dst_scale.narrow(2, offset, M).copy_(qt.scale);
}

void compact_tokens_(at::Tensor& x, at::Tensor const& index) {
  int64_t const K = index.size(2);
  if (K == 0) return;
  // Rows as raw bytes, so one gather serves data [.., D] of any dtype (fp8 included, which
  // ATen's CPU gather does not support), scales and positions alike.
  at::Tensor flat = x.view({x.size(0), x.size(1), x.size(2), -1}).view(at::kByte);   // [B, H, T_max, E bytes]
  at::Tensor valid = index >= 0;                                      // [B, H, K]
  at::Tensor idx = index.clamp_min(0).unsqueeze(-1).expand({-1, -1, -1, flat.size(3)});
  at::Tensor kept = flat.gather(2, idx);                              // [B, H, K, E] (temporary of the kept size)
  kept.masked_fill_(~valid.unsqueeze(-1), 0);
  flat.narrow(2, 0, K).copy_(kept);
}

ops::DenseKV gather_held_tokens(ops::HeldBlocks const& b, at::Tensor const& cols) {
  c10::ScalarType const dt = b.k_orig.scalar_type();
  int64_t const Uq = b.used_quant, Uo = b.used_orig;
  at::Tensor kq = dequantize_per_token(b.k_quant.narrow(2, 0, Uq), b.k_scale.narrow(2, 0, Uq), dt);
  at::Tensor vq = dequantize_per_token(b.v_quant.narrow(2, 0, Uq), b.v_scale.narrow(2, 0, Uq), dt);
  ops::DenseKV d;
  d.k = at::cat({kq, b.k_orig.narrow(2, 0, Uo)}, 2);          // [B, H, Uq + Uo, D], combined slots
  d.v = at::cat({vq, b.v_orig.narrow(2, 0, Uo)}, 2);
  d.pos = at::cat({b.pos_quant.narrow(2, 0, Uq), b.pos_orig.narrow(2, 0, Uo)}, 2);
  if (cols.defined()) {
    at::Tensor idx = cols.unsqueeze(-1).expand({-1, -1, -1, d.k.size(3)});
    d.k = d.k.gather(2, idx);
    d.v = d.v.gather(2, idx);
    d.pos = d.pos.gather(2, cols);
  }
  return {d.k.contiguous(), d.v.contiguous(), d.pos.contiguous()};
}

}  // namespace akcb::cpu
