#pragma once
// In-place compaction of token rows (include/akcb/ops.hpp, compact_tokens_):
//   x[bh, i] = x[bh, index[bh, i]]  for i < K,   rows with index -1 zero-filled,
// where, per bh = (b, h), the valid indices are strictly increasing and precede the -1 entries,
// so index[bh, i] >= i. Rows are raw bytes (any dtype, any trailing dims). Torch-free; the
// torch-facing launcher is compact_launch.cu.
//
// Two schemes, both without a full-size temporary; the launcher picks the cluster scheme on
// sm_90+ (Hopper) and the ticket scheme before it (or when AKCB_COMPACT_KERNEL=ticket is set, for
// the tests and the benchmark, which run both).
//
// Cluster scheme (compact_tokens_cluster_kernel, sm_90+): one thread-block cluster of C CTAs
// (C <= 16) per bh, so no CTA ever waits on another cluster and the only synchronization is the
// hardware cluster barrier. Destinations [0, K) are cut into chunks of S rows (one register tile
// of a 512-thread CTA); in round r, CTA c of the cluster handles chunk r*C + c:
//   1. read the chunk's source rows into registers (the next round's indices are prefetched);
//   2. cluster barrier (barrier.cluster.arrive.release + wait.acquire): every CTA of the cluster
//      has finished this round's reads;
//   3. write the rows to their destinations.
// Why this is race-free: chunk q reads rows index[i] >= i >= q*S and writes rows [q*S, (q+1)*S).
//  - Writes of round r (rows < (r+1)*C*S) never touch rows read in a later round (>= (r+1)*C*S),
//    so the next round's reads need no barrier after this round's writes.
//  - Rows read in round r by chunks of that round are written (by a chunk of round r, or a later
//    one) only after the round-r barrier, which every CTA passes only after all its reads.
//  - Reads of earlier rounds precede, in each CTA's program order, that CTA's arrival at the
//    round-r barrier, so they too come before any round-r write.
//  - Different bh (clusters) touch disjoint memory.
// No workspace, no memset kernel, no inter-cluster waiting (so no deadlock whatever the
// scheduling). One cluster per bh leaves SMs idle when B * H_kv * C < the SM count (small batches
// of small models), where compaction is cheap anyway.
//
// Ticket scheme (compact_tokens_kernel, any architecture): destinations [0, K) of each bh are cut into chunks of S rows
// that fit in the registers of one CTA. A CTA takes a ticket t = atomicAdd(counter) and works on
// chunk cc = t / n_bh of bh = t % n_bh, so within one bh chunks are taken in increasing order.
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
// Rows larger than the register tile of the scheme (ticket: row_bytes > 256 * 8 * W; cluster:
// row_bytes > 512 * 16 * W) use a fallback: one CTA
// per bh walks the rows in order, copying each row in pieces, with a barrier between rows
// (row index[i] != i is never written before row i is finished, and row i is read only by
// earlier iterations, which the barrier orders before it is written).

#include <cstdint>
#include <cstdlib>
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
  int* sync;               // ticket scheme: [1 + n_bh + n_bh * chunks_per_bh] int32, zeroed: ticket,
                           // watermarks, read_done; unused by the cluster scheme
  int64_t cluster_size;    // cluster scheme: CTAs per cluster (= grid.x)
  FastDivmod vecs_per_row_div;  // cluster scheme: division by row_bytes / W
};

constexpr int kCompactThreads = 256;
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

}  // namespace detail

