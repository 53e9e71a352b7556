// ShardIndex: opening and validating shard files, global id bookkeeping, hyperslab reads.
#include "data/shard_index.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "data/hdf5_util.h"
#include "io/file.h"

namespace hs::data {
namespace fs = std::filesystem;

namespace {
constexpr const char* kRerun = "re-run hsloth prep to rebuild the shards";

h5::Handle open_file(const std::string& path) {
  h5::quiet();
  if (!io::exists(path))
    throw Error("shard file is missing")
        .at(path)
        .hint("the manifest lists it: copy the whole shard folder, or " + std::string(kRerun));
  htri_t is = H5Fis_hdf5(path.c_str());
  if (is <= 0) {
    h5::last_error();
    throw Error("not an HDF5 file (damaged, truncated, or not a shard)").at(path).hint(kRerun);
  }
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    std::string why = h5::last_error();
    throw Error("cannot open shard file" + (why.empty() ? std::string() : ": " + why))
        .at(path)
        .hint("the file is truncated or damaged (copy it again, or " + std::string(kRerun) + ")");
  }
  return h5::Handle(f);
}

ShardMeta read_meta(hid_t file, const std::string& path) {
  if (!h5::has_attr(file, "magic"))
    throw Error("not an hsloth shard (no 'magic' attribute)")
        .at(path)
        .hint("point at a folder written by hsloth prep");
  std::string magic = h5::read_attr_string(file, "magic", path);
  if (magic != kShardMagic)
    throw Error(str("not an hsloth shard (magic is '", magic, "', expected '", kShardMagic, "')"))
        .at(path)
        .hint("point at a folder written by hsloth prep");
  int64_t version = h5::read_attr_int(file, "version", path);
  if (version > kShardVersion)
    throw Error(str("shard format version ", version, " is newer than this build reads (version ",
                    kShardVersion, ")"))
        .at(path)
        .hint("made by a newer hsloth? upgrade hsloth, or re-run this version's hsloth prep");
  if (version < 1) throw Error(str("bad shard format version ", version)).at(path).hint(kRerun);
  ShardMeta m;
  m.created_by = h5::read_attr_string(file, "created_by", path);
  m.tokenizer_name = h5::read_attr_string(file, "tokenizer_name", path);
  m.tokenizer_sha256 = h5::read_attr_string(file, "tokenizer_sha256", path);
  m.vocab_size = h5::read_attr_int(file, "vocab_size", path);
  m.bos_id = h5::read_attr_int(file, "bos_id", path);
  m.eos_id = h5::read_attr_int(file, "eos_id", path);
  m.pad_id = h5::read_attr_int(file, "pad_id", path);
  m.template_name = h5::read_attr_string(file, "template", path);
  m.loss_policy = h5::read_attr_string(file, "loss_policy", path);
  m.formats = h5::read_attr_string(file, "formats", path);
  m.max_len = h5::read_attr_int(file, "max_len", path);
  m.source_names = h5::read_attr_strings(file, "source_names", path);
  m.source_sha256 = h5::read_attr_strings(file, "source_sha256", path);
  return m;
}

// The first differing field of two metas, or "".
std::string meta_diff(const ShardMeta& a, const ShardMeta& b) {
  if (a.tokenizer_sha256 != b.tokenizer_sha256)
    return "tokenizer_sha256 " + a.tokenizer_sha256 + " vs " + b.tokenizer_sha256;
  if (a.tokenizer_name != b.tokenizer_name)
    return "tokenizer_name " + a.tokenizer_name + " vs " + b.tokenizer_name;
  if (a.vocab_size != b.vocab_size) return str("vocab_size ", a.vocab_size, " vs ", b.vocab_size);
  if (a.bos_id != b.bos_id || a.eos_id != b.eos_id || a.pad_id != b.pad_id) return "special token ids";
  if (a.template_name != b.template_name) return "template " + a.template_name + " vs " + b.template_name;
  if (a.loss_policy != b.loss_policy) return "loss_policy " + a.loss_policy + " vs " + b.loss_policy;
  if (a.formats != b.formats) return "formats " + a.formats + " vs " + b.formats;
  if (a.max_len != b.max_len) return str("max_len ", a.max_len, " vs ", b.max_len);
  if (a.source_names != b.source_names || a.source_sha256 != b.source_sha256) return "source files";
  if (a.created_by != b.created_by) return "created_by " + a.created_by + " vs " + b.created_by;
  return "";
}

h5::Handle open_dataset(hid_t file, const char* name, const std::string& path) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
    h5::last_error();
    throw Error(str("dataset '", name, "' is missing")).at(path).hint(kRerun);
  }
  return h5::check_id(H5Dopen2(file, name, H5P_DEFAULT), str("cannot open dataset '", name, "'"), path);
}

