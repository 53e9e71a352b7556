// safetensors reader/writer; see safetensors.h. The header is parsed with nlohmann-json and every field
// is checked before any pointer into the mapping is handed out; integer arithmetic on sizes is checked for
// overflow so a hostile header cannot make us read outside the file.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/json.h"

namespace hs::io {
namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

constexpr const char* kConvertHint =
    "only safetensors checkpoints are read; convert with transformers: "
    "AutoModelForCausalLM.from_pretrained(path).save_pretrained(out, safe_serialization=True) "
    "(for a PEFT adapter: PeftModel.save_pretrained(out, safe_serialization=True))";

// The reference implementation's dtype order; tensors are laid out by descending rank (then by name) so
// every tensor starts aligned to its element size.
int dtype_rank(DType d) {
  switch (d) {
    case DType::BOOL:
      return 0;
    case DType::U8:
      return 1;
    case DType::I8:
      return 2;
    case DType::I16:
      return 3;
    case DType::F16:
      return 4;
    case DType::BF16:
      return 5;
    case DType::I32:
      return 6;
    case DType::F32:
      return 7;
    case DType::F64:
      return 8;
    case DType::I64:
      return 9;
  }
  return 0;
}

bool mul_ok(size_t a, size_t b, size_t* out) { return !__builtin_mul_overflow(a, b, out); }

bool is_pickle_name(const std::string& name) {
  auto ends = [&](const char* suffix) {
    size_t n = std::strlen(suffix);
    return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
  };
  return ends(".bin") || ends(".pt") || ends(".pth") || ends(".ckpt") || ends(".pkl") || ends(".pickle");
}

[[noreturn]] void refuse_pickle(const std::string& path) {
  throw Error("pickle checkpoints (.bin/.pt) are not read (they can run arbitrary code and are not mappable)")
      .at(path)
      .hint(kConvertHint);
}

// Header bytes (padded to 8 with spaces) for `specs` in the reference order; offsets[i] is the start of
// specs[i] inside the data area. Returns the total data size through `data_size`.
std::string layout(const std::vector<const TensorSpec*>& specs, const Metadata& metadata,
                   std::vector<size_t>* offsets, size_t* data_size) {
  std::vector<size_t> order(specs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    int ra = dtype_rank(specs[a]->dtype), rb = dtype_rank(specs[b]->dtype);
    if (ra != rb) return ra > rb;
    return specs[a]->name < specs[b]->name;
  });
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  offsets->assign(specs.size(), 0);
  size_t pos = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorSpec& s = *specs[order[i]];
    if (i > 0 && s.name == specs[order[i - 1]]->name)
      throw Error("tensor written twice").at(s.name).hint("tensor names in one file must be unique");
    if (s.name == "__metadata__") throw Error("'__metadata__' is reserved and cannot name a tensor");
    size_t n = s.nbytes();
    ordered_json entry = ordered_json::object();
    entry["dtype"] = dtype_name(s.dtype);
    entry["shape"] = s.shape;
    entry["data_offsets"] = {pos, pos + n};
    header[s.name] = std::move(entry);
    (*offsets)[order[i]] = pos;
    pos += n;
  }
  *data_size = pos;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

void put_u64le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}

}  // namespace

// ---- dtypes ---------------------------------------------------------------------------------------

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F64:
    case DType::I64:
      return 8;
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::BF16:
    case DType::F16:
    case DType::I16:
      return 2;
    case DType::I8:
    case DType::U8:
    case DType::BOOL:
      return 1;
  }
  return 0;
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F64:
      return "F64";
    case DType::I64:
      return "I64";
    case DType::F32:
      return "F32";
    case DType::I32:
      return "I32";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I16:
      return "I16";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::BOOL:
      return "BOOL";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view n) {
  static const std::pair<const char*, DType> table[] = {
      {"F64", DType::F64},   {"I64", DType::I64},  {"F32", DType::F32}, {"I32", DType::I32},
      {"BF16", DType::BF16}, {"F16", DType::F16},  {"I16", DType::I16}, {"I8", DType::I8},
      {"U8", DType::U8},     {"BOOL", DType::BOOL}};
  for (const auto& [name, d] : table)
    if (n == name) return d;
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t TensorSpec::nbytes() const {
  size_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) throw Error(str("negative dimension ", d)).at(name);
    if (!mul_ok(n, size_t(d), &n)) throw Error("tensor size overflows").at(name);
  }
  return n;
}

