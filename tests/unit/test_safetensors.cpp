// safetensors reader/writer and config.json parsing. Files are built here byte by byte from the format's
// specification (8-byte little-endian header size, JSON header, data), so the expected values come from
// the spec rather than from our writer; every corruption the reader must refuse gets its own case and the
// error must name the file and the tensor. Byte-identity with the Python `safetensors` package is checked
// by tests/parity/model_safetensors.py.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "support/test_support.h"

namespace {
namespace fs = std::filesystem;
using hs::io::Checkpoint;
using hs::io::DType;
using hs::io::SafetensorsFile;

std::string le64(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
  return s;
}

std::string make_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

// Expects parse() to throw and the message to contain every fragment.
void expect_error(const std::string& bytes, std::initializer_list<std::string> fragments) {
  try {
    hs::io::SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                   "x.safetensors", nullptr);
    FAIL() << "no error thrown";
  } catch (const hs::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("x.safetensors"), std::string::npos) << m;
    for (const auto& f : fragments)
      EXPECT_NE(m.find(f), std::string::npos) << "missing '" << f << "' in: " << m;
  }
}

class TempDir {
 public:
  TempDir() : path(hs::test::temp_dir("hs-st")) {}
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path) / name).string(); }
  std::string path;
};

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

TEST(Safetensors, ReadsHandBuiltFile) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},"e":{"dtype":"I64","shape":[0],"data_offsets":[22,22]}})";
  std::string data = floats({1.f, 2.f, 3.f, -4.5f}) + std::string("\x00\x3c\x00\x40\x00\xc0", 6);
  TempDir dir;
  write_raw(dir.file("m.safetensors"), make_file(header, data));
  auto f = SafetensorsFile::open(dir.file("m.safetensors"));
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const auto* w = f->find("w");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w->numel(), 4);
  float v[4];
  std::memcpy(v, w->data, 16);
  EXPECT_EQ(v[3], -4.5f);
  const auto* b = f->find("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->dtype, DType::F16);
  EXPECT_EQ(b->nbytes, 6u);
  EXPECT_EQ(b->data[1], 0x3c);  // 1.0 in IEEE half, little endian
  EXPECT_EQ(f->find("e")->numel(), 0);
  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(Safetensors, RefusesCorruptHeaders) {
  std::string d16 = std::string(16, '\0');
  auto one = [&](const std::string& entry) { return make_file("{\"t\":" + entry + "}", d16); };
  expect_error(std::string("\x01\x02", 2), {"too short"});
  expect_error(le64(200ull << 20) + "{}", {"exceeds the limit"});
  expect_error(le64(64) + "{}", {"past the end"});
  expect_error(make_file("[1,2]", ""), {"not a JSON object"});
  expect_error(make_file("{\"t\": ", ""), {"not valid JSON"});
  expect_error(one(R"({"dtype":"F8","shape":[4],"data_offsets":[0,4]})"), {"'t'", "unsupported dtype 'F8'"});
  expect_error(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})"), {"'t'", "12 bytes", "span 16"});
  expect_error(one(R"({"dtype":"F32","shape":[8],"data_offsets":[0,32]})"), {"'t'", "past the data area"});
  expect_error(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), {"'t'", "bad shape"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})"), {"'t'", "reversed"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), {"'t'", "data_offsets"});
  expect_error(one(R"({"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]})"),
               {"'t'", "overflows"});
  expect_error(one(R"({"shape":[1],"data_offsets":[0,4]})"), {"'t'", "dtype"});
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         d16),
               {"'a'", "'b'", "overlap"});
  expect_error(make_file(R"({"__metadata__":{"k":1}})", ""), {"__metadata__"});
  expect_error(std::string("PK\x03\x04", 4) + std::string(16, '\0'), {"pickle"});
  expect_error(std::string("\x80\x02", 2) + std::string(16, '\0'), {"pickle"});
}

TEST(Safetensors, HeaderSizesThatLookLikeMagicBytesAreFine) {
  // A header of 0x80 bytes starts the file with 0x80 (pickle's opcode), 0x4b50 bytes with "PK" (zip):
  // both are valid safetensors files.
  for (size_t n : {size_t(0x80), size_t(0x4b50)}) {
    std::string header = R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
    header.append(n - header.size(), ' ');
    std::string bytes = make_file(header, "ab");
    auto infos =
        SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "m", nullptr);
    ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].data[1], 'b');
  }
}

TEST(Safetensors, RefusesPickleCheckpoints) {
  TempDir dir;
  write_raw(dir.file("pytorch_model.bin"), "PK\x03\x04");
  for (const std::string& p : {dir.path, dir.file("pytorch_model.bin")}) {
    try {
      Checkpoint::open(p);
      FAIL() << "opened " << p;
    } catch (const hs::Error& e) {
      EXPECT_NE(std::string(e.what()).find("safe_serialization=True"), std::string::npos) << e.what();
    }
  }
  TempDir empty;
  EXPECT_THROW(Checkpoint::open(empty.path), hs::Error);
  EXPECT_THROW(Checkpoint::open(empty.file("missing.safetensors")), hs::Error);
}

