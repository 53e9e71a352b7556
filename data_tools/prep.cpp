// Prep pipeline (see prep.h): record processing, loss masks, length policies, counts, the rank loop.
#include "data_tools/prep.h"

#include <algorithm>
#include <filesystem>
#include <new>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "io/sha256.h"

namespace hs::data_tools {
using nlohmann::json;

std::string loss_policy_name(const PrepOptions& o) {
  if (o.loss == LossPolicy::full) return "full";
  return o.last_turn_only ? "response_last_turn" : "response";
}

// ---- counts ---------------------------------------------------------------------------------------

void PrepCounts::add(const PrepCounts& o) {
  records += o.records;
  written += o.written;
  too_long += o.too_long;
  empty += o.empty;
  no_trainable += o.no_trainable;
  malformed += o.malformed;
  truncated += o.truncated;
  utf8_repaired += o.utf8_repaired;
  tokens += o.tokens;
  trained += o.trained;
}

json PrepCounts::to_json() const {
  return {
      {"input_records", records},
      {"written", written},
      {"skipped",
       {{"too_long", too_long}, {"empty", empty}, {"no_trainable", no_trainable}, {"malformed", malformed}}},
      {"truncated", truncated},
      {"utf8_repaired", utf8_repaired},
      {"tokens", tokens},
      {"trained_tokens", trained}};
}

PrepCounts PrepCounts::from_json(const json& j) {
  PrepCounts c;
  c.records = j.at("input_records").get<int64_t>();
  c.written = j.at("written").get<int64_t>();
  const json& s = j.at("skipped");
  c.too_long = s.at("too_long").get<int64_t>();
  c.empty = s.at("empty").get<int64_t>();
  c.no_trainable = s.at("no_trainable").get<int64_t>();
  c.malformed = s.at("malformed").get<int64_t>();
  c.truncated = j.at("truncated").get<int64_t>();
  c.utf8_repaired = j.at("utf8_repaired").get<int64_t>();
  c.tokens = j.at("tokens").get<int64_t>();
  c.trained = j.at("trained_tokens").get<int64_t>();
  return c;
}

std::string PrepCounts::table() const {
  std::ostringstream os;
  char line[160];
  auto row = [&](const char* what, int64_t n, const char* note) {
    std::snprintf(line, sizeof line, "  %-26s %12lld  %s\n", what, static_cast<long long>(n), note);
    os << line;
  };
  row("input records", records, "");
  row("written", written, "");
  row("skipped: too long", too_long, "longer than --max-len (--too-long drop)");
  row("skipped: empty", empty, "fewer than 2 tokens");
  row("skipped: no trainable", no_trainable, "no token left with loss");
  row("skipped: malformed", malformed, "bad JSON/fields/roles (--on-error skip)");
  row("kept, truncated", truncated, "cut to --max-len (--too-long truncate)");
  row("kept, UTF-8 repaired", utf8_repaired, "invalid bytes -> U+FFFD (--invalid-utf8 repair)");
  std::snprintf(line, sizeof line, "  check: %lld = %lld written + %lld skipped %s",
                static_cast<long long>(records), static_cast<long long>(written),
                static_cast<long long>(skipped()),
                records == written + skipped() ? "(balanced)" : "(MISMATCH)");
  os << line;
  return os.str();
}

// ---- masks ----------------------------------------------------------------------------------------

std::vector<uint8_t> response_mask(const std::vector<std::pair<uint32_t, uint32_t>>& offsets,
                                   const std::vector<std::vector<std::pair<size_t, size_t>>>& spans,
                                   bool last_turn_only) {
  std::vector<std::pair<size_t, size_t>> chosen;
  for (size_t t = last_turn_only && !spans.empty() ? spans.size() - 1 : 0; t < spans.size(); ++t)
    for (const auto& s : spans[t])
      if (s.second > s.first) chosen.push_back(s);
  std::vector<uint8_t> mask(offsets.size(), 0);
  for (size_t i = 0; i < offsets.size(); ++i) {
    size_t b = offsets[i].first, e = offsets[i].second;
    if (e <= b) continue;
    for (const auto& [s, f] : chosen)
      if (b < f && s < e) {
        mask[i] = 1;
        break;
      }
  }
  if (!mask.empty()) mask[0] = 0;
  return mask;
}

// ---- lean record parsing --------------------------------------------------------------------------

namespace {
// A DOM builder for nlohmann's SAX parser (an ordered_json Record: tool schemas keep the file's key order) that moves each string out of the lexer's buffer instead of
// copying it (nlohmann's own DOM parser copies: a record's text would be held twice more while parsing),
// and can leave long strings out (format detection only looks at keys and short values).
class LeanDom {
 public:
  explicit LeanDom(size_t elide_over) : elide_over_(elide_over) {}
  Record root;
  std::string error;
  size_t error_at = 0;  // nlohmann's position: bytes read when the parse failed

