#pragma once
/// \file sampler.hpp
/// Next-token choice: greedy, or sampling with temperature, top-k and top-p (nucleus), seeded.
/// Runs on the host in fp32 whatever the model's device, so that a seed gives the same tokens on
/// CPU and CUDA for the same logits.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace akcb::models {

struct SamplingOptions {
  bool do_sample = false;    ///< false: greedy (argmax); the fields below are then ignored
  double temperature = 1.0;  ///< > 0; logits are divided by it
  int64_t top_k = 0;         ///< keep the k most likely tokens; 0 = off
  double top_p = 1.0;        ///< keep the smallest set with probability mass >= top_p; 1 = off
  uint64_t seed = 0;         ///< seed of the sampler's own generator (global RNG untouched)

  /// \throws c10::Error naming the field on an invalid value.
  void validate() const;
};

class Sampler {
 public:
  /// \throws c10::Error on invalid options.
  explicit Sampler(SamplingOptions const& opts);

  /// Picks one token per row.
  /// \param logits [B, V] floating, any device
  /// \returns      [B] int64, CPU
  /// \note synchronizes (copies logits to the host).
  at::Tensor sample(at::Tensor const& logits);

  SamplingOptions const& options() const { return opts_; }

 private:
  SamplingOptions opts_;
  at::Generator gen_;
};

}  // namespace akcb::models
