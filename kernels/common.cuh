#pragma once
// Torch-free device helpers shared by the AKCB kernels: vector types, quantization traits,
// warp reductions. Included only by kernels/*.cuh and kernels/*_launch.cu.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace akcb::kernels {

// ---------------------------------------------------------------------------------------------
// Raw byte vectors of W bytes (W in {1, 2, 4, 8, 16}), used for aligned wide loads and stores.
template <int W> struct ByteVec;
template <> struct ByteVec<1> { using type = uint8_t; };
template <> struct ByteVec<2> { using type = uint16_t; };
template <> struct ByteVec<4> { using type = uint32_t; };
template <> struct ByteVec<8> { using type = uint2; };
template <> struct ByteVec<16> { using type = uint4; };
template <int W> using byte_vec_t = typename ByteVec<W>::type;

// N elements of T packed for one W = N * sizeof(T) byte load or store.
template <typename T, int N>
struct alignas(N * sizeof(T)) Packed {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Packed<T, N> load_packed(T const* p) {
  static_assert(sizeof(Packed<T, N>) == N * sizeof(T), "Packed must be dense");
  using V = byte_vec_t<N * sizeof(T)>;
  V raw = *reinterpret_cast<V const*>(p);
  Packed<T, N> out;
  memcpy(&out, &raw, sizeof(raw));
  return out;
}

template <typename T, int N>
__device__ __forceinline__ void store_packed(T* p, Packed<T, N> const& val) {
  using V = byte_vec_t<N * sizeof(T)>;
  V raw;
  memcpy(&raw, &val, sizeof(raw));
  if constexpr (sizeof(V) == 16) {
    // One 16-byte store: left to itself, ptxas sometimes splits a v4 store into four 4-byte
    // stores when the four registers are not allocated as an aligned quad (seen in the
    // dequantization kernel), which quadruples the store instructions and L2 write requests.
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(raw.x), "r"(raw.y), "r"(raw.z), "r"(raw.w)
                 : "memory");
  } else {
    *reinterpret_cast<V*>(p) = raw;
  }
}

// ---------------------------------------------------------------------------------------------
// Element conversions (exact to fp32; round-to-nearest-even from fp32).
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// ---------------------------------------------------------------------------------------------
// Quantized storage. Both are one byte; `Fp8E4M3` stores __nv_fp8_storage_t bits.
struct Fp8E4M3 {
  static constexpr float kMax = 448.0f;
  // x must already be clamped to [-kMax, kMax]; round-to-nearest-even, as c10::Float8_e4m3fn.
  __device__ __forceinline__ static uint8_t encode(float x) {
    return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
  }
  // Two values at once (one cvt instruction on sm_89+); low byte = a.
  __device__ __forceinline__ static uint16_t encode2(float a, float b) {
    return static_cast<uint16_t>(__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3));
  }
  __device__ __forceinline__ static float decode(uint8_t q) {
    __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(q), __NV_E4M3);
    return __half2float(__half(h));  // e4m3 -> fp16 is exact, fp16 -> fp32 is exact
  }
};

struct Int8 {
  static constexpr float kMax = 127.0f;
  // x must already be clamped; rintf rounds half to even, as torch.round.
  __device__ __forceinline__ static uint8_t encode(float x) {
    return static_cast<uint8_t>(static_cast<int8_t>(__float2int_rn(x)));
  }
  __device__ __forceinline__ static uint16_t encode2(float a, float b) {
    return static_cast<uint16_t>(encode(a) | (static_cast<uint16_t>(encode(b)) << 8));
  }
  __device__ __forceinline__ static float decode(uint8_t q) {
    return static_cast<float>(static_cast<int8_t>(q));
  }
};

// ---------------------------------------------------------------------------------------------
// Max over `width` consecutive lanes (width a power of two <= 32, groups aligned to width).
__device__ __forceinline__ float group_max(float v, int width) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    if (off < width) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  }
  return v;
}

// Unsigned 32-bit division by a divisor fixed at launch: n / d as one multiply-high, one add and
// one shift (Granlund-Montgomery round-up method, as CUTLASS FastDivmod), for n, d < 2^31.
struct FastDivmod {
  uint32_t d = 1, mul = 1, shift = 0;
  FastDivmod() = default;
  __host__ explicit FastDivmod(uint32_t divisor) : d(divisor) {
    while ((uint64_t{1} << shift) < d) ++shift;  // shift = ceil(log2(d))
    mul = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1);
  }
  __host__ __device__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    uint32_t const hi = __umulhi(n, mul);
#else
    uint32_t const hi = static_cast<uint32_t>((static_cast<uint64_t>(n) * mul) >> 32);
#endif
    return (hi + n) >> shift;
  }
};

// Integer ceil-div for host and device.
template <typename I>
__host__ __device__ constexpr I ceil_div(I a, I b) {
  return (a + b - 1) / b;
}

}  // namespace akcb::kernels
