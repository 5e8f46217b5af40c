// akcb::ops: validate, then route by device (STYLE.md "Device routing").
#include <akcb/ops.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>

#include <akcb/shapes.hpp>

#include "cpu/ops_cpu.hpp"
#ifdef AKCB_WITH_CUDA
#include "../kernels/ops_cuda.hpp"
#endif

namespace akcb::ops {
namespace {

bool is_float_type(c10::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}
bool is_quant_type(c10::ScalarType t) { return t == at::kFloat8_e4m3fn || t == at::kChar; }

#define AKCB_REQUIRE_CUDA(what)                                                                    \
  AKCB_CHECK(false, what, ": got CUDA tensors but this build of akcb has no CUDA kernels "         \
                          "(configure with -DAKCB_WITH_CUDA=ON)")

void check_same_device(at::Tensor const& a, char const* an, at::Tensor const& b, char const* bn) {
  AKCB_CHECK(a.device() == b.device(), an, " is on ", a.device(), " but ", bn, " is on ", b.device());
}

}  // namespace

bool cuda_kernels_available() {
#ifdef AKCB_WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor decode_attention(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v) {
  ShapeEnv env;
  env.check(q, {"B", "H_q", "S", "D"}, "q").check(k, {"B", "H_kv", "T", "D"}, "k").check(v, {"B", "H_kv", "T", "D"}, "v");
  int64_t const B = env["B"], Hq = env["H_q"], Hkv = env["H_kv"], T = env["T"], D = env["D"];
  AKCB_CHECK(env["S"] == 1, "decode_attention: one query per sequence expected, q has S = ", env["S"]);
  AKCB_CHECK(T >= 1, "decode_attention: no keys (T = 0)");
  AKCB_CHECK(Hq % Hkv == 0, "decode_attention: H_q = ", Hq, " is not a multiple of H_kv = ", Hkv);
  AKCB_CHECK(is_float_type(q.scalar_type()), "decode_attention: q must be fp32, bf16 or fp16, got ", q.scalar_type());
  AKCB_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), "decode_attention: dtypes differ: q ",
             q.scalar_type(), ", k ", k.scalar_type(), ", v ", v.scalar_type());
  check_same_device(q, "q", k, "k");
  check_same_device(q, "q", v, "v");
  int64_t const G = Hq / Hkv;
  // Query head h reads KV head h / G (transformers' repeat_kv order), so the G query heads of a KV
  // head are consecutive: [B, H_q, 1, D] -> [B, H_kv, G, D], one batched GEMM per KV head.
  at::Tensor const qg = q.reshape({B, Hkv, G, D});
  at::Tensor scores = at::matmul(qg, k.transpose(2, 3)).mul_(1.0 / std::sqrt(static_cast<double>(D)));  // [B, H_kv, G, T]
  at::Tensor const p = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(p, v).view({B, Hq, 1, D});
}

