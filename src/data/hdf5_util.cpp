// HDF5 helpers: error stack -> hs::Error, RAII handles, attribute and 1-D dataset I/O (see hdf5_util.h).
#include "data/hdf5_util.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace hs::data {

std::string hdf5_version() {
  h5::quiet();
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return str(major, ".", minor, ".", release);
}

namespace h5 {

void quiet() {
  static const bool done = [] {
    // No clean-up at exit: after a failed close (a full disk) HDF5 keeps the file in its tables, and
    // closing it again while the process exits crashes in H5F__close_cb or prints a raw error stack.
    // Every handle is closed by its owner; the OS reclaims the rest. (Must come before HDF5 starts up.)
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

namespace {
herr_t collect(unsigned /*n*/, const H5E_error2_t* e, void* out) {
  auto* v = static_cast<std::vector<std::string>*>(out);
  if (e && e->desc && *e->desc) v->emplace_back(e->desc);
  return 0;
}
}  // namespace

std::string last_error() {
  std::vector<std::string> msgs;  // most specific first
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect, &msgs);
  H5Eclear2(H5E_DEFAULT);
  if (msgs.empty()) return "";
  // A failed system call ("file write failed: time = ..., errno = 28, error message = 'No space left on
  // device', buf = 0x..."): the errno is what the user needs, not the driver's internals.
  for (const auto& m : msgs) {
    auto p = m.find("errno = ");
    if (p == std::string::npos) continue;
    int e = std::atoi(m.c_str() + p + 8);
    if (e <= 0) continue;
    std::string call = m.substr(0, m.find(':'));
    return str(call, ": ", std::strerror(e));
  }
  // The API-level description and the innermost cause are the informative ends of the stack.
  if (msgs.size() == 1 || msgs.back() == msgs.front()) return msgs.front();
  return msgs.back() + " (" + msgs.front() + ")";
}

void Handle::reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE:
      H5Fclose(id_);
      break;
    case H5I_GROUP:
      H5Gclose(id_);
      break;
    case H5I_DATATYPE:
      H5Tclose(id_);
      break;
    case H5I_DATASPACE:
      H5Sclose(id_);
      break;
    case H5I_DATASET:
      H5Dclose(id_);
      break;
    case H5I_ATTR:
      H5Aclose(id_);
      break;
    case H5I_GENPROP_LST:
      H5Pclose(id_);
      break;
    default:
      H5Idec_ref(id_);
      break;
  }
  id_ = H5I_INVALID_HID;
}

void Handle::close(const std::string& where) {
  if (id_ < 0) return;
  hid_t id = std::exchange(id_, H5I_INVALID_HID);
  herr_t rc = 0;
  switch (H5Iget_type(id)) {
    case H5I_FILE:
      rc = H5Fclose(id);
      break;
    case H5I_DATASET:
      rc = H5Dclose(id);
      break;
    default: {
      Handle tmp(id);
      return;
    }
  }
  if (rc < 0)
    throw Error(str("cannot finish writing the file (HDF5 close): ", last_error()))
        .at(where)
        .hint("is the disk full?");
}

Handle check_id(hid_t id, const std::string& what, const std::string& where) {
  if (id < 0) {
    std::string why = last_error();
    throw Error(why.empty() ? what : what + ": " + why).at(where);
  }
  return Handle(id);
}

void check(herr_t rc, const std::string& what, const std::string& where) {
  if (rc < 0) {
    std::string why = last_error();
    throw Error(why.empty() ? what : what + ": " + why).at(where);
  }
}

