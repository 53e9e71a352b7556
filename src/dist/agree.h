// Ranks agree or stop: before a collective whose shapes or count depend on settings (the first parameter
// broadcast, every step's all-reduce), every rank describes what must match as named facts ("lora.r" = "16",
// "model weight model.layers.0.mlp.up_proj.weight" = "F32 [96, 64]"), grouped in sections. The ranks
// all-gather one 16-byte digest per section (a few hundred bytes per rank, whatever the model); when a
// section differs, rank 0 fetches that section's facts from the first rank that differs, finds the keys that
// differ and throws one hs::Error naming them and the ranks ("ranks disagree on lora.r: rank 0 has 16
// (default), rank 1 has 8 (command line)"). The other ranks wait for rank 0's MPI_Abort (the top-level
// handler), so the job ends within seconds with one message instead of a heap corruption or a hang.
#pragma once

#include <string>
#include <vector>

namespace hs::dist {

struct Fact {
  std::string section;  // "config", "model", "data", ... (one digest each)
  std::string key;      // what the message names
  std::string value;    // compared
  std::string note;     // shown beside the value, not compared (e.g. where a config value came from)
};

// Collective over all ranks (a no-op for a world of one). `what` names the check in the message
// ("at start-up"). Throws on rank 0 when ranks disagree; the other ranks then block until the job is ended
// (and throw the same error should the job not end).
void check_ranks_agree(const std::vector<Fact>& facts, const std::string& what);

// The message for facts that differ between `rank0` and `other` (rank `other_rank`), or "" when they agree.
// Exposed for tests.
std::string describe_disagreement(const std::vector<Fact>& rank0, const std::vector<Fact>& other,
                                  int other_rank, const std::vector<int>& ranks_differing);

}  // namespace hs::dist
