#pragma once
// In-place compaction of token rows (include/akcb/ops.hpp, compact_tokens_):
//   x[bh, i] = x[bh, index[bh, i]]  for i < K,   rows with index -1 zero-filled,
// where, per bh = (b, h), the valid indices are strictly increasing and precede the -1 entries,
// so index[bh, i] >= i. Rows are raw bytes (any dtype, any trailing dims). Torch-free; the
// torch-facing launcher is compact_launch.cu.
//
// Scheme (no full-size temporary; compact_tokens_kernel): destinations [0, K) of each bh are cut
// into chunks of S rows that fit in the registers of one CTA. A CTA takes a ticket
// t = atomicAdd(counter) and works on chunk cc = t / n_bh of bh = t % n_bh, so within one bh
// chunks are taken in increasing order.
//   1. read:   load the chunk's source rows (index[bh, i] for its i) into registers;
//   2. signal: fence, then set read_done[bh, cc];
//   3. wait:   until read_done[bh, c'] is set for every c' < cc (a per-bh watermark skips
//              chunks already known done);
//   4. write:  store the rows to their destinations (zeros for -1; rows with index == i are
//              left untouched: neither read nor written).
// Why this is race-free:
//  - Reads of chunk cc are never overwritten by a lower chunk: chunk cc reads rows
//    index[i] >= i >= cc*S, while a chunk c' < cc writes only rows < cc*S.
//  - Reads of chunk cc may be overwritten by a higher chunk c'' > cc (and writes of cc may
//    clobber rows that lower chunks read), but every chunk writes only after all lower chunks
//    of its bh have finished reading (step 3), and the flag is published with release semantics
//    after the reads (fence + st.release) and observed with ld.acquire before the barrier
//    that precedes the writes.
//  - Inside a chunk, every read happens before the __syncthreads() that precedes any write.
//  - Different bh touch disjoint memory; destinations of different chunks are disjoint.
// Deadlock freedom: a CTA waits only for chunks with lower tickets, which were taken by CTAs that
// were already running (tickets are handed out at run time, not by blockIdx), and those never
// wait for higher tickets; so the lowest unfinished ticket always makes progress.
//
// Tried and measured slower on the H200 (kernels/tuning/sweep_compact.cu, docs/BENCHMARKS.md): one
// thread-block cluster per bh synchronized by the hardware cluster barrier between each round's
// reads and writes (no workspace; 0.59-0.67 of memcpy at 32k: only 7 clusters of 16 CTAs fit at
// once, and a round waits for its slowest CTA), and a software-pipelined variant of it (0.50-0.57).
//
// Rows larger than the register tile (row_bytes > kCompactThreads * kCompactVecs * W) use a
// fallback: one CTA per bh walks the rows in order, copying each row in pieces, with a barrier between rows
// (row index[i] != i is never written before row i is finished, and row i is read only by
// earlier iterations, which the barrier orders before it is written).

#include <cstdint>
#include <type_traits>

#include "common.cuh"

