// Checkpoint folders (see checkpoint.h): built as .tmp-step-N with every file fsynced, COMPLETE (sha256 of
// each file) written last, then renamed; a scan trusts only folders whose COMPLETE matches, and pruning
// keeps the newest ckpt.keep.
#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/log.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/sha256.h"

namespace hs::train {
namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

io::TensorRef ref(const std::string& name, const at::Tensor& t) {
  io::DType dt = t.scalar_type() == at::kFloat ? io::DType::F32 : io::DType::U8;
  HS_CHECK(t.is_contiguous() && t.device().is_cpu(), "checkpoint tensor ", name,
           " must be contiguous on CPU");
  return io::TensorRef{{name, dt, t.sizes().vec()}, t.data_ptr(), size_t(t.nbytes())};
}

at::Tensor from_info(const io::TensorInfo& info, at::ScalarType type) {
  return at::from_blob(const_cast<uint8_t*>(info.data), info.shape, type).clone();
}

int64_t step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0) return -1;
  try {
    size_t used = 0;
    int64_t v = std::stoll(name.substr(5), &used);
    return used == name.size() - 5 ? v : -1;
  } catch (...) {
    return -1;
  }
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    int64_t s = step_of(e.path().filename().string());
    if (s >= 0 && e.is_directory()) out.emplace_back(s, e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Verifies COMPLETE (written last) against the files; throws naming what is wrong.
void verify(const std::string& dir) {
  std::string complete = dir + "/COMPLETE";
  if (!io::exists(complete))
    throw Error("checkpoint is incomplete (no COMPLETE file)")
        .at(dir)
        .hint("it was interrupted while being written");
  nlohmann::json j = io::read_json(
      complete, {"COMPLETE is not valid JSON", "the checkpoint is damaged; resume from an earlier one"});
  if (!j.is_object() || !j.contains("files") || !j["files"].is_object())
    throw Error("COMPLETE has no file list").at(complete);
  for (const auto& [file, sha] : j["files"].items()) {
    std::string path = dir + "/" + file;
    if (!io::exists(path)) throw Error("file listed in COMPLETE is missing").at(path);
    if (io::sha256_file(path) != sha.get<std::string>())
      throw Error("file does not match its sha256 in COMPLETE (damaged)").at(path);
  }
}

void write_temp(const std::string& tmp, const TrainState& st,
                const std::function<void(const std::string&)>& write_adapter) {
  io::make_dirs(tmp);
  write_adapter(tmp);
  io::Metadata meta{{"format", kStateFormat},          {"version", std::to_string(kStateVersion)},
                    {"step", std::to_string(st.step)}, {"world_size", std::to_string(st.world_size)},
                    {"seed", std::to_string(st.seed)}, {"config", st.config_ini}};
  for (const auto& [k, v] : st.extra) meta[k] = v;
  std::vector<io::TensorRef> tensors{ref("master", st.master), ref("exp_avg", st.exp_avg),
                                     ref("exp_avg_sq", st.exp_avg_sq)};
  if (st.rng_cpu.defined()) tensors.push_back(ref("rng_cpu", st.rng_cpu));
  io::write_safetensors(tmp + "/train_state.safetensors", tensors, meta);
  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const auto& f : names) {
    fsync_path(tmp + "/" + f, false);
    files[f] = io::sha256_file(tmp + "/" + f);
  }
  nlohmann::ordered_json complete{{"format", kStateFormat}, {"step", st.step}, {"files", files}};
  io::write_file_atomic(tmp + "/COMPLETE", complete.dump(2) + "\n");
  fsync_path(tmp, true);
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, const TrainState& st,
                            const std::function<void(const std::string&)>& write_adapter, int keep) {
  const std::string root = run_dir + "/checkpoints";
  io::make_dirs(root);
  const std::string name = "step-" + std::to_string(st.step);
  const std::string tmp = root + "/.tmp-" + name, final_dir = root + "/" + name;
  std::error_code ec;
  io::remove_tree(tmp);
  std::string cause;
  try {
    write_temp(tmp, st, write_adapter);
  } catch (const Error& e) {
    cause = e.where().empty() ? e.message() : e.where() + ": " + e.message();
  } catch (const std::exception& e) {
    cause = e.what();
  }
  if (!cause.empty()) {
    // A full disk (or quota, or file-size limit): one error naming the file, and no temp folder left.
    io::remove_tree(tmp);
    auto all = list_checkpoints(root);
    std::string last = all.empty() ? "there is no earlier checkpoint, so the run starts over"
                                   : "then resume from " + all.back().second + " with --train.resume auto";
    throw Error(hs::str("cannot write checkpoint ", name, ": ", cause))
        .at(final_dir)
        .hint("free space where run.dir lives (df -h " + run_dir + "); " + last);
  }
  io::remove_tree(final_dir);  // a re-save of the same step (e.g. the final one) replaces it
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    io::remove_tree(tmp);
    throw Error("cannot move checkpoint into place: " + ec.message()).at(final_dir);
  }
  fsync_path(root, true);
  // Keep the newest `keep`; also clean temp folders left by crashed saves.
  auto all = list_checkpoints(root);
  for (size_t i = 0; i + size_t(std::max(keep, 1)) < all.size(); ++i) io::remove_tree(all[i].second);
  std::vector<std::string> stale;  // collected first: no removal while the folder is being listed
  for (const auto& e : fs::directory_iterator(root, ec))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) stale.push_back(e.path().string());
  for (const auto& p : stale) io::remove_tree(p);
  return final_dir;
}

