// safetensors, read and written without LibTorch. Reading maps each file (mmap, read-only) and checks
// the header strictly before handing out a single pointer: header size bounded and inside the file,
// known dtypes, dtype x shape == bytes, offsets inside the data area and non-overlapping. A checkpoint is
// one file, a sharded set named by `<stem>.safetensors.index.json`, or a folder holding either; pickle
// checkpoints (`.bin`, `.pt`) are refused with the conversion hint. Writing follows the reference
// implementation byte for byte (tensors ordered by dtype alignment then name, JSON header padded with
// spaces to 8 bytes, optional `__metadata__` with sorted keys), atomically; ShardedWriter splits a model into
// shards of a bounded size plus the index json that transformers reads, holding at most one shard in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hs::io {

enum class DType { F64, I64, F32, I32, BF16, F16, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "F32", "BF16", ...
std::optional<DType> parse_dtype(std::string_view name);

// Largest header we accept (the reference implementation's limit is 100 MB too).
inline constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

using Metadata = std::map<std::string, std::string>;

// One tensor of a mapped file; `data` stays valid while the SafetensorsFile (or Checkpoint) lives.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  size_t offset = 0;  // start inside the data area
  std::string file;   // the file it lives in
  int64_t numel() const;
};

// A read-only memory map of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// One .safetensors file, mapped and validated.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Validates `bytes` as a whole safetensors file (used by open and by tests); `path` names it in errors.
  // The returned infos point into `bytes`.
  static std::vector<TensorInfo> parse(const uint8_t* bytes, size_t size, const std::string& path,
                                       Metadata* metadata);

  const std::string& path() const { return map_->path(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data order
  const TensorInfo* find(const std::string& name) const;
  const Metadata& metadata() const { return metadata_; }

 private:
  std::unique_ptr<MappedFile> map_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  Metadata metadata_;
};

// A whole checkpoint: one file or a sharded set, looked up by tensor name.
class Checkpoint {
 public:
  // `path`: a .safetensors file, a `<stem>.safetensors.index.json`, or a folder holding
  // `<stem>.safetensors.index.json` or `<stem>.safetensors` (stem "model" for models, "adapter_model"
  // for PEFT adapters). Pickle checkpoints are refused with a hint.
  static Checkpoint open(const std::string& path, const std::string& stem = "model");

  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& get(const std::string& name) const;  // throws hs::Error naming the checkpoint
  std::vector<std::string> names() const;                // sorted
  size_t size() const { return by_name_.size(); }
  const std::string& source() const { return source_; }  // the file or index json opened
  std::vector<std::string> files() const;
  const Metadata& metadata() const;  // of the first file

 private:
  std::string source_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, const TensorInfo*> by_name_;
};

// What a writer needs to know of a tensor before its bytes exist.
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t nbytes() const;
};

// A tensor to write: spec plus bytes (not owned).
struct TensorRef {
  TensorSpec spec;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// The bytes of a safetensors file (header + data), exactly as the reference implementation writes them.
std::string serialize_safetensors(const std::vector<TensorRef>& tensors, const Metadata& metadata = {});
// serialize_safetensors, written atomically.
void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const Metadata& metadata = {});

// Sharded writer. The full list of tensors is given first (their order decides the shards, like
// transformers: a new shard starts when the next tensor would push the current one past max_shard_bytes);
// put() accepts each tensor's bytes in any order and writes a shard as soon as all of its tensors are in.
// finish() checks every tensor was given and writes `<stem>.safetensors.index.json`; with a single shard
// the file is plain `<stem>.safetensors` and no index is written (as transformers does).
class ShardedWriter {
 public:
  ShardedWriter(std::string dir, std::vector<TensorSpec> specs, size_t max_shard_bytes,
                Metadata metadata = {{"format", "pt"}}, std::string stem = "model");
  ~ShardedWriter();
  void put(const std::string& name, const void* data, size_t nbytes);
  // Returns the file names written (shards, then the index if any).
  std::vector<std::string> finish();
  size_t shard_count() const { return shards_.size(); }

 private:
  struct Shard {
    std::string file;
    std::vector<size_t> members;                     // indices into specs_
    std::string buffer;                              // header + data, allocated on first put
    std::unordered_map<std::string, size_t> offset;  // name -> byte position in buffer
    size_t pending = 0;
    bool written = false;
  };
  std::string dir_, stem_;
  std::vector<TensorSpec> specs_;
  Metadata metadata_;
  std::vector<Shard> shards_;
  std::unordered_map<std::string, std::pair<size_t, size_t>> where_;  // name -> (shard, spec index)
  std::vector<bool> done_;
  std::vector<std::string> written_;
  bool finished_ = false;
};

}  // namespace hs::io
