// CUDA kernels vs the CPU reference (the oracle): every akcb::ops op on random inputs, run on the
// GPU through the public API (so the routing and validation of src/ops.cpp are exercised too),
// compared with the same op on CPU copies. Quantized bytes and scales must match bit for bit;
// dequantized values too (both compute q * scale in fp32, then round to nearest even).
// Outputs are poisoned before each run. Skipped when no CUDA device is present.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <akcb/akcb.hpp>
#include <akcb/ops.hpp>

namespace {

using akcb::QuantDtype;

bool have_cuda() { return at::hasCUDA() && at::getNumGPUs() > 0; }

#define AKCB_SKIP_WITHOUT_CUDA()                                                        \
  do {                                                                                  \
    if (!have_cuda()) GTEST_SKIP() << "no CUDA device";                                 \
    if (!akcb::ops::cuda_kernels_available()) GTEST_SKIP() << "built without kernels"; \
  } while (0)

at::Device cuda_dev() { return at::Device(at::kCUDA, 0); }

/// Bitwise equality of two tensors of the same shape and dtype (NaN-safe, -0 != +0).
::testing::AssertionResult bits_equal(at::Tensor const& got, at::Tensor const& want, std::string const& what) {
  if (got.sizes() != want.sizes()) {
    return ::testing::AssertionFailure() << what << ": shape " << got.sizes() << " vs " << want.sizes();
  }
  if (got.scalar_type() != want.scalar_type()) {
    return ::testing::AssertionFailure() << what << ": dtype " << got.scalar_type() << " vs " << want.scalar_type();
  }
  at::Tensor g = got.cpu().contiguous().reshape({-1}).view(at::kByte);  // 1-D first: a 0-dim tensor has no byte view
  at::Tensor w = want.cpu().contiguous().reshape({-1}).view(at::kByte);
  at::Tensor diff = g.ne(w);
  int64_t const n_diff = diff.sum().item<int64_t>();
  if (n_diff == 0) return ::testing::AssertionSuccess();
  int64_t const first = diff.nonzero()[0][0].item<int64_t>();
  return ::testing::AssertionFailure() << what << ": " << n_diff << " of " << g.numel() << " bytes differ, first at byte "
                                       << first << " (got " << int(g[first].item<uint8_t>()) << ", want "
                                       << int(w[first].item<uint8_t>()) << ")";
}

/// Fills the CUDA caching allocator's free blocks with 0xFF bytes, so that an output allocated
/// next by an op starts out poisoned (an fp8 0xFF is NaN, an fp32 0xFFFFFFFF is NaN).
void poison_allocator(int64_t bytes) {
  at::Tensor t = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(cuda_dev()));
  t.fill_(0xFF);
}

/// Random values in several magnitudes per row, so that scales and rounding are exercised.
at::Tensor random_rows(at::IntArrayRef shape, at::ScalarType dtype, at::Generator& gen) {
  auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor x = at::randn(shape, gen, opts);
  if (x.dim() >= 1 && x.numel() > 0) {
    std::vector<int64_t> sshape(shape.begin(), shape.end());
    sshape.back() = 1;
    at::Tensor mag = at::pow(10.0, at::randint(-3, 4, sshape, gen, opts));  // per-row magnitude 1e-3..1e3
    x = x * mag;
  }
  return x.to(dtype);
}

char const* name_of(QuantDtype q) { return q == QuantDtype::kInt8 ? "int8" : "fp8"; }

// ---------------------------------------------------------------------------------------------
// TYPED_TEST over the input dtypes: special values and layouts.
template <typename T> struct DtypeOf;
template <> struct DtypeOf<float> { static constexpr at::ScalarType value = at::kFloat; };
template <> struct DtypeOf<at::BFloat16> { static constexpr at::ScalarType value = at::kBFloat16; };
template <> struct DtypeOf<at::Half> { static constexpr at::ScalarType value = at::kHalf; };

template <typename T>
class QuantTyped : public ::testing::Test {
 protected:
  void SetUp() override {
    AKCB_SKIP_WITHOUT_CUDA();
    gen_ = at::make_generator<at::CPUGeneratorImpl>(1234);
  }
  static constexpr at::ScalarType kDtype = DtypeOf<T>::value;
  at::Generator gen_;

  // Quantizes `x_cpu` on both devices, compares bytes and scales, then dequantizes both and
  // compares. Returns the CUDA dequantized tensor for further checks.
  at::Tensor check_roundtrip(at::Tensor const& x_cpu, at::Tensor const& x_cuda, QuantDtype q) {
    poison_allocator(4 * x_cpu.numel() + 4096);
    akcb::ops::QuantizedTokens want = akcb::ops::quantize_per_token(x_cpu, q);
    akcb::ops::QuantizedTokens got = akcb::ops::quantize_per_token(x_cuda, q);
    EXPECT_TRUE(got.data.is_cuda());
    EXPECT_TRUE(bits_equal(got.data, want.data, std::string("data ") + name_of(q)));
    EXPECT_TRUE(bits_equal(got.scale, want.scale, std::string("scale ") + name_of(q)));
    poison_allocator(4 * x_cpu.numel() + 4096);
    at::Tensor deq_want = akcb::ops::dequantize_per_token(want.data, want.scale, kDtype);
    at::Tensor deq_got = akcb::ops::dequantize_per_token(got.data, got.scale, kDtype);
    EXPECT_TRUE(bits_equal(deq_got, deq_want, std::string("dequantized ") + name_of(q)));
    return deq_got;
  }
};

