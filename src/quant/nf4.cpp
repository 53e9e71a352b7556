// bitsandbytes' NF4 (blocksize 64, double quantization) in ATen, bit for bit:
// - quantize: bitsandbytes' CPU path. Its pure-torch quantize_4bit: scale by the reciprocal of the block
//   absmax (a division for the trailing partial block), clamp, bucketize against the float32 midpoints of
//   the code book. Then its native CPU quantize_blockwise for the absmax: scale by the reciprocal of the
//   256-block's max, look the code up in its 65536-entry table (cpu_lut_codes).
// - dequantize: its pure-torch dequantize_4bit after its dequantize_blockwise of the absmax (every product
//   and sum one float32 rounding, in that order), so results are identical on any device.
// The CUDA kernels of kernels/nf4.h take over on CUDA tensors in CUDA builds (HS_HAVE_KERNELS).
#include "quant/nf4.h"

#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json.h"
#include "model/tensor_io.h"

#if HS_HAVE_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/nf4.h"
#include "kernels/rms_norm.h"  // error_string
#endif

namespace hs::quant {

namespace {

constexpr int64_t kBlock = 64;
constexpr int64_t kNestedBlock = 256;
const char* const kStateSuffix = ".quant_state.bitsandbytes__nf4";
const char* const kSupported =
    "supported: quant_type \"nf4\", blocksize 64, bnb_4bit_use_double_quant=True (nested_blocksize 256, "
    "nested_dtype \"float32\"), dtype bfloat16/float16/float32";

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

const char* dtype_json_name(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    case at::kFloat:
      return "float32";
    default:
      throw Error(str("NF4 weights dequantize to bfloat16, float16 or float32, not ", c10::toString(t)));
  }
}

// bitsandbytes' CPU quantize_blockwise rule for the 8-bit absmax codes: a 65536-entry table over [-1, 1]
// (entry i: the value -1 + 2i/65535, mapped to the first code whose float32 midpoint with the next code is
// not below it), indexed by trunc(((clamp(v, -1, 1) + 1) * 0.5) * 65535 + 0.5), each step one float32
// rounding. Not always the nearest code (the table has 65536 bins); it is what bitsandbytes' CPU quantizer
// stores.
at::Tensor cpu_lut_codes(const at::Tensor& code, const at::Tensor& normed) {
  const at::Tensor c = code.to(at::kCPU).contiguous();
  const float* cp = c.data_ptr<float>();
  const int64_t nc = c.numel();
  std::vector<float> mid(size_t(nc - 1));
  for (int64_t i = 0; i + 1 < nc; ++i) mid[size_t(i)] = 0.5f * (cp[i] + cp[i + 1]);
  constexpr int64_t kLut = 65536;
  at::Tensor lut = at::empty({kLut}, at::kLong);
  int64_t* lp = lut.data_ptr<int64_t>();
  int64_t ci = 0;
  for (int64_t i = 0; i < kLut; ++i) {
    const float q = (2.0f * float(i)) / float(kLut - 1);
    const float v = -1.0f + q;
    while (ci < nc - 1 && mid[size_t(ci)] < v) ++ci;
    lp[i] = ci;
  }
  at::Tensor t = normed.clamp(-1, 1);
  t = t + 1.0f;
  t = t * 0.5f;
  t = t * float(kLut - 1);
  t = t + 0.5f;
  return lut.to(normed.device()).index_select(0, t.to(at::kLong));  // float -> int truncates (t >= 0.5)
}

}  // namespace

int64_t Nf4Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Nf4Tensor::blocks() const { return ceil_div(numel(), blocksize); }

at::Device Nf4Tensor::device() const { return packed.defined() ? packed.device() : at::Device(at::kCPU); }

Nf4Tensor Nf4Tensor::to(at::Device d) const {
  Nf4Tensor r = *this;
  r.packed = packed.to(d);
  r.absmax = absmax.to(d);
  r.code = code.to(d);
  r.nested_absmax = nested_absmax.to(d);
  r.nested_code = nested_code.to(d);
  return r;
}