at::Tensor cache_attention(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v) {
  ShapeEnv env;
  env.check(q, {"B", "H_q", "S", "D"}, "q").check(k, {"B", "H_kv", "T", "D"}, "k").check(v, {"B", "H_kv", "T", "D"}, "v");
  int64_t const Hq = env["H_q"], Hkv = env["H_kv"], S = env["S"], T = env["T"], D = env["D"];
  AKCB_CHECK(S >= 1 && T >= S, "cache_attention: the keys must include the S = ", S,
             " new tokens (T >= S >= 1), got T = ", T);
  AKCB_CHECK(Hq % Hkv == 0, "cache_attention: H_q = ", Hq, " is not a multiple of H_kv = ", Hkv);
  AKCB_CHECK(is_float_type(q.scalar_type()), "cache_attention: q must be fp32, bf16 or fp16, got ", q.scalar_type());
  AKCB_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
             "cache_attention: dtypes differ: q ", q.scalar_type(), ", k ", k.scalar_type(), ", v ", v.scalar_type());
  check_same_device(q, "q", k, "k");
  check_same_device(q, "q", v, "v");
  AKCB_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1,
             "cache_attention: q, k, v must be contiguous in D, strides ", q.strides(), ", ", k.strides(), ", ",
             v.strides());
  double const scale = 1.0 / std::sqrt(static_cast<double>(D));
  // The CUDA attention kernels (FlashAttention-2 here, SDPA's below) load 16-byte vectors: a view
  // whose pointer or outer strides break that alignment is copied first. Seen on the H200
  // (2026-11-29): for bf16 queries 2 bytes off a boundary, SDPA with the mask returned values up to
  // 1.04 away from those for the same queries in an aligned buffer, without an error.
  auto aligned16 = [](at::Tensor const& t) {
    return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 &&
           t.stride(2) % 8 == 0;
  };
  auto aligned_copy = [&](at::Tensor const& t) {
    return !t.is_cuda() || aligned16(t) ? t : at::empty_like(t, at::MemoryFormat::Contiguous).copy_(t);
  };
  bool const flash = q.is_cuda() && (q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf) &&
                     D % 8 == 0 && D <= 256;
  if (S == 1 && q.is_cuda() && !flash) return decode_attention(q, k, v);  // GEMMs: any alignment
  at::Tensor const qa = aligned_copy(q), ka = aligned_copy(k), va = aligned_copy(v);
  if (flash) {
    // is_causal = true is bottom-right aligned for this op (S <= T): exactly j <= T - S + i.
    return std::get<0>(at::_scaled_dot_product_flash_attention(qa, ka, va, /*dropout_p=*/0.0, /*is_causal=*/true,
                                                               /*return_debug_mask=*/false, scale));
  }
  std::optional<at::Tensor> mask;
  if (S > 1) mask = at::ones({S, T}, q.options().dtype(at::kBool)).tril(T - S);
  return at::scaled_dot_product_attention(qa, ka, va, mask, 0.0, /*is_causal=*/false, std::nullopt, /*enable_gqa=*/true);
}

DenseKV gather_held_tokens(HeldBlocks const& b, at::Tensor const& cols) {
  ShapeEnv env;
  env.check(b.k_orig, {"B", "H_kv", "cap_o", "D"}, "k_orig")
      .check(b.v_orig, {"B", "H_kv", "cap_o", "D"}, "v_orig")
      .check(b.pos_orig, {"B", "H_kv", "cap_o"}, "pos_orig")
      .check(b.k_quant, {"B", "H_kv", "cap_q", "D"}, "k_quant")
      .check(b.v_quant, {"B", "H_kv", "cap_q", "D"}, "v_quant")
      .check(b.k_scale, {"B", "H_kv", "cap_q"}, "k_scale")
      .check(b.v_scale, {"B", "H_kv", "cap_q"}, "v_scale")
      .check(b.pos_quant, {"B", "H_kv", "cap_q"}, "pos_quant");
  AKCB_CHECK(is_float_type(b.k_orig.scalar_type()) && b.v_orig.scalar_type() == b.k_orig.scalar_type(),
             "gather_held_tokens: k_orig / v_orig must share an fp32, bf16 or fp16 dtype, got ", b.k_orig.scalar_type(),
             ", ", b.v_orig.scalar_type());
  AKCB_CHECK(is_quant_type(b.k_quant.scalar_type()) && b.v_quant.scalar_type() == b.k_quant.scalar_type(),
             "gather_held_tokens: k_quant / v_quant must share float8_e4m3fn or int8, got ", b.k_quant.scalar_type(),
             ", ", b.v_quant.scalar_type());
  AKCB_CHECK(b.k_scale.scalar_type() == at::kFloat && b.v_scale.scalar_type() == at::kFloat,
             "gather_held_tokens: scales must be fp32");
  AKCB_CHECK(b.pos_orig.scalar_type() == at::kInt && b.pos_quant.scalar_type() == at::kInt,
             "gather_held_tokens: positions must be int32");
  AKCB_CHECK(b.used_orig >= 0 && b.used_orig <= env["cap_o"] && b.used_quant >= 0 && b.used_quant <= env["cap_q"],
             "gather_held_tokens: used slots (", b.used_quant, " quantized, ", b.used_orig,
             " original) beyond the capacities (", env["cap_q"], ", ", env["cap_o"], ")");
  for (at::Tensor const* t : {&b.k_orig, &b.v_orig, &b.pos_orig, &b.k_quant, &b.v_quant, &b.k_scale, &b.v_scale,
                              &b.pos_quant}) {
    AKCB_CHECK(t->is_contiguous(), "gather_held_tokens: the blocks must be contiguous");
    check_same_device(b.k_orig, "k_orig", *t, "a block tensor");
  }
  if (cols.defined()) {
    env.check(cols, {"B", "H_kv", "T"}, "cols");
    AKCB_CHECK(cols.scalar_type() == at::kLong, "gather_held_tokens: cols must be int64, got ", cols.scalar_type());
    check_same_device(b.k_orig, "k_orig", cols, "cols");
  }
  if (b.k_orig.is_cuda()) {
#ifdef AKCB_WITH_CUDA
    // The kernel reads cols[b, h, j] at (b * H_kv + h) * stride(1) + j: rows may be strided (the
    // cache's column map is a view of a buffer with room), the rest must be dense.
    bool const rows_ok = !cols.defined() || (cols.stride(2) == 1 && (cols.size(0) == 1 ||
                                                                     cols.stride(0) == cols.size(1) * cols.stride(1)));
    return cuda::gather_held_tokens(b, rows_ok ? cols : cols.contiguous());
#else
    AKCB_REQUIRE_CUDA("gather_held_tokens");
#endif
  }
  return cpu::gather_held_tokens(b, cols);
}

