// TensorBoard event files written directly (no TensorFlow or protobuf library): TFRecord framing
// (length, masked CRC32C of the length, the record, masked CRC32C of the record) around hand-encoded
// `Event` protobufs: the file_version event first, then scalar summaries (Event.summary.value[tag,
// simple_value]). The stock `tensorboard` package reads them (tested with its EventAccumulator).
// Each record is flushed as it is written, so a killed run keeps all scalars up to its last step.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::train {

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

class TensorBoardWriter {
 public:
  // Creates `dir` and a new events.out.tfevents.<unix time>.<host>.<pid> file in it.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Scalars of one step: (tag, value) pairs, e.g. {"train/loss", 1.23}.
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values, double wall_time = 0);
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace hs::train
