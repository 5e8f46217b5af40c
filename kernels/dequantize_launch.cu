// Torch-facing launcher of per-token dequantization (kernels/quant.cuh). Inputs were validated by
// src/ops.cpp; here: device guard, current stream, dtype dispatch, launch check.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "dispatch.hpp"
#include "ops_cuda.hpp"
#include "quant.cuh"

namespace akcb::cuda {

at::Tensor dequantize_per_token(at::Tensor const& data /*[..., D] fp8_e4m3fn|int8*/, at::Tensor const& scale /*[...] fp32*/,
                                c10::ScalarType out_dtype) {
  c10::cuda::CUDAGuard const guard(data.device());
  at::Tensor out = at::empty(data.sizes(), data.options().dtype(out_dtype));  // [..., D]
  if (data.numel() == 0) return out;
  at::Tensor const q = data.contiguous();
  at::Tensor const s = scale.contiguous();
  kernels::DequantizeParams p{};
  p.q = static_cast<uint8_t const*>(q.data_ptr());
  p.scale = s.data_ptr<float>();
  p.out = out.data_ptr();
  p.n_rows = s.numel();
  p.D = data.size(-1);
  cudaStream_t const stream = at::cuda::getCurrentCUDAStream();
  AKCB_DISPATCH_FLOAT_TYPES(out_dtype, "dequantize_per_token", [&] {
    using T = detail::cuda_type_t<scalar_t>;
    detail::dispatch_quant(q.scalar_type(), "dequantize_per_token", [&](auto qt) {
      C10_CUDA_CHECK((kernels::launch_dequantize_per_token<T, decltype(qt)>(p, stream)));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace akcb::cuda
