// The shard schema (version 1), written by `hsloth prep` and read by every training rank.
//
// One HDF5 file per shard, samples sorted by length (ascending; ties keep source order):
//   /input_ids  int32  [T]    all samples' token ids, concatenated
//   /loss_mask  uint8  [T]    1 = token t is a training target (predicted from tokens < t); never the
//                             first token of a sample
//   /offsets    int64  [n+1]  sample i is [offsets[i], offsets[i+1]); offsets[0] = 0, offsets[n] = T
//   /lengths    int32  [n]    offsets[i+1] - offsets[i] (>= 1), ascending
//   /trained    int32  [n]    number of 1s in sample i's loss_mask (token-balanced batch planning)
// Root attributes: magic "hsloth-shard", version, tokenizer (name, sha256, vocab size, bos/eos/pad ids),
// template, loss policy, input formats, source files (names + sha256), counts, and the shard's place in
// the set. Datasets are chunked (4Ki elements), Fletcher-32 checksummed, optionally deflated, and written
// without timestamps, so the same input gives byte-identical files.
//
// A folder of shards carries `manifest.json` (kManifestName): every shard file with its counts and
// sha256 and crc32, the totals, and prep's record accounting (input = written + each skip reason). Every
// reader checks each shard's crc32 at open (fast, GB/s), so damage is found before training starts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hs::data {

inline constexpr const char* kShardMagic = "hsloth-shard";
inline constexpr int kShardVersion = 1;
inline constexpr const char* kManifestMagic = "hsloth-shards";
inline constexpr int kManifestVersion = 1;
inline constexpr const char* kManifestName = "manifest.json";

// Metadata shared by every shard of a set (what the data was made from and how).
struct ShardMeta {
  std::string tokenizer_name;    // e.g. the folder name of tokenizer.json ("qwen2.5")
  std::string tokenizer_sha256;  // sha256 of tokenizer.json bytes
  int64_t vocab_size = 0;
  int64_t bos_id = -1, eos_id = -1, pad_id = -1;  // -1 = the tokenizer has none
  std::string template_name;  // chat template family used for conversations ("none" for plain text)
  std::string loss_policy;    // "full", "response" or "response_last_turn"
  std::string formats;        // input formats seen, comma-separated ("alpaca", "sharegpt,text")
  int64_t max_len = 0;        // 0 = no limit
  std::vector<std::string> source_names;   // input file names (no folder)
  std::vector<std::string> source_sha256;  // same order
  std::string created_by;                  // "hsloth 0.1.0"

  bool operator==(const ShardMeta&) const = default;
};

// Per-shard counts (also the manifest's entry for that shard).
struct ShardInfo {
  std::string file;  // file name inside the folder ("shard-00000.h5")
  int64_t samples = 0;
  int64_t tokens = 0;
  int64_t trained = 0;  // tokens with loss_mask = 1
  std::string sha256;   // of the whole file
  std::string crc32;    // of the whole file, 8 hex digits (zlib's CRC-32); "" in older manifests
  int64_t min_length = 0, max_length = 0;
};

// "shard-00012.h5"
std::string shard_file_name(int index);

}  // namespace hs::data
