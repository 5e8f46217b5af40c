#pragma once
// What the example binaries (akcb-generate, akcb-eval) share: the cache options they both expose,
// dtype names, printf into a string, and main()'s parse-run-report tail. Private to examples/.
#include <akcb/akcb.hpp>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <optional>
#include <string>

namespace akcb::examples {

/// printf into a std::string. (Not fmt: LibTorch ships fmt headers of another major version than
/// the distribution's libfmt, so fmt calls from code that includes ATen do not link reliably.)
inline std::string strf(char const* format, ...) __attribute__((format(printf, 1, 2)));
inline std::string strf(char const* format, ...) {
  va_list ap;
  va_start(ap, format);
  va_list ap2;
  va_copy(ap2, ap);
  int const n = std::vsnprintf(nullptr, 0, format, ap);
  va_end(ap);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, format, ap2);
  va_end(ap2);
  return out;
}

/// --dtype: "auto" -> nullopt (the caller's default), else fp32 | bf16 | fp16 (long names too).
/// \throws CLI::ValidationError naming the accepted values.
inline std::optional<c10::ScalarType> parse_dtype(std::string const& s) {
  if (s == "auto") return std::nullopt;
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  if (s == "fp16" || s == "float16") return at::kHalf;
  throw CLI::ValidationError("--dtype", "'" + s + "' must be one of auto, fp32, bf16, fp16");
}

inline std::string dtype_name(c10::ScalarType t) {
  return t == at::kBFloat16 ? "bf16" : t == at::kHalf ? "fp16" : "fp32";
}

/// The scoring and storage options of ALGORITHM.md "Configuration" that both binaries take.
/// Unset optionals keep CacheConfig's default (or the authors' setting with --authors-tuned).
struct CacheOptions {
  bool authors_tuned = false;
  std::optional<int64_t> window_size, pool_kernel;
  std::optional<double> tau1, tau2, tau3, gamma, evict_fraction;
  std::string quant_dtype = "fp8_e4m3", ratio_scope = "running";

  /// The config these options describe. `default_window` replaces W when --window-size is not
  /// given (also over --authors-tuned's W). \throws c10::Error on an unknown quant dtype or scope.
  CacheConfig to_config(std::optional<int64_t> default_window = std::nullopt) const {
    CacheConfig c = authors_tuned ? CacheConfig::authors_tuned() : CacheConfig{};
    if (window_size) c.window_size = *window_size;
    else if (default_window) c.window_size = *default_window;
    if (pool_kernel) c.pool_kernel = *pool_kernel;
    if (tau1) c.tau1 = *tau1;
    if (tau2) c.tau2 = *tau2;
    if (tau3) c.tau3 = *tau3;
    if (gamma) c.gamma = *gamma;
    if (evict_fraction) c.evict_fraction = *evict_fraction;
    c.quant_dtype = parse_quant_dtype(quant_dtype);
    c.ratio_scope = parse_ratio_scope(ratio_scope);
    return c;
  }
};

/// Adds --window-size, --tau1..3, --gamma, --evict-fraction, --pool-kernel, --quant-dtype,
/// --ratio-scope and --authors-tuned to `app` (an App or an option group). `window_default` is
/// the W shown in the help.
inline void add_cache_options(CLI::App* app, CacheOptions& o, int64_t window_default) {
  app->add_option("--window-size", o.window_size,
                  "W: recent tokens always Original, never scored [" + std::to_string(window_default) + "]");
  app->add_option("--tau1", o.tau1, "temperature of the entropy term of the layer score [0.1]");
  app->add_option("--tau2", o.tau2, "temperature of the variance term [0.3]");
  app->add_option("--tau3", o.tau3, "temperature of the kurtosis term [0.6]");
  app->add_option("--gamma", o.gamma, "weight of the variance term of the heavy-hitter score [1.0]");
  app->add_option("--evict-fraction", o.evict_fraction, "share of the scored past dropped per decode compression [0.25]");
  app->add_option("--pool-kernel", o.pool_kernel, "width of the average pooling of scores, odd [5]");
  app->add_option("--quant-dtype", o.quant_dtype, "fp8_e4m3 | int8")->capture_default_str();
  app->add_option("--ratio-scope", o.ratio_scope, "running | global (max of layer scores over layers 0..l or all)")
      ->capture_default_str();
  app->add_flag("--authors-tuned", o.authors_tuned,
                "Start from the authors' tuned setting (W=32, tau=7.774/5.407/5.528, gamma=263.81); "
                "--window-size and the other options above still override it");
}

/// main()'s tail: parses the command line (CLI11 prints help / usage errors itself), then runs
/// `body`; an exception from it is printed as "<name>: error: <message>" and gives exit status 1.
inline int run_main(CLI::App& app, char const* name, int argc, char** argv, std::function<int()> const& body) {
  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    return app.exit(e);
  }
  try {
    return body();
  } catch (c10::Error const& e) {
    std::cerr << name << ": error: " << e.what_without_backtrace() << "\n";
  } catch (CLI::Error const& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
  } catch (std::exception const& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
  }
  return 1;
}

}  // namespace akcb::examples
