// NF4 (src/quant/nf4) without an external oracle: the code books typed from bitsandbytes' source, the layout
// (nibble order, 64-blocks across rows, sizes), exact round trips where the format is exact, the error bound
// of NF4 elsewhere, the pre-quantized layout written and read back, and every malformed input refused with a
// clear error. Bit-exactness against bitsandbytes itself is tests/parity/nf4_bnb.py.
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/tensor_io.h"
#include "quant/nf4.h"
#include "support/test_support.h"

namespace {

using hs::quant::Nf4Tensor;

bool bits_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         at::equal(a.contiguous(), b.contiguous());
}

// Writes `tensors` to DIR/model.safetensors and opens it.
hs::io::Checkpoint write_checkpoint(const std::string& dir,
                                    const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<hs::model::HostTensor> host;
  for (const auto& [n, t] : tensors) host.push_back(hs::model::to_host(n, t));
  std::vector<hs::io::TensorRef> refs;
  for (const auto& h : host) refs.push_back(h.ref());
  hs::io::write_safetensors(dir + "/model.safetensors", refs);
  return hs::io::Checkpoint::open(dir);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hs::Error& e) {
    return e.what();
  }
  return "";
}

at::Tensor json_bytes(const std::string& s) {
  at::Tensor t = at::empty({int64_t(s.size())}, at::kByte);
  std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}

TEST(Nf4, CodeBookIsBitsandbytesNf4) {
  // bitsandbytes/functional.py get_4bit_type("nf4"), as float32.
  const std::vector<float> nf4 = {-1.0f,
                                  -0.6961928009986877f,
                                  -0.5250730514526367f,
                                  -0.39491748809814453f,
                                  -0.28444138169288635f,
                                  -0.18477343022823334f,
                                  -0.09105003625154495f,
                                  0.0f,
                                  0.07958029955625534f,
                                  0.16093020141124725f,
                                  0.24611230194568634f,
                                  0.33791524171829224f,
                                  0.44070982933044434f,
                                  0.5626170039176941f,
                                  0.7229568362236023f,
                                  1.0f};
  const at::Tensor c = hs::quant::nf4_code();
  ASSERT_EQ(c.numel(), 16);
  ASSERT_EQ(c.scalar_type(), at::kFloat);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(c[i].item<float>(), nf4[size_t(i)]) << i;
}

TEST(Nf4, DynamicMapIsBitsandbytesSignedMap) {
  const at::Tensor d = hs::quant::dynamic_code();
  ASSERT_EQ(d.numel(), 256);
  ASSERT_EQ(d.scalar_type(), at::kFloat);
  // Strictly increasing, one zero, ends at 1, symmetric except for 0 and 1 (bitsandbytes' construction).
  EXPECT_TRUE((d.slice(0, 1) > d.slice(0, 0, -1)).all().item<bool>());
  EXPECT_EQ(d[255].item<float>(), 1.0f);
  EXPECT_EQ((d == 0).sum().item<int64_t>(), 1);
  const at::Tensor neg = d.slice(0, 0, 127), pos = d.slice(0, 128, 255);
  EXPECT_TRUE(at::equal(neg, -pos.flip(0)));
  // Values of bitsandbytes.functional.create_dynamic_map() (float32): the extremes and the smallest
  // magnitude.
  EXPECT_EQ(d[0].item<float>(), -0.992968738079071f);
  EXPECT_EQ(d[1].item<float>(), -0.9789062738418579f);
  EXPECT_EQ(d[2].item<float>(), -0.96484375f);
  EXPECT_EQ(d[128].item<float>(), 5.500000384017767e-07f);
  EXPECT_EQ(d[129].item<float>(), 3.250000190746505e-06f);
  EXPECT_EQ(d[254].item<float>(), 0.992968738079071f);
}

TEST(Nf4, NibbleOrderAndPadding) {
  // One block, absmax 1: -1 -> code 0, 1 -> code 15, 0 -> code 7; element 2i in the high nibble; an odd count
  // pads the last low nibble with the code of 0.
  const Nf4Tensor q = hs::quant::quantize_nf4(at::tensor({-1.0f, 1.0f, 0.0f}, at::kFloat).view({1, 3}));
  ASSERT_EQ(q.packed.sizes(), (at::IntArrayRef{2, 1}));
  EXPECT_EQ(q.packed[0][0].item<uint8_t>(), 0x0F);
  EXPECT_EQ(q.packed[1][0].item<uint8_t>(), 0x77);
  EXPECT_EQ(q.offset, 1.0f);
  EXPECT_TRUE(bits_equal(hs::quant::dequantize_nf4(q), at::tensor({-1.0f, 1.0f, 0.0f}).view({1, 3})));
}