using FloatTypes = ::testing::Types<float, at::BFloat16, at::Half>;
TYPED_TEST_SUITE(QuantTyped, FloatTypes);

TYPED_TEST(QuantTyped, ZeroRowsAndHugeValues) {
  double const huge = this->kDtype == at::kHalf ? 6.0e4 : 1.0e38;
  for (QuantDtype q : {QuantDtype::kFp8E4M3, QuantDtype::kInt8}) {
    at::Tensor x = random_rows({3, 5, 7, 128}, this->kDtype, this->gen_);
    x.select(2, 0).zero_();                    // all-zero rows
    x.select(2, 3).fill_(huge);                // saturating rows
    x.select(2, 4).select(2, 5).fill_(-huge);  // one huge value in a normal row
    x.select(2, 6).zero_();
    x.select(2, 6).select(2, 17).fill_(1e-30);  // tiny absmax (scale may underflow to a subnormal or 0)
    at::Tensor deq = this->check_roundtrip(x, x.to(cuda_dev()), q);
    EXPECT_TRUE(at::isfinite(deq.to(at::kFloat)).all().item<bool>()) << name_of(q);
  }
}

TYPED_TEST(QuantTyped, SignedZerosAndTinyElements) {
  // Normal rows (the kernels' division-free path) holding +0, -0 and elements far below the
  // row's scale (|x| < 2^-100, where the kernel uses RN(x * (1/s)) instead of the corrected
  // quotient), and rows whose scale lies in [2^-100, 2^-60) or just around 2^-60 (the per-element
  // division path and its boundary).
  for (QuantDtype q : {QuantDtype::kFp8E4M3, QuantDtype::kInt8}) {
    float const qmax = q == QuantDtype::kInt8 ? 127.0f : 448.0f;
    at::Tensor x = random_rows({2, 3, 12, 128}, at::kFloat, this->gen_);
    for (int64_t t = 0; t < 6; ++t) {
      at::Tensor row = x.select(2, t);  // [2, 3, 128]
      row.select(2, 3 + t).fill_(0.0);
      row.select(2, 40 + t).fill_(-0.0);
      row.select(2, 70 + t).fill_(1e-35);     // tiny (normal in fp32, subnormal in bf16, 0 in fp16)
      row.select(2, 90 + t).fill_(-1e-35);
      row.select(2, 100 + t).fill_(-3e-39);   // fp32 subnormal
      row.select(2, 110 + t).fill_(2e-31);    // just above 2^-100 ~ 7.9e-31 / 4
    }
    // Scales around the fast/division boundary 2^-60 and inside [2^-100, 2^-60).
    float const amax[] = {std::ldexp(1.0f, -60) * qmax, std::ldexp(1.0f, -60) * qmax * 0.999f,
                          std::ldexp(1.0f, -61) * qmax, std::ldexp(1.0f, -80) * qmax,
                          std::ldexp(1.0f, -99) * qmax, std::ldexp(1.0f, -60) * qmax * 1.001f};
    for (int64_t k = 0; k < 6; ++k) {
      at::Tensor row = x.select(2, 6 + k);
      row.copy_(at::rand({2, 3, 128}, this->gen_) * 2 - 1);
      row.mul_(amax[k]);
      row.select(2, 17).fill_(amax[k]);   // the absmax element
      row.select(2, 18).fill_(-0.0);
    }
    at::Tensor xt = x.to(this->kDtype);
    this->check_roundtrip(xt, xt.to(cuda_dev()), q);
  }
}

TYPED_TEST(QuantTyped, ManyRowsGridStride) {
  // More rows than one pass of the capped grid covers (132 SMs x 8 CTAs x 64 rows for D = 128),
  // so every warp loops; odd row counts leave partial row sets at the end.
  for (QuantDtype q : {QuantDtype::kFp8E4M3, QuantDtype::kInt8}) {
    at::Tensor x = random_rows({1, 8, 11111, 128}, this->kDtype, this->gen_);
    this->check_roundtrip(x, x.to(cuda_dev()), q);
    at::Tensor y = random_rows({3, 2, 25001, 64}, this->kDtype, this->gen_);
    this->check_roundtrip(y, y.to(cuda_dev()), q);
  }
}

