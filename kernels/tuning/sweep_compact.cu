// Launch-shape sweep of the in-place compaction kernels (kernels/compact.cuh; issue 6 tuning aid,
// not part of the library or its build). Torch-free: the benchmark's shape (one Llama-3-8B
// layer's K cache: B = 1, 8 KV heads, D = 128, bf16 rows of 256 bytes; keep 3T/4 sorted rows
// per head, T = 8k / 32k), CUDA events around 20 back-to-back calls, median of 15 batches,
// against cudaMemcpyAsync device-to-device of the same bytes (read + write). Every variant's
// output is checked byte for byte against a host compaction of the same input. The library's
// kernel is the ticket scheme (compact_tokens_kernel); the cluster candidates live here.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 --expt-relaxed-constexpr -I kernels kernels/tuning/sweep_compact.cu -o sweep_compact
//   ./sweep_compact > sweep_compact.md
//   ./sweep_compact profile     (one launch per candidate at 32k, for ncu)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../compact.cuh"
#include "sweep_common.cuh"

using namespace akcb::kernels;
using namespace akcb;


namespace {

// Candidate (was the library's sm_90 default at 02cadd8, measured slower): one thread-block
// cluster of C CTAs per bh; in round r, CTA c moves chunk r*C + c: read its rows into registers,
// hardware cluster barrier (arrive.release / wait.acquire), write. Race-free because chunk q reads
// rows >= q*S and writes [q*S, (q+1)*S): a round's writes never touch later rounds' sources, and
// every write of round r follows the round-r barrier, which follows every read of rounds <= r.
// Cluster scheme: 512 threads x 16 vectors of W bytes = 128 KiB of rows in flight per CTA at
// W = 16 (one CTA per SM: up to 128 registers per thread, 64 of them for the tile).
constexpr int kClusterThreads = 512;
constexpr int kClusterVecs = 16;
constexpr int kClusterMaxRows = kClusterThreads * kClusterVecs;  // S <= this for any W <= row_bytes

// Dynamic shared memory of the cluster kernel: two buffers of source-row codes (this round's and
// the next round's, prefetched while this round's rows are in flight).
constexpr int kClusterSmemBytes = 2 * kClusterMaxRows * static_cast<int>(sizeof(int32_t));

// grid: (C, n_bh) with clusters of (C, 1, 1); block: kThreads; dynamic smem
// 2 * kThreads * kVecs * 4 bytes (kClusterSmemBytes for the defaults) -- see "Cluster scheme" above.
template <int W, int kThreads = kClusterThreads, int kVecs = kClusterVecs>
__global__ void __launch_bounds__(kThreads, 1) compact_tokens_cluster_kernel(CompactParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using V = byte_vec_t<W>;
  // Per destination row of a chunk: its source row, -1 = hole (zero-fill).
  extern __shared__ int32_t s_codes[];  // [2][(kThreads * kVecs)]
  int const tid = threadIdx.x;
  int64_t const C = gridDim.x, S = p.rows_per_chunk, bh = blockIdx.y;  // grid.x = the cluster
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
      codes[r] = src < 0 ? -1 : static_cast<int32_t>(src);
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
    auto const src_of = [&](int row) { return static_cast<int64_t>(s_src[row]); };
    V regs[kVecs];
    detail::read_tile<W, kThreads, kVecs>(base, i0, p.row_bytes, p.vecs_per_row_div, n_vecs, src_of, regs);
    // The next round's codes: index loads issued while this round's rows are in flight.
    if (round + 1 < rounds) fill_codes(chunk + C, s_next);
    // 2. every CTA of the cluster has read (release: this CTA's reads are performed before any
    //    CTA of the cluster passes the wait; acquire: writes below come after all of them).
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
    // 3. write
    detail::write_tile<W, kThreads, kVecs>(base, i0, p.row_bytes, p.vecs_per_row_div, n_vecs, src_of, regs);
  }
#else
  __trap();  // built for sm_90 only
#endif
}


using tuning::time_ms;
constexpr int64_t kHeads = 8, kRowBytes = 256;


struct Problem {
  int64_t T, K;
  std::vector<uint8_t> x0, want;     // [H, T, 256] input and the compacted result
  std::vector<int64_t> index;        // [H, K]
  uint8_t* d_x = nullptr;
  int64_t* d_index = nullptr;
  int* d_sync = nullptr;
  int64_t bytes_moved() const { return kHeads * K * (8 + 2 * kRowBytes); }
};