TEST(Nf4, SizesFollowTheFlattenedTensor) {
  at::manual_seed(12);
  for (auto shape : std::vector<std::vector<int64_t>>{{7, 9}, {96, 100}, {3, 64 * 300}, {64, 128}, {1, 1}}) {
    const at::Tensor w = at::randn(shape, at::kFloat).to(at::kBFloat16);
    const Nf4Tensor q = hs::quant::quantize_nf4(w);
    const int64_t n = w.numel(), blocks = (n + 63) / 64;
    EXPECT_EQ(q.shape, shape);
    EXPECT_EQ(q.dtype, at::kBFloat16);
    EXPECT_EQ(q.packed.sizes(), (at::IntArrayRef{(n + 1) / 2, 1}));
    EXPECT_EQ(q.absmax.numel(), blocks);
    EXPECT_EQ(q.nested_absmax.numel(), (blocks + 255) / 256);
    EXPECT_EQ(q.blocks(), blocks);
    EXPECT_EQ(q.bytes(), (n + 1) / 2 + blocks + 16 * 4 + (blocks + 255) / 256 * 4 + 256 * 4);
    const at::Tensor d = hs::quant::dequantize_nf4(q);
    EXPECT_EQ(d.sizes(), w.sizes());
    EXPECT_EQ(d.scalar_type(), at::kBFloat16);
  }
}

TEST(Nf4, EqualBlockScalesRoundTripExactly) {
  at::manual_seed(11);
  // Every 64-block (they cross rows: 100 columns) holds +-s and otherwise NF4 code values times s, s a power
  // of two: absmax s everywhere, so the offset is s, the nested absmax 0 and every value comes back exactly.
  const at::Tensor code = hs::quant::nf4_code();
  const int64_t rows = 5, cols = 100, n = rows * cols;
  const float s = 0.125f;
  at::Tensor idx = at::randint(0, 16, {n}, at::kLong);
  for (int64_t b = 0; b < n; b += 64) idx[b] = (b / 64) % 2 ? 0 : 15;  // each block reaches |s|
  const at::Tensor w = (code.index_select(0, idx) * s).view({rows, cols});
  for (at::ScalarType t : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const Nf4Tensor q = hs::quant::quantize_nf4(w.to(t));
    EXPECT_EQ(q.offset, s);
    EXPECT_TRUE(bits_equal(hs::quant::dequantize_nf4(q), w.to(t))) << c10::toString(t);
  }
}

TEST(Nf4, RandomWeightsWithinTheNf4Bound) {
  at::manual_seed(13);
  // |w - dq| <= half the widest NF4 gap times the block's absmax, plus the 8-bit absmax error (its step is
  // below 2% of the nested absmax), for weights whose block absmax varies (rows of different scale, blocks
  // cross rows).
  const at::Tensor w = at::randn({37, 200}, at::kFloat) * (at::rand({37, 1}, at::kFloat) + 0.1);
  const Nf4Tensor q = hs::quant::quantize_nf4(w);
  const at::Tensor d = hs::quant::dequantize_nf4(q).view(-1);
  const at::Tensor flat = w.reshape(-1);
  const int64_t n = flat.numel();
  const at::Tensor padded = at::constant_pad_nd(flat.abs(), {0, (64 - n % 64) % 64}, 0).view({-1, 64});
  const at::Tensor am = std::get<0>(padded.max(1)).repeat_interleave(64).slice(0, 0, n);
  const double half_gap = (1.0 - 0.6961928009986877) / 2;  // the widest gap: -1 .. -0.696
  const double nested = q.nested_absmax.max().item<double>();
  const at::Tensor bound = am * half_gap + 0.02 * nested * 1.0 + 1e-6;
  EXPECT_TRUE(((d - flat).abs() <= bound).all().item<bool>())
      << ((d - flat).abs() - bound).max().item<double>();
  EXPECT_LT((d - flat).abs().mean().item<double>(), 0.1 * flat.abs().mean().item<double>());
}