TYPED_TEST(QuantTyped, NonContiguousInputs) {
  for (QuantDtype q : {QuantDtype::kFp8E4M3, QuantDtype::kInt8}) {
    // [B, T, H, D] storage viewed as [B, H, T, D]: rows contiguous, leading dims not mergeable.
    at::Tensor base = random_rows({2, 33, 4, 64}, this->kDtype, this->gen_);
    at::Tensor bt = base.to(cuda_dev()).transpose(1, 2);
    this->check_roundtrip(base.transpose(1, 2), bt, q);
    // A slice of a cache along the token dim.
    at::Tensor cache = random_rows({2, 3, 40, 128}, this->kDtype, this->gen_);
    this->check_roundtrip(cache.narrow(2, 5, 17), cache.to(cuda_dev()).narrow(2, 5, 17), q);
    // Last dim strided: the op makes a contiguous copy.
    at::Tensor tr = random_rows({6, 64, 9}, this->kDtype, this->gen_);
    this->check_roundtrip(tr.transpose(1, 2), tr.to(cuda_dev()).transpose(1, 2), q);
    // 5 leading dims that cannot be merged (more than the kernel's indexer holds).
    at::Tensor five = random_rows({2, 3, 2, 3, 2, 16}, this->kDtype, this->gen_);
    at::Tensor five_view = five.permute({4, 3, 2, 1, 0, 5});
    this->check_roundtrip(five_view, five.to(cuda_dev()).permute({4, 3, 2, 1, 0, 5}), q);
    // Misaligned start: a view that starts one element in.
    at::Tensor flat = random_rows({1, 8 * 64 + 1}, this->kDtype, this->gen_);
    at::Tensor fc = flat.to(cuda_dev());
    this->check_roundtrip(flat.narrow(1, 1, 8 * 64).view({8, 64}), fc.narrow(1, 1, 8 * 64).view({8, 64}), q);
  }
}

TYPED_TEST(QuantTyped, RowLengths) {
  // Odd D (scalar path), 1, long rows (streaming path), every vector/iteration variant.
  for (int64_t D : {1, 2, 3, 7, 8, 16, 24, 64, 65, 96, 128, 256, 512, 1000, 2048, 4096, 5000}) {
    for (QuantDtype q : {QuantDtype::kFp8E4M3, QuantDtype::kInt8}) {
      at::Tensor x = random_rows({3, 11, D}, this->kDtype, this->gen_);
      SCOPED_TRACE("D = " + std::to_string(D));
      this->check_roundtrip(x, x.to(cuda_dev()), q);
    }
  }
}

TYPED_TEST(QuantTyped, EmptyAndScalarRows) {
  for (QuantDtype q : {QuantDtype::kFp8E4M3, QuantDtype::kInt8}) {
    at::Tensor x = random_rows({2, 0, 64}, this->kDtype, this->gen_);
    auto got = akcb::ops::quantize_per_token(x.to(cuda_dev()), q);
    EXPECT_EQ(got.data.sizes(), x.sizes());
    EXPECT_EQ(got.scale.numel(), 0);
    at::Tensor v = random_rows({64}, this->kDtype, this->gen_);  // a single row, 1-D
    this->check_roundtrip(v, v.to(cuda_dev()), q);
  }
}

// ---------------------------------------------------------------------------------------------
// TEST_P over cache shapes x dtypes x quant dtypes: quantize, dequantize, quantize_gather_into_.
struct CacheShape {
  int64_t B, H, T, D;
};
void PrintTo(CacheShape const& s, std::ostream* os) {
  *os << "[B=" << s.B << ", H=" << s.H << ", T=" << s.T << ", D=" << s.D << "]";
}
using QuantCase = std::tuple<CacheShape, at::ScalarType, QuantDtype>;

class QuantShapes : public ::testing::TestWithParam<QuantCase> {
 protected:
  void SetUp() override {
    AKCB_SKIP_WITHOUT_CUDA();
    auto const& [s, dtype, q] = GetParam();
    gen_ = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(s.B * 1000003 + s.H * 1009 + s.T * 31 + s.D));
  }
  at::Generator gen_;
};

TEST_P(QuantShapes, QuantizeDequantizeMatchesCpu) {
  auto const& [s, dtype, q] = GetParam();
  at::Tensor x = random_rows({s.B, s.H, s.T, s.D}, dtype, gen_);
  if (s.T > 1) x.select(2, s.T / 2).zero_();
  poison_allocator(4 * x.numel() + 4096);
  auto want = akcb::ops::quantize_per_token(x, q);
  auto got = akcb::ops::quantize_per_token(x.to(cuda_dev()), q);
  EXPECT_TRUE(bits_equal(got.data, want.data, "data"));
  EXPECT_TRUE(bits_equal(got.scale, want.scale, "scale"));
  for (at::ScalarType out : {at::kFloat, at::kBFloat16, at::kHalf}) {
    poison_allocator(4 * x.numel() + 4096);
    EXPECT_TRUE(bits_equal(akcb::ops::dequantize_per_token(got.data, got.scale, out),
                           akcb::ops::dequantize_per_token(want.data, want.scale, out), "dequantized"));
  }
}

