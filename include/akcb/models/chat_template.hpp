#pragma once
/// \file chat_template.hpp
/// Chat prompts for Llama 3, Llama 3.1, Llama 3.2 and Qwen 3, rendered natively (there is no C++
/// Jinja engine here) so that they equal transformers' `apply_chat_template` with those models'
/// templates (tools/chat_templates/{llama3,llama31,llama32,qwen3}.jinja, and the official Llama
/// 3.1 / 3.2 Instruct templates) for text conversations.
/// The family is detected from the template's source; an unknown template is an error.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace akcb::models {

class Tokenizer;

enum class ChatFormat {
  kLlama3,   ///< Llama 3.0: a system turn only when the conversation has one
  kQwen3,
  kLlama31,  ///< Llama 3.1 (and 3.3): always a system turn with the knowledge / date lines
  kLlama32,  ///< Llama 3.2 (text): as 3.1, but the date defaults to today
};

struct ChatMessage {
  std::string role;     ///< "system", "user", "assistant" (Qwen 3 also "tool"; not Llama 3.1 / 3.2)
  std::string content;
  std::optional<std::string> reasoning_content;  ///< Qwen 3 assistant turns: the thinking text
};

struct ChatOptions {
  bool add_generation_prompt = true;
  /// Qwen 3: std::nullopt = undefined in the template (thinking on); false adds the empty
  /// `<think>\n\n</think>\n\n` block after the generation prompt. Ignored by Llama 3.
  std::optional<bool> enable_thinking;
  /// Llama 3.1 / 3.2: the template's `date_string` ("Today Date: ..." in the system turn), e.g.
  /// "26 Jul 2024". Empty = the template's default: "26 Jul 2024" for Llama 3.1, today's local
  /// date formatted "%d %b %Y" (English month abbreviation) for Llama 3.2. Ignored by the others.
  std::string date_string;
};

class ChatTemplate {
 public:
  /// Detects the family of a Jinja chat template: Llama 3 (`<|start_header_id|>` and
  /// `<|eot_id|>`; Llama 3.1 when it also has "Cutting Knowledge Date", Llama 3.2 when in addition
  /// it calls `strftime_now`) or Qwen 3 (`<|im_start|>` and `<think>`). std::nullopt when neither.
  static std::optional<ChatFormat> detect(std::string_view jinja_source);

  /// \throws std::runtime_error naming the problem if the template is empty or of unknown family
  /// (also for the Llama 3.2 Vision template, which this does not render).
  static ChatTemplate from_source(std::string_view jinja_source, std::string bos_token = {},
                                  std::string eos_token = {});
  /// The tokenizer's chat template with its bos/eos tokens.
  /// \throws std::runtime_error as from_source.
  static ChatTemplate from_tokenizer(Tokenizer const& tokenizer);

  ChatTemplate(ChatFormat format, std::string bos_token, std::string eos_token)
      : format_(format), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {}

  ChatFormat format() const { return format_; }

  /// The date that render() writes when ChatOptions::date_string is empty: "26 Jul 2024" for
  /// Llama 3.1, today's local date ("%d %b %Y", e.g. "05 Mar 2026") for Llama 3.2, empty for the
  /// formats without a date.
  std::string default_date_string() const;

  /// Renders the prompt text (encode it with add_special_tokens=false: it already holds BOS).
  /// \throws std::invalid_argument if `messages` is empty (the templates need a first message), a
  /// text is not valid UTF-8, or (Llama 3.1 / 3.2) a message has the role "tool" or "ipython":
  /// tool use is not rendered natively.
  std::string render(std::vector<ChatMessage> const& messages, ChatOptions const& options = {}) const;

 private:
  ChatFormat format_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace akcb::models