int64_t Nf4Tensor::bytes() const {
  int64_t b = 0;
  for (const at::Tensor* t : {&packed, &absmax, &code, &nested_absmax, &nested_code})
    if (t->defined()) b += t->numel() * int64_t(t->element_size());
  return b;
}

void Nf4Tensor::check(const std::string& what) const {
  const auto fail = [&](const std::string& why) {
    return Error(str("NF4 weight is inconsistent: ", why))
        .at(what)
        .hint(
            "write the pre-quantized folder again with transformers + bitsandbytes, or load the bf16 weights "
            "and let hsloth quantize them");
  };
  if (shape.empty()) throw fail("empty shape");
  for (int64_t d : shape)
    if (d <= 0) throw fail(str("shape has a dimension ", d));
  if (blocksize != kBlock) throw fail(str("blocksize ", blocksize, " (", kSupported, ")"));
  if (nested_blocksize != kNestedBlock)
    throw fail(str("nested_blocksize ", nested_blocksize, " (", kSupported, ")"));
  (void)dtype_json_name(dtype);
  const auto want = [&](const at::Tensor& t, const char* name, at::ScalarType type, int64_t n) {
    if (!t.defined()) throw fail(str(name, " is missing"));
    if (t.scalar_type() != type)
      throw fail(str(name, " has type ", c10::toString(t.scalar_type()), ", expected ", c10::toString(type)));
    if (t.numel() != n) throw fail(str(name, " has ", t.numel(), " elements, expected ", n));
    if (t.device() != packed.device())
      throw fail(str(name, " is on ", t.device().str(), ", packed on ", packed.device().str()));
  };
  const int64_t n = numel(), nb = blocks();
  want(packed, "packed", at::kByte, ceil_div(n, 2));
  want(absmax, "absmax", at::kByte, nb);
  want(code, "quant_map", at::kFloat, 16);
  want(nested_absmax, "nested_absmax", at::kFloat, ceil_div(nb, nested_blocksize));
  want(nested_code, "nested_quant_map", at::kFloat, 256);
}

