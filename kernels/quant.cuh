#pragma once
// Per-token (per-row) absmax quantization to fp8 e4m3 / int8 with one fp32 scale per row, its
// inverse, and the gather+quantize used to demote or append cache tokens. Torch-free: the
// torch-facing launchers are in quant_launch.cu. Semantics are those of include/akcb/ops.hpp and
// of the CPU reference (src/cpu/ops_reference.cpp), bit for bit:
//   scale = absmax(row) / qmax          (fp32 division, absmax exact)
//   q     = encode(clamp(x / scale, -qmax, qmax))   (x / scale correctly rounded, see RowScale)
//   rows with scale == 0 (all zero, or an underflowing absmax) store q = 0 and scale = 0.
//
// Thread layout shared by all three kernels: a group of `G` consecutive lanes (G a power of two
// <= 32) handles one row; lane l of the group holds vectors l, l + G, l + 2G, ... of kVec
// elements each (kIters vectors per lane, kept in registers, so the row is read from memory
// once). kVec * sizeof(T) == 16 when rows are 16-byte aligned (kVec = 1 otherwise).
// kIters == 0 selects a streaming fallback for long rows (two passes over the row, the second
// one mostly from L1).

#include <cstdint>
#include <type_traits>

#include "common.cuh"

namespace akcb::kernels {

/// Leading-dimension indexer: row r -> element offset of the row's first element, for inputs with
/// up to kMaxLeadDims leading dims of arbitrary stride (the last dim has stride 1).
struct RowIndexer {
  static constexpr int kMaxLeadDims = 4;
  int n_dims = 0;                  // number of leading dims used (0: a single row at offset 0)
  int64_t size[kMaxLeadDims];      // innermost last
  int64_t stride[kMaxLeadDims];    // in elements
  __host__ __device__ int64_t offset(int64_t r) const {
    if (n_dims == 1) return r * stride[0];  // the common case: rows evenly strided
    int64_t off = 0;
#pragma unroll
    for (int d = kMaxLeadDims - 1; d >= 0; --d) {  // constant indices: the arrays stay in registers
      if (d < n_dims) {
        int64_t const i = r % size[d];
        r /= size[d];
        off += i * stride[d];
      }
    }
    return off;
  }
};

struct QuantizeParams {
  void const* x;       // [n_rows, D] via `rows`, element type T
  RowIndexer rows;     // leading dims of x
  uint8_t* q;          // [n_rows, D] fp8 bits | int8, contiguous
  float* scale;        // [n_rows] fp32
  int64_t n_rows;
  int64_t D;
  int group;           // G: lanes per row
};

struct DequantizeParams {
  uint8_t const* q;    // [n_rows, D] fp8 bits | int8, contiguous
  float const* scale;  // [n_rows] fp32, contiguous
  void* out;           // [n_rows, D] element type T, contiguous
  int64_t n_rows;
  int64_t D;
  int group;
};

struct QuantizeGatherParams {
  void const* src;          // [B, H, T_src, D] element type T, strides below, stride(3) == 1
  int64_t src_stride_b, src_stride_h, src_stride_t;  // in elements
  int64_t const* index;     // [B, H, M] int64, contiguous, values in [-1, T_src)
  uint8_t* dst;             // [B, H, T_max, D] fp8 bits | int8, contiguous
  float* dst_scale;         // [B, H, T_max] fp32, contiguous
  int64_t H, M, T_max, offset, D;
  int64_t n_rows;           // B * H * M
  int group;
};

namespace detail {

/// The scale of one row and what is needed to divide by it cheaply. x / s must be the correctly
/// rounded quotient (the CPU reference divides), but an IEEE division per element costs about
/// ten instructions and a range check. With r = 1/s correctly rounded (__frcp_rn, once per row),
/// q = RN(x * r) followed by one Markstein correction, e = fma(-s, q, x) (exact) and
/// q' = fma(e, r, q), is the correctly rounded x / s when no intermediate leaves the normal
/// range: here s in [2^-100, 2^126] (so r is normal) and |x| >= 2^-100 (so e is exact; x * r <=
/// ~448 never overflows since |x| <= absmax). Other operands use the plain division. Checked on
/// the host against x / s on 2.4e8 pairs over that range (0 differences), and by the CUDA tests.
struct RowScale {
  float s;        // absmax / qmax
  float r;        // RN(1 / s) when `fast`
  bool nonzero;   // s > 0
  bool fast;      // s in [2^-100, 2^126]
};

template <typename Q>
__device__ __forceinline__ RowScale make_row_scale(float amax) {
  RowScale rs;
  rs.s = amax / Q::kMax;
  rs.nonzero = rs.s > 0.0f;
  rs.fast = rs.s >= 0x1p-100f && rs.s <= 0x1p126f;
  rs.r = rs.fast ? __frcp_rn(rs.s) : 1.0f;
  return rs;
}

template <typename Q>
__device__ __forceinline__ float quantize_value(float v, RowScale const& rs) {
  if (!rs.nonzero) return 0.0f;
  float y;
  if (rs.fast && fabsf(v) >= 0x1p-100f) {
    float const q = __fmul_rn(v, rs.r);     // never contracted into an FMA
    float const e = fmaf(-rs.s, q, v);      // exact
    y = fmaf(e, rs.r, q);                   // correctly rounded v / s
  } else {
    y = v / rs.s;
  }
  return fminf(fmaxf(y, -Q::kMax), Q::kMax);
}

/// Quantizes one row of D elements. `src == nullptr` writes a zero row (a hole). All lanes of
/// the warp must call this (it shuffles); lanes with `active == false` only take part in the
/// reductions.
template <typename T, typename Q, int kVec, int kIters>
__device__ __forceinline__ void quantize_row(T const* __restrict__ src, uint8_t* __restrict__ dst,
                                             float* __restrict__ scale_out, int64_t D, int lane, int G,
                                             bool active) {
  static_assert(kVec % 2 == 0 || kVec == 1, "kVec must be 1 or even");
  float amax = 0.0f;
  if constexpr (kIters > 0) {
    float vals[kIters][kVec];
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      int64_t const col = (static_cast<int64_t>(it) * G + lane) * kVec;
      if (active && src != nullptr && col < D) {
        Packed<T, kVec> p = load_packed<T, kVec>(src + col);
#pragma unroll
        for (int k = 0; k < kVec; ++k) vals[it][k] = to_float(p.v[k]);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) vals[it][k] = 0.0f;
      }
#pragma unroll
      for (int k = 0; k < kVec; ++k) amax = fmaxf(amax, fabsf(vals[it][k]));
    }
    amax = group_max(amax, G);
    RowScale const rs = make_row_scale<Q>(amax);
    if (!active) return;
    if (lane == 0) *scale_out = rs.nonzero ? rs.s : 0.0f;
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      int64_t const col = (static_cast<int64_t>(it) * G + lane) * kVec;
      if (col < D) {
        Packed<uint8_t, kVec> out;
        if constexpr (kVec == 1) {
          out.v[0] = Q::encode(quantize_value<Q>(vals[it][0], rs));
        } else {
#pragma unroll
          for (int k = 0; k < kVec; k += 2) {
            uint16_t const two = Q::encode2(quantize_value<Q>(vals[it][k], rs), quantize_value<Q>(vals[it][k + 1], rs));
            out.v[k] = static_cast<uint8_t>(two & 0xff);
            out.v[k + 1] = static_cast<uint8_t>(two >> 8);
          }
        }
        store_packed<uint8_t, kVec>(dst + col, out);
      }
    }
  } else {
    // Streaming fallback for long rows.
    int64_t const step = static_cast<int64_t>(G) * kVec;
    if (active && src != nullptr) {
      for (int64_t col = static_cast<int64_t>(lane) * kVec; col < D; col += step) {
        Packed<T, kVec> p = load_packed<T, kVec>(src + col);
#pragma unroll
        for (int k = 0; k < kVec; ++k) amax = fmaxf(amax, fabsf(to_float(p.v[k])));
      }
    }
    amax = group_max(amax, G);
    RowScale const rs = make_row_scale<Q>(amax);
    if (!active) return;
    if (lane == 0) *scale_out = rs.nonzero ? rs.s : 0.0f;
    for (int64_t col = static_cast<int64_t>(lane) * kVec; col < D; col += step) {
      Packed<uint8_t, kVec> out;
      if (src != nullptr && rs.nonzero) {
        Packed<T, kVec> p = load_packed<T, kVec>(src + col);
#pragma unroll
        for (int k = 0; k < kVec; ++k) out.v[k] = Q::encode(quantize_value<Q>(to_float(p.v[k]), rs));
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) out.v[k] = 0;
      }
      store_packed<uint8_t, kVec>(dst + col, out);
    }
  }
}

}  // namespace detail