namespace {
Handle string_type(size_t size, const std::string& where) {
  Handle t = check_id(H5Tcopy(H5T_C_S1), "H5Tcopy", where);
  check(H5Tset_size(t, std::max<size_t>(size, 1)), "H5Tset_size", where);
  check(H5Tset_strpad(t, H5T_STR_NULLTERM), "H5Tset_strpad", where);
  check(H5Tset_cset(t, H5T_CSET_UTF8), "H5Tset_cset", where);
  return t;
}

void write_attr(hid_t obj, const std::string& name, hid_t file_type, hid_t space, hid_t mem_type,
                const void* data, const std::string& where) {
  if (H5Aexists(obj, name.c_str()) > 0)
    check(H5Adelete(obj, name.c_str()), "cannot replace attribute " + name, where);
  Handle a = check_id(H5Acreate2(obj, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT),
                      "cannot create attribute '" + name + "'", where);
  if (data) check(H5Awrite(a, mem_type, data), "cannot write attribute '" + name + "'", where);
}

Handle open_attr(hid_t obj, const std::string& name, const std::string& where) {
  htri_t e = H5Aexists(obj, name.c_str());
  if (e <= 0)
    throw Error(str("attribute '", name, "' is missing"))
        .at(where)
        .hint("this is not an hsloth shard, or it was damaged: re-run hsloth prep");
  return check_id(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "cannot open attribute '" + name + "'", where);
}

// Reads a string-typed attribute (fixed or variable length, scalar or 1-D) into a list of strings.
std::vector<std::string> read_strings(hid_t obj, const std::string& name, const std::string& where) {
  Handle a = open_attr(obj, name, where);
  Handle type = check_id(H5Aget_type(a), "H5Aget_type", where);
  if (H5Tget_class(type) != H5T_STRING)
    throw Error(str("attribute '", name, "' is not a string")).at(where).hint("re-run hsloth prep");
  Handle space = check_id(H5Aget_space(a), "H5Aget_space", where);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n < 0) throw Error(str("attribute '", name, "': bad dataspace")).at(where);
  std::vector<std::string> out;
  if (n == 0) return out;
  if (H5Tis_variable_str(type) > 0) {
    Handle mem = check_id(H5Tcopy(H5T_C_S1), "H5Tcopy", where);
    check(H5Tset_size(mem, H5T_VARIABLE), "H5Tset_size", where);
    check(H5Tset_cset(mem, H5Tget_cset(type)), "H5Tset_cset", where);
    std::vector<char*> ptrs(size_t(n), nullptr);
    check(H5Aread(a, mem, ptrs.data()), "cannot read attribute '" + name + "'", where);
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      if (p) H5free_memory(p);
    }
    return out;
  }
  size_t size = H5Tget_size(type);
  Handle mem = check_id(H5Tcopy(type), "H5Tcopy", where);
  std::vector<char> buf(size * size_t(n) + 1, 0);
  check(H5Aread(a, mem, buf.data()), "cannot read attribute '" + name + "'", where);
  for (hssize_t i = 0; i < n; ++i) {
    const char* p = buf.data() + size_t(i) * size;
    out.emplace_back(p, strnlen(p, size));
  }
  return out;
}
}  // namespace

void write_attr_int(hid_t obj, const std::string& name, int64_t value, hid_t file_type,
                    const std::string& where) {
  Handle space = check_id(H5Screate(H5S_SCALAR), "H5Screate", where);
  write_attr(obj, name, file_type, space, H5T_NATIVE_INT64, &value, where);
}

void write_attr_string(hid_t obj, const std::string& name, const std::string& value,
                       const std::string& where) {
  Handle type = string_type(value.size() + 1, where);
  Handle space = check_id(H5Screate(H5S_SCALAR), "H5Screate", where);
  std::vector<char> buf(value.size() + 1, 0);
  std::memcpy(buf.data(), value.data(), value.size());
  write_attr(obj, name, type, space, type, buf.data(), where);
}

void write_attr_strings(hid_t obj, const std::string& name, const std::vector<std::string>& values,
                        const std::string& where) {
  size_t width = 1;
  for (const auto& v : values) width = std::max(width, v.size() + 1);
  Handle type = string_type(width, where);
  if (values.empty()) {
    Handle space = check_id(H5Screate(H5S_NULL), "H5Screate", where);
    write_attr(obj, name, type, space, type, nullptr, where);
    return;
  }
  hsize_t dims[1] = {hsize_t(values.size())};
  Handle space = check_id(H5Screate_simple(1, dims, nullptr), "H5Screate_simple", where);
  std::vector<char> buf(width * values.size(), 0);
  for (size_t i = 0; i < values.size(); ++i)
    std::memcpy(buf.data() + i * width, values[i].data(), values[i].size());
  write_attr(obj, name, type, space, type, buf.data(), where);
}

