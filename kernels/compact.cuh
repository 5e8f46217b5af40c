#pragma once
// In-place compaction of token rows (include/akcb/ops.hpp, compact_tokens_):
//   x[bh, i] = x[bh, index[bh, i]]  for i < K,   rows with index -1 zero-filled,
// where, per bh = (b, h), the valid indices are strictly increasing and precede the -1 entries,
// so index[bh, i] >= i. Rows are raw bytes (any dtype, any trailing dims). Torch-free; the
// torch-facing launcher is compact_launch.cu.
//
// Scheme (no full-size temporary): destinations [0, K) of each bh are cut into chunks of S rows
// that fit in the registers of one CTA (S * row_bytes = 256 threads x kVecs x W bytes). A CTA
// takes a ticket t = atomicAdd(counter) and works on chunk cc = t / n_bh of bh = t % n_bh, so
// within one bh chunks are taken in increasing order.
//   1. read:   load the chunk's source rows (index[bh, i] for its i) into registers;
//   2. wait:   for every lower chunk c' < cc of the bh whose reads may reach this chunk's
//              destination rows [cc*S, cc*S + S): c' reads rows up to last(c') =
//              index[bh, (c'+1)*S - 1] (sorted; a -1 there is treated as "anything"), so only
//              chunks with last(c') >= cc*S are waited for (read_done[bh, c'] set). A per-bh
//              watermark skips chunks already known to have read. The polling overlaps the
//              chunk's own loads.
//   3. signal: fence (the loads have completed), barrier, then set read_done[bh, cc] and raise
//              the watermark to the lowest chunk not seen read (cc + 1 when all were);
//   4. write:  store the rows to their destinations (zeros for -1; rows with index == i are
//              left untouched: neither read nor written).
// With 25% eviction, chunk cc's rows are read by chunks ~0.75 cc .. cc, so the hand-off is not a
// chain through every lower chunk (as it was when each chunk waited for all of them): a chunk
// waits only for the few in-flight chunks that really read its destinations.
// Why this is race-free:
//  - Reads of chunk cc are never overwritten by a lower chunk: chunk cc reads rows
//    index[i] >= i >= cc*S, while a chunk c' < cc writes only rows < cc*S.
//  - Reads of chunk cc may be overwritten by a higher chunk c'' > cc, and writes of cc may
//    clobber rows that lower chunks read; a write to row j in [cc*S, cc*S + S) conflicts only
//    with a reader chunk c' < cc of row j, which has last(c') >= j >= cc*S and is therefore
//    waited for (step 2, before the barrier of step 3). Each flag is published with release
//    semantics after the reads (per-thread fence, barrier, fence, st.release / atomicMax) and
//    observed with ld.acquire before the barrier that precedes the writes.
//  - The watermark only claims chunks seen read: chunks below it are never polled again.
//  - Inside a chunk, every read happens before the __syncthreads() that precedes any write.
//  - Different bh touch disjoint memory; destinations of different chunks are disjoint.
// Deadlock freedom: a CTA waits only for chunks with lower tickets, which were taken by CTAs that
// were already running (tickets are handed out at run time, not by blockIdx), and those never
// wait for higher tickets (nor for anything before their own reads); so the lowest unfinished
// ticket always makes progress.
//
// Cost per 16-byte vector: one fast division (vector -> row, column; FastDivmod), one shared
// load of the row's source index, the load and the store. The previous version divided 64-bit
// integers per vector (~25 instructions, twice), waited for its own reads before polling, and
// waited for every lower chunk.
//
// Rows larger than one CTA's register tile (row_bytes > 256 * kVecs * W) use a fallback: one CTA
// per bh walks the rows in order, copying each row in pieces, with a barrier between rows
// (row index[i] != i is never written before row i is finished, and row i is read only by
// earlier iterations, which the barrier orders before it is written).

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common.cuh"

