// Consumer of the installed package: builds a `mix` cache, runs a prefill and decode steps
// through the plug-in attention, and checks the cache compressed within its budget.
#include <akcb/akcb.hpp>

#include <cstdio>

int main() {
  akcb::CacheConfig cfg;
  cfg.policy = akcb::PolicyKind::kMix;
  cfg.cache_size = 64;
  cfg.window_size = 8;
  akcb::AnyCache cache(cfg, akcb::CacheShape{2, 1, 2, 32, at::kFloat, c10::Device(c10::kCPU)});
  int64_t pos = 0;
  for (int64_t S : {100, 1, 1, 1}) {
    for (int64_t l = 0; l < 2; ++l) {
      at::Tensor out = cache.attend(l, at::randn({1, 4, S, 32}), at::randn({1, 2, S, 32}), at::randn({1, 2, S, 32}), pos);
      if (out.size(2) != S) return 1;
    }
    cache.commit();
    pos += S;
  }
  auto st = cache.stats();
  std::printf("processed %lld, held %lld of %lld token-heads, %lld bytes of %lld full\n",
              static_cast<long long>(st.n_processed),
              static_cast<long long>(st.total.n_original + st.total.n_quantized),
              static_cast<long long>(st.n_processed * 2 * 2), static_cast<long long>(st.total.held_bytes),
              static_cast<long long>(st.total.full_bytes));
  bool const ok = cache.n_held(0) <= cfg.cache_size && st.total.held_bytes < st.total.full_bytes;
  std::printf("%s\n", ok ? "consumer OK" : "consumer FAILED");
  return ok ? 0 : 1;
}