// ---- mapping --------------------------------------------------------------------------------------

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) throw Error("file not found").at(path).hint("check the path");
    throw Error(str("cannot open: ", std::strerror(e))).at(path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(str("cannot stat: ", std::strerror(e))).at(path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("not a regular file").at(path);
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error(str("mmap failed: ", std::strerror(e))).at(path);
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ---- one file -------------------------------------------------------------------------------------

std::vector<TensorInfo> SafetensorsFile::parse(const uint8_t* bytes, size_t size, const std::string& path,
                                               Metadata* metadata) {
  // A zip (torch.save) or raw pickle file reads as an absurd header size; name it instead of "corrupt".
  auto looks_pickled = [&] {
    return size >= 2 && ((bytes[0] == 'P' && bytes[1] == 'K') || bytes[0] == 0x80);
  };
  if (size < 8)
    throw Error(str("file too short for a safetensors header (", size, " bytes)"))
        .at(path)
        .hint("the file is truncated or not safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if ((n > kMaxHeaderBytes || n > size - 8) && looks_pickled()) refuse_pickle(path);
  if (n > kMaxHeaderBytes)
    throw Error(str("header size ", n, " exceeds the limit of ", kMaxHeaderBytes, " bytes"))
        .at(path)
        .hint("the file is corrupt or not safetensors");
  if (n > size - 8)
    throw Error(str("header size ", n, " runs past the end of the file (", size, " bytes)"))
        .at(path)
        .hint("the file is truncated (an interrupted download or copy?)");
  std::string_view text(reinterpret_cast<const char*>(bytes + 8), size_t(n));
  if (text.empty() || text[0] != '{')
    throw Error("header is not a JSON object").at(path).hint("the file is corrupt or not safetensors");
  // Positions count in the header text (the file's bytes from 8 on).
  json header =
      parse_json(text, path + " (JSON header)", {"header is not valid JSON", "the file is corrupt"});
  if (!header.is_object()) throw Error("header is not a JSON object").at(path);

  const uint8_t* data = bytes + 8 + n;
  const size_t data_size = size - 8 - size_t(n);
  std::vector<TensorInfo> out;
  out.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error("__metadata__ is not an object").at(path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw Error(str("__metadata__ value of '", m.key(), "' is not a string")).at(path);
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto where = str(path, ": tensor '", name, "'");
    if (!v.is_object()) throw Error("entry is not an object").at(where);
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw Error("missing or non-string dtype").at(where);
    auto dt = parse_dtype(v["dtype"].get<std::string>());
    if (!dt)
      throw Error(str("unsupported dtype '", v["dtype"].get<std::string>(), "'"))
          .at(where)
          .hint("supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL");
    if (!v.contains("shape") || !v["shape"].is_array()) throw Error("missing shape").at(where);
    TensorInfo t;
    t.name = name;
    t.dtype = *dt;
    t.file = path;
    size_t expect = dtype_size(*dt);
    for (const json& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw Error(str("bad shape ", v["shape"].dump())).at(where);
      t.shape.push_back(d.get<int64_t>());
      if (!mul_ok(expect, size_t(t.shape.back()), &expect))
        throw Error(str("shape ", v["shape"].dump(), " overflows")).at(where);
    }
    const json& off = v.contains("data_offsets") ? v["data_offsets"] : json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error("data_offsets must be [begin, end] with non-negative integers").at(where);
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e) throw Error(str("data_offsets [", b, ", ", e, "] are reversed")).at(where);
    if (e > data_size)
      throw Error(str("data_offsets [", b, ", ", e, "] run past the data area (", data_size, " bytes)"))
          .at(where)
          .hint("the file is truncated or corrupt");
    if (e - b != expect)
      throw Error(str("dtype ", dtype_name(*dt), " x shape ", v["shape"].dump(), " = ", expect,
                      " bytes, but data_offsets span ", e - b))
          .at(where)
          .hint("the file is corrupt");
    t.offset = size_t(b);
    t.nbytes = size_t(e - b);
    t.data = data + b;
    out.push_back(std::move(t));
  }
  std::sort(out.begin(), out.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  for (size_t i = 1; i < out.size(); ++i) {
    const TensorInfo& p = out[i - 1];
    if (out[i].nbytes > 0 && p.nbytes > 0 && out[i].offset < p.offset + p.nbytes)
      throw Error(str("tensors '", p.name, "' and '", out[i].name, "' overlap in the data area"))
          .at(path)
          .hint("the file is corrupt");
  }
  return out;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  if (is_pickle_name(path)) refuse_pickle(path);
  auto f = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  f->map_ = std::make_unique<MappedFile>(path);
  f->tensors_ = parse(f->map_->data(), f->map_->size(), path, &f->metadata_);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->by_name_[f->tensors_[i].name] = i;
  return f;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

// ---- checkpoints ----------------------------------------------------------------------------------

Checkpoint Checkpoint::open(const std::string& path, const std::string& stem) {
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    fs::path dir(path);
    if (fs::exists(dir / (stem + ".safetensors.index.json"), ec)) {
      file = (dir / (stem + ".safetensors.index.json")).string();
    } else if (fs::exists(dir / (stem + ".safetensors"), ec)) {
      file = (dir / (stem + ".safetensors")).string();
    } else {
      std::vector<std::string> pickles, others;
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::string n = e.path().filename().string();
        if (is_pickle_name(n)) pickles.push_back(n);
        if (n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0) others.push_back(n);
      }
      if (!pickles.empty())
        throw Error(str("no ", stem, ".safetensors here, only pickle weights (", pickles.front(),
                        pickles.size() > 1 ? ", ..." : "", ")"))
            .at(path)
            .hint(kConvertHint);
      throw Error(str("no ", stem, ".safetensors or ", stem, ".safetensors.index.json in the folder",
                      others.empty() ? std::string() : str(" (found ", others.front(), ")")))
          .at(path)
          .hint("pass a Hugging Face folder saved with save_pretrained(safe_serialization=True)");
    }
  } else if (!fs::exists(path, ec)) {
    throw Error("checkpoint not found").at(path).hint("check the path");
  }

  Checkpoint ck;
  ck.source_ = file;
  auto add_file = [&](std::shared_ptr<SafetensorsFile> f) {
    ck.files_.push_back(std::move(f));
    return ck.files_.back().get();
  };
  const std::string index_suffix = ".index.json";
  if (file.size() > index_suffix.size() &&
      file.compare(file.size() - index_suffix.size(), index_suffix.size(), index_suffix) == 0) {
    json index = read_json(
        file, {"index is not valid JSON", "the index json is truncated or damaged; download it again"});
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error("index has no 'weight_map' object").at(file).hint("the index json is corrupt");
    fs::path dir = fs::path(file).parent_path();
    std::map<std::string, SafetensorsFile*> opened;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw Error("weight_map value is not a file name").at(file + ": " + it.key());
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == ".." || shard.empty())
        throw Error(str("shard name '", shard, "' is not a plain file name")).at(file + ": " + it.key());
      auto op = opened.find(shard);
      SafetensorsFile* f;
      if (op == opened.end()) {
        f = add_file(SafetensorsFile::open((dir / shard).string()));
        opened[shard] = f;
      } else {
        f = op->second;
      }
      const TensorInfo* t = f->find(it.key());
      if (!t)
        throw Error(str("tensor '", it.key(), "' is listed in the index but not in ", shard))
            .at(file)
            .hint("the checkpoint is incomplete or the index is stale; re-download or re-save it");
      ck.by_name_[it.key()] = t;
    }
    // Tensors present in a shard but missing from the index are still served (with a duplicate check).
    for (const auto& f : ck.files_)
      for (const TensorInfo& t : f->tensors()) {
        auto [it, inserted] = ck.by_name_.emplace(t.name, &t);
        if (!inserted && it->second != &t)
          throw Error(str("tensor '", t.name, "' is present in more than one shard")).at(file);
      }
  } else {
    SafetensorsFile* f = add_file(SafetensorsFile::open(file));
    for (const TensorInfo& t : f->tensors()) ck.by_name_[t.name] = &t;
  }
  return ck;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorInfo& Checkpoint::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t)
    throw Error(str("tensor '", name, "' not found (", by_name_.size(), " tensors in checkpoint)"))
        .at(source_)
        .hint("is this checkpoint of the architecture in config.json?");
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [n, t] : by_name_) out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

