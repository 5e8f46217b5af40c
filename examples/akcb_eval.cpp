// akcb-eval: quality, memory and speed of every cache policy, side by side (issue 5). A thin main
// over akcb::models (eval.hpp): the grid, per-cell result files (finished cells are skipped on a
// re-run), progress with ETA, CSV / JSON / Markdown output, and the tau/gamma random search.
#include <akcb/akcb.hpp>
#include <akcb/models/eval.hpp>
#include <akcb/models/generate.hpp>
#include <akcb/models/hf_config.hpp>
#include <akcb/models/llama.hpp>
#include <akcb/models/tokenizer.hpp>

#include "cli_common.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using akcb::BudgetMode;
using akcb::CacheConfig;
using akcb::PolicyKind;
using nlohmann::json;
namespace am = akcb::models;
using Clock = std::chrono::steady_clock;
using akcb::examples::strf;

std::vector<std::string> split_list(std::string const& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur.push_back(c);
    }
  }
  return out;
}

double parse_fraction(std::string const& s) {
  auto const slash = s.find('/');
  try {
    if (slash != std::string::npos) return std::stod(s.substr(0, slash)) / std::stod(s.substr(slash + 1));
    return std::stod(s);
  } catch (std::exception const&) {
    throw CLI::ValidationError("--budgets", "'" + s + "' is not a number or a fraction like 1/4");
  }
}

std::string basename_of(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto const k = p.find_last_of('/');
  return k == std::string::npos ? p : p.substr(k + 1);
}

void make_dirs(std::string const& path) {
  std::string cur;
  for (size_t i = 0; i < path.size(); ++i) {
    cur.push_back(path[i]);
    if (path[i] == '/' || i + 1 == path.size()) ::mkdir(cur.c_str(), 0755);
  }
}

bool file_exists(std::string const& p) { return ::access(p.c_str(), R_OK) == 0; }

