// SHA-256 (FIPS 180-4), streaming. Shards record the sha256 of the tokenizer.json and of each source
// file so that a mismatch between data and model is caught and named.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace hs::io {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex();  // finishes; the object must not be updated after

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  uint64_t total_ = 0;
  size_t used_ = 0;
};

std::string sha256_hex(std::string_view bytes);
std::string sha256_file(const std::string& path);

}  // namespace hs::io