TEST_P(QuantShapes, QuantizeGatherIntoMatchesCpu) {
  auto const& [s, dtype, q] = GetParam();
  // src may be a non-contiguous view with stride(3) == 1: [B, T, H, D] storage transposed.
  at::Tensor base = random_rows({s.B, s.T, s.H, s.D}, dtype, gen_);
  at::Tensor src_cpu = base.transpose(1, 2);
  at::Tensor src_cuda = base.to(cuda_dev()).transpose(1, 2);
  int64_t const T_max = s.T + 9;
  for (int64_t M : {int64_t{1}, (s.T + 1) / 2, s.T}) {
    int64_t const offset = T_max - M - (M % 3);  // various offsets, the last slots included
    // Random rows (repeats allowed), some holes (-1).
    at::Tensor index = at::randint(-1, s.T, {s.B, s.H, M}, gen_, at::TensorOptions().dtype(at::kLong));
    // Poisoned destination: random bytes everywhere; slots outside [offset, offset + M) must stay.
    at::Tensor dst0 = at::randint(0, 256, {s.B, s.H, T_max, s.D}, gen_, at::TensorOptions().dtype(at::kByte));
    at::Tensor scale0 = at::randn({s.B, s.H, T_max}, gen_);
    at::ScalarType const qt = akcb::quant_scalar_type(q);
    at::Tensor dst_cpu = dst0.clone().view(qt), scale_cpu = scale0.clone();
    at::Tensor dst_cuda = dst0.to(cuda_dev()).view(qt), scale_cuda = scale0.to(cuda_dev());
    akcb::ops::quantize_gather_into_(src_cpu, index, dst_cpu, scale_cpu, offset);
    akcb::ops::quantize_gather_into_(src_cuda, index.to(cuda_dev()), dst_cuda, scale_cuda, offset);
    SCOPED_TRACE("M = " + std::to_string(M) + ", offset = " + std::to_string(offset));
    EXPECT_TRUE(bits_equal(dst_cuda, dst_cpu, "dst"));
    EXPECT_TRUE(bits_equal(scale_cuda, scale_cpu, "dst_scale"));
  }
}

std::string quant_case_name(::testing::TestParamInfo<QuantCase> const& info) {
  auto const& [s, dtype, q] = info.param;
  std::string const dt = dtype == at::kFloat ? "f32" : dtype == at::kBFloat16 ? "bf16" : "f16";
  return "B" + std::to_string(s.B) + "_H" + std::to_string(s.H) + "_T" + std::to_string(s.T) + "_D" +
         std::to_string(s.D) + "_" + dt + "_" + name_of(q);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, QuantShapes,
    ::testing::Combine(::testing::Values(CacheShape{1, 1, 1, 128},    // T = 1
                                         CacheShape{2, 8, 37, 128},   // batch > 1, odd T, Llama-3 GQA heads
                                         CacheShape{3, 2, 101, 64},   // head dim 64
                                         CacheShape{1, 4, 129, 256},  // head dim 256
                                         CacheShape{2, 3, 513, 80}),  // head dim not a power of two
                       ::testing::Values(at::kFloat, at::kBFloat16, at::kHalf),
                       ::testing::Values(QuantDtype::kFp8E4M3, QuantDtype::kInt8)),
    quant_case_name);

// ---------------------------------------------------------------------------------------------
// compact_tokens_: random sorted index sets with -1 tails, several dtypes and row sizes.
struct CompactCase {
  std::vector<int64_t> shape;  // [B, H_kv, T_max, ...]
  at::ScalarType dtype;
  int64_t K;
  double keep;  // share of the K entries that are valid (the rest are -1)
};
void PrintTo(CompactCase const& c, std::ostream* os) {
  *os << at::IntArrayRef(c.shape) << " " << c.dtype << " K=" << c.K << " keep=" << c.keep;
}

class CompactShapes : public ::testing::TestWithParam<CompactCase> {
 protected:
  void SetUp() override {
    AKCB_SKIP_WITHOUT_CUDA();
    rng_.seed(4321 + GetParam().K);
    gen_ = at::make_generator<at::CPUGeneratorImpl>(4321 + GetParam().K);
  }
  std::mt19937_64 rng_;
  at::Generator gen_;

  /// [B, H, K] int64: per (b, h) a random sorted subset of [0, T_max) of size <= K, then -1.
  /// Some rows keep an untouched prefix (index[i] == i), as after a compression that evicts late.
  at::Tensor random_index(int64_t B, int64_t H, int64_t T_max, int64_t K, double keep) {
    at::Tensor index = at::full({B, H, K}, -1, at::TensorOptions().dtype(at::kLong));
    auto acc = index.accessor<int64_t, 3>();
    std::vector<int64_t> all(T_max);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        int64_t n_valid = std::min<int64_t>(K, static_cast<int64_t>(keep * K + 0.5));
        if ((b + h) % 5 == 4) n_valid = std::uniform_int_distribution<int64_t>(0, K)(rng_);
        std::iota(all.begin(), all.end(), 0);
        int64_t const prefix = (b + h) % 3 == 1 ? std::uniform_int_distribution<int64_t>(0, n_valid)(rng_) : 0;
        std::shuffle(all.begin() + prefix, all.end(), rng_);
        std::sort(all.begin() + prefix, all.begin() + n_valid);
        for (int64_t i = 0; i < n_valid; ++i) acc[b][h][i] = all[i];
      }
    }
    return index;
  }
};