// grid: (n_bh * chunks_per_bh), block: 256 -- one chunk of S destination rows per CTA (by ticket)
template <int W, int kThreads = kCompactThreads, int kVecs = kCompactVecs>
__global__ void __launch_bounds__(kThreads) compact_tokens_kernel(CompactParams p) {
  using V = byte_vec_t<W>;
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

  int64_t const vecs_per_row = p.row_bytes / W;
  int64_t const n_vecs = n_rows * vecs_per_row;
  uint8_t* const base = p.x + bh * p.T_max * p.row_bytes;

  // 1. read
  V regs[kVecs];
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    int64_t const v = tid + static_cast<int64_t>(k) * kThreads;
    if (v < n_vecs) {
      int64_t const row = v / vecs_per_row, col = v - row * vecs_per_row;
      int64_t const src = s_src[row];
      if (src >= 0 && src != i0 + row) regs[k] = reinterpret_cast<V const*>(base + src * p.row_bytes)[col];
    }
  }
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
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    int64_t const v = tid + static_cast<int64_t>(k) * kThreads;
    if (v < n_vecs) {
      int64_t const row = v / vecs_per_row, col = v - row * vecs_per_row;
      int64_t const src = s_src[row];
      V* const dst = reinterpret_cast<V*>(base + (i0 + row) * p.row_bytes) + col;
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

// Cluster scheme: 512 threads x 16 vectors of W bytes = 128 KiB of rows in flight per CTA at
// W = 16 (one CTA per SM: up to 128 registers per thread, 64 of them for the tile).
constexpr int kClusterThreads = 512;
constexpr int kClusterVecs = 16;
constexpr int kClusterMaxRows = kClusterThreads * kClusterVecs;  // S <= this for any W <= row_bytes
constexpr int kMaxClusterSize = 16;                              // non-portable size, allowed on sm_90

// Dynamic shared memory of the cluster kernel: two buffers of source-row codes (this round's and
// the next round's, prefetched while this round's rows are in flight).
constexpr int kClusterSmemBytes = 2 * kClusterMaxRows * static_cast<int>(sizeof(int32_t));

// grid: (C, n_bh) with clusters of (C, 1, 1); block: kThreads; dynamic smem
// 2 * kThreads * kVecs * 4 bytes (kClusterSmemBytes for the defaults) -- see "Cluster scheme" above.
template <int W, int kThreads = kClusterThreads, int kVecs = kClusterVecs>
__global__ void __launch_bounds__(kThreads, 1) compact_tokens_cluster_kernel(CompactParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using V = byte_vec_t<W>;
  // Per destination row of a chunk: source row, -1 = hole (zero-fill), -2 = stays in place.
  extern __shared__ int32_t s_codes[];  // [2][(kThreads * kVecs)]
  int const tid = threadIdx.x;
  int64_t const C = p.cluster_size, S = p.rows_per_chunk, bh = blockIdx.y;
  int64_t const rounds = ceil_div<int64_t>(p.chunks_per_bh, C);
  uint8_t* const base = p.x + bh * p.T_max * p.row_bytes;
  int64_t const* const index = p.index + bh * p.K;
  int const vecs_per_row = static_cast<int>(p.vecs_per_row_div.d);

  auto rows_of = [&](int64_t chunk) -> int64_t {
    return chunk < p.chunks_per_bh ? (p.K - chunk * S < S ? p.K - chunk * S : S) : 0;
  };
  auto fill_codes = [&](int64_t chunk, int32_t* codes) {
    int64_t const i0 = chunk * S, n = rows_of(chunk);
#pragma unroll 4
    for (int64_t r = tid; r < n; r += kThreads) {
      int64_t const src = __ldg(reinterpret_cast<long long const*>(index + i0 + r));
      codes[r] = src < 0 ? -1 : (src == i0 + r ? -2 : static_cast<int32_t>(src));
    }
  };

  fill_codes(blockIdx.x, s_codes);
  for (int64_t round = 0; round < rounds; ++round) {
    int64_t const chunk = round * C + blockIdx.x;
    int64_t const i0 = chunk * S, n_rows = rows_of(chunk);
    int32_t const* const s_src = s_codes + (round & 1) * (kThreads * kVecs);
    int32_t* const s_next = s_codes + ((round + 1) & 1) * (kThreads * kVecs);
    // This round's codes are complete, and the previous round's writes (which read s_next as
    // their s_src) are finished with it.
    __syncthreads();

    // 1. read this chunk's moving rows
    int const n_vecs = static_cast<int>(n_rows) * vecs_per_row;
    V regs[kVecs];
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      int const v = tid + k * kThreads;
      if (v < n_vecs) {
        int const row = static_cast<int>(p.vecs_per_row_div.div(static_cast<uint32_t>(v)));
        int const col = v - row * vecs_per_row;
        int32_t const src = s_src[row];
        if (src >= 0) regs[k] = reinterpret_cast<V const*>(base + static_cast<int64_t>(src) * p.row_bytes)[col];
      }
    }
    // The next round's codes: index loads issued while this round's rows are in flight.
    if (round + 1 < rounds) fill_codes(chunk + C, s_next);
    // 2. every CTA of the cluster has read (release: this CTA's reads are performed before any
    //    CTA of the cluster passes the wait; acquire: writes below come after all of them).
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
    // 3. write
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      int const v = tid + k * kThreads;
      if (v < n_vecs) {
        int const row = static_cast<int>(p.vecs_per_row_div.div(static_cast<uint32_t>(v)));
        int const col = v - row * vecs_per_row;
        int32_t const src = s_src[row];
        V* const dst = reinterpret_cast<V*>(base + (i0 + row) * p.row_bytes) + col;
        if (src == -1) {
          V zero;
          memset(&zero, 0, sizeof(zero));
          *dst = zero;
        } else if (src >= 0) {
          *dst = regs[k];
        }
      }
    }
  }
