#pragma once
// Private: the CPU reference implementations behind akcb::ops. Inputs are already validated by
// src/ops.cpp. Written for clarity, not speed: they are the oracle of the CUDA tests.

#include <ATen/core/Tensor.h>

#include <akcb/ops.hpp>

namespace akcb::cpu {

ops::QuantizedTokens quantize_per_token(at::Tensor const& x /*[..., D] float*/, QuantDtype q);
at::Tensor dequantize_per_token(at::Tensor const& data /*[..., D]*/, at::Tensor const& scale /*[...] fp32*/,
                                c10::ScalarType out_dtype);
void quantize_gather_into_(at::Tensor const& src /*[B,H,Ts,D]*/, at::Tensor const& index /*[B,H,M] i64*/,
                           at::Tensor& dst /*[B,H,Tm,D]*/, at::Tensor& dst_scale /*[B,H,Tm] f32*/, int64_t offset);
void compact_tokens_(at::Tensor& x /*[B,H,Tm,...]*/, at::Tensor const& index /*[B,H,K] i64*/);
ops::DenseKV gather_held_tokens(ops::HeldBlocks const& b, at::Tensor const& cols /*[B,H,T] i64 or undefined*/);

}  // namespace akcb::cpu
