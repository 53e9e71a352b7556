// Shard format round trip and validation: the writer's output read back by ShardIndex (and by the
// HDF5 C API directly, and h5dump when installed), byte-identical files for the same samples in any
// insertion order, and a clear hs::Error for each kind of damage (version, magic, missing dataset,
// offsets, truncation, flipped bytes, manifest mismatch, tokenizer mismatch). open() reads every shard
// whole against the manifest's crc32 (checked here against a bitwise CRC-32), or through HDF5's chunk
// checksums for older manifests; manifest fields of the wrong type are errors naming the key.
#include <hdf5.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <thread>

#include "core/error.h"
#include "data/hdf5_util.h"
#include "data/manifest.h"
#include "data/shard_index.h"
#include "data/shard_stats.h"
#include "data/shard_writer.h"
#include "io/file.h"
#include "io/sha256.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using namespace hs::data;

namespace {

struct Raw {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  int64_t key;
};

// Deterministic pseudo-random samples: lengths 1..max_len with plenty of ties.
std::vector<Raw> make_samples(int n, int max_len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Raw> out;
  for (int i = 0; i < n; ++i) {
    Raw r;
    r.key = i;
    int len = 1 + int(rng() % uint32_t(max_len));
    for (int t = 0; t < len; ++t) {
      r.ids.push_back(int32_t(rng() % 50000));
      r.mask.push_back(t == 0 ? 0 : uint8_t(rng() % 2));
    }
    out.push_back(std::move(r));
  }
  return out;
}

SampleSet to_set(const std::vector<Raw>& raws, const std::vector<size_t>& add_order) {
  SampleSet s;
  for (size_t i : add_order) s.add(raws[i].ids, raws[i].mask, raws[i].key);
  return s;
}

ShardMeta test_meta() {
  ShardMeta m;
  m.tokenizer_name = "unit-tok";
  m.tokenizer_sha256 = std::string(64, 'a');
  m.vocab_size = 50000;
  m.bos_id = 1;
  m.eos_id = 2;
  m.pad_id = -1;
  m.template_name = "chatml";
  m.loss_policy = "response";
  m.formats = "alpaca";
  m.max_len = 0;
  m.source_names = {"a.jsonl", "b.json"};
  m.source_sha256 = {std::string(64, 'b'), std::string(64, 'c')};
  m.created_by = "hsloth test";
  return m;
}

std::vector<size_t> iota(size_t n) {
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), size_t(0));
  return v;
}

// The expected shard order computed here, independently: stable sort of source order by length.
std::vector<size_t> expected_order(const std::vector<Raw>& raws) {
  std::vector<size_t> v = iota(raws.size());
  std::stable_sort(v.begin(), v.end(),
                   [&](size_t a, size_t b) { return raws[a].ids.size() < raws[b].ids.size(); });
  return v;
}

// CRC-32 (IEEE, reflected, as zlib and Python's zlib.crc32), one bit at a time: the oracle for the
// manifest's crc32.
std::string bitwise_crc32(const std::string& file) {
  std::string bytes = hs::io::read_file(file);
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08x", unsigned(c ^ 0xFFFFFFFFu));
  return hex;
}

