#pragma once
// Per-token (per-row) absmax quantization to fp8 e4m3 / int8 with one fp32 scale per row, its
// inverse, and the gather+quantize used to demote or append cache tokens. Torch-free: the
// torch-facing launchers are in quant_launch.cu, dequantize_launch.cu and gather_launch.cu.
// Semantics are those of include/akcb/ops.hpp and of the CPU reference
// (src/cpu/ops_reference.cpp), bit for bit:
//   scale = absmax(row) / qmax          (fp32 division, absmax exact)
//   q     = encode(clamp(x / scale, -qmax, qmax))   (x / scale correctly rounded, see RowScale)
//   rows with scale == 0 (all zero, or an underflowing absmax) store q = 0 and scale = 0.
//
// Thread layout shared by all three kernels: a group of G = 2^group_shift consecutive lanes
// (G <= 32) handles one row; lane l of the group holds vectors l, l + G, l + 2G, ... of kVec
// elements each (kIters vectors per lane, kept in registers, so the row is read from memory
// once). kVec * sizeof(T) == 16 when rows are 16-byte aligned (kVec = 1 otherwise). A warp
// holds 32 / G rows at a time and kRows such row sets (all loads are issued before the first
// reduction: kRows * kIters * 16 bytes in flight per lane), then strides over the rows by the
// whole grid (grid-stride loop: the per-thread setup is paid once, not once per 16 elements).
// kIters == 0 selects a streaming fallback for long rows (two passes over the row, the second
// one mostly from L1).
//
// Why this layout (H200 profile reasoning, docs/BENCHMARKS.md "CUDA kernels"): the kernels move
// ~100 MB in ~30 us, so they must stay under ~10 instructions per element to be memory bound.
// The previous version derived the lane/row split by runtime integer division, handled only 16
// elements per thread, and quantized each element behind two divergent branches (~30 SASS
// instructions per element); it was issue bound at ~0.69 of copy bandwidth.

#include <algorithm>
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
  int group_shift;     // log2(G): G lanes per row (set by the launcher)
};

struct DequantizeParams {
  uint8_t const* q;    // [n_rows, D] fp8 bits | int8, contiguous
  float const* scale;  // [n_rows] fp32, contiguous
  void* out;           // [n_rows, D] element type T, contiguous
  int64_t n_rows;
  int64_t D;
  int group_shift;
};

struct QuantizeGatherParams {
  void const* src;          // [B, H, T_src, D] element type T, strides below, stride(3) == 1
  int64_t src_stride_b, src_stride_h, src_stride_t;  // in elements
  int64_t const* index;     // [B, H, M] int64, contiguous, values in [-1, T_src)
  uint8_t* dst;             // [B, H, T_max, D] fp8 bits | int8, contiguous
  float* dst_scale;         // [B, H, T_max] fp32, contiguous
  int64_t H, M, T_max, offset, D;
  int64_t n_rows;           // B * H * M
  int group_shift;
};

