// Ranks agree or stop (see agree.h). Two collectives when the ranks agree (an all-gather of per-section
// digests), one more when they do not (a gather of the differing sections' facts on rank 0). The digest is
// a 128-bit FNV-1a pair: it guards against mistakes, not against an adversary.
#include "dist/agree.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>

#include "core/error.h"
#include "dist/mpi_runtime.h"

namespace hs::dist {
namespace {

struct Digest {
  uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
  void update(const std::string& s) {
    for (unsigned char c : s) {
      a = (a ^ c) * 0x100000001b3ull;
      b = (b ^ c) * 0x1000000016bull;
    }
    a = (a ^ 0xff) * 0x100000001b3ull;  // separator: ("ab","c") != ("a","bc")
    b = (b ^ 0xfe) * 0x1000000016bull;
  }
  std::string bytes() const {
    std::string out(16, '\0');
    std::memcpy(out.data(), &a, 8);
    std::memcpy(out.data() + 8, &b, 8);
    return out;
  }
};

void put(std::string& out, const std::string& s) {
  uint64_t n = s.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += s;
}
bool get(const std::string& in, size_t& pos, std::string& s) {
  uint64_t n = 0;
  if (pos + 8 > in.size()) return false;
  std::memcpy(&n, in.data() + pos, 8);
  pos += 8;
  if (n > in.size() - pos) return false;
  s.assign(in, pos, size_t(n));
  pos += size_t(n);
  return true;
}

// section -> digest, in a string: (name, digest) pairs.
std::string encode_digests(const std::vector<Fact>& facts, std::vector<std::string>& order) {
  std::map<std::string, Digest> d;
  for (const auto& f : facts) {
    if (!d.count(f.section)) order.push_back(f.section);
    auto& g = d[f.section];
    g.update(f.key);
    g.update(f.value);
  }
  std::string out;
  for (const auto& s : order) {
    put(out, s);
    put(out, d[s].bytes());
  }
  return out;
}

std::map<std::string, std::string> decode_digests(const std::string& in) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  std::string name, digest;
  while (pos < in.size() && get(in, pos, name) && get(in, pos, digest)) out[name] = digest;
  return out;
}

std::string encode_facts(const std::vector<Fact>& facts, const std::vector<std::string>& sections) {
  std::string out;
  for (const auto& f : facts)
    if (std::find(sections.begin(), sections.end(), f.section) != sections.end()) {
      put(out, f.section);
      put(out, f.key);
      put(out, f.value);
      put(out, f.note);
    }
  return out;
}

std::vector<Fact> decode_facts(const std::string& in) {
  std::vector<Fact> out;
  size_t pos = 0;
  Fact f;
  while (pos < in.size() && get(in, pos, f.section) && get(in, pos, f.key) && get(in, pos, f.value) &&
         get(in, pos, f.note))
    out.push_back(f);
  return out;
}

std::string shown(const Fact* f) {
  if (!f) return "nothing (absent)";
  std::string v = f->value.empty() ? "\"\"" : f->value;
  if (v.size() > 96) v = v.substr(0, 93) + "...";
  return f->note.empty() ? v : v + " (" + f->note + ")";
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size() && i < 8; ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  if (ranks.size() > 8) out += hs::str(" and ", ranks.size() - 8, " more");
  return out;
}

}  // namespace

std::string describe_disagreement(const std::vector<Fact>& rank0, const std::vector<Fact>& other,
                                  int other_rank, const std::vector<int>& ranks_differing) {
  std::map<std::string, const Fact*> a, b;
  std::vector<std::string> keys;  // rank 0's order, then keys only the other rank has
  for (const auto& f : rank0) {
    if (!a.count(f.key)) keys.push_back(f.key);
    a[f.key] = &f;
  }
  for (const auto& f : other) {
    if (!a.count(f.key) && !b.count(f.key)) keys.push_back(f.key);
    b[f.key] = &f;
  }
  std::vector<std::string> lines;
  for (const auto& k : keys) {
    const Fact* x = a.count(k) ? a[k] : nullptr;
    const Fact* y = b.count(k) ? b[k] : nullptr;
    if (x && y && x->value == y->value) continue;
    lines.push_back(hs::str(k, ": rank 0 has ", shown(x), ", rank ", other_rank, " has ", shown(y)));
  }
  if (lines.empty()) return "";
  std::string out;
  const size_t limit = 6;
  for (size_t i = 0; i < lines.size() && i < limit; ++i) out += (i ? "\n  " : "") + lines[i];
  if (lines.size() > limit) out += hs::str("\n  ... and ", lines.size() - limit, " more");
  if (ranks_differing.size() > 1)
    out += hs::str("\n  (ranks ", rank_list(ranks_differing), " differ from rank 0 here; shown: rank ",
                   other_rank, ")");
  return out;
}

void check_ranks_agree(const std::vector<Fact>& facts, const std::string& what) {
  if (!Mpi::active() || Mpi::world() == 1) return;
  std::vector<std::string> order;
  const auto all = Mpi::allgather(encode_digests(facts, order));
  std::vector<std::map<std::string, std::string>> digests;
  for (const auto& s : all) digests.push_back(decode_digests(s));
  // Sections in rank 0's order, then any only other ranks have; for each, the ranks that differ from rank 0.
  std::vector<std::string> sections;
  for (const auto& [name, _] : digests[0]) sections.push_back(name);
  for (const auto& d : digests)
    for (const auto& [name, _] : d)
      if (std::find(sections.begin(), sections.end(), name) == sections.end()) sections.push_back(name);
  std::map<std::string, std::vector<int>> differ;
  for (const auto& s : sections)
    for (size_t r = 1; r < digests.size(); ++r) {
      auto x = digests[0].find(s), y = digests[r].find(s);
      bool same = x != digests[0].end() && y != digests[r].end() && x->second == y->second;
      if (!same) differ[s].push_back(int(r));
    }
  if (differ.empty()) return;

  // Every rank knows the same `differ`: the first differing rank of each section sends that section's facts.
  std::vector<std::string> mine;
  for (const auto& [s, ranks] : differ)
    if (ranks.front() == Mpi::rank()) mine.push_back(s);
  const auto got = Mpi::gather(encode_facts(facts, mine), 0);
  if (Mpi::rank() != 0) {
    // Rank 0 reports and ends the job (MPI_Abort from the top-level handler); one message, not one per rank.
    Mpi::barrier();
    throw Error("ranks disagree " + what + " (rank 0 names what differs)");
  }
  std::vector<std::string> parts, keys;
  for (const auto& s : sections) {
    if (!differ.count(s)) continue;
    const int other = differ[s].front();
    std::vector<Fact> theirs, ours;
    for (const auto& f : decode_facts(got[size_t(other)]))
      if (f.section == s) theirs.push_back(f);
    for (const auto& f : facts)
      if (f.section == s) ours.push_back(f);
    std::string d = describe_disagreement(ours, theirs, other, differ[s]);
    if (d.empty()) d = hs::str(s, ": rank ", other, " differs from rank 0 (same values, different order)");
    parts.push_back(d);
    keys.push_back(d.substr(0, d.find(": rank ")));
  }
  std::string head = "ranks disagree " + what + " on " + keys.front();
  std::string body = parts.front().substr(parts.front().find(": rank "));  // ": rank 0 has ..."
  for (size_t i = 1; i < parts.size(); ++i) body += "\n  " + parts[i];
  throw Error(head + body)
      .hint(
          "every rank must run with the same settings, model and data: give every part of the mpirun command "
          "line (and every node's config file) the same options, and give each node an identical copy of the "
          "model and shard folders");
}

}  // namespace hs::dist
