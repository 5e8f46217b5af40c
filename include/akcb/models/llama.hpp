#pragma once
/// \file llama.hpp
/// The decoder forward of Llama 3 (model_type `llama`) and Qwen 3 (`qwen3`) on ATen ops:
/// embeddings, RMSNorm (fp32 like HF), RoPE (default / llama3) at absolute positions, GQA
/// attention through a plug-in attention function (the AdaptiveCache, see generate.hpp), SwiGLU
/// MLP, final norm, lm_head (tied or not). CPU and CUDA run the same code.
///
/// The model holds no KV state: everything about past tokens lives in the attention function,
/// so one model serves any number of caches.

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <akcb/models/hf_config.hpp>

namespace akcb::models {

class SafetensorsCheckpoint;

/// Where and in which dtype the weights live (and the forward computes).
struct LoadOptions {
  c10::Device device = c10::Device(c10::kCPU);
  /// Compute dtype; default: fp32 on CPU, the checkpoint's dtype (fp32 -> bf16) on CUDA.
  std::optional<c10::ScalarType> dtype;
};

/// Plug-in attention of one layer: appends k/v at absolute positions [start_pos, start_pos + S)
/// and returns the causal GQA attention (scale 1/sqrt(D)) of q over every token it holds.
///   layer: [0, L);  q: [B, H_q, S, D] post-RoPE;  k, v: [B, H_kv, S, D] (k post-RoPE);
///   returns [B, H_q, S, D] in q's dtype.
using AttentionFn = std::function<at::Tensor(int64_t layer, at::Tensor const& q, at::Tensor const& k,
                                             at::Tensor const& v, int64_t start_pos)>;

/// Which positions' logits a forward returns.
enum class LogitsMode { kAll, kLast };

/// Weights of one decoder layer (projections fused: rows of q|k|v, rows of gate|up).
struct LlamaLayerWeights {
  at::Tensor input_norm;    // [hidden] dtype
  at::Tensor qkv_proj;      // [(H_q + 2 H_kv) D, hidden] dtype
  at::Tensor o_proj;        // [hidden, H_q D] dtype
  at::Tensor q_norm;        // [D] dtype (qwen3 only; undefined for llama)
  at::Tensor k_norm;        // [D] dtype (qwen3 only)
  at::Tensor post_norm;     // [hidden] dtype
  at::Tensor gate_up_proj;  // [2 I, hidden] dtype
  at::Tensor down_proj;     // [hidden, I] dtype
};

/// A loaded Llama 3 / Qwen 3 decoder.
class LlamaModel {
 public:
  /// Reads `<dir>/config.json` and the safetensors weights (single or sharded), checks that every
  /// expected tensor is present with the config's shape, and puts the weights on `opts.device`
  /// in the compute dtype.
  /// \throws c10::Error naming the file/tensor on a missing, mis-shaped or corrupted weight, or an
  ///         unsupported config.
  static LlamaModel load(std::string const& model_dir, LoadOptions const& opts = {});
  /// Same, from an already parsed config and opened checkpoint.
  static LlamaModel from_checkpoint(ModelConfig config, SafetensorsCheckpoint const& ckpt, LoadOptions const& opts);
  /// A model of `config`'s architecture with random weights and no checkpoint, as transformers'
  /// `from_config` initializes one (LlamaPreTrainedModel._init_weights): every projection,
  /// the embeddings and an untied lm_head drawn from N(0, init_std^2), every RMSNorm weight 1.
  /// The weights are made in place on `opts.device` in the compute dtype (no fp32 or host copy),
  /// from that device's default generator: seed it (at::manual_seed) for reproducible weights.
  /// For benchmarks and tests at real model shapes (tests/bench/bench_e2e.cpp).
  /// \param config    as ModelConfig::from_json / load return it (validated there)
  /// \param init_std  standard deviation of the projections (transformers: initializer_range, 0.02)
  /// \throws c10::Error on a non-positive size, H_q not a multiple of H_kv, an odd head_dim, a
  ///         negative or non-finite init_std, or a compute dtype other than fp32 / bf16 / fp16.
  static LlamaModel from_config(ModelConfig config, LoadOptions const& opts = {}, double init_std = 0.02);

  /// One forward step over `S` new tokens at absolute positions [start_pos, start_pos + S).
  /// \param ids        [B, S] int64 token ids in [0, vocab_size), any device
  /// \param start_pos  absolute position of ids[:, 0] (tokens processed before; never tokens held)
  /// \param attend     the attention of every layer (called once per layer, in layer order)
  /// \param mode       kAll: logits of every position; kLast: of the last one only
  /// \returns [B, S, V] (kAll) or [B, 1, V] (kLast) fp32 logits on the model's device
  /// \throws c10::Error on a bad shape, an out-of-range id, or an attention result of the wrong shape.
  /// \note ids on the GPU cost one synchronization (the id range check); ids on the CPU none.
  at::Tensor forward(at::Tensor const& ids, int64_t start_pos, AttentionFn const& attend,
                     LogitsMode mode = LogitsMode::kAll) const;

  ModelConfig const& config() const { return config_; }
  c10::Device device() const { return device_; }
  c10::ScalarType dtype() const { return dtype_; }
  /// RoPE inverse frequencies. // [D/2] fp32, on the model's device
  at::Tensor const& inv_freq() const { return inv_freq_; }
  /// Bytes of all weights held.
  int64_t weight_bytes() const;

  /// RoPE inverse frequencies of a config, computed as transformers does (fp32, CPU). // [D/2] fp32
  static at::Tensor rope_inv_freq(ModelConfig const& config);

 private:
  /// Sets device_ (index normalized) and dtype_ (opts.dtype, else fp32 on CPU, else the
  /// checkpoint's dtype with fp32 -> bf16). \throws c10::Error on an unsupported compute dtype.
  void place(LoadOptions const& opts, c10::ScalarType checkpoint_dtype);

  ModelConfig config_;
  c10::Device device_ = c10::Device(c10::kCPU);
  c10::ScalarType dtype_ = c10::ScalarType::Float;
  at::Tensor embed_tokens_;  // [V, hidden] dtype
  at::Tensor final_norm_;    // [hidden] dtype
  at::Tensor lm_head_;       // [V, hidden] dtype (aliases embed_tokens_ when tied)
  at::Tensor inv_freq_;      // [D/2] fp32
  std::vector<LlamaLayerWeights> layers_;
};

/// The names of every tensor a checkpoint of `config` must hold.
std::vector<std::string> expected_weight_names(ModelConfig const& config);

}  // namespace akcb::models