constexpr int kQuantThreads = 256;

// grid: (ceil(n_rows / (256 / G))), block: 256 -- G lanes per row
template <typename T, typename Q, int kVec, int kIters>
__global__ void __launch_bounds__(kQuantThreads) quantize_per_token_kernel(QuantizeParams p) {
  int const G = p.group;
  int const rows_per_block = kQuantThreads / G;
  int64_t const row = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / G;
  int const lane = threadIdx.x % G;
  bool const active = row < p.n_rows;
  T const* src = static_cast<T const*>(p.x) + (active ? p.rows.offset(row) : 0);
  detail::quantize_row<T, Q, kVec, kIters>(src, p.q + (active ? row : 0) * p.D, p.scale + (active ? row : 0), p.D,
                                           lane, G, active);
}

// grid: (ceil(B * H * M / (256 / G))), block: 256 -- G lanes per gathered row
template <typename T, typename Q, int kVec, int kIters>
__global__ void __launch_bounds__(kQuantThreads) quantize_gather_kernel(QuantizeGatherParams p) {
  int const G = p.group;
  int const rows_per_block = kQuantThreads / G;
  int64_t const row = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / G;  // (b, h, m)
  int const lane = threadIdx.x % G;
  bool const active = row < p.n_rows;
  int64_t const r = active ? row : 0;
  int64_t const bh = r / p.M, m = r % p.M;
  int64_t const b = bh / p.H, h = bh % p.H;
  int64_t const t = active ? p.index[r] : -1;
  T const* src = t < 0 ? nullptr
                       : static_cast<T const*>(p.src) + b * p.src_stride_b + h * p.src_stride_h + t * p.src_stride_t;
  int64_t const slot = bh * p.T_max + p.offset + m;  // destination row in [B * H * T_max)
  detail::quantize_row<T, Q, kVec, kIters>(src, p.dst + slot * p.D, p.dst_scale + slot, p.D, lane, G, active);
}

