// Shard writer: flattens the chosen samples, writes the five datasets and the root attributes with the
// HDF5 C API into a temp file, fsyncs and renames it; the manifest goes last (see shard_writer.h).
#include "data/shard_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "core/timer.h"
#include "data/hdf5_util.h"
#include "io/file.h"

namespace hs::data {
namespace fs = std::filesystem;

namespace {
void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    if (directory) return;  // best effort for folders
    throw Error(str("cannot reopen for fsync: ", std::strerror(errno))).at(path);
  }
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0 && !directory)
    throw Error(str("fsync failed: ", std::strerror(e))).at(path).hint("is the disk full?");
}
}  // namespace

ShardInfo write_shard(const std::string& path, const SampleSet& set, std::span<const size_t> order,
                      const ShardMeta& meta, int index, int count, const WriteOptions& options) {
  h5::quiet();
  HS_CHECK(!order.empty(), "a shard needs at least one sample");
  HS_CHECK(options.compress >= 0 && options.compress <= 9, "compress level must be 0-9, got ",
           options.compress);
  HS_CHECK(meta.source_names.size() == meta.source_sha256.size(),
           "source names and sha256 lists differ in size");

  // Flatten in shard order.
  const size_t n = order.size();
  std::vector<int64_t> offsets(n + 1, 0);
  std::vector<int32_t> lengths(n), trained(n);
  for (size_t i = 0; i < n; ++i) {
    lengths[i] = set.length(order[i]);
    trained[i] = set.trained(order[i]);
    offsets[i + 1] = offsets[i] + lengths[i];
    if (i > 0) HS_CHECK(lengths[i] >= lengths[i - 1], "samples must be given in ascending length order");
  }
  const size_t total = size_t(offsets[n]);
  std::vector<int32_t> ids(total);
  std::vector<uint8_t> mask(total);
  int64_t num_trained = 0;
  for (size_t i = 0; i < n; ++i) {
    auto s_ids = set.ids(order[i]);
    auto s_mask = set.mask(order[i]);
    std::copy(s_ids.begin(), s_ids.end(), ids.begin() + offsets[i]);
    std::copy(s_mask.begin(), s_mask.end(), mask.begin() + offsets[i]);
    num_trained += trained[i];
  }

  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmp_name = ".";  // (built step by step: GCC 12 warns falsely on "." + string)
  tmp_name += target.filename().string();
  tmp_name += ".tmp." + std::to_string(::getpid());
  std::string tmp = (dir / tmp_name).string();
  const std::string& where = path;
  try {
    h5::Handle fcpl = h5::check_id(H5Pcreate(H5P_FILE_CREATE), "H5Pcreate", where);
    h5::check(H5Pset_obj_track_times(fcpl, false), "H5Pset_obj_track_times", where);
    h5::Handle file = h5::check_id(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT),
                                   "cannot create shard file", tmp);

    h5::write_attr_string(file, "magic", kShardMagic, where);
    h5::write_attr_int(file, "version", kShardVersion, H5T_STD_I32LE, where);
    h5::write_attr_string(file, "created_by", meta.created_by, where);
    h5::write_attr_string(file, "tokenizer_name", meta.tokenizer_name, where);
    h5::write_attr_string(file, "tokenizer_sha256", meta.tokenizer_sha256, where);
    h5::write_attr_int(file, "vocab_size", meta.vocab_size, H5T_STD_I64LE, where);
    h5::write_attr_int(file, "bos_id", meta.bos_id, H5T_STD_I32LE, where);
    h5::write_attr_int(file, "eos_id", meta.eos_id, H5T_STD_I32LE, where);
    h5::write_attr_int(file, "pad_id", meta.pad_id, H5T_STD_I32LE, where);
    h5::write_attr_string(file, "template", meta.template_name, where);
    h5::write_attr_string(file, "loss_policy", meta.loss_policy, where);
    h5::write_attr_string(file, "formats", meta.formats, where);
    h5::write_attr_int(file, "max_len", meta.max_len, H5T_STD_I64LE, where);
    h5::write_attr_strings(file, "source_names", meta.source_names, where);
    h5::write_attr_strings(file, "source_sha256", meta.source_sha256, where);
    h5::write_attr_int(file, "shard_index", index, H5T_STD_I32LE, where);
    h5::write_attr_int(file, "shard_count", count, H5T_STD_I32LE, where);
    h5::write_attr_int(file, "num_samples", int64_t(n), H5T_STD_I64LE, where);
    h5::write_attr_int(file, "num_tokens", int64_t(total), H5T_STD_I64LE, where);
    h5::write_attr_int(file, "num_trained", num_trained, H5T_STD_I64LE, where);

    h5::DatasetOptions dopt;
    dopt.chunk = hsize_t(std::max<int64_t>(1, options.chunk));
    dopt.compress = options.compress;
    h5::write_dataset(file, "input_ids", H5T_STD_I32LE, H5T_NATIVE_INT32, ids.data(), total, dopt, where);
    h5::write_dataset(file, "loss_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, mask.data(), total, dopt, where);
    h5::write_dataset(file, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, offsets.data(), n + 1, dopt, where);
    h5::write_dataset(file, "lengths", H5T_STD_I32LE, H5T_NATIVE_INT32, lengths.data(), n, dopt, where);
    h5::write_dataset(file, "trained", H5T_STD_I32LE, H5T_NATIVE_INT32, trained.data(), n, dopt, where);
    file.close(tmp);
    fsync_path(tmp, false);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error(str("rename failed: ", std::strerror(e))).at(path);
  }

  ShardInfo info;
  info.file = target.filename().string();
  info.samples = int64_t(n);
  info.tokens = int64_t(total);
  info.trained = num_trained;
  info.min_length = lengths.front();
  info.max_length = lengths.back();
  FileDigests d = file_digests(path);
  info.sha256 = std::move(d.sha256);
  info.crc32 = std::move(d.crc32);
  return info;
}