const Metadata& Checkpoint::metadata() const {
  static const Metadata empty;
  return files_.empty() ? empty : files_.front()->metadata();
}

// ---- writing --------------------------------------------------------------------------------------

std::string serialize_safetensors(const std::vector<TensorRef>& tensors, const Metadata& metadata) {
  std::vector<const TensorSpec*> specs;
  for (const TensorRef& t : tensors) {
    if (t.nbytes != t.spec.nbytes())
      throw Error(str("has ", t.nbytes, " bytes but dtype x shape needs ", t.spec.nbytes())).at(t.spec.name);
    specs.push_back(&t.spec);
  }
  std::vector<size_t> offsets;
  size_t data_size = 0;
  std::string header = layout(specs, metadata, &offsets, &data_size);
  std::string out;
  out.reserve(8 + header.size() + data_size);
  put_u64le(out, header.size());
  out += header;
  size_t base = out.size();
  out.resize(base + data_size);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].nbytes) std::memcpy(out.data() + base + offsets[i], tensors[i].data, tensors[i].nbytes);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const Metadata& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

ShardedWriter::ShardedWriter(std::string dir, std::vector<TensorSpec> specs, size_t max_shard_bytes,
                             Metadata metadata, std::string stem)
    : dir_(std::move(dir)), stem_(std::move(stem)), specs_(std::move(specs)), metadata_(std::move(metadata)) {
  HS_CHECK(max_shard_bytes > 0);
  done_.assign(specs_.size(), false);
  size_t current = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    size_t n = specs_[i].nbytes();
    if (shards_.empty() || (current > 0 && current + n > max_shard_bytes)) {
      shards_.emplace_back();
      current = 0;
    }
    shards_.back().members.push_back(i);
    current += n;
    if (!where_.emplace(specs_[i].name, std::make_pair(shards_.size() - 1, i)).second)
      throw Error("tensor listed twice for the sharded writer").at(specs_[i].name);
  }
  if (shards_.empty()) shards_.emplace_back();
  size_t count = shards_.size();
  for (size_t s = 0; s < count; ++s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu", s + 1, count);
    shards_[s].file = count == 1 ? stem_ + ".safetensors" : stem_ + buf + ".safetensors";
    shards_[s].pending = shards_[s].members.size();
  }
}

