// Torch-facing launcher of per-token quantization (kernels/quant.cuh; dequantize_launch.cu and
// gather_launch.cu hold the other two, split so that they compile in parallel). Inputs were validated by
// src/ops.cpp; here: device guard, current stream, dtype dispatch, launch check.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <optional>

#include "dispatch.hpp"
#include "ops_cuda.hpp"
#include "quant.cuh"

namespace akcb::cuda {
namespace {

/// Row indexer over the leading dims of `x` (all but the last), merging dims that are
/// contiguous with each other and dropping size-1 dims. nullopt when more than
/// RowIndexer::kMaxLeadDims dims remain (the caller then makes x contiguous).
std::optional<kernels::RowIndexer> make_row_indexer(at::Tensor const& x) {
  kernels::RowIndexer r;
  int64_t sizes[64], strides[64];
  int n = 0;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) {
    if (x.size(d) == 1) continue;
    if (n > 0 && strides[n - 1] == x.stride(d) * x.size(d)) {  // merge with the outer dim
      sizes[n - 1] *= x.size(d);
      strides[n - 1] = x.stride(d);
    } else {
      sizes[n] = x.size(d);
      strides[n] = x.stride(d);
      ++n;
    }
  }
  if (n > kernels::RowIndexer::kMaxLeadDims) return std::nullopt;
  r.n_dims = n;
  for (int i = 0; i < n; ++i) {
    r.size[i] = sizes[i];
    r.stride[i] = strides[i];
  }
  return r;
}

}  // namespace

ops::QuantizedTokens quantize_per_token(at::Tensor const& x /*[..., D] fp32|bf16|fp16*/, QuantDtype q) {
  c10::cuda::CUDAGuard const guard(x.device());
  int64_t const D = x.size(-1);
  at::Tensor data = at::empty(x.sizes(), x.options().dtype(quant_scalar_type(q)));               // [..., D]
  at::Tensor scale = at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(at::kFloat));  // [...]
  if (x.numel() == 0) {
    if (scale.numel() > 0) scale.zero_();  // D == 0: empty rows have absmax 0
    return {data, scale};
  }
  at::Tensor xin = x.stride(-1) == 1 || D == 1 ? x : x.contiguous();
  std::optional<kernels::RowIndexer> rows = make_row_indexer(xin);
  if (!rows) {
    xin = xin.contiguous();
    rows = make_row_indexer(xin);
  }
  AKCB_ASSERT(rows.has_value(), "row indexer of a contiguous tensor");
  kernels::QuantizeParams p{};
  p.x = xin.data_ptr();
  p.rows = *rows;
  p.q = static_cast<uint8_t*>(data.data_ptr());
  p.scale = scale.data_ptr<float>();
  p.n_rows = scale.numel();
  p.D = D;
  cudaStream_t const stream = at::cuda::getCurrentCUDAStream();
  AKCB_DISPATCH_FLOAT_TYPES(xin.scalar_type(), "quantize_per_token", [&] {
    using T = detail::cuda_type_t<scalar_t>;
    detail::dispatch_quant(data.scalar_type(), "quantize_per_token", [&](auto qt) {
      C10_CUDA_CHECK((kernels::launch_quantize_per_token<T, decltype(qt)>(p, stream)));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {data, scale};
}

}  // namespace akcb::cuda