namespace akcb::kernels {

struct CompactParams {
  uint8_t* x;              // [n_bh, T_max, row_bytes] raw bytes, contiguous
  int64_t const* index;    // [n_bh, K] int64, contiguous
  int64_t n_bh, T_max, K, row_bytes;
  int64_t rows_per_chunk;  // S
  int64_t chunks_per_bh;   // ceil(K / S)
  int* sync;               // [1 + n_bh + n_bh * chunks_per_bh] int32, zeroed: ticket, watermarks, read_done
  FastDivmod vecs_per_row_div;  // division by row_bytes / W
};

// 512 threads x 8 vectors of W bytes: 64 KiB of rows per CTA at W = 16. Swept on the H200
// (docs/gpu/sweep_compact_*.md): 512x8 0.756 of memcpy at 32k, 256x8 0.736, 256x16 0.751.
constexpr int kCompactThreads = 512;
constexpr int kCompactVecs = 8;  // vectors of W bytes per thread held in registers
constexpr int kCompactMaxRows = kCompactThreads * kCompactVecs;  // S <= this for any W <= row_bytes

namespace detail {

__device__ __forceinline__ int ld_acquire(int const* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release(int* p, int v) {
  asm volatile("st.release.gpu.global.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/// Step "read" of a chunk of destination rows [i0, i0 + n_vecs / vecs_per_row) held in a register
/// tile of kThreads x kVecs vectors of W bytes: vector v < n_vecs of the chunk is column
/// v % vecs_per_row of its row v / vecs_per_row (one 32-bit multiply-high per division: a 64-bit
/// division is a ~70-instruction subroutine, and Nsight Compute on the H200 showed the kernel
/// issuing on 40% of cycles with two per vector). Row `row` receives source row src_of(row) of
/// `base`: loaded unless it is a hole (< 0) or already in place (== i0 + row).
/// (Written out in both steps rather than through a shared per-vector loop: with that loop nvcc
/// turned the load's condition into branches, here it stays one predicate.)
template <int W, int kThreads, int kVecs, typename SrcOf>
__device__ __forceinline__ void read_tile(uint8_t const* base, int64_t i0, int64_t row_bytes,
                                          FastDivmod const& vecs_per_row, int n_vecs, SrcOf const& src_of,
                                          byte_vec_t<W> (&regs)[kVecs]) {
  int const vpr = static_cast<int>(vecs_per_row.d);
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    int const v = static_cast<int>(threadIdx.x) + k * kThreads;
    if (v < n_vecs) {
      int const row = static_cast<int>(vecs_per_row.div(static_cast<uint32_t>(v)));
      int const col = v - row * vpr;
      int64_t const src = src_of(row);
      if (src >= 0 && src != i0 + row) regs[k] = reinterpret_cast<byte_vec_t<W> const*>(base + src * row_bytes)[col];
    }
  }
}

/// Step "write" of the same chunk: row i0 + row gets the tile's vectors, or zeros for a hole
/// (src_of(row) < 0); a row already in place is left alone.
template <int W, int kThreads, int kVecs, typename SrcOf>
__device__ __forceinline__ void write_tile(uint8_t* base, int64_t i0, int64_t row_bytes, FastDivmod const& vecs_per_row,
                                           int n_vecs, SrcOf const& src_of, byte_vec_t<W> const (&regs)[kVecs]) {
  using V = byte_vec_t<W>;
  int const vpr = static_cast<int>(vecs_per_row.d);
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    int const v = static_cast<int>(threadIdx.x) + k * kThreads;
    if (v < n_vecs) {
      int const row = static_cast<int>(vecs_per_row.div(static_cast<uint32_t>(v)));
      int const col = v - row * vpr;
      int64_t const src = src_of(row);
      V* const dst = reinterpret_cast<V*>(base + (i0 + row) * row_bytes) + col;
      if (src < 0) {
        V zero;
        memset(&zero, 0, sizeof(zero));
        *dst = zero;
      } else if (src != i0 + row) {
        *dst = regs[k];
      }
    }
  }
}

}  // namespace detail

// grid: (n_bh * chunks_per_bh), block: kThreads -- one chunk of S destination rows per CTA (by ticket)
template <int W, int kThreads = kCompactThreads, int kVecs = kCompactVecs>
__global__ void __launch_bounds__(kThreads) compact_tokens_kernel(CompactParams p) {
  __shared__ int64_t s_src[kThreads * kVecs];
  __shared__ int64_t s_chunk;
  __shared__ int s_watermark;
  int const tid = threadIdx.x;
  if (tid == 0) s_chunk = atomicAdd(p.sync, 1);
  __syncthreads();
  int64_t const t = s_chunk;
  int64_t const cc = t / p.n_bh, bh = t % p.n_bh;
  int64_t const i0 = cc * p.rows_per_chunk;
  int64_t const n_rows = min(p.rows_per_chunk, p.K - i0);
  for (int64_t r = tid; r < n_rows; r += kThreads) s_src[r] = p.index[bh * p.K + i0 + r];
  __syncthreads();

  int const n_vecs = static_cast<int>(n_rows) * static_cast<int>(p.vecs_per_row_div.d);
  uint8_t* const base = p.x + bh * p.T_max * p.row_bytes;
  auto const src_of = [&](int row) { return s_src[row]; };

  // 1. read
  byte_vec_t<W> regs[kVecs];
  detail::read_tile<W, kThreads, kVecs>(base, i0, p.row_bytes, p.vecs_per_row_div, n_vecs, src_of, regs);
  // 2. signal: this chunk's reads are done.
  __threadfence();
  __syncthreads();
  int* const watermark = p.sync + 1 + bh;
  int* const read_done = p.sync + 1 + p.n_bh + bh * p.chunks_per_bh;
  if (tid == 0) {
    detail::st_release(read_done + cc, 1);
    s_watermark = detail::ld_acquire(watermark);
  }
  __syncthreads();
  // 3. wait for every lower chunk of this bh to have read.
  if (cc > 0) {
    for (int64_t c = s_watermark + tid; c < cc; c += kThreads) {
      while (detail::ld_acquire(read_done + c) == 0) __nanosleep(64);
    }
    __syncthreads();
    if (tid == 0) {
      __threadfence();
      atomicMax(watermark, static_cast<int>(cc));
    }
  }
  // 4. write
  detail::write_tile<W, kThreads, kVecs>(base, i0, p.row_bytes, p.vecs_per_row_div, n_vecs, src_of, regs);
}

// grid: (n_bh), block: kCompactThreads -- fallback for rows larger than a CTA's register tile
template <int W>
__global__ void __launch_bounds__(kCompactThreads) compact_tokens_rowwise_kernel(CompactParams p) {
  using V = byte_vec_t<W>;
  int64_t const bh = blockIdx.x;
  int64_t const vecs_per_row = p.row_bytes / W;
  uint8_t* const base = p.x + bh * p.T_max * p.row_bytes;
  for (int64_t i = 0; i < p.K; ++i) {
    int64_t const src = p.index[bh * p.K + i];
    if (src != i) {
      V* const dst = reinterpret_cast<V*>(base + i * p.row_bytes);
      V const* const from = reinterpret_cast<V const*>(base + (src < 0 ? 0 : src) * p.row_bytes);
      for (int64_t v = threadIdx.x; v < vecs_per_row; v += kCompactThreads) {
        V val;
        if (src < 0) {
          memset(&val, 0, sizeof(val));
        } else {
          val = from[v];
        }
        dst[v] = val;
      }
    }
    __syncthreads();  // row i is complete (and row i's readers, all earlier, are done) before row i+1
  }
}

/// Workspace (int32 elements, to be zeroed) needed by launch_compact_tokens for these sizes (0 for
/// the row-wise fallback).
inline int64_t compact_tokens_workspace(int64_t n_bh, int64_t K, int64_t row_bytes, int w) {
  int64_t const cap_rows = static_cast<int64_t>(kCompactThreads) * kCompactVecs * w / row_bytes;
  if (cap_rows == 0) return 0;
  return 1 + n_bh + n_bh * ceil_div<int64_t>(K, cap_rows);
}

/// Widest vector (bytes) usable for rows of `row_bytes` starting at `x`.
inline int compact_tokens_vector_width(void const* x, int64_t row_bytes) {
  auto const addr = reinterpret_cast<uintptr_t>(x);
  for (int w = 16; w > 1; w /= 2) {
    if (row_bytes % w == 0 && addr % w == 0) return w;
  }
  return 1;
}

/// Launches the compaction. `p.sync` must point to compact_tokens_workspace(...) zeroed int32s
/// (may be null when that is 0); rows_per_chunk, chunks_per_bh and vecs_per_row_div are set here.
inline cudaError_t launch_compact_tokens(CompactParams p, int w, cudaStream_t stream) {
  if (p.n_bh == 0 || p.K == 0 || p.row_bytes == 0) return cudaSuccess;
  int64_t const cap_rows = static_cast<int64_t>(kCompactThreads) * kCompactVecs * w / p.row_bytes;
  auto launch = [&](auto wc) -> cudaError_t {
    constexpr int kW = decltype(wc)::value;
    if (cap_rows == 0) {
      if (p.n_bh > 0x7fffffff) return cudaErrorInvalidConfiguration;
      compact_tokens_rowwise_kernel<kW><<<static_cast<unsigned>(p.n_bh), kCompactThreads, 0, stream>>>(p);
    } else {
      p.rows_per_chunk = cap_rows;
      p.chunks_per_bh = ceil_div<int64_t>(p.K, cap_rows);
      p.vecs_per_row_div = FastDivmod(static_cast<uint32_t>(p.row_bytes / kW));  // < kCompactThreads * kCompactVecs
      int64_t const grid = p.n_bh * p.chunks_per_bh;
      if (grid > 0x7fffffff || p.sync == nullptr) return cudaErrorInvalidConfiguration;
      compact_tokens_kernel<kW><<<static_cast<unsigned>(grid), kCompactThreads, 0, stream>>>(p);
    }
    return cudaGetLastError();
  };
  switch (w) {
    case 16: return launch(std::integral_constant<int, 16>{});
    case 8: return launch(std::integral_constant<int, 8>{});
    case 4: return launch(std::integral_constant<int, 4>{});
    case 2: return launch(std::integral_constant<int, 2>{});
    case 1: return launch(std::integral_constant<int, 1>{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace akcb::kernels
