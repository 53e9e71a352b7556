// Thin RAII layer over the HDF5 C API, shared by the shard writer and reader. HDF5's own error-stack
// printing is switched off once (quiet()); every failing call becomes an hs::Error that names the file and
// object and carries HDF5's innermost message (e.g. "truncated file: eof = ..."). Only what the shard
// format needs is here: 1-D datasets, scalar/1-D attributes of integers and fixed-length strings.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hs::data {

// "1.10.8": the HDF5 library this binary runs with (for `hsloth info`).
std::string hdf5_version();

namespace h5 {

// Turns off HDF5's automatic error printing (idempotent, cheap).
void quiet();
// The innermost messages of HDF5's current error stack ("" if empty); clears the stack.
std::string last_error();

// Owns one hid_t and closes it with the right H5?close for its type.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports a failure (a file's close is where HDF5 writes its metadata).
  void close(const std::string& where);

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// Throws hs::Error("<what>: <hdf5 message>").at(where) when id < 0; returns the owning handle.
Handle check_id(hid_t id, const std::string& what, const std::string& where);
void check(herr_t rc, const std::string& what, const std::string& where);

// ---- writing ----
// Attributes on `obj` (a file id means the root group).
void write_attr_int(hid_t obj, const std::string& name, int64_t value, hid_t file_type,
                    const std::string& where);
void write_attr_string(hid_t obj, const std::string& name, const std::string& value,
                       const std::string& where);
void write_attr_strings(hid_t obj, const std::string& name, const std::vector<std::string>& values,
                        const std::string& where);

struct DatasetOptions {
  hsize_t chunk = 4096;  // elements per chunk (clamped to the dataset size)
  int compress = 0;      // deflate level 0 (none) to 9; with shuffle when > 0
  bool checksum = true;  // Fletcher-32 per chunk: a flipped bit is an error on read, not silent garbage
};
// Creates and fills a chunked 1-D dataset; file_type e.g. H5T_STD_I32LE, mem_type H5T_NATIVE_INT32.
void write_dataset(hid_t file, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
                   hsize_t count, const DatasetOptions& options, const std::string& where);

// ---- reading ----
bool has_attr(hid_t obj, const std::string& name);
// Missing attribute or non-integer type is an hs::Error naming it.
int64_t read_attr_int(hid_t obj, const std::string& name, const std::string& where);
std::string read_attr_string(hid_t obj, const std::string& name, const std::string& where);
std::vector<std::string> read_attr_strings(hid_t obj, const std::string& name, const std::string& where);

// The 1-D size of a dataset, after checking that it is an integer dataset of `bytes`-wide elements with
// the given signedness. Throws naming the dataset otherwise.
hsize_t dataset_size(hid_t dataset, const std::string& name, size_t bytes, bool is_signed,
                     const std::string& where);
// Reads [start, start + count) of a 1-D dataset into out (which holds count elements of mem_type).
void read_range(hid_t dataset, hid_t mem_type, hsize_t start, hsize_t count, void* out,
                const std::string& what, const std::string& where);

}  // namespace h5
}  // namespace hs::data
