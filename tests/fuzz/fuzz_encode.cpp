// libFuzzer target: encoding (issue 4). Two tokenizers built in code (Llama 3 layout without a
// normalizer; GPT-2 layout with NFC and stripping added tokens). Oracles:
//  - invalid UTF-8 input is rejected with std::invalid_argument and nothing else;
//  - Llama 3 layout: decode(encode(s)) == s, and streaming decode == decode;
//  - every id is < vocab_size(); the chat renderers accept the text as message content;
//  - the piecewise NFC equals utf8proc's NFC of the whole text.
#include <akcb/models/chat_template.hpp>
#include <akcb/models/tokenizer.hpp>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using akcb::models::Tokenizer;
using Json = nlohmann::json;

std::string byte_char(int b) {
  static std::vector<std::string> const table = [] {
    std::vector<std::string> t(256);
    int n = 0;
    for (int i = 0; i < 256; ++i) {
      bool const printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      unsigned const cp = printable ? static_cast<unsigned>(i) : 256u + static_cast<unsigned>(n++);
      if (cp < 0x80) {
        t[i] += static_cast<char>(cp);
      } else {
        t[i] += static_cast<char>(0xC0 | (cp >> 6));
        t[i] += static_cast<char>(0x80 | (cp & 0x3F));
      }
    }
    return t;
  }();
  return table[b];
}

// Byte-level BPE JSON: 256 byte tokens, left-to-right merges building a few common words.
std::string tokenizer_json(bool llama3) {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  Json merges = Json::array();
  int next_id = 256;
  for (std::string w : {" the", "the", " and", "ing", " of", " to", "ion", " in", "er", " is", "123", " We",
                        "'ve", "\xE4\xBD\xA0\xE5\xA5\xBD", "  ", "\n\n", "\xC3\xA9"}) {
    std::string prefix = byte_char(static_cast<unsigned char>(w[0]));
    for (std::size_t k = 1; k < w.size(); ++k) {
      std::string const c = byte_char(static_cast<unsigned char>(w[k]));
      if (!vocab.contains(prefix + c)) {
        vocab[prefix + c] = next_id++;
        merges.push_back(Json::array({prefix, c}));
      }
      prefix += c;
    }
  }
  Json added = Json::array();
  for (std::string t : {"<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<think>"})
    added.push_back({{"id", next_id++}, {"content", t}, {"special", t != "<think>"}});
  Json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", llama3}}},
            {"added_tokens", added},
            {"decoder", {{"type", "ByteLevel"}}}};
  if (llama3) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"},
                             {"pattern",
                              {{"Regex",
                                R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
                             {"behavior", "Isolated"},
                             {"invert", false}},
                            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    j["post_processor"] = {{"type", "TemplateProcessing"},
                           {"single", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                       {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                           {"special_tokens", {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"},
                                                                      {"ids", {added[0]["id"]}},
                                                                      {"tokens", {"<|begin_of_text|>"}}}}}}};
  } else {
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
    j["added_tokens"].push_back({{"id", next_id++}, {"content", "[MASK]"}, {"special", true}, {"lstrip", true}, {"rstrip", true}});
    j["added_tokens"].push_back({{"id", next_id++}, {"content", "cat"}, {"single_word", true}, {"normalized", true}});
    j["added_tokens"].push_back({{"id", next_id++}, {"content", "e\xCC\x81"}, {"normalized", true}});
  }
  return j.dump();
}

void check(bool cond, char const* what) {
  if (!cond) {
    std::fprintf(stderr, "fuzz_encode: oracle failed: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(uint8_t const* data, std::size_t size) {
  static Tokenizer const llama = Tokenizer::from_json(tokenizer_json(true));
  static Tokenizer const gpt2 = Tokenizer::from_json(tokenizer_json(false));
  std::string const text(reinterpret_cast<char const*>(data), size);
  bool valid = true;
  try {
    akcb::models::detail::check_utf8(text);
  } catch (std::invalid_argument const&) {
    valid = false;
  }
  for (Tokenizer const* tok : {&llama, &gpt2}) {
    std::vector<int32_t> ids;
    try {
      ids = tok->encode(text, size % 2 == 0);
    } catch (std::invalid_argument const&) {
      check(!valid, "valid UTF-8 rejected");
      continue;
    }
    check(valid, "invalid UTF-8 accepted");
    for (int32_t id : ids) check(id >= 0 && id < tok->vocab_size(), "id out of range");
    std::string const dec = tok->decode(ids);
    akcb::models::IncrementalDecoder inc(*tok);
    std::string streamed;
    for (int32_t id : ids) streamed += inc.push(id);
    streamed += inc.finish();
    check(streamed == dec, "streaming decode != decode");
    if (tok == &llama) check(llama.decode(llama.encode(text, false)) == text, "decode(encode(s)) != s");
  }
  if (valid) {
    utf8proc_uint8_t* whole = nullptr;
    utf8proc_ssize_t const n = utf8proc_map(reinterpret_cast<utf8proc_uint8_t const*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &whole,
                                            static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n >= 0) {
      check(akcb::models::detail::nfc(text) == std::string(reinterpret_cast<char*>(whole), static_cast<std::size_t>(n)),
            "piecewise NFC != NFC");
    }
    std::free(whole);
    using akcb::models::ChatFormat;
    std::vector<akcb::models::ChatMessage> msgs{{"system", text, std::nullopt}, {"user", text, std::nullopt},
                                                {"assistant", text, std::nullopt}, {"user", text, std::nullopt}};
    for (auto f : {ChatFormat::kLlama3, ChatFormat::kQwen3}) {
      akcb::models::ChatTemplate const t(f, "<|begin_of_text|>", "<|eot_id|>");
      std::string const prompt = t.render(msgs, {true, size % 3 == 0});
      check(llama.decode(llama.encode(prompt, false)) == prompt, "chat prompt round trip");
    }
  }
  return 0;
}