TEST(Safetensors, WriterFollowsTheReferenceLayout) {
  // The reference orders tensors by dtype alignment (I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL),
  // then by name, and pads the header with spaces to a multiple of 8.
  uint8_t bytes[64] = {};
  for (int i = 0; i < 64; ++i) bytes[i] = uint8_t(i);
  std::vector<hs::io::TensorRef> t = {
      {{"z", DType::BOOL, {3}}, bytes, 3},        {{"b", DType::F16, {1}}, bytes, 2},
      {{"a", DType::F16, {2}}, bytes + 2, 4},     {{"c", DType::I64, {1}}, bytes + 8, 8},
      {{"y", DType::F32, {2, 1}}, bytes + 16, 8},
  };
  std::string out = hs::io::serialize_safetensors(t, {{"format", "pt"}});
  std::string expected_header =
      R"({"__metadata__":{"format":"pt"},"c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
      R"("y":{"dtype":"F32","shape":[2,1],"data_offsets":[8,16]},"a":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},)"
      R"("b":{"dtype":"F16","shape":[1],"data_offsets":[20,22]},"z":{"dtype":"BOOL","shape":[3],"data_offsets":[22,25]}})";
  expected_header.append((8 - expected_header.size() % 8) % 8, ' ');
  ASSERT_EQ(out.substr(0, 8), le64(expected_header.size()));
  EXPECT_EQ(out.substr(8, expected_header.size()), expected_header);
  std::string data = out.substr(8 + expected_header.size());
  ASSERT_EQ(data.size(), 25u);
  EXPECT_EQ(data.substr(0, 8), std::string(reinterpret_cast<char*>(bytes + 8), 8));
  EXPECT_EQ(data.substr(16, 4), std::string(reinterpret_cast<char*>(bytes + 2), 4));
  EXPECT_EQ(data.substr(22, 3), std::string(reinterpret_cast<char*>(bytes), 3));
  // And it reads back.
  auto infos =
      SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(out.data()), out.size(), "mem", nullptr);
  EXPECT_EQ(infos.size(), 5u);
  // Wrong byte counts and duplicate names are refused.
  EXPECT_THROW(hs::io::serialize_safetensors({{{"a", DType::F32, {2}}, bytes, 4}}), hs::Error);
  EXPECT_THROW(
      hs::io::serialize_safetensors({{{"a", DType::U8, {1}}, bytes, 1}, {{"a", DType::U8, {1}}, bytes, 1}}),
      hs::Error);
}

TEST(Safetensors, ShardedWriterAndIndex) {
  TempDir dir;
  std::vector<float> a(10, 1.f), b(10, 2.f), c(10, 3.f), d(2, 4.f);
  std::vector<hs::io::TensorSpec> specs = {
      {"a", DType::F32, {10}}, {"b", DType::F32, {10}}, {"c", DType::F32, {2, 5}}, {"d", DType::F32, {2}}};
  hs::io::ShardedWriter w(dir.path, specs, /*max_shard_bytes=*/80);
  EXPECT_EQ(w.shard_count(), 2u);  // [a, b] = 80 bytes fills the first shard; [c, d] = 48
  w.put("d", d.data(), 8);
  w.put("a", a.data(), 40);
  EXPECT_THROW(w.put("a", a.data(), 40), hs::Error);
  EXPECT_THROW(w.put("zz", a.data(), 40), hs::Error);
  EXPECT_THROW(w.put("b", b.data(), 4), hs::Error);
  w.put("b", b.data(), 40);
  EXPECT_THROW(w.finish(), hs::Error);  // c missing
}

