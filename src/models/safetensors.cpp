// Memory-mapped, validated safetensors reader (see safetensors.hpp).
#include <akcb/models/safetensors.hpp>

#include <akcb/error.hpp>
#include <akcb/models/hf_config.hpp>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "file_util.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>

namespace akcb::models {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // the format's own limit

std::string shape_str(std::vector<int64_t> const& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

}  // namespace

c10::ScalarType safetensors_dtype(std::string const& s, std::string const& context) {
  if (s == "F32") return c10::ScalarType::Float;
  if (s == "F16") return c10::ScalarType::Half;
  if (s == "BF16") return c10::ScalarType::BFloat16;
  if (s == "I64") return c10::ScalarType::Long;
  if (s == "I32") return c10::ScalarType::Int;
  AKCB_CHECK(false, context, ": unsupported dtype '", s, "'; supported: F32, F16, BF16, I64, I32");
  return c10::ScalarType::Undefined;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  int const fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  AKCB_CHECK(fd >= 0, "safetensors: cannot open '", path_, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int const e = errno;
    ::close(fd);
    AKCB_CHECK(false, "safetensors: cannot stat '", path_, "': ", std::strerror(e));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    AKCB_CHECK(false, "safetensors: '", path_, "' is ", size_, " bytes, too small for the 8-byte header length");
  }
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int const map_errno = errno;
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    AKCB_CHECK(false, "safetensors: cannot mmap '", path_, "': ", std::strerror(map_errno));
  }
  try {
    auto const* bytes = static_cast<unsigned char const*>(map_);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[i];  // little endian
    AKCB_CHECK(header_bytes >= 2 && header_bytes <= kMaxHeaderBytes, "safetensors: '", path_,
               "': header length ", header_bytes, " is not in [2, ", kMaxHeaderBytes, "] (corrupted file?)");
    AKCB_CHECK(header_bytes <= size_ - 8, "safetensors: '", path_, "': header length ", header_bytes,
               " points past the end of the file (", size_, " bytes; truncated?)");
    uint64_t const data_start = 8 + header_bytes;
    uint64_t const data_bytes = size_ - data_start;

    json header;
    try {
      header = json::parse(bytes + 8, bytes + data_start);
    } catch (json::exception const& e) {
      AKCB_CHECK(false, "safetensors: '", path_, "': header is not valid JSON: ", e.what());
    }
    AKCB_CHECK(header.is_object(), "safetensors: '", path_, "': header must be a JSON object");

    std::vector<TensorInfo const*> by_offset;
    for (auto it = header.begin(); it != header.end(); ++it) {
      std::string const& name = it.key();
      json const& e = it.value();
      if (name == "__metadata__") {
        AKCB_CHECK(e.is_object(), "safetensors: '", path_, "': __metadata__ must be an object");
        for (auto m = e.begin(); m != e.end(); ++m) {
          AKCB_CHECK(m.value().is_string(), "safetensors: '", path_, "': __metadata__['", m.key(),
                     "'] must be a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      std::string const ctx = "safetensors: '" + path_ + "', tensor '" + name + "'";
      AKCB_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), ctx,
                 ": entry must be an object with dtype, shape and data_offsets, got ", e.dump());
      AKCB_CHECK(e.at("dtype").is_string(), ctx, ": dtype must be a string, got ", e.at("dtype").dump());
      TensorInfo info;
      info.name = name;
      info.dtype = safetensors_dtype(e.at("dtype").get<std::string>(), ctx);
      json const& shape = e.at("shape");
      AKCB_CHECK(shape.is_array(), ctx, ": shape must be a list, got ", shape.dump());
      uint64_t n_elems = 1;
      for (json const& d : shape) {
        AKCB_CHECK(d.is_number_unsigned(), ctx, ": shape entries must be non-negative integers, got ", shape.dump());
        uint64_t const v = d.get<uint64_t>();
        AKCB_CHECK(v <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(n_elems, v, &n_elems), ctx,
                   ": shape ", shape.dump(), " overflows");
        info.shape.push_back(static_cast<int64_t>(v));
      }
      json const& off = e.at("data_offsets");
      AKCB_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                 ctx, ": data_offsets must be two non-negative integers, got ", off.dump());
      uint64_t const begin = off[0].get<uint64_t>();
      uint64_t const end = off[1].get<uint64_t>();
      AKCB_CHECK(begin <= end, ctx, ": data_offsets [", begin, ", ", end, "] are reversed");
      AKCB_CHECK(end <= data_bytes, ctx, ": data_offsets [", begin, ", ", end, "] point past the end of the file (",
                 data_bytes, " data bytes after the header; truncated file?)");
      uint64_t const elem = c10::elementSize(info.dtype);
      uint64_t n_bytes = 0;
      AKCB_CHECK(!__builtin_mul_overflow(n_elems, elem, &n_bytes) && n_bytes == end - begin, ctx, ": dtype ",
                 e.at("dtype").get<std::string>(), " x shape ", shape.dump(), " needs ", n_elems * elem,
                 " bytes but data_offsets [", begin, ", ", end, "] span ", end - begin);
      info.data_begin = data_start + begin;
      info.data_end = data_start + end;
      auto [ins, fresh] = tensors_.emplace(name, std::move(info));
      AKCB_CHECK(fresh, ctx, ": duplicate tensor name");
      if (ins->second.data_end > ins->second.data_begin) by_offset.push_back(&ins->second);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](TensorInfo const* a, TensorInfo const* b) { return a->data_begin < b->data_begin; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      AKCB_CHECK(by_offset[i]->data_begin >= by_offset[i - 1]->data_end, "safetensors: '", path_, "': tensors '",
                 by_offset[i - 1]->name, "' and '", by_offset[i]->name, "' overlap (bytes [",
                 by_offset[i - 1]->data_begin, ", ", by_offset[i - 1]->data_end, ") and [", by_offset[i]->data_begin,
                 ", ", by_offset[i]->data_end, "))");
    }
  } catch (...) {
    unmap();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), size_(o.size_), tensors_(std::move(o.tensors_)),
      metadata_(std::move(o.metadata_)) {
  o.map_ = nullptr;
  o.size_ = 0;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    map_ = o.map_;
    size_ = o.size_;
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
    o.map_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void SafetensorsFile::unmap() noexcept {
  if (map_ != nullptr) ::munmap(map_, size_);
  map_ = nullptr;
}

TensorInfo const& SafetensorsFile::info(std::string const& name) const {
  auto it = tensors_.find(name);
  AKCB_CHECK(it != tensors_.end(), "safetensors: '", path_, "' has no tensor '", name, "'");
  return it->second;
}

at::Tensor SafetensorsFile::load(std::string const& name, c10::ScalarType dtype, c10::Device device) const {
  TensorInfo const& ti = info(name);
  AKCB_ASSERT(map_ != nullptr);
  auto* ptr = static_cast<unsigned char*>(map_) + ti.data_begin;
  auto const cpu = at::TensorOptions().dtype(ti.dtype).device(at::kCPU);
  at::Tensor host;
  if (reinterpret_cast<uintptr_t>(ptr) % c10::elementSize(ti.dtype) == 0) {
    // Aliases the read-only mapping; only read (copied) below, never written.
    host = at::from_blob(ptr, ti.shape, cpu);
  } else {
    host = at::empty(ti.shape, cpu);
    std::memcpy(host.data_ptr(), ptr, ti.data_end - ti.data_begin);
  }
  return host.to(at::TensorOptions().dtype(dtype).device(device), /*non_blocking=*/false, /*copy=*/true);
}

// ---------------------------------------------------------------------------------------------
// SafetensorsCheckpoint

SafetensorsCheckpoint SafetensorsCheckpoint::open_file(std::string const& path) {
  SafetensorsCheckpoint c;
  c.source_ = path;
  c.files_.push_back(std::make_shared<SafetensorsFile>(path));
  for (auto const& [name, _] : c.files_[0]->tensors()) c.where_[name] = 0;
  return c;
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(std::string const& model_dir) {
  std::string const single = detail::join_path(model_dir, "model.safetensors");
  std::string const ipath = detail::join_path(model_dir, "model.safetensors.index.json");
  if (!detail::path_exists(ipath)) {
    AKCB_CHECK(detail::path_exists(single), "safetensors: '", model_dir,
               "' has neither model.safetensors nor model.safetensors.index.json");
    SafetensorsCheckpoint c = open_file(single);
    c.source_ = model_dir;
    return c;
  }
  json j;
  try {
    j = json::parse(read_text_file(ipath));
  } catch (json::exception const& e) {
    AKCB_CHECK(false, "safetensors: '", ipath, "': invalid JSON: ", e.what());
  }
  AKCB_CHECK(j.is_object() && j.contains("weight_map") && j.at("weight_map").is_object(), "safetensors: '", ipath,
             "': must be an object with a 'weight_map' object");
  SafetensorsCheckpoint c;
  c.source_ = model_dir;
  std::map<std::string, size_t> file_idx;
  for (auto it = j.at("weight_map").begin(); it != j.at("weight_map").end(); ++it) {
    AKCB_CHECK(it.value().is_string(), "safetensors: '", ipath, "': weight_map['", it.key(), "'] must be a file name");
    std::string const shard = it.value().get<std::string>();
    AKCB_CHECK(detail::is_plain_file_name(shard), "safetensors: '", ipath,
               "': weight_map['", it.key(), "'] = '", shard, "' must be a plain file name in the model directory");
    auto [f, fresh] = file_idx.emplace(shard, c.files_.size());
    if (fresh) {
      std::string const full = detail::join_path(model_dir, shard);
      AKCB_CHECK(detail::path_exists(full), "safetensors: shard '", full, "' named by '", ipath, "' (tensor '",
                 it.key(), "') does not exist");
      c.files_.push_back(std::make_shared<SafetensorsFile>(full));
    }
    AKCB_CHECK(c.files_[f->second]->contains(it.key()), "safetensors: tensor '", it.key(), "' is mapped by '", ipath,
               "' to '", c.files_[f->second]->path(), "', which does not contain it");
    c.where_[it.key()] = f->second;
  }
  return c;
}

TensorInfo const& SafetensorsCheckpoint::info(std::string const& name) const { return file_of(name).info(name); }

SafetensorsFile const& SafetensorsCheckpoint::file_of(std::string const& name) const {
  auto it = where_.find(name);
  AKCB_CHECK(it != where_.end(), "safetensors: checkpoint '", source_, "' has no tensor '", name, "'");
  return *files_[it->second];
}

at::Tensor SafetensorsCheckpoint::load(std::string const& name, c10::ScalarType dtype, c10::Device device,
                                       std::vector<int64_t> const& expected_shape) const {
  SafetensorsFile const& f = file_of(name);
  TensorInfo const& ti = f.info(name);
  if (!expected_shape.empty()) {
    AKCB_CHECK(ti.shape == expected_shape, "safetensors: '", f.path(), "', tensor '", name, "': shape ",
               shape_str(ti.shape), " does not match the config's ", shape_str(expected_shape));
  }
  AKCB_CHECK(c10::isFloatingType(ti.dtype), "safetensors: '", f.path(), "', tensor '", name, "': dtype ",
             c10::toString(ti.dtype), " is not a floating type (weights must be F32, F16 or BF16)");
  return f.load(name, dtype, device);
}

void SafetensorsCheckpoint::require(std::vector<std::string> const& names) const {
  std::vector<std::string> missing;
  for (auto const& n : names)
    if (!contains(n)) missing.push_back(n);
  if (missing.empty()) return;
  std::ostringstream os;
  for (size_t i = 0; i < missing.size() && i < 16; ++i) os << (i ? ", " : "") << "'" << missing[i] << "'";
  if (missing.size() > 16) os << ", ... (" << missing.size() << " in all)";
  AKCB_CHECK(false, "safetensors: checkpoint '", source_, "' lacks ", missing.size(), " expected tensor(s): ",
             os.str());
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (auto const& [n, _] : where_) out.push_back(n);
  return out;
}

}  // namespace akcb::models
