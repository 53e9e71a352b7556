// The `hsloth prep` pipeline, one record at a time:
//   raw text -> UTF-8 policy -> JSON -> Example (formats.h) -> ChatTemplate::render -> encode with byte
//   offsets -> loss mask -> length policy -> SampleSet (keyed by the record's global index)
// Loss masks: `full` trains every token but the first; `response` trains the tokens whose byte range
// overlaps an assistant span of the render (all assistant turns, or the last one with last_turn_only),
// never the first token. Plain `text` records use no template, the tokenizer's own special tokens
// (add_special_tokens=true, e.g. BOS for Llama) plus an appended EOS, and are trained in full.
//
// Memory: a record is released step by step (raw text -> JSON -> Example -> rendered text), so at most
// about two copies of it are alive at once, and with --max-len only a prefix of it is encoded (see
// encode_limited): prep's memory is O(largest record + a bounded buffer), not O(tokenizer work on the
// whole record). Running out of memory is never a malformed record: it ends prep with the record named.
//
// Every record ends up either written or in exactly one skip count (PrepCounts), so
// input records = written + too_long + empty + no_trainable + malformed always holds; truncations and
// UTF-8 repairs are counted too (the record is kept). Records are spread over ranks round-robin by their
// global index; each rank returns its SampleSet and counts for rank 0 to merge.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/sample_set.h"
#include "data_tools/formats.h"
#include "data_tools/input_reader.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace hs::data_tools {

enum class LossPolicy { full, response };
enum class TooLongPolicy { drop, truncate };

struct PrepOptions {
  std::optional<Format> format;  // nullopt = auto (per file)
  LossPolicy loss = LossPolicy::response;
  bool last_turn_only = false;
  int64_t max_len = 0;  // 0 = no limit
  TooLongPolicy too_long = TooLongPolicy::drop;
  bool skip_errors = false;  // --on-error skip
  Utf8Policy utf8 = Utf8Policy::repair;
  size_t min_prefix_bytes = size_t(1) << 18;  // encode_limited's first prefix (smaller in tests)
};

// "full", "response" or "response_last_turn" (the shard attribute loss_policy).
std::string loss_policy_name(const PrepOptions& o);

struct PrepCounts {
  int64_t records = 0;              // input records seen
  int64_t written = 0;              // samples kept
  int64_t too_long = 0;             // dropped: longer than max_len (--too-long drop)
  int64_t empty = 0;                // dropped: fewer than 2 tokens (nothing to predict)
  int64_t no_trainable = 0;         // dropped: no token left with loss (no assistant turn, or truncated away)
  int64_t malformed = 0;            // skipped (--on-error skip): bad JSON, missing fields, template rejection
  int64_t truncated = 0;            // kept, cut to max_len
  int64_t utf8_repaired = 0;        // kept, invalid UTF-8 replaced by U+FFFD
  int64_t tokens = 0, trained = 0;  // in written samples

  int64_t skipped() const { return too_long + empty + no_trainable + malformed; }
  void add(const PrepCounts& o);
  nlohmann::json to_json() const;
  static PrepCounts from_json(const nlohmann::json& j);
  // The end-of-prep table: one line per outcome, the balance check last.
  std::string table() const;
};

// What the processor needs from a tokenizer (a function so tests can use a simple byte tokenizer).
using EncodeFn = std::function<tokenizer::Encoding(std::string_view text, bool add_special_tokens)>;