struct TempDir {
  std::string path = hs::test::temp_dir("hs-data-shards");
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string write_set(const std::string& dir, const std::vector<Raw>& raws, int64_t shard_tokens,
                      int compress) {
  WriteOptions o;
  o.shard_tokens = shard_tokens;
  o.compress = compress;
  write_shard_set(dir, to_set(raws, iota(raws.size())), test_meta(), o, {{"input_records", raws.size()}});
  return dir;
}

std::string expect_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const hs::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an hs::Error";
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Opens a shard file read-write with the raw HDF5 API (the test's way to damage files precisely).
struct RawFile {
  hid_t id;
  explicit RawFile(const std::string& p) : id(H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) {
    EXPECT_GE(id, 0);
  }
  ~RawFile() { H5Fclose(id); }
};

}  // namespace

TEST(DataShards, RoundTripMultipleShards) {
  for (int compress : {0, 6}) {
    TempDir tmp;
    auto raws = make_samples(300, 90, 7);
    write_set(tmp.path, raws, 2000, compress);
    ShardIndex idx = ShardIndex::open(tmp.path);
    ASSERT_EQ(idx.num_samples(), 300);
    EXPECT_GT(idx.shards().size(), 3u);
    int64_t tokens = 0, trained = 0;
    for (const auto& r : raws) {
      tokens += int64_t(r.ids.size());
      trained += std::accumulate(r.mask.begin(), r.mask.end(), int64_t(0));
    }
    EXPECT_EQ(idx.num_tokens(), tokens);
    EXPECT_EQ(idx.num_trained(), trained);
    auto order = expected_order(raws);
    for (int64_t id = 0; id < idx.num_samples(); ++id) {
      const Raw& want = raws[order[size_t(id)]];
      Sample got = idx.read_sample(id);
      ASSERT_EQ(got.ids, want.ids) << "sample " << id;
      ASSERT_EQ(got.mask, want.mask) << "sample " << id;
      EXPECT_EQ(idx.length(id), int32_t(want.ids.size()));
      EXPECT_EQ(idx.trained(id), std::accumulate(want.mask.begin(), want.mask.end(), 0));
    }
    // Shards respect the token budget (except a single sample larger than it, impossible here).
    for (const auto& s : idx.shards()) EXPECT_LE(s.tokens, 2000);
    // locate() maps ids into shards in order.
    auto [k0, l0] = idx.locate(0);
    EXPECT_EQ(k0, 0);
    EXPECT_EQ(l0, 0);
    auto [kl, ll] = idx.locate(idx.num_samples() - 1);
    EXPECT_EQ(kl, int(idx.shards().size()) - 1);
    EXPECT_EQ(ll, idx.shards().back().samples - 1);
    EXPECT_THROW(idx.locate(idx.num_samples()), hs::Error);
    EXPECT_EQ(idx.meta(), test_meta());
  }
}

TEST(DataShards, ManifestListsShardsWithSha256) {
  TempDir tmp;
  auto raws = make_samples(100, 50, 3);
  write_set(tmp.path, raws, 1000, 0);
  auto j = nlohmann::json::parse(hs::io::read_file(tmp.path + "/manifest.json"));
  EXPECT_EQ(j["magic"], "hsloth-shards");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["prep"]["input_records"], 100);
  int64_t samples = 0;
  for (const auto& s : j["shards"]) {
    EXPECT_EQ(s["sha256"].get<std::string>(),
              hs::io::sha256_file(tmp.path + "/" + s["file"].get<std::string>()));
    EXPECT_EQ(s["crc32"].get<std::string>(), bitwise_crc32(tmp.path + "/" + s["file"].get<std::string>()));
    samples += s["samples"].get<int64_t>();
  }
  EXPECT_EQ(samples, 100);
  EXPECT_EQ(j["totals"]["samples"], 100);
  EXPECT_EQ(j["totals"]["shards"], j["shards"].size());
  // verify_checksums accepts the untouched folder.
  ShardIndex::Options o;
  o.verify_checksums = true;
  EXPECT_NO_THROW(ShardIndex::open(tmp.path, o));
}

TEST(DataShards, RawHdf5ApiSeesTheSchema) {
  TempDir tmp;
  auto raws = make_samples(40, 30, 11);
  write_set(tmp.path, raws, 1 << 20, 0);
  std::string file = tmp.path + "/shard-00000.h5";
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  for (const char* name : {"input_ids", "loss_mask", "offsets", "lengths", "trained"}) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ASSERT_GE(d, 0) << name;
    hid_t dcpl = H5Dget_create_plist(d);
    EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED) << name;
    H5Pclose(dcpl);
    H5Dclose(d);
  }
  hid_t d = H5Dopen2(f, "offsets", H5P_DEFAULT);
  std::vector<int64_t> off(41);
  ASSERT_GE(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off.data()), 0);
  H5Dclose(d);
  auto order = expected_order(raws);
  int64_t acc = 0;
  for (size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(off[i], acc);
    acc += int64_t(raws[order[i]].ids.size());
  }
  EXPECT_EQ(off[40], acc);
  EXPECT_EQ(hs::data::h5::read_attr_string(f, "magic", file), "hsloth-shard");
  EXPECT_EQ(hs::data::h5::read_attr_int(f, "version", file), 1);
  EXPECT_EQ(hs::data::h5::read_attr_strings(f, "source_names", file), test_meta().source_names);
  H5Fclose(f);
}

