// Launch-shape sweep of the AKCB kernels (issue 6 tuning aid; not part of the library or its
// build). Torch-free: times variants of the kernels in kernels/*.cuh at the benchmark's shape
// (one Llama-3-8B layer's K cache: B = 1, 8 KV heads, D = 128, bf16, T = 8k / 32k) with CUDA
// events, 20 back-to-back calls per batch, median of 15 batches, against cudaMemcpyAsync
// device-to-device of the same bytes (read + write) timed the same way, and checks every
// variant's output bit for bit against a host reference (quantize: fp32 division + RNE encode,
// as src/cpu/ops_reference.cpp). Compaction is measured by tests/bench/bench_kernels.cpp only: the
// chunk-dependency variants swept here earlier (commit 15fa0b7) ran at 0.09-0.20 of memcpy at 32k and
// were reverted.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 --expt-relaxed-constexpr -I kernels kernels/tuning/sweep.cu -o sweep
//   ./sweep > sweep.md
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../quant.cuh"
#include "sweep_common.cuh"

using namespace akcb::kernels;
using namespace akcb;


namespace {

using tuning::time_ms;
int g_sm = 132;

// Sweep wrappers with their own launch bounds.
template <typename Q, int kIters, int kRows, int kMinCtas>
__global__ void __launch_bounds__(kQuantThreads, kMinCtas) sweep_quant(QuantizeParams p) {
  detail::quantize_per_token_body<__nv_bfloat16, Q, 8, kIters, kRows>(p);
}
template <int kIters, int kRows, int kMinCtas>
__global__ void __launch_bounds__(kQuantThreads, kMinCtas) sweep_dequant(DequantizeParams p) {
  detail::dequantize_per_token_body<__nv_bfloat16, Fp8E4M3, 8, kIters, kRows>(p);
}


/// GB/s of cudaMemcpyAsync moving `bytes` in total (bytes / 2 read, bytes / 2 written).
double copy_gbps(int64_t bytes) {
  static void *src = nullptr, *dst = nullptr;
  static int64_t cap = 0;
  int64_t const half = bytes / 2;
  if (half > cap) {
    if (src) {
      CK(cudaFree(src));
      CK(cudaFree(dst));
    }
    CK(cudaMalloc(&src, half));
    CK(cudaMalloc(&dst, half));
    CK(cudaMemset(src, 1, half));
    cap = half;
  }
  double const ms = time_ms([&] { CK(cudaMemcpyAsync(dst, src, half, cudaMemcpyDeviceToDevice)); });
  return 2.0 * half / (ms * 1e-3) / 1e9;
}

/// ok: 1 bit-exact, 0 mismatch, -1 not checked.
void report(char const* op, std::string const& variant, int64_t T, int64_t bytes, double ms, int ok) {
  double const gbps = bytes / (ms * 1e-3) / 1e9;
  double const copy = copy_gbps(bytes);
  std::printf("| %s | %s | %lld | %.1f | %.1f | %.0f | %.0f | %.3f | %s |\n", op, variant.c_str(), (long long)T,
              bytes / 1e6, ms * 1e3, gbps, copy, gbps / copy, ok < 0 ? "-" : ok ? "ok" : "MISMATCH");
  std::fflush(stdout);
}

// Grid of a variant: ceil(rows / rows per CTA), capped at ctas_per_sm CTAs per SM (0: no cap).
int64_t variant_grid(int64_t rows, int shift, int rows_per_set, int ctas_per_sm) {
  int64_t const rows_per_cta = 8 * (32 >> shift) * rows_per_set;
  int64_t const grid = (rows + rows_per_cta - 1) / rows_per_cta;
  return ctas_per_sm > 0 ? std::min<int64_t>(grid, int64_t{g_sm} * ctas_per_sm) : grid;
}

uint8_t host_fp8(float y) { return static_cast<uint8_t>(__nv_cvt_float_to_fp8(y, __NV_SATFINITE, __NV_E4M3)); }

// ------------------------------------------------------------------------------------------------
void sweep_quantize(int64_t T) {
  int64_t const D = 128, rows = 8 * T;
  std::vector<__nv_bfloat16> hx(rows * D);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (int64_t r = 0; r < rows; ++r) {
    float const mag = std::pow(10.0f, static_cast<float>(static_cast<int>(rng() % 7) - 3));
    for (int64_t d = 0; d < D; ++d) hx[r * D + d] = __float2bfloat16(nd(rng) * mag);
  }
  // host reference (fp8 and int8)
  std::vector<uint8_t> want_q(rows * D), want_q8(rows * D);
  std::vector<float> want_s(rows), want_s8(rows);
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (int64_t d = 0; d < D; ++d) amax = std::max(amax, std::fabs(__bfloat162float(hx[r * D + d])));
    float const s = amax / 448.0f;
    want_s[r] = s > 0 ? s : 0.0f;
    for (int64_t d = 0; d < D; ++d) {
      float y = s > 0 ? __bfloat162float(hx[r * D + d]) / s : 0.0f;
      y = std::min(std::max(y, -448.0f), 448.0f);
      want_q[r * D + d] = host_fp8(y);
    }
    float const s8 = amax / 127.0f;
    want_s8[r] = s8 > 0 ? s8 : 0.0f;
    for (int64_t d = 0; d < D; ++d) {
      float y = s8 > 0 ? __bfloat162float(hx[r * D + d]) / s8 : 0.0f;
      y = std::min(std::max(y, -127.0f), 127.0f);
      want_q8[r * D + d] = static_cast<uint8_t>(static_cast<int8_t>(std::nearbyint(y)));
    }
  }
  __nv_bfloat16* x;
  uint8_t* q;
  float* sc;
  CK(cudaMalloc(&x, rows * D * 2));
  CK(cudaMalloc(&q, rows * D));
  CK(cudaMalloc(&sc, rows * 4));
  CK(cudaMemcpy(x, hx.data(), rows * D * 2, cudaMemcpyHostToDevice));
  int64_t const bytes = rows * D * 3 + rows * 4;
  std::vector<uint8_t> got_q(rows * D);
  std::vector<float> got_s(rows);