ShardedWriter::~ShardedWriter() = default;

void ShardedWriter::put(const std::string& name, const void* data, size_t nbytes) {
  HS_CHECK(!finished_, "put after finish");
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("tensor was not announced to the sharded writer").at(name);
  auto [s, i] = it->second;
  if (done_[i]) throw Error("tensor given twice to the sharded writer").at(name);
  if (nbytes != specs_[i].nbytes())
    throw Error(str("has ", nbytes, " bytes but dtype x shape needs ", specs_[i].nbytes())).at(name);
  Shard& sh = shards_[s];
  if (sh.buffer.empty()) {
    std::vector<const TensorSpec*> specs;
    for (size_t m : sh.members) specs.push_back(&specs_[m]);
    std::vector<size_t> offsets;
    size_t data_size = 0;
    std::string header = layout(specs, metadata_, &offsets, &data_size);
    put_u64le(sh.buffer, header.size());
    sh.buffer += header;
    size_t base = sh.buffer.size();
    sh.buffer.resize(base + data_size);
    for (size_t k = 0; k < sh.members.size(); ++k) sh.offset[specs_[sh.members[k]].name] = base + offsets[k];
  }
  if (nbytes) std::memcpy(sh.buffer.data() + sh.offset[name], data, nbytes);
  done_[i] = true;
  if (--sh.pending == 0) {
    write_file_atomic((fs::path(dir_) / sh.file).string(), sh.buffer);
    std::string().swap(sh.buffer);
    sh.written = true;
    written_.push_back(sh.file);
  }
}

std::vector<std::string> ShardedWriter::finish() {
  HS_CHECK(!finished_, "finish called twice");
  for (size_t i = 0; i < specs_.size(); ++i)
    if (!done_[i]) throw Error("tensor was announced but never written").at(specs_[i].name);
  if (specs_.empty()) {  // an empty model still gets a valid (empty) file
    write_safetensors((fs::path(dir_) / shards_[0].file).string(), {}, metadata_);
    written_.push_back(shards_[0].file);
  }
  if (shards_.size() > 1) {
    ordered_json index = ordered_json::object();
    size_t total = 0;
    for (const TensorSpec& s : specs_) total += s.nbytes();
    index["metadata"] = {{"total_size", total}};
    std::map<std::string, std::string> weight_map;  // sorted, as transformers writes it
    for (const Shard& sh : shards_)
      for (size_t m : sh.members) weight_map[specs_[m].name] = sh.file;
    ordered_json wm = ordered_json::object();
    for (const auto& [k, v] : weight_map) wm[k] = v;
    index["weight_map"] = std::move(wm);
    std::string name = stem_ + ".safetensors.index.json";
    write_file_atomic((fs::path(dir_) / name).string(), index.dump(2) + "\n");
    written_.push_back(name);
  }
  finished_ = true;
  return written_;
}

}  // namespace hs::io
