#pragma once
// Path helpers of the model runtime (private). POSIX on purpose: libtorch.so exports its own
// copies of several std::filesystem symbols (remove_all, ...), which can interpose ours.
#include <sys/stat.h>

#include <string>

namespace akcb::models::detail {

inline std::string join_path(std::string const& dir, std::string const& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

inline bool path_exists(std::string const& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

/// A plain file name: non-empty, no directory separator, not "." or "..".
inline bool is_plain_file_name(std::string const& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace akcb::models::detail
