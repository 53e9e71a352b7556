// manifest.json (de)serialization with errors that name the file and the key.
#include "data/manifest.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "io/sha256.h"

namespace hs::data {
using nlohmann::json;

std::string shard_file_name(int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05d.h5", index);
  return buf;
}

FileDigests file_digests(const std::string& path, bool with_sha256) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str("cannot open: ", std::strerror(errno))).at(path);
  io::Sha256 sha;
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<unsigned char> buf(size_t(1) << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw Error(str("read failed: ", std::strerror(e))).at(path).hint("the file or its disk is damaged");
    }
    if (n == 0) break;
    crc = crc32(crc, buf.data(), uInt(n));
    if (with_sha256) sha.update(buf.data(), size_t(n));
  }
  ::close(fd);
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return {with_sha256 ? sha.hex() : std::string(), hex};
}

json Manifest::to_json() const {
  json j;
  j["magic"] = kManifestMagic;
  j["version"] = version;
  j["created_by"] = meta.created_by;
  j["tokenizer"] = {{"name", meta.tokenizer_name},   {"sha256", meta.tokenizer_sha256},
                    {"vocab_size", meta.vocab_size}, {"bos_id", meta.bos_id},
                    {"eos_id", meta.eos_id},         {"pad_id", meta.pad_id}};
  j["template"] = meta.template_name;
  j["loss"] = meta.loss_policy;
  j["formats"] = meta.formats;
  j["max_len"] = meta.max_len;
  json sources = json::array();
  for (size_t i = 0; i < meta.source_names.size(); ++i)
    sources.push_back({{"file", meta.source_names[i]},
                       {"sha256", i < meta.source_sha256.size() ? meta.source_sha256[i] : std::string()}});
  j["sources"] = sources;
  json sh = json::array();
  for (const auto& s : shards)
    sh.push_back({{"file", s.file},
                  {"samples", s.samples},
                  {"tokens", s.tokens},
                  {"trained", s.trained},
                  {"min_length", s.min_length},
                  {"max_length", s.max_length},
                  {"sha256", s.sha256},
                  {"crc32", s.crc32}});
  j["shards"] = sh;
  j["totals"] = {
      {"shards", int64_t(shards.size())}, {"samples", samples}, {"tokens", tokens}, {"trained", trained}};
  j["prep"] = prep;
  return j;
}

namespace {
template <typename T>
T get(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end())
    throw Error(str("key '", key, "' is missing"))
        .at(where)
        .hint("the manifest is damaged: re-run hsloth prep");
  try {
    return it->get<T>();
  } catch (const json::exception& e) {
    throw Error(str("key '", key, "' has the wrong type: ", e.what()))
        .at(where)
        .hint("the manifest is damaged: re-run hsloth prep");
  }
}
}  // namespace

