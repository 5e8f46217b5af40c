#pragma once
/// \file chat_template.hpp
/// Chat prompts for Llama 3 and Qwen 3, rendered natively (there is no C++ Jinja engine here) so
/// that they equal transformers' `apply_chat_template` with those models' templates
/// (tools/chat_templates/llama3.jinja, tools/chat_templates/qwen3.jinja) for text conversations.
/// The family is detected from the template's source; an unknown template is an error.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace akcb::models {

class Tokenizer;

enum class ChatFormat { kLlama3, kQwen3 };

struct ChatMessage {
  std::string role;     ///< "system", "user", "assistant" (Qwen 3 also "tool")
  std::string content;
  std::optional<std::string> reasoning_content;  ///< Qwen 3 assistant turns: the thinking text
};

struct ChatOptions {
  bool add_generation_prompt = true;
  /// Qwen 3: std::nullopt = undefined in the template (thinking on); false adds the empty
  /// `<think>\n\n</think>\n\n` block after the generation prompt. Ignored by Llama 3.
  std::optional<bool> enable_thinking;
};

class ChatTemplate {
 public:
  /// Detects the family of a Jinja chat template: Llama 3 (`<|start_header_id|>`) or Qwen 3
  /// (`<|im_start|>`). std::nullopt when neither.
  static std::optional<ChatFormat> detect(std::string_view jinja_source);

  /// \throws std::runtime_error naming the problem if the template is empty or of unknown family.
  static ChatTemplate from_source(std::string_view jinja_source, std::string bos_token = {},
                                  std::string eos_token = {});
  /// The tokenizer's chat template with its bos/eos tokens.
  /// \throws std::runtime_error as from_source.
  static ChatTemplate from_tokenizer(Tokenizer const& tokenizer);

  ChatTemplate(ChatFormat format, std::string bos_token, std::string eos_token)
      : format_(format), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {}

  ChatFormat format() const { return format_; }

  /// Renders the prompt text (encode it with add_special_tokens=false: it already holds BOS).
  /// \throws std::invalid_argument if `messages` is empty (the templates need a first message) or
  /// a text is not valid UTF-8.
  std::string render(std::vector<ChatMessage> const& messages, ChatOptions const& options = {}) const;

 private:
  ChatFormat format_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace akcb::models
