#pragma once
// Private: CUDA implementations behind akcb::ops (kernels/*_launch.cu). Inputs are validated by
// src/ops.cpp before these are called; each launcher sets the device guard, uses the current
// stream and checks the launch.

#include <ATen/core/Tensor.h>

#include <akcb/ops.hpp>

namespace akcb::cuda {

ops::QuantizedTokens quantize_per_token(at::Tensor const& x /*[..., D] float*/, QuantDtype q);
at::Tensor dequantize_per_token(at::Tensor const& data /*[..., D]*/, at::Tensor const& scale /*[...] fp32*/,
                                c10::ScalarType out_dtype);
void quantize_gather_into_(at::Tensor const& src /*[B,H,Ts,D]*/, at::Tensor const& index /*[B,H,M] i64*/,
                           at::Tensor& dst /*[B,H,Tm,D]*/, at::Tensor& dst_scale /*[B,H,Tm] f32*/, int64_t offset);
void compact_tokens_(at::Tensor& x /*[B,H,Tm,...]*/, at::Tensor const& index /*[B,H,K] i64*/);
ops::DenseKV gather_held_tokens(ops::HeldBlocks const& b, at::Tensor const& cols /*[B,H,T] i64, dense but for the row stride, or undefined*/);

}  // namespace akcb::cuda