namespace {

TrainState load(const std::string& dir, const std::vector<std::pair<int64_t, int64_t>>* ranges) {
  verify(dir);
  const std::string file = dir + "/train_state.safetensors";
  auto ck = io::Checkpoint::open(file);
  const auto& meta = ck.metadata();
  auto get = [&](const char* key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end()) throw Error(std::string("train state has no '") + key + "' entry").at(file);
    return it->second;
  };
  if (get("format") != kStateFormat) throw Error("not an hsloth train state").at(file);
  if (std::stoi(get("version")) > kStateVersion)
    throw Error("train state version " + get("version") + " is newer than this hsloth understands")
        .at(file)
        .hint("resume with the hsloth version that wrote it, or a newer one");
  TrainState st;
  st.step = std::stoll(get("step"));
  st.world_size = std::stoi(get("world_size"));
  st.seed = std::stoull(get("seed"));
  st.config_ini = get("config");
  for (const auto& [k, v] : meta)
    if (k != "format" && k != "version" && k != "step" && k != "world_size" && k != "seed" && k != "config")
      st.extra[k] = v;
  const io::TensorInfo& master = ck.get("master");
  st.flat_numel = 1;
  for (int64_t d : master.shape) st.flat_numel *= d;
  if (ranges == nullptr) {
    st.master = from_info(master, at::kFloat);
    st.exp_avg = from_info(ck.get("exp_avg"), at::kFloat);
    st.exp_avg_sq = from_info(ck.get("exp_avg_sq"), at::kFloat);
  } else {
    int64_t total = 0;
    for (const auto& [b, n] : *ranges) {
      if (b < 0 || n < 0 || b + n > st.flat_numel)
        throw Error(hs::str("train state has ", st.flat_numel, " values; values [", b, ", ", b + n,
                            ") were asked for"))
            .at(file);
      total += n;
    }
    auto part = [&](const char* name) {
      const io::TensorInfo& info = ck.get(name);
      if (info.shape != master.shape)
        throw Error(hs::str("train state: ", name, " and master differ in shape")).at(file);
      at::Tensor out = at::empty({total}, at::kFloat);
      int64_t at = 0;
      for (const auto& [b, n] : *ranges) {
        out.narrow(0, at, n).copy_(at::from_blob(const_cast<uint8_t*>(info.data) + b * int64_t(sizeof(float)),
                                                 {n}, at::kFloat));
        at += n;
      }
      return out;
    };
    st.master = part("master");
    st.exp_avg = part("exp_avg");
    st.exp_avg_sq = part("exp_avg_sq");
  }
  if (ck.contains("rng_cpu")) st.rng_cpu = from_info(ck.get("rng_cpu"), at::kByte);
  return st;
}

}  // namespace

TrainState load_checkpoint(const std::string& dir) { return load(dir, nullptr); }

TrainState load_checkpoint_part(const std::string& dir, const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  return load(dir, &ranges);
}

CheckpointScan scan_checkpoints(const std::string& run_dir) {
  CheckpointScan scan;
  auto all = list_checkpoints(run_dir + "/checkpoints");
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      verify(it->second);
      scan.latest = it->second;
      return scan;
    } catch (const Error& e) {
      log::warn("skipping damaged checkpoint: ", e.what());
      const std::string file = fs::path(e.where()).filename().string();
      scan.damaged.emplace_back(
          it->second, e.where().empty() || e.where() == it->second ? e.message() : file + ": " + e.message());
    }
  }
  return scan;
}

std::optional<std::string> find_latest_checkpoint(const std::string& run_dir) {
  return scan_checkpoints(run_dir).latest;
}

}  // namespace hs::train
