// Writing a Hugging Face model folder, once for both producers (`hsloth merge` and the trainer's full
// fine-tuning `final/`): the weights as sharded safetensors (+ index when there are several shards) in the
// order given, then config.json from the base folder (its torch_dtype set to the written dtype) and the
// generation, tokenizer and chat-template files copied (io::write_hf_side_files), so transformers (and
// hsloth) load the folder as they load the base.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/model.h"

namespace hs::model {

// put(data, nbytes) hands the bytes of one tensor to the writer; they may be freed once it returns.
using PutBytes = std::function<void(const void* data, size_t nbytes)>;

struct HfFolderWritten {
  size_t shards = 0;   // safetensors files
  int side_files = 0;  // copied besides config.json
};

// Writes specs[i]'s bytes, supplied by fill(i, put) in order, into out_dir (created), then the side files of
// base_dir. `dtype_name` ("bfloat16", ...) replaces config.json's torch_dtype; "" keeps the text as it is.
HfFolderWritten write_hf_folder(const std::string& out_dir, const std::string& base_dir,
                                const std::vector<io::TensorSpec>& specs,
                                const std::function<void(size_t index, const PutBytes& put)>& fill,
                                size_t max_shard_bytes, const std::string& dtype_name);

// A model's weights (every base tensor under its HF name, in the run dtype) as an HF folder beside base_dir's
// config and tokenizer files: the full fine-tuning `final/`.
HfFolderWritten save_hf_folder(const Model& model, const std::string& base_dir, const std::string& out_dir,
                               size_t max_shard_bytes = size_t(5) << 30);

}  // namespace hs::model