Manifest write_shard_set(const std::string& dir, const SampleSet& set, const ShardMeta& meta,
                         const WriteOptions& options, const nlohmann::json& prep) {
  if (set.empty())
    throw Error("no samples to write").at(dir).hint("every input record was skipped; see the table above");
  HS_CHECK(options.shard_tokens > 0, "shard_tokens must be positive");
  io::make_dirs(dir);
  // A folder without a manifest reads as unfinished: drop the old one before touching any shard.
  std::error_code ec;
  fs::remove(fs::path(dir) / kManifestName, ec);

  const std::vector<size_t> order = set.sorted_order();
  std::vector<std::pair<size_t, size_t>> ranges;  // [begin, end) into order
  size_t begin = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    int64_t len = set.length(order[i]);
    if (i > begin && tokens + len > options.shard_tokens) {
      ranges.emplace_back(begin, i);
      begin = i;
      tokens = 0;
    }
    tokens += len;
  }
  ranges.emplace_back(begin, order.size());

  Manifest m;
  m.meta = meta;
  m.prep = prep;
  const int count = int(ranges.size());
  int written = 0;
  try {
    for (int s = 0; s < count; ++s) {
      std::span<const size_t> part(order.data() + ranges[s].first, ranges[s].second - ranges[s].first);
      std::string path = (fs::path(dir) / shard_file_name(s)).string();
      ShardInfo info = write_shard(path, set, part, meta, s, count, options);
      ++written;
      m.samples += info.samples;
      m.tokens += info.tokens;
      m.trained += info.trained;
      m.shards.push_back(std::move(info));
    }
    fsync_path(dir, true);
    m.write(dir);
  } catch (Error& e) {
    // An unfinished set is of no use (no manifest): leave the folder without this run's files.
    for (int s = 0; s < written; ++s) fs::remove(fs::path(dir) / shard_file_name(s), ec);
    if (e.hint_text().empty() || e.hint_text() == "is the disk full?")
      e.hint(str("nothing was kept in ", dir, ": free space on its disk (the shards need about ",
                 format_bytes(double(set.num_tokens()) * 5.0),
                 " uncompressed) and run prep again, or "
                 "choose another --out"));
    throw;
  }

  // Shards of an earlier, larger set in this folder are not part of this one: remove them (only files
  // named like ours).
  static const std::regex ours(R"(shard-(\d{5,})\.h5)");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch mt;
    std::string name = e.path().filename().string();
    if (std::regex_match(name, mt, ours) && std::stoll(mt[1].str()) >= count) fs::remove(e.path(), ec);
  }
  return m;
}

}  // namespace hs::data
