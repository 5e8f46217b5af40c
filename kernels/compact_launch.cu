// Torch-facing launcher of the in-place compaction kernel (kernels/compact.cuh). Inputs were
// validated by src/ops.cpp (x contiguous, index [B, H_kv, K] int64, K <= T_max).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "compact.cuh"
#include "ops_cuda.hpp"

namespace akcb::cuda {

void compact_tokens_(at::Tensor& x /*[B, H_kv, T_max, ...] any dtype, contiguous*/,
                     at::Tensor const& index /*[B, H_kv, K] int64*/) {
  c10::cuda::CUDAGuard const guard(x.device());
  int64_t const n_bh = x.size(0) * x.size(1), T_max = x.size(2), K = index.size(2);
  if (x.numel() == 0 || K == 0) return;
  at::Tensor const idx = index.contiguous();
  kernels::CompactParams p{};
  p.x = static_cast<uint8_t*>(x.data_ptr());
  p.index = idx.data_ptr<int64_t>();
  p.n_bh = n_bh;
  p.T_max = T_max;
  p.K = K;
  p.row_bytes = x.numel() / (n_bh * T_max) * static_cast<int64_t>(x.element_size());
  int const w = kernels::compact_tokens_vector_width(p.x, p.row_bytes);
  // Tiny workspace (ticket, per-(b, h) watermark, one flag per chunk), zeroed on the stream.
  int64_t const ws = kernels::compact_tokens_workspace(n_bh, K, p.row_bytes, w);
  at::Tensor sync;
  if (ws > 0) {
    sync = at::zeros({ws}, x.options().dtype(at::kInt));
    p.sync = sync.data_ptr<int>();
  }
  cudaStream_t const stream = at::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(kernels::launch_compact_tokens(p, w, stream));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace akcb::cuda
