// Tokenizer encoding throughput (issue 4), in bytes of UTF-8 input per second.
//
// Text: $AKCB_BENCH_TEXT (a .txt file, or .jsonl with a "text" field per line), else the corpus
// held-out split data/corpus/heldout.jsonl (tools/corpus/build_corpus.py), else the licence texts
// in /usr/share/common-licenses; the first 4 MiB are used. Tokenizers: the bundled models/tiny-*.
//
//   ./akcb_bench_tokenizer --benchmark_format=json
#include <akcb/models/tokenizer.hpp>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using akcb::models::Tokenizer;
constexpr std::size_t kTextBytes = 4u << 20;

std::string read_file(std::string const& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Cuts at a character boundary so the text stays valid UTF-8.
void truncate_utf8(std::string& s, std::size_t n) {
  if (s.size() <= n) return;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
}

std::string load_prose() {
  std::string path;
  if (char const* p = std::getenv("AKCB_BENCH_TEXT")) path = p;
  else if (std::filesystem::exists(AKCB_SOURCE_DIR "/data/corpus/heldout.jsonl")) path = AKCB_SOURCE_DIR "/data/corpus/heldout.jsonl";
  std::string text;
  if (!path.empty() && path.size() > 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0) {
    std::ifstream f(path);
    std::string line;
    while (text.size() < kTextBytes && std::getline(f, line)) {
      auto const j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("text") && j["text"].is_string()) text += j["text"].get<std::string>() + "\n\n";
    }
  } else if (!path.empty()) {
    text = read_file(path);
  } else {
    std::string all;
    for (auto const& e : std::filesystem::directory_iterator("/usr/share/common-licenses"))
      if (e.is_regular_file()) all += read_file(e.path().string()) + "\n\n";
    while (!all.empty() && text.size() < kTextBytes) text += all;
  }
  if (text.empty()) throw std::runtime_error("no benchmark text found");
  truncate_utf8(text, kTextBytes);
  return text;
}

std::string const& prose() {
  static std::string const text = load_prose();
  return text;
}

std::string model_dir(int which) {
  return std::string(AKCB_SOURCE_DIR) + (which == 0 ? "/models/tiny-llama3" : "/models/tiny-qwen3");
}

// Warm: the per-word cache is filled after the first iteration (the steady state of a server).
void BM_Encode(benchmark::State& state) {
  Tokenizer const tok = Tokenizer::from_dir(model_dir(static_cast<int>(state.range(0))));
  std::string const& text = prose();
  std::size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
  state.counters["bytes_per_token"] = static_cast<double>(text.size()) / static_cast<double>(n_tokens);
  state.SetLabel(state.range(0) == 0 ? "tiny-llama3" : "tiny-qwen3 (NFC)");
}

// Cold: a fresh tokenizer (empty word cache) per iteration; loading is not timed.
void BM_EncodeColdCache(benchmark::State& state) {
  std::string const& text = prose();
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = std::make_unique<Tokenizer>(Tokenizer::from_dir(model_dir(static_cast<int>(state.range(0)))));
    state.ResumeTiming();
    auto ids = tok->encode(text, false);
    benchmark::DoNotOptimize(ids.data());
    state.PauseTiming();
    tok.reset();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.SetLabel(state.range(0) == 0 ? "tiny-llama3" : "tiny-qwen3 (NFC)");
}

void BM_Decode(benchmark::State& state) {
  Tokenizer const tok = Tokenizer::from_dir(model_dir(static_cast<int>(state.range(0))));
  std::string const& text = prose();
  auto const ids = tok.encode(text, false);
  for (auto _ : state) {
    auto s = tok.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

BENCHMARK(BM_Encode)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_EncodeColdCache)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_Decode)->Arg(0)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