namespace detail {

/// The scale of one row and what is needed to divide by it cheaply. x / s must be the correctly
/// rounded quotient (the CPU reference divides), but an IEEE division per element costs about
/// ten instructions and a range check. With r = 1/s correctly rounded (__frcp_rn, once per row),
/// q = RN(x * r) followed by one Markstein correction, e = fma(-s, q, x) (exact) and
/// q' = fma(e, r, q), is the correctly rounded x / s when no intermediate leaves the normal
/// range: s in [2^-100, 2^126] (so r is normal) and |x| >= 2^-100 (so e is exact; x * r <=
/// ~448 never overflows since |x| <= absmax). Checked on the host against x / s on 2.4e8 pairs
/// over that range (0 differences), and by the CUDA tests.
///
/// `fast` rows use a narrower range, s in [2^-60, 2^126], so that an element with |x| < 2^-100
/// needs no division either: then |x / s| < 2^-40 and |RN(x * r)| <= 2^-40, both far below half
/// the smallest fp8 subnormal (2^-10) and below 0.5, and of the sign of x (x * r keeps the sign
/// even when it underflows to zero), so both encode to the same signed zero (fp8 0x00 / 0x80,
/// int8 0). No clamp is needed either: |x| <= absmax gives |x / s| <= qmax * (1 + 2^-23), which
/// rounds to qmax. Other rows (zero, tiny or huge absmax, inf) take the per-element division.
struct RowScale {
  float s;        // absmax / qmax
  float r;        // RN(1 / s) when `fast`
  bool nonzero;   // s > 0
  bool fast;      // s in [2^-60, 2^126]
};

template <typename Q>
__device__ __forceinline__ RowScale make_row_scale(float amax) {
  RowScale rs;
  rs.s = amax / Q::kMax;
  rs.nonzero = rs.s > 0.0f;
  rs.fast = rs.s >= 0x1p-60f && rs.s <= 0x1p126f;
  rs.r = rs.fast ? __frcp_rn(rs.s) : 1.0f;
  return rs;
}

/// x / s, correctly rounded, for a `fast` row (no clamp needed, see RowScale).
__device__ __forceinline__ float quotient_fast(float v, RowScale const& rs) {
  float const q = __fmul_rn(v, rs.r);     // never contracted into an FMA
  float const e = fmaf(-rs.s, q, v);      // exact when |v| >= 2^-100
  float const y = fmaf(e, rs.r, q);       // correctly rounded v / s
  return fabsf(v) >= 0x1p-100f ? y : q;   // tiny v: q has the encoding of v / s (signed zero)
}

/// clamp(x / s) for any row (the reference formula, with a real division where needed).
template <typename Q>
__device__ __forceinline__ float quantize_value(float v, RowScale const& rs) {
  if (!rs.nonzero) return 0.0f;
  float y;
  if (rs.fast) {
    y = quotient_fast(v, rs);
  } else {
    y = v / rs.s;
  }
  return fminf(fmaxf(y, -Q::kMax), Q::kMax);
}

/// Encodes kVec values already divided by the scale (|y| rounds to at most qmax).
template <typename Q, int kVec>
__device__ __forceinline__ Packed<uint8_t, kVec> encode_vec(float const (&y)[kVec]) {
  Packed<uint8_t, kVec> out;
  if constexpr (kVec % 4 == 0) {
    uint32_t words[kVec / 4];
#pragma unroll
    for (int w = 0; w < kVec / 4; ++w) {
      float const* v = y + 4 * w;
      if constexpr (std::is_same_v<Q, Fp8E4M3>) {
        uint32_t const lo = Fp8E4M3::encode2(v[0], v[1]);
        uint32_t const hi = Fp8E4M3::encode2(v[2], v[3]);
        words[w] = __byte_perm(lo, hi, 0x5410);
      } else {
        // Int8: RN-even to an integer by adding 1.5 * 2^23 (|v| < 2^22); the low byte of the
        // sum's bits is the two's complement int8 (same as rintf + cast, on the FMA pipe).
        uint32_t b[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) b[k] = __float_as_uint(__fadd_rn(v[k], 12582912.0f));
        words[w] = __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
      }
    }
    memcpy(&out, words, sizeof(out));
  } else {
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = Q::encode(y[k]);
  }
  return out;
}

/// The kVec elements of one loaded vector as floats (exact). bf16 / fp16 pairs are unpacked from
/// 32-bit words (bf16: one shift or mask per element), not element by element from 16-bit lanes.
template <typename T, int kVec>
__device__ __forceinline__ void unpack_floats(byte_vec_t<kVec * sizeof(T)> const& raw, float (&out)[kVec]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> && kVec % 2 == 0) {
    uint32_t w[kVec / 2];
    memcpy(w, &raw, sizeof(w));
#pragma unroll
    for (int i = 0; i < kVec / 2; ++i) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  } else if constexpr (std::is_same_v<T, __half> && kVec % 2 == 0) {
    __half2 h[kVec / 2];
    memcpy(h, &raw, sizeof(h));
#pragma unroll
    for (int i = 0; i < kVec / 2; ++i) {
      float2 const f = __half22float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {
    Packed<T, kVec> p;
    memcpy(&p, &raw, sizeof(p));
#pragma unroll
    for (int k = 0; k < kVec; ++k) out[k] = to_float(p.v[k]);
  }
}

/// Quantizes kRows rows of D elements; lane `lane` of each row's G = 2^shift lanes. src[r] ==
/// nullptr writes a zero row (a hole). All lanes of the warp must call this (it shuffles);
/// rows with active[r] == false only take part in the reductions.
template <typename T, typename Q, int kVec, int kIters, int kRows>
__device__ __forceinline__ void quantize_rows(T const* const (&src)[kRows], uint8_t* const (&dst)[kRows],
                                              float* const (&scale_out)[kRows], bool const (&active)[kRows],
                                              int64_t D, int lane, int shift) {
  static_assert(kVec % 2 == 0 || kVec == 1, "kVec must be 1 or even");
  int const G = 1 << shift;
  if constexpr (kIters > 0) {
    // 1. Every load of the kRows rows first (raw bytes; zeros past the row or for holes).
    using V = byte_vec_t<kVec * sizeof(T)>;
    V raw[kRows][kIters];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int it = 0; it < kIters; ++it) {
        int64_t const col = (static_cast<int64_t>(it) * G + lane) * kVec;
        raw[r][it] = V{};
        if (active[r] && src[r] != nullptr && col < D) raw[r][it] = *reinterpret_cast<V const*>(src[r] + col);
      }
    }
    // 2. Per row: absmax over the group, scale, encode, store.
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float vals[kIters][kVec];
      float amax = 0.0f;
#pragma unroll
      for (int it = 0; it < kIters; ++it) {
        unpack_floats<T, kVec>(raw[r][it], vals[it]);
#pragma unroll
        for (int k = 0; k < kVec; ++k) amax = fmaxf(amax, fabsf(vals[it][k]));
      }
      amax = group_max(amax, G);
      RowScale const rs = make_row_scale<Q>(amax);
      if (!active[r]) continue;
      if (lane == 0) *scale_out[r] = rs.nonzero ? rs.s : 0.0f;
      if (rs.fast) {
#pragma unroll
        for (int it = 0; it < kIters; ++it) {
          int64_t const col = (static_cast<int64_t>(it) * G + lane) * kVec;
          if (col < D) {
            float y[kVec];
#pragma unroll
            for (int k = 0; k < kVec; ++k) y[k] = quotient_fast(vals[it][k], rs);
            store_packed<uint8_t, kVec>(dst[r] + col, encode_vec<Q, kVec>(y));
          }
        }
      } else {
#pragma unroll
        for (int it = 0; it < kIters; ++it) {
          int64_t const col = (static_cast<int64_t>(it) * G + lane) * kVec;
          if (col < D) {
            float y[kVec];
#pragma unroll
            for (int k = 0; k < kVec; ++k) y[k] = quantize_value<Q>(vals[it][k], rs);
            store_packed<uint8_t, kVec>(dst[r] + col, encode_vec<Q, kVec>(y));
          }
        }
      }
    }
  } else {
    // Streaming fallback for long rows (kRows rows one after the other).
    int64_t const step = static_cast<int64_t>(G) * kVec;
#pragma unroll 1
    for (int r = 0; r < kRows; ++r) {
      float amax = 0.0f;
      if (active[r] && src[r] != nullptr) {
        for (int64_t col = static_cast<int64_t>(lane) * kVec; col < D; col += step) {
          float v[kVec];
          unpack_floats<T, kVec>(*reinterpret_cast<byte_vec_t<kVec * sizeof(T)> const*>(src[r] + col), v);
#pragma unroll
          for (int k = 0; k < kVec; ++k) amax = fmaxf(amax, fabsf(v[k]));
        }
      }
      amax = group_max(amax, G);
      RowScale const rs = make_row_scale<Q>(amax);
      if (!active[r]) continue;
      if (lane == 0) *scale_out[r] = rs.nonzero ? rs.s : 0.0f;
      for (int64_t col = static_cast<int64_t>(lane) * kVec; col < D; col += step) {
        float y[kVec];
        if (src[r] != nullptr && rs.nonzero) {
          float v[kVec];
          unpack_floats<T, kVec>(*reinterpret_cast<byte_vec_t<kVec * sizeof(T)> const*>(src[r] + col), v);
#pragma unroll
          for (int k = 0; k < kVec; ++k) y[k] = quantize_value<Q>(v[k], rs);
        } else {
#pragma unroll
          for (int k = 0; k < kVec; ++k) y[k] = 0.0f;
        }
        store_packed<uint8_t, kVec>(dst[r] + col, encode_vec<Q, kVec>(y));
      }
    }
  }
}

