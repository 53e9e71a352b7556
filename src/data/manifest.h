// manifest.json of a shard folder: the set's metadata, each shard (file, counts, sha256), totals, and
// prep's record accounting (kept verbatim as a JSON object under "prep"). Written last and atomically by
// the shard writer, so a folder with a manifest is complete. Keys are emitted sorted and nothing
// run-dependent (time, host, rank count) is recorded, so identical input gives an identical manifest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/shard_format.h"

namespace hs::data {

// sha256 (hex) and CRC-32 (8 hex digits) of a file's bytes, read once; throws hs::Error naming it.
struct FileDigests {
  std::string sha256, crc32;
};
FileDigests file_digests(const std::string& path, bool with_sha256 = true);

struct Manifest {
  int version = kManifestVersion;
  ShardMeta meta;
  std::vector<ShardInfo> shards;
  int64_t samples = 0, tokens = 0, trained = 0;
  nlohmann::json prep = nlohmann::json::object();

  nlohmann::json to_json() const;
  // `where` names the file for error messages.
  static Manifest from_json(const nlohmann::json& j, const std::string& where);

  // dir/manifest.json; throws hs::Error naming the file (missing, bad JSON, newer version, ...).
  static Manifest read(const std::string& dir);
  void write(const std::string& dir) const;  // atomic
};

}  // namespace hs::data