#else
  __trap();  // never launched: the launcher checks that this kernel was compiled for sm_90+
#endif
}

enum class CompactScheme { kCluster, kTicket, kRowwise };

namespace detail {

/// Largest usable cluster size for compact_tokens_cluster_kernel<W> on the current device (0 when
/// the device or the compiled binary has no clusters). Queried once per W and process: assumes
/// every GPU the process uses is of one architecture.
template <int W>
int max_cluster_size() {
  static int const size = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major < 9) return 0;
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, compact_tokens_cluster_kernel<W>) != cudaSuccess || fa.binaryVersion < 90) return 0;
    if (cudaFuncSetAttribute(compact_tokens_cluster_kernel<W>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             kClusterSmemBytes) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    bool const nonportable = cudaFuncSetAttribute(compact_tokens_cluster_kernel<W>,
                                                  cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
    for (int c = nonportable ? kMaxClusterSize : 8; c >= 2; c /= 2) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(c, 1, 1);
      cfg.blockDim = dim3(kClusterThreads, 1, 1);
      cfg.dynamicSmemBytes = kClusterSmemBytes;
      cudaLaunchAttribute attr{};
      attr.id = cudaLaunchAttributeClusterDimension;
      attr.val.clusterDim.x = c;
      attr.val.clusterDim.y = 1;
      attr.val.clusterDim.z = 1;
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      int n = 0;
      if (cudaOccupancyMaxActiveClusters(&n, compact_tokens_cluster_kernel<W>, &cfg) == cudaSuccess && n > 0) return c;
    }
    cudaGetLastError();  // clear a failed query
    return 0;
  }();
  return size;
}

template <typename F>
decltype(auto) with_vector_width(int w, F&& f) {
  switch (w) {
    case 16: return f(std::integral_constant<int, 16>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 2: return f(std::integral_constant<int, 2>{});
    default: return f(std::integral_constant<int, 1>{});
  }
}

}  // namespace detail

/// Which kernel launch_compact_tokens runs for these sizes on the current device. The
/// environment variable AKCB_COMPACT_KERNEL=ticket forces the ticket scheme (tests, benchmark).
inline CompactScheme compact_tokens_scheme(int64_t n_bh, int64_t T_max, int64_t row_bytes, int w) {
  char const* force = std::getenv("AKCB_COMPACT_KERNEL");
  bool const ticket_forced = force != nullptr && std::strcmp(force, "ticket") == 0;
  bool const cluster_fits = n_bh <= 65535 && T_max < (int64_t{1} << 31) &&
                            static_cast<int64_t>(kClusterThreads) * kClusterVecs * w / row_bytes > 0;
  if (!ticket_forced && cluster_fits &&
      detail::with_vector_width(w, [](auto wc) { return detail::max_cluster_size<decltype(wc)::value>(); }) > 0)
    return CompactScheme::kCluster;
  if (static_cast<int64_t>(kCompactThreads) * kCompactVecs * w / row_bytes == 0) return CompactScheme::kRowwise;
  return CompactScheme::kTicket;
}