namespace akcb::kernels {

struct CompactParams {
  uint8_t* x;              // [n_bh, T_max, row_bytes] raw bytes, contiguous
  int64_t const* index;    // [n_bh, K] int64, contiguous
  int64_t n_bh, T_max, K, row_bytes;
  int64_t rows_per_chunk;  // S
  int64_t chunks_per_bh;   // ceil(K / S)
  FastDivmod vecs_per_row; // row_bytes / W
  int* sync;               // [1 + n_bh + n_bh * chunks_per_bh] int32, zeroed: ticket, watermarks, read_done
};

constexpr int kCompactThreads = 256;
constexpr int kCompactVecs = 8;  // vectors of W bytes per thread held in registers (default)

namespace detail {

__device__ __forceinline__ int ld_acquire(int const* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release(int* p, int v) {
  asm volatile("st.release.gpu.global.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/// Where vector k of thread tid lies in a chunk: row inside the chunk, W-byte column, and the
/// row's source (-1: zero-fill; == the destination row: untouched). valid == false past the end.
struct ChunkVec {
  bool valid;
  int row;
  int col;
  int64_t src;
};

__device__ __forceinline__ ChunkVec chunk_vec(int v, int n_vecs, FastDivmod const& vpr, int const* s_src) {
  ChunkVec c;
  c.valid = v < n_vecs;
  c.row = static_cast<int>(vpr.div(static_cast<uint32_t>(v)));
  c.col = v - c.row * static_cast<int>(vpr.d);
  c.src = c.valid ? s_src[c.row] : 0;
  return c;
}

/// Step 2 for chunk cc of bh (all threads of the CTA; see the scheme above). Chunks polled and
/// found unread but not conflicting lower `*s_first_unset` (shared, INT_MAX before the call).
__device__ __forceinline__ void wait_for_readers(CompactParams const& p, int64_t bh, int64_t cc, int* s_first_unset) {
  if (cc == 0) return;
  int const* const watermark = p.sync + 1 + bh;
  int const* const read_done = p.sync + 1 + p.n_bh + bh * p.chunks_per_bh;
  int64_t const* const index = p.index + bh * p.K;
  int64_t const first_dst = cc * p.rows_per_chunk;
  // Thread j polls the chunks c = j (mod 256) at or above the watermark it read itself: each
  // thread may read a different (monotonic) watermark, and every chunk still has one owner.
  int64_t const wm = ld_acquire(watermark);
  int64_t const first = wm + (static_cast<int64_t>(threadIdx.x) - wm % kCompactThreads + kCompactThreads) % kCompactThreads;
  for (int64_t c = first; c < cc; c += kCompactThreads) {
    if (ld_acquire(read_done + c) != 0) continue;
    int64_t const last = index[(c + 1) * p.rows_per_chunk - 1];  // (c + 1) * S <= cc * S <= K
    if (last >= 0 && last < first_dst) {  // reads only rows below this chunk's destinations
      atomicMin(s_first_unset, static_cast<int>(c));
      continue;
    }
    while (ld_acquire(read_done + c) == 0) __nanosleep(64);
  }
}

/// Step 3 by thread 0, after every thread's fence and a barrier: publish this chunk's reads and
/// raise the watermark to the lowest chunk not known to have read.
__device__ __forceinline__ void publish_read(CompactParams const& p, int64_t bh, int64_t cc, int first_unset) {
  int* const watermark = p.sync + 1 + bh;
  int* const read_done = p.sync + 1 + p.n_bh + bh * p.chunks_per_bh;
  __threadfence();  // cumulative over the CTA's reads (ordered before it by the barrier)
  st_release(read_done + cc, 1);
  atomicMax(watermark, first_unset == INT_MAX ? static_cast<int>(cc + 1) : first_unset);
}

}  // namespace detail

// grid: (n_bh * chunks_per_bh), block: 256 -- one chunk of S destination rows per CTA (by ticket)
template <int W, int kVecs = kCompactVecs>
__global__ void __launch_bounds__(kCompactThreads) compact_tokens_kernel(CompactParams p) {
  using V = byte_vec_t<W>;
  __shared__ int s_src[kCompactThreads * kVecs];  // S <= 256 * kVecs (W <= row_bytes)
  __shared__ int s_ticket;
  __shared__ int s_first_unset;
  int const tid = threadIdx.x;
  if (tid == 0) {
    s_ticket = atomicAdd(p.sync, 1);
    s_first_unset = INT_MAX;
  }
  __syncthreads();
  int64_t const t = s_ticket;
  int64_t const cc = t / p.n_bh, bh = t - cc * p.n_bh;
  int64_t const i0 = cc * p.rows_per_chunk;
  int const n_rows = static_cast<int>(min(p.rows_per_chunk, p.K - i0));
  int64_t const* const index = p.index + bh * p.K + i0;
  for (int r = tid; r < n_rows; r += kCompactThreads) {
    int64_t const src = index[r];
    s_src[r] = src == i0 + r ? INT_MIN : static_cast<int>(src);  // INT_MIN: row stays where it is
  }
  __syncthreads();

  int const n_vecs = n_rows * static_cast<int>(p.vecs_per_row.d);
  uint8_t* const base = p.x + bh * p.T_max * p.row_bytes;

  // 1. read
  V regs[kVecs];
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    detail::ChunkVec const c = detail::chunk_vec(tid + k * kCompactThreads, n_vecs, p.vecs_per_row, s_src);
    if (c.valid && c.src >= 0) regs[k] = reinterpret_cast<V const*>(base + c.src * p.row_bytes)[c.col];
  }
  // 2. wait for the lower chunks that read this chunk's destinations (overlaps the loads above).
  detail::wait_for_readers(p, bh, cc, &s_first_unset);
  // 3. signal: this chunk's reads are done.
  __threadfence();
  __syncthreads();
  if (tid == 0) detail::publish_read(p, bh, cc, s_first_unset);
  // 4. write
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    detail::ChunkVec const c = detail::chunk_vec(tid + k * kCompactThreads, n_vecs, p.vecs_per_row, s_src);
    if (c.valid && c.src != INT_MIN) {
      V* const dst = reinterpret_cast<V*>(base + (i0 + c.row) * p.row_bytes) + c.col;
      if (c.src < 0) {
        V zero;
        memset(&zero, 0, sizeof(zero));
        *dst = zero;
      } else {
        *dst = regs[k];
      }
    }
  }
}

// grid: (<= resident CTAs), block: 256 -- persistent variant: each CTA loops over tickets, and
// fetches its next ticket and that chunk's source indices while the current chunk is in flight
// (the chain atomic -> index load -> row load is paid once per CTA instead of once per chunk).
// Holding the next ticket early keeps deadlock freedom: the lowest chunk not yet read is either
// being read (reads never wait) or is the next ticket of a CTA whose current, lower chunk waits
// only for chunks below it, all read.
template <int W, int kVecs = kCompactVecs>
__global__ void __launch_bounds__(kCompactThreads) compact_tokens_persistent_kernel(CompactParams p) {
  using V = byte_vec_t<W>;
  __shared__ int s_src[2][kCompactThreads * kVecs];
  __shared__ int s_ticket[2];
  __shared__ int s_first_unset;
  int const tid = threadIdx.x;
  int64_t const n_chunks = p.n_bh * p.chunks_per_bh;
  auto load_index = [&](int64_t t, int* dst) {
    int64_t const cc = t / p.n_bh, bh = t - cc * p.n_bh;
    int64_t const i0 = cc * p.rows_per_chunk;
    int const n_rows = static_cast<int>(min(p.rows_per_chunk, p.K - i0));
    int64_t const* const index = p.index + bh * p.K + i0;
    for (int r = tid; r < n_rows; r += kCompactThreads) {
      int64_t const src = index[r];
      dst[r] = src == i0 + r ? INT_MIN : static_cast<int>(src);
    }
  };
  if (tid == 0) {
    s_ticket[0] = atomicAdd(p.sync, 1);
    s_first_unset = INT_MAX;
  }
  __syncthreads();
  int64_t t = s_ticket[0];
  if (t < n_chunks) load_index(t, s_src[0]);
  __syncthreads();
  int buf = 0;
  while (t < n_chunks) {
    int64_t const cc = t / p.n_bh, bh = t - cc * p.n_bh;
    int64_t const i0 = cc * p.rows_per_chunk;
    int const n_rows = static_cast<int>(min(p.rows_per_chunk, p.K - i0));
    int const n_vecs = n_rows * static_cast<int>(p.vecs_per_row.d);
    uint8_t* const base = p.x + bh * p.T_max * p.row_bytes;
    int const* const src_rows = s_src[buf];
    // 1. read (and take the next ticket)
    V regs[kVecs];
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      detail::ChunkVec const c = detail::chunk_vec(tid + k * kCompactThreads, n_vecs, p.vecs_per_row, src_rows);
      if (c.valid && c.src >= 0) regs[k] = reinterpret_cast<V const*>(base + c.src * p.row_bytes)[c.col];
    }
    if (tid == 0) s_ticket[buf ^ 1] = atomicAdd(p.sync, 1);
    // 2. wait for the lower chunks that read this chunk's destinations
    detail::wait_for_readers(p, bh, cc, &s_first_unset);
    // 3. signal
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      detail::publish_read(p, bh, cc, s_first_unset);
      s_first_unset = INT_MAX;  // for the next chunk (polled only after the barrier below)
    }
    int64_t const t_next = s_ticket[buf ^ 1];
    if (t_next < n_chunks) load_index(t_next, s_src[buf ^ 1]);  // overlaps the stores below
    // 4. write
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      detail::ChunkVec const c = detail::chunk_vec(tid + k * kCompactThreads, n_vecs, p.vecs_per_row, src_rows);
      if (c.valid && c.src != INT_MIN) {
        V* const dst = reinterpret_cast<V*>(base + (i0 + c.row) * p.row_bytes) + c.col;
        if (c.src < 0) {
          V zero;
          memset(&zero, 0, sizeof(zero));
          *dst = zero;
        } else {
          *dst = regs[k];
        }
      }
    }
    __syncthreads();  // the next chunk's indices are in shared memory; this buffer may be reused
    buf ^= 1;
    t = t_next;
  }
}