TEST_P(CompactShapes, MatchesCpu) {
  CompactCase const& c = GetParam();
  int64_t const B = c.shape[0], H = c.shape[1], T_max = c.shape[2];
  for (int rep = 0; rep < 3; ++rep) {
    at::Tensor index = random_index(B, H, T_max, c.K, c.keep);
    // Random bytes reinterpreted: every bit pattern of the dtype, NaNs included. The oracle
    // compacts the same rows as bytes ([..., elem] uint8: the contract treats rows as raw bytes,
    // and the CPU gather has no kernel for every dtype, e.g. float8); the GPU gets the typed view.
    std::vector<int64_t> byte_shape = c.shape;
    byte_shape.push_back(static_cast<int64_t>(c10::elementSize(c.dtype)));
    at::Tensor x0 = at::randint(0, 256, byte_shape, gen_, at::TensorOptions().dtype(at::kByte));
    at::Tensor x_cpu = x0.clone();
    at::Tensor x_cuda_bytes = x0.to(cuda_dev());
    at::Tensor x_cuda = x_cuda_bytes.view(c.dtype).squeeze(-1);  // c.shape, c.dtype, same storage
    ASSERT_EQ(x_cuda.sizes(), at::IntArrayRef(c.shape));
    akcb::ops::compact_tokens_(x_cpu, index);
    akcb::ops::compact_tokens_(x_cuda, index.to(cuda_dev()));
    SCOPED_TRACE("rep " + std::to_string(rep));
    EXPECT_TRUE(bits_equal(x_cuda_bytes, x_cpu, "x"));
  }
}

std::string compact_case_name(::testing::TestParamInfo<CompactCase> const& info) {
  CompactCase const& c = info.param;
  std::string n;
  for (int64_t s : c.shape) n += std::to_string(s) + "x";
  n.pop_back();
  std::string dt = c10::toString(c.dtype);
  return n + "_" + dt + "_K" + std::to_string(c.K) + "_keep" + std::to_string(static_cast<int>(c.keep * 100));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CompactShapes,
    ::testing::Values(
        CompactCase{{1, 1, 1, 128}, at::kBFloat16, 1, 1.0},            // T = 1
        CompactCase{{2, 8, 37, 128}, at::kBFloat16, 29, 0.75},         // odd T, batch > 1
        CompactCase{{2, 8, 4099, 128}, at::kBFloat16, 3075, 0.75},     // many chunks per (b, h)
        CompactCase{{1, 8, 4096, 128}, at::kBFloat16, 4096, 1.0},      // K = T_max
        CompactCase{{3, 2, 1001, 64}, at::kHalf, 700, 0.5},            // -1 tails
        CompactCase{{1, 4, 2000, 256}, at::kFloat, 1500, 0.9},         // head dim 256, fp32 rows of 1 KiB
        CompactCase{{2, 4, 3000}, at::kFloat, 2500, 0.8},              // scales: 4-byte rows
        CompactCase{{2, 4, 3000}, at::kLong, 2999, 0.95},              // positions: 8-byte rows
        CompactCase{{2, 3, 999, 128}, at::kFloat8_e4m3fn, 600, 0.7},   // quantized data
        CompactCase{{2, 3, 999, 3}, at::kChar, 800, 0.6},              // 3-byte rows (byte vectors)
        CompactCase{{1, 2, 50, 2, 3, 5}, at::kHalf, 40, 0.5},          // several trailing dims
        CompactCase{{1, 2, 9, 20000}, at::kFloat, 7, 0.6},             // 80 KB rows: row-wise fallback
        CompactCase{{1, 2, 30, 4000}, at::kFloat, 25, 0.8},            // 16 KB rows: 4 rows per chunk
        CompactCase{{2, 2, 100, 16}, at::kBFloat16, 50, 0.0},          // all -1: zero fill only
        CompactCase{{1, 8, 32768, 128}, at::kBFloat16, 24576, 1.0},    // the benchmark's shape (32k tokens)
        CompactCase{{3, 5, 3001, 80}, at::kHalf, 2222, 0.9},           // 160-byte rows: 10 vectors per row
        CompactCase{{2, 3, 5000, 6}, at::kBFloat16, 3333, 0.8}),       // 12-byte rows: 4-byte vectors, 3 per row
    compact_case_name);

