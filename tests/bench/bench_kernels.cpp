// Kernel benchmarks (Google Benchmark, built with AKCB_BUILD_BENCHMARKS and AKCB_WITH_CUDA):
// the four akcb::ops kernels at the size of one Llama-3-8B layer (B = 1, H_kv = 8, D = 128,
// bf16, T = 8k and 32k tokens), each against
//  - the device-to-device copy bandwidth (at::Tensor::copy_ of the same number of bytes,
//    measured in the same run, same method), and
//  - the same operation written with plain LibTorch ops (the CPU reference formulas of
//    src/cpu/ops_reference.cpp, run on CUDA tensors).
// Timing: CUDA events around `kReps` back-to-back calls on the current stream, after warm-up; a
// GPU sleep kernel queued first lets the host enqueue all calls before the first one starts, so
// host overhead does not show as idle GPU time. One benchmark iteration = one such timed batch
// (a fixed number of them, kBatches); the reported time is per call, the counters use the median
// batch. Bytes moved count each input read once and each output written once (payload, scales
// and indices).
//
//   bench_kernels --benchmark_out=bench.json --benchmark_out_format=json
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Sleep.h>
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include <akcb/ops.hpp>

#include "cpu/ops_cpu.hpp"  // plain-LibTorch formulations (the CPU references)

namespace {

constexpr int kReps = 20;      // calls per timed batch
constexpr int kBatches = 25;   // timed batches per benchmark (fixed: the wall time stays ~1 s per row)
constexpr int64_t kSleepCycles = 2'000'000;  // ~1 ms at H200 clocks: longer than enqueuing kReps calls
constexpr int64_t B = 1, H = 8, D = 128;     // one Llama-3-8B layer's K (or V) cache
constexpr at::ScalarType kDtype = at::kBFloat16;

enum class Impl { kAkcb, kLibTorch };

bool cuda_ok() { return at::hasCUDA() && at::getNumGPUs() > 0 && akcb::ops::cuda_kernels_available(); }

void check(cudaError_t e) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
    std::abort();
  }
}

/// Milliseconds per call of `f`, timed over kReps back-to-back calls with CUDA events.
template <typename F>
double time_batch_ms(F&& f) {
  cudaStream_t const stream = at::cuda::getCurrentCUDAStream();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start));
  check(cudaEventCreate(&stop));
  at::cuda::sleep(kSleepCycles);
  check(cudaEventRecord(start, stream));
  for (int r = 0; r < kReps; ++r) f();
  check(cudaEventRecord(stop, stream));
  check(cudaEventSynchronize(stop));
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop));
  check(cudaEventDestroy(start));
  check(cudaEventDestroy(stop));
  return static_cast<double>(ms) / kReps;
}

/// Device-to-device copy bandwidth (GB/s, bytes read + written) for `bytes` moved: copy_ of a
/// tensor of bytes / 2. Median of 7 batches after warm-up; cached per size.
double copy_gbps(int64_t bytes) {
  static std::map<int64_t, double> cache;
  auto it = cache.find(bytes);
  if (it != cache.end()) return it->second;
  int64_t const n = std::max<int64_t>(bytes / 2 / 2, 8);  // bf16 elements per buffer
  auto opts = at::TensorOptions().dtype(kDtype).device(at::kCUDA);
  at::Tensor src = at::randn({n}, opts), dst = at::empty({n}, opts);
  auto f = [&] { dst.copy_(src); };
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> ms;
  for (int t = 0; t < 7; ++t) ms.push_back(time_batch_ms(f));
  std::sort(ms.begin(), ms.end());
  double const gbps = static_cast<double>(4 * n) / (ms[ms.size() / 2] * 1e-3) / 1e9;
  cache.emplace(bytes, gbps);
  return gbps;
}

/// Sorted random subsets of [0, T) of size M per (b, h): [B, H, M] int64 on the GPU.
at::Tensor sorted_subset(int64_t T, int64_t M) {
  at::Tensor keys = at::rand({B, H, T}, at::TensorOptions().device(at::kCUDA));
  return std::get<0>(at::argsort(keys, /*stable=*/false, /*dim=*/-1).narrow(-1, 0, M).sort(-1)).contiguous();
}

/// Runs the timed loop of one benchmark and sets its counters.
template <typename F>
void run(benchmark::State& state, int64_t bytes, F&& f) {
  for (int i = 0; i < 3; ++i) f();  // warm-up (module load, allocator)
  check(cudaDeviceSynchronize());
  std::vector<double> ms;
  for (auto _ : state) {
    double const t = time_batch_ms(f);
    ms.push_back(t);
    state.SetIterationTime(t * 1e-3);
  }
  std::sort(ms.begin(), ms.end());
  double const med = ms[ms.size() / 2];
  double const gbps = static_cast<double>(bytes) / (med * 1e-3) / 1e9;
  double const copy = copy_gbps(bytes);
  state.counters["MB_moved"] = static_cast<double>(bytes) / 1e6;
  state.counters["median_us"] = med * 1e3;
  state.counters["GBps"] = gbps;
  state.counters["copy_GBps"] = copy;
  state.counters["of_copy"] = gbps / copy;
}

