// ShardIndex: the read side of the shard format, used for planning and by every training rank.
//
// open() reads only the manifest, each shard's attributes and its small per-sample datasets (lengths,
// trained, offsets: 16 bytes per sample), and checks all of it: magic and version, presence and types
// of the datasets, offsets monotone and matching lengths and dataset sizes, counts against the manifest,
// the same tokenizer in every shard, and (when the caller passes one) the tokenizer sha256 of the model.
// Every failure is an hs::Error naming the file and the fix. read_sample() then reads one sample's ids
// and mask with a hyperslab (chunks are 4Ki tokens and Fletcher-32 checked, so a damaged chunk is an
// error, not wrong tokens). By default open() also reads every shard whole (Options::verify_data), so
// that train and eval, which both open their data here, stop on a damaged shard before step 1. Not
// thread-safe (HDF5 serial build): one ShardIndex per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/manifest.h"
#include "data/shard_format.h"

namespace hs::data {

struct Sample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};

class ShardIndex {
 public:
  struct Options {
    // When set: the sha256 of the model's tokenizer.json; a mismatch is an error naming both.
    std::string expected_tokenizer_sha256;
    std::string expected_tokenizer_name;  // shown in that error (e.g. the tokenizer path)
    // Read every shard whole at open, so that damage is an error before training starts, not at the
    // step that reads the damaged sample: each file against the manifest's crc32 (GB/s), or, without
    // one (older manifests, a single .h5), every chunk of its token datasets through HDF5, whose
    // Fletcher-32 checksums catch damaged chunks (a warning says the checksums are absent).
    bool verify_data = true;
    // Also hash every shard file with sha256 and compare with the manifest (slower; inspect --verify).
    bool verify_checksums = false;
  };

  // `path` is a folder with manifest.json, or a single shard file (.h5).
  static ShardIndex open(const std::string& path, const Options& options);
  static ShardIndex open(const std::string& path) { return open(path, Options{}); }

  ShardIndex(ShardIndex&&) noexcept;
  ShardIndex& operator=(ShardIndex&&) noexcept;
  ~ShardIndex();

  int64_t num_samples() const;
  int64_t num_tokens() const;
  int64_t num_trained() const;
  // Per global sample id, in shard order (ascending length within each shard).
  const std::vector<int32_t>& lengths() const;
  const std::vector<int32_t>& trained() const;
  int32_t length(int64_t id) const { return lengths()[size_t(id)]; }
  int32_t trained(int64_t id) const { return trained()[size_t(id)]; }

  // Global id -> (shard index, index inside that shard). Throws on an out-of-range id.
  std::pair<int, int64_t> locate(int64_t id) const;
  Sample read_sample(int64_t id) const;

  const ShardMeta& meta() const;
  const Manifest& manifest() const;  // synthesized from the file for a single-file open
  const std::vector<ShardInfo>& shards() const;
  const std::string& path() const;

 private:
  struct Impl;
  explicit ShardIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads one shard file's root attributes (checks magic and version). For tools and tests.
ShardMeta read_shard_meta(const std::string& file);

}  // namespace hs::data
