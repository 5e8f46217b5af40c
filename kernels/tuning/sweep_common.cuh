#pragma once
// Shared by the tuning sweeps (kernels/tuning/sweep*.cu; not part of the library or its build):
// the CUDA error check and the timing loop (CUDA events around kReps back-to-back calls, median
// of kBatches batches, after 3 warm-up calls).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#define CK(x)                                                                                  \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

namespace akcb::tuning {

constexpr int kReps = 20, kBatches = 15;

/// Median milliseconds per call of `f`.
inline double time_ms(std::function<void()> const& f) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) f();
  CK(cudaDeviceSynchronize());
  std::vector<double> ms;
  for (int t = 0; t < kBatches; ++t) {
    CK(cudaEventRecord(a));
    for (int r = 0; r < kReps; ++r) f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float x = 0;
    CK(cudaEventElapsedTime(&x, a, b));
    ms.push_back(x / kReps);
  }
  CK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return ms[ms.size() / 2];
}

}  // namespace akcb::tuning
