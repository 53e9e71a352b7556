// Whole-file reads and atomic writes (temp file beside the target, fsync, rename, fsync of the folder);
// every error names the path and the errno text; see file.h.
#include "io/file.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace hs::io {
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec))
      throw Error("file not found").at(path).hint("check the path (relative paths start at the current folder)");
    throw Error(str("cannot open file: ", std::strerror(errno))).at(path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("read failed").at(path);
  return std::move(ss).str();
}

namespace {
void write_all(int fd, std::string_view bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      throw Error(str("write failed: ", std::strerror(e)))
          .at(path)
          .hint(e == ENOSPC || e == EFBIG || e == EDQUOT ? "free space on that disk, or write elsewhere"
                                                         : "is the disk full?");
    }
    p += n;
    left -= size_t(n);
  }
}
}  // namespace

void write_file_atomic(const std::string& path, std::string_view bytes) {
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str("cannot create file: ", std::strerror(errno))).at(tmp);
  try {
    write_all(fd, bytes, tmp);  // closes fd when it throws
  } catch (...) {
    ::unlink(tmp.c_str());  // a full disk leaves no temp file behind
    throw;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw Error(str("fsync/close failed: ", std::strerror(e))).at(path).hint("is the disk full?");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw Error(str("rename failed: ", std::strerror(e))).at(path);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error(str("cannot create folder: ", ec.message())).at(path);
}

namespace {
int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  return (type == FTW_DP ? ::rmdir(path) : ::unlink(path)) == 0 ? 0 : errno;
}
}  // namespace

std::string remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT ? "" : str(path, ": ", std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0 ? "" : str(path, ": ", std::strerror(errno));
  int rc = ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (rc == 0) return "";
  return str(path, ": ", std::strerror(rc > 0 ? rc : errno));
}

}  // namespace hs::io