void write_text(std::string const& path, std::string const& text) {
  std::string const tmp = path + ".tmp";
  {
    std::ofstream o(tmp);
    AKCB_CHECK(o.good(), "cannot write ", tmp);
    o << text;
  }
  AKCB_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

uint64_t fnv1a(std::string const& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string fmt_fraction(double f) {
  for (int d : {1, 2, 3, 4, 6, 8, 16, 32})
    for (int n = 1; n <= 4 * d; ++n)
      if (std::fabs(f - static_cast<double>(n) / d) < 1e-9) return d == 1 ? std::to_string(n) : strf("%d/%d", n, d);
  return strf("%g", f);
}

// ------------------------------------------------------------------ arguments

constexpr int64_t kWindowDefault = 32;

struct Args {
  std::vector<std::string> models{"models/tiny-qwen3"};
  std::string evaldata = "evaldata";
  std::string tasks = "passkey,multikey";
  std::string lengths = "2048";
  std::string policies = "full,window,origin,quant,mix";
  std::string budgets = "1/2,1/4,1/8";
  std::string budget_modes = "tokens,bytes";
  std::string split = "test";  // dev (even examples) | test (odd) | all
  int64_t n_examples = 5;      // per task file and split (0 = all)
  // perplexity
  std::string ppl_file = "evaldata/heldout_docs.jsonl";
  int64_t ppl_docs = 1, ppl_len = 1024, ppl_prefix = 128;
  // short context
  bool no_short = false;
  int64_t short_examples = 2;
  // cache (W defaults to kWindowDefault, not CacheConfig's 128: the bundled models' prompts are 1-8k)
  akcb::examples::CacheOptions cache;
  int64_t prefill_chunk = 0;
  // tuning
  int64_t tune = 0;
  uint64_t seed = 0;
  // device
  std::string device = "cpu", dtype = "auto";
  int threads = 1;
  // output
  std::string out = "build/eval-out";
  bool show_answers = false, no_progress = false, force = false;
};

// ------------------------------------------------------------------ progress

class Progress {
 public:
  Progress(int64_t total, bool enabled) : total_(total), enabled_(enabled), tty_(::isatty(2) == 1), t0_(Clock::now()) {}
  void step(std::string const& what, int64_t n = 1) {
    done_ += n;
    if (!enabled_ || total_ <= 0) return;
    double const s = std::chrono::duration<double>(Clock::now() - t0_).count();
    double const eta = done_ > 0 ? s / done_ * (total_ - done_) : 0.0;
    int const width = 30;
    int const fill = static_cast<int>(width * std::min(done_, total_) / total_);
    std::string const line = strf("[%s%s] %lld/%lld runs  %02d:%02d elapsed  ETA %02d:%02d  %s",
                                  std::string(fill, '#').c_str(), std::string(width - fill, '.').c_str(),
                                  static_cast<long long>(done_), static_cast<long long>(total_), int(s) / 60,
                                  int(s) % 60, int(eta) / 60, int(eta) % 60, what.c_str());
    if (tty_) {
      std::fprintf(stderr, "\r%-140s", line.c_str());
      if (done_ >= total_) std::fprintf(stderr, "\n");
    } else if (what != last_) {
      std::fprintf(stderr, "%s\n", line.c_str());
      last_ = what;
    }
    std::fflush(stderr);
  }
  void note(std::string const& msg) {
    if (tty_ && enabled_) std::fprintf(stderr, "\r%-140s\r", "");
    std::fprintf(stderr, "%s\n", msg.c_str());
  }

 private:
  int64_t total_, done_ = 0;
  bool enabled_, tty_;
  Clock::time_point t0_;
  std::string last_;
};

// ------------------------------------------------------------------ cells

/// Fingerprint of the checkpoint's weights: FNV-1a over the name, size, first and last 4 MiB of
/// every *.safetensors file of `dir` (sorted). Part of every cell key, so that cells of earlier
/// weights in the same directory are not reused.
std::string weights_fingerprint(std::string const& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (auto const& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string acc;
  constexpr std::streamsize kChunk = 4 << 20;
  for (auto const& f : files) {
    auto const size = static_cast<std::streamsize>(fs::file_size(f));
    std::ifstream in(f, std::ios::binary);
    std::string head(static_cast<size_t>(std::min(size, kChunk)), '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::string tail(static_cast<size_t>(std::min(size, kChunk)), '\0');
    in.seekg(size - static_cast<std::streamsize>(tail.size()));
    in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
    AKCB_CHECK(in.good(), "cannot read ", f.string());
    acc += strf("%s:%lld:%016llx:%016llx;", f.filename().c_str(), static_cast<long long>(size),
                static_cast<unsigned long long>(fnv1a(head)), static_cast<unsigned long long>(fnv1a(tail)));
  }
  return strf("%016llx", static_cast<unsigned long long>(fnv1a(acc)));
}

/// One loaded model with its tokenizer and eos ids.
struct Loaded {
  std::string dir, name;
  std::string weights_id;  // weights_fingerprint(dir): a retrained checkpoint in the same dir gets new cells
  am::ModelConfig config;
  std::unique_ptr<am::LlamaModel> model;
  std::unique_ptr<am::Tokenizer> tok;
  std::vector<int64_t> eos;
};

/// A unit of work: one policy/budget on one input set.
struct Cell {
  std::string kind;        // retrieval | ppl | short
  std::string set;         // "passkey_2048", "ppl_1024", "short_passkey_1024"
  std::string split;
  PolicyKind policy = PolicyKind::kFull;
  BudgetMode mode = BudgetMode::kTokens;
  double fraction = 1.0;
  CacheConfig base;
  std::string tag;         // "" | "tuned" | "tune-trial-N"
};

std::string config_string(CacheConfig const& c) {
  return strf("W%lld_t%.6g_%.6g_%.6g_g%.6g_e%.4g_p%lld_%s_%s", static_cast<long long>(c.window_size), c.tau1, c.tau2,
              c.tau3, c.gamma, c.evict_fraction, static_cast<long long>(c.pool_kernel), akcb::to_string(c.quant_dtype),
              akcb::to_string(c.ratio_scope));
}

struct Inputs {
  std::vector<am::RetrievalExample> examples;  // retrieval / short
  std::vector<std::vector<int64_t>> docs;      // ppl
  std::vector<std::string> doc_ids;
};

class Runner {
 public:
  Runner(Args const& a) : a_(a) {}

  std::string cell_key(Loaded const& m, Cell const& c, Inputs const& in) const {
    std::string ids;
    if (c.kind == "ppl") {
      for (auto const& d : in.doc_ids) ids += d + ";";
    } else {
      for (auto const& e : in.examples) ids += e.id + ";";
    }
    // The device joins the key only off the CPU, so that CPU cells of earlier runs keep their keys.
    std::string const dev = m.model->device().is_cpu() ? "" : "|" + m.model->device().str();
    return strf("%s@%s|%s|%s|%s|%s|%s|%s|%s|chunk%lld|%s|%s|v1%s", m.dir.c_str(), m.weights_id.c_str(),
                c.kind.c_str(), c.set.c_str(),
                c.split.c_str(), akcb::to_string(c.policy), akcb::to_string(c.mode), fmt_fraction(c.fraction).c_str(),
                config_string(c.base).c_str(), static_cast<long long>(a_.prefill_chunk), a_.dtype.c_str(),
                ids.c_str(), dev.c_str());
  }
  std::string cell_path(Loaded const& m, Cell const& c, Inputs const& in) const {
    std::string f = fmt_fraction(c.fraction);
    std::replace(f.begin(), f.end(), '/', 'o');
    return strf("%s/cells/%s_%s_%s_%s_%s_%s_%016llx.json", a_.out.c_str(), m.name.c_str(), c.set.c_str(),
                c.split.c_str(), akcb::to_string(c.policy), akcb::to_string(c.mode), f.c_str(),
                static_cast<unsigned long long>(fnv1a(cell_key(m, c, in))));
  }
  int64_t units(Cell const& c, Inputs const& in) const {
    return c.kind == "ppl" ? static_cast<int64_t>(in.docs.size()) : static_cast<int64_t>(in.examples.size());
  }
  bool cached(Loaded const& m, Cell const& c, Inputs const& in) const {
    return !a_.force && file_exists(cell_path(m, c, in));
  }

  /// Runs (or loads) one cell. Returns its JSON record.
  json run(Loaded const& m, Cell const& c, Inputs const& in, Progress& prog) {
    std::string const path = cell_path(m, c, in);
    if (!a_.force && file_exists(path)) {
      std::ifstream f(path);
      json j = json::parse(f);
      j["cached"] = true;
      return j;
    }
    auto const t0 = Clock::now();
    std::string const label = strf("%s %s %s %s %s", m.name.c_str(), c.set.c_str(), akcb::to_string(c.policy),
                                   akcb::to_string(c.mode), fmt_fraction(c.fraction).c_str());
    json ex = json::array();
    // sums
    double prefill_s = 0, decode_s = 0, compress_s = 0, nll = 0;
    int64_t n_prompt = 0, n_decode = 0, n_scored = 0, exact = 0, contains = 0, n = 0;
    double held_ratio = 0, peak_ratio = 0, cap_ratio = 0, cache_size = 0, needle_kept = 0;
    int64_t n_needle = 0;
    int64_t held = 0, full = 0, peak = 0, peak_full = 0, cap = 0;
    std::vector<json> layers;
    std::vector<akcb::LayerStats> lsum(m.config.n_layers);
    std::vector<double> ratio_sum(m.config.n_layers, 0.0);

    auto account = [&](am::RunMetrics const& r, CacheConfig const& cc) {
      prefill_s += r.prefill_seconds;
      decode_s += r.decode_seconds;
      compress_s += r.compress_seconds;
      n_prompt += r.n_prompt;
      n_decode += r.n_decode;
      held += r.end_held_bytes;
      full += r.end_full_bytes;
      peak += r.peak_held_bytes;
      peak_full += r.peak_full_bytes;
      cap += r.capacity_bytes;
      held_ratio += double(r.end_held_bytes) / std::max<int64_t>(r.end_full_bytes, 1);
      peak_ratio += double(r.peak_held_bytes) / std::max<int64_t>(r.peak_full_bytes, 1);
      cap_ratio += double(r.capacity_bytes) / std::max<int64_t>(r.end_full_bytes, 1);
      cache_size += double(cc.cache_size);
      for (size_t l = 0; l < r.stats.layers.size() && l < lsum.size(); ++l) {
        auto const& s = r.stats.layers[l];
        lsum[l].n_original += s.n_original;
        lsum[l].n_quantized += s.n_quantized;
        lsum[l].n_evicted += s.n_evicted;
        lsum[l].held_bytes += s.held_bytes;
        lsum[l].full_bytes += s.full_bytes;
        lsum[l].n_compressions += s.n_compressions;
        lsum[l].compress_seconds += s.compress_seconds;
        ratio_sum[l] += s.origin_ratio;
      }
      ++n;
    };

    am::RetrievalOptions ro;
    ro.prefill_chunk = a_.prefill_chunk;
    ro.eos_token_ids = m.eos;
    if (c.kind == "ppl") {
      for (size_t d = 0; d < in.docs.size(); ++d) {
        auto const& ids = in.docs[d];
        CacheConfig const cc = am::budget_config(c.base, c.policy, c.mode, c.fraction, static_cast<int64_t>(ids.size()));
        am::PerplexityResult const r = am::run_perplexity(*m.model, cc, ids, a_.ppl_prefix, a_.prefill_chunk);
        account(r.metrics, cc);
        nll += r.nll_sum;
        n_scored += r.n_scored;
        ex.push_back({{"id", in.doc_ids[d]}, {"nll", r.nll_sum}, {"n_scored", r.n_scored}, {"ppl", r.ppl()},
                      {"cache_size", cc.cache_size}, {"held_bytes", r.metrics.end_held_bytes},
                      {"full_bytes", r.metrics.end_full_bytes}});
        prog.step(label);
      }
    } else {
      for (auto const& e : in.examples) {
        std::vector<int32_t> const enc = m.tok->encode(e.prompt, true);
        int64_t const T = static_cast<int64_t>(enc.size());
        CacheConfig const cc = am::budget_config(c.base, c.policy, c.mode, c.fraction, T);
        am::RetrievalResult const r = am::run_retrieval(*m.model, *m.tok, cc, e, ro);
        account(r.metrics, cc);
        exact += r.exact;
        contains += r.contains;
        json row = {{"id", e.id},
                    {"depth", e.depth},
                    {"answer", e.answer},
                    {"completion", r.completion},
                    {"tokens", r.tokens},
                    {"exact", r.exact},
                    {"contains", r.contains},
                    {"prompt_tokens", T},
                    {"cache_size", cc.cache_size},
                    {"held_bytes", r.metrics.end_held_bytes},
                    {"full_bytes", r.metrics.end_full_bytes},
                    {"needle_positions", r.tracked},
                    {"needle_kept_after_prefill", r.kept_after_prefill},
                    {"needle_kept_per_layer", r.kept_after_prefill_per_layer},
                    {"needle_kept_at_end", r.kept_at_end},
                    {"needle_kept_at_end_per_layer", r.kept_at_end_per_layer}};
        if (r.kept_after_prefill >= 0) {
          needle_kept += r.kept_after_prefill;
          ++n_needle;
        }
        if (c.kind == "short") {
          auto const lg = r.first_logits.contiguous();
          std::vector<float> v(lg.data_ptr<float>(), lg.data_ptr<float>() + lg.numel());
          row["first_logits_hash"] = strf("%016llx", static_cast<unsigned long long>(fnv1a(
                                                        std::string(reinterpret_cast<char const*>(v.data()),
                                                                    v.size() * sizeof(float)))));
        }
        if (a_.show_answers)
          prog.note(strf("  %-22s %-7s %-6s %-5s expected %-12s got %-16s %s", e.id.c_str(), akcb::to_string(c.policy),
                         akcb::to_string(c.mode), fmt_fraction(c.fraction).c_str(), e.answer.c_str(),
                         json(r.completion).dump().c_str(), r.exact ? "ok" : (r.contains ? "contains" : "wrong")));
        ex.push_back(row);
        prog.step(label);
      }
    }
    json layer_rows = json::array();
    for (size_t l = 0; l < lsum.size(); ++l) {
      int64_t const tot = lsum[l].n_original + lsum[l].n_quantized + lsum[l].n_evicted;
      layer_rows.push_back({{"layer", l},
                            {"original", lsum[l].n_original},
                            {"quantized", lsum[l].n_quantized},
                            {"evicted", lsum[l].n_evicted},
                            {"original_share", tot ? double(lsum[l].n_original) / tot : 0.0},
                            {"quantized_share", tot ? double(lsum[l].n_quantized) / tot : 0.0},
                            {"evicted_share", tot ? double(lsum[l].n_evicted) / tot : 0.0},
                            {"origin_ratio", n ? ratio_sum[l] / n : 1.0},
                            {"held_bytes", lsum[l].held_bytes},
                            {"full_bytes", lsum[l].full_bytes},
                            {"n_compressions", lsum[l].n_compressions},
                            {"compress_seconds", lsum[l].compress_seconds}});
    }
    double const total_s = prefill_s + decode_s;
    json j = {{"key", cell_key(m, c, in)},
              {"model", m.name},
              {"model_dir", m.dir},
              {"weights_id", m.weights_id},
              {"kind", c.kind},
              {"set", c.set},
              {"split", c.split},
              {"tag", c.tag},
              {"policy", akcb::to_string(c.policy)},
              {"budget_mode", am::budget_mode_matters(c.policy) ? akcb::to_string(c.mode) : "tokens=bytes"},
              {"budget_mode_arg", akcb::to_string(c.mode)},
              {"fraction", c.fraction},
              {"fraction_str", fmt_fraction(c.fraction)},
              {"window_size", c.base.window_size},
              {"tau", {c.base.tau1, c.base.tau2, c.base.tau3}},
              {"gamma", c.base.gamma},
              {"evict_fraction", c.base.evict_fraction},
              {"quant_dtype", akcb::to_string(c.base.quant_dtype)},
              {"ratio_scope", akcb::to_string(c.base.ratio_scope)},
              {"prefill_chunk", a_.prefill_chunk},
              {"dtype", akcb::examples::dtype_name(m.model->dtype())},
              {"device", m.model->device().str()},
              {"threads", at::get_num_threads()},
              {"n", n},
              {"mean_cache_size", n ? cache_size / n : 0.0},
              {"prefill_tokens", n_prompt},
              {"decode_tokens", n_decode},
              {"prefill_seconds", prefill_s},
              {"decode_seconds", decode_s},
              {"prefill_tps", prefill_s > 0 ? n_prompt / prefill_s : 0.0},
              {"decode_tps", decode_s > 0 ? n_decode / decode_s : 0.0},
              {"compress_seconds", compress_s},
              {"compress_share", total_s > 0 ? compress_s / total_s : 0.0},
              {"held_bytes_end", n ? held / n : 0},
              {"full_bytes_end", n ? full / n : 0},
              {"peak_held_bytes", n ? peak / n : 0},
              {"peak_full_bytes", n ? peak_full / n : 0},
              {"capacity_bytes", n ? cap / n : 0},
              {"held_over_full", n ? held_ratio / n : 0.0},
              {"peak_over_full", n ? peak_ratio / n : 0.0},
              {"capacity_over_full", n ? cap_ratio / n : 0.0},
              {"layers", layer_rows},
              {"examples", ex},
              {"wall_seconds", std::chrono::duration<double>(Clock::now() - t0).count()}};
    if (c.kind == "ppl") {
      j["nll_sum"] = nll;
      j["n_scored"] = n_scored;
      j["ppl"] = am::perplexity(nll, n_scored);
    } else {
      j["acc_exact"] = n ? double(exact) / n : 0.0;
      j["acc_contains"] = n ? double(contains) / n : 0.0;
      j["n_exact"] = exact;
      j["n_contains"] = contains;
      j["needle_kept_after_prefill"] = n_needle ? needle_kept / n_needle : std::nan("");
    }
    make_dirs(a_.out + "/cells");
    write_text(path, j.dump(1));
    j["cached"] = false;
    return j;
  }

 private:
  Args const& a_;
};

// ------------------------------------------------------------------ inputs

Inputs retrieval_inputs(Args const& a, std::string const& file, std::string const& split, int64_t n_max) {
  auto all = am::load_retrieval_jsonl(file);
  Inputs in;
  for (size_t i = 0; i < all.size(); ++i) {
    bool const take = split == "all" || (split == "dev" && i % 2 == 0) || (split == "test" && i % 2 == 1);
    if (take) in.examples.push_back(all[i]);
  }
  if (n_max > 0 && static_cast<int64_t>(in.examples.size()) > n_max) in.examples.resize(n_max);
  return in;
}

Inputs ppl_inputs(Args const& a, Loaded const& m) {
  Inputs in;
  if (a.ppl_docs <= 0) return in;
  auto const docs = am::load_text_jsonl(a.ppl_file);
  for (auto const& d : docs) {
    if (static_cast<int64_t>(in.docs.size()) >= a.ppl_docs) break;
    std::vector<int32_t> const enc = m.tok->encode(d.text, true);
    if (static_cast<int64_t>(enc.size()) < a.ppl_len) continue;
    in.docs.emplace_back(enc.begin(), enc.begin() + a.ppl_len);
    in.doc_ids.push_back(d.id);
  }
  AKCB_CHECK(!in.docs.empty(), a.ppl_file, " has no document of >= ", a.ppl_len, " tokens for ", m.name);
  return in;
}

// ------------------------------------------------------------------ output

double share(double x, double base) { return base > 0 ? x / base : std::nan(""); }

/// 95% Wilson score interval of k successes in n trials (z = 1.96); {0, 1} when n = 0.
std::pair<double, double> wilson95(int64_t k, int64_t n) {
  if (n <= 0) return {0.0, 1.0};
  double const z = 1.959963984540054, nn = static_cast<double>(n), p = static_cast<double>(k) / nn;
  double const den = 1 + z * z / nn;
  double const mid = (p + z * z / (2 * nn)) / den;
  double const half = z * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / den;
  return {std::max(0.0, mid - half), std::min(1.0, mid + half)};
}

/// Adds "share of full" fields to every cell from the full cell of the same model/set/split.
void add_shares(std::vector<json>& cells) {
  std::map<std::string, json const*> full;
  for (auto const& c : cells)
    if (c["policy"] == "full" && c["tag"] == "")
      full[c["model"].get<std::string>() + "|" + c["set"].get<std::string>() + "|" + c["split"].get<std::string>()] = &c;
  for (auto& c : cells) {
    if (c.contains("n_exact")) {
      auto const [lo, hi] = wilson95(c["n_exact"].get<int64_t>(), c["n"].get<int64_t>());
      c["acc_exact_lo95"] = lo;
      c["acc_exact_hi95"] = hi;
    }
    auto it = full.find(c["model"].get<std::string>() + "|" + c["set"].get<std::string>() + "|" +
                        c["split"].get<std::string>());
    if (it == full.end()) continue;
    json const& f = *it->second;
    if (c.contains("acc_exact")) {
      c["n_exact_full"] = f["n_exact"];
      c["acc_exact_share_full"] = share(c["acc_exact"].get<double>(), f["acc_exact"].get<double>());
      c["acc_contains_share_full"] = share(c["acc_contains"].get<double>(), f["acc_contains"].get<double>());
      // per-example agreement with full (same greedy completion)
      int64_t same = 0, n = 0;
      auto const& ea = c["examples"];
      auto const& eb = f["examples"];
      for (size_t i = 0; i < ea.size() && i < eb.size(); ++i) {
        same += ea[i]["tokens"] == eb[i]["tokens"];
        ++n;
      }
      c["same_tokens_as_full"] = n ? double(same) / n : 0.0;
      if (c["kind"] == "short") {
        int64_t same_logits = 0;
        for (size_t i = 0; i < ea.size() && i < eb.size(); ++i)
          same_logits += ea[i].value("first_logits_hash", "a") == eb[i].value("first_logits_hash", "b");
        c["same_logits_as_full"] = n ? double(same_logits) / n : 0.0;
      }
    }
    if (c.contains("ppl")) c["ppl_over_full"] = share(c["ppl"].get<double>(), f["ppl"].get<double>());
  }
}

std::string num(json const& j, char const* k, char const* f = "%.3f") {
  if (!j.contains(k) || j[k].is_null()) return "";
  double const v = j[k].get<double>();
  return std::isnan(v) ? "" : strf(f, v);
}

/// "0.350 (7/20, 0.18-0.57)" for a retrieval cell, "" otherwise.
std::string exact_cell(json const& c) {
  if (!c.contains("n_exact")) return "";
  return strf("%.3f (%lld/%lld, %.2f-%.2f)", c["acc_exact"].get<double>(), static_cast<long long>(c["n_exact"].get<int64_t>()),
              static_cast<long long>(c["n"].get<int64_t>()), c["acc_exact_lo95"].get<double>(),
              c["acc_exact_hi95"].get<double>());
}

void write_outputs(Args const& a, std::vector<json> const& cells, json const& extra) {
  make_dirs(a.out);
  std::vector<std::string> const cols = {
      "model", "kind", "set", "split", "tag", "policy", "budget_mode", "fraction", "mean_cache_size", "n",
      "n_exact", "acc_exact", "acc_exact_lo95", "acc_exact_hi95", "n_contains", "acc_contains", "n_exact_full",
      "acc_exact_share_full", "acc_contains_share_full", "same_tokens_as_full",
      "same_logits_as_full", "ppl", "ppl_over_full", "held_over_full", "peak_over_full", "capacity_over_full",
      "held_bytes_end", "full_bytes_end", "peak_held_bytes", "capacity_bytes", "prefill_tps", "decode_tps",
      "compress_share", "prefill_seconds", "decode_seconds", "compress_seconds", "window_size", "gamma", "tau",
      "wall_seconds"};
  std::ostringstream csv;
  for (size_t i = 0; i < cols.size(); ++i) csv << (i ? "," : "") << cols[i];
  csv << "\n";
  for (auto const& c : cells) {
    for (size_t i = 0; i < cols.size(); ++i) {
      if (i) csv << ",";
      if (!c.contains(cols[i])) continue;
      json const& v = c[cols[i]];
      if (v.is_string()) csv << v.get<std::string>();
      else if (v.is_array()) {
        for (size_t k = 0; k < v.size(); ++k) csv << (k ? ";" : "") << v[k].dump();
      } else if (v.is_number_float() && std::isnan(v.get<double>())) {
      } else csv << v.dump();
    }
    csv << "\n";
  }
  write_text(a.out + "/results.csv", csv.str());
  json all = extra;
  all["cells"] = cells;
  write_text(a.out + "/results.json", all.dump(1));

  // Markdown summary
  std::ostringstream md;
  md << "# akcb-eval summary\n\n";
  md << "Quality as exact-match accuracy (`ruler.score`) and lenient `contains`; `/full` = share of the full "
        "cache on the same inputs. Bytes: KV held at the end / full cache at the same length (payload + metadata). "
        "tok/s on " << (cells.empty() ? std::string("?") : cells[0]["device"].get<std::string>()) << " with "
     << at::get_num_threads() << " threads.\n\n";
  md << "| model | set | split | policy | budget mode | budget | C | n | exact (k/n, 95% Wilson) | contains | exact/full | ppl | "
        "ppl/full | held/full | peak/full | prefill tok/s | decode tok/s | compress share |\n";
  md << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (auto const& c : cells) {
    std::string pol = c["policy"].get<std::string>();
    if (!c["tag"].get<std::string>().empty()) pol += " (" + c["tag"].get<std::string>() + ")";
    md << "| " << c["model"].get<std::string>() << " | " << c["set"].get<std::string>() << " | "
       << c["split"].get<std::string>() << " | " << pol << " | " << c["budget_mode"].get<std::string>() << " | "
       << (c["policy"] == "full" ? std::string("-") : c["fraction_str"].get<std::string>()) << " | "
       << num(c, "mean_cache_size", "%.0f") << " | " << c["n"].get<int64_t>() << " | " << exact_cell(c) << " | "
       << num(c, "acc_contains") << " | " << num(c, "acc_exact_share_full") << " | " << num(c, "ppl", "%.3f")
       << " | " << num(c, "ppl_over_full", "%.4f") << " | " << num(c, "held_over_full") << " | "
       << num(c, "peak_over_full") << " | " << num(c, "prefill_tps", "%.0f") << " | " << num(c, "decode_tps", "%.1f")
       << " | " << num(c, "compress_share", "%.3f") << " |\n";
  }
  if (extra.contains("short_check")) {
    md << "\nShort context, budget > context (must equal `full`): "
       << (extra["short_check"]["all_identical"].get<bool>() ? "identical tokens and first-step logits for every policy and mode"
                                                               : "MISMATCH (see results.json short_check)")
       << ".\n";
  }
  if (extra.contains("tuning")) {
    auto const& t = extra["tuning"];
    md << "\nTuning (random search, mix at " << t["fraction_str"].get<std::string>() << " bytes, dev split): best "
       << t["best"].dump() << " dev score " << t["best_score"].dump() << "\n";
  }
  md << "\nWall time of this run: " << strf("%.1f s", extra["wall_seconds"].get<double>()) << ".\n";
  write_text(a.out + "/summary.md", md.str());
}

void print_table(std::vector<json> const& cells) {
  std::cout << strf("\n%-8s %-14s %-6s %-6s %-12s %-5s %6s %7s %7s %8s %9s %9s %9s %9s %8s\n", "model", "set", "split",
                    "policy", "mode", "budg", "n", "exact", "contain", "ex/full", "ppl", "held/full", "prefill/s",
                    "decode/s", "compr");
  for (auto const& c : cells) {
    std::string pol = c["policy"].get<std::string>();
    if (!c["tag"].get<std::string>().empty()) pol += "*";
    std::cout << strf("%-8s %-14s %-6s %-6s %-12s %-5s %6lld %7s %7s %8s %9s %9s %9s %9s %8s\n",
                      c["model"].get<std::string>().substr(0, 8).c_str(), c["set"].get<std::string>().c_str(),
                      c["split"].get<std::string>().c_str(), pol.c_str(), c["budget_mode"].get<std::string>().c_str(),
                      c["policy"] == "full" ? "-" : c["fraction_str"].get<std::string>().c_str(),
                      static_cast<long long>(c["n"].get<int64_t>()), num(c, "acc_exact", "%.2f").c_str(),
                      num(c, "acc_contains", "%.2f").c_str(), num(c, "acc_exact_share_full", "%.2f").c_str(),
                      num(c, "ppl", "%.3f").c_str(), num(c, "held_over_full").c_str(),
                      num(c, "prefill_tps", "%.0f").c_str(), num(c, "decode_tps", "%.1f").c_str(),
                      num(c, "compress_share", "%.3f").c_str());
  }
}

// ------------------------------------------------------------------ main flow

CacheConfig base_config(Args const& a) { return a.cache.to_config(kWindowDefault); }

int run(Args const& a) {
  auto const t_start = Clock::now();
  if (a.threads > 0) at::set_num_threads(a.threads);
  c10::Device const device(a.device);
  AKCB_CHECK(!device.is_cuda() || at::hasCUDA(), "--device ", a.device, ": this LibTorch has no CUDA device available");
  AKCB_CHECK(a.split == "dev" || a.split == "test" || a.split == "all", "--split must be dev, test or all, got ",
             a.split);

  std::vector<PolicyKind> policies;
  for (auto const& p : split_list(a.policies)) policies.push_back(akcb::parse_policy(p));
  if (std::find(policies.begin(), policies.end(), PolicyKind::kFull) == policies.end())
    policies.insert(policies.begin(), PolicyKind::kFull);  // every figure is also a share of full
  std::vector<BudgetMode> modes;
  for (auto const& m : split_list(a.budget_modes)) modes.push_back(akcb::parse_budget_mode(m));
  std::vector<double> fractions;
  for (auto const& f : split_list(a.budgets)) fractions.push_back(parse_fraction(f));
  std::vector<std::string> tasks = split_list(a.tasks);
  std::vector<std::string> lengths = split_list(a.lengths);
  CacheConfig const base = base_config(a);

  // ---- models
  std::vector<Loaded> models;
  for (auto const& dir : a.models) {
    Loaded m;
    m.dir = dir;
    m.weights_id = weights_fingerprint(dir);
    m.name = basename_of(dir);
    m.config = am::ModelConfig::load(dir);
    am::LoadOptions lo;
    lo.device = device;
    if (auto const dt = akcb::examples::parse_dtype(a.dtype)) lo.dtype = *dt;
    m.model = std::make_unique<am::LlamaModel>(am::LlamaModel::load(dir, lo));
    m.tok = std::make_unique<am::Tokenizer>(am::Tokenizer::from_dir(dir));
    am::GenerationDefaults const gd = am::GenerationDefaults::load(dir);
    m.eos = !gd.eos_token_ids.empty() ? gd.eos_token_ids : m.config.eos_token_ids;
    if (m.tok->eos_id() && std::find(m.eos.begin(), m.eos.end(), *m.tok->eos_id()) == m.eos.end())
      m.eos.push_back(*m.tok->eos_id());
    models.push_back(std::move(m));
  }

  // ---- plan: (model, cell, inputs)
  struct Planned {
    size_t model;
    Cell cell;
    std::shared_ptr<Inputs> in;
  };
  std::vector<Planned> plan;
  auto grid_cells = [&](std::string const& kind, std::string const& set, std::string const& split,
                        std::vector<double> const& fr, CacheConfig const& b, std::string const& tag,
                        std::vector<PolicyKind> const& pols) {
    std::vector<Cell> out;
    for (PolicyKind p : pols) {
      if (p == PolicyKind::kFull) {
        out.push_back({kind, set, split, p, BudgetMode::kTokens, 1.0, b, tag});
        continue;
      }
      for (double f : fr) {
        bool first_mode = true;
        for (BudgetMode md : modes) {
          if (!am::budget_mode_matters(p) && !first_mode) continue;
          first_mode = false;
          out.push_back({kind, set, split, p, am::budget_mode_matters(p) ? md : BudgetMode::kTokens, f, b, tag});
        }
      }
    }
    return out;
  };

  json extra;
  extra["command"] = a.out;  // replaced below
  std::vector<json> cells;
  int64_t n_units = 0;

  // tuning first (its best setting feeds the test cells)
  std::optional<CacheConfig> tuned;
  if (a.tune > 0) {
    AKCB_CHECK(!fractions.empty(), "--tune needs a budget (--budgets)");
    double tune_fraction = fractions[0];
    for (double f : fractions)
      if (std::fabs(f - 0.25) < 1e-9) tune_fraction = f;
    std::mt19937_64 rng(a.seed);
    auto log_uniform = [&](double lo, double hi) {
      std::uniform_real_distribution<double> u(std::log(lo), std::log(hi));
      return std::exp(u(rng));
    };
    std::vector<CacheConfig> trials;
    trials.push_back(base);  // trial 0: the run's base setting
    CacheConfig at = CacheConfig::authors_tuned();
    at.window_size = base.window_size;
    trials.push_back(at);  // trial 1: the authors' tau/gamma
    while (static_cast<int64_t>(trials.size()) < a.tune) {
      CacheConfig c = base;
      c.tau1 = log_uniform(0.05, 20.0);
      c.tau2 = log_uniform(0.05, 20.0);
      c.tau3 = log_uniform(0.05, 20.0);
      c.gamma = log_uniform(0.1, 1000.0);
      trials.push_back(c);
    }
    trials.resize(a.tune);
    // dev inputs
    std::vector<std::pair<std::string, std::shared_ptr<Inputs>>> dev;
    for (auto const& t : tasks)
      for (auto const& L : lengths)
        dev.emplace_back(t + "_" + L, std::make_shared<Inputs>(retrieval_inputs(
                                          a, a.evaldata + "/" + t + "_" + L + ".jsonl", "dev", a.n_examples)));
    int64_t tu = 0;
    for (size_t mi = 0; mi < models.size(); ++mi)
      for (auto const& d : dev) tu += static_cast<int64_t>(d.second->examples.size()) * (a.tune + 1);
    Progress tp(tu, !a.no_progress);
    json tj = json::array();
    Runner runner(a);
    double best_score = -1;
    size_t best = 0;
    std::vector<json> tune_cells;
    for (size_t i = 0; i < trials.size(); ++i) {
      double score = 0;
      int64_t n = 0;
      for (size_t mi = 0; mi < models.size(); ++mi) {
        for (auto const& d : dev) {
          Cell c{"retrieval", d.first, "dev", PolicyKind::kMix, BudgetMode::kBytes, tune_fraction, trials[i],
                 strf("tune-%zu", i)};
          json r = runner.run(models[mi], c, *d.second, tp);
          score += r["acc_exact"].get<double>() + 0.01 * r["acc_contains"].get<double>();
          ++n;
          tune_cells.push_back(r);
        }
      }
      score /= std::max<int64_t>(n, 1);
      tj.push_back({{"trial", i},
                    {"tau", {trials[i].tau1, trials[i].tau2, trials[i].tau3}},
                    {"gamma", trials[i].gamma},
                    {"dev_score", score}});
      if (score > best_score + 1e-12) {
        best_score = score;
        best = i;
      }
    }
    // full on the dev split, for reference
    for (size_t mi = 0; mi < models.size(); ++mi)
      for (auto const& d : dev) {
        Cell c{"retrieval", d.first, "dev", PolicyKind::kFull, BudgetMode::kTokens, 1.0, base, "tune-ref"};
        tune_cells.push_back(runner.run(models[mi], c, *d.second, tp));
      }
    tuned = trials[best];
    extra["tuning"] = {{"trials", tj},
                       {"best_trial", best},
                       {"best", {{"tau", {tuned->tau1, tuned->tau2, tuned->tau3}}, {"gamma", tuned->gamma}}},
                       {"best_score", best_score},
                       {"fraction", tune_fraction},
                       {"fraction_str", fmt_fraction(tune_fraction)},
                       {"objective", "mean over dev files of exact accuracy + 0.01 x contains, mix, bytes mode"},
                       {"dev_cells", tune_cells}};
    std::ostringstream tcsv;
    tcsv << "trial,tau1,tau2,tau3,gamma,dev_score\n";
    for (auto const& t : tj)
      tcsv << t["trial"].get<size_t>() << "," << t["tau"][0].get<double>() << "," << t["tau"][1].get<double>() << ","
           << t["tau"][2].get<double>() << "," << t["gamma"].get<double>() << "," << t["dev_score"].get<double>() << "\n";
    make_dirs(a.out);
    write_text(a.out + "/tune.csv", tcsv.str());
    std::cout << strf("tuning: best trial %zu of %lld: tau=(%.4g, %.4g, %.4g) gamma=%.4g dev score %.3f\n", best,
                      static_cast<long long>(a.tune), tuned->tau1, tuned->tau2, tuned->tau3, tuned->gamma, best_score);
  }

  for (size_t mi = 0; mi < models.size(); ++mi) {
    // retrieval grid
    for (auto const& t : tasks)
      for (auto const& L : lengths) {
        std::string const set = t + "_" + L;
        auto in = std::make_shared<Inputs>(retrieval_inputs(a, a.evaldata + "/" + set + ".jsonl", a.split, a.n_examples));
        for (auto const& c : grid_cells("retrieval", set, a.split, fractions, base, "", policies))
          plan.push_back({mi, c, in});
        if (tuned)
          for (auto const& c : grid_cells("retrieval", set, a.split, fractions, *tuned, "tuned", {PolicyKind::kMix}))
            plan.push_back({mi, c, in});
      }
    // perplexity
    if (a.ppl_docs > 0) {
      auto in = std::make_shared<Inputs>(ppl_inputs(a, models[mi]));
      std::string const set = strf("ppl_%lld", static_cast<long long>(a.ppl_len));
      for (auto const& c : grid_cells("ppl", set, "all", fractions, base, "", policies)) plan.push_back({mi, c, in});
    }
    // short context: budget > context must equal full; and one compressed budget
    if (!a.no_short) {
      auto in = std::make_shared<Inputs>(
          retrieval_inputs(a, a.evaldata + "/passkey_1024.jsonl", "test", a.short_examples));
      for (auto const& c : grid_cells("short", "short_passkey_1024", "test", {2.0, 0.25}, base, "", policies))
        plan.push_back({mi, c, in});
    }
  }

  Runner runner(a);
  for (auto const& p : plan)
    if (!runner.cached(models[p.model], p.cell, *p.in)) n_units += runner.units(p.cell, *p.in);
  Progress prog(n_units, !a.no_progress);
  int64_t n_cached = 0;
  for (auto const& p : plan) {
    json r = runner.run(models[p.model], p.cell, *p.in, prog);
    n_cached += r["cached"].get<bool>();
    cells.push_back(r);
  }
  add_shares(cells);

  // short-context verdict
  bool all_identical = true;
  json short_rows = json::array();
  for (auto const& c : cells) {
    if (c["kind"] != "short" || c["policy"] == "full" || c["fraction"].get<double>() < 1.0) continue;
    bool const same = c.value("same_tokens_as_full", 0.0) == 1.0 && c.value("same_logits_as_full", 0.0) == 1.0;
    all_identical = all_identical && same;
    short_rows.push_back({{"model", c["model"]}, {"policy", c["policy"]}, {"budget_mode", c["budget_mode"]},
                          {"identical", same}});
  }
  if (!a.no_short) extra["short_check"] = {{"all_identical", all_identical}, {"rows", short_rows}};

  double const wall = std::chrono::duration<double>(Clock::now() - t_start).count();
  extra["wall_seconds"] = wall;
  extra["cells_cached"] = n_cached;
  extra["cells_total"] = cells.size();
  extra["threads"] = at::get_num_threads();
  extra.erase("command");
  write_outputs(a, cells, extra);
  print_table(cells);
  std::cout << strf("\n%zu cells (%lld from earlier runs) in %.1f s; results in %s/{results.csv,results.json,summary.md}\n",
                    cells.size(), static_cast<long long>(n_cached), wall, a.out.c_str());
  if (!a.no_short) {
    std::cout << (all_identical ? "short context, budget > context: every policy and mode identical to full (tokens "
                                  "and first-step logits)\n"
                                : "ERROR: short context, budget > context: some policy differs from full\n");
    if (!all_identical) return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{
      "akcb-eval: quality, memory and speed of every KV-cache policy on a Llama 3 / Qwen 3 checkpoint.\n"
      "Runs a grid policies x budgets x context lengths x budget modes on RULER-style retrieval (exact match),\n"
      "long-document perplexity (teacher-forced decoding through the compressed cache) and a short-context\n"
      "check (budget > context must equal full). Budgets are shares of the full KV bytes at the context length:\n"
      "C = share x tokens; in bytes mode the same bytes buy more Quantized tokens. Finished cells are kept in\n"
      "OUT/cells and skipped on a re-run."};
  app.get_formatter()->column_width(34);
  app.add_option("-m,--model", a.models, "Model directories (repeatable)")->check(CLI::ExistingDirectory)->capture_default_str();
  app.add_option("--evaldata", a.evaldata, "Directory of <task>_<len>.jsonl")->capture_default_str();
  app.add_option("--tasks", a.tasks, "Retrieval tasks: passkey,multikey,kv,vt")->capture_default_str();
  app.add_option("--lengths", a.lengths, "Context lengths: 1024,2048,4096,8192")->capture_default_str();
  app.add_option("--policies", a.policies, "Policies (full is always added)")->capture_default_str();
  app.add_option("--budgets", a.budgets, "Budgets as shares of the full KV bytes")->capture_default_str();
  app.add_option("--budget-modes", a.budget_modes, "tokens,bytes (window/origin run once: identical)")->capture_default_str();
  app.add_option("--split", a.split, "dev (even-indexed examples) | test (odd) | all")->capture_default_str();
  app.add_option("-n,--n-examples", a.n_examples, "Examples per task file and split (0 = all)")->capture_default_str();
  app.add_option("--ppl-file", a.ppl_file, "Held-out documents for perplexity (JSONL id/source/text)")->capture_default_str();
  app.add_option("--ppl-docs", a.ppl_docs, "Documents for perplexity (0 = skip)")->capture_default_str();
  app.add_option("--ppl-len", a.ppl_len, "Tokens per perplexity document")->capture_default_str();
  app.add_option("--ppl-prefix", a.ppl_prefix, "Prefilled tokens; the rest is teacher-forced one at a time")->capture_default_str();
  app.add_flag("--no-short", a.no_short, "Skip the short-context check");
  app.add_option("--short-examples", a.short_examples, "Examples of passkey_1024 in the short-context check")->capture_default_str();
  akcb::examples::add_cache_options(&app, a.cache, kWindowDefault);
  app.add_option("--prefill-chunk", a.prefill_chunk, "Prompt tokens per prefill forward (0 = whole prompt)")->capture_default_str();
  app.add_option("--tune", a.tune, "Random search: N trials of tau1-3/gamma for mix on the dev split, then the best on --split")
      ->capture_default_str();
  app.add_option("--seed", a.seed, "Seed of the random search")->capture_default_str();
  app.add_option("--device", a.device, "cpu | cuda | cuda:N")->capture_default_str();
  app.add_option("--dtype", a.dtype, "auto (fp32 on CPU) | fp32 | bf16 | fp16")->capture_default_str();
  app.add_option("--threads", a.threads, "CPU threads (0: LibTorch default; 1 is fastest on a shared 2-core machine)")->capture_default_str();
  app.add_option("-o,--out", a.out, "Output directory")->capture_default_str();
  app.add_flag("--show-answers", a.show_answers, "Print every expected and generated answer");
  app.add_flag("--no-progress", a.no_progress, "No progress lines");
  app.add_flag("--force", a.force, "Re-run cells that already have a result file");
  return akcb::examples::run_main(app, "akcb-eval", argc, argv, [&] { return run(a); });
}
