// collate_rows(): reads a micro-batch's samples into the flat row-major layout of data/collate.h. The layout
// is decided here once (packed: one row of mb.tokens; padded: mb.rows rows of mb.row_len), so the trainer,
// eval and anything else that batches get the same rows; train/batches.cpp only copies them into tensors.
#include "data/collate.h"

#include "core/error.h"

namespace hs::data {

Collated collate_rows(const ShardIndex& data, const MicroBatch& mb, Packing packing) {
  Collated c;
  const bool packed = packing == Packing::packed;
  c.rows = packed ? 1 : mb.rows;
  c.row_len = packed ? mb.tokens : mb.row_len;
  c.ids.assign(size_t(c.rows * c.row_len), 0);
  c.mask.assign(c.ids.size(), 0);
  std::vector<int64_t> cu(mb.samples.size() + 1, 0);
  int64_t pos = 0;
  for (size_t i = 0; i < mb.samples.size(); ++i) {
    Sample s = data.read_sample(mb.samples[i]);
    if (!packed) pos = int64_t(i) * c.row_len;
    const int64_t room = packed ? c.row_len - pos : c.row_len;
    if (int64_t(s.ids.size()) > room)
      throw Error(hs::str("sample ", mb.samples[i], " has ", s.ids.size(),
                          " tokens, more than its batch plan ", "leaves room for (", room, ")"))
          .at(data.path())
          .hint("the shards changed after the plan was made; re-run hsloth prep and start over");
    for (size_t t = 0; t < s.ids.size(); ++t) {
      c.ids[size_t(pos) + t] = s.ids[t];
      c.mask[size_t(pos) + t] = s.mask[t];
    }
    pos += int64_t(s.ids.size());
    cu[i + 1] = pos;
  }
  if (packed) c.cu_seqlens = std::move(cu);
  return c;
}

}  // namespace hs::data
