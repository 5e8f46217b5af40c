// Byte-level BPE tokenizer read from Hugging Face tokenizer.json; see include/akcb/models/tokenizer.hpp.
//
// The pipeline follows the Rust `tokenizers` library step by step, so that ids agree:
//   added tokens (raw text, leftmost-longest) -> normalizer on the rest -> added tokens marked
//   `normalized` -> pre-tokenizer (regex splits, byte-level mapping) -> BPE per word (cached)
//   -> post-processor template (BOS).
// Regexes are Oniguruma syntax in tokenizer.json; they run on PCRE2 (UTF + UCP) after a small
// rewrite that makes \s match U+0085 as Oniguruma's does.
#include <akcb/models/tokenizer.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <nlohmann/json.hpp>
#include <pcre2.h>
#include <utf8proc.h>

namespace akcb::models::detail {
namespace {

// Length of the valid UTF-8 character starting at s[i], 0 if the bytes there are not one.
// `prefix_len` gets the number of bytes that form a valid (possibly incomplete) prefix (>= 1 when
// the lead byte could start a character, else 0), which is what Rust's lossy decoder skips.
std::size_t utf8_char_len(std::string_view s, std::size_t i, std::size_t* prefix_len) {
  auto const b0 = static_cast<unsigned char>(s[i]);
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) {
    *prefix_len = 1;
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *prefix_len = 0;
    return 0;
  }
  std::size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    auto const b = static_cast<unsigned char>(s[i + k]);
    unsigned char const l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
  }
  *prefix_len = k;
  return k == need ? need : 0;
}


}  // namespace

std::string utf8_lossy(std::string_view bytes, bool stop_at_incomplete_tail, std::size_t* consumed) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    std::size_t prefix = 0;
    std::size_t const n = utf8_char_len(bytes, i, &prefix);
    if (n > 0) {
      out.append(bytes.data() + i, n);
      i += n;
      continue;
    }
    if (stop_at_incomplete_tail && prefix > 0 && i + prefix == bytes.size()) break;
    out.append("\xEF\xBF\xBD");
    i += prefix > 0 ? prefix : 1;
  }
  if (consumed) *consumed = i;
  return out;
}

void check_utf8(std::string_view text, char const* what) {
  std::size_t i = 0;
  while (i < text.size()) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    std::size_t prefix = 0;
    std::size_t const n = utf8_char_len(text, i, &prefix);
    if (n == 0) {
      throw std::invalid_argument(std::string("akcb tokenizer: ") + what +
                                  " is not valid UTF-8: invalid or truncated sequence at byte offset " +
                                  std::to_string(i) + " (byte 0x" +
                                  "0123456789ABCDEF"[static_cast<unsigned char>(text[i]) >> 4] +
                                  "0123456789ABCDEF"[static_cast<unsigned char>(text[i]) & 15] + ")");
    }
    i += n;
  }
}

char32_t next_code_point(std::string_view s, std::size_t& i) {
  auto const b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  std::size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = b0 & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
  i += n;
  return cp;
}

char32_t prev_code_point(std::string_view s, std::size_t end, std::size_t* start) {
  std::size_t i = end;
  do {
    --i;
  } while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80);
  std::size_t j = i;
  char32_t const cp = next_code_point(s, j);
  if (start) *start = i;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Code points that are NFC_QC=Yes with canonical combining class 0 and that never compose with a
// preceding character: a text made only of them is already in NFC. A conservative set of the
// common blocks (Latin-1/Extended, general punctuation, CJK, kana, Hangul syllables, emoji).
bool nfc_inert(char32_t c) {
  return c < 0x300 || (c >= 0x2002 && c <= 0x206F) || (c >= 0x20A0 && c <= 0x20BF) ||
         (c >= 0x2100 && c <= 0x23FF && c != 0x2126 && c != 0x212A && c != 0x212B && c != 0x2329 && c != 0x232A) ||
         (c >= 0x2500 && c <= 0x27BF) || (c >= 0x3000 && c <= 0x3029) || (c >= 0x3030 && c <= 0x303F) ||
         (c >= 0x3041 && c <= 0x3096) || (c >= 0x30A1 && c <= 0x30FA) || (c >= 0x4E00 && c <= 0x9FFF) ||
         (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xFF01 && c <= 0xFF9D) ||
         (c >= 0x1F000 && c <= 0x1FAFF);
}