/// kVec stored values of one row (raw bytes) -> T, as the CPU: fp32 product q * s, then round to
/// nearest even. Decoded from 32-bit words: fp8 pairs by one cvt each (e4m3x2 -> f16x2, exact),
/// int8 by the 2^23 trick (bits 0x4B0000xx are 2^23 + xx; exact), not byte by byte.
template <typename T, typename Q, int kVec>
__device__ __forceinline__ Packed<T, kVec> decode_vec(byte_vec_t<kVec> const& raw, float s) {
  Packed<T, kVec> o;
  if constexpr (kVec % 4 == 0) {
    uint32_t w[kVec / 4];
    memcpy(w, &raw, sizeof(w));
#pragma unroll
    for (int i = 0; i < kVec / 4; ++i) {
      if constexpr (std::is_same_v<Q, Fp8E4M3>) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          __half2_raw const h2 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w[i] >> (16 * h)), __NV_E4M3);
          float2 const f = __half22float2(__half2(h2));
          o.v[4 * i + 2 * h] = from_float<T>(f.x * s);
          o.v[4 * i + 2 * h + 1] = from_float<T>(f.y * s);
        }
      } else {
        uint32_t const x = w[i] ^ 0x80808080u;  // int8 b -> b + 128 as unsigned bytes
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          float const q = __uint_as_float(__byte_perm(x, 0x4B000000u, 0x7650u | k)) - 8388736.0f;  // 2^23 + 128
          o.v[4 * i + k] = from_float<T>(q * s);
        }
      }
    }
  } else {
    Packed<uint8_t, kVec> in;
    memcpy(&in, &raw, sizeof(in));
#pragma unroll
    for (int k = 0; k < kVec; ++k) o.v[k] = from_float<T>(Q::decode(in.v[k]) * s);
  }
  return o;
}