Problem make_problem(int64_t T) {
  Problem pr;
  pr.T = T;
  pr.K = T * 3 / 4;
  std::mt19937_64 rng(T);
  pr.x0.resize(kHeads * T * kRowBytes);
  for (auto& b : pr.x0) b = static_cast<uint8_t>(rng());
  pr.index.resize(kHeads * pr.K);
  std::vector<int64_t> all(T);
  for (int64_t h = 0; h < kHeads; ++h) {
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::sort(all.begin(), all.begin() + pr.K);
    std::copy(all.begin(), all.begin() + pr.K, pr.index.begin() + h * pr.K);
  }
  pr.want = pr.x0;
  for (int64_t h = 0; h < kHeads; ++h)
    for (int64_t i = 0; i < pr.K; ++i)
      std::memcpy(&pr.want[(h * T + i) * kRowBytes], &pr.x0[(h * T + pr.index[h * pr.K + i]) * kRowBytes], kRowBytes);
  CK(cudaMalloc(&pr.d_x, pr.x0.size()));
  CK(cudaMalloc(&pr.d_index, pr.index.size() * sizeof(int64_t)));
  CK(cudaMemcpy(pr.d_index, pr.index.data(), pr.index.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
  CK(cudaMalloc(&pr.d_sync, (1 + kHeads + kHeads * pr.K) * sizeof(int)));
  return pr;
}

CompactParams base_params(Problem const& pr) {
  CompactParams p{};
  p.x = pr.d_x;
  p.index = pr.d_index;
  p.n_bh = kHeads;
  p.T_max = pr.T;
  p.K = pr.K;
  p.row_bytes = kRowBytes;
  p.sync = pr.d_sync;
  return p;
}

template <int kThreads, int kVecs>
std::function<void()> ticket_variant(Problem const& pr) {
  CompactParams p = base_params(pr);
  p.rows_per_chunk = int64_t{kThreads} * kVecs * 16 / kRowBytes;
  p.chunks_per_bh = ceil_div<int64_t>(p.K, p.rows_per_chunk);
  p.vecs_per_row_div = FastDivmod(kRowBytes / 16);
  int64_t const ws = 1 + kHeads + kHeads * p.chunks_per_bh;
  return [p, ws] {
    CK(cudaMemsetAsync(p.sync, 0, ws * sizeof(int)));
    compact_tokens_kernel<16, kThreads, kVecs><<<static_cast<unsigned>(p.n_bh * p.chunks_per_bh), kThreads>>>(p);
  };
}

/// A launch of `kernel` with clusters of `cluster` CTAs along x, one row of clusters per bh.
template <typename K>
void launch_clusters(K kernel, CompactParams const& p, int64_t cluster, int threads, int smem) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(cluster), static_cast<unsigned>(p.n_bh), 1);
  cfg.blockDim = dim3(threads, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = static_cast<unsigned>(cluster);
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  CK(cudaLaunchKernelEx(&cfg, kernel, p));
}

/// A cluster candidate at the benchmark's shape: `kernel` with `n_buffers` code buffers of
/// kThreads * kVecs int32 in dynamic shared memory, clusters of `cluster` CTAs (fewer for short heads).
template <int kThreads, int kVecs, typename K>
std::function<void()> cluster_candidate(Problem const& pr, K kernel, int n_buffers, int cluster) {
  int const smem = n_buffers * kThreads * kVecs * 4;
  CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  CompactParams p = base_params(pr);
  p.rows_per_chunk = int64_t{kThreads} * kVecs * 16 / kRowBytes;
  p.chunks_per_bh = ceil_div<int64_t>(p.K, p.rows_per_chunk);
  p.vecs_per_row_div = FastDivmod(kRowBytes / 16);
  int64_t const c = std::min<int64_t>(cluster, p.chunks_per_bh);
  return [p, kernel, c, smem] { launch_clusters(kernel, p, c, kThreads, smem); };
}
template <int kThreads, int kVecs>
std::function<void()> cluster_variant(Problem const& pr, int cluster) {
  return cluster_candidate<kThreads, kVecs>(pr, compact_tokens_cluster_kernel<16, kThreads, kVecs>, 2, cluster);
}

// Candidate: the cluster scheme, software-pipelined by one round. Round r + 1's rows are read
// (into the second register tile) right after this CTA arrives at round r's barrier, so reads are
// in flight while the cluster waits and while round r is written. Safe because round r + 1 reads
// rows >= (r + 1) * C * S, which no write of round <= r touches; round r + 1's writes still come
// after the round-(r + 1) barrier, which each CTA arrives at (release) only after issuing, in
// program order, its round-(r + 1) reads. Three code buffers: round r (being written), r + 1
// (being read), r + 2 (being filled).
template <int W, int kThreads, int kVecs>
__global__ void __launch_bounds__(kThreads, 1) cluster_pipelined_kernel(CompactParams p) {
  using V = byte_vec_t<W>;
  constexpr int kRows = kThreads * kVecs;
  extern __shared__ int32_t s_codes[];  // [3][kRows]
  int const tid = threadIdx.x;
  int64_t const C = gridDim.x, S = p.rows_per_chunk, bh = blockIdx.y;  // grid.x = the cluster
  int64_t const rounds = ceil_div<int64_t>(p.chunks_per_bh, C);
  uint8_t* const base = p.x + bh * p.T_max * p.row_bytes;
  int64_t const* const index = p.index + bh * p.K;
  int const vecs_per_row = static_cast<int>(p.vecs_per_row_div.d);
  auto chunk_of = [&](int64_t round) { return round * C + blockIdx.x; };
  auto rows_of = [&](int64_t round) -> int64_t {
    int64_t const chunk = chunk_of(round);
    return chunk < p.chunks_per_bh ? (p.K - chunk * S < S ? p.K - chunk * S : S) : 0;
  };
  auto codes = [&](int64_t round) { return s_codes + (round % 3) * kRows; };
  auto fill = [&](int64_t round) {
    if (round >= rounds) return;
    int64_t const i0 = chunk_of(round) * S, n = rows_of(round);
    int32_t* const c = codes(round);
#pragma unroll 4
    for (int64_t r = tid; r < n; r += kThreads) {
      int64_t const src = __ldg(reinterpret_cast<long long const*>(index + i0 + r));
      c[r] = src < 0 ? -1 : static_cast<int32_t>(src);
    }
  };
  auto src_of = [&](int64_t round) {
    int32_t const* const c = codes(round);
    return [c](int row) { return static_cast<int64_t>(c[row]); };
  };
  auto read = [&](int64_t round, V (&regs)[kVecs]) {
    if (round >= rounds) return;
    detail::read_tile<W, kThreads, kVecs>(base, chunk_of(round) * S, p.row_bytes, p.vecs_per_row_div,
                                          static_cast<int>(rows_of(round)) * vecs_per_row, src_of(round), regs);
  };
  auto write = [&](int64_t round, V const (&regs)[kVecs]) {
    detail::write_tile<W, kThreads, kVecs>(base, chunk_of(round) * S, p.row_bytes, p.vecs_per_row_div,
                                           static_cast<int>(rows_of(round)) * vecs_per_row, src_of(round), regs);
  };
  auto arrive = [] { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); };
  auto wait = [] { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); };

  fill(0);
  fill(1);
  __syncthreads();
  V a[kVecs], b[kVecs];
  read(0, a);
  for (int64_t r = 0; r < rounds; r += 2) {
    arrive();       // round r's reads (and round r - 1's writes) performed
    read(r + 1, b);  // codes(r + 1) are complete since the last __syncthreads
    fill(r + 2);     // buffer (r + 2) % 3 was round r - 1's, finished at the last __syncthreads
    wait();
    write(r, a);
    __syncthreads();  // codes(r + 2) complete; codes(r) no longer read
    if (r + 1 >= rounds) break;
    arrive();
    read(r + 2, a);
    fill(r + 3);
    wait();
    write(r + 1, b);
    __syncthreads();
  }
}


