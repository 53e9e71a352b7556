// Decoder loading and forward; see model.h. Shapes are checked against config.json tensor by tensor so a
// wrong checkpoint fails with the tensor's name, not deep inside a matmul.
#include "model/model.h"

#include <algorithm>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "model/device_copy.h"
#include "model/tensor_io.h"

namespace hs::model {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// A projection's dense base and LoRA branch, when it has both (for the fused blocks of ops).
std::optional<ops::LoraProj> lora_parts(const Projection& p) {
  auto lr = p.low_rank();
  if (!lr) return std::nullopt;
  if (const DenseLinear* d = p.dense())
    return ops::LoraProj{d->weight, d->bias, lr->a, lr->b, lr->scaling, lr->dropout};
  if (const Projection* packed = p.packed_base())
    return ops::LoraProj{at::Tensor(), packed->packed_bias(), lr->a, lr->b, lr->scaling, lr->dropout, packed};
  return std::nullopt;
}

// Lays the weights of dense projections back to back in one buffer (each weight becomes a row slice of
// it), so the fused q/k/v and gate/up paths run one GEMM over them without copying; the values and every
// other use of the weights are unchanged.
void lay_out_adjacent(const std::vector<DenseLinear*>& ps) {
  for (const DenseLinear* p : ps)
    if (!p || p->weight.dim() != 2 || p->weight.size(1) != ps[0]->weight.size(1)) return;
  std::vector<at::Tensor> ws;
  for (const DenseLinear* p : ps) ws.push_back(p->weight);
  const at::Tensor all = at::cat(ws, 0);
  int64_t row = 0;
  for (DenseLinear* p : ps) {
    const int64_t rows = p->weight.size(0);
    p->weight = all.narrow(0, row, rows);
    row += rows;
  }
}

}  // namespace

at::Tensor packed_position_ids(const at::Tensor& cu_seqlens, int64_t batch, int64_t seq_len) {
  at::Tensor cu = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
  const int64_t* p = cu.data_ptr<int64_t>();
  const int64_t n = cu.numel(), total = batch * seq_len;
  HS_CHECK(n >= 2 && p[0] == 0 && p[n - 1] == total, "cu_seqlens must run from 0 to B*T");
  at::Tensor pos = at::zeros({total}, at::kLong);
  int64_t* q = pos.data_ptr<int64_t>();
  for (int64_t i = 0; i + 1 < n; ++i) {
    HS_CHECK(p[i + 1] >= p[i] && p[i + 1] <= total, "cu_seqlens must be non-decreasing");
    for (int64_t t = p[i]; t < p[i + 1]; ++t) q[t] = t - p[i];
  }
  return pos.view({batch, seq_len}).to(cu_seqlens.device());
}

