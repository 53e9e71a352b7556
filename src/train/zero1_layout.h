// ZeRO-1's layout arithmetic (zero1.h), torch-free so the memory plan (src/plan) computes the very shard,
// padded-sum and staging sizes that train::Zero1 allocates: the gradient-norm chunk, the section length, and
// a section's run per rank.
#pragma once

#include <algorithm>
#include <cstdint>

namespace hs::train {

// The norm chunk for a flat buffer of `numel` values: a power of two, about numel/64, in [2^10, 2^24].
inline int64_t norm_chunk(int64_t numel) {
  int64_t c = int64_t(1) << 10;
  while (c < (int64_t(1) << 24) && c * 2 <= numel / 64) c *= 2;
  return c;
}

// Sections start at chunk boundaries: a power of two >= the chunk, about numel/16, at most 2^26 values (the
// staging buffer).
inline int64_t zero1_section(int64_t numel, int64_t chunk) {
  int64_t section = chunk;
  while (section < (int64_t(1) << 26) && section * 2 <= numel / 16) section *= 2;
  return section;
}

// Values per rank of a section of `numel` values: whole chunks, the same on every rank (zeros pad the last).
inline int64_t zero1_run(int64_t numel, int64_t chunk, int world) {
  const int64_t chunks = (numel + chunk - 1) / chunk;
  return (chunks + world - 1) / world * chunk;
}

}  // namespace hs::train
