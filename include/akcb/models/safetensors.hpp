#pragma once
/// \file safetensors.hpp
/// Memory-mapped, validated reading of `.safetensors` files, single or sharded
/// (`model.safetensors.index.json`).
///
/// Format: 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data; offsets are relative to the start of the data.
///
/// Validation at open (every failure is a c10::Error naming the file and, where relevant, the
/// tensor): N sane and inside the file, JSON parses, every entry well formed, dtype supported,
/// offsets inside the file, dtype size x shape == byte count, no two tensors overlapping.

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace akcb::models {

/// One tensor entry of a safetensors header.
struct TensorInfo {
  std::string name;
  c10::ScalarType dtype = c10::ScalarType::Float;  ///< Float, Half, BFloat16 (weights); Long, Int too
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;  ///< absolute byte offset in the file
  uint64_t data_end = 0;    ///< absolute byte offset in the file (exclusive)
};

/// One memory-mapped `.safetensors` file. Move-only; unmaps on destruction.
class SafetensorsFile {
 public:
  /// Maps and validates `path`. \throws c10::Error naming the file (and tensor) on any defect.
  explicit SafetensorsFile(std::string path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(SafetensorsFile const&) = delete;
  SafetensorsFile& operator=(SafetensorsFile const&) = delete;

  std::string const& path() const { return path_; }
  uint64_t file_bytes() const { return size_; }
  std::map<std::string, TensorInfo> const& tensors() const { return tensors_; }
  std::map<std::string, std::string> const& metadata() const { return metadata_; }
  bool contains(std::string const& name) const { return tensors_.count(name) != 0; }
  /// \throws c10::Error naming the file and the tensor when absent.
  TensorInfo const& info(std::string const& name) const;

  /// A fresh tensor holding `name`'s values, converted to `dtype` on `device` (never aliases the
  /// mapping, which may be unmapped afterwards). Host-to-device copies read the mapped pages directly.
  /// \throws c10::Error when absent.
  at::Tensor load(std::string const& name, c10::ScalarType dtype, c10::Device device) const;

 private:
  void unmap() noexcept;
  std::string path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// The weights of a checkpoint directory: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`. Each shard is mapped once.
class SafetensorsCheckpoint {
 public:
  /// Opens `model_dir`. \throws c10::Error when neither file exists, the index is malformed, a
  /// shard is missing or invalid, or a tensor the index names is not in its shard.
  static SafetensorsCheckpoint open(std::string const& model_dir);
  /// Opens a single file.
  static SafetensorsCheckpoint open_file(std::string const& path);

  bool contains(std::string const& name) const { return where_.count(name) != 0; }
  /// \throws c10::Error naming the tensor (and the checkpoint) when absent.
  TensorInfo const& info(std::string const& name) const;
  /// The file holding `name`. \throws c10::Error when absent.
  SafetensorsFile const& file_of(std::string const& name) const;
  /// Loads `name` to `dtype` on `device`, checking its shape when `expected_shape` is non-empty.
  /// \throws c10::Error naming file, tensor, expected and actual shape.
  at::Tensor load(std::string const& name, c10::ScalarType dtype, c10::Device device,
                  std::vector<int64_t> const& expected_shape = {}) const;
  /// Checks that every name is present; the error lists all the missing ones.
  void require(std::vector<std::string> const& names) const;
  /// Every tensor name, sorted.
  std::vector<std::string> names() const;
  std::string const& source() const { return source_; }

 private:
  std::string source_;  ///< directory or file, for messages
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  ///< tensor name -> index in files_
};

/// Safetensors dtype string ("BF16", ...) -> ScalarType. \throws c10::Error for unsupported ones.
c10::ScalarType safetensors_dtype(std::string const& s, std::string const& context);

}  // namespace akcb::models
