// HF folder writing (see hf_export.h): io::ShardedWriter for the weights, io::write_hf_side_files for the
// rest.
#include "model/hf_export.h"

#include "io/file.h"
#include "io/hf_folder.h"
#include "model/tensor_io.h"

namespace hs::model {

HfFolderWritten write_hf_folder(const std::string& out_dir, const std::string& base_dir,
                                const std::vector<io::TensorSpec>& specs,
                                const std::function<void(size_t index, const PutBytes& put)>& fill,
                                size_t max_shard_bytes, const std::string& dtype_name) {
  io::make_dirs(out_dir);
  io::ShardedWriter writer(out_dir, specs, max_shard_bytes, {{"format", "pt"}});
  for (size_t i = 0; i < specs.size(); ++i)
    fill(i, [&](const void* data, size_t nbytes) { writer.put(specs[i].name, data, nbytes); });
  writer.finish();
  HfFolderWritten w;
  w.shards = writer.shard_count();
  w.side_files = io::write_hf_side_files(base_dir, out_dir, dtype_name);
  return w;
}

HfFolderWritten save_hf_folder(const Model& model, const std::string& base_dir, const std::string& out_dir,
                               size_t max_shard_bytes) {
  std::vector<io::TensorSpec> specs;
  std::vector<at::Tensor> host;
  for (const auto& nt : model.named_parameters()) {
    host.push_back(nt.tensor.detach().to(at::kCPU).contiguous());
    io::DType dt = host.back().scalar_type() == at::kBFloat16 ? io::DType::BF16 : io::DType::F32;
    specs.push_back({nt.name, dt, host.back().sizes().vec()});
  }
  const std::string dtype_name = model.options().dtype == at::kBFloat16 ? "bfloat16" : "float32";
  return write_hf_folder(
      out_dir, base_dir, specs,
      [&](size_t i, const PutBytes& put) { put(host[i].data_ptr(), size_t(host[i].nbytes())); },
      max_shard_bytes, dtype_name);
}

}  // namespace hs::model