template <typename T>
std::vector<T> read_all(hid_t ds, hid_t mem_type, hsize_t n, const char* name, const std::string& path) {
  std::vector<T> v(n);
  try {
    h5::read_range(ds, mem_type, 0, n, v.data(), str("dataset '", name, "'"), path);
  } catch (Error& e) {
    e.hint("the file is damaged (copy it again, or " + std::string(kRerun) + ")");
    throw;
  }
  return v;
}

struct OpenShard {
  std::string path;
  ShardInfo info;
  ShardMeta meta;
  h5::Handle file, ids, mask;
  std::vector<int64_t> offsets;
  std::vector<int32_t> lengths, trained;
  int64_t shard_index = 0, shard_count = 0;
  hsize_t n_ids = 0;
};

OpenShard open_shard(const std::string& path) {
  OpenShard s;
  s.path = path;
  s.file = open_file(path);
  s.meta = read_meta(s.file, path);
  s.shard_index = h5::read_attr_int(s.file, "shard_index", path);
  s.shard_count = h5::read_attr_int(s.file, "shard_count", path);
  const int64_t a_samples = h5::read_attr_int(s.file, "num_samples", path);
  const int64_t a_tokens = h5::read_attr_int(s.file, "num_tokens", path);
  const int64_t a_trained = h5::read_attr_int(s.file, "num_trained", path);

  s.ids = open_dataset(s.file, "input_ids", path);
  s.mask = open_dataset(s.file, "loss_mask", path);
  h5::Handle d_off = open_dataset(s.file, "offsets", path);
  h5::Handle d_len = open_dataset(s.file, "lengths", path);
  h5::Handle d_tr = open_dataset(s.file, "trained", path);
  const hsize_t n_ids = h5::dataset_size(s.ids, "input_ids", 4, true, path);
  const hsize_t n_mask = h5::dataset_size(s.mask, "loss_mask", 1, false, path);
  const hsize_t n_off = h5::dataset_size(d_off, "offsets", 8, true, path);
  const hsize_t n = h5::dataset_size(d_len, "lengths", 4, true, path);
  const hsize_t n_tr = h5::dataset_size(d_tr, "trained", 4, true, path);
  auto bad = [&](const std::string& what) { return Error(what).at(path).hint(kRerun); };
  if (n_mask != n_ids)
    throw bad(str("loss_mask has ", n_mask, " entries but input_ids has ", n_ids, " (they must match)"));
  if (n_off != n + 1) throw bad(str("offsets has ", n_off, " entries, expected lengths + 1 = ", n + 1));
  if (n_tr != n) throw bad(str("trained has ", n_tr, " entries, expected ", n, " (one per sample)"));
  if (int64_t(n) != a_samples || int64_t(n_ids) != a_tokens)
    throw bad(str("datasets hold ", n, " samples / ", n_ids, " tokens but the attributes say ", a_samples,
                  " / ", a_tokens));

  s.offsets = read_all<int64_t>(d_off, H5T_NATIVE_INT64, n_off, "offsets", path);
  s.lengths = read_all<int32_t>(d_len, H5T_NATIVE_INT32, n, "lengths", path);
  s.trained = read_all<int32_t>(d_tr, H5T_NATIVE_INT32, n, "trained", path);
  if (s.offsets[0] != 0) throw bad(str("offsets[0] is ", s.offsets[0], ", expected 0"));
  int64_t trained_sum = 0;
  for (hsize_t i = 0; i < n; ++i) {
    int64_t len = s.offsets[i + 1] - s.offsets[i];
    if (len <= 0)
      throw bad(str("offsets are not increasing at sample ", i, " (", s.offsets[i], " then ",
                    s.offsets[i + 1], ")"));
    if (len != s.lengths[i])
      throw bad(str("offsets say sample ", i, " has ", len, " tokens but lengths[", i, "] = ", s.lengths[i]));
    if (i > 0 && s.lengths[i] < s.lengths[i - 1])
      throw bad(str("samples are not sorted by length at sample ", i, " (", s.lengths[i - 1], " then ",
                    s.lengths[i], ")"));
    if (s.trained[i] < 0 || s.trained[i] >= s.lengths[i])
      throw bad(str("trained[", i, "] = ", s.trained[i], " is out of range for a sample of ", s.lengths[i],
                    " tokens"));
    trained_sum += s.trained[i];
  }
  if (s.offsets[n] != int64_t(n_ids))
    throw bad(str("offsets end at ", s.offsets[n], " but input_ids has ", n_ids, " tokens"));
  if (trained_sum != a_trained)
    throw bad(str("trained counts sum to ", trained_sum, " but the attribute num_trained says ", a_trained));

  s.n_ids = n_ids;
  s.info.file = fs::path(path).filename().string();
  s.info.samples = int64_t(n);
  s.info.tokens = int64_t(n_ids);
  s.info.trained = trained_sum;
  s.info.min_length = n ? s.lengths.front() : 0;
  s.info.max_length = n ? s.lengths.back() : 0;
  return s;
}
}  // namespace