TEST(CompactCuda, RepeatedCompactionsStayEqual) {
  AKCB_SKIP_WITHOUT_CUDA();
  // A cache compacted several times in a row (as decode steps do), K shrinking each time.
  std::mt19937_64 rng(99);
  int64_t const B = 1, H = 8, T_max = 8192, D = 128;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(99);
  at::Tensor x_cpu = at::randn({B, H, T_max, D}, gen).to(at::kBFloat16);
  at::Tensor x_cuda = x_cpu.to(cuda_dev());
  int64_t held = T_max;
  for (int step = 0; step < 4; ++step) {
    int64_t const K = held * 3 / 4;
    at::Tensor index = at::empty({B, H, K}, at::TensorOptions().dtype(at::kLong));
    auto acc = index.accessor<int64_t, 3>();
    std::vector<int64_t> all(held);
    for (int64_t h = 0; h < H; ++h) {
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      std::sort(all.begin(), all.begin() + K);
      for (int64_t i = 0; i < K; ++i) acc[0][h][i] = all[i];
    }
    akcb::ops::compact_tokens_(x_cpu, index);
    akcb::ops::compact_tokens_(x_cuda, index.to(cuda_dev()));
    ASSERT_TRUE(bits_equal(x_cuda, x_cpu, "step " + std::to_string(step)));
    held = K;
  }
}

TEST(CompactCuda, RejectsUnsortedIndex) {
  AKCB_SKIP_WITHOUT_CUDA();
  at::Tensor x = at::zeros({1, 1, 8, 4}, at::TensorOptions().device(cuda_dev()));
  at::Tensor index = at::tensor({3, 1}, at::TensorOptions().dtype(at::kLong)).view({1, 1, 2}).to(cuda_dev());
  EXPECT_THROW(akcb::ops::compact_tokens_(x, index), c10::Error);
}