  // Output bytes and scales against a host reference, bit for bit.
  auto check = [&](std::vector<uint8_t> const& wq, std::vector<float> const& ws) {
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(got_q.data(), q, rows * D, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(got_s.data(), sc, rows * 4, cudaMemcpyDeviceToHost));
    return got_q == wq && std::memcmp(got_s.data(), ws.data(), rows * 4) == 0;
  };
  QuantizeParams qp{};
  qp.x = x;
  qp.rows.n_dims = 1;
  qp.rows.size[0] = rows;
  qp.rows.stride[0] = D;
  qp.q = q;
  qp.scale = sc;
  qp.n_rows = rows;
  qp.D = D;
  // One sweep row: `kernel` on `params` with the variant's row-group shift and grid, checked by
  // verify(launch) (which runs it once on poisoned outputs), then timed.
  auto sweep_row = [&](char const* op, auto params, int64_t nbytes, auto const& verify, std::string const& name,
                       int shift, int rows_per_set, int ctas_per_sm, auto kernel) {
    params.group_shift = shift;
    int64_t const grid = variant_grid(rows, shift, rows_per_set, ctas_per_sm);
    auto f = [&] { kernel<<<static_cast<unsigned>(grid), kQuantThreads>>>(params); };
    bool const ok = verify(f);
    report(op, name + " grid=" + std::to_string(grid), T, nbytes, time_ms(f), ok);
  };
  auto qverify = [&](auto const& f) {
    CK(cudaMemset(q, 0xff, rows * D));
    CK(cudaMemset(sc, 0xff, rows * 4));
    f();
    return check(want_q, want_s);
  };
  auto run = [&](std::string const& name, int shift, int rows_per_set, int ctas_per_sm, auto kernel) {
    sweep_row("quantize_fp8", qp, bytes, qverify, name, shift, rows_per_set, ctas_per_sm, kernel);
  };
  // (G, iters, row sets, min CTAs/SM in launch bounds, grid cap per SM)
  {
    auto f = [&] { CK((launch_quantize_per_token<__nv_bfloat16, Fp8E4M3>(qp, 0))); };
    CK(cudaMemset(q, 0xff, rows * D));
    f();
    bool const ok = check(want_q, want_s);
    report("quantize_fp8", "library default", T, bytes, time_ms(f), ok);
    auto g = [&] { CK((launch_quantize_per_token<__nv_bfloat16, Int8>(qp, 0))); };
    CK(cudaMemset(q, 0xff, rows * D));
    g();
    int const ok8 = check(want_q8, want_s8);
    report("quantize_int8", "library default", T, bytes, time_ms(g), ok8);
    f();  // leave the fp8 result for the dequantize rows
    CK(cudaDeviceSynchronize());
  }
  for (int cap : {4, 8, 16, 0}) {
    run("G4 it4 r1 lb4 cap" + std::to_string(cap), 2, 1, cap, sweep_quant<Fp8E4M3, 4, 1, 4>);
  }
  run("G4 it4 r1 lb3 cap8", 2, 1, 8, sweep_quant<Fp8E4M3, 4, 1, 3>);
  run("G4 it4 r1 lb2 cap8", 2, 1, 8, sweep_quant<Fp8E4M3, 4, 1, 2>);
  run("G4 it4 r2 lb2 cap8", 2, 2, 8, sweep_quant<Fp8E4M3, 4, 2, 2>);
  run("G4 it4 r2 lb4 cap8", 2, 2, 8, sweep_quant<Fp8E4M3, 4, 2, 4>);
  run("G8 it2 r1 lb4 cap8", 3, 1, 8, sweep_quant<Fp8E4M3, 2, 1, 4>);
  run("G8 it2 r2 lb4 cap8", 3, 2, 8, sweep_quant<Fp8E4M3, 2, 2, 4>);
  run("G8 it2 r1 lb6 cap8", 3, 1, 8, sweep_quant<Fp8E4M3, 2, 1, 6>);
  run("G8 it2 r1 lb8 cap0", 3, 1, 0, sweep_quant<Fp8E4M3, 2, 1, 8>);
  run("G16 it1 r2 lb6 cap8", 4, 2, 8, sweep_quant<Fp8E4M3, 1, 2, 6>);
  run("G16 it1 r4 lb4 cap8", 4, 4, 8, sweep_quant<Fp8E4M3, 1, 4, 4>);
  run("G2 it8 r1 lb3 cap8", 1, 1, 8, sweep_quant<Fp8E4M3, 8, 1, 3>);