TEST(Nf4, DequantizesToTheRecordedDtype) {
  const at::Tensor w = at::randn({16, 64}, at::kFloat);
  Nf4Tensor q = hs::quant::quantize_nf4(w);
  const at::Tensor f32 = hs::quant::dequantize_nf4(q);
  for (at::ScalarType t : {at::kBFloat16, at::kHalf}) {
    q.dtype = t;
    EXPECT_TRUE(bits_equal(hs::quant::dequantize_nf4(q), f32.to(t))) << c10::toString(t);
  }
  EXPECT_TRUE(bits_equal(hs::quant::dequantize_nf4_reference(q), hs::quant::dequantize_nf4(q)));
}

TEST(Nf4, DequantizeIntoRowsOfOneBuffer) {
  const Nf4Tensor a = hs::quant::quantize_nf4(at::randn({5, 40}, at::kBFloat16)),
                  b = hs::quant::quantize_nf4(at::randn({3, 40}, at::kBFloat16));
  for (at::ScalarType dt : {at::kBFloat16, at::kFloat}) {
    at::Tensor buf = at::zeros({8, 40}, dt);
    at::Tensor top = buf.narrow(0, 0, 5), bottom = buf.narrow(0, 5, 3);
    hs::quant::dequantize_nf4_into(a, top);
    hs::quant::dequantize_nf4_into(b, bottom);
    EXPECT_TRUE(bits_equal(buf, at::cat({hs::quant::dequantize_nf4(a), hs::quant::dequantize_nf4(b)}).to(dt)))
        << c10::toString(dt);
  }
  at::Tensor strided = at::zeros({40, 5}, at::kBFloat16).t();
  EXPECT_THROW(hs::quant::dequantize_nf4_into(a, strided), hs::Error);
  at::Tensor small = at::zeros({4, 40}, at::kBFloat16);
  EXPECT_THROW(hs::quant::dequantize_nf4_into(a, small), hs::Error);
}

TEST(Nf4, SaveAndReadBack) {
  const std::string dir = hs::test::temp_dir("nf4_rw");
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  const at::Tensor w = at::randn({24, 160}, at::kFloat).to(at::kBFloat16);
  const Nf4Tensor q = hs::quant::quantize_nf4(w);
  auto tensors = hs::quant::nf4_tensors_for_save(name, q);
  ASSERT_EQ(tensors.size(), 6u);
  tensors.emplace_back("model.norm.weight", at::ones({24}, at::kBFloat16));
  const hs::io::Checkpoint ck = write_checkpoint(dir, tensors);
  EXPECT_TRUE(hs::quant::has_nf4(ck, name));
  EXPECT_FALSE(hs::quant::has_nf4(ck, "model.norm.weight"));
  const Nf4Tensor r = hs::quant::read_nf4(ck, name, at::kCPU);
  EXPECT_EQ(r.shape, q.shape);
  EXPECT_EQ(r.dtype, q.dtype);
  EXPECT_EQ(r.offset, q.offset);
  for (auto [a, b] : {std::pair{&r.packed, &q.packed},
                      {&r.absmax, &q.absmax},
                      {&r.code, &q.code},
                      {&r.nested_absmax, &q.nested_absmax},
                      {&r.nested_code, &q.nested_code}})
    EXPECT_TRUE(bits_equal(*a, *b));
  EXPECT_TRUE(bits_equal(hs::quant::dequantize_nf4(r), hs::quant::dequantize_nf4(q)));
  // The quant state JSON has bitsandbytes' keys.
  const std::string js(reinterpret_cast<const char*>(ck.get(name + ".quant_state.bitsandbytes__nf4").data),
                       ck.get(name + ".quant_state.bitsandbytes__nf4").nbytes);
  const auto j = nlohmann::json::parse(js);
  EXPECT_EQ(j.at("quant_type"), "nf4");
  EXPECT_EQ(j.at("blocksize"), 64);
  EXPECT_EQ(j.at("dtype"), "bfloat16");
  EXPECT_EQ(j.at("shape"), nlohmann::json({24, 160}));
  EXPECT_EQ(j.at("nested_blocksize"), 256);
  EXPECT_EQ(j.at("nested_dtype"), "float32");
  EXPECT_EQ(float(j.at("nested_offset").get<double>()), q.offset);
  std::filesystem::remove_all(dir);
}

