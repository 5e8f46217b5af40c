#pragma once
// Shared helpers of the model runtime tests: fixture location, error capture, raw safetensors I/O.
#include <gtest/gtest.h>

#include "test_errors.hpp"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <ftw.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace akcb_test {

namespace fs = std::filesystem;

/// Directory written by tools/hf_reference/make_reference.py (ctest fixture make_hf_reference).
/// The environment variable AKCB_HF_REFERENCE_DIR overrides the build's path (binaries run elsewhere).
inline fs::path hf_reference_dir() {
  char const* env = std::getenv("AKCB_HF_REFERENCE_DIR");
  fs::path const d(env != nullptr && *env != '\0' ? env : AKCB_HF_REFERENCE_DIR);
  if (!fs::exists(d / "manifest.json")) {
    ADD_FAILURE() << "HF reference fixtures missing in " << d
                  << "; run `ctest -R make_hf_reference` (or the whole ctest run) first";
  }
  return d;
}

inline std::string read_bytes(fs::path const& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(fs::path const& p, std::string const& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A safetensors file split into its header and data.
struct RawSafetensors {
  nlohmann::json header;
  std::string data;
};

inline RawSafetensors read_raw(fs::path const& p) {
  std::string const b = read_bytes(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(b[i]);
  return {nlohmann::json::parse(b.substr(8, n)), b.substr(8 + n)};
}

/// Writes header + data; `header_len_override` replaces the true header length when >= 0.
inline void write_raw(fs::path const& p, std::string const& header, std::string const& data,
                      int64_t header_len_override = -1) {
  uint64_t const n = header_len_override >= 0 ? static_cast<uint64_t>(header_len_override) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_bytes(p, out + header + data);
}

inline void write_raw(fs::path const& p, RawSafetensors const& r) { write_raw(p, r.header.dump(), r.data); }

/// Removes a directory tree. (Not std::filesystem::remove_all: libtorch.so exports its own copy
/// of that symbol, which crashes when it interposes ours.)
inline void remove_tree(fs::path const& d) {
  ::nftw(d.c_str(), [](char const* p, struct stat const*, int, struct FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
}

/// A fresh empty directory under the test temp dir.
inline fs::path fresh_dir(std::string const& name) {
  fs::path const d = fs::path(::testing::TempDir()) / ("akcb_rt_" + std::to_string(::getpid()) + "_" + name);
  remove_tree(d);
  fs::create_directories(d);
  return d;
}

/// Copies a fixture model directory into a fresh one (to corrupt it).
inline fs::path copy_model(std::string const& model, std::string const& name) {
  fs::path const d = fresh_dir(name);
  for (auto const& e : fs::directory_iterator(hf_reference_dir() / model)) fs::copy_file(e.path(), d / e.path().filename());
  return d;
}

}  // namespace akcb_test
