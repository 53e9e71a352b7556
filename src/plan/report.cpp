// The report of `hsloth plan` (see plan.h): aligned tables in GiB and seconds with how each number was
// counted, a one-line verdict, and the same as JSON for scripts.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "plan/plan.h"

namespace hs::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gib(double b) {
  char s[32];
  std::snprintf(s, sizeof s, b > 0 && b < 0.01 * kGiB ? "%.4f" : "%.2f", b / kGiB);
  return s;
}

std::string num(double v, int decimals = 0) {
  char s[48];
  std::snprintf(s, sizeof s, "%.*f", decimals, v);
  std::string t = s, out;
  const size_t dot = t.find('.');
  const std::string whole = t.substr(0, dot), frac = dot == std::string::npos ? "" : t.substr(dot);
  for (size_t i = 0; i < whole.size(); ++i) {
    if (i && (whole.size() - i) % 3 == 0 && whole[i - 1] != '-') out += ',';
    out += whole[i];
  }
  return out + frac;
}

std::string duration(double s) {
  char b[48];
  if (s < 120)
    std::snprintf(b, sizeof b, "%.0f s", s);
  else if (s < 7200)
    std::snprintf(b, sizeof b, "%.1f min", s / 60);
  else if (s < 3 * 86400)
    std::snprintf(b, sizeof b, "%.1f h", s / 3600);
  else
    std::snprintf(b, sizeof b, "%.1f days", s / 86400);
  return b;
}

// Rows of (label, value, how) printed with the value column aligned.
struct Table {
  std::vector<std::array<std::string, 3>> rows;
  void row(std::string a, std::string b, std::string c = "") {
    rows.push_back({std::move(a), std::move(b), std::move(c)});
  }
  std::string str() const {
    size_t w0 = 0, w1 = 0;
    for (const auto& r : rows) w0 = std::max(w0, r[0].size()), w1 = std::max(w1, r[1].size());
    std::string out;
    for (const auto& r : rows) {
      std::string line =
          "  " + r[0] + std::string(w0 - r[0].size() + 2, ' ') + std::string(w1 - r[1].size(), ' ') + r[1];
      if (!r[2].empty()) line += "  " + r[2];
      out += line + "\n";
    }
    return out;
  }
};

std::string targets(const RunSpec& s) {
  if (s.finetune == Finetune::full) return "";
  std::string t;
  for (auto p : s.lora_targets) t += (t.empty() ? "" : ",") + std::string(model::proj_name(p));
  return hs::str(" (r=", s.lora_r, " on ", t, ")");
}

nlohmann::ordered_json terms_json(const std::vector<Term>& terms) {
  nlohmann::ordered_json a = nlohmann::json::array();
  for (const auto& t : terms) a.push_back({{"name", t.name}, {"value", t.value}, {"formula", t.formula}});
  return a;
}

std::string spec_line(const Plan& p) {
  const RunSpec& s = p.spec;
  return hs::str("finetune ", finetune_name(s.finetune), targets(s), ", grad_ckpt ", ckpt_name(s.grad_ckpt),
                 ", tokens_per_batch ", s.tokens_per_batch, ", grad_accum ", s.grad_accum,
                 s.world > 1 ? hs::str(", ", s.world, " ranks") : "",
                 p.shard > 0 ? hs::str(", ZeRO-1 (", num(double(p.shard)), " values per shard)") : "");
}

}  // namespace

std::string verdict(const Plan& p) {
  std::string speed;
  if (p.speed.known)
    speed = hs::str("; ~", num(p.speed.tokens_per_s), " tokens/s", p.spec.world > 1 ? " on all ranks" : "",
                    ", MFU ", num(p.speed.mfu * 100, 1), "%, ", duration(p.duration_s), " for ",
                    p.total_steps, " steps", p.speed.calibrated ? "" : " (uncalibrated GPU)");
  if (!p.fits_known)
    return hs::str(
        "peak ", gib(p.memory.peak), " GiB allocated (", gib(p.memory.needed),
        " GiB with CUDA context and slack); no GPU to compare with: pass --gpu NAME or --gpu 80GiB");
  return hs::str(p.fits ? "fits" : "does NOT fit", ": needs ", gib(p.memory.needed), " GiB (peak ",
                 gib(p.memory.peak), " GiB allocated) of ", gib(p.gpu->memory_bytes), " GiB (", p.gpu->name,
                 ")", speed);
}

