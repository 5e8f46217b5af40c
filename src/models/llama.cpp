// Llama 3 / Qwen 3 forward on ATen ops (see llama.hpp). Numerics follow transformers:
// RMSNorm in fp32 then weight * x in the model dtype, RoPE tables in fp32 cast to the model
// dtype, rotate_half convention, logits of lm_head in the model dtype returned as fp32.
#include <akcb/models/llama.hpp>

#include <akcb/error.hpp>
#include <akcb/models/safetensors.hpp>
#include <akcb/shapes.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <utility>

namespace akcb::models {
namespace {

/// HF LlamaRMSNorm / Qwen3RMSNorm: normalize in fp32, cast back, then scale in the input dtype.
at::Tensor rms_norm(at::Tensor const& x /*[..., N] dtype*/, at::Tensor const& w /*[N] dtype*/, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor const var = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * at::rsqrt(var + eps);
  return w * xf.to(x.scalar_type());
}

at::Tensor rotate_half(at::Tensor const& x /*[B, H, S, D]*/) {
  int64_t const half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

std::string layer_prefix(int64_t l) { return "model.layers." + std::to_string(l) + "."; }

}  // namespace

std::vector<std::string> expected_weight_names(ModelConfig const& c) {
  std::vector<std::string> names{"model.embed_tokens.weight", "model.norm.weight"};
  if (!c.tie_word_embeddings) names.emplace_back("lm_head.weight");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    std::string const p = layer_prefix(l);
    for (char const* s : {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                          "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"})
      names.push_back(p + s);
    if (c.arch == ModelArch::kQwen3) {
      names.push_back(p + "self_attn.q_norm.weight");
      names.push_back(p + "self_attn.k_norm.weight");
    }
  }
  return names;
}

at::Tensor LlamaModel::rope_inv_freq(ModelConfig const& c) {
  // transformers' _compute_default_rope_parameters / _compute_llama3_parameters, op for op.
  int64_t const dim = c.head_dim;
  at::Tensor const exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv_freq = 1.0 / at::pow(c.rope.theta, exponents);
  if (c.rope.type == RopeType::kLlama3) {
    double const factor = c.rope.factor;
    double const low = c.rope.low_freq_factor;
    double const high = c.rope.high_freq_factor;
    double const old_ctx = static_cast<double>(c.rope.original_max_position_embeddings);
    double const low_freq_wavelen = old_ctx / low;
    double const high_freq_wavelen = old_ctx / high;
    at::Tensor const wavelen = (2 * M_PI) / inv_freq;
    at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
    at::Tensor const smooth = (old_ctx / wavelen - low) / (high - low);
    at::Tensor const smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
    at::Tensor const medium = at::logical_not(wavelen < high_freq_wavelen) & at::logical_not(wavelen > low_freq_wavelen);
    inv_freq = at::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

LlamaModel LlamaModel::load(std::string const& model_dir, LoadOptions const& opts) {
  ModelConfig config = ModelConfig::load(model_dir);
  SafetensorsCheckpoint const ckpt = SafetensorsCheckpoint::open(model_dir);
  return from_checkpoint(std::move(config), ckpt, opts);
}

void LlamaModel::place(LoadOptions const& opts, c10::ScalarType checkpoint_dtype) {
  // Normalize "cuda" to "cuda:<current>": tensors report an indexed device, and caches compare devices.
  device_ = at::empty({0}, at::TensorOptions().device(opts.device)).device();
  if (opts.dtype) {
    dtype_ = *opts.dtype;
  } else if (device_.is_cpu()) {
    dtype_ = at::kFloat;
  } else {
    dtype_ = checkpoint_dtype == at::kFloat ? at::kBFloat16 : checkpoint_dtype;
  }
  AKCB_CHECK(dtype_ == at::kFloat || dtype_ == at::kBFloat16 || dtype_ == at::kHalf,
             "LlamaModel: compute dtype must be float32, bfloat16 or float16, got ", c10::toString(dtype_));
}

LlamaModel LlamaModel::from_checkpoint(ModelConfig config, SafetensorsCheckpoint const& ckpt, LoadOptions const& opts) {
  LlamaModel m;
  m.place(opts, config.dtype);
  ModelConfig const& c = config;
  ckpt.require(expected_weight_names(c));

  int64_t const hid = c.hidden_size;
  int64_t const D = c.head_dim;
  int64_t const I = c.intermediate_size;
  auto load = [&](std::string const& name, std::vector<int64_t> const& shape) {
    return ckpt.load(name, m.dtype_, m.device_, shape);
  };
  m.embed_tokens_ = load("model.embed_tokens.weight", {c.vocab_size, hid});
  m.final_norm_ = load("model.norm.weight", {hid});
  // Tied: transformers ties lm_head to the embeddings and ignores any stored lm_head.weight.
  m.lm_head_ = c.tie_word_embeddings ? m.embed_tokens_ : load("lm_head.weight", {c.vocab_size, hid});
  m.layers_.reserve(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    std::string const p = layer_prefix(l);
    LlamaLayerWeights w;
    w.input_norm = load(p + "input_layernorm.weight", {hid});
    w.post_norm = load(p + "post_attention_layernorm.weight", {hid});
    w.qkv_proj = at::cat({load(p + "self_attn.q_proj.weight", {c.n_heads * D, hid}),
                          load(p + "self_attn.k_proj.weight", {c.n_heads_kv * D, hid}),
                          load(p + "self_attn.v_proj.weight", {c.n_heads_kv * D, hid})},
                         0);
    w.o_proj = load(p + "self_attn.o_proj.weight", {hid, c.n_heads * D});
    w.gate_up_proj = at::cat({load(p + "mlp.gate_proj.weight", {I, hid}), load(p + "mlp.up_proj.weight", {I, hid})}, 0);
    w.down_proj = load(p + "mlp.down_proj.weight", {hid, I});
    if (c.arch == ModelArch::kQwen3) {
      w.q_norm = load(p + "self_attn.q_norm.weight", {D});
      w.k_norm = load(p + "self_attn.k_norm.weight", {D});
    }
    m.layers_.push_back(std::move(w));
  }
  m.inv_freq_ = rope_inv_freq(c).to(m.device_);
  m.config_ = std::move(config);
  return m;
}

LlamaModel LlamaModel::from_config(ModelConfig config, LoadOptions const& opts, double init_std) {
  ModelConfig const& c = config;
  for (auto [name, v] : {std::pair<char const*, int64_t>{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads},
                         {"n_heads_kv", c.n_heads_kv}, {"head_dim", c.head_dim}})
    AKCB_CHECK(v > 0, "LlamaModel::from_config: ", name, " must be > 0, got ", v);
  AKCB_CHECK(c.n_heads % c.n_heads_kv == 0, "LlamaModel::from_config: n_heads (", c.n_heads,
             ") must be a multiple of n_heads_kv (", c.n_heads_kv, ")");
  AKCB_CHECK(c.head_dim % 2 == 0, "LlamaModel::from_config: head_dim must be even (RoPE), got ", c.head_dim);
  AKCB_CHECK(std::isfinite(init_std) && init_std >= 0, "LlamaModel::from_config: init_std must be finite and >= 0, got ",
             init_std);
  LlamaModel m;
  m.place(opts, config.dtype);
  at::TensorOptions const to = at::TensorOptions().device(m.device_).dtype(m.dtype_);
  auto normal = [&](std::vector<int64_t> const& shape) { return at::empty(shape, to).normal_(0.0, init_std); };
  auto ones = [&](int64_t n) { return at::ones({n}, to); };
  int64_t const hid = c.hidden_size;
  int64_t const D = c.head_dim;
  int64_t const I = c.intermediate_size;
  m.embed_tokens_ = normal({c.vocab_size, hid});
  m.final_norm_ = ones(hid);
  m.lm_head_ = c.tie_word_embeddings ? m.embed_tokens_ : normal({c.vocab_size, hid});
  m.layers_.reserve(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LlamaLayerWeights w;
    w.input_norm = ones(hid);
    w.post_norm = ones(hid);
    w.qkv_proj = normal({(c.n_heads + 2 * c.n_heads_kv) * D, hid});
    w.o_proj = normal({hid, c.n_heads * D});
    w.gate_up_proj = normal({2 * I, hid});
    w.down_proj = normal({hid, I});
    if (c.arch == ModelArch::kQwen3) {
      w.q_norm = ones(D);
      w.k_norm = ones(D);
    }
    m.layers_.push_back(std::move(w));
  }
  m.inv_freq_ = rope_inv_freq(c).to(m.device_);
  m.config_ = std::move(config);
  return m;
}

int64_t LlamaModel::weight_bytes() const {
  int64_t n = embed_tokens_.nbytes() + final_norm_.nbytes() + inv_freq_.nbytes();
  if (!lm_head_.is_same(embed_tokens_)) n += lm_head_.nbytes();  // tied: one tensor
  for (auto const& w : layers_) {
    for (at::Tensor const* t : {&w.input_norm, &w.qkv_proj, &w.o_proj, &w.q_norm, &w.k_norm, &w.post_norm,
                                &w.gate_up_proj, &w.down_proj})
      if (t->defined()) n += t->nbytes();
  }
  return n;
}

at::Tensor LlamaModel::forward(at::Tensor const& ids, int64_t start_pos, AttentionFn const& attend,
                               LogitsMode mode) const {
  ModelConfig const& c = config_;
  ShapeEnv env;
  env.check(ids, {"B", "S"}, "ids");
  AKCB_CHECK(ids.scalar_type() == at::kLong, "LlamaModel::forward: ids must be int64, got ", ids.scalar_type());
  int64_t const B = env["B"];
  int64_t const S = env["S"];
  AKCB_CHECK(B > 0 && S > 0, "LlamaModel::forward: ids must be non-empty, got shape ", ids.sizes());
  AKCB_CHECK(start_pos >= 0, "LlamaModel::forward: start_pos must be >= 0, got ", start_pos);
  AKCB_CHECK(static_cast<bool>(attend), "LlamaModel::forward: no attention function");
  {
    auto const [lo, hi] = at::aminmax(ids);
    int64_t const lo_v = lo.item<int64_t>();
    int64_t const hi_v = hi.item<int64_t>();
    AKCB_CHECK(lo_v >= 0 && hi_v < c.vocab_size, "LlamaModel::forward: token ids must be in [0, ", c.vocab_size,
               "), got range [", lo_v, ", ", hi_v, "]");
  }
  int64_t const Hq = c.n_heads;
  int64_t const Hkv = c.n_heads_kv;
  int64_t const D = c.head_dim;
  double const eps = c.rms_norm_eps;

  // RoPE tables at absolute positions [start_pos, start_pos + S): transformers computes
  // position(float) * inv_freq in fp32, cat(freqs, freqs), cos/sin, then casts to the model dtype.
  at::Tensor const pos = at::arange(start_pos, start_pos + S, at::TensorOptions().dtype(at::kLong).device(device_))
                             .to(at::kFloat);                                       // [S] fp32
  at::Tensor const freqs = pos.unsqueeze(-1) * inv_freq_.unsqueeze(0);              // [S, D/2] fp32
  at::Tensor const emb = at::cat({freqs, freqs}, -1);                               // [S, D] fp32
  at::Tensor const cos = emb.cos().to(dtype_).view({1, 1, S, D});                   // [1, 1, S, D] dtype
  at::Tensor const sin = emb.sin().to(dtype_).view({1, 1, S, D});                   // [1, 1, S, D] dtype

  at::Tensor h = at::embedding(embed_tokens_, ids.to(device_));                     // [B, S, hidden] dtype
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LlamaLayerWeights const& w = layers_[l];
    at::Tensor const x = rms_norm(h, w.input_norm, eps);
    at::Tensor const qkv = at::linear(x, w.qkv_proj);                               // [B, S, (Hq + 2 Hkv) D]
    at::Tensor q = qkv.narrow(-1, 0, Hq * D).view({B, S, Hq, D});
    at::Tensor k = qkv.narrow(-1, Hq * D, Hkv * D).view({B, S, Hkv, D});
    at::Tensor v = qkv.narrow(-1, (Hq + Hkv) * D, Hkv * D).view({B, S, Hkv, D});
    if (c.arch == ModelArch::kQwen3) {
      q = rms_norm(q, w.q_norm, eps);
      k = rms_norm(k, w.k_norm, eps);
    }
    q = q.transpose(1, 2);                                                          // [B, Hq, S, D]
    k = k.transpose(1, 2);                                                          // [B, Hkv, S, D]
    v = v.transpose(1, 2).contiguous();                                             // [B, Hkv, S, D]
    q = (q * cos + rotate_half(q) * sin).contiguous();
    k = (k * cos + rotate_half(k) * sin).contiguous();
    at::Tensor const o = attend(l, q, k, v, start_pos);
    env.check(o, {"B", Hq, "S", D}, "attention output");
    AKCB_CHECK(o.scalar_type() == dtype_, "LlamaModel::forward: attention output of layer ", l, " has dtype ",
               o.scalar_type(), ", expected ", dtype_);
    h = h + at::linear(o.transpose(1, 2).reshape({B, S, Hq * D}), w.o_proj);
    at::Tensor const y = rms_norm(h, w.post_norm, eps);
    at::Tensor const gu = at::linear(y, w.gate_up_proj);                            // [B, S, 2 I]
    int64_t const I = c.intermediate_size;
    h = h + at::linear(at::silu(gu.narrow(-1, 0, I)) * gu.narrow(-1, I, I), w.down_proj);
  }
  if (mode == LogitsMode::kLast) h = h.narrow(1, S - 1, 1);
  h = rms_norm(h, final_norm_, eps);
  return at::linear(h, lm_head_).to(at::kFloat);                                   // [B, S|1, V] fp32
}

}  // namespace akcb::models