  bool null() { return put(Record(nullptr)); }
  bool boolean(bool v) { return put(Record(v)); }
  bool number_integer(Record::number_integer_t v) { return put(Record(v)); }
  bool number_unsigned(Record::number_unsigned_t v) { return put(Record(v)); }
  bool number_float(Record::number_float_t v, const Record::string_t&) { return put(Record(v)); }
  bool string(Record::string_t& v) {
    return put(v.size() > elide_over_ ? Record(Record::string_t()) : Record(std::move(v)));
  }
  bool binary(Record::binary_t& v) { return put(Record::binary(std::move(v))); }
  bool key(Record::string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool start_object(size_t) { return open(Record::object()); }
  bool start_array(size_t) { return open(Record::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& e) {
    error = io::json_reason(e);
    error_at = position;
    return false;
  }

 private:
  Record* slot(Record&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    Record& parent = *stack_.back();
    if (parent.is_object()) {
      Record& ref = parent[key_];
      ref = std::move(v);
      return &ref;
    }
    parent.push_back(std::move(v));
    return &parent.back();
  }
  bool put(Record&& v) {
    slot(std::move(v));
    return true;
  }
  bool open(Record&& v) {
    stack_.push_back(slot(std::move(v)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }
  size_t elide_over_;
  std::vector<Record*> stack_;  // the open containers (stable: a parent never grows while a child is open)
  std::string key_;
};
}  // namespace

Record parse_record_lean(std::string_view text, const std::string& where, size_t elide_strings_over) {
  LeanDom dom(elide_strings_over);
  if (!Record::sax_parse(text.begin(), text.end(), &dom) || !dom.error.empty()) {
    io::JsonFailure f;
    f.reason = dom.error.empty() ? "unknown parse error" : dom.error;
    f.offset = io::json_error_offset(dom.error_at, text.size());
    throw malformed_json(text, f, where);
  }
  return std::move(dom.root);
}

// ---- limited encoding -----------------------------------------------------------------------------

LimitedEncoding encode_limited(const EncodeFn& encode, std::string_view text, bool add_special_tokens,
                               int64_t limit, size_t min_prefix) {
  LimitedEncoding out;
  // A prefix can hold `limit` tokens only if it has at least that many bytes; 4 per token is typical.
  size_t prefix = std::max<size_t>({min_prefix, 16, limit > 0 ? size_t(limit) * 4 : 0});
  while (limit > 0 && prefix < text.size()) {
    size_t cut = prefix;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // whole characters
    tokenizer::Encoding enc = encode(text.substr(0, cut), add_special_tokens);
    const size_t stable_end = cut - cut / 4;
    size_t stable = 0;
    while (stable < enc.ids.size() && stable < enc.offsets.size() && enc.offsets[stable].second <= stable_end)
      ++stable;
    if (int64_t(stable) > limit) {
      enc.ids.resize(stable);
      enc.offsets.resize(stable);
      out.enc = std::move(enc);
      out.complete = false;
      return out;
    }
    prefix = prefix > text.size() / 2 ? text.size() : prefix * 2;
  }
  out.enc = encode(text, add_special_tokens);
  return out;
}

// ---- record processing ----------------------------------------------------------------------------

RecordProcessor::RecordProcessor(ProcessorDeps deps, PrepOptions options)
    : deps_(std::move(deps)), options_(std::move(options)) {
  HS_CHECK(deps_.encode, "an encode function is required");
  if (options_.max_len != 0 && options_.max_len < 2)
    throw Error(str("--max-len ", options_.max_len, " is too small")).hint("use 0 (no limit) or at least 2");
}

RecordProcessor::Tokens RecordProcessor::tokenize(const Record& record, Format format) const {
  return tokenize_example(to_example(record, format));
}

RecordProcessor::Tokens RecordProcessor::tokenize_example(Example&& ex) const {
  const int64_t limit = options_.max_len;
  Tokens out;
  if (ex.format == Format::text) {
    std::string text = std::move(ex.text);
    ex = Example{};
    LimitedEncoding le =
        encode_limited(deps_.encode, text, /*add_special_tokens=*/true, limit, options_.min_prefix_bytes);
    out.ids = std::move(le.enc.ids);
    // EOS ends the whole text: a record cut short has more than max_len tokens without it anyway.
    if (le.complete && deps_.eos_id >= 0) out.ids.push_back(deps_.eos_id);
    out.mask.assign(out.ids.size(), 1);
  } else {
    if (!deps_.chat_template)
      throw Error(str("a ", format_name(ex.format), " record needs a chat template")).hint("pass --template");
    tokenizer::Rendered r;
    {
      tokenizer::Conversation conv = to_conversation(ex, *deps_.chat_template);
      ex = Example{};
      r = deps_.chat_template->render(conv);
    }
    LimitedEncoding le =
        encode_limited(deps_.encode, r.text, /*add_special_tokens=*/false, limit, options_.min_prefix_bytes);
    tokenizer::Encoding& enc = le.enc;
    r.text = {};
    HS_CHECK(enc.offsets.size() == enc.ids.size(), "tokenizer returned ", enc.offsets.size(), " offsets for ",
             enc.ids.size(), " ids");
    if (options_.loss == LossPolicy::full)
      out.mask.assign(enc.ids.size(), 1);
    else
      out.mask = response_mask(enc.offsets, r.assistant_spans, options_.last_turn_only);
    out.ids = std::move(enc.ids);
  }
  if (!out.mask.empty()) out.mask[0] = 0;
  return out;
}

bool RecordProcessor::process(std::string& text, Format format, const std::string& where, int64_t key,
                              data::SampleSet& out, PrepCounts& c) const {
  ++c.records;
  const size_t record_bytes = text.size();
  if (apply_utf8_policy(text, options_.utf8, where) > 0) ++c.utf8_repaired;
  Tokens t;
  std::optional<Error> bad;
  try {
    Example ex;
    {
      Record j = parse_record_lean(text, where);
      std::string().swap(text);  // each copy of the record goes as soon as the next one exists
      ex = to_example(j, format);
    }
    t = tokenize_example(std::move(ex));
  } catch (const std::bad_alloc&) {  // never the record's fault: not malformed, never skipped
    throw Error(
        str("out of memory while processing ", where, " (input record ", key, ", ", record_bytes, " bytes)"))
        .hint(options_.max_len > 0
                  ? "give prep more memory, or split the record"
                  : "pass --max-len (e.g. the model's context length): only a record's first tokens are "
                    "then encoded; or give prep more memory, or split the record");
  } catch (Error& e) {
    bad = std::move(e);
  } catch (const std::exception& e) {  // e.g. a JSON type error: still this record's fault
    bad = Error(e.what());
  }
  if (bad) {
    if (bad->where().rfind(where, 0) != 0) bad->at(where);
    if (!options_.skip_errors) {
      if (bad->hint_text().empty())
        bad->hint("fix the record, or pass --on-error skip to count and skip bad records");
      throw std::move(*bad);
    }
    ++c.malformed;
    if (c.malformed <= 5) log::warn("skipping malformed record: ", bad->what());
    if (c.malformed == 5) log::warn("(further malformed records on this rank are counted, not shown)");
    return false;
  }
  if (t.ids.size() < 2) {
    ++c.empty;
    return false;
  }
  if (options_.max_len > 0 && int64_t(t.ids.size()) > options_.max_len) {
    if (options_.too_long == TooLongPolicy::drop) {
      ++c.too_long;
      return false;
    }
    t.ids.resize(size_t(options_.max_len));
    t.mask.resize(size_t(options_.max_len));
    ++c.truncated;
  }
  int64_t trained = 0;
  for (uint8_t m : t.mask) trained += m;
  if (trained == 0) {
    ++c.no_trainable;
    return false;
  }
  out.add(t.ids, t.mask, key);
  ++c.written;
  c.tokens += int64_t(t.ids.size());
  c.trained += trained;
  return true;
}

// ---- inputs and the rank loop ---------------------------------------------------------------------

namespace {
constexpr int64_t kDetectWindow = 1000;  // records auto looks at for a well-formed one

// reader.next(r), with running out of memory (a huge line or array) named as such, with the place.
bool next_record(RecordReader& reader, RawRecord& r, int64_t seen) {
  try {
    return reader.next(r);
  } catch (const std::bad_alloc&) {
    throw Error(
        str("out of memory while reading ", reader.path(),
            seen > 0 ? str(" after the record at line ", r.line) : std::string(" (its first record)")))
        .hint("give prep more memory, or split the file (a JSON array is read whole: JSONL is streamed)");
  }
}
bool j_is_parse_error(const Error& e) { return e.message().rfind("malformed JSON", 0) == 0; }
}  // namespace

std::vector<InputFile> scan_inputs(const std::vector<std::string>& paths, const std::optional<Format>& format,
                                   Utf8Policy utf8) {
  if (paths.empty()) throw Error("no input files").hint("pass --input FILE (JSON, JSONL, optionally .gz)");
  std::vector<InputFile> out;
  for (const auto& p : paths) {
    InputFile f;
    f.path = p;
    f.name = std::filesystem::path(p).filename().string();
    RecordReader reader(p);
    f.bytes = reader.bytes_total();
    f.sha256 = io::sha256_file(p);
    RawRecord r;
    bool decided = bool(format);
    if (format) {
      f.format = *format;
      f.why = "given";
    }
    std::optional<Error> first_error;
    while (next_record(reader, r, f.records)) {
      // auto: the first record that is a JSON object decides (malformed ones are counted later).
      if (!decided && f.records < kDetectWindow) {
        std::string where = reader.where(r);
        apply_utf8_policy(r.text, utf8, where);  // r.text is only counted after this
        try {
          Record j = parse_record_lean(r.text, where, /*elide_strings_over=*/size_t(1) << 16);
          std::string why;
          try {
            f.format = detect_format(j, &why);
          } catch (Error& e) {
            throw std::move(e.at(where));  // a valid record of an unknown format: the user must say
          }
          f.why = str("auto: ", why, ", line ", r.line);
          decided = true;
        } catch (const std::bad_alloc&) {
          throw Error(str("out of memory while reading ", where, " (", r.text.size(), " bytes)"))
              .hint("give prep more memory, or split the record");
        } catch (Error& e) {
          if (!j_is_parse_error(e)) throw;
          if (!first_error) first_error = std::move(e);
        }
      }
      ++f.records;
    }
    if (!decided) {
      if (f.records == 0) {
        f.format = format.value_or(Format::text);
        f.why = "empty file";
      } else {
        throw std::move(
            first_error->hint("auto could not find a well-formed record to detect the format from: fix the "
                              "file or pass --format"));
      }
    }
    out.push_back(std::move(f));
  }
  return out;
}

RankResult run_records(const std::vector<InputFile>& inputs, const RecordProcessor& processor, int rank,
                       int world, const std::function<void(int64_t)>& on_progress) {
  HS_CHECK(world >= 1 && rank >= 0 && rank < world, "bad rank ", rank, " of ", world);
  RankResult res;
  int64_t key = 0;
  for (const auto& f : inputs) {
    RecordReader reader(f.path);
    RawRecord r;
    int64_t seen = 0;
    while (next_record(reader, r, seen)) {
      ++seen;
      if (key % world == rank)
        processor.process(r.text, f.format, reader.where(r), key, res.samples, res.counts);
      ++key;
      if (on_progress && (key & 255) == 0) on_progress(key);
    }
    if (seen != f.records)
      throw Error(str("has ", seen, " records now but had ", f.records, " in the first pass"))
          .at(f.path)
          .hint("the file changed while prep was running: run it again on a file that is not being written");
  }
  if (on_progress) on_progress(key);
  return res;
}

}  // namespace hs::data_tools