void BM_quantize(benchmark::State& state, Impl impl, akcb::QuantDtype q) {
  if (!cuda_ok()) return state.SkipWithError("no CUDA device or no kernels");
  int64_t const T = state.range(0);
  at::Tensor x = at::randn({B, H, T, D}, at::TensorOptions().dtype(kDtype).device(at::kCUDA));
  int64_t const rows = B * H * T;
  int64_t const bytes = rows * D * 2 + rows * D * 1 + rows * 4;
  run(state, bytes, [&] {
    auto r = impl == Impl::kAkcb ? akcb::ops::quantize_per_token(x, q) : akcb::cpu::quantize_per_token(x, q);
    benchmark::DoNotOptimize(r.data.data_ptr());
  });
}

void BM_dequantize(benchmark::State& state, Impl impl, akcb::QuantDtype q) {
  if (!cuda_ok()) return state.SkipWithError("no CUDA device or no kernels");
  int64_t const T = state.range(0);
  at::Tensor x = at::randn({B, H, T, D}, at::TensorOptions().dtype(kDtype).device(at::kCUDA));
  auto qt = akcb::ops::quantize_per_token(x, q);
  int64_t const rows = B * H * T;
  int64_t const bytes = rows * D * 1 + rows * 4 + rows * D * 2;
  run(state, bytes, [&] {
    at::Tensor r = impl == Impl::kAkcb ? akcb::ops::dequantize_per_token(qt.data, qt.scale, kDtype)
                                       : akcb::cpu::dequantize_per_token(qt.data, qt.scale, kDtype);
    benchmark::DoNotOptimize(r.data_ptr());
  });
}

/// Demotion of a quarter of the held tokens: gather M = T / 4 rows, quantize, write at offset 0.
void BM_quantize_gather(benchmark::State& state, Impl impl, akcb::QuantDtype q) {
  if (!cuda_ok()) return state.SkipWithError("no CUDA device or no kernels");
  int64_t const T = state.range(0), M = T / 4;
  auto opts = at::TensorOptions().device(at::kCUDA);
  at::Tensor src = at::randn({B, H, T, D}, opts.dtype(kDtype));
  at::Tensor index = sorted_subset(T, M);
  at::Tensor dst = at::empty({B, H, T, D}, opts.dtype(akcb::quant_scalar_type(q)));
  at::Tensor dst_scale = at::empty({B, H, T}, opts.dtype(at::kFloat));
  int64_t const rows = B * H * M;
  int64_t const bytes = rows * 8 + rows * D * 2 + rows * D * 1 + rows * 4;
  run(state, bytes, [&] {
    if (impl == Impl::kAkcb) {
      akcb::ops::quantize_gather_into_(src, index, dst, dst_scale, 0, /*check_index=*/false);
    } else {
      akcb::cpu::quantize_gather_into_(src, index, dst, dst_scale, 0);
    }
  });
}

/// Eviction of a quarter of the held tokens: keep K = 3T/4 rows, compacted in place.
void BM_compact(benchmark::State& state, Impl impl) {
  if (!cuda_ok()) return state.SkipWithError("no CUDA device or no kernels");
  int64_t const T = state.range(0), K = T * 3 / 4;
  at::Tensor x = at::randn({B, H, T, D}, at::TensorOptions().dtype(kDtype).device(at::kCUDA));
  at::Tensor index = sorted_subset(T, K);
  int64_t const rows = B * H * K;
  int64_t const bytes = rows * 8 + rows * D * 2 * 2;
  run(state, bytes, [&] {
    if (impl == Impl::kLibTorch) {
      akcb::cpu::compact_tokens_(x, index);
    } else {
      akcb::ops::compact_tokens_(x, index, /*check_index=*/false);
    }
  });
}

/// The copy itself as a row of the table (64 MiB of bf16 K at 32k tokens).
void BM_copy(benchmark::State& state) {
  if (!cuda_ok()) return state.SkipWithError("no CUDA device");
  int64_t const T = state.range(0);
  auto opts = at::TensorOptions().dtype(kDtype).device(at::kCUDA);
  at::Tensor src = at::randn({B, H, T, D}, opts), dst = at::empty_like(src);
  run(state, 2 * src.nbytes(), [&] { dst.copy_(src); });
}

using akcb::QuantDtype;
// Fixed iterations: with MinTime, Google Benchmark would count per-call time against the minimum
// and run thousands of batches (seen on the H200, 2026-11-29: ~15 s per row).
#define AKCB_SIZES ->Arg(8192)->Arg(32768)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(kBatches)

BENCHMARK(BM_copy) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_quantize, akcb_fp8, Impl::kAkcb, QuantDtype::kFp8E4M3) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_quantize, libtorch_fp8, Impl::kLibTorch, QuantDtype::kFp8E4M3) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_quantize, akcb_int8, Impl::kAkcb, QuantDtype::kInt8) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_dequantize, akcb_fp8, Impl::kAkcb, QuantDtype::kFp8E4M3) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_dequantize, libtorch_fp8, Impl::kLibTorch, QuantDtype::kFp8E4M3) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_dequantize, akcb_int8, Impl::kAkcb, QuantDtype::kInt8) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_quantize_gather, akcb_fp8, Impl::kAkcb, QuantDtype::kFp8E4M3) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_quantize_gather, libtorch_fp8, Impl::kLibTorch, QuantDtype::kFp8E4M3) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_compact, akcb, Impl::kAkcb) AKCB_SIZES;
BENCHMARK_CAPTURE(BM_compact, libtorch, Impl::kLibTorch) AKCB_SIZES;

}  // namespace

BENCHMARK_MAIN();