  // dequantize variants (read the q written above, equal to want_q when the rows say ok)
  __nv_bfloat16* out;
  CK(cudaMalloc(&out, rows * D * 2));
  std::vector<uint16_t> want_deq(rows * D), got_deq(rows * D);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < D; ++d) {
      __half_raw const h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(want_q[r * D + d]), __NV_E4M3);
      __nv_bfloat16 const b = __float2bfloat16_rn(__half2float(__half(h)) * want_s[r]);
      std::memcpy(&want_deq[r * D + d], &b, 2);
    }
  }
  auto dcheck = [&](auto const& f) {
    CK(cudaMemset(out, 0xff, rows * D * 2));
    f();
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(got_deq.data(), out, rows * D * 2, cudaMemcpyDeviceToHost));
    return got_deq == want_deq ? 1 : 0;
  };
  int64_t const dbytes = rows * D * 3 + rows * 4;
  DequantizeParams dp{};
  dp.q = q;
  dp.scale = sc;
  dp.out = out;
  dp.n_rows = rows;
  dp.D = D;
  auto drun = [&](std::string const& name, int shift, int rows_per_set, int ctas_per_sm, auto kernel) {
    sweep_row("dequantize_fp8", dp, dbytes, dcheck, name, shift, rows_per_set, ctas_per_sm, kernel);
  };
  {
    auto f = [&] { CK((launch_dequantize_per_token<__nv_bfloat16, Fp8E4M3>(dp, 0))); };
    int const ok = dcheck(f);
    report("dequantize_fp8", "library default", T, dbytes, time_ms(f), ok);
  }
  drun("G4 it4 r1 lb4 cap8", 2, 1, 8, sweep_dequant<4, 1, 4>);
  drun("G4 it4 r1 lb4 cap0", 2, 1, 0, sweep_dequant<4, 1, 4>);
  drun("G4 it4 r2 lb4 cap8", 2, 2, 8, sweep_dequant<4, 2, 4>);
  drun("G8 it2 r1 lb8 cap0", 3, 1, 0, sweep_dequant<2, 1, 8>);
  drun("G8 it2 r2 lb4 cap8", 3, 2, 8, sweep_dequant<2, 2, 4>);
  drun("G16 it1 r2 lb8 cap16", 4, 2, 16, sweep_dequant<1, 2, 8>);
  CK(cudaFree(out));
  CK(cudaFree(x));
  CK(cudaFree(q));
  CK(cudaFree(sc));
}


}  // namespace

int main() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  g_sm = prop.multiProcessorCount;
  std::printf("device: %s, %d SMs, L2 %d MB\n\n", prop.name, g_sm, prop.l2CacheSize >> 20);
  std::printf("| op | variant | tokens | MB moved | median us | GB/s | memcpy GB/s | of memcpy | bits |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---|\n");
  for (int64_t T : {8192, 32768}) {
    sweep_quantize(T);
  }
  return 0;
}
