#pragma once
// Materialization of a layer's held tokens in one pass (include/akcb/ops.hpp, gather_held_tokens):
//   out[kv][bh, j, :] = dequantize(quant[kv][bh, s, :], scale[kv][bh, s])   if s <  used_q
//                     = orig[kv][bh, s - used_q, :]                          otherwise
//   pos[bh, j]        = pos_quant[bh, s] or pos_orig[bh, s - used_q]
// with s = cols[bh, j] (or j without cols; rows of cols may be strided), for kv in {K, V}.
// Dequantization as dequantize_per_token: q * scale in fp32, rounded to nearest even (decode_vec
// of quant.cuh).
// Torch-free; the launcher is held_launch.cu.

#include <cstdint>

#include "common.cuh"
#include "quant.cuh"

namespace akcb::kernels {

struct GatherHeldParams {
  void const* orig[2];         // [n_bh, cap_o, D] T: K, V
  uint8_t const* quant[2];     // [n_bh, cap_q, D] 1-byte codes: K, V
  float const* scale[2];       // [n_bh, cap_q]
  int32_t const* pos_orig;     // [n_bh, cap_o]
  int32_t const* pos_quant;    // [n_bh, cap_q]
  int64_t const* cols;         // [n_bh, T] combined slots, row bh at bh * cols_stride; or null (slot = j)
  void* out[2];                // [n_bh, T, D] T
  int32_t* out_pos;            // [n_bh, T]
  int64_t n_bh, T, D, cap_o, cap_q, used_q;
  int64_t cols_stride;         // >= T
  FastDivmod vecs_per_row;     // D / kVec
  FastDivmod cols_per_bh;      // T
  uint32_t n_vecs;             // n_bh * T * D / kVec (< 2^31)
};

constexpr int kHeldThreads = 256;

// grid: (<= 8 per SM, 2): y = 0 for K (and positions), 1 for V; block: 256, grid-stride over the
// kVec-element vectors of the output rows.
template <typename T, typename Q, int kVec>
__global__ void __launch_bounds__(kHeldThreads) gather_held_kernel(GatherHeldParams p) {
  int const kv = blockIdx.y;
  T const* const orig = static_cast<T const*>(p.orig[kv]);
  uint8_t const* const quant = p.quant[kv];
  float const* const scale = p.scale[kv];
  T* const out = static_cast<T*>(p.out[kv]);
  int const vecs = static_cast<int>(p.vecs_per_row.d);
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n_vecs; i += gridDim.x * blockDim.x) {
    uint32_t const row = p.vecs_per_row.div(i);             // bh * T + j
    int64_t const col = static_cast<int64_t>(i - row * vecs) * kVec;
    uint32_t const bh = p.cols_per_bh.div(row);
    int64_t const j = row - static_cast<int64_t>(bh) * p.T;
    int64_t const s = p.cols ? p.cols[static_cast<int64_t>(bh) * p.cols_stride + j] : j;
    T* const dst = out + static_cast<int64_t>(row) * p.D + col;
    if (s < p.used_q) {
      int64_t const src = static_cast<int64_t>(bh) * p.cap_q + s;
      byte_vec_t<kVec> const raw = *reinterpret_cast<byte_vec_t<kVec> const*>(quant + src * p.D + col);
      store_packed<T, kVec>(dst, detail::decode_vec<T, Q, kVec>(raw, scale[src]));
      if (kv == 0 && col == 0) p.out_pos[row] = p.pos_quant[src];
    } else {
      int64_t const src = static_cast<int64_t>(bh) * p.cap_o + (s - p.used_q);
      using V = byte_vec_t<kVec * sizeof(T)>;
      *reinterpret_cast<V*>(dst) = *reinterpret_cast<V const*>(orig + src * p.D + col);
      if (kv == 0 && col == 0) p.out_pos[row] = p.pos_orig[src];
    }
  }
}

/// Launches gather_held_kernel<T, Q, kVec>; p.vecs_per_row, p.cols_per_bh and p.n_vecs are set
/// here. Requires D % kVec == 0 and n_bh * T * D / kVec < 2^31 (the launcher checks both).
template <typename T, typename Q, int kVec>
cudaError_t launch_gather_held(GatherHeldParams p, int n_sm, cudaStream_t stream) {
  int64_t const n = p.n_bh * p.T * (p.D / kVec);
  if (n == 0) return cudaSuccess;
  p.vecs_per_row = FastDivmod(static_cast<uint32_t>(p.D / kVec));
  p.cols_per_bh = FastDivmod(static_cast<uint32_t>(p.T));
  p.n_vecs = static_cast<uint32_t>(n);
  int64_t const blocks = ceil_div<int64_t>(n, kHeldThreads);
  int64_t const cap = static_cast<int64_t>(n_sm) * 8;
  dim3 const grid(static_cast<unsigned>(blocks < cap ? blocks : cap), 2);
  gather_held_kernel<T, Q, kVec><<<grid, kHeldThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace akcb::kernels