// grid: (ceil(n_rows / (256 / G))), block: 256 -- G lanes per row; no reduction
template <typename T, typename Q, int kVec, int kIters>
__global__ void __launch_bounds__(kQuantThreads) dequantize_per_token_kernel(DequantizeParams p) {
  int const G = p.group;
  int const rows_per_block = kQuantThreads / G;
  int64_t const row = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / G;
  int const lane = threadIdx.x % G;
  if (row >= p.n_rows) return;
  float const s = p.scale[row];
  uint8_t const* q = p.q + row * p.D;
  T* out = static_cast<T*>(p.out) + row * p.D;
  auto one = [&](int64_t col) {
    Packed<uint8_t, kVec> in = load_packed<uint8_t, kVec>(q + col);
    Packed<T, kVec> o;
#pragma unroll
    for (int k = 0; k < kVec; ++k) o.v[k] = from_float<T>(Q::decode(in.v[k]) * s);  // as the CPU: fp32 product, then RNE
    store_packed<T, kVec>(out + col, o);
  };
  if constexpr (kIters > 0) {
    // Issue every load of the row before the first store.
    Packed<uint8_t, kVec> in[kIters];
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      int64_t const col = (static_cast<int64_t>(it) * G + lane) * kVec;
      if (col < p.D) in[it] = load_packed<uint8_t, kVec>(q + col);
    }
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      int64_t const col = (static_cast<int64_t>(it) * G + lane) * kVec;
      if (col < p.D) {
        Packed<T, kVec> o;
#pragma unroll
        for (int k = 0; k < kVec; ++k) o.v[k] = from_float<T>(Q::decode(in[it].v[k]) * s);
        store_packed<T, kVec>(out + col, o);
      }
    }
  } else {
    for (int64_t col = static_cast<int64_t>(lane) * kVec; col < p.D; col += static_cast<int64_t>(G) * kVec) one(col);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: launch-shape selection and launchers returning cudaError_t.

/// How a row of D elements is split: G lanes per row, kIters vectors of kVec elements per lane
/// (0: streaming loop). Aims at two 16-byte vectors per lane so that each lane has two loads
/// in flight, with at most 8 vectors per lane held in registers.
struct RowLaunchShape {
  int group = 1;
  int iters = 1;  // 1, 2, 4, 8, or 0 for the streaming fallback
};

inline RowLaunchShape choose_row_shape(int64_t D, int vec) {
  int64_t const n_vec = ceil_div<int64_t>(D, vec);
  int64_t g = 1;
  while (g < 32 && g * 2 < n_vec) g *= 2;  // G = min(32, pow2 >= n_vec / 2)
  int64_t const need = ceil_div<int64_t>(n_vec, g);
  RowLaunchShape s;
  s.group = static_cast<int>(g);
  s.iters = need <= 1 ? 1 : need <= 2 ? 2 : need <= 4 ? 4 : need <= 8 ? 8 : 0;
  return s;
}

namespace detail {

/// Calls f(std::integral_constant<int, kIters>{}) for the runtime iters value.
template <typename F>
cudaError_t dispatch_iters(int iters, F&& f) {
  switch (iters) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 0: return f(std::integral_constant<int, 0>{});
    default: return cudaErrorInvalidValue;
  }
}

inline bool aligned_to(void const* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace detail

/// Launches quantize_per_token_kernel. `p.group` is set here.
template <typename T, typename Q>
cudaError_t launch_quantize_per_token(QuantizeParams p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.D == 0) return cudaSuccess;
  constexpr int kVecWide = 16 / sizeof(T);
  bool wide = p.D % kVecWide == 0 && detail::aligned_to(p.x, 16) && detail::aligned_to(p.q, kVecWide);
  for (int d = 0; d < p.rows.n_dims; ++d) wide = wide && p.rows.stride[d] % kVecWide == 0;
  int const vec = wide ? kVecWide : 1;
  RowLaunchShape const shape = choose_row_shape(p.D, vec);
  p.group = shape.group;
  int64_t const grid = ceil_div<int64_t>(p.n_rows, kQuantThreads / shape.group);
  if (grid > 0x7fffffff) return cudaErrorInvalidConfiguration;
  return detail::dispatch_iters(shape.iters, [&](auto iters) {
    constexpr int kIters = decltype(iters)::value;
    if (wide) {
      quantize_per_token_kernel<T, Q, kVecWide, kIters><<<static_cast<unsigned>(grid), kQuantThreads, 0, stream>>>(p);
    } else {
      quantize_per_token_kernel<T, Q, 1, kIters><<<static_cast<unsigned>(grid), kQuantThreads, 0, stream>>>(p);
    }
    return cudaGetLastError();
  });
}

/// Launches quantize_gather_kernel. `p.group` is set here.
template <typename T, typename Q>
cudaError_t launch_quantize_gather(QuantizeGatherParams p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.D == 0) return cudaSuccess;
  constexpr int kVecWide = 16 / sizeof(T);
  bool const wide = p.D % kVecWide == 0 && detail::aligned_to(p.src, 16) && detail::aligned_to(p.dst, kVecWide) &&
                    p.src_stride_b % kVecWide == 0 && p.src_stride_h % kVecWide == 0 &&
                    p.src_stride_t % kVecWide == 0;
  int const vec = wide ? kVecWide : 1;
  RowLaunchShape const shape = choose_row_shape(p.D, vec);
  p.group = shape.group;
  int64_t const grid = ceil_div<int64_t>(p.n_rows, kQuantThreads / shape.group);
  if (grid > 0x7fffffff) return cudaErrorInvalidConfiguration;
  return detail::dispatch_iters(shape.iters, [&](auto iters) {
    constexpr int kIters = decltype(iters)::value;
    if (wide) {
      quantize_gather_kernel<T, Q, kVecWide, kIters><<<static_cast<unsigned>(grid), kQuantThreads, 0, stream>>>(p);
    } else {
      quantize_gather_kernel<T, Q, 1, kIters><<<static_cast<unsigned>(grid), kQuantThreads, 0, stream>>>(p);
    }
    return cudaGetLastError();
  });
}

