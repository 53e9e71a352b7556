// TensorBoard event writer (see tensorboard.h): TFRecord framing with masked CRC32C around hand-encoded
// Event protobufs; no TensorFlow or protobuf dependency.
#include "train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "io/file.h"

namespace hs::train {
namespace {

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // Castagnoli, reflected
    t[i] = c;
  }
  return t;
}

uint32_t masked_crc(const void* data, size_t size) {
  uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Minimal protobuf encoding.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += char(v);
}
void key(std::string& out, int field, int wire) { varint(out, uint64_t(field) << 3 | uint64_t(wire)); }
void fixed64(std::string& out, int field, double v) {
  key(out, field, 1);
  char b[8];
  std::memcpy(b, &v, 8);
  out.append(b, 8);
}
void fixed32(std::string& out, int field, float v) {
  key(out, field, 5);
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}
void bytes(std::string& out, int field, std::string_view s) {
  key(out, field, 2);
  varint(out, s.size());
  out.append(s);
}
void int64(std::string& out, int field, int64_t v) {
  key(out, field, 0);
  varint(out, uint64_t(v));
}

double now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  static const auto table = make_crc_table();
  auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  io::make_dirs(dir);
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  double t = now();
  path_ = dir + "/events.out.tfevents." + std::to_string(int64_t(t)) + "." + host + "." +
          std::to_string(getpid());
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) throw Error("cannot create TensorBoard event file").at(path_);
  std::string ev;  // Event{wall_time=1, step=2, file_version=3}
  fixed64(ev, 1, t);
  int64(ev, 2, 0);
  bytes(ev, 3, "brain.Event:2");
  write_event(ev);
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                                double wall_time) {
  std::string summary;  // Summary{value=1: Value{tag=1, simple_value=2}}
  for (const auto& [tag, v] : values) {
    std::string value;
    bytes(value, 1, tag);
    fixed32(value, 2, float(v));
    bytes(summary, 1, value);
  }
  std::string ev;  // Event{wall_time=1, step=2, summary=5}
  fixed64(ev, 1, wall_time > 0 ? wall_time : now());
  int64(ev, 2, step);
  bytes(ev, 5, summary);
  write_event(ev);
}

void TensorBoardWriter::write_event(const std::string& event) {
  uint64_t len = event.size();
  char header[12];
  std::memcpy(header, &len, 8);  // little-endian hosts only (x86-64, aarch64)
  uint32_t lc = masked_crc(header, 8);
  std::memcpy(header + 8, &lc, 4);
  uint32_t dc = masked_crc(event.data(), event.size());
  if (std::fwrite(header, 1, 12, file_) != 12 ||
      std::fwrite(event.data(), 1, event.size(), file_) != event.size() ||
      std::fwrite(&dc, 1, 4, file_) != 4 || std::fflush(file_) != 0)
    throw Error("write to TensorBoard event file failed").at(path_).hint("is the disk full?");
}

}  // namespace hs::train