TEST(DataShards, H5dumpReadsOffsets) {
  if (std::system("h5dump --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "h5dump not installed";
  TempDir tmp;
  auto raws = make_samples(5, 8, 5);
  write_set(tmp.path, raws, 1 << 20, 4);
  std::string out = tmp.path + "/dump.txt";
  std::string cmd = "h5dump -d /offsets -a /magic " + tmp.path + "/shard-00000.h5 > " + out + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << hs::io::read_file(out);
  std::string text = hs::io::read_file(out);
  auto order = expected_order(raws);
  std::string want = "(0): 0";
  int64_t acc = 0;
  for (size_t i = 0; i < 5; ++i) {
    acc += int64_t(raws[order[i]].ids.size());
    want += ", " + std::to_string(acc);
  }
  EXPECT_TRUE(contains(text, want)) << text;
  EXPECT_TRUE(contains(text, "\"hsloth-shard\"")) << text;
}

TEST(DataShards, ByteIdenticalWhateverTheInsertionOrderAndTime) {
  TempDir a, b;
  auto raws = make_samples(200, 60, 21);
  WriteOptions o;
  o.shard_tokens = 3000;
  o.compress = 3;
  write_shard_set(a.path, to_set(raws, iota(raws.size())), test_meta(), o);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a timestamp would now differ
  std::vector<size_t> shuffled = iota(raws.size());
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(99));
  write_shard_set(b.path, to_set(raws, shuffled), test_meta(), o);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(a.path)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_GT(names.size(), 2u);
  for (const auto& n : names)
    EXPECT_EQ(hs::io::read_file(a.path + "/" + n), hs::io::read_file(b.path + "/" + n)) << n;
}

TEST(DataShards, RewriteRemovesStaleShards) {
  TempDir tmp;
  write_set(tmp.path, make_samples(100, 50, 1), 500, 0);
  ASSERT_TRUE(fs::exists(tmp.path + "/shard-00003.h5"));
  write_set(tmp.path, make_samples(10, 50, 2), 1 << 20, 0);
  EXPECT_FALSE(fs::exists(tmp.path + "/shard-00001.h5"));
  EXPECT_EQ(ShardIndex::open(tmp.path).num_samples(), 10);
}

TEST(DataShards, SingleFileOpen) {
  TempDir tmp;
  write_set(tmp.path, make_samples(20, 10, 4), 1 << 20, 0);
  ShardIndex idx = ShardIndex::open(tmp.path + "/shard-00000.h5");
  EXPECT_EQ(idx.num_samples(), 20);
  EXPECT_EQ(idx.meta().tokenizer_name, "unit-tok");
}

TEST(DataShards, SampleSetSerializationRoundTrip) {
  auto raws = make_samples(30, 20, 8);
  SampleSet s = to_set(raws, iota(raws.size()));
  SampleSet t = SampleSet::deserialize(s.serialize());
  ASSERT_EQ(t.size(), s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    EXPECT_TRUE(std::ranges::equal(t.ids(i), raws[i].ids));
    EXPECT_TRUE(std::ranges::equal(t.mask(i), raws[i].mask));
    EXPECT_EQ(t.key(i), raws[i].key);
  }
  std::string bytes = s.serialize();
  EXPECT_THROW(SampleSet::deserialize(bytes.substr(0, bytes.size() - 3)), hs::Error);
  EXPECT_THROW(SampleSet::deserialize("garbage"), hs::Error);
}

// ---- validation --------------------------------------------------------------------------------

TEST(DataShardsValidation, NewerVersionNamesTheFix) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  {
    RawFile f(tmp.path + "/shard-00000.h5");
    hs::data::h5::write_attr_int(f.id, "version", 2, H5T_STD_I32LE, "test");
  }
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "version 2")) << msg;
  EXPECT_TRUE(contains(msg, "newer hsloth")) << msg;
  EXPECT_TRUE(contains(msg, "shard-00000.h5")) << msg;
}