at::Tensor nf4_code() {
  // bitsandbytes.functional.get_4bit_type("nf4") (float32 values; typed from its source).
  static const float values[16] = {-1.0f,
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
  return at::from_blob(const_cast<float*>(values), {16}, at::kFloat).clone();
}

at::Tensor dynamic_code() {
  // bitsandbytes.functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), with the same
  // float32 operations: for exponent i, the midpoints of linspace(0.1, 1, 2^i + 1) times +-10^(i-6).
  std::vector<at::Tensor> parts;
  for (int i = 0; i < 7; ++i) {
    const at::Tensor b = at::linspace(0.1, 1.0, (int64_t(1) << i) + 1, at::kFloat);
    const at::Tensor means = (b.slice(0, 0, -1) + b.slice(0, 1)) / 2.0;
    const double scale = i == 6 ? 1.0 : std::pow(10.0, double(i - 6));
    parts.push_back(means * scale);
    parts.push_back(means * -scale);
  }
  parts.push_back(at::tensor({0.0f, 1.0f}, at::kFloat));
  return std::get<0>(at::sort(at::cat(parts)));
}

Nf4Tensor quantize_nf4_reference(const at::Tensor& weight) {
  if (!weight.defined() || weight.dim() < 1 || weight.numel() == 0)
    throw Error("quantize_nf4: the weight is empty").hint("NF4 quantizes non-empty float weights");
  const at::ScalarType st = weight.scalar_type();
  if (st != at::kBFloat16 && st != at::kHalf && st != at::kFloat)
    throw Error(str("quantize_nf4: weight of type ", c10::toString(st)))
        .hint("NF4 quantizes bfloat16, float16 or float32 weights");
  const at::Device dev = weight.device();
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(dev);
  const at::Tensor a = weight.reshape(-1).to(at::kFloat);
  const int64_t n = a.numel(), rem = n % kBlock, full = n - rem, nfull = full / kBlock;

  Nf4Tensor q;
  q.shape = weight.sizes().vec();
  q.dtype = st;
  q.code = nf4_code().to(dev);
  q.nested_code = dynamic_code().to(dev);

  // 4-bit codes of each 64-block, as bitsandbytes' quantize_4bit (pure torch, its CPU path).
  std::vector<at::Tensor> absmax_parts, scaled_parts;
  if (nfull > 0) {
    const at::Tensor blocks = a.slice(0, 0, full).view({nfull, kBlock});
    const at::Tensor am = std::get<0>(blocks.abs().max(1));
    absmax_parts.push_back(am);
    scaled_parts.push_back(
        (blocks * (am.clamp_min(1e-38).reciprocal() * 1.0).view({-1, 1})).clamp(-1, 1).view(-1));
  }
  if (rem > 0) {
    const at::Tensor tail = a.slice(0, full);
    const at::Tensor am = tail.abs().max().clamp_min(1e-38);
    absmax_parts.push_back(am.view({1}));
    scaled_parts.push_back((tail / am).clamp(-1, 1));
  }
  const at::Tensor raw_absmax = at::cat(absmax_parts);
  at::Tensor scaled = at::cat(scaled_parts);
  if (scaled.numel() % 2) scaled = at::constant_pad_nd(scaled, {0, 1}, 0);
  const at::Tensor bounds = (q.code.slice(0, 0, -1) + q.code.slice(0, 1)) / 2;
  const at::Tensor q4 = at::bucketize(scaled, bounds, /*out_int32=*/true).to(at::kByte).view({-1, 2});
  q.packed =
      at::bitwise_or(at::bitwise_left_shift(q4.select(1, 0), 4), q4.select(1, 1)).contiguous().view({-1, 1});

  // Double quantization of the absmax: offset = mean, 8-bit codes of (absmax - offset) in 256-blocks.
  const at::Tensor mean = raw_absmax.mean();
  q.offset = mean.item<float>();
  const at::Tensor x = raw_absmax - mean;
  const int64_t nb = x.numel(), nnested = ceil_div(nb, kNestedBlock);
  const at::Tensor xp =
      at::constant_pad_nd(x, {0, nnested * kNestedBlock - nb}, 0).view({nnested, kNestedBlock});
  q.nested_absmax = std::get<0>(xp.abs().max(1)).contiguous();
  // Scale by the float32 reciprocal of the 256-block's max |x|; a block of max 0 (all absmax equal) gets code
  // 0.
  const at::Tensor m = q.nested_absmax.repeat_interleave(kNestedBlock).slice(0, 0, nb);
  const at::Tensor normed = x * at::where(m == 0, at::zeros({}, f32), m.reciprocal());
  q.absmax = at::where(m == 0, at::zeros({}, at::kLong), cpu_lut_codes(q.nested_code, normed)).to(at::kByte);
  return q;
}

#if HS_HAVE_KERNELS
namespace {

void check_launch(int code, const char* what) {
  if (code != 0) throw Error(str(what, " failed: ", kernels::error_string(code)));
}

kernels::Nf4Out kernel_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return kernels::Nf4Out::f32;
    case at::kBFloat16:
      return kernels::Nf4Out::bf16;
    case at::kHalf:
      return kernels::Nf4Out::f16;
    default:
      throw Error(str("NF4 kernels work on bfloat16, float16 or float32, not ", c10::toString(t)));
  }
}

// Writes q's dequantized values (in q.dtype) into `out`: contiguous, q.numel() elements of q.dtype on q's device.
void dequantize_nf4_cuda_into(const Nf4Tensor& q, at::Tensor& out) {
  c10::cuda::CUDAGuard guard(q.packed.device());
  const auto contig = [](const at::Tensor& t) { return t.contiguous(); };
  const at::Tensor packed = contig(q.packed), absmax = contig(q.absmax), code = contig(q.code),
                   nabs = contig(q.nested_absmax), ncode = contig(q.nested_code);
  check_launch(
      kernels::nf4_dequantize(packed.data_ptr<uint8_t>(), absmax.data_ptr<uint8_t>(), code.data_ptr<float>(),
                              nabs.data_ptr<float>(), ncode.data_ptr<float>(), q.offset, out.data_ptr(),
                              q.numel(), kernel_type(q.dtype), c10::cuda::getCurrentCUDAStream().stream()),
      "nf4_dequantize");
}