// ---------------------------------------------------------------------------------------------
// gather_held_tokens (the materialization of a compressed layer) on CUDA against the CPU
// reference: random blocks with spare capacity, holes (-1 positions), fp8 and int8, three model
// dtypes, head dims with 16-byte vectors and without (36, 20), with and without a column map.
TEST(GatherHeldCuda, MatchesCpuBitForBit) {
  AKCB_SKIP_WITHOUT_CUDA();
  struct C {
    int64_t B, H, cap_o, used_o, cap_q, used_q, D;
  };
  std::mt19937_64 rng(17);
  for (C c : {C{1, 8, 700, 613, 900, 811, 128}, C{2, 3, 50, 37, 64, 0, 64}, C{2, 2, 40, 0, 33, 29, 256},
              C{1, 4, 90, 77, 70, 61, 36}, C{3, 1, 20, 9, 20, 11, 20}}) {
    for (auto dt : {at::kBFloat16, at::kHalf, at::kFloat}) {
      for (auto qt : {at::kFloat8_e4m3fn, at::kChar}) {
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.used_o * 7 + c.D);
        akcb::ops::HeldBlocks b;
        b.k_orig = at::randn({c.B, c.H, c.cap_o, c.D}, gen).to(dt);
        b.v_orig = at::randn({c.B, c.H, c.cap_o, c.D}, gen).to(dt);
        b.pos_orig = at::randint(-1, 5000, {c.B, c.H, c.cap_o}, gen, at::TensorOptions().dtype(at::kInt));
        b.k_quant = at::randint(0, 256, {c.B, c.H, c.cap_q, c.D}, gen, at::TensorOptions().dtype(at::kByte)).view(qt);
        b.v_quant = at::randint(0, 256, {c.B, c.H, c.cap_q, c.D}, gen, at::TensorOptions().dtype(at::kByte)).view(qt);
        if (qt == at::kFloat8_e4m3fn) {  // no NaN codes (0x7f, 0xff): the CPU and CUDA NaN payloads may differ
          b.k_quant.view(at::kByte).bitwise_and_(0xfe);
          b.v_quant.view(at::kByte).bitwise_and_(0xfe);
        }
        b.k_scale = at::rand({c.B, c.H, c.cap_q}, gen) * 0.01;
        b.v_scale = at::rand({c.B, c.H, c.cap_q}, gen) * 0.01;
        b.pos_quant = at::randint(-1, 5000, {c.B, c.H, c.cap_q}, gen, at::TensorOptions().dtype(at::kInt));
        b.used_orig = c.used_o;
        b.used_quant = c.used_q;
        int64_t const U = c.used_q + c.used_o;
        // A column map: per head a random sorted subset of the used slots (as the hole squeeze makes).
        int64_t const T = U * 3 / 4;
        at::Tensor cols = at::empty({c.B, c.H, T}, at::TensorOptions().dtype(at::kLong));
        std::vector<int64_t> all(U);
        for (int64_t bh = 0; bh < c.B * c.H; ++bh) {
          std::iota(all.begin(), all.end(), 0);
          std::shuffle(all.begin(), all.end(), rng);
          std::sort(all.begin(), all.begin() + T);
          std::copy(all.begin(), all.begin() + T, cols.view({-1, T})[bh].data_ptr<int64_t>());
        }
        akcb::ops::HeldBlocks g = b;
        for (at::Tensor* t : {&g.k_orig, &g.v_orig, &g.pos_orig, &g.k_quant, &g.v_quant, &g.k_scale, &g.v_scale,
                              &g.pos_quant})
          *t = t->to(cuda_dev());
        // The column map dense, and as the cache keeps it: a view of a wider buffer (rows strided),
        // read in place; the buffer's columns past T hold out-of-range slots that must not be read.
        at::Tensor buf = at::full({c.B, c.H, T + 7}, int64_t{1} << 40, cols.options());
        buf.narrow(2, 0, T).copy_(cols);
        at::Tensor const buf_cuda = buf.to(cuda_dev());
        for (int mode : {0, 1, 2}) {  // no cols, dense cols, strided cols
          at::Tensor const cols_cpu = mode == 0 ? at::Tensor() : mode == 1 ? cols : buf.narrow(2, 0, T);
          at::Tensor const cols_gpu =
              mode == 0 ? at::Tensor() : mode == 1 ? cols.to(cuda_dev()) : buf_cuda.narrow(2, 0, T);
          if (mode == 2) ASSERT_FALSE(cols_gpu.is_contiguous());
          akcb::ops::DenseKV const want = akcb::ops::gather_held_tokens(b, cols_cpu);
          akcb::ops::DenseKV const got = akcb::ops::gather_held_tokens(g, cols_gpu);
          std::string const what = "D " + std::to_string(c.D) + " used " + std::to_string(c.used_q) + "+" +
                                   std::to_string(c.used_o) + (mode == 0 ? " " : mode == 1 ? " cols " : " strided cols ") +
                                   c10::toString(dt) + " " + c10::toString(qt);
          ASSERT_EQ(got.k.sizes(), want.k.sizes()) << what;
          EXPECT_TRUE(bits_equal(got.k.cpu(), want.k, "k " + what));
          EXPECT_TRUE(bits_equal(got.v.cpu(), want.v, "v " + what));
          EXPECT_TRUE(bits_equal(got.pos.cpu(), want.pos, "pos " + what));
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// decode_attention on CUDA (the decode path of AdaptiveCache::attend there) against the CPU's
// scaled_dot_product_attention in fp32 on the same (rounded) inputs.
TEST(DecodeAttentionCuda, MatchesCpuSdpa) {
  AKCB_SKIP_WITHOUT_CUDA();
  struct C {
    int64_t B, Hq, Hkv, T, D;
  };
  for (C c : {C{1, 32, 8, 4097, 128}, C{2, 8, 2, 37, 64}, C{3, 4, 1, 129, 256}, C{1, 4, 4, 1, 128}}) {
    for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.T);
      at::Tensor q = at::randn({c.B, c.Hq, 1, c.D}, gen).to(dt);
      at::Tensor kb = (at::randn({c.B, c.Hkv, c.T + 9, c.D}, gen) * 2.0).to(dt);
      at::Tensor vb = at::randn({c.B, c.Hkv, c.T + 9, c.D}, gen).to(dt);
      at::Tensor got = akcb::ops::decode_attention(q.to(cuda_dev()), kb.to(cuda_dev()).narrow(2, 0, c.T),
                                                   vb.to(cuda_dev()).narrow(2, 0, c.T));
      at::Tensor want = at::scaled_dot_product_attention(q.to(at::kFloat), kb.narrow(2, 0, c.T).to(at::kFloat),
                                                         vb.narrow(2, 0, c.T).to(at::kFloat), std::nullopt, 0.0,
                                                         false, std::nullopt, /*enable_gqa=*/true);
      ASSERT_EQ(got.scalar_type(), dt);
      double const d = (got.cpu().to(at::kFloat) - want).abs().max().item<double>();
      EXPECT_LT(d, dt == at::kFloat ? 1e-4 : 5e-2) << "T " << c.T << " D " << c.D << " dtype " << dt;
    }
  }
}

// cache_attention on CUDA against the CPU's result in fp32 on the same (rounded) inputs: bf16 and
// fp16 go through FlashAttention-2 (bottom-right causal, GQA native), fp32 and D = 36 through the
// masked SDPA fallback. Strided queries (the models' layout) and keys as views of a larger block.
TEST(CacheAttentionCuda, MatchesCpu) {
  AKCB_SKIP_WITHOUT_CUDA();
  struct C {
    int64_t B, Hq, Hkv, S, T, D;
  };
  for (C c : {C{1, 32, 8, 2048, 6001, 128}, C{2, 8, 2, 37, 101, 64}, C{3, 4, 1, 129, 129, 256}, C{1, 4, 4, 1, 77, 128},
              C{2, 6, 3, 19, 50, 36}}) {
    for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.T + c.S);
      at::Tensor q = at::randn({c.B, c.S, c.Hq, c.D}, gen).to(dt).transpose(1, 2);
      at::Tensor kb = (at::randn({c.B, c.Hkv, c.T + 9, c.D}, gen) * 2.0).to(dt);
      at::Tensor vb = at::randn({c.B, c.Hkv, c.T + 9, c.D}, gen).to(dt);
      at::Tensor got = akcb::ops::cache_attention(q.to(cuda_dev()), kb.to(cuda_dev()).narrow(2, 0, c.T),
                                                    vb.to(cuda_dev()).narrow(2, 0, c.T));
      at::Tensor want = akcb::ops::cache_attention(q.to(at::kFloat), kb.narrow(2, 0, c.T).to(at::kFloat),
                                                     vb.narrow(2, 0, c.T).to(at::kFloat));
      ASSERT_EQ(got.scalar_type(), dt);
      ASSERT_EQ(got.sizes(), want.sizes());
      double const d = (got.cpu().to(at::kFloat) - want).abs().max().item<double>();
      EXPECT_LT(d, dt == at::kFloat ? 1e-4 : 3e-2) << "S " << c.S << " T " << c.T << " D " << c.D << " dtype " << dt;
    }
  }
  // Queries 2 bytes off a 16-byte boundary (a view into a wider buffer), in bf16 (flash) and fp32
  // (SDPA): the op copies them to an aligned buffer first; same result as the CPU.
  for (auto dt : {at::kBFloat16, at::kFloat}) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
    at::Tensor wide = at::randn({1, 8, 40, 65}, gen).to(dt);
    at::Tensor k = at::randn({1, 2, 90, 64}, gen).to(dt), v = at::randn({1, 2, 90, 64}, gen).to(dt);
    at::Tensor want = akcb::ops::cache_attention(wide.narrow(3, 1, 64).to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat));
    at::Tensor wide_cuda = wide.to(cuda_dev());
    at::Tensor got = akcb::ops::cache_attention(wide_cuda.narrow(3, 1, 64), k.to(cuda_dev()), v.to(cuda_dev()));
    EXPECT_LT((got.cpu().to(at::kFloat) - want).abs().max().item<double>(), dt == at::kFloat ? 1e-4 : 3e-2) << dt;
  }
}