TEST(Safetensors, ShardedRoundTrip) {
  TempDir dir;
  std::vector<float> a(10, 1.f), b(10, 2.f), c(10, 3.f);
  std::vector<hs::io::TensorSpec> specs = {
      {"a", DType::F32, {10}}, {"b", DType::F32, {10}}, {"c", DType::F32, {2, 5}}};
  hs::io::ShardedWriter w(dir.path, specs, 80);
  ASSERT_EQ(w.shard_count(), 2u);  // a+b = 80 fits; c starts a new shard
  w.put("c", c.data(), 40);
  w.put("b", b.data(), 40);
  w.put("a", a.data(), 40);
  auto files = w.finish();
  EXPECT_EQ(files.size(), 3u);
  EXPECT_TRUE(hs::io::exists(dir.file("model-00001-of-00002.safetensors")));
  EXPECT_TRUE(hs::io::exists(dir.file("model-00002-of-00002.safetensors")));
  std::string index = hs::io::read_file(dir.file("model.safetensors.index.json"));
  EXPECT_NE(index.find("\"total_size\": 120"), std::string::npos) << index;
  auto ck = Checkpoint::open(dir.path);
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ck.get("c").shape, (std::vector<int64_t>{2, 5}));
  float x;
  std::memcpy(&x, ck.get("c").data + 4, 4);
  EXPECT_EQ(x, 3.f);
  EXPECT_NE(ck.get("a").file, ck.get("c").file);
  EXPECT_EQ(ck.metadata().at("format"), "pt");
  try {
    ck.get("missing");
    FAIL();
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }

  // One shard: plain model.safetensors, no index.
  TempDir one;
  hs::io::ShardedWriter w1(one.path, specs, 1 << 20);
  for (auto* t : {"a", "b", "c"}) w1.put(t, a.data(), 40);
  w1.finish();
  EXPECT_TRUE(hs::io::exists(one.file("model.safetensors")));
  EXPECT_FALSE(hs::io::exists(one.file("model.safetensors.index.json")));
  EXPECT_EQ(Checkpoint::open(one.path).size(), 3u);

  // An index naming a tensor its shard lacks is refused.
  hs::io::write_file_atomic(
      dir.file("model.safetensors.index.json"),
      R"({"weight_map":{"a":"model-00001-of-00002.safetensors","q":"model-00001-of-00002.safetensors"}})");
  try {
    Checkpoint::open(dir.path);
    FAIL();
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'q'"), std::string::npos) << e.what();
  }
  hs::io::write_file_atomic(dir.file("model.safetensors.index.json"),
                            R"({"weight_map":{"a":"../x.safetensors"}})");
  EXPECT_THROW(Checkpoint::open(dir.path), hs::Error);
}

// ---- config.json ----------------------------------------------------------------------------------

const char* kLlama3 = R"({
  "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "rms_norm_eps": 1e-5,
  "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": true,
  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192},
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu"})";

TEST(HfConfig, ReadsLlama3Classic) {
  auto c = hs::io::parse_hf_config(kLlama3, "config.json");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope.type, hs::io::RopeType::llama3);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_ids, (std::vector<int64_t>{128000}));
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
}

TEST(HfConfig, ReadsTransformers5RopeParameters) {
  auto c = hs::io::parse_hf_config(R"({"model_type":"qwen3","hidden_size":64,"intermediate_size":96,
      "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"vocab_size":50,
      "rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"},"eos_token_id":null,"sliding_window":null,
      "use_sliding_window":false})",
                                   "q3.json");
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.q_dim(), 128);
  EXPECT_EQ(c.kv_dim(), 64);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope.type, hs::io::RopeType::standard);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_FALSE(c.tie_word_embeddings_given);

  auto q2 = hs::io::parse_hf_config(R"({"model_type":"qwen2","hidden_size":64,"intermediate_size":96,
      "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":50,"rope_scaling":{"type":"linear","factor":2.0}})",
                                    "q2.json");
  EXPECT_TRUE(q2.qkv_bias);
  EXPECT_FALSE(q2.o_bias);
  EXPECT_EQ(q2.num_key_value_heads, 4);
  EXPECT_EQ(q2.rope.type, hs::io::RopeType::linear);
  EXPECT_DOUBLE_EQ(q2.rope.factor, 2.0);

  auto m = hs::io::parse_hf_config(R"({"model_type":"mistral","hidden_size":64,"intermediate_size":96,
      "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"vocab_size":50,"sliding_window":256})",
                                   "m.json");
  EXPECT_EQ(m.sliding_window, 256);
  EXPECT_NO_THROW(m.check_sequence_length(256, "s"));
  EXPECT_THROW(m.check_sequence_length(257, "sample 3"), hs::Error);
}

void expect_config_error(const std::string& text, const std::string& fragment) {
  try {
    hs::io::parse_hf_config(text, "cfg.json");
    FAIL() << "accepted: " << text;
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(HfConfig, RefusesWhatItCannotRun) {
  std::string base =
      R"("hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":50)";
  expect_config_error("{\"model_type\":\"gpt2\"," + base + "}", "'gpt2'");
  expect_config_error(
      "{\"model_type\":\"llama\"," + base + ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
      "rope type 'yarn'");
  expect_config_error(
      "{\"model_type\":\"llama\"," + base + ",\"rope_parameters\":{\"rope_type\":\"dynamic\"}}",
      "rope_parameters.rope_type");
  expect_config_error("{\"model_type\":\"llama\"," + base + ",\"hidden_act\":\"gelu\"}", "hidden_act");
  expect_config_error("{\"model_type\":\"llama\"," + base + ",\"num_key_value_heads\":3}",
                      "num_key_value_heads");
  expect_config_error(R"({"model_type":"llama","hidden_size":64})", "intermediate_size");
  expect_config_error("{\"model_type\":\"llama\"," + base + ",\"num_hidden_layers\":\"2\"}",
                      "num_hidden_layers");
  expect_config_error("{\"model_type\":\"llama\"," + base + ",\"partial_rotary_factor\":0.5}",
                      "partial_rotary_factor");
  expect_config_error("not json", "not valid JSON");
  EXPECT_THROW(hs::io::load_hf_config("/nonexistent/folder"), hs::Error);
}

}  // namespace
