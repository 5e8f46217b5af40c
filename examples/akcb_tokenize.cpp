// akcb-tokenize: encode, decode and chat-render with a model's Hugging Face tokenizer.
//
//   akcb-tokenize DIR [INPUT]                 JSON array of strings -> JSON array of id arrays
//   akcb-tokenize DIR [INPUT] --no-special    ... without BOS (post-processor template)
//   akcb-tokenize DIR [INPUT] --decode        JSON array of id arrays -> JSON array of strings
//   akcb-tokenize DIR [INPUT] --chat          JSON list of messages -> the prompt as a JSON string
//                                             (a list of such lists -> a list of prompts)
// DIR holds tokenizer.json (and tokenizer_config.json); INPUT is a file, or stdin when absent or "-".
// Errors go to stderr with exit status 1.
#include <akcb/models/chat_template.hpp>
#include <akcb/models/tokenizer.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using akcb::models::ChatMessage;
using akcb::models::ChatOptions;
using akcb::models::ChatTemplate;
using akcb::models::Tokenizer;
using Json = nlohmann::json;

std::string read_input(std::string const& path) {
  if (path.empty() || path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open input '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::vector<ChatMessage> to_messages(Json const& conv) {
  std::vector<ChatMessage> out;
  for (auto const& m : conv) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw std::invalid_argument("each chat message needs a string 'role'");
    ChatMessage msg;
    msg.role = m["role"].get<std::string>();
    if (m.contains("content") && !m["content"].is_null()) {
      if (!m["content"].is_string()) throw std::invalid_argument("chat message 'content' must be a string");
      msg.content = m["content"].get<std::string>();
    }
    if (m.contains("reasoning_content") && m["reasoning_content"].is_string())
      msg.reasoning_content = m["reasoning_content"].get<std::string>();
    out.push_back(std::move(msg));
  }
  return out;
}

int run(int argc, char** argv) {
  CLI::App app{"Encode, decode or chat-render text with a Hugging Face tokenizer.json (JSON in, JSON out)"};
  std::string dir, input = "-";
  bool no_special = false, decode = false, skip_special = false, chat = false, chat_ids = false;
  bool no_gen_prompt = false, enable_thinking = false, disable_thinking = false;
  std::string date_string;
  app.add_option("dir", dir, "model or tokenizer directory (tokenizer.json, tokenizer_config.json)")->required();
  app.add_option("input", input, "JSON input file; stdin when absent or '-'");
  app.add_flag("--no-special", no_special, "encode without BOS / post-processor special tokens");
  auto* dec = app.add_flag("--decode", decode, "decode a JSON array of id arrays");
  app.add_flag("--skip-special", skip_special, "with --decode: leave out special tokens");
  auto* ch = app.add_flag("--chat", chat, "render a JSON list of messages with the model's chat format");
  app.add_flag("--ids", chat_ids, "with --chat: print the prompt's token ids instead of its text");
  app.add_flag("--no-generation-prompt", no_gen_prompt, "with --chat: no assistant header at the end");
  auto* en = app.add_flag("--enable-thinking", enable_thinking, "with --chat: enable_thinking=true (Qwen 3)");
  auto* dis = app.add_flag("--disable-thinking", disable_thinking,
                           "with --chat: enable_thinking=false (Qwen 3: empty think block)");
  app.add_option("--date-string", date_string,
                 "with --chat: Llama 3.1 / 3.2 'Today Date' (e.g. \"26 Jul 2024\"); default: the template's");
  dec->excludes(ch);
  en->excludes(dis);
  CLI11_PARSE(app, argc, argv);

  Tokenizer const tok = Tokenizer::from_dir(dir);
  Json in;
  try {
    in = Json::parse(read_input(input));
  } catch (Json::parse_error const& e) {
    throw std::invalid_argument(std::string("input is not valid JSON: ") + e.what());
  }
  if (!in.is_array()) throw std::invalid_argument("input must be a JSON array");
  Json out = Json::array();

  if (chat) {
    ChatTemplate const tmpl = ChatTemplate::from_tokenizer(tok);
    ChatOptions opt;
    opt.add_generation_prompt = !no_gen_prompt;
    if (enable_thinking) opt.enable_thinking = true;
    if (disable_thinking) opt.enable_thinking = false;
    opt.date_string = date_string;
    auto const render = [&](Json const& conv) -> Json {
      std::string const prompt = tmpl.render(to_messages(conv), opt);
      if (chat_ids) return tok.encode(prompt, /*add_special_tokens=*/false);
      return prompt;
    };
    bool const many = !in.empty() && in[0].is_array();
    if (many) {
      for (auto const& conv : in) out.push_back(render(conv));
    } else {
      out = render(in);
    }
  } else if (decode) {
    for (auto const& ids : in) {
      if (!ids.is_array()) throw std::invalid_argument("--decode input must be a JSON array of id arrays");
      std::vector<int32_t> v;
      for (auto const& id : ids) {
        if (!id.is_number_integer()) throw std::invalid_argument("token ids must be integers");
        v.push_back(id.get<int32_t>());
      }
      out.push_back(tok.decode(v, skip_special));
    }
  } else {
    for (auto const& s : in) {
      if (!s.is_string()) throw std::invalid_argument("input must be a JSON array of strings");
      out.push_back(tok.encode(s.get<std::string>(), !no_special));
    }
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (std::exception const& e) {
    std::cerr << "akcb-tokenize: error: " << e.what() << "\n";
    return 1;
  }
}