Manifest Manifest::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error("manifest is not a JSON object").at(where).hint("re-run hsloth prep");
  if (get<std::string>(j, "magic", where) != kManifestMagic)
    throw Error(str("not an hsloth manifest (magic is not '", kManifestMagic, "')"))
        .at(where)
        .hint("point at a folder written by hsloth prep");
  Manifest m;
  m.version = get<int>(j, "version", where);
  if (m.version > kManifestVersion)
    throw Error(
        str("manifest version ", m.version, " is newer than this build reads (", kManifestVersion, ")"))
        .at(where)
        .hint("made by a newer hsloth? upgrade hsloth, or re-run this version's hsloth prep");
  if (m.version < 1)
    throw Error(str("bad manifest version ", m.version)).at(where).hint("re-run hsloth prep");
  m.meta.created_by = get<std::string>(j, "created_by", where);
  const json tok = get<json>(j, "tokenizer", where);
  std::string tw = where + " tokenizer";
  m.meta.tokenizer_name = get<std::string>(tok, "name", tw);
  m.meta.tokenizer_sha256 = get<std::string>(tok, "sha256", tw);
  m.meta.vocab_size = get<int64_t>(tok, "vocab_size", tw);
  m.meta.bos_id = get<int64_t>(tok, "bos_id", tw);
  m.meta.eos_id = get<int64_t>(tok, "eos_id", tw);
  m.meta.pad_id = get<int64_t>(tok, "pad_id", tw);
  m.meta.template_name = get<std::string>(j, "template", where);
  m.meta.loss_policy = get<std::string>(j, "loss", where);
  m.meta.formats = get<std::string>(j, "formats", where);
  m.meta.max_len = get<int64_t>(j, "max_len", where);
  for (const auto& s : get<json>(j, "sources", where)) {
    m.meta.source_names.push_back(get<std::string>(s, "file", where + " sources"));
    m.meta.source_sha256.push_back(get<std::string>(s, "sha256", where + " sources"));
  }
  const json shards = get<json>(j, "shards", where);
  if (!shards.is_array()) throw Error("'shards' is not a list").at(where).hint("re-run hsloth prep");
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string sw = str(where, " shards[", i, "]");
    ShardInfo s;
    s.file = get<std::string>(shards[i], "file", sw);
    s.samples = get<int64_t>(shards[i], "samples", sw);
    s.tokens = get<int64_t>(shards[i], "tokens", sw);
    s.trained = get<int64_t>(shards[i], "trained", sw);
    s.min_length = get<int64_t>(shards[i], "min_length", sw);
    s.max_length = get<int64_t>(shards[i], "max_length", sw);
    s.sha256 = get<std::string>(shards[i], "sha256", sw);
    if (shards[i].contains("crc32")) {  // absent in manifests of older hsloth: verified through HDF5 then
      s.crc32 = get<std::string>(shards[i], "crc32", sw);
      if (s.crc32.size() != 8 || s.crc32.find_first_not_of("0123456789abcdef") != std::string::npos)
        throw Error(str("key 'crc32' is '", s.crc32, "', not 8 hex digits"))
            .at(sw)
            .hint("re-run hsloth prep");
    }
    if (s.file.empty() || s.file.find('/') != std::string::npos || s.file == "..")
      throw Error(str("bad shard file name '", s.file, "'")).at(sw).hint("re-run hsloth prep");
    m.shards.push_back(std::move(s));
  }
  const json totals = get<json>(j, "totals", where);
  m.samples = get<int64_t>(totals, "samples", where + " totals");
  m.tokens = get<int64_t>(totals, "tokens", where + " totals");
  m.trained = get<int64_t>(totals, "trained", where + " totals");
  int64_t s = 0, t = 0, tr = 0;
  for (const auto& sh : m.shards) {
    s += sh.samples;
    t += sh.tokens;
    tr += sh.trained;
  }
  if (s != m.samples || t != m.tokens || tr != m.trained)
    throw Error(str("totals (", m.samples, " samples, ", m.tokens, " tokens, ", m.trained,
                    " trained) do not match the sum over shards (", s, ", ", t, ", ", tr, ")"))
        .at(where)
        .hint("the manifest was edited or damaged: re-run hsloth prep");
  if (auto it = j.find("prep"); it != j.end()) {
    // Free-form, but the counters that tools read back (inspect's accounting line) must be integers.
    const std::string pw = where + " prep";
    if (!it->is_object()) throw Error("key 'prep' is not an object").at(where).hint("re-run hsloth prep");
    for (const char* key :
         {"input_records", "written", "truncated", "utf8_repaired", "tokens", "trained_tokens"})
      if (it->contains(key)) (void)get<int64_t>(*it, key, pw);
    if (it->contains("skipped")) {
      const json sk = get<json>(*it, "skipped", pw);
      if (!sk.is_object()) throw Error("key 'skipped' is not an object").at(pw).hint("re-run hsloth prep");
      for (auto e = sk.begin(); e != sk.end(); ++e) (void)get<int64_t>(sk, e.key().c_str(), pw + ".skipped");
    }
    m.prep = *it;
  }
  return m;
}

Manifest Manifest::read(const std::string& dir) {
  std::string path = (std::filesystem::path(dir) / kManifestName).string();
  if (!io::exists(path))
    throw Error(str("no ", kManifestName, " in shard folder"))
        .at(dir)
        .hint(
            "point at a folder written by hsloth prep; prep writes the manifest last, so a folder without "
            "one "
            "is from an unfinished run: re-run hsloth prep");
  return from_json(io::read_json(path, {"manifest is not valid JSON", "re-run hsloth prep"}), path);
}

void Manifest::write(const std::string& dir) const {
  std::string path = (std::filesystem::path(dir) / kManifestName).string();
  io::write_file_atomic(path, to_json().dump(2) + "\n");
}

}  // namespace hs::data
