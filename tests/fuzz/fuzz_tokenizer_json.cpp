// libFuzzer target: tokenizer.json parsing (issue 4). Any input must either load or be rejected
// with std::runtime_error; a loaded tokenizer must encode and decode a fixed text without crashing.
#include <akcb/models/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(uint8_t const* data, std::size_t size) {
  std::string_view const json(reinterpret_cast<char const*>(data), size);
  try {
    auto const tok = akcb::models::Tokenizer::from_json(json);
    for (std::string_view text : {"Hello, world! We'Ve 12345 \t\n  ", "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD <|eot_id|>", ""}) {
      auto const ids = tok.encode(text, true);
      (void)tok.decode(ids, false);
      (void)tok.decode(ids, true);
    }
  } catch (std::runtime_error const&) {
    // rejected configuration: fine
  } catch (std::invalid_argument const&) {
    // e.g. an added token whose content decodes to an unknown id: fine
  }
  return 0;
}
