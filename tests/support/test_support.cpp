// Test helpers: where the shared reference data is, fresh temp folders, the hsloth binary's path; see
// test_support.h.
#include "support/test_support.h"

#include <cstdlib>
#include <filesystem>
#include <random>

namespace hs::test {
namespace fs = std::filesystem;

std::string testdata_dir() {
  const char* env = std::getenv("HSLOTH_TESTDATA");
  std::string dir = env ? env : "../shared/data";
  std::error_code ec;
  return fs::is_directory(dir, ec) ? dir : std::string();
}

std::string temp_dir(const std::string& prefix) {
  std::random_device rd;
  fs::path p = fs::temp_directory_path() / (prefix + "-" + std::to_string(rd()));
  fs::create_directories(p);
  return p.string();
}

std::string hsloth_bin() {
  const char* env = std::getenv("HSLOTH_BIN");
  return env ? env : "";
}

}  // namespace hs::test
