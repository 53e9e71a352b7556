// SampleSet: tokenized samples in flat arrays (ids, mask, per-sample offsets), each tagged with an order
// key (the record's global index in the input, so that sorting is independent of how records were
// split across ranks). It serializes to bytes for the MPI gather in `hsloth prep`, and sorted_order()
// gives the shard order: by length ascending, ties by key.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hs::data {

class SampleSet {
 public:
  // ids and mask must have the same non-zero length; mask values are 0/1 (checked).
  void add(std::span<const int32_t> ids, std::span<const uint8_t> mask, int64_t key);
  // Appends all of `other` (keys are kept).
  void append(const SampleSet& other);

  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }
  int64_t num_tokens() const { return int64_t(ids_.size()); }
  int64_t num_trained() const;

  int32_t length(size_t i) const { return int32_t(offsets_[i + 1] - offsets_[i]); }
  int32_t trained(size_t i) const { return trained_[i]; }
  int64_t key(size_t i) const { return keys_[i]; }
  std::span<const int32_t> ids(size_t i) const { return {ids_.data() + offsets_[i], size_t(length(i))}; }
  std::span<const uint8_t> mask(size_t i) const { return {mask_.data() + offsets_[i], size_t(length(i))}; }

  // Indices sorted by (length, key); keys must be unique for a deterministic order (checked).
  std::vector<size_t> sorted_order() const;

  std::string serialize() const;
  // Throws hs::Error on a malformed buffer (e.g. from a rank that wrote something else).
  static SampleSet deserialize(std::string_view bytes);

 private:
  std::vector<int32_t> ids_;
  std::vector<uint8_t> mask_;
  std::vector<int64_t> offsets_{0};
  std::vector<int32_t> trained_;
  std::vector<int64_t> keys_;
};

}  // namespace hs::data
