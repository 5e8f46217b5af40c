// Native renderers of the Llama 3 and Qwen 3 chat templates; see chat_template.hpp.
// Each function mirrors the Jinja source in tools/chat_templates/ line by line, including the
// Python string methods it calls (str.strip, split, lstrip('\n')...).
#include <akcb/models/chat_template.hpp>
#include <akcb/models/tokenizer.hpp>

#include <cstddef>
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
      src.find("<|eot_id|>") != std::string_view::npos)
    return ChatFormat::kLlama3;
  if (src.find("<|im_start|>") != std::string_view::npos && src.find("<think>") != std::string_view::npos)
    return ChatFormat::kQwen3;
  return std::nullopt;
}

ChatTemplate ChatTemplate::from_source(std::string_view src, std::string bos_token, std::string eos_token) {
  if (src.empty()) throw std::runtime_error("akcb chat: the tokenizer has no chat template");
  auto const format = detect(src);
  if (!format) {
    std::string why = "akcb chat: unsupported chat template (supported: Llama 3 with <|start_header_id|>, "
                      "Qwen 3 with <|im_start|> and <think>)";
    if (src.find("<|im_start|>") != std::string_view::npos) why += "; this ChatML template is not Qwen 3's";
    throw std::runtime_error(why);
  }
  if (*format == ChatFormat::kLlama3 && src.find("Cutting Knowledge Date") != std::string_view::npos)
    throw std::runtime_error(
        "akcb chat: unsupported chat template: Llama 3.1's date/tools system preamble is not rendered "
        "natively (supported: the Llama 3 template of tools/chat_templates/llama3.jinja)");
  return ChatTemplate(*format, std::move(bos_token), std::move(eos_token));
}

ChatTemplate ChatTemplate::from_tokenizer(Tokenizer const& tokenizer) {
  return from_source(tokenizer.chat_template(), tokenizer.bos_token().value_or(""),
                     tokenizer.eos_token().value_or(""));
}

std::string ChatTemplate::render(std::vector<ChatMessage> const& messages, ChatOptions const& options) const {
  for (auto const& m : messages) {
    detail::check_utf8(m.role, "chat message role");
    detail::check_utf8(m.content, "chat message content");
    if (m.reasoning_content) detail::check_utf8(*m.reasoning_content, "chat message reasoning_content");
  }
  switch (format_) {
    case ChatFormat::kLlama3:
      return render_llama3(messages, options, bos_token_);
    case ChatFormat::kQwen3:
      return render_qwen3(messages, options);
  }
  throw std::logic_error("akcb chat: unknown ChatFormat");
}

}  // namespace akcb::models