namespace {
// Reads all of input_ids and loss_mask through HDF5 (Fletcher-32 per chunk): for shards without a crc32.
void verify_chunks(const OpenShard& s) {
  constexpr hsize_t kBlock = hsize_t(1) << 20;
  std::vector<int32_t> ids(size_t(std::min(kBlock, s.n_ids)));
  std::vector<uint8_t> mask(ids.size());
  try {
    for (hsize_t at = 0; at < s.n_ids; at += kBlock) {
      const hsize_t n = std::min(kBlock, s.n_ids - at);
      h5::read_range(s.ids, H5T_NATIVE_INT32, at, n, ids.data(), "input_ids", s.path);
      h5::read_range(s.mask, H5T_NATIVE_UINT8, at, n, mask.data(), "loss_mask", s.path);
    }
  } catch (Error& e) {
    e.hint("the file is damaged (a chunk checksum or read failed): copy it again, or " + std::string(kRerun));
    throw;
  }
}

void verify_digests(const std::string& file, const ShardInfo& want, bool sha256) {
  FileDigests d = file_digests(file, sha256);
  auto damaged = [&](const char* what, const std::string& got, const std::string& expected) {
    return Error(str(what, " is ", got, " but ", kManifestName, " says ", expected,
                     ": the file was changed or damaged after prep"))
        .at(file)
        .hint("copy the shard folder again, or " + std::string(kRerun));
  };
  if (!want.crc32.empty() && d.crc32 != want.crc32) throw damaged("crc32", d.crc32, want.crc32);
  if (sha256 && d.sha256 != want.sha256) throw damaged("sha256", d.sha256, want.sha256);
}
}  // namespace

struct ShardIndex::Impl {
  std::string path;
  Manifest manifest;
  std::vector<OpenShard> shards;
  std::vector<ShardInfo> infos;
  std::vector<int64_t> first;  // global id of each shard's first sample, plus the total at the end
  std::vector<int32_t> lengths, trained;
  int64_t tokens = 0, trained_total = 0;
};