at::Tensor dequantize_nf4_cuda(const Nf4Tensor& q) {
  q.check("dequantize_nf4");
  at::Tensor out = at::empty(q.shape, q.packed.options().dtype(q.dtype));
  dequantize_nf4_cuda_into(q, out);
  return out;
}

Nf4Tensor quantize_nf4_cuda(const at::Tensor& weight) {
  if (weight.numel() == 0) return quantize_nf4_reference(weight);  // its error
  c10::cuda::CUDAGuard guard(weight.device());
  const auto stream = c10::cuda::getCurrentCUDAStream().stream();
  const at::Tensor w = weight.contiguous();
  Nf4Tensor q;
  q.shape = w.sizes().vec();
  q.dtype = w.scalar_type();
  const auto in_type = kernel_type(q.dtype);
  const int64_t n = w.numel(), nb = ceil_div(n, kBlock), nn = ceil_div(nb, kNestedBlock);
  const auto u8 = w.options().dtype(at::kByte);
  const auto f32 = w.options().dtype(at::kFloat);
  q.code = nf4_code().to(w.device());
  // bitsandbytes' CUDA quantizer searches (and stores) the map as created; its CPU one sets entry 0 to -1.
  q.nested_code = dynamic_code().to(w.device());
  q.packed = at::empty({ceil_div(n, 2), 1}, u8);
  at::Tensor raw = at::empty({nb}, f32);
  check_launch(kernels::nf4_quantize_blocks(w.data_ptr(), in_type, n, q.packed.data_ptr<uint8_t>(),
                                            raw.data_ptr<float>(), stream),
               "nf4_quantize_blocks");
  const at::Tensor mean = raw.mean();  // torch's CUDA mean, as bitsandbytes' _absmax.mean()
  q.offset = mean.item<float>();
  q.absmax = at::empty({nb}, u8);
  q.nested_absmax = at::empty({nn}, f32);
  check_launch(
      kernels::nf4_quantize_absmax(raw.data_ptr<float>(), nb, q.offset, q.nested_code.data_ptr<float>(),
                                   q.absmax.data_ptr<uint8_t>(), q.nested_absmax.data_ptr<float>(), stream),
      "nf4_quantize_absmax");
  return q;
}

}  // namespace
#endif

Nf4Tensor quantize_nf4(const at::Tensor& weight) {
#if HS_HAVE_KERNELS
  if (weight.is_cuda()) {
    // The GPU quantizer (bitsandbytes' CUDA rounding); see kernels/nf4.h.
    return quantize_nf4_cuda(weight);
  }
#endif
  return quantize_nf4_reference(weight);
}

at::Tensor dequantize_nf4_reference(const Nf4Tensor& q) {
  q.check("dequantize_nf4");
  const int64_t n = q.numel(), nb = q.blocks();
  // absmax = nested_code[code] * nested_absmax (one rounding), then + offset (another).
  at::Tensor absmax = q.nested_code.index_select(0, q.absmax.to(at::kLong)) *
                      q.nested_absmax.repeat_interleave(q.nested_blocksize).slice(0, 0, nb);
  absmax = absmax + at::scalar_tensor(q.offset, absmax.options());
  const at::Tensor p = q.packed.view(-1);
  const at::Tensor idx =
      at::stack({at::bitwise_right_shift(p, 4), at::bitwise_and(p, 15)}, 1).view(-1).slice(0, 0, n);
  const at::Tensor vals = q.code.index_select(0, idx.to(at::kLong));
  const at::Tensor scale = absmax.repeat_interleave(q.blocksize).slice(0, 0, n);
  return (vals * scale).to(q.dtype).view(q.shape);
}