template <int kThreads, int kVecs>
std::function<void()> pipelined_variant(Problem const& pr, int cluster) {
  return cluster_candidate<kThreads, kVecs>(pr, cluster_pipelined_kernel<16, kThreads, kVecs>, 3, cluster);
}

bool check(Problem const& pr, std::function<void()> const& f) {
  CK(cudaMemcpy(pr.d_x, pr.x0.data(), pr.x0.size(), cudaMemcpyHostToDevice));
  f();
  CK(cudaDeviceSynchronize());
  std::vector<uint8_t> got(pr.x0.size());
  CK(cudaMemcpy(got.data(), pr.d_x, got.size(), cudaMemcpyDeviceToHost));
  // Rows [K, T) of each head are unspecified after compaction; compare [0, K).
  for (int64_t h = 0; h < kHeads; ++h)
    if (std::memcmp(&got[h * pr.T * kRowBytes], &pr.want[h * pr.T * kRowBytes], pr.K * kRowBytes) != 0) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "profile") == 0) {
    // One launch of each candidate at 32k, for Nsight Compute:
    //   ncu --clock-control none -k regex:compact --section SpeedOfLight --section WarpStateStats ... ./sweep_compact profile
    Problem pr = make_problem(32768);
    bool ok = check(pr, ticket_variant<256, 8>(pr));
    ok &= check(pr, ticket_variant<512, 8>(pr));
    ok &= check(pr, ticket_variant<256, 16>(pr));
    ok &= check(pr, cluster_variant<512, 16>(pr, 16));
    ok &= check(pr, cluster_variant<512, 16>(pr, 8));
    std::printf("profile launches %s\n", ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n\n", prop.name, prop.multiProcessorCount);
  std::printf("| variant | tokens | MB moved | median us | GB/s | memcpy GB/s | of memcpy | bytes |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---|\n");
  for (int64_t T : {8192, 32768}) {
    Problem pr = make_problem(T);
    int64_t const moved = pr.bytes_moved();
    uint8_t* d_copy = nullptr;
    CK(cudaMalloc(&d_copy, moved));
    double const copy_ms = time_ms([&] { CK(cudaMemcpyAsync(d_copy + moved / 2, d_copy, moved / 2, cudaMemcpyDeviceToDevice)); });
    double const copy_gbps = moved / copy_ms / 1e6;
    auto row = [&](std::string const& name, std::function<void()> const& f) {
      bool const ok = check(pr, f);
      double const ms = time_ms(f);
      double const gbps = moved / ms / 1e6;
      std::printf("| %s | %lld | %.1f | %.1f | %.0f | %.0f | %.3f | %s |\n", name.c_str(), static_cast<long long>(T),
                  moved / 1e6, ms * 1e3, gbps, copy_gbps, gbps / copy_gbps, ok ? "ok" : "WRONG");
      std::fflush(stdout);
    };
    row("ticket 256x8 +memset", ticket_variant<256, 8>(pr));
    row("ticket 512x8 (library default) +memset", ticket_variant<512, 8>(pr));
    row("ticket 128x8 +memset", ticket_variant<128, 8>(pr));
    row("ticket 256x16 +memset", ticket_variant<256, 16>(pr));
    row("ticket 128x16 +memset", ticket_variant<128, 16>(pr));
    row("ticket 256x4 +memset", ticket_variant<256, 4>(pr));
    row("ticket 512x4 +memset", ticket_variant<512, 4>(pr));
    int max_active16 = 0;
    {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(16, 1, 1);
      cfg.blockDim = dim3(512, 1, 1);
      cfg.dynamicSmemBytes = kClusterSmemBytes;
      cudaLaunchAttribute attr{};
      attr.id = cudaLaunchAttributeClusterDimension;
      attr.val.clusterDim.x = 16;
      attr.val.clusterDim.y = 1;
      attr.val.clusterDim.z = 1;
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      (void)cluster_variant<512, 16>(pr, 16);  // sets the kernel's attributes
      CK(cudaOccupancyMaxActiveClusters(&max_active16, compact_tokens_cluster_kernel<16, 512, 16>, &cfg));
    }
    std::printf("| (clusters of 16 x 512 threads resident at once: %d) | | | | | | | |\n", max_active16);
    for (int c : {16, 8}) {
      std::string const cs = " cluster " + std::to_string(c);
      row("cluster 512x16 (library default at 02cadd8)" + cs, cluster_variant<512, 16>(pr, c));
      row("cluster 512x8" + cs, cluster_variant<512, 8>(pr, c));
      row("cluster 512x4" + cs, cluster_variant<512, 4>(pr, c));
      row("cluster 256x8" + cs, cluster_variant<256, 8>(pr, c));
      row("cluster 1024x8" + cs, cluster_variant<1024, 8>(pr, c));
      row("cluster 1024x4" + cs, cluster_variant<1024, 4>(pr, c));
      row("pipelined 1024x4" + cs, pipelined_variant<1024, 4>(pr, c));
    }
    CK(cudaFree(d_copy));
  }
  return 0;
}