std::string render_text(const Plan& p, const std::vector<Candidate>& advice) {
  const RunSpec& s = p.spec;
  const Memory& m = p.memory;
  std::string out;
  out += hs::str("model: ", p.model_type, ", ", num(double(p.params)), " parameters (",
                 num(double(p.trainable)), " trained)\n");
  out += "run:   " + spec_line(p) + "\n";
  out +=
      hs::str("data:  ", p.micro_batches, " micro-batches (",
              data::Packing::packed == s.packing ? "packed" : "padded", ", padding ", num(p.padding * 100, 1),
              "%), the largest ", num(double(p.largest_micro_tokens)), " token slots; ", p.steps_per_epoch,
              " steps/epoch, ", p.total_steps, " steps; ", num(p.tokens_per_step), " tokens/step\n");
  if (p.gpu)
    out += p.gpu->memory_only
               ? hs::str("GPU:   ", gib(p.gpu->memory_bytes), " GiB (given by size: memory plan only)\n")
               : hs::str("GPU:   ", p.gpu->name, ", ", gib(p.gpu->memory_bytes), " GiB, ",
                         num(p.gpu->peak_bf16 / 1e12), " TFLOP/s bf16 (MFU basis), ",
                         num(p.gpu->hbm_bytes_s / 1e12, 2), " TB/s; efficiencies: ", p.gpu->eff.source, "\n");
  else
    out += "GPU:   none given or seen (memory plan only): pass --gpu NAME (" + known_gpu_words() +
           ") or --gpu 80GiB\n";

  Table t;
  t.row("memory, one rank", "GiB", "how");
  for (const auto& x : m.states) t.row(x.name, gib(x.value), x.formula);
  t.row(hs::str("activations one decoder layer saves (of ", p.layers, ")"), gib(sum(m.layer)), "");
  for (const auto& x : m.layer) t.row("  " + x.name, gib(x.value), x.formula);
  t.row("kept at the end of the forward (grad_ckpt " + std::string(ckpt_name(s.grad_ckpt)) + ")",
        gib(sum(m.kept)), "");
  for (const auto& x : m.kept) t.row("  " + x.name, gib(x.value), x.formula);
  t.row("loss stage (on top)", gib(sum(m.loss)), "");
  for (const auto& x : m.loss) t.row("  " + x.name, gib(x.value), x.formula);
  if (!m.loss_backward.empty()) {
    t.row("loss backward (on top)", gib(sum(m.loss_backward)), "");
    for (const auto& x : m.loss_backward) t.row("  " + x.name, gib(x.value), x.formula);
  }
  t.row("backward of the last layer (on top)", gib(sum(m.backward)), "");
  for (const auto& x : m.backward) t.row("  " + x.name, gib(x.value), x.formula);
  t.row("optimizer step (on top of the weights and state)", gib(sum(m.optimizer)), "");
  if (!m.setup.empty()) {
    t.row("start-up (next to the weights)", gib(sum(m.setup)), "");
    for (const auto& x : m.setup) t.row("  " + x.name, gib(x.value), x.formula);
  }
  t.row("PEAK allocated (" + m.peak_phase + ")", gib(m.peak), "what train reports as peak mem");
  for (const auto& x : m.overhead) t.row("+ " + x.name, gib(x.value), x.formula);
  t.row("NEEDED on the GPU", gib(m.needed), p.gpu ? "of " + gib(p.gpu->memory_bytes) + " GiB" : "");
  out += "\n" + t.str();

  if (p.speed.known) {
    Table v;
    v.row("time, largest micro-batch", "ms", "how");
    for (const auto& x : p.speed.micro) v.row(x.name, num(x.value * 1e3, 1), x.formula);
    v.row("micro-batch", num(sum(p.speed.micro) * 1e3, 1),
          num(double(p.largest_micro_tokens)) + " token slots");
    v.row("optimizer step", num(p.speed.optimizer_s * 1e3, 2),
          num(double(p.trainable)) + " trained parameters");
    if (s.world > 1)
      v.row(p.shard > 0 ? "gradient reduce-scatter + weight all-gather" : "gradient all-reduce",
            num(p.speed.allreduce_s * 1e3, 1),
            hs::str(gib(p.speed.allreduce_bytes),
                    p.shard > 0 ? " GiB, ring (N-1)/N each over " : " GiB, ring 2(N-1)/N over ",
                    num(p.gpu->allreduce_bus_bytes_s / 1e9), " GB/s bus bandwidth (", p.gpu->interconnect,
                    ", assumed)"));
    v.row("optimizer step, mean (slowest rank)", num(p.speed.step_s * 1e3, 1),
          hs::str(s.grad_accum * s.world, " micro-batches per step"));
    v.row("tokens/s", num(p.speed.tokens_per_s), s.world > 1 ? "all ranks" : "");
    v.row("MFU", num(p.speed.mfu * 100, 1) + "%",
          hs::str(num(p.flops_per_token / 1e9, 2), " GFLOP/token (", s.finetune == Finetune::full ? 6 : 4,
                  " x matmul params, the trainer's basis)"));
    v.row("run", duration(p.duration_s), hs::str(p.total_steps, " steps (loading and eval not counted)"));
    out += "\n" + v.str();
    if (!p.speed.calibrated) out += "  (speed from efficiencies measured on another GPU: a rough guide)\n";
  }
  if (!advice.empty()) {
    Table a;
    a.row(p.fits ? "faster, and fits" : "changes", "needs GiB", "tokens/s");
    for (const auto& k : advice)
      a.row(k.change, gib(k.plan.memory.needed),
            (k.plan.speed.known ? num(k.plan.speed.tokens_per_s) : "-") +
                (k.plan.fits ? "  fits" : "  does not fit") + "  (" + k.why + ")");
    out += "\n" + a.str();
  }
  out += "\n" + verdict(p) + "\n";
  return out;
}

