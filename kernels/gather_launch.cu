// Torch-facing launcher of the gather + quantize used to demote or append cache tokens
// (kernels/quant.cuh). Inputs were validated by src/ops.cpp; here: device guard, current stream,
// dtype dispatch, launch check.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "dispatch.hpp"
#include "ops_cuda.hpp"
#include "quant.cuh"

namespace akcb::cuda {

void quantize_gather_into_(at::Tensor const& src /*[B, H_kv, T_src, D] fp32|bf16|fp16, stride(3) == 1*/,
                           at::Tensor const& index /*[B, H_kv, M] int64, contiguous*/,
                           at::Tensor& dst /*[B, H_kv, T_max, D] fp8_e4m3fn|int8, contiguous*/,
                           at::Tensor& dst_scale /*[B, H_kv, T_max] fp32, contiguous*/, int64_t offset) {
  c10::cuda::CUDAGuard const guard(src.device());
  at::Tensor const idx = index.contiguous();
  kernels::QuantizeGatherParams p{};
  p.src = src.data_ptr();
  p.src_stride_b = src.stride(0);
  p.src_stride_h = src.stride(1);
  p.src_stride_t = src.stride(2);
  p.index = idx.data_ptr<int64_t>();
  p.dst = static_cast<uint8_t*>(dst.data_ptr());
  p.dst_scale = dst_scale.data_ptr<float>();
  p.H = src.size(1);
  p.M = idx.size(2);
  p.T_max = dst.size(2);
  p.offset = offset;
  p.D = src.size(3);
  p.n_rows = idx.numel();
  if (p.n_rows == 0) return;
  if (p.D == 0) {  // rows of nothing: only the scales
    dst_scale.narrow(2, offset, p.M).zero_();
    return;
  }
  cudaStream_t const stream = at::cuda::getCurrentCUDAStream();
  AKCB_DISPATCH_FLOAT_TYPES(src.scalar_type(), "quantize_gather_into_", [&] {
    using T = detail::cuda_type_t<scalar_t>;
    detail::dispatch_quant(dst.scalar_type(), "quantize_gather_into_", [&](auto qt) {
      C10_CUDA_CHECK((kernels::launch_quantize_gather<T, decltype(qt)>(p, stream)));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace akcb::cuda
