// Torch-facing launcher of the held-token materialization (kernels/held.cuh). Inputs were validated
// by src/ops.cpp (shapes, dtypes, devices, contiguity, used <= capacity; cols dense but for its
// row stride).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

#include "dispatch.hpp"
#include "held.cuh"
#include "ops_cuda.hpp"

namespace akcb::cuda {

ops::DenseKV gather_held_tokens(ops::HeldBlocks const& b, at::Tensor const& cols) {
  c10::cuda::CUDAGuard const guard(b.k_orig.device());
  int64_t const B = b.k_orig.size(0), H = b.k_orig.size(1), D = b.k_orig.size(3);
  int64_t const T = cols.defined() ? cols.size(2) : b.used_quant + b.used_orig;
  auto const opts = b.k_orig.options();
  ops::DenseKV d{at::empty({B, H, T, D}, opts), at::empty({B, H, T, D}, opts),
                 at::empty({B, H, T}, opts.dtype(at::kInt))};
  if (d.k.numel() == 0) return d;
  kernels::GatherHeldParams p{};
  p.orig[0] = b.k_orig.data_ptr();
  p.orig[1] = b.v_orig.data_ptr();
  p.quant[0] = static_cast<uint8_t const*>(b.k_quant.data_ptr());
  p.quant[1] = static_cast<uint8_t const*>(b.v_quant.data_ptr());
  p.scale[0] = b.k_scale.data_ptr<float>();
  p.scale[1] = b.v_scale.data_ptr<float>();
  p.pos_orig = b.pos_orig.data_ptr<int32_t>();
  p.pos_quant = b.pos_quant.data_ptr<int32_t>();
  p.cols = cols.defined() ? cols.data_ptr<int64_t>() : nullptr;
  p.cols_stride = cols.defined() ? cols.stride(1) : 0;
  p.out[0] = d.k.data_ptr();
  p.out[1] = d.v.data_ptr();
  p.out_pos = d.pos.data_ptr<int32_t>();
  p.n_bh = B * H;
  p.T = T;
  p.D = D;
  p.cap_o = b.k_orig.size(2);
  p.cap_q = b.k_quant.size(2);
  p.used_q = b.used_quant;
  int const n_sm = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  cudaStream_t const stream = at::cuda::getCurrentCUDAStream();
  AKCB_DISPATCH_FLOAT_TYPES(b.k_orig.scalar_type(), "gather_held_tokens", [&] {
    using Tc = detail::cuda_type_t<scalar_t>;
    detail::dispatch_quant(b.k_quant.scalar_type(), "gather_held_tokens", [&](auto qt) {
      using Q = decltype(qt);
      // 16-byte vectors of the model dtype when the rows and the base pointers allow it (the
      // blocks of a LayerCache always do; a caller's views at odd offsets may not), else one
      // element at a time.
      constexpr int kWide = 16 / static_cast<int>(sizeof(Tc));
      auto aligned = [](void const* ptr, int bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; };
      bool const wide = D % kWide == 0 && aligned(p.orig[0], 16) && aligned(p.orig[1], 16) && aligned(p.out[0], 16) &&
                        aligned(p.out[1], 16) && aligned(p.quant[0], kWide) && aligned(p.quant[1], kWide);
      int64_t const n = B * H * T * (wide ? D / kWide : D);
      TORCH_CHECK(n < (int64_t{1} << 31), "gather_held_tokens: ", n, " vectors exceed the kernel's 32-bit indexing");
      C10_CUDA_CHECK(wide ? (kernels::launch_gather_held<Tc, Q, kWide>(p, n_sm, stream))
                          : (kernels::launch_gather_held<Tc, Q, 1>(p, n_sm, stream)));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return d;
}

}  // namespace akcb::cuda