ShardIndex::ShardIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardIndex::ShardIndex(ShardIndex&&) noexcept = default;
ShardIndex& ShardIndex::operator=(ShardIndex&&) noexcept = default;
ShardIndex::~ShardIndex() = default;

ShardIndex ShardIndex::open(const std::string& path, const Options& options) {
  h5::quiet();
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  std::vector<std::string> files;
  bool single = false;
  if (io::is_directory(path)) {
    impl->manifest = Manifest::read(path);
    if (impl->manifest.shards.empty()) throw Error("the manifest lists no shards").at(path).hint(kRerun);
    for (const auto& s : impl->manifest.shards) files.push_back((fs::path(path) / s.file).string());
  } else if (io::exists(path)) {
    single = true;
    files.push_back(path);
  } else {
    throw Error("shard folder not found").at(path).hint("pass the --out folder of hsloth prep");
  }

  int64_t unchecked = 0;  // shards verified through HDF5 for want of a checksum in the manifest
  for (size_t k = 0; k < files.size(); ++k) {
    OpenShard s = open_shard(files[k]);
    const bool has_crc = !single && !impl->manifest.shards[k].crc32.empty();
    if (single) {
      impl->manifest.meta = s.meta;
      impl->manifest.shards.push_back(s.info);
      impl->manifest.samples = s.info.samples;
      impl->manifest.tokens = s.info.tokens;
      impl->manifest.trained = s.info.trained;
    } else {
      const ShardInfo& want = impl->manifest.shards[k];
      const std::string mpath = (fs::path(path) / kManifestName).string();
      if (want.samples != s.info.samples || want.tokens != s.info.tokens || want.trained != s.info.trained)
        throw Error(str("holds ", s.info.samples, " samples / ", s.info.tokens, " tokens / ", s.info.trained,
                        " trained but ", kManifestName, " says ", want.samples, " / ", want.tokens, " / ",
                        want.trained))
            .at(files[k])
            .hint("the folder mixes files of different prep runs: " + std::string(kRerun));
      std::string d = meta_diff(s.meta, impl->manifest.meta);
      if (!d.empty())
        throw Error(str("attributes differ from ", kManifestName, " (", d, ")"))
            .at(files[k])
            .hint("the folder mixes files of different prep runs: " + std::string(kRerun));
      if (s.shard_index != int64_t(k) || s.shard_count != int64_t(files.size()))
        throw Error(str("is shard ", s.shard_index, " of ", s.shard_count, " but the manifest lists it as ",
                        k, " of ", files.size()))
            .at(files[k])
            .hint("the folder mixes files of different prep runs: " + std::string(kRerun));
      // After the structural checks (whose messages say more), every byte: damage anywhere is found now.
      if (options.verify_checksums || (options.verify_data && has_crc))
        verify_digests(files[k], want, options.verify_checksums);
      s.info.sha256 = want.sha256;
      s.info.crc32 = want.crc32;
    }
    if (options.verify_data && !has_crc) {
      verify_chunks(s);
      if (!single) ++unchecked;
    }
    impl->shards.push_back(std::move(s));
  }

  if (unchecked > 0)
    log::warn(path, ": ", kManifestName, " has no shard checksums (made by an older hsloth); read ",
              unchecked, " shard", unchecked == 1 ? "" : "s",
              " through HDF5's chunk checksums instead (re-run hsloth "
              "prep to add them)");

  const ShardMeta& meta = impl->manifest.meta;
  if (!options.expected_tokenizer_sha256.empty() &&
      options.expected_tokenizer_sha256 != meta.tokenizer_sha256) {
    std::string theirs =
        options.expected_tokenizer_name.empty() ? "(unnamed)" : options.expected_tokenizer_name;
    throw Error(str("shards were made with tokenizer ", meta.tokenizer_name, " (sha256 ",
                    meta.tokenizer_sha256, "); this model's is ", theirs, " (sha256 ",
                    options.expected_tokenizer_sha256, ")"))
        .at(path)
        .hint(str("re-run hsloth prep with --tokenizer ", theirs,
                  " (or train with the tokenizer the shards were made with)"));
  }

  impl->first.push_back(0);
  for (auto& s : impl->shards) {
    impl->lengths.insert(impl->lengths.end(), s.lengths.begin(), s.lengths.end());
    impl->trained.insert(impl->trained.end(), s.trained.begin(), s.trained.end());
    impl->tokens += s.info.tokens;
    impl->trained_total += s.info.trained;
    impl->first.push_back(impl->first.back() + s.info.samples);
    impl->infos.push_back(s.info);
    s.lengths = {};
    s.lengths.shrink_to_fit();
    s.trained = {};
    s.trained.shrink_to_fit();
  }
  return ShardIndex(std::move(impl));
}

