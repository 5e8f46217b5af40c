#pragma once
/// \file tokenizer.hpp
/// Byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (Llama 3, Qwen 3, GPT-2
/// style), producing the same ids as the Rust `tokenizers` library.
///
/// Supported configuration (anything else is rejected at load time with an error naming it):
///  - model: BPE with vocab + merges ("a b" strings or ["a", "b"] pairs), `ignore_merges`,
///    `byte_fallback`, `unk_token`/`fuse_unk`; no dropout, no subword prefix/suffix.
///  - normalizer: null, NFC, or a Sequence of NFC.
///  - pre_tokenizer: ByteLevel (use_regex=true means GPT-2's pattern), or a Sequence of Split
///    (regex or string; Isolated, Removed, MergedWithPrevious, MergedWithNext) and ByteLevel.
///  - added tokens, matched verbatim in the text (leftmost-longest), with lstrip, rstrip,
///    single_word and normalized flags.
///  - post_processor: null, ByteLevel, TemplateProcessing (single sequence), or a Sequence of them.
///  - decoder: ByteLevel (or null).
///
/// Torch-free: this header includes only the standard library. Errors are reported with
/// std::invalid_argument (the caller's input: invalid UTF-8, unknown ids) and std::runtime_error
/// (files that cannot be read or configurations that are not supported).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace akcb::models {

/// One entry of tokenizer.json's `added_tokens`.
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;      ///< skipped by decode(..., skip_special_tokens=true)
  bool lstrip = false;       ///< swallows whitespace on its left
  bool rstrip = false;       ///< swallows whitespace on its right
  bool single_word = false;  ///< matches only outside words
  bool normalized = false;   ///< matched on the normalized text instead of the raw text
};

class Tokenizer {
 public:
  /// Loads `dir/tokenizer.json` and, if present, `dir/tokenizer_config.json` (bos/eos tokens, chat
  /// template) and `dir/chat_template.jinja`.
  /// \throws std::runtime_error if a file cannot be read, is malformed or is unsupported.
  static Tokenizer from_dir(std::string const& dir);

  /// Loads a tokenizer.json file (no tokenizer_config.json).
  /// \throws std::runtime_error as from_dir.
  static Tokenizer from_file(std::string const& tokenizer_json_path);

  /// Parses tokenizer.json text, optionally with tokenizer_config.json text (empty: none).
  /// \throws std::runtime_error on malformed JSON or an unsupported configuration.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config = {});

  /// Encodes UTF-8 text. With `add_special_tokens`, the post-processor's template is applied
  /// (e.g. Llama 3's BOS). Special tokens written in the text are always recognised, as in HF.
  /// \throws std::invalid_argument if `text` is not valid UTF-8 (the message names the byte offset).
  /// Complexity: O(n log n) in the text length; words are cached. Thread-safe.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  /// Decodes ids to text, as HF `decode` (invalid UTF-8 byte sequences become U+FFFD).
  /// \throws std::invalid_argument for an id that is no token (HF silently drops those).
  std::string decode(std::vector<int32_t> const& ids, bool skip_special_tokens = false) const;

  /// The raw bytes of one token after the decoder's byte mapping (may be part of a character).
  /// \throws std::invalid_argument for an unknown id.
  std::string token_bytes(int32_t id) const;

  /// Number of ids: max(model vocab, added tokens) + 1.
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  /// The token's string as stored in tokenizer.json (byte-level characters for model tokens).
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  std::vector<AddedToken> const& added_tokens() const;

  /// From tokenizer_config.json (empty optional when absent or null).
  std::optional<std::string> const& bos_token() const;
  std::optional<std::string> const& eos_token() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  /// The chat template (Jinja source) from chat_template.jinja or tokenizer_config.json; empty if none.
  std::string const& chat_template() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<Impl const> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl const> impl_;
};

/// Streaming decoder: feed ids one at a time and get text that never ends in half a UTF-8
/// character. With the ByteLevel decoder (Llama 3, Qwen 3) the concatenation of all push()
/// results and finish() equals tokenizer.decode(all_ids, skip_special_tokens).
/// Not thread-safe (one per stream); the Tokenizer it holds is shared, not copied.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(Tokenizer tokenizer, bool skip_special_tokens = false)
      : tokenizer_(std::move(tokenizer)), skip_special_tokens_(skip_special_tokens) {}

  /// Adds one id; returns the newly completed text (possibly empty).
  /// \throws std::invalid_argument for an unknown id.
  std::string push(int32_t id);
  /// Flushes bytes still pending (an incomplete character becomes U+FFFD, as decode() does).
  std::string finish();
  /// Drops pending bytes.
  void reset() { pending_.clear(); }

 private:
  Tokenizer tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes of an incomplete UTF-8 character, at most 3
};

namespace detail {

/// Rust's `String::from_utf8_lossy`: each maximal invalid subpart becomes U+FFFD.
/// With `stop_at_incomplete_tail`, an incomplete but valid character prefix at the end is not
/// replaced but left unconsumed; the number of consumed bytes is stored in `consumed`.
std::string utf8_lossy(std::string_view bytes, bool stop_at_incomplete_tail = false,
                       std::size_t* consumed = nullptr);

/// Throws std::invalid_argument naming the byte offset of the first invalid UTF-8 sequence.
void check_utf8(std::string_view text, char const* what = "text");

/// Unicode NFC of valid UTF-8 text (utf8proc).
std::string nfc(std::string_view text);

}  // namespace detail
}  // namespace akcb::models