Model Model::load(const std::string& path, const LoadOptions& options) {
  Model m;
  m.path_ = path;
  m.options_ = options;
  m.config_ = io::load_hf_config(path);
  const io::HfConfig& c = m.config_;
  if (c.quantization.nf4 && !options.projection_factory)
    throw Error(
        "the folder holds pre-quantized NF4 (bitsandbytes 4-bit) weights: config.json has a "
        "quantization_config")
        .at(c.source)
        .hint(
            "load it through hs::quant's NF4 projection factory (hsloth's train, eval and generate do "
            "so by themselves)");
  io::Checkpoint ck = io::Checkpoint::open(path);
  std::set<std::string> used;

  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    const io::TensorInfo& t = ck.get(name);
    if (t.shape != shape)
      throw Error(str("tensor '", name, "' has shape ", shape_str(t.shape), " but config.json implies ",
                      shape_str(shape)))
          .at(t.file)
          .hint("config.json and the weights do not belong together");
    if (t.dtype != io::DType::F32 && t.dtype != io::DType::BF16 && t.dtype != io::DType::F16)
      throw Error(
          str("tensor '", name, "' has dtype ", io::dtype_name(t.dtype), "; expected F32, BF16 or F16"))
          .at(t.file);
    used.insert(name);
    return load_tensor(t, options.dtype, options.device);
  };
  const int64_t H = c.hidden_size, V = c.vocab_size, D = c.head_dim;

  m.embed_ = get(names::tensor(Slot::embed), {V, H});
  m.norm_ = get(names::tensor(Slot::final_norm), {H});
  const std::string lm = names::tensor(Slot::lm_head);
  if (c.tie_word_embeddings || !ck.contains(lm)) {
    if (!c.tie_word_embeddings && c.tie_word_embeddings_given)
      log::warn("config.json says tie_word_embeddings=false but the checkpoint has no ", lm,
                "; tying it to the input embedding");
    m.tied_ = true;
    m.lm_head_ = m.embed_;
    if (ck.contains(lm)) used.insert(lm);  // transformers ties and ignores the stored copy too
  } else {
    m.lm_head_ = get(lm, {V, H});
  }

  m.layers_.resize(size_t(c.num_hidden_layers));
  for (int i = 0; i < int(c.num_hidden_layers); ++i) {
    Layer& L = m.layers_[size_t(i)];
    L.input_norm = get(names::tensor(Slot::input_norm, i), {H});
    L.post_attn_norm = get(names::tensor(Slot::post_attn_norm, i), {H});
    if (c.qk_norm) {
      L.q_norm = get(names::tensor(Slot::q_norm, i), {D});
      L.k_norm = get(names::tensor(Slot::k_norm, i), {D});
    }
    for (Proj p : kAllProjs) {
      auto [out, in] = proj_shape(c, p);
      const bool has_bias = proj_has_bias(c, p);
      if (options.projection_factory) {
        ProjectionSource src;
        src.layer = i;
        src.proj = p;
        src.checkpoint = &ck;
        src.weight_name = names::weight(i, p);
        src.bias_name = has_bias ? names::bias(i, p) : std::string();
        src.shape = {out, in};
        src.device = options.device;
        src.dtype = options.dtype;
        src.load_weight = [&, name = src.weight_name, out = out, in = in] { return get(name, {out, in}); };
        src.load_bias = [&, name = src.bias_name, out = out] {
          return name.empty() ? at::Tensor() : get(name, {out});
        };
        src.mark_used = [&](const std::string& name) { used.insert(name); };
        L.proj[size_t(p)] = options.projection_factory(src);
        HS_CHECK(L.proj[size_t(p)] && L.proj[size_t(p)]->out_features() == out &&
                     L.proj[size_t(p)]->in_features() == in,
                 "the projection factory built a projection of the wrong shape");
        continue;
      }
      at::Tensor w = get(names::weight(i, p), {out, in});
      at::Tensor b = has_bias ? get(names::bias(i, p), {out}) : at::Tensor();
      L.proj[size_t(p)] = std::make_shared<DenseLinear>(std::move(w), std::move(b));
    }
    if (options.device.is_cuda()) {
      auto dense = [&](Proj p) { return std::dynamic_pointer_cast<DenseLinear>(L.proj[size_t(p)]).get(); };
      lay_out_adjacent({dense(Proj::q), dense(Proj::k), dense(Proj::v)});
      lay_out_adjacent({dense(Proj::gate), dense(Proj::up)});
    }
  }
  std::vector<std::string> extra;
  for (const std::string& n : ck.names())
    if (!used.count(n) && n.find("rotary_emb.inv_freq") == std::string::npos) extra.push_back(n);
  if (!extra.empty())
    log::warn(extra.size(), " tensor(s) of ", ck.source(), " are not used by the ", c.model_type,
              " model (first: ", extra.front(), ")");
  m.ensure_rope(std::min<int64_t>(c.max_position_embeddings, 4096));
  return m;
}

void Model::ensure_rope(int64_t positions) const {
  if (rope_.positions() >= positions) return;
  int64_t n = std::max<int64_t>(positions, std::max<int64_t>(256, 2 * rope_.positions()));
  rope_ = ops::rope_table(config_, n, options_.device);
}

at::Tensor Model::embed(const at::Tensor& input_ids) const {
  return at::embedding(embed_, input_ids.to(at::kLong));
}