TEST(Nf4, RefusesBadInputs) {
  EXPECT_NE(error_of([] { hs::quant::quantize_nf4(at::empty({0, 64})); }).find("empty"), std::string::npos);
  EXPECT_NE(error_of([] {
              hs::quant::quantize_nf4(at::ones({4, 64}, at::kInt));
            }).find("Int"),
            std::string::npos);
  Nf4Tensor q = hs::quant::quantize_nf4(at::randn({8, 64}));
  Nf4Tensor bad = q;
  bad.shape = {8, 65};
  EXPECT_NE(error_of([&] { hs::quant::dequantize_nf4(bad); }).find("packed has 256 elements, expected 260"),
            std::string::npos);
  bad = q;
  bad.blocksize = 128;
  EXPECT_NE(error_of([&] { hs::quant::dequantize_nf4(bad); }).find("blocksize 128"), std::string::npos);
  bad = q;
  bad.nested_code = bad.nested_code.to(at::kDouble);
  EXPECT_NE(error_of([&] { hs::quant::dequantize_nf4(bad); }).find("nested_quant_map has type"),
            std::string::npos);
}

TEST(Nf4, RefusesBadCheckpoints) {
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  const std::string sname = name + ".quant_state.bitsandbytes__nf4";
  const Nf4Tensor q = hs::quant::quantize_nf4(at::randn({8, 64}));
  const auto good = hs::quant::nf4_tensors_for_save(name, q);
  const std::string good_json(reinterpret_cast<const char*>(good[5].second.data_ptr()),
                              good[5].second.numel());
  int k = 0;
  // Rewrites the quant state JSON with `patch` applied (or drops a tensor) and returns read_nf4's error.
  const auto read_with = [&](const nlohmann::json& patch, const std::string& drop = "",
                             const std::string& raw_state = "") {
    auto tensors = good;
    std::vector<std::pair<std::string, at::Tensor>> kept;
    for (auto& [n, t] : tensors) {
      if (n == drop) continue;
      if (n == sname) {
        nlohmann::json j = nlohmann::json::parse(good_json);
        j.merge_patch(patch);
        t = json_bytes(raw_state.empty() ? j.dump() : raw_state);
      }
      kept.emplace_back(n, t);
    }
    const std::string dir = hs::test::temp_dir("nf4_bad" + std::to_string(k++));
    const hs::io::Checkpoint ck = write_checkpoint(dir, kept);
    std::string e = error_of([&] { hs::quant::read_nf4(ck, name, at::kCPU); });
    std::filesystem::remove_all(dir);
    return e;
  };
  EXPECT_EQ(read_with(nlohmann::json::object()), "");
  const auto has = [](const std::string& e, std::vector<std::string> words) {
    for (const auto& w : words)
      if (e.find(w) == std::string::npos)
        return ::testing::AssertionFailure() << "'" << w << "' not in: " << e;
    return ::testing::AssertionSuccess();
  };
  EXPECT_TRUE(has(read_with({{"quant_type", "fp4"}}), {sname, "'quant_type'", "fp4", "supported"}));
  EXPECT_TRUE(has(read_with({{"blocksize", 128}}), {sname, "'blocksize'", "128", "supported"}));
  EXPECT_TRUE(has(read_with({{"nested_blocksize", 512}}), {"'nested_blocksize'", "512"}));
  EXPECT_TRUE(has(read_with({{"nested_offset", nullptr}, {"nested_blocksize", nullptr}}),
                  {"'nested_offset'", "no double quantization"}));
  EXPECT_TRUE(has(read_with({{"dtype", "int8"}}), {"'dtype'", "int8"}));
  EXPECT_TRUE(has(read_with({{"shape", {8, 66}}}), {name, "packed has 256 elements, expected 264"}));
  EXPECT_TRUE(has(read_with({{"shape", "8x64"}}), {"'shape'"}));
  EXPECT_TRUE(has(read_with(nlohmann::json::object(), name + ".absmax"), {name + ".absmax"}));
  EXPECT_TRUE(has(read_with(nlohmann::json::object(), sname), {sname, "no NF4 quant state"}));
  EXPECT_TRUE(has(read_with(nlohmann::json::object(), "", "{\"quant_type\": \"nf4\", "), {"not valid JSON"}));
}

}  // namespace
