// Probe for the trainer's building blocks, driven by tests/parity/train_parts_parity.py:
//   train_probe lr <constant|linear|cosine> <peak> <warmup> <total> <steps>   -> one lr per line
//   train_probe adamw <in.safetensors> <out.safetensors> <b1> <b2> <eps> <wd> <lr,lr,...> [step_chunk]
//       in: params [N] f32, grads [S, N] f32 (S = number of lrs); out: params, exp_avg, exp_avg_sq
//   train_probe tensorboard <dir> <steps>   -> scalars train/loss = 1/(step+1), train/lr = step*0.5
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"
#include "train/tensorboard.h"

namespace {

at::Tensor load_f32(const hs::io::Checkpoint& ck, const std::string& name) {
  const auto& t = ck.get(name);
  HS_CHECK(t.dtype == hs::io::DType::F32, name, " must be F32");
  return at::from_blob(const_cast<uint8_t*>(t.data), t.shape, at::kFloat).clone();
}

int run(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "lr" && argc == 7) {
    hs::train::LrSchedule s{hs::train::parse_schedule(argv[2]), std::atof(argv[3]), std::atoll(argv[4]),
                            std::atoll(argv[5])};
    for (int64_t k = 0; k < std::atoll(argv[6]); ++k) std::printf("%.17g\n", s.lr(k));
    return 0;
  }
  if (cmd == "adamw" && (argc == 9 || argc == 10)) {
    auto ck = hs::io::Checkpoint::open(argv[2]);
    at::Tensor params = load_f32(ck, "params"), grads = load_f32(ck, "grads");
    std::vector<double> lrs;
    std::stringstream ss(argv[8]);
    for (std::string tok; std::getline(ss, tok, ',');) lrs.push_back(std::atof(tok.c_str()));
    HS_CHECK(int64_t(lrs.size()) == grads.size(0), "one lr per gradient row");
    hs::train::AdamW opt(params,
                         {std::atof(argv[4]), std::atof(argv[5]), std::atof(argv[6]), std::atof(argv[7])}, {},
                         argc == 10 ? std::atoll(argv[9]) : hs::train::AdamW::kStepChunk);
    for (size_t i = 0; i < lrs.size(); ++i) opt.step(grads[int64_t(i)].contiguous(), lrs[i]);
    auto ref = [](const char* name, const at::Tensor& t) {
      return hs::io::TensorRef{{name, hs::io::DType::F32, t.sizes().vec()}, t.data_ptr(), size_t(t.nbytes())};
    };
    at::Tensor m = opt.exp_avg(), v = opt.exp_avg_sq();
    hs::io::write_safetensors(argv[3], {ref("params", params), ref("exp_avg", m), ref("exp_avg_sq", v)});
    return 0;
  }
  if (cmd == "tensorboard" && argc == 4) {
    hs::train::TensorBoardWriter w(argv[2]);
    for (int64_t k = 0; k < std::atoll(argv[3]); ++k)
      w.scalars(k, {{"train/loss", 1.0 / double(k + 1)}, {"train/lr", double(k) * 0.5}});
    std::printf("%s\n", w.path().c_str());
    return 0;
  }
  std::fprintf(stderr, "usage: see the comment at the top of train_probe.cpp\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_probe: %s\n", e.what());
    return 1;
  }
}