// The first tokens of a text without encoding all of it. Either complete is true and `enc` is
// encode(text) (always with limit <= 0 or when the text has at most `limit` tokens), or complete is false
// and `enc` holds more than `limit` tokens, exactly the first ones of encode(text): prefixes of
// max(min_prefix, 4 * limit), 2x, 4x, ... bytes (cut at a character boundary) are encoded until more than
// `limit` tokens end in the first 3/4 of the prefix, and only those are kept. Every step of a tokenizer
// (added tokens, normalizers, pre-tokenizer splits, BPE per piece) decides a token from nearby text, so
// tokens that end a quarter of the prefix (>= 64 KiB by default) before the cut are those of the whole
// text; the post-processor's tokens at the end (EOS) are never among them. (Not covered: one piece with no
// split point, e.g. a run of 64 KiB of letters, reaching from a kept token across the cut.) Work and memory
// are O(the prefix), not O(the text).
struct LimitedEncoding {
  tokenizer::Encoding enc;
  bool complete = true;
};
LimitedEncoding encode_limited(const EncodeFn& encode, std::string_view text, bool add_special_tokens,
                               int64_t limit, size_t min_prefix = size_t(1) << 18);

// Parses one record's JSON text like parse_json_record (same "malformed JSON: ..." errors at `where`),
// moving strings out of the parser instead of copying them; strings longer than elide_strings_over
// bytes become "" (for format detection, which looks at keys).
Record parse_record_lean(std::string_view text, const std::string& where,
                                 size_t elide_strings_over = std::string_view::npos);

struct ProcessorDeps {
  EncodeFn encode;
  int32_t eos_id = -1;                                     // appended to text records (if >= 0)
  const tokenizer::ChatTemplate* chat_template = nullptr;  // required for every format but text
};

// Loss mask for a response policy: 1 where a token's byte range overlaps a span of the chosen turns.
// spans: per assistant turn, byte ranges [begin, end). Tokens with an empty range are never trained.
std::vector<uint8_t> response_mask(const std::vector<std::pair<uint32_t, uint32_t>>& offsets,
                                   const std::vector<std::vector<std::pair<size_t, size_t>>>& spans,
                                   bool last_turn_only);

class RecordProcessor {
 public:
  RecordProcessor(ProcessorDeps deps, PrepOptions options);

  // Handles one raw record. `text` is consumed: repaired in place, then released once parsed. Adds a
  // sample to `out` (returns true) or counts why not. A malformed record is rethrown as hs::Error at
  // `where` unless skip_errors; invalid UTF-8 under Utf8Policy::fail always throws; running out of
  // memory (std::bad_alloc) always throws "out of memory while processing <where> ...", never a skip.
  bool process(std::string& text, Format format, const std::string& where, int64_t key, data::SampleSet& out,
               PrepCounts& counts) const;

  // The tokens and mask for one parsed record, before length policies (for tests and tools); with
  // max_len, a longer record gives only its first tokens (more than max_len of them, see encode_limited).
  struct Tokens {
    std::vector<int32_t> ids;
    std::vector<uint8_t> mask;
  };
  Tokens tokenize(const Record& record, Format format) const;

  const PrepOptions& options() const { return options_; }

 private:
  // Consumes the example (released before its tokens are made); with max_len, only the first tokens.
  Tokens tokenize_example(Example&& ex) const;

  ProcessorDeps deps_;
  PrepOptions options_;
};

// One input file as prep sees it after a first pass.
struct InputFile {
  std::string path;
  std::string name;    // file name without folders
  std::string sha256;  // of the bytes on disk
  Format format = Format::text;
  std::string why;      // how the format was chosen ("given", "auto: has 'instruction'")
  int64_t records = 0;  // counted in the first pass
  int64_t bytes = 0;
};

// First pass over the inputs: sha256, record count (catches structural errors before any tokenization)
// and the format (given, or detected from the first record). Throws hs::Error naming the file.
std::vector<InputFile> scan_inputs(const std::vector<std::string>& paths, const std::optional<Format>& format,
                                   Utf8Policy utf8);

struct RankResult {
  data::SampleSet samples;
  PrepCounts counts;
};

// Processes the records whose global index % world == rank. `on_progress(records passed)` is called
// now and then (rank 0 prints it).
RankResult run_records(const std::vector<InputFile>& inputs, const RecordProcessor& processor, int rank,
                       int world, const std::function<void(int64_t)>& on_progress = {});

}  // namespace hs::data_tools