TEST(DataShardsValidation, BadMagic) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  {
    RawFile f(tmp.path + "/shard-00000.h5");
    hs::data::h5::write_attr_string(f.id, "magic", "something-else", "test");
  }
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "not an hsloth shard")) << msg;
}

TEST(DataShardsValidation, MissingDataset) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  {
    RawFile f(tmp.path + "/shard-00000.h5");
    ASSERT_GE(H5Ldelete(f.id, "trained", H5P_DEFAULT), 0);
  }
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "dataset 'trained' is missing")) << msg;
  EXPECT_TRUE(contains(msg, "hint: re-run hsloth prep")) << msg;
}

TEST(DataShardsValidation, OffsetsNotMonotone) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  {
    RawFile f(tmp.path + "/shard-00000.h5");
    hid_t d = H5Dopen2(f.id, "offsets", H5P_DEFAULT);
    std::vector<int64_t> off(11);
    H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off.data());
    off[3] = off[2];  // sample 2 becomes empty, offsets no longer strictly increasing
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off.data());
    H5Dclose(d);
  }
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "offsets are not increasing at sample 2")) << msg;
}

TEST(DataShardsValidation, OffsetsDisagreeWithLengths) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  {
    RawFile f(tmp.path + "/shard-00000.h5");
    hid_t d = H5Dopen2(f.id, "lengths", H5P_DEFAULT);
    std::vector<int32_t> len(10);
    H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, len.data());
    len[9] += 1;
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, len.data());
    H5Dclose(d);
  }
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "offsets say sample 9 has")) << msg;
}

TEST(DataShardsValidation, TruncatedFile) {
  TempDir tmp;
  write_set(tmp.path, make_samples(200, 100, 1), 1 << 20, 0);
  std::string file = tmp.path + "/shard-00000.h5";
  fs::resize_file(file, fs::file_size(file) / 2);
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "shard-00000.h5")) << msg;
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
  // Cut inside the superblock.
  fs::resize_file(file, 20);
  msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "truncated or damaged")) << msg;
  // Cut inside the signature: not even recognizable as HDF5.
  fs::resize_file(file, 4);
  msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "not an HDF5 file")) << msg;
}

TEST(DataShardsValidation, FlippedByteInTokenDataIsCaughtByChecksum) {
  TempDir tmp;
  write_set(tmp.path, make_samples(50, 40, 1), 1 << 20, 0);
  std::string file = tmp.path + "/shard-00000.h5";
  haddr_t addr = 0;
  hsize_t size = 0;
  {
    hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "input_ids", H5P_DEFAULT);
    hsize_t offset[1];
    unsigned filter_mask = 0;
    hid_t space = H5Dget_space(d);
    ASSERT_GE(H5Dget_chunk_info(d, space, 0, offset, &filter_mask, &addr, &size), 0);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
  }
  {
    std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(std::streamoff(addr + size / 2));
    char c = 0;
    io.read(&c, 1);
    c ^= 0x5a;
    io.seekp(std::streamoff(addr + size / 2));
    io.write(&c, 1);
  }
  // open() reads every shard whole (the manifest's crc32): the damage is found before any sample is read.
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "shard-00000.h5: crc32 is ")) << msg;
  EXPECT_TRUE(contains(msg, "damaged after prep")) << msg;
  EXPECT_TRUE(contains(msg, "re-run hsloth prep")) << msg;
  // Without that check only lengths/offsets are read at open; the sample's chunk checksum still catches it.
  ShardIndex::Options lazy;
  lazy.verify_data = false;
  ShardIndex idx = ShardIndex::open(tmp.path, lazy);
  msg = expect_error([&] {
    for (int64_t i = 0; i < idx.num_samples(); ++i) idx.read_sample(i);
  });
  EXPECT_TRUE(contains(msg, "shard-00000.h5 sample")) << msg;
  EXPECT_TRUE(contains(msg, "damaged")) << msg;
  // And the manifest's sha256 catches it too.
  ShardIndex::Options o;
  o.verify_checksums = true;
  msg = expect_error([&] { ShardIndex::open(tmp.path, o); });
  EXPECT_TRUE(contains(msg, "is ")) << msg;
  EXPECT_TRUE(contains(msg, "damaged after prep")) << msg;
  // An older manifest without crc32: the chunks are read through HDF5 at open, and found damaged there.
  auto j = nlohmann::json::parse(hs::io::read_file(tmp.path + "/manifest.json"));
  for (auto& sh : j["shards"]) sh.erase("crc32");
  hs::io::write_file_atomic(tmp.path + "/manifest.json", j.dump());
  msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "shard-00000.h5")) << msg;
  EXPECT_TRUE(contains(msg, "damaged")) << msg;
  // And a single shard file (no manifest) the same way.
  msg = expect_error([&] { ShardIndex::open(file); });
  EXPECT_TRUE(contains(msg, "shard-00000.h5")) << msg;
  EXPECT_TRUE(contains(msg, "damaged")) << msg;
}