namespace {

std::string nfc_utf8proc(std::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t const n = utf8proc_map(reinterpret_cast<utf8proc_uint8_t const*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &out,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    throw std::invalid_argument(std::string("akcb tokenizer: NFC normalization failed: ") +
                                utf8proc_errmsg(n));
  }
  std::string result(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
  std::free(out);
  return result;
}

}  // namespace

// NFC only where needed: a text splits safely right before an inert character (a starter that
// is already NFC and never composes with what precedes it), so each run of other characters is
// normalized together with the character before it and the rest is copied.
std::string nfc(std::string_view text) {
  std::string out;
  std::size_t copied = 0;       // text[0, copied) is already in `out`
  std::size_t prev_start = 0;   // start of the previous (inert) character
  bool have_prev = false;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t const start = i;
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      prev_start = start;
      have_prev = true;
      continue;
    }
    if (nfc_inert(next_code_point(text, i))) {
      prev_start = start;
      have_prev = true;
      continue;
    }
    std::size_t const region_begin = have_prev && prev_start >= copied ? prev_start : start;
    std::size_t region_end = i;
    while (region_end < text.size()) {
      std::size_t k = region_end;
      if (nfc_inert(next_code_point(text, k))) break;
      region_end = k;
    }
    if (out.empty()) out.reserve(text.size() + 16);
    out.append(text.data() + copied, region_begin - copied);
    out += nfc_utf8proc(text.substr(region_begin, region_end - region_begin));
    copied = region_end;
    i = region_end;
    have_prev = false;
  }
  if (copied == 0) return std::string(text);
  out.append(text.data() + copied, text.size() - copied);
  return out;
}

bool is_white_space(char32_t c) {
  // Unicode White_Space (Rust's char::is_whitespace).
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_alphanumeric(char32_t c) {
  // Rust's char::is_alphanumeric is Alphabetic || Numeric; letters, letter-like marks and numbers
  // by general category are the approximation used here.
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

/// GPT-2's bytes_to_unicode table: each byte maps to one printable code point (< 324).
struct ByteLevelTable {
  std::array<char32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_str{};
  std::array<int16_t, 324> char_to_byte{};  // -1 where the code point is not a byte's image
};

ByteLevelTable const& byte_level_table() {
  static ByteLevelTable const table = [] {
    ByteLevelTable t;
    t.char_to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool const printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t const cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      t.byte_to_cp[b] = cp;
      t.byte_to_str[b].clear();
      append_utf8(t.byte_to_str[b], cp);
      t.char_to_byte[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return table;
}

}  // namespace akcb::models::detail

// ---------------------------------------------------------------------------------------------
// Tokenizer proper.

namespace akcb::models {
namespace {

using detail::append_utf8;
using detail::byte_level_table;
using detail::next_code_point;
using Json = nlohmann::json;

[[noreturn]] void fail_config(std::string const& msg) {
  throw std::runtime_error("akcb tokenizer: " + msg);
}

// GPT-2's pre-tokenizer pattern (ByteLevel with use_regex=true).
constexpr char const* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Oniguruma's \s also matches U+0085 (NEL); PCRE2's (UCP) does not. Rewrite \s and \S so that
// both engines agree. Other escapes pass through unchanged.
std::string onig_to_pcre2(std::string const& pattern) {
  std::string out;
  out.reserve(pattern.size() + 16);
  int class_depth = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    char const c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char const e = pattern[i + 1];
      if (e == 's') {
        out += class_depth > 0 ? R"(\s\x{85})" : R"([\s\x{85}])";
      } else if (e == 'S' && class_depth == 0) {
        out += R"([^\s\x{85}])";
      } else {
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (c == '[') {
      ++class_depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

// A compiled PCRE2 pattern (UTF, UCP, JIT when available). Immutable and shareable.
class Regex {
 public:
  explicit Regex(std::string const& onig_pattern) {
    std::string const pattern = onig_to_pcre2(onig_pattern);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      fail_config("cannot compile pre-tokenizer regex '" + onig_pattern + "': " +
                  reinterpret_cast<char*>(buf) + " at offset " + std::to_string(err_off));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  }
  Regex(Regex const&) = delete;
  Regex& operator=(Regex const&) = delete;
  ~Regex() { pcre2_code_free(code_); }

  /// Appends the [begin, end) byte ranges of all non-empty matches in `text` (valid UTF-8).
  void find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
    struct ThreadState {
      pcre2_match_data* md = nullptr;
      pcre2_match_context* ctx = nullptr;
      pcre2_jit_stack* stack = nullptr;
      ThreadState() {
        md = pcre2_match_data_create(16, nullptr);
        ctx = pcre2_match_context_create(nullptr);
        stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
        if (ctx && stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
      }
      ~ThreadState() {
        pcre2_match_data_free(md);
        pcre2_match_context_free(ctx);
        pcre2_jit_stack_free(stack);
      }
    };
    thread_local ThreadState ts;
    auto const* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t offset = 0;
    while (offset < text.size()) {
      int const rc = pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, ts.md, ts.ctx);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(rc, buf, sizeof(buf));
        throw std::runtime_error(std::string("akcb tokenizer: regex match failed: ") +
                                 reinterpret_cast<char*>(buf));
      }
      PCRE2_SIZE const* ov = pcre2_get_ovector_pointer(ts.md);
      std::size_t const b = ov[0], e = ov[1];
      if (e > b) {
        out.emplace_back(b, e);
        offset = e;
      } else {  // empty match: step over one character
        offset = b;
        next_code_point(text, offset);
      }
    }
  }

 private:
  pcre2_code* code_ = nullptr;
};

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

struct SplitStep {
  std::shared_ptr<Regex const> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};
struct ByteLevelStep {
  bool add_prefix_space = false;
  std::shared_ptr<Regex const> regex;  // GPT-2 pattern when use_regex
};
using PreTokenizerStep = std::variant<SplitStep, ByteLevelStep>;

// Splits `s` by the matches of `step` (Hugging Face's SplitDelimiterBehavior). Empty pieces are
// dropped, as HF does.
void apply_split(std::string_view s, Regex const& regex, SplitBehavior behavior, bool invert,
                 std::vector<std::string>& out) {
  std::vector<std::pair<std::size_t, std::size_t>> m;
  regex.find_all(s, m);
  // (range, is_match) covering s
  std::vector<std::pair<std::pair<std::size_t, std::size_t>, bool>> parts;
  std::size_t prev = 0;
  for (auto const& r : m) {
    if (r.first > prev) parts.push_back({{prev, r.first}, false});
    parts.push_back({r, true});
    prev = r.second;
  }
  if (prev < s.size()) parts.push_back({{prev, s.size()}, false});
  if (invert) {
    for (auto& p : parts) p.second = !p.second;
  }
  auto emit = [&](std::size_t b, std::size_t e) {
    if (e > b) out.emplace_back(s.substr(b, e - b));
  };
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto const& p : parts) emit(p.first.first, p.first.second);
      break;
    case SplitBehavior::kRemoved:
      for (auto const& p : parts)
        if (!p.second) emit(p.first.first, p.first.second);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      std::size_t start = 0;
      bool have = false;
      for (auto const& p : parts) {
        if (p.second) {
          emit(have ? start : p.first.first, p.first.second);
          have = false;
        } else {
          if (have) emit(start, p.first.first);
          start = p.first.first;
          have = true;
        }
      }
      if (have) emit(start, s.size());
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      std::size_t start = 0;
      bool have = false;  // a pending delimiter
      for (auto const& p : parts) {
        if (p.second) {
          if (have) emit(start, p.first.first);
          start = p.first.first;
          have = true;
        } else {
          emit(have ? start : p.first.first, p.first.second);
          have = false;
        }
      }
      if (have) emit(start, s.size());
      break;
    }
  }
}

struct TemplateItem {
  bool is_sequence = false;         // $A
  std::vector<int32_t> special_ids;  // ids of a SpecialToken item
};

// Matches added tokens leftmost-longest (as aho-corasick's LeftmostLongest) in a string.
struct AddedTokenMatcher {
  struct Pattern {
    std::string text;
    int32_t token_idx;  // index into Impl::added
  };
  std::array<std::vector<Pattern>, 256> by_first_byte;  // longest first
  bool empty = true;

  void add(std::string text, int32_t token_idx) {
    if (text.empty()) return;
    auto& v = by_first_byte[static_cast<unsigned char>(text[0])];
    v.push_back({std::move(text), token_idx});
    std::stable_sort(v.begin(), v.end(),
                     [](Pattern const& a, Pattern const& b) { return a.text.size() > b.text.size(); });
    empty = false;
  }
  // First match at or after `from`: (start, pattern), or pattern == nullptr.
  std::pair<std::size_t, Pattern const*> find(std::string_view s, std::size_t from) const {
    for (std::size_t i = from; i < s.size(); ++i) {
      auto const& v = by_first_byte[static_cast<unsigned char>(s[i])];
      for (auto const& p : v) {
        if (s.size() - i >= p.text.size() && s.compare(i, p.text.size(), p.text) == 0) return {i, &p};
      }
    }
    return {s.size(), nullptr};
  }
};

// A piece of the input: text still to be tokenized, or an added token already recognised.
struct Segment {
  std::string text;
  int32_t token_id = -1;
};

bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  return detail::is_alphanumeric(detail::prev_code_point(s, s.size(), nullptr));
}
bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  std::size_t i = 0;
  return detail::is_alphanumeric(next_code_point(s, i));
}
// Byte index after the last non-whitespace character (0 if none).
std::size_t space_leftmost_at_end(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    std::size_t start = 0;
    char32_t const c = detail::prev_code_point(s, end, &start);
    if (!detail::is_white_space(c)) return end;
    end = start;
  }
  return 0;
}
// Byte index of the first non-whitespace character (s.size() if none).
std::size_t space_rightmost_at_start(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = i;
    if (!detail::is_white_space(next_code_point(s, j))) return i;
    i = j;
  }
  return s.size();
}