at::Tensor Model::layer_forward(int i, const at::Tensor& hidden, const at::Tensor& positions,
                                const ops::AttentionLayout& layout, KvCache* cache) const {
  const Layer& L = layers_.at(size_t(i));
  const double eps = config_.rms_norm_eps;
  const int64_t B = hidden.size(0), T = hidden.size(1), D = config_.head_dim;
  at::Tensor x = ops::rms_norm(hidden, L.input_norm, eps);
  at::Tensor q, k, v;
  auto pq = lora_parts(L[Proj::q]), pk = lora_parts(L[Proj::k]), pv = lora_parts(L[Proj::v]);
  if (pq && pk && pv && ops::lora_qkv_has_fast_path(x, *pq, *pk, *pv, training_)) {
    auto parts = at::split_with_sizes(ops::lora_qkv_fast(x, *pq, *pk, *pv),
                                      {pq->b.size(0), pk->b.size(0), pv->b.size(0)}, -1);
    // v is copied out: attention saves it, and a view would keep the whole [N, q + k + v] output alive
    // until the backward (q and k are consumed by RoPE / the q/k norms, which make their own copies).
    q = parts[0].view({B, T, -1, D}), k = parts[1].view({B, T, -1, D});
    v = parts[2].contiguous().view({B, T, -1, D});
  } else {
    q = L[Proj::q].forward(x, training_).view({B, T, -1, D});
    k = L[Proj::k].forward(x, training_).view({B, T, -1, D});
    v = L[Proj::v].forward(x, training_).view({B, T, -1, D});
  }
  if (config_.qk_norm) {
    q = ops::rms_norm(q, L.q_norm, eps);
    k = ops::rms_norm(k, L.k_norm, eps);
  }
  q = ops::rope(q.transpose(1, 2), rope_, positions);
  k = ops::rope(k.transpose(1, 2), rope_, positions);
  v = v.transpose(1, 2);
  if (cache) {
    const int64_t start = cache->length_;
    cache->k_[size_t(i)].slice(2, start, start + T).copy_(k);
    cache->v_[size_t(i)].slice(2, start, start + T).copy_(v);
    k = cache->k_[size_t(i)].slice(2, 0, start + T);
    v = cache->v_[size_t(i)].slice(2, 0, start + T);
  }
  at::Tensor a = ops::attention(q, k, v, layout).transpose(1, 2).reshape({B, T, -1});
  at::Tensor h = hidden + L[Proj::o].forward(a, training_);
  x = ops::rms_norm(h, L.post_attn_norm, eps);
  auto gate = lora_parts(L[Proj::gate]), up = lora_parts(L[Proj::up]), down = lora_parts(L[Proj::down]);
  if (gate && up && down && ops::lora_mlp_has_fast_path(x, *gate, *up, *down, training_))
    return h + ops::lora_mlp_fast(x, *gate, *up, *down);
  at::Tensor mlp = L[Proj::down].forward(
      ops::swiglu(L[Proj::gate].forward(x, training_), L[Proj::up].forward(x, training_)), training_);
  return h + mlp;
}

at::Tensor Model::final_norm(const at::Tensor& hidden) const {
  return ops::rms_norm(hidden, norm_, config_.rms_norm_eps);
}

at::Tensor Model::lm_head(const at::Tensor& hidden) const { return ops::linear(hidden, lm_head_, {}); }

at::Tensor Model::hidden_states(const Inputs& in, KvCache* cache) const {
  HS_CHECK(in.input_ids.dim() == 2, "input_ids must be [batch, seq_len]");
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  HS_CHECK(T > 0 && B > 0, "empty batch");
  const at::Device dev = options_.device;
  // Host inputs (the trainer's micro-batches) are checked on the host and then copied without a sync
  // (device_copy.h); device inputs (generate) are checked where they are. HS_SYNC_INPUTS=1: copy, then check.
  const bool sync = sync_inputs();
  at::Tensor ids = sync ? in.input_ids.to(dev, at::kLong) : in.input_ids.to(at::kLong);
  {
    int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw Error(
          str("token id ", lo < 0 ? lo : hi, " is outside the vocabulary [0, ", config_.vocab_size, ")"))
          .at(path_)
          .hint("the data was tokenized with a different tokenizer than this model's");
  }
  ids = to_device(ids, dev);
  const int64_t offset = cache ? cache->length_ : 0;
  if (cache) {
    HS_CHECK(!in.cu_seqlens.defined(), "packed rows cannot be decoded with a KV cache");
    HS_CHECK(cache->k_.size() == layers_.size() && cache->k_[0].size(0) == B, "cache made for another batch");
    if (offset + T > cache->capacity_)
      throw Error(
          str("KV cache full: ", offset, " + ", T, " tokens exceed its capacity of ", cache->capacity_))
          .hint("allocate a larger cache (generate: lower --max-new or a shorter prompt)");
  }
  at::Tensor positions;
  int64_t max_pos = offset + T;
  if (in.position_ids.defined()) {
    positions = sync ? in.position_ids.to(dev, at::kLong) : in.position_ids.to(at::kLong);
    HS_CHECK(positions.sizes() == ids.sizes(), "position_ids must match input_ids");
    HS_CHECK(positions.min().item<int64_t>() >= 0, "negative position id");
    max_pos = positions.max().item<int64_t>() + 1;
    positions = to_device(positions, dev);
  } else if (in.cu_seqlens.defined()) {
    positions = to_device(packed_position_ids(in.cu_seqlens, B, T), dev);
  } else {
    positions =
        at::arange(offset, offset + T, at::TensorOptions().dtype(at::kLong).device(dev)).expand({B, T});
  }
  ensure_rope(max_pos);
  ops::AttentionLayout layout = ops::attention_layout(in.cu_seqlens, B, T, dev);
  config_.check_sequence_length(cache ? offset + T : layout.max_seqlen, path_);
  at::Tensor h = embed(ids);
  for (int i = 0; i < num_layers(); ++i) {
    if (runner_ && !cache)
      h = runner_(i, h, [this, i, positions, layout](const at::Tensor& x) {
        return layer_forward(i, x, positions, layout, nullptr);
      });
    else
      h = layer_forward(i, h, positions, layout, cache);
  }
  if (cache) cache->length_ += T;
  return final_norm(h);
}

