// One decode step (append, attend, compress when due) per policy at 4096 held tokens, on the
// CPU. Google Benchmark; the `full` row is the baseline measured in the same run, and tools/bench_cache.py
// prints every row's time as a ratio to it, with the KV bytes held.
//
// Equal held tokens is the point, so every row runs in `tokens` mode (in `bytes` mode the same
// code runs over more held tokens). With one layer under `running` scope, `mix` has r = 1 (all
// past Original, like `origin`) plus the OQ-score work at prefill. One thread (the argument).
//
// Shape: one Llama-3-8B-like layer (32 query heads, 8 KV heads, head dim 128), batch 1, fp32
// on CPU, cache_size 4096, window 128. Each policy's cache is prefilled with 8192 tokens, so
// compressing policies hold 3000-4096 (decode hysteresis) and `full`, prefilled with 4096,
// holds 4096 + steps.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <akcb/akcb.hpp>

namespace {

using namespace akcb;  // NOLINT: benchmark file

constexpr int64_t kHq = 32, kHkv = 8, kD = 128, kPrompt = 8192;

void decode_step(benchmark::State& state, PolicyKind policy, BudgetMode mode) {
  at::manual_seed(0);
  at::set_num_threads(static_cast<int>(state.range(0)));
  CacheConfig cfg;
  cfg.policy = policy;
  cfg.cache_size = 4096;
  cfg.window_size = 128;
  cfg.budget_mode = mode;
  CacheShape shape{1, 1, kHkv, kD, at::kFloat, c10::Device(c10::kCPU)};
  AnyCache cache(cfg, shape);
  // Prefill in chunks (keeps the observation matmul small), so compressing policies start full.
  // `full` is prefilled to 4096 tokens; compressing policies get 8192 and hold ~4096 after it.
  int64_t const prompt = policy == PolicyKind::kFull ? kPrompt / 2 : kPrompt;
  for (int64_t s = 0; s < prompt; s += 1024) {
    cache.attend(0, at::randn({1, kHq, 1024, kD}), at::randn({1, kHkv, 1024, kD}), at::randn({1, kHkv, 1024, kD}), s);
    cache.commit();
  }
  at::Tensor q = at::randn({1, kHq, 1, kD}), k = at::randn({1, kHkv, 1, kD}), v = at::randn({1, kHkv, 1, kD});
  for (auto _ : state) {
    at::Tensor out = cache.attend(0, q, k, v, cache.n_processed());
    cache.commit();
    benchmark::DoNotOptimize(out.data_ptr());
  }
  auto st = cache.stats();
  state.counters["held_tokens"] = static_cast<double>(cache.n_held(0));
  state.counters["kv_bytes_held"] = static_cast<double>(st.total.held_bytes);
  state.counters["kv_bytes_vs_full"] = static_cast<double>(st.total.held_bytes) / static_cast<double>(st.total.full_bytes);
  state.counters["compressions"] = static_cast<double>(st.total.n_compressions);
  state.counters["compress_s"] = st.total.compress_seconds;  // wall seconds compressing, prefill included
}

}  // namespace

#define AKCB_DECODE_BENCH(NAME, POLICY, MODE)                                                   \
  BENCHMARK_CAPTURE(decode_step, NAME, POLICY, MODE)->Arg(1)->Unit(benchmark::kMicrosecond)->MinTime(1.0)

AKCB_DECODE_BENCH(full, PolicyKind::kFull, BudgetMode::kTokens);
AKCB_DECODE_BENCH(window, PolicyKind::kWindow, BudgetMode::kTokens);
AKCB_DECODE_BENCH(origin, PolicyKind::kOrigin, BudgetMode::kTokens);
AKCB_DECODE_BENCH(quant, PolicyKind::kQuant, BudgetMode::kTokens);
AKCB_DECODE_BENCH(mix, PolicyKind::kMix, BudgetMode::kTokens);

BENCHMARK_MAIN();
