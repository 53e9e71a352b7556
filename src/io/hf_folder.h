// The files of a Hugging Face model folder other than the weights, written once for both producers of HF
// folders (`hsloth merge` and the trainer's full fine-tuning `final/`): config.json from the base folder
// (its torch_dtype/dtype set to the written weights' dtype when given), and the generation, tokenizer and
// chat-template files copied as they are.
#pragma once

#include <string>

namespace hs::io {

// Writes out_dir/config.json and copies the side files found in base_dir. `dtype_name` ("bfloat16",
// "float32", ...) replaces the config's torch_dtype/dtype and drops a quantization_config (the weights
// written are dense); empty keeps the text as it is. Returns the
// number of side files copied (config.json not counted).
int write_hf_side_files(const std::string& base_dir, const std::string& out_dir, const std::string& dtype_name);

}  // namespace hs::io