QuantizedTokens quantize_per_token(at::Tensor const& x, QuantDtype q) {
  AKCB_CHECK(x.defined() && x.dim() >= 1, "quantize_per_token: x must have at least 1 dimension");
  AKCB_CHECK(is_float_type(x.scalar_type()), "quantize_per_token: x must be fp32, bf16 or fp16, got ",
             x.scalar_type());
  (void)quant_scalar_type(q);  // validates the enum value
  if (x.is_cuda()) {
#ifdef AKCB_WITH_CUDA
    return cuda::quantize_per_token(x, q);
#else
    AKCB_REQUIRE_CUDA("quantize_per_token");
#endif
  }
  return cpu::quantize_per_token(x, q);
}

at::Tensor dequantize_per_token(at::Tensor const& data, at::Tensor const& scale, c10::ScalarType out_dtype) {
  AKCB_CHECK(data.defined() && data.dim() >= 1, "dequantize_per_token: data must have at least 1 dimension");
  AKCB_CHECK(is_quant_type(data.scalar_type()), "dequantize_per_token: data must be float8_e4m3fn or int8, got ",
             data.scalar_type());
  AKCB_CHECK(scale.scalar_type() == at::kFloat, "dequantize_per_token: scale must be fp32, got ", scale.scalar_type());
  AKCB_CHECK(scale.sizes() == data.sizes().slice(0, data.dim() - 1), "dequantize_per_token: scale shape ",
             scale.sizes(), " must equal data shape without its last dim, data is ", data.sizes());
  AKCB_CHECK(is_float_type(out_dtype), "dequantize_per_token: out_dtype must be fp32, bf16 or fp16, got ", out_dtype);
  check_same_device(data, "data", scale, "scale");
  if (data.is_cuda()) {
#ifdef AKCB_WITH_CUDA
    return cuda::dequantize_per_token(data, scale, out_dtype);
#else
    AKCB_REQUIRE_CUDA("dequantize_per_token");
#endif
  }
  return cpu::dequantize_per_token(data, scale, out_dtype);
}

