// Writing shards: one HDF5 file per shard in the schema of shard_format.h, each written to a temp file
// beside its final name and renamed after fsync, then manifest.json last. Deterministic: no timestamps
// (H5Pset_obj_track_times off), fixed chunking, samples in (length, key) order, so the same samples give
// byte-identical files whatever the number of ranks that tokenized them.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "data/manifest.h"
#include "data/sample_set.h"
#include "data/shard_format.h"

namespace hs::data {

struct WriteOptions {
  int64_t shard_tokens = 50'000'000;  // a shard closes before it would exceed this (>= 1 sample each)
  int compress = 0;                   // deflate level 0-9 (0 = none)
  int64_t chunk = 4096;               // elements per HDF5 chunk (4Ki: a sample read touches ~1-2 chunks)
};

// Writes samples set[order[0..]] as one shard at `path` (atomically). index/count: the shard's place
// in its set (attributes shard_index, shard_count). Returns its counts and file sha256.
ShardInfo write_shard(const std::string& path, const SampleSet& set, std::span<const size_t> order,
                      const ShardMeta& meta, int index, int count, const WriteOptions& options);

// Sorts the set (length, then key), splits it into shards of about options.shard_tokens, writes
// dir/shard-NNNNN.h5 for each and then dir/manifest.json (with `prep` recorded under "prep").
// The set must not be empty.
Manifest write_shard_set(const std::string& dir, const SampleSet& set, const ShardMeta& meta,
                         const WriteOptions& options, const nlohmann::json& prep = nlohmann::json::object());

}  // namespace hs::data