TEST(DataShardsValidation, NotAnHdf5File) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  hs::io::write_file_atomic(tmp.path + "/shard-00000.h5", std::string(4096, 'x'));
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "not an HDF5 file")) << msg;
}

TEST(DataShardsValidation, MissingManifestAndMissingShard) {
  TempDir tmp;
  write_set(tmp.path, make_samples(100, 50, 1), 500, 0);
  fs::remove(tmp.path + "/shard-00001.h5");
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "shard file is missing")) << msg;
  fs::remove(tmp.path + "/manifest.json");
  msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "no manifest.json")) << msg;
  msg = expect_error([&] { ShardIndex::open(tmp.path + "/nope"); });
  EXPECT_TRUE(contains(msg, "not found")) << msg;
}

TEST(DataShardsValidation, ManifestFromAnotherRun) {
  TempDir a, b;
  write_set(a.path, make_samples(100, 50, 1), 500, 0);
  write_set(b.path, make_samples(100, 50, 2), 500, 0);
  fs::copy_file(b.path + "/shard-00001.h5", a.path + "/shard-00001.h5", fs::copy_options::overwrite_existing);
  std::string msg = expect_error([&] { ShardIndex::open(a.path); });
  EXPECT_TRUE(contains(msg, "shard-00001.h5")) << msg;
  EXPECT_TRUE(contains(msg, "different prep runs")) << msg;
}

TEST(DataShardsValidation, ManifestNewerVersion) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  auto j = nlohmann::json::parse(hs::io::read_file(tmp.path + "/manifest.json"));
  j["version"] = 7;
  hs::io::write_file_atomic(tmp.path + "/manifest.json", j.dump());
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "newer hsloth")) << msg;
  hs::io::write_file_atomic(tmp.path + "/manifest.json", "{not json");
  msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "not valid JSON")) << msg;
}

TEST(DataShardsValidation, TokenizerMismatchNamesBoth) {
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  ShardIndex::Options o;
  o.expected_tokenizer_sha256 = std::string(64, 'f');
  o.expected_tokenizer_name = "/models/llama/tokenizer.json";
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path, o); });
  EXPECT_TRUE(contains(msg, "shards were made with tokenizer unit-tok (sha256 " + std::string(64, 'a')))
      << msg;
  EXPECT_TRUE(contains(msg, "this model's is /models/llama/tokenizer.json (sha256 " + std::string(64, 'f')))
      << msg;
  EXPECT_TRUE(contains(msg, "re-run hsloth prep with --tokenizer /models/llama/tokenizer.json")) << msg;
  o.expected_tokenizer_sha256 = std::string(64, 'a');
  EXPECT_NO_THROW(ShardIndex::open(tmp.path, o));
}