nlohmann::ordered_json to_json(const Plan& p, const std::vector<Candidate>& advice) {
  const RunSpec& s = p.spec;
  nlohmann::ordered_json j;
  j["model_type"] = p.model_type;
  j["params"] = p.params;
  j["trainable"] = p.trainable;
  j["matmul_params"] = p.matmul_params;
  j["flops_per_token"] = p.flops_per_token;
  std::vector<std::string> tg;
  for (auto t : s.lora_targets) tg.push_back(model::proj_name(t));
  j["run"] = {{"finetune", finetune_name(s.finetune)},
              {"lora_r", s.lora_r},
              {"lora_targets", tg},
              {"grad_ckpt", ckpt_name(s.grad_ckpt)},
              {"tokens_per_batch", s.tokens_per_batch},
              {"grad_accum", s.grad_accum},
              {"packing", s.packing == data::Packing::packed ? "packed" : "padded"},
              {"world", s.world},
              {"shard_optimizer", s.shard_optimizer},
              {"zero1_shard", p.shard}};
  j["data"] = {{"micro_batches", p.micro_batches},     {"largest_micro_tokens", p.largest_micro_tokens},
               {"steps_per_epoch", p.steps_per_epoch}, {"total_steps", p.total_steps},
               {"tokens_per_step", p.tokens_per_step}, {"padding", p.padding}};
  if (p.gpu)
    j["gpu"] = {{"name", p.gpu->name},
                {"memory_bytes", p.gpu->memory_bytes},
                {"memory_only", p.gpu->memory_only},
                {"peak_bf16_flops", p.gpu->peak_bf16},
                {"hbm_bytes_s", p.gpu->hbm_bytes_s},
                {"efficiency_source", p.gpu->eff.source},
                {"calibrated", p.gpu->eff.calibrated}};
  else
    j["gpu"] = nullptr;
  const Memory& m = p.memory;
  j["memory"] = {{"peak_bytes", m.peak},
                 {"peak_gib", m.peak / kGiB},
                 {"peak_phase", m.peak_phase},
                 {"needed_bytes", m.needed},
                 {"needed_gib", m.needed / kGiB},
                 {"states", terms_json(m.states)},
                 {"layer", terms_json(m.layer)},
                 {"layer_bytes", sum(m.layer)},
                 {"kept", terms_json(m.kept)},
                 {"loss", terms_json(m.loss)},
                 {"loss_backward", terms_json(m.loss_backward)},
                 {"backward", terms_json(m.backward)},
                 {"optimizer", terms_json(m.optimizer)},
                 {"setup", terms_json(m.setup)},
                 {"overhead", terms_json(m.overhead)}};
  if (p.fits_known)
    j["fits"] = p.fits;
  else
    j["fits"] = nullptr;
  if (p.speed.known)
    j["speed"] = {{"tokens_per_s", p.speed.tokens_per_s},
                  {"mfu", p.speed.mfu},
                  {"step_s", p.speed.step_s},
                  {"optimizer_s", p.speed.optimizer_s},
                  {"allreduce_bytes", p.speed.allreduce_bytes},
                  {"allreduce_s", p.speed.allreduce_s},
                  {"duration_s", p.duration_s},
                  {"calibrated", p.speed.calibrated},
                  {"micro_batch_s", terms_json(p.speed.micro)}};
  else
    j["speed"] = nullptr;
  nlohmann::ordered_json adv = nlohmann::json::array();
  for (const auto& k : advice)
    adv.push_back(
        {{"change", k.change},
         {"why", k.why},
         {"fits", k.plan.fits},
         {"peak_bytes", k.plan.memory.peak},
         {"needed_bytes", k.plan.memory.needed},
         {"tokens_per_s", k.plan.speed.known ? nlohmann::ordered_json(k.plan.speed.tokens_per_s) : nullptr}});
  j["advice"] = adv;
  j["verdict"] = verdict(p);
  return j;
}

}  // namespace hs::plan