int64_t ShardIndex::num_samples() const { return impl_->first.back(); }
int64_t ShardIndex::num_tokens() const { return impl_->tokens; }
int64_t ShardIndex::num_trained() const { return impl_->trained_total; }
const std::vector<int32_t>& ShardIndex::lengths() const { return impl_->lengths; }
const std::vector<int32_t>& ShardIndex::trained() const { return impl_->trained; }
const ShardMeta& ShardIndex::meta() const { return impl_->manifest.meta; }
const Manifest& ShardIndex::manifest() const { return impl_->manifest; }
const std::vector<ShardInfo>& ShardIndex::shards() const { return impl_->infos; }
const std::string& ShardIndex::path() const { return impl_->path; }

std::pair<int, int64_t> ShardIndex::locate(int64_t id) const {
  if (id < 0 || id >= num_samples())
    throw Error(str("sample id ", id, " is out of range (the set has ", num_samples(), " samples)"))
        .at(impl_->path);
  auto it = std::upper_bound(impl_->first.begin(), impl_->first.end(), id);
  int shard = int(it - impl_->first.begin()) - 1;
  return {shard, id - impl_->first[size_t(shard)]};
}

Sample ShardIndex::read_sample(int64_t id) const {
  auto [k, local] = locate(id);
  const OpenShard& s = impl_->shards[size_t(k)];
  const hsize_t start = hsize_t(s.offsets[size_t(local)]);
  const hsize_t len = hsize_t(s.offsets[size_t(local) + 1]) - start;
  const std::string where = str(s.path, " sample ", local);
  Sample out;
  out.ids.resize(len);
  out.mask.resize(len);
  try {
    h5::read_range(s.ids, H5T_NATIVE_INT32, start, len, out.ids.data(), "input_ids", where);
    h5::read_range(s.mask, H5T_NATIVE_UINT8, start, len, out.mask.data(), "loss_mask", where);
  } catch (Error& e) {
    e.hint("the file is damaged (a chunk checksum or read failed): copy it again, or " + std::string(kRerun));
    throw;
  }
  int64_t trained = 0;
  for (size_t t = 0; t < len; ++t) {
    if (out.mask[t] > 1 || (t == 0 && out.mask[t] != 0))
      throw Error(
          str("loss_mask[", t, "] = ", int(out.mask[t]), " is invalid (0/1, and 0 for the first token)"))
          .at(where)
          .hint(kRerun);
    if (out.ids[t] < 0 || (s.meta.vocab_size > 0 && out.ids[t] >= s.meta.vocab_size))
      throw Error(str("token id ", out.ids[t], " at position ", t, " is outside the vocabulary (size ",
                      s.meta.vocab_size, ")"))
          .at(where)
          .hint(kRerun);
    trained += out.mask[t];
  }
  if (trained != impl_->trained[size_t(id)])
    throw Error(str("loss_mask has ", trained, " targets but trained[] says ", impl_->trained[size_t(id)]))
        .at(where)
        .hint(kRerun);
  return out;
}

ShardMeta read_shard_meta(const std::string& file) {
  h5::Handle f = open_file(file);
  return read_meta(f, file);
}

}  // namespace hs::data