at::Tensor dequantize_nf4(const Nf4Tensor& q) {
#if HS_HAVE_KERNELS
  if (q.device().is_cuda()) return dequantize_nf4_cuda(q);
#endif
  return dequantize_nf4_reference(q);
}

void dequantize_nf4_into(const Nf4Tensor& q, at::Tensor& out) {
  q.check("dequantize_nf4");
  HS_CHECK(out.is_contiguous() && out.numel() == q.numel() && out.device() == q.device(),
           "dequantize_nf4_into: the output must be contiguous, hold ", q.numel(), " values and lie on ",
           q.device().str(), " (got ", out.numel(), " on ", out.device().str(), ")");
#if HS_HAVE_KERNELS
  if (q.device().is_cuda() && out.scalar_type() == q.dtype) {
    dequantize_nf4_cuda_into(q, out);
    return;
  }
#endif
  out.copy_(dequantize_nf4(q).view(out.sizes()));
}

// ---- transformers' pre-quantized layout ---------------------------------------------------------------

bool has_nf4(const io::Checkpoint& ck, const std::string& name) {
  return ck.contains(name + kStateSuffix) || ck.contains(name + ".quant_state.bitsandbytes__fp4");
}

Nf4Tensor read_nf4(const io::Checkpoint& ck, const std::string& name, at::Device device) {
  const std::string where = str(ck.source(), ": ", name);
  const std::string state_name = name + kStateSuffix;
  if (ck.contains(name + ".quant_state.bitsandbytes__fp4"))
    throw Error(str("4-bit weight '", name, "' is stored as fp4 (tensor '", name,
                    ".quant_state.bitsandbytes__fp4'); ", kSupported))
        .at(ck.source())
        .hint(
            "quantize the model with bnb_4bit_quant_type=\"nf4\", or give the bf16 model (hsloth quantizes "
            "it)");
  const io::TensorInfo* st = ck.find(state_name);
  if (st == nullptr)
    throw Error(str("no NF4 quant state '", state_name, "' for weight '", name, "'"))
        .at(ck.source())
        .hint(
            "a pre-quantized folder holds <weight>.quant_state.bitsandbytes__nf4 next to each 4-bit weight");
  if (st->dtype != io::DType::U8 || st->shape.size() != 1)
    throw Error(str("tensor '", state_name, "' must be uint8 [bytes] (the quant state JSON)"))
        .at(ck.source())
        .hint("write the folder again with transformers + bitsandbytes");
  const std::string text(reinterpret_cast<const char*>(st->data), st->nbytes);
  const nlohmann::json j = io::parse_json(
      text, str(ck.source(), ": ", state_name),
      {"the NF4 quant state is not valid JSON", "write the folder again with transformers + bitsandbytes"});
  const auto bad_key = [&](const std::string& key, const std::string& why) {
    return Error(str("tensor '", state_name, "', key '", key, "': ", why, " (", kSupported, ")"))
        .at(ck.source())
        .hint(
            "use an NF4 double-quantized checkpoint (BitsAndBytesConfig(load_in_4bit=True, "
            "bnb_4bit_quant_type=\"nf4\", bnb_4bit_use_double_quant=True)), or the bf16 model");
  };
  const auto get = [&](const char* key) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(key)) throw bad_key(key, "missing");
    return j.at(key);
  };
  const auto get_int = [&](const char* key) {
    const nlohmann::json& v = get(key);
    if (!v.is_number_integer()) throw bad_key(key, str("not an integer: ", v.dump()));
    return v.get<int64_t>();
  };
  const auto get_str = [&](const char* key) {
    const nlohmann::json& v = get(key);
    if (!v.is_string()) throw bad_key(key, str("not a string: ", v.dump()));
    return v.get<std::string>();
  };
  Nf4Tensor q;
  if (const std::string t = get_str("quant_type"); t != "nf4")
    throw bad_key("quant_type", str("\"", t, "\""));
  if (!j.contains("nested_offset") && !j.contains("nested_blocksize"))
    throw bad_key("nested_offset", "missing: the checkpoint has no double quantization");
  q.blocksize = get_int("blocksize");
  if (q.blocksize != kBlock) throw bad_key("blocksize", std::to_string(q.blocksize));
  q.nested_blocksize = get_int("nested_blocksize");
  if (q.nested_blocksize != kNestedBlock)
    throw bad_key("nested_blocksize", std::to_string(q.nested_blocksize));
  if (const std::string t = get_str("nested_dtype"); t != "float32")
    throw bad_key("nested_dtype", str("\"", t, "\""));
  const std::string dt = get_str("dtype");
  if (dt == "bfloat16")
    q.dtype = at::kBFloat16;
  else if (dt == "float16")
    q.dtype = at::kHalf;
  else if (dt == "float32")
    q.dtype = at::kFloat;
  else
    throw bad_key("dtype", str("\"", dt, "\""));
  const nlohmann::json& shape = get("shape");
  if (!shape.is_array() || shape.empty()) throw bad_key("shape", str("not a list of sizes: ", shape.dump()));
  for (const auto& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0)
      throw bad_key("shape", str("bad size in ", shape.dump()));
    q.shape.push_back(d.get<int64_t>());
  }
  const nlohmann::json& off = get("nested_offset");
  if (!off.is_number()) throw bad_key("nested_offset", str("not a number: ", off.dump()));
  q.offset = float(off.get<double>());

  const auto load = [&](const std::string& tname, at::ScalarType type) {
    const io::TensorInfo* info = ck.find(tname);
    if (info == nullptr)
      throw Error(str("NF4 weight '", name, "' has no tensor '", tname, "'"))
          .at(ck.source())
          .hint(
              "a pre-quantized weight needs .absmax, .quant_map, .nested_absmax, .nested_quant_map and the "
              "quant "
              "state next to it; write the folder again with transformers + bitsandbytes");
    if (model::to_scalar_type(info->dtype) != type)
      throw Error(str("tensor '", tname, "' has dtype ", io::dtype_name(info->dtype), ", expected ",
                      c10::toString(type)))
          .at(ck.source())
          .hint("write the folder again with transformers + bitsandbytes");
    return model::load_tensor(*info, at::ScalarType::Undefined, device).contiguous();
  };
  q.packed = load(name, at::kByte).view({-1, 1});
  q.absmax = load(name + ".absmax", at::kByte).view(-1);
  q.code = load(name + ".quant_map", at::kFloat).view(-1);
  q.nested_absmax = load(name + ".nested_absmax", at::kFloat).view(-1);
  q.nested_code = load(name + ".nested_quant_map", at::kFloat).view(-1);
  q.check(where);
  return q;
}