TEST(DataShardsValidation, ManifestWithoutChecksumsStillOpens) {
  // Manifests of an older hsloth have no crc32: they open, every shard read through HDF5 instead.
  TempDir tmp;
  write_set(tmp.path, make_samples(100, 50, 1), 500, 0);
  auto j = nlohmann::json::parse(hs::io::read_file(tmp.path + "/manifest.json"));
  for (auto& sh : j["shards"]) sh.erase("crc32");
  hs::io::write_file_atomic(tmp.path + "/manifest.json", j.dump());
  ShardIndex idx = ShardIndex::open(tmp.path);
  EXPECT_EQ(idx.num_samples(), 100);
  EXPECT_TRUE(idx.shards()[0].crc32.empty());
  // A crc32 that is not 8 hex digits is a damaged manifest.
  j["shards"][0]["crc32"] = "xyz";
  hs::io::write_file_atomic(tmp.path + "/manifest.json", j.dump());
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "shards[0]: key 'crc32' is 'xyz'")) << msg;
}

TEST(DataShardsValidation, ShardChangedAfterPrepIsNamedAtOpen) {
  // Same structure, different bytes (a shard swapped for one with equal counts, or damage that HDF5's
  // structure checks cannot see): the crc32 names the file before any sample is read.
  TempDir tmp;
  write_set(tmp.path, make_samples(100, 50, 1), 500, 0);
  auto j = nlohmann::json::parse(hs::io::read_file(tmp.path + "/manifest.json"));
  j["shards"][1]["crc32"] = "00000000";
  hs::io::write_file_atomic(tmp.path + "/manifest.json", j.dump());
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "shard-00001.h5: crc32 is " + bitwise_crc32(tmp.path + "/shard-00001.h5") +
                                " but manifest.json says 00000000"))
      << msg;
  EXPECT_TRUE(contains(msg, "re-run hsloth prep")) << msg;
}

TEST(DataShardsValidation, ManifestPrepCountersOfTheWrongTypeNameTheKey) {
  // Fuzzing found `"written": "12"` ending in "internal error" in inspect: now an error at open.
  TempDir tmp;
  write_set(tmp.path, make_samples(10, 10, 1), 1 << 20, 0);
  auto j = nlohmann::json::parse(hs::io::read_file(tmp.path + "/manifest.json"));
  j["prep"] = {{"input_records", 10}, {"written", "12"}, {"skipped", {{"too_long", 0}}}};
  hs::io::write_file_atomic(tmp.path + "/manifest.json", j.dump());
  std::string msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "manifest.json prep: key 'written' has the wrong type")) << msg;
  EXPECT_TRUE(contains(msg, "re-run hsloth prep")) << msg;
  j["prep"] = {{"written", 10}, {"skipped", {{"too_long", "x"}}}};
  hs::io::write_file_atomic(tmp.path + "/manifest.json", j.dump());
  msg = expect_error([&] { ShardIndex::open(tmp.path); });
  EXPECT_TRUE(contains(msg, "prep.skipped: key 'too_long' has the wrong type")) << msg;
}

TEST(DataShards, Hdf5VersionString) {
  std::string v = hs::data::hdf5_version();
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  EXPECT_EQ(v, std::to_string(maj) + "." + std::to_string(min) + "." + std::to_string(rel));
}

