// hsloth: the one binary. This file is the shared start-up of every subcommand: top-level help and
// version, config parsing (Boost.ProgramOptions via src/config), MPI start-up for commands that need it,
// and the top-level error handler: an error is printed once with its rank, and a multi-rank job is ended
// with MPI_Abort so that it never hangs on one failed rank.
//
// Exit codes: 0 success, 1 error (bad input, failed run), 2 usage error or command not implemented yet.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "cli/command.h"
#include "config/config.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "dist/mpi_runtime.h"

namespace {

struct Planned {
  const char* name;
  const char* summary;
  const char* issue;  // where it is being built, shown while it is not implemented
};

// Canonical order of subcommands in --help. Those not registered by a cli/cmd_*.cpp are "not implemented
// yet".
const Planned kPlanned[] = {
    {"info", "build, library and hardware facts (LibTorch, CUDA, GPUs, NCCL, MPI, HDF5, CPU)", ""},
    {"tokenize", "encode or decode text with a HF tokenizer.json", "issue #3 (data)"},
    {"prep", "JSON/JSONL -> chat template -> tokens + loss mask -> length-sorted HDF5 shards",
     "issue #3 (data)"},
    {"inspect", "statistics of a shard folder: lengths, trained tokens, padding vs packing",
     "issue #3 (data)"},
    {"train", "fine-tune (LoRA, QLoRA, full) on shards; mpirun -np N for N GPUs",
     "issue #5 (training engine)"},
    {"eval", "loss and perplexity of a model (+adapter) on shards", "issue #4 (model)"},
    {"generate", "KV-cached text generation from a model (+adapter)", "issue #4 (model)"},
    {"merge", "merge a LoRA adapter into its base model, write an HF folder", "issue #4 (model)"},
    {"plan", "peak GPU memory, tokens/s and what fits, for a training config before a run", "issue #14"},
};

bool implemented(const hs::cli::Command* c) { return c != nullptr && c->run != nullptr; }

void print_help() {
  std::printf(
      "hsloth %s: fine-tuning for Llama-family LLMs (LoRA, QLoRA, full) on LibTorch, MPI and NCCL.\n\n"
      "usage: hsloth <command> [options]       hsloth <command> --help\n"
      "       mpirun -np N hsloth train --config run.ini [--section.key value ...]\n\ncommands:\n",
      hs::build_info().version.c_str());
  for (const auto& p : kPlanned) {
    const auto* c = hs::cli::find_command(p.name);
    std::string note = implemented(c) ? "" : std::string("  [not implemented yet: ") + p.issue + "]";
    std::printf("  %-10s %s%s\n", p.name, p.summary, note.c_str());
  }
  std::printf(
      "\nOptions come from an INI file (--config run.ini; key `r` under [lora] is lora.r) and from flags\n"
      "(--lora.r 32), which override the file. Exit codes: 0 ok, 1 error, 2 usage error / not "
      "implemented.\n");
}

std::vector<std::string> command_names() {
  std::vector<std::string> names;
  for (const auto& p : kPlanned) names.push_back(p.name);
  return names;
}

int fail(const std::string& message, int code) {
  hs::log::error(message);
  hs::dist::Mpi::abort(code);  // no-op unless a multi-rank job
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_help();
    return 2;
  }
  const std::string& name = args[0];
  if (name == "--help" || name == "-h" || name == "help") {
    print_help();
    return 0;
  }
  if (name == "--version" || name == "version") {
    std::printf("hsloth %s\n", hs::build_info().version.c_str());
    return 0;
  }
  const Planned* planned = nullptr;
  for (const auto& p : kPlanned)
    if (name == p.name) planned = &p;
  const hs::cli::Command* cmd = hs::cli::find_command(name);
  if (!planned && !cmd) {
    std::string near = hs::config::closest(name, command_names());
    hs::log::error("unknown command '", name, "'", near.empty() ? "" : "; did you mean '" + near + "'?",
                   "\n  hint: `hsloth --help` lists the commands");
    return 2;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  bool want_help = false;
  for (const auto& a : rest)
    if (a == "--help" || a == "-h") want_help = true;

  if (!cmd || !cmd->schema) {
    hs::log::error("hsloth ", name, ": not implemented yet (", planned->issue, ")");
    return 2;
  }
  hs::config::Schema schema = cmd->schema();
  if (want_help) {
    std::printf("%s", schema.help().c_str());
    if (!implemented(cmd)) std::printf("\n[not implemented yet: %s]\n", planned ? planned->issue : "");
    return 0;
  }
  try {
    if (cmd->needs_mpi) hs::dist::Mpi::init();
    hs::config::Config config = hs::config::parse(schema, rest);
    if (!implemented(cmd)) {
      hs::log::error("hsloth ", name, ": configuration is valid, but the command is not implemented yet (",
                     planned ? planned->issue : "", ")");
      hs::dist::Mpi::finalize();
      return 2;
    }
    int rc = cmd->run(config);
    hs::dist::Mpi::finalize();
    return rc;
  } catch (const hs::Error& e) {
    return fail(std::string("hsloth ") + name + ": " + e.what(), 1);
  } catch (const std::bad_alloc&) {  // not a bug, and not bad data: the machine ran out
    return fail(std::string("hsloth ") + name +
                    ": out of memory\n  hint: give the job more memory (or fewer ranks per node), or lower "
                    "what it holds at once (e.g. prep --max-len, train.tokens_per_batch)",
                1);
  } catch (const c10::OutOfMemoryError& e) {  // LibTorch's allocators (CPU or GPU)
    return fail(std::string("hsloth ") + name + ": out of memory: " + e.what_without_backtrace() +
                    "\n  hint: give the job more memory, or lower what it holds at once (e.g. "
                    "train.tokens_per_batch, eval --max-samples)",
                1);
  } catch (const c10::Error& e) {  // LibTorch: its message without the C++ backtrace
    return fail(std::string("hsloth ") + name + ": internal error: " + e.what_without_backtrace() +
                    "\n  hint: this is a bug; please report it with the command line",
                1);
  } catch (const std::exception& e) {
    return fail(std::string("hsloth ") + name + ": internal error: " + e.what() +
                    "\n  hint: this is a bug; please report it with the command line",
                1);
  }
}
