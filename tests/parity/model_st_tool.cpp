// model_st_tool: the torch-free safetensors reader and writer driven from Python (model_safetensors.py),
// which compares them with the `safetensors` package:
//   model_st_tool dump PATH [STEM]          JSON {name: {dtype, shape, sha256}, "__metadata__": {...}}
//   model_st_tool rewrite PATH OUT          every tensor of PATH (file, index or folder) into one file OUT
//   model_st_tool shard PATH DIR MAXBYTES   every tensor into DIR with ShardedWriter (sorted names)
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/sha256.h"

namespace {

int run(int argc, char** argv) {
  if (argc < 3) throw hs::Error("usage: model_st_tool dump|rewrite|shard PATH ...");
  const std::string cmd = argv[1];
  hs::io::Checkpoint ck = hs::io::Checkpoint::open(argv[2], cmd == "dump" && argc > 3 ? argv[3] : "model");
  if (cmd == "dump") {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const std::string& n : ck.names()) {
      const hs::io::TensorInfo& t = ck.get(n);
      j[n] = {
          {"dtype", hs::io::dtype_name(t.dtype)},
          {"shape", t.shape},
          {"sha256", hs::io::sha256_hex(std::string_view(reinterpret_cast<const char*>(t.data), t.nbytes))}};
    }
    j["__metadata__"] = ck.metadata();
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::vector<hs::io::TensorRef> refs;
  std::vector<hs::io::TensorSpec> specs;
  for (const std::string& n : ck.names()) {
    const hs::io::TensorInfo& t = ck.get(n);
    refs.push_back({{n, t.dtype, t.shape}, t.data, t.nbytes});
    specs.push_back(refs.back().spec);
  }
  if (cmd == "rewrite" && argc == 4) {
    hs::io::write_safetensors(argv[3], refs, ck.metadata());
    return 0;
  }
  if (cmd == "shard" && argc == 5) {
    hs::io::ShardedWriter w(argv[3], specs, std::stoull(argv[4]), ck.metadata());
    for (const auto& r : refs) w.put(r.spec.name, r.data, r.nbytes);
    w.finish();
    return 0;
  }
  throw hs::Error("bad arguments for " + cmd);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_st_tool: error: %s\n", e.what());
    return 1;
  }
}