std::vector<std::pair<std::string, at::Tensor>> nf4_tensors_for_save(const std::string& name,
                                                                     const Nf4Tensor& q) {
  q.check(str("saving ", name));
  // The quant state JSON as bitsandbytes' QuantState.as_dict(packed=True) writes it (same keys and order).
  nlohmann::ordered_json j;
  j["quant_type"] = "nf4";
  j["blocksize"] = q.blocksize;
  j["dtype"] = dtype_json_name(q.dtype);
  j["shape"] = q.shape;
  j["nested_blocksize"] = q.nested_blocksize;
  j["nested_dtype"] = "float32";
  j["nested_offset"] = double(q.offset);
  const std::string text = j.dump();
  at::Tensor state = at::empty({int64_t(text.size())}, at::kByte);
  std::memcpy(state.data_ptr(), text.data(), text.size());
  const auto host = [](const at::Tensor& t) { return t.to(at::kCPU).contiguous(); };
  return {{name, host(q.packed)},
          {name + ".absmax", host(q.absmax)},
          {name + ".quant_map", host(q.code)},
          {name + ".nested_absmax", host(q.nested_absmax)},
          {name + ".nested_quant_map", host(q.nested_code)},
          {name + kStateSuffix, state}};
}

}  // namespace hs::quant