at::Tensor Model::forward(const Inputs& inputs, KvCache* cache) const {
  return lm_head(hidden_states(inputs, cache));
}

ops::LossSum Model::loss_from_hidden(const at::Tensor& hidden, const at::Tensor& input_ids,
                                     const at::Tensor& positions, const at::Tensor& loss_mask) const {
  HS_CHECK(loss_mask.sizes() == input_ids.sizes(), "loss_mask must match input_ids");
  const at::Device dev = hidden.device();
  if (!sync_inputs() && loss_mask.is_cpu() && (!positions.defined() || positions.is_cpu())) {
    // The trained positions are found on the host and sent as (row, column) indices: indexing by a mask on
    // the device would sync (nonzero) to learn their count. The same gather as the mask's, in the same order.
    at::Tensor mask = loss_mask.slice(1, 1).to(at::kBool);
    if (positions.defined()) mask = at::logical_and(mask, positions.slice(1, 1) > 0);
    const at::Tensor where = to_device(mask.nonzero().t().contiguous(), dev);  // [2, N]
    const at::Tensor rows = where[0], cols = where[1];
    at::Tensor h = hidden.slice(1, 0, -1).index({rows, cols});  // [N, hidden]
    at::Tensor targets = input_ids.is_cpu()
                             ? to_device(input_ids.to(at::kLong).slice(1, 1).index({mask}), dev)
                             : input_ids.to(dev, at::kLong).slice(1, 1).index({rows, cols});  // [N]
    return ops::linear_cross_entropy(h, lm_head_, targets);
  }
  at::Tensor mask = loss_mask.to(dev).slice(1, 1).to(at::kBool);
  if (positions.defined()) mask = at::logical_and(mask, positions.to(dev).slice(1, 1) > 0);
  at::Tensor h = hidden.slice(1, 0, -1).index({mask});                          // [N, hidden]
  at::Tensor targets = input_ids.to(dev, at::kLong).slice(1, 1).index({mask});  // [N]
  return ops::linear_cross_entropy(h, lm_head_, targets);
}

ops::LossSum Model::loss(const Inputs& inputs, const at::Tensor& loss_mask) const {
  const int64_t B = inputs.input_ids.size(0), T = inputs.input_ids.size(1);
  at::Tensor positions = inputs.position_ids;
  if (!positions.defined() && inputs.cu_seqlens.defined())
    positions = packed_position_ids(inputs.cu_seqlens, B, T);
  Inputs in = inputs;
  in.position_ids = positions;
  at::Tensor hidden = hidden_states(in);
  return loss_from_hidden(hidden, inputs.input_ids, positions, loss_mask);
}

KvCache Model::make_cache(int64_t batch, int64_t capacity) const {
  KvCache c;
  c.capacity_ = capacity;
  auto opts = at::TensorOptions().dtype(options_.dtype).device(options_.device);
  for (size_t i = 0; i < layers_.size(); ++i) {
    c.k_.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim}, opts));
    c.v_.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim}, opts));
  }
  ensure_rope(capacity);
  return c;
}

std::vector<NamedTensor> Model::named_parameters() const {
  std::vector<NamedTensor> out;
  out.push_back({names::tensor(Slot::embed), embed_});
  for (int i = 0; i < num_layers(); ++i) {
    const Layer& L = layers_[size_t(i)];
    for (Proj p : kAllProjs) {
      const DenseLinear* d = L.proj[size_t(p)]->dense();
      if (!d) throw Error(str(names::module(i, p), " has no dense base weight (quantized?)"));
      out.push_back({names::weight(i, p), d->weight});
      if (d->bias.defined()) out.push_back({names::bias(i, p), d->bias});
      if (p == Proj::o && config_.qk_norm) {  // transformers' module order: q/k/v/o, then q_norm, k_norm
        out.push_back({names::tensor(Slot::q_norm, i), L.q_norm});
        out.push_back({names::tensor(Slot::k_norm, i), L.k_norm});
      }
    }
    out.push_back({names::tensor(Slot::input_norm, i), L.input_norm});
    out.push_back({names::tensor(Slot::post_attn_norm, i), L.post_attn_norm});
  }
  out.push_back({names::tensor(Slot::final_norm), norm_});
  if (!tied_) out.push_back({names::tensor(Slot::lm_head), lm_head_});
  return out;
}

void Model::set_full_finetune(bool on) {
  for (auto& nt : named_parameters()) nt.tensor.requires_grad_(on);
}

}  // namespace hs::model
