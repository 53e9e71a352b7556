// SampleSet storage, ordering and a simple length-prefixed binary serialization (same-host byte order:
// it only travels between ranks of one job).
#include "data/sample_set.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/error.h"

namespace hs::data {

void SampleSet::add(std::span<const int32_t> ids, std::span<const uint8_t> mask, int64_t key) {
  HS_CHECK(ids.size() == mask.size(), "ids and mask lengths differ: ", ids.size(), " vs ", mask.size());
  HS_CHECK(!ids.empty(), "empty sample (key ", key, ")");
  HS_CHECK(ids.size() <= size_t(INT32_MAX), "sample too long: ", ids.size());
  int32_t trained = 0;
  for (uint8_t m : mask) {
    HS_CHECK(m <= 1, "loss mask values must be 0 or 1 (key ", key, ")");
    trained += m;
  }
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  mask_.insert(mask_.end(), mask.begin(), mask.end());
  offsets_.push_back(int64_t(ids_.size()));
  trained_.push_back(trained);
  keys_.push_back(key);
}

void SampleSet::append(const SampleSet& o) {
  int64_t base = int64_t(ids_.size());
  ids_.insert(ids_.end(), o.ids_.begin(), o.ids_.end());
  mask_.insert(mask_.end(), o.mask_.begin(), o.mask_.end());
  for (size_t i = 1; i < o.offsets_.size(); ++i) offsets_.push_back(base + o.offsets_[i]);
  trained_.insert(trained_.end(), o.trained_.begin(), o.trained_.end());
  keys_.insert(keys_.end(), o.keys_.begin(), o.keys_.end());
}

int64_t SampleSet::num_trained() const {
  return std::accumulate(trained_.begin(), trained_.end(), int64_t(0));
}

std::vector<size_t> SampleSet::sorted_order() const {
  std::vector<size_t> order(size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    int32_t la = length(a), lb = length(b);
    return la != lb ? la < lb : keys_[a] < keys_[b];
  });
  for (size_t i = 1; i < order.size(); ++i)
    HS_CHECK(keys_[order[i - 1]] != keys_[order[i]] || length(order[i - 1]) != length(order[i]),
             "duplicate sample key ", keys_[order[i]]);
  return order;
}

namespace {
constexpr char kMagic[8] = {'H', 'S', 'S', 'E', 'T', '0', '0', '1'};

template <typename T>
void put_vec(std::string& out, const std::vector<T>& v) {
  uint64_t n = v.size();
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
std::vector<T> get_vec(std::string_view& in) {
  uint64_t n = 0;
  if (in.size() < sizeof n) throw Error("sample set buffer is truncated");
  std::memcpy(&n, in.data(), sizeof n);
  in.remove_prefix(sizeof n);
  if (n > in.size() / sizeof(T)) throw Error("sample set buffer is truncated");
  std::vector<T> v(n);
  std::memcpy(v.data(), in.data(), n * sizeof(T));
  in.remove_prefix(n * sizeof(T));
  return v;
}
}  // namespace

std::string SampleSet::serialize() const {
  std::string out(kMagic, sizeof kMagic);
  out.reserve(sizeof kMagic + ids_.size() * 5 + keys_.size() * 24 + 64);
  put_vec(out, ids_);
  put_vec(out, mask_);
  put_vec(out, offsets_);
  put_vec(out, trained_);
  put_vec(out, keys_);
  return out;
}

SampleSet SampleSet::deserialize(std::string_view in) {
  if (in.size() < sizeof kMagic || std::memcmp(in.data(), kMagic, sizeof kMagic) != 0)
    throw Error("not a serialized sample set");
  in.remove_prefix(sizeof kMagic);
  SampleSet s;
  s.ids_ = get_vec<int32_t>(in);
  s.mask_ = get_vec<uint8_t>(in);
  s.offsets_ = get_vec<int64_t>(in);
  s.trained_ = get_vec<int32_t>(in);
  s.keys_ = get_vec<int64_t>(in);
  bool ok = in.empty() && s.ids_.size() == s.mask_.size() && !s.offsets_.empty() && s.offsets_.front() == 0 &&
            s.offsets_.back() == int64_t(s.ids_.size()) && s.offsets_.size() == s.keys_.size() + 1 &&
            s.trained_.size() == s.keys_.size();
  for (size_t i = 1; ok && i < s.offsets_.size(); ++i) ok = s.offsets_[i] > s.offsets_[i - 1];
  if (!ok) throw Error("serialized sample set is inconsistent");
  return s;
}

}  // namespace hs::data