void write_dataset(hid_t file, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
                   hsize_t count, const DatasetOptions& options, const std::string& where) {
  const std::string what = "dataset '" + name + "'";
  hsize_t dims[1] = {count};
  Handle space = check_id(H5Screate_simple(1, dims, nullptr), "H5Screate_simple", where);
  Handle dcpl = check_id(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", where);
  check(H5Pset_obj_track_times(dcpl, false), "H5Pset_obj_track_times", where);
  if (count > 0) {
    hsize_t chunk[1] = {std::max<hsize_t>(1, std::min(options.chunk, count))};
    check(H5Pset_chunk(dcpl, 1, chunk), "H5Pset_chunk", where);
    if (options.compress > 0) {
      check(H5Pset_shuffle(dcpl), "H5Pset_shuffle", where);
      check(H5Pset_deflate(dcpl, unsigned(options.compress)), "H5Pset_deflate", where);
    }
    if (options.checksum) check(H5Pset_fletcher32(dcpl), "H5Pset_fletcher32", where);
  }
  Handle ds = check_id(H5Dcreate2(file, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                       "cannot create " + what, where);
  if (count > 0)
    check(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "cannot write " + what, where);
  ds.close(where);
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

int64_t read_attr_int(hid_t obj, const std::string& name, const std::string& where) {
  Handle a = open_attr(obj, name, where);
  Handle type = check_id(H5Aget_type(a), "H5Aget_type", where);
  Handle space = check_id(H5Aget_space(a), "H5Aget_space", where);
  if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1)
    throw Error(str("attribute '", name, "' is not a single integer")).at(where).hint("re-run hsloth prep");
  int64_t v = 0;
  check(H5Aread(a, H5T_NATIVE_INT64, &v), "cannot read attribute '" + name + "'", where);
  return v;
}

std::string read_attr_string(hid_t obj, const std::string& name, const std::string& where) {
  auto v = read_strings(obj, name, where);
  if (v.size() != 1)
    throw Error(str("attribute '", name, "' holds ", v.size(), " strings, expected 1")).at(where);
  return v[0];
}

std::vector<std::string> read_attr_strings(hid_t obj, const std::string& name, const std::string& where) {
  return read_strings(obj, name, where);
}

hsize_t dataset_size(hid_t dataset, const std::string& name, size_t bytes, bool is_signed,
                     const std::string& where) {
  Handle type = check_id(H5Dget_type(dataset), "H5Dget_type", where);
  bool ok = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == bytes &&
            (H5Tget_sign(type) == H5T_SGN_2) == is_signed;
  if (!ok)
    throw Error(
        str("dataset '", name, "' has the wrong type (expected ", is_signed ? "int" : "uint", bytes * 8, ")"))
        .at(where)
        .hint("this file was not written by hsloth prep: re-run it");
  Handle space = check_id(H5Dget_space(dataset), "H5Dget_space", where);
  if (H5Sget_simple_extent_ndims(space) != 1)
    throw Error(str("dataset '", name, "' is not one-dimensional")).at(where).hint("re-run hsloth prep");
  hsize_t dims[1] = {0};
  H5Sget_simple_extent_dims(space, dims, nullptr);
  return dims[0];
}

void read_range(hid_t dataset, hid_t mem_type, hsize_t start, hsize_t count, void* out,
                const std::string& what, const std::string& where) {
  if (count == 0) return;
  Handle fspace = check_id(H5Dget_space(dataset), "H5Dget_space", where);
  hsize_t s[1] = {start}, c[1] = {count};
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, s, nullptr, c, nullptr), "cannot select " + what, where);
  Handle mspace = check_id(H5Screate_simple(1, c, nullptr), "H5Screate_simple", where);
  check(H5Dread(dataset, mem_type, mspace, fspace, H5P_DEFAULT, out), "cannot read " + what, where);
}

}  // namespace h5
}  // namespace hs::data