// grid: (n_bh), block: 256 -- fallback for rows larger than a CTA's register tile
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

/// Rows per chunk of the register-tiled kernel (0: the row-wise fallback), for vectors of w bytes.
inline int64_t compact_tokens_chunk_rows(int64_t T_max, int64_t row_bytes, int w, int vecs = kCompactVecs) {
  if (T_max >= INT_MAX) return 0;  // source rows are held as int32 in shared memory
  return static_cast<int64_t>(kCompactThreads) * vecs * w / row_bytes;
}

/// Workspace (int32 elements, to be zeroed) needed by launch_compact_tokens for these sizes.
inline int64_t compact_tokens_workspace(int64_t n_bh, int64_t T_max, int64_t K, int64_t row_bytes, int w,
                                        int vecs = kCompactVecs) {
  int64_t const cap_rows = compact_tokens_chunk_rows(T_max, row_bytes, w, vecs);
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

/// Launches the compaction with kVecs vectors per thread. `p.sync` must point to
/// compact_tokens_workspace(..., kVecs) zeroed int32s (may be null when that is 0);
/// rows_per_chunk / chunks_per_bh / vecs_per_row are set here.
template <int kVecs = kCompactVecs, bool kPersistent = false>
cudaError_t launch_compact_tokens(CompactParams p, int w, cudaStream_t stream) {
  if (p.n_bh == 0 || p.K == 0 || p.row_bytes == 0) return cudaSuccess;
  int64_t const cap_rows = compact_tokens_chunk_rows(p.T_max, p.row_bytes, w, kVecs);
  auto launch = [&](auto wc) -> cudaError_t {
    constexpr int kW = decltype(wc)::value;
    if (cap_rows == 0) {
      if (p.n_bh > 0x7fffffff) return cudaErrorInvalidConfiguration;
      compact_tokens_rowwise_kernel<kW><<<static_cast<unsigned>(p.n_bh), kCompactThreads, 0, stream>>>(p);
    } else {
      p.rows_per_chunk = cap_rows;
      p.chunks_per_bh = ceil_div<int64_t>(p.K, cap_rows);
      p.vecs_per_row = FastDivmod(static_cast<uint32_t>(p.row_bytes / kW));
      int64_t const grid = p.n_bh * p.chunks_per_bh;
      if (grid > 0x7fffffff || p.sync == nullptr) return cudaErrorInvalidConfiguration;
      if constexpr (kPersistent) {
        int device = 0, n_sm = 0, per_sm = 0;
        if (cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, compact_tokens_persistent_kernel<kW, kVecs>,
                                                          kCompactThreads, 0) != cudaSuccess) {
          return cudaGetLastError();
        }
        int64_t const resident = std::max<int64_t>(1, static_cast<int64_t>(n_sm) * per_sm);
        compact_tokens_persistent_kernel<kW, kVecs>
            <<<static_cast<unsigned>(std::min(grid, resident)), kCompactThreads, 0, stream>>>(p);
      } else {
        compact_tokens_kernel<kW, kVecs><<<static_cast<unsigned>(grid), kCompactThreads, 0, stream>>>(p);
      }
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
