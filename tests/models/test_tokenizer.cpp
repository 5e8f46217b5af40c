// Tokenizer and chat templates against Hugging Face (issue 4).
// The reference fixtures are written by tools/tokenizer/make_fixtures.py (ctest setup test
// make_tokenizer_fixtures) into $AKCB_TOKENIZER_FIXTURES/<name>/.
#include <akcb/models/chat_template.hpp>
#include <akcb/models/tokenizer.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using akcb::models::ChatFormat;
using akcb::models::ChatMessage;
using akcb::models::ChatOptions;
using akcb::models::ChatTemplate;
using akcb::models::IncrementalDecoder;
using akcb::models::Tokenizer;
using Json = nlohmann::json;

std::string fixtures_dir() {
  char const* d = std::getenv("AKCB_TOKENIZER_FIXTURES");
  if (!d || !*d) throw std::runtime_error("AKCB_TOKENIZER_FIXTURES is not set (run through ctest)");
  return d;
}

Json read_json(std::string const& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  return Json::parse(f);
}

std::string read_text(std::string const& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool valid_utf8(std::string const& s) {
  try {
    akcb::models::detail::check_utf8(s);
    return true;
  } catch (std::invalid_argument const&) {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Ids and decodings equal Hugging Face's on a few hundred hard strings.

class HfParity : public ::testing::TestWithParam<std::string> {};

bool have_fixture(std::string const& dir) { return std::ifstream(dir + "/tokenizer.json").good(); }

TEST_P(HfParity, IdsAndDecodingMatchHuggingFace) {
  std::string const dir = fixtures_dir() + "/" + GetParam();
  if (!have_fixture(dir)) GTEST_SKIP() << "no fixture " << dir << " (bundled model absent)";
  Tokenizer const tok = Tokenizer::from_dir(dir);
  Json const cases = read_json(dir + "/cases.json")["cases"];
  ASSERT_GE(cases.size(), 300u);
  int failures = 0;
  for (auto const& c : cases) {
    std::string const text = c["text"].get<std::string>();
    SCOPED_TRACE("text: \"" + text + "\"");
    auto const ids = c["ids"].get<std::vector<int32_t>>();
    auto const ids_plain = c["ids_no_special"].get<std::vector<int32_t>>();
    auto const got = tok.encode(text, /*add_special_tokens=*/true);
    auto const got_plain = tok.encode(text, /*add_special_tokens=*/false);
    bool ok = got == ids && got_plain == ids_plain;
    EXPECT_EQ(got, ids);
    EXPECT_EQ(got_plain, ids_plain);
    std::string const dec = tok.decode(ids, false);
    std::string const dec_skip = tok.decode(ids, true);
    EXPECT_EQ(dec, c["decoded"].get<std::string>());
    EXPECT_EQ(dec_skip, c["decoded_skip"].get<std::string>());
    // decode(encode(s)) == s (NFC(s) for NFC tokenizers) wherever HF round-trips too.
    std::string const rt = tok.decode(got_plain, false);
    EXPECT_EQ(rt, c["roundtrip"].get<std::string>());
    if (c["roundtrip"] == c["expected_roundtrip"]) EXPECT_EQ(rt, c["expected_roundtrip"].get<std::string>());
    ok = ok && dec == c["decoded"].get<std::string>() && dec_skip == c["decoded_skip"].get<std::string>();
    // Streaming gives the same text and never half a character.
    IncrementalDecoder inc(tok);
    std::string streamed;
    for (int32_t id : ids) {
      std::string const piece = inc.push(id);
      EXPECT_TRUE(valid_utf8(piece));
      streamed += piece;
    }
    streamed += inc.finish();
    EXPECT_EQ(streamed, dec);
    ok = ok && streamed == dec;
    if (!ok && ++failures > 10) FAIL() << "more than 10 failing strings; stopping";
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, HfParity, ::testing::Values("llama3", "qwen3", "gpt2", "tiny-llama3", "tiny-qwen3", "v_split_removed",
                                           "v_split_mergedwithprevious", "v_split_mergedwithnext", "v_split_invert",
                                           "v_split_string", "v_no_ignore_merges", "v_prefix_space"),
                         [](auto const& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(HfParity, FixtureShapes) {
  // The variants cover what the loader supports: pair and string merges, NFC and Sequence[NFC],
  // Split+ByteLevel and bare ByteLevel, the BOS template, added tokens with flags.
  Json const l = read_json(fixtures_dir() + "/llama3/tokenizer.json");
  Json const q = read_json(fixtures_dir() + "/qwen3/tokenizer.json");
  Json const g = read_json(fixtures_dir() + "/gpt2/tokenizer.json");
  EXPECT_TRUE(l["model"]["merges"][0].is_array());
  EXPECT_TRUE(q["model"]["merges"][0].is_string());
  EXPECT_EQ(q["normalizer"]["type"], "NFC");
  EXPECT_EQ(g["normalizer"]["type"], "Sequence");
  EXPECT_EQ(g["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(l["model"]["ignore_merges"], true);
  Tokenizer const tok = Tokenizer::from_dir(fixtures_dir() + "/llama3");
  ASSERT_TRUE(tok.bos_id().has_value());
  EXPECT_EQ(tok.encode("", true), std::vector<int32_t>{*tok.bos_id()});
  EXPECT_TRUE(tok.encode("", false).empty());
  EXPECT_EQ(tok.bos_token().value_or(""), "<|begin_of_text|>");
  EXPECT_EQ(tok.eos_token().value_or(""), "<|eot_id|>");
  Tokenizer const qt = Tokenizer::from_dir(fixtures_dir() + "/qwen3");
  EXPECT_FALSE(qt.bos_token().has_value());
  ASSERT_TRUE(qt.token_to_id("<think>").has_value());
  EXPECT_FALSE(qt.is_special(*qt.token_to_id("<think>")));
  EXPECT_TRUE(qt.is_special(*qt.token_to_id("<|im_end|>")));
}

// ---------------------------------------------------------------------------------------------
// Chat prompts equal transformers' apply_chat_template.

class ChatParity : public ::testing::TestWithParam<std::string> {};

ChatFormat expected_format(std::string const& name) {
  if (name == "llama31") return ChatFormat::kLlama31;
  if (name == "llama32") return ChatFormat::kLlama32;
  return name.find("llama3") != std::string::npos ? ChatFormat::kLlama3 : ChatFormat::kQwen3;
}

TEST_P(ChatParity, RenderMatchesApplyChatTemplate) {
  std::string const dir = fixtures_dir() + "/" + GetParam();
  if (!have_fixture(dir)) GTEST_SKIP() << "no fixture " << dir << " (bundled model absent)";
  Tokenizer const tok = Tokenizer::from_dir(dir);
  ChatTemplate const chat = ChatTemplate::from_tokenizer(tok);
  EXPECT_EQ(chat.format(), expected_format(GetParam()));
  Json const fixture = read_json(dir + "/chat.json");
  Json const chats = fixture["chats"];
  ASSERT_GE(chats.size(), 50u);
  // Llama 3.2's default date is today (transformers' strftime_now when the fixture was made):
  // compared only when the fixture's day is the C++ side's day.
  bool const same_day = fixture.contains("today") && fixture["today"].is_string() &&
                        fixture["today"].get<std::string>() == chat.default_date_string();
  int compared = 0, default_dates = 0;
  for (auto const& c : chats) {
    bool const default_date = !c.contains("date_string") || c["date_string"].is_null();
    if (chat.format() == ChatFormat::kLlama32 && default_date && !same_day) continue;
    std::vector<ChatMessage> messages;
    for (auto const& m : c["messages"]) {
      ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>(), std::nullopt};
      if (m.contains("reasoning_content")) msg.reasoning_content = m["reasoning_content"].get<std::string>();
      messages.push_back(std::move(msg));
    }
    ChatOptions opt;
    opt.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    if (!c["enable_thinking"].is_null()) opt.enable_thinking = c["enable_thinking"].get<bool>();
    if (!default_date) opt.date_string = c["date_string"].get<std::string>();
    SCOPED_TRACE(c.dump());
    EXPECT_EQ(chat.render(messages, opt), c["text"].get<std::string>());
    ++compared;
    default_dates += default_date;
  }
  EXPECT_GE(compared, 50);
  if (chat.format() == ChatFormat::kLlama31) {
    EXPECT_GT(default_dates, 0);  // the default "26 Jul 2024" is checked against transformers
    EXPECT_LT(default_dates, compared);
  }
  if (chat.format() == ChatFormat::kLlama32) {
    if (!same_day) std::cerr << "note: the Llama 3.2 default-date chats were skipped (fixture made on another day)\n";
    else EXPECT_GT(default_dates, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatParity,
                         ::testing::Values("llama3", "qwen3", "llama31", "llama32", "tiny-llama3", "tiny-qwen3"),
                         [](auto const& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(ChatTemplate, JinjaFilesAreDetected) {
  std::string const root = AKCB_SOURCE_DIR;
  EXPECT_EQ(ChatTemplate::detect(read_text(root + "/tools/chat_templates/llama3.jinja")),
            akcb::models::ChatFormat::kLlama3);
  EXPECT_EQ(ChatTemplate::detect(read_text(root + "/tools/chat_templates/qwen3.jinja")),
            akcb::models::ChatFormat::kQwen3);
  EXPECT_EQ(ChatTemplate::detect(read_text(root + "/tools/chat_templates/llama31.jinja")), ChatFormat::kLlama31);
  EXPECT_EQ(ChatTemplate::detect(read_text(root + "/tools/chat_templates/llama32.jinja")), ChatFormat::kLlama32);
}

TEST(ChatTemplate, Llama31And32DatesAndErrors) {
  std::string const root = AKCB_SOURCE_DIR;
  ChatTemplate const t31 = ChatTemplate::from_source(read_text(root + "/tools/chat_templates/llama31.jinja"), "<B>");
  ChatTemplate const t32 = ChatTemplate::from_source(read_text(root + "/tools/chat_templates/llama32.jinja"), "<B>");
  EXPECT_EQ(t31.default_date_string(), "26 Jul 2024");
  // Today, as "%d %b %Y" in the C locale: "05 Mar 2026".
  EXPECT_TRUE(std::regex_match(t32.default_date_string(),
                               std::regex("(0[1-9]|[12][0-9]|3[01]) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                                          "[0-9]{4}")))
      << t32.default_date_string();
  EXPECT_EQ(ChatTemplate(ChatFormat::kLlama3, "", "").default_date_string(), "");
  std::vector<ChatMessage> const conv = {{"system", " Be brief. ", std::nullopt}, {"user", "hi", std::nullopt}};
  std::string const head = "<B><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n";
  EXPECT_EQ(t31.render(conv),
            head + "Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
                   "hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  ChatOptions opt;
  opt.date_string = "01 Feb 2030";
  opt.add_generation_prompt = false;
  EXPECT_EQ(t32.render(conv, opt), head + "Today Date: 01 Feb 2030\n\nBe brief.<|eot_id|>"
                                          "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
  opt.date_string.clear();
  std::string const today = t32.default_date_string();
  std::string const got = t32.render(conv, opt);
  if (today == t32.default_date_string())  // not across midnight
    EXPECT_NE(got.find("Today Date: " + today + "\n\n"), std::string::npos) << got;
  // Llama 3 / Qwen 3 ignore the date.
  opt.date_string = "01 Feb 2030";
  ChatTemplate const l3(ChatFormat::kLlama3, "<B>", "");
  EXPECT_EQ(l3.render(conv, opt).find("Today Date"), std::string::npos);
  // Tool turns are not rendered natively; an empty conversation is an error.
  for (auto const* role : {"tool", "ipython"}) {
    try {
      t31.render({{"user", "q", std::nullopt}, {role, "{}", std::nullopt}});
      ADD_FAILURE() << "expected invalid_argument for role " << role;
    } catch (std::invalid_argument const& e) {
      EXPECT_NE(std::string(e.what()).find("tool use"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(t32.render({}), std::invalid_argument);
  opt.date_string = "bad \xC3";
  EXPECT_THROW(t31.render(conv, opt), std::invalid_argument);
  // Detection on template text with the official templates' markers; Llama 3.2 Vision is refused.
  std::string const l31 = "{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}"
                          "{%- endif %}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
                          "{{- \"Cutting Knowledge Date: December 2023\\n\" }}{{- \"Today Date: \" + date_string }}"
                          "{{- \"<|eot_id|>\" }}";
  std::string const l32 = "{%- set date_string = strftime_now(\"%d %b %Y\") %}" + l31;
  EXPECT_EQ(ChatTemplate::from_source(l31).format(), ChatFormat::kLlama31);
  EXPECT_EQ(ChatTemplate::from_source(l32).format(), ChatFormat::kLlama32);
  try {
    ChatTemplate::from_source(l32 + "{%- if content['type'] == 'image' %}{{ '<|image|>' }}{%- endif %}");
    ADD_FAILURE() << "expected the Llama 3.2 Vision template to be refused";
  } catch (std::runtime_error const& e) {
    EXPECT_NE(std::string(e.what()).find("Vision"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, UnknownTemplateIsAClearError) {
  try {
    ChatTemplate::from_source("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}");
    FAIL() << "expected an error";
  } catch (std::runtime_error const& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported chat template"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ChatTemplate::from_source(""), std::runtime_error);
  EXPECT_THROW(ChatTemplate::from_source("<|im_start|>{{ m }}<|im_end|>"), std::runtime_error);  // ChatML, not Qwen 3
  ChatTemplate const q(akcb::models::ChatFormat::kQwen3, "", "");
  EXPECT_THROW(q.render({}), std::invalid_argument);
  EXPECT_THROW(q.render({{"user", std::string("bad \xC3"), std::nullopt}}), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Errors and edge cases that need no fixture.

// A minimal byte-level tokenizer.json: 256 byte tokens, two merges, one special token.
std::string tiny_tokenizer_json(Json normalizer = nullptr, Json model_extra = Json::object()) {
  // GPT-2's bytes_to_unicode.
  Json vocab = Json::object();
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool const printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    char32_t const cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = b;
  }
  vocab["he"] = 256;
  vocab["hel"] = 257;
  Json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array({"h e", Json::array({"he", "l"})})}};
  for (auto const& [k, v] : model_extra.items()) model[k] = v;
  Json j = {
      {"version", "1.0"},
      {"added_tokens", Json::array({{{"id", 258}, {"content", "<|eot|>"}, {"special", true}}})},
      {"normalizer", normalizer},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", model},
  };
  return j.dump();
}

TEST(Tokenizer, InvalidUtf8NamesTheByteOffset) {
  Tokenizer const tok = Tokenizer::from_json(tiny_tokenizer_json());
  for (auto const& [text, offset] : std::vector<std::pair<std::string, int>>{
           {"abc\xFF", 3}, {"ab\xC3", 2}, {"\xED\xA0\x80", 0}, {"ok \xE2\x82", 3}, {"x\xC0\xAF", 1}}) {
    try {
      tok.encode(text);
      FAIL() << "expected invalid_argument";
    } catch (std::invalid_argument const& e) {
      EXPECT_NE(std::string(e.what()).find("byte offset " + std::to_string(offset)), std::string::npos) << e.what();
    }
  }
}

TEST(Tokenizer, MergesInBothFormsAndSpecialTokens) {
  Tokenizer const tok = Tokenizer::from_json(tiny_tokenizer_json());
  EXPECT_EQ(tok.encode("hel"), (std::vector<int32_t>{257}));
  EXPECT_EQ(tok.encode("help<|eot|>"), (std::vector<int32_t>{257, 'p', 258}));
  EXPECT_EQ(tok.decode({257, 'p', 258}), "help<|eot|>");
  EXPECT_EQ(tok.decode({257, 'p', 258}, true), "help");
  EXPECT_THROW(tok.decode({100000}), std::invalid_argument);
  EXPECT_EQ(tok.vocab_size(), 259);
}

TEST(Tokenizer, IncrementalDecoderHoldsPartialCharacters) {
  Tokenizer const tok = Tokenizer::from_json(tiny_tokenizer_json());
  // "€" = E2 82 AC as three single-byte tokens, then an invalid lone continuation byte.
  IncrementalDecoder inc(tok);
  EXPECT_EQ(inc.push(0xE2), "");
  EXPECT_EQ(inc.push(0x82), "");
  EXPECT_EQ(inc.push(0xAC), "\xE2\x82\xAC");
  EXPECT_EQ(inc.push(0x80), "\xEF\xBF\xBD");
  EXPECT_EQ(inc.push(0xF0), "");
  EXPECT_EQ(inc.push('a'), "\xEF\xBF\xBD" "a");  // F0 then 'a': the F0 is invalid
  EXPECT_EQ(inc.push(0xF0), "");
  EXPECT_EQ(inc.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({0xE2, 0x82, 0xAC, 0x80, 0xF0, 'a', 0xF0}), "\xE2\x82\xAC\xEF\xBF\xBD\xEF\xBF\xBD" "a\xEF\xBF\xBD");
}

TEST(Tokenizer, UnsupportedConfigurationsNameThemselves) {
  auto const expect_error = [](std::string const& json, std::string const& needle) {
    try {
      Tokenizer::from_json(json);
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (std::runtime_error const& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(tiny_tokenizer_json({{"type", "NFKC"}}), "NFKC");
  expect_error(tiny_tokenizer_json({{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}}), "Lowercase");
  expect_error(tiny_tokenizer_json(nullptr, {{"type", "Unigram"}}), "Unigram");
  expect_error(tiny_tokenizer_json(nullptr, {{"dropout", 0.1}}), "dropout");
  expect_error(tiny_tokenizer_json(nullptr, {{"continuing_subword_prefix", "##"}}), "continuing_subword_prefix");
  expect_error(tiny_tokenizer_json(nullptr, {{"merges", {"h q"}}}), "not in the vocab");
  expect_error("{\"model\": ", "malformed tokenizer.json");
  Json j = Json::parse(tiny_tokenizer_json());
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error(j.dump(), "Metaspace");
  j = Json::parse(tiny_tokenizer_json());
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j.dump(), "WordPiece");
  j = Json::parse(tiny_tokenizer_json());
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  expect_error(j.dump(), "RobertaProcessing");
  EXPECT_THROW(Tokenizer::from_dir("/nonexistent/dir"), std::runtime_error);
}

TEST(Tokenizer, ConcurrentEncodingAgrees) {
  Tokenizer const tok = Tokenizer::from_dir(fixtures_dir() + "/llama3");
  Json const cases = read_json(fixtures_dir() + "/llama3/cases.json")["cases"];
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (auto const& c : cases)
        if (tok.encode(c["text"].get<std::string>()) != c["ids"].get<std::vector<int32_t>>()) ++mismatches[t];
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