std::optional<std::string> token_content(Json const& j) {
  // bos_token / eos_token in tokenizer_config.json: a string, null, or an AddedToken object.
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return std::nullopt;
}

std::string read_file(std::string const& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("akcb tokenizer: cannot open '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool file_exists(std::string const& path) {
  std::ifstream f(path);
  return static_cast<bool>(f);
}

}  // namespace

struct Tokenizer::Impl {
  // Model.
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> id_to_model_token;  // "" where no token
  std::vector<bool> has_model_token;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, new id)
  bool ignore_merges = false;
  bool byte_fallback = false;
  bool fuse_unk = false;
  std::optional<int32_t> unk_id;

  // Added tokens.
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, int32_t> added_by_id;  // id -> index into added
  std::unordered_map<std::string, int32_t> added_by_content;
  AddedTokenMatcher raw_matcher, normalized_matcher;

  bool nfc = false;
  std::vector<PreTokenizerStep> pre_tokenizer;
  bool byte_level_decoder = true;  // false: no decoder (tokens joined with spaces)
  std::vector<TemplateItem> template_single;  // empty: no template

  std::optional<std::string> bos_token, eos_token;
  std::string chat_template;
  int32_t n_ids = 0;

  // Word cache (pre-tokenized piece -> ids).
  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
  static constexpr std::size_t kMaxCacheEntries = 1 << 18;
  // Identifies this tokenizer in the per-thread front caches (never reused, unlike an address).
  uint64_t const instance_id = next_instance_id();
  static uint64_t next_instance_id() {
    static std::atomic<uint64_t> counter{1};
    return counter.fetch_add(1, std::memory_order_relaxed);
  }

  void load(Json const& j);
  void load_config(Json const& j);

  std::vector<Segment> split_added(std::string_view s, AddedTokenMatcher const& m) const;
  /// Runs pre-tokenizer steps [step, end) on `s` and BPE-encodes every resulting word into `out`.
  void pre_tokenize_and_encode(std::string_view s, std::size_t step, std::vector<int32_t>& out) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_uncached(std::string_view word, std::vector<int32_t>& out) const;
  std::vector<int32_t> encode(std::string_view text, bool add_special) const;
  void token_bytes(int32_t id, std::string& out) const;
};