void quantize_gather_into_(at::Tensor const& src, at::Tensor const& index, at::Tensor& dst, at::Tensor& dst_scale,
                           int64_t offset, bool check_index) {
  ShapeEnv env;
  env.check(src, {"B", "H_kv", "T_src", "D"}, "src")
      .check(index, {"B", "H_kv", "M"}, "index")
      .check(dst, {"B", "H_kv", "T_max", "D"}, "dst")
      .check(dst_scale, {"B", "H_kv", "T_max"}, "dst_scale");
  AKCB_CHECK(is_float_type(src.scalar_type()), "quantize_gather_into_: src must be fp32, bf16 or fp16, got ",
             src.scalar_type());
  AKCB_CHECK(src.stride(3) == 1, "quantize_gather_into_: src rows must be contiguous in D, strides ", src.strides());
  AKCB_CHECK(index.scalar_type() == at::kLong, "quantize_gather_into_: index must be int64, got ", index.scalar_type());
  AKCB_CHECK(is_quant_type(dst.scalar_type()), "quantize_gather_into_: dst must be float8_e4m3fn or int8, got ",
             dst.scalar_type());
  AKCB_CHECK(dst_scale.scalar_type() == at::kFloat, "quantize_gather_into_: dst_scale must be fp32, got ",
             dst_scale.scalar_type());
  AKCB_CHECK(dst.is_contiguous() && dst_scale.is_contiguous(), "quantize_gather_into_: dst and dst_scale must be contiguous");
  int64_t const M = env["M"], T_max = env["T_max"];
  AKCB_CHECK(offset >= 0 && offset + M <= T_max, "quantize_gather_into_: slots [", offset, ", ", offset + M,
             ") do not fit in T_max = ", T_max);
  check_same_device(src, "src", index, "index");
  check_same_device(src, "src", dst, "dst");
  check_same_device(src, "src", dst_scale, "dst_scale");
  if (check_index && index.numel() > 0) {
    // One reduction (a single host sync on CUDA) guards against out-of-range gathers.
    auto const mn = index.min().item<int64_t>(), mx = index.max().item<int64_t>();
    AKCB_CHECK(mn >= -1 && mx < env["T_src"], "quantize_gather_into_: index values must be in [-1, ",
               env["T_src"], "), got min ", mn, " max ", mx);
  }
  if (src.is_cuda()) {
#ifdef AKCB_WITH_CUDA
    cuda::quantize_gather_into_(src, index.contiguous(), dst, dst_scale, offset);
    return;
#else
    AKCB_REQUIRE_CUDA("quantize_gather_into_");
#endif
  }
  cpu::quantize_gather_into_(src, index, dst, dst_scale, offset);
}

void compact_tokens_(at::Tensor& x, at::Tensor const& index, bool check_index) {
  AKCB_CHECK(x.defined() && x.dim() >= 3, "compact_tokens_: x must be [B, H_kv, T_max, ...], got ",
             x.defined() ? x.sizes() : at::IntArrayRef{});
  ShapeEnv env;
  env.bind("B", x.size(0)).bind("H_kv", x.size(1));
  env.check(index, {"B", "H_kv", "K"}, "index");
  AKCB_CHECK(index.scalar_type() == at::kLong, "compact_tokens_: index must be int64, got ", index.scalar_type());
  AKCB_CHECK(x.is_contiguous(), "compact_tokens_: x must be contiguous, strides ", x.strides());
  AKCB_CHECK(env["K"] <= x.size(2), "compact_tokens_: K = ", env["K"], " exceeds T_max = ", x.size(2));
  check_same_device(x, "x", index, "index");
  if (check_index && index.numel() > 0) {
    // Valid entries strictly increasing, then only -1: this is what makes the move safe in place.
    at::Tensor valid = index >= 0;
    at::Tensor ok_range = (index >= -1) & (index < x.size(2));
    at::Tensor nxt_valid = valid.narrow(2, 1, index.size(2) - 1);
    at::Tensor cur_valid = valid.narrow(2, 0, index.size(2) - 1);
    at::Tensor increasing =
        (index.narrow(2, 1, index.size(2) - 1) > index.narrow(2, 0, index.size(2) - 1)) | ~nxt_valid;
    at::Tensor no_gap = cur_valid | ~nxt_valid;  // a valid entry never follows a -1
    bool const ok = (ok_range.all() & increasing.all() & no_gap.all()).item<bool>();
    AKCB_CHECK(ok, "compact_tokens_: index must hold, per (b, h), strictly increasing values in [0, ", x.size(2),
               ") followed only by -1");
  }
  if (x.is_cuda()) {
#ifdef AKCB_WITH_CUDA
    cuda::compact_tokens_(x, index.contiguous());
    return;
#else
    AKCB_REQUIRE_CUDA("compact_tokens_");
#endif
  }
  cpu::compact_tokens_(x, index);
}

}  // namespace akcb::ops