/// Per-thread position in the row layout: the warp's first row set, this lane's row inside a
/// set, and the grid-stride step (rows_per_warp_set = 32 / G rows per set, kRows sets per step).
struct RowLoop {
  int lane;            // lane inside the row's group
  int group;           // row inside the warp's row set
  int rows_per_set;    // 32 / G
  int64_t first;       // first row of this warp's first step
  int64_t step;        // rows between two steps of one warp

  template <int kRows>
  __device__ __forceinline__ static RowLoop make(int shift) {
    RowLoop l;
    int const warp_lane = threadIdx.x & 31;
    l.lane = warp_lane & ((1 << shift) - 1);
    l.group = warp_lane >> shift;
    l.rows_per_set = 32 >> shift;
    int64_t const warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    int64_t const n_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
    l.first = warp * l.rows_per_set * kRows;
    l.step = n_warps * l.rows_per_set * kRows;
    return l;
  }
  /// Row of set r in the step starting at `base`.
  __device__ __forceinline__ int64_t row(int64_t base, int r) const {
    return base + static_cast<int64_t>(r) * rows_per_set + group;
  }
};

}  // namespace detail

constexpr int kQuantThreads = 256;

namespace detail {

/// The grid-stride row loop of both quantizing kernels: for each step, the kRows rows of the
/// warp's groups get their addresses from `rows(row, active, src, dst, scale)` (`row` is only
/// meaningful when `active`; a null src quantizes a zero row), then quantize_rows.
template <typename T, typename Q, int kVec, int kIters, int kRows, typename RowAddresses>
__device__ __forceinline__ void quantize_row_loop(int64_t n_rows, int64_t D, int group_shift, RowAddresses&& rows) {
  RowLoop const l = RowLoop::make<kRows>(group_shift);
  for (int64_t base = l.first; base < n_rows; base += l.step) {  // warp-uniform
    T const* src[kRows];
    uint8_t* dst[kRows];
    float* scale[kRows];
    bool active[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      int64_t const row = l.row(base, r);
      active[r] = row < n_rows;
      rows(active[r] ? row : 0, active[r], src[r], dst[r], scale[r]);
    }
    quantize_rows<T, Q, kVec, kIters, kRows>(src, dst, scale, active, D, l.lane, group_shift);
  }
}

template <typename T, typename Q, int kVec, int kIters, int kRows>
__device__ __forceinline__ void quantize_per_token_body(QuantizeParams const& p) {
  quantize_row_loop<T, Q, kVec, kIters, kRows>(
      p.n_rows, p.D, p.group_shift, [&](int64_t rr, bool, T const*& src, uint8_t*& dst, float*& scale) {
        src = static_cast<T const*>(p.x) + p.rows.offset(rr);
        dst = p.q + rr * p.D;
        scale = p.scale + rr;
      });
}

template <typename T, typename Q, int kVec, int kIters, int kRows>
__device__ __forceinline__ void quantize_gather_body(QuantizeGatherParams const& p) {
  quantize_row_loop<T, Q, kVec, kIters, kRows>(
      p.n_rows, p.D, p.group_shift, [&](int64_t rr, bool active, T const*& src, uint8_t*& dst, float*& scale) {
        int64_t const bh = rr / p.M, m = rr - bh * p.M;  // rr = (b, h, m)
        int64_t const b = bh / p.H, h = bh - b * p.H;
        int64_t const t = active ? p.index[rr] : -1;
        src = t < 0 ? nullptr
                    : static_cast<T const*>(p.src) + b * p.src_stride_b + h * p.src_stride_h + t * p.src_stride_t;
        int64_t const slot = bh * p.T_max + p.offset + m;  // destination row in [B * H * T_max)
        dst = p.dst + slot * p.D;
        scale = p.dst_scale + slot;
      });
}

template <typename T, typename Q, int kVec, int kIters, int kRows>
__device__ __forceinline__ void dequantize_per_token_body(DequantizeParams const& p) {
  RowLoop const l = RowLoop::make<kRows>(p.group_shift);
  int const G = 1 << p.group_shift;
  for (int64_t base = l.first; base < p.n_rows; base += l.step) {
    if constexpr (kIters > 0) {
      // Every load of the kRows rows before the first store.
      byte_vec_t<kVec> in[kRows][kIters];
      float s[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        int64_t const row = l.row(base, r);
        bool const active = row < p.n_rows;
        s[r] = active ? p.scale[row] : 0.0f;
#pragma unroll
        for (int it = 0; it < kIters; ++it) {
          int64_t const col = (static_cast<int64_t>(it) * G + l.lane) * kVec;
          if (active && col < p.D) in[r][it] = *reinterpret_cast<byte_vec_t<kVec> const*>(p.q + row * p.D + col);
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        int64_t const row = l.row(base, r);
        if (row >= p.n_rows) continue;
        T* const out = static_cast<T*>(p.out) + row * p.D;
#pragma unroll
        for (int it = 0; it < kIters; ++it) {
          int64_t const col = (static_cast<int64_t>(it) * G + l.lane) * kVec;
          if (col < p.D) store_packed<T, kVec>(out + col, decode_vec<T, Q, kVec>(in[r][it], s[r]));
        }
      }
    } else {
#pragma unroll 1
      for (int r = 0; r < kRows; ++r) {
        int64_t const row = l.row(base, r);
        if (row >= p.n_rows) continue;
        float const s = p.scale[row];
        uint8_t const* q = p.q + row * p.D;
        T* const out = static_cast<T*>(p.out) + row * p.D;
        for (int64_t col = static_cast<int64_t>(l.lane) * kVec; col < p.D; col += static_cast<int64_t>(G) * kVec) {
          store_packed<T, kVec>(out + col, decode_vec<T, Q, kVec>(*reinterpret_cast<byte_vec_t<kVec> const*>(q + col), s));
        }
      }
    }
  }
}

}  // namespace detail

constexpr int kQuantMinCtasPerSm = 4;  // caps registers at 64 per thread: 32 warps per SM

// grid: (<= ceil(n_rows / (256 / G * kRows))), grid-stride over rows; block: 256 -- G lanes per row
template <typename T, typename Q, int kVec, int kIters, int kRows>
__global__ void __launch_bounds__(kQuantThreads, kQuantMinCtasPerSm) quantize_per_token_kernel(QuantizeParams p) {
  detail::quantize_per_token_body<T, Q, kVec, kIters, kRows>(p);
}

// grid: (<= ceil(B * H * M / (256 / G * kRows))), grid-stride; block: 256 -- G lanes per gathered row
template <typename T, typename Q, int kVec, int kIters, int kRows>
__global__ void __launch_bounds__(kQuantThreads, kQuantMinCtasPerSm) quantize_gather_kernel(QuantizeGatherParams p) {
  detail::quantize_gather_body<T, Q, kVec, kIters, kRows>(p);
}

// grid: (<= ceil(n_rows / (256 / G * kRows))), grid-stride; block: 256 -- G lanes per row; no reduction
template <typename T, typename Q, int kVec, int kIters, int kRows>
__global__ void __launch_bounds__(kQuantThreads, kQuantMinCtasPerSm) dequantize_per_token_kernel(DequantizeParams p) {
  detail::dequantize_per_token_body<T, Q, kVec, kIters, kRows>(p);
}

// ---------------------------------------------------------------------------------------------
// Host side: launch-shape selection and launchers returning cudaError_t.

/// Vectors per lane held in registers (kIters) and row sets per warp step (kRows) of the
/// launched kernels; rows longer than 32 lanes x kRowIters vectors use the streaming fallback.
constexpr int kRowIters = 4;
constexpr int kRowSets = 1;
/// Grid-stride grids are capped at this many CTAs per SM (each then loops over rows).
constexpr int kRowCtasPerSm = 8;

/// How a row of D elements is split: G = 2^group_shift lanes per row, `iters` vectors of `vec`
/// elements per lane (0: streaming loop with G = 32). G is the smallest power of two that
/// covers the row's vectors with kRowIters vectors per lane (64 bytes in flight per lane for
/// 16-byte vectors: for D = 128 bf16, G = 4 and a warp holds 8 rows).
struct RowLaunchShape {
  int group_shift = 0;
  int iters = kRowIters;  // kRowIters, or 0 for the streaming fallback
};

inline RowLaunchShape choose_row_shape(int64_t D, int vec) {
  int64_t const n_vec = ceil_div<int64_t>(D, vec);
  RowLaunchShape s;
  while (s.group_shift < 5 && (int64_t{1} << s.group_shift) * kRowIters < n_vec) ++s.group_shift;
  s.iters = (int64_t{1} << s.group_shift) * kRowIters >= n_vec ? kRowIters : 0;
  return s;
}

namespace detail {

inline bool aligned_to(void const* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

/// Grid of a grid-stride row kernel: enough CTAs for one step of every warp over all rows,
/// capped at kRowCtasPerSm per SM.
inline int64_t row_grid(int64_t n_rows, int group_shift, int rows_sets) {
  int64_t const rows_per_cta = static_cast<int64_t>(kQuantThreads / 32) * (32 >> group_shift) * rows_sets;
  int64_t grid = ceil_div<int64_t>(n_rows, rows_per_cta);
  int device = 0, n_sm = 0;
  if (cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device) == cudaSuccess && n_sm > 0) {
    grid = std::min<int64_t>(grid, static_cast<int64_t>(n_sm) * kRowCtasPerSm);
  } else {
    (void)cudaGetLastError();  // clear a sticky query error; the uncapped grid is still correct
    grid = std::min<int64_t>(grid, 0x7fffffff);
  }
  return grid;
}

/// The one launch path of the three row kernels: picks the vector width (16 bytes when `wide`,
/// else 1 element) and the row shape, sets `params.group_shift`, and calls
/// launch(kernel_tag<kVec, kIters>, grid) with compile-time kVec / kIters.
template <int kVecWide, typename Params, typename Launch>
cudaError_t launch_rows(Params& params, bool wide, Launch&& launch) {
  if (params.n_rows == 0 || params.D == 0) return cudaSuccess;
  RowLaunchShape const shape = choose_row_shape(params.D, wide ? kVecWide : 1);
  params.group_shift = shape.group_shift;
  int64_t const grid = row_grid(params.n_rows, shape.group_shift, kRowSets);
  auto go = [&](auto vec, auto iters) -> cudaError_t {
    launch(vec, iters, static_cast<unsigned>(grid));
    return cudaGetLastError();
  };
  using Wide = std::integral_constant<int, kVecWide>;
  using One = std::integral_constant<int, 1>;
  using Iters = std::integral_constant<int, kRowIters>;
  using Stream = std::integral_constant<int, 0>;
  if (shape.iters == kRowIters) return wide ? go(Wide{}, Iters{}) : go(One{}, Iters{});
  return wide ? go(Wide{}, Stream{}) : go(One{}, Stream{});
}

}  // namespace detail

/// Launches quantize_per_token_kernel. `p.group_shift` is set here.
template <typename T, typename Q>
cudaError_t launch_quantize_per_token(QuantizeParams p, cudaStream_t stream) {
  constexpr int kVecWide = 16 / sizeof(T);
  bool wide = p.D % kVecWide == 0 && detail::aligned_to(p.x, 16) && detail::aligned_to(p.q, kVecWide);
  for (int d = 0; d < p.rows.n_dims; ++d) wide = wide && p.rows.stride[d] % kVecWide == 0;
  return detail::launch_rows<kVecWide>(p, wide, [&](auto vec, auto iters, unsigned grid) {
    quantize_per_token_kernel<T, Q, decltype(vec)::value, decltype(iters)::value, kRowSets>
        <<<grid, kQuantThreads, 0, stream>>>(p);
  });
}

/// Launches quantize_gather_kernel. `p.group_shift` is set here.
template <typename T, typename Q>
cudaError_t launch_quantize_gather(QuantizeGatherParams p, cudaStream_t stream) {
  constexpr int kVecWide = 16 / sizeof(T);
  bool const wide = p.D % kVecWide == 0 && detail::aligned_to(p.src, 16) && detail::aligned_to(p.dst, kVecWide) &&
                    p.src_stride_b % kVecWide == 0 && p.src_stride_h % kVecWide == 0 &&
                    p.src_stride_t % kVecWide == 0;
  return detail::launch_rows<kVecWide>(p, wide, [&](auto vec, auto iters, unsigned grid) {
    quantize_gather_kernel<T, Q, decltype(vec)::value, decltype(iters)::value, kRowSets>
        <<<grid, kQuantThreads, 0, stream>>>(p);
  });
}

/// Launches dequantize_per_token_kernel. `p.group_shift` is set here.
template <typename T, typename Q>
cudaError_t launch_dequantize_per_token(DequantizeParams p, cudaStream_t stream) {
  constexpr int kVecWide = 16 / sizeof(T);
  bool const wide = p.D % kVecWide == 0 && detail::aligned_to(p.out, 16) && detail::aligned_to(p.q, kVecWide);
  return detail::launch_rows<kVecWide>(p, wide, [&](auto vec, auto iters, unsigned grid) {
    dequantize_per_token_kernel<T, Q, decltype(vec)::value, decltype(iters)::value, kRowSets>
        <<<grid, kQuantThreads, 0, stream>>>(p);
  });
}

}  // namespace akcb::kernels
