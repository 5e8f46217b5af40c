// Native renderers of the Llama 3, Llama 3.1 / 3.2 and Qwen 3 chat templates; see chat_template.hpp.
// Each function mirrors the Jinja source in tools/chat_templates/ line by line, including the
// Python string methods it calls (str.strip, split, lstrip('\n')...).
#include <akcb/models/chat_template.hpp>
#include <akcb/models/tokenizer.hpp>

#include <cstddef>
#include <cstdio>
#include <ctime>
#include <stdexcept>
#include <string>

namespace akcb::models {
namespace {

// Python's str.isspace() for one code point.
bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

char32_t decode_at(std::string const& s, std::size_t i, std::size_t* len) {
  auto const b0 = static_cast<unsigned char>(s[i]);
  std::size_t n = b0 < 0x80 ? 1 : b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = n == 1 ? b0 : b0 & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
  *len = n;
  return cp;
}

// Python's str.strip() with no argument (Jinja's `trim` filter). `s` is valid UTF-8.
std::string py_strip(std::string const& s) {
  std::size_t b = 0, e = s.size();
  while (b < e) {
    std::size_t n = 0;
    if (!py_isspace(decode_at(s, b, &n))) break;
    b += n;
  }
  // Scan forward to find the last non-space character's end.
  std::size_t last_end = b;
  for (std::size_t i = b; i < e;) {
    std::size_t n = 0;
    if (!py_isspace(decode_at(s, i, &n))) last_end = i + n;
    i += n;
  }
  return s.substr(b, last_end - b);
}

std::string lstrip_nl(std::string const& s) {
  std::size_t const b = s.find_first_not_of('\n');
  return b == std::string::npos ? std::string() : s.substr(b);
}
std::string rstrip_nl(std::string const& s) {
  std::size_t const e = s.find_last_not_of('\n');
  return e == std::string::npos ? std::string() : s.substr(0, e + 1);
}
std::string strip_nl(std::string const& s) { return lstrip_nl(rstrip_nl(s)); }

bool starts_with(std::string const& s, std::string const& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(std::string const& s, std::string const& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Python's s.split(sep)[0] and s.split(sep)[-1].
std::string split_first(std::string const& s, std::string const& sep) {
  std::size_t const p = s.find(sep);
  return p == std::string::npos ? s : s.substr(0, p);
}
std::string split_last(std::string const& s, std::string const& sep) {
  std::size_t const p = s.rfind(sep);
  return p == std::string::npos ? s : s.substr(p + sep.size());
}

std::string render_llama3(std::vector<ChatMessage> const& messages, ChatOptions const& options,
                          std::string const& bos) {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + py_strip(messages[i].content) +
           "<|eot_id|>";
  }
  if (options.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Llama 3.1 / 3.2 (tools/chat_templates/llama31.jinja, llama32.jinja; the official templates
// without tools): the system turn is always there, with the knowledge-cutoff and date lines before
// the conversation's own system message.
std::string render_llama31(std::vector<ChatMessage> const& messages, ChatOptions const& options,
                           std::string const& bos, std::string const& date, char const* family) {
  if (messages.empty())
    throw std::invalid_argument(std::string("akcb chat: the ") + family + " template needs at least one message");
  std::size_t first = 0;
  std::string system_message;
  if (messages[0].role == "system") {
    system_message = py_strip(messages[0].content);
    first = 1;
  }
  std::string out = bos + "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                          "Today Date: " + date + "\n\n" + system_message + "<|eot_id|>";
  for (std::size_t i = first; i < messages.size(); ++i) {
    auto const& m = messages[i];
    if (m.role == "tool" || m.role == "ipython")
      throw std::invalid_argument(std::string("akcb chat: the ") + family + " template's tool use (a \"" + m.role +
                                  "\" message) is not rendered natively; only system / user / assistant text turns");
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + py_strip(m.content) + "<|eot_id|>";
  }
  if (options.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Python's datetime.now().strftime("%d %b %Y") in the C locale (as transformers' strftime_now).
std::string today_date_string() {
  static char const* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t const now = std::time(nullptr);
  std::tm tm{};
  if (localtime_r(&now, &tm) == nullptr) throw std::runtime_error("akcb chat: cannot read the local date");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d %s %d", tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900);
  return buf;
}

std::string render_qwen3(std::vector<ChatMessage> const& messages, ChatOptions const& options) {
  if (messages.empty()) throw std::invalid_argument("akcb chat: the Qwen 3 template needs at least one message");
  std::string out;
  if (messages[0].role == "system") out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  // The last user query (not a tool response) closes the "multi-step tool" span.
  std::size_t last_query_index = messages.size() - 1;
  for (std::size_t k = messages.size(); k-- > 0;) {
    auto const& m = messages[k];
    if (m.role == "user" && !(starts_with(m.content, "<tool_response>") && ends_with(m.content, "</tool_response>"))) {
      last_query_index = k;
      break;
    }
  }
  for (std::size_t i = 0; i < messages.size(); ++i) {
    auto const& m = messages[i];
    bool const first = i == 0, last = i + 1 == messages.size();
    std::string content = m.content;
    if (m.role == "user" || (m.role == "system" && !first)) {
      out += "<|im_start|>" + m.role + "\n" + content + "<|im_end|>\n";
    } else if (m.role == "assistant") {
      std::string reasoning;
      if (m.reasoning_content) {
        reasoning = *m.reasoning_content;
      } else if (content.find("</think>") != std::string::npos) {
        reasoning = lstrip_nl(split_last(rstrip_nl(split_first(content, "</think>")), "<think>"));
        content = lstrip_nl(split_last(content, "</think>"));
      }
      if (i > last_query_index && (last || !reasoning.empty())) {
        out += "<|im_start|>" + m.role + "\n<think>\n" + strip_nl(reasoning) + "\n</think>\n\n" + lstrip_nl(content);
      } else {
        out += "<|im_start|>" + m.role + "\n" + content;
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (first || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + content + "\n</tool_response>";
      if (last || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (options.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (options.enable_thinking.has_value() && !*options.enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

}  // namespace

std::optional<ChatFormat> ChatTemplate::detect(std::string_view src) {
  if (src.find("<|start_header_id|>") != std::string_view::npos &&
      src.find("<|eot_id|>") != std::string_view::npos) {
    if (src.find("Cutting Knowledge Date") == std::string_view::npos) return ChatFormat::kLlama3;
    return src.find("strftime_now") != std::string_view::npos ? ChatFormat::kLlama32 : ChatFormat::kLlama31;
  }
  if (src.find("<|im_start|>") != std::string_view::npos && src.find("<think>") != std::string_view::npos)
    return ChatFormat::kQwen3;
  return std::nullopt;
}

ChatTemplate ChatTemplate::from_source(std::string_view src, std::string bos_token, std::string eos_token) {
  if (src.empty()) throw std::runtime_error("akcb chat: the tokenizer has no chat template");
  auto const format = detect(src);
  if (!format) {
    std::string why = "akcb chat: unsupported chat template (supported: Llama 3 / 3.1 / 3.2 with "
                      "<|start_header_id|> and <|eot_id|>, Qwen 3 with <|im_start|> and <think>)";
    if (src.find("<|im_start|>") != std::string_view::npos) why += "; this ChatML template is not Qwen 3's";
    throw std::runtime_error(why);
  }
  if ((*format == ChatFormat::kLlama31 || *format == ChatFormat::kLlama32) &&
      (src.find("<|image|>") != std::string_view::npos || src.find("Today Date") == std::string_view::npos))
    throw std::runtime_error(
        "akcb chat: unsupported chat template: a Llama 3.x template with a knowledge-cutoff preamble that is "
        "neither Llama 3.1's nor Llama 3.2's text template (the Llama 3.2 Vision template is not rendered "
        "natively; supported: tools/chat_templates/llama31.jinja, llama32.jinja and the official ones)");
  return ChatTemplate(*format, std::move(bos_token), std::move(eos_token));
}

ChatTemplate ChatTemplate::from_tokenizer(Tokenizer const& tokenizer) {
  return from_source(tokenizer.chat_template(), tokenizer.bos_token().value_or(""),
                     tokenizer.eos_token().value_or(""));
}

std::string ChatTemplate::default_date_string() const {
  switch (format_) {
    case ChatFormat::kLlama31:
      return "26 Jul 2024";
    case ChatFormat::kLlama32:
      return today_date_string();
    case ChatFormat::kLlama3:
    case ChatFormat::kQwen3:
      break;
  }
  return {};
}

std::string ChatTemplate::render(std::vector<ChatMessage> const& messages, ChatOptions const& options) const {
  for (auto const& m : messages) {
    detail::check_utf8(m.role, "chat message role");
    detail::check_utf8(m.content, "chat message content");
    if (m.reasoning_content) detail::check_utf8(*m.reasoning_content, "chat message reasoning_content");
  }
  detail::check_utf8(options.date_string, "chat date_string");
  switch (format_) {
    case ChatFormat::kLlama3:
      return render_llama3(messages, options, bos_token_);
    case ChatFormat::kQwen3:
      return render_qwen3(messages, options);
    case ChatFormat::kLlama31:
    case ChatFormat::kLlama32: {
      std::string const date = options.date_string.empty() ? default_date_string() : options.date_string;
      return render_llama31(messages, options, bos_token_, date,
                            format_ == ChatFormat::kLlama31 ? "Llama 3.1" : "Llama 3.2");
    }
  }
  throw std::logic_error("akcb chat: unknown ChatFormat");
}

}  // namespace akcb::models