// Hand-computed batching examples (see shard_stats.h for the definitions).
TEST(DataStats, PaddedPackedAndPercentiles) {
  std::vector<int32_t> len = {4, 1, 10, 3, 2};
  std::vector<int32_t> tr = {3, 0, 9, 2, 1};
  ShardStats s = compute_stats(len, tr, 8);
  EXPECT_EQ(s.samples, 5);
  EXPECT_EQ(s.tokens, 20);
  EXPECT_EQ(s.trained, 15);
  EXPECT_EQ(s.min_len, 1);
  EXPECT_EQ(s.max_len, 10);
  EXPECT_DOUBLE_EQ(s.mean_len, 4.0);
  EXPECT_EQ(s.p50, 3);
  EXPECT_EQ(s.p90, 10);
  EXPECT_EQ(s.p99, 10);
  EXPECT_EQ(s.over_budget, 1);
  // Sorted 1 2 | 3 4 | 10: slots 2*2 + 2*4 + 10 = 22 for 20 tokens.
  EXPECT_EQ(s.padded_grouped.batches, 3);
  EXPECT_EQ(s.padded_grouped.slots, 22);
  EXPECT_EQ(s.padded_grouped.padding, 2);
  // Best-fit decreasing into rows of 8: [10] [4 3 1] [2]: slots 10 + 8 + 8 = 26.
  EXPECT_EQ(s.packed.batches, 3);
  EXPECT_EQ(s.packed.slots, 26);
  EXPECT_EQ(s.packed.padding, 6);
  EXPECT_NEAR(s.packed.waste(), 6.0 / 26.0, 1e-12);
  // Bins [1,2) [2,4) [4,5) [5,6) [6,7) [7,8) [8,10) [10,12): quarter octaves from 4 up, trimmed at the ends.
  std::vector<std::array<int64_t, 3>> want = {{1, 2, 1}, {2, 4, 2}, {4, 5, 1},  {5, 6, 0},
                                              {6, 7, 0}, {7, 8, 0}, {8, 10, 0}, {10, 12, 1}};
  ASSERT_EQ(s.histogram.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(s.histogram[i].lo, want[i][0]) << i;
    EXPECT_EQ(s.histogram[i].hi, want[i][1]) << i;
    EXPECT_EQ(s.histogram[i].count, want[i][2]) << i;
  }
  // Shuffled order is a permutation: same tokens, at least the grouped slots.
  EXPECT_GE(s.padded_shuffled.slots, s.padded_grouped.slots);
  EXPECT_EQ(s.padded_shuffled.slots - s.padded_shuffled.padding, 20);
  // In this exact order: 4 | 1 10 (over) ... -> [4 1] -> 2*4=8, [10] -> 10, [3 2] -> 6: slots 24.
  BatchWaste w = padded_batches(len, 8);
  EXPECT_EQ(w.batches, 3);
  EXPECT_EQ(w.slots, 24);
}

// Hand-computed: the packed and padded rows are the micro-batches hsloth train makes (BatchPlan), for the
// run's world x grad_accum, and differ from the comparison loaders where those group differently.
TEST(DataStats, PackedAndPaddedAreTheTrainersMicroBatches) {
  std::vector<int32_t> len = {5, 3, 3, 2}, tr = {1, 1, 1, 1};
  ShardStats one = compute_stats(len, tr, 8);
  // Best-fit decreasing: [5 3] [3 2] -> 2 rows of 8 for 13 tokens.
  EXPECT_EQ(one.packed.batches, 2);
  EXPECT_EQ(one.packed.slots, 16);
  EXPECT_EQ(one.packed.padding, 3);
  // Longest first, rows x longest <= 8: [5] [3 3] [2] -> slots 5 + 6 + 2, no padding.
  EXPECT_EQ(one.padded.batches, 3);
  EXPECT_EQ(one.padded.slots, 13);
  EXPECT_EQ(one.padded.padding, 0);
  // The ascending comparison loader: [2 3] [3] [5] -> slots 6 + 3 + 5.
  EXPECT_EQ(one.padded_grouped.slots, 14);
  // 2 ranks x 2 micro-batches per step: a whole step's worth (4) of micro-batches, one sample each.
  ShardStats four = compute_stats(len, tr, 8, 0, 2, 2);
  EXPECT_EQ(four.packed.batches, 4);
  EXPECT_EQ(four.packed.slots, 32);
  EXPECT_EQ(four.packed.padding, 19);
  EXPECT_EQ(four.padded.slots, 13);
  // An over-budget sample is a batch of its own, exactly its size, beside the plan of the others.
  std::vector<int32_t> len2 = {5, 3, 3, 2, 11}, tr2 = {1, 1, 1, 1, 1};
  ShardStats over = compute_stats(len2, tr2, 8);
  EXPECT_EQ(over.over_budget, 1);
  EXPECT_EQ(over.packed.batches, 3);
  EXPECT_EQ(over.packed.slots, 16 + 11);
  EXPECT_EQ(over.padded.slots, 13 + 11);
}