// ---------------------------------------------------------------------------------------------
// Loading.

void Tokenizer::Impl::load(Json const& j) {
  if (!j.is_object()) fail_config("tokenizer.json must hold a JSON object");
  auto const type_of = [](Json const& o) -> std::string {
    if (!o.is_object() || !o.contains("type") || !o["type"].is_string()) return "<missing type>";
    return o["type"].get<std::string>();
  };

  // ---- model
  if (!j.contains("model")) fail_config("tokenizer.json has no 'model'");
  Json const& model = j["model"];
  if (!model.is_object()) fail_config("'model' must be an object");
  if (model.contains("type") && type_of(model) != "BPE")
    fail_config("unsupported model type '" + type_of(model) + "' (supported: BPE)");
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail_config("model.vocab must be an object");
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0))
    fail_config("unsupported BPE option: dropout");
  for (char const* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(k) && !model[k].is_null() && !(model[k].is_string() && model[k].get<std::string>().empty()))
      fail_config(std::string("unsupported BPE option: ") + k);
  }
  auto const flag = [](Json const& o, char const* k) {
    if (!o.contains(k) || o[k].is_null()) return false;
    if (!o[k].is_boolean()) fail_config(std::string("'") + k + "' must be a boolean");
    return o[k].get<bool>();
  };
  ignore_merges = flag(model, "ignore_merges");
  byte_fallback = flag(model, "byte_fallback");
  fuse_unk = flag(model, "fuse_unk");

  int32_t max_id = -1;
  for (auto const& [tok, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > 0x7FFFFFF)
      fail_config("vocab entry '" + tok + "' has an invalid id");
    auto const i = static_cast<int32_t>(id.get<int64_t>());
    vocab[tok] = i;
    max_id = std::max(max_id, i);
  }
  id_to_model_token.assign(static_cast<std::size_t>(max_id + 1), std::string());
  has_model_token.assign(static_cast<std::size_t>(max_id + 1), false);
  for (auto const& [tok, id] : vocab) {
    id_to_model_token[id] = tok;
    has_model_token[id] = true;
  }
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    if (!model["unk_token"].is_string()) fail_config("model.unk_token must be a string");
    auto const it = vocab.find(model["unk_token"].get<std::string>());
    if (it == vocab.end()) fail_config("unk_token '" + model["unk_token"].get<std::string>() + "' is not in the vocab");
    unk_id = it->second;
  }

  if (model.contains("merges") && !model["merges"].is_null()) {
    if (!model["merges"].is_array()) fail_config("model.merges must be an array");
    int32_t rank = 0;
    for (auto const& m : model["merges"]) {
      std::string a, b;
      if (m.is_string()) {
        std::string const s = m.get<std::string>();
        auto const sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail_config("merge '" + s + "' is not of the form \"a b\"");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        fail_config("merge #" + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
      auto const ia = vocab.find(a), ib = vocab.find(b), iab = vocab.find(a + b);
      if (ia == vocab.end() || ib == vocab.end() || iab == vocab.end())
        fail_config("merge '" + a + " " + b + "' uses a token that is not in the vocab");
      uint64_t const key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                           static_cast<uint32_t>(ib->second);
      merges[key] = {rank, iab->second};
      ++rank;
    }
  }

  // ---- added tokens
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) fail_config("'added_tokens' must be an array");
    for (auto const& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string())
        fail_config("an added token needs an integer 'id' and a string 'content'");
      AddedToken a;
      auto const id = t["id"].get<int64_t>();
      if (id < 0 || id > 0x7FFFFFF) fail_config("added token id " + std::to_string(id) + " is out of range");
      a.id = static_cast<int32_t>(id);
      a.content = t["content"].get<std::string>();
      detail::check_utf8(a.content, "added token content");
      a.special = flag(t, "special");
      a.lstrip = flag(t, "lstrip");
      a.rstrip = flag(t, "rstrip");
      a.single_word = flag(t, "single_word");
      // HF's default: normalized = !special.
      a.normalized = t.contains("normalized") && !t["normalized"].is_null() ? flag(t, "normalized") : !a.special;
      max_id = std::max(max_id, a.id);
      auto const idx = static_cast<int32_t>(added.size());
      added_by_id[a.id] = idx;
      added_by_content[a.content] = idx;
      added.push_back(std::move(a));
    }
  }
  n_ids = max_id + 1;

  // ---- normalizer
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    Json const& n = j["normalizer"];
    std::string const t = type_of(n);
    if (t == "NFC") {
      nfc = true;
    } else if (t == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
      for (auto const& s : n["normalizers"]) {
        if (type_of(s) != "NFC") fail_config("unsupported normalizer '" + type_of(s) + "' in Sequence (supported: NFC)");
        nfc = true;
      }
    } else {
      fail_config("unsupported normalizer '" + t + "' (supported: null, NFC, Sequence of NFC)");
    }
  }

  // ---- pre-tokenizer
  auto const add_step = [&](Json const& p) {
    std::string const t = type_of(p);
    if (t == "Split") {
      SplitStep s;
      if (!p.contains("pattern") || !p["pattern"].is_object()) fail_config("Split needs a 'pattern' object");
      Json const& pat = p["pattern"];
      if (pat.contains("Regex") && pat["Regex"].is_string()) {
        s.regex = std::make_shared<Regex const>(pat["Regex"].get<std::string>());
      } else if (pat.contains("String") && pat["String"].is_string()) {
        // A literal: quote it (\Q...\E).
        s.regex = std::make_shared<Regex const>("\\Q" + pat["String"].get<std::string>() + "\\E");
      } else {
        fail_config("Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
      }
      std::string const b = p.contains("behavior") && p["behavior"].is_string() ? p["behavior"].get<std::string>() : "";
      if (b == "Isolated") s.behavior = SplitBehavior::kIsolated;
      else if (b == "Removed") s.behavior = SplitBehavior::kRemoved;
      else if (b == "MergedWithPrevious") s.behavior = SplitBehavior::kMergedWithPrevious;
      else if (b == "MergedWithNext") s.behavior = SplitBehavior::kMergedWithNext;
      else fail_config("unsupported Split behavior '" + b + "' (supported: Isolated, Removed, MergedWithPrevious, MergedWithNext)");
      s.invert = flag(p, "invert");
      pre_tokenizer.emplace_back(std::move(s));
    } else if (t == "ByteLevel") {
      ByteLevelStep s;
      s.add_prefix_space = flag(p, "add_prefix_space");
      bool const use_regex = !p.contains("use_regex") || p["use_regex"].is_null() || flag(p, "use_regex");
      if (use_regex) s.regex = std::make_shared<Regex const>(kGpt2Pattern);
      pre_tokenizer.emplace_back(std::move(s));
    } else {
      fail_config("unsupported pre-tokenizer '" + t + "' (supported: ByteLevel, Split, Sequence of them)");
    }
  };
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    Json const& p = j["pre_tokenizer"];
    if (type_of(p) == "Sequence") {
      if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) fail_config("Sequence needs 'pretokenizers'");
      for (auto const& s : p["pretokenizers"]) add_step(s);
    } else {
      add_step(p);
    }
  }
  bool has_byte_level = false;
  for (auto const& s : pre_tokenizer) has_byte_level |= std::holds_alternative<ByteLevelStep>(s);
  if (!has_byte_level) fail_config("the pre-tokenizer has no ByteLevel step (only byte-level BPE is supported)");

  // ---- decoder
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    if (type_of(j["decoder"]) != "ByteLevel")
      fail_config("unsupported decoder '" + type_of(j["decoder"]) + "' (supported: ByteLevel)");
  } else {
    byte_level_decoder = false;
  }

  // ---- post-processor
  auto const add_processor = [&](Json const& p) {
    std::string const t = type_of(p);
    if (t == "ByteLevel") return;  // only adjusts offsets
    if (t != "TemplateProcessing")
      fail_config("unsupported post_processor '" + t + "' (supported: ByteLevel, TemplateProcessing, Sequence)");
    if (!p.contains("single") || !p["single"].is_array()) fail_config("TemplateProcessing needs 'single'");
    Json const specials = p.contains("special_tokens") ? p["special_tokens"] : Json::object();
    template_single.clear();
    for (auto const& item : p["single"]) {
      TemplateItem ti;
      if (item.contains("Sequence")) {
        Json const& sq = item["Sequence"];
        if (!sq.contains("id") || sq["id"] != "A") fail_config("TemplateProcessing 'single' may only use sequence A");
        ti.is_sequence = true;
      } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id") &&
                 item["SpecialToken"]["id"].is_string()) {
        std::string const name = item["SpecialToken"]["id"].get<std::string>();
        if (!specials.is_object() || !specials.contains(name) || !specials[name].contains("ids") ||
            !specials[name]["ids"].is_array())
          fail_config("TemplateProcessing special token '" + name + "' has no ids");
        for (auto const& id : specials[name]["ids"]) {
          if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= n_ids)
            fail_config("TemplateProcessing special token '" + name + "' has an invalid id");
          ti.special_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
        }
      } else {
        fail_config("unsupported TemplateProcessing item in 'single'");
      }
      template_single.push_back(std::move(ti));
    }
  };
  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    Json const& p = j["post_processor"];
    if (type_of(p) == "Sequence") {
      if (!p.contains("processors") || !p["processors"].is_array()) fail_config("Sequence needs 'processors'");
      for (auto const& s : p["processors"]) add_processor(s);
    } else {
      add_processor(p);
    }
  }

  // ---- added-token matchers (after the normalizer is known)
  for (std::size_t i = 0; i < added.size(); ++i) {
    AddedToken const& a = added[i];
    if (a.normalized) normalized_matcher.add(nfc ? detail::nfc(a.content) : a.content, static_cast<int32_t>(i));
    else raw_matcher.add(a.content, static_cast<int32_t>(i));
  }
}