/// Workspace (int32 elements, to be zeroed) needed by launch_compact_tokens for these sizes
/// (0 unless the ticket scheme runs).
inline int64_t compact_tokens_workspace(int64_t n_bh, int64_t T_max, int64_t K, int64_t row_bytes, int w) {
  if (compact_tokens_scheme(n_bh, T_max, row_bytes, w) != CompactScheme::kTicket) return 0;
  int64_t const cap_rows = static_cast<int64_t>(kCompactThreads) * kCompactVecs * w / row_bytes;
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

/// Launches the compaction. For the ticket scheme `p.sync` must point to
/// compact_tokens_workspace(...) zeroed int32s; the scheme-specific fields are set here.
inline cudaError_t launch_compact_tokens(CompactParams p, int w, cudaStream_t stream) {
  if (p.n_bh == 0 || p.K == 0 || p.row_bytes == 0) return cudaSuccess;
  if (w != 16 && w != 8 && w != 4 && w != 2 && w != 1) return cudaErrorInvalidValue;
  CompactScheme const scheme = compact_tokens_scheme(p.n_bh, p.T_max, p.row_bytes, w);
  return detail::with_vector_width(w, [&](auto wc) -> cudaError_t {
    constexpr int kW = decltype(wc)::value;
    switch (scheme) {
      case CompactScheme::kRowwise:
        if (p.n_bh > 0x7fffffff) return cudaErrorInvalidConfiguration;
        compact_tokens_rowwise_kernel<kW><<<static_cast<unsigned>(p.n_bh), kCompactThreads, 0, stream>>>(p);
        break;
      case CompactScheme::kCluster: {
        p.rows_per_chunk = static_cast<int64_t>(kClusterThreads) * kClusterVecs * kW / p.row_bytes;
        p.chunks_per_bh = ceil_div<int64_t>(p.K, p.rows_per_chunk);
        int const c_max = detail::max_cluster_size<kW>();
        p.cluster_size = p.chunks_per_bh < c_max ? p.chunks_per_bh : c_max;
        p.vecs_per_row_div = FastDivmod(static_cast<uint32_t>(p.row_bytes / kW));
        cudaLaunchConfig_t cfg{};
        cfg.gridDim = dim3(static_cast<unsigned>(p.cluster_size), static_cast<unsigned>(p.n_bh), 1);
        cfg.blockDim = dim3(kClusterThreads, 1, 1);
        cfg.dynamicSmemBytes = kClusterSmemBytes;
        cfg.stream = stream;
        cudaLaunchAttribute attr{};
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = static_cast<unsigned>(p.cluster_size);
        attr.val.clusterDim.y = 1;
        attr.val.clusterDim.z = 1;
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
        cudaError_t const e = cudaLaunchKernelEx(&cfg, compact_tokens_cluster_kernel<kW>, p);
        if (e != cudaSuccess) return e;
        break;
      }
      case CompactScheme::kTicket: {
        p.rows_per_chunk = static_cast<int64_t>(kCompactThreads) * kCompactVecs * kW / p.row_bytes;
        p.chunks_per_bh = ceil_div<int64_t>(p.K, p.rows_per_chunk);
        int64_t const grid = p.n_bh * p.chunks_per_bh;
        if (grid > 0x7fffffff || p.sync == nullptr) return cudaErrorInvalidConfiguration;
        compact_tokens_kernel<kW><<<static_cast<unsigned>(grid), kCompactThreads, 0, stream>>>(p);
        break;
      }
    }
    return cudaGetLastError();
  });
}

}  // namespace akcb::kernels
