#pragma once
/// \file shapes.hpp
/// Shape vocabulary and the runtime check of documented shapes.
///
/// Symbols (dimension order is outermost-first, PyTorch order; ggml is reversed):
///   B      batch
///   H_q    query heads            H_kv  KV heads           G = H_q / H_kv (GQA group)
///   S      new tokens this step   T     tokens held by a layer (Original + Quantized)
///   T_max  slots allocated        D     head dim             L     layers
///   w      observation queries    P     scored past tokens (held, outside the window)
///   K      kept tokens after eviction
///
/// Every public tensor argument carries a trailing comment such as `// [B, H_kv, S, D] fp16|bf16|fp32`.
/// ShapeEnv makes those comments executable: the first tensor that uses a symbol binds it, every
/// later use must agree, so a comment that drifts from the code fails a test.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <akcb/error.hpp>

namespace akcb {

/// One entry of a documented shape: a symbol ("B", "H_kv", ...) or a fixed size.
struct Dim {
  Dim(char const* symbol) : symbol_(symbol) {}  // NOLINT(google-explicit-constructor)
  Dim(int64_t size) : size_(size) {}            // NOLINT(google-explicit-constructor)
  Dim(int size) : size_(size) {}                // NOLINT(google-explicit-constructor)
  char const* symbol_ = nullptr;
  int64_t size_ = -1;
};

/// Binds shape symbols to sizes and checks tensors against documented shapes.
/// \throws c10::Error naming the tensor, the dimension, the symbol and both sizes.
class ShapeEnv {
 public:
  ShapeEnv() = default;

  /// Pre-binds a symbol (e.g. from a cache's configuration).
  ShapeEnv& bind(std::string const& symbol, int64_t size) {
    bound_[symbol] = Binding{size, "<bound>"};
    return *this;
  }

  /// Checks `t` against `dims`, binding unbound symbols. Returns *this for chaining.
  ShapeEnv& check(at::Tensor const& t, std::initializer_list<Dim> dims, char const* name) {
    AKCB_CHECK(t.defined(), name, " is an undefined tensor");
    AKCB_CHECK(t.dim() == static_cast<int64_t>(dims.size()), name, " must have ", dims.size(),
               " dimensions ", describe(dims), " but has shape ", t.sizes());
    int64_t i = 0;
    for (Dim const& d : dims) {
      int64_t const actual = t.size(i);
      if (d.symbol_ == nullptr) {
        AKCB_CHECK(actual == d.size_, name, ": dimension ", i, " must be ", d.size_, " ",
                   describe(dims), " but shape is ", t.sizes());
      } else {
        auto it = bound_.find(d.symbol_);
        if (it == bound_.end()) {
          bound_.emplace(d.symbol_, Binding{actual, name});
        } else {
          AKCB_CHECK(it->second.size == actual, name, ": dimension ", i, " (", d.symbol_, ") is ",
                     actual, " but ", d.symbol_, " = ", it->second.size, " from ", it->second.source,
                     "; ", name, " shape ", t.sizes(), ", expected ", describe(dims));
        }
      }
      ++i;
    }
    return *this;
  }

  /// The size bound to `symbol`. \throws c10::Error when unbound.
  int64_t operator[](std::string const& symbol) const {
    auto it = bound_.find(symbol);
    AKCB_ASSERT(it != bound_.end(), "shape symbol ", symbol, " is unbound");
    return it->second.size;
  }

  bool has(std::string const& symbol) const { return bound_.count(symbol) != 0; }

 private:
  struct Binding {
    int64_t size;
    std::string source;
  };
  static std::string describe(std::initializer_list<Dim> dims) {
    std::ostringstream os;
    os << '[';
    bool first = true;
    for (Dim const& d : dims) {
      if (!first) os << ", ";
      first = false;
      if (d.symbol_) os << d.symbol_; else os << d.size_;
    }
    os << ']';
    return os.str();
  }
  std::map<std::string, Binding> bound_;
};

}  // namespace akcb