// The cache on CUDA (kernels, decode_attention, cache_attention) against the cache on the CPU
// (references + SDPA) over two prefill chunks and 40 decode steps: `window` compresses by position
// only, so both devices keep the same tokens and the outputs must agree to the rounding of the
// dtype; `full` likewise. In bf16 the CPU runs fp32 on the same rounded inputs (neither policy
// quantizes, so both hold the same values), so the prefill chunks exercise FlashAttention-2.
TEST(AdaptiveCacheCuda, FullAndWindowMatchCpu) {
  AKCB_SKIP_WITHOUT_CUDA();
  for (auto dt : {at::kFloat, at::kBFloat16}) {
    for (auto policy : {akcb::PolicyKind::kFull, akcb::PolicyKind::kWindow}) {
      akcb::CacheConfig cfg;
      cfg.policy = policy;
      cfg.cache_size = 48;
      cfg.window_size = 8;
      akcb::CacheShape shape;
      shape.n_layers = 2;
      shape.batch = 2;
      shape.n_heads_kv = 2;
      shape.head_dim = 64;
      shape.dtype = at::kFloat;
      akcb::CacheShape shape_cuda = shape;
      shape_cuda.device = cuda_dev();
      shape_cuda.dtype = dt;
      akcb::AnyCache cpu(cfg, shape), gpu(cfg, shape_cuda);
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
      int64_t pos = 0;
      for (int step = 0; step < 42; ++step) {
        int64_t const S = step == 0 ? 70 : step == 1 ? 33 : 1;
        for (int64_t l = 0; l < 2; ++l) {
          at::Tensor q = at::randn({2, 8, S, 64}, gen).to(dt), k = at::randn({2, 2, S, 64}, gen).to(dt),
                     v = at::randn({2, 2, S, 64}, gen).to(dt);
          at::Tensor a = cpu.attend(l, q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), pos);
          at::Tensor b = gpu.attend(l, q.to(cuda_dev()), k.to(cuda_dev()), v.to(cuda_dev()), pos);
          ASSERT_EQ(b.scalar_type(), dt);
          ASSERT_LT((b.cpu().to(at::kFloat) - a).abs().max().item<double>(), dt == at::kFloat ? 1e-4 : 3e-2)
              << akcb::to_string(policy) << " " << dt << " step " << step;
        }
        cpu.commit();
        gpu.commit();
        pos += S;
      }
      EXPECT_EQ(cpu.stats().total.n_original, gpu.stats().total.n_original);
      EXPECT_EQ(cpu.stats().total.n_evicted, gpu.stats().total.n_evicted);
      if (policy == akcb::PolicyKind::kWindow) EXPECT_GT(cpu.stats().total.n_evicted, 0);
    }
  }
}

}  // namespace