/// Launches dequantize_per_token_kernel. `p.group` is set here.
template <typename T, typename Q>
cudaError_t launch_dequantize_per_token(DequantizeParams p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.D == 0) return cudaSuccess;
  constexpr int kVecWide = 16 / sizeof(T);
  bool const wide = p.D % kVecWide == 0 && detail::aligned_to(p.out, 16) && detail::aligned_to(p.q, kVecWide);
  int const vec = wide ? kVecWide : 1;
  RowLaunchShape const shape = choose_row_shape(p.D, vec);
  p.group = shape.group;
  int64_t const grid = ceil_div<int64_t>(p.n_rows, kQuantThreads / shape.group);
  if (grid > 0x7fffffff) return cudaErrorInvalidConfiguration;
  return detail::dispatch_iters(shape.iters, [&](auto iters) {
    constexpr int kIters = decltype(iters)::value;
    if (wide) {
      dequantize_per_token_kernel<T, Q, kVecWide, kIters><<<static_cast<unsigned>(grid), kQuantThreads, 0, stream>>>(p);
    } else {
      dequantize_per_token_kernel<T, Q, 1, kIters><<<static_cast<unsigned>(grid), kQuantThreads, 0, stream>>>(p);
    }
    return cudaGetLastError();
  });
}

}  // namespace akcb::kernels