void Tokenizer::Impl::load_config(Json const& j) {
  if (!j.is_object()) fail_config("tokenizer_config.json must hold a JSON object");
  if (j.contains("bos_token")) bos_token = token_content(j["bos_token"]);
  if (j.contains("eos_token")) eos_token = token_content(j["eos_token"]);
  if (j.contains("chat_template")) {
    Json const& c = j["chat_template"];
    if (c.is_string()) {
      chat_template = c.get<std::string>();
    } else if (c.is_array()) {  // [{"name": ..., "template": ...}]: use "default"
      for (auto const& t : c) {
        if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
          chat_template = t["template"].get<std::string>();
      }
      if (chat_template.empty()) fail_config("chat_template list has no 'default' entry");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

// Hugging Face's AddedVocabulary::find_matches on one string.
std::vector<Segment> Tokenizer::Impl::split_added(std::string_view s, AddedTokenMatcher const& m) const {
  std::vector<Segment> out;
  if (m.empty) {
    out.push_back({std::string(s), -1});
    return out;
  }
  std::size_t start_offset = 0;
  std::size_t pos = 0;  // where the next search starts (matches do not overlap)
  while (pos < s.size()) {
    auto const [start0, pat] = m.find(s, pos);
    if (!pat) break;
    std::size_t start = start0, stop = start0 + pat->text.size();
    pos = stop;
    AddedToken const& tok = added[pat->token_idx];
    if (tok.single_word) {
      bool const start_space = start == 0 || !ends_with_word(s.substr(0, start));
      bool const stop_space = stop == s.size() || !starts_with_word(s.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) start = std::max(space_leftmost_at_end(s.substr(0, start)), start_offset);
    if (tok.rstrip) stop += space_rightmost_at_start(s.substr(stop));
    if (start > start_offset) out.push_back({std::string(s.substr(start_offset, start - start_offset)), -1});
    out.push_back({std::string(), tok.id});
    start_offset = stop;
  }
  if (start_offset < s.size()) out.push_back({std::string(s.substr(start_offset)), -1});
  return out;
}

void Tokenizer::Impl::pre_tokenize_and_encode(std::string_view s, std::size_t step,
                                              std::vector<int32_t>& out) const {
  if (s.empty()) return;  // HF drops empty splits
  if (step == pre_tokenizer.size()) {
    bpe(s, out);
    return;
  }
  if (auto const* sp = std::get_if<SplitStep>(&pre_tokenizer[step])) {
    std::vector<std::string> parts;
    if (step + 1 == pre_tokenizer.size() || sp->behavior != SplitBehavior::kIsolated || sp->invert) {
      apply_split(s, *sp->regex, sp->behavior, sp->invert, parts);
      for (auto const& p : parts) pre_tokenize_and_encode(p, step + 1, out);
      return;
    }
    // Isolated, not inverted: matches and the gaps between them, in order, without copies.
    std::vector<std::pair<std::size_t, std::size_t>> m;
    sp->regex->find_all(s, m);
    std::size_t prev = 0;
    for (auto const& r : m) {
      if (r.first > prev) pre_tokenize_and_encode(s.substr(prev, r.first - prev), step + 1, out);
      pre_tokenize_and_encode(s.substr(r.first, r.second - r.first), step + 1, out);
      prev = r.second;
    }
    if (prev < s.size()) pre_tokenize_and_encode(s.substr(prev), step + 1, out);
    return;
  }
  auto const& bl = std::get<ByteLevelStep>(pre_tokenizer[step]);
  auto const& table = byte_level_table();
  std::string with_space;
  std::string_view q = s;
  if (bl.add_prefix_space && s[0] != ' ') {
    with_space = " " + std::string(s);
    q = with_space;
  }
  auto const map_and_go = [&](std::string_view w) {
    std::string mapped;
    mapped.reserve(w.size() * 2);
    for (unsigned char c : w) mapped += table.byte_to_str[c];
    pre_tokenize_and_encode(mapped, step + 1, out);
  };
  if (!bl.regex) {
    map_and_go(q);
    return;
  }
  std::vector<std::pair<std::size_t, std::size_t>> m;
  bl.regex->find_all(q, m);
  std::size_t prev = 0;
  for (auto const& r : m) {
    if (r.first > prev) map_and_go(q.substr(prev, r.first - prev));
    map_and_go(q.substr(r.first, r.second - r.first));
    prev = r.second;
  }
  if (prev < q.size()) map_and_go(q.substr(prev));
}

void Tokenizer::Impl::bpe_uncached(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool removed;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  bool last_unk = false;
  std::string ch;
  for (std::size_t i = 0; i < word.size();) {
    std::size_t j = i;
    next_code_point(word, j);
    ch.assign(word.data() + i, j - i);
    i = j;
    auto const it = vocab.find(ch);
    if (it != vocab.end()) {
      sym.push_back({it->second, 0, 0, false});
      last_unk = false;
      continue;
    }
    if (byte_fallback) {
      std::vector<int32_t> ids;
      for (unsigned char c : ch) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "<0x%02X>", c);
        auto const b = vocab.find(buf);
        if (b == vocab.end()) break;
        ids.push_back(b->second);
      }
      if (ids.size() == ch.size()) {
        for (int32_t id : ids) sym.push_back({id, 0, 0, false});
        last_unk = false;
        continue;
      }
    }
    if (unk_id) {
      if (!(fuse_unk && last_unk)) sym.push_back({*unk_id, 0, 0, false});
      last_unk = true;
    }
  }
  auto const n = static_cast<int32_t>(sym.size());
  for (int32_t k = 0; k < n; ++k) {
    sym[k].prev = k - 1;
    sym[k].next = k + 1 < n ? k + 1 : -1;
  }
  auto const lookup = [&](int32_t a, int32_t b) -> std::pair<int32_t, int32_t> const* {
    auto const it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  struct Merge {
    int32_t rank, pos, new_id;
    bool operator<(Merge const& o) const {  // max-heap: lowest rank, then lowest pos, on top
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Merge> queue;
  for (int32_t k = 0; k + 1 < n; ++k) {
    if (auto const* m = lookup(sym[k].id, sym[k + 1].id)) queue.push({m->first, k, m->second});
  }
  while (!queue.empty()) {
    Merge const top = queue.top();
    queue.pop();
    Symbol& cur = sym[top.pos];
    if (cur.removed || cur.next == -1) continue;
    int32_t const next_pos = cur.next;
    Symbol const right = sym[next_pos];
    auto const* m = lookup(cur.id, right.id);
    if (!m || m->second != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    cur.next = right.next;
    sym[next_pos].removed = true;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (auto const* pm = lookup(sym[cur.prev].id, cur.id)) queue.push({pm->first, cur.prev, pm->second});
    }
    if (cur.next >= 0) {
      if (auto const* nm = lookup(cur.id, sym[cur.next].id)) queue.push({nm->first, top.pos, nm->second});
    }
  }
  for (auto const& s : sym)
    if (!s.removed) out.push_back(s.id);
}

void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  // Per-thread direct-mapped front cache of frequent words: no lock, one probe. Entries of
  // another tokenizer are ignored (instance ids are unique).
  struct FrontEntry {
    uint64_t owner = 0;
    std::string word;
    std::vector<int32_t> ids;
  };
  constexpr std::size_t kFrontEntries = 1 << 12;
  thread_local std::vector<FrontEntry> front(kFrontEntries);
  std::size_t const h = std::hash<std::string_view>{}(word);
  FrontEntry& fe = front[h & (kFrontEntries - 1)];
  if (fe.owner == instance_id && fe.word == word) {
    out.insert(out.end(), fe.ids.begin(), fe.ids.end());
    return;
  }
  thread_local std::string key;  // reused: no allocation per word once warm
  key.assign(word.data(), word.size());
  std::vector<int32_t> ids;
  bool found = false;
  {
    std::shared_lock<std::shared_mutex> lock(cache_mutex);
    auto const it = cache.find(key);
    if (it != cache.end()) {
      ids = it->second;
      found = true;
    }
  }
  if (!found) {
    auto const whole = ignore_merges ? vocab.find(key) : vocab.end();
    if (whole != vocab.end()) ids.push_back(whole->second);  // ignore_merges: a vocab word is one token
    else bpe_uncached(word, ids);
    std::unique_lock<std::shared_mutex> lock(cache_mutex);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(key, ids);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  fe.owner = instance_id;
  fe.word.assign(word.data(), word.size());
  fe.ids = std::move(ids);
}

std::vector<int32_t> Tokenizer::Impl::encode(std::string_view text, bool add_special) const {
  detail::check_utf8(text);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (auto& seg : split_added(text, raw_matcher)) {
    if (seg.token_id >= 0) {
      ids.push_back(seg.token_id);
      continue;
    }
    std::string const normalized = nfc ? detail::nfc(seg.text) : std::move(seg.text);
    for (auto const& seg2 : split_added(normalized, normalized_matcher)) {
      if (seg2.token_id >= 0) {
        ids.push_back(seg2.token_id);
        continue;
      }
      pre_tokenize_and_encode(seg2.text, 0, ids);
    }
  }
  if (!add_special || template_single.empty()) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (auto const& item : template_single) {
    if (item.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
    else out.insert(out.end(), item.special_ids.begin(), item.special_ids.end());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding.

void Tokenizer::Impl::token_bytes(int32_t id, std::string& out) const {
  std::string const* tok = nullptr;
  auto const a = added_by_id.find(id);
  if (a != added_by_id.end()) tok = &added[a->second].content;
  else if (id >= 0 && static_cast<std::size_t>(id) < has_model_token.size() && has_model_token[id])
    tok = &id_to_model_token[id];
  if (!tok) throw std::invalid_argument("akcb tokenizer: unknown token id " + std::to_string(id));
  if (!byte_level_decoder) {
    out += *tok;
    return;
  }
  // ByteLevel decoder: every character maps back to its byte; a token with any character outside
  // the byte alphabet is emitted as its own UTF-8 (HF's rule).
  auto const& table = byte_level_table();
  std::size_t const mark = out.size();
  std::size_t i = 0;
  while (i < tok->size()) {
    char32_t const cp = next_code_point(*tok, i);
    if (cp >= table.char_to_byte.size() || table.char_to_byte[cp] < 0) {
      out.resize(mark);
      out += *tok;
      return;
    }
    out += static_cast<char>(table.char_to_byte[cp]);
  }
}

// ---------------------------------------------------------------------------------------------
// Public API.

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view tokenizer_config) {
  auto impl = std::make_shared<Impl>();
  Json j;
  try {
    j = Json::parse(tokenizer_json.begin(), tokenizer_json.end());
  } catch (Json::exception const& e) {
    fail_config(std::string("malformed tokenizer.json: ") + e.what());
  }
  try {
    impl->load(j);
  } catch (Json::exception const& e) {
    fail_config(std::string("unexpected tokenizer.json content: ") + e.what());
  } catch (std::invalid_argument const& e) {
    fail_config(e.what());
  }
  if (!tokenizer_config.empty()) {
    Json c;
    try {
      c = Json::parse(tokenizer_config.begin(), tokenizer_config.end());
      impl->load_config(c);
    } catch (Json::exception const& e) {
      fail_config(std::string("malformed tokenizer_config.json: ") + e.what());
    }
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_file(std::string const& tokenizer_json_path) {
  return from_json(read_file(tokenizer_json_path));
}

Tokenizer Tokenizer::from_dir(std::string const& dir) {
  std::string const base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  std::string const tj = base + "tokenizer.json";
  if (!file_exists(tj)) throw std::runtime_error("akcb tokenizer: no tokenizer.json in '" + dir + "'");
  std::string config;
  if (file_exists(base + "tokenizer_config.json")) config = read_file(base + "tokenizer_config.json");
  Tokenizer t = from_json(read_file(tj), config);
  if (file_exists(base + "chat_template.jinja")) {
    auto impl = std::const_pointer_cast<Impl>(t.impl_);
    impl->chat_template = read_file(base + "chat_template.jinja");
  }
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return impl_->encode(text, add_special_tokens);
}

std::string Tokenizer::decode(std::vector<int32_t> const& ids, bool skip_special_tokens) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    if (!impl_->byte_level_decoder && !first) bytes += ' ';
    impl_->token_bytes(id, bytes);
    first = false;
  }
  return detail::utf8_lossy(bytes);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  std::string out;
  impl_->token_bytes(id, out);
  return out;
}

int32_t Tokenizer::vocab_size() const { return impl_->n_ids; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  std::string const t(token);
  auto const a = impl_->added_by_content.find(t);
  if (a != impl_->added_by_content.end()) return impl_->added[a->second].id;
  auto const v = impl_->vocab.find(t);
  if (v != impl_->vocab.end()) return v->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  auto const a = impl_->added_by_id.find(id);
  if (a != impl_->added_by_id.end()) return impl_->added[a->second].content;
  if (id >= 0 && static_cast<std::size_t>(id) < impl_->has_model_token.size() && impl_->has_model_token[id])
    return impl_->id_to_model_token[id];
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  auto const a = impl_->added_by_id.find(id);
  return a != impl_->added_by_id.end() && impl_->added[a->second].special;
}

std::vector<AddedToken> const& Tokenizer::added_tokens() const { return impl_->added; }
std::optional<std::string> const& Tokenizer::bos_token() const { return impl_->bos_token; }
std::optional<std::string> const& Tokenizer::eos_token() const { return impl_->eos_token; }
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos_token ? token_to_id(*impl_->bos_token) : std::nullopt;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos_token ? token_to_id(*impl_->eos_token) : std::nullopt;
}
std::string const& Tokenizer::chat_template() const { return impl_->chat_template; }

std::string IncrementalDecoder::push(int32_t id) {
  if (skip_special_tokens_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  std::size_t consumed = 0;
  std::string out = detail::utf8_lossy(pending_, /*stop_at_incomplete_tail=*/true, &consumed);
  pending_.erase(0, consumed);
  return out;
}

std::string IncrementalDecoder::finish() {
  std::string out = detail::utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace akcb::models
